"""Slurm import: build a Cluster from topology.conf plus a TOML power overlay.

topology.conf (Slurm's ``topology.conf(5)``) describes the network only.  Two plugins'
forms are read:

* ``topology/tree``: lines ``SwitchName=<name> [Nodes=<hostlist>] [Switches=<hostlist>]
  [LinkSpeed=<n>]``.  The switches that list ``Nodes`` are the leaves; each leaf becomes
  a gpusched pod (a network block: nodes under one leaf talk at full speed).
* ``topology/block``: lines ``BlockName=<name> Nodes=<hostlist>`` and one optional
  ``BlockSizes=<n>[,<n>...]``; each block becomes a pod.

As in Slurm, parameter names are case-insensitive, ``#`` starts a comment, and node
lists are hostlist expressions (``gpu[0001-0512]``, ``tux[0-3,12,18-20]``,
``r[1-2]n[01-04]``).  Any line that cannot be read raises :class:`SpecError` with
``field="line N"``.

Power and cooling are not in topology.conf, so a small TOML overlay adds them::

    name = "my-site"                 # cluster name (default "slurm")
    [power]                          # optional PowerModel fields (gpus_per_node, ...)
    [facility]
    it_limit_w = 4.0e6
    [[halls]]
    name = "hall-1"
    switchboard_w = 2.5e6            # cooling_w defaults to switchboard_w
    [racks]                          # every rack, unless a [[rack_groups]] entry matches
    nodes_per_rack = 8               # consecutive nodes of a pod, in topology order
    kind = "liquid"
    feed_w = 88000
    cdu_w = 90000
    residual_air_w = 10000
    [[rack_groups]]                  # racks whose nodes are in `nodes` take these fields
    nodes = "gpu[0257-0512]"
    kind = "air"
    nodes_per_rack = 4
    feed_w = 40800
    air_cooling_w = 40800
    [[rows]]                         # power rows: a busway feeding the racks of `nodes`
    name = "row-a"
    hall = "hall-1"
    busway_w = 600000
    nodes = "gpu[0001-0256]"

With ``leaf_switches = "racks"`` (what :mod:`.exporter` writes) each leaf switch is a
rack of that name and the switch right above it is its pod, so ``nodes_per_rack`` is not
needed; a ``[[limits]]`` list (extra rows, as in a cluster file) is passed through.

A ``[[rack_groups]]`` entry that changes ``kind`` replaces the ``[racks]`` fields
instead of adding to them (liquid and air racks have different limits).  Racks are cut
from each pod's nodes in topology order (a rack never spans two pods);
rack ``k`` of pod ``p`` is named ``<p>-r<k>``.  Every rack must lie inside one row.
Node names are kept, so a Placement maps back to Slurm names and
:func:`placement_nodelist` writes them as a ``--nodelist`` hostlist.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ...spec import Cluster
from ...errors import SpecError
from ...job import Placement
from ... import hostlist as hostlists
from .hostlists import _ASCII_NUMBER, _MAX_DIGITS, compress_hostlist, expand_hostlist, hostlist_size

__all__ = ["Topology", "parse_topology", "read_topology", "load_overlay",
           "cluster_from_topology", "read_cluster", "placement_nodelist"]

# ======================================================================================
# topology.conf
# ======================================================================================

@dataclass
class Topology:
    """What topology.conf says: the pods (leaf switches or blocks) and their nodes."""

    plugin: str                                   # "tree" or "block"
    pods: dict[str, list[str]]                    # pod name -> node names, in file order
    switches: dict[str, list[str]] = field(default_factory=dict)  # tree: children
    block_sizes: list[int] = field(default_factory=list)
    source: str = "topology.conf"

    @property
    def node_names(self) -> list[str]:
        return [n for nodes in self.pods.values() for n in nodes]


_TREE_KEYS = {"switchname", "switches", "nodes", "linkspeed"}
_BLOCK_KEYS = {"blockname", "nodes"}
# Slurm reads its config with fgets(): a line ends at '\n' only (a trailing '\r' is
# dropped), and tokens are separated by C isspace() characters, all of them ASCII.
# str.splitlines() and str.split() would also break at \f, \x1c-\x1e, \x85, U+2028 and
# U+2029, turning the rest of a comment into configuration.
_ASCII_BLANKS = " \t\r\v\f"
_TOKEN_SEPARATOR = re.compile(f"[{_ASCII_BLANKS}]+")


def _switch_cycle(switches: Mapping[str, list[str]]) -> list[str] | None:
    """The first cycle of Switches= links, in file order (``[a, b, a]``), or None."""
    done: set[str] = set()
    for root in switches:
        if root in done:
            continue
        path, on_path = [root], {root}
        stack = [iter(switches[root])]
        while stack:
            child = next(stack[-1], None)
            if child is None:  # every child of path[-1] explored: it is on no cycle
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if child in on_path:
                return path[path.index(child):] + [child]
            if child in done or child not in switches:
                continue
            path.append(child)
            on_path.add(child)
            stack.append(iter(switches[child]))
    return None


def parse_topology(text: str, source: str = "topology.conf") -> Topology:
    """Parse topology.conf text (tree or block form); SpecError(field="line N") if bad."""
    plugin: str | None = None
    pods: dict[str, list[str]] = {}
    switches: dict[str, list[str]] = {}
    switch_line: dict[str, int] = {}
    node_where: dict[str, tuple[str, int]] = {}
    block_sizes: list[int] = []
    sizes_line = 0

    hosts_named = 0

    def fail(number: int, message: str) -> SpecError:
        return SpecError(f"{source}: {message}", field=f"line {number}")

    def expand(number: int, key: str, expr: str) -> list[str]:
        # The whole file shares one budget of names, counted before each expansion, so
        # many lines of big ranges cannot add up to more than hostlists.MAX_HOSTS either.
        nonlocal hosts_named
        try:
            size = hostlist_size(expr)
            if hosts_named + size > hostlists.MAX_HOSTS:
                raise SpecError(f"{expr!r} names {size:,} hosts, which with the "
                                f"{hosts_named:,} of the lines above is more than "
                                f"{hostlists.MAX_HOSTS:,} in one file")
            names = expand_hostlist(expr)
        except SpecError as exc:
            raise fail(number, f"{key}: {exc}") from None
        hosts_named += size
        return names

    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].strip(_ASCII_BLANKS)
        if not line:
            continue
        params: dict[str, str] = {}
        for token in _TOKEN_SEPARATOR.split(line):
            key, eq, value = token.partition("=")
            if not eq or not key or not value:
                raise fail(number, f"{token!r} is not Key=Value")
            lower = key.lower()
            if lower in params:
                raise fail(number, f"{key} is given twice")
            params[lower] = value
        if "blocksizes" in params:
            if len(params) != 1:
                raise fail(number, "BlockSizes= stands on its own line")
            if sizes_line:
                raise fail(number, f"BlockSizes is given twice (also line {sizes_line})")
            values = params["blocksizes"].split(",")
            # int() would also take '１６', '1_6' and ' 16': Slurm reads ASCII digits only.
            if not all(_ASCII_NUMBER.fullmatch(v) and len(v) <= _MAX_DIGITS for v in values):
                raise fail(number, f"BlockSizes={params['blocksizes']!r} must be a comma "
                                   "list of whole numbers (ASCII digits 0-9)")
            block_sizes = [int(v) for v in values]
            base = block_sizes[0]
            if base < 1 or any(b <= a or b % base or (b // base) & (b // base - 1)
                               for a, b in zip(block_sizes, block_sizes[1:])):
                raise fail(number, f"BlockSizes={params['blocksizes']} must be positive and "
                                   "ascending, each a power-of-two multiple of the first")
            sizes_line = number
            plugin = plugin or "block"
            if plugin != "block":
                raise fail(number, "BlockSizes belongs to topology/block, but this file "
                                   "uses SwitchName (topology/tree)")
            continue
        if "switchname" in params:
            kind, allowed, name_key = "tree", _TREE_KEYS, "switchname"
        elif "blockname" in params:
            kind, allowed, name_key = "block", _BLOCK_KEYS, "blockname"
        else:
            raise fail(number, "a line must start a switch (SwitchName=), a block "
                               "(BlockName=) or be BlockSizes=")
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise fail(number, f"unknown parameter(s) {unknown} for "
                               f"{'a switch' if kind == 'tree' else 'a block'}; valid: "
                               f"{sorted(allowed)}")
        if plugin is not None and plugin != kind:
            raise fail(number, "this file mixes topology/tree (SwitchName) and "
                               "topology/block (BlockName) lines")
        plugin = kind
        name = params[name_key]
        if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", name):
            raise fail(number, f"name {name!r} has characters other than letters, digits, "
                               "'_', '.', ':' and '-'")
        if name in switch_line:
            raise fail(number, f"{name!r} is defined twice (also line {switch_line[name]})")
        switch_line[name] = number
        if "linkspeed" in params and not _ASCII_NUMBER.fullmatch(params["linkspeed"]):
            raise fail(number, f"LinkSpeed={params['linkspeed']!r} must be a whole number "
                               "(ASCII digits 0-9)")
        if "nodes" in params and "switches" in params:
            raise fail(number, "a switch lists either Nodes= (a leaf) or Switches=, not both")
        if "switches" in params:
            switches[name] = expand(number, "Switches", params["switches"])
            continue
        if "nodes" not in params:
            raise fail(number, f"{name!r} lists no Nodes=" +
                       (" or Switches=" if kind == "tree" else ""))
        nodes = expand(number, "Nodes", params["nodes"])
        for node in nodes:
            if node in node_where:
                other, other_line = node_where[node]
                raise fail(number, f"node {node!r} is already under {other!r} (line "
                                   f"{other_line}); a node belongs to one "
                                   f"{'leaf switch' if kind == 'tree' else 'block'}")
            node_where[node] = (name, number)
        pods[name] = nodes
    if plugin is None or not pods:
        raise SpecError(f"{source}: no SwitchName= with Nodes= or BlockName= line found",
                        field="line 0")
    for name, children in switches.items():
        for child in children:
            if child not in switch_line:
                raise fail(switch_line[name], f"switch {name!r} lists {child!r}, which is "
                                              "not defined")
    cycle = _switch_cycle(switches)
    if cycle is not None:
        # The tree plugin walks Switches= up to a root; a loop has none.
        lines = ", ".join(f"{n!r} line {switch_line[n]}" for n in dict.fromkeys(cycle))
        raise fail(switch_line[cycle[-2]], f"Switches= links form a cycle "
                                           f"{' -> '.join(cycle)} ({lines}); the switches "
                                           "of topology/tree must form a tree")
    return Topology(plugin, pods, switches, block_sizes, source)


def read_topology(path: str | os.PathLike[str]) -> Topology:
    """Parse a topology.conf file."""
    path = Path(path)
    try:
        # bytes, then decode: read_text() would turn a lone '\r' into a line break
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}", field="path") from None
    return parse_topology(text, source=str(path))


# ======================================================================================
# The overlay and the Cluster
# ======================================================================================

_OVERLAY_KEYS = {"name", "power", "facility", "halls", "racks", "rack_groups", "rows",
                 "limits", "leaf_switches"}
_RACK_FIELDS = {"kind", "nodes_per_rack", "feed_w", "cdu_w", "liquid_fraction",
                "residual_air_w", "air_cooling_w"}
_ROW_FIELDS = {"name", "hall", "busway_w", "nodes"}


def load_overlay(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the TOML power overlay (see the module docstring)."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}", field="overlay") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}", field="overlay") from None


def _keys(table: Any, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(table, Mapping):
        raise SpecError(f"must be a table, got {type(table).__name__}", field=where)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(f"unknown key(s) {unknown}; valid keys are {sorted(allowed)}",
                        field=where)
    return table


class _HostBudget:
    """Names a set of overlay hostlists may expand to in all, counted before expanding.

    One per kind of list (rows, rack groups): each list alone is bounded by
    :func:`expand_hostlist`, and this bounds a thousand of them too.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.used = 0

    def hosts(self, expr: Any, where: str) -> set[str]:
        try:
            size = hostlist_size(expr)
            if self.used + size > hostlists.MAX_HOSTS:
                raise SpecError(f"{expr!r} names {size:,} hosts, which with the "
                                f"{self.used:,} of the {self.what} before it is more than "
                                f"{hostlists.MAX_HOSTS:,}")
            names = set(expand_hostlist(expr))
        except SpecError as exc:
            raise SpecError(str(exc), field=where) from None
        self.used += size
        return names


