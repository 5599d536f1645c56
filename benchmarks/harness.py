"""A small benchmark harness: warm-up, repetitions, median and spread, JSON out.

Benchmarks print numbers; nothing here asserts a time (shared machines are noisy).
"""

from __future__ import annotations

import gc
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator


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

    @classmethod
    def of(cls, samples: list[float]) -> "Timing":
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))


@contextmanager
def _gc_off() -> Iterator[None]:
    # as timeit does: the cyclic GC would bill one run for garbage made by the others
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    with _gc_off():
        for _ in range(repeats):
            if setup is not None:
                setup()
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
    return Timing.of(samples)


def measure_paired(runs: dict[str, Callable[[], Any]], *, repeats: int = 5,
                   warmup: int = 1) -> tuple[dict[str, Timing], list[dict[str, float]]]:
    """Time several blocks (one per backend) in rounds; each round runs every block once.

    On a shared machine the speed drifts over seconds; a ratio of two medians taken
    seconds apart inherits that drift, while blocks timed back to back see about the same
    machine.  Returns each block's Timing and the samples of every round (seconds), so a
    caller can take the median of the per-round ratios.  The order of the blocks
    alternates between rounds, so neither always runs on the other's heels.
    """
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    rounds: list[dict[str, float]] = []
    with _gc_off():
        for r in range(repeats):
            sample = {}
            for name in (names if r % 2 == 0 else names[::-1]):
                start = time.perf_counter()
                runs[name]()
                sample[name] = time.perf_counter() - start
            rounds.append(sample)
    timings = {name: Timing.of([sample[name] for sample in rounds]) for name in names}
    return timings, rounds


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
