"""gpusched place: place one job on the site, at the highest cap its limits allow.

On a state file, the job is placed and the file rewritten atomically (with the time it
was placed, which 'gpusched jobs' shows); over --server, the service places it and
journals it.  The reply is compact: the job's nodes as a Slurm hostlist, not one name
per node.  A job that does not fit now is not an error of the command line: it prints
why (the binding limit, or missing capacity) and exits 3.
"""

from __future__ import annotations

import argparse

from ._format import print_json
from ._job import add_job_arguments, job_body, job_from_args, placement_summary
from ._site import (add_site_arguments, changing, client_for, now_s, open_for_change,
                    save_view)

__all__ = ["add_arguments", "run"]

EXAMPLES = """
gpusched place --state st.json --create --cluster tiny --id train-a --gpus 16
gpusched place --state st.json --id eval-1 --gpus 8 --min-cap-w 400 --pod pod-2
GPUSCHED_TOKEN=s3cret gpusched place --server http://127.0.0.1:8787 --id train-b --gpus 512
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_site_arguments(parser, create=True)
    add_job_arguments(parser, id_required=True)
    parser.add_argument("--json", action="store_true",
                        help="print the reply as JSON (hostlist and counts)")
    parser.add_argument("--nodes", action="store_true",
                        help="with --json, also list the node indices")


def _print(summary: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json({"placed": True, **summary})
        return
    print(f"placed {summary['job_id']}: {summary['gpus']} GPUs on {summary['node_count']} "
          f"node(s) {summary['hostlist']} at {summary['cap_w']} W")


def _refused(job_id: str, status: str, message: str, binding: object, kind: object,
             as_json: bool) -> int:
    if as_json:
        print_json({"placed": False, "job_id": job_id, "status": status, "binding": binding,
                    "binding_kind": kind, "reason": message})
    else:
        print(f"not placed: {message}")
    return 3


def run(args: argparse.Namespace) -> int:
    if args.server is not None:
        if getattr(args, "create", False):
            from ..errors import UsageError

            raise UsageError("--create is for a state file; a service starts its own "
                             "state", field="create")
        reply = client_for(args).post("/v1/place", job_body(args))
        if not reply.get("placed"):
            e = reply.get("explanation") or {}
            return _refused(args.id, str(e.get("status")), str(e.get("message")),
                            e.get("binding"), e.get("binding_kind"), args.json)
        p = reply["placement"]
        _print(placement_summary(p["job_id"], p["node_names"], p["gpus_per_node"],
                                 p["cap_w"], p["nodes"] if args.nodes else None), args.json)
        return 0
    with changing(args):
        view = open_for_change(args)
        job, pod = job_from_args(args, view.cluster)
        placement = view.engine.place(job, pod=pod)
        if placement is None:
            e = view.engine.explain(job, pod)
            return _refused(job.id, e.status, e.message, e.binding, e.binding_kind,
                            args.json)
        view.placed_at[job.id] = now_s()
        save_view(view)
    names = [view.cluster.node_names[n] for n in placement.nodes]
    _print(placement_summary(job.id, names, placement.gpus_per_node, placement.cap_w,
                             list(placement.nodes) if args.nodes else None), args.json)
    return 0