def cluster_from_topology(topology: Topology, overlay: Mapping[str, Any]) -> Cluster:
    """Build the gpusched Cluster of a Slurm site; SpecError names the overlay field."""
    _keys(overlay, _OVERLAY_KEYS, "overlay")
    known = set(topology.node_names)
    defaults = dict(_keys(overlay.get("racks", {}), _RACK_FIELDS, "overlay.racks"))
    groups = []
    group_budget = _HostBudget("rack groups")
    for i, group in enumerate(overlay.get("rack_groups", [])):
        where = f"overlay.rack_groups[{i}]"
        _keys(group, _RACK_FIELDS | {"nodes"}, where)
        if "nodes" not in group:
            raise SpecError("is missing (a hostlist)", field=f"{where}.nodes")
        hosts = group_budget.hosts(group["nodes"], f"{where}.nodes")
        stray = sorted(hosts - known)
        if stray:
            raise SpecError(f"names node(s) not in {topology.source}: "
                            f"{compress_hostlist(stray[:20])}", field=f"{where}.nodes")
        groups.append((hosts, {k: v for k, v in group.items() if k != "nodes"}))

    def rack_fields(node: str) -> dict[str, Any]:
        fields = dict(defaults)
        for hosts, values in groups:
            if node in hosts:
                if values.get("kind", fields.get("kind")) != fields.get("kind"):
                    # a group that changes the kind starts from a clean slate of limits
                    fields = {}
                fields.update(values)
        return fields

    rows_raw = overlay.get("rows")
    if not isinstance(rows_raw, list) or not rows_raw:
        raise SpecError("is missing: list the power rows as [[rows]] with name, hall, "
                        "busway_w and nodes", field="overlay.rows")
    rows = []
    node_row: dict[str, int] = {}
    row_budget = _HostBudget("rows")
    for i, row in enumerate(rows_raw):
        where = f"overlay.rows[{i}]"
        _keys(row, _ROW_FIELDS, where)
        for key in ("name", "hall", "busway_w", "nodes"):
            if key not in row:
                raise SpecError("is missing", field=f"{where}.{key}")
        for node in row_budget.hosts(row["nodes"], f"{where}.nodes"):
            if node in node_row:
                raise SpecError(f"node {node!r} is also in rows[{node_row[node]}]",
                                field=f"{where}.nodes")
            node_row[node] = i
        rows.append({"name": row["name"], "hall": row["hall"], "busway_w": row["busway_w"]})

    def rack(name: str, pod: str, members: list[str], fields: dict[str, Any]) -> dict[str, Any]:
        row_index = {node_row[n] for n in members if n in node_row}
        if any(n not in node_row for n in members):
            missing = [n for n in members if n not in node_row]
            raise SpecError(f"node(s) {compress_hostlist(missing)} of rack {name!r} are "
                            "in no row", field="overlay.rows")
        if len(row_index) > 1:
            raise SpecError(f"rack {name!r} ({compress_hostlist(members)}) spans rows "
                            f"{sorted(rows[i]['name'] for i in row_index)}; a rack "
                            "hangs off one busway", field="overlay.rows")
        return {"name": name, "pod": pod, "row": rows[row_index.pop()]["name"],
                "nodes": len(members), "node_names": members, **fields}

    leaves = overlay.get("leaf_switches", "pods")
    if leaves not in ("pods", "racks"):
        raise SpecError(f"must be \"pods\" (each leaf switch is a pod) or \"racks\" (each "
                        f"leaf switch is a rack, its parent switch the pod), got {leaves!r}",
                        field="overlay.leaf_switches")
    racks = []
    if leaves == "racks":
        pod_names = _pods_above_leaves(topology)
        for leaf, nodes in topology.pods.items():
            fields = rack_fields(nodes[0])
            fields.pop("nodes_per_rack", None)  # the leaf switch is the rack
            racks.append(rack(leaf, pod_names[leaf], nodes, fields))
        pods = list(dict.fromkeys(p for p in topology.switches if p in pod_names.values()))
    else:
        pods = list(topology.pods)
        for pod, nodes in topology.pods.items():
            start = 0
            k = 0
            while start < len(nodes):
                fields = rack_fields(nodes[start])
                per_rack = fields.pop("nodes_per_rack", None)
                if isinstance(per_rack, bool) or not isinstance(per_rack, int) or per_rack < 1:
                    raise SpecError(f"must be a whole number >= 1 for the racks of node "
                                    f"{nodes[start]!r}, got {per_rack!r}",
                                    field="overlay.racks.nodes_per_rack")
                k += 1
                racks.append(rack(f"{pod}-r{k}", pod, nodes[start:start + per_rack], fields))
                start += per_rack
    spec: dict[str, Any] = {"name": overlay.get("name", "slurm"),
                            "facility": overlay.get("facility"),
                            "halls": overlay.get("halls"), "rows": rows,
                            "pods": [{"name": p} for p in pods], "racks": racks}
    if spec["facility"] is None:
        raise SpecError("is missing ([facility] with it_limit_w)", field="overlay.facility")
    if "power" in overlay:
        spec["power"] = overlay["power"]
    if "limits" in overlay:
        spec["limits"] = overlay["limits"]
    return Cluster.from_dict(spec)


