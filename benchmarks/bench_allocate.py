"""Cluster-wide allocation (scipy MILP, HiGHS) against greedy FIFO placement.

Three parts:

1. Solve time against queue length (10, 100, 1000 jobs) and cluster size
   (colossus-100k at scale 0.25 and 1), with the method used and the gap to the
   solver's bound.
2. Gap of the reductions: the LP-relax-and-fix path against the full MILP, and pod/job
   class aggregation against the unaggregated model, on instances small enough for the
   full solve.
3. Delivered throughput, sum weight * gpus * s(cap) of what ends up placed, on a binding
   facility limit: colossus-100k at 90 MW with a queue asking for about 120 MW at full
   power (sum over jobs of their nodes at 8.4 kW).  Baselines, each FIFO through the
   whole queue with ``engine.place``: at full cap (rigid), with the engine stepping down
   to ``min_cap_w`` (highest feasible cap), and at the lowest cap (``min_cap_w``).

    python benchmarks/bench_allocate.py          # tables
    python benchmarks/bench_allocate.py --json   # one JSON object

A benchmark, not a test: it asserts no time.  It exits non-zero if allocation delivers
less than a greedy baseline on any instance, since that is the claim it measures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

from gpusched import Cluster, Engine, Job
from gpusched.plan import allocate, apply, rebalance_caps

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# mostly mid-size jobs, a tail of very large ones (a 100k-GPU site's queue)
SIZE_WEIGHTS = (3, 2, 2, 8, 8, 8, 10, 12, 12, 10, 6, 3, 2, 1)
NODE_FULL_W = 2800 + 8 * 700


def make_queue(n: int, seed: int) -> list[Job]:
    """``n`` jobs of 1 to 8,192 GPUs; caps flexible down to 350-600 W, some rigid."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        gpus = rng.choices(SIZES, SIZE_WEIGHTS)[0]
        min_cap = rng.choice([350, 400, 450, 500, 600, 700])
        jobs.append(Job(f"q{seed}-{i}", gpus, min_cap_w=min_cap,
                        weight=rng.choice([1.0, 1.0, 1.0, 2.0]),
                        sensitivity=rng.choice([0.8, 1.0, 1.25, 1.5, 2.0])))
    return jobs


def ask_w(jobs: list[Job]) -> float:
    """Full-power draw of the queue: its GPUs' nodes at 8.4 kW each."""
    return sum(job.gpus / 8 * NODE_FULL_W for job in jobs)


def queue_asking(target_w: float, seed: int) -> list[Job]:
    """Jobs from make_queue's distribution until they ask for ``target_w``."""
    jobs = make_queue(20_000, seed)
    out, total = [], 0.0
    for job in jobs:
        if total >= target_w:
            break
        out.append(job)
        total += job.gpus / 8 * NODE_FULL_W
    return out


def delivered(placements: dict[str, Any] | list, jobs: dict[str, Job]) -> float:
    items = placements.values() if isinstance(placements, dict) else placements
    return sum(jobs[p.job_id].weight * jobs[p.job_id].gpus
               * jobs[p.job_id].throughput(p.cap_w, 700)   # colossus: H100, 700 W TDP
               for p in items if p is not None)


def greedy(cluster: Cluster, queue: list[Job], mode: str,
           keep: list | None = None) -> tuple[float, int, float]:
    """FIFO ``engine.place`` over the whole queue; returns (throughput, placed, seconds)."""
    engine = Engine(cluster)
    start = time.perf_counter()
    placed = []
    for job in queue:
        if mode == "full":
            job = job.replace(min_cap_w=job.max_cap_w)
        elif mode == "min":
            job = job.replace(max_cap_w=job.min_cap_w)
        placed.append(engine.place(job))
    seconds = time.perf_counter() - start
    if keep is not None:
        keep.append(engine)
    jobs = {j.id: j for j in queue}
    return delivered(placed, jobs), sum(p is not None for p in placed), seconds


