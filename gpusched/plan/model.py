"""The allocation MILP: its variables and rows, built from a :class:`_Site`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..job import Job
from .site import _Site


def cap_levels_w(power: Any, job: Job) -> list[int]:
    """The caps a job's variables choose from, highest first: the site's cap grid
    between the job's caps, plus the breakpoints of its curve (whole watts), so that
    chords between levels are the curve's own segments for a measured table."""
    caps = set(power.cap_grid_w(job.max_cap_w, job.min_cap_w))
    tdp = power.gpu_tdp_w
    for c in job.curve.breakpoints_w(job.min_cap_w, job.max_cap_w, tdp):
        if abs(c - round(c)) < 1e-6:
            caps.add(int(round(c)))
    return sorted(caps, reverse=True)


def _pow2_at_least(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


@dataclass
class _JobClass:
    jobs: list[Job]
    gpus: int
    size: int            # rounded size in GPUs (power of two, or pow2 nodes * G)
    nodes: int           # whole nodes (0 for a job of one node or less)
    caps: list[int]      # grid, highest first
    value: list[float]   # weight * gpus * s(cap) per cap


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
            key = ((job.gpus, job.max_cap_w, job.min_cap_w, job.weight, job.curve)
                   if aggregate else (job.id,))
            jc = classes.get(key)
            if jc is None:
                if job.gpus <= G:
                    size, nodes = min(_pow2_at_least(job.gpus), G), 0
                else:
                    nodes = job.gpus // G
                    size, nodes = G * _pow2_at_least(nodes), nodes
                caps = cap_levels_w(power, job)
                value = (job.weight * job.gpus
                         * np.asarray(power.speed(job, np.array(caps, dtype=float)))
                         ).reshape(-1).tolist()
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
            span_cols: list[int] = idx.tolist()
            span_vals = [order[a].nodes for a in self.var_jc[idx].tolist()]
            for k in self.u_classes:
                if site.class_zone[k] == z:
                    span_cols.append(u_index[k])
                    span_vals.append(-float(site.class_nodes[k]))
            add_row(np.array(span_cols), np.array(span_vals, dtype=float), 0.0,
                    f"zone-{z}-span")
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
