"""A small benchmark harness: warm-up, repetitions, median and spread, JSON out.

Benchmarks print numbers; nothing here asserts a time (shared machines are noisy).
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Timing:
    """Seconds per run of a measured block: median and spread over ``repeats`` runs."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int

    def rate(self, operations: int) -> float:
        """Operations per second at the median."""
        return operations / self.median_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(run: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
            setup: Callable[[], Any] | None = None) -> Timing:
    """Time ``run()`` ``repeats`` times after ``warmup`` untimed runs.

    ``setup()``, if given, runs before each run, untimed (to restore a state).
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        run()
    samples = []
    # as timeit does: the cyclic GC would bill one run for garbage made by the others
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            if setup is not None:
                setup()
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(statistics.median(samples), min(samples), max(samples), repeats)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
