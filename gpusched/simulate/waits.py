"""Why queued jobs wait: every second a job spends in the queue gets one reason.

The reason is read from the engine after the policy has scheduled an instant, with the
engine's own :meth:`gpusched.Engine.explain` (the refusal ``place`` would give):

=================  ===================================================================
``gpus``           fewer GPUs are free in the whole site than the job needs
``fragmentation``  enough GPUs are free, but not on nodes in the shape the gang needs
``power``          the GPUs fit, but even at its lowest cap the job would break a power
                   or cooling row: the binding limit (its kind and name are kept)
``reservation``    it would fit now, but the policy holds what is free for the blocked
                   head of the queue (backfill's reservation, optimize's drain)
``priority``       it would fit now, but the policy starts other jobs first (the queue's
                   order behind a blocked head, the allocator's choice, or its next round)
=================  ===================================================================

Cost is bounded by the number of distinct job *shapes* (GPUs, lowest and highest cap:
all ``explain`` reads), not by the length of the queue, and by the simulated time: the
reasons are read again when the state has changed, at most once per ``reread_s`` (60 s)
of simulated time, or at once when a shape not seen before joins the queue; a read is
one ``explain`` per shape present in the queue whose GPUs are free at all.  Between two
reads a shape keeps its reason, so a reason may be up to ``reread_s`` late (a job's
total wait is exact; only its split between reasons can shift by that much per
change).  Each shape keeps a clock of seconds per reason, which a job reads when it
joins the queue and when it leaves, so a job costs O(1) however long it waits.  On the
default run, reading at every change instead (``reread_s=0``) cost about 2 s of CPU
per policy (84k explains); at 60 s the run is as fast as without the records.  The jobs of one shape share their
reason at every instant (explain cannot tell them apart); the head of the queue too, as
its reason follows from the same rules.

A policy may say whether it holds resources for its head right now with a method
``holds_for_head() -> bool``; without one, ``backfill`` always does (its reservation)
and a policy with a true ``draining`` attribute does (``optimize``'s drain).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:
    from ..spec import Cluster
    from .events import SimJob, Simulator
    from .policies import Policy

__all__ = ["WaitTracker", "WAIT_REASONS", "holds_for_head"]

#: The reasons of jobs.csv's ``wait_reason``, in the order its columns list them.
WAIT_REASONS = ("gpus", "fragmentation", "power", "reservation", "priority")

Shape = tuple[int, int, int]   # (gpus, min_cap_w, max_cap_w)
_PROBE_ID = "gpusched.simulate.waits probe"


def holds_for_head(policy: "Policy") -> bool:
    """Whether ``policy`` keeps free GPUs or watts for the blocked head of its queue now."""
    hook = getattr(policy, "holds_for_head", None)
    if callable(hook):
        return bool(hook())
    if policy.name == "backfill":
        return True
    return bool(getattr(policy, "draining", False))


class WaitTracker:
    """Seconds of waiting per job and reason; see the module docstring."""

    def __init__(self, cluster: "Cluster", reread_s: float = 60.0) -> None:
        self.reread_s = float(reread_s)
        self._read_t = -float("inf")   # when the reasons were last read
        self._new_shape = False
        kinds = list(dict.fromkeys(cluster.constraints.kinds))
        # slots: the four reasons without a row, then power split by the kind of its row
        self.slots = ["gpus", "fragmentation", "reservation", "priority",
                      *(f"power:{k}" for k in kinds)]
        self._slot = {name: i for i, name in enumerate(self.slots)}
        self._clock: dict[Shape, np.ndarray] = {}     # seconds per slot, per shape
        self._count: dict[Shape, int] = {}            # queued jobs of each shape
        self._example: dict[Shape, Any] = {}          # a gpusched.Job of that shape
        self._reason: dict[Shape, int] = {}           # current slot of each shape
        self._row_of: dict[tuple[Shape, str], str] = {}   # last blocking row per kind
        self._entered: dict[str, np.ndarray] = {}     # clock of a queued job at entry
        self._shape_of: dict[str, Shape] = {}
        self.wait_by_job: dict[str, np.ndarray] = {}  # seconds per slot, jobs that left
        self.binding_by_job: dict[str, str] = {}
        self._last_t = 0.0
        self._seen: tuple[int, int] | None = None
        self.explain_calls = 0

    @staticmethod
    def _shape(sim_job: "SimJob") -> Shape:
        spec = sim_job.spec
        return (spec.gpus, int(spec.min_cap_w), int(spec.max_cap_w))

    def advance(self, t: float) -> None:
        """Give the time since the last call to each queued shape's current reason."""
        dt = t - self._last_t
        if dt > 0:
            for shape, slot in self._reason.items():
                if self._count.get(shape):
                    self._clock[shape][slot] += dt
        self._last_t = max(self._last_t, t)

    def queued(self, sim_job: "SimJob", t: float) -> None:
        """``sim_job`` joins the queue at ``t`` (an arrival, or a job put back)."""
        self.advance(t)
        shape = self._shape(sim_job)
        if shape not in self._clock:
            self._clock[shape] = np.zeros(len(self.slots))
            # explain() refuses the id of a placed job, so the probe has its own id
            self._example[shape] = sim_job.job.replace(id=_PROBE_ID)
            self._reason[shape] = self._slot["priority"]  # until the next read
            self._new_shape = True  # read its reason at the next sample
        self._count[shape] = self._count.get(shape, 0) + 1
        self._entered[sim_job.id] = self._clock[shape].copy()
        self._shape_of[sim_job.id] = shape
        self._seen = None

    def left(self, sim_job: "SimJob", t: float) -> None:
        """``sim_job`` leaves the queue at ``t`` (it starts, or the run ends)."""
        entered = self._entered.pop(sim_job.id, None)
        if entered is None:
            return
        self.advance(t)
        shape = self._shape_of.pop(sim_job.id)
        self._count[shape] -= 1
        waited = self._clock[shape] - entered
        if not waited.any():
            return  # it never waited (most jobs of an uncontended start)
        before = self.wait_by_job.get(sim_job.id)
        self.wait_by_job[sim_job.id] = waited if before is None else before + waited
        seconds_by_kind = waited[4:]
        if seconds_by_kind.any():
            kind = self.slots[4 + int(np.argmax(seconds_by_kind))].removeprefix("power:")
            self.binding_by_job[sim_job.id] = f"{kind}: {self._row_of[(shape, kind)]}"

    def classify(self, t: float, sim: "Simulator") -> None:
        """Read each queued shape's reason from the engine, if anything changed."""
        self.advance(t)
        key = (sim.state_version, sim.present_version)
        if key == self._seen or not sim.queue:
            self._seen = key
            return
        if t - self._read_t < self.reread_s and not self._new_shape:
            return  # read again at the first sample after reread_s
        self._seen, self._read_t, self._new_shape = key, t, False
        engine = sim.engine
        free = engine.free_gpus()
        fits: dict[Shape, bool] = {}
        for shape, count in self._count.items():
            if not count:
                continue
            if shape[0] > free:
                self._reason[shape], fits[shape] = self._slot["gpus"], False
                continue
            self.explain_calls += 1
            why = engine.explain(self._example[shape])
            fits[shape] = why.placeable
            if why.status == "no-capacity":
                self._reason[shape] = self._slot["fragmentation"]
            elif why.status == "no-power" and why.binding_kind is not None:
                self._reason[shape] = self._slot[f"power:{why.binding_kind}"]
                self._row_of[(shape, why.binding_kind)] = str(why.binding)
        head_blocked = not fits.get(self._shape(sim.queue[0]), False)
        waiting_slot = self._slot["reservation" if head_blocked and holds_for_head(sim.policy)
                                  else "priority"]
        for shape, placeable in fits.items():
            if placeable:
                self._reason[shape] = waiting_slot

    def finish(self, queue: "Iterable[SimJob]", t: float) -> None:
        """The run ends at ``t``: jobs still queued have waited until then (censored)."""
        for sim_job in list(queue):
            self.left(sim_job, t)

    # ---- per job --------------------------------------------------------------------

    def seconds_by_reason(self, job_id: str) -> dict[str, float]:
        """Seconds ``job_id`` waited, by :data:`WAIT_REASONS` (power summed over kinds)."""
        waited = self.wait_by_job.get(job_id)
        if waited is None:
            return dict.fromkeys(WAIT_REASONS, 0.0)
        w = waited.tolist()
        return {"gpus": w[0], "fragmentation": w[1], "power": sum(w[4:]),
                "reservation": w[2], "priority": w[3]}
