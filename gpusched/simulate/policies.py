"""Scheduling policies: who starts when, at what cap.

==============  ===============================================================================
``fifo``        Arrival order with head-of-line blocking: start jobs from the front of the
                queue and stop at the first one the engine cannot place (GPUs or power).
``backfill``    Power-aware EASY backfilling: like fifo, but when the head is blocked it
                gets a reservation (``gpusched.plan.timeline``) at the earliest expected
                end after which enough GPUs (for a gang, nodes empty by then) **and**
                enough watts in every zone row (hall switchboards and cooling, the
                facility) are free for it, at the cap fifo would start it at (held up to
                where a further 25 W step buys less work per watt than a new job would),
                assuming every running job ends at start + work / s(cap).  A later job
                that runs past that time is placed on a node that stays busy past it.
                A later job may start now only if
                it ends before that time or leaves the reservation's GPUs and watts
                intact, at a cap that fits in the watts left over.  At most ``depth``
                (500, Slurm's ``bf_max_job_test``) queued jobs are tried per pass, a full
                pass runs at most every ``interval_s`` (30 s, Slurm's ``bf_interval``),
                and a pass on an unchanged state tries only the jobs that arrived since.
                Urgent jobs (priority ``urgent_priority``, 200, and up: frontier
                pretraining) go ahead of the rest of the queue, and one that starts
                while others wait gets at most the cap its reservation would hold.
``backfill-preempt`` backfill, and a blocked head of priority above 0 gets a preemption
                plan (``gpusched.plan.preempt``): cap-downs, then evictions of preemptible
                jobs of lower priority, which lose the work since their last checkpoint
                (hourly by default) and go back to the queue in submit order.
``backfill-gpu`` The GPU-only EASY backfill (Lifka 1995; Mu'alem and Feitelson 2001), the
                baseline: the reservation counts GPUs, not watts (estimate: start + trace
                duration), so small jobs may take the watts the head needs; the engine
                still refuses a start that would break a power row.
``backfill-conservative`` Power-aware conservative backfill: every queued job (the
                first ``depth``, 100) is reserved in order on a profile of GPUs, whole
                nodes and zone-row watts over future time (``gpusched.plan.profile``),
                at the earliest time its demand at min cap fits over its whole run; a
                job reserved now starts now, so no start delays an earlier job's
                reservation (EASY protects only the head's).
``optimize``    Allocation rounds: ``gpusched.allocate.allocate`` + ``apply`` on the queue,
                at most one round per ``round_interval_s`` of simulated time and only when
                a job is queued (while hall and facility rows have 5 % spare, arrivals
                start at once at full cap); ``rebalance_caps(engine, apply=True)`` at most
                every ``rebalance_interval_s``, when no queued job could use the free
                GPUs.  A job waiting over ``max_wait_s`` makes rounds offer only it.
                Deterministic: solves stop at a node limit, not a clock; a wall-clock
                safety net remains and ``rounds_stopped_by_time_limit`` in the report
                counts the rounds where it fired.  The other policies are
                deterministic, full stop.
``oblivious``   The baseline without gpusched's power model: fifo order on an engine
                whose cluster has every power and cooling limit lifted, so every job runs
                at its ``max_cap_w``.  The metrics still check the real cluster's rows and
                report what it would have broken.
==============  ===============================================================================
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..spec import Cluster
from ..engine import Engine
from ..errors import GpuschedError, PlacementError
from .events import ARRIVAL, FINISH, ROUND, reason_bit

if TYPE_CHECKING:
    from .events import SimJob, Simulator

__all__ = ["Policy", "Fifo", "Backfill", "PreemptingBackfill", "GpuBackfill", "ConservativeBackfill", "Optimize", "Oblivious", "POLICIES",
           "make_policy", "lifted_cluster"]

# the event loop owns the kinds; these are their bits in `reasons`
ARRIVED, FINISHED, ROUND_DUE = reason_bit(ARRIVAL), reason_bit(FINISH), reason_bit(ROUND)
_LIFTED_W = 1e11  # 100 GW: no row of a real site binds; below the spec's 1 TW sanity bound


class Policy:
    """Base class: a policy builds its engine and starts jobs when asked to."""

    name = "policy"
    #: False only for the baseline that ignores the power model.
    power_aware = True

    def make_engine(self, cluster: Cluster) -> Engine:
        return Engine(cluster)

    def schedule(self, sim: "Simulator", now: float, reasons: int) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def _start_in_order(sim: "Simulator") -> "list[SimJob]":
    """Start jobs from the front of the queue until one does not fit (head-of-line)."""
    engine = sim.engine
    started = []
    for sim_job in sim.queue:
        if sim_job.gpus > engine.free_gpus():
            break  # cheap refusal: the engine would say no-capacity
        placement = engine.place(sim_job.job)
        if placement is None:
            break
        sim.start(sim_job, placement)
        started.append(sim_job)
    if started:
        del sim.queue[:len(started)]
    return started


def _check_depth(depth: object) -> None:
    """A backfill's ``depth`` (queued jobs tried per pass) must be a positive integer."""
    from ..errors import SpecError
    if isinstance(depth, bool) or not (isinstance(depth, int) and depth >= 1):
        raise SpecError(f"depth must be a positive integer, got {depth!r}", field="depth")


def _check_seconds(name: str, value: object) -> None:
    """A policy's interval ``name`` must be a finite number of seconds >= 0."""
    from ..errors import SpecError
    if (isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not (value >= 0 and math.isfinite(value))):
        raise SpecError(f"{name} must be a finite number of seconds >= 0, got {value!r}",
                        field=name)


class Fifo(Policy):
    """First come, first served with head-of-line blocking."""

    name = "fifo"

    def schedule(self, sim: "Simulator", now: float, reasons: int) -> None:
        if sim.queue:
            _start_in_order(sim)


