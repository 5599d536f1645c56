"""The discrete-event core: a heap of events and the loop that replays them on an Engine.

Events are arrivals, finishes and allocation rounds.  All events at one instant are
taken together (finishes first, so their GPUs are free for the arrivals), then the
policy schedules once, then the metrics sample the new state, which holds until the
next instant.  Nothing random happens here: one input, one output.

A job's run time at cap p is ``duration_s / s(p)``, s read from the job's own curve at the
site's TDP (``PowerModel.speed``: the allocator reads the same).
Its cap may change while it runs (``rebalance_caps``); the work it has left is then
carried over and its finish event is re-pushed.  Stale finish events are recognised by
a version number and skipped (lazy deletion keeps the heap simple).
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..bound import job_class_key
from ..job import Job, Placement
from ..power import check_curve
from .traces import TraceJob

if TYPE_CHECKING:
    from ..spec import Cluster
    from ..engine import Engine
    from .metrics import Recorder
    from .policies import Policy
    from .failures import SiteEvents

__all__ = ["EventQueue", "SimJob", "Simulator", "FINISH", "ARRIVAL", "ROUND", "NODE_FAIL",
           "NODE_BACK", "ENVELOPE", "RESUME", "SITE_CHECK", "reason_bit"]

# Kinds, in the order they are handled at one instant.  The loop hands a policy the kinds
# that fired at one instant as a bit set, ``reason_bit(kind)`` per kind: these three and
# that function are the only definitions of them (the policies import them).
FINISH = 0
ARRIVAL = 1
ROUND = 2
# A site that changes (gpusched.simulate.failures): a node fails or comes back, an
# envelope window opens or closes, a repaired job's restart is over.
NODE_FAIL = 3
NODE_BACK = 4
ENVELOPE = 5
RESUME = 6
SITE_CHECK = 7   # wakes the loop when a degraded job's wait for a repair runs out


def reason_bit(kind: int) -> int:
    """The bit of event ``kind`` in the ``reasons`` a policy's ``schedule`` receives."""
    return 1 << kind


class EventQueue:
    """A min-heap of ``(time_s, kind, seq, payload, version)``; ``seq`` keeps ties stable."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Any, int]] = []
        self._seq = 0

    def push(self, time_s: float, kind: int, payload: Any = None, version: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time_s, kind, self._seq, payload, version))

    def pop(self) -> tuple[float, int, Any, int]:
        time_s, kind, _, payload, version = heapq.heappop(self._heap)
        return time_s, kind, payload, version

    def peek_time(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def __len__(self) -> int:
        return len(self._heap)


@dataclass(slots=True, eq=False)
class SimJob:
    """A job's life in the simulation: queued, then running at a cap, then done."""

    spec: TraceJob
    job: Job
    start_s: float = math.nan
    finish_s: float = math.nan
    cap_w: int = 0
    speed: float = 0.0          # s(cap_w): work seconds done per second
    work_left_s: float = 0.0    # run time left at s = 1, as of last_s
    last_s: float = 0.0
    version: int = 0
    first_cap_w: int = 0
    # a site that changes: a hit job is paused (degraded or restarting: no progress)
    # until repaired and restarted, or requeued (it then keeps its checkpoint)
    paused: bool = False
    requeued: bool = False
    resumed_s: float = 0.0      # when it last started or resumed (checkpoints count from it)
    restart_due_s: float | None = None
    preemptions: int = 0        # times a preemption plan evicted it
    lost_gpu_s: float = 0.0     # GPU-seconds of work those evictions threw away
    cap_downs: int = 0          # times a preemption or envelope plan lowered its cap
    nodes: tuple[int, ...] = ()  # of its placement, once started

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def gpus(self) -> int:
        return self.spec.gpus


