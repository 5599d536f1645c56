"""Slurm export: a Cluster as slurm.conf node and partition lines, topology.conf, overlay.

Three texts, written by :func:`write_export` into one directory:

``slurm-nodes.conf``
    One ``NodeName=`` line per rack (its nodes as a hostlist, ``Feature=`` the rack's
    kind and hall, so ``--constraint=liquid`` works) and one ``PartitionName=`` line
    over every node, exclusive (gpusched places whole nodes for gangs, and a site's
    cap is per node).  ``Include`` it from slurm.conf.  With ``cloud=True`` the nodes
    are ``State=CLOUD`` and carry no GRES: a controller without node daemons (a test
    bed, or the side-by-side benchmark) then allocates them and never waits for a
    slurmd; without it they carry ``Gres=gpu:<n>`` as real GPU nodes do.
``topology.conf``
    ``topology/tree``: a leaf switch per rack (``SwitchName=<rack> Nodes=...``), a
    switch per pod over its racks, a switch per hall over its pods (a pod whose racks
    lie in several halls hangs off the root instead), and one root over the halls, so
    every node is reachable and Slurm may span pods when it must.  Rack leaves make
    Slurm's own best fit rack-aware, which keeps the side-by-side comparison fair.
``gpusched-power.toml``
    The power overlay :mod:`.importer` reads (``leaf_switches = "racks"``, rows and
    rack limits by hostlist, halls, facility, power model, extra limit rows), so
    ``read_cluster(topology.conf, gpusched-power.toml)`` gives back a Cluster with the
    same fingerprint: the same nodes in the same order, the same racks, pods, rows and
    limits.

Names become Slurm names as they are: a rack, pod or hall name must be a valid switch
name (letters, digits, ``_ . : -``) and unique across the three levels, and a node name
must be writable in a hostlist; anything else is a :class:`SpecError` naming it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._atomic import write_atomic
from ...errors import SpecError
from ...spec import Cluster
from ...spec.constraints import RACK_KINDS
from ...spec.formats import _toml_value
from .hostlists import check_host_name, compress_hostlist, expand_hostlist

__all__ = ["SlurmExport", "export_cluster", "write_export", "FILES", "ROOT_SWITCH"]

#: The files :func:`write_export` writes, in the order a site reads them.
FILES = ("slurm-nodes.conf", "topology.conf", "gpusched-power.toml")
#: The name of the tree's root switch (over the halls).
ROOT_SWITCH = "site-root"
_SWITCH_NAME = re.compile(r"[A-Za-z0-9_.:\-]+")
_RACK_LIMIT_FIELDS = ("kind", "feed_w", "cdu_w", "liquid_fraction", "residual_air_w",
                      "air_cooling_w")


@dataclass(frozen=True)
class SlurmExport:
    """The three texts of an export (see the module docstring)."""

    nodes_conf: str
    topology_conf: str
    overlay_toml: str

    def texts(self) -> dict[str, str]:
        """File name -> text, for :data:`FILES`."""
        return dict(zip(FILES, (self.nodes_conf, self.topology_conf, self.overlay_toml)))


def _hostlist(names: list[str]) -> str:
    """A hostlist that expands back to ``names`` in this order.

    ``compress_hostlist`` sorts; when that would reorder the nodes (and so change node
    indices on import) the names are listed one by one instead.
    """
    compressed = compress_hostlist(names)
    return compressed if expand_hostlist(compressed) == names else ",".join(names)


def _switch_names(cluster: Cluster) -> None:
    seen: dict[str, str] = {ROOT_SWITCH: "the root switch"}
    for level, names in (("rack", cluster.rack_names), ("pod", cluster.pod_names),
                         ("hall", cluster.hall_names)):
        for name in names:
            if not _SWITCH_NAME.fullmatch(name):
                raise SpecError(f"{level} name {name!r} cannot be a Slurm switch name; use "
                                "letters, digits, '_', '.', ':' and '-'", field=f"{level}s")
            if name in seen:
                raise SpecError(f"{level} name {name!r} is also {seen[name]}; topology.conf "
                                "needs one name per switch", field=f"{level}s")
            seen[name] = f"a {level} name"


def export_cluster(cluster: Cluster, *, cloud: bool = False, partition: str = "gpu",
                   exclusive: bool = True) -> SlurmExport:
    """The slurm.conf lines, topology.conf and power overlay of ``cluster``.

    ``cloud=True`` declares the nodes ``State=CLOUD`` for a controller without node
    daemons, with one CPU per GPU (``CPUs=<gpus_per_node>``): unregistered CLOUD nodes
    have no GRES, so ``-N 1 -n 2`` stands for a 2-GPU job.  ``exclusive=False`` lets
    jobs share a node (``OverSubscribe=NO``: by cores, never oversubscribed); the default
    partition is ``OverSubscribe=EXCLUSIVE``.  Raises :class:`SpecError` for names Slurm
    cannot take.
    """
    if not _SWITCH_NAME.fullmatch(partition):
        raise SpecError(f"partition name {partition!r} must be letters, digits, '_', '.', "
                        "':' and '-'", field="partition")
    _switch_names(cluster)
    spec = cluster.to_dict()
    node_names = cluster.node_names
    for i, name in enumerate(node_names):
        check_host_name(name, f"node_names[{i}]")
    first = cluster.rack_first_node
    rack_hosts = [list(node_names[first[r]:first[r + 1]]) for r in range(cluster.num_racks)]
    rack_lists = [_hostlist(names) for names in rack_hosts]
    gpus = cluster.gpus_per_node

    head = (f"# gpusched export of {cluster.name!r}: {cluster.num_nodes:,} nodes, "
            f"{cluster.num_gpus:,} GPUs, {cluster.num_racks:,} racks, "
            f"{cluster.num_pods:,} pods, {cluster.num_halls:,} halls")
    nodes = [head,
             "# Include this file from slurm.conf; TopologyPlugin=topology/tree reads "
             "topology.conf."]
    if cloud:
        nodes.append("# CLOUD nodes: no slurmd needed (set SuspendProgram/ResumeProgram); "
                     "a CPU stands for a GPU.")
    else:
        nodes.append(f"# GPU nodes: slurm.conf needs GresTypes=gpu, each node a gres.conf "
                     f"for its {gpus} GPUs.")
    for r, hostlist in enumerate(rack_lists):
        features = f"{RACK_KINDS[cluster.rack_kind[r]]},{cluster.hall_names[cluster.rack_hall[r]]}"
        state = f"CPUs={gpus} State=CLOUD" if cloud else f"Gres=gpu:{gpus} State=UNKNOWN"
        nodes.append(f"NodeName={hostlist} Feature={features} {state}")
    nodes.append(f"PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE "
                 f"State=UP OverSubscribe={'EXCLUSIVE' if exclusive else 'NO'}")

    topo = [head, "# topology/tree: a leaf switch per rack, then pods, halls, the root."]
    pod_racks: list[list[int]] = [[] for _ in range(cluster.num_pods)]
    for r in range(cluster.num_racks):
        topo.append(f"SwitchName={cluster.rack_names[r]} Nodes={rack_lists[r]}")
        pod_racks[cluster.rack_pod[r]].append(r)
    hall_pods: list[list[str]] = [[] for _ in range(cluster.num_halls)]
    loose_pods: list[str] = []
    for p, racks in enumerate(pod_racks):
        name = cluster.pod_names[p]
        topo.append(f"SwitchName={name} Switches="
                    + ",".join(cluster.rack_names[r] for r in racks))
        halls = {int(cluster.rack_hall[r]) for r in racks}
        (hall_pods[halls.pop()] if len(halls) == 1 else loose_pods).append(name)
    tops = list(loose_pods)
    for h, pods in enumerate(hall_pods):
        if pods:
            topo.append(f"SwitchName={cluster.hall_names[h]} Switches={','.join(pods)}")
            tops.append(cluster.hall_names[h])
    topo.append(f"SwitchName={ROOT_SWITCH} Switches={','.join(tops)}")

    return SlurmExport("\n".join(nodes) + "\n", "\n".join(topo) + "\n",
                       _overlay(cluster, spec, rack_hosts))


def _overlay(cluster: Cluster, spec: dict[str, Any], rack_hosts: list[list[str]]) -> str:
    """The importer's TOML overlay: rack limits and rows by hostlist, the rest as is."""
    lines = [f"# gpusched power overlay for {cluster.name!r}: read it back with",
             "#   gpusched.adapters.slurm.read_cluster('topology.conf', "
             "'gpusched-power.toml')",
             f"name = {_toml_value(spec['name'])}", 'leaf_switches = "racks"', ""]
    for table in ("power", "facility"):
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in spec[table].items())
        lines.append("")
    for hall in spec["halls"]:
        lines.append("[[halls]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in hall.items())
        lines.append("")
    groups: dict[tuple[Any, ...], list[str]] = {}
    for rack, hosts in zip(spec["racks"], rack_hosts):
        key = tuple((k, rack[k]) for k in _RACK_LIMIT_FIELDS if k in rack)
        groups.setdefault(key, []).extend(hosts)
    for key, hosts in groups.items():
        lines.append("[[rack_groups]]")
        lines.append(f"nodes = {_toml_value(compress_hostlist(hosts))}")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in key)
        lines.append("")
    row_hosts: list[list[str]] = [[] for _ in range(cluster.num_rows)]
    for r, hosts in enumerate(rack_hosts):
        row_hosts[cluster.rack_row[r]].extend(hosts)
    for row, hosts in zip(spec["rows"], row_hosts):
        lines.append("[[rows]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in row.items())
        lines.append(f"nodes = {_toml_value(compress_hostlist(hosts))}")
        lines.append("")
    for limit in spec.get("limits", []):
        lines.append("[[limits]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in limit.items())
        lines.append("")
    return "\n".join(lines)


def write_export(cluster: Cluster, out_dir: str | os.PathLike[str], *, cloud: bool = False,
                 partition: str = "gpu", exclusive: bool = True,
                 overwrite: bool = False) -> list[Path]:
    """Write :data:`FILES` into ``out_dir`` (created if missing), each atomically.

    An existing file is replaced only with ``overwrite=True``; otherwise nothing is
    written and :class:`SpecError` names the files in the way.
    """
    export = export_cluster(cluster, cloud=cloud, partition=partition, exclusive=exclusive)
    out = Path(out_dir)
    paths = [out / name for name in FILES]
    present = [p.name for p in paths if p.exists()]
    if present and not overwrite:
        raise SpecError(f"{out} already holds {present}; pass --force to replace them",
                        field="out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(f"cannot create {out}: {exc.strerror}", field="out") from None
    for path, text in zip(paths, export.texts().values()):
        write_atomic(path, text.encode("utf-8"))
    return paths
