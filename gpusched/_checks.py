"""Input checks shared by both engine twins, so they raise the same errors word for word.

The Cython twin runs a few C-level tests first and calls these only to build the error
(or for the rare inputs it does not test itself); the pure-Python twin calls them always.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Container

from .errors import DuplicateJobError, JobError, UnknownJobError
from .job import Job

if TYPE_CHECKING:
    from .spec import Cluster

__all__ = ["check_job", "check_pod", "duplicate_job", "unknown_job", "gpus_per_node_for"]


def gpus_per_node_for(gpus: int, gpus_per_node: int) -> int:
    """GPUs a job uses on each of its nodes: all of them above one node, else ``gpus``."""
    return gpus if gpus <= gpus_per_node else gpus_per_node


def check_job(cluster: "Cluster", job: Any, jobs: "Container[str]") -> None:
    """Raise the error for a job this cluster can never run, or an id already placed.

    ``jobs`` is anything that answers ``job_id in jobs``: the twin's dict, or the engine.
    """
    if not isinstance(job, Job):
        raise JobError(f"expected a gpusched.Job, got {type(job).__name__} {job!r}")
    power = cluster.power
    gpn = power.gpus_per_node
    if job.gpus > gpn and job.gpus % gpn:
        raise JobError(f"Job {job.id!r}: gpus={job.gpus}; above {gpn} a job takes whole "
                       f"nodes, so gpus must be a multiple of {gpn}")
    if job.gpus > cluster.num_gpus:
        raise JobError(f"Job {job.id!r}: gpus={job.gpus} is more than the "
                       f"{cluster.num_gpus} GPUs of cluster {cluster.name!r}")
    for name in ("max_cap_w", "min_cap_w"):
        cap = getattr(job, name)
        if not power.cap_min_w <= cap <= power.cap_max_w:
            raise JobError(f"Job {job.id!r}: {name}={cap} is outside the GPU's cap range "
                           f"[{power.cap_min_w}, {power.cap_max_w}] W")
    if job.id in jobs:
        raise duplicate_job(job.id)


def duplicate_job(job_id: str) -> DuplicateJobError:
    """The error for an id that is already placed, in the words both twins use."""
    return DuplicateJobError(f"Job {job_id!r} is already placed; release it first or "
                             "use another id")


def check_pod(cluster: "Cluster", pod: Any) -> int:
    """Return ``pod`` as an int index, or raise JobError if it is not a pod of the cluster.

    A pod may be given by index or by name.
    """
    if isinstance(pod, str):
        try:
            return cluster.pod_names.index(pod)
        except ValueError:
            raise JobError(f"pod {pod!r} is not a pod of cluster {cluster.name!r}; pods are "
                           f"0..{cluster.num_pods - 1} or their names "
                           f"({cluster.pod_names[0]!r}, ...)") from None
    if isinstance(pod, bool) or not hasattr(pod, "__index__"):
        raise JobError(f"pod={pod!r} must be a pod index (int) or name (str)")
    index = pod.__index__()
    if not 0 <= index < cluster.num_pods:
        raise JobError(f"pod={index} is out of range; cluster {cluster.name!r} has pods "
                       f"0..{cluster.num_pods - 1}")
    return index


def unknown_job(job_id: Any) -> UnknownJobError:
    if not isinstance(job_id, str):
        return UnknownJobError(f"job id {job_id!r} is a {type(job_id).__name__}; "
                               "job ids are str")
    return UnknownJobError(f"no job {job_id!r} is placed (never placed, or already released)")
