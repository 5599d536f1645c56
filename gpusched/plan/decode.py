"""Decoding a MILP solution vector into an :class:`~gpusched.plan.Allocation`."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from ..job import Job
from .result import Allocation

if TYPE_CHECKING:
    from .model import _Model


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
            n_take = int(round(u[i]))
            reserved[int(site.class_zone[k])].extend(free_members[k][:n_take])
            free_members[k] = free_members[k][n_take:]
        order_span: list[str] = []
        for z, items in by_zone.items():
            nodes: list[int] = []
            for p in reserved[z]:
                nodes.extend(site.pod_usable_empty_nodes[p])
            i = 0
            for job, _ in sorted(items, key=lambda t: -t[0].gpus):
                k_nodes = job.gpus // G
                take = nodes[i:i + k_nodes]
                i += k_nodes
                if len(take) < k_nodes:  # cannot happen for a feasible solution; say so if it does
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
        power = site.power
        objective = float(sum(job_by_id[i].weight * job_by_id[i].gpus
                              * power.speed(job_by_id[i], cap_w[i]) for i in admitted))
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
