"""``gpusched simulate``: replay a trace on a site under one or more policies.

With no arguments it runs the embedded default: colossus-100k at 90 MW, the bundled
ms-itp-2021 cluster04 window (gangs x4, arrivals compressed to offer 1.6x the site's
GPUs), plus frontier pretraining gangs, over 16 simulated hours, under ``optimize`` and
``fifo`` side by side.  It writes ``report.json``, ``summary.md`` and PNGs to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..bound import FluidBound
from ..spec import PRESETS, Cluster
from ..errors import SpecError, TraceError
from . import SimulationResult, simulate
from .policies import POLICIES, make_policy
from .synthetic import frontier_gangs, synthetic_jobs
from .traces import (BUNDLED_TRACES, DEFAULT_TRACE, TraceJob, fit_load, load_trace,
                     offered_load_gpus, repeat_to_horizon)

__all__ = ["add_arguments", "run", "build_workload", "summary_table", "summary_markdown"]

DEFAULT_POLICIES = "optimize,fifo"
DEFAULT_HOURS = 16.0
DEFAULT_LOAD = 1.6
DEFAULT_GANG_SCALE = 4.0
DEFAULT_FRONTIER = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``gpusched simulate`` (every one has a default)."""
    parser.add_argument("--cluster", default="colossus-100k",
                        help=f"preset ({', '.join(sorted(PRESETS))}) or .toml/.json file "
                             "(default: colossus-100k)")
    parser.add_argument("--facility-mw", type=float, default=None,
                        help="facility IT limit in MW for the colossus-100k preset "
                             "(default 90)")
    parser.add_argument("--trace", default=DEFAULT_TRACE,
                        help=f"bundled trace ({', '.join(BUNDLED_TRACES)}), 'synthetic', or "
                             "a CSV path (ms-itp-2021 or Philly columns)")
    parser.add_argument("--policy", default=DEFAULT_POLICIES,
                        help=f"comma-separated policies from {', '.join(POLICIES)} "
                             f"(default: {DEFAULT_POLICIES})")
    parser.add_argument("--out", default="gpusched-out",
                        help="directory for report.json, summary.md and the PNGs")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the frontier gangs and of the synthetic workload")
    parser.add_argument("--load-scale", type=float, default=DEFAULT_LOAD,
                        help="offered load as a multiple of the cluster's GPUs: arrivals are "
                             f"compressed until the trace asks for that much (default "
                             f"{DEFAULT_LOAD})")
    parser.add_argument("--gang-scale", type=float, default=DEFAULT_GANG_SCALE,
                        help=f"multiply every trace gang size (default {DEFAULT_GANG_SCALE:g}; "
                             "real traces stop at 64 GPUs)")
    parser.add_argument("--frontier", type=int, default=DEFAULT_FRONTIER,
                        help="frontier pretraining gangs (16k-32k GPUs) added to the trace; "
                             "sizes above a third of the cluster are left out "
                             f"(default {DEFAULT_FRONTIER})")
    parser.add_argument("--hours", type=float, default=DEFAULT_HOURS,
                        help=f"simulated hours (default {DEFAULT_HOURS:g})")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad trace lines (and count them) instead of failing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="write no PNGs")


