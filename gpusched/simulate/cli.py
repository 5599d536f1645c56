"""``gpusched simulate``: replay a trace on a site under one or more policies.

With no arguments it runs the embedded default: colossus-100k at 90 MW, the bundled
ms-itp-2021 cluster04 window (gangs x4, arrivals compressed to offer 1.6x the site's
GPUs), plus frontier pretraining gangs, over 16 simulated hours, under ``optimize`` and
``fifo`` side by side.

It writes ``report.html`` (everything, self-contained), ``report.json``, ``summary.md``,
``jobs.csv`` (one line per job and policy) and the PNGs into one directory per run:

- without ``--out``, a new numbered directory ``gpusched-out/run-NNN`` (the next free
  number), so runs never overwrite each other;
- with ``--out DIR``, that directory, which must be missing or empty; an earlier run's
  (or anything else's) files there are refused unless ``--force``, which replaces the
  files of the same names and leaves the others.

The output is checked (and created) before any work, so a bad ``--out`` fails at once
with a one-line error; a run that fails afterwards removes the directory it created if
it left it empty.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .._atomic import write_atomic
from ..bound import FluidBound
from ..spec import PRESETS, Cluster
from ..errors import OutputError, SpecError, TraceError
from . import SimulationResult, simulate
from .records import jobs_csv
from .report import frontier_lines, report_html, summary_markdown, summary_table
from .policies import POLICIES, make_policy
from .synthetic import frontier_gangs, synthetic_jobs
from .failures import (LLAMA3_RATE_PER_GPU_H, EnvelopeWindow, FailureModel,
                       demand_response, load_envelope)
from .traces import (BUNDLED_TRACES, DEFAULT_TRACE, TraceJob, fit_load, load_trace,
                     offered_load_gpus, repeat_to_horizon)

__all__ = ["add_arguments", "run", "build_workload", "summary_table", "summary_markdown",
           "prepare_out", "DEFAULT_OUT_ROOT"]

#: Where runs without ``--out`` go, one numbered directory each.
DEFAULT_OUT_ROOT = "gpusched-out"

# shown under `gpusched simulate --help` (gpusched.cli reads EXAMPLES)
EXAMPLES = """
gpusched simulate
gpusched simulate --cluster tiny --hours 2 --policy optimize,fifo,oblivious --out run-1
gpusched simulate --trace synthetic --hours 4 --no-plots --out run-2
"""

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
    parser.add_argument("--out", default=None,
                        help="directory for report.html, report.json, summary.md, jobs.csv "
                             "and the PNGs; it must be missing or empty unless --force "
                             f"(default: a new {DEFAULT_OUT_ROOT}/run-NNN per run)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty --out, replacing files of the same "
                             "names")
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
    site = parser.add_argument_group(
        "a site that changes",
        "node failures with in-place repair, hot spares, and a power envelope over time "
        "(see gpusched.simulate.failures)")
    site.add_argument("--failures", action="store_true",
                      help="fail nodes at --failure-rate; hit jobs lose the work since their "
                           "checkpoint, then are repaired in place or requeued")
    site.add_argument("--failure-rate", type=float, default=None, metavar="PER_GPU_H",
                      help="interruptions per GPU-hour (default "
                           f"{LLAMA3_RATE_PER_GPU_H:.3g}, Llama 3 on 16,384 H100s; implies "
                           "--failures)")
    site.add_argument("--node-back-h", type=float, default=1.0,
                      help="hours until a failed node is back (default 1)")
    site.add_argument("--checkpoint-min", type=float, default=None,
                      help="checkpoint interval in minutes (default: each job's Young-Daly "
                           "interval from a 1-minute checkpoint cost)")
    site.add_argument("--restart-min", type=float, default=5.0,
                      help="minutes a hit job takes to restart from its checkpoint "
                           "(default 5)")
    site.add_argument("--spares", type=int, default=0, metavar="NODES_PER_POD",
                      help="hot spare nodes per pod, their watts held in every row "
                           "(default 0)")
    site.add_argument("--envelope", default=None, metavar="FILE",
                      help="CSV of live limits over time: start_h,end_h,row,mw (row: a "
                           "constraint row's name, or facility)")
    site.add_argument("--demand-response", type=float, default=None, metavar="START_H",
                      help="a demand-response event: the facility limit cut by 25%% for 3 h "
                           "from this hour")
    site.add_argument("--no-envelope-plan", action="store_true",
                      help="under an envelope, only hold new starts off the rows over (as "
                           "Slurm's HRES does) instead of planning back under at once")
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


def _cluster(args: argparse.Namespace) -> Cluster:
    if args.facility_mw is not None:
        if args.cluster != "colossus-100k":
            raise SpecError("--facility-mw applies to the colossus-100k preset; edit "
                            "facility.it_limit_w in a cluster file instead",
                            field="facility_mw")
        return Cluster.preset("colossus-100k", facility_mw=args.facility_mw)
    return Cluster.resolve(args.cluster)


def _probe(directory: Path, shown: str) -> None:
    """Fail now, not after the run, if files cannot be created in ``directory``."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".gpusched-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"--out {shown}: cannot write there ({exc.strerror or exc})",
                          field="out") from None


