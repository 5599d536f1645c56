"""Preemption plans: the least-cost cap-downs and evictions that let a job start now.

:func:`plan_preemption` answers "what must give so that this job runs now", counting GPUs
**and** every row of ``A·P <= b``:

1. *Cap-downs first.*  Running jobs with a cap range (``min_cap_w < max_cap_w``) whose
   racks load a row the job would break are lowered, all by the same number of watts
   (a water level on the 25 W grid, each clipped at its own ``min_cap_w``), the least
   level that makes the rows hold.  A cap-down loses throughput, no work.
2. *Then evictions* of whole jobs that are ``preemptible`` and of strictly lower
   ``priority`` than the job, chosen to free nodes in the job's domain and, where the
   watts are short, in the rows that bind, wherever those victims run (the row that
   blocks may be the facility, so the right victim may sit in another hall).

The cost of a plan is the tuple ``(highest victim priority, work lost in GPU-hours,
GPUs evicted)``, compared in that order (no victims sorts first).  Work lost is each
victim's GPUs times the seconds it ran since its last checkpoint or start, which the
caller knows (``since_checkpoint_s``; 0 for a job not in it).

*Topology first.*  A gang that fits one pod keeps to one pod, so every pod is a
candidate domain with its own least victim set (a pod held entirely by preemptible jobs
is a candidate: KAI-Scheduler #1591, #1760); a larger gang's domain is the site; a job
of one node's GPUs or fewer takes one node, each node a candidate.

*Exact on small clusters, a heuristic at scale.*  With at most ``exact_max_victims``
evictable jobs (default 12) every victim set is tried in cost order and the first that
works is the plan.  On a site of at most :data:`NODE_SEARCH_MAX_NODES` nodes (256) the
test of a set searches every choice of the job's nodes (for a gang, how many empty nodes
each rack of the domain gives: all a row sees of them), so the plan is the optimum over
victim sets and nodes; ``tests/test_preempt.py`` checks it against a brute force that
tries every set on a fresh engine, with the engine's own ``place`` and every choice of a
gang's empty nodes through ``place_on``, on random and tight sites, both twins.  On a
larger site a gang is tried on each domain's first ``k`` empty nodes only, and a small
job on the 64 fullest nodes with room (the first-k rule: a test of a few array passes,
which the heuristic runs hundreds of times a plan), so the enumeration is exact under
that rule only: on tight small sites the first ``k`` missed cheaper plans, or every plan.
Above ``exact_max_victims``, the heuristic:
for each priority threshold in ascending order, the domain's nodes are ranked by the
work their jobs would lose (a gang's work shared over its nodes), the cheapest ``k``
nodes chosen, the choice repeated once with the nodes the victims also vacate counted
as free (so a victim gang's second node replaces a node with a victim of its own), then
watts are freed by cap-downs and, if still short, by more evictions ranked by cost.  The
first threshold at which some domain works wins; among domains the cheapest.
``method="exact"`` forces the enumeration at any size.

*The enumeration's cost at any size: ``method="milp"``.*  For each priority threshold in
ascending order, one MILP (``scipy.optimize.milp``, HiGHS) over every domain at once
chooses the victims and the job's nodes: every row of ``A`` must hold with the job at
``min_cap_w`` and every flexible job that stays at its min cap (the deepest cap-down;
integer watts, busy steps included, so the rows are exact), a gang takes any ``k`` empty
nodes of one domain on a site the node search covers and the first ``k`` on a larger one
(the test's two rules), and the objective is work lost, then (a second solve) GPUs
evicted.  Each answer goes through the same test as the enumeration; a set it refuses
(above the node search's bound the model lets a small job take any node with room, the
test tries the 64 fullest) is cut off and the MILP solved again.  So its cost is the
enumeration's: the optimum on a small site, the optimum under the first-k rule on a large
one (tests check both on small sites, the second with the bound forced to 0), at a cost
in time: 8.6 to 10.6 s (three runs, both twins)
for the 4,096-GPU gang on colossus-100k 95 % full (``benchmarks/bench_preempt.py``'s
state, 2,142 jobs), where the heuristic takes 11 ms and loses 3.3 times the work (489
GPU-h against 146); 0.8 s for a 256-GPU gang (one pod of 294) and 0.3 s for an 8-GPU job
on the same site full of rigid jobs.  Not in CI at that size.

*Placement rule.*  The job takes the chosen nodes (empty after the evictions for a
gang; for a small job the node with enough GPUs free after them) at the highest cap in
its range that every row allows after the plan; :meth:`PreemptionPlan.apply` lowers the
caps, releases the victims and places the job with the engine's checked ``place_on``.
A plan is bound to the state it was made on: applying it after any placement, release,
cap or limit change, or twice, raises :class:`~gpusched.errors.StalePlanError` and
changes nothing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import numpy as np

from .._checks import check_job, check_pod
from ..errors import GpuschedError, PreemptionError, StalePlanError
from ..job import Job, Placement
from ..spec import COEF_SCALE

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["plan_preemption", "PreemptionPlan", "CapChange", "DEFAULT_EXACT_MAX_VICTIMS",
           "NODE_SEARCH_MAX_NODES"]

#: Up to this many evictable jobs, every victim set is tried (2^12 = 4,096 sets).
DEFAULT_EXACT_MAX_VICTIMS = 12
#: Up to this many nodes, the test of a victim set searches every choice of the job's
#: nodes (a gang: how many empty nodes each rack of the domain gives; a small job: every
#: node with room, one per rack and emptiness), so ``method="exact"`` is the optimum over
#: victim sets and nodes.  Above it a gang takes the first ``k`` empty nodes of a domain
#: and a small job the 64 fullest nodes with room: the test stays a few array passes, as
#: the heuristic needs at scale (it runs the test hundreds of times a plan).  256, not
#: more: on a 1,024-node site an exact plan for a 2,048-GPU gang among 11 evictable jobs
#: took 3.2 s with the search against 0.9 s under the first-k rule, too slow for the
#: ``auto`` default.
NODE_SEARCH_MAX_NODES = 256
#: Steps of the depth-first search over racks' node counts before HiGHS decides instead.
_SEARCH_STEPS = 200
_STEP_W = 25   # the engine's cap grid
_NO_VICTIM = -(2 ** 40)  # sorts below every priority: a plan with no eviction
_METHODS = ("auto", "exact", "heuristic", "milp")


class CapChange(NamedTuple):
    """A running job's cap lowered by a plan (a named tuple: a plan may hold thousands)."""

    job_id: str
    from_cap_w: int
    to_cap_w: int


