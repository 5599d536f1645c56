"""The live state reduced for the MILP: rows by where they sit, pods, pod classes."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..spec import COEF_SCALE


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
        A_units = c.A_units  # same sparsity as A, so entry lo of both is one coefficient
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
        self.zone_rows.extend(int(i) for i in c.zone_rows.tolist())
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
            can_bind = [i for i in self.pod_rows.get(p, [])
                        if self.row_pod_coef[i][p] * potential > self.slack_w[i]]
            if can_bind:
                self.binding_pod_rows[p] = can_bind
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
