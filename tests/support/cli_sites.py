"""Deterministic sites for the CLI tests: a fixed job list placed in order, fixed times.

Both engine twins give the same placements (test_differential.py), and the placement
times are set here rather than read from a clock, so ``gpusched status`` and ``gpusched
jobs`` print the same bytes on every machine: the golden files under
tests/fixtures/cli/ hold them.
"""

from __future__ import annotations

from pathlib import Path

from gpusched import Cluster, Engine, Job
from gpusched.state import encode_state, write_atomic

# 2026-06-01 00:00:00 UTC; each job is placed ten minutes after the one before
T0_S = 1_780_272_000.0

# preset -> jobs, placed in this order (a job that does not fit is left out)
SITES: dict[str, list[Job]] = {
    "tiny": [Job("train-a", 16, min_cap_w=400), Job("eval-1", 4),
             Job("big", 32, min_cap_w=350), Job("tiny-1", 1)],
    "colossus-array": [Job("pretrain", 256, min_cap_w=400), Job("ft-1", 64),
                       Job("ft-2", 64, min_cap_w=350), Job("notebook", 2)],
    "colossus-100k": [Job("frontier-32k", 32768, min_cap_w=400),
                      Job("frontier-16k", 16384, min_cap_w=400),
                      Job("mid-4k", 4096, min_cap_w=350), Job("mid-2k", 2048),
                      Job("small-8", 8), Job("small-1", 1)],
}


def write_site(preset: str, path: Path) -> Engine:
    """Place SITES[preset] on an empty engine and save it, with times, at ``path``."""
    engine = Engine(Cluster.preset(preset))
    placed_at = {}
    for i, job in enumerate(SITES[preset]):
        if engine.place(job) is not None:
            placed_at[job.id] = T0_S + 600 * i
    snapshot = engine.snapshot()
    snapshot["placed_at"] = placed_at
    write_atomic(path, encode_state(snapshot))
    return engine
