"""Place+release throughput on colossus-100k, Cython core against the pure-Python twin.

For each job size (1, 8, 64, 512, 4096 GPUs) it times a stream of place+release pairs
on an engine that already holds a background load (so candidates are not all in the
first rack), on both backends, and prints pairs per second and the ratio.  Both
backends run the same operation stream and must return identical placements; the
benchmark checks that before it prints.

    python benchmarks/bench_engine.py            # a table
    python benchmarks/bench_engine.py --json     # {"cython": {...}, "python": {...}, "ratio": {...}}

This is a benchmark, not a test: it asserts no time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from gpusched import Cluster, Engine, Job, available_backends

SIZES = (1, 8, 64, 512, 4096)


def _background(engine: Engine, seed_jobs: int = 1200) -> None:
    """A half-loaded cluster: mixed jobs, deterministic."""
    sizes = [1, 2, 4, 8, 8, 8, 16, 64, 256]
    for i in range(seed_jobs):
        engine.place(Job(f"bg-{i}", sizes[i % len(sizes)], min_cap_w=400))


def time_pairs(engine: Engine, gpus: int, pairs: int, repeats: int) -> tuple[float, list]:
    """Median pairs/s over ``repeats`` runs of ``pairs`` place+release, and the placements."""
    jobs = [Job(f"bench-{gpus}-{i}", gpus) for i in range(pairs)]
    place, release = engine.place, engine.release
    rates, seen = [], []
    for _ in range(repeats):
        seen = []
        start = time.perf_counter()
        for job in jobs:
            p = place(job)
            if p is not None:
                release(job.id)
            seen.append(p)
        rates.append(pairs / (time.perf_counter() - start))
    return statistics.median(rates), seen


def run(pairs_by_backend: dict[str, int], repeats: int) -> dict[str, dict[str, float]]:
    cluster = Cluster.preset("colossus-100k")
    results: dict[str, dict[str, float]] = {}
    observed: dict[str, dict[int, list]] = {}
    for backend in [b for b in ("cython", "python") if b in available_backends()]:
        engine = Engine(cluster, backend=backend)
        _background(engine)
        results[backend] = {}
        observed[backend] = {}
        for gpus in SIZES:
            pairs = max(5, pairs_by_backend[backend] // max(1, gpus // 8))
            rate, seen = time_pairs(engine, gpus, pairs, repeats)
            results[backend][str(gpus)] = round(rate, 1)
            observed[backend][gpus] = seen[:5]
    if "cython" in results and "python" in results:
        for gpus in SIZES:
            if observed["cython"][gpus] != observed["python"][gpus]:
                raise SystemExit(f"backends disagree on {gpus}-GPU jobs; not a fair comparison")
        results["ratio"] = {g: round(results["cython"][g] / results["python"][g], 1)
                            for g in results["cython"]}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--pairs", type=int, default=20000, help="pairs per size (cython)")
    parser.add_argument("--python-pairs", type=int, default=2000, help="pairs per size (python)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results = run({"cython": args.pairs, "python": args.python_pairs}, args.repeats)
    if args.json:
        print(json.dumps(results))
        return 0
    print("place+release pairs/s on colossus-100k (half loaded), median of "
          f"{args.repeats} runs")
    print(f"{'GPUs/job':>9}{'cython':>14}{'python':>12}{'ratio':>9}")
    for gpus in map(str, SIZES):
        row = [results.get(b, {}).get(gpus) for b in ("cython", "python", "ratio")]
        print(f"{gpus:>9}" + "".join(f"{v:>14,.0f}" if i == 0 else f"{v:>12,.0f}" if i == 1
                                     else f"{v:>8.1f}x" for i, v in enumerate(row)
                                     if v is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