@dataclass
class PreemptionPlan:
    """What must give for ``job`` to start now, and where it would run.

    ``victims`` are evicted whole; ``cap_changes`` are cap-downs of running jobs;
    ``placement`` is where the job runs after both.  ``cost`` is ``(highest victim
    priority or None, work lost in GPU-hours, GPUs evicted)``.
    """

    job: Job
    victims: tuple[str, ...]
    cap_changes: tuple[CapChange, ...]
    placement: Placement
    max_victim_priority: int | None
    work_lost_gpu_h: float
    gpus_evicted: int
    method: str
    domain: str | None
    _engine: Any = field(repr=False, compare=False, default=None)
    _token: Any = field(repr=False, compare=False, default=None)
    applied: bool = False

    @property
    def cost(self) -> tuple[int | None, float, int]:
        return (self.max_victim_priority, self.work_lost_gpu_h, self.gpus_evicted)

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job.id, "victims": list(self.victims),
                "cap_changes": [{"job_id": c.job_id, "from_cap_w": c.from_cap_w,
                                 "to_cap_w": c.to_cap_w} for c in self.cap_changes],
                "placement": self.placement.to_dict(),
                "max_victim_priority": self.max_victim_priority,
                "work_lost_gpu_h": self.work_lost_gpu_h, "gpus_evicted": self.gpus_evicted,
                "method": self.method, "domain": self.domain, "applied": self.applied}

    def apply(self) -> Placement:
        """Carry the plan out atomically; StalePlanError (state unchanged) if the engine
        changed since the plan was made, or the plan was applied already."""
        engine = self._engine
        if self.applied:
            raise StalePlanError(f"the preemption plan for job {self.job.id!r} was applied "
                                 "already; plan again", field="plan")
        with engine._lock:
            if _token(engine) != self._token:
                raise StalePlanError(
                    f"the engine's state changed since the preemption plan for job "
                    f"{self.job.id!r} was made (a placement, release, cap or limit); "
                    "nothing was changed, plan again", field="plan")
            done_caps: list[tuple[str, int]] = []
            released: list[tuple[Job, Placement]] = []
            try:
                for change in self.cap_changes:
                    engine.set_cap(change.job_id, change.to_cap_w)
                    done_caps.append((change.job_id, change.from_cap_w))
                for victim in self.victims:
                    job = engine.job(victim)
                    released.append((job, engine.release(victim)))
                placement = engine.place_on(self.job, list(self.placement.nodes),
                                            self.placement.cap_w)
            except GpuschedError as exc:
                # undo in reverse: the victims go back on their nodes at their caps, then
                # the caps go back up; each step returns to a state that held before
                for job, old in reversed(released):
                    engine.place_on(job, list(old.nodes), old.cap_w)
                for job_id, cap in reversed(done_caps):
                    engine.set_cap(job_id, cap)
                raise PreemptionError(f"the preemption plan for job {self.job.id!r} did not "
                                      f"apply ({exc}); nothing was changed") from exc
            self.applied = True
            return placement


def _token(engine: "Engine") -> tuple[Any, ...]:
    """What a plan depends on: every placement (nodes and caps), every row's slack
    (which moves with a limit change too) and every node's state."""
    return (tuple(engine.placements()), engine.row_slack_units().tobytes(),
            engine.node_state_codes().tobytes())


