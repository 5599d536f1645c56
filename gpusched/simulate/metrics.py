"""What a run measures: power at every level, violations, utilisation, JCT, energy.

The :class:`Recorder` samples the state after every instant the simulator handles; the
state then holds until the next instant, so integrals over time (energy, delivered
work, row-seconds of violation) are exact sums of value x interval.

Every sample checks every row of the *real* cluster's ``A·P <= b`` against the engine's
rack powers with the engine's own integer test (``Constraints.b_units``), so a policy
that breaks a row is caught no matter how it got there.  Only ``oblivious`` (whose
engine has the limits lifted) should ever show one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..bound import FluidBound
from ..spec import COEF_SCALE
from .synthetic import PRIORITY_CLASSES
from .waits import WaitTracker

if TYPE_CHECKING:
    from ..spec import Cluster
    from .events import SimJob, Simulator

__all__ = ["Recorder", "summarise_jobs", "frontier_start_delay", "percentile"]

_RACK_KINDS = ("rack-feed", "cdu", "rack-air", "air-cooling")


def percentile(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


class Recorder:
    """Integrates the state of one run over time; see the module docstring."""

    def __init__(self, cluster: "Cluster", bound: "FluidBound | None" = None) -> None:
        c = cluster.constraints
        self.cluster = cluster
        self.bound = FluidBound(cluster) if bound is None else bound
        self._present_seen = -1
        self._bound_now = 0.0
        self._saturated_now = False
        self.bound_gpu_s = 0.0         # integral of the fluid bound (GPU-equivalents)
        self.saturated_s = 0.0         # time the jobs present asked for every GPU
        self.saturated_bound_gpu_s = 0.0
        self.saturated_work_gpu_s = 0.0
        self._A_units = c.A_units
        self._b_units = c.b_units
        self._kind_names = list(dict.fromkeys(c.kinds))
        self._kind_code = np.array([self._kind_names.index(k) for k in c.kinds], dtype=np.int64)
        self.hall_rows = c.rows_of_kind("hall")
        self.hall_names = [c.names[i].removesuffix(" switchboard") for i in self.hall_rows]
        self.hall_limits_w = c.b[self.hall_rows].astype(float)
        fac = [i for i, k in enumerate(c.kinds) if k == "facility"]
        self.facility_limit_w = float(c.b[fac[0]]) if fac else math.inf
        self._G = cluster.gpus_per_node
        self.peak_row_units = np.zeros(c.num_rows, dtype=np.int64)
        self.ever_violated = np.zeros(c.num_rows, dtype=bool)
        self.violation_row_s_by_kind = np.zeros(len(self._kind_names))
        self.violation_row_s = 0.0
        self.excess_ws = 0.0           # integral of the sum of excess watts over rows
        self.max_excess_w = 0.0
        self.max_excess_row: str | None = None
        self.max_excess_ratio = 0.0    # load / limit of the worst violation
        self.energy_ws = 0.0
        self.work_gpu_s = 0.0          # integral of sum(gpus * s(cap))
        self.busy_gpu_s = 0.0
        self.frag_gpu_s = 0.0
        self.peak_facility_w = -1.0
        self.rack_power_at_peak_w = cluster.idle_rack_power_w.astype(np.int64)
        #: free GPUs of each node at that instant (the floor map tells busy from idle)
        self.node_free_at_peak = np.full(cluster.num_nodes, cluster.gpus_per_node,
                                         dtype=np.int64)
        self.peak_time_s = 0.0
        self.max_frag_gpus = 0
        self._last_t: float | None = None
        self._seen_version = -1
        self._last: tuple[float, float, float, float, int, float, np.ndarray | None] | None = None
        self.series: dict[str, list[Any]] = {"t_s": [], "facility_w": [], "busy_gpus": [],
                                             "work_gpus": [], "frag_gpus": [],
                                             "violated_rows": [], "hall_w": [],
                                             "bound_gpus": [], "queued_gpus": [],
                                             "queued_jobs": []}
        #: Why each job waits (gpusched.simulate.waits), read at every sample.
        self.waits = WaitTracker(cluster)

    def job_queued(self, sim_job: "SimJob", t: float) -> None:
        """The event loop: ``sim_job`` joined the queue at ``t``."""
        self.waits.queued(sim_job, t)

    def job_started(self, sim_job: "SimJob", t: float) -> None:
        """The event loop: ``sim_job`` left the queue and started at ``t``."""
        self.waits.left(sim_job, t)

    def sample(self, t: float, sim: "Simulator") -> None:
        """Account for the state since the last sample, then take the state at ``t``."""
        if self._last is not None and self._last_t is not None:
            dt = t - self._last_t
            if dt > 0:
                facility_w, busy, work, frag, n_viol, excess_w, viol_kinds = self._last
                self.bound_gpu_s += self._bound_now * dt
                if self._saturated_now:
                    self.saturated_s += dt
                    self.saturated_bound_gpu_s += self._bound_now * dt
                    self.saturated_work_gpu_s += work * dt
                self.energy_ws += facility_w * dt
                self.busy_gpu_s += busy * dt
                self.work_gpu_s += work * dt
                self.frag_gpu_s += frag * dt
                if n_viol:
                    self.violation_row_s += n_viol * dt
                    self.excess_ws += excess_w * dt
                    self.violation_row_s_by_kind += viol_kinds * dt  # type: ignore[operator]
        self._last_t = t
        self.waits.classify(t, sim)
        present_changed = sim.present_version != self._present_seen
        if present_changed:
            self._present_seen = sim.present_version
            self._bound_now = self.bound(sim.present_gpus)
            self._saturated_now = sum(sim.present_gpus.values()) >= self.cluster.num_gpus
        if (sim.state_version == self._seen_version and not present_changed
                and t != sim.horizon_s):
            return  # nothing placed, released or re-capped: the state is the same
        self._seen_version = sim.state_version
        engine = sim.engine
        rack_w = engine.rack_power_w().astype(np.int64, copy=False)
        load = self._A_units @ rack_w
        np.maximum(self.peak_row_units, load, out=self.peak_row_units)
        over = load - self._b_units
        n_viol, excess_w, viol_kinds = 0, 0.0, None
        if over.max() > 0:
            bad = np.flatnonzero(over > 0)
            n_viol = int(bad.size)
            excess_w = float(over[bad].sum()) / COEF_SCALE
            viol_kinds = np.bincount(self._kind_code[bad], minlength=len(self._kind_names))
            self.ever_violated[bad] = True
            worst = bad[int(np.argmax(over[bad]))]
            if over[worst] / COEF_SCALE > self.max_excess_w:
                c = self.cluster.constraints
                self.max_excess_w = float(over[worst]) / COEF_SCALE
                self.max_excess_row = c.names[worst]
                self.max_excess_ratio = float(load[worst]) / float(self._b_units[worst])
        facility_w = float(rack_w.sum())
        if facility_w > self.peak_facility_w:
            self.peak_facility_w = facility_w
            self.rack_power_at_peak_w = rack_w.copy()
            self.peak_time_s = t
            peak_changed = True
        else:
            peak_changed = False
        node_free = engine.node_free_gpus()
        if peak_changed:
            self.node_free_at_peak = np.array(node_free, dtype=np.int64)
        free = engine.free_gpus()
        busy = self.cluster.num_gpus - free
        # free GPUs on nodes that are partly used: no 8-GPU job can go there
        frag = free - self._G * int(np.count_nonzero(node_free == self._G))
        self.max_frag_gpus = max(self.max_frag_gpus, frag)
        work = max(0.0, sim.rate_gpus)
        hall_w = load[self.hall_rows] / COEF_SCALE
        s = self.series
        if s["t_s"] and s["t_s"][-1] == t:  # the same instant twice (the final sample)
            for key in s:
                s[key].pop()
        s["t_s"].append(t)
        s["facility_w"].append(facility_w)
        s["busy_gpus"].append(busy)
        s["work_gpus"].append(work)
        s["frag_gpus"].append(frag)
        s["violated_rows"].append(n_viol)
        s["hall_w"].append(hall_w)
        s["bound_gpus"].append(self._bound_now)
        # jobs present = queued + running, so what waits is their GPUs less the busy ones
        s["queued_gpus"].append(sum(sim.present_gpus.values()) - busy)
        s["queued_jobs"].append(len(sim.queue))
        self._last = (facility_w, busy, work, frag, n_viol, excess_w, viol_kinds)

    # ---- summaries ------------------------------------------------------------------

    def peaks(self) -> dict[str, Any]:
        """Peak load against limit: facility, each hall, and the worst row of each kind."""
        c = self.cluster.constraints
        peak_w = self.peak_row_units / COEF_SCALE
        ratio = peak_w / np.maximum(c.b, 1e-9)
        out: dict[str, Any] = {"by_kind": {}}
        for kind in self._kind_names:
            idx = np.flatnonzero(self._kind_code == self._kind_names.index(kind))
            worst = int(idx[np.argmax(ratio[idx])])
            out["by_kind"][kind] = {"worst_row": c.names[worst], "peak_w": float(peak_w[worst]),
                                    "limit_w": float(c.b[worst]),
                                    "peak_over_limit": round(float(ratio[worst]), 4)}
        out["facility"] = {"peak_w": self.peak_facility_w, "limit_w": self.facility_limit_w,
                           "peak_over_limit": round(self.peak_facility_w
                                                    / self.facility_limit_w, 4),
                           "at_s": self.peak_time_s}
        out["halls"] = {name: {"peak_w": float(peak_w[i]), "limit_w": float(c.b[i]),
                               "peak_over_limit": round(float(ratio[i]), 4)}
                        for name, i in zip(self.hall_names, self.hall_rows)}
        racks = [out["by_kind"][k] for k in _RACK_KINDS if k in out["by_kind"]]
        out["worst_rack"] = max(racks, key=lambda r: r["peak_over_limit"]) if racks else None
        out["worst_row"] = out["by_kind"].get("row")
        return out

    def violations(self) -> dict[str, Any]:
        c = self.cluster.constraints
        by_kind = {k: round(float(v), 1) for k, v in zip(self._kind_names,
                                                          self.violation_row_s_by_kind) if v}
        return {"row_seconds": round(self.violation_row_s, 1),
                "rows_ever_violated": int(self.ever_violated.sum()),
                "max_excess_w": round(self.max_excess_w, 1),
                "max_excess_row": self.max_excess_row,
                "max_load_over_limit": round(self.max_excess_ratio, 4),
                "excess_kwh": round(self.excess_ws / 3.6e6, 3),
                "row_seconds_by_kind": by_kind,
                "examples": [c.names[i] for i in np.flatnonzero(self.ever_violated)[:5]]}

    def totals(self, end_s: float) -> dict[str, Any]:
        gpus = self.cluster.num_gpus
        span = max(end_s, 1e-9)
        return {"energy_mwh": round(self.energy_ws / 3.6e9, 3),
                "mean_power_mw": round(self.energy_ws / span / 1e6, 3),
                "delivered_gpu_hours": round(self.work_gpu_s / 3600, 1),
                "busy_gpu_hours": round(self.busy_gpu_s / 3600, 1),
                "utilisation": round(self.busy_gpu_s / (gpus * span), 4),
                "mean_speed": round(self.work_gpu_s / self.busy_gpu_s, 4)
                if self.busy_gpu_s else None,
                "fragmented_gpus_mean": round(self.frag_gpu_s / span, 1),
                "fragmented_gpus_max": self.max_frag_gpus,
                **self.bound_totals()}

    def bound_totals(self) -> dict[str, Any]:
        """Delivered work against the fluid bound (gpusched.bound), overall and saturated.

        "Saturated" is the time when the jobs present asked for at least every GPU of
        the site: there, only the policy (not the lack of work) keeps work below it.
        """
        def frac(a: float, b: float) -> float | None:
            return round(a / b, 4) if b > 0 else None

        return {"bound_gpu_hours": round(self.bound_gpu_s / 3600, 1),
                "fraction_of_bound": frac(self.work_gpu_s, self.bound_gpu_s),
                "saturated_h": round(self.saturated_s / 3600, 3),
                "saturated_bound_gpu_hours": round(self.saturated_bound_gpu_s / 3600, 1),
                "fraction_of_bound_saturated": frac(self.saturated_work_gpu_s,
                                                    self.saturated_bound_gpu_s)}


def _stats_h(values: np.ndarray, *, with_max: bool = False) -> dict[str, float | None]:
    keys = ("mean_h", "p50_h", "p99_h") + (("max_h",) if with_max else ())
    if not len(values):
        return dict.fromkeys(keys)
    out: dict[str, float | None] = {
        "mean_h": round(float(values.mean()) / 3600, 3),
        "p50_h": round(float(np.percentile(values, 50)) / 3600, 3),
        "p99_h": round(float(np.percentile(values, 99)) / 3600, 3)}
    if with_max:
        out["max_h"] = round(float(values.max()) / 3600, 3)
    return out


def summarise_jobs(all_jobs: "list[SimJob]", end_s: float | None = None) -> dict[str, Any]:
    """Counts, JCT (finish - submit) of the jobs done, and waits with censoring.

    ``wait`` is over every job that arrived: a job still queued at ``end_s`` counts as
    waiting until then (right-censored: its true wait is longer, so the statistics are
    lower bounds, and ``censored`` says how many).  ``wait_started`` is over the jobs
    that started only, the figure reported before issue 17, which leaves the longest
    waits out.  Without ``end_s``, ``wait`` is that one too.
    """
    done = [j for j in all_jobs if not math.isnan(j.finish_s)]
    started = [j for j in all_jobs if not math.isnan(j.start_s)]
    jct = np.array([j.finish_s - j.spec.submit_s for j in done])
    wait_started = np.array([j.start_s - j.spec.submit_s for j in started])
    queued = len(all_jobs) - len(started)
    if end_s is None:
        wait_all, censored = wait_started, None
    else:
        wait_all = np.array([(end_s if math.isnan(j.start_s) else j.start_s) - j.spec.submit_s
                             for j in all_jobs])
        censored = queued
    caps = np.array([j.first_cap_w for j in started], dtype=float)
    gpus = np.array([j.gpus for j in started], dtype=float)
    return {"arrived": len(all_jobs), "started": len(started), "done": len(done),
            "running_at_end": len(started) - len(done),
            "queued_at_end": queued,
            "jct": _stats_h(jct),
            "wait": {**_stats_h(wait_all), "jobs": int(len(wait_all)), "censored": censored},
            "wait_started": _stats_h(wait_started),
            "start_cap_w_gpu_mean": round(float((caps * gpus).sum() / gpus.sum()), 1)
            if len(gpus) else None,
            "by_class": _by_class(all_jobs, end_s),
            "frontier_start_delay": frontier_start_delay(all_jobs, end_s)}


def _waits_s(jobs: "list[SimJob]", end_s: float | None) -> np.ndarray:
    """start - submit of each job; a job not started waits until ``end_s`` (censored),
    or is left out without it."""
    if end_s is None:
        return np.array([j.start_s - j.spec.submit_s for j in jobs
                         if not math.isnan(j.start_s)])
    return np.array([(end_s if math.isnan(j.start_s) else j.start_s) - j.spec.submit_s
                     for j in jobs])


def _by_class(all_jobs: "list[SimJob]", end_s: float | None = None) -> dict[str, Any]:
    """Per job class (the trace job's ``kind``: frontier, large, small, trace): counts,
    wait and JCT, and what preemption cost it.

    ``wait`` is censored as in :func:`summarise_jobs` (a job still queued at ``end_s``
    waits until then; ``censored`` counts them), ``wait_started`` over the started jobs
    only.  ``preemptions``: evictions by a preemption plan; ``lost_gpu_h``: the
    GPU-hours of work those evictions threw away (the work since each victim's last
    checkpoint); ``cap_downs``: times a preemption or envelope plan lowered the cap of
    a running job of the class.  The classes' keys are sorted by priority, highest
    first, then by name.
    """
    out: dict[str, Any] = {}
    kinds = {j.spec.kind: j.spec.priority for j in all_jobs}
    for kind in sorted(kinds, key=lambda k: (-kinds[k], k)):
        jobs = [j for j in all_jobs if j.spec.kind == kind]
        started = [j for j in jobs if not math.isnan(j.start_s)]
        done = [j for j in jobs if not math.isnan(j.finish_s)]
        out[kind] = {
            "name": PRIORITY_CLASSES[kind][0] if kind in PRIORITY_CLASSES else kind,
            "priority": jobs[0].spec.priority,
            "preemptible": any(j.spec.preemptible for j in jobs),
            "arrived": len(jobs), "started": len(started), "done": len(done),
            "gpus": sum(j.gpus for j in jobs),
            "wait": {**_stats_h(_waits_s(jobs, end_s), with_max=True),
                     "censored": None if end_s is None else len(jobs) - len(started)},
            "wait_started": _stats_h(_waits_s(started, None), with_max=True),
            "jct": _stats_h(np.array([j.finish_s - j.spec.submit_s for j in done])),
            "preemptions": sum(j.preemptions for j in jobs),
            "lost_gpu_h": round(sum(j.lost_gpu_s for j in jobs) / 3600.0, 1),
            "cap_downs": sum(j.cap_downs for j in jobs)}
    return out


def frontier_start_delay(all_jobs: "list[SimJob]", end_s: float | None = None
                         ) -> dict[str, Any]:
    """How long the frontier pretraining gangs (``kind`` frontier) waited to start:
    ``gangs``, ``started``, ``never_started`` and the wait's mean, p50 and max in hours
    over every gang, a gang never started counting until ``end_s`` (a lower bound, as
    the censored waits of :func:`summarise_jobs`); all None when the run has none."""
    gangs = [j for j in all_jobs if j.spec.kind == "frontier"]
    started = sum(1 for j in gangs if not math.isnan(j.start_s))
    waits = _waits_s(gangs, end_s)
    stats = _stats_h(waits, with_max=True)
    return {"gangs": len(gangs), "started": started, "never_started": len(gangs) - started,
            "mean_h": stats["mean_h"], "p50_h": stats["p50_h"], "max_h": stats["max_h"]}
