"""A site that changes: node states, domain failures, repair, hot spares and live limits.

DESIGN.md, "A site that changes".  Written once, for both twins, over the core
primitives they share (``gpusched._core.EngineCoreAPI``): ``_set_node_state`` (a node's
state and the watts that change costs), ``_set_limit_units`` (a row's live limit),
``_jobs_on`` (who holds a node), ``_reshape`` (a job loses or gains nodes at its own
cap) and ``_replace``.  The core keeps the books (which nodes are open to the search,
rack power, row slack); this module decides what a failure, a drain, a repair or a spare
policy changes.  ``Engine`` inherits :class:`SiteMixin`.

Power, in every row, always:

- an UP or DRAINING node draws what its GPUs' jobs are budgeted at (unchanged);
- a DOWN node draws ``PowerModel.node_down_w`` (default 0 W) instead of its idle power,
  so a failure frees its watts in every row;
- a SPARE node (up, empty, held out of placement) is budgeted as if busy at the spare
  cap: ``busy_step_w + gpus_per_node * (spare_cap_w - gpu_idle_w)`` above idle, so a
  repair into it at a cap at most the spare cap never adds load to any row.

Restoring a DOWN node brings its idle power back; if a row's headroom was spent meanwhile
that may put the row over (``violations``), as lowering a limit does;
``gpusched.plan.plan_envelope`` brings it back under.  While a row is over nothing adds
load to it.

Example: a spare per pod, a failure, the repair into the spare, the node back, then a
facility curtailment and the plan back under it (``tiny``: 8 nodes in 2 pods):

>>> from gpusched import Cluster, Engine, Job
>>> from gpusched.plan import plan_envelope
>>> engine = Engine(Cluster.preset("tiny"))
>>> engine.set_spares(1, per="pod").nodes          # held out, busy watts at 700 W held
(3, 7)
>>> engine.place(Job("train", 16, min_cap_w=300))
Placement('train', nodes=[0, 1], gpus_per_node=8, cap_w=700)
>>> engine.fail("rack-1-n1")                       # the jobs it hit
['train']
>>> engine.degraded()
{'train': (1,)}
>>> engine.repair("train")                         # into pod-1's spare
Placement('train', nodes=[0, 3], gpus_per_node=8, cap_w=700)
>>> engine.restore("rack-1-n1"), engine.spares().short   # it refills the pool
([1], {})
>>> engine.set_limit("facility IT limit", 38_000)  # returns the limit before
55000.0
>>> engine.violations()
[('facility IT limit', 41880.0, 38000.0)]
>>> plan = plan_envelope(engine)
>>> plan.status, plan.caps, plan.evict
('caps', {'train': 450}, ())
>>> engine.apply_envelope(plan)["caps"]["train"].cap_w, engine.violations()
(450, [])
"""

from __future__ import annotations

import math
import operator
from bisect import insort
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ._engine_py import DOWN, DRAINING, NODE_STATE_NAMES, SPARE, UP
from .explanation import Explanation
from .errors import (DomainError, LimitError, RepairError, SpareError, UnknownNodeError,
                     UnknownRowError)
from .job import Job, Placement
from .spec import COEF_SCALE, MAX_ROW_LOAD_UNITS

if TYPE_CHECKING:
    from .plan.envelope import EnvelopePlan
    from .spec import Cluster

__all__ = ["SiteMixin", "SparePolicy", "SpareReport", "FAILURE_DOMAIN_KINDS",
           "NODE_STATE_NAMES", "UP", "DRAINING", "DOWN", "SPARE"]

#: Constraint-row kinds whose name ``fail_domain`` takes: what the row's equipment feeds
#: or cools goes down with it (a rack feed trip, a CDU or an air-cooling unit, a row
#: busway, a hall switchboard or cooling plant).  The facility row is not a domain.
FAILURE_DOMAIN_KINDS = ("rack-feed", "cdu", "rack-air", "air-cooling", "row", "hall",
                        "hall-cooling")

#: Nearness of a replacement node to the node it replaces, nearest first.
_SAME_RACK, _SAME_POD, _SAME_ROW, _SAME_HALL, _ELSEWHERE = range(5)