def build_workload(cluster: Cluster, *, trace: str = DEFAULT_TRACE, horizon_s: float,
                   load: float = DEFAULT_LOAD, gang_scale: float = DEFAULT_GANG_SCALE,
                   frontier: int = DEFAULT_FRONTIER, seed: int = 0,
                   skip_bad: bool = False) -> tuple[list[TraceJob], dict[str, Any]]:
    """The jobs of a run and a description of how they were made (for the report)."""
    info: dict[str, Any] = {"trace": trace, "load_scale": load, "horizon_h": horizon_s / 3600,
                            "seed": seed}
    if trace == "synthetic":
        jobs = synthetic_jobs(cluster.num_gpus, horizon_s, load=load, frontier=frontier,
                              seed=seed, gpus_per_node=cluster.gpus_per_node)
        info.update(kind="synthetic", frontier=frontier)
    else:
        # The site's node size, so a 6-GPU line on a 4-GPU-per-node site is refused (or
        # skipped) here with its line number, not inside the simulation.
        loaded = load_trace(trace, max_gpus=cluster.num_gpus, skip_bad=skip_bad,
                            gpus_per_node=cluster.gpus_per_node)
        if not loaded.jobs:
            raise TraceError(f"trace {trace!r} has no usable job", field="trace")
        scaled, arrival_scale = fit_load(loaded.jobs, cluster.num_gpus, load,
                                         gang_scale=gang_scale,
                                         gpus_per_node=cluster.gpus_per_node)
        jobs = repeat_to_horizon(scaled, horizon_s)
        gangs = frontier_gangs(frontier, horizon_s, seed=seed, cluster_gpus=cluster.num_gpus,
                               gpus_per_node=cluster.gpus_per_node)
        jobs = sorted(jobs + gangs, key=lambda j: (j.submit_s, j.id))
        info.update(kind="trace", trace_jobs=len(loaded.jobs), skipped_lines=loaded.skipped,
                    skipped_examples=loaded.skipped_reasons[:5], gang_scale=gang_scale,
                    arrival_scale=round(arrival_scale, 3),
                    # a trace of one arrival instant has no span, so no rate
                    offered_gpus=(round(offered_load_gpus(scaled), 1)
                                  if len({j.submit_s for j in scaled}) > 1 else None),
                    frontier_gangs=[j.gpus for j in gangs])
    info["jobs"] = len(jobs)
    info["cap_range_w"] = "350..700 for every job (flexible: caps matter)"
    return jobs, info


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _rows(results: list[SimulationResult]) -> list[tuple[str, list[str]]]:
    def pick(r: SimulationResult, *path: str) -> Any:
        value: Any = r.metrics
        for key in path:
            value = value[key]
        return value

    def peak(r: SimulationResult) -> str:
        f = r.metrics["peaks"]["facility"]
        return f"{f['peak_w'] / 1e6:.1f} / {f['limit_w'] / 1e6:.0f}"

    def hall(r: SimulationResult) -> str:
        h = max(r.metrics["peaks"]["halls"].values(), key=lambda v: v["peak_over_limit"])
        return f"{h['peak_w'] / 1e6:.1f} / {h['limit_w'] / 1e6:.0f}"

    def viol(r: SimulationResult) -> str:
        v = r.metrics["violations"]
        if not v["row_seconds"]:
            return "0"
        return (f"{v['row_seconds']:,.0f} row-s, max +{v['max_excess_w'] / 1e6:.2f} MW "
                f"({v['max_excess_row']})")

    return [
        ("jobs done", [_fmt(pick(r, "jobs", "done")) for r in results]),
        ("jobs queued at end", [_fmt(pick(r, "jobs", "queued_at_end")) for r in results]),
        ("JCT mean / p50 / p99 (h)", [
            f"{_fmt(pick(r, 'jobs', 'jct', 'mean_h'), '.2f')} / "
            f"{_fmt(pick(r, 'jobs', 'jct', 'p50_h'), '.2f')} / "
            f"{_fmt(pick(r, 'jobs', 'jct', 'p99_h'), '.2f')}" for r in results]),
        ("wait mean / p50 / p99 (h)", [
            f"{_fmt(pick(r, 'jobs', 'wait', 'mean_h'), '.2f')} / "
            f"{_fmt(pick(r, 'jobs', 'wait', 'p50_h'), '.2f')} / "
            f"{_fmt(pick(r, 'jobs', 'wait', 'p99_h'), '.2f')}" for r in results]),
        ("GPU utilisation", [f"{pick(r, 'totals', 'utilisation'):.1%}" for r in results]),
        ("delivered GPU-hours x s", [_fmt(pick(r, "totals", "delivered_gpu_hours"))
                                     for r in results]),
        ("fluid bound GPU-hours x s", [_fmt(pick(r, "totals", "bound_gpu_hours"))
                                       for r in results]),
        ("fraction of bound (saturated)", [
            f"{_fmt(pick(r, 'totals', 'fraction_of_bound'), '.1%')} "
            f"({_fmt(pick(r, 'totals', 'fraction_of_bound_saturated'), '.1%')})"
            for r in results]),
        ("mean s(cap) of busy GPUs", [_fmt(pick(r, "totals", "mean_speed"), ".3f")
                                      for r in results]),
        ("energy (MWh)", [_fmt(pick(r, "totals", "energy_mwh"), ",.0f") for r in results]),
        ("peak facility MW / limit", [peak(r) for r in results]),
        ("peak hall MW / limit", [hall(r) for r in results]),
        ("fragmented GPUs (mean)", [_fmt(pick(r, "totals", "fragmented_gpus_mean"), ",.0f")
                                    for r in results]),
        ("row violations", [viol(r) for r in results]),
        ("wall time (s)", [_fmt(r.metrics["wall_s"], ".1f") for r in results]),
    ]


def summary_table(results: list[SimulationResult]) -> str:
    """A plain-text table, one column per policy (what the CLI prints)."""
    rows = _rows(results)
    width = max(len(name) for name, _ in rows) + 2
    cols = [max(len(r.policy), *(len(v[i]) for _, v in rows)) + 2 for i, r in
            enumerate(results)]
    lines = ["".ljust(width) + "".join(r.policy.rjust(w) for r, w in zip(results, cols))]
    for name, values in rows:
        lines.append(name.ljust(width) + "".join(v.rjust(w) for v, w in zip(values, cols)))
    return "\n".join(lines)


