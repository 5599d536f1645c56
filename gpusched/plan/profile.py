"""A reservation profile: what is free over future time, for conservative backfill.

A :class:`Profile` is piecewise constant over time: breakpoints ``t[0] = now < t[1] <
...`` and, on each segment ``[t[k], t[k+1])`` (the last one runs for ever), the free
GPUs, the whole empty nodes per hall and in all, and the slack of every held row (the
:class:`~gpusched.plan.timeline.Timeline`'s zone rows, in the rows' integer units).  It
is built from a Timeline: the engine's state now, then each running job's GPUs, whole
nodes and units freed at its expected end.  Queued jobs are then reserved in order
(:meth:`Profile.reserve`): each gets the earliest breakpoint at which its demand fits
over its whole expected run, and the demand is taken off the profile over that
interval, so a later job can never take what an earlier one was promised.  This is
conservative backfill (Mu'alem and Feitelson 2001) with watts as well as GPUs.

Demand is counted as :meth:`Timeline.reserve` counts it without its ``node_free`` and
``cap_w`` refinements (EASY's head gets those; every queued job here is held at its
floor): GPUs, ``gpus // gpus_per_node`` whole empty nodes for a job of one node or more,
and the job's watts at ``min_cap_w`` on empty nodes; a
job that fits in a hall is charged on that hall's rows (at each row's largest
coefficient over the hall) and its nodes counted there, in the hall where it can start
first; a gang larger than every hall is charged on the rows over several halls and its
nodes counted site-wide.  As in the Timeline, rows over part of a hall (busways, rack
feeds) are not held: the engine checks them at a start.  Nodes freed by jobs smaller
than a node are not counted (never too many).  A gang larger than a hall takes nodes
from halls the profile cannot name, so a hall's count is read as at most the site-wide
count.

Cost.  Running jobs' ends beyond the first ``max_breakpoints // 2`` are grouped into
``max_breakpoints // 2`` chunks of equal count, each freed at its chunk's last end:
later than they are, so the profile never shows more than is free and only reserves
too late, never too early.  Each reservation adds at most one breakpoint (its end), so
a pass over ``depth`` jobs works on arrays of at most ``max_breakpoints + depth``
segments; a search is a few numpy operations over them per hall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..job import Job
    from .timeline import Timeline

__all__ = ["Profile", "Demand", "Slot"]


@dataclass(frozen=True)
class Demand:
    """What a job holds while it runs: GPUs, held-row units, whole empty nodes.

    ``hall_nodes`` counts the whole nodes per hall (those of a gang larger than every
    hall are in ``nodes`` only); ``nodes`` is the total.  ``hall`` is the hall the demand
    was charged in (-1: several, or not known).
    """

    gpus: int
    units: np.ndarray
    hall_nodes: np.ndarray
    nodes: int
    hall: int = -1


@dataclass(frozen=True)
class Slot:
    """A job's reservation: its demand over ``[start_s, end_s)``; ``start_s`` is inf
    when the profile never frees enough for it (then nothing is taken)."""

    job_id: str
    start_s: float
    end_s: float
    demand: Demand | None
    #: its breakpoint (0: it may start now; -1: never)
    start_index: int = -1

    @property
    def starts_now(self) -> bool:
        return self.demand is not None and self.start_index == 0


class Profile:
    """Free GPUs, whole empty nodes and held-row slack over future time.

    Parameters
    ----------
    timeline : Timeline
        The running jobs by expected end (their GPUs, whole nodes and units).
    now_s : float
        The first breakpoint; expected ends before it count as at it (a job overdue is
        still running: its resources are freed at the first breakpoint after segment 0).
    free_gpus : int
        Free GPUs now.
    slack_units : array of int
        The engine's slack of the timeline's rows now.
    empty_nodes : array of int
        Whole empty nodes per hall now.
    max_breakpoints : int, default 200
        At most this many breakpoints from the running jobs' ends (see the module
        docstring); at least 2.
    """

    def __init__(self, timeline: "Timeline", now_s: float, free_gpus: int,
                 slack_units: np.ndarray, empty_nodes: np.ndarray,
                 max_breakpoints: int = 200) -> None:
        if max_breakpoints < 2:
            from ..errors import SpecError
            raise SpecError(f"max_breakpoints must be at least 2, got {max_breakpoints!r}",
                            field="max_breakpoints")
        self.timeline = timeline
        self.now_s = float(now_s)
        tl = timeline
        n_rows, n_halls = len(tl.rows), tl.num_halls
        # the timeline's slots (plan-layer siblings: read in place, not copied through
        # an accessor that every insert would pay for)
        slots = np.flatnonzero(tl._live)
        slots = slots[np.lexsort((tl._seq[slots], tl._end_s[slots]))]
        n = len(slots)
        end_s = np.maximum(tl._end_s[slots], self.now_s)
        if n > max_breakpoints:
            exact = max_breakpoints // 2
            chunks = max_breakpoints - exact
            rest = n - exact
            chunk = (np.arange(rest) * chunks) // rest
            last = np.searchsorted(chunk, chunk, side="right") - 1 + exact
            end_s = np.concatenate((end_s[:exact], end_s[last]))
        times = np.unique(end_s)
        # per distinct time: how many jobs (in end order) have ended by it
        last_of = np.searchsorted(end_s, times, side="right")
        gpus = np.concatenate(([0], np.cumsum(tl._gpus[slots])))
        units = np.concatenate((np.zeros((1, n_rows), np.int64),
                                np.cumsum(tl._units[slots], axis=0)))
        halls = tl._hall[slots]
        inside = halls >= 0
        hall_freed = np.zeros((n, n_halls), np.int64)
        hall_freed[np.flatnonzero(inside), halls[inside]] = tl._nodes[slots][inside]
        hall_nodes = np.concatenate((np.zeros((1, n_halls), np.int64),
                                     np.cumsum(hall_freed, axis=0)))
        nodes = np.concatenate(([0], np.cumsum(tl._nodes[slots])))
        take = np.concatenate(([0], last_of))
        empty = np.asarray(empty_nodes, np.int64)
        #: breakpoints; segment k is [t[k], t[k+1]), the last one unbounded
        self.t = np.concatenate(([self.now_s], times)).astype(float)
        self.gpus = int(free_gpus) + gpus[take]
        self.units = np.asarray(slack_units, np.int64)[None, :] + units[take]
        self.hall_nodes = empty[None, :] + hall_nodes[take]
        self.nodes = int(empty.sum()) + nodes[take]

    def __len__(self) -> int:
        return len(self.t)

    # ---- demand ----------------------------------------------------------------------

    def demands(self, job: "Job", cap_w: int | None = None) -> list[Demand]:
        """The ways ``job`` can be charged at ``cap_w`` (default its ``min_cap_w``): one
        per hall for a job that fits in a hall, else one site-wide."""
        tl = self.timeline
        G = tl._G
        whole = job.gpus // G if job.gpus >= G else 0
        watts = tl._watts(job, job.min_cap_w if cap_w is None else cap_w)
        n_halls = tl.num_halls
        if tl._fits_a_hall(job):
            out = []
            for h in range(n_halls):
                hall_nodes = np.zeros(n_halls, np.int64)
                hall_nodes[h] = whole
                out.append(Demand(job.gpus, tl._hall_coef[h] * watts, hall_nodes, whole, h))
            return out
        need = np.where(tl._multi_hall, tl._max_coef * watts, 0).astype(np.int64)
        return [Demand(job.gpus, need, np.zeros(n_halls, np.int64), whole, -1)]

    # ---- reading ---------------------------------------------------------------------

    def index(self, time_s: float) -> int:
        """The segment that holds ``time_s`` (segment 0 for times before ``now_s``)."""
        return max(0, int(np.searchsorted(self.t, time_s, side="right")) - 1)

    def _fits(self, demand: Demand) -> np.ndarray:
        """Per segment: True where ``demand`` fits."""
        return self._fits_many([demand])[0]

    def _fits_many(self, demands: "list[Demand]") -> np.ndarray:
        """Per demand, per segment: True where it fits (the halls of one job at once)."""
        gpus = np.array([d.gpus for d in demands], np.int64)
        units = np.stack([d.units for d in demands])
        ok = self.gpus[None, :] >= gpus[:, None]
        ok &= (self.units[None, :, :] >= units[:, None, :]).all(axis=2)
        nodes = np.array([d.nodes for d in demands], np.int64)
        if nodes.any():
            ok &= self.nodes[None, :] >= nodes[:, None]
            hall_nodes = np.stack([d.hall_nodes for d in demands])
            # a hall holds at most what the site holds (a gang over several halls took
            # nodes from halls the profile cannot name)
            in_hall = np.minimum(self.hall_nodes, self.nodes[:, None])
            ok &= (in_hall[None, :, :] >= hall_nodes[:, None, :]).all(axis=2)
        return ok

    def _earliest_many(self, demands: "list[Demand]", run_s: float) -> np.ndarray:
        """Per demand: the first breakpoint at which it fits over ``[t[k], t[k] +
        run_s)``, or -1 if none does."""
        ok = self._fits_many(demands)
        m = ok.shape[1]
        positions = np.arange(m)
        # next_bad[d, k]: the first segment at or after k where demand d does not fit
        next_bad = np.minimum.accumulate(np.where(ok, m, positions)[:, ::-1], axis=1)[:, ::-1]
        # segments a run from t[k] overlaps: k .. ends[k] - 1
        ends = np.searchsorted(self.t, self.t + max(run_s, 0.0), side="left")
        ends = np.maximum(ends, positions + 1)
        good = ok & (next_bad >= ends[None, :])
        first = good.argmax(axis=1)
        return np.where(good[np.arange(len(demands)), first], first, -1)

    def earliest(self, demand: Demand, run_s: float) -> int:
        """The first breakpoint at which ``demand`` fits over ``[t[k], t[k] + run_s)``,
        or -1 if none does."""
        return int(self._earliest_many([demand], run_s)[0])

    def fits(self, demand: Demand, start_s: float, end_s: float) -> bool:
        """True if ``demand`` fits over ``[start_s, end_s)``."""
        first = self.index(start_s)
        last = max(first + 1, int(np.searchsorted(self.t, end_s, side="left")))
        return bool(self._fits(demand)[first:last].all())

    def available(self, start_s: float, end_s: float) -> Demand:
        """The least free over ``[start_s, end_s)``: what a job there may take."""
        first = self.index(start_s)
        last = max(first + 1, int(np.searchsorted(self.t, end_s, side="left")))
        s = slice(first, last)
        return Demand(int(self.gpus[s].min()), self.units[s].min(axis=0),
                      np.minimum(self.hall_nodes[s], self.nodes[s, None]).min(axis=0),
                      int(self.nodes[s].min()))

    # ---- writing ---------------------------------------------------------------------

    def _split(self, time_s: float) -> int:
        """The index of a breakpoint at ``time_s`` (added if missing; inf: the end)."""
        if not math.isfinite(time_s):
            return len(self.t)
        k = int(np.searchsorted(self.t, time_s, side="left"))
        if k < len(self.t) and self.t[k] == time_s:
            return k
        if k == 0:
            return 0   # before now: the run starts at segment 0
        # the new segment [time_s, t[k]) carries what segment k - 1 carried
        self.t = np.insert(self.t, k, time_s)
        self.gpus = np.insert(self.gpus, k, self.gpus[k - 1])
        self.units = np.insert(self.units, k, self.units[k - 1], axis=0)
        self.hall_nodes = np.insert(self.hall_nodes, k, self.hall_nodes[k - 1], axis=0)
        self.nodes = np.insert(self.nodes, k, self.nodes[k - 1])
        return k

    def take(self, demand: Demand, start_s: float, end_s: float) -> None:
        """Take ``demand`` off the profile over ``[start_s, end_s)``."""
        first = self.index(start_s)
        if start_s > self.t[first]:
            first = self._split(start_s)
        last = max(first + 1, self._split(end_s))
        s = slice(first, last)
        self.gpus[s] -= demand.gpus
        self.units[s] -= demand.units[None, :]
        self.hall_nodes[s] -= demand.hall_nodes[None, :]
        self.nodes[s] -= demand.nodes

    def find(self, job: "Job", run_s: float) -> tuple[int, Demand | None]:
        """The earliest breakpoint index at which ``job`` fits over ``run_s`` and the
        demand it is charged there (the hall where it starts first, the lowest hall on
        a tie), or (-1, None)."""
        demands = self.demands(job)
        ks = self._earliest_many(demands, run_s)
        found = np.flatnonzero(ks >= 0)
        if not len(found):
            return -1, None
        best = int(found[np.argmin(ks[found])])   # argmin: the first, lowest hall, on a tie
        return int(ks[best]), demands[best]

    def hold(self, job_id: str, k: int, demand: Demand | None, run_s: float) -> Slot:
        """Take ``demand`` off from breakpoint ``k`` over ``run_s`` (what :meth:`find`
        answered); ``demand`` None: no slot, nothing taken."""
        if demand is None or k < 0:
            return Slot(job_id, math.inf, math.inf, None)
        start = float(self.t[k])
        self.take(demand, start, start + run_s)
        return Slot(job_id, start, start + run_s, demand, k)

    def reserve(self, job: "Job", run_s: float) -> Slot:
        """Reserve ``job`` at its earliest fit over ``run_s`` and take its demand off."""
        k, demand = self.find(job, run_s)
        return self.hold(job.id, k, demand, run_s)
