"""plan_envelope: bring every row back under its live limit at least cost.

When a limit drops below its row's load (``Engine.set_limit``: curtailment, a feed
target, a derated breaker), the running work has to shrink.  The plan, least cost first:

1. **Cap-downs.**  If every row holds with each flexible job at its ``min_cap_w``,
   no job is evicted: the cap LP (:func:`gpusched.plan.rebalance.solve_caps`, HiGHS)
   chooses caps in ``[min_cap_w, cap now]`` that keep the most ``weight * gpus * s(cap)``
   under the live limits.  Caps only go down, so no row that holds now breaks.
2. **Evictions, only where caps cannot get there.**  Rows still over with every job at
   its ``min_cap_w`` need whole jobs gone.  Jobs on those rows are taken in order of
   :func:`eviction_key` (preemptible jobs before the others, then the lowest priority,
   then the lowest weight), and within the cheapest class the job that removes the most of the remaining
   excess, fewest GPUs on ties; then jobs whose eviction turns out not to be needed are
   put back (last evicted first), so no evicted job could have stayed.  The cap LP then
   runs over the jobs that stay.

A job's load is counted as the engine budgets it: ``gpus_per_node * (cap - idle)`` a node,
plus the busy step of a node it holds whole.  A small job's busy step is not counted as
freed by its eviction (another job may keep the node busy), which only errs safe.

The plan carries the state it was made for; :meth:`EnvelopePlan.apply` refuses with
StalePlanError if anything changed since, and otherwise releases the evicted jobs and
lowers the caps atomically, after which every row holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import StalePlanError
from ..job import Job, Placement
from .rebalance import gpus_by_rack, solve_caps

__all__ = ["EnvelopePlan", "plan_envelope", "eviction_key"]


def eviction_key(job: Job) -> tuple[float, ...]:
    """Order in which jobs are considered for eviction, cheapest first.

    Preemptible jobs go before the others, then the lowest ``priority``, then the lowest
    ``weight``.  A job that is not preemptible may still go last: a live limit is a fact
    (a tripped feed, a grid order), so the site must get under it, but only once every
    preemptible job on the rows over is gone or cannot help.
    """
    return (0.0 if job.preemptible else 1.0, float(job.priority), float(job.weight))


@dataclass(frozen=True)
class EnvelopePlan:
    """A plan back under every live limit (:func:`plan_envelope`).

    Attributes
    ----------
    caps : dict of str to int
        New, lower caps of running jobs (only those that change).
    evict : tuple of str
        Whole jobs to release, in the order chosen.
    over : list of (str, float, float)
        The rows over their live limits when planned: (name, load W, limit W).
    gpus_evicted : int
    throughput_lost : float
        ``sum weight * gpus * (s(cap now) - s(new cap))`` over the cap-downs, plus
        ``weight * gpus * s(cap now)`` of each evicted job.
    status : str
        ``"holds"`` (nothing over: an empty plan), ``"caps"`` (cap-downs only),
        ``"evictions"`` (cap-downs and evictions), ``"unreachable"`` (a row stays over
        even with every job on it gone: its limit is below its idle, down and spare
        power; the plan evicts what is on it, and ``violations`` still lists it) or
        ``"lp failed: ..."``.
    solve_time_s : float
    """

    caps: dict[str, int]
    evict: tuple[str, ...]
    over: list[tuple[str, float, float]]
    gpus_evicted: int
    throughput_lost: float
    status: str
    solve_time_s: float
    _state: Any = field(default=None, repr=False, compare=False)

    def apply(self, engine: Any) -> dict[str, Any]:
        """Release the evicted jobs and lower the caps, atomically.

        Raises StalePlanError, changing nothing, if the engine's jobs, caps, node
        states or live limits changed since the plan was made.  Returns
        ``{"evicted": [Placement, ...], "caps": {job id: Placement}}``.
        """
        with engine._lock:
            if _state_of(engine) != self._state:
                raise StalePlanError("the engine's state changed since this envelope plan "
                                     "was made (jobs, caps, node states or limits); plan "
                                     "again with engine.plan_envelope()", field="plan")
            evicted: list[tuple[Job, Placement, tuple[int, ...]]] = []
            capped: list[tuple[str, int]] = []
            try:
                for job_id in self.evict:
                    job, lost = engine.job(job_id), engine.lost_nodes(job_id)
                    evicted.append((job, engine.release(job_id), lost))
                for job_id, cap in self.caps.items():
                    before = engine.placement(job_id).cap_w
                    engine.set_cap(job_id, cap)
                    capped.append((job_id, before))
            except BaseException:  # not reached for a fresh plan; undo, then re-raise
                for job_id, before in reversed(capped):
                    old = engine.placement(job_id)
                    engine._replace(engine.job(job_id), old, old._replace(cap_w=before))
                for job, placement, lost in reversed(evicted):
                    engine._insert(job, placement)
                    if lost:
                        engine._lost[job.id] = (placement, lost)
                raise
            return {"evicted": [p for _j, p, _l in evicted],
                    "caps": {job_id: engine.placement(job_id) for job_id, _b in capped}}


def _state_of(engine: Any) -> tuple[Any, ...]:
    return (tuple(engine.placements()), engine.row_limit_units().tobytes(),
            engine.node_state_codes().tobytes())


def plan_envelope(engine: Any) -> EnvelopePlan:
    """The least-cost plan that brings every row of ``engine`` under its live limit.

    See the module docstring for the order (cap-downs by LP, then whole-job evictions
    only where caps cannot get there).  Changes nothing; ``plan.apply(engine)`` (or
    ``engine.apply_envelope(plan)``) carries it out.
    """
    start = time.perf_counter()
    cluster = engine.cluster
    power = cluster.power
    c = cluster.constraints
    with engine._lock:
        state = _state_of(engine)
        jobs = engine.jobs()
        placements = engine.placements()
        rack_power = engine.rack_power_w()
        b_units = engine.row_limit_units()
        over = engine.violations()
    if not over:
        return EnvelopePlan({}, (), [], 0, 0.0, "holds", time.perf_counter() - start, state)
    n = len(jobs)
    G = power.gpus_per_node
    idle = power.gpu_idle_w
    # per job and rack: GPUs and whole nodes held (survivors only, for a degraded job)
    g = gpus_by_rack(cluster, placements).tocsc()
    whole_job = np.array([p.gpus_per_node == G for p in placements], dtype=float)
    whole = (g @ sp.diags(whole_job / G)).tocsc()  # whole nodes: GPUs / G
    cap_now = np.array([p.cap_w for p in placements], dtype=np.int64)
    cap_min = np.array([min(job.min_cap_w, p.cap_w) for job, p in zip(jobs, placements)],
                       dtype=np.int64)
    A = c.A_units
    # row load (units) each job frees when it drops to its min cap, and when it goes
    drop_rows = (A @ (g @ sp.diags((cap_now - cap_min).astype(float)))).tocsc()
    evict_rows = (A @ (g @ sp.diags((cap_now - idle).astype(float))
                       + whole * power.busy_step_w)).tocsc()
    load = b_units - engine.row_slack_units()
    excess = load - b_units - np.asarray(drop_rows.sum(axis=1)).ravel()  # at min caps
    evicted: list[int] = []
    if (excess > 0).any():
        freed_extra = (evict_rows - drop_rows).tocsc()  # what eviction adds to a min cap
        alive = np.ones(n, dtype=bool)
        while (excess > 0).any():
            rows_over = excess > 0
            best, best_key = -1, None
            for j in _jobs_touching(freed_extra, np.flatnonzero(rows_over), alive):
                col = freed_extra.getcol(j).toarray().ravel()
                gain = float(np.minimum(col[rows_over], excess[rows_over]).sum())
                if gain <= 0:
                    continue
                key = (eviction_key(jobs[j]), -gain, jobs[j].gpus, j)
                if best_key is None or key < best_key:
                    best, best_key = j, key
            if best < 0:  # nothing on the rows left to evict: cannot get there
                break
            evicted.append(best)
            alive[best] = False
            excess -= freed_extra.getcol(best).toarray().ravel()
        # put back what is not needed, last evicted first
        for j in reversed(list(evicted)):
            col = freed_extra.getcol(j).toarray().ravel()
            if not ((excess + col) > 0).any():
                excess += col
                evicted.remove(j)
    reachable = not (excess > 0).any()
    evicted_set = set(evicted)
    keep = [j for j in range(n) if j not in evicted_set]
    # rack power with the evicted jobs gone (their nodes back at idle)
    rest = rack_power.astype(np.int64).copy()
    for j in evicted:
        col_g = g.getcol(j).toarray().ravel()
        col_w = whole.getcol(j).toarray().ravel()
        rest -= np.rint(col_g * (cap_now[j] - idle) + col_w * power.busy_step_w).astype(np.int64)
    caps: dict[str, int] = {}
    memo: dict[tuple[Any, int], float] = {}
    status = ("unreachable" if not reachable else "evictions" if evicted else "caps")
    lost = 0.0
    if keep:
        kjobs = [jobs[j] for j in keep]
        kplace = [placements[j] for j in keep]
        lp = solve_caps(cluster, kjobs, kplace, rest.astype(float), b_units,
                        cap_now[keep].astype(float))
        if lp.res.status != 0:
            status = f"lp failed: {lp.res.message}"
        for job, p, cap in zip(kjobs, kplace, lp.caps.tolist()):
            if cap < p.cap_w:
                caps[job.id] = int(cap)
                lost += job.weight * job.gpus * (_speed(power, job, p.cap_w, memo)
                                                 - _speed(power, job, cap, memo))
    for j in evicted_set:
        lost += jobs[j].weight * jobs[j].gpus * _speed(power, jobs[j], int(cap_now[j]), memo)
    return EnvelopePlan(caps, tuple(jobs[j].id for j in evicted), over,
                        sum(len(placements[j].nodes) * placements[j].gpus_per_node
                            for j in evicted),
                        lost, status, time.perf_counter() - start, state)


def _speed(power: Any, job: Job, cap_w: int, memo: dict[tuple[Any, int], float]) -> float:
    """s(cap) of a job, memoised by (curve, cap): thousands of jobs share a few curves."""
    key = (job.curve, cap_w)
    if key not in memo:
        memo[key] = float(power.speed(job, cap_w))
    return memo[key]


def _jobs_touching(m: sp.csc_matrix, rows: np.ndarray, alive: np.ndarray) -> list[int]:
    """Columns (jobs) of ``m`` with a non-zero in any of ``rows``, still alive."""
    sub = m.tocsr()[rows]
    cols = np.unique(sub.indices[sub.data > 0])
    return [int(j) for j in cols if alive[j]]
