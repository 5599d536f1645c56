"""Gang reservations: the nodes held for a gang, its pods' slots, expiry, persistence.

The first pod of a gang that reaches ``filter`` reserves nodes for the whole gang with
``Engine.place`` (job id ``k8s:<namespace>/<gang>``), journaled like any placement.  A
reservation whose pods are not all bound within ``timeout_s`` is released; a complete
gang keeps its nodes until its job is released.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager

from .wire import JOB_PREFIX

if TYPE_CHECKING:
    from ...engine import Engine
    from ...spec import Cluster

__all__ = ["Reservation", "GangBook"]


@dataclass
class Reservation:
    """Nodes held for a gang: pod slots per node, the pods bound so far, the deadline."""

    gang: str
    job_id: str
    size: int
    gpus_per_pod: int
    cap_w: int
    slots: dict[str, int]                 # node name -> pods it takes
    bound: dict[str, str] = field(default_factory=dict)   # pod key -> node name
    deadline: float = 0.0
    complete: bool = False

    def free_slots(self, node: str) -> int:
        used = sum(1 for n in self.bound.values() if n == node)
        return self.slots.get(node, 0) - used

    def meta(self) -> dict[str, Any]:
        """What the journal keeps (the deadline is re-armed on recovery)."""
        return {"gang": self.gang, "job_id": self.job_id, "size": self.size,
                "gpus_per_pod": self.gpus_per_pod, "cap_w": self.cap_w, "slots": self.slots}


class GangBook:
    """Gang reservations of one engine; every method runs under ``lock``.

    Parameters
    ----------
    engine : Engine
        Where reservations are placed (the service's engine).
    lock : context manager
        The lock that guards ``engine`` and the journal.
    cluster : Cluster
        The engine's cluster (node names, GPUs per node, the cap range).
    record : callable
        ``record(entry) -> seq`` appends a journal entry (caller holds ``lock``); on a
        failed append it raises, after putting memory back to what the journal holds.
    timeout_s : float
        Seconds a gang has, from its reservation, to bind all of its pods.
    clock : callable
        Monotonic seconds.
    binder : callable, optional
        ``binder(namespace, name, uid, node)`` creates the Binding in the API server;
        without one, ``bind`` only books the slot (and the deployment binds, e.g. with a
        second extender or a controller).  It is called outside the journal: a failure
        frees the slot again and is reported in ``ExtenderBindingResult.Error``.
    """

    def __init__(self, engine: "Engine", lock: ContextManager[Any], cluster: "Cluster",
                 record: Callable[[dict[str, Any]], int], *, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 binder: Callable[[str, str, str, str], None] | None = None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"gang timeout_s={timeout_s} must be > 0")
        self.engine = engine
        self.lock = lock
        self.cluster = cluster
        self.record = record
        self.timeout_s = float(timeout_s)
        self.clock = clock
        self.binder = binder
        self.reservations: dict[str, Reservation] = {}
        self._pod_gang: dict[str, str] = {}   # pod key -> gang, learnt in filter

    def __len__(self) -> int:
        return len(self.reservations)

    # ---- persistence ----------------------------------------------------------------

    def dump(self) -> list[dict[str, Any]]:
        return [{**r.meta(), "bound": dict(r.bound), "complete": r.complete}
                for r in self.reservations.values()]

    def load(self, items: list[dict[str, Any]]) -> None:
        self.reservations.clear()
        for item in items:
            reservation = self.restore_one(item)
            reservation.bound = dict(item.get("bound", {}))
            reservation.complete = bool(item.get("complete", False))
            for pod in reservation.bound:
                self._pod_gang[pod] = reservation.gang

    def restore_one(self, meta: dict[str, Any]) -> Reservation:
        # A restart re-arms the deadline: the gang's pods get a full timeout to retry.
        reservation = Reservation(meta["gang"], meta["job_id"], meta["size"],
                                  meta["gpus_per_pod"], meta["cap_w"], dict(meta["slots"]),
                                  deadline=self.clock() + self.timeout_s)
        self.reservations[reservation.gang] = reservation
        return reservation

    def replay_bind(self, gang: str, pod: str, node: str) -> None:
        reservation = self.reservations[gang]
        reservation.bound[pod] = node
        reservation.complete = len(reservation.bound) >= reservation.size
        self._pod_gang[pod] = gang

    def replay_unbind(self, gang: str, pod: str) -> None:
        reservation = self.reservations[gang]
        reservation.bound.pop(pod, None)
        reservation.complete = False

    def adopt(self, rebuilt: "GangBook") -> None:
        """Take the reservations of ``rebuilt`` (replayed from disk after a failed append).

        Each surviving reservation keeps its deadline and the pods filtered into it (the
        replay re-arms deadlines and learns only bound pods).
        """
        for gang, reservation in rebuilt.reservations.items():
            before = self.reservations.get(gang)
            if before is not None and before.job_id == reservation.job_id:
                reservation.deadline = before.deadline
        self.reservations.clear()
        self.reservations.update(rebuilt.reservations)
        pod_gang = {pod: gang for pod, gang in self._pod_gang.items()
                    if gang in rebuilt.reservations}
        pod_gang.update(rebuilt._pod_gang)
        self._pod_gang.clear()
        self._pod_gang.update(pod_gang)

    def forget_job(self, job_id: str) -> None:
        if job_id.startswith(JOB_PREFIX):
            reservation = self.reservations.pop(job_id[len(JOB_PREFIX):], None)
            if reservation is not None:
                for pod in reservation.bound:
                    self._pod_gang.pop(pod, None)

    # ---- expiry ---------------------------------------------------------------------

    def expire(self) -> int:
        """Release incomplete reservations past their deadline; return the last seq."""
        now = self.clock()
        seq = 0
        for gang, reservation in list(self.reservations.items()):
            if not reservation.complete and now > reservation.deadline:
                self.engine.release(reservation.job_id)
                seq = self.record({"op": "release", "job_id": reservation.job_id})
                self.forget_job(reservation.job_id)
        return seq

    def listing(self) -> dict[str, Any]:
        with self.lock:
            seq = self.expire()
            now = self.clock()
            gangs = [{**r.meta(), "bound": dict(r.bound), "complete": r.complete,
                      "expires_in_s": None if r.complete else round(r.deadline - now, 3)}
                     for r in self.reservations.values()]
        return {"gangs": gangs, "_seq": seq}
