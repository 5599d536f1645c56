"""The fluid upper bound: the most throughput any policy could get from the jobs present.

At an instant, take the jobs present (running and queued) and forget where they could
be placed: any GPU of the site may run any share of any job, at any cap of the job's
grid.  The best choice of caps and GPU counts that fits the site's GPUs and every row
of ``A · P <= b`` is an LP (``scipy.optimize.linprog``, HiGHS), and no policy can
deliver more at that instant.  Integrated over a run, it says how much of the physical
limit a policy reached.

The model
---------
*Variables.*  ``z[c, l, g]``: GPUs of job class c (jobs with the same curve and cap
range) running at cap level l in rack group g.  Levels are the cap grid the policies
use (``PowerModel.cap_grid_w``) plus the curve's own breakpoints, so s is exact at
every level and the LP mixes levels along chords of the concave curve.

*Power.*  A rack draws its idle power, plus per busy GPU ``cap - gpu_idle_w`` and a
``busy_step_w / gpus_per_node`` share of its node's busy step.  A real node pays the
whole step as soon as one GPU is busy, so this share never over-charges: the LP's
power is a lower bound of any real placement's, and its optimum an upper bound.

*Rows that can never bind are dropped*: a row that holds with every rack fully busy at
the highest cap holds always, so leaving it out changes nothing.

*Rack groups (exact aggregation).*  Racks with the same nodes and the same
coefficients in every remaining row that touches more than one rack, and the same
(coefficient, limit) pairs in their own one-rack rows, are interchangeable: averaging
any feasible point over them keeps it feasible (the LP is convex) and the objective.
So one group stands for them, with their summed GPUs and idle power; a one-rack row
becomes ``coef * P_group / members <= limit``.

*Jobs present.*  Only the total GPUs of each job class matter (gang sizes and
locality are relaxed); totals are rounded up to a quantum of the site's GPUs (about
1/1000) and capped at the site's GPUs before the LP, so the result stays an upper
bound and repeated states share one solve (a cache).
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from .power import ThroughputCurve

__all__ = ["FluidBound", "job_class_key"]


def job_class_key(job: Any) -> tuple[ThroughputCurve, int, int]:
    """What the bound distinguishes between jobs: the curve and the cap range."""
    return (job.curve, job.min_cap_w, job.max_cap_w)


class FluidBound:
    """The fluid bound of one cluster, for any mix of jobs present (see module doc).

    Parameters
    ----------
    cluster : Cluster
    quantum_gpus : int, optional
        Job-class totals are rounded up to a multiple of this many GPUs (default: the
        site's GPUs / 1000, at least one node).  1 gives the exact LP every time.
    """

    def __init__(self, cluster: Any, quantum_gpus: int | None = None) -> None:
        self.cluster = cluster
        power = cluster.power
        self.power = power
        G = power.gpus_per_node
        self.num_gpus = int(cluster.num_gpus)
        self.quantum = int(quantum_gpus) if quantum_gpus else max(G, self.num_gpus // 1000)
        c = cluster.constraints
        A = c.A.tocsr()
        b = np.asarray(c.b, dtype=float)
        nodes = cluster.rack_nodes.astype(np.int64)
        idle_w = cluster.idle_rack_power_w.astype(float)
        full_w = nodes * (power.node_other_busy_w + G * power.cap_max_w)
        can_bind = np.flatnonzero(A @ full_w > b * (1 + 1e-12))
        Ab = A[can_bind].tocsr()
        b = b[can_bind]
        racks_per_row = np.diff(Ab.indptr)
        single = racks_per_row == 1
        multi_rows = np.flatnonzero(~single)
        single_rows = np.flatnonzero(single)
        col_multi = Ab[multi_rows].T.tocsr()     # rack -> its multi-rack rows
        own: dict[int, list[tuple[float, float]]] = {}
        for i in single_rows.tolist():
            r = int(Ab.indices[Ab.indptr[i]])
            own.setdefault(r, []).append((float(Ab.data[Ab.indptr[i]]), float(b[i])))
        groups: dict[Hashable, int] = {}
        rack_group = np.empty(cluster.num_racks, dtype=np.int64)
        signatures: list[tuple] = []
        for r in range(cluster.num_racks):
            lo, hi = col_multi.indptr[r], col_multi.indptr[r + 1]
            key = (int(nodes[r]), float(idle_w[r]),
                   tuple(multi_rows[col_multi.indices[lo:hi]].tolist()),
                   tuple(col_multi.data[lo:hi].tolist()), tuple(sorted(own.get(r, []))))
            g = groups.setdefault(key, len(groups))
            if g == len(signatures):
                signatures.append(key)
            rack_group[r] = g
        n_groups = len(groups)
        self.n_groups = n_groups
        members = np.bincount(rack_group, minlength=n_groups).astype(float)
        self.group_gpus = np.bincount(rack_group, weights=nodes * G, minlength=n_groups)
        group_idle_w = np.bincount(rack_group, weights=idle_w, minlength=n_groups)
        # power rows over groups: load = coef_g · (idle_g + sum z * d)
        rows: list[np.ndarray] = []
        limits: list[float] = []
        if multi_rows.size:
            # coefficient of group g in row i = that of any of its racks (all equal)
            rep = np.array([int(np.flatnonzero(rack_group == g)[0]) for g in range(n_groups)])
            M = Ab[multi_rows][:, rep].toarray()
            for k, i in enumerate(multi_rows.tolist()):
                rows.append(M[k])
                limits.append(float(b[i]))
        for g, key in enumerate(signatures):
            for coef, limit in sorted(set(key[4])):
                row = np.zeros(n_groups)
                row[g] = coef / members[g]
                rows.append(row)
                limits.append(limit)
        self.row_coef = np.array(rows).reshape(len(rows), n_groups)
        self.row_room_w = np.array(limits) - self.row_coef @ group_idle_w
        self.rows = len(rows)
        self._levels: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._cache: dict[tuple, float] = {}
        self.solves = 0

    def levels(self, key: tuple[ThroughputCurve, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(caps W, s) of a job class: the site's cap grid plus the curve's breakpoints."""
        out = self._levels.get(key)
        if out is None:
            curve, lo, hi = key
            tdp = self.power.gpu_tdp_w
            caps = set(float(c) for c in self.power.cap_grid_w(hi, lo))
            caps.update(round(c, 6) for c in curve.breakpoints_w(lo, hi, tdp))
            caps_w = np.array(sorted(caps))
            out = self._levels[key] = (caps_w, np.atleast_1d(curve.speed(caps_w, tdp)))
        return out

    def rounded(self, gpus: int) -> int:
        """``gpus`` rounded up to the quantum and capped at the site's GPUs."""
        q = self.quantum
        return min(self.num_gpus, -(-int(gpus) // q) * q)

    def __call__(self, present_gpus: Mapping[tuple, int]) -> float:
        """The bound, in GPU-equivalents (sum of GPUs x s), for these class totals."""
        items = tuple(sorted(((k, self.rounded(n)) for k, n in present_gpus.items() if n > 0),
                             key=lambda kv: (repr(kv[0][0]), kv[0][1], kv[0][2])))
        if not items:
            return 0.0
        value = self._cache.get(items)
        if value is None:
            value = self._cache[items] = self.solve(dict(items))
        return value

    def solve(self, present_gpus: Mapping[tuple, int]) -> float:
        """The LP for exact class totals (no rounding, no cache)."""
        power = self.power
        per_gpu_w = power.busy_step_w / power.gpus_per_node - power.gpu_idle_w
        n_g = self.n_groups
        cols_s: list[np.ndarray] = []
        cols_d: list[np.ndarray] = []
        class_of: list[int] = []
        totals: list[float] = []
        for c, (key, gpus) in enumerate(present_gpus.items()):
            caps_w, s = self.levels(key)
            cols_s.append(np.repeat(s, n_g))
            cols_d.append(np.repeat(caps_w + per_gpu_w, n_g))
            class_of.extend([c] * (len(caps_w) * n_g))
            totals.append(float(gpus))
        if not totals:
            return 0.0
        value_per = np.concatenate(cols_s)
        watts_per = np.concatenate(cols_d)
        n = value_per.size
        var_group = np.tile(np.arange(n_g), n // n_g)
        var_class = np.array(class_of)
        idx = np.arange(n)
        blocks = [sp.csr_matrix((np.ones(n), (var_class, idx)), shape=(len(totals), n)),
                  sp.csr_matrix((np.ones(n), (var_group, idx)), shape=(n_g, n))]
        rhs = [np.array(totals), self.group_gpus]
        if self.rows:
            # row load per variable = coef of its group x its watts; in kW for HiGHS
            dense = self.row_coef[:, var_group] * watts_per[None, :] / 1e3
            blocks.append(sp.csr_matrix(dense))
            rhs.append(self.row_room_w / 1e3)
        A_ub = sp.vstack(blocks).tocsr()
        b_ub = np.concatenate(rhs)
        if np.any(b_ub < -1e-9):
            return 0.0  # the idle site alone breaks a row: nothing can run
        res = linprog(-value_per, A_ub=A_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        self.solves += 1
        if res.status != 0:
            raise RuntimeError(f"fluid bound LP failed: {res.message}")
        return float(-res.fun)

    def describe(self) -> dict[str, Any]:
        return {"rack_groups": self.n_groups, "rows": self.rows, "quantum_gpus": self.quantum,
                "lp_solves": self.solves}

