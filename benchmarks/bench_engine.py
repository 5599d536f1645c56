"""Place+release throughput on colossus-100k by job size, Cython core against the twin.

For each job size (1, 8, 64, 512 and 4,096 GPUs) it times a stream of place+release pairs
on an engine that already holds a 30 % background of mixed jobs, on both backends, after
checking that they return identical placements, and prints pairs per second and the
ratio.  The backends are timed in alternating rounds and the ratio is the median of the
per-round ratios, so a drift in the machine's speed does not favour either one.
``bench_perf.py`` covers the rest of the performance targets.

    python benchmarks/bench_engine.py            # a table
    python benchmarks/bench_engine.py --json     # {"cython": {...}, "python": {...}, "ratio": {...}}

A benchmark, not a test: it asserts no time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_perf import BACKENDS, bench_pairs  # noqa: E402

from gpusched import Cluster  # noqa: E402

SIZES = (1, 8, 64, 512, 4096)


def run(cython_pairs: int, python_pairs: int, repeats: int) -> dict[str, dict[str, float]]:
    cluster = Cluster.preset("colossus-100k")
    results: dict[str, dict[str, float]] = {b: {} for b in BACKENDS}
    if len(BACKENDS) == 2:
        results["ratio"] = {}
    for gpus in SIZES:
        scale = max(1, gpus // 8)  # fewer pairs for bigger gangs
        counts = {"cython": max(20, cython_pairs // scale),
                  "python": max(20, python_pairs // scale)}
        r = bench_pairs(cluster, gpus, counts, load=0.3, repeats=repeats)
        for backend in BACKENDS:
            results[backend][str(gpus)] = r[backend]["pairs_per_s"]
        if "ratio" in r:
            results["ratio"][str(gpus)] = r["ratio"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--pairs", type=int, default=50_000, help="8-GPU pairs (cython)")
    parser.add_argument("--python-pairs", type=int, default=3_000, help="8-GPU pairs (python)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run that only checks the benchmark works (CI smoke)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.python_pairs, args.repeats = 200, 40, 1
    results = run(args.pairs, args.python_pairs, args.repeats)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"place+release pairs/s on colossus-100k (30 % loaded), median of {args.repeats} runs")
    print(f"{'GPUs/job':>9}" + "".join(f"{b:>14}" for b in results))
    for gpus in map(str, SIZES):
        print(f"{gpus:>9}" + "".join(f"{results[b][gpus]:>14,}" for b in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
