"""Solving the allocation MILP: LP relaxation, relax-and-fix, rounding, full MILP."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from .decode import _Result
from .model import _Model


def solve(model: _Model, time_limit_s: float, mip_rel_gap: float, exact_max_vars: int,
          node_limit: int, extra: int = 50) -> "_Result":
    """LP relaxation and fixing first, then the full MILP if it is small enough.

    Both are exact solves of the same model; the better incumbent and the tighter
    bound are kept.  What runs, and how far, is decided by work, never by the
    clock: each MILP stops at ``node_limit`` branch-and-bound nodes (HiGHS is
    deterministic for a given limit), and the choice of the next step depends only
    on the results so far.  ``time_limit_s`` is a per-solve safety net; when it
    fires the result depends on the machine, and ``stats["safety_net"]`` says so.
    """
    n = model.n_y + model.n_u
    if model.n_y == 0:
        return _Result(model, np.zeros(n), "infeasible", 0.0, "none", {})
    stats: dict[str, Any] = {"variables": n, "integer_variables": n, "rows": model.n_rows,
                             "pod_classes": model.site.num_classes,
                             "job_classes": len(model.job_classes),
                             "power_rows": len(model.power_rows)}
    cons = (LinearConstraint(model.A, np.full(model.n_rows, -np.inf), model.ub)
            if model.n_rows else None)
    full_method = "exact" if not model.aggregate else "pod-class aggregation"
    best_x, best_value, best_method = np.zeros(n), 0.0, "lp-fix"
    bound = math.inf
    optimal = False
    small = n <= min(exact_max_vars, 600)
    if not small:
        t = time.perf_counter()
        lp = linprog(model.c, A_ub=model.A if model.n_rows else None,
                     b_ub=model.ub if model.n_rows else None,
                     bounds=np.column_stack([np.zeros(n), model.var_ub]), method="highs",
                     # presolve costs more than it saves on this wide, shallow LP
                     options={"time_limit": time_limit_s, "presolve": False})
        stats["lp_s"] = round(time.perf_counter() - t, 3)
        if lp.status == 1:
            stats["safety_net"] = "lp"
        if lp.x is not None:
            if lp.status == 0:
                bound = -lp.fun
            t = time.perf_counter()
            # reduced costs: how far each variable is from being worth taking
            duals = (lp.ineqlin.marginals if model.n_rows and lp.status == 0
                     else np.zeros(model.n_rows))
            reduced = model.c - model.A.T @ duals if model.n_rows else model.c.copy()
            allowed = _neighbourhood(model, lp.x, reduced, extra)
            x = _fix(model, lp.x, allowed, mip_rel_gap, time_limit_s, node_limit, stats)
            stats["fix_s"] = round(time.perf_counter() - t, 3)
            fix_value = -1.0 if x is None else float(-model.c @ x)
            if fix_value < (1 - 10 * max(mip_rel_gap, 1e-4)) * bound:
                # no incumbent within the node limit, or a poor one: round the LP too (fast,
                # always feasible) and keep the better
                t = time.perf_counter()
                rounded = _round(model, lp.x, allowed, reduced)
                stats["round_s"] = round(time.perf_counter() - t, 3)
                if float(-model.c @ rounded) > fix_value:
                    x = rounded
                    stats["kept"] = "rounding"
            # rounding is always feasible and worth >= 0 > -1, so x is set by now
            assert x is not None
            best_x, best_value = x, float(-model.c @ x)
    lp_gap = (bound - best_value) / max(bound, 1e-9) if math.isfinite(bound) else 1.0
    if n <= exact_max_vars and lp_gap > mip_rel_gap:
        t = time.perf_counter()
        res = milp(model.c, constraints=cons, bounds=Bounds(np.zeros(n), model.var_ub),
                   integrality=np.ones(n),
                   options={"time_limit": time_limit_s, "node_limit": node_limit,
                            "mip_rel_gap": mip_rel_gap})
        stats["full_s"] = round(time.perf_counter() - t, 3)
        _note_limit(res, "full", stats)
        dual = getattr(res, "mip_dual_bound", None)
        if dual is not None and math.isfinite(dual):
            bound = min(bound, -dual)
        if res.x is not None:
            x = np.rint(res.x)
            value = float(-model.c @ x)
            if value >= best_value:
                best_x, best_value, best_method = x, value, full_method
            optimal = res.status == 0
    if not math.isfinite(bound):
        bound = best_value
    bound = max(bound, best_value)
    gap = (bound - best_value) / max(bound, 1e-9)
    status = ("optimal" if optimal or gap <= mip_rel_gap + 1e-9
              else "time_limit" if "safety_net" in stats else "work_limit")
    if best_value == 0 and not np.any(best_x):
        status = "optimal" if optimal else "no-solution"
    return _Result(model, best_x, status, bound, best_method, stats)


def _neighbourhood(model: _Model, x_lp: np.ndarray, reduced: np.ndarray,
                   extra: int) -> np.ndarray:
    """Job variables free in the restricted MILP.

    The LP's support, the neighbouring cap levels of each of its variables, and the
    ``extra`` variables outside it with the smallest reduced cost (the ones closest
    to being worth taking: they fill the room a rounded-out job leaves).
    """
    support = np.flatnonzero(x_lp[:model.n_y] > 1e-6)
    key = {(int(model.var_jc[v]), int(model.var_kind[v]), int(model.var_place[v]),
            int(model.var_level[v])): int(v) for v in range(model.n_y)}
    allowed = set(support.tolist())
    for v in support:
        a, kind, place, level = (int(model.var_jc[v]), int(model.var_kind[v]),
                                 int(model.var_place[v]), int(model.var_level[v]))
        for other in (level - 1, level + 1):
            w = key.get((a, kind, place, other))
            if w is not None:
                allowed.add(w)
    outside = np.setdiff1d(np.arange(model.n_y), np.fromiter(allowed, dtype=np.int64,
                                                              count=len(allowed)))
    if extra > 0 and outside.size:
        take = outside[np.argsort(reduced[outside], kind="stable")[:extra]]
        allowed.update(take.tolist())
    return np.array(sorted(allowed), dtype=np.int64)


def _round(model: _Model, x_lp: np.ndarray, allowed: np.ndarray,
           reduced: np.ndarray) -> np.ndarray:
    """A feasible integer point near the LP optimum, fast (the fallback incumbent).

    Job variables are rounded down; each zone then reserves the fewest whole pods
    its spanning jobs need; while a row is broken, the cheapest job variable in it
    gives one job back; then jobs are added greedily wherever every row still
    holds, smallest reduced cost first (the LP's prices say which are worth most
    for the power and room they take).
    """
    n = model.n_y + model.n_u
    x = np.zeros(n)
    x[:model.n_y] = np.floor(x_lp[:model.n_y] + 1e-9)
    if not model.n_rows:
        return x
    site = model.site
    spanning = model.var_kind == 1
    for z in set(model.var_place[spanning].tolist()):
        on_z = np.flatnonzero(spanning & (model.var_place == z))
        need = float(sum(model.job_classes[model.var_jc[v]].nodes * x[v] for v in on_z))
        for i, k in enumerate(model.u_classes):
            if site.class_zone[k] != z or need <= 0:
                continue
            take = min(int(site.class_count[k]), math.ceil(need / site.class_nodes[k]))
            x[model.n_y + i] = take
            need -= take * site.class_nodes[k]
    A = model.A.tocsc()
    load = model.A @ x
    value = -model.c
    for _ in range(10 * model.n_y + 10):
        broken = np.flatnonzero(load > model.ub + 1e-6)
        if not broken.size:
            break
        row = model.A.getrow(broken[0])
        candidates = [v for v, a in zip(row.indices, row.data)
                      if v < model.n_y and a > 0 and x[v] > 0]
        if not candidates:
            return np.zeros(n)
        v = min(candidates, key=lambda v: value[v])
        x[v] -= 1
        load -= A.getcol(v).toarray().ravel()
    # greedy fill over the LP's neighbourhood, most attractive at the LP's prices
    # first; a spanning job may reserve more whole pods of its zone to fit
    u_of_zone: dict[int, list[int]] = defaultdict(list)
    for i, k in enumerate(model.u_classes):
        u_of_zone[int(site.class_zone[k])].append(model.n_y + i)

    def column(v: int) -> tuple[np.ndarray, np.ndarray]:
        return A.indices[A.indptr[v]:A.indptr[v + 1]], A.data[A.indptr[v]:A.indptr[v + 1]]

    for v in allowed[np.argsort(reduced[allowed], kind="stable")]:
        rows_v, data_v = column(v)
        while x[v] < model.var_ub[v]:
            trial = load.copy()
            trial[rows_v] += data_v
            extra: list[int] = []
            if model.var_kind[v] == 1:
                # reserve whole pods until the zone's spanning row holds again
                for w in u_of_zone[int(model.var_place[v])]:
                    rows_w, data_w = column(w)
                    while (np.any(trial[rows_w] > model.ub[rows_w] + 1e-6)
                           and np.any(data_w < 0)
                           and x[w] + len(extra) < model.var_ub[w]):
                        trial[rows_w] += data_w
                        extra.append(w)
            if np.any(trial > model.ub + 1e-6):
                break
            x[v] += 1
            for w in extra:
                x[w] += 1
            load = trial
    return x


def _fix(model: _Model, x_lp: np.ndarray, allowed: np.ndarray, mip_rel_gap: float,
         time_limit_s: float, node_limit: int,
         stats: dict[str, Any]) -> np.ndarray | None:
    """The restricted MILP around an LP optimum (relax-and-fix); None if it fails.

    Only the LP's support and, for each variable in it, the neighbouring cap levels
    of the same job class and place stay free (so a job can step a level down or up
    to make room); every other job variable is fixed at 0.  A vertex of the LP has
    at most as many fractional job classes as binding coupling rows, so this is a
    small MILP whose optimum is usually within a fraction of a percent of the LP.
    """
    n = model.n_y + model.n_u
    frac = np.abs(x_lp - np.rint(x_lp)) > 1e-6
    cols = np.concatenate([allowed, np.arange(model.n_y, n, dtype=np.int64)])
    stats["lp_fractional"] = int(frac[:model.n_y].sum())
    stats["restricted_vars"] = int(cols.size)
    # solve over the allowed columns only: handing HiGHS thousands of columns fixed
    # at zero costs more than the restricted solve itself
    sub_cons = (LinearConstraint(model.A[:, cols], np.full(model.n_rows, -np.inf), model.ub)
                if model.n_rows else None)
    res = milp(model.c[cols], constraints=sub_cons,
               bounds=Bounds(np.zeros(cols.size), model.var_ub[cols]),
               integrality=np.ones(cols.size),
               options={"time_limit": time_limit_s, "node_limit": node_limit,
                        "mip_rel_gap": mip_rel_gap})
    _note_limit(res, "fix", stats)
    if res.x is None:
        return None
    x = np.zeros(n)
    x[cols] = np.rint(res.x)
    return x


def _note_limit(res: Any, solve: str, stats: dict[str, Any]) -> None:
    """Record which limit stopped a MILP: the node limit (work, deterministic) or the
    wall-clock safety net (machine-dependent, reported)."""
    message = str(getattr(res, "message", ""))
    if "Time limit" in message:
        stats["safety_net"] = solve
    elif res.status != 0 and "limit" in message.lower():
        stats.setdefault("work_limit", []).append(solve)