def prepare_out(out: str | None, force: bool = False) -> tuple[Path, bool]:
    """The run's output directory, created now; and whether this call created it.

    ``out`` None: the next free ``gpusched-out/run-NNN``.  Otherwise ``out`` must be a
    directory that is missing (it is created, parents too) or empty, or ``force``.
    """
    if out is None:
        root = Path(DEFAULT_OUT_ROOT)
        if root.exists() and not root.is_dir():
            raise OutputError(f"{root} exists and is not a directory; move it, or give "
                              "--out DIR", field="out")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {root}: {exc.strerror or exc}; give --out DIR",
                              field="out") from None
        taken = [int(p.name[4:]) for p in root.glob("run-*") if p.name[4:].isdigit()]
        number = max(taken, default=0) + 1
        while True:  # another run may take a number between the glob and the mkdir
            path = root / f"run-{number:03d}"
            try:
                path.mkdir()
            except FileExistsError:
                number += 1
                continue
            except OSError as exc:
                raise OutputError(f"cannot create {path}: {exc.strerror or exc}; give "
                                  "--out DIR", field="out") from None
            _probe(path, str(path))
            return path, True
    if not str(out).strip():
        raise OutputError("--out is empty; give a directory", field="out")
    path = Path(out)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputError(f"--out {out} is not a directory (it is a file); give a "
                              "directory, missing or empty", field="out")
        try:
            entries = next(os.scandir(path), None) is not None
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot read it ({exc.strerror or exc})",
                              field="out") from None
        if entries and not force:
            raise OutputError(f"--out {out} is not empty (an earlier run?); give a new "
                              "directory, or --force to replace the files of the same "
                              "names", field="out")
        _probe(path, str(out))
        return path, False
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create it ({exc.strerror or exc})",
                          field="out") from None
    _probe(path, str(out))
    return path, True


_REPLAYED = ("cluster", "facility_mw", "trace", "policy", "seed", "load_scale", "gang_scale",
             "frontier", "hours")


def command_line(args: argparse.Namespace, out: Path) -> str:
    """The command that repeats this run, every option spelled out."""
    words = ["gpusched", "simulate"]
    for name in _REPLAYED:
        value = getattr(args, name, None)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    words += ["--out", str(out)]
    words += [f"--{flag.replace('_', '-')}" for flag in ("skip_bad", "no_plots")
              if getattr(args, flag, False)]
    # a site that changes: spelled out only when the run had it
    if getattr(args, "failures", False) or getattr(args, "failure_rate", None) is not None:
        words.append("--failures")
        for name in ("failure_rate", "node_back_h", "checkpoint_min", "restart_min"):
            value = getattr(args, name, None)
            if value is not None:
                words += [f"--{name.replace('_', '-')}", str(value)]
    for name in ("spares", "envelope", "demand_response"):
        value = getattr(args, name, None)
        if value:
            words += [f"--{name.replace('_', '-')}", str(value)]
    if getattr(args, "no_envelope_plan", False):
        words.append("--no-envelope-plan")
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    """Run ``gpusched simulate``; returns the exit status."""
    policies = [p.strip() for p in str(args.policy).split(",") if p.strip()]
    if not policies:
        raise SpecError("--policy needs at least one policy", field="policy")
    for name in policies:
        make_policy(name)  # unknown names fail before any work
    if not args.hours > 0:
        raise SpecError(f"--hours={args.hours} must be positive", field="hours")
    out, created = prepare_out(args.out, getattr(args, "force", False))
    try:
        return _run(args, policies, out)
    except BaseException:
        if created:
            try:
                out.rmdir()  # only if the failed run left it empty
            except OSError:
                pass
        raise