def solve_times(queue_lengths: list[int], scales: list[float], time_limit_s: float) -> list[dict]:
    rows = []
    for scale in scales:
        cluster = Cluster.preset("colossus-100k", scale=scale)
        engine = Engine(cluster)
        for n in queue_lengths:
            queue = make_queue(n, seed=n)
            a = allocate(engine, queue, time_limit_s=time_limit_s)
            rows.append({"scale": scale, "gpus": cluster.num_gpus, "jobs": n,
                         "method": a.method, "status": a.status,
                         "solve_time_s": round(a.solve_time_s, 3), "gap": a.gap,
                         "admitted": len(a.admitted), "variables": a.stats.get("variables"),
                         "pod_classes": a.stats.get("pod_classes"),
                         "job_classes": a.stats.get("job_classes")})
    return rows


def reduction_gaps(seeds: list[int]) -> list[dict]:
    """LP-and-fix vs the full MILP, and classes vs none, where the full solve finishes."""
    rows = []
    cluster = Cluster.preset("colossus-100k", scale=0.25)
    for seed in seeds:
        engine = Engine(cluster)
        queue = queue_asking(0.25 * 120e6, seed)
        full = allocate(engine, queue, time_limit_s=20, mip_rel_gap=1e-4,
                        exact_max_vars=10**9)
        fix = allocate(engine, queue, time_limit_s=1, exact_max_vars=0)
        rows.append({"instance": f"colossus x0.25, {len(queue)} jobs, seed {seed}",
                     "reduction": "lp-fix vs full MILP",
                     "full": round(full.objective, 2), "reduced": round(fix.objective, 2),
                     "loss": (full.objective - fix.objective) / max(full.objective, 1e-9),
                     "full_s": round(full.solve_time_s, 3),
                     "reduced_s": round(fix.solve_time_s, 3),
                     "full_status": full.status})
    small = Cluster.preset("colossus-100k", scale=0.05, facility_mw=80)
    for seed in seeds:
        engine = Engine(small)
        queue = [j for j in make_queue(200, seed) if j.gpus <= 512][:25]
        # the per-pod model is full of symmetric optima: a small gap takes it long
        exact = allocate(engine, queue, time_limit_s=20, mip_rel_gap=1e-4, aggregate=False,
                         exact_max_vars=10**9)
        agg = allocate(engine, queue, time_limit_s=20, mip_rel_gap=1e-4,
                       exact_max_vars=10**9)
        rows.append({"instance": f"colossus x0.05 (80 MW), {len(queue)} jobs, seed {seed}",
                     "reduction": "pod+job classes vs per-pod, per-job",
                     "full": round(exact.objective, 2), "reduced": round(agg.objective, 2),
                     "loss": (exact.objective - agg.objective) / max(exact.objective, 1e-9),
                     "full_s": round(exact.solve_time_s, 3),
                     "reduced_s": round(agg.solve_time_s, 3), "full_status": exact.status})
    return rows


