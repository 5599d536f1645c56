"""gpusched explain: whether a job would fit now, where, at which cap, and what binds.

Nothing changes.  The answer names the limit that holds the cap below the job's
highest (a rack feed, a row's busway, a hall, the facility), or, for a job that does
not fit, whether GPUs or watts are missing.  Exits 0 when the job fits, 3 when not.
"""

from __future__ import annotations

import argparse

from ._format import print_json
from ._job import add_job_arguments, job_body, job_from_args, placement_summary
from ._site import add_site_arguments, client_for, open_view

__all__ = ["add_arguments", "run"]

EXAMPLES = """
gpusched explain --state st.json --gpus 32
gpusched explain --state st.json --gpus 16 --min-cap-w 400 --json
gpusched explain --server http://127.0.0.1:8787 --gpus 4096 --min-cap-w 350
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_site_arguments(parser)
    add_job_arguments(parser, id_required=False)
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--nodes", action="store_true",
                        help="with --json, also list the node indices")


def run(args: argparse.Namespace) -> int:
    if args.server is not None:
        e = client_for(args).post("/v1/explain", job_body(args))
        status, message, cap_w = e["status"], e["message"], e["cap_w"]
        binding, kind, names, nodes = (e.get("binding"), e.get("binding_kind"),
                                       e.get("node_names", []), e.get("nodes", []))
        gpus_per_node = args.gpus // len(names) if names else 0
    else:
        view = open_view(args)
        job, pod = job_from_args(args, view.cluster)
        x = view.engine.explain(job, pod)
        status, message, cap_w, binding, kind = (x.status, x.message, x.cap_w, x.binding,
                                                 x.binding_kind)
        nodes = list(x.nodes)
        names = [view.cluster.node_names[n] for n in nodes]
        gpus_per_node = args.gpus // len(nodes) if nodes else 0
    answer = {"job_id": args.id, "status": status, "message": message, "binding": binding,
              "binding_kind": kind}
    if names:
        answer["placement"] = placement_summary(args.id, names, gpus_per_node, cap_w,
                                                nodes if args.nodes else None)
    if args.json:
        print_json(answer)
    else:
        print(message + (f"; nodes {answer['placement']['hostlist']}" if names else ""))
    return 0 if status == "placeable" else 3
