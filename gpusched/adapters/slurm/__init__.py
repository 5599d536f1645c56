"""Slurm: import a site from topology.conf, export one to slurm.conf and topology.conf.

* :mod:`.hostlists`: Slurm hostlist expressions (``gpu[0001-0512]``).
* :mod:`.importer`: topology.conf (tree or block) plus a TOML power overlay -> ``Cluster``.
* :mod:`.exporter`: ``Cluster`` -> slurm.conf node and partition lines, a topology/tree
  topology.conf (racks, pods, halls) and the overlay that imports it back.
* ``job_submit.lua``, ``prolog.sh``, ``epilog.sh`` (package data, :func:`hook_path`): the
  pieces that embed gpusched in a Slurm controller; see docs/slurm.md.
"""

from __future__ import annotations

from .exporter import SlurmExport, export_cluster, write_export
from .hostlists import compress_hostlist, expand_hostlist, hostlist_size
from .importer import (Topology, cluster_from_topology, load_overlay, parse_topology,
                       placement_nodelist, read_cluster, read_topology)

__all__ = ["Topology", "expand_hostlist", "hostlist_size", "compress_hostlist",
           "parse_topology", "read_topology", "load_overlay", "cluster_from_topology",
           "read_cluster", "placement_nodelist", "SlurmExport", "export_cluster",
           "write_export", "hook_path", "HOOKS"]

#: The scripts shipped for a Slurm controller (see docs/slurm.md).
HOOKS = ("job_submit.lua", "prolog.sh", "epilog.sh")


def hook_path(name: str) -> str:
    """The installed path of one of :data:`HOOKS` (copy it into the Slurm config dir)."""
    from pathlib import Path

    from ...errors import SpecError

    if name not in HOOKS:
        raise SpecError(f"unknown hook {name!r}; hooks are {list(HOOKS)}", field="hook")
    return str(Path(__file__).with_name(name))
