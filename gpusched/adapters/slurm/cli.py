"""``gpusched slurm``: export a site to Slurm, copy the controller hooks.

    gpusched slurm export colossus-100k --out /etc/slurm/gpusched [--cloud]
    gpusched slurm hooks --out /etc/slurm

``export`` writes slurm-nodes.conf, topology.conf and gpusched-power.toml (see
:mod:`.exporter`); ``hooks`` copies job_submit.lua, prolog.sh and epilog.sh (see
docs/slurm.md).  Neither replaces an existing file unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..._atomic import write_atomic
from ...errors import SpecError
from ...spec import PRESETS, Cluster

__all__ = ["add_arguments", "run"]

# shown under `gpusched slurm --help` (gpusched.cli reads EXAMPLES)
EXAMPLES = """
gpusched slurm export colossus-100k --out slurm-site --cloud
gpusched slurm export site.toml --out /etc/slurm/gpusched --force
gpusched slurm hooks --out /etc/slurm/gpusched
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``gpusched slurm``'s subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="slurm_command", required=True)
    export = sub.add_parser("export", help="write slurm.conf node lines, topology.conf and "
                                           "the power overlay for a cluster")
    export.add_argument("cluster", help=f"preset ({', '.join(sorted(PRESETS))}) or "
                                        ".toml/.json file")
    export.add_argument("--out", required=True, help="directory to write into")
    export.add_argument("--cloud", action="store_true",
                        help="declare the nodes State=CLOUD (a controller without slurmd)")
    export.add_argument("--partition", default="gpu", help="partition name (default gpu)")
    export.add_argument("--force", action="store_true", help="replace existing files")
    hooks = sub.add_parser("hooks", help="copy job_submit.lua, prolog.sh and epilog.sh")
    hooks.add_argument("--out", required=True, help="directory to copy into")
    hooks.add_argument("--force", action="store_true", help="replace existing files")


def run(args: argparse.Namespace) -> int:
    from . import HOOKS, hook_path
    from .exporter import write_export

    out = Path(args.out)
    if args.slurm_command == "export":
        cluster = Cluster.resolve(args.cluster)
        for path in write_export(cluster, out, cloud=args.cloud, partition=args.partition,
                                 overwrite=args.force):
            print(path)
        return 0
    targets = [out / name for name in HOOKS]
    present = [p.name for p in targets if p.exists()]
    if present and not args.force:
        raise SpecError(f"{out} already holds {present}; pass --force to replace them",
                        field="out")
    out.mkdir(parents=True, exist_ok=True)
    for name, target in zip(HOOKS, targets):
        write_atomic(target, Path(hook_path(name)).read_bytes())
        if name.endswith(".sh"):
            target.chmod(0o755)
        print(target)
    return 0
