"""What ``gpusched drain``, ``fail`` and ``restore`` share: naming nodes, and the change.

Nodes are named by Slurm hostlists (``rack-0001-n[0-3],rack-0002-n0``) or by index, one
or more; a failure domain by its constraint row's name with ``--domain`` (``"rack-3
feed"``, ``"row-2 busway"``, ``"hall-1 switchboard"``).  Every command is idempotent:
draining a draining node or restoring an up node changes nothing and says so, so tools
may retry.  On a state file the whole change is refused (nothing saved) if one name is
unknown.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from ..errors import UsageError
from ..hostlist import compress_hostlist, expand_hostlist
from ._format import print_json
from ._site import add_site_arguments, changing, client_for, open_for_change, save_view

__all__ = ["add_node_arguments", "run_node_command"]


def add_node_arguments(parser: argparse.ArgumentParser, *, domains: bool = True) -> None:
    parser.add_argument("nodes", nargs="*", metavar="NODES",
                        help="hostlists or node indices (e.g. rack-0001-n[0-3] 17)")
    if domains:
        parser.add_argument("--domain", action="append", default=[], metavar="NAME",
                            help="a failure domain: a constraint row's name, e.g. "
                                 "'rack-3 feed' or 'row-2 busway' (repeatable)")
    add_site_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the change as JSON")


def _node_list(names: list[str]) -> list[Any]:
    out: list[Any] = []
    for word in names:
        if word.isascii() and word.isdigit():
            out.append(int(word))
        else:
            out.extend(expand_hostlist(word))
    return out


def run_node_command(args: argparse.Namespace, verb: str) -> int:
    """``verb`` is ``drain``, ``fail`` or ``restore``."""
    domains = list(getattr(args, "domain", []) or [])
    if not args.nodes and not domains:
        raise UsageError(f"name the nodes to {verb} (hostlists or indices)"
                         + (" or a --domain" if hasattr(args, "domain") else ""),
                         field="nodes")
    nodes = _node_list(args.nodes)
    if args.server is not None:   # the service's /v1/site endpoints (journaled there)
        client = client_for(args)
        reply: dict[str, Any] = {"changed": [], "jobs_hit": []}
        calls = ([(f"/v1/site/{verb}", {"nodes": nodes})] if nodes else []) + [
            (f"/v1/site/{verb}-domain", {"domain": name}) for name in domains]
        if domains and verb == "drain":
            raise UsageError("drain takes nodes, not --domain", field="domain")
        for path, body in calls:
            got = client.post(path, body)
            for key in ("changed", "jobs_hit"):
                reply[key] += [x for x in got.get(key, []) if x not in reply[key]]
        _print(verb, reply, args.json)
        return 0
    with changing(args):
        view = open_for_change(args)
        engine, names = view.engine, view.cluster.node_names
        changed: list[int] = []
        hit: list[str] = []
        actions: dict[str, Callable[[Any], Any]] = {
            "drain": engine.drain, "fail": engine.fail, "restore": engine.restore_nodes}
        result: list[Any] = list(actions[verb](nodes)) if nodes else []
        for name in domains:
            if verb == "fail":
                result += engine.fail_domain(name)
            elif verb == "restore":
                result += engine.restore_domain(name)
            else:
                raise UsageError("drain takes nodes, not --domain", field="domain")
        if verb == "fail":
            hit = list(dict.fromkeys(result))
        else:
            changed = list(result)
        save_view(view)
    reply = {"changed": [names[n] for n in changed], "jobs_hit": hit,
             "degraded": sorted(engine.degraded())}
    _print(verb, reply, args.json)
    return 0


def _print(verb: str, reply: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(reply)
        return
    if verb == "fail":
        hit = reply.get("jobs_hit", [])
        print(f"failed: {len(hit)} job(s) hit" + (f": {', '.join(hit)}" if hit else "")
              + ("; repair them with the service or the library (Engine.repair)"
                 if hit else ""))
        return
    changed = reply.get("changed", [])
    print(f"{verb}: {len(changed)} node(s) changed"
          + (f": {compress_hostlist(changed)}" if changed else " (already so)"))