class _OnTimeline(Policy):
    """A policy that keeps its running jobs on a :class:`gpusched.plan.timeline.Timeline`
    (``self._timeline``, built on its first pass): finished and requeued jobs leave it."""

    _timeline: Any = None
    _done_seen = 0

    def _track(self, sim: "Simulator") -> None:
        if self._timeline is None:
            from ..plan.timeline import Timeline  # the plan layer; loaded on first use
            self._timeline = Timeline(sim.cluster)
        for sim_job in sim.done[self._done_seen:]:
            if sim_job.id in self._timeline:
                self._timeline.remove(sim_job.id)
        self._done_seen = len(sim.done)

    def requeued(self, sim: "Simulator", sim_job: "SimJob") -> None:
        """A failure sent a running job back to the queue (gpusched.simulate.failures)."""
        if self._timeline is not None and sim_job.id in self._timeline:
            self._timeline.remove(sim_job.id)

    def _start(self, sim: "Simulator", sim_job: "SimJob", placement: Any, now: float,
               units: np.ndarray) -> Any:
        raise NotImplementedError

    def _front_cap_w(self, sim: "Simulator", sim_job: "SimJob", behind: int) -> int | None:
        """The cap to start a job from the front at most (None: the engine's highest)."""
        return None

    def _start_front(self, sim: "Simulator", now: float) -> np.ndarray:
        """Start jobs from the front of the queue, in order, until one does not fit (fifo:
        nothing earlier waits, so every reservation would start them now); the engine's
        slack of the timeline's rows after them."""
        engine = sim.engine
        rows = self._timeline.rows
        slack = engine.row_slack_units()[rows]
        started = 0
        for sim_job in sim.queue:
            if sim_job.gpus > engine.free_gpus():
                break
            cap_w = self._front_cap_w(sim, sim_job, len(sim.queue) - started - 1)
            placement = (engine.place(sim_job.job) if cap_w is None
                         else engine.place_at_most(sim_job.job, cap_w))
            if placement is None:
                break
            after = engine.row_slack_units()[rows]
            self._start(sim, sim_job, placement, now, slack - after)
            slack = after
            started += 1
        if started:
            del sim.queue[:started]
        return slack


