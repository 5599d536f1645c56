"""API v2: the same calls as v1, with replies that name nodes by hostlist.

A v1 placement or explanation lists every node twice, by index and by name: for a
65,536-GPU gang that is 8,192 of each, over 160 KB.  Under ``/v2/`` the replies of
``place``, ``explain``, ``release`` and ``placements`` carry instead

    "node_count": 8192, "hostlist": "rack-[0001-1024]-n[0-7]"...

(a Slurm hostlist, written by :func:`gpusched.adapters.slurm.compress_hostlist`) and
the lists only when asked for with the query parameter ``?nodes=true``.  Every other
v2 route answers exactly as its v1 twin; v1 is unchanged, for the clients written
against it.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, Iterable

import numpy as np

from ..adapters.slurm import compress_hostlist
from ..spec import Cluster

__all__ = ["hostlist", "HostlistWriter", "wants_nodes", "reshaper", "COMPACT_ROUTES", "v2_paths", "API_VERSIONS"]

API_VERSIONS = {"v1": "full node lists in every reply (unchanged, for existing clients)",
                "v2": "hostlists; node lists with ?nodes=true"}

SITE_NODE_ROUTES = ("/v2/site/drain", "/v2/site/fail", "/v2/site/restore",
                    "/v2/site/fail-domain", "/v2/site/restore-domain")
COMPACT_ROUTES = ("/v2/place", "/v2/explain", "/v2/release", "/v2/placements",
                  "/v2/site/nodes") + SITE_NODE_ROUTES
"""The v2 routes whose replies differ from v1."""

_YES = {"1", "true", "yes", "on"}

# a hostlist part whose next-to-last number can be ranged over too: "rack-0001-n[0-7]"
_FOLDABLE = re.compile(r"^(?P<head>.*?)(?P<num>\d+)"
                       r"(?P<tail>[^\d\[\]]+(?:\[[^\]]*\]|\d+)[^\d\[\]]*)$")


def _top_level_parts(expr: str) -> list[str]:
    """``expr`` split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    parts.append(expr[start:])
    return parts


def _fold(parts: Iterable[str]) -> list[str]:
    """Hostlist parts merged over their next-to-last number where they differ only there;
    parts that have no such number are returned as they are."""
    groups: dict[tuple[str, str], list[str]] = {}
    for part in parts:
        match = _FOLDABLE.match(part)
        key = (match["head"], match["tail"]) if match else (part, "")
        groups.setdefault(key, []).append(match["head"] + match["num"] if match else "")
    out: list[str] = []
    for (head, tail), stems in groups.items():
        if not tail:
            out.append(head)
            continue
        out.extend(p + tail for p in _top_level_parts(compress_hostlist(stems)))
    return out


def hostlist(names: Iterable[str]) -> str:
    """A Slurm hostlist for ``names``, ranged over the last two numbers of each name.

    :func:`compress_hostlist` ranges over the last number: 8,192 nodes named
    ``rack-NNNN-nK`` give 1,024 parts ``rack-0001-n[0-7],rack-0002-n[0-7],...``.  Parts
    that differ only in the number before that fold into one,
    ``rack-[0001-1024]-n[0-7]``, which Slurm (and
    :func:`gpusched.adapters.slurm.expand_hostlist`) expand to the same names.
    """
    return ",".join(_fold(_top_level_parts(compress_hostlist(names))))


