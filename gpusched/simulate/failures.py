"""A site that changes, in the simulator: node failures, repair, hot spares, curtailment.

The event loop (:mod:`gpusched.simulate.events`) hands this module three kinds of event:
a node fails, a node comes back, an envelope window opens or closes.  What happens then
is the engine's (``Engine.fail``, ``repair``, ``set_spares``, ``set_limit``, and
``gpusched.plan.plan_envelope``); this module only decides *when*, keeps the hit jobs'
books and measures the outcome.

Failures (physics.md §6a)
    A Poisson process over the whole site at ``rate_per_gpu_h`` interruptions per
    GPU-hour (default 1.97e-5, Llama 3's 419 unexpected interruptions in 54 days on
    16,384 H100s: about one every 30 minutes at 100,352 GPUs), each on one node drawn
    uniformly; the node is down for ``node_back_s``.  The draws depend on the seed and
    the site only, so every policy of a run meets the same failures at the same times.

A hit job
    loses the work since its last checkpoint (checkpoints every ``tau`` of run time from
    its start or last resume; ``tau`` is the Young-Daly interval sqrt(2 x checkpoint cost
    x the job's mean time to interrupt) unless set), keeps its surviving nodes and is
    *degraded*: it makes no progress.  It is repaired in place as soon as the engine can
    (``Engine.repair``: spares first, then the nearest up, empty node, at one cap that
    keeps every row), then restarts, which takes ``restart_s``; a job still degraded
    after ``requeue_after_s`` is released and requeued whole at the head of the queue,
    keeping its checkpoint.

Work lost
    GPU-hours redone (the work since the checkpoint) plus GPU-hours held without
    progress (degraded, or restarting).  A requeued job's wait is not counted as work
    lost: its GPUs are free for other jobs meanwhile.

Spares
    ``spares`` whole nodes per pod held by the engine (``Engine.set_spares``) with their
    busy power at the spare cap held in every row, so a repair into one never breaks a
    row.  The GPUs and watts they hold are sampled like any other state.

Envelope
    Windows ``(start s, end s, row name or "facility", MW)`` that set a row's live limit
    (``Engine.set_limit``) and put it back at the end.  With ``envelope_plan`` (the
    default) the site is brought back under at once by ``plan_envelope`` (cap-downs
    first, evictions only where caps cannot get there; evicted jobs are requeued and
    keep their checkpoint).  Without it the engine only holds new load off the over rows,
    as Slurm's HRES does.  MW-seconds over the envelope are measured against the live
    limits whatever the policy (``oblivious`` never sees them).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..errors import GpuschedError, SpecError
from ..spec import COEF_SCALE

if TYPE_CHECKING:
    from ..spec import Cluster
    from .events import SimJob, Simulator

__all__ = ["FailureModel", "EnvelopeWindow", "SiteEvents", "load_envelope",
           "demand_response", "LLAMA3_RATE_PER_GPU_H", "young_daly_s"]

#: Unexpected interruptions per GPU-hour: 419 in 54 days on 16,384 H100s (Llama 3).
LLAMA3_RATE_PER_GPU_H = 419 / (54 * 24 * 16_384)

FACILITY = "facility"


def young_daly_s(checkpoint_cost_s: float, mtti_s: float) -> float:
    """Young-Daly checkpoint interval sqrt(2 x cost x mean time to interrupt), seconds."""
    return math.sqrt(2.0 * checkpoint_cost_s * mtti_s)


def _positive(value: Any, name: str, *, zero_ok: bool = False) -> float:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value >= 0 if zero_ok else value > 0))
    if not ok:
        raise SpecError(f"{name}={value!r} must be a finite number "
                        f"{'>= 0' if zero_ok else '> 0'}", field=name)
    return float(value)


@dataclass(frozen=True)
class FailureModel:
    """When nodes fail and what a hit costs (module docstring).

    ``checkpoint_s=None`` picks each job's Young-Daly interval from its own mean time
    to interrupt, ``1 / (rate_per_gpu_h * gpus)`` hours.
    """

    rate_per_gpu_h: float = LLAMA3_RATE_PER_GPU_H
    node_back_s: float = 3600.0        # (A) a failed node is serviced and back in 1 h
    checkpoint_cost_s: float = 60.0    # physics.md §6a's delta = 1 min
    checkpoint_s: float | None = None
    restart_s: float = 300.0           # (A) reload the checkpoint and rejoin: 5 min
    requeue_after_s: float = 900.0     # (A) give up on an in-place repair after 15 min
    #: (A) A repair into a free node that is not a hot spare waits this long first: the
    #: node is booted, health-checked and given the job's image, which a hot spare
    #: already is.  Crusoe's automation replaces a node in under 5 minutes (physics.md
    #: §6a); 10 min is our assumption for a site without it.
    cold_node_s: float = 600.0
    seed: int = 0
    #: Explicit failures ``((time s, node index), ...)`` instead of the Poisson draw:
    #: a site's own failure log, or a test's.
    at: tuple[tuple[float, int], ...] | None = None

    def __post_init__(self) -> None:
        _positive(self.rate_per_gpu_h, "failure_rate", zero_ok=True)
        _positive(self.node_back_s, "node_back_s")
        _positive(self.checkpoint_cost_s, "checkpoint_cost_s", zero_ok=True)
        if self.checkpoint_s is not None:
            _positive(self.checkpoint_s, "checkpoint_s")
        if self.at is not None:
            for entry in self.at:
                if (not isinstance(entry, tuple) or len(entry) != 2
                        or isinstance(entry[1], bool) or not isinstance(entry[1], int)):
                    raise SpecError(f"failure {entry!r} must be a (time s, node index) pair",
                                    field="at")
                _positive(entry[0], "at", zero_ok=True)
        _positive(self.restart_s, "restart_s", zero_ok=True)
        _positive(self.requeue_after_s, "requeue_after_s", zero_ok=True)
        _positive(self.cold_node_s, "cold_node_s", zero_ok=True)

    def checkpoint_interval_s(self, gpus: int) -> float:
        if self.checkpoint_s is not None:
            return self.checkpoint_s
        if self.rate_per_gpu_h <= 0 or self.checkpoint_cost_s <= 0:
            return math.inf
        mtti_s = 3600.0 / (self.rate_per_gpu_h * gpus)
        return young_daly_s(self.checkpoint_cost_s, mtti_s)

    def draw(self, cluster: "Cluster", horizon_s: float) -> list[tuple[float, int]]:
        """``(time s, node)`` of every failure before ``horizon_s``, in time order."""
        out = []
        for time_s, node in self.stream(cluster):
            if time_s >= horizon_s:
                break
            out.append((time_s, node))
        return out

    def stream(self, cluster: "Cluster") -> Iterator[tuple[float, int]]:
        """Every failure, in time order, without end (unless ``at`` is given).  The draws
        depend on the seed and the site only, so every policy and horizon of a run meets
        the same failures."""
        if self.at is not None:
            for _t, node in self.at:
                if not 0 <= node < cluster.num_nodes:
                    raise SpecError(f"failure on node {node} but {cluster.name!r} has nodes "
                                    f"0..{cluster.num_nodes - 1}", field="at")
            yield from sorted((float(t), int(v)) for t, v in self.at)
            return
        rate_per_s = self.rate_per_gpu_h * cluster.num_gpus / 3600.0
        if rate_per_s <= 0:
            return
        rng = np.random.default_rng(self.seed)
        time_s = 0.0
        while True:  # in blocks: one draw call per 256 failures
            gaps = rng.exponential(1.0 / rate_per_s, size=256)
            nodes = rng.integers(0, cluster.num_nodes, size=256)
            for gap, node in zip(gaps.tolist(), nodes.tolist()):
                time_s += gap
                yield time_s, node

    def to_dict(self) -> dict[str, Any]:
        return {"rate_per_gpu_h": self.rate_per_gpu_h, "node_back_s": self.node_back_s,
                "checkpoint_cost_s": self.checkpoint_cost_s,
                "checkpoint_s": self.checkpoint_s or "young-daly",
                "restart_s": self.restart_s, "requeue_after_s": self.requeue_after_s,
                "cold_node_s": self.cold_node_s, "seed": self.seed, **({"at": [list(a) for a in self.at]} if self.at else {})}


@dataclass(frozen=True)
class EnvelopeWindow:
    """A live limit on one row (its name) or the facility, from ``start_s`` to ``end_s``."""

    start_s: float
    end_s: float
    row: str
    limit_w: float

    def to_dict(self) -> dict[str, Any]:
        return {"start_h": self.start_s / 3600, "end_h": self.end_s / 3600, "row": self.row,
                "limit_mw": self.limit_w / 1e6}


def demand_response(cluster: "Cluster", start_h: float, *, cut: float = 0.25,
                    hours: float = 3.0) -> list[EnvelopeWindow]:
    """The built-in demand-response event: the facility limit cut by ``cut`` for ``hours``
    (Emerald AI's field trial cut 25% for 3 h, physics.md §6b)."""
    _positive(start_h, "demand_response", zero_ok=True)
    if not (0 < cut < 1):
        raise SpecError(f"cut={cut!r} must be a fraction in (0, 1)", field="cut")
    limit_w = float(cluster.constraints.b[_facility_row(cluster)])
    return [EnvelopeWindow(start_h * 3600, (start_h + hours) * 3600, FACILITY,
                           limit_w * (1 - cut))]


def load_envelope(path: "str | Path", cluster: "Cluster") -> list[EnvelopeWindow]:
    """Read an envelope CSV with columns ``start_h,end_h,row,mw`` (``row`` a constraint
    row's name, or ``facility``).  Every bad line is refused with its line number."""
    windows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read envelope file {str(path)!r}: {exc}",
                        field="envelope") from None
    reader = csv.DictReader(text.splitlines())
    need = {"start_h", "end_h", "row", "mw"}
    if reader.fieldnames is None or not need <= set(reader.fieldnames):
        raise SpecError(f"envelope file {str(path)!r} needs the columns "
                        f"start_h,end_h,row,mw; it has {reader.fieldnames}", field="envelope")
    names = set(cluster.constraints.names)
    for line, rec in enumerate(reader, start=2):
        try:
            start_h, end_h, mw = float(rec["start_h"]), float(rec["end_h"]), float(rec["mw"])
        except (TypeError, ValueError):
            raise SpecError(f"{path}:{line}: start_h, end_h and mw must be numbers, got "
                            f"{rec}", field="envelope") from None
        row = (rec["row"] or "").strip()
        if not (math.isfinite(start_h) and math.isfinite(end_h) and 0 <= start_h < end_h):
            raise SpecError(f"{path}:{line}: need 0 <= start_h < end_h, got {start_h}, "
                            f"{end_h}", field="envelope")
        if not (math.isfinite(mw) and mw >= 0):
            raise SpecError(f"{path}:{line}: mw={mw} must be a finite number >= 0",
                            field="envelope")
        if row != FACILITY and row not in names:
            raise SpecError(f"{path}:{line}: row {row!r} is neither 'facility' nor a row of "
                            f"{cluster.name!r} (e.g. {cluster.constraints.names[0]!r})",
                            field="envelope")
        windows.append(EnvelopeWindow(start_h * 3600, end_h * 3600, row, mw * 1e6))
    return windows


