"""Cluster-wide allocation with scipy (HiGHS): which queued jobs run, in which pod, at which cap.

Two solvers, both on the cluster's one constraint system ``A · P <= b``:

* :func:`allocate` -- a MILP (``scipy.optimize.milp``) over the queue: admit or not, the
  pod, and the cap level of every queued job, maximising ``sum weight * gpus * s(cap)``
  given the load already running.  :func:`apply` then places the admitted jobs.
* :func:`rebalance_caps` -- an LP (``scipy.optimize.linprog``) over the caps of the jobs
  already running, placement fixed; its dual prices name the limits that bind.

The model of :func:`allocate`
-----------------------------
*Cap levels.*  A job's caps are its grid ``max_cap_w, max - 25, ..., min_cap_w``
(``PowerModel.cap_grid_w``).  One integer variable per (job, place, level) selects a grid
point, so the objective uses s(cap) exactly at the grid points; this is the chord
(piecewise-linear) form of the concave s with breakpoints on the 25 W grid.

*Power.*  Admitting a job adds, per node, ``busy_step_w + gpus_per_node * (cap -
gpu_idle_w)`` W for a job of whole nodes (it takes empty nodes).  A job of 1..8 GPUs is
charged ``gpus * (cap - gpu_idle_w) + busy_step_w``: the busy step counted always, which
over-counts when it lands on a node already busy (conservative, never short).  Every
row is charged with coefficient max(A[i, r] for r in the pod): exact for rows whose
coefficient is uniform over the pod (busways, switchboards, cooling plants, the
facility), conservative otherwise (thermal rows over part of a pod).  Rows that load
every pod alike (a hall's switchboard and its cooling plant) are parallel; only the
tightest is kept.

*Rows, by where they sit.*  A row touching two or more pods (hall, hall cooling,
facility, multi-pod thermal) is a *zone row*; pods in the same zone rows form a zone
(a hall, in the presets).  A row touching one pod is a *pod row* (its busway) -- unless
it touches a single rack of a multi-rack pod, then it is a *rack row* (feed, CDU,
residual air, air cooling).  Rows at pod level and above aggregate exactly.  Rack rows
cannot: each pod is derated instead, counting as usable only the nodes its racks can
power at the queue's highest cap (``h_r`` = the rack's tightest headroom; empty nodes
first, then partly used ones).  Rows that cannot bind even if the whole queue ran at its
highest cap in the place that loads them most are dropped from the model (in
colossus-100k: every busway and rack row of an empty site).

*Capacity, by size class.*  Sizes are rounded up to powers of two (GPUs below a node,
nodes above; in a class of a single pod whole-node jobs keep their exact size, since
for one bin the sum is exact).  For items whose sizes divide each other, "for every
size s, the items of size >= s fit in ``sum over bins of s * floor(free / s)``" is
necessary, and first-fit decreasing -- optimal for divisible sizes (Coffman, Garey
and Johnson, J. Complexity 1987) -- packs whatever meets it; so one row per size
class and pod class expresses node capacity and the free GPUs of partly used nodes.
The tests check that :func:`apply` places every job admitted.

*Pod classes (exact aggregation).*  Pods equal in state (usable empty nodes, the free
GPUs of their usable partly used nodes), in zone and with no binding pod row are
interchangeable: they become one class with an integer member count, and placements
stay exact because the size-class rows above hold per member.  A pod whose own row
can bind is a class of its own.  Jobs larger than a pod *span* pods: they take whole
empty pods of one zone (integer ``u_c`` members of class c reserved for them) and are
placed on those nodes by :func:`apply` with the engine's checked ``place_on``.

*Job classes (exact aggregation).*  Queued jobs equal in size, caps, weight and
sensitivity are interchangeable too: one integer variable per (job class, place,
level), bounded by the class's count; the earliest jobs of a class are admitted first.

*When it is still too big.*  Above 600 integer variables the LP relaxation is solved
first (``linprog``, HiGHS): it gives the bound, and its reduced costs.  A restricted
MILP then keeps free only the LP's support, the neighbouring cap level on either side of
each variable in it, and the 50 variables outside it with the smallest reduced cost
(the ones closest to paying for the room a rounded-out job leaves); everything else is
fixed at 0 (method ``"lp-fix"``, relax-and-fix).  A vertex of the LP has at most as many
fractional job classes as binding coupling rows, so that MILP is small.  If it finds
nothing in time, the LP point is rounded (down for jobs, whole pods up for spanning
jobs) and filled greedily by reduced cost.  Up to ``exact_max_vars`` variables the full
MILP also runs, in the time left, and the better incumbent is kept.  The gap is always
against the best bound (LP or MILP dual bound), so it is honest for every method.

Everything the MILP admits is placed by :func:`apply` in the order of ``admitted``
(spanning jobs, then whole-node jobs largest first, then small jobs largest first); a
job the engine still refuses (a rack row the derate missed, a state changed since the
solve) lands in the result's ``dropped`` with the engine's own explanation.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from ._checks import check_job
from .spec import COEF_SCALE
from .errors import AllocationError, DuplicateJobError, JobError, PlacementError
from .job import Job, Placement
from .power import throughput

__all__ = ["allocate", "apply", "rebalance_caps", "Allocation", "CapPlan", "AllocationError"]


# ======================================================================================
# Results
# ======================================================================================

@dataclass(frozen=True)
class Allocation:
    """What :func:`allocate` decided.

    Attributes
    ----------
    status : str
        ``"optimal"`` (within ``mip_rel_gap``), ``"time_limit"`` (best found when the
        time ran out), ``"infeasible"`` (no queued job can be admitted now), ``"empty"``
        (empty queue), ``"no-solution"`` (the solver found nothing in time).
    admitted : tuple of str
        Job ids to place, in the order :func:`apply` places them.
    pod : dict of str to int
        Pod index of each admitted job (the first of its pods for a job that spans pods).
    cap_w : dict of str to int
        Planned cap of each admitted job, on its 25 W grid.
    objective : float
        ``sum weight * gpus * s(cap)`` of the admitted jobs (GPU-equivalents).
    bound : float
        An upper bound on the best objective of the model (the solver's dual bound).
    gap : float
        ``(bound - objective) / max(bound, 1e-9)``.
    solve_time_s : float
        Wall time of the whole call, model building included.
    dropped : dict of str to str
        Queued jobs not admitted, with the reason.
    method : str
        ``"exact"`` (one class per pod and per job), ``"pod-class aggregation"``,
        ``"lp-fix"`` (LP relaxation, then a MILP over the fractional part).
    jobs : dict of str to Job
        The queued jobs by id (apply needs them).
    spans : dict of str to tuple of int
        For jobs larger than a pod, the nodes planned for them.
    """

    status: str
    admitted: tuple[str, ...]
    pod: dict[str, int]
    cap_w: dict[str, int]
    objective: float
    bound: float
    gap: float
    solve_time_s: float
    dropped: dict[str, str]
    method: str
    jobs: dict[str, Job] = field(default_factory=dict, repr=False)
    spans: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    stats: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        return (f"{self.status} ({self.method}): {len(self.admitted)} admitted, "
                f"{len(self.dropped)} not; objective {self.objective:,.1f}, bound "
                f"{self.bound:,.1f}, gap {100 * self.gap:.2f}%, {self.solve_time_s:.2f} s")


# ======================================================================================
# Argument checks
# ======================================================================================

def _check_queue(engine: Any, queue: Any) -> list[Job]:
    if isinstance(queue, (str, bytes)) or not hasattr(queue, "__iter__"):
        raise AllocationError(f"queue must be a sequence of gpusched.Job, got "
                              f"{type(queue).__name__}")
    jobs = list(queue)
    running = {j.id: None for j in engine.jobs()}
    seen: dict[str, int] = {}
    for i, job in enumerate(jobs):
        if not isinstance(job, Job):
            raise JobError(f"queue[{i}] is a {type(job).__name__} ({job!r}); the queue must "
                           "hold gpusched.Job values")
        if job.id in seen:
            raise DuplicateJobError(f"Job {job.id!r} is twice in the queue (queue[{seen[job.id]}]"
                                    f" and queue[{i}]); job ids must be unique")
        seen[job.id] = i
        if job.id in running:
            raise DuplicateJobError(f"Job {job.id!r} (queue[{i}]) is already running on the "
                                    "engine; release it first or use another id")
        check_job(engine.cluster, job, {})
    return jobs


def _check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
        valid = ">= 0" if allow_zero else "> 0"
        raise AllocationError(f"{name}={value!r} must be a finite number {valid}")
    return float(value)


# ======================================================================================
# Cluster analysis: rows by where they sit, pods, classes
# ======================================================================================

def _pow2_at_least(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


class _Site:
    """The live state of the cluster, reduced to what the MILP needs."""

    def __init__(self, engine: Any, cap_ref_w: int, aggregate: bool) -> None:
        cluster = engine.cluster
        power = cluster.power
        c = cluster.constraints
        self.G = G = power.gpus_per_node
        self.power = power
        self.cluster = cluster
        self.slack_units = engine.row_slack_units().astype(np.int64)
        self.slack_w = self.slack_units / COEF_SCALE
        node_free = engine.node_free_gpus()
        self.node_free = node_free
        A = c.A.tocsr()
        A_units = A.copy()
        A_units.data = np.rint(A_units.data * COEF_SCALE)
        rack_pod = cluster.rack_pod
        n_pods = cluster.num_pods
        pod_rack_count = np.bincount(rack_pod, minlength=n_pods)
        # classify rows by the pods and racks they touch (vectorised: colossus has
        # ~5,000 rows and the facility row alone touches every rack)
        self.zone_rows: list[int] = []
        self.pod_rows: dict[int, list[int]] = defaultdict(list)
        rack_rows: dict[int, list[tuple[int, int]]] = defaultdict(list)
        # row -> {pod: max coefficient over the pod's racks}
        self.row_pod_coef: dict[int, dict[int, float]] = {}
        coo = A.tocoo()
        row_of, pod_of = coo.row.astype(np.int64), rack_pod[coo.col].astype(np.int64)
        key = row_of * n_pods + pod_of
        order = np.lexsort((-coo.data, key))
        key_sorted = key[order]
        head = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
        pair_row = row_of[order][head]
        pair_pod = pod_of[order][head]
        pair_coef = coo.data[order][head]          # max coefficient: sorted descending
        pods_per_row = np.bincount(pair_row, minlength=c.num_rows)
        racks_per_row = np.diff(A.indptr)
        for i in np.flatnonzero(pods_per_row >= 2):
            self.zone_rows.append(int(i))
        sel = np.isin(pair_row, self.zone_rows)
        for i, p, v in zip(pair_row[sel].tolist(), pair_pod[sel].tolist(),
                           pair_coef[sel].tolist()):
            self.row_pod_coef.setdefault(i, {})[p] = v
        for i in np.flatnonzero(pods_per_row == 1).tolist():
            lo = A.indptr[i]
            p = int(rack_pod[A.indices[lo]])
            if racks_per_row[i] == 1 and pod_rack_count[p] > 1:
                rack_rows[int(A.indices[lo])].append((i, int(A_units.data[lo])))
            else:
                self.pod_rows[p].append(i)
                self.row_pod_coef[i] = {p: float(A.data[A.indptr[i]:A.indptr[i + 1]].max())}
        # rack headroom (W of rack power) from rack rows
        n_racks = cluster.num_racks
        headroom = np.full(n_racks, np.iinfo(np.int64).max // 4, dtype=np.int64)
        for r, rows in rack_rows.items():
            headroom[r] = min(int(self.slack_units[i]) // max(u, 1) for i, u in rows)
        self.rack_headroom_w = headroom
        # usable nodes per pod at cap_ref
        idle = power.gpu_idle_w
        busy = power.busy_step_w
        d_ref = busy + G * (cap_ref_w - idle)
        first = cluster.rack_first_node
        self.pod_usable_empty = np.zeros(n_pods, dtype=np.int64)
        self.pod_empty = np.zeros(n_pods, dtype=np.int64)
        self.pod_partials: list[tuple[int, ...]] = [()] * n_pods
        self.pod_usable_empty_nodes: list[list[int]] = [[] for _ in range(n_pods)]
        partial_lists: list[list[int]] = [[] for _ in range(n_pods)]
        for r in range(n_racks):
            p = int(rack_pod[r])
            free = node_free[first[r]:first[r + 1]]
            budget = int(headroom[r])
            empties = np.flatnonzero(free == G)
            self.pod_empty[p] += empties.size
            take = empties.size if d_ref <= 0 else min(empties.size, budget // d_ref)
            take = max(0, take)
            budget -= take * d_ref
            self.pod_usable_empty[p] += take
            self.pod_usable_empty_nodes[p].extend((first[r] + empties[:take]).tolist())
            for f in sorted(int(x) for x in free if 0 < x < G):
                need = f * (cap_ref_w - idle)
                if need <= budget:
                    budget -= need
                    partial_lists[p].append(f)
        self.pod_partials = [tuple(sorted(x)) for x in partial_lists]
        self.pod_nodes = cluster.pod_nodes.astype(np.int64)
        # which pod rows can bind at all (the most the model could charge the pod)
        self.binding_pod_rows: dict[int, list[int]] = {}
        for p in range(n_pods):
            potential = (int(self.pod_usable_empty[p]) * d_ref
                         + sum(f * (cap_ref_w - idle) + busy * f / G for f in self.pod_partials[p])
                         + busy)
            rows = [i for i in self.pod_rows.get(p, [])
                    if self.row_pod_coef[i][p] * potential > self.slack_w[i]]
            if rows:
                self.binding_pod_rows[p] = rows
        # zones: pods with the same zone rows and coefficients
        zone_key: list[tuple] = [() for _ in range(n_pods)]
        keys: list[list[tuple[int, float]]] = [[] for _ in range(n_pods)]
        for i in self.zone_rows:
            for p, v in self.row_pod_coef[i].items():
                keys[p].append((i, v))
        zone_ids: dict[tuple, int] = {}
        self.pod_zone = np.zeros(n_pods, dtype=np.int64)
        for p in range(n_pods):
            zone_key[p] = tuple(keys[p])
            self.pod_zone[p] = zone_ids.setdefault(zone_key[p], len(zone_ids))
        self.num_zones = len(zone_ids)
        # pod classes
        class_of: dict[tuple, int] = {}
        self.class_pods: list[list[int]] = []
        for p in range(n_pods):
            if aggregate and p not in self.binding_pod_rows:
                key = (int(self.pod_zone[p]), int(self.pod_usable_empty[p]),
                       int(self.pod_empty[p]), int(self.pod_nodes[p]), self.pod_partials[p])
            else:
                key = ("pod", p)
            k = class_of.setdefault(key, len(class_of))
            if k == len(self.class_pods):
                self.class_pods.append([])
            self.class_pods[k].append(p)
        self.num_classes = len(self.class_pods)
        rep = [pods[0] for pods in self.class_pods]
        self.class_rep = rep
        self.class_count = np.array([len(pods) for pods in self.class_pods], dtype=np.int64)
        self.class_zone = self.pod_zone[rep]
        self.class_usable = self.pod_usable_empty[rep]
        self.class_partials = [self.pod_partials[p] for p in rep]
        # a class can host spanning jobs when its pods are wholly empty and usable, and
        # no pod row of theirs can bind
        self.class_spannable = np.array(
            [self.pod_usable_empty[p] == self.pod_nodes[p] == self.pod_empty[p]
             and not self.pod_partials[p] and p not in self.binding_pod_rows
             for p in rep], dtype=bool)
        self.class_nodes = self.pod_nodes[rep]

    def capacity(self, k: int, size: int) -> int:
        """GPUs a pod of class k offers to items of rounded size >= ``size`` (in GPUs)."""
        G = self.G
        U = int(self.class_usable[k])
        if size <= G:
            return sum(size * (f // size) for f in self.class_partials[k]) + U * G
        nodes = size // G
        return G * nodes * (U // nodes)


# ======================================================================================
# allocate
# ======================================================================================

@dataclass
class _JobClass:
    jobs: list[Job]
    gpus: int
    size: int            # rounded size in GPUs (power of two, or pow2 nodes * G)
    nodes: int           # whole nodes (0 for a job of one node or less)
    caps: list[int]      # grid, highest first
    value: list[float]   # weight * gpus * s(cap) per cap


def allocate(engine: Any, queue: Sequence[Job], *, time_limit_s: float = 1.0,
             mip_rel_gap: float = 1e-3, aggregate: bool = True,
             exact_max_vars: int = 4_000) -> Allocation:
    """Decide which queued jobs to admit, where and at which cap (MILP, HiGHS).

    Parameters
    ----------
    engine : Engine
        The live state; not changed.  Its running load counts against every row.
    queue : sequence of Job
        Jobs waiting, in priority (FIFO) order; ties in the optimum favour earlier jobs.
    time_limit_s : float, default 1.0
        Wall-time budget of the solves (HiGHS).  The LP relaxation and the full MILP
        share it; the restricted MILP of the LP-and-fix path gets a budget of its own,
        so a large queue may take up to about twice this, plus model building.
    mip_rel_gap : float, default 1e-3
        Relative gap at which HiGHS stops.
    aggregate : bool, default True
        Aggregate interchangeable pods and jobs into classes (exact); False gives the
        one-variable-per-pod-and-job model, for measuring.
    exact_max_vars : int, default 4,000
        Up to this many integer variables the full MILP runs too (after LP-and-fix when
        the model has more than 600); 0 forces LP-and-fix alone.

    Returns
    -------
    Allocation

    Raises
    ------
    JobError, DuplicateJobError
        A queue entry is not a Job, an id is repeated or already running, or a job can
        never run on this cluster.
    AllocationError
        ``time_limit_s`` or ``mip_rel_gap`` is not a finite positive number.
    """
    start = time.perf_counter()
    time_limit_s = _check_positive("time_limit_s", time_limit_s)
    mip_rel_gap = _check_positive("mip_rel_gap", mip_rel_gap, allow_zero=True)
    with engine._lock:
        jobs = _check_queue(engine, queue)
        job_by_id = {j.id: j for j in jobs}
        if not jobs:
            return Allocation("empty", (), {}, {}, 0.0, 0.0, 0.0,
                              time.perf_counter() - start, {}, "none", job_by_id)
        cap_ref = max(j.max_cap_w for j in jobs)
        site = _Site(engine, cap_ref, aggregate)
    model = _Model(site, jobs, aggregate)
    result = model.solve(time_limit_s, mip_rel_gap, exact_max_vars)
    return result.finish(start, job_by_id)


class _Model:
    """Variables, rows and the decoding of one allocation MILP."""

    def __init__(self, site: _Site, jobs: list[Job], aggregate: bool) -> None:
        self.site = site
        self.jobs = jobs
        self.aggregate = aggregate
        G = site.G
        power = site.power
        # ---- job classes ----------------------------------------------------------
        classes: dict[tuple, _JobClass] = {}
        order: list[_JobClass] = []
        for job in jobs:
            key = ((job.gpus, job.max_cap_w, job.min_cap_w, job.weight, job.sensitivity)
                   if aggregate else (job.id,))
            jc = classes.get(key)
            if jc is None:
                if job.gpus <= G:
                    size, nodes = min(_pow2_at_least(job.gpus), G), 0
                else:
                    nodes = job.gpus // G
                    size, nodes = G * _pow2_at_least(nodes), nodes
                caps = power.cap_grid_w(job.max_cap_w, job.min_cap_w)
                value = (job.weight * job.gpus
                         * np.asarray(throughput(np.array(caps, dtype=float),
                                                 job.sensitivity))).reshape(-1).tolist()
                jc = _JobClass([], job.gpus, size, nodes, caps, value)
                classes[key] = jc
                order.append(jc)
            jc.jobs.append(job)
        self.job_classes = order
        self.dropped: dict[str, str] = {}
        # ---- variables --------------------------------------------------------------
        # y[v] = (job class index, kind, place, level); kind 0 = pod class, 1 = span zone
        var_jc: list[int] = []
        var_kind: list[int] = []
        var_place: list[int] = []
        var_level: list[int] = []
        var_power_w: list[float] = []
        var_value: list[float] = []
        busy, idle = power.busy_step_w, power.gpu_idle_w
        zone_span_nodes = np.zeros(site.num_zones, dtype=np.int64)
        for k in range(site.num_classes):
            if site.class_spannable[k]:
                zone_span_nodes[site.class_zone[k]] += (site.class_nodes[k]
                                                        * site.class_count[k])
        for a, jc in enumerate(order):
            places: list[tuple[int, int]] = []
            for k in range(site.num_classes):
                size = self.item_size(jc, k)
                if site.capacity(k, self.threshold(k, size)) >= size:
                    places.append((0, k))
            for z in range(site.num_zones):
                if jc.nodes and zone_span_nodes[z] >= jc.nodes and not any(
                        site.class_zone[k] == z for kind, k in places):
                    places.append((1, z))
            if not places:
                for job in jc.jobs:
                    need = (f"a node with {job.gpus} free GPUs" if job.gpus <= G
                            else f"{job.gpus // G} empty nodes in one pod or zone")
                    self.dropped[job.id] = (f"no capacity: it needs {need} that its racks "
                                            "can power")
                continue
            for kind, place in places:
                for level, cap in enumerate(jc.caps):
                    if jc.gpus <= G:
                        pw = jc.gpus * (cap - idle) + busy
                    else:
                        pw = jc.nodes * (busy + G * (cap - idle))
                    var_jc.append(a)
                    var_kind.append(kind)
                    var_place.append(place)
                    var_level.append(level)
                    var_power_w.append(pw)
                    var_value.append(jc.value[level])
        self.var_jc = np.array(var_jc, dtype=np.int64)
        self.var_kind = np.array(var_kind, dtype=np.int64)
        self.var_place = np.array(var_place, dtype=np.int64)
        self.var_level = np.array(var_level, dtype=np.int64)
        self.var_power_w = np.array(var_power_w, dtype=float)
        self.var_value = np.array(var_value, dtype=float)
        n_y = len(var_jc)
        # u[k]: members of pod class k reserved whole for spanning jobs
        span_zones = set(self.var_place[self.var_kind == 1].tolist())
        self.u_classes = [k for k in range(site.num_classes)
                          if site.class_spannable[k] and site.class_zone[k] in span_zones]
        n_u = len(self.u_classes)
        self.n_y, self.n_u = n_y, n_u
        n = n_y + n_u
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        ub: list[float] = []
        self.row_names: list[str] = []
        r = 0

        def add_row(c: np.ndarray, v: np.ndarray, bound: float, name: str) -> None:
            nonlocal r
            rows.append(np.full(len(c), r, dtype=np.int64))
            cols.append(np.asarray(c, dtype=np.int64))
            vals.append(np.asarray(v, dtype=float))
            ub.append(bound)
            self.row_names.append(name)
            r += 1

        # one decision per job
        for a, jc in enumerate(order):
            idx = np.flatnonzero(self.var_jc == a)
            if idx.size:
                add_row(idx, np.ones(idx.size), len(jc.jobs), f"jobclass-{a}")
        # capacity by size class, per pod class
        u_index = {k: n_y + i for i, k in enumerate(self.u_classes)}
        on_class = self.var_kind == 0
        var_size = np.array([self.item_size(order[a], k) if kind == 0 else 0
                             for a, kind, k in zip(var_jc, var_kind, var_place)], dtype=np.int64)
        for k in range(site.num_classes):
            in_k = np.flatnonzero(on_class & (self.var_place == k))
            if not in_k.size:
                continue
            for size in sorted({self.threshold(k, s) for s in var_size[in_k].tolist()}):
                idx = in_k[var_size[in_k] >= size]
                cap = site.capacity(k, size)
                c = idx
                v = var_size[idx].astype(float)
                if k in u_index:
                    c = np.append(c, u_index[k])
                    v = np.append(v, cap)
                add_row(c, v, float(cap * site.class_count[k]), f"class-{k}-size-{size}")
        # spanning jobs take whole reserved pods of their zone
        for z in sorted(span_zones):
            idx = np.flatnonzero((self.var_kind == 1) & (self.var_place == z))
            c = list(idx)
            v = [order[a].nodes for a in self.var_jc[idx].tolist()]
            for k in self.u_classes:
                if site.class_zone[k] == z:
                    c.append(u_index[k])
                    v.append(-float(site.class_nodes[k]))
            add_row(np.array(c), np.array(v, dtype=float), 0.0, f"zone-{z}-span")
        # power rows
        cluster_c = site.cluster.constraints
        class_of_pod = np.zeros(site.cluster.num_pods, dtype=np.int64)
        for k, pods in enumerate(site.class_pods):
            class_of_pod[pods] = k
        self.power_rows: list[int] = []
        candidate_rows = list(site.zone_rows) + sorted(
            i for rows_ in site.binding_pod_rows.values() for i in rows_)
        # Rows that load every place alike are parallel (a hall's switchboard and its
        # cooling plant, both coefficient 1): only the tightest of them can bind.
        tightest: dict[tuple, int] = {}
        for i in candidate_rows:
            coef_pod = site.row_pod_coef[i]
            signature = tuple(sorted(coef_pod.items()))
            j = tightest.get(signature)
            if j is None or site.slack_w[i] < site.slack_w[j]:
                tightest[signature] = i
        candidate_rows = sorted(tightest.values())
        for i in candidate_rows:
            coef_pod = site.row_pod_coef[i]
            coef_class = np.zeros(site.num_classes)
            for p, val in coef_pod.items():
                k = class_of_pod[p]
                coef_class[k] = max(coef_class[k], val)
            coef_zone = np.zeros(site.num_zones)
            for k in range(site.num_classes):
                if site.class_spannable[k]:
                    z = site.class_zone[k]
                    coef_zone[z] = max(coef_zone[z], coef_class[k])
            # a variable's place is a pod class (kind 0) or a zone (kind 1, spanning)
            coef_var = np.empty(self.var_kind.size)
            on_pods = self.var_kind == 0
            coef_var[on_pods] = coef_class[self.var_place[on_pods]]
            coef_var[~on_pods] = coef_zone[self.var_place[~on_pods]]
            idx = np.flatnonzero(coef_var > 0)
            if not idx.size:
                continue
            load = coef_var[idx] * self.var_power_w[idx]
            limit = float(site.slack_w[i])
            # the most the queue could add to this row: every job at its highest load
            worst = np.zeros(len(order))
            np.maximum.at(worst, self.var_jc[idx], load)
            counts = np.array([len(jc.jobs) for jc in order], dtype=float)
            if float((worst * counts).sum()) <= limit:
                continue
            self.power_rows.append(i)
            add_row(idx, load, limit, cluster_c.names[i])
        self.n_rows = r
        if r:
            self.A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                           np.concatenate(cols))), shape=(r, n))
        else:
            self.A = sp.csr_matrix((0, n))
        self.ub = np.array(ub, dtype=float)
        self.c = np.concatenate([-self.var_value, np.zeros(n_u)])
        self.var_ub = np.concatenate([
            np.array([len(order[a].jobs) for a in var_jc], dtype=float),
            site.class_count[self.u_classes].astype(float)])

    def item_size(self, jc: _JobClass, k: int) -> int:
        """GPUs job class ``jc`` counts for in pod class ``k``'s capacity rows.

        Below a node: its size rounded up to a power of two (sizes that divide each
        other pack exactly).  Whole nodes: the same rounding when the class has several
        pods (bin packing over them), the exact size in a class of one pod (one bin:
        the sum is exact).
        """
        if jc.gpus <= self.site.G or self.site.class_count[k] > 1:
            return jc.size
        return jc.gpus

    def threshold(self, k: int, size: int) -> int:
        """The size-class row an item of ``size`` GPUs counts in first, in class ``k``."""
        return size if self.site.class_count[k] > 1 else min(size, self.site.G)

    # ---- solving ----------------------------------------------------------------------

    def solve(self, time_limit_s: float, mip_rel_gap: float, exact_max_vars: int,
              extra: int = 50) -> "_Result":
        """LP relaxation and fixing first, then the full MILP if it is small enough.

        Both are exact solves of the same model; the better incumbent and the tighter
        bound are kept.  ``time_limit_s`` is the budget of the whole sequence.
        """
        deadline = time.perf_counter() + time_limit_s
        n = self.n_y + self.n_u
        if self.n_y == 0:
            return _Result(self, np.zeros(n), "infeasible", 0.0, "none", {})
        stats: dict[str, Any] = {"variables": n, "integer_variables": n, "rows": self.n_rows,
                                 "pod_classes": self.site.num_classes,
                                 "job_classes": len(self.job_classes),
                                 "power_rows": len(self.power_rows)}
        cons = (LinearConstraint(self.A, np.full(self.n_rows, -np.inf), self.ub)
                if self.n_rows else None)
        full_method = "exact" if not self.aggregate else "pod-class aggregation"
        best_x, best_value, best_method = np.zeros(n), 0.0, "lp-fix"
        bound = math.inf
        optimal = False
        small = n <= min(exact_max_vars, 600)
        if not small:
            t = time.perf_counter()
            lp = linprog(self.c, A_ub=self.A if self.n_rows else None,
                         b_ub=self.ub if self.n_rows else None,
                         bounds=np.column_stack([np.zeros(n), self.var_ub]), method="highs",
                         # presolve costs more than it saves on this wide, shallow LP
                         options={"time_limit": max(0.05, deadline - time.perf_counter()),
                                  "presolve": False})
            stats["lp_s"] = round(time.perf_counter() - t, 3)
            if lp.x is not None:
                if lp.status == 0:
                    bound = -lp.fun
                t = time.perf_counter()
                # reduced costs: how far each variable is from being worth taking
                duals = (lp.ineqlin.marginals if self.n_rows and lp.status == 0
                         else np.zeros(self.n_rows))
                reduced = self.c - self.A.T @ duals if self.n_rows else self.c.copy()
                allowed = self._neighbourhood(lp.x, reduced, extra)
                # the restricted MILP gets a budget of its own: its first incumbents can
                # be poor, and half a second more usually brings it within 0.1%
                x = self._fix(lp.x, allowed, mip_rel_gap,
                              time.perf_counter() + time_limit_s, stats)
                stats["fix_s"] = round(time.perf_counter() - t, 3)
                fix_value = -1.0 if x is None else float(-self.c @ x)
                if fix_value < (1 - 10 * max(mip_rel_gap, 1e-4)) * bound:
                    # no incumbent in time, or a poor one: round the LP too (fast,
                    # always feasible) and keep the better
                    t = time.perf_counter()
                    rounded = self._round(lp.x, allowed, reduced)
                    stats["round_s"] = round(time.perf_counter() - t, 3)
                    if float(-self.c @ rounded) > fix_value:
                        x = rounded
                        stats["kept"] = "rounding"
                best_x, best_value = x, float(-self.c @ x)
        lp_gap = (bound - best_value) / max(bound, 1e-9) if math.isfinite(bound) else 1.0
        if (n <= exact_max_vars and lp_gap > mip_rel_gap
                and (small or deadline - time.perf_counter() > 0.05)):
            t = time.perf_counter()
            res = milp(self.c, constraints=cons, bounds=Bounds(np.zeros(n), self.var_ub),
                       integrality=np.ones(n),
                       options={"time_limit": max(0.05, deadline - time.perf_counter())
                                if not small else max(time_limit_s, 0.05),
                                "mip_rel_gap": mip_rel_gap})
            stats["full_s"] = round(time.perf_counter() - t, 3)
            dual = getattr(res, "mip_dual_bound", None)
            if dual is not None and math.isfinite(dual):
                bound = min(bound, -dual)
            if res.x is not None:
                x = np.rint(res.x)
                value = float(-self.c @ x)
                if value >= best_value:
                    best_x, best_value, best_method = x, value, full_method
                optimal = res.status == 0
        if not math.isfinite(bound):
            bound = best_value
        bound = max(bound, best_value)
        gap = (bound - best_value) / max(bound, 1e-9)
        status = "optimal" if optimal or gap <= mip_rel_gap + 1e-9 else "time_limit"
        if best_value == 0 and not np.any(best_x):
            status = "optimal" if optimal else "no-solution"
        return _Result(self, best_x, status, bound, best_method, stats)

    def _neighbourhood(self, x_lp: np.ndarray, reduced: np.ndarray,
                       extra: int) -> np.ndarray:
        """Job variables free in the restricted MILP.

        The LP's support, the neighbouring cap levels of each of its variables, and the
        ``extra`` variables outside it with the smallest reduced cost (the ones closest
        to being worth taking: they fill the room a rounded-out job leaves).
        """
        support = np.flatnonzero(x_lp[:self.n_y] > 1e-6)
        key = {(int(self.var_jc[v]), int(self.var_kind[v]), int(self.var_place[v]),
                int(self.var_level[v])): int(v) for v in range(self.n_y)}
        allowed = set(support.tolist())
        for v in support:
            a, kind, place, level = (int(self.var_jc[v]), int(self.var_kind[v]),
                                     int(self.var_place[v]), int(self.var_level[v]))
            for other in (level - 1, level + 1):
                w = key.get((a, kind, place, other))
                if w is not None:
                    allowed.add(w)
        outside = np.setdiff1d(np.arange(self.n_y), np.fromiter(allowed, dtype=np.int64,
                                                                  count=len(allowed)))
        if extra > 0 and outside.size:
            take = outside[np.argsort(reduced[outside], kind="stable")[:extra]]
            allowed.update(take.tolist())
        return np.array(sorted(allowed), dtype=np.int64)

    def _round(self, x_lp: np.ndarray, allowed: np.ndarray,
               reduced: np.ndarray) -> np.ndarray:
        """A feasible integer point near the LP optimum, fast (the fallback incumbent).

        Job variables are rounded down; each zone then reserves the fewest whole pods
        its spanning jobs need; while a row is broken, the cheapest job variable in it
        gives one job back; then jobs are added greedily wherever every row still
        holds, smallest reduced cost first (the LP's prices say which are worth most
        for the power and room they take).
        """
        n = self.n_y + self.n_u
        x = np.zeros(n)
        x[:self.n_y] = np.floor(x_lp[:self.n_y] + 1e-9)
        if not self.n_rows:
            return x
        site = self.site
        spanning = self.var_kind == 1
        for z in set(self.var_place[spanning].tolist()):
            on_z = np.flatnonzero(spanning & (self.var_place == z))
            need = float(sum(self.job_classes[self.var_jc[v]].nodes * x[v] for v in on_z))
            for i, k in enumerate(self.u_classes):
                if site.class_zone[k] != z or need <= 0:
                    continue
                take = min(int(site.class_count[k]), math.ceil(need / site.class_nodes[k]))
                x[self.n_y + i] = take
                need -= take * site.class_nodes[k]
        A = self.A.tocsc()
        load = self.A @ x
        value = -self.c
        for _ in range(10 * self.n_y + 10):
            broken = np.flatnonzero(load > self.ub + 1e-6)
            if not broken.size:
                break
            row = self.A.getrow(broken[0])
            candidates = [v for v, a in zip(row.indices, row.data)
                          if v < self.n_y and a > 0 and x[v] > 0]
            if not candidates:
                return np.zeros(n)
            v = min(candidates, key=lambda v: value[v])
            x[v] -= 1
            load -= A.getcol(v).toarray().ravel()
        # greedy fill over the LP's neighbourhood, most attractive at the LP's prices
        # first; a spanning job may reserve more whole pods of its zone to fit
        u_of_zone: dict[int, list[int]] = defaultdict(list)
        for i, k in enumerate(self.u_classes):
            u_of_zone[int(site.class_zone[k])].append(self.n_y + i)

        def column(v: int) -> tuple[np.ndarray, np.ndarray]:
            return A.indices[A.indptr[v]:A.indptr[v + 1]], A.data[A.indptr[v]:A.indptr[v + 1]]

        for v in allowed[np.argsort(reduced[allowed], kind="stable")]:
            rows_v, data_v = column(v)
            while x[v] < self.var_ub[v]:
                trial = load.copy()
                trial[rows_v] += data_v
                extra: list[int] = []
                if self.var_kind[v] == 1:
                    # reserve whole pods until the zone's spanning row holds again
                    for w in u_of_zone[int(self.var_place[v])]:
                        rows_w, data_w = column(w)
                        while (np.any(trial[rows_w] > self.ub[rows_w] + 1e-6)
                               and np.any(data_w < 0)
                               and x[w] + len(extra) < self.var_ub[w]):
                            trial[rows_w] += data_w
                            extra.append(w)
                if np.any(trial > self.ub + 1e-6):
                    break
                x[v] += 1
                for w in extra:
                    x[w] += 1
                load = trial
        return x

    def _fix(self, x_lp: np.ndarray, allowed: np.ndarray, mip_rel_gap: float,
             deadline: float, stats: dict[str, Any]) -> np.ndarray | None:
        """The restricted MILP around an LP optimum (relax-and-fix); None if it fails.

        Only the LP's support and, for each variable in it, the neighbouring cap levels
        of the same job class and place stay free (so a job can step a level down or up
        to make room); every other job variable is fixed at 0.  A vertex of the LP has
        at most as many fractional job classes as binding coupling rows, so this is a
        small MILP whose optimum is usually within a fraction of a percent of the LP.
        """
        n = self.n_y + self.n_u
        frac = np.abs(x_lp - np.rint(x_lp)) > 1e-6
        cols = np.concatenate([allowed, np.arange(self.n_y, n, dtype=np.int64)])
        stats["lp_fractional"] = int(frac[:self.n_y].sum())
        stats["restricted_vars"] = int(cols.size)
        # solve over the allowed columns only: handing HiGHS thousands of columns fixed
        # at zero costs more than the restricted solve itself
        sub_cons = (LinearConstraint(self.A[:, cols], np.full(self.n_rows, -np.inf), self.ub)
                    if self.n_rows else None)
        res = milp(self.c[cols], constraints=sub_cons,
                   bounds=Bounds(np.zeros(cols.size), self.var_ub[cols]),
                   integrality=np.ones(cols.size),
                   options={"time_limit": max(0.1, deadline - time.perf_counter()),
                            "mip_rel_gap": mip_rel_gap})
        if res.x is None:
            return None
        x = np.zeros(n)
        x[cols] = np.rint(res.x)
        return x


class _Result:
    """Decode a solution vector into an Allocation (pods chosen, ids admitted)."""

    def __init__(self, model: _Model, x: np.ndarray, status: str, bound: float, method: str,
                 stats: dict[str, Any]) -> None:
        self.model, self.x, self.status, self.bound, self.method = model, x, status, bound, method
        self.stats = stats

    def finish(self, start: float, job_by_id: dict[str, Job]) -> Allocation:
        m, site = self.model, self.model.site
        G = site.G
        y = self.x[:m.n_y]
        u = self.x[m.n_y:]
        dropped = dict(m.dropped)
        cap_w: dict[str, int] = {}
        pod: dict[str, int] = {}
        spans: dict[str, tuple[int, ...]] = {}
        # per job class: which (kind, place, cap) each admitted job gets, earliest jobs
        # first and highest caps first
        choices: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for v in np.flatnonzero(y > 0.5):
            jc = m.job_classes[m.var_jc[v]]
            choices[int(m.var_jc[v])].extend(
                [(int(m.var_kind[v]), int(m.var_place[v]), jc.caps[m.var_level[v]])]
                * int(y[v]))
        by_class: dict[int, list[tuple[Job, int]]] = defaultdict(list)   # pod class -> jobs
        by_zone: dict[int, list[tuple[Job, int]]] = defaultdict(list)
        for a, jc in enumerate(m.job_classes):
            picks = sorted(choices.get(a, []), key=lambda t: -t[2])
            for job, pick in zip(jc.jobs, picks):
                kind, place, cap = pick
                cap_w[job.id] = cap
                (by_zone[place] if kind == 1 else by_class[place]).append(
                    (job, jc.size if kind == 1 else m.item_size(jc, place)))
            for job in jc.jobs[len(picks):]:
                dropped.setdefault(job.id, "not admitted: the optimum leaves it out (power or "
                                           "capacity is worth more to the jobs admitted)")
        # reserved pods for spanning jobs: the first u_k members of class k
        reserved: dict[int, list[int]] = defaultdict(list)
        free_members: dict[int, list[int]] = {}
        for k, pods in enumerate(site.class_pods):
            free_members[k] = list(pods)
        for i, k in enumerate(m.u_classes):
            take = int(round(u[i]))
            reserved[int(site.class_zone[k])].extend(free_members[k][:take])
            free_members[k] = free_members[k][take:]
        order_span: list[str] = []
        for z, items in by_zone.items():
            nodes: list[int] = []
            for p in reserved[z]:
                nodes.extend(site.pod_usable_empty_nodes[p])
            i = 0
            for job, _ in sorted(items, key=lambda t: -t[0].gpus):
                k = job.gpus // G
                take = nodes[i:i + k]
                i += k
                if len(take) < k:  # cannot happen for a feasible solution; say so if it does
                    dropped[job.id] = "not placed: the pods reserved for spanning jobs ran out"
                    cap_w.pop(job.id, None)
                    continue
                spans[job.id] = tuple(sorted(take))
                pod[job.id] = int(site.cluster.node_pod[take[0]])
                order_span.append(job.id)
        # jobs inside one pod: first-fit decreasing over the class's remaining members
        order_big: list[tuple[int, str]] = []
        order_small: list[tuple[int, str]] = []
        for k, items in by_class.items():
            members = free_members[k]
            empty_left = {p: int(site.pod_usable_empty[p]) for p in members}
            partial_left = {p: list(site.pod_partials[p]) for p in members}
            for job, size in sorted(items, key=lambda t: (-t[1], -t[0].gpus)):
                chosen = None
                for p in members:
                    if job.gpus > G:
                        if empty_left[p] >= size // G:
                            empty_left[p] -= size // G
                            chosen = p
                    else:
                        fits = [f for f in partial_left[p] if f >= size]
                        if fits:
                            f = min(fits)
                            partial_left[p].remove(f)
                            if f - size:
                                partial_left[p].append(f - size)
                            chosen = p
                        elif empty_left[p] >= 1:
                            empty_left[p] -= 1
                            if G - size:
                                partial_left[p].append(G - size)
                            chosen = p
                    if chosen is not None:
                        break
                if chosen is None:  # rounding slack exhausted: let the engine decide
                    chosen = members[0]
                pod[job.id] = chosen
                (order_big if job.gpus > G else order_small).append((-job.gpus, job.id))
        admitted = tuple(order_span + [i for _, i in sorted(order_big, key=lambda t: t[0])]
                         + [i for _, i in sorted(order_small, key=lambda t: t[0])])
        cap_w = {i: cap_w[i] for i in admitted}
        objective = float(sum(job_by_id[i].weight * job_by_id[i].gpus
                              * job_by_id[i].throughput(cap_w[i]) for i in admitted))
        status = self.status
        if not admitted and status in ("optimal", "infeasible"):
            status = "infeasible"
            for job_id, why in list(dropped.items()):
                if why.startswith("not admitted"):
                    dropped[job_id] = _no_power_reason(m, job_by_id[job_id])
        bound = max(self.bound, objective) if math.isfinite(self.bound) else objective
        gap = (bound - objective) / max(bound, 1e-9) if bound > 0 else 0.0
        stats = dict(self.stats)
        return Allocation(status, admitted, pod, cap_w, objective, bound, gap,
                          time.perf_counter() - start, dropped, self.method, job_by_id, spans,
                          stats)


def _no_power_reason(model: _Model, job: Job) -> str:
    """Name a row that keeps ``job`` out even at its lowest cap, alone, if there is one."""
    a = next((a for a, jc in enumerate(model.job_classes) if job in jc.jobs), None)
    if a is not None and model.n_rows:
        idx = np.flatnonzero(model.var_jc == a)
        names = set(model.site.cluster.constraints.names)
        A = model.A.tocsc()
        lowest = idx[model.var_level[idx] == model.var_level[idx].max()]
        for v in lowest:
            col = A.getcol(v)
            for r, val in zip(col.indices, col.data):
                if val > model.ub[r] + 1e-9 and model.row_names[r] in names:
                    return (f"no power: even at {job.min_cap_w} W it would break "
                            f"{model.row_names[r]!r}")
    return "not admitted: no combination of the queue fits the limits left"


# ======================================================================================
# apply
# ======================================================================================

def apply(engine: Any, allocation: Allocation) -> dict[str, Placement]:
    """Place the admitted jobs of ``allocation`` on ``engine``, in its order.

    Each job goes to its planned pod with ``engine.place_at_most(job, cap, pod=pod)``
    (its ``min_cap_w`` kept, so a rack row can still step it down); a job larger than a
    pod goes on its planned nodes with the engine's checked ``place_on``, at the planned
    cap or, failing that, the next grid caps down to ``min_cap_w``.

    Returns
    -------
    dict of str to Placement
        The placements made.  A job the engine refuses is not in it; its id and the
        engine's reason are added to ``allocation.dropped`` (the Allocation is frozen,
        its dict is not).  Never raises for a refused job.
    """
    if not isinstance(allocation, Allocation):
        raise AllocationError(f"apply needs an Allocation, got {type(allocation).__name__}")
    placed: dict[str, Placement] = {}
    refused: dict[str, str] = {}
    power = engine.cluster.power
    with engine._lock:
        for job_id in allocation.admitted:
            job = allocation.jobs[job_id]
            cap = allocation.cap_w[job_id]
            planned = job.replace(max_cap_w=cap, min_cap_w=min(job.min_cap_w, cap))
            if job_id in engine:
                refused[job_id] = "already running on the engine"
                continue
            nodes = allocation.spans.get(job_id)
            if nodes is not None:
                placement = None
                reason = "its planned nodes are no longer free or powered"
                for c in power.cap_grid_w(cap, planned.min_cap_w):
                    try:
                        placement = engine.place_on(job, nodes, c)
                        break
                    except PlacementError as exc:
                        reason = str(exc)
                if placement is None:
                    refused[job_id] = f"refused by the engine: {reason}"
                else:
                    placed[job_id] = placement
                continue
            # the engine keeps the job's own cap range, so rebalance_caps may raise it later
            placement = engine.place_at_most(job, cap, pod=allocation.pod[job_id])
            if placement is None:
                why = engine.explain(planned, pod=allocation.pod[job_id])
                refused[job_id] = f"refused by the engine: {why.message}"
            else:
                placed[job_id] = placement
    allocation.dropped.update(refused)
    return placed


# ======================================================================================
# rebalance_caps
# ======================================================================================

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
        raise AllocationError(f"apply={apply!r} must be True or False")
    start = time.perf_counter()
    cluster = engine.cluster
    power = cluster.power
    c = cluster.constraints
    with engine._lock:
        jobs = engine.jobs()
        placements = engine.placements()
        rack_power = engine.rack_power_w().astype(float)
    if not jobs:
        return CapPlan({}, 0.0, 0.0, {}, [], time.perf_counter() - start, "empty")
    n = len(jobs)
    # g[r, j]: GPUs of job j in rack r; rack power = base + g @ cap
    rows_r: list[int] = []
    cols_j: list[int] = []
    vals_g: list[float] = []
    node_rack = cluster.node_rack
    for j, p in enumerate(placements):
        racks, counts = np.unique(node_rack[list(p.nodes)], return_counts=True)
        rows_r.extend(racks.tolist())
        cols_j.extend([j] * len(racks))
        vals_g.extend((counts * p.gpus_per_node).tolist())
    g = sp.csr_matrix((vals_g, (rows_r, cols_j)), shape=(cluster.num_racks, n))
    caps_now = np.array([p.cap_w for p in placements], dtype=float)
    base = rack_power - g @ caps_now
    M = (c.A @ g).tocsr()                  # row load per W of each job's cap
    room = c.b - c.A @ base
    keep = np.flatnonzero(np.diff(M.indptr) > 0)
    M = M[keep]
    room = room[keep]
    # variables: caps (n), throughput t (n)
    lo = np.array([j.min_cap_w for j in jobs], dtype=float)
    hi = np.array([j.max_cap_w for j in jobs], dtype=float)
    wg = np.array([j.weight * j.gpus for j in jobs], dtype=float)
    chord_r: list[int] = []
    chord_c: list[int] = []
    chord_v: list[float] = []
    chord_b: list[float] = []
    k = 0
    t_hi = np.zeros(n)
    # chords of s over the cap grid, per (max, min, sensitivity): most jobs share them
    chord_cache: dict[tuple[int, int, float], tuple[float, np.ndarray, np.ndarray]] = {}
    for j, job in enumerate(jobs):
        key = (job.max_cap_w, job.min_cap_w, job.sensitivity)
        if key not in chord_cache:
            grid = np.array(power.cap_grid_w(job.max_cap_w, job.min_cap_w)[::-1], dtype=float)
            s = np.atleast_1d(throughput(grid, job.sensitivity))
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
    t_lo = np.array([float(throughput(j.min_cap_w, j.sensitivity)) for j in jobs])
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
        return CapPlan({j.id: p.cap_w for j, p in zip(jobs, placements)},
                       float(sum(wg * np.array([jb.throughput(p.cap_w) for jb, p in
                                                zip(jobs, placements)]))),
                       0.0, {}, [], time.perf_counter() - start, f"lp failed: {res.message}")
    cap_lp = res.x[:n]
    step = power.cap_step_w
    snapped = np.empty(n, dtype=np.int64)
    for j, job in enumerate(jobs):
        x = min(cap_lp[j] + 1e-6, job.max_cap_w)
        grid_cap = job.max_cap_w - step * math.ceil((job.max_cap_w - x) / step - 1e-9)
        snapped[j] = max(job.min_cap_w, grid_cap)
    snapped = _repair(cluster, jobs, g, base, snapped)
    prices = -res.ineqlin.marginals[:M.shape[0]]   # objective per kW of room
    duals: dict[str, float] = {}
    for r, price in zip(keep, prices):
        if price > 1e-9:
            duals[c.names[r]] = float(price)
    binding = sorted(duals, key=lambda name: -duals[name])
    cap_w = {job.id: int(cap) for job, cap in zip(jobs, snapped)}
    objective = float(sum(job.weight * job.gpus * job.throughput(cap_w[job.id])
                          for job in jobs))
    plan = CapPlan(cap_w, objective, float(-res.fun), duals, binding,
                   time.perf_counter() - start)
    if apply:
        plan.apply(engine)
    return plan


def _repair(cluster: Any, jobs: list[Job], g: sp.csr_matrix, base: np.ndarray,
            caps: np.ndarray) -> np.ndarray:
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
        bad = np.flatnonzero(c.load_units(rack_power) > c.b_units)
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