def versus_greedy(seeds: list[int], facility_mw: float, ask_mw: float,
                  time_limit_s: float) -> list[dict]:
    cluster = Cluster.preset("colossus-100k", facility_mw=facility_mw)
    rows = []
    for seed in seeds:
        queue = queue_asking(ask_mw * 1e6, seed)
        jobs = {j.id: j for j in queue}
        engine = Engine(cluster)
        a = allocate(engine, queue, time_limit_s=time_limit_s)
        start = time.perf_counter()
        placed = apply(engine, a)
        apply_s = time.perf_counter() - start
        ours = delivered(placed, jobs)
        row = {"seed": seed, "jobs": len(queue), "ask_mw": round(ask_w(queue) / 1e6, 1),
               "allocate": round(ours, 1), "method": a.method, "gap": a.gap,
               "solve_time_s": round(a.solve_time_s, 3), "apply_s": round(apply_s, 3),
               "admitted": len(a.admitted), "placed": len(placed),
               "refused_at_apply": len(a.admitted) - len(placed),
               "power_mw": round(engine.total_power_w() / 1e6, 2)}
        for mode in ("full", "flex", "min"):
            kept: list = []
            value, count, _ = greedy(cluster, queue, mode, kept)
            row[f"greedy_{mode}"] = round(value, 1)
            row[f"greedy_{mode}_placed"] = count
            row[f"margin_{mode}"] = (ours - value) / max(value, 1e-9)
            if mode == "flex":
                # the cap LP on greedy's placement: what re-balancing alone recovers,
                # and which limit a kW is worth most at
                plan = rebalance_caps(kept[0])
                row["rebalance_greedy_flex"] = round(plan.objective, 1)
                row["rebalance_s"] = round(plan.solve_time_s, 3)
                row["binding"] = plan.binding[:3]
                row["price_per_kw"] = [round(plan.duals[n], 4) for n in plan.binding[:3]]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seeds", type=int, default=3, help="instances per comparison")
    parser.add_argument("--time-limit", type=float, default=1.0,
                        help="HiGHS time limit per MILP (s)")
    parser.add_argument("--quick", action="store_true",
                        help="skip the reduction gaps, one seed, queues of 10 and 100 (CI smoke)")
    args = parser.parse_args(argv)
    seeds = list(range(1 if args.quick else args.seeds))
    times = solve_times([10, 100] if args.quick else [10, 100, 1000], [0.25, 1.0],
                        args.time_limit)
    gaps = [] if args.quick else reduction_gaps(seeds[:2])
    versus = versus_greedy(seeds, facility_mw=90, ask_mw=120, time_limit_s=args.time_limit)
    worst = min(min(r["margin_full"], r["margin_flex"], r["margin_min"]) for r in versus)
    if args.json:
        print(json.dumps({"solve_times": times, "reduction_gaps": gaps,
                          "versus_greedy": versus, "worst_margin": worst}))
    else:
        print("Solve time against queue length and cluster size (empty cluster, "
              f"time limit {args.time_limit} s per MILP)")
        print(f"{'GPUs':>8}{'jobs':>6}{'method':>24}{'status':>11}{'vars':>7}"
              f"{'time s':>8}{'gap %':>8}{'admitted':>9}")
        for r in times:
            print(f"{r['gpus']:>8}{r['jobs']:>6}{r['method']:>24}{r['status']:>11}"
                  f"{r['variables']:>7}{r['solve_time_s']:>8.2f}{100 * r['gap']:>8.3f}"
                  f"{r['admitted']:>9}")
        if gaps:
            print("\nGap of the reductions against the full solve (objective lost)")
            for r in gaps:
                print(f"  {r['instance']}: {r['reduction']}: {r['reduced']:,.1f} vs "
                      f"{r['full']:,.1f} ({100 * r['loss']:.3f}% lost; "
                      f"{r['reduced_s']:.2f} s vs {r['full_s']:.2f} s, full {r['full_status']})")
        print("\nDelivered throughput (GPU-equivalents) on colossus-100k at 90 MW, queue "
              "asking ~120 MW")
        print(f"{'seed':>4}{'jobs':>6}{'ask MW':>8}{'allocate':>11}{'greedy full':>13}"
              f"{'greedy flex':>13}{'greedy min':>12}{'margin (worst)':>16}{'solve s':>9}"
              f"{'gap %':>7}")
        for r in versus:
            m = min(r["margin_full"], r["margin_flex"], r["margin_min"])
            print(f"{r['seed']:>4}{r['jobs']:>6}{r['ask_mw']:>8}{r['allocate']:>11,.0f}"
                  f"{r['greedy_full']:>13,.0f}{r['greedy_flex']:>13,.0f}"
                  f"{r['greedy_min']:>12,.0f}{100 * m:>15.2f}%{r['solve_time_s']:>9.2f}"
                  f"{100 * r['gap']:>7.3f}")
        print(f"\nworst margin over every greedy baseline: {100 * worst:+.2f}%")
        print("\nCap LP (rebalance_caps) on greedy-flex's placement, placement fixed:")
        for r in versus:
            prices = ", ".join(f"{n}: {p:.3g} GPU-equivalents of throughput per kW"
                               for n, p in zip(r["binding"], r["price_per_kw"]))
            print(f"  seed {r['seed']}: {r['greedy_flex']:,.0f} -> "
                  f"{r['rebalance_greedy_flex']:,.0f} in {r['rebalance_s']:.2f} s; "
                  f"{prices or 'nothing binds'}")
    return 0 if worst >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