class HostlistWriter:
    """:func:`hostlist` for node indices of one cluster, with each rack's part cached.

    Writing the hostlist of a 65,536-GPU gang name by name takes tens of milliseconds on
    the event loop; a rack's part depends only on which of its nodes are in the job, so
    it is computed once per (rack, nodes) and the racks' parts are then folded.  Names
    that do not fold rack by rack (``gpu0001`` ... numbered across racks) are
    compressed together at the end, so the answer is what :func:`hostlist` gives.
    """

    MAX_CACHED = 100_000

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._parts: dict[tuple[int, tuple[int, ...]], tuple[bool, list[str]]] = {}

    def __call__(self, nodes: Iterable[int]) -> str:
        names = self.cluster.node_names
        chosen = np.unique(np.asarray(list(nodes), dtype=np.int64))  # sorted: racks in order
        racks = self.cluster.node_rack[chosen]
        cuts = np.flatnonzero(np.diff(racks)) + 1
        if len(self._parts) > self.MAX_CACHED:
            self._parts.clear()
        foldable: list[str] = []
        rest: list[str] = []
        for members in np.split(chosen, cuts) if len(chosen) else ():
            key = (int(self.cluster.node_rack[members[0]]), tuple(members.tolist()))
            cached = self._parts.get(key)
            if cached is None:
                parts = _top_level_parts(compress_hostlist(names[n] for n in key[1]))
                cached = (all(_FOLDABLE.match(p) for p in parts), parts)
                self._parts[key] = cached
            if cached[0]:
                foldable.extend(cached[1])
            else:
                rest.extend(names[n] for n in key[1])
        out = _fold(foldable)
        if rest:
            out.extend(_fold(_top_level_parts(compress_hostlist(rest))))
        return ",".join(out)


def wants_nodes(query: Any) -> bool:
    """True when the query string asks for the node lists (``?nodes=true``)."""
    return str(query.get("nodes", "")).strip().lower() in _YES


def _compact(writer: HostlistWriter, d: dict[str, Any] | None, full: bool
             ) -> dict[str, Any] | None:
    """A placement or explanation dict with ``hostlist`` and ``node_count``."""
    if d is None:
        return None
    nodes = d["nodes"]
    out = {k: v for k, v in d.items() if k not in ("nodes", "node_names")}
    out["node_count"] = len(nodes)
    out["hostlist"] = writer(nodes) if nodes else ""
    if full:
        out["nodes"] = nodes
        out["node_names"] = d.get("node_names") or [writer.cluster.node_names[n]
                                                     for n in nodes]
    return out


def reshaper(cluster: Cluster | HostlistWriter, route: str) -> Callable[[Any, Any], Any]:
    """The function turning a v1 reply of ``route`` into its v2 form (reply, query);
    pass one :class:`HostlistWriter` for all routes to share its cache."""
    writer = cluster if isinstance(cluster, HostlistWriter) else HostlistWriter(cluster)
    def place(reply: dict[str, Any], query: Any) -> dict[str, Any]:
        full = wants_nodes(query)
        return {**reply, "placement": _compact(writer, reply["placement"], full),
                "explanation": _compact(writer, reply["explanation"], full)}

    def explain(reply: dict[str, Any], query: Any) -> Any:
        return _compact(writer, reply, wants_nodes(query))

    def release(reply: dict[str, Any], query: Any) -> dict[str, Any]:
        return {"released": _compact(writer, reply["released"], wants_nodes(query))}

    def placements(reply: dict[str, Any], query: Any) -> dict[str, Any]:
        full = wants_nodes(query)
        return {"placements": [_compact(writer, p, full) for p in reply["placements"]]}

    def node_states(reply: dict[str, Any], query: Any) -> dict[str, Any]:
        # counts by state and a hostlist of each state's nodes: 10,000 down nodes of a
        # hall outage are a few parts, not 10,000 names
        out = {"counts": reply["counts"],
               "hostlists": {state: writer(nodes) if nodes else ""
                             for state, nodes in reply["nodes"].items()},
               "degraded": {job: len(lost) for job, lost in reply["degraded"].items()}}
        if wants_nodes(query):
            out.update(nodes=reply["nodes"], node_names=reply["node_names"],
                       degraded=reply["degraded"])
        return out

    index = {name: i for i, name in enumerate(writer.cluster.node_names)}

    def nodes_changed(reply: dict[str, Any], query: Any) -> dict[str, Any]:
        # a hall outage changes thousands of nodes: their hostlist, the names on request
        changed = reply["changed"]
        out = {k: v for k, v in reply.items() if k != "changed"}
        out["changed_count"] = len(changed)
        out["changed_hostlist"] = writer(index[n] for n in changed) if changed else ""
        if wants_nodes(query):
            out["changed"] = changed
        return out

    return {"/v2/place": place, "/v2/explain": explain, "/v2/release": release,
            "/v2/placements": placements, "/v2/site/nodes": node_states,
            **dict.fromkeys(SITE_NODE_ROUTES, nodes_changed)}[route]


# ---- the OpenAPI document's v2 half ---------------------------------------------------

