"""gpusched show: summarise a cluster and place a sample job stream on it.

The summary gives the site's size, its power envelope (idle, at full power, the
facility limit) and its constraint system A·P <= b by kind of row: how many rows, how
many would break with every GPU at full power.  Then --jobs sample jobs shaped like the
ITP 2021 trace (plus a few large gangs) are placed on an empty engine, to show how fast
placement is and which rows bind.  Power is in kW on sites under 1 MW, else MW.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from ..engine import Engine, available_backends
from ..errors import SpecError
from ..job import Job
from ..spec import PRESETS, Cluster
from ._format import power_unit

__all__ = ["add_arguments", "run", "cluster_with_facility"]

EXAMPLES = """
gpusched show
gpusched show tiny --jobs 0
gpusched show colossus-array --facility-mw 0.4 --jobs 200
gpusched show site.toml --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cluster", nargs="?", default="colossus-100k",
                        help=f"preset ({', '.join(sorted(PRESETS))}) or .toml/.json file "
                             "(default: colossus-100k)")
    parser.add_argument("--facility-mw", type=float, default=None, metavar="MW",
                        help="replace the facility IT limit, in MW, on any cluster "
                             "(default: the cluster's own)")
    parser.add_argument("--jobs", type=int, default=2000,
                        help="sample jobs to place (0: none; default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample stream")
    parser.add_argument("--backend", choices=available_backends(), default=None,
                        help="engine twin (default: the compiled core when built)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def cluster_with_facility(name: str, facility_mw: float | None) -> Cluster:
    """The cluster ``name`` (preset or file), its facility IT limit set to ``facility_mw``.

    Done through ``Cluster.with_limits`` on the facility row, so it applies to every
    preset and spec file alike; a limit the idle site already breaks is refused by the
    cluster's own checks, naming the row.
    """
    cluster = Cluster.resolve(name)
    if facility_mw is None:
        return cluster
    if not (math.isfinite(facility_mw) and facility_mw > 0):
        raise SpecError(f"--facility-mw {facility_mw!r} must be a positive number of MW",
                        field="facility_mw")
    c = cluster.constraints
    row = c.names[c.kinds.index("facility")]
    return cluster.with_limits({row: facility_mw * 1e6})


def _sample_stream(cluster: Cluster, seed: int, count: int) -> list[Job]:
    """Jobs shaped like the ITP 2021 trace (mostly 1 GPU, gangs up to 64), plus big gangs.

    Size shares from shared/traces/ms-itp-2021/README.md (all clusters): 1 GPU 83%,
    2: 2.1%, 4: 3.4%, 8: 10.1%, 16: 0.5%, 32: 0.5%, 64: 0.1%; a few 512 to 16,384-GPU
    LLM-era gangs are added so the power rows bind.  Half the jobs accept caps down to
    350 W (physics.md §3 recommends [350, 700] W for the optimiser).
    """
    rng = np.random.default_rng(seed)
    sizes = np.array([1, 2, 4, 8, 16, 32, 64])
    share = np.array([57682, 1483, 2371, 7009, 381, 354, 71], dtype=float)
    gpus = rng.choice(sizes, size=count, p=share / share.sum())
    jobs = []
    for i, g in enumerate(gpus):
        flexible = rng.random() < 0.5
        jobs.append(Job(f"job-{i:05d}", int(g), min_cap_w=350 if flexible else None))
    gangs = [g for g in [16384, 4096, 4096, 2048, 512, 512, 512, 512] * max(1, count // 400)
             if g <= cluster.num_gpus // 4]
    for k, g in enumerate(gangs):
        jobs.insert(int(rng.integers(0, len(jobs))), Job(f"gang-{k:03d}", g, min_cap_w=400))
    return jobs


def _power_table(engine: Engine) -> list[tuple[str, float, float]]:
    """(row name, load, limit) of the most loaded row of each kind."""
    c = engine.cluster.constraints
    load = c.A @ engine.rack_power_w().astype(float)
    out = []
    for kind in dict.fromkeys(c.kinds):
        idx = [i for i, k in enumerate(c.kinds) if k == kind]
        worst = max(idx, key=lambda i: load[i] / max(c.b[i], 1e-9))
        out.append((c.names[worst], float(load[worst]), float(c.b[worst])))
    return out


def run(args: argparse.Namespace) -> int:
    cluster = cluster_with_facility(args.cluster, args.facility_mw)
    summary = cluster.summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{summary['name']}: {summary['gpus']:,} GPUs on {summary['nodes']:,} nodes, "
          f"{summary['racks']:,} racks ({summary['liquid_racks']} liquid, "
          f"{summary['air_racks']} air), {summary['pods']} pods, {summary['rows']} rows, "
          f"{summary['halls']} halls")
    unit, per = power_unit(summary["full_power_mw"] * 1e6)
    per_mw = 1e6 / per
    print(f"power: {summary['idle_mw'] * per_mw:,.1f} {unit} idle, "
          f"{summary['full_power_mw'] * per_mw:,.1f} {unit} with every GPU at "
          f"{cluster.power.cap_max_w} W, facility limit "
          f"{summary['facility_limit_mw'] * per_mw:,.1f} {unit}")
    print(f"constraint system A·P <= b: {summary['constraint_rows']:,} rows")
    print(f"  {'kind':<14}{'rows':>7}{'break at full power':>22}{'worst full/limit':>19}")
    for kind, row in summary["rows_by_kind"].items():
        print(f"  {kind:<14}{row['rows']:>7}{row['binding_at_full_power']:>22}"
              f"{row['worst_full_over_limit']:>19.3f}")
    if args.jobs <= 0:
        return 0
    engine = Engine(cluster, backend=args.backend)
    jobs = _sample_stream(cluster, args.seed, args.jobs)
    start = time.perf_counter()
    placements = [engine.place(job) for job in jobs]
    elapsed = time.perf_counter() - start
    placed = [p for p in placements if p is not None]
    caps = np.array([p.cap_w for p in placed])
    top_w = cluster.power.cap_max_w
    print(f"\nsample stream: {len(jobs):,} jobs (seed {args.seed}) on the {engine.backend} "
          f"backend in {elapsed * 1e3:.1f} ms ({elapsed / len(jobs) * 1e6:.1f} µs per job)")
    print(f"  placed {len(placed):,}, refused {len(jobs) - len(placed):,}; "
          f"{engine.gpus_in_use():,} GPUs busy; caps: {int((caps == top_w).sum())} at {top_w} W, "
          f"{int((caps < top_w).sum())} capped (lowest {int(caps.min()) if len(caps) else '-'} W)")
    print(f"  {'most loaded row of each kind':<34}{'load kW':>12}{'limit kW':>12}{'used':>8}")
    for name, load, limit in _power_table(engine):
        print(f"  {name:<34}{load / 1e3:>12,.1f}{limit / 1e3:>12,.1f}{load / limit:>8.1%}")
    refused = next((j for j, p in zip(jobs, placements) if p is None), None)
    if refused is not None:
        print(f"  first refusal: {engine.explain(refused)}")
    return 0