class Simulator:
    """Replays ``jobs`` on ``cluster`` under ``policy`` until ``horizon_s``.

    Policies act through :meth:`start`, :meth:`set_cap`, :meth:`sync_caps` and
    :meth:`request_round`, and read :attr:`engine`, :attr:`queue` (waiting jobs in
    arrival order, or in the policy's order if it has a ``queued(sim, sim_job)`` hook
    that puts each arrival and preempted job in its place) and :attr:`running`.
    Whatever puts a job into :attr:`queue` tells the recorder (``recorder.job_queued``)
    and :meth:`start` tells it the job left, so the run knows how long, and why, each
    job waited (gpusched.simulate.waits).
    """

    def __init__(self, cluster: "Cluster", jobs: list[TraceJob], policy: "Policy",
                 recorder: "Recorder", *, horizon_s: float,
                 progress: Callable[[float], None] | None = None,
                 site: "SiteEvents | None" = None) -> None:
        self.cluster = cluster
        self.policy = policy
        self.engine: "Engine" = policy.make_engine(cluster)
        self.recorder = recorder
        self.horizon_s = float(horizon_s)
        self.progress = progress
        self.site = site
        self.events = EventQueue()
        self.queue: list[SimJob] = []
        self.running: dict[str, SimJob] = {}
        self.done: list[SimJob] = []
        self.all_jobs: list[SimJob] = []
        self.now = 0.0
        self.rate_gpus = 0.0   # sum over running jobs of gpus * s(cap)
        self.round_pending = False
        self.finished_since_round = 0
        #: Bumped whenever the engine's state changes, so the recorder can skip instants
        #: that changed nothing (an arrival that only joins the queue).
        self.state_version = 0
        #: GPUs of the jobs present (queued or running), by fluid-bound job class, and a
        #: counter bumped when they change (the recorder re-reads the bound then).
        self.present_gpus: dict[tuple, int] = {}
        self.present_version = 0
        self._power = cluster.power
        self._speeds: dict[tuple[int, Any], float] = {}
        for spec in jobs:
            if spec.submit_s >= self.horizon_s:
                continue
            job = Job(spec.id, spec.gpus, max_cap_w=spec.max_cap_w,
                      min_cap_w=spec.min_cap_w, weight=spec.weight,
                      sensitivity=spec.sensitivity, curve=spec.curve,
                      priority=spec.priority, preemptible=spec.preemptible)
            check_curve(cluster.power, job)
            sim_job = SimJob(spec, job)
            self.all_jobs.append(sim_job)
            self.events.push(spec.submit_s, ARRIVAL, sim_job)
        if site is not None:
            for time_s, kind, payload in site.start(self):
                self.events.push(time_s, kind, payload)

    # ---- what policies call --------------------------------------------------------

    def _speed(self, sim_job: SimJob, cap_w: int) -> float:
        key = (cap_w, sim_job.job.curve)
        speed = self._speeds.get(key)
        if speed is None:  # few distinct caps: compute each s(cap) once
            speed = self._speeds[key] = float(self._power.speed(sim_job.job, cap_w))
        return speed

    def start(self, sim_job: SimJob, placement: Placement) -> None:
        """Record that ``placement`` (already on the engine) starts ``sim_job`` now."""
        if not (sim_job.requeued or sim_job.preemptions):
            # a requeued or preempted job keeps its first start and the work it has left
            sim_job.start_s = self.now
            sim_job.first_cap_w = placement.cap_w
            sim_job.work_left_s = sim_job.spec.duration_s
        sim_job.nodes = tuple(placement.nodes)
        self.recorder.job_started(sim_job, self.now)
        sim_job.cap_w = placement.cap_w
        sim_job.speed = self._speed(sim_job, placement.cap_w)
        sim_job.last_s = sim_job.resumed_s = self.now
        self.running[sim_job.id] = sim_job
        self.state_version += 1
        if self.site is not None and sim_job.requeued:
            self.site.started(self, sim_job)
            sim_job.requeued = False
        self.rate_gpus += sim_job.gpus * sim_job.speed
        self.events.push(self.now + sim_job.work_left_s / sim_job.speed, FINISH, sim_job,
                         sim_job.version)

    def set_cap(self, sim_job: SimJob, cap_w: int, *, by_plan: bool = False) -> None:
        """The running job's cap became ``cap_w`` (already applied on the engine).

        ``by_plan``: a preemption or envelope plan set it, so a lower cap counts as one
        of the job's ``cap_downs`` (what the plan made it give up, reported per class);
        the re-balancing of caps between rounds and a repair's new cap do not count.
        """
        if cap_w == sim_job.cap_w:
            return
        if by_plan and cap_w < sim_job.cap_w:
            sim_job.cap_downs += 1
        if sim_job.paused:  # no progress, no finish event: only the cap to remember
            sim_job.cap_w, sim_job.speed = cap_w, self._speed(sim_job, cap_w)
            self.state_version += 1
            return
        sim_job.work_left_s = max(0.0, sim_job.work_left_s
                                  - (self.now - sim_job.last_s) * sim_job.speed)
        sim_job.last_s = self.now
        new_speed = self._speed(sim_job, cap_w)
        self.rate_gpus += sim_job.gpus * (new_speed - sim_job.speed)
        sim_job.cap_w, sim_job.speed = cap_w, new_speed
        sim_job.version += 1
        self.state_version += 1
        self.events.push(self.now + sim_job.work_left_s / new_speed, FINISH, sim_job,
                         sim_job.version)

    def sync_caps(self) -> int:
        """Read every running job's cap back from the engine; returns how many changed."""
        changed = 0
        for placement in self.engine.placements():
            sim_job = self.running.get(placement.job_id)
            if sim_job is not None and placement.cap_w != sim_job.cap_w:
                self.set_cap(sim_job, placement.cap_w)
                changed += 1
        return changed

    def catch_up(self, sim_job: SimJob) -> None:
        """Bring a running job's work left up to now."""
        if not sim_job.paused:
            sim_job.work_left_s = max(0.0, sim_job.work_left_s
                                      - (self.now - sim_job.last_s) * sim_job.speed)
        sim_job.last_s = self.now

    def pause(self, sim_job: SimJob) -> None:
        """A failure stopped the running job: no progress until :meth:`unpause`."""
        if sim_job.paused:
            return
        self.catch_up(sim_job)
        self.rate_gpus -= sim_job.gpus * sim_job.speed
        sim_job.paused = True
        sim_job.version += 1   # its finish event is stale now
        self.state_version += 1

    def unpause(self, sim_job: SimJob) -> None:
        """The repaired job runs again, at its (possibly new) cap."""
        sim_job.paused = False
        sim_job.restart_due_s = None
        sim_job.last_s = sim_job.resumed_s = self.now
        self.rate_gpus += sim_job.gpus * sim_job.speed
        sim_job.version += 1
        self.state_version += 1
        self.events.push(self.now + sim_job.work_left_s / sim_job.speed, FINISH, sim_job,
                         sim_job.version)

    def requeue(self, sim_job: SimJob, *, released: bool = False) -> None:
        """Stop a running job and put it at the head of the queue; it keeps the work it
        has left (its checkpoint).  ``released``: the engine already released it."""
        self.catch_up(sim_job)
        if not released:
            self.engine.release(sim_job.id)
        del self.running[sim_job.id]
        if not sim_job.paused:
            self.rate_gpus -= sim_job.gpus * sim_job.speed
        sim_job.paused = False
        sim_job.restart_due_s = None
        sim_job.requeued = True
        sim_job.version += 1
        self.queue.insert(0, sim_job)
        self.state_version += 1
        requeued = getattr(self.policy, "requeued", None)
        if requeued is not None:
            requeued(self, sim_job)

    def preempted(self, sim_job: SimJob, checkpoint_s: float) -> float:
        """``sim_job`` was evicted (already released from the engine): it loses the work
        done since its last checkpoint (every ``checkpoint_s`` of run time since its
        start; 0 = no checkpoints) and goes back to the queue in submit order.  Returns
        the GPU-seconds lost."""
        # checkpoints count from its last start or resume; a job paused by a failure
        # has already lost its work since the checkpoint (gpusched.simulate.failures)
        ran_s = 0.0 if sim_job.paused else self.now - sim_job.resumed_s
        since_s = ran_s % checkpoint_s if checkpoint_s > 0 else ran_s
        self.catch_up(sim_job)
        lost_s = min(since_s * sim_job.speed, sim_job.spec.duration_s - sim_job.work_left_s)
        sim_job.work_left_s += lost_s
        del self.running[sim_job.id]
        if not sim_job.paused:
            self.rate_gpus -= sim_job.gpus * sim_job.speed
        sim_job.paused = False
        sim_job.restart_due_s = None
        if self.site is not None:
            self.site.forget(sim_job)
        sim_job.version += 1   # its finish event is stale now
        sim_job.preemptions += 1
        sim_job.lost_gpu_s += sim_job.gpus * since_s
        self.state_version += 1
        queued = getattr(self.policy, "queued", None)
        if queued is not None:
            queued(self, sim_job)   # the policy's own order (Backfill: urgent jobs first)
        else:
            keys = [waiting.spec.submit_s for waiting in self.queue]
            self.queue.insert(bisect.bisect_right(keys, sim_job.spec.submit_s), sim_job)
        return sim_job.gpus * since_s

    def request_round(self, time_s: float) -> None:
        """Ask for an allocation round at ``time_s`` (one pending round at a time)."""
        if not self.round_pending:
            self.round_pending = True
            self.events.push(max(time_s, self.now), ROUND)

    # ---- the loop ------------------------------------------------------------------

    def _finish(self, sim_job: SimJob) -> None:
        self.engine.release(sim_job.id)
        del self.running[sim_job.id]
        self.state_version += 1
        self.rate_gpus -= sim_job.gpus * sim_job.speed
        sim_job.finish_s = self.now
        sim_job.work_left_s = 0.0
        self.done.append(sim_job)
        self.finished_since_round += 1
        self._present(sim_job, -1)

    def _present(self, sim_job: SimJob, sign: int) -> None:
        key = job_class_key(sim_job.job)
        self.present_gpus[key] = self.present_gpus.get(key, 0) + sign * sim_job.gpus
        self.present_version += 1

    def run(self) -> None:
        """Process events up to the horizon; the recorder sees every new state."""
        events = self.events
        self.recorder.sample(0.0, self)
        tick = 0
        endless = self.site is not None and not math.isfinite(self.horizon_s)
        # a policy that keeps its own queue order puts arrivals in it (Backfill: urgent
        # jobs first); else they join the back
        queued = getattr(self.policy, "queued", None)
        while len(events) and events.peek_time() <= self.horizon_s:
            if endless and len(self.done) == len(self.all_jobs):
                break  # failures go on for ever; the run is over when every job is done
            self.now = now = events.peek_time()
            reasons = 0
            while events.peek_time() == now:
                _, kind, payload, version = events.pop()
                if kind == FINISH:
                    if payload.version != version or payload.id not in self.running:
                        continue  # superseded by a cap change
                    self._finish(payload)
                elif kind == ARRIVAL:
                    if queued is None:
                        self.queue.append(payload)
                    else:
                        queued(self, payload)
                    self.recorder.job_queued(payload, now)
                    self._present(payload, 1)
                elif kind == ROUND:
                    self.round_pending = False
                else:
                    self._site_event(kind, payload, version)
                reasons |= reason_bit(kind)
            if self.site is not None:
                self.site.settle(self)
            self.policy.schedule(self, now, reasons)
            self.recorder.sample(now, self)
            if self.site is not None:
                self.site.sample(now, self)
            tick += 1
            if self.progress is not None and tick % 256 == 0:
                self.progress(now)
        if math.isfinite(self.horizon_s):
            self.now = self.horizon_s
        self.recorder.sample(self.now, self)
        if self.site is not None:
            self.site.sample(self.now, self)
        if self.progress is not None:
            self.progress(self.now)

    def _site_event(self, kind: int, payload: Any, version: int) -> None:
        site = self.site
        assert site is not None, "site events are pushed only by a SiteEvents"
        if kind == NODE_FAIL:
            site.node_failed(self, payload)
        elif kind == NODE_BACK:
            site.node_back(self, payload)
        elif kind == ENVELOPE:
            site.envelope_changed(self, *payload)
        elif kind == RESUME:
            due = payload.restart_due_s
            if payload.paused and due is not None and due <= self.now and (
                    payload.id in self.running):
                site.resumed(self, payload)