def _compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    props = out["properties"]
    for key in ("nodes", "node_names"):
        if key in props:
            props[key] = {**props[key], "description": "only with ?nodes=true"}
    props["node_count"] = {"type": "integer"}
    props["hostlist"] = {"type": "string", "description": "the nodes as a Slurm hostlist"}
    out["required"] = [r for r in out.get("required", []) if r not in ("nodes", "node_names")
                       ] + ["node_count", "hostlist"]
    return out


def v2_paths(doc: dict[str, Any]) -> None:
    """Add ``/v2/...`` twins of every ``/v1/...`` path to the OpenAPI ``doc`` (in place)."""
    schemas = doc["components"]["schemas"]
    schemas["CompactPlacement"] = _compact_schema(schemas["Placement"])
    schemas["CompactExplanation"] = _compact_schema(schemas["Explanation"])
    ref = {"Placement": "CompactPlacement", "Explanation": "CompactExplanation"}
    schemas["CompactPlaceResponse"] = {
        "type": "object", "required": ["placed", "placement", "explanation"],
        "properties": {"placed": {"type": "boolean"},
                       "placement": {**schemas["CompactPlacement"], "nullable": True},
                       "explanation": {**schemas["CompactExplanation"], "nullable": True}}}
    schemas["CompactReleaseResponse"] = {
        "type": "object", "required": ["released"],
        "properties": {"released": schemas["CompactPlacement"]}}
    schemas["CompactPlacementList"] = {
        "type": "object", "required": ["placements"],
        "properties": {"placements": {"type": "array",
                                      "items": schemas["CompactPlacement"]}}}
    schemas["CompactNodeStates"] = {
        "type": "object", "required": ["counts", "hostlists", "degraded"],
        "properties": {"counts": schemas["NodeStates"]["properties"]["counts"],
                       "hostlists": {"type": "object", "description": "each state's nodes "
                                     "as a Slurm hostlist (draining, down, spare)",
                                     "additionalProperties": {"type": "string"}},
                       "degraded": {"type": "object", "description": "job id -> nodes "
                                    "lost (a count; names with ?nodes=true)"},
                       "nodes": {"type": "object", "description": "only with ?nodes=true"},
                       "node_names": {"type": "object",
                                      "description": "only with ?nodes=true"}}}
    nodes_reply = copy.deepcopy(schemas["NodesResponse"])
    nodes_reply["properties"]["changed"]["description"] = "only with ?nodes=true"
    nodes_reply["properties"]["changed_count"] = {"type": "integer"}
    nodes_reply["properties"]["changed_hostlist"] = {
        "type": "string", "description": "the nodes whose state changed, as a hostlist"}
    nodes_reply["required"] = [r for r in nodes_reply["required"] if r != "changed"] + [
        "changed_count", "changed_hostlist"]
    schemas["CompactNodesResponse"] = nodes_reply
    ref.update({"PlaceResponse": "CompactPlaceResponse",
                "ReleaseResponse": "CompactReleaseResponse",
                "PlacementList": "CompactPlacementList",
                "NodeStates": "CompactNodeStates",
                "NodesResponse": "CompactNodesResponse"})
    nodes_param = {"name": "nodes", "in": "query", "required": False,
                   "description": "true: list every node by index and name as well",
                   "schema": {"type": "boolean", "default": False}}
    for path, item in list(doc["paths"].items()):
        if not path.startswith("/v1/"):
            continue
        twin = copy.deepcopy(item)
        v2 = "/v2/" + path[len("/v1/"):]
        if v2 in COMPACT_ROUTES:
            for op in twin.values():
                ok = op["responses"]["200"]["content"]["application/json"]["schema"]
                name = ok["$ref"].rsplit("/", 1)[1]
                ok["$ref"] = f"#/components/schemas/{ref.get(name, name)}"
                op["parameters"] = [nodes_param]
                op["summary"] += " (hostlists; node lists with ?nodes=true)"
        doc["paths"][v2] = twin
    doc["info"]["version"] = "2"
    doc["info"]["description"] += (" Two API versions: /v1 lists every node in its "
                                   "replies; /v2 names them by hostlist and lists them "
                                   "only with ?nodes=true.")