class Backfill(_OnTimeline):
    """Power-aware EASY backfilling over a :class:`gpusched.plan.timeline.Timeline`.

    The head's reservation counts a node empty at the expected end of its last job, and
    (``head_cap``) holds the watts of the highest cap that fits at its start, up to the
    cap where its next 25 W step is worth less per watt than a job started on idle GPUs
    (``_efficient_cap_w``); that cap only rises while the head waits.  A small job run
    past the head's start goes on a node that stays busy past it.  At --load-scale 4
    --gang-scale 1 (issue 16) the 32k gang then starts at 375 W as under fifo, not at
    350 W, and backfill delivers 0.59 % more work than fifo instead of 0.37 % less.

    Urgent jobs (``urgent_priority``: priority 200 and up, the synthetic mix's frontier
    pretraining) go ahead of every other queued job, as a higher ``PriorityTier``
    partition does in Slurm; the others keep their submit order.  So an urgent gang is
    the head (and holds its reservation) from its arrival instead of waiting for the
    heads before it to start (synthetic seed 2: the frontier gangs' mean wait 2.38 h,
    against fifo's 2.28 h, with submit order alone).  One that starts at once while
    others wait starts at most at the cap its reservation would hold
    (``cap_urgent``): a 20,480-GPU gang the engine started at 700 W for its whole run
    took the watts of the jobs it had passed (synthetic seed 1: 2.6 % less work than
    with submit order; at most 400 W: 0.4 % more).  Ordering every class by priority
    (large jobs ahead of small) cost 2.4 % on seed 1 and is not what this does.

    Parameters
    ----------
    depth : int, default 500
        Queued jobs tried per pass (Slurm's ``bf_max_job_test``).
    interval_s : float, default 30
        A full pass at most this often in simulated time (Slurm's ``bf_interval``).
    urgent_priority : int or None, default 200
        Jobs of at least this priority go ahead of the rest; None: submit order only.
    cap_urgent : bool, default True
        An urgent job started ahead of waiting jobs gets at most the efficient cap.
    """

    name = "backfill"

    def __init__(self, depth: int = 500, interval_s: float = 30.0, preempt: bool = False,
                 checkpoint_s: float = 3600.0, preempt_interval_s: float = 300.0,
                 lower_caps: bool = True, head_cap: bool = True,
                 urgent_priority: int | None = 200, cap_urgent: bool = True) -> None:
        from ..errors import SpecError
        from ..job import PRIORITY_MAX, PRIORITY_MIN
        _check_depth(depth)
        for name, value in (("interval_s", interval_s), ("checkpoint_s", checkpoint_s),
                            ("preempt_interval_s", preempt_interval_s)):
            _check_seconds(name, value)
        if urgent_priority is not None and (
                isinstance(urgent_priority, bool) or not isinstance(urgent_priority, int)
                or not PRIORITY_MIN <= urgent_priority <= PRIORITY_MAX):
            raise SpecError(f"urgent_priority must be None or a whole number in "
                            f"[{PRIORITY_MIN}, {PRIORITY_MAX}] (a job priority), got "
                            f"{urgent_priority!r}", field="urgent_priority")
        self.urgent_priority = urgent_priority
        self.cap_urgent = bool(cap_urgent)
        self.lower_caps = lower_caps
        self.head_cap = head_cap
        self.depth = depth
        self.interval_s = interval_s
        self.preempt = preempt
        self.checkpoint_s = checkpoint_s
        self.preempt_interval_s = preempt_interval_s
        self._next_preempt_s: dict[str, float] = {}
        self.preemption_plans = 0
        self.evictions = 0
        self.cap_downs = 0
        self.lost_gpu_h = 0.0
        self._next_pass_s = -math.inf
        # highest cap at which a shape was refused since the last finish: a start adds
        # load, so it would be refused at that cap or lower again
        self._refused: dict[tuple[int, int, int], int] = {}
        self._version = -1      # sim.state_version after the last pass
        self._head_id = ""      # the head of the queue in the last pass
        self._tried_upto = 1    # queue positions that pass examined
        self.passes = 0
        self.tried = 0
        self.backfilled = 0
        self.held_back = 0      # placed, then taken back: it would have eaten the reservation
        self.steered = 0        # placed on a node chosen to keep the head's nodes empty
        self._held_cap_w: dict[str, int] = {}  # the head's, by id: the cap held for it
        self._efficient: dict[tuple[Any, int, int], int] = {}  # by curve and cap range
        self.model_blocked = 0  # passes where the head fit by the timeline, not the engine

    def _front_cap_w(self, sim: "Simulator", sim_job: "SimJob", behind: int) -> int | None:
        # an urgent job that starts while jobs it went ahead of wait gets the watts its
        # reservation would hold, no more; it keeps its cap for its whole run (days, for
        # a frontier gang), so watts above the efficient cap would be taken from them
        if self.cap_urgent and behind and self._tier(sim_job):
            return self._efficient_cap_w(sim, sim_job.job)
        return None

    def _tier(self, sim_job: "SimJob") -> int:
        """1 for an urgent job (priority at least ``urgent_priority``), else 0."""
        urgent = self.urgent_priority
        return 1 if urgent is not None and sim_job.spec.priority >= urgent else 0

    def queued(self, sim: "Simulator", sim_job: "SimJob") -> None:
        """Put an arrival (or a preempted job) in its place in the queue: an urgent job
        (priority at least ``urgent_priority``) behind the urgent jobs submitted no
        later, ahead of every other job; any other job in submit order among the
        others.  A requeued job stays at the front, as under every policy."""
        queue = sim.queue
        tier, submit_s = self._tier(sim_job), sim_job.spec.submit_s
        at = len(queue)
        # from the back: only urgent arrivals walk past more than a few jobs
        while at > 0:
            ahead = queue[at - 1]
            if ahead.requeued or (self._tier(ahead), -ahead.spec.submit_s) >= (
                    tier, -submit_s):
                break
            at -= 1
        queue.insert(at, sim_job)

    def _start(self, sim: "Simulator", sim_job: "SimJob", placement: Any, now: float,
               units: np.ndarray) -> None:
        sim.start(sim_job, placement)
        whole = len(placement.nodes) if sim_job.gpus >= sim.cluster.gpus_per_node else 0
        self._timeline.add(sim_job.id, now + sim_job.work_left_s / sim_job.speed,
                           sim_job.gpus, tuple(units.tolist()), whole,
                           self._timeline.hall_of(placement), placement.nodes,
                           placement.gpus_per_node)

    def schedule(self, sim: "Simulator", now: float, reasons: int) -> None:
        self._track(sim)
        rows = self._timeline.rows
        if not sim.queue:
            return
        engine = sim.engine
        if reasons & FINISHED:
            self._refused.clear()   # freed GPUs and watts: refusals may not hold now
        slack = self._start_front(sim, now)
        if self.preempt and sim.queue and self._preempt_for_head(sim, now):
            slack = engine.row_slack_units()[rows]
        if len(sim.queue) < 2:
            self._remember(sim, 1)
            return
        # same state and head as the last pass (only arrivals since, at the back): the
        # jobs it tried would get the same answers, so only the new ones are tried.  An
        # urgent arrival goes to the front: a new head, a new reservation, a full pass
        same = sim.state_version == self._version and sim.queue[0].id == self._head_id
        first = self._tried_upto if same else 1
        if first == 1:
            # a full pass at most every interval_s of simulated time (Slurm's bf_interval,
            # 30 s by default): finishes in between wait for the next one
            if now < self._next_pass_s:
                sim.request_round(self._next_pass_s)
                return
            self._next_pass_s = now + self.interval_s
        last = min(len(sim.queue), self.depth + 1)
        if first >= last or engine.free_gpus() == 0:
            self._remember(sim, max(first, 1))
            return
        self.passes += 1
        head = sim.queue[0]
        G = sim.cluster.gpus_per_node
        timeline = self._timeline
        node_free = engine.node_free_gpus()
        # the cap held for the head only rises while it waits: each pass sees the jobs
        # the last ones started past its start, whose watts would otherwise bring the
        # cap that fits down to its min, pass by pass
        held_cap_w = self._held_cap_w.get(head.id) if self.head_cap else None
        reservation = timeline.reserve(head.job, now, engine.free_gpus(), slack,
                                       node_free=node_free,
                                       cap_w=self._efficient_cap_w(sim, head.job)
                                       if self.head_cap else None,
                                       start_cap_w=held_cap_w)
        if self.head_cap:
            self._held_cap_w = {head.id: reservation.cap_w}
        if reservation.start_s <= now:
            # the head fits by the timeline's count but the engine refused it: a row the
            # timeline does not hold (a hall, a busway) or the nodes' shape blocks it.
            # Nothing may run past now, or small jobs would keep taking what the head
            # waits for (it would starve); only jobs that end by now could, so none.
            self.model_blocked += 1
            self._remember(sim, 1)
            return
        caps: dict[tuple[int, int, int], int | None] = {}  # per shape, under this reservation
        chosen: list[int] = []
        unsteered: dict[int, int] = {}  # per size, the lowest cap no lasting node took
        # the cheap tests over the whole window at once: only the jobs that may start are
        # looked at one by one (a pass over 500 queued jobs in Python cost most of the run)
        window = sim.queue[first:last]
        gpus = np.fromiter((s.spec.gpus for s in window), np.int64, len(window))
        duration = np.fromiter((s.spec.duration_s for s in window), float, len(window))
        maybe = gpus <= engine.free_gpus()
        maybe &= (now + duration <= reservation.start_s) | (gpus <= reservation.extra_gpus)
        # nodes still busy at the head's start: the ones a small job running past it may
        # take without taking a node the head counts on
        lasting = timeline.node_empty_s(node_free) > reservation.start_s
        for offset in np.flatnonzero(maybe).tolist():
            i = first + offset
            free = engine.free_gpus()
            if free == 0:
                break
            sim_job = sim.queue[i]
            job = sim_job.job
            shape = (job.gpus, job.min_cap_w, job.max_cap_w)
            if job.gpus > free:
                continue
            # duration_s is its run time at s = 1: it cannot end sooner
            may_end_in_time = now + sim_job.spec.duration_s <= reservation.start_s
            cap = job.max_cap_w
            if not may_end_in_time:
                # it would run past the head's start: only the GPUs and watts left over
                # then are its to take, so it starts at a cap that fits in them
                if job.gpus > reservation.extra_gpus:
                    continue
                if job.gpus >= G and job.gpus // G > reservation.extra_nodes:
                    continue   # a gang takes empty nodes, and none are left over
                if (reservation.extra_nodes <= 0 and job.gpus < G
                        and not ((node_free >= job.gpus) & lasting).any()):
                    continue   # it would land on a node empty at the head's start
                if shape in caps:
                    within = caps[shape]
                else:
                    within = caps[shape] = timeline.cap_within(job, reservation.extra_units)
                if within is None or (within < job.max_cap_w and not self.lower_caps):
                    continue
                cap = within
            if cap <= self._refused.get(shape, 0):
                continue
            self.tried += 1
            if not may_end_in_time and job.gpus < G and reservation.extra_nodes <= 0:
                # the engine would pick its node without knowing which nodes the head
                # counts on, and most of its picks had to be taken back (67,000 of
                # 79,000 tries while the 32k gang waited at --load-scale 4): the job
                # goes on a node that stays busy past the head's start
                if cap >= unsteered.get(job.gpus, 10 ** 9):
                    continue   # refused at this cap or lower in this pass: nodes only fill
                placement = self._place_lasting(engine, job, cap, node_free, lasting,
                                                reservation.hall)
                if placement is None:
                    unsteered[job.gpus] = cap
                    continue
                self.steered += 1
            else:
                placement = (engine.place(job) if cap == job.max_cap_w
                             else engine.place_at_most(job, cap))
            if placement is None:
                self._refused[shape] = cap
                continue
            after = engine.row_slack_units()[rows]
            units = tuple((slack - after).tolist())
            end_s = now + sim_job.spec.duration_s / sim._speed(sim_job, placement.cap_w)
            if end_s > reservation.start_s:
                # the nodes it took (in the head's hall, if it has one) that the head
                # counts on: those expected empty by the head's start (node_free is the
                # state before this placement)
                took = timeline.nodes_empty_by(placement.nodes, reservation.start_s,
                                               node_free, reservation.hall)
                if not reservation.admits(job.gpus, units, took):
                    engine.release(job.id)  # it would eat the head's GPUs or watts
                    self.held_back += 1
                    continue
                reservation = reservation.take(job.gpus, units, took)
                caps.clear()
            self._start(sim, sim_job, placement, now, slack - after)
            slack = after
            node_free = engine.node_free_gpus()
            lasting = timeline.node_empty_s(node_free) > reservation.start_s
            chosen.append(i)
        self.backfilled += len(chosen)
        for i in reversed(chosen):
            del sim.queue[i]
        self._remember(sim, last - len(chosen))

    def _remember(self, sim: "Simulator", tried_upto: int) -> None:
        """What the next pass compares with: the state, the head, and the queue
        positions tried (1: only the head, as when the queue held one job)."""
        self._version, self._tried_upto = sim.state_version, tried_upto
        self._head_id = sim.queue[0].id if sim.queue else ""

    def _efficient_cap_w(self, sim: "Simulator", job: Any) -> int:
        """The highest cap worth holding watts for the head: while the next 25 W step
        of its caps delivers more work per watt than a job started on idle GPUs at its
        best cap would (s / (cap - idle + busy step / GPUs per node)), the watts do more
        on the head.  400 W on the default curve: holding the head's watts up to its max
        cap kept them from backfilled jobs (synthetic seed 1: 0.6 % below fifo)."""
        key = (job.curve, job.min_cap_w, job.max_cap_w)
        cap_w = self._efficient.get(key)
        if cap_w is None:
            power = sim.cluster.power
            caps = list(range(job.max_cap_w, job.min_cap_w - 1, -25))[::-1]
            speed = [float(power.speed(job, c)) for c in caps]
            per_w = power.busy_step_w / power.gpus_per_node
            best = max(s / (c - power.gpu_idle_w + per_w) for c, s in zip(caps, speed))
            cap_w = caps[0]
            for i in range(1, len(caps)):
                if (speed[i] - speed[i - 1]) / (caps[i] - caps[i - 1]) < best:
                    break
                cap_w = caps[i]
            self._efficient[key] = cap_w
        return cap_w

    def _place_lasting(self, engine: Engine, job: Any, cap_w: int, node_free: np.ndarray,
                       lasting: np.ndarray, hall: int) -> Any:
        """``job`` (one node's GPUs or fewer) at ``cap_w`` on the fullest node that fits
        it and stays busy past the head's start (or lies outside the head's hall), the
        next one if a row refuses; None if none takes it."""
        safe = lasting if hall < 0 else lasting | (self._timeline._node_hall != hall)
        fits = np.flatnonzero(safe & (node_free >= job.gpus))
        for node in fits[np.argsort(node_free[fits], kind="stable")][:2].tolist():
            try:
                return engine.place_on(job, [node], cap_w)
            except PlacementError:
                continue  # a rack or busway row at this cap: the next node
        return None

    def _preempt_for_head(self, sim: "Simulator", now: float) -> bool:
        """Let a blocked head of priority above 0 in by a preemption plan
        (``gpusched.plan.preempt``): cap-downs, then evictions of lower-priority
        preemptible jobs, which lose the work since their last checkpoint and go back
        to the queue.  At most one plan per head every ``preempt_interval_s``."""
        head = sim.queue[0]
        if head.job.priority <= 0 or now < self._next_preempt_s.get(head.id, -math.inf):
            return False
        self._next_preempt_s[head.id] = now + self.preempt_interval_s
        from ..errors import PreemptionError
        from ..plan.preempt import plan_preemption
        ckpt = self.checkpoint_s
        # checkpoints count from a job's last start or resume (a requeued or preempted
        # job restarts from its checkpoint)
        since = {job_id: ((now - s.resumed_s) % ckpt if ckpt > 0 else now - s.resumed_s)
                 for job_id, s in sim.running.items()}
        try:
            plan = plan_preemption(sim.engine, head.job, since_checkpoint_s=since)
        except PreemptionError:
            return False
        victims = [sim.running[v] for v in plan.victims]
        placement = plan.apply()
        self.preemption_plans += 1
        for change in plan.cap_changes:
            sim.set_cap(sim.running[change.job_id], change.to_cap_w, by_plan=True)
        self.cap_downs += len(plan.cap_changes)
        for victim in victims:
            self._timeline.remove(victim.id)
            self.lost_gpu_h += sim.preempted(victim, ckpt) / 3600.0
        self.evictions += len(victims)
        sim.queue.remove(head)
        busy = len(placement.nodes) if head.gpus >= sim.cluster.gpus_per_node else 0
        self._start(sim, head, placement, now, self._timeline.units_of(placement, busy))
        self._next_preempt_s.pop(head.id, None)
        return True

    def describe(self) -> dict[str, Any]:
        if self.preempt:
            extra = {"preempt": True, "checkpoint_s": self.checkpoint_s,
                     "preemption_plans": self.preemption_plans, "evictions": self.evictions,
                     "cap_downs": self.cap_downs, "lost_gpu_h": round(self.lost_gpu_h, 1)}
        else:
            extra = {"preempt": False}
        return {**extra, "name": self.name, "depth": self.depth, "interval_s": self.interval_s,
                "passes": self.passes,
                "tried": self.tried, "backfilled": self.backfilled,
                "held_back": self.held_back, "steered": self.steered,
                "model_blocked_passes": self.model_blocked, "head_cap": self.head_cap,
                "urgent_priority": self.urgent_priority, "cap_urgent": self.cap_urgent,
                "reserves": "GPUs and site-row watts"}


