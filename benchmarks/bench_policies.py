"""Policy quality: every policy on every workload, against the fluid bound.

Workloads (the same workload builder as ``gpusched simulate``, on colossus-100k at 90 MW):

* ``default``: the bundled ms-itp-2021 cluster04 window with frontier gangs (the
  default ``gpusched simulate``);
* ``synthetic/s0..s2``: the LLM-era mix (``--trace synthetic``) with seeds 0, 1, 2;
* ``itp/clusterNN``: each ms-itp-2021 cluster in ``$GPUSCHED_TRACES/ms-itp-2021``
  (or ``$GPUSCHED_TRACES``), scaled like the default;
* ``philly``: Philly VC 103959 (``philly-vc103959/philly_103959.csv``), scaled alike.

Shared traces that are absent are skipped, and the run says which.  For each
workload and policy it prints delivered GPU-hours x s, the fraction of the fluid
bound (overall, and over the saturated part), GPU utilisation, mean s(cap) of busy
GPUs, mean fragmented GPUs and the frontier gangs' mean start delay; then the margin
of ``optimize`` over the best other power-aware policy.  It also runs the default
simulation twice and compares the two report.json texts byte for byte (wall times
taken out).

    python benchmarks/bench_policies.py            # everything (about 15 min)
    python benchmarks/bench_policies.py --quick    # small site, short runs (CI smoke)
    python benchmarks/bench_policies.py --json out.json

A benchmark, not a test: it asserts no time.  It exits 1 if the determinism check
fails, and 2 if optimize delivers less than the best of fifo and backfill anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

# the checkout this file is in, before any installed gpusched
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpusched import Cluster  # noqa: E402
from gpusched.bound import FluidBound  # noqa: E402
from gpusched.simulate import simulate  # noqa: E402
from gpusched.simulate.cli import build_workload  # noqa: E402

POLICIES = ("optimize", "fifo", "backfill", "oblivious")
RIVALS = ("fifo", "backfill")   # power-aware policies optimize must match or beat
# Where the ms-itp-2021 and Philly traces are unpacked (by default shared/traces beside
# the checkout); absent traces are skipped and named.
TRACES_DIR = Path(os.environ.get("GPUSCHED_TRACES",
                                 Path(__file__).resolve().parents[2] / "shared" / "traces"))
ITP_CLUSTERS = ("cluster01", "cluster02", "cluster03", "cluster04", "cluster05", "cluster10")


def workloads(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """(workloads to run, what was skipped and why)."""
    out: list[dict[str, Any]] = [{"name": "default", "trace": "itp-cluster04-14d", "seed": 0}]
    seeds = (0,) if quick else (0, 1, 2)
    out += [{"name": f"synthetic/s{s}", "trace": "synthetic", "seed": s} for s in seeds]
    skipped: list[str] = []
    itp = TRACES_DIR / "ms-itp-2021"
    for name in ITP_CLUSTERS[-1:] if quick else ITP_CLUSTERS:
        path = itp / f"{name}.csv"
        if path.is_file():
            out.append({"name": f"itp/{name}", "trace": str(path), "seed": 0})
        else:
            skipped.append(f"itp/{name}: {path} not found")
    philly = TRACES_DIR / "philly-vc103959" / "philly_103959.csv"
    if philly.is_file():
        out.append({"name": "philly", "trace": str(philly), "seed": 0})
    else:
        skipped.append(f"philly: {philly} not found")
    return out, skipped


def site(quick: bool) -> Cluster:
    if quick:
        # a 1/16 colossus (one hall's pods) keeps every kind of row and runs in seconds
        return Cluster.preset("colossus-100k", scale=1 / 16)
    return Cluster.preset("colossus-100k", facility_mw=90)


def frontier_delay_h(result: Any) -> tuple[float | None, int]:
    """Mean start delay of the frontier gangs (h; unstarted ones count to the horizon),
    and how many never started."""
    delays, unstarted = [], 0
    for job in result.jobs:
        if not job["id"].startswith("frontier-"):
            continue
        if job["start_s"] is None:
            unstarted += 1
            delays.append(result.horizon_s - job["submit_s"])
        else:
            delays.append(job["start_s"] - job["submit_s"])
    return (sum(delays) / len(delays) / 3600 if delays else None), unstarted


def run_workload(cluster: Cluster, spec: dict[str, Any], hours: float) -> dict[str, Any]:
    horizon_s = hours * 3600
    jobs, info = build_workload(cluster, trace=spec["trace"], horizon_s=horizon_s,
                                seed=spec["seed"], skip_bad=True)
    bound = FluidBound(cluster)
    rows: dict[str, Any] = {}
    for policy in POLICIES:
        t = time.perf_counter()
        r = simulate(cluster, jobs, policy, horizon_s=horizon_s, keep_jobs=True, bound=bound)
        tot = r.metrics["totals"]
        delay, unstarted = frontier_delay_h(r)
        rows[policy] = {
            "delivered_gpu_hours": tot["delivered_gpu_hours"],
            "fraction_of_bound": tot["fraction_of_bound"],
            "fraction_of_bound_saturated": tot["fraction_of_bound_saturated"],
            "utilisation": tot["utilisation"], "mean_speed": tot["mean_speed"],
            "fragmented_gpus_mean": tot["fragmented_gpus_mean"],
            "frontier_delay_h": None if delay is None else round(delay, 2),
            "frontier_unstarted": unstarted,
            "row_seconds_violated": r.metrics["violations"]["row_seconds"],
            "wall_s": round(time.perf_counter() - t, 1)}
    best_rival = max(RIVALS, key=lambda p: rows[p]["delivered_gpu_hours"])
    rival = rows[best_rival]["delivered_gpu_hours"]
    margin = rows["optimize"]["delivered_gpu_hours"] / rival - 1 if rival else 0.0
    return {"workload": spec["name"], "jobs": len(jobs), "info": info, "policies": rows,
            "best_rival": best_rival, "optimize_margin": round(margin, 4)}


def determinism(cluster: Cluster, hours: float, out: Path) -> bool:
    """Run the default simulation twice through the CLI; compare report.json texts."""
    from gpusched.cli import main

    texts = []
    for i in (1, 2):
        d = out / f"determinism-{i}"
        argv = ["simulate", "--no-progress", "--no-plots", "--out", str(d),
                "--hours", f"{hours:g}", "--policy", ",".join(POLICIES)]
        if cluster.name != Cluster.preset("colossus-100k").name:
            spec = out / "site.json"
            spec.write_text(json.dumps(cluster.to_dict()))
            argv += ["--cluster", str(spec)]
        with open(os.devnull, "w") as sink:
            saved, sys.stdout = sys.stdout, sink
            try:
                main(argv)
            finally:
                sys.stdout = saved
        texts.append(strip_wall((d / "report.json").read_text()))
    return texts[0] == texts[1]


def strip_wall(text: str) -> str:
    """report.json without its wall and solver times (the only machine-dependent keys)
    and without its ``run`` block (when, where to and by which command line it ran)."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()
                    if k not in ("wall_s", "solver_time_s")}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    report = json.loads(text)
    report.pop("run", None)
    return json.dumps(clean(report), indent=1)


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def table(results: list[dict[str, Any]]) -> str:
    head = ("| workload | policy | delivered GPU-h x s | of bound (saturated) | util. | "
            "mean s | frag. GPUs | frontier delay h | optimize margin |")
    lines = [head, "|" + "---|" * 9]
    for res in results:
        for policy, row in res["policies"].items():
            frac = (f"{fmt(row['fraction_of_bound'], '.1%')} "
                    f"({fmt(row['fraction_of_bound_saturated'], '.1%')})")
            delay = fmt(row["frontier_delay_h"], ".2f")
            if row["frontier_unstarted"]:
                delay += f" ({row['frontier_unstarted']} unstarted)"
            if row["row_seconds_violated"]:
                policy += " (breaks rows)"
            margin = (f"{res['optimize_margin']:+.1%} vs {res['best_rival']}"
                      if policy == "optimize" else "")
            lines.append(f"| {res['workload']} | {policy} | "
                         f"{fmt(row['delivered_gpu_hours'], ',.0f')} | {frac} | "
                         f"{fmt(row['utilisation'], '.1%')} | {fmt(row['mean_speed'], '.3f')} | "
                         f"{fmt(row['fragmented_gpus_mean'], ',.0f')} | {delay} | {margin} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1/16 of colossus-100k, 8 simulated hours, one synthetic seed, "
                             "the smallest ITP cluster (a CI smoke run)")
    parser.add_argument("--hours", type=float, default=None,
                        help="simulated hours per run (default 16, or 8 with --quick)")
    parser.add_argument("--only", default=None, help="run only workloads whose name has this")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--out", default="bench-policies-out",
                        help="directory for the determinism check's reports")
    args = parser.parse_args(argv)
    hours = args.hours or (8.0 if args.quick else 16.0)
    cluster = site(args.quick)
    specs, skipped = workloads(args.quick)
    if args.only:
        specs = [s for s in specs if args.only in s["name"]]
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    results = []
    for spec in specs:
        t = time.perf_counter()
        results.append(run_workload(cluster, spec, hours))
        print(f"{spec['name']}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    print(f"{cluster.name}: {cluster.num_gpus:,} GPUs, {hours:g} simulated hours per run\n")
    print(table(results))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    same = determinism(cluster, hours, out)
    print(f"\ndeterminism: default simulation twice, report.json "
          f"{'identical' if same else 'DIFFERENT'} (wall times excluded)")
    losses = [r["workload"] for r in results if r["optimize_margin"] < 0]
    if losses:
        print(f"optimize delivers less than the best of fifo and backfill on: "
              f"{', '.join(losses)}")
    if skipped:
        print(f"skipped: {'; '.join(skipped)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cluster": cluster.name, "hours": hours,
                                               "results": results, "skipped": skipped,
                                               "deterministic": same}, indent=1) + "\n")
    return 1 if not same else (2 if losses else 0)


if __name__ == "__main__":
    sys.exit(main())
