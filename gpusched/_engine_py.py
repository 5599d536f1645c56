"""The pure-Python engine twin: the reference, the fallback and the benchmark baseline.

It runs the same algorithm over the same indexes as the Cython core (``ext/_engine.pyx``),
written as plain Python.  Both must return identical placements for every input; the
differential and stateful tests hold them to it, and ``gpusched._core.EngineCoreAPI``
writes down the methods both provide.  The .pyx has the same sections in the same
order, and this module's ``_name`` is its cdef ``name`` (``_search_node`` there is
``search_node``), so the two can be read side by side.

The algorithm (DESIGN.md, "Engine semantics")
---------------------------------------------
A job of g <= G GPUs (G = GPUs per node) goes on one node; a larger one on k = g / G
whole, free nodes.  Candidates are visited in locality order, and for each one the
highest cap on the job's grid (max, max - 25, ..., min) at which every row of A·P <= b
still holds is computed in closed form.  The winner is the candidate with the highest
cap; among equal caps, the first in locality order.  That is exactly what "try the
highest cap on every candidate, then step down 25 W" gives, without the step loop.

Locality order:
- g <= G: best fit, i.e. nodes by (free GPUs ascending, node index).  Whether a node
  fits depends only on its rack and on whether it is empty, so one node per rack and
  free count is looked at.  And when a row keeps a rack's cap at or below the best so
  far, every rack of the run of consecutive racks that row treats alike is skipped too
  (``Constraints.rack_rows_run_end``): they cannot beat it, and ties go to the first.
- k nodes fitting in one pod: pods by (racks needed, free nodes, pod index).  Inside a
  pod, racks with the most empty nodes are taken whole while the rest of the job is
  larger than the next one, and the remainder goes to the rack with the fewest empty
  nodes that still holds it (best fit): the fewest racks, and the least fragmentation.
- k nodes needing several pods: for each cap on the grid, highest first, pods by (free
  nodes descending, index) taken whole unless that would break a row at the cap, and
  the remainder in the best-fitting pod that fits (chosen inside as above).  The first
  cap met wins; the cap is then computed exactly for the nodes chosen.

Node states (DESIGN.md, "A site that changes")
----------------------------------------------
Every node is UP, DRAINING, DOWN or SPARE (a node that is up but held as a hot spare).
Only an UP node is *open*: the free lists, the empty-node counts of racks and pods and
the pod histograms count open nodes only, so no search ever sees another one, and
nothing else in the search changes.  ``_set_node_state`` moves a node between states
and adds the power the engine layer says the change costs (a down node draws
``node_down_w`` instead of its idle power; a spare holds its busy power at the spare
cap), so every row's slack stays b - A·P.  The limits b live in the core too
(``_set_limit_units``): a lowered limit may leave a row's slack negative, and a negative
slack refuses every candidate that adds load to that row, as the cap formulas below
already do for a room below zero.  The engine layer (``gpusched/_site.py``) decides
what fails, drains, repairs and spares; the core only keeps the books.

Units: rack power in integer watts; row slack in COEF_SCALE-units (coefficient
millionths times watts), so every sum is exact.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from ._checks import (check_batch, check_job, check_pod, check_release_batch,
                      duplicate_job, gpus_per_node_for, unknown_job)
from .job import Job, Placement

if TYPE_CHECKING:
    from .spec import Cluster

__all__ = ["EngineCore", "FOUND", "NO_CAPACITY", "NO_POWER", "UP", "DRAINING", "DOWN",
           "SPARE", "NODE_STATE_NAMES"]

# search() status codes
FOUND = 0
NO_CAPACITY = 1
NO_POWER = 2

# node states (node_state_codes() holds these); only UP nodes are open to placement
UP = 0
DRAINING = 1
DOWN = 2
SPARE = 3
NODE_STATE_NAMES = ("up", "draining", "down", "spare")


class EngineCore:
    """Live state of one cluster, with place and release (pure Python)."""

    backend = "python"

    def __init__(self, cluster: "Cluster") -> None:
        self._cluster = cluster
        power = cluster.power
        self._G = power.gpus_per_node
        self._gpu_idle_w = power.gpu_idle_w
        self._busy_step_w = power.busy_step_w
        self._cap_step_w = power.cap_step_w
        self._node_rack: list[int] = cluster.node_rack.tolist()
        self._rack_first: list[int] = cluster.rack_first_node.tolist()
        self._rack_pod: list[int] = cluster.rack_pod.tolist()
        self._pod_racks: list[list[int]] = [[] for _ in range(cluster.num_pods)]
        for r, p in enumerate(self._rack_pod):
            self._pod_racks[p].append(r)
        c = cluster.constraints
        indptr = c.rack_rows_indptr.tolist()
        index = c.rack_rows_index.tolist()
        coef = c.rack_rows_coef_units.tolist()
        # rack r -> [(row, coefficient units)], rows ascending
        self._rack_rows: list[list[tuple[int, int]]] = [
            list(zip(index[indptr[r]:indptr[r + 1]], coef[indptr[r]:indptr[r + 1]]))
            for r in range(cluster.num_racks)]
        run_end = c.rack_rows_run_end.tolist()
        # rack r -> for each of its rows, the end of the run of racks that share it alike
        self._rack_run_end: list[list[int]] = [run_end[indptr[r]:indptr[r + 1]]
                                               for r in range(cluster.num_racks)]
        # each pod's histogram runs to its own largest rack, not the site's: a site of
        # many one-rack pods and one big rack would otherwise take pods x big-rack slots
        self._pod_max_rack_nodes: list[int] = [0] * cluster.num_pods
        for r, n in enumerate(cluster.rack_nodes.tolist()):
            p = self._rack_pod[r]
            self._pod_max_rack_nodes[p] = max(self._pod_max_rack_nodes[p], n)
        # counts the commits: place searches again if one ran during its search (a
        # finaliser set off by the search's own allocations may place or release)
        self._commits = 0
        self._lock = threading.RLock()
        self._reset()

    @property
    def cluster(self) -> "Cluster":
        """The site this engine places on (read-only, as in the compiled core)."""
        return self._cluster

    def _reset(self) -> None:
        """Empty the engine: every GPU free, every job gone."""
        cluster, G = self.cluster, self._G
        rack_nodes = cluster.rack_nodes.tolist()
        self._node_free: list[int] = [G] * cluster.num_nodes
        # _free_nodes[f]: nodes with exactly f free GPUs, ascending (f = 1..G)
        self._free_nodes: list[list[int]] = [[] for _ in range(G + 1)]
        self._free_nodes[G] = list(range(cluster.num_nodes))
        self._rack_free_nodes: list[int] = list(rack_nodes)
        self._pod_free_nodes: list[int] = cluster.pod_nodes.tolist()
        # _pod_rack_hist[p][f]: racks of pod p with exactly f empty nodes
        self._pod_rack_hist = [[0] * (m + 1) for m in self._pod_max_rack_nodes]
        for r, n in enumerate(rack_nodes):
            self._pod_rack_hist[self._rack_pod[r]][n] += 1
        self._rack_power_w: list[int] = cluster.idle_rack_power_w.tolist()
        c = cluster.constraints
        self._slack: list[int] = (c.b_units - c.load_units(cluster.idle_rack_power_w)).tolist()
        self._free_gpus = cluster.num_gpus
        self._jobs: dict[str, tuple[Job, Placement]] = {}
        self._node_state: list[int] = [UP] * cluster.num_nodes
        self._limit_units: list[int] = c.b_units.tolist()

    # ==================================================================================
    # Public hot path
    # ==================================================================================

    def place(self, job: Job, pod: Any = None) -> Placement | None:
        """Place ``job`` (inside ``pod`` if given) at the highest feasible cap, or None."""
        with self._lock:
            job_id, gpus, max_cap, min_cap = check_job(self.cluster, job, self._jobs)
            pod_index = -1 if pod is None else check_pod(self.cluster, pod)
            return self._place_checked(job, job_id, gpus, max_cap, min_cap, pod_index)

    def _place_checked(self, job: Job, job_id: str, gpus: int, max_cap: int, min_cap: int,
                       pod_index: int) -> Placement | None:
        """Search and commit a checked job; the caller holds the lock."""
        # Nothing but plain locals between the search and its commit: no caller code can
        # take the chosen nodes in between.  The search itself allocates, so a finaliser
        # may run inside it and place or release; then its answer is stale: search again.
        while True:
            commits = self._commits
            status, cap, nodes, _row = self._search(gpus, max_cap, min_cap, pod_index)
            if self._commits == commits:
                break
        if status != FOUND:
            if job_id in self._jobs:  # placed by a finaliser meanwhile
                raise duplicate_job(job_id)
            return None
        gpn = gpus_per_node_for(gpus, self._G)
        self._commit(nodes, gpn, cap, +1)
        placement = Placement(job_id, tuple(nodes), gpn, cap)
        record = (job, placement)
        if self._jobs.setdefault(job_id, record) is not record:
            self._commit(nodes, gpn, cap, -1)  # a finaliser placed the same id meanwhile
            raise duplicate_job(job_id)
        return placement

    def release(self, job_id: str) -> Placement:
        """Free exactly what ``job_id`` holds; returns its placement."""
        with self._lock:
            # keys are exact str, so an id of any other type (a str subclass with its own
            # __eq__ or __hash__ too) is unknown, and is never hashed
            if type(job_id) is not str or job_id not in self._jobs:
                raise unknown_job(job_id)
            _job, placement = self._jobs.pop(job_id)
            self._commit(placement.nodes, placement.gpus_per_node, placement.cap_w, -1)
            return placement

    def place_many(self, jobs: Iterable[Job], pod: Any = None) -> list[Placement | None]:
        """``[place(j, pod) for j in jobs]``, under one lock acquisition.

        The whole batch is checked first (every job, the pod, no id twice), so a bad
        batch raises the error of its first bad job and places nothing.
        """
        with self._lock:
            batch = list(jobs)
            check_batch(self.cluster, batch, self._jobs)
            pod_index = -1 if pod is None else check_pod(self.cluster, pod)
            out: list[Placement | None] = []
            try:
                for job in batch:
                    fields = check_job(self.cluster, job, self._jobs)
                    out.append(self._place_checked(job, *fields, pod_index))
            except BaseException:  # not reached unless a finaliser interferes: undo
                for placement in reversed(out):
                    if placement is not None:
                        self.release(placement.job_id)
                raise
            return out

    def release_many(self, job_ids: Iterable[str]) -> list[Placement]:
        """``[release(i) for i in job_ids]``, under one lock acquisition.

        Every id is checked first (placed, and not twice), so a bad batch raises the
        error of its first bad id and releases nothing.
        """
        with self._lock:
            batch = list(job_ids)
            check_release_batch(batch, self._jobs)
            return [self.release(job_id) for job_id in batch]

    # ==================================================================================
    # Search
    # ==================================================================================

    def _search(self, gpus: int, max_cap: int, min_cap: int,
                pod: int) -> tuple[int, int, list[int], int]:
        """Find where a job of ``gpus`` GPUs goes and at which cap.

        Returns ``(status, cap_w, nodes, row)``: ``nodes`` ascending; ``row`` the row that
        limits the cap of the chosen candidate (or of the first candidate when none fits
        at ``min_cap``), -1 when no row limits it.
        """
        if gpus <= self._G:
            return self._search_node(gpus, max_cap, min_cap, pod)
        k = gpus // self._G
        if pod >= 0:
            if self._pod_free_nodes[pod] < k:
                return NO_CAPACITY, -1, [], -1
            return self._search_pods(k, max_cap, min_cap, [pod])
        eligible = [p for p, free in enumerate(self._pod_free_nodes) if free >= k]
        if eligible:
            return self._search_pods(k, max_cap, min_cap, eligible)
        if sum(self._pod_free_nodes) < k:
            return NO_CAPACITY, -1, [], -1
        return self._search_spread(k, max_cap, min_cap)

    def _search_node(self, g: int, max_cap: int, min_cap: int,
                     pod: int) -> tuple[int, int, list[int], int]:
        G = self._G
        best_cap, best_node, best_row, first_row = -1, -1, -1, -2
        for f in range(g, G + 1):
            empty = f == G
            n = self._next_in_pod(f, pod, -1) if pod >= 0 else self._next_with_free(f, 0)
            while n >= 0:
                rack = self._node_rack[n]
                cap, row, run_end = self._rack_cap(rack, g, empty, max_cap, min_cap)
                if first_row == -2:
                    first_row = row
                if cap > best_cap:
                    best_cap, best_node, best_row = cap, n, row
                    if cap == max_cap:
                        return FOUND, cap, [n], row
                if pod >= 0:
                    n = self._next_in_pod(f, pod, rack)
                else:
                    # The rest of this rack fits the same way, so skip it.  And row `row`
                    # holds every rack up to run_end at `cap` or below, no better than the
                    # best so far: skip those too (they cannot win, ties go to the first).
                    n = self._next_with_free(f, self._rack_first[max(run_end, rack + 1)])
        if best_node < 0:
            if first_row == -2:
                return NO_CAPACITY, -1, [], -1
            return NO_POWER, -1, [], first_row
        return FOUND, best_cap, [best_node], best_row

    def _next_with_free(self, f: int, pos: int) -> int:
        """Lowest node >= pos with exactly f free GPUs, or -1."""
        nodes = self._free_nodes[f]
        i = bisect_left(nodes, pos)
        return nodes[i] if i < len(nodes) else -1

    def _next_in_pod(self, f: int, pod: int, after_rack: int) -> int:
        """First node with exactly f free GPUs in the next rack of ``pod`` after after_rack."""
        node_free, rack_first, state = self._node_free, self._rack_first, self._node_state
        for r in self._pod_racks[pod]:
            if r > after_rack:
                for n in range(rack_first[r], rack_first[r + 1]):
                    if node_free[n] == f and state[n] == UP:
                        return n
        return -1

    def _search_pods(self, k: int, max_cap: int, min_cap: int,
                     pods: list[int]) -> tuple[int, int, list[int], int]:
        """Best single pod for k whole nodes among ``pods`` (each with >= k free nodes)."""
        keyed = sorted((self._racks_needed(p, k), self._pod_free_nodes[p], p) for p in pods)
        first_nodes = self._nodes_in_pod(keyed[0][2], k)
        cap, row = self._gang_cap(first_nodes, max_cap, min_cap)
        if cap == max_cap or len(keyed) == 1:
            if cap < 0:  # a job that goes nowhere has no nodes, as every NO_POWER answer
                return NO_POWER, -1, [], row
            return FOUND, cap, sorted(first_nodes), row
        best_cap, best_nodes, best_row, first_row = cap, first_nodes, row, row
        for _, _, p in keyed[1:]:
            nodes = self._nodes_in_pod(p, k)
            cap, row = self._gang_cap(nodes, max_cap, min_cap)
            if cap > best_cap:
                best_cap, best_nodes, best_row = cap, nodes, row
                if cap == max_cap:
                    break
        if best_cap < 0:
            return NO_POWER, -1, [], first_row
        return FOUND, best_cap, sorted(best_nodes), best_row

    def _racks_needed(self, pod: int, k: int) -> int:
        """Fewest racks of ``pod`` whose empty nodes add up to k (largest racks first)."""
        hist = self._pod_rack_hist[pod]
        racks = 0
        for f in range(len(hist) - 1, 0, -1):
            count = hist[f]
            if count * f >= k:
                return racks + -(-k // f)
            racks += count
            k -= count * f
        raise AssertionError("pod has fewer free nodes than asked")  # callers check first

    def _nodes_in_pod(self, pod: int, k: int) -> list[int]:
        """k empty nodes of ``pod`` on the fewest racks, the remainder best-fit."""
        racks = sorted((r for r in self._pod_racks[pod] if self._rack_free_nodes[r]),
                       key=lambda r: (-self._rack_free_nodes[r], r))
        nodes: list[int] = []
        i = 0
        while k - len(nodes) > self._rack_free_nodes[racks[i]]:
            nodes.extend(self._empty_nodes(racks[i], self._rack_free_nodes[racks[i]]))
            i += 1
        remainder = k - len(nodes)
        # best fit for the remainder among the racks not taken whole
        last = min((r for r in racks[i:] if self._rack_free_nodes[r] >= remainder),
                   key=lambda r: (self._rack_free_nodes[r], r))
        nodes.extend(self._empty_nodes(last, remainder))
        return nodes

    def _empty_nodes(self, rack: int, count: int) -> list[int]:
        """The ``count`` lowest-index empty open nodes of ``rack``."""
        G, node_free, state = self._G, self._node_free, self._node_state
        out = [n for n in range(self._rack_first[rack], self._rack_first[rack + 1])
               if node_free[n] == G and state[n] == UP]
        return out[:count]

    def _search_spread(self, k: int, max_cap: int, min_cap: int
                       ) -> tuple[int, int, list[int], int]:
        """k whole nodes over several pods, at the highest target cap the greedy can meet.

        For each cap on the grid, highest first, pods are taken whole in order of (free
        nodes descending, index), skipping any pod whose addition would break a row at
        that cap; the remainder goes to the best-fitting pod that still fits.  The first
        target met wins.  Skipping lets a big gang spread over halls that have power
        left instead of packing the first hall past its switchboard.
        """
        order = self._pods_fullest_first()
        for target in self.cluster.power.cap_grid_w(max_cap, min_cap):
            nodes = self._spread_at(k, target, order)
            if nodes is not None:
                cap, row = self._gang_cap(nodes, max_cap, min_cap)
                return FOUND, cap, sorted(nodes), row
        # nothing meets even min_cap; explain with the plain spread's binding row
        _cap, row = self._gang_cap(self._spread_over_pods(k), max_cap, min_cap)
        return NO_POWER, -1, [], row

    def _spread_at(self, k: int, target: int, order: list[int]) -> list[int] | None:
        used: dict[int, int] = {}  # row -> units the nodes chosen so far take at target
        nodes: list[int] = []
        for i, p in enumerate(order):
            need = k - len(nodes)
            if self._pod_free_nodes[p] <= need:
                whole = [n for r in self._pod_racks[p]
                         for n in self._empty_nodes(r, self._rack_free_nodes[r])]
                if self._fits(whole, target, used):
                    nodes.extend(whole)
                    if len(nodes) == k:
                        return nodes
                continue
            # the remainder: best fit among the pods not yet passed over
            for q in sorted(order[i:], key=lambda q: (self._pod_free_nodes[q], q)):
                if self._pod_free_nodes[q] >= need:
                    part = self._nodes_in_pod(q, need)
                    if self._fits(part, target, used):
                        return nodes + part
            return None
        return None

    def _fits(self, nodes: Sequence[int], target: int, used: dict[int, int]) -> bool:
        """Whether whole empty ``nodes`` at cap ``target`` fit beside ``used``; if so, add."""
        node_w = self._busy_step_w + self._G * (target - self._gpu_idle_w)
        delta: dict[int, int] = {}
        for n in nodes:
            for row, coef in self._rack_rows[self._node_rack[n]]:
                delta[row] = delta.get(row, 0) + coef * node_w
        if any(used.get(row, 0) + d > self._slack[row] for row, d in delta.items()):
            return False
        for row, d in delta.items():
            used[row] = used.get(row, 0) + d
        return True

    def _pods_fullest_first(self) -> list[int]:
        """Pods with empty nodes, by (empty nodes descending, index)."""
        return sorted((p for p, free in enumerate(self._pod_free_nodes) if free),
                      key=lambda p: (-self._pod_free_nodes[p], p))

    def _spread_over_pods(self, k: int) -> list[int]:
        """k empty nodes over the fewest pods: fullest pods whole, remainder best fit."""
        pods = self._pods_fullest_first()
        nodes: list[int] = []
        i = 0
        while k - len(nodes) > self._pod_free_nodes[pods[i]]:
            p = pods[i]
            for r in self._pod_racks[p]:
                nodes.extend(self._empty_nodes(r, self._rack_free_nodes[r]))
            i += 1
        remainder = k - len(nodes)
        last = min((p for p in pods[i:] if self._pod_free_nodes[p] >= remainder),
                   key=lambda p: (self._pod_free_nodes[p], p))
        nodes.extend(self._nodes_in_pod(last, remainder))
        return nodes

    # ==================================================================================
    # The cap a candidate allows
    # ==================================================================================

    def _snap(self, bound_w: int, max_cap: int, min_cap: int) -> int:
        """Highest cap on the grid (max, max - step, ..., min) at most ``bound_w``; -1 if none."""
        if bound_w >= max_cap:
            return max_cap
        if bound_w < min_cap:
            return -1
        step = self._cap_step_w
        cap = max_cap - step * ((max_cap - bound_w + step - 1) // step)
        return cap if cap >= min_cap else min_cap

    def _rack_cap(self, rack: int, g: int, empty: bool, max_cap: int,
                  min_cap: int) -> tuple[int, int, int]:
        """Cap for g GPUs on one node of ``rack`` (empty or not), the limiting row, and
        the end of the run of racks that row limits alike (rack + 1 if none).

        Row i holds iff  coef*(busy_step if empty) + coef*g*(cap - idle) <= slack[i].
        """
        base_w = self._busy_step_w if empty else 0
        bound, bound_row, run_end = max_cap, -1, rack + 1
        for (row, coef), end in zip(self._rack_rows[rack], self._rack_run_end[rack]):
            room = self._slack[row] - coef * base_w
            if room < 0:
                return -1, row, end
            row_bound = self._gpu_idle_w + room // (coef * g)
            if row_bound < bound:
                bound, bound_row, run_end = row_bound, row, end
        return self._snap(bound, max_cap, min_cap), bound_row, run_end

    def _gang_cap(self, nodes: Sequence[int], max_cap: int, min_cap: int) -> tuple[int, int]:
        """Cap for whole empty ``nodes``, and the limiting row (lowest index on ties)."""
        G = self._G
        nodes_in_rack: dict[int, int] = {}
        for n in nodes:
            r = self._node_rack[n]
            nodes_in_rack[r] = nodes_in_rack.get(r, 0) + 1
        base: dict[int, int] = {}   # row -> coef units * watts that do not depend on the cap
        per_w: dict[int, int] = {}  # row -> coef units per watt of cap above idle
        for r, count in nodes_in_rack.items():
            for row, coef in self._rack_rows[r]:
                base[row] = base.get(row, 0) + coef * count * self._busy_step_w
                per_w[row] = per_w.get(row, 0) + coef * count * G
        bound, bound_row = max_cap, -1
        for row in sorted(base):
            room = self._slack[row] - base[row]
            if room < 0:
                return -1, row
            row_bound = self._gpu_idle_w + room // per_w[row]
            if row_bound < bound:
                bound, bound_row = row_bound, row
        return self._snap(bound, max_cap, min_cap), bound_row

    # ==================================================================================
    # State changes
    # ==================================================================================

    def _commit(self, nodes: Sequence[int], gpus_per_node: int, cap_w: int, sign: int) -> None:
        """Take (sign=+1) or give back (sign=-1) ``gpus_per_node`` GPUs at ``cap_w`` on nodes.

        Invariants kept: each open node is in exactly the free list of its free count
        (none when full), and no node that is not open is in any; rack and pod free-node
        counts and the pod histograms count empty open nodes; rack power is the sum of
        node powers; slack = b - A·P in units.
        """
        G = self._G
        self._commits += 1
        rack_delta: dict[int, int] = {}
        for n in nodes:
            before = self._node_free[n]
            after = before - sign * gpus_per_node
            self._node_free[n] = after
            is_open = self._node_state[n] == UP
            if before and is_open:
                lst = self._free_nodes[before]
                del lst[bisect_left(lst, n)]
            if after and is_open:
                insort(self._free_nodes[after], n)
            r = self._node_rack[n]
            delta = gpus_per_node * (cap_w - self._gpu_idle_w)
            if before == G or after == G:  # the node turned busy, or idle again
                delta += self._busy_step_w
                if is_open:
                    p = self._rack_pod[r]
                    hist = self._pod_rack_hist[p]
                    hist[self._rack_free_nodes[r]] -= 1
                    self._rack_free_nodes[r] -= sign
                    hist[self._rack_free_nodes[r]] += 1
                    self._pod_free_nodes[p] -= sign
            rack_delta[r] = rack_delta.get(r, 0) + delta
        for r, delta in rack_delta.items():
            self._rack_power_w[r] += sign * delta
            for row, coef in self._rack_rows[r]:
                self._slack[row] -= sign * coef * delta
        self._free_gpus -= sign * gpus_per_node * len(nodes)

    def _insert(self, job: Job, placement: Placement) -> None:
        """Commit a placement the caller has already checked (restore), and record it."""
        self._commit(placement.nodes, placement.gpus_per_node, placement.cap_w, +1)
        self._jobs[placement.job_id] = (job, placement)

    def _replace(self, job: Job, old: Placement, new: Placement) -> None:
        """Swap a job's placement for a checked one, keeping its place in the order."""
        with self._lock:
            self._commit(old.nodes, old.gpus_per_node, old.cap_w, -1)
            self._commit(new.nodes, new.gpus_per_node, new.cap_w, +1)
            self._jobs[new.job_id] = (job, new)

    def _reshape(self, job: Job, new: Placement, removed: Sequence[int],
                 added: Sequence[int]) -> None:
        """Take ``removed`` nodes from a job and give it ``added`` ones at its own cap.

        For a failure (a node lost) and a repair at the same cap (nodes added), without
        touching the job's other nodes.  The caller has checked everything: ``new`` is the
        job's placement less ``removed`` plus ``added``, at the same cap and GPUs a node.
        """
        with self._lock:
            if removed:
                self._commit(removed, new.gpus_per_node, new.cap_w, -1)
            if added:
                self._commit(added, new.gpus_per_node, new.cap_w, +1)
            self._jobs[new.job_id] = (job, new)

    # ==================================================================================
    # Node states and live limits
    # ==================================================================================

    def _set_node_state(self, node: int, state: int, power_delta_w: int) -> None:
        """Put ``node`` in ``state`` and add ``power_delta_w`` to its rack's power.

        The caller (gpusched/_site.py) has checked the node and the state, emptied a node
        that goes DOWN or SPARE of its jobs, and computed what the change costs in watts.
        """
        with self._lock:
            self._commits += 1
            was_open = self._node_state[node] == UP
            self._node_state[node] = state
            if was_open != (state == UP):
                self._open_node(node, +1 if state == UP else -1)
            if power_delta_w:
                r = self._node_rack[node]
                self._rack_power_w[r] += power_delta_w
                for row, coef in self._rack_rows[r]:
                    self._slack[row] -= coef * power_delta_w

    def _open_node(self, node: int, sign: int) -> None:
        """Add a node to (sign=+1) or take it out of (sign=-1) the search's indexes."""
        free = self._node_free[node]
        if free:
            lst = self._free_nodes[free]
            if sign > 0:
                insort(lst, node)
            else:
                del lst[bisect_left(lst, node)]
        if free == self._G:
            r = self._node_rack[node]
            p = self._rack_pod[r]
            hist = self._pod_rack_hist[p]
            hist[self._rack_free_nodes[r]] -= 1
            self._rack_free_nodes[r] += sign
            hist[self._rack_free_nodes[r]] += 1
            self._pod_free_nodes[p] += sign

    def _set_limit_units(self, row: int, limit_units: int) -> None:
        """Set row ``row``'s limit b to ``limit_units`` (checked by the caller); the slack
        moves with it and may go negative: the row is then over, and refuses more load."""
        with self._lock:
            self._commits += 1
            self._slack[row] += limit_units - self._limit_units[row]
            self._limit_units[row] = limit_units

    def _jobs_on(self, node: int) -> list[str]:
        """Ids of the jobs holding GPUs on ``node``, in placement order."""
        with self._lock:
            if self._node_free[node] == self._G:
                return []
            return [job_id for job_id, (_job, p) in self._jobs.items() if node in p.nodes]

    # ==================================================================================
    # Read-only views
    # ==================================================================================

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return type(job_id) is str and job_id in self._jobs

    def free_gpus(self) -> int:
        """Free GPUs in the whole cluster."""
        return self._free_gpus

    def node_free_gpus(self) -> np.ndarray:
        """Free GPUs per node (int32 copy)."""
        return np.array(self._node_free, dtype=np.int32)

    def rack_power_w(self) -> np.ndarray:
        """Budgeted power of each rack, in watts (int64 copy)."""
        return np.array(self._rack_power_w, dtype=np.int64)

    def row_slack_units(self) -> np.ndarray:
        """``b - A·P`` per row in COEF_SCALE units (int64 copy); negative only for a row
        whose live limit was lowered below its load (``Engine.violations``)."""
        return np.array(self._slack, dtype=np.int64)

    def row_limit_units(self) -> np.ndarray:
        """The live limits b per row in COEF_SCALE units (int64 copy)."""
        return np.array(self._limit_units, dtype=np.int64)

    def node_state_codes(self) -> np.ndarray:
        """Each node's state: UP 0, DRAINING 1, DOWN 2, SPARE 3 (int8 copy)."""
        return np.array(self._node_state, dtype=np.int8)

    # The views take the lock: another thread's place or release would otherwise change
    # the dict while they iterate it.
    def placements(self) -> list[Placement]:
        """Live placements, in the order they were made."""
        with self._lock:
            return [placement for _job, placement in self._jobs.values()]

    def jobs(self) -> list[Job]:
        """Live jobs, in the order they were placed."""
        with self._lock:
            return [job for job, _placement in self._jobs.values()]

    def placement(self, job_id: str) -> Placement:
        with self._lock:
            if type(job_id) is not str or job_id not in self._jobs:
                raise unknown_job(job_id)
            return self._jobs[job_id][1]

    def job(self, job_id: str) -> Job:
        """The Job placed under ``job_id``."""
        with self._lock:
            if type(job_id) is not str or job_id not in self._jobs:
                raise unknown_job(job_id)
            return self._jobs[job_id][0]

    def _index_state(self) -> dict[str, Any]:
        """Every derived index, for tests that check the twins agree to the last counter."""
        return {
            "node_free": list(self._node_free),
            "free_nodes": [list(x) for x in self._free_nodes[1:]],
            "rack_free_nodes": list(self._rack_free_nodes),
            "pod_free_nodes": list(self._pod_free_nodes),
            "pod_rack_hist": [list(h) for h in self._pod_rack_hist],
            "rack_power_w": list(self._rack_power_w),
            "slack": list(self._slack),
            "free_gpus": self._free_gpus,
            "node_state": list(self._node_state),
            "limit_units": list(self._limit_units),
        }

