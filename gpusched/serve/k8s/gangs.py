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

from ...errors import GpuschedError
from ...job import Job
from .wire import JOB_PREFIX

if TYPE_CHECKING:
    from ...engine import Engine
    from ...spec import Cluster

__all__ = ["Reservation", "GangBook", "GangConfigError"]


class GangConfigError(GpuschedError, ValueError):
    """A gang book built with an unusable setting (a timeout that is not a positive number)."""


@dataclass
class Reservation:
    """Nodes held for a gang: pod slots per node, the pods bound so far, the deadline.

    ``bound`` changes only through ``book`` and ``unbook``, which keep the per-node count
    of bound pods, so ``free_slots`` costs the same for a gang of 4 pods or of 4,096.
    """

    gang: str
    job_id: str
    size: int
    gpus_per_pod: int
    cap_w: int
    slots: dict[str, int]                 # node name -> pods it takes
    bound: dict[str, str] = field(default_factory=dict)   # pod key -> node name
    deadline: float = 0.0                 # in the gang book's clock (Unix seconds)
    complete: bool = False
    _used: dict[str, int] = field(default_factory=dict, init=False, repr=False,
                                  compare=False)   # node name -> pods bound there
    _open: set[str] = field(default_factory=set, init=False, repr=False,
                            compare=False)   # reserved nodes with a free slot

    def __post_init__(self) -> None:
        for node in self.bound.values():
            self._used[node] = self._used.get(node, 0) + 1
        self._open = {node for node, pods in self.slots.items()
                      if pods > self._used.get(node, 0)}

    def free_slots(self, node: str) -> int:
        return self.slots.get(node, 0) - self._used.get(node, 0)

    @property
    def open_nodes(self) -> set[str]:
        """The reserved nodes with a free pod slot (do not change it)."""
        return self._open

    def book(self, pod: str, node: str) -> None:
        """Bind ``pod`` to a slot on ``node`` (the caller checked that one is free)."""
        self.bound[pod] = node
        self._used[node] = self._used.get(node, 0) + 1
        if self._used[node] >= self.slots.get(node, 0):
            self._open.discard(node)
        self.complete = len(self.bound) >= self.size

    def unbook(self, pod: str) -> None:
        """Free the slot of ``pod``, if it holds one."""
        node = self.bound.pop(pod, None)
        if node is not None:
            self._used[node] -= 1
            if self._used[node] < self.slots.get(node, 0):
                self._open.add(node)
            self.complete = False

    def meta(self) -> dict[str, Any]:
        """What the journal keeps, the deadline included: as an absolute time of the
        gang book's clock (Unix seconds by default), so it survives a restart."""
        return {"gang": self.gang, "job_id": self.job_id, "size": self.size,
                "gpus_per_pod": self.gpus_per_pod, "cap_w": self.cap_w, "slots": self.slots,
                "deadline": self.deadline}


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
        Seconds since the epoch (``time.time``): deadlines are journaled as absolute
        times of this clock, so a restart keeps them.
    binder : callable, optional
        ``binder(namespace, name, uid, node)`` creates the Binding in the API server;
        without one, ``bind`` only books the slot (and the deployment binds, e.g. with a
        second extender or a controller).  It is called outside the journal: a failure
        frees the slot again and is reported in ``ExtenderBindingResult.Error``.
    """

    def __init__(self, engine: "Engine", lock: ContextManager[Any], cluster: "Cluster",
                 record: Callable[[dict[str, Any]], int], *, timeout_s: float,
                 clock: Callable[[], float] = time.time,
                 binder: Callable[[str, str, str, str], None] | None = None) -> None:
        if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                or not 0 < timeout_s < float("inf")):
            raise GangConfigError(f"gang timeout_s={timeout_s!r} must be a finite number of "
                                  "seconds > 0")
        self.engine = engine
        self.lock = lock
        self.cluster = cluster
        self.record = record
        self.timeout_s = float(timeout_s)
        self.clock = clock
        self.binder = binder
        self.reservations: dict[str, Reservation] = {}
        self._pod_gang: dict[str, str] = {}   # pod key -> gang, learnt in filter
        # computed once per site, not per call: filter gets every node's name each time
        self.node_index: dict[str, int] = {name: i for i, name in
                                           enumerate(cluster.node_names)}
        self._refused_by_gang: dict[str, Any] = {}   # the extender's cached answers

    def __len__(self) -> int:
        return len(self.reservations)

    # ---- persistence ----------------------------------------------------------------

    def dump(self) -> list[dict[str, Any]]:
        return [{**r.meta(), "bound": dict(r.bound), "complete": r.complete}
                for r in self.reservations.values()]

    def load(self, items: list[dict[str, Any]]) -> None:
        self.reservations.clear()
        for item in items:
            self.restore_one(item)

    def restore_one(self, meta: dict[str, Any]) -> Reservation:
        # The deadline is an absolute time of the clock, so a restart keeps it; records
        # written before it was journaled have none and get a full timeout again.
        # ``bound`` and ``complete`` are in snapshots and in the place entry of a gang cut
        # down to its bound pods on expiry; a fresh reservation has neither.
        deadline = meta.get("deadline")
        reservation = Reservation(meta["gang"], meta["job_id"], meta["size"],
                                  meta["gpus_per_pod"], meta["cap_w"], dict(meta["slots"]),
                                  bound=dict(meta.get("bound", {})),
                                  deadline=(self.clock() + self.timeout_s if deadline is None
                                            else float(deadline)),
                                  complete=bool(meta.get("complete", False)))
        self.reservations[reservation.gang] = reservation
        for pod in reservation.bound:
            self._pod_gang[pod] = reservation.gang
        return reservation

    def replay_bind(self, gang: str, pod: str, node: str) -> None:
        reservation = self.reservations[gang]
        reservation.book(pod, node)
        self._pod_gang[pod] = gang

    def replay_unbind(self, gang: str, pod: str) -> None:
        reservation = self.reservations.get(gang)
        if reservation is None:
            # gpusched before issue 13's fix journaled an unbind for a reservation that had
            # expired while the API server call was out: nothing is left to unbind.
            return
        reservation.unbook(pod)

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
            self._refused_by_gang.pop(job_id[len(JOB_PREFIX):], None)
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
                if reservation.bound:
                    seq = self._cut_to_bound(reservation)
                else:
                    self.engine.release(reservation.job_id)
                    seq = self.record({"op": "release", "job_id": reservation.job_id})
                    self.forget_job(reservation.job_id)
        return seq

    def _cut_to_bound(self, reservation: Reservation) -> int:
        """Expire the unbound part of ``reservation``; keep the nodes of its bound pods.

        A bound pod runs (gpusched may have created its Binding itself), so its node must
        not be handed out again.  The job is re-placed on exactly the nodes with a bound
        pod, at the same cap, and the reservation becomes a complete gang of those pods:
        it holds them until its job is released.  Journaled as one ``cut`` record (the
        job's new nodes and the gang with its bound pods): a failed append then rolls
        back the whole cut, and never leaves a release on disk without the place that
        keeps the bound pods' nodes.
        """
        job_id = reservation.job_id
        before = self.engine.placement(job_id)
        names = self.cluster.node_names
        kept = sorted({self.node_index[node] for node in reservation.bound.values()})
        whole = self.engine.job(job_id)
        job_fields = whole.to_dict()
        job_fields["gpus"] = len(kept) * before.gpus_per_node
        job = Job.from_dict(job_fields)
        self.engine.release(job_id)
        try:
            placement = self.engine.place_on(job, kept, before.cap_w)
        except GpuschedError:
            # Fewer GPUs on the same nodes at the same cap always fit; if the engine says
            # otherwise, keep the whole reservation rather than free a running pod's node.
            self.engine._apply(whole, before.nodes, before.gpus_per_node, before.cap_w)
            reservation.complete = True
            return 0
        per_node = {names[n]: 0 for n in kept}
        for node in reservation.bound.values():
            per_node[node] += 1
        cut = Reservation(reservation.gang, job_id, len(reservation.bound),
                          reservation.gpus_per_pod, placement.cap_w, per_node,
                          bound=dict(reservation.bound), deadline=reservation.deadline,
                          complete=True)
        # on a failed append, record() puts memory back to the disk's state and raises
        seq = self.record({"op": "cut", "job_id": job_id, "job": job.to_dict(),
                           "nodes": list(placement.nodes),
                           "gpus_per_node": placement.gpus_per_node,
                           "cap_w": placement.cap_w,
                           "gang": {**cut.meta(), "bound": dict(cut.bound),
                                    "complete": True}})
        self.reservations[reservation.gang] = cut
        for pod in list(self._pod_gang):
            if self._pod_gang[pod] == reservation.gang and pod not in cut.bound:
                del self._pod_gang[pod]
        return seq

    def listing(self) -> dict[str, Any]:
        with self.lock:
            seq = self.expire()
            now = self.clock()
            gangs = [{**r.meta(), "bound": dict(r.bound), "complete": r.complete,
                      "expires_in_s": None if r.complete else round(r.deadline - now, 3)}
                     for r in self.reservations.values()]
        return {"gangs": gangs, "_seq": seq}