class _Site:
    """The live state as arrays, read once per plan."""

    def __init__(self, engine: "Engine", job: Job, since_checkpoint_s: Mapping[str, float]
                 ) -> None:
        cluster = engine.cluster
        power = cluster.power
        self.cluster = cluster
        self.G = cluster.gpus_per_node
        self.idle_w = power.gpu_idle_w
        self.busy_w = power.busy_step_w
        self.N = cluster.num_nodes
        self.R = cluster.num_racks
        self.A = cluster.constraints.A_units
        self.placements = engine.placements()
        self.jobs = engine.jobs()
        # only up nodes take a job (a site that changes: draining, down and spare nodes
        # are closed); a plan is stale once a node changes state
        states = engine.node_state_codes()
        self.open = states == 0
        self.token = (tuple(self.placements), engine.row_slack_units().tobytes(),
                      states.tobytes())
        self.slack = engine.row_slack_units()
        self.free = engine.node_free_gpus().astype(np.int64) * self.open
        n = len(self.placements)
        self.ids = [p.job_id for p in self.placements]
        # one pass over the jobs: the per-job numbers as one integer table
        table = np.array([(p.cap_w, p.gpus_per_node, len(p.nodes), j.min_cap_w, j.priority,
                           j.preemptible) for p, j in zip(self.placements, self.jobs)],
                         dtype=np.int64).reshape(n, 6)
        self.cap, self.gpn, self.nodes_of = table[:, 0], table[:, 1], table[:, 2]
        self.min_cap, self.priority = table[:, 3], table[:, 4]
        preemptible = table[:, 5].astype(bool)
        self.gpus = self.gpn * self.nodes_of
        get = since_checkpoint_s.get
        run_s = np.array([get(i, 0.0) for i in self.ids], dtype=float) if since_checkpoint_s \
            else np.zeros(n)
        self.work_gpu_h = self.gpus * np.maximum(run_s, 0.0) / 3600.0
        self.evictable = preemptible & (self.priority < job.priority)
        self.flat_nodes = (np.fromiter(itertools.chain.from_iterable(
            p.nodes for p in self.placements), np.int64) if n else np.zeros(0, np.int64))
        self.flat_job = np.repeat(np.arange(n), self.nodes_of)
        self.count = np.bincount(self.flat_nodes, minlength=self.N)
        self.node_rack = cluster.node_rack
        self.node_pod = cluster.node_pod
        # per entry (job, node): watts the job's GPUs draw above idle there
        self.entry_w = (self.gpn * (self.cap - self.idle_w))[self.flat_job]
        self.entry_gpn = self.gpn[self.flat_job]
        # read here, not at import, so a test can put a small site under the first-k rule
        self.search_nodes = self.N <= NODE_SEARCH_MAX_NODES
        self._after: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # ---- the one exact test ----------------------------------------------------------

    def after(self, victims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(free GPUs per node, node empty, rack watts delta) once ``victims`` are gone."""
        key = victims.tobytes()
        cached = self._after.get(key)
        if cached is None:
            if len(self._after) > 16:
                self._after.clear()
            cached = self._after[key] = self._after_uncached(victims)
        return cached

    def _after_uncached(self, victims: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gone = victims[self.flat_job]
        freed = np.bincount(self.flat_nodes[gone], weights=self.entry_gpn[gone],
                            minlength=self.N).astype(np.int64)
        evicted = np.bincount(self.flat_nodes[gone], minlength=self.N)
        free = (self.free + freed) * self.open
        emptied = (evicted == self.count) & (self.count > 0)
        node_w = -np.bincount(self.flat_nodes[gone], weights=self.entry_w[gone],
                              minlength=self.N) - self.busy_w * emptied
        rack_w = np.bincount(self.node_rack, weights=node_w, minlength=self.R)
        return free, free == self.G, rack_w

    def cap_down_w(self, level_w: int, jobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rack watts freed by lowering each of ``jobs`` (mask) by ``level_w``, clipped
        at its min cap; and the cap each would get (returned second)."""
        drop = np.where(jobs, np.minimum(level_w, self.cap - self.min_cap), 0)
        per_entry = (self.gpn * drop)[self.flat_job]
        node_w = np.bincount(self.flat_nodes, weights=per_entry, minlength=self.N)
        return np.bincount(self.node_rack, weights=node_w, minlength=self.R), drop

    def demand(self, nodes: np.ndarray, gpn: int, empty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rack watts at cap 0 incl. busy steps, rack GPUs) for the job on ``nodes``."""
        base = np.bincount(self.node_rack[nodes],
                           weights=self.busy_w * empty[nodes] - gpn * self.idle_w,
                           minlength=self.R)
        per_w = np.bincount(self.node_rack[nodes], minlength=self.R) * gpn
        return base, per_w

    def fit(self, job: Job, nodes: np.ndarray, gpn: int, victims: np.ndarray
            ) -> tuple[int, np.ndarray] | None:
        """The job on ``nodes`` after ``victims``: (cap, cap drop per running job) with
        the least cap-down level that lets it run at ``min_cap_w``, or None."""
        _free, empty, rack_w = self.after(victims)
        base, per_w = self.demand(nodes, gpn, empty)
        row_base = self.A @ np.rint(rack_w + base).astype(np.int64)
        row_per = self.A @ per_w.astype(np.int64)
        load = row_base + row_per * job.min_cap_w
        short = load > self.slack
        no_drop = np.zeros(len(self.cap), np.int64)
        if not short.any():
            return self._best_cap(job, row_base, row_per, self.slack), no_drop
        # cap-downs: flexible jobs still running that touch a short row
        touching = (self.A.T @ short.astype(np.int64)) > 0   # racks under a short row
        flex = np.bincount(self.flat_job, weights=touching[self.node_rack[self.flat_nodes]],
                           minlength=len(self.cap)) > 0
        flex &= ~victims & (self.cap > self.min_cap)
        if not flex.any():
            return None
        top = int((self.cap - self.min_cap)[flex].max())
        levels = list(range(_STEP_W, top + _STEP_W, _STEP_W))
        if levels[-1] != top:
            levels.append(top)

        def rows_at(level: int) -> tuple[np.ndarray, np.ndarray]:
            freed_w, drop = self.cap_down_w(level, flex)
            return row_base - self.A @ np.rint(freed_w).astype(np.int64), drop

        deepest, drop = rows_at(top)
        if (deepest + row_per * job.min_cap_w > self.slack).any():
            return None
        lo, hi = 0, len(levels) - 1   # the least level that works: binary search
        while lo < hi:
            mid = (lo + hi) // 2
            trial, _ = rows_at(levels[mid])
            if (trial + row_per * job.min_cap_w > self.slack).any():
                lo = mid + 1
            else:
                hi = mid
        rows_ok, drop = rows_at(levels[lo])
        return self._best_cap(job, rows_ok, row_per, self.slack), drop

    def gang_nodes(self, job: Job, usable: np.ndarray, victims: np.ndarray
                   ) -> np.ndarray | None:
        """``k`` of the empty ``usable`` nodes (one domain) on which every row holds with
        the gang at ``min_cap_w`` and every flexible job left at its min cap, or None.

        What :meth:`fit` tests is then true of those nodes, and it depends only on how
        many nodes each rack gives (every empty node of a rack adds the same watts), so
        the search is over those counts ``c_r``, linear in every row: a row over one rack
        bounds its ``c_r`` alone; racks the other rows treat alike (the same column) are
        one group whose total alone matters.  Each row alone must take its least load for
        ``k`` nodes (most refused sets stop there); then a depth-first search over the
        groups' totals, pruned by each row's room (the coefficients are non-negative),
        decides, and past ``_SEARCH_STEPS`` steps a small integer program (HiGHS) does.
        """
        k = job.gpus // self.G
        _free, _empty, rack_w = self.after(victims)
        flex = ~victims & (self.cap > self.min_cap)
        freed_w, _drop = self.cap_down_w(int((self.cap - self.min_cap).max(initial=0)), flex)
        room = self.slack - self.A @ np.rint(rack_w - freed_w).astype(np.int64)
        if (room < 0).any():   # a row short before the job adds anything
            return None
        node_w = self.busy_w + self.G * (job.min_cap_w - self.idle_w)
        racks, per_rack = np.unique(self.node_rack[usable], return_counts=True)
        units = np.asarray(self.A[:, racks].todense(), dtype=np.int64) * node_w
        rows = np.flatnonzero((units > 0).any(axis=1))
        units, room = units[rows], room[rows]
        # one row at a time: the most nodes each rack can give
        bound = np.where(units > 0, room[:, None] // np.maximum(units, 1), k)
        most = np.minimum(per_rack, bound.min(axis=0, initial=k))
        if int(most.sum()) < k:
            return None
        shared = (units > 0).sum(axis=1) > 1
        units, room = units[shared], room[shared]
        columns, group = np.unique(units.T, axis=0, return_inverse=True)
        group = np.asarray(group).ravel()
        cap_g = np.bincount(group, weights=most, minlength=len(columns)).astype(np.int64)
        totals = self._group_totals(k, columns, cap_g, room)
        if totals is None:
            return None
        # each group's total over its racks in index order, each rack's lowest nodes
        chosen: list[np.ndarray] = []
        left = totals.copy()
        for r, rack in enumerate(racks.tolist()):
            take = int(min(most[r], left[group[r]]))
            left[group[r]] -= take
            chosen.append(usable[self.node_rack[usable] == rack][:take])
        return np.sort(np.concatenate(chosen))

    @staticmethod
    def _group_totals(k: int, columns: np.ndarray, cap_g: np.ndarray, room: np.ndarray
                      ) -> np.ndarray | None:
        """Nodes per group (at most ``cap_g``, ``k`` in all) with ``columns.T @ t <= room``
        (integer units, non-negative), or None when there are none."""
        n = len(cap_g)
        # each row alone: its least load for k nodes (the groups it weighs least first)
        # must fit; a quick refusal of most sets, before any search
        order = np.argsort(columns.T, axis=1, kind="stable")
        weights = np.take_along_axis(columns.T, order, axis=1)
        caps = cap_g[order]
        before = np.cumsum(caps, axis=1) - caps
        takes = np.clip(k - before, 0, caps)
        if ((takes * weights).sum(axis=1) > room).any():
            return None
        t = np.zeros(n, np.int64)
        steps = 0

        def most(g: int, load: np.ndarray) -> np.ndarray:
            """The most nodes each group from ``g`` on can add alone, beside ``load``."""
            cols = columns[g:]
            left = (room - load)[None, :]
            per_row = np.where(cols > 0, left // np.maximum(cols, 1), k)
            return np.minimum(cap_g[g:], per_row.min(axis=1, initial=k))

        def search(g: int, need: int, load: np.ndarray) -> bool:
            nonlocal steps
            if need == 0:
                return True
            if g == n:
                return False
            alone = most(g, load)
            if int(alone.sum()) < need:   # not even each group alone adds up: prune
                return False
            rest = int(alone[1:].sum())
            for take in range(int(min(alone[0], need)), max(0, need - rest) - 1, -1):
                steps += 1
                if steps > _SEARCH_STEPS:
                    raise _TooLong
                if search(g + 1, need - take, load + columns[g] * take):
                    t[g] = take
                    return True
            return False

        try:
            return t if search(0, k, np.zeros(len(room), np.int64)) else None
        except _TooLong:
            pass
        from scipy.optimize import Bounds, LinearConstraint, milp
        rows = columns.T.astype(float)
        scale = 1.0 / np.maximum(rows.max(axis=1, initial=0.0), 1.0)  # each row's top: 1
        res = milp(np.zeros(n), integrality=np.ones(n), bounds=Bounds(0, cap_g),
                   constraints=[LinearConstraint(np.ones((1, n)), k, k),
                                LinearConstraint(rows * scale[:, None], -np.inf,
                                                 room * scale)])
        if res.status == 2:
            return None
        if res.status != 0 or res.x is None:
            raise PreemptionError(f"the node search for a gang stopped without an answer "
                                  f"({res.message}); try method='heuristic'", field="method")
        totals = np.rint(res.x).astype(np.int64)
        # HiGHS works in floats: keep its answer only if it holds in integers
        if (columns.T @ totals <= room).all() and totals.sum() == k:
            return totals
        return None

    def excess(self, job: Job, nodes: np.ndarray, gpn: int, victims: np.ndarray
               ) -> np.ndarray:
        """Per row, load minus slack (units) with the job on ``nodes`` at ``min_cap_w``
        and every flexible job still running at its min cap: what evictions must free."""
        _free, empty, rack_w = self.after(victims)
        base, per_w = self.demand(nodes, gpn, empty)
        flex = ~victims & (self.cap > self.min_cap)
        freed_w, _drop = self.cap_down_w(int((self.cap - self.min_cap).max(initial=0)), flex)
        rack = np.rint(rack_w + base - freed_w + per_w * job.min_cap_w).astype(np.int64)
        return self.A @ rack - self.slack

    @staticmethod
    def _best_cap(job: Job, row_base: np.ndarray, row_per: np.ndarray, slack: np.ndarray
                  ) -> int:
        """The highest cap on the job's 25 W grid (from max_cap_w down) every row takes."""
        room = slack - row_base
        pos = row_per > 0
        bound = int((room[pos] // row_per[pos]).min()) if pos.any() else job.max_cap_w
        cap = min(job.max_cap_w, bound)
        if cap < job.max_cap_w:  # onto the grid the engine steps down on
            cap = job.max_cap_w - _STEP_W * math.ceil((job.max_cap_w - cap) / _STEP_W)
        return max(cap, job.min_cap_w)

    # ---- domains ---------------------------------------------------------------------

    def cost(self, victims: np.ndarray) -> tuple[int, float, int]:
        if not victims.any():
            return (_NO_VICTIM, 0.0, 0)
        return (int(self.priority[victims].max()), round(float(self.work_gpu_h[victims].sum()), 9),
                int(self.gpus[victims].sum()))


class _TooLong(Exception):
    """The node search ran past its step budget."""


def _domains(site: _Site, job: Job, pod_index: int) -> list[tuple[str | None, np.ndarray]]:
    """Candidate domains as (name, node indices): the named pod; each pod that can hold
    the gang; or the whole site (a gang larger than any pod, a job on one node)."""
    cluster = site.cluster
    all_nodes = np.arange(site.N)
    if pod_index >= 0:
        return [(cluster.pod_names[pod_index], np.flatnonzero(site.node_pod == pod_index))]
    k = job.gpus // site.G
    if job.gpus > site.G and k <= int(cluster.pod_nodes.max()):
        return [(cluster.pod_names[q], np.flatnonzero(site.node_pod == q))
                for q in range(cluster.num_pods) if cluster.pod_nodes[q] >= k]
    return [(None, all_nodes)]


def _try_victims(site: _Site, job: Job, victims: np.ndarray,
                 domains: list[tuple[str | None, np.ndarray]]
                 ) -> tuple[str | None, np.ndarray, int, np.ndarray] | None:
    """The first domain where ``victims`` (and cap-downs) let the job run: (domain,
    nodes, cap, cap drops), or None.

    A gang takes the first ``k`` empty nodes of the domain if they work, else (on a site
    of at most :data:`NODE_SEARCH_MAX_NODES` nodes) the ones :meth:`_Site.gang_nodes`
    finds; a small job the fullest node with room that works, every kind of node tried
    on such a site, the 64 fullest above it.
    """
    free, empty, _ = site.after(victims)
    G = site.G
    for name, nodes in domains:
        if job.gpus > G:
            k = job.gpus // G
            usable = nodes[empty[nodes]]
            if len(usable) < k:
                continue
            chosen = usable[:k]
            answer = site.fit(job, chosen, G, victims)
            if answer is None and site.search_nodes:
                # the first k are not the only k: on a small site, search them all
                found = site.gang_nodes(job, usable, victims)
                if found is not None:
                    chosen = found
                    answer = site.fit(job, chosen, G, victims)
        else:
            usable = nodes[free[nodes] >= job.gpus]
            if not len(usable):
                continue
            # best fit: the fullest node that takes it, as the engine's own rule
            order = np.lexsort((usable, free[usable]))
            ranked = usable[order]
            if site.search_nodes:
                # every node that may take it: one per rack and emptiness (the rows see
                # nothing else of a node), in best-fit order
                kind = site.node_rack[ranked] * 2 + (free[ranked] == G)
                ranked = ranked[np.sort(np.unique(kind, return_index=True)[1])]
            else:
                ranked = ranked[:64]
            answer, chosen = None, usable[:0]
            for node in ranked:
                chosen = np.array([node])
                answer = site.fit(job, chosen, job.gpus, victims)
                if answer is not None:
                    break
        if answer is not None:
            return name, chosen, answer[0], answer[1]
    return None


def _exact(site: _Site, job: Job, domains: list[tuple[str | None, np.ndarray]]
           ) -> tuple[np.ndarray, tuple[str | None, np.ndarray, int, np.ndarray]] | None:
    """Every victim set in cost order; the first that works.

    With the node search (:data:`NODE_SEARCH_MAX_NODES`) the test is monotone: evicting
    more only frees GPUs, nodes and watts, and every choice of nodes is tried, so a set
    works only if every allowed job of its priority or lower, evicted together, works.
    Each priority is asked that once, and the sets of a priority where even all fail
    (every set, when no plan exists) are not tried one by one.
    """
    candidates = np.flatnonzero(site.evictable)
    least_priority = None
    if site.search_nodes and len(candidates):
        for threshold in np.unique(site.priority[candidates]).tolist():
            every = site.evictable & (site.priority <= threshold)
            if _try_victims(site, job, every, domains) is not None:
                least_priority = threshold
                break
        else:
            return None   # not even every evictable job at once: no set works
    sets = []
    for r in range(len(candidates) + 1):
        for combo in itertools.combinations(candidates, r):
            mask = np.zeros(len(site.cap), bool)
            mask[list(combo)] = True
            cost = site.cost(mask)
            if least_priority is not None and r and cost[0] < least_priority:
                continue   # all of this priority or lower fail together: so does this
            sets.append((cost, combo, mask))
    sets.sort(key=lambda item: (item[0], item[1]))
    for _cost, _combo, mask in sets:
        answer = _try_victims(site, job, mask, domains)
        if answer is not None:
            return mask, answer
    return None


def _milp(site: _Site, job: Job, domains: list[tuple[str | None, np.ndarray]]
          ) -> tuple[np.ndarray, tuple[str | None, np.ndarray, int, np.ndarray]] | None:
    """The least-cost victim set through ``scipy.optimize.milp``, tested by ``_try_victims``.

    For each priority threshold in ascending order a MILP (:class:`_VictimModel`) gives
    victim sets of that highest priority in (work lost, GPUs evicted) order; the first that
    the exact test accepts is the plan.  Every set the test accepts is feasible in the
    model (it is the test, but for a small job's node: any with room, where the test
    tries the 64 fullest above :data:`NODE_SEARCH_MAX_NODES` nodes), so a set the test
    refuses is cut off and the model solved again, and the answer has ``_exact``'s cost.
    """
    none = np.zeros(len(site.cap), bool)
    answer = _try_victims(site, job, none, domains)
    if answer is not None:
        return none, answer
    for threshold in np.unique(site.priority[site.evictable]).tolist():
        allowed = site.evictable & (site.priority <= threshold)
        model = _VictimModel(site, job, domains, allowed, int(threshold))
        found = model.least(lambda victims: _try_victims(site, job, victims, domains))
        if found is not None:
            return found
    return None


class _VictimModel:
    """One threshold's victim-set MILP over the live state.

    Binary variables, in this order: ``x_j`` evict allowed job j; ``y_n`` node n takes
    the job; ``e_n`` node n is emptied by the victims and not taken by the job (it sheds
    its busy step); ``s_d`` domain d holds the gang (only with several domains); then the
    gang's continuous ``z_i`` (below).

    * Nodes: a gang takes ``k`` up nodes of one domain, each emptied (``y_n <= x_j`` for
      every job j on n); a job of one node's GPUs or fewer takes one up node with enough
      GPUs free after the victims (``gpus * y_n <= free_n + sum gpn_j x_j``).
    * Rows: every row of ``A`` holds with the job at ``min_cap_w`` and every flexible job
      that stays at its min cap (the deepest cap-down, which is what
      :meth:`_Site.fit` tests), all in integer watts, so linear and exact: a victim sheds
      ``gpn (min_cap - idle)`` a node, an emptied node its busy step (``e_n <= x_j``; a
      node the job takes keeps its busy step, so ``e_n + y_n <= 1``), and the job adds
      ``gpn (min_cap_w - idle)`` a node plus the busy step of a node that was empty.
    * On a site the node search covers (:data:`NODE_SEARCH_MAX_NODES`) a gang takes any
      ``k`` empty nodes of its domain, as the test does.  On a larger one it takes the
      first ``k``, as the test does there (a model free to take any empty nodes proposes,
      on tight sites, dozens of sets the first-k test refuses): ``z_i`` (continuous) is
      "an empty node before the domain's i-th was not taken", and no node after one is
      taken.
    * At least one victim of the threshold's priority: every set of lower priorities
      was refused at the thresholds before.
    """

    #: Refused sets cut off per threshold before giving up (each costs two solves).
    MAX_CUTS = 2000

    def __init__(self, site: _Site, job: Job, domains: list[tuple[str | None, np.ndarray]],
                 allowed: np.ndarray, threshold: int) -> None:
        import scipy.sparse as sp  # the plan layer reads scipy; loaded on first use

        self.site = site
        self.cuts: list[np.ndarray] = []   # refused sets, as victim columns
        G, N = site.G, site.N
        gang = job.gpus > G
        k = job.gpus // G if gang else 1
        gpn = G if gang else job.gpus
        self.cand = cand = np.flatnonzero(allowed)
        n_x = len(cand)
        col_of_job = np.full(len(site.cap), -1, np.int64)
        col_of_job[cand] = np.arange(n_x)
        entry_ok = allowed[site.flat_job]
        node_blocked = np.bincount(site.flat_nodes, weights=~entry_ok, minlength=N) > 0
        freeable = np.bincount(site.flat_nodes[entry_ok], weights=site.entry_gpn[entry_ok],
                               minlength=N).astype(np.int64)
        # the nodes that may take the job, each with its domain (domains are disjoint:
        # one pod, the pods, or the site)
        y_nodes_l, y_dom_l = [], []
        for d, (_name, nodes) in enumerate(domains):
            nodes = nodes[site.open[nodes]]
            if gang:
                nodes = nodes[~node_blocked[nodes]]
                if len(nodes) < k:
                    continue
            else:
                nodes = nodes[site.free[nodes] + freeable[nodes] >= job.gpus]
            y_nodes_l.append(nodes)
            y_dom_l.append(np.full(len(nodes), d, np.int64))
        y_nodes = np.concatenate(y_nodes_l) if y_nodes_l else np.zeros(0, np.int64)
        y_dom = np.concatenate(y_dom_l) if y_dom_l else np.zeros(0, np.int64)
        self.empty_model = not len(y_nodes)
        if self.empty_model:
            return
        used_domains = np.unique(y_dom)
        e_nodes = np.flatnonzero((site.count > 0) & ~node_blocked)
        n_y, n_e = len(y_nodes), len(e_nodes)
        n_s = len(used_domains) if gang and len(used_domains) > 1 else 0
        # a gang's chain: z at each of a domain's nodes but its first, "a node before
        # this one was empty and not taken" (continuous)
        first_k = gang and not site.search_nodes
        chain_prev = (np.flatnonzero(y_dom[1:] == y_dom[:-1]) if first_k
                      else np.zeros(0, np.int64))
        n_z = len(chain_prev)
        self.n_var = n_var = n_x + n_y + n_e + n_s + n_z
        y0, e0, s0, z0 = n_x, n_x + n_y, n_x + n_y + n_e, n_x + n_y + n_e + n_s
        self.integrality = np.concatenate([np.ones(n_var - n_z), np.zeros(n_z)])
        y_col = np.full(N, -1, np.int64)
        y_col[y_nodes] = y0 + np.arange(n_y)
        e_col = np.full(N, -1, np.int64)
        e_col[e_nodes] = e0 + np.arange(n_e)

        rows: list[Any] = []   # (matrix, lower, upper) blocks of the constraints
        # -- rows of A: rack watts per variable, times A --
        ent = np.flatnonzero(entry_ok)
        rack_of_entry = site.node_rack[site.flat_nodes]
        at_min_w = site.entry_gpn * (site.min_cap - site.idle_w)[site.flat_job]
        originally_empty = site.free[y_nodes] == G
        y_w = gpn * (job.min_cap_w - site.idle_w) + site.busy_w * originally_empty
        rack_cols = sp.csc_matrix(
            (np.concatenate([-at_min_w[ent], y_w, np.full(n_e, -site.busy_w)]).astype(float),
             (np.concatenate([rack_of_entry[ent], site.node_rack[y_nodes],
                              site.node_rack[e_nodes]]),
              np.concatenate([col_of_job[site.flat_job[ent]], y_col[y_nodes],
                              e_col[e_nodes]]))),
            shape=(site.R, n_var))
        # every flexible job lowered to its min cap: what the rows have left
        cap_down_w = np.bincount(rack_of_entry, weights=site.entry_gpn
                                 * (site.cap - site.min_cap)[site.flat_job], minlength=site.R)
        A = site.A
        room = (site.slack + A @ np.rint(cap_down_w).astype(np.int64)).astype(float)
        row_matrix = (A.astype(float) @ rack_cols).tocsr()
        # a row the job cannot break whatever it takes needs no place in the model
        most = np.asarray(row_matrix.multiply(row_matrix > 0).max(axis=1).todense()).ravel()
        keep = np.flatnonzero(most * k > room)   # (a row already short is kept)
        scale = 1.0 / COEF_SCALE  # watts times A: numbers HiGHS reads well
        rows.append((row_matrix[keep] * scale, -np.inf, room[keep] * scale))
        # -- the job's nodes --
        if gang:
            on = np.flatnonzero(y_col[site.flat_nodes] >= 0)
            m = len(on)
            rows.append((sp.csr_matrix(
                (np.concatenate([np.ones(m), -np.ones(m)]),
                 (np.tile(np.arange(m), 2),
                  np.concatenate([y_col[site.flat_nodes[on]],
                                  col_of_job[site.flat_job[on]]]))),
                shape=(m, n_var)), -np.inf, 0.0))
            if n_s:
                dom_row = np.searchsorted(used_domains, y_dom)
                ones = np.ones(n_y)
                rows.append((sp.csr_matrix(
                    (np.concatenate([ones, -k * np.ones(n_s)]),
                     (np.concatenate([dom_row, np.arange(n_s)]),
                      np.concatenate([y0 + np.arange(n_y), s0 + np.arange(n_s)]))),
                    shape=(n_s, n_var)), 0.0, 0.0))
                s_row = np.zeros((1, n_var))
                s_row[0, s0:z0] = 1
                rows.append((sp.csr_matrix(s_row), 1.0, 1.0))
            else:
                take = np.zeros((1, n_var))
                take[0, y0:e0] = 1
                rows.append((sp.csr_matrix(take), float(k), float(k)))
            if first_k:
                # the test takes the first k empty nodes of the domain, so must the model: a
                # node emptied is taken or counted emptied (y_n + e_n >= 1 once every job on
                # it goes), and once an empty node is passed over no later node is taken
                # (z_i >= z_{i-1}, z_i >= skipped_{i-1}, y_i + z_i <= 1)
                held = y_nodes[site.count[y_nodes] > 0]
                on = np.flatnonzero(np.isin(site.flat_nodes, held))
                pos = np.full(N, -1, np.int64)
                pos[held] = np.arange(len(held))
                h = len(held)
                rows.append((sp.csr_matrix(
                    (np.concatenate([np.ones(2 * h), -np.ones(len(on))]),
                     (np.concatenate([np.tile(np.arange(h), 2), pos[site.flat_nodes[on]]]),
                      np.concatenate([y_col[held], e_col[held],
                                      col_of_job[site.flat_job[on]]]))),
                    shape=(h, n_var)), (1 - site.count[held]).astype(float), np.inf))
                if n_z:
                    z = z0 + np.arange(n_z)
                    prev_node = y_nodes[chain_prev]
                    prev_held = site.count[prev_node] > 0
                    # skipped: e of a node that held jobs, 1 - y of a node empty already
                    skip_col = np.where(prev_held, e_col[prev_node], y0 + chain_prev)
                    skip_sign = np.where(prev_held, -1.0, 1.0)
                    low = np.where(prev_held, 0.0, 1.0)
                    rows.append((sp.csr_matrix(
                        (np.concatenate([np.ones(n_z), skip_sign]),
                         (np.tile(np.arange(n_z), 2), np.concatenate([z, skip_col]))),
                        shape=(n_z, n_var)), low, np.inf))
                    same = np.flatnonzero(np.diff(chain_prev) == 1)   # z_i - z_{i-1} >= 0
                    same = same[y_dom[chain_prev[same]] == y_dom[chain_prev[same + 1]]]
                    m = len(same)
                    rows.append((sp.csr_matrix(
                        (np.concatenate([np.ones(m), -np.ones(m)]),
                         (np.tile(np.arange(m), 2), np.concatenate([z[same + 1], z[same]]))),
                        shape=(m, n_var)), 0.0, np.inf))
                    rows.append((sp.csr_matrix(
                        (np.ones(2 * n_z), (np.tile(np.arange(n_z), 2),
                                            np.concatenate([y0 + chain_prev + 1, z]))),
                        shape=(n_z, n_var)), -np.inf, 1.0))
        else:
            on = np.flatnonzero((y_col[site.flat_nodes] >= 0) & entry_ok)
            m = len(on)
            pos = np.full(N, -1, np.int64)   # node -> its row here
            pos[y_nodes] = np.arange(n_y)
            rows.append((sp.csr_matrix(
                (np.concatenate([np.full(n_y, float(job.gpus)),
                                 -site.entry_gpn[on].astype(float)]),
                 (np.concatenate([np.arange(n_y), pos[site.flat_nodes[on]]]),
                  np.concatenate([y0 + np.arange(n_y), col_of_job[site.flat_job[on]]]))),
                shape=(n_y, n_var)), -np.inf, site.free[y_nodes].astype(float)))
            take = np.zeros((1, n_var))
            take[0, y0:e0] = 1
            rows.append((sp.csr_matrix(take), 1.0, 1.0))
        # -- emptied nodes: e_n <= x_j for each job on n, e_n + y_n <= 1 --
        on = np.flatnonzero(e_col[site.flat_nodes] >= 0)
        m = len(on)
        rows.append((sp.csr_matrix(
            (np.concatenate([np.ones(m), -np.ones(m)]),
             (np.tile(np.arange(m), 2),
              np.concatenate([e_col[site.flat_nodes[on]], col_of_job[site.flat_job[on]]]))),
            shape=(m, n_var)), -np.inf, 0.0))
        both = e_nodes[y_col[e_nodes] >= 0]
        if len(both):
            b = len(both)
            rows.append((sp.csr_matrix(
                (np.ones(2 * b), (np.tile(np.arange(b), 2),
                                  np.concatenate([e_col[both], y_col[both]]))),
                shape=(b, n_var)), -np.inf, 1.0))
        # -- a victim of the threshold's priority --
        top = np.zeros((1, n_var))
        top[0, :n_x] = site.priority[cand] == threshold
        rows.append((sp.csr_matrix(top), 1.0, np.inf))
        self.rows = rows
        self.work_s = site.work_gpu_h[cand] * 3600.0   # GPU-seconds: a well-scaled sum
        self.gpus = site.gpus[cand].astype(float)

    def _solve(self, objective: np.ndarray, extra: list[Any]) -> np.ndarray | None:
        """Victim columns of an optimum (bool over ``cand``), or None when infeasible."""
        import scipy.sparse as sp
        from scipy.optimize import Bounds, LinearConstraint, milp

        n_x = len(self.cand)
        blocks = self.rows + extra
        if self.cuts:
            # no-good cuts: sum_{j in V} x_j - sum_{j not in V} x_j <= |V| - 1
            signs = np.array([np.where(v, 1.0, -1.0) for v in self.cuts])
            cut = sp.hstack([sp.csr_matrix(signs),
                             sp.csr_matrix((len(self.cuts), self.n_var - n_x))]).tocsr()
            blocks = blocks + [(cut, -np.inf, np.array([v.sum() - 1.0 for v in self.cuts]))]
        matrix = sp.vstack([b[0] for b in blocks]).tocsr()
        lower = np.concatenate([np.broadcast_to(b[1], b[0].shape[0]) for b in blocks])
        upper = np.concatenate([np.broadcast_to(b[2], b[0].shape[0]) for b in blocks])
        c = np.zeros(self.n_var)
        c[:n_x] = objective
        res = milp(c, integrality=self.integrality, bounds=Bounds(0, 1),
                   constraints=LinearConstraint(matrix, lower, upper),
                   options={"mip_rel_gap": 0.0})
        if res.status == 2:
            return None
        if res.status != 0 or res.x is None:
            raise PreemptionError(f"method='milp': HiGHS stopped without an optimum "
                                  f"({res.message}); try method='exact' or 'heuristic'",
                                  field="method")
        return np.asarray(res.x[:n_x] > 0.5)

    def least(self, accept: Any
              ) -> tuple[np.ndarray, tuple[str | None, np.ndarray, int, np.ndarray]] | None:
        """The cheapest set ``accept`` takes: (victim mask, its answer), or None."""
        import scipy.sparse as sp

        if self.empty_model:
            return None
        site, n_x = self.site, len(self.cand)
        for _ in range(self.MAX_CUTS):
            first = None
            extra: list[Any] = []
            if self.work_s.any():
                first = self._solve(self.work_s, [])
                if first is None:
                    return None
                least_s = float(self.work_s[first].sum())
                # the least work, then the fewest GPUs among the sets that lose it
                row = sp.csr_matrix(np.concatenate([self.work_s,
                                                    np.zeros(self.n_var - n_x)])[None, :])
                extra = [(row, -np.inf, least_s + max(1e-6, 1e-9 * least_s))]
            chosen = self._solve(self.gpus, extra)
            if chosen is None:
                if first is None:
                    return None
                chosen = first
            mask = np.zeros(len(site.cap), bool)
            mask[self.cand[chosen]] = True
            if first is not None:   # the solver's tolerance must not buy more work
                first_mask = np.zeros(len(site.cap), bool)
                first_mask[self.cand[first]] = True
                if site.cost(first_mask) < site.cost(mask):
                    mask, chosen = first_mask, first
            answer = accept(mask)
            if answer is not None:
                return mask, answer
            self.cuts.append(chosen)
        raise PreemptionError(f"method='milp' refused {self.MAX_CUTS} victim sets at one "
                              "priority; try method='heuristic'", field="method")


def _heuristic(site: _Site, job: Job, domains: list[tuple[str | None, np.ndarray]]
               ) -> tuple[np.ndarray, tuple[str | None, np.ndarray, int, np.ndarray]] | None:
    n = len(site.cap)
    none = np.zeros(n, bool)
    answer = _try_victims(site, job, none, domains)
    if answer is not None:
        return none, answer
    share = np.where(site.nodes_of > 0, site.work_gpu_h / np.maximum(site.nodes_of, 1), 0.0)
    for threshold in np.unique(site.priority[site.evictable]):
        allowed = site.evictable & (site.priority <= threshold)
        blocked_entry = ~allowed[site.flat_job]
        node_blocked = np.bincount(site.flat_nodes, weights=blocked_entry,
                                   minlength=site.N) > 0
        node_cost = np.bincount(site.flat_nodes, weights=share[site.flat_job], minlength=site.N)
        node_gpus = site.G - site.free
        best: tuple[Any, ...] | None = None
        for name, nodes in domains:
            victims = _victims_for_nodes(site, job, nodes, allowed, node_blocked, node_cost,
                                         node_gpus)
            if victims is None:
                continue
            found = _try_victims(site, job, victims, [(name, nodes)])
            if found is None:
                victims = _add_for_watts(site, job, victims, allowed, [(name, nodes)])
                if victims is None:
                    continue
                found = _try_victims(site, job, victims, [(name, nodes)])
                if found is None:
                    continue
            key = site.cost(victims)
            if best is None or key < best[0]:
                best = (key, victims, found)
        if best is not None:
            return best[1], best[2]
    return None


def _victims_for_nodes(site: _Site, job: Job, nodes: np.ndarray, allowed: np.ndarray,
                       node_blocked: np.ndarray, node_cost: np.ndarray, node_gpus: np.ndarray
                       ) -> np.ndarray | None:
    """The jobs to evict so that the domain's cheapest nodes can take the job."""
    G = site.G
    n = len(site.cap)
    if job.gpus > G:
        k = job.gpus // G
        open_ = nodes[~node_blocked[nodes]]
        if len(open_) < k:
            return None
        victims = np.zeros(n, bool)
        cost, gpus = node_cost.copy(), node_gpus.copy()
        for _round in range(2):
            # cheapest first: work lost, then GPUs evicted, then the lowest index
            order = np.lexsort((open_, gpus[open_], cost[open_]))
            chosen = open_[order[:k]]
            on_chosen = np.isin(site.flat_nodes, chosen)
            victims = np.zeros(n, bool)
            victims[site.flat_job[on_chosen]] = True
            # nodes the victims also vacate cost nothing more: choose again
            _free, empty, _ = site.after(victims)
            cost = np.where(empty, 0.0, node_cost)
            gpus = np.where(empty, 0, node_gpus)
        return victims
    # a job on one node: the node whose cheapest victims free enough GPUs
    need = job.gpus
    best: tuple[Any, ...] | None = None
    entries = np.flatnonzero(np.isin(site.flat_nodes, nodes))
    by_node: dict[int, list[int]] = {}
    for e in entries:
        by_node.setdefault(int(site.flat_nodes[e]), []).append(int(site.flat_job[e]))
    for node in nodes:
        node = int(node)
        if site.free[node] >= need:
            return np.zeros(n, bool)  # GPUs free already: only watts can be short
        on = by_node.get(node, [])
        pick = sorted((j for j in on if allowed[j]),
                      key=lambda j: (int(site.priority[j]), float(site.work_gpu_h[j]),
                                     int(site.gpus[j]), j))
        freed, chosen = int(site.free[node]), []
        for j in pick:
            if freed >= need:
                break
            chosen.append(j)
            freed += int(site.gpn[j])
        if freed < need:
            continue
        mask = np.zeros(n, bool)
        mask[chosen] = True
        key = site.cost(mask)
        if best is None or key < best[0]:
            best = (key, mask)
    return None if best is None else best[1]


def _add_for_watts(site: _Site, job: Job, victims: np.ndarray, allowed: np.ndarray,
                   domains: list[tuple[str | None, np.ndarray]]) -> np.ndarray | None:
    """More victims, anywhere, until the rows the job would break hold.

    Each candidate's watts are counted linearly (its GPUs above idle at the cap the
    deepest cap-down leaves it, busy steps left out: an under-count, so never too few),
    candidates are taken by priority, then work lost per watt freed in the short rows,
    until every short row is covered; the ones the others cover anyway are dropped
    again, most expensive first; one exact test (:meth:`_Site.fit`) decides.
    """
    chosen = _chosen_nodes(site, job, victims, domains)
    if chosen is None:
        return None
    nodes, gpn = chosen
    excess = site.excess(job, nodes, gpn, victims)
    rows = np.flatnonzero(excess > 0)
    candidates = np.flatnonzero(allowed & ~victims)
    if not len(rows) or not len(candidates):
        return None
    import scipy.sparse as sp  # the plan layer reads scipy; loaded on first use
    floor_cap = np.where(site.cap > site.min_cap, site.min_cap, site.cap)
    entry_w = (site.gpn * (floor_cap - site.idle_w))[site.flat_job]
    by_job = sp.csr_matrix((entry_w, (site.flat_job, site.node_rack[site.flat_nodes])),
                           shape=(len(site.cap), site.R))
    freed = np.asarray((by_job[candidates] @ site.A[rows].T).todense())  # units a row
    share = freed / excess[rows]            # fraction of each row's shortfall it covers
    worth = share.max(axis=1)
    order = np.lexsort((site.gpus[candidates], -worth,
                        site.work_gpu_h[candidates] / np.maximum(worth, 1e-12),
                        site.priority[candidates]))
    order = order[worth[order] > 0]
    running = np.cumsum(share[order], axis=0)     # coverage after each one taken
    enough = np.flatnonzero((running >= 1).all(axis=1))
    if not len(enough):
        return None
    taken = order[:int(enough[0]) + 1].tolist()
    covered = running[int(enough[0])].copy()
    for i in sorted(taken, key=lambda t: (-site.priority[candidates[t]],
                                          -site.work_gpu_h[candidates[t]])):
        if len(taken) > 1 and (covered - share[i] >= 1).all():
            covered -= share[i]
            taken.remove(i)
    out = victims.copy()
    out[candidates[taken]] = True
    if _try_victims(site, job, out, domains) is not None:
        return out
    # the linear count missed something (a rack row, a cap-down level): add the rest in
    # cost order, doubling, and test exactly
    rest = [int(candidates[i]) for i in order if not out[candidates[i]]]
    step, k = 1, 0
    while k < len(rest):
        out[rest[k:k + step]] = True
        k += step
        if _try_victims(site, job, out, domains) is not None:
            return out
        step *= 2
    return None


def _chosen_nodes(site: _Site, job: Job, victims: np.ndarray,
                  domains: list[tuple[str | None, np.ndarray]]
                  ) -> tuple[np.ndarray, int] | None:
    """The nodes ``_try_victims`` would give the job in the first domain with room."""
    free, empty, _ = site.after(victims)
    for _name, nodes in domains:
        if job.gpus > site.G:
            usable = nodes[empty[nodes]]
            if len(usable) >= job.gpus // site.G:
                return usable[:job.gpus // site.G], site.G
        else:
            usable = nodes[free[nodes] >= job.gpus]
            if len(usable):
                order = np.lexsort((usable, free[usable]))
                return usable[order][:1], job.gpus
    return None


def plan_preemption(engine: "Engine", job: Job, pod: int | str | None = None, *,
                    since_checkpoint_s: Mapping[str, float] | None = None,
                    method: str = "auto",
                    exact_max_victims: int = DEFAULT_EXACT_MAX_VICTIMS) -> PreemptionPlan:
    """The least-cost cap-downs and evictions that let ``job`` start now (see the module).

    Parameters
    ----------
    engine : Engine
    job : Job
        Not placed yet; its ``priority`` bounds the victims (strictly lower, preemptible).
    pod : int or str, optional
        Keep the job inside this pod.
    since_checkpoint_s : mapping of job id to seconds, optional
        How long each running job has run since its last checkpoint (or start): the work
        an eviction loses is its GPUs times this.  Jobs not in it lose nothing.
    method : {"auto", "exact", "heuristic", "milp"}
        ``auto``: exact when at most ``exact_max_victims`` jobs are evictable, else the
        heuristic.  ``exact``: every victim set; the optimum over sets and nodes on a
        site of at most :data:`NODE_SEARCH_MAX_NODES` nodes, under the first-k rule
        above it.  ``milp``: the enumeration's cost at any size through
        ``scipy.optimize.milp`` (seconds at scale, see the module).

    Raises
    ------
    PreemptionError
        No plan lets the job start (its ``message`` says so), or a bad argument.
    DuplicateJobError, JobError
        The job is already placed, or can never run on this cluster.
    """
    if method not in _METHODS:
        raise PreemptionError(f"method={method!r} must be one of "
                              f"{', '.join(map(repr, _METHODS))}", field="method")
    if (isinstance(exact_max_victims, bool) or not isinstance(exact_max_victims, int)
            or not 0 <= exact_max_victims <= 20):
        raise PreemptionError(f"exact_max_victims={exact_max_victims!r} must be an int in "
                              "0..20 (2^20 victim sets)", field="exact_max_victims")
    if since_checkpoint_s is None:
        since_checkpoint_s = {}
    elif not isinstance(since_checkpoint_s, Mapping):
        raise PreemptionError("since_checkpoint_s must map job ids to seconds, got "
                              f"{type(since_checkpoint_s).__name__}", field="since_checkpoint_s")
    with engine._lock:
        check_job(engine.cluster, job, engine)
        pod_index = -1 if pod is None else check_pod(engine.cluster, pod)
        site = _Site(engine, job, since_checkpoint_s)
        domains = _domains(site, job, pod_index)
        used = method
        if method == "auto":
            used = ("exact" if int(site.evictable.sum()) <= exact_max_victims
                    else "heuristic")
        if used == "exact":
            found = _exact(site, job, domains)
        elif used == "milp":
            found = _milp(site, job, domains)
        else:
            found = _heuristic(site, job, domains)
        if found is None:
            why = engine.explain(job, pod)
            raise PreemptionError(
                f"no plan lets job {job.id!r} (priority {job.priority}) start now: "
                f"{why.message}, and no cap-downs plus evictions of preemptible jobs of "
                "lower priority free enough", field="job")
        victims, (domain, nodes, cap, drop) = found
        gpn = job.gpus if job.gpus <= site.G else site.G
        placement = Placement(job.id, tuple(nodes.tolist()), gpn, int(cap))
        lowered = np.flatnonzero((drop > 0) & ~victims)
        ids = site.ids
        changes = tuple(CapChange(ids[j], old, new) for j, old, new in zip(
            lowered.tolist(), site.cap[lowered].tolist(), (site.cap - drop)[lowered].tolist()))
        prio, work, gpus = site.cost(victims)
        return PreemptionPlan(
            job=job, victims=tuple(site.ids[j] for j in np.flatnonzero(victims)),
            cap_changes=changes, placement=placement,
            max_victim_priority=None if prio == _NO_VICTIM else prio,
            work_lost_gpu_h=work, gpus_evicted=gpus, method=used, domain=domain,
            _engine=engine, _token=site.token)