class PreemptingBackfill(Backfill):
    """Power-aware backfill whose blocked head, if of higher priority, preempts."""

    name = "backfill-preempt"

    def __init__(self, **options: Any) -> None:
        super().__init__(preempt=True, **options)


class GpuBackfill(Policy):
    """EASY backfilling that reserves GPUs only, trace duration as the estimate (the
    baseline the power-aware ``backfill`` replaced)."""

    name = "backfill-gpu"

    def __init__(self, depth: int = 200) -> None:
        self.depth = depth
        # Running jobs by estimated end (start + trace duration), as parallel arrays so
        # the head's reservation is one cumulative sum and one search per pass.
        self._end_s = np.empty(0)
        self._gpus = np.empty(0, dtype=np.int64)
        self._ids: list[str] = []
        self._end_of: dict[str, float] = {}
        self._done_seen = 0

    def _track(self, sim: "Simulator") -> None:
        for sim_job in sim.done[self._done_seen:]:
            self._forget(sim_job)
        self._done_seen = len(sim.done)

    def _forget(self, sim_job: "SimJob") -> None:
        end = self._end_of.pop(sim_job.id)
        i = int(np.searchsorted(self._end_s, end, side="left"))
        while self._ids[i] != sim_job.id:  # equal ends: find the right one
            i += 1
        self._end_s = np.delete(self._end_s, i)
        self._gpus = np.delete(self._gpus, i)
        del self._ids[i]

    def requeued(self, sim: "Simulator", sim_job: "SimJob") -> None:
        """A failure sent a running job back to the queue (gpusched.simulate.failures)."""
        if sim_job.id in self._end_of:
            self._forget(sim_job)

    def _started(self, sim_job: "SimJob", now: float) -> None:
        end = now + sim_job.spec.duration_s
        i = int(np.searchsorted(self._end_s, end, side="right"))
        self._end_s = np.insert(self._end_s, i, end)
        self._gpus = np.insert(self._gpus, i, sim_job.gpus)
        self._ids.insert(i, sim_job.id)
        self._end_of[sim_job.id] = end

    def _reservation(self, need: int, free: int, now: float) -> tuple[float, int]:
        """(shadow time, extra GPUs): when the head can start, and what it leaves over."""
        if need <= free:
            return now, free - need
        freed = np.cumsum(self._gpus)
        k = int(np.searchsorted(freed, need - free, side="left"))
        if k >= len(freed):
            return math.inf, 0
        return max(float(self._end_s[k]), now), int(free + freed[k] - need)

    def schedule(self, sim: "Simulator", now: float, reasons: int) -> None:
        self._track(sim)
        if not sim.queue:
            return
        engine = sim.engine
        for sim_job in _start_in_order(sim):
            self._started(sim_job, now)
        if len(sim.queue) < 2:
            return
        free = engine.free_gpus()
        smallest = min(s.gpus for s in sim.queue[1:self.depth + 1])
        if smallest > free:
            return  # nothing behind the head fits now: no pass needed
        head = sim.queue[0]
        shadow_s, extra = self._reservation(head.gpus, free, now)
        kept = [head]
        refused: set[tuple[int, int]] = set()   # shapes the engine refused in this pass
        for i, sim_job in enumerate(sim.queue[1:], start=1):
            if i > self.depth or free == 0:
                kept.extend(sim.queue[i:])
                break
            ends_in_time = now + sim_job.spec.duration_s <= shadow_s
            shape = (sim_job.gpus, sim_job.job.min_cap_w)
            if (sim_job.gpus <= free and (ends_in_time or sim_job.gpus <= extra)
                    and shape not in refused):
                placement = engine.place(sim_job.job)
                if placement is None:
                    # nothing changed since: a job of the same size and lowest cap
                    # would be refused too, so do not ask the engine again
                    refused.add(shape)
                else:
                    sim.start(sim_job, placement)
                    self._started(sim_job, now)
                    free = engine.free_gpus()
                    if not ends_in_time:
                        extra -= sim_job.gpus
                    continue
            kept.append(sim_job)
        sim.queue[:] = kept

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "depth": self.depth}


