"""Preemption plans and power-aware backfill (issue 16), measured.

1. ``plan_preemption`` for a 4,096-GPU gang (priority 5, min cap 500 W) on colossus-100k
   filled to 95 % of its GPUs with power binding (jobs of 1..256 GPUs placed at most
   575 W, two of three rigid, priorities 0..2, then small jobs released down to 95 %):
   p50 and p90 over repetitions, both twins side by side, and the plan's cost.  Target:
   p50 <= 10 ms.
2. The backfill comparison: power-aware ``backfill`` against ``fifo``, the GPU-only
   ``backfill-gpu`` and ``backfill-preempt``, on the default simulation (ITP cluster04
   with two frontier gangs) and on the synthetic LLM-era mix, over seeds 0, 1, 2 (one
   seed with --quick, on a small site): work delivered (GPU-hours x s) and the frontier
   gangs' start delay (mean wait of the ``frontier`` class).

    python benchmarks/bench_preempt.py            # full (several minutes)
    python benchmarks/bench_preempt.py --quick    # CI smoke run
    python benchmarks/bench_preempt.py --json out.json
    python benchmarks/bench_preempt.py --plans-only    # the plan timing alone
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpusched import Cluster, Engine, Job, available_backends  # noqa: E402
from gpusched.plan.preempt import plan_preemption  # noqa: E402
from gpusched.simulate import simulate  # noqa: E402
from gpusched.simulate.cli import build_workload  # noqa: E402

BACKFILLS = ("backfill", "fifo", "backfill-gpu", "backfill-preempt")


def full_site(cluster: Cluster, backend: str, target: float = 0.95) -> tuple[Engine, dict]:
    """The 95 %-full, power-bound state; the seconds since checkpoint of each job."""
    engine = Engine(cluster, backend=backend)
    sizes = (1, 2, 4, 2, 4, 8, 16, 64, 256)
    i = refused = 0
    while refused < 50:
        job = Job(f"bg-{i}", sizes[i % len(sizes)], min_cap_w=575 if i % 3 else 250,
                  priority=i % 3)
        refused = 0 if engine.place_at_most(job, 575) is not None else refused + 1
        i += 1
    rng = random.Random(1)
    small = [p.job_id for p in engine.placements() if p.gpus <= 4]
    rng.shuffle(small)
    while engine.gpus_in_use() > target * cluster.num_gpus and small:
        engine.release(small.pop())
    since = {p.job_id: float(rng.randrange(3600)) for p in engine.placements()}
    return engine, since


def bench_plan(cluster_name: str, gang: int, reps: int) -> list[dict[str, Any]]:
    cluster = Cluster.preset(cluster_name)
    job = Job("frontier", gang, priority=5, min_cap_w=500)
    rows = []
    for backend in [b for b in ("cython", "python") if b in available_backends()]:
        engine, since = full_site(cluster, backend)
        times = []
        plan = None
        for _ in range(reps):
            t = time.perf_counter()
            plan = plan_preemption(engine, job, since_checkpoint_s=since)
            times.append(time.perf_counter() - t)
        assert plan is not None
        times.sort()
        rows.append({"backend": backend, "cluster": cluster_name, "gang_gpus": gang,
                     "busy_fraction": round(engine.gpus_in_use() / cluster.num_gpus, 4),
                     "running_jobs": len(engine), "p50_ms": round(1e3 * statistics.median(times), 2),
                     "p90_ms": round(1e3 * times[int(0.9 * (len(times) - 1))], 2),
                     "victims": len(plan.victims), "cap_downs": len(plan.cap_changes),
                     "cost": list(plan.cost), "method": plan.method,
                     "cap_w": plan.placement.cap_w})
        # the plan applies, and the gang then runs
        plan.apply()
        assert "frontier" in engine
    return rows


def bench_backfill(quick: bool) -> list[dict[str, Any]]:
    cluster = Cluster.preset("colossus-array" if quick else "colossus-100k")
    hours = 4.0 if quick else 16.0
    seeds = (0,) if quick else (0, 1, 2)
    rows = []
    for workload, trace in (("default", "itp-cluster04-14d"), ("synthetic", "synthetic")):
        for seed in seeds:
            jobs, _info = build_workload(cluster, trace=trace, horizon_s=hours * 3600,
                                         seed=seed)
            for policy in BACKFILLS:
                t = time.perf_counter()
                result = simulate(cluster, jobs, policy, horizon_s=hours * 3600)
                wall = time.perf_counter() - t
                m = result.metrics
                frontier = m["jobs"]["by_class"].get("frontier", {})
                info = m["policy_info"]
                rows.append({"workload": workload, "seed": seed, "policy": policy,
                             "delivered_gpu_hours": m["totals"]["delivered_gpu_hours"],
                             "utilisation": m["totals"]["utilisation"],
                             "frontier_started": frontier.get("started"),
                             "frontier_wait_mean_h": (frontier.get("wait") or {}).get("mean_h"),
                             "evictions": info.get("evictions"),
                             "lost_gpu_h": info.get("lost_gpu_h"),
                             "wall_s": round(wall, 1)})
                print(f"  {workload:9s} seed {seed} {policy:16s} "
                      f"{rows[-1]['delivered_gpu_hours']:>12,.1f} GPU-h x s  frontier wait "
                      f"{rows[-1]['frontier_wait_mean_h']} h  ({rows[-1]['wall_s']} s)",
                      flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument("--plans-only", action="store_true",
                        help="only the plan_preemption timing (no simulations)")
    args = parser.parse_args(argv)
    if args.quick:
        plans = bench_plan("colossus-array", 64, reps=5)
    else:
        plans = bench_plan("colossus-100k", 4096, reps=31)
    print("plan_preemption (target p50 <= 10 ms for 4,096 GPUs on colossus-100k)")
    for row in plans:
        print(f"  {row['backend']:7s} {row['cluster']} gang {row['gang_gpus']} GPUs, "
              f"{row['busy_fraction']:.1%} busy, {row['running_jobs']} jobs: p50 "
              f"{row['p50_ms']} ms, p90 {row['p90_ms']} ms; {row['victims']} victims, "
              f"{row['cap_downs']} cap-downs, cost {row['cost']}, {row['method']}")
    backfill: list[dict[str, Any]] = []
    if not args.plans_only:
        print("backfill comparison (delivered GPU-hours x s; frontier gangs' mean wait)")
        backfill = bench_backfill(args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps({"plans": plans, "backfill": backfill},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
