"""The Engine: live placement state of one cluster, backed by the Cython core or its twin.

``Engine(cluster)`` picks the compiled core (``gpusched._engine_c``, built from
``ext/_engine.pyx``) unless ``GPUSCHED_NO_EXTENSIONS=1`` is set or the extension is
missing, in which case it uses the pure-Python twin (``gpusched._engine_py``) and warns.
``GPUSCHED_REQUIRE_EXTENSIONS=1`` turns that fallback into an ImportError, so a broken
build never hides behind a slower, silent fallback.  ``backend="cython"`` or
``"python"`` picks one explicitly.

The hot methods (``place``, ``release``, ``place_many``, ``release_many``) live in the
twins; what is written once here is everything that is not hot: explain, snapshots,
views.  Both twins raise the same errors (``gpusched.errors``) with the same words.
"""

from __future__ import annotations

import operator
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _engine_py
from ._core import EngineCoreAPI, SearchAnswer
from ._checks import check_job, check_pod, gpus_per_node_for
from .explanation import Explanation
from ._site import DOWN, DRAINING, NODE_STATE_NAMES, SPARE, UP, SiteMixin, SparePolicy
from .spec import COEF_SCALE, MAX_ROW_LOAD_UNITS, Cluster
from .errors import (BackendError, GpuschedError, JobError, NotAClusterError, PlacementError,
                     SnapshotError)
from .state import encode_state, read_state, write_atomic
from .job import Job, Placement

if TYPE_CHECKING:
    from .plan.preempt import PreemptionPlan

__all__ = ["Engine", "Explanation", "NO_EXTENSIONS", "DEFAULT_BACKEND", "available_backends"]

