"""The ``gpusched`` command line: thin wrappers over the library.

Subcommands: ``show`` (summarise a cluster and place a sample stream), ``place`` (place
one job against a saved engine state), and, from their own packages, ``simulate`` and
``serve``.  Each of those packages has a ``cli`` module with ``add_arguments(parser)``
and ``run(args) -> int``.

Start-up is kept light: ``gpusched --help`` imports neither the simulator (matplotlib,
the allocator's scipy.optimize) nor the service (starlette, uvicorn).  A plugged
subcommand's module is imported only when that subcommand is the one being run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Sequence

import numpy as np

from .spec import PRESETS, Cluster
from .engine import Engine, available_backends
from .errors import GpuschedError
from .job import Job

__all__ = ["main"]

# subcommand -> module providing add_arguments(parser) and run(args)
_PLUGGED = {
    "simulate": ("gpusched.simulate.cli", "replay a job trace on a cluster under a policy"),
    "serve": ("gpusched.serve.cli", "run the placement service (HTTP/JSON, k8s extender)"),
    "slurm": ("gpusched.adapters.slurm.cli", "export a site to Slurm, copy the controller hooks"),
}


def _sample_stream(cluster: Cluster, seed: int, count: int) -> list[Job]:
    """Jobs shaped like the ITP 2021 trace (mostly 1 GPU, gangs up to 64), plus big gangs.

    Size shares from shared/traces/ms-itp-2021/README.md (all clusters): 1 GPU 83%,
    2: 2.1%, 4: 3.4%, 8: 10.1%, 16: 0.5%, 32: 0.5%, 64: 0.1%; a few 512 to 16,384-GPU
    LLM-era gangs are added so the power rows bind.  Half the jobs accept caps down to
    350 W (physics.md §3 recommends [350, 700] W for the optimiser).
    """
    rng = np.random.default_rng(seed)
    sizes = np.array([1, 2, 4, 8, 16, 32, 64])
    share = np.array([57682, 1483, 2371, 7009, 381, 354, 71], dtype=float)
    gpus = rng.choice(sizes, size=count, p=share / share.sum())
    jobs = []
    for i, g in enumerate(gpus):
        flexible = rng.random() < 0.5
        jobs.append(Job(f"job-{i:05d}", int(g), min_cap_w=350 if flexible else None))
    gangs = [g for g in [16384, 4096, 4096, 2048, 512, 512, 512, 512] * max(1, count // 400)
             if g <= cluster.num_gpus // 4]
    for k, g in enumerate(gangs):
        jobs.insert(int(rng.integers(0, len(jobs))), Job(f"gang-{k:03d}", g, min_cap_w=400))
    return jobs


def _power_table(engine: Engine) -> list[tuple[str, float, float]]:
    """(row name, load, limit) of the most loaded row of each kind."""
    c = engine.cluster.constraints
    load = c.A @ engine.rack_power_w().astype(float)
    out = []
    for kind in dict.fromkeys(c.kinds):
        idx = [i for i, k in enumerate(c.kinds) if k == kind]
        worst = max(idx, key=lambda i: load[i] / max(c.b[i], 1e-9))
        out.append((c.names[worst], float(load[worst]), float(c.b[worst])))
    return out


def _cmd_show(args: argparse.Namespace) -> int:
    cluster = (Cluster.preset(args.cluster, facility_mw=args.facility_mw)
               if args.facility_mw is not None else Cluster.resolve(args.cluster))
    summary = cluster.summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{summary['name']}: {summary['gpus']:,} GPUs on {summary['nodes']:,} nodes, "
          f"{summary['racks']:,} racks ({summary['liquid_racks']} liquid, "
          f"{summary['air_racks']} air), {summary['pods']} pods, {summary['rows']} rows, "
          f"{summary['halls']} halls")
    print(f"power: {summary['idle_mw']:.1f} MW idle, {summary['full_power_mw']:.1f} MW with "
          f"every GPU at {cluster.power.cap_max_w} W, "
          f"facility limit {summary['facility_limit_mw']:.1f} MW")
    print(f"constraint system A·P <= b: {summary['constraint_rows']:,} rows")
    print(f"  {'kind':<14}{'rows':>7}{'break at full power':>22}{'worst full/limit':>19}")
    for kind, row in summary["rows_by_kind"].items():
        print(f"  {kind:<14}{row['rows']:>7}{row['binding_at_full_power']:>22}"
              f"{row['worst_full_over_limit']:>19.3f}")
    if args.jobs <= 0:
        return 0
    engine = Engine(cluster, backend=args.backend)
    jobs = _sample_stream(cluster, args.seed, args.jobs)
    start = time.perf_counter()
    placements = [engine.place(job) for job in jobs]
    elapsed = time.perf_counter() - start
    placed = [p for p in placements if p is not None]
    caps = np.array([p.cap_w for p in placed])
    top_w = cluster.power.cap_max_w
    print(f"\nsample stream: {len(jobs):,} jobs (seed {args.seed}) on the {engine.backend} "
          f"backend in {elapsed * 1e3:.1f} ms ({elapsed / len(jobs) * 1e6:.1f} µs per job)")
    print(f"  placed {len(placed):,}, refused {len(jobs) - len(placed):,}; "
          f"{engine.gpus_in_use():,} GPUs busy; caps: {int((caps == top_w).sum())} at {top_w} W, "
          f"{int((caps < top_w).sum())} capped (lowest {int(caps.min()) if len(caps) else '-'} W)")
    print(f"  {'most loaded row of each kind':<34}{'load kW':>12}{'limit kW':>12}{'used':>8}")
    for name, load, limit in _power_table(engine):
        print(f"  {name:<34}{load / 1e3:>12,.1f}{limit / 1e3:>12,.1f}{load / limit:>8.1%}")
    refused = next((j for j, p in zip(jobs, placements) if p is None), None)
    if refused is not None:
        print(f"  first refusal: {engine.explain(refused)}")
    return 0


def _cmd_place(args: argparse.Namespace) -> int:
    cluster = Cluster.resolve(args.cluster)
    try:
        engine = Engine.load(cluster, args.state, backend=args.backend)
    except GpuschedError:
        if not args.create:
            raise
        engine = Engine(cluster, backend=args.backend)
    max_cap_w = cluster.power.cap_max_w if args.max_cap_w is None else args.max_cap_w
    job = Job(args.id, args.gpus, max_cap_w=max_cap_w, min_cap_w=args.min_cap_w)
    placement = engine.place(job, pod=args.pod)
    if placement is None:
        print(json.dumps({"placed": False, "reason": str(engine.explain(job, args.pod))}))
        return 3
    engine.save(args.state)
    print(json.dumps({"placed": True, **placement.to_dict(),
                      "node_names": [cluster.node_names[n] for n in placement.nodes]}))
    return 0


def _command_named(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` asks for: its first word that is not an option.

    The top-level parser has no option that takes a value, so this is the word argparse
    will dispatch on (or an unknown word, which argparse then rejects).
    """
    for word in argv:
        if word == "--":
            continue
        if not word.startswith("-"):
            return word
    return None


