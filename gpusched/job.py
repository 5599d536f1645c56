"""Job and Placement: the values that cross the engine's boundary, shared by both twins."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .errors import JobError
from .power import DEFAULT_SENSITIVITY, QuadraticCurve, ThroughputCurve, resolve_curve

__all__ = ["Job", "Placement", "PRIORITY_MIN", "PRIORITY_MAX"]

#: The range of ``Job.priority``: a signed 32-bit integer, the range of a Kubernetes
#: PriorityClass ``value`` and of a pod's ``spec.priority``, so either carries over as is.
PRIORITY_MIN = -(2 ** 31)
PRIORITY_MAX = 2 ** 31 - 1


def _whole_watts(job_id: object, name: str, value: object) -> int:
    """Return ``value`` as int watts, or raise JobError saying why it is not a valid cap."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise JobError(f"Job {job_id!r}: {name}={value!r} must be a number of watts", field=name)
    if not math.isfinite(value):
        raise JobError(f"Job {job_id!r}: {name}={value!r} must be finite watts, "
                       "e.g. 700 for an uncapped H100", field=name)
    if value != int(value):
        raise JobError(f"Job {job_id!r}: {name}={value!r} must be a whole number of watts",
                       field=name)
    return int(value)


class Job:
    """A gang-scheduled training job: all of its GPUs start together, at one power cap.

    Parameters
    ----------
    id : str
        Unique among the jobs placed on an engine.
    gpus : int
        1 to 8 GPUs inside one node, or a multiple of 8 for whole nodes.
    max_cap_w : int, default 700
        The cap the job would like (H100 SXM5 TDP).
    min_cap_w : int or None, default None
        The lowest cap the job accepts; None means rigid (equal to ``max_cap_w``).
        The engine tries ``max_cap_w`` first and steps down 25 W at a time.
    weight : float, default 1.0
        Importance in the cluster-wide objective sum(weight * gpus * s(cap)).
    sensitivity : float, default 1.25
        k in s(cap) = 1 - k (1 - cap/TDP)^2: how much throughput a lower cap costs.
    curve : None, str, dict or ThroughputCurve, default None
        The job's throughput curve s(cap / TDP).  None is the quadratic proxy with
        ``sensitivity``; a name picks a bundled measured curve (``"h100-mayr2026"``,
        ``gpusched.power.CURVES``); a dict is a curve's ``to_json()``.  The default
        stays the proxy so that existing snapshots and jobs keep their numbers; the
        TDP it is read at is always the site's (``PowerModel.speed``).
    priority : int, default 0
        Higher is more urgent; an integer in [``PRIORITY_MIN``, ``PRIORITY_MAX``] (a
        signed 32-bit integer, as a Kubernetes pod's ``spec.priority``).  A preemption
        plan (``gpusched.plan.plan_preemption``) only ever evicts jobs of strictly lower
        priority.
    preemptible : bool, default True
        False: no preemption plan ever evicts this job (its cap may still be lowered
        within ``[min_cap_w, max_cap_w]``, which loses no work).

    Checks that need no cluster (types, finiteness, min <= max) happen here; the engine
    checks the rest (node size, the cap range of its power model) before touching state.

    >>> Job("train", 16, min_cap_w=400)
    Job('train', gpus=16, cap_w=400..700)
    >>> Job("rigid", 8).min_cap_w  # no min_cap_w: the job runs at max_cap_w or not at all
    700
    >>> Job("eval", 8, priority=100, preemptible=False).priority
    100
    """

    __slots__ = ("id", "gpus", "max_cap_w", "min_cap_w", "weight", "sensitivity", "curve",
                 "priority", "preemptible")

    id: str
    gpus: int
    max_cap_w: int
    min_cap_w: int
    weight: float
    sensitivity: float
    curve: ThroughputCurve
    priority: int
    preemptible: bool

    def __init__(self, id: str, gpus: int, *, max_cap_w: int = 700,
                 min_cap_w: int | None = None, weight: float = 1.0,
                 sensitivity: float = DEFAULT_SENSITIVITY, curve: Any = None,
                 priority: int = 0, preemptible: bool = True) -> None:
        if type(id) is not str:
            # Exactly str: a subclass can run code of its own in __hash__ and __eq__
            # whenever the engine looks the id up, even between a search and its commit,
            # or be unhashable.  Checked before anything else reads the id.
            kind = ("a str subclass" if isinstance(id, str) else "a")
            raise JobError(f"Job id {str.__repr__(id) if isinstance(id, str) else repr(id)} "
                           f"is {kind} {type(id).__name__}; job ids must be exactly str "
                           "(pass str(id))", field="id")
        if not id or len(id) > 256:
            raise JobError(f"Job id {id!r} must be 1 to 256 characters long", field="id")
        if isinstance(gpus, bool) or not isinstance(gpus, (int, np.integer)):
            raise JobError(f"Job {id!r}: gpus={gpus!r} must be a whole number of GPUs",
                           field="gpus")
        gpus = int(gpus)
        if gpus < 1:
            raise JobError(f"Job {id!r}: gpus={gpus} must be at least 1", field="gpus")
        max_cap = _whole_watts(id, "max_cap_w", max_cap_w)
        min_cap = max_cap if min_cap_w is None else _whole_watts(id, "min_cap_w", min_cap_w)
        if min_cap > max_cap:
            raise JobError(f"Job {id!r}: min_cap_w={min_cap} is above max_cap_w={max_cap}; "
                           "min_cap_w must be at most max_cap_w", field="min_cap_w")
        for name, value in (("weight", weight), ("sensitivity", sensitivity)):
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                                   np.floating))
                    or not math.isfinite(value) or value < 0):
                raise JobError(f"Job {id!r}: {name}={value!r} must be a finite number >= 0",
                               field=name)
        if (isinstance(priority, bool) or not isinstance(priority, (int, np.integer))
                or not PRIORITY_MIN <= priority <= PRIORITY_MAX):
            raise JobError(f"Job {id!r}: priority={priority!r} must be a whole number in "
                           f"[{PRIORITY_MIN}, {PRIORITY_MAX}] (a signed 32-bit integer, "
                           "as a Kubernetes pod's spec.priority)", field="priority")
        if not isinstance(preemptible, (bool, np.bool_)):
            raise JobError(f"Job {id!r}: preemptible={preemptible!r} must be True or False",
                           field="preemptible")
        try:
            resolved = resolve_curve(curve, float(sensitivity))
        except JobError as exc:
            raise JobError(f"Job {id!r}: {exc}", field=exc.field or "curve") from None
        if isinstance(resolved, QuadraticCurve):
            sensitivity = resolved.sensitivity
        set_ = object.__setattr__
        set_(self, "id", id)
        set_(self, "gpus", gpus)
        set_(self, "max_cap_w", max_cap)
        set_(self, "min_cap_w", min_cap)
        set_(self, "weight", float(weight))
        set_(self, "sensitivity", float(sensitivity))
        set_(self, "curve", resolved)
        set_(self, "priority", int(priority))
        set_(self, "preemptible", bool(preemptible))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Job is immutable; use job.replace({name}=...)")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickle by the public fields, so unpickling builds the Job through __init__
        # (checked again) instead of setting slots, which __setattr__ forbids.  Process
        # pools and Dask pickle the jobs they ship.
        return (_job_from_fields, (type(self), self.to_dict()))

    def replace(self, **changes: Any) -> "Job":
        """A copy with some fields changed (validated again)."""
        fields = self.to_dict()
        fields.update(changes)
        return Job(**fields)

    @property
    def rigid(self) -> bool:
        return self.min_cap_w == self.max_cap_w

    def throughput(self, cap_w: float, tdp_w: float) -> float:
        """s(cap) on this job's curve for a GPU of ``tdp_w`` (``cluster.power.gpu_tdp_w``;
        ``PowerModel.speed(job, cap)`` reads it from the site)."""
        return float(self.curve.speed(cap_w, tdp_w))

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "gpus": self.gpus, "max_cap_w": self.max_cap_w,
               "min_cap_w": self.min_cap_w, "weight": self.weight,
               "sensitivity": self.sensitivity}
        if not isinstance(self.curve, QuadraticCurve):
            out["curve"] = self.curve.to_json()  # absent for the proxy: old snapshots match
        # absent at their defaults, for the same reason: a state file written before
        # priorities is byte for byte what this version writes for the same jobs
        if self.priority != 0:
            out["priority"] = self.priority
        if not self.preemptible:
            out["preemptible"] = False
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        if not isinstance(data, dict):
            raise JobError(f"a job must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {"id", "gpus", "max_cap_w", "min_cap_w", "weight", "sensitivity",
                               "curve", "priority", "preemptible"}
        if unknown:
            raise JobError(f"unknown job field(s) {sorted(unknown)}; valid: id, gpus, "
                           "max_cap_w, min_cap_w, weight, sensitivity, curve, priority, "
                           "preemptible",
                           field=sorted(unknown)[0])
        if "id" not in data or "gpus" not in data:
            raise JobError(f"a job needs 'id' and 'gpus', got fields {sorted(data)}",
                           field="id" if "id" not in data else "gpus")
        return cls(**data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.id, self.gpus, self.max_cap_w, self.min_cap_w))

    def __repr__(self) -> str:
        caps = (f"cap_w={self.max_cap_w}" if self.rigid
                else f"cap_w={self.min_cap_w}..{self.max_cap_w}")
        extra = "" if self.priority == 0 else f", priority={self.priority}"
        extra += "" if self.preemptible else ", preemptible=False"
        return f"Job({self.id!r}, gpus={self.gpus}, {caps}{extra})"


def _job_from_fields(cls: type, fields: dict[str, Any]) -> Job:
    """Unpickle a Job (or subclass) from its fields; see Job.__reduce__."""
    return cls(**fields)


class Placement(NamedTuple):
    """Where a job runs: whole ``nodes`` (sorted node indices), GPUs used on each, the cap.

    A job of 8 GPUs or fewer has one node and ``gpus_per_node == gpus``; a larger one
    has ``gpus / 8`` nodes and uses every GPU of each.  A named tuple, so the compiled
    core can build one with a single allocation.
    """

    job_id: str
    nodes: tuple[int, ...]
    gpus_per_node: int
    cap_w: int

    @property
    def gpus(self) -> int:
        return len(self.nodes) * self.gpus_per_node

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "nodes": list(self.nodes),
                "gpus_per_node": self.gpus_per_node, "cap_w": self.cap_w}

    def __repr__(self) -> str:
        nodes = (f"{list(self.nodes)}" if len(self.nodes) <= 8
                 else f"[{self.nodes[0]}, ..., {self.nodes[-1]}] ({len(self.nodes)} nodes)")
        return (f"Placement({self.job_id!r}, nodes={nodes}, gpus_per_node={self.gpus_per_node},"
                f" cap_w={self.cap_w})")