@dataclass(frozen=True)
class SparePolicy:
    """Hold ``k`` whole empty nodes as hot spares in every pod (or every row).

    ``cap_w`` is the spare cap: each spare's busy power at that cap is held in every
    row, so a repair into a spare at a cap no higher never breaks a row.
    """

    k: int
    per: str
    cap_w: int

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "per": self.per, "cap_w": self.cap_w}


@dataclass(frozen=True)
class SpareReport:
    """What the hot spares hold now (``Engine.spares``).

    ``nodes`` ascending; ``gpus`` on them; ``held_w`` the watts their busy power at the
    spare cap holds above idle in the rows; ``short`` the domains (pod or row names)
    holding fewer than ``policy.k`` spares, with how many are missing (no empty up node
    left, or no watts for one).
    """

    policy: SparePolicy | None
    nodes: tuple[int, ...]
    gpus: int
    held_w: int
    short: dict[str, int] = field(default_factory=dict)


class SiteMixin:
    """Node states, domain failures, repair, hot spares and live limits for Engine."""

    if TYPE_CHECKING:  # provided by the twin and by Engine
        @property
        def cluster(self) -> Cluster: ...
        _lock: Any

        def _set_node_state(self, node: int, state: int, power_delta_w: int) -> None: ...
        def _set_limit_units(self, row: int, limit_units: int) -> None: ...
        def _jobs_on(self, node: int) -> list[str]: ...
        def _reshape(self, job: Job, new: Placement, removed: Any, added: Any) -> None: ...
        def _replace(self, job: Job, old: Placement, new: Placement) -> None: ...
        def node_state_codes(self) -> np.ndarray: ...
        def node_free_gpus(self) -> np.ndarray: ...
        def row_slack_units(self) -> np.ndarray: ...
        def row_limit_units(self) -> np.ndarray: ...
        def placement(self, job_id: str) -> Placement: ...
        def placements(self) -> list[Placement]: ...
        def job(self, job_id: str) -> Job: ...
        def jobs(self) -> list[Job]: ...
        def __contains__(self, job_id: object) -> bool: ...

    # engine-layer state, the same for both twins (reset with the core's state)
    def _site_reset(self) -> None:
        # job id -> (the placement it had when it last lost a node, lost nodes).  An
        # entry counts only while that very Placement object is the job's placement, so
        # a release (or a new job under the same id) needs no hook on the hot path.
        self._lost: dict[str, tuple[Placement, tuple[int, ...]]] = {}
        self._spare_policy: SparePolicy | None = None

    # ==================================================================================
    # Reading nodes and domains
    # ==================================================================================

    @cached_property
    def _topology(self) -> dict[str, Any]:
        """Per-node rack, pod, row and hall, the nodes of each pod and row, and each
        rack's rows as Python lists (built once, on first use)."""
        cluster = self.cluster
        node_rack = cluster.node_rack
        node_pod = cluster.rack_pod[node_rack]
        node_row = cluster.rack_row[node_rack]
        c = cluster.constraints
        indptr = c.rack_rows_indptr.tolist()
        index = c.rack_rows_index.tolist()
        coef = c.rack_rows_coef_units.tolist()
        return {
            "node_rack": node_rack, "node_pod": node_pod, "node_row": node_row,
            "node_hall": cluster.rack_hall[node_rack],
            "rack_first": cluster.rack_first_node.tolist(),
            "pod_nodes": [np.flatnonzero(node_pod == p) for p in range(cluster.num_pods)],
            "row_nodes": [np.flatnonzero(node_row == r) for r in range(cluster.num_rows)],
            "rack_rows": [list(zip(index[indptr[r]:indptr[r + 1]],
                                   coef[indptr[r]:indptr[r + 1]]))
                          for r in range(cluster.num_racks)],
            "node_index": {name: i for i, name in enumerate(cluster.node_names)},
        }

    def _node_list(self, nodes: Any) -> list[int]:
        """Node indices for one node or many, by index or host name; distinct, in order.

        Raises UnknownNodeError naming the first node that is not the cluster's.
        """
        n_nodes = self.cluster.num_nodes
        items = [nodes] if isinstance(nodes, (str, int, np.integer)) else nodes
        try:
            items = list(items)
        except TypeError:
            raise UnknownNodeError(f"nodes={nodes!r}: give a node index, a node name, or a "
                                   "list of them", field="nodes") from None
        out: list[int] = []
        seen: set[int] = set()
        for item in items:
            if isinstance(item, str):
                index = self._topology["node_index"].get(item)
                if index is None:
                    raise UnknownNodeError(
                        f"no node named {item!r} in cluster {self.cluster.name!r}; nodes "
                        f"are 0..{n_nodes - 1} or their names "
                        f"({self.cluster.node_names[0]!r}, ...)", field="nodes")
            elif isinstance(item, bool) or not isinstance(item, (int, np.integer)):
                raise UnknownNodeError(f"node {item!r} must be a node index (int) or name "
                                       "(str)", field="nodes")
            else:
                index = operator.index(item)
                if not 0 <= index < n_nodes:
                    raise UnknownNodeError(f"node {index} is out of range; cluster "
                                           f"{self.cluster.name!r} has nodes 0..{n_nodes - 1}",
                                           field="nodes")
            if index not in seen:
                seen.add(index)
                out.append(index)
        return out

    def _domain_nodes(self, name: Any) -> list[int]:
        """The nodes a failure domain (a constraint row's equipment) feeds or cools."""
        c = self.cluster.constraints
        if not isinstance(name, str) or name not in c.names:
            domains = [n for n, k in zip(c.names, c.kinds) if k in FAILURE_DOMAIN_KINDS]
            raise DomainError(f"{name!r} is not a failure domain of cluster "
                              f"{self.cluster.name!r}; domains are the names of its rack "
                              f"feed, cooling, busway and switchboard rows, e.g. "
                              f"{domains[:3]!r}", field="domain")
        row = c.names.index(name)
        if c.kinds[row] not in FAILURE_DOMAIN_KINDS:
            raise DomainError(f"{name!r} is a {c.kinds[row]!r} row, not a failure domain; "
                              f"domains are rows of kind {', '.join(FAILURE_DOMAIN_KINDS)}",
                              field="domain")
        A = c.A_units
        racks = A.indices[A.indptr[row]:A.indptr[row + 1]]
        first = self._topology["rack_first"]
        return [n for r in sorted(racks.tolist()) for n in range(first[r], first[r + 1])]

    # ==================================================================================
    # Node states
    # ==================================================================================

    def node_states(self) -> np.ndarray:
        """Each node's state as a compact int8 array: 0 up, 1 draining, 2 down, 3 spare
        (up, held as a hot spare); ``NODE_STATE_NAMES[code]`` names a code."""
        return self.node_state_codes()

    def node_state(self, node: int | str) -> str:
        """The state of one node: ``"up"``, ``"draining"``, ``"down"`` or ``"spare"``."""
        (index,) = self._node_list([node])
        return NODE_STATE_NAMES[int(self.node_state_codes()[index])]

    def nodes_by_state(self) -> dict[str, list[str]]:
        """Host names of the nodes that are not plain up, by state (``draining``,
        ``down``, ``spare``; every key present, lists in node order)."""
        codes = self.node_state_codes()
        names = self.cluster.node_names
        return {NODE_STATE_NAMES[s]: [names[i] for i in np.flatnonzero(codes == s)]
                for s in (DRAINING, DOWN, SPARE)}

    def drain(self, nodes: Any) -> list[int]:
        """Take nodes out of placement; their running jobs stay.  Returns the nodes whose
        state changed (an empty list when every node was already draining or down:
        retrying is safe).  A drained spare leaves the pool (its held watts are freed)."""
        with self._lock:
            node_list = self._node_list(nodes)
            codes = self.node_state_codes()
            changed = []
            for n in node_list:
                state = int(codes[n])
                if state in (UP, SPARE):
                    self._set_node_state(n, DRAINING, -self._spare_reserve_w(state))
                    changed.append(n)
            return changed

    def fail(self, nodes: Any) -> list[str]:
        """Put nodes down (failed or powered off).  Returns the ids of the jobs hit, in
        the order first hit; each keeps its surviving nodes and is degraded until
        :meth:`repair` or ``release``.  A down node draws ``node_down_w`` in every row, so
        its watts are freed.  Failing a down node changes nothing (returns no job)."""
        with self._lock:
            node_list = self._node_list(nodes)
            return self._fail_checked(node_list)

    def _fail_checked(self, node_list: list[int]) -> list[str]:
        codes = self.node_state_codes()
        power = self.cluster.power
        down_delta_w = power.node_down_w - power.node_idle_w
        hit: dict[str, None] = {}
        for n in node_list:
            state = int(codes[n])
            if state == DOWN:
                continue
            for job_id in self._jobs_on(n):
                job, old = self.job(job_id), self.placement(job_id)
                i = old.nodes.index(n)  # slices, not a generator: a gang has 4,096 nodes
                new = Placement(job_id, old.nodes[:i] + old.nodes[i + 1:],
                                old.gpus_per_node, old.cap_w)
                self._reshape(job, new, (n,), ())
                self._lost[job_id] = (new, self.lost_nodes(job_id, old) + (n,))
                hit[job_id] = None
            self._set_node_state(n, DOWN, down_delta_w - self._spare_reserve_w(state))
        return list(hit)

    def restore_nodes(self, nodes: Any) -> list[int]:
        """Bring down or draining nodes back up (``engine.restore(nodes)`` is this).
        Returns the nodes whose state changed (empty when all were up already).  A
        restored node refills the spare pool of its pod or row first.  A down node's idle
        power comes back into its rows."""
        with self._lock:
            node_list = self._node_list(nodes)
            codes = self.node_state_codes()
            power = self.cluster.power
            changed = []
            for n in node_list:
                state = int(codes[n])
                if state == DOWN:
                    self._set_node_state(n, UP, power.node_idle_w - power.node_down_w)
                elif state == DRAINING:
                    self._set_node_state(n, UP, 0)
                else:
                    continue
                changed.append(n)
            if changed and self._spare_policy is not None:
                self._refill_spares(changed)
            return changed

    def fail_domain(self, name: str) -> list[str]:
        """Put down every node a rack feed, cooling unit, row busway or hall switchboard
        feeds or cools (``name`` is the constraint row's, e.g. ``"rack-3 feed"``,
        ``"row-2 busway"``); returns the ids of the jobs hit, as :meth:`fail`."""
        with self._lock:
            return self._fail_checked(self._domain_nodes(name))

    def restore_domain(self, name: str) -> list[int]:
        """:meth:`restore_nodes` every node of the failure domain ``name``."""
        with self._lock:
            return self.restore_nodes(self._domain_nodes(name))

    # ==================================================================================
    # Degraded jobs and repair
    # ==================================================================================

    def lost_nodes(self, job_id: str, placement: Placement | None = None) -> tuple[int, ...]:
        """The nodes a running job has lost to failures since it was placed or last
        repaired (empty for a healthy job)."""
        entry = self._lost.get(job_id) if type(job_id) is str else None
        if entry is None:
            return ()
        current = placement if placement is not None else (
            self.placement(job_id) if job_id in self else None)
        return entry[1] if current is entry[0] else ()

    def degraded(self) -> dict[str, tuple[int, ...]]:
        """Every degraded running job, with the nodes it lost (in placement order)."""
        with self._lock:
            out = {}
            for p in self.placements():
                lost = self.lost_nodes(p.job_id, p)
                if lost:
                    out[p.job_id] = lost
            return out

    def repair(self, job_id: str) -> Placement | None:
        """Replace exactly the nodes a degraded job lost; returns its new placement, or
        None if it cannot be repaired now (:meth:`explain_repair` says why).

        Each lost node is replaced by a hot spare if one is left (nearest first), else by
        an up, empty node, nearest first: the same rack, then pod, row, hall.  The whole
        job runs at one cap: its cap if every row holds, else (a flexible job) the
        highest cap of its range, no higher than now, at which every row holds; a rigid
        job keeps its cap or is not repaired.  Atomic.  Raises UnknownJobError for a job
        that is not running and RepairError for one that lost nothing.
        """
        with self._lock:
            job, old, lost = self._degraded_job(job_id)
            status, cap, added, spares, _row, _msg = self._plan_repair(job, old, lost)
            if status != "placeable":
                return None
            for n in spares:
                self._set_node_state(n, UP, -self._spare_reserve_w(SPARE))
            merged = list(old.nodes)
            for n in sorted(added):  # a few nodes into a sorted gang of thousands
                insort(merged, n)
            new = Placement(job.id, tuple(merged), old.gpus_per_node, cap)
            if cap == old.cap_w:
                self._reshape(job, new, (), sorted(added))
            else:
                self._replace(job, old, new)
            del self._lost[job.id]
            return new

    def explain_repair(self, job_id: str) -> Explanation:
        """What :meth:`repair` would do now, or why it cannot; changes nothing."""
        with self._lock:
            job, old, lost = self._degraded_job(job_id)
            status, cap, added, _spares, row, message = self._plan_repair(job, old, lost)
        c = self.cluster.constraints
        binding = c.names[row] if row >= 0 else None
        kind = c.kinds[row] if row >= 0 else None
        return Explanation(job.id, status, cap if status == "placeable" else None,
                           tuple(sorted(added)) if status == "placeable" else (),
                           binding, kind, message)

    def _degraded_job(self, job_id: Any) -> tuple[Job, Placement, tuple[int, ...]]:
        old = self.placement(job_id)  # raises UnknownJobError
        lost = self.lost_nodes(job_id, old)
        if not lost:
            raise RepairError(f"job {job_id!r} has lost no node; only a degraded job (see "
                              "Engine.degraded()) can be repaired", field="job_id")
        return self.job(job_id), old, lost

    def _plan_repair(self, job: Job, old: Placement, lost: tuple[int, ...]
                     ) -> tuple[str, int, list[int], list[int], int, str]:
        """(status, cap, replacement nodes, those that are spares, binding row, message)."""
        G = self.cluster.gpus_per_node
        codes = self.node_state_codes()
        free = self.node_free_gpus()
        topo = self._topology
        spares = [int(n) for n in np.flatnonzero(codes == SPARE)]
        chosen: list[int] = []
        taken: set[int] = set()
        for n in lost:
            pick = self._nearest(n, [s for s in spares if s not in taken])
            if pick < 0:
                pick = self._nearest_open(n, codes, free, taken)
            if pick < 0:
                return ("no-capacity", -1, [], [], -1,
                        f"Job {job.id!r} cannot be repaired: it lost {len(lost)} node(s) and "
                        f"only {len(chosen)} spare or up, empty node(s) are left")
            chosen.append(pick)
            taken.add(pick)
        used_spares = [n for n in chosen if codes[n] == SPARE]
        reserve = self._spare_reserve_w(SPARE)
        slack = self.row_slack_units()
        power = self.cluster.power
        gpn = old.gpus_per_node
        # fast path: the job's own cap, only the new nodes' load
        delta: dict[int, int] = {}
        node_w = power.busy_step_w + gpn * (old.cap_w - power.gpu_idle_w)
        for n in chosen:
            w = node_w - (reserve if codes[n] == SPARE else 0)
            for row, coef in topo["rack_rows"][int(topo["node_rack"][n])]:
                delta[row] = delta.get(row, 0) + coef * w
        first_bad = min((row for row, d in delta.items() if d > 0 and d > slack[row]),
                        default=-1)
        if first_bad < 0:
            return ("placeable", old.cap_w, chosen, used_spares, -1,
                    f"Job {job.id!r} is repaired on node(s) {sorted(chosen)} at {old.cap_w} W")
        caps = [cap for cap in power.cap_grid_w(job.max_cap_w, job.min_cap_w)
                if cap < old.cap_w]
        if not caps:
            return ("no-power", -1, [], [], first_bad,
                    f"Job {job.id!r} cannot be repaired: at its rigid cap {old.cap_w} W the "
                    f"replacement nodes would break {self.cluster.constraints.names[first_bad]!r}")
        # row load at cap x: const + per_w * x (survivors move by gpn * (x - cap) a node)
        n_racks = self.cluster.num_racks
        node_rack = topo["node_rack"]
        const = np.zeros(n_racks, dtype=np.int64)
        per_w = np.zeros(n_racks, dtype=np.int64)
        surv = np.bincount(node_rack[list(old.nodes)], minlength=n_racks).astype(np.int64)
        const -= surv * gpn * old.cap_w
        per_w += surv * gpn
        for n in chosen:
            r = int(node_rack[n])
            const[r] += (power.busy_step_w - gpn * power.gpu_idle_w
                         - (reserve if codes[n] == SPARE else 0))
            per_w[r] += gpn
        A = self.cluster.constraints.A_units
        a, b = A @ const, A @ per_w
        room = np.maximum(slack, 0) - a
        rows = np.flatnonzero(b > 0)
        bound = int(np.min(np.floor_divide(room[rows], b[rows]))) if rows.size else old.cap_w
        fixed_bad = np.flatnonzero((b == 0) & (room < 0))
        cap = next((x for x in caps if x <= bound), -1) if not fixed_bad.size else -1
        if cap < 0:
            worst = (int(fixed_bad[0]) if fixed_bad.size
                     else int(rows[np.argmin(np.floor_divide(room[rows], b[rows]))]))
            return ("no-power", -1, [], [], worst,
                    f"Job {job.id!r} cannot be repaired: even at {job.min_cap_w} W the "
                    f"replacement nodes would break {self.cluster.constraints.names[worst]!r}")
        return ("placeable", cap, chosen, used_spares, first_bad,
                f"Job {job.id!r} is repaired on node(s) {sorted(chosen)} at {cap} W "
                f"(down from {old.cap_w} W: {self.cluster.constraints.names[first_bad]!r} "
                "holds it)")

    def _nearness(self, a: int, b: int) -> int:
        topo = self._topology
        if topo["node_rack"][a] == topo["node_rack"][b]:
            return _SAME_RACK
        if topo["node_pod"][a] == topo["node_pod"][b]:
            return _SAME_POD
        if topo["node_row"][a] == topo["node_row"][b]:
            return _SAME_ROW
        if topo["node_hall"][a] == topo["node_hall"][b]:
            return _SAME_HALL
        return _ELSEWHERE

    def _nearest(self, node: int, candidates: list[int]) -> int:
        """The candidate nearest ``node`` (lowest index on ties), or -1."""
        if not candidates:
            return -1
        return min(candidates, key=lambda c: (self._nearness(node, c), c))

    def _nearest_open(self, node: int, codes: np.ndarray, free: np.ndarray,
                      taken: set[int]) -> int:
        """The up, empty node nearest ``node``, not in ``taken``, or -1: its rack, then its
        pod, row, hall, then anywhere (lowest index first at each level).  Each level is
        looked at only if the nearer ones have none (a repair is on a hot path)."""
        topo = self._topology
        G = self.cluster.gpus_per_node
        rack = int(topo["node_rack"][node])
        first = topo["rack_first"]
        for n in range(first[rack], first[rack + 1]):
            if codes[n] == UP and free[n] == G and n not in taken:
                return n
        levels = (lambda: topo["pod_nodes"][int(topo["node_pod"][node])],
                  lambda: topo["row_nodes"][int(topo["node_row"][node])],
                  lambda: np.flatnonzero(topo["node_hall"] == topo["node_hall"][node]),
                  lambda: np.arange(len(codes)))
        for level in levels:
            nodes = level()
            for n in nodes[(codes[nodes] == UP) & (free[nodes] == G)].tolist():
                if n not in taken:
                    return int(n)
        return -1

    # ==================================================================================
    # Hot spares
    # ==================================================================================

    def _spare_reserve_w(self, state: int, cap_w: int | None = None) -> int:
        """Watts a spare holds above idle (0 for a node in any other state)."""
        if state != SPARE:
            return 0
        if cap_w is None:
            if self._spare_policy is None:
                return 0
            cap_w = self._spare_policy.cap_w
        power = self.cluster.power
        return power.busy_step_w + power.gpus_per_node * (cap_w - power.gpu_idle_w)

    def set_spares(self, k: int, per: str = "pod", cap_w: int | None = None) -> SpareReport:
        """Hold ``k`` whole empty nodes as hot spares in every pod (``per="pod"``) or
        every row (``per="row"``), each with its busy power at ``cap_w`` (default the
        GPU's TDP) held in every row; ``k=0`` ends the policy.  Spares are taken from the
        up, empty nodes of each domain, highest index first (placement fills from the
        lowest), where their watts fit; a domain that cannot hold ``k`` is reported in
        ``short``.  Raises SpareError for a ``k`` larger than the smallest pod (or row).
        """
        power = self.cluster.power
        if per not in ("pod", "row"):
            raise SpareError(f"per={per!r} must be 'pod' or 'row'", field="per")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise SpareError(f"k={k!r} must be a whole number of nodes, at least 0",
                             field="k")
        k = int(k)
        cap = power.gpu_tdp_w if cap_w is None else cap_w
        if (isinstance(cap, bool) or not isinstance(cap, (int, np.integer))
                or not power.cap_min_w <= cap <= power.gpu_tdp_w):
            raise SpareError(f"cap_w={cap_w!r} must be a whole number of watts in "
                             f"[{power.cap_min_w}, {power.gpu_tdp_w}]", field="cap_w")
        sizes = [len(x) for x in self._domains(per)]
        if k > min(sizes):
            raise SpareError(f"k={k} spares per {per} is more than the smallest {per} of "
                             f"cluster {self.cluster.name!r}, which has {min(sizes)} nodes",
                             field="k")
        with self._lock:
            codes = self.node_state_codes()
            for n in np.flatnonzero(codes == SPARE).tolist():
                self._set_node_state(n, UP, -self._spare_reserve_w(SPARE))
            self._spare_policy = SparePolicy(k, per, int(cap)) if k else None
            if self._spare_policy is not None:
                self._refill_spares(None)
            return self.spares()

    def _domains(self, per: str) -> list[np.ndarray]:
        return self._topology["pod_nodes" if per == "pod" else "row_nodes"]

    def _domain_of(self, node: int, per: str) -> int:
        return int(self._topology["node_pod" if per == "pod" else "node_row"][node])

    def _refill_spares(self, near: list[int] | None) -> None:
        """Top up the spare pools (of the domains of ``near``, or all) to the policy's k."""
        policy = self._spare_policy
        assert policy is not None
        domains = self._domains(policy.per)
        which = (range(len(domains)) if near is None
                 else sorted({self._domain_of(n, policy.per) for n in near}))
        G = self.cluster.gpus_per_node
        reserve = self._spare_reserve_w(SPARE, policy.cap_w)
        rack_rows = self._topology["rack_rows"]
        node_rack = self._topology["node_rack"]
        codes = self.node_state_codes()
        free = self.node_free_gpus()
        slack = self.row_slack_units()
        for d in which:
            nodes = domains[d]
            have = int(np.count_nonzero(codes[nodes] == SPARE))
            for n in nodes[::-1].tolist():
                if have >= policy.k:
                    break
                if codes[n] != UP or free[n] != G:
                    continue
                rows = rack_rows[int(node_rack[n])]
                if any(coef * reserve > slack[row] for row, coef in rows):
                    continue  # no watts for it here: the pool stays short
                self._set_node_state(n, SPARE, reserve)
                for row, coef in rows:
                    slack[row] -= coef * reserve
                codes[n] = SPARE
                have += 1

    def refill_spares(self) -> SpareReport:
        """Top every pool up to the policy's k where empty up nodes and watts allow."""
        with self._lock:
            if self._spare_policy is not None:
                self._refill_spares(None)
            return self.spares()

    def spares(self) -> SpareReport:
        """The spare policy, the spare nodes, their GPUs and the watts they hold."""
        with self._lock:
            codes = self.node_state_codes()
            nodes = tuple(int(n) for n in np.flatnonzero(codes == SPARE))
            policy = self._spare_policy
            short: dict[str, int] = {}
            if policy is not None:
                names = (self.cluster.pod_names if policy.per == "pod"
                         else self.cluster.row_names)
                for d, members in enumerate(self._domains(policy.per)):
                    have = int(np.count_nonzero(codes[members] == SPARE))
                    if have < policy.k:
                        short[names[d]] = policy.k - have
            return SpareReport(policy, nodes, len(nodes) * self.cluster.gpus_per_node,
                               len(nodes) * self._spare_reserve_w(SPARE), short)

    # ==================================================================================
    # Live limits
    # ==================================================================================

    def _row_index(self, row: Any) -> int:
        c = self.cluster.constraints
        if isinstance(row, str):
            if row not in c.names:
                raise UnknownRowError(f"no constraint row named {row!r} in cluster "
                                      f"{self.cluster.name!r}; rows are named like "
                                      f"{c.names[-1]!r}", field="row")
            return c.names.index(row)
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not (
                0 <= row < c.num_rows):
            raise UnknownRowError(f"row={row!r} must be a constraint row's name or an index "
                                  f"in 0..{c.num_rows - 1}", field="row")
        return int(row)

    def set_limit(self, row: str | int, watts: float) -> float:
        """Set the live limit of constraint row ``row`` (its name, or index) to ``watts``.

        Never refuses a finite, non-negative value: a limit is a fact of the site.  If
        the load is above the new limit, the row is over (:meth:`violations`) and
        nothing may add load to it until ``gpusched.plan.plan_envelope``'s plan (or releases)
        bring it back under.  Returns the limit before.  Raises UnknownRowError for a
        row the cluster does not have and LimitError for a negative, NaN or infinite
        value.
        """
        index = self._row_index(row)
        if (isinstance(watts, bool) or not isinstance(watts, (int, float, np.integer,
                                                              np.floating))
                or not math.isfinite(watts) or watts < 0):
            raise LimitError(f"limit {watts!r} for {self.cluster.constraints.names[index]!r} "
                             "must be a finite number of watts, at least 0", field="watts")
        units = min(math.floor(float(watts) * COEF_SCALE) if not isinstance(
            watts, (int, np.integer)) else int(watts) * COEF_SCALE, MAX_ROW_LOAD_UNITS)
        with self._lock:
            before = int(self.row_limit_units()[index]) / COEF_SCALE
            self._set_limit_units(index, units)
            return before

    def reset_limits(self) -> None:
        """Put every row back at the cluster's own limit b."""
        with self._lock:
            b = self.cluster.constraints.b_units
            live = self.row_limit_units()
            for i in np.flatnonzero(live != b).tolist():
                self._set_limit_units(i, int(b[i]))

    def limits_w(self) -> np.ndarray:
        """The live limit of every row, in the row's units (watts), float64."""
        return self.row_limit_units() / COEF_SCALE

    def changed_limits(self) -> dict[str, float]:
        """The rows whose live limit differs from the cluster's, with the live value."""
        live = self.row_limit_units()
        b = self.cluster.constraints.b_units
        names = self.cluster.constraints.names
        return {names[i]: float(live[i]) / COEF_SCALE for i in np.flatnonzero(live != b)}

    def violations(self) -> list[tuple[str, float, float]]:
        """``(row name, load W, live limit W)`` for each row over its live limit."""
        slack = self.row_slack_units()
        live = self.row_limit_units()
        names = self.cluster.constraints.names
        return [(names[i], float(live[i] - slack[i]) / COEF_SCALE, float(live[i]) / COEF_SCALE)
                for i in np.flatnonzero(slack < 0)]

    def apply_envelope(self, plan: "EnvelopePlan") -> dict[str, Any]:
        """Carry out ``gpusched.plan.plan_envelope(engine)``'s plan atomically; raises
        StalePlanError (and changes nothing) if the engine's state changed since the plan
        was made.  (The plan is made by the plan layer, which imports the engine, never the
        reverse: ``tests/test_architecture.py``.)"""
        return plan.apply(self)