def _build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; a plugged subcommand gets its options only if it is ``command``.

    The others are listed by name and help text alone, so that building the parser for
    ``gpusched --help`` or ``gpusched show`` imports no plugged package.
    """
    parser = argparse.ArgumentParser(prog="gpusched", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    show = sub.add_parser("show", help="summarise a cluster and place a sample job stream")
    show.add_argument("cluster", nargs="?", default="colossus-100k",
                      help=f"preset ({', '.join(sorted(PRESETS))}) or .toml/.json file")
    show.add_argument("--facility-mw", type=float, default=None,
                      help="facility IT limit in MW (presets that take it)")
    show.add_argument("--jobs", type=int, default=2000, help="sample jobs to place (0: none)")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--backend", choices=available_backends(), default=None)
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.set_defaults(func=_cmd_show)

    place = sub.add_parser("place", help="place one job against a saved engine state")
    place.add_argument("--cluster", default="colossus-100k")
    place.add_argument("--state", required=True, help="state file (gpusched.state format)")
    place.add_argument("--create", action="store_true", help="start empty if --state is missing")
    place.add_argument("--id", required=True)
    place.add_argument("--gpus", type=int, required=True)
    place.add_argument("--max-cap-w", type=int, default=None,
                       help="highest cap in W (default: the cluster's cap_max_w)")
    place.add_argument("--min-cap-w", type=int, default=None)
    place.add_argument("--pod", default=None, help="pod index or name")
    place.add_argument("--backend", choices=available_backends(), default=None)
    place.set_defaults(func=_cmd_place)

    for name, (module, help_text) in _PLUGGED.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(plugged=module)
        if name != command:
            continue
        try:
            importlib.import_module(module).add_arguments(p)
        except ImportError as exc:
            p.set_defaults(unavailable=str(exc))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(_command_named(argv))
    args = parser.parse_args(argv)
    if getattr(args, "pod", None) is not None and str(args.pod).isdigit():
        args.pod = int(args.pod)
    try:
        if hasattr(args, "plugged"):
            if hasattr(args, "unavailable"):
                print(f"gpusched {args.command} is unavailable: {args.unavailable}",
                      file=sys.stderr)
                return 2
            return int(importlib.import_module(args.plugged).run(args) or 0)
        return int(args.func(args) or 0)
    except GpuschedError as exc:
        print(f"gpusched: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
