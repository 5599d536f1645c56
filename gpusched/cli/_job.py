"""The job options that ``place`` and ``explain`` share, and how a placement is printed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ._format import hostlist

if TYPE_CHECKING:
    from ..job import Job
    from ..spec import Cluster

__all__ = ["add_job_arguments", "job_from_args", "job_body", "placement_summary"]


def add_job_arguments(parser: argparse.ArgumentParser, *, id_required: bool) -> None:
    job = parser.add_argument_group("the job")
    job.add_argument("--id", required=id_required, default=None if id_required else "probe",
                     help="job id, unique on the site" if id_required
                     else "job id to explain under (default: probe)")
    job.add_argument("--gpus", type=int, required=True,
                     help="GPUs: 1 to a node's GPUs inside one node, or a multiple of a "
                          "node's GPUs on whole nodes")
    job.add_argument("--max-cap-w", type=int, default=None, metavar="W",
                     help="highest power cap per GPU (default: the cluster's cap_max_w)")
    job.add_argument("--min-cap-w", type=int, default=None, metavar="W",
                     help="lowest cap the job accepts; the engine steps down 25 W at a time "
                          "until the site's limits hold (default: --max-cap-w, a rigid job)")
    job.add_argument("--pod", default=None, metavar="INDEX|NAME",
                     help="place inside this pod only (default: any pod)")


def _pod(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def job_from_args(args: argparse.Namespace, cluster: "Cluster") -> tuple["Job", Any]:
    """The Job the options describe (checked by Job itself) and the pod to use."""
    from ..job import Job

    max_cap_w = cluster.power.cap_max_w if args.max_cap_w is None else args.max_cap_w
    return Job(args.id, args.gpus, max_cap_w=max_cap_w, min_cap_w=args.min_cap_w), \
        _pod(args.pod)


def job_body(args: argparse.Namespace) -> dict[str, Any]:
    """The same job as a service request body; the service fills in its own cap_max_w."""
    job: dict[str, Any] = {"id": args.id, "gpus": args.gpus}
    if args.max_cap_w is not None:
        job["max_cap_w"] = args.max_cap_w
    if args.min_cap_w is not None:
        job["min_cap_w"] = args.min_cap_w
    body: dict[str, Any] = {"job": job}
    if args.pod is not None:
        body["pod"] = _pod(args.pod)
    return body


def placement_summary(job_id: str, node_names: list[str], gpus_per_node: int,
                      cap_w: int | None, with_nodes: list[int] | None = None
                      ) -> dict[str, Any]:
    """A compact placement: a hostlist and counts, node indices only when asked for."""
    out: dict[str, Any] = {"job_id": job_id, "gpus": len(node_names) * gpus_per_node,
                           "node_count": len(node_names), "gpus_per_node": gpus_per_node,
                           "cap_w": cap_w, "hostlist": hostlist(node_names)}
    if with_nodes is not None:
        out["nodes"] = list(with_nodes)
    return out