NO_EXTENSIONS = bool(os.environ.get("GPUSCHED_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython")
REQUIRE_EXTENSIONS = bool(os.environ.get("GPUSCHED_REQUIRE_EXTENSIONS"))

# the twins, by backend name; both meet gpusched._core.EngineCoreAPI
_cores: dict[str, type[EngineCoreAPI]] = {"python": _engine_py.EngineCore}
if NO_EXTENSIONS:
    if REQUIRE_EXTENSIONS:
        raise ImportError("GPUSCHED_REQUIRE_EXTENSIONS=1 and GPUSCHED_NO_EXTENSIONS=1 "
                          "contradict each other; unset one")
else:
    try:
        from . import _engine_c
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(f"gpusched's compiled core failed to import ({exc}) and "
                              "GPUSCHED_REQUIRE_EXTENSIONS=1 is set; rebuild with "
                              "`pip install -e .`") from exc
        warnings.warn(f"gpusched's compiled core is not available ({exc}); using the "
                      "pure-Python engine, which is about 100x slower. Reinstall with a C "
                      "compiler, or set GPUSCHED_NO_EXTENSIONS=1 to silence this.",
                      RuntimeWarning, stacklevel=2)
    else:
        _cores["cython"] = _engine_c.EngineCore

#: The backend ``Engine(cluster)`` uses when none is named.
DEFAULT_BACKEND = "cython" if "cython" in _cores else "python"

SNAPSHOT_FORMAT = 1


def available_backends() -> list[str]:
    """Backends this installation can run, the default first."""
    return sorted(_cores, key=lambda name: name != DEFAULT_BACKEND)


class _RestoreMethod:
    """``Engine.restore``: restore an engine from a snapshot when called on the class
    (``Engine.restore(cluster, snapshot)``, as always), bring nodes back up when called
    on an engine (``engine.restore(nodes)``, a site that changes)."""

    def __get__(self, obj: Any, owner: Any) -> Any:
        return owner.from_snapshot if obj is None else obj.restore_nodes


class Engine(SiteMixin):
    """Live placement state of one cluster: place and release gang-scheduled jobs.

    A site that changes (node states, failures, repair, hot spares, live limits) is
    :class:`gpusched._site.SiteMixin`'s part of it: ``drain``, ``fail``, ``restore``,
    ``fail_domain``, ``repair``, ``set_spares``, ``set_limit``, ``violations`` and
    ``apply_envelope`` (of the plan ``gpusched.plan.plan_envelope(engine)`` makes).

    Parameters
    ----------
    cluster : Cluster
        The site; its constraint system A·P <= b is never broken.
    backend : {"cython", "python"}, optional
        Which twin runs the hot path; default :data:`DEFAULT_BACKEND`.

    Notes
    -----
    Thread safety: every public method takes the engine's one lock (a re-entrant lock),
    so one Engine may be shared by threads; calls are serialised.

    Examples
    --------
    ``place`` returns the placement, or None when the job does not fit now (``explain``
    says why); ``release`` frees its GPUs and watts:

    >>> from gpusched import Cluster, Engine, Job
    >>> engine = Engine(Cluster.preset("tiny"))
    >>> engine.place(Job("train", 16, min_cap_w=400))
    Placement('train', nodes=[0, 1], gpus_per_node=8, cap_w=700)
    >>> engine.free_gpus()
    48
    >>> engine.release("train").nodes
    (0, 1)
    """

    backend: str

    def __new__(cls, cluster: Cluster | None = None, backend: str | None = None) -> "Engine":
        if cls is not Engine:
            return super().__new__(cls)
        name = DEFAULT_BACKEND if backend is None else backend
        if name not in _ENGINE_CLASSES:
            raise BackendError(f"backend={backend!r} is not available; available backends are "
                               f"{available_backends()}", field="backend")
        engine_class = _ENGINE_CLASSES[name]
        return engine_class.__new__(engine_class, cluster, backend)

    def __init__(self, cluster: Cluster, backend: str | None = None) -> None:
        if not isinstance(cluster, Cluster):
            raise NotAClusterError(f"Engine needs a gpusched.Cluster, got "
                                   f"{type(cluster).__name__}", field="cluster")
        super().__init__(cluster)  # type: ignore[call-arg]
        self._site_reset()

    # The twin provides these (gpusched._core.EngineCoreAPI is the contract; they are
    # declared here too so that type checkers know an Engine has them).
    if TYPE_CHECKING:
        @property
        def cluster(self) -> Cluster: ...

        def place(self, job: Job, pod: int | str | None = None) -> Placement | None: ...
        def release(self, job_id: str) -> Placement: ...
        def place_many(self, jobs: Any, pod: int | str | None = None) -> list[Placement | None]: ...
        def release_many(self, job_ids: Any) -> list[Placement]: ...
        def free_gpus(self) -> int: ...
        def node_free_gpus(self) -> np.ndarray: ...
        def rack_power_w(self) -> np.ndarray: ...
        def row_slack_units(self) -> np.ndarray: ...
        def placements(self) -> list[Placement]: ...
        def jobs(self) -> list[Job]: ...
        def placement(self, job_id: str) -> Placement: ...
        def job(self, job_id: str) -> Job: ...
        def __len__(self) -> int: ...
        def __contains__(self, job_id: object) -> bool: ...
        def _search(self, gpus: int, max_cap: int, min_cap: int, pod: int) -> SearchAnswer: ...
        def _insert(self, job: Job, placement: Placement) -> None: ...
        def _replace(self, job: Job, old: Placement, new: Placement) -> None: ...
        def _reshape(self, job: Job, new: Placement, removed: Any, added: Any) -> None: ...
        def _set_node_state(self, node: int, state: int, power_delta_w: int) -> None: ...
        def _set_limit_units(self, row: int, limit_units: int) -> None: ...
        def _jobs_on(self, node: int) -> list[str]: ...
        def node_state_codes(self) -> np.ndarray: ...
        def row_limit_units(self) -> np.ndarray: ...
        def _reset(self) -> None: ...
        _lock: Any

    # ---- explain --------------------------------------------------------------------

    def explain(self, job: Job, pod: int | str | None = None) -> Explanation:
        """Say whether ``job`` fits now, at which cap, and which constraint binds.

        Raises the same errors as :meth:`place` for a job that can never run; changes
        nothing.
        """
        with self._lock:
            _id, gpus, max_cap, min_cap = check_job(self.cluster, job, self)
            pod_index = -1 if pod is None else check_pod(self.cluster, pod)
            status, cap, nodes, row = self._search(gpus, max_cap, min_cap, pod_index)
        c = self.cluster.constraints
        binding = c.names[row] if row >= 0 else None
        kind = c.kinds[row] if row >= 0 else None
        where = "" if pod is None else f" in pod {self.cluster.pod_names[pod_index]!r}"
        if status == _engine_py.FOUND:
            limited = (f"; {binding!r} ({kind}) holds it below {job.max_cap_w} W"
                       if cap < job.max_cap_w and binding else "")
            message = (f"Job {job.id!r} fits{where} on {len(nodes)} node(s) at {cap} W"
                       f"{limited}")
            return Explanation(job.id, "placeable", cap, tuple(nodes),
                               binding if cap < job.max_cap_w else None,
                               kind if cap < job.max_cap_w else None, message)
        if status == _engine_py.NO_CAPACITY:
            G = self.cluster.gpus_per_node
            need = (f"a node with {job.gpus} free GPUs" if job.gpus <= G
                    else f"{job.gpus // G} empty nodes")
            message = (f"Job {job.id!r} does not fit{where}: no capacity, it needs {need} "
                       f"and {self.free_gpus()} GPUs are free in the cluster")
            held = self._held_nodes_that_fit(gpus, pod_index)
            if held:
                shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5
                                               else "")
                message += f"; it would fit on nodes that are not up: {shown}"
            return Explanation(job.id, "no-capacity", None, (), None, None, message,
                               tuple(held))
        # The search names the row that stopped its first candidate.  A row over every
        # rack that cannot take even the job's least demand blocks it everywhere, and
        # says more (the facility rather than the first hall looked at).
        global_row = self._row_blocking_everywhere(job)
        if global_row is not None:
            binding, kind = c.names[global_row], c.kinds[global_row]
        message = (f"Job {job.id!r} does not fit{where}: GPUs are free, but even at "
                   f"{job.min_cap_w} W it would break {binding!r} ({kind})")
        return Explanation(job.id, "no-power", None, (), binding, kind, message)

    def _held_nodes_that_fit(self, gpus: int, pod: int) -> list[str]:
        """Names (with state) of the draining, down and spare nodes that would take the
        job if they were up: for a job of one node, those with its free GPUs; for a gang,
        the empty ones, when enough of them (with the up ones) would make its nodes."""
        codes = self.node_state_codes()
        held = np.flatnonzero(codes != UP)
        if pod >= 0:
            held = held[self.cluster.node_pod[held] == pod]
        if not held.size:
            return []
        G = self.cluster.gpus_per_node
        free = self.node_free_gpus()
        if gpus <= G:
            fit = held[free[held] >= gpus]
        else:
            fit = held[free[held] == G]
            in_scope = (codes == UP) & (free == G)
            if pod >= 0:
                in_scope &= self.cluster.node_pod == pod
            if int(np.count_nonzero(in_scope)) + fit.size < gpus // G:
                return []
        names = self.cluster.node_names
        return [f"{names[n]} ({NODE_STATE_NAMES[int(codes[n])]})" for n in fit.tolist()]

    def _row_blocking_everywhere(self, job: Job) -> int | None:
        """The row covering every rack that is shortest of the job's least demand, if any.

        The least demand is the job's GPUs at ``min_cap_w`` (plus the busy step of each
        node for jobs on whole nodes, which are always empty ones), times the row's
        smallest coefficient.
        """
        c, power = self.cluster.constraints, self.cluster.power
        G = power.gpus_per_node
        demand_w = job.gpus * (job.min_cap_w - power.gpu_idle_w)
        if job.gpus >= G:  # whole nodes are empty nodes: each turns busy
            demand_w += (job.gpus // G) * power.busy_step_w
        A = c.A.tocsr()
        counts = np.diff(A.indptr)
        slack = self.row_slack_units()
        worst, worst_deficit = None, 0
        for i in np.flatnonzero(counts == self.cluster.num_racks):
            coef_units = int(c.A_units.data[A.indptr[i]:A.indptr[i + 1]].min())
            deficit = coef_units * demand_w - int(slack[i])
            if deficit > worst_deficit:  # the row short by the most blocks the most
                worst, worst_deficit = int(i), deficit
        return worst

    # ---- preemption (the plan layer does the work) ------------------------------------

    def plan_preemption(self, job: Job, pod: int | str | None = None,
                        **options: Any) -> "PreemptionPlan":
        """The least-cost cap-downs and evictions that let ``job`` start now:
        :func:`gpusched.plan.preempt.plan_preemption` (imported on first use); the plan's
        ``apply()`` carries it out atomically."""
        from .plan.preempt import plan_preemption
        return plan_preemption(self, job, pod, **options)

    # ---- snapshots ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The full live state as a JSON-serialisable dict (lossless)."""
        with self._lock:
            jobs = self.jobs()
            placements = self.placements()
            site = self._site_snapshot()
        snap: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "cluster": self.cluster.name,
            "cluster_gpus": self.cluster.num_gpus,
            "constraint_rows": self.cluster.constraints.num_rows,
            "cluster_fingerprint": self.cluster.fingerprint,
            "jobs": [{"job": job.to_dict(), "nodes": list(p.nodes),
                      "gpus_per_node": p.gpus_per_node, "cap_w": p.cap_w}
                     for job, p in zip(jobs, placements)],
        }
        if site is not None:  # a site that never changed writes what it always wrote
            snap["site"] = site
        return snap

    def _site_snapshot(self) -> dict[str, Any] | None:
        """Node states, spares, live limits and degraded jobs, or None if all default."""
        codes = self.node_state_codes()
        live = self.row_limit_units()
        b = self.cluster.constraints.b_units
        names = self.cluster.constraints.names
        degraded = self.degraded()
        if (not codes.any() and self._spare_policy is None and (live == b).all()
                and not degraded):
            return None
        return {
            "nodes": {NODE_STATE_NAMES[s]: np.flatnonzero(codes == s).tolist()
                      for s in (DRAINING, DOWN, SPARE)},
            "spare_policy": (None if self._spare_policy is None
                             else self._spare_policy.to_dict()),
            "limit_units": {names[i]: int(live[i]) for i in np.flatnonzero(live != b)},
            "over": [name for name, _load, _limit in self.violations()],
            "degraded": {job_id: list(lost) for job_id, lost in degraded.items()},
        }

    #: ``Engine.restore(cluster, snapshot)`` on the class is :meth:`from_snapshot`;
    #: ``engine.restore(nodes)`` on an engine is :meth:`restore_nodes`.
    restore = _RestoreMethod()

    @classmethod
    def from_snapshot(cls, cluster: Cluster, snapshot: dict[str, Any],
                      backend: str | None = None) -> "Engine":
        """An engine in the state ``snapshot`` describes; checks every placement.

        Raises SnapshotError for a snapshot of another cluster, a malformed one, or one
        whose placements overlap or break a row (a tampered file).
        """
        engine = Engine(cluster, backend=backend)
        engine.load_snapshot(snapshot)
        return engine

    def load_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Replace this engine's state by ``snapshot``; on error the state is unchanged."""
        if not isinstance(snapshot, dict):
            raise SnapshotError(f"a snapshot is a dict, got {type(snapshot).__name__}")
        if type(snapshot.get("format")) is not int or snapshot["format"] != SNAPSHOT_FORMAT:
            raise SnapshotError(f"snapshot format {snapshot.get('format')!r} is not "
                                f"{SNAPSHOT_FORMAT}, the one this version reads", field="format")
        c = self.cluster
        if (snapshot.get("cluster") != c.name or snapshot.get("cluster_gpus") != c.num_gpus
                or snapshot.get("constraint_rows") != c.constraints.num_rows):
            raise SnapshotError(f"snapshot is of cluster {snapshot.get('cluster')!r} "
                                f"({snapshot.get('cluster_gpus')} GPUs), not of {c.name!r} "
                                f"({c.num_gpus} GPUs)", field="cluster")
        entries = snapshot.get("jobs")
        if not isinstance(entries, list):
            raise SnapshotError("snapshot 'jobs' must be a list", field="jobs")
        # node indices mean hosts only on the same topology and limits; a snapshot from
        # before fingerprints holding jobs cannot be told apart from one of a reordered
        # or renamed site, so only an empty one (nothing to misplace) loads without it
        fingerprint = snapshot.get("cluster_fingerprint")
        if fingerprint is None and entries:
            raise SnapshotError(
                f"snapshot of {c.name!r} holds {len(entries)} job(s) but no "
                "cluster_fingerprint (written before fingerprints): it cannot be told apart "
                "from a snapshot of the same site with racks reordered or hosts renamed; "
                "restore it with the version that wrote it and save it again",
                field="cluster_fingerprint")
        if fingerprint is not None and fingerprint != c.fingerprint:
            raise SnapshotError(
                f"snapshot is of another topology or other limits than cluster {c.name!r}: "
                f"its cluster_fingerprint {str(fingerprint)[:16]!r}... is not this "
                f"cluster's {c.fingerprint[:16]!r}... (racks reordered, hosts renamed or a "
                "limit changed); node indices would name other hosts",
                field="cluster_fingerprint")
        site = snapshot.get("site")
        if site is not None and (not isinstance(site, dict) or set(site) != {
                "nodes", "spare_policy", "limit_units", "over", "degraded"}):
            raise SnapshotError("snapshot 'site' must have exactly nodes, spare_policy, "
                                "limit_units, over and degraded", field="site")
        with self._lock:
            before = self.snapshot()
            try:
                self._load_entries(entries, site)
            except (GpuschedError, ValueError, TypeError, KeyError, AttributeError) as exc:
                self._load_entries(before["jobs"], before.get("site"))
                if isinstance(exc, SnapshotError):
                    raise
                raise SnapshotError(f"snapshot does not restore: {exc}") from exc

    def _load_entries(self, entries: list[Any], site: dict[str, Any] | None) -> None:
        """Reset, then rebuild: live limits, down nodes, jobs, draining nodes, spares.

        Rows that were over their live limit when the snapshot was taken are lifted while
        the jobs go back, then set again, so a state that was legitimately over restores
        and every other row is checked as a placement would be.
        """
        self._reset()
        self._site_reset()
        c = self.cluster.constraints
        power = self.cluster.power
        site = site or {"nodes": {}, "spare_policy": None, "limit_units": {}, "over": [],
                        "degraded": {}}
        limits = dict(site["limit_units"])
        for name, units in limits.items():
            if type(units) is not int or not 0 <= units <= MAX_ROW_LOAD_UNITS:
                raise SnapshotError(f"snapshot limit of {name!r} must be whole units in "
                                    f"[0, {MAX_ROW_LOAD_UNITS}]", field="site.limit_units")
            self._set_limit_units(c.row(name), units)
        over = [c.row(name) for name in site["over"]]
        for row in over:
            self._set_limit_units(row, MAX_ROW_LOAD_UNITS)
        nodes = site["nodes"]
        if not isinstance(nodes, dict) or not set(nodes) <= {"draining", "down", "spare"}:
            raise SnapshotError("snapshot site.nodes maps draining, down and spare to node "
                                "lists", field="site.nodes")
        states = {name: self._node_list(nodes.get(name, [])) for name in
                  ("draining", "down", "spare")}
        for n in states["down"]:
            self._set_node_state(n, DOWN, power.node_down_w - power.node_idle_w)
        degraded = site["degraded"]
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or set(entry) != {"job", "nodes",
                                                             "gpus_per_node", "cap_w"}:
                raise SnapshotError(f"snapshot jobs[{i}] must have exactly job, nodes,"
                                    " gpus_per_node and cap_w", field=f"jobs[{i}]")
            job = Job.from_dict(entry["job"])
            lost = self._node_list(degraded.get(job.id, []))
            if not isinstance(entry["nodes"], list) or not (entry["nodes"] or lost):
                raise SnapshotError(f"snapshot jobs[{i}].nodes must be a non-empty list",
                                    field=f"jobs[{i}].nodes")
            placement = self._apply(job, entry["nodes"], entry["gpus_per_node"],
                                    entry["cap_w"], lost=len(lost))
            if lost:
                self._lost[job.id] = (placement, tuple(lost))
        for n in states["draining"]:
            if self.node_state_codes()[n] != UP:
                raise SnapshotError(f"snapshot node {n} has two states", field="site.nodes")
            self._set_node_state(n, DRAINING, 0)
        policy = site["spare_policy"]
        if policy is not None:
            self._spare_policy = SparePolicy(int(policy["k"]), str(policy["per"]),
                                             int(policy["cap_w"]))
        G = self.cluster.gpus_per_node
        for n in states["spare"]:
            if (policy is None or self.node_state_codes()[n] != UP
                    or self.node_free_gpus()[n] != G):
                raise SnapshotError(f"snapshot spare node {n} is not an empty up node of a "
                                    "spare policy", field="site.nodes")
            self._set_node_state(n, SPARE, self._spare_reserve_w(SPARE))
        if (self.row_slack_units() < 0).any():
            bad = int(np.flatnonzero(self.row_slack_units() < 0)[0])
            raise SnapshotError(f"snapshot breaks {c.names[bad]!r}", field="site")
        for row in over:
            self._set_limit_units(row, limits.get(c.names[row], int(c.b_units[row])))

    def place_at_most(self, job: Job, cap_w: int, pod: int | str | None = None
                      ) -> Placement | None:
        """Place ``job`` as :meth:`place` would, but at no more than ``cap_w``.

        For a caller that planned a lower cap (a cluster-wide allocation, a simulator
        policy).  The engine still records the job with its own cap range, so a later
        ``set_cap`` or ``rebalance_caps`` may raise the cap up to ``job.max_cap_w``.
        ``cap_w`` must lie in ``[job.min_cap_w, job.max_cap_w]``.
        """
        with self._lock:
            check_job(self.cluster, job, self)  # a non-Job, first, gets place's error
            if (isinstance(cap_w, bool) or not isinstance(cap_w, int)
                    or not job.min_cap_w <= cap_w <= job.max_cap_w):
                raise JobError(f"Job {job.id!r}: cap_w={cap_w!r} must be a whole number of "
                               f"watts in the job's [{job.min_cap_w}, {job.max_cap_w}] W",
                               field="cap_w")
            placement = self.place(job.replace(max_cap_w=cap_w), pod)
            if placement is not None:
                self._replace(job, placement, placement)  # record the job's own range
            return placement

    def place_on(self, job: Job, nodes: Any, cap_w: int) -> Placement:
        """Place ``job`` exactly on ``nodes`` (ascending node indices) at ``cap_w``.

        For a caller that chose the nodes itself (a cluster-wide allocation, a replayed
        journal).  Checked and atomic: raises PlacementError, and changes nothing, if a
        node lacks the free GPUs, the cap is outside the job's range, or a row of
        A·P <= b would break.
        """
        with self._lock:
            _id, gpus, _max, _min = check_job(self.cluster, job, self)  # a non-Job, first
            return self._apply(job, nodes, gpus_per_node_for(gpus, self.cluster.gpus_per_node),
                               cap_w)

    def _apply(self, job: Job, nodes: Any, gpus_per_node: int, cap_w: int,
               lost: int = 0) -> Placement:
        """Place ``job`` exactly on ``nodes`` at ``cap_w`` (restore, replay); atomic, checked.

        ``lost`` is the number of nodes a degraded job (restored from a snapshot) has lost.
        Raises PlacementError if a node is not up or not free enough, or a row would break.
        """
        G = self.cluster.gpus_per_node
        with self._lock:
            job_id, gpus, max_cap, min_cap = check_job(self.cluster, job, self)
            try:
                node_list = [operator.index(n) for n in nodes]
                gpus_per_node, cap_w = operator.index(gpus_per_node), operator.index(cap_w)
            except TypeError:
                raise PlacementError(f"Job {job_id!r}: nodes, gpus_per_node and cap_w must be "
                                     "whole numbers") from None
            if (gpus_per_node != gpus_per_node_for(gpus, G)
                    or (len(node_list) + lost) * gpus_per_node != gpus):
                raise PlacementError(f"Job {job_id!r}: {len(node_list)} node(s) x "
                                     f"{gpus_per_node} GPUs does not make its {gpus} GPUs",
                                     field="nodes")
            if node_list != sorted(set(node_list)):
                raise PlacementError(f"Job {job_id!r}: nodes must be distinct and ascending",
                                     field="nodes")
            if node_list and (node_list[0] < 0 or node_list[-1] >= self.cluster.num_nodes):
                raise PlacementError(f"Job {job_id!r}: node indices must be in "
                                     f"0..{self.cluster.num_nodes - 1}", field="nodes")
            codes = self.node_state_codes()[node_list]
            if (codes != UP).any():
                bad = node_list[int(np.argmax(codes != UP))]
                raise PlacementError(f"Job {job_id!r}: node {bad} is "
                                     f"{NODE_STATE_NAMES[int(codes[codes != UP][0])]}; "
                                     "only up nodes take jobs", field="nodes")
            if not min_cap <= cap_w <= max_cap:
                raise PlacementError(f"Job {job_id!r}: cap_w={cap_w} is outside the job's "
                                     f"[{min_cap}, {max_cap}] W", field="cap_w")
            free = self.node_free_gpus()[node_list]
            need = G if gpus > G else gpus_per_node
            if (free < need).any():
                bad = node_list[int(np.argmax(free < need))]
                raise PlacementError(f"Job {job_id!r}: node {bad} has "
                                     f"{int(self.node_free_gpus()[bad])} free GPUs, it needs {need}",
                                     field="nodes")
            power = self.cluster.power
            node_delta_w = (gpus_per_node * (cap_w - power.gpu_idle_w)
                            + np.where(free == G, power.busy_step_w, 0)).astype(np.int64)
            rack_delta_w = np.bincount(self.cluster.node_rack[node_list], weights=node_delta_w,
                                       minlength=self.cluster.num_racks).astype(np.int64)
            row_delta = self.cluster.constraints.load_units(rack_delta_w)
            broken = np.flatnonzero((row_delta > 0) & (row_delta > self.row_slack_units()))
            if broken.size:
                raise PlacementError(f"Job {job_id!r}: at {cap_w} W it would break "
                                     f"{self.cluster.constraints.names[broken[0]]!r}")
            placement = Placement(job_id, tuple(node_list), gpus_per_node, cap_w)
            self._insert(job, placement)
            return placement

    def set_cap(self, job_id: str, cap_w: int) -> Placement:
        """Change the power cap of a running job, keeping its nodes; atomic and checked.

        ``cap_w`` must lie in the job's ``[min_cap_w, max_cap_w]``; raises PlacementError
        (and changes nothing) if a row of A·P <= b would break at the new cap.  Lowering
        a cap is always allowed, on a row over its live limit too.  The job keeps its
        place in ``placements()`` order, and a degraded job stays degraded.
        """
        with self._lock:
            old = self.placement(job_id)
            job = self.job(job_id)
            try:
                cap_w = operator.index(cap_w)
            except TypeError:
                raise PlacementError(f"Job {job_id!r}: cap_w={cap_w!r} must be a whole number "
                                     "of watts", field="cap_w") from None
            if not job.min_cap_w <= cap_w <= job.max_cap_w:
                raise PlacementError(f"Job {job_id!r}: cap_w={cap_w} is outside the job's "
                                     f"[{job.min_cap_w}, {job.max_cap_w}] W", field="cap_w")
            # same nodes, so only the GPUs' caps change: gpus_per_node * (new - old) a node
            rack_delta_w = np.bincount(self.cluster.node_rack[list(old.nodes)],
                                       minlength=self.cluster.num_racks).astype(np.int64)
            rack_delta_w *= old.gpus_per_node * (cap_w - old.cap_w)
            row_delta = self.cluster.constraints.load_units(rack_delta_w)
            broken = np.flatnonzero((row_delta > 0) & (row_delta > self.row_slack_units()))
            if broken.size:
                raise PlacementError(f"Job {job_id!r}: at {cap_w} W it would break "
                                     f"{self.cluster.constraints.names[broken[0]]!r}")
            new = Placement(job_id, old.nodes, old.gpus_per_node, cap_w)
            lost = self.lost_nodes(job_id, old)
            self._replace(job, old, new)
            if lost:
                self._lost[job_id] = (new, lost)
            return new

    # ---- durable state (gpusched.state does the file format) -------------------------

    def save(self, path: "str | os.PathLike[str]") -> None:
        """Write the state to ``path`` atomically (temp file, fsync, rename), checksummed."""
        write_atomic(path, encode_state(self.snapshot()))

    @classmethod
    def load(cls, cluster: Cluster, path: "str | os.PathLike[str]",
             backend: str | None = None) -> "Engine":
        """An engine in the state saved at ``path``; refuses truncated or edited files."""
        return cls.from_snapshot(cluster, read_state(path), backend=backend)

    # ---- views ----------------------------------------------------------------------

    def gpus_in_use(self) -> int:
        return self.cluster.num_gpus - self.free_gpus()

    def row_slack_w(self) -> np.ndarray:
        """``b - A·P`` per row in the rows' own units (watts), exact to 1e-6."""
        return self.row_slack_units() / COEF_SCALE

    def total_power_w(self) -> int:
        return int(self.rack_power_w().sum())

    def __repr__(self) -> str:
        return (f"<Engine {self.backend} on {self.cluster.name!r}: {len(self)} jobs, "
                f"{self.gpus_in_use()}/{self.cluster.num_gpus} GPUs busy, "
                f"{self.total_power_w() / 1e6:.3f} MW>")


class _PythonEngine(Engine, _engine_py.EngineCore):
    backend = "python"


_ENGINE_CLASSES: dict[str, type[Engine]] = {"python": _PythonEngine}
if "cython" in _cores:
    class _CythonEngine(Engine, _engine_c.EngineCore):
        backend = "cython"

    _ENGINE_CLASSES["cython"] = _CythonEngine