class ConservativeBackfill(_OnTimeline):
    """Power-aware conservative backfilling: every queued job (up to ``depth``) is
    reserved, in order, on a :class:`gpusched.plan.profile.Profile`.

    Each job gets the earliest expected time at which its GPUs, whole nodes and watts
    in every zone row (at its min cap) are free over its whole expected run (its
    remaining work at s(min cap): it cannot run longer), after what the running jobs
    hold and what every earlier queued job was reserved; its demand is then taken off
    the profile over that run.  A job whose reservation is now starts now, at the
    highest cap that fits in what the profile leaves over its run; its real GPUs, nodes
    and units (read from the engine) over its real run must fit too, so a start never
    delays an earlier job's reservation.

    A job the profile fits now but the engine refuses (a row the profile does not hold,
    a busway or rack feed, or the nodes' shape), or that the engine places where it
    would take more than the profile leaves (an empty node held for a gang), ends the
    pass, as power-aware EASY does for its head (``model_blocked_passes``,
    ``held_back``): jobs behind it would take what it waits for.

    Parameters
    ----------
    depth : int, default 100
        Queued jobs reserved per pass (Slurm's ``bf_max_job_test``; every reservation
        costs a search of the profile).
    interval_s : float, default 30
        A full pass at most this often in simulated time (Slurm's ``bf_interval``);
        between passes the queue starts in order from the front, as fifo does.
    max_breakpoints : int, default 200
        Breakpoints of the profile from the running jobs' ends
        (:class:`~gpusched.plan.profile.Profile`).
    """

    name = "backfill-conservative"

    def __init__(self, depth: int = 100, interval_s: float = 30.0,
                 max_breakpoints: int = 200) -> None:
        from ..errors import SpecError
        _check_depth(depth)
        if not (isinstance(max_breakpoints, int) and max_breakpoints >= 2):
            raise SpecError(f"max_breakpoints must be an integer of at least 2, got "
                            f"{max_breakpoints!r}", field="max_breakpoints")
        _check_seconds("interval_s", interval_s)
        self.depth = depth
        self.interval_s = float(interval_s)
        self.max_breakpoints = max_breakpoints
        self._next_pass_s = -math.inf
        self._seen: tuple[int, int] = (-1, -1)   # (state_version, queue length) of the last pass
        self.passes = 0
        self.reserved = 0
        self.backfilled = 0     # started by a pass, not by the in-order start
        self.held_back = 0      # placed, then taken back: more than the profile leaves
        self.model_blocked = 0  # passes ended by a job the profile fit and the engine refused
        self.ended_early = 0    # passes ended because nothing left could start now

    def holds_for_head(self) -> bool:
        return True   # the head's reservation holds what it needs (gpusched.simulate.waits)

    def _start(self, sim: "Simulator", sim_job: "SimJob", placement: Any, now: float,
               units: np.ndarray) -> float:
        sim.start(sim_job, placement)
        end_s = now + sim_job.work_left_s / sim_job.speed
        whole = len(placement.nodes) if sim_job.gpus >= sim.cluster.gpus_per_node else 0
        self._timeline.add(sim_job.id, end_s, sim_job.gpus, tuple(units.tolist()), whole,
                           self._timeline.hall_of(placement))
        return end_s

    @staticmethod
    def _work_s(sim_job: "SimJob") -> float:
        """Run time left at s = 1 (a requeued or preempted job keeps its checkpoint)."""
        if sim_job.requeued or sim_job.preemptions:
            return sim_job.work_left_s
        return sim_job.spec.duration_s

    def schedule(self, sim: "Simulator", now: float, reasons: int) -> None:
        self._track(sim)
        if not sim.queue:
            return
        engine = sim.engine
        # the front of the queue in order: a job that fits now at the front is reserved
        # now by any profile (nothing earlier is waiting), so this is the pass's start
        slack = self._start_front(sim, now)
        if len(sim.queue) < 2 or engine.free_gpus() == 0:
            return
        seen = (sim.state_version, len(sim.queue))
        if seen == self._seen:
            return   # nothing changed since the last pass: same reservations
        if now < self._next_pass_s:
            sim.request_round(self._next_pass_s)
            return
        self._next_pass_s = now + self.interval_s
        self._pass(sim, now, slack)
        self._seen = (sim.state_version, len(sim.queue))

    def _pass(self, sim: "Simulator", now: float, slack: np.ndarray) -> None:
        from ..plan.profile import Demand, Profile
        engine = sim.engine
        timeline = self._timeline
        rows = timeline.rows
        G = sim.cluster.gpus_per_node
        self.passes += 1
        node_free = engine.node_free_gpus()
        empty = np.bincount(timeline._node_hall[node_free == G], minlength=timeline.num_halls)
        profile = Profile(timeline, now, engine.free_gpus(), slack, empty,
                          self.max_breakpoints)
        slots: list[Any] = []   # a Slot per job reserved, None for one started
        chosen: list[int] = []
        window = sim.queue[:self.depth]
        # Once what is free now fits none of the jobs left (the fewest GPUs, the fewest
        # watts at min cap, charged at each row's lowest coefficient), none can start now
        # and their reservations would change nothing this pass: on a power-bound site
        # that ends most passes after a few jobs.
        least_gpus = np.minimum.accumulate(np.fromiter(
            (s.gpus for s in reversed(window)), np.int64, len(window)))[::-1]
        least_w = np.minimum.accumulate(np.fromiter(
            (timeline._watts(s.job, s.job.min_cap_w) for s in reversed(window)), np.int64,
            len(window)))[::-1]
        least_coef = np.minimum(timeline._hall_coef.min(axis=0),
                                np.where(timeline._multi_hall, timeline._max_coef, 0))
        for i, sim_job in enumerate(window):
            if (profile.gpus[0] < least_gpus[i]
                    or (profile.units[0] < least_coef * least_w[i]).any()):
                self.ended_early += 1
                break
            job = sim_job.job
            run_s = self._work_s(sim_job) / sim._speed(sim_job, job.min_cap_w)
            k, demand = profile.find(job, run_s)
            if demand is None or k > 0:
                slots.append(profile.hold(job.id, k, demand, run_s))
                continue
            # it may start now: at the highest cap that fits what is left over its run
            # (charged at every row's largest coefficient, wherever it lands)
            left = profile.available(now, now + run_s)
            cap = timeline.cap_within(job, tuple(left.units.tolist()))
            if cap is None:
                cap = job.min_cap_w   # fits its hall's rows only: the check below decides
            placement = (engine.place(job) if cap == job.max_cap_w
                         else engine.place_at_most(job, cap))
            if placement is None:
                self.model_blocked += 1
                break
            after = engine.row_slack_units()[rows]
            nodes = list(placement.nodes)
            if job.gpus < G and engine.node_free_gpus()[nodes[0]] != G - job.gpus:
                nodes = []   # a small job on a node already in use takes no empty node
            halls = np.bincount(timeline._node_hall[nodes], minlength=timeline.num_halls)
            held = Demand(job.gpus, slack - after, halls.astype(np.int64), len(nodes))
            end_s = now + self._work_s(sim_job) / sim._speed(sim_job, placement.cap_w)
            if not profile.fits(held, now, end_s):
                engine.release(job.id)
                self.held_back += 1
                break
            profile.take(held, now, end_s)
            self._start(sim, sim_job, placement, now, slack - after)
            slack = after
            chosen.append(i)
            slots.append(None)
            if engine.free_gpus() == 0:
                break   # nothing behind can start now; its reservation would change nothing
        self.reserved += sum(s is not None and s.demand is not None for s in slots)
        self.backfilled += len(chosen)
        for i in reversed(chosen):
            del sim.queue[i]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "depth": self.depth, "interval_s": self.interval_s,
                "max_breakpoints": self.max_breakpoints, "passes": self.passes,
                "reserved": self.reserved, "backfilled": self.backfilled,
                "held_back": self.held_back, "model_blocked_passes": self.model_blocked,
                "ended_early_passes": self.ended_early,
                "reserves": "every queued job: GPUs, whole nodes and zone-row watts"}


