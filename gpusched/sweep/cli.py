"""``gpusched sweep SPEC.toml``: many simulations, on local processes or on Dask."""

from __future__ import annotations

import argparse
import sys

from ..errors import SweepError

__all__ = ["add_arguments", "run"]

# shown under `gpusched sweep --help` (gpusched.cli reads EXAMPLES)
EXAMPLES = """
gpusched sweep examples/sweep.toml --workers 2
gpusched sweep examples/sweep.toml --dry-run
gpusched sweep examples/sweep.toml --dask local
gpusched sweep study.toml --dask tcp://scheduler:8786 --timeout-s 1800
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``gpusched sweep``."""
    parser.add_argument("spec", help="sweep file (TOML: [sweep], [base], [grid], "
                                     "[[points]], [plots]; see examples/sweep.toml)")
    parser.add_argument("--out", default=None,
                        help="results directory (default: gpusched-sweep/<sweep name>); an "
                             "earlier sweep's directory is resumed: runs done with the same "
                             "configuration and gpusched version are not run again")
    parser.add_argument("--dask", default=None, metavar="local|tcp://HOST:PORT",
                        help="run on Dask: 'local' starts a LocalCluster, an address uses "
                             "an existing scheduler (needs pip install 'gpusched[sweep]'); "
                             "default: local processes")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (local, or LocalCluster); default: the CPUs")
    parser.add_argument("--timeout-s", type=float, default=None,
                        help="wall-clock limit of each run (default: the file's "
                             "sweep.timeout_s, else 3600)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs and which are done; run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="write no PNGs")


def run(args: argparse.Namespace) -> int:
    """Run ``gpusched sweep``: 0 when every run finished, 1 when some failed."""
    from pathlib import Path

    from . import driver
    from .spec import load_spec

    spec = load_spec(args.spec)
    out = Path(args.out) if args.out is not None else Path("gpusched-sweep") / spec.name
    runs = spec.runs()
    if args.dry_run:
        axes = spec.axes
        done = 0
        for r in runs:
            state = "done" if driver._done(out / "runs" / r.id, r) else "to run"
            done += state == "done"
            print(f"{r.id}  {state:<6}  {r.label(axes) or '(one run)'}")
        print(f"{len(runs)} runs, {done} done, {len(runs) - done} to run; results in {out}")
        return 0
    if args.timeout_s is not None and not args.timeout_s > 0:
        raise SweepError(f"--timeout-s={args.timeout_s} must be positive", field="timeout_s")
    where = "local processes" if args.dask is None else f"Dask ({args.dask})"
    print(f"sweep {spec.name}: {len(runs)} runs on {where}; results in {out}",
          file=sys.stderr)
    result = driver.run(spec, out, dask=args.dask, workers=args.workers,
                        timeout_s=args.timeout_s, progress=not args.no_progress,
                        plots=not args.no_plots)
    print(f"{result.ran} run, {result.resumed} already done (resumed), "
          f"{len(result.failed)} failed")
    for row in result.failed:
        print(f"  failed {row['run']} ({row['status']}): {row['error']}")
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 1 if result.failed else 0
