"""gpusched release: release placed jobs, freeing their GPUs and their watts.

Every id must be placed: if one is not, nothing is released and the command exits 2
naming it (on a state file; a service releases the ids before it one by one).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import GpuschedError, UnknownJobError
from ._format import print_json
from ._job import placement_summary
from ._site import add_site_arguments, changing, client_for, open_for_change, save_view

__all__ = ["add_arguments", "run"]

EXAMPLES = """
gpusched release --state st.json train-a
gpusched release --state st.json eval-1 eval-2 --json
GPUSCHED_TOKEN=s3cret gpusched release --server http://127.0.0.1:8787 train-b
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="+", metavar="JOB", help="ids of placed jobs")
    add_site_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print what was released as JSON")


def run(args: argparse.Namespace) -> int:
    released = []
    if args.server is not None:
        client = client_for(args)
        try:
            for job_id in args.job_ids:
                p = client.post("/v1/release", {"job_id": job_id})["released"]
                released.append(placement_summary(p["job_id"], p["node_names"],
                                                  p["gpus_per_node"], p["cap_w"]))
        except GpuschedError:
            _print(released, args.json)  # those before the refused id are gone: say so
            raise
    else:
        with changing(args):
            view = open_for_change(args)
            missing = [j for j in args.job_ids if j not in view.engine]
            if missing:
                raise UnknownJobError(f"no placed job {missing[0]!r} in {args.state!r}; "
                                      "nothing released ('gpusched jobs' lists the placed "
                                      "ones)", field="job_ids")
            for job_id in dict.fromkeys(args.job_ids):
                p = view.engine.release(job_id)
                view.placed_at.pop(job_id, None)
                released.append(placement_summary(job_id, [view.cluster.node_names[n]
                                                           for n in p.nodes],
                                                  p.gpus_per_node, p.cap_w))
            save_view(view)
    _print(released, args.json)
    return 0


def _print(released: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json({"released": released})
        return
    for r in released:
        print(f"released {r['job_id']}: {r['gpus']} GPUs on {r['hostlist']}")