class Oblivious(Fifo):
    """fifo on a copy of the cluster with every power and cooling limit lifted."""

    name = "oblivious"
    power_aware = False

    def make_engine(self, cluster: Cluster) -> Engine:
        return Engine(lifted_cluster(cluster))


def lifted_cluster(cluster: Cluster) -> Cluster:
    """The same racks, nodes and names with every limit at 100 GW (nothing binds).

    Rack indices are unchanged, so rack powers from an engine on it can be checked
    against the real ``cluster.constraints``.
    """
    return cluster.with_limits(every_w=_LIFTED_W, name=f"{cluster.name} (limits lifted)")


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence C-level writes to fd 1 during a solve.

    HiGHS's MIP solver prints debug lines (``HighsMipSolverData::...``) straight to the
    process's stdout even with ``disp=False``; they would land in the CLI's table.
    """
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real fd 1 (captured, closed)
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class Optimize(Policy):
    """Batched allocation rounds (``gpusched.allocate``) plus cap re-balancing.

    Parameters
    ----------
    round_interval_s : float, default 300
        At most one allocation round per this much simulated time (900 s left GPUs
        idle between rounds: on the default run 1,222,795 GPU-hours x s against
        1,228,853 at 300 s, other settings equal).
    rebalance_interval_s : float, default 3600
        Re-balance running caps at most this often, and only when no queued job could
        use the free GPUs (then the watts are better spent admitting it) or the site
        drains for its head.
    max_queue : int, default 500
        The first jobs of the queue (arrival order) offered to one round.  ``allocate``
        groups equal jobs into classes, so a long queue costs little.
    time_limit_s : float, default 10
        Wall-clock safety net of each solve of a round; it decides nothing unless it
        fires (``rounds_stopped_by_time_limit`` counts those rounds, whose outcome then
        depends on the machine).  Before issue 14 a 0.1 s limit ended the solves, so
        two runs could differ.
    node_limit : int, default 50
        Branch-and-bound nodes per MILP (``allocate(node_limit=...)``): the work limit
        that does stop solves, the same on every machine
        (``rounds_stopped_by_work_limit``).
    exact_max_vars : int, default 600
        ``allocate``'s threshold for also running the full MILP after LP-and-fix: a
        round's model of thousands of variables is solved by LP-and-fix alone (what
        the 0.1 s limit did before, by the clock), keeping rounds fast.
    max_wait_s : float, default 3600
        Once the oldest queued job has waited this long, rounds first offer it alone
        and fits; while it does not, no other job starts (anti-starvation for
        frontier gangs).
    margin : float, default 0.05
        While every hall, hall-cooling and facility row has more than this fraction of
        its limit spare, arriving jobs start at once at their max cap (the MILP's
        answer when nothing binds) instead of waiting for a round; 1 turns it off.
    drain_on_events : bool, default True
        While the site drains for its head, try the head (``engine.place``) at every
        finish, not only at the next round: it starts the moment its GPUs are free.
    rebalance_in_drain : bool, default True
        While the site drains, no queued job may use the free GPUs, so their watts go
        to the running jobs (``rebalance_caps``): before, caps lowered to admit jobs
        stayed low through hours of drain with the watts unused (the diagnosis of
        issue 14: on the synthetic mix 26 of 59 rounds drained at mean s 0.88).
    rebalance_after_round, fill_between_rounds : bool, default False
        Variants measured and left off: a re-balance after every round (the raised
        caps keep the next rounds from admitting: utilisation fell from 81 % to 75 %
        on the synthetic mix), and fifo-order starts between rounds (which turn the
        policy into fifo on the default run).

    Notes
    -----
    ``describe()`` reports ``fast_path_starts`` (jobs started before power was
    contended), ``fallback_rounds`` (rounds where allocate admitted none of the offered
    jobs and the engine placed the first one at its min cap), ``engine_spans`` (gangs
    larger than a hall, placed by the engine), ``drain_rounds`` and
    ``rounds_stopped_by_time_limit``.  Without ``gpusched.allocate`` (it is imported
    lazily) every round is that greedy placement, by weight then size, at min caps.
    """

    name = "optimize"

    def __init__(self, round_interval_s: float = 300.0, rebalance_interval_s: float = 3600.0,
                 max_queue: int = 500, time_limit_s: float = 10.0, node_limit: int = 50,
                 exact_max_vars: int = 600,
                 max_wait_s: float = 3600.0, margin: float = 0.05,
                 drain_on_events: bool = True, rebalance_after_round: bool = False,
                 fill_between_rounds: bool = False, rebalance_in_drain: bool = True) -> None:
        self.rebalance_in_drain = rebalance_in_drain
        self.drain_on_events = drain_on_events
        self.rebalance_after_round = rebalance_after_round
        self.fill_between_rounds = fill_between_rounds
        self.draining = False
        self.drain_event_starts = 0
        self.fill_starts = 0
        self.round_interval_s = round_interval_s
        self.rebalance_interval_s = rebalance_interval_s
        self.max_queue = max_queue
        self.time_limit_s = time_limit_s
        self.node_limit = node_limit
        self.exact_max_vars = exact_max_vars
        self.work_limited = 0
        self.max_wait_s = max_wait_s
        self.margin = margin
        self.drain_rounds = 0
        self.fast_starts = 0
        self._zone_rows: np.ndarray | None = None
        self._hall_gpus: int | None = None
        self.engine_spans = 0
        self.time_limited = 0
        self._zone_margin_units: np.ndarray | None = None
        self._last_round_s = -math.inf
        self._last_rebalance_s = -math.inf
        self.rounds = 0
        self.rebalances = 0
        self.solve_time_s = 0.0
        self.fallback_rounds = 0
        self.errors: list[str] = []
        # imported here, not at the top: it loads scipy.optimize, which only this policy needs
        from .. import plan
        self._allocate = plan

    def _uncontended(self, sim: "Simulator") -> bool:
        """True while every zone row (``Constraints.zone_rows``) has ``margin`` spare."""
        if self._zone_rows is None:
            c = sim.cluster.constraints
            self._zone_rows = c.zone_rows
            self._zone_margin_units = (c.b_units[self._zone_rows] * self.margin).astype(np.int64)
        slack = sim.engine.row_slack_units()[self._zone_rows]
        return bool((slack > self._zone_margin_units).all())

    def _fast_path(self, sim: "Simulator") -> None:
        # With watts to spare at every zone row, the best allocation of the queue is to
        # admit it at full caps, which is what the engine does on its own; rounds (and
        # their solver time) are kept for when power is contended.
        engine = sim.engine
        started = 0
        for sim_job in sim.queue:
            if sim_job.gpus > engine.free_gpus() or not self._uncontended(sim):
                break
            placement = engine.place(sim_job.job.replace(min_cap_w=sim_job.job.max_cap_w))
            if placement is None:
                break
            sim.start(sim_job, placement)
            started += 1
        if started:
            self.fast_starts += started
            del sim.queue[:started]

    def schedule(self, sim: "Simulator", now: float, reasons: int) -> None:
        if not reasons & ROUND_DUE:
            if self.draining and self.drain_on_events and reasons & FINISHED and sim.queue:
                # the head the site drains for starts the moment its GPUs are free,
                # not at the next round
                head = sim.queue[0]
                if head.gpus <= sim.engine.free_gpus():
                    placement = sim.engine.place(head.job)
                    if placement is not None:
                        sim.start(head, placement)
                        del sim.queue[0]
                        self.drain_event_starts += 1
                        self.draining = False
            elif sim.queue and self.margin < 1:
                self._fast_path(sim)
                if sim.queue and self.fill_between_rounds and not self.draining:
                    self.fill_starts += len(_start_in_order(sim))
            if sim.queue:
                sim.request_round(self._last_round_s + self.round_interval_s)
            return
        self._last_round_s = now
        self.rounds += 1
        self.draining = False
        if sim.queue:
            head = sim.queue[0]
            if now - head.spec.submit_s <= self.max_wait_s or self._admit(sim, limit=1):
                self._admit(sim)
            else:
                # Anti-starvation: a gang of 20k GPUs never finds them free while small
                # jobs keep taking what frees up, so once the oldest job has waited
                # max_wait_s and still does not fit, nothing else starts: the site
                # drains for it (head-of-line blocking, as fifo does from the start).
                self.drain_rounds += 1
                self.draining = True
        if self.rebalance_after_round and sim.running:
            self._rebalance(sim, now)
            sim.finished_since_round = 0
            return
        # Watts are worth more to a waiting job than to a running one (s is concave and
        # a busy node costs 1.25 kW before its GPUs draw anything), so caps of running
        # jobs are raised only when no queued job could use the free GPUs anyway.
        free = sim.engine.free_gpus()
        starved = any(s.gpus <= free for s in sim.queue[:self.max_queue])
        if self.draining and self.rebalance_in_drain:
            starved = False  # the drain keeps the free GPUs for the head anyway
        due = now - self._last_rebalance_s >= self.rebalance_interval_s
        if sim.running and not starved and due:
            self._rebalance(sim, now)
        sim.finished_since_round = 0

    def _admit(self, sim: "Simulator", limit: int | None = None) -> int:
        """One allocate + apply over the front of the queue; returns the jobs started."""
        offered = sim.queue[:self.max_queue if limit is None else limit]
        if self._hall_gpus is None:
            c = sim.cluster
            self._hall_gpus = int(np.bincount(c.rack_hall, weights=c.rack_nodes).max()
                                  * c.gpus_per_node)
        if offered and offered[0].gpus > self._hall_gpus:
            # allocate() spans a gang over whole pods of one hall; a bigger gang (a 32k
            # frontier run on 25k-GPU halls) goes to the engine, which spans halls.
            placements = self._greedy(sim, offered[:1])
            if placements:
                self.engine_spans += 1
                sim.start(offered[0], placements[offered[0].id])
                del sim.queue[0]
                return 1 + self._admit(sim, None if limit is None else limit - 1)
            if limit is not None:
                return 0
        offered = [s for s in offered if s.gpus <= self._hall_gpus]
        by_id = {s.id: s for s in offered}
        placements = {}
        if offered:
            try:
                with _quiet_stdout():
                    allocation = self._allocate.allocate(sim.engine, [s.job for s in offered],
                                                         time_limit_s=self.time_limit_s,
                                                         node_limit=self.node_limit,
                                                         exact_max_vars=self.exact_max_vars)
                self.solve_time_s += float(getattr(allocation, "solve_time_s", 0.0) or 0.0)
                # A solve stopped by the wall-clock safety net depends on the machine's
                # speed: the one way an optimize run can differ between two machines.
                self.time_limited += allocation.status == "time_limit"
                self.work_limited += allocation.status == "work_limit"
                placements = self._allocate.apply(sim.engine, allocation)
            except GpuschedError as exc:
                self._note(f"allocate failed at t={sim.now:.0f} s: {exc}")
                placements = {}
        if not placements and offered:
            # allocate() keeps a gang that fits in a pod inside one pod, or on whole empty
            # pods; when no pod has the nodes free it admits nothing, while the engine
            # can still spread the gang over several pods.  A round that starts nothing
            # while the head fits would stall the site, so the engine places the head
            # (at its min cap); these rounds are counted as fallback_rounds.
            placements = self._greedy(sim, offered[:1])
            if placements:
                self.fallback_rounds += 1
        started = set()
        for job_id, placement in placements.items():
            sim_job = by_id.get(job_id)
            if sim_job is None:
                continue
            sim.start(sim_job, placement)
            started.add(job_id)
        if started:
            sim.queue[:] = [s for s in sim.queue if s.id not in started]
        return len(started)

    def _fill(self, sim: "Simulator") -> int:
        """Between rounds, start queued jobs that fit now, in arrival order, skipping
        those that do not (the engine picks the highest cap that fits)."""
        engine = sim.engine
        started: set[str] = set()
        refused: set[tuple[int, int]] = set()
        for sim_job in sim.queue[:self.max_queue]:
            free = engine.free_gpus()
            if free == 0:
                break
            shape = (sim_job.gpus, sim_job.job.min_cap_w)
            if sim_job.gpus > free or shape in refused:
                continue
            placement = engine.place(sim_job.job)
            if placement is None:
                refused.add(shape)
                continue
            sim.start(sim_job, placement)
            started.add(sim_job.id)
        if started:
            sim.queue[:] = [s for s in sim.queue if s.id not in started]
        return len(started)

    @staticmethod
    def _greedy(sim: "Simulator", offered: "list[SimJob]") -> dict[str, Any]:
        """Fallback: engine.place at the job's min cap, by weight then size."""
        placements = {}
        order = sorted(offered, key=lambda s: (-s.spec.weight, -s.gpus, s.spec.submit_s))
        for sim_job in order:
            if sim_job.gpus > sim.engine.free_gpus():
                continue
            # at its min cap, with its own cap range kept so rebalancing may raise it
            placement = sim.engine.place_at_most(sim_job.job, sim_job.job.min_cap_w)
            if placement is not None:
                placements[sim_job.id] = placement
        return placements

    def _rebalance(self, sim: "Simulator", now: float) -> None:
        self._last_rebalance_s = now
        try:
            with _quiet_stdout():
                plan = self._allocate.rebalance_caps(sim.engine, apply=True)
        except GpuschedError as exc:
            self._note(f"rebalance_caps failed at t={now:.0f} s: {exc}")
            return
        self.rebalances += 1
        self.solve_time_s += float(getattr(plan, "solve_time_s", 0.0) or 0.0)
        sim.sync_caps()

    def _note(self, message: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "round_interval_s": self.round_interval_s,
                "rebalance_interval_s": self.rebalance_interval_s,
                "max_queue": self.max_queue, "time_limit_s": self.time_limit_s,
                "max_wait_s": self.max_wait_s,
                "margin": self.margin, "fast_path_starts": self.fast_starts,
                "drain_on_events": self.drain_on_events,
                "drain_event_starts": self.drain_event_starts,
                "rebalance_after_round": self.rebalance_after_round,
                "fill_between_rounds": self.fill_between_rounds,
                "fill_starts": self.fill_starts,
                "rounds": self.rounds, "drain_rounds": self.drain_rounds,
                "rebalances": self.rebalances,
                "fallback_rounds": self.fallback_rounds,
                "engine_spans": self.engine_spans,
                "rounds_stopped_by_time_limit": self.time_limited,
                "node_limit": self.node_limit, "exact_max_vars": self.exact_max_vars,
                "rounds_stopped_by_work_limit": self.work_limited,
                "solver_time_s": round(self.solve_time_s, 3),
                "allocator": "gpusched.plan",
                "errors": self.errors}


POLICIES = {"fifo": Fifo, "backfill": Backfill, "backfill-preempt": PreemptingBackfill,
            "backfill-gpu": GpuBackfill, "backfill-conservative": ConservativeBackfill,
            "optimize": Optimize, "oblivious": Oblivious}


def make_policy(name: str) -> Policy:
    """A fresh policy object by name (policies keep state, so one per run)."""
    try:
        return POLICIES[name]()
    except KeyError:
        from ..errors import SpecError
        raise SpecError(f"unknown policy {name!r}; policies are {', '.join(POLICIES)}",
                        field="policy") from None