def _pods_above_leaves(topology: Topology) -> dict[str, str]:
    """Leaf switch -> the switch right above it (its pod), for ``leaf_switches = "racks"``."""
    if topology.plugin != "tree":
        raise SpecError("leaf_switches = \"racks\" needs topology/tree (SwitchName= lines "
                        "with Switches=), not topology/block", field="overlay.leaf_switches")
    parent: dict[str, str] = {}
    for switch, children in topology.switches.items():
        for child in children:
            if child in parent:
                raise SpecError(f"switch {child!r} is under both {parent[child]!r} and "
                                f"{switch!r}", field="overlay.leaf_switches")
            parent[child] = switch
    pods: dict[str, str] = {}
    for leaf in topology.pods:
        if leaf not in parent:
            raise SpecError(f"leaf switch {leaf!r} has no switch above it; with "
                            "leaf_switches = \"racks\" the switch above a rack is its pod",
                            field="overlay.leaf_switches")
        pods[leaf] = parent[leaf]
    mixed = sorted({p for p in pods.values()
                    if any(c not in topology.pods for c in topology.switches[p])})
    if mixed:
        raise SpecError(f"switch(es) {mixed[:5]} hold both racks (leaf switches) and other "
                        "switches; a pod switch holds racks only",
                        field="overlay.leaf_switches")
    return pods


def read_cluster(topology_path: str | os.PathLike[str],
                 overlay_path: str | os.PathLike[str]) -> Cluster:
    """A Cluster from a topology.conf file and its TOML power overlay."""
    return cluster_from_topology(read_topology(topology_path), load_overlay(overlay_path))


def placement_nodelist(cluster: Cluster, placement: Placement | Sequence[int]) -> str:
    """The nodes of ``placement`` as a Slurm hostlist, ready for ``--nodelist``."""
    nodes = placement.nodes if isinstance(placement, Placement) else placement
    return compress_hostlist(cluster.node_names[n] for n in nodes)
