"""Reservations over time: when the head of a queue can start, in GPUs and in watts.

A :class:`Timeline` keeps the running jobs by expected end, each with its GPUs and the
watts it holds in the *site rows* (the rows of ``A·P <= b`` that cover every rack: the
facility IT limit, any site-wide cooling row), in the rows' integer units.  Walking it in
end order gives, for a job that does not fit now, the earliest expected time at which
enough GPUs **and** enough watts in every site row are free for it at its ``min_cap_w``
(its *shadow time*), and what is left over at that time (:class:`Reservation`): GPUs
and, per site row, units.  A job that starts now and runs past the shadow time may take
only from what is left over, so the reserved job's GPUs and watts stay intact.

Nodes.  Given the engine's free GPUs per node, a node counts as empty from the expected
end of the last job on it, whatever the jobs' sizes, and its busy step is freed then
(not when its first job ends); the watts held for the reserved job may be for a cap
above its min, the highest that fits at its start (see :meth:`Timeline.reserve`).

Which rows are held.  A site row loads every rack alike, so the reserved job's demand
on it does not depend on where it will land: it is held exactly.  Rows over part of the
site (hall switchboards, busways, rack feeds) depend on the nodes the job will get,
which the engine chooses at its start; those are left to the engine then.  On a site
whose binding limit is the facility (colossus-100k at 90 MW) the facility row is the one
that matters: a GPU-only reservation lets small jobs take the watts the head needs, and
the head starves although its GPUs are free (issue 16: the GPU-only backfill delivered
13 % less work than fifo on ``--load-scale 4``).

Cost.  Each insert and removal is ``O(running)`` array work; a reservation is one
cumulative sum over the running jobs and one search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..job import Job, Placement
    from ..spec import Cluster

__all__ = ["Timeline", "Reservation", "site_rows"]


def site_rows(cluster: "Cluster") -> np.ndarray:
    """Indices of the rows of ``A·P <= b`` that cover every rack."""
    A = cluster.constraints.A_units
    counts = np.diff(A.indptr)
    return np.flatnonzero(counts == cluster.num_racks)


@dataclass(frozen=True)
class Reservation:
    """When the reserved job can start, and what is left over then.

    ``start_s`` is inf when the running jobs' ends never free enough (the job waits for
    the queue to change).  ``extra_gpus`` and ``extra_units`` (one per site row) are what
    a job that runs past ``start_s`` may take without delaying the reserved one.
    """

    job_id: str
    start_s: float
    extra_gpus: int
    extra_units: tuple[int, ...]
    #: whole empty nodes left over at ``start_s`` (a gang takes empty nodes only) in
    #: ``hall`` (-1: anywhere)
    extra_nodes: int = 2 ** 62
    hall: int = -1
    #: the cap whose watts are held for the reserved job (0: not said)
    cap_w: int = 0

    def admits(self, gpus: int, units: "tuple[int, ...]", nodes: int = 0) -> bool:
        """True if a job holding ``gpus``, ``units`` and ``nodes`` empty nodes past
        ``start_s`` leaves the reservation intact."""
        return (gpus <= self.extra_gpus and nodes <= self.extra_nodes
                and all(u <= e for u, e in zip(units, self.extra_units)))

    def take(self, gpus: int, units: "tuple[int, ...]", nodes: int = 0) -> "Reservation":
        return Reservation(self.job_id, self.start_s, self.extra_gpus - gpus,
                           tuple(e - u for e, u in zip(self.extra_units, units)),
                           self.extra_nodes - nodes, self.hall, self.cap_w)


class Timeline:
    """Running jobs by expected end, with their GPUs, whole nodes and zone-row units.

    The rows held are the *zone rows* (``Constraints.zone_rows``: rows over two or more
    pods -- hall switchboards, hall cooling plants, the facility).  A gang of whole nodes
    is reserved as the engine places it (with ``node_free``): inside one pod in the hall
    where such a pod is ready first, while any pod anywhere has its nodes empty; else
    spread over pods site-wide, on the empty nodes of the halls whose rows have watts
    for them, each hall's rows charged its share.  A job smaller than a node is reserved
    in the hall where it can start first.
    """

    # per slot (set by _grow): expected end, GPUs, whole nodes freed at the end, their
    # hall (-1: several), held-row units, in use, order added
    _end_s: np.ndarray
    _gpus: np.ndarray
    _nodes: np.ndarray
    _hall: np.ndarray
    _units: np.ndarray
    _busy_units: np.ndarray
    _live: np.ndarray
    _seq: np.ndarray
    _next_seq: int

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster
        c = cluster.constraints
        self.rows = np.asarray(c.zone_rows if len(c.zone_rows) else site_rows(cluster))
        A = c.A_units[self.rows]
        #: per held row, per rack: the integer coefficient
        self._coef = np.asarray(A.todense(), dtype=np.int64).reshape(len(self.rows),
                                                                     cluster.num_racks)
        hall_of_rack = np.asarray(cluster.rack_hall)
        self.num_halls = int(hall_of_rack.max()) + 1 if len(hall_of_rack) else 1
        self._node_hall = hall_of_rack[cluster.node_rack]
        power = cluster.power
        self._idle_w, self._busy_w, self._G = (power.gpu_idle_w, power.busy_step_w,
                                               power.gpus_per_node)
        self._hall_nodes = np.bincount(self._node_hall, minlength=self.num_halls)
        # per hall: each held row's largest coefficient over the hall's racks (a job in
        # the hall is charged at it, never short); rows that miss the hall get 0
        self._hall_coef = np.stack([
            (self._coef[:, hall_of_rack == h].max(axis=1) if (hall_of_rack == h).any()
             else np.zeros(len(self.rows), np.int64)) for h in range(self.num_halls)])
        spans = (self._coef > 0) @ np.eye(self.num_halls, dtype=np.int64)[hall_of_rack] > 0
        #: rows over several halls: what a gang larger than any hall is charged on
        self._multi_hall = spans.sum(axis=1) >= 2
        #: per held row, the one hall it lies in (-1: several or none)
        self._row_hall = np.where(spans.sum(axis=1) == 1, spans.argmax(axis=1), -1)
        self._max_coef = self._coef.max(axis=1) if cluster.num_racks else self._coef[:, 0]
        # one slot per running job, in arrays that grow by doubling; a removed job's slot
        # is reused.  reserve() sorts the live slots by end (a list kept in end order cost
        # 10 s of a 36 s run at --load-scale 4, rebuilding arrays of 20,000 jobs per pass)
        self._slot_of: dict[str, int] = {}
        self._free_slots: list[int] = []
        self._grow(1024)
        # per node: the latest expected end of the held jobs on it (-inf: none), the GPUs
        # they hold there and their slots; per slot of a job added with its nodes, those
        # nodes and its GPUs on each.  A node is empty once its last job ends, whatever
        # the jobs' sizes: counting only the nodes gangs free made a gang's reservation
        # hours late on a site of small jobs (issue 16's load-scale 4 run: 8.3 h
        # expected at 3.9 h, while fifo started the same 32k gang at 6.6 h)
        num_nodes = cluster.num_nodes
        self._node_end_s = np.full(num_nodes, -np.inf)
        self._node_held_gpus = np.zeros(num_nodes, np.int64)
        self._node_slots: list[list[int]] = [[] for _ in range(num_nodes)]
        self._slot_nodes: dict[int, tuple[np.ndarray, int]] = {}
        self._nodes_of_hall = [np.flatnonzero(self._node_hall == h)
                               for h in range(self.num_halls)]
        # pods, for the engine's gang rule (see _pod_ready_s): nodes grouped by pod, each
        # pod's first position in that order, its size and its hall
        node_pod = np.asarray(cluster.node_pod, np.int64)
        self._pod_order = np.argsort(node_pod, kind="stable")
        pod_nodes = np.bincount(node_pod)
        self._pod_first = np.concatenate(([0], np.cumsum(pod_nodes)[:-1]))
        self._pod_nodes = pod_nodes
        pod_hall = np.zeros(len(pod_nodes), np.int64)
        pod_hall[node_pod] = self._node_hall
        self._pod_hall = pod_hall
        #: per node, per held row: the units of its busy step (what a node holds while
        #: any job runs on it, and frees when its last job ends, not its first)
        self._node_step_units = np.ascontiguousarray(
            (self._coef[:, cluster.node_rack] * self._busy_w).T)

    def _grow(self, size: int) -> None:
        old: np.ndarray | None = getattr(self, "_live", None)
        n_rows = len(self.rows)
        fields = {"_end_s": np.zeros(size), "_gpus": np.zeros(size, np.int64),
                  "_nodes": np.zeros(size, np.int64), "_hall": np.full(size, -1, np.int64),
                  "_units": np.zeros((size, n_rows), np.int64),
                  "_busy_units": np.zeros((size, n_rows), np.int64),
                  "_live": np.zeros(size, bool),
                  "_seq": np.zeros(size, np.int64)}
        for name, new in fields.items():
            if old is not None:
                new[:len(old)] = getattr(self, name)
            setattr(self, name, new)
        start = 0 if old is None else len(old)
        self._free_slots.extend(range(size - 1, start - 1, -1))
        self._next_seq = getattr(self, "_next_seq", 0)

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._slot_of

    def hall_of(self, placement: "Placement") -> int:
        halls = set(self._node_hall[list(placement.nodes)].tolist())
        return halls.pop() if len(halls) == 1 else -1

    def units_of(self, placement: "Placement", busy_nodes: int) -> np.ndarray:
        """Held-row units ``placement`` holds: its GPUs above idle at its cap, plus the
        busy step of the ``busy_nodes`` it turned busy."""
        racks = self.cluster.node_rack[list(placement.nodes)]
        watts = np.full(len(racks), placement.gpus_per_node * (placement.cap_w - self._idle_w),
                        dtype=np.int64)
        if busy_nodes:
            watts[:busy_nodes] += self._busy_w
        return self._coef[:, racks] @ watts

    def _watts(self, job: "Job", cap_w: int) -> int:
        nodes = max(1, math.ceil(job.gpus / self._G))
        return job.gpus * (cap_w - self._idle_w) + nodes * self._busy_w

    def _fits_a_hall(self, job: "Job") -> bool:
        return job.gpus <= int(self._hall_nodes.max()) * self._G

    def demand_units(self, job: "Job", cap_w: int | None = None, hall: int = -1
                     ) -> tuple[int, ...]:
        """Held-row units ``job`` needs at ``cap_w`` (default its ``min_cap_w``) on empty
        nodes in ``hall`` (-1: charged at every row's largest coefficient)."""
        watts = self._watts(job, job.min_cap_w if cap_w is None else cap_w)
        coef = self._max_coef if hall < 0 else self._hall_coef[hall]
        return tuple((coef * watts).tolist())

    def cap_within(self, job: "Job", units: "tuple[int, ...]") -> int | None:
        """The highest cap on the job's 25 W grid (from ``max_cap_w`` down) at which it
        holds at most ``units`` in every held row wherever it lands, or None below its
        min."""
        nodes = max(1, math.ceil(job.gpus / self._G))
        watts = min((u // int(c) for u, c in zip(units, self._max_coef) if c > 0),
                    default=10 ** 18)
        bound = (watts - nodes * self._busy_w) // job.gpus + self._idle_w
        if bound >= job.max_cap_w:
            return job.max_cap_w
        cap = job.max_cap_w - 25 * (-(-(job.max_cap_w - bound) // 25))
        return cap if cap >= job.min_cap_w else None

    def add(self, job_id: str, end_s: float, gpus: int, units: "tuple[int, ...]",
            nodes: int = 0, hall: int = -1, on: "tuple[int, ...] | None" = None,
            gpus_per_node: int = 0) -> None:
        """Hold a running job: its expected end, GPUs, held-row ``units``, the whole
        ``nodes`` it frees at its end in ``hall`` (-1: several) and, if given, the nodes
        it runs ``on`` with ``gpus_per_node`` on each (what :meth:`node_empty_s` and a
        reservation given ``node_free`` count)."""
        if not self._free_slots:
            self._grow(2 * len(self._live))
        i = self._free_slots.pop()
        self._slot_of[job_id] = i
        self._end_s[i], self._gpus[i], self._nodes[i], self._hall[i] = end_s, gpus, nodes, hall
        self._units[i] = units
        self._busy_units[i] = 0
        self._live[i] = True
        self._seq[i] = self._next_seq   # equal ends keep the order they were added in
        self._next_seq += 1
        if on is not None:
            where = np.asarray(on, np.int64)
            # the busy steps of the nodes it turned busy are the nodes', freed when they
            # empty (reserve with node_free); charged to the job, a job that ends first
            # on a shared node freed a step the node still held (the 32k gang's 375 W
            # was 5 kW short at its start, at --load-scale 4)
            turned = where[self._node_held_gpus[where] == 0]
            if len(turned):
                step = self._node_step_units[turned].sum(axis=0)
                self._busy_units[i] = step
                self._units[i] -= step
            self._node_end_s[where] = np.maximum(self._node_end_s[where], end_s)
            self._node_held_gpus[where] += gpus_per_node
            for n in on:
                self._node_slots[n].append(i)
            self._slot_nodes[i] = (where, gpus_per_node)

    def remove(self, job_id: str) -> None:
        i = self._slot_of.pop(job_id)
        self._live[i] = False
        self._free_slots.append(i)
        held = self._slot_nodes.pop(i, None)
        if held is not None:
            where, gpus_per_node = held
            self._node_held_gpus[where] -= gpus_per_node
            end_s = self._end_s
            for n in where.tolist():
                slots = self._node_slots[n]
                slots.remove(i)
                self._node_end_s[n] = max(end_s[j] for j in slots) if slots else -np.inf

    def nodes_empty_by(self, nodes: "list[int] | tuple[int, ...]", t_s: float,
                       node_free: np.ndarray, hall: int = -1) -> int:
        """How many of ``nodes`` (in ``hall``; -1: any) are expected empty by ``t_s``
        (:meth:`node_empty_s` of ``node_free``): the whole nodes a job placed on them
        for longer takes from a reservation at ``t_s``."""
        where = np.asarray(nodes, np.int64)
        if hall >= 0:
            where = where[self._node_hall[where] == hall]
        empty_s = self._node_end_s[where]
        free = np.asarray(node_free)[where]
        empty_s = np.where(free == self._G, -np.inf, empty_s)
        empty_s = np.where(self._G - free > self._node_held_gpus[where], np.inf, empty_s)
        return int((empty_s <= t_s).sum())

    def node_empty_s(self, node_free: np.ndarray) -> np.ndarray:
        """Per node, the expected time it is empty: -inf if it is empty now (``node_free``
        is the engine's free GPUs per node), the latest expected end of its held jobs,
        or inf if GPUs the timeline does not hold are in use there (a down or spare
        node, a job added without its nodes)."""
        empty_s = self._node_end_s.copy()
        empty_s[node_free == self._G] = -np.inf
        empty_s[self._G - node_free > self._node_held_gpus] = np.inf
        return empty_s

    def _pod_ready_s(self, empty_s: np.ndarray, k_nodes: int) -> np.ndarray:
        """Per pod, the expected time it has ``k_nodes`` empty nodes (inf: never; a pod
        smaller than that never does).

        The engine places a gang of ``k`` whole nodes inside one pod whenever some pod
        has ``k`` empty nodes, and then only there: it spreads over pods only when no pod
        has them.  So when the pods that could take the head whole are all in a hall
        whose switchboard is full, the engine refuses it although the empty nodes of
        another hall would take it spread.  Counting empty nodes per hall alone, the
        timeline said "now" for 580 passes of issue 16's synthetic seed 2 run while the
        engine refused a 512-GPU head on the hall-1 switchboard, and nothing was
        backfilled in those passes.
        """
        by_pod = empty_s[self._pod_order]
        pod_of = np.repeat(np.arange(len(self._pod_nodes)), self._pod_nodes)
        by_pod = by_pod[np.lexsort((by_pod, pod_of))]   # each pod's nodes, soonest first
        ready_s = np.full(len(self._pod_nodes), np.inf)
        big = np.flatnonzero(self._pod_nodes >= k_nodes)
        if k_nodes >= 1 and len(big):
            ready_s[big] = by_pod[self._pod_first[big] + k_nodes - 1]
        return ready_s

    def _pods_ready(self, empty_s: np.ndarray, at_s: np.ndarray, k_nodes: int
                    ) -> np.ndarray:
        """Per step (instant ``at_s``), per hall: how many pods have ``k_nodes`` nodes
        empty by then."""
        ready_s = self._pod_ready_s(empty_s, k_nodes)
        ready = np.flatnonzero(ready_s < np.inf)   # -inf: ready now
        counts = np.zeros((len(at_s), self.num_halls), np.int64)
        step = np.searchsorted(at_s, ready_s[ready], side="left")
        keep = step < len(at_s)
        np.add.at(counts, (step[keep], self._pod_hall[ready[keep]]), 1)
        return np.cumsum(counts, axis=0)

    def _hall_room_nodes(self, units: np.ndarray, cap_w: int) -> np.ndarray:
        """Per step, per hall: how many whole nodes at ``cap_w`` the held rows inside
        the hall have watts for (``units``: per step, per held row)."""
        node_w = self._G * (cap_w - self._idle_w) + self._busy_w
        room = np.full((len(units), self.num_halls), 2 ** 62, np.int64)
        for r in np.flatnonzero(self._row_hall >= 0).tolist():
            h = int(self._row_hall[r])
            c = int(self._hall_coef[h, r]) * node_w
            if c > 0:
                room[:, h] = np.minimum(room[:, h], np.maximum(units[:, r], 0) // c)
        return room

    def reserve(self, job: "Job", now_s: float, free_gpus: int, slack_units: np.ndarray,
                empty_nodes: np.ndarray | None = None, node_free: np.ndarray | None = None,
                cap_w: int | None = None, start_cap_w: int | None = None) -> Reservation:
        """The reservation of ``job``: the first expected end after which its GPUs (for a
        gang: its whole empty nodes in one hall) and its watts in every held row are
        free.  ``slack_units`` is the engine's slack of ``rows``.

        Empty nodes: with ``node_free`` (the engine's free GPUs per node), a node counts
        as empty from the expected end of the last held job on it (:meth:`node_empty_s`),
        and a job of ``gpus_per_node`` GPUs or more needs its whole nodes.  Otherwise,
        from ``empty_nodes`` (per hall, now) and the nodes of the gangs as they end (a
        job above one node's GPUs needs whole nodes): small jobs' nodes are not counted,
        so never too many, but hours late on a site of small jobs.

        Watts: the start is the first time its watts at ``start_cap_w`` (default its
        ``min_cap_w``) are free; what is held for it then is its watts at the highest
        cap up to ``cap_w`` (default ``start_cap_w``) on its 25 W grid that the watts
        free at that time allow, the cap fifo would start it at.  Held at its min only, a long gang starts at its min while
        the jobs run past its start take the rest (issue 16: at --load-scale 4 the 32k
        gang ran 9 h at 350 W where fifo gave it 375 W, and backfill delivered 0.3 %
        less work than fifo)."""
        n_rows = len(self.rows)
        slots = np.flatnonzero(self._live)
        slots = slots[np.lexsort((self._seq[slots], self._end_s[slots]))]
        n = len(slots)
        end_s = self._end_s[slots]
        gpus = free_gpus + np.concatenate((np.zeros(1, np.int64), np.cumsum(self._gpus[slots])))
        exact = node_free is not None
        empty_s = at_s = None
        if exact:
            empty_s = self.node_empty_s(np.asarray(node_free))
            # the instant of each step: now (the nodes empty now), then each end in order
            at_s = np.concatenate(([-np.inf], end_s))
            # jobs free their own watts as they end; nodes free their busy steps when
            # their last job ends
            freed = np.cumsum(self._units[slots], axis=0)
            busy = np.flatnonzero(np.isfinite(empty_s))
            busy = busy[np.argsort(empty_s[busy], kind="stable")]
            steps = np.concatenate((np.zeros((1, n_rows), np.int64),
                                    np.cumsum(self._node_step_units[busy], axis=0)))
            freed_steps = steps[np.searchsorted(empty_s[busy], at_s, side="right")]
        else:
            freed = np.cumsum(self._units[slots] + self._busy_units[slots], axis=0)
            freed_steps = np.zeros((n + 1, n_rows), np.int64)
        units = (np.asarray(slack_units, np.int64)[None, :] + freed_steps
                 + np.concatenate((np.zeros((1, n_rows), np.int64), freed)))
        gang = job.gpus >= self._G if exact else job.gpus > self._G
        k_nodes = job.gpus // self._G
        floor_w = job.min_cap_w if start_cap_w is None else max(job.min_cap_w, start_cap_w)
        watts = self._watts(job, floor_w)
        # (step, hall, demand at min cap, row coefficients, whole nodes per step)
        choices: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray | None]] = []
        usable = None   # per step, per hall: nodes a spread gang may take there
        if gang and empty_s is not None and at_s is not None:
            # the engine's gang rule: inside one pod if any pod has the nodes, and then
            # only such a pod; else spread over pods site-wide, skipping pods whose
            # halls have no watts left (see _pod_ready_s)
            whole_by_hall = np.stack([np.searchsorted(np.sort(empty_s[idx]), at_s,
                                                      side="right")
                                      for idx in self._nodes_of_hall], axis=1)
            pods_ready = self._pods_ready(empty_s, at_s, k_nodes)
            enough = gpus >= job.gpus
            for h in np.flatnonzero(pods_ready[-1] > 0).tolist():
                need = self._hall_coef[h] * watts
                ok = enough & (pods_ready[:, h] > 0) & (units >= need[None, :]).all(axis=1)
                hits = np.flatnonzero(ok)
                if len(hits):
                    choices.append((int(hits[0]), h, need, self._hall_coef[h],
                                    whole_by_hall[:, h]))
            usable = np.minimum(whole_by_hall, self._hall_room_nodes(units, floor_w))
            coef = np.where(self._multi_hall, self._max_coef, 0)
            need = coef * watts
            ok = (enough & (pods_ready.sum(axis=1) == 0) & (usable.sum(axis=1) >= k_nodes)
                  & (units >= need[None, :]).all(axis=1))
            hits = np.flatnonzero(ok)
            if len(hits):
                choices.append((int(hits[0]), -1, need, coef, whole_by_hall.sum(axis=1)))
        elif self._fits_a_hall(job):
            freed = np.zeros((n + 1, self.num_halls), np.int64)
            if n and not exact:
                ends = np.zeros((n, self.num_halls), np.int64)
                halls = self._hall[slots]
                inside = halls >= 0
                ends[np.flatnonzero(inside), halls[inside]] = self._nodes[slots][inside]
                freed[1:] = np.cumsum(ends, axis=0)
            for h in range(self.num_halls):
                need = self._hall_coef[h] * watts
                ok = (gpus >= job.gpus) & (units >= need[None, :]).all(axis=1)
                whole = None
                if gang and empty_nodes is not None:
                    whole = int(empty_nodes[h]) + freed[:, h]
                    ok &= whole >= k_nodes
                hits = np.flatnonzero(ok)
                if len(hits):
                    choices.append((int(hits[0]), h, need, self._hall_coef[h], whole))
        else:
            coef = np.where(self._multi_hall, self._max_coef, 0)
            need = coef * watts
            ok = (gpus >= job.gpus) & (units >= need[None, :]).all(axis=1)
            whole = None
            if empty_nodes is not None:
                whole = int(np.sum(empty_nodes)) + np.concatenate(
                    ([0], np.cumsum(self._nodes[slots])))
                ok &= whole >= k_nodes
            hits = np.flatnonzero(ok)
            if len(hits):
                choices.append((int(hits[0]), -1, need, coef, whole))
        if not choices:
            return Reservation(job.id, math.inf, 0, (0,) * n_rows, 0)
        k, hall, need, coef, whole = min(choices, key=lambda c: (c[0], c[1]))
        held_cap_w = floor_w
        if hall < 0 and usable is not None:
            # a spread gang lands where nodes are empty and watts free at its start: each
            # hall's rows are charged its share of the nodes it may take there (never
            # more than the hall has room for).  Charged on the rows over several halls
            # only, the jobs run past its start took the watts of the halls it needs,
            # and it started at its min (350 W where the facility had the watts for
            # 375 W, at --load-scale 4)
            room = usable[k].astype(float)
            share = room / max(float(room.sum()), 1.0)
            row_hall = self._row_hall.clip(0)
            coef = np.where(self._multi_hall, self._max_coef,
                            np.where(self._row_hall >= 0,
                                     self._hall_coef[row_hall, np.arange(n_rows)]
                                     * share[row_hall], 0.0))
            need = np.ceil(coef * self._watts(job, floor_w)).astype(np.int64)
        if cap_w is not None and cap_w > floor_w:
            held_cap_w = self._cap_fitting(job, min(cap_w, job.max_cap_w), units[k], coef)
            need = np.ceil(coef * self._watts(job, held_cap_w)).astype(np.int64)
        start = now_s if k == 0 else max(now_s, float(end_s[k - 1]))
        extra_nodes = 2 ** 62 if whole is None else int(whole[k] - k_nodes)
        return Reservation(job.id, start, int(gpus[k] - job.gpus),
                           tuple((units[k] - need).tolist()), extra_nodes, hall, held_cap_w)

    def _cap_fitting(self, job: "Job", cap_w: int, units: np.ndarray, coef: np.ndarray
                     ) -> int:
        """The highest cap on the job's 25 W grid (from ``max_cap_w`` down), at most
        ``cap_w`` and at least ``min_cap_w``, whose watts times ``coef`` fit in ``units``
        on every row (the caller knows its min fits)."""
        nodes = max(1, math.ceil(job.gpus / self._G))
        watts = min((int(u // c) for u, c in zip(units.tolist(), coef.tolist()) if c > 0),
                    default=10 ** 18)
        bound = min(cap_w, (watts - nodes * self._busy_w) // job.gpus + self._idle_w)
        cap = job.max_cap_w - 25 * (-(-(job.max_cap_w - bound) // 25))
        return max(cap, job.min_cap_w)
