"""Sweep throughput: runs per hour on 1 and 2 workers, local processes and Dask.

The same sweep (colossus-100k at 1/32, 3,584 GPUs, the synthetic mix, 4 simulated
hours; fifo and backfill over facility limits and seeds) runs four times, each into a
fresh directory: a local process pool of 1 and of 2 workers, and a Dask LocalCluster
of 1 and of 2 single-thread workers.  It prints runs per hour for each, the ratio of 2
workers to 1 (what a second machine's worth of workers buys), Dask's start-up, and
Dask's per-run overhead against local processes at the same worker count
((Dask's wall - local wall) / runs, start-up excluded).  It also prints what a run
ships (the task in, the answer out, pickled) and the workers' peak memory.

``--full`` also runs the default-size run (colossus-100k, 100,352 GPUs, the bundled
trace, 16 h, optimize and fifo) through the sweep on one worker: its wall time, its
worker's peak memory and its answer's size are the numbers to plan a cluster with.

    python benchmarks/bench_sweep.py            # 24 runs per configuration
    python benchmarks/bench_sweep.py --quick    # 8 runs, 1 and 2 workers (CI smoke)
    python benchmarks/bench_sweep.py --full     # plus the default-size runs

A benchmark, not a test: it asserts no time.  It exits 1 if any run failed or if the
local and Dask tables differ (wall-clock columns left out).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpusched.sweep import parse_spec, run  # noqa: E402
from gpusched.sweep.executors import executor_for  # noqa: E402
from gpusched.sweep.runner import run_one  # noqa: E402
from gpusched.sweep.tables import WALL_COLUMNS  # noqa: E402


def small_spec(runs: int) -> dict[str, Any]:
    mws = [70, 80, 90, 100, 110, 120]
    per_mw = 2 * 2  # policies x seeds
    count = max(1, runs // per_mw)
    return {"sweep": {"name": "bench", "replications": 2, "timeout_s": 600},
            "base": {"cluster": "colossus-100k", "cluster_scale": 0.03125,
                     "trace": "synthetic", "hours": 4, "frontier": 0},
            "grid": {"policy": ["fifo", "backfill"], "facility_mw": mws[:count]}}


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in WALL_COLUMNS} for r in rows]


def measure(spec: dict[str, Any], dask: str | None, workers: int, root: Path
            ) -> dict[str, Any]:
    started = time.perf_counter()
    with executor_for(dask, workers) as factory:
        executor = factory()
        ready = time.perf_counter() - started
        if dask is None:
            # a spawned pool starts its workers at the first task: start them now,
            # so that the local and Dask runs are timed from ready workers alike
            list(executor.map(abs, range(workers)))
            ready = time.perf_counter() - started
        t0 = time.perf_counter()
        out = root / f"{'dask' if dask else 'processes'}-{workers}"
        result = run(spec, out, executor=executor, plots=False)
        runs_s = time.perf_counter() - t0
    n = len(result.rows)
    sims = [r["wall_s"] for r in result.rows if r["wall_s"] is not None]
    return {"executor": "dask LocalCluster" if dask else "local processes",
            "workers": workers, "runs": n, "failed": len(result.failed),
            "start_s": round(ready, 2), "runs_s": round(runs_s, 2),
            "runs_per_hour": round(n / runs_s * 3600),
            "mean_run_wall_s": round(sum(sims) / len(sims), 3) if sims else None,
            "worker_maxrss_mb": max((r["worker_maxrss_mb"] or 0) for r in result.rows),
            "rows": result.rows}


def shipped_bytes(spec: dict[str, Any]) -> tuple[int, int]:
    """Pickled sizes of one task and of its answer (what crosses the wire per run)."""
    first = parse_spec(spec).runs()[0]
    task = {"id": first.id, "config": first.config, "version": first.identity["gpusched"],
            "timeout_s": 600.0, "cluster_spec": None}
    return len(pickle.dumps(task)), len(pickle.dumps(run_one(task)))


def full_size(root: Path) -> dict[str, Any]:
    spec = {"sweep": {"name": "full", "timeout_s": 3600},
            "grid": {"policy": ["optimize", "fifo"]}}
    t0 = time.perf_counter()
    result = run(spec, root / "full", workers=1, plots=False)
    wall = time.perf_counter() - t0
    sizes = [sum(f.stat().st_size for f in (root / "full" / "runs" / r["run"]).iterdir())
             for r in result.rows]
    return {"runs": [(r["policy"], r["status"], r["wall_s"], r["worker_maxrss_mb"],
                      r["jobs"]) for r in result.rows],
            "sweep_wall_s": round(wall, 1), "run_dir_bytes": sizes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 runs per configuration")
    parser.add_argument("--full", action="store_true", help="also the default-size runs")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args()
    runs = args.runs or (8 if args.quick else 24)
    spec = small_spec(runs)
    try:
        import distributed  # noqa: F401
        has_dask = True
    except ImportError:
        has_dask = False
    out: dict[str, Any] = {"sweep": spec, "results": []}
    code = 0
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        results = [measure(spec, None, 1, root), measure(spec, None, 2, root)]
        if has_dask:
            results += [measure(spec, "local", 1, root), measure(spec, "local", 2, root)]
        task_b, answer_b = shipped_bytes(spec)
        print(f"sweep of {results[0]['runs']} runs: colossus-100k x1/32 (3,584 GPUs), "
              f"synthetic, 4 h; fifo and backfill; mean run "
              f"{results[0]['mean_run_wall_s']} s on 1 local worker")
        print(f"{'executor':<20}{'workers':>8}{'start s':>9}{'runs s':>9}{'runs/hour':>11}"
              f"{'x 1 worker':>12}{'peak MB':>9}")
        base: dict[str, float] = {}
        for r in results:
            base.setdefault(r["executor"], r["runs_per_hour"])
            ratio = r["runs_per_hour"] / base[r["executor"]]
            print(f"{r['executor']:<20}{r['workers']:>8}{r['start_s']:>9.2f}"
                  f"{r['runs_s']:>9.2f}{r['runs_per_hour']:>11,}{ratio:>12.2f}"
                  f"{r['worker_maxrss_mb']:>9.0f}")
            if r["failed"]:
                code = 1
        if has_dask:
            for w in (1, 2):
                loc = next(r for r in results if r["executor"] == "local processes"
                           and r["workers"] == w)
                dsk = next(r for r in results if r["executor"] != "local processes"
                           and r["workers"] == w)
                per_run = (dsk["runs_s"] - loc["runs_s"]) / loc["runs"]
                same = _comparable(loc["rows"]) == _comparable(dsk["rows"])
                print(f"Dask overhead with {w} worker(s): {per_run * 1e3:+.0f} ms per run "
                      f"(start-up {dsk['start_s']:.2f} s once); tables identical: {same}")
                code = code or (0 if same else 1)
        else:
            print("Dask not installed (pip install 'gpusched[sweep]'): local processes only")
        print(f"shipped per run: task {task_b:,} B in, answer {answer_b:,} B out (pickled)")
        out.update(task_bytes=task_b, answer_bytes=answer_b,
                   results=[{k: v for k, v in r.items() if k != "rows"} for r in results])
        if args.full:
            full = full_size(root)
            print(f"default-size runs (colossus-100k, 16 h) on 1 worker: "
                  f"{full['runs']}; run directories {full['run_dir_bytes']} B")
            out["full"] = full
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