def _run(args: argparse.Namespace, policies: list[str], out: Path) -> int:
    started_utc = datetime.datetime.now(datetime.timezone.utc)
    cluster = _cluster(args)
    horizon_s = args.hours * 3600
    site = site_options(args, cluster)
    jobs, info = build_workload(cluster, trace=args.trace, horizon_s=horizon_s,
                                load=args.load_scale, gang_scale=args.gang_scale,
                                frontier=args.frontier, seed=args.seed,
                                skip_bad=args.skip_bad)
    if info.get("skipped_lines"):
        print(f"skipped {info['skipped_lines']} bad trace line(s), e.g. "
              f"{info['skipped_examples'][0]}", file=sys.stderr)
    print(f"{cluster.name}: {cluster.num_gpus:,} GPUs; {len(jobs):,} jobs over "
          f"{args.hours:g} h; policies {', '.join(policies)}; writing to {out}",
          file=sys.stderr)
    results = []
    started = time.perf_counter()
    bound = FluidBound(cluster)  # one cache of bound LPs for every policy of the run
    for name in policies:
        results.append(_run_one(cluster, jobs, name, horizon_s, not args.no_progress, bound,
                                site))
    # the package's face sits above this layer, so its __version__ is read from the
    # package object, which Python imported before any of its submodules
    version = getattr(sys.modules.get("gpusched"), "__version__", "unknown")
    run_info = {"gpusched_version": version, "command_line": command_line(args, out),
                "seed": args.seed,
                "utc_time": started_utc.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "python": platform.python_version(), "out": str(out)}
    pictures: dict[str, bytes] = {}
    if not args.no_plots:
        from .plots import write_plots
        for path in write_plots(results, out):
            pictures[path.name] = path.read_bytes()
    names = ["report.html", "report.json", "summary.md", "jobs.csv", *pictures]
    report = {"run": run_info, "cluster": cluster.summary(), "workload": info,
              "files": names,
              "results": {r.policy: r.to_dict() for r in results},
              "wall_s": round(time.perf_counter() - started, 2)}
    texts = {
        "report.json": json.dumps(report, indent=1, default=float) + "\n",
        "summary.md": summary_markdown(results, info, run_info, list(pictures)),
        "jobs.csv": jobs_csv(results),
        "report.html": report_html(results, info, run_info, pictures, names),
    }
    for name, text in texts.items():
        write_atomic(out / name, text.encode("utf-8"))
    print(summary_table(results))
    fate = frontier_lines(results)
    if fate:
        print("\nfrontier gangs:\n" + "\n".join(f"  {line}" for line in fate))
    print(f"\nwrote {out}/: {', '.join(names)}\nopen {out / 'report.html'}")
    return 0


def site_options(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    """``simulate``'s failure, spare and envelope keywords from the command line."""
    failures = None
    if args.failures or args.failure_rate is not None:
        rate = LLAMA3_RATE_PER_GPU_H if args.failure_rate is None else args.failure_rate
        failures = FailureModel(
            rate_per_gpu_h=rate, node_back_s=args.node_back_h * 3600,
            checkpoint_s=None if args.checkpoint_min is None else args.checkpoint_min * 60,
            restart_s=args.restart_min * 60, seed=args.seed)
    envelope: list[EnvelopeWindow] = []
    if args.envelope is not None:
        envelope += load_envelope(args.envelope, cluster)
    if args.demand_response is not None:
        envelope += demand_response(cluster, args.demand_response)
    if args.spares < 0:
        raise SpecError(f"--spares={args.spares} must be >= 0", field="spares")
    return {"failures": failures, "spares": args.spares, "envelope": envelope,
            "envelope_plan": not args.no_envelope_plan}


def _run_one(cluster: Cluster, jobs: list[TraceJob], policy: str, horizon_s: float,
             show_progress: bool, bound: FluidBound | None = None,
             site: dict[str, Any] | None = None) -> SimulationResult:
    site = site or {}
    if not show_progress:
        return simulate(cluster, jobs, policy, horizon_s=horizon_s, bound=bound, keep_jobs=True,
                        **site)
    from tqdm import tqdm

    hours = horizon_s / 3600
    with tqdm(total=round(hours, 2), desc=f"{policy:>9}", unit="h sim", leave=True,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} h "
                         "[{elapsed}<{remaining}]") as bar:
        def progress(now_s: float) -> None:
            bar.n = round(min(now_s, horizon_s) / 3600, 2)
            bar.refresh()

        return simulate(cluster, jobs, policy, horizon_s=horizon_s, progress=progress,
                        bound=bound, keep_jobs=True, **site)
