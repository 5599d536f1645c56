"""Reservations over time: when the head of a queue can start, in GPUs and in watts.

A :class:`Timeline` keeps the running jobs by expected end, each with its GPUs and the
watts it holds in the *site rows* (the rows of ``A·P <= b`` that cover every rack: the
facility IT limit, any site-wide cooling row), in the rows' integer units.  Walking it in
end order gives, for a job that does not fit now, the earliest expected time at which
enough GPUs **and** enough watts in every site row are free for it at its ``min_cap_w``
(its *shadow time*), and what is left over at that time (:class:`Reservation`): GPUs
and, per site row, units.  A job that starts now and runs past the shadow time may take
only from what is left over, so the reserved job's GPUs and watts stay intact.

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

    def admits(self, gpus: int, units: "tuple[int, ...]", nodes: int = 0) -> bool:
        """True if a job holding ``gpus``, ``units`` and ``nodes`` empty nodes past
        ``start_s`` leaves the reservation intact."""
        return (gpus <= self.extra_gpus and nodes <= self.extra_nodes
                and all(u <= e for u, e in zip(units, self.extra_units)))

    def take(self, gpus: int, units: "tuple[int, ...]", nodes: int = 0) -> "Reservation":
        return Reservation(self.job_id, self.start_s, self.extra_gpus - gpus,
                           tuple(e - u for e, u in zip(self.extra_units, units)),
                           self.extra_nodes - nodes, self.hall)


class Timeline:
    """Running jobs by expected end, with their GPUs, whole nodes and zone-row units.

    The rows held are the *zone rows* (``Constraints.zone_rows``: rows over two or more
    pods -- hall switchboards, hall cooling plants, the facility).  A reserved job that
    fits in one hall is reserved in the hall where it can start first: its demand is
    charged to that hall's rows and to every row over several halls, and its whole nodes
    are counted in that hall.  A gang larger than every hall is charged on the rows over
    several halls only, its nodes counted site-wide.
    """

    # per slot (set by _grow): expected end, GPUs, whole nodes freed at the end, their
    # hall (-1: several), held-row units, in use, order added
    _end_s: np.ndarray
    _gpus: np.ndarray
    _nodes: np.ndarray
    _hall: np.ndarray
    _units: np.ndarray
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
        self._max_coef = self._coef.max(axis=1) if cluster.num_racks else self._coef[:, 0]
        # one slot per running job, in arrays that grow by doubling; a removed job's slot
        # is reused.  reserve() sorts the live slots by end (a list kept in end order cost
        # 10 s of a 36 s run at --load-scale 4, rebuilding arrays of 20,000 jobs per pass)
        self._slot_of: dict[str, int] = {}
        self._free_slots: list[int] = []
        self._grow(1024)

    def _grow(self, size: int) -> None:
        old: np.ndarray | None = getattr(self, "_live", None)
        n_rows = len(self.rows)
        fields = {"_end_s": np.zeros(size), "_gpus": np.zeros(size, np.int64),
                  "_nodes": np.zeros(size, np.int64), "_hall": np.full(size, -1, np.int64),
                  "_units": np.zeros((size, n_rows), np.int64), "_live": np.zeros(size, bool),
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
            nodes: int = 0, hall: int = -1) -> None:
        if not self._free_slots:
            self._grow(2 * len(self._live))
        i = self._free_slots.pop()
        self._slot_of[job_id] = i
        self._end_s[i], self._gpus[i], self._nodes[i], self._hall[i] = end_s, gpus, nodes, hall
        self._units[i] = units
        self._live[i] = True
        self._seq[i] = self._next_seq   # equal ends keep the order they were added in
        self._next_seq += 1

    def remove(self, job_id: str) -> None:
        i = self._slot_of.pop(job_id)
        self._live[i] = False
        self._free_slots.append(i)

    def reserve(self, job: "Job", now_s: float, free_gpus: int, slack_units: np.ndarray,
                empty_nodes: np.ndarray | None = None) -> Reservation:
        """The reservation of ``job``: the first expected end after which its GPUs (for a
        gang: its whole empty nodes in one hall, counting ``empty_nodes`` per hall now
        and those gangs free as they end; small jobs' nodes are not counted, so never too
        many) and its watts in every held row are free.  ``slack_units`` is the engine's
        slack of ``rows``; ``empty_nodes`` the empty nodes per hall."""
        n_rows = len(self.rows)
        slots = np.flatnonzero(self._live)
        slots = slots[np.lexsort((self._seq[slots], self._end_s[slots]))]
        n = len(slots)
        end_s = self._end_s[slots]
        gpus = free_gpus + np.concatenate((np.zeros(1, np.int64), np.cumsum(self._gpus[slots])))
        units = np.asarray(slack_units, np.int64)[None, :] + np.concatenate(
            (np.zeros((1, n_rows), np.int64), np.cumsum(self._units[slots], axis=0)))
        gang = job.gpus > self._G
        k_nodes = job.gpus // self._G
        watts = self._watts(job, job.min_cap_w)
        choices: list[tuple[int, int, np.ndarray, np.ndarray | None]] = []
        if self._fits_a_hall(job):
            freed = np.zeros((n + 1, self.num_halls), np.int64)
            if n:
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
                    choices.append((int(hits[0]), h, need, whole))
        else:
            need = np.where(self._multi_hall, self._max_coef * watts, 0)
            ok = (gpus >= job.gpus) & (units >= need[None, :]).all(axis=1)
            whole = None
            if empty_nodes is not None:
                whole = int(np.sum(empty_nodes)) + np.concatenate(
                    ([0], np.cumsum(self._nodes[slots])))
                ok &= whole >= k_nodes
            hits = np.flatnonzero(ok)
            if len(hits):
                choices.append((int(hits[0]), -1, need, whole))
        if not choices:
            return Reservation(job.id, math.inf, 0, (0,) * n_rows, 0)
        k, hall, need, whole = min(choices, key=lambda c: (c[0], c[1]))
        start = now_s if k == 0 else max(now_s, float(end_s[k - 1]))
        extra_nodes = 2 ** 62 if whole is None else int(whole[k] - k_nodes)
        return Reservation(job.id, start, int(gpus[k] - job.gpus),
                           tuple((units[k] - need).tolist()), extra_nodes, hall)