def summary_markdown(results: list[SimulationResult], info: dict[str, Any]) -> str:
    """summary.md: the setup in one paragraph, then the table."""
    cluster = results[0].cluster
    head = (f"# gpusched simulate\n\n{cluster.name}: {cluster.num_gpus:,} GPUs, facility "
            f"limit {results[0].metrics['peaks']['facility']['limit_w'] / 1e6:g} MW. "
            f"Workload: {info.get('trace')} ({info.get('jobs'):,} jobs over "
            f"{info.get('horizon_h'):g} simulated hours, offered load "
            f"{info.get('load_scale'):g}x the GPUs")
    if info.get("kind") == "trace":
        head += (f", gangs x{info['gang_scale']:g}, arrivals x{info['arrival_scale']:g}, "
                 f"frontier gangs {info['frontier_gangs']}")
    head += "); every job accepts caps 350..700 W.\n\n"
    rows = _rows(results)
    table = ["| | " + " | ".join(r.policy for r in results) + " |",
             "|---|" + "---|" * len(results)]
    table += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows]
    notes = []
    for r in results:
        v = r.metrics["violations"]
        if v["row_seconds"]:
            notes.append(f"- `{r.policy}` would have broken {v['rows_ever_violated']} rows of "
                         f"A·P <= b for {v['row_seconds']:,.0f} row-seconds in total; worst "
                         f"{v['max_excess_row']} at {v['max_load_over_limit']:.1%} of its "
                         f"limit; excess energy {v['excess_kwh']:,.0f} kWh "
                         f"(by kind: {v['row_seconds_by_kind']}).")
    return head + "\n".join(table) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def _cluster(args: argparse.Namespace) -> Cluster:
    if args.facility_mw is not None:
        if args.cluster != "colossus-100k":
            raise SpecError("--facility-mw applies to the colossus-100k preset; edit "
                            "facility.it_limit_w in a cluster file instead",
                            field="facility_mw")
        return Cluster.preset("colossus-100k", facility_mw=args.facility_mw)
    return Cluster.resolve(args.cluster)


def run(args: argparse.Namespace) -> int:
    """Run ``gpusched simulate``; returns the exit status."""
    policies = [p.strip() for p in str(args.policy).split(",") if p.strip()]
    if not policies:
        raise SpecError("--policy needs at least one policy", field="policy")
    for name in policies:
        make_policy(name)  # unknown names fail before any work
    if not args.hours > 0:
        raise SpecError(f"--hours={args.hours} must be positive", field="hours")
    cluster = _cluster(args)
    horizon_s = args.hours * 3600
    jobs, info = build_workload(cluster, trace=args.trace, horizon_s=horizon_s,
                                load=args.load_scale, gang_scale=args.gang_scale,
                                frontier=args.frontier, seed=args.seed,
                                skip_bad=args.skip_bad)
    if info.get("skipped_lines"):
        print(f"skipped {info['skipped_lines']} bad trace line(s), e.g. "
              f"{info['skipped_examples'][0]}", file=sys.stderr)
    print(f"{cluster.name}: {cluster.num_gpus:,} GPUs; {len(jobs):,} jobs over "
          f"{args.hours:g} h; policies {', '.join(policies)}", file=sys.stderr)
    results = []
    started = time.perf_counter()
    bound = FluidBound(cluster)  # one cache of bound LPs for every policy of the run
    for name in policies:
        results.append(_run_one(cluster, jobs, name, horizon_s, not args.no_progress, bound))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"cluster": cluster.summary(), "workload": info,
              "results": {r.policy: r.to_dict() for r in results},
              "wall_s": round(time.perf_counter() - started, 2)}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out / "summary.md").write_text(summary_markdown(results, info))
    written = [out / "report.json", out / "summary.md"]
    if not args.no_plots:
        from .plots import write_plots
        written += write_plots(results, out)
    print(summary_table(results))
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


def _run_one(cluster: Cluster, jobs: list[TraceJob], policy: str, horizon_s: float,
             show_progress: bool, bound: FluidBound | None = None) -> SimulationResult:
    if not show_progress:
        return simulate(cluster, jobs, policy, horizon_s=horizon_s, bound=bound, keep_jobs=True)
    from tqdm import tqdm

    hours = horizon_s / 3600
    with tqdm(total=round(hours, 2), desc=f"{policy:>9}", unit="h sim", leave=True,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} h "
                         "[{elapsed}<{remaining}]") as bar:
        def progress(now_s: float) -> None:
            bar.n = round(min(now_s, horizon_s) / 3600, 2)
            bar.refresh()

        return simulate(cluster, jobs, policy, horizon_s=horizon_s, progress=progress,
                        bound=bound, keep_jobs=True)
