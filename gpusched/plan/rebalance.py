"""rebalance_caps: re-balance the running jobs' caps by LP (placement fixed)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from ..errors import AllocationError
from ..job import Job, Placement
from .model import cap_levels_w


@dataclass(frozen=True)
class CapPlan:
    """New caps for the running jobs (placement fixed) and what limits them.

    Attributes
    ----------
    cap_w : dict of str to int
        New cap per running job, snapped down to its 25 W grid (so every row holds).
    objective : float
        ``sum weight * gpus * s(cap)`` at those caps.
    lp_objective : float
        The LP optimum before snapping (an upper bound on ``objective``).
    duals : dict of str to float
        Price of each binding row, in GPU-equivalents of throughput per kW of limit.
    binding : list of str
        Rows with a positive price, dearest first.
    solve_time_s : float
    status : str
        ``"optimal"``, ``"empty"`` (nothing running) or the LP's failure message.
    """

    cap_w: dict[str, int]
    objective: float
    lp_objective: float
    duals: dict[str, float]
    binding: list[str]
    solve_time_s: float
    status: str = "optimal"

    def describe(self, top: int | None = 10) -> str:
        """One line per binding row: ``hall-2 switchboard: 0.8 GPU-equivalents ...``."""
        if not self.binding:
            return "no limit binds: every running job can have its max cap"
        names = self.binding if top is None else self.binding[:top]
        lines = [f"{name}: {self.duals[name]:.3g} GPU-equivalents of throughput per kW"
                 for name in names]
        if top is not None and len(self.binding) > top:
            lines.append(f"... and {len(self.binding) - top} more binding rows")
        return "\n".join(lines)

    def apply(self, engine: Any) -> dict[str, Placement]:
        """Set the new caps: lower ones first, then raise, so no row breaks on the way."""
        out: dict[str, Placement] = {}
        with engine._lock:
            current = {p.job_id: p.cap_w for p in engine.placements()}
            lowers = [(i, c) for i, c in self.cap_w.items() if i in current and c < current[i]]
            raises = [(i, c) for i, c in self.cap_w.items() if i in current and c > current[i]]
            for job_id, cap in lowers + raises:
                out[job_id] = engine.set_cap(job_id, cap)
        return out


def rebalance_caps(engine: Any, *, apply: bool = False) -> CapPlan:
    """Re-balance the caps of the running jobs (LP, HiGHS); placement stays fixed.

    Maximises ``sum weight * gpus * s(cap)`` with s replaced by its chords over each job's
    25 W grid (exact at the grid points, concave in between), subject to every row of
    ``A · P <= b`` and each job's ``[min_cap_w, max_cap_w]``.  Caps are then snapped down
    to the grid, which only lowers load.  The duals of the LP price each binding row in
    GPU-equivalents of throughput per kW: what one more kW of that limit would buy.

    Parameters
    ----------
    engine : Engine
    apply : bool, default False
        Also set the new caps on ``engine`` (``plan.apply(engine)``).

    Returns
    -------
    CapPlan
    """
    if not isinstance(apply, bool):
        raise AllocationError(f"apply={apply!r} must be True or False", field="apply")
    start = time.perf_counter()
    cluster = engine.cluster
    power = cluster.power
    c = cluster.constraints
    with engine._lock:
        jobs = engine.jobs()
        placements = engine.placements()
        rack_power = engine.rack_power_w().astype(float)
        # the live limits (Engine.set_limit) when the engine has them, else the site's
        b_units = (engine.row_limit_units() if hasattr(engine, "row_limit_units")
                   else c.b_units)
    if not jobs:
        return CapPlan({}, 0.0, 0.0, {}, [], time.perf_counter() - start, "empty")
    hi = np.array([j.max_cap_w for j in jobs], dtype=float)
    lp = solve_caps(cluster, jobs, placements, rack_power, b_units, hi)
    res, wg = lp.res, lp.wg
    if res.status != 0:
        return CapPlan({j.id: p.cap_w for j, p in zip(jobs, placements)},
                       float(sum(wg * np.array([power.speed(jb, p.cap_w) for jb, p in
                                                zip(jobs, placements)]))),
                       0.0, {}, [], time.perf_counter() - start, f"lp failed: {res.message}")
    snapped = lp.caps
    prices = -res.ineqlin.marginals[:lp.n_power_rows]   # objective per kW of room
    duals: dict[str, float] = {}
    for r, price in zip(lp.keep, prices):
        if price > 1e-9:
            duals[c.names[r]] = float(price)
    binding = sorted(duals, key=lambda name: -duals[name])
    cap_w = {job.id: int(cap) for job, cap in zip(jobs, snapped)}
    objective = float(sum(job.weight * job.gpus * power.speed(job, cap_w[job.id])
                          for job in jobs))
    plan = CapPlan(cap_w, objective, float(-res.fun), duals, binding,
                   time.perf_counter() - start)
    if apply:
        plan.apply(engine)
    return plan


@dataclass
class CapLP:
    """The cap LP's answer (:func:`solve_caps`): HiGHS's result, the caps snapped to the
    grid and stepped down until every row holds exactly, and the power rows kept."""

    res: Any
    caps: np.ndarray
    keep: np.ndarray
    n_power_rows: int
    wg: np.ndarray


def solve_caps(cluster: Any, jobs: list[Job], placements: list[Placement],
               rack_power: np.ndarray, b_units: np.ndarray, hi: np.ndarray) -> CapLP:
    """Caps for running jobs (placement fixed) in ``[min_cap_w, hi]`` that maximise
    ``sum weight * gpus * s(cap)`` under the limits ``b_units`` (COEF_SCALE units), by LP.

    Shared by :func:`rebalance_caps` (``hi`` the jobs' max caps, ``b`` the live limits)
    and the envelope plan (``hi`` the caps they run at now: cap-downs only).
    """
    from ..spec import COEF_SCALE

    power = cluster.power
    c = cluster.constraints
    b = np.asarray(b_units, dtype=float) / COEF_SCALE
    n = len(jobs)
    # g[r, j]: GPUs of job j in rack r; rack power = base + g @ cap
    g = gpus_by_rack(cluster, placements)
    caps_now = np.array([p.cap_w for p in placements], dtype=float)
    base = rack_power - g @ caps_now
    M = (c.A @ g).tocsr()                  # row load per W of each job's cap
    room = b - c.A @ base
    keep = np.flatnonzero(np.diff(M.indptr) > 0)
    M = M[keep]
    room = room[keep]
    # variables: caps (n), throughput t (n)
    lo = np.array([j.min_cap_w for j in jobs], dtype=float)
    hi = np.maximum(np.asarray(hi, dtype=float), lo)
    wg = np.array([j.weight * j.gpus for j in jobs], dtype=float)
    chord_r: list[int] = []
    chord_c: list[int] = []
    chord_v: list[float] = []
    chord_b: list[float] = []
    k = 0
    t_hi = np.zeros(n)
    # chords of s over the cap grid, per (max, min, sensitivity): most jobs share them
    chord_cache: dict[tuple[int, int, Any], tuple[float, np.ndarray, np.ndarray]] = {}
    for j, job in enumerate(jobs):
        key = (job.max_cap_w, job.min_cap_w, job.curve)
        if key not in chord_cache:
            # the grid plus the curve's own breakpoints: a table's chords are its points
            grid = np.array(cap_levels_w(power, job)[::-1], dtype=float)
            s = np.atleast_1d(power.speed(job, grid))
            slopes = np.diff(s) / np.diff(grid) if len(grid) > 1 else np.zeros(0)
            chord_cache[key] = (float(s.max()), slopes, s[:-1] - slopes * grid[:-1])
        t_max, slopes, intercepts = chord_cache[key]
        t_hi[j] = t_max
        # t_j - slope * cap_j <= s_a - slope * grid_a, one row per chord
        m = len(slopes)
        chord_r.extend(np.repeat(np.arange(k, k + m), 2).tolist())
        chord_c.extend([n + j, j] * m)
        chord_v.extend(np.column_stack([np.ones(m), -slopes]).ravel().tolist())
        chord_b.extend(intercepts.tolist())
        k += m
    speed_at_min: dict[tuple[int, Any], float] = {}  # most jobs share a curve
    for job in jobs:
        min_key = (job.min_cap_w, job.curve)
        if min_key not in speed_at_min:
            speed_at_min[min_key] = float(power.speed(job, job.min_cap_w))
    t_lo = np.array([speed_at_min[(j.min_cap_w, j.curve)] for j in jobs])
    chords = sp.csr_matrix((chord_v, (chord_r, chord_c)), shape=(k, 2 * n))
    rows = sp.hstack([M, sp.csr_matrix((M.shape[0], n))]).tocsr()
    A_ub = sp.vstack([rows, chords]).tocsr()
    b_ub = np.concatenate([room, np.array(chord_b)])
    # scale power rows to kW so the duals come out per kW and HiGHS sees O(1) numbers
    scale = np.concatenate([np.full(M.shape[0], 1e-3), np.ones(k)])
    A_ub = sp.diags(scale) @ A_ub
    b_ub = b_ub * scale
    obj = np.concatenate([np.zeros(n), -wg])
    bounds = np.column_stack([np.concatenate([lo, t_lo]), np.concatenate([hi, t_hi])])
    res = linprog(obj, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        return CapLP(res, np.array([p.cap_w for p in placements], dtype=np.int64), keep,
                     M.shape[0], wg)
    cap_lp = res.x[:n]
    step = power.cap_step_w
    snapped = np.empty(n, dtype=np.int64)
    for j, job in enumerate(jobs):
        x = min(cap_lp[j] + 1e-6, hi[j])
        grid_cap = job.max_cap_w - step * math.ceil((job.max_cap_w - x) / step - 1e-9)
        snapped[j] = max(job.min_cap_w, grid_cap)
    snapped = _repair(cluster, jobs, g, base, snapped, np.asarray(b_units, dtype=np.int64))
    return CapLP(res, snapped, keep, M.shape[0], wg)


def gpus_by_rack(cluster: Any, placements: list[Placement]) -> sp.csr_matrix:
    """``g[r, j]``: GPUs job j holds in rack r (racks x jobs, CSR), built in one pass."""
    n = len(placements)
    counts = np.array([len(p.nodes) for p in placements], dtype=np.int64)
    nodes = np.fromiter((x for p in placements for x in p.nodes), dtype=np.int64,
                        count=int(counts.sum()))
    gpn = np.repeat(np.array([p.gpus_per_node for p in placements], dtype=float), counts)
    jobs = np.repeat(np.arange(n), counts)
    g = sp.csr_matrix((gpn, (cluster.node_rack[nodes], jobs)), shape=(cluster.num_racks, n))
    g.sum_duplicates()
    return g


def _repair(cluster: Any, jobs: list[Job], g: sp.csr_matrix, base: np.ndarray,
            caps: np.ndarray, b_units: np.ndarray) -> np.ndarray:
    """Step caps down one grid step at a time until every row holds by the exact test.

    The LP's answer holds to HiGHS's tolerance; snapping down usually makes it exact,
    and this loop covers the rest (a cap already at a grid point on a binding row).
    """
    c = cluster.constraints
    step = cluster.power.cap_step_w
    caps = caps.copy()
    gc = g.tocsc()
    for _ in range(10_000):
        rack_power = np.rint(base + g @ caps).astype(np.int64)
        bad = np.flatnonzero(c.load_units(rack_power) > b_units)
        if not bad.size:
            return caps
        racks = c.A[bad[0]].indices
        lowered = False
        for j in np.argsort(-caps):
            col = gc.indices[gc.indptr[j]:gc.indptr[j + 1]]
            if np.intersect1d(col, racks).size and caps[j] > jobs[j].min_cap_w:
                caps[j] = max(jobs[j].min_cap_w, caps[j] - step)
                lowered = True
                break
        if not lowered:
            break
    return caps