def _facility_row(cluster: "Cluster") -> int:
    kinds = cluster.constraints.kinds
    return next(i for i, k in enumerate(kinds) if k == "facility")


@dataclass(eq=False)
class _Hit:
    """One hit job's books between the failure and its resumption."""

    sim_job: "SimJob"
    hit_s: float
    requeued: bool = False


@dataclass
class _Counters:
    interruptions: int = 0        # node failures
    idle_node_failures: int = 0   # failures that hit no job
    jobs_hit: int = 0
    repairs: int = 0
    repairs_into_spares: int = 0
    requeues: int = 0
    evictions: int = 0            # by an envelope plan
    cap_downs: int = 0            # running jobs' caps an envelope plan lowered
    plans: int = 0
    restores_deferred: int = 0    # serviced nodes kept off for want of watts (per try)
    redone_gpu_s: float = 0.0
    held_idle_gpu_s: float = 0.0
    resume_s: list[float] = field(default_factory=list)


class SiteEvents:
    """Failures, spares and an envelope for one :class:`~gpusched.simulate.events.Simulator`."""

    def __init__(self, cluster: "Cluster", *, failures: FailureModel | None = None,
                 spares: int = 0, envelope: list[EnvelopeWindow] | None = None,
                 envelope_plan: bool = True) -> None:
        if isinstance(spares, bool) or not isinstance(spares, int) or spares < 0:
            raise SpecError(f"spares={spares!r} must be a whole number of nodes per pod, "
                            ">= 0", field="spares")
        self.cluster = cluster
        self.failures = failures
        self.spares = spares
        self.envelope = list(envelope or [])
        self.envelope_plan = envelope_plan
        c = cluster.constraints
        self._names = {name: i for i, name in enumerate(c.names)}
        self._facility = _facility_row(cluster)
        self._A_units = c.A_units
        self._live_units = c.b_units.astype(np.int64).copy()
        self._active: list[EnvelopeWindow] = []
        self._hits: dict[str, _Hit] = {}
        self._stream: Iterator[tuple[float, int]] = iter(())
        self._pending_restore: dict[int, None] = {}   # serviced nodes waiting for watts
        self.counters = _Counters()
        # integrals over time, accounted at each sample for the interval before it
        self._last_t: float | None = None
        self._last_over_w = 0.0
        self._last_rate = 0.0
        self._last_spare = (0, 0)
        self._last_active = False      # an envelope window was open since the last sample
        self.over_envelope_ws = 0.0
        self.event_work_gpu_s = 0.0
        self.event_s = 0.0
        self.spare_gpu_s = 0.0
        self.spare_w_s = 0.0
        self.max_over_envelope_w = 0.0

    # ---- set-up ----------------------------------------------------------------------

    def start(self, sim: "Simulator") -> list[tuple[float, int, Any]]:
        """Prepare the engine (spares) and return the events to push: (time, kind, payload)."""
        from .events import ENVELOPE, NODE_FAIL

        if self.spares:
            pods = np.bincount(self.cluster.rack_pod,
                               weights=self.cluster.rack_nodes).astype(int)
            if self.spares >= int(pods.min()):
                raise SpecError(f"spares={self.spares} per pod leaves nothing to place on: "
                                f"the smallest pod has {int(pods.min())} nodes",
                                field="spares")
            sim.engine.set_spares(self.spares, per="pod")
        events: list[tuple[float, int, Any]] = []
        if self.failures is not None:
            # one failure pending at a time: the next is drawn when this one happens
            self._stream = self.failures.stream(self.cluster)
            first = next(self._stream, None)
            if first is not None and first[0] < sim.horizon_s:
                events.append((first[0], NODE_FAIL, first[1]))
        for w in self.envelope:
            events.append((w.start_s, ENVELOPE, (w, True)))
            events.append((w.end_s, ENVELOPE, (w, False)))
        return events

    # ---- events ----------------------------------------------------------------------

    def node_failed(self, sim: "Simulator", node: int) -> None:
        from .events import NODE_BACK, NODE_FAIL, SITE_CHECK

        nxt = next(self._stream, None)
        if nxt is not None and nxt[0] < sim.horizon_s:
            sim.events.push(nxt[0], NODE_FAIL, nxt[1])
        engine = sim.engine
        if engine.node_state(node) == "down":
            return  # already down: a second draw on it changes nothing
        self.counters.interruptions += 1
        hit = engine.fail([node])
        if not hit:
            self.counters.idle_node_failures += 1
        for job_id in hit:
            sim_job = sim.running[job_id]
            if job_id in self._hits:        # hit again while degraded or restarting
                continue
            self.counters.jobs_hit += 1
            self._lose_since_checkpoint(sim, sim_job)
            sim.pause(sim_job)
            self._hits[job_id] = _Hit(sim_job, sim.now)
            # settle runs at every instant; make sure there is one when its wait runs out
            sim.events.push(sim.now + self.failures.requeue_after_s, SITE_CHECK)  # type: ignore[union-attr]
        sim.events.push(sim.now + self.failures.node_back_s, NODE_BACK, node)  # type: ignore[union-attr]
        sim.state_version += 1

    def node_back(self, sim: "Simulator", node: int) -> None:
        """The node is serviced.  It is powered on only if its idle draw breaks no row;
        otherwise it stays off until there is room (checked at every instant)."""
        self._pending_restore[node] = None
        self._restore_pending(sim)

    def _restore_pending(self, sim: "Simulator") -> None:
        engine = sim.engine
        for node in list(self._pending_restore):
            if not sim.policy.power_aware:
                engine.restore_nodes([node])
            else:
                over_before = {name: load for name, load, _ in engine.violations()}
                engine.restore_nodes([node])
                worse = any(load > over_before.get(name, -1.0)
                            for name, load, _ in engine.violations())
                if worse:   # no room for its idle watts: power it off again, try later
                    engine.fail([node])
                    self.counters.restores_deferred += 1
                    continue
            del self._pending_restore[node]
            sim.state_version += 1

    def envelope_changed(self, sim: "Simulator", window: EnvelopeWindow, opens: bool) -> None:
        row = self._facility if window.row == FACILITY else self._names[window.row]
        b = int(self.cluster.constraints.b_units[row])
        if opens:
            self._active.append(window)
        else:
            self._active.remove(window)
        # the tightest open window on the row wins; none open: the cluster's own limit
        limits = [w.limit_w for w in self._active
                  if (self._facility if w.row == FACILITY else self._names[w.row]) == row]
        units = min(int(min(limits) * COEF_SCALE), b) if limits else b
        self._live_units[row] = units
        if sim.policy.power_aware:   # oblivious never hears of limits
            sim.engine.set_limit(row, units / COEF_SCALE)
        sim.state_version += 1

    def resumed(self, sim: "Simulator", sim_job: "SimJob") -> None:
        """A repaired job's restart is over: it runs again."""
        hit = self._hits.get(sim_job.id)
        if hit is None or sim_job.id not in sim.running:
            return
        if sim.engine.lost_nodes(sim_job.id):   # hit again while restarting: repair again
            sim_job.restart_due_s = None
            return
        del self._hits[sim_job.id]
        self.counters.held_idle_gpu_s += (sim.now - hit.hit_s) * sim_job.gpus
        self.counters.resume_s.append(sim.now - hit.hit_s)
        sim.unpause(sim_job)

    # ---- after every instant, before the policy -----------------------------------

    def settle(self, sim: "Simulator") -> None:
        """Repair what can be repaired, requeue what waited too long, plan back under."""
        from .events import RESUME

        if self._pending_restore:
            self._restore_pending(sim)
        if self._hits:
            engine = sim.engine
            for job_id, hit in list(self._hits.items()):
                sim_job = hit.sim_job
                if hit.requeued or sim_job.restart_due_s is not None:
                    continue
                failures = self.failures
                assert failures is not None, "only failures degrade jobs"
                restart_s = failures.restart_s
                lost = len(engine.lost_nodes(job_id))
                if lost:
                    spare_before = len(engine.spares().nodes) if self.spares else 0
                    placement = engine.repair(job_id)
                    if placement is None:
                        if sim.now - hit.hit_s >= failures.requeue_after_s:
                            self._requeue(sim, sim_job, hit)
                        continue
                    self.counters.repairs += 1
                    from_spares = spare_before - (len(engine.spares().nodes)
                                                  if self.spares else 0)
                    if from_spares >= lost:
                        self.counters.repairs_into_spares += 1
                    else:   # at least one cold node: it must be readied first
                        restart_s += failures.cold_node_s
                    sim.set_cap(sim_job, placement.cap_w)
                    sim_job.nodes = tuple(placement.nodes)
                sim_job.restart_due_s = sim.now + restart_s
                sim.events.push(sim_job.restart_due_s, RESUME, sim_job, sim_job.version)
        if self._active and self.envelope_plan and sim.policy.power_aware:
            engine = sim.engine
            if engine.violations():
                from ..plan.envelope import plan_envelope

                plan = plan_envelope(engine)
                done = plan.apply(engine)
                self.counters.plans += 1
                for placement in done["evicted"]:
                    sim_job = sim.running[placement.job_id]
                    self.counters.evictions += 1
                    self._lose_since_checkpoint(sim, sim_job)
                    was_hit = self._hits.pop(sim_job.id, None)
                    if was_hit is not None:
                        self.counters.held_idle_gpu_s += ((sim.now - was_hit.hit_s)
                                                          * sim_job.gpus)
                    sim.requeue(sim_job, released=True)
                for job_id, placement in done["caps"].items():
                    sim_job = sim.running[job_id]
                    if placement.cap_w < sim_job.cap_w:
                        self.counters.cap_downs += 1
                    sim.set_cap(sim_job, placement.cap_w, by_plan=True)
                sim.sync_caps()   # any other cap the plan's apply moved (none expected)

    def _requeue(self, sim: "Simulator", sim_job: "SimJob", hit: _Hit) -> None:
        self.counters.requeues += 1
        self.counters.held_idle_gpu_s += (sim.now - hit.hit_s) * sim_job.gpus
        hit.requeued = True
        sim.requeue(sim_job)

    def forget(self, sim_job: "SimJob") -> None:
        """The job left the engine another way (a preemption plan evicted it)."""
        self._hits.pop(sim_job.id, None)

    def started(self, sim: "Simulator", sim_job: "SimJob") -> None:
        """A job started; if it was a requeued hit job, its time to resume ends now."""
        hit = self._hits.get(sim_job.id)
        if hit is not None and hit.requeued:
            del self._hits[sim_job.id]
            restart = self.failures.restart_s if self.failures else 0.0
            self.counters.resume_s.append(sim.now - hit.hit_s + restart)
            # it restarts from its checkpoint: the restart's wall time comes first
            sim_job.work_left_s += restart * sim_job.speed
            self.counters.held_idle_gpu_s += restart * sim_job.gpus

    def _lose_since_checkpoint(self, sim: "Simulator", sim_job: "SimJob") -> None:
        """Put back the work since the job's last checkpoint (it will be done again)."""
        if self.failures is None:
            interval = math.inf
        else:
            interval = self.failures.checkpoint_interval_s(sim_job.gpus)
        ran_s = sim.now - sim_job.resumed_s
        since_s = ran_s % interval if math.isfinite(interval) else ran_s
        sim.catch_up(sim_job)
        redo = min(since_s * sim_job.speed, sim_job.spec.duration_s - sim_job.work_left_s)
        sim_job.work_left_s += redo
        self.counters.redone_gpu_s += redo * sim_job.gpus

    # ---- measurement ---------------------------------------------------------------

    def sample(self, t: float, sim: "Simulator") -> None:
        if self._last_t is not None and t > self._last_t:
            dt = t - self._last_t
            self.over_envelope_ws += self._last_over_w * dt
            sg, sw = self._last_spare
            self.spare_gpu_s += sg * dt
            self.spare_w_s += sw * dt
            if self._last_active:
                self.event_s += dt
                self.event_work_gpu_s += self._last_rate * dt
        self._last_t = t
        self._last_active = bool(self._active)
        self._last_rate = max(0.0, sim.rate_gpus)
        if self.spares:
            report = sim.engine.spares()
            self._last_spare = (report.gpus, report.held_w)
        over_w = 0.0
        if self._active:
            load = self._A_units @ sim.engine.rack_power_w().astype(np.int64, copy=False)
            over = load - self._live_units
            over_w = float(over[over > 0].sum()) / COEF_SCALE
            self.max_over_envelope_w = max(self.max_over_envelope_w, over_w)
        self._last_over_w = over_w

    def metrics(self, end_s: float) -> dict[str, Any]:
        c = self.counters
        resume = np.array(c.resume_s)
        span = max(end_s, 1e-9)

        def pct(q: float) -> float | None:
            return round(float(np.percentile(resume, q)) / 60, 2) if len(resume) else None

        return {
            "failures": self.failures.to_dict() if self.failures else None,
            "spares_per_pod": self.spares,
            "envelope": [w.to_dict() for w in self.envelope],
            "envelope_plan": self.envelope_plan,
            "interruptions": c.interruptions,
            "idle_node_failures": c.idle_node_failures,
            "jobs_hit": c.jobs_hit,
            "repairs": c.repairs,
            "repairs_into_spares": c.repairs_into_spares,
            "requeues": c.requeues,
            "still_waiting_at_end": len(self._hits),
            "restores_deferred": c.restores_deferred,
            "nodes_off_at_end": len(self._pending_restore),
            "resume_min_p50": pct(50),
            "resume_min_p99": pct(99),
            "work_lost_gpu_h": round((c.redone_gpu_s + c.held_idle_gpu_s) / 3600, 1),
            "work_redone_gpu_h": round(c.redone_gpu_s / 3600, 1),
            "held_idle_gpu_h": round(c.held_idle_gpu_s / 3600, 1),
            "spare_gpus_mean": round(self.spare_gpu_s / span, 1),
            "spare_held_mw_mean": round(self.spare_w_s / span / 1e6, 3),
            "envelope_plans": c.plans,
            "envelope_evictions": c.evictions,
            "envelope_cap_downs": c.cap_downs,
            "over_envelope_mw_s": round(self.over_envelope_ws / 1e6, 1),
            "max_over_envelope_mw": round(self.max_over_envelope_w / 1e6, 3),
            "event_h": round(self.event_s / 3600, 3),
            "event_delivered_gpu_h": round(self.event_work_gpu_s / 3600, 1),
        }


def check_site_options(failures: Any, spares: Any, envelope: Any) -> None:
    """Types of ``simulate``'s site options, refused before any work."""
    if failures is not None and not isinstance(failures, FailureModel):
        raise GpuschedError(f"failures={failures!r} must be a FailureModel or None",
                            field="failures")
    if envelope is not None and not all(isinstance(w, EnvelopeWindow) for w in envelope):
        raise GpuschedError("envelope must be a list of EnvelopeWindow", field="envelope")
