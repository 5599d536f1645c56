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

__all__ = ["check_job", "check_pod", "check_batch", "check_release_batch", "duplicate_job",
           "duplicate_in_batch", "released_twice", "unknown_job", "gpus_per_node_for"]


def gpus_per_node_for(gpus: int, gpus_per_node: int) -> int:
    """GPUs a job uses on each of its nodes: all of them above one node, else ``gpus``."""
    return gpus if gpus <= gpus_per_node else gpus_per_node


def check_job(cluster: "Cluster", job: Any, jobs: "Container[str]") -> tuple[str, int, int, int]:
    """Raise the error for a job this cluster can never run, or an id already placed;
    else return its ``(id, gpus, max_cap_w, min_cap_w)``.

    ``jobs`` is anything that answers ``job_id in jobs``: the twin's dict, or the engine.
    Each field is read once and the values returned are the ones checked: a Job
    subclass may compute its fields, and must not hand the engine other values later.
    """
    if not isinstance(job, Job):
        raise JobError(f"expected a gpusched.Job, got {type(job).__name__} {job!r}")
    job_id, gpus, max_cap, min_cap = job.id, job.gpus, job.max_cap_w, job.min_cap_w
    # Job itself guarantees the next three; a subclass may not
    if type(job_id) is not str:  # keys are exact str: a subclass runs its own __eq__
        raise JobError(f"Job id {_id_repr(job_id)} is a {type(job_id).__name__}; job ids "
                       "must be exactly str", field="id")
    for name, value in (("gpus", gpus), ("max_cap_w", max_cap), ("min_cap_w", min_cap)):
        if type(value) is not int:
            raise JobError(f"Job {job_id!r}: {name}={value!r} is a {type(value).__name__}; "
                           "it must be an int", field=name)
    if gpus < 1 or min_cap > max_cap:
        raise JobError(f"Job {job_id!r}: gpus={gpus}, min_cap_w={min_cap}, max_cap_w="
                       f"{max_cap}; need gpus at least 1 and min_cap_w at most max_cap_w",
                       field="gpus" if gpus < 1 else "min_cap_w")
    power = cluster.power
    gpn = power.gpus_per_node
    if gpus > gpn and gpus % gpn:
        raise JobError(f"Job {job_id!r}: gpus={gpus}; above {gpn} a job takes whole "
                       f"nodes, so gpus must be a multiple of {gpn}", field="gpus")
    if gpus > cluster.num_gpus:
        raise JobError(f"Job {job_id!r}: gpus={gpus} is more than the "
                       f"{cluster.num_gpus} GPUs of cluster {cluster.name!r}", field="gpus")
    for name, cap in (("max_cap_w", max_cap), ("min_cap_w", min_cap)):
        if not power.cap_min_w <= cap <= power.cap_max_w:
            raise JobError(f"Job {job_id!r}: {name}={cap} is outside the GPU's cap range "
                           f"[{power.cap_min_w}, {power.cap_max_w}] W", field=name)
    if job_id in jobs:
        raise duplicate_job(job_id)
    return job_id, gpus, max_cap, min_cap


def check_batch(cluster: "Cluster", jobs: "list[Any]", live: "Container[str]") -> None:
    """Raise the error ``place`` would raise for the first bad job of a batch, or for an
    id the batch holds twice, so a bad batch can be refused before any of it is placed.
    """
    seen: set[str] = set()
    for job in jobs:
        job_id = check_job(cluster, job, live)[0]
        if job_id in seen:
            raise duplicate_in_batch(job_id)
        seen.add(job_id)


def check_release_batch(job_ids: "list[Any]", live: "Container[str]") -> None:
    """Raise the error ``release`` would raise for the first id of a batch that is not
    placed, or for an id the batch holds twice, before any of it is released."""
    seen: set[str] = set()
    for job_id in job_ids:
        if type(job_id) is not str or job_id not in live:
            raise unknown_job(job_id)
        if job_id in seen:
            raise released_twice(job_id)
        seen.add(job_id)


def duplicate_in_batch(job_id: str) -> DuplicateJobError:
    return DuplicateJobError(f"Job {job_id!r} appears twice in the batch; ids must be "
                             "unique", field="id")


def released_twice(job_id: str) -> UnknownJobError:
    return UnknownJobError(f"job {job_id!r} appears twice in the batch; each id is "
                           "released once", field="job_id")


def duplicate_job(job_id: str) -> DuplicateJobError:
    """The error for an id that is already placed, in the words both twins use."""
    return DuplicateJobError(f"Job {job_id!r} is already placed; release it first or "
                             "use another id", field="id")


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
                           f"({cluster.pod_names[0]!r}, ...)", field="pod") from None
    if isinstance(pod, bool) or not hasattr(pod, "__index__"):
        raise JobError(f"pod={pod!r} must be a pod index (int) or name (str)", field="pod")
    index = pod.__index__()
    if not 0 <= index < cluster.num_pods:
        raise JobError(f"pod={index} is out of range; cluster {cluster.name!r} has pods "
                       f"0..{cluster.num_pods - 1}", field="pod")
    return index


def _id_repr(job_id: Any) -> str:
    """repr of an id, without running a str subclass's own __repr__."""
    return str.__repr__(job_id) if isinstance(job_id, str) else repr(job_id)


def unknown_job(job_id: Any) -> UnknownJobError:
    """The error for an id that is not placed; every key is exactly str (Job checks), so
    an id of any other type, a str subclass too, is never placed."""
    if type(job_id) is not str:
        return UnknownJobError(f"job id {_id_repr(job_id)} is a {type(job_id).__name__}; "
                               "job ids are exactly str", field="job_id")
    return UnknownJobError(f"no job {job_id!r} is placed (never placed, or already released)",
                           field="job_id")
