"""The placement service's core: one engine, one lock, one journal.

:class:`PlacementService` is the HTTP-free heart of ``gpusched serve``: it validates
request bodies, runs them on the engine under its lock, appends what changed to the
write-ahead journal and returns plain dicts.  The Starlette layer (``app.py``) only
parses bytes, checks the token, waits for the journal's fsync and writes the reply.

Journal entries (``op``):

``place``    ``job`` (Job.to_dict), ``nodes``, ``gpus_per_node``, ``cap_w`` and, for a
             Kubernetes gang reservation, ``gang`` (its metadata); replay calls
             ``engine._apply`` on exactly those nodes, so it is deterministic.  ``at``
             is when it was placed (Unix seconds; snapshots keep it as ``placed_at``).
``release``  ``job_id``.
``cut``      ``job_id``, then ``job``, ``nodes``, ``gpus_per_node``, ``cap_w`` and ``gang`` as
             in ``place``: an expired gang cut down to its bound pods, the release and the
             new place as one record (journal format 1 plus this op; a gpusched without
             it refuses such a journal with SnapshotError rather than misread it).
``set-cap``  ``job_id``, ``cap_w`` (rebalance-caps with apply).
``bind``     ``gang``, ``pod``, ``node``: a Kubernetes pod bound inside its reservation.
``unbind``   ``gang``, ``pod``: the API server refused that binding; the slot is free.

A site that changes (journal ops added with wire format 1.2; ``site.py``):

``drain``, ``fail``, ``restore``  ``nodes``: the node indices whose state changed (and
             ``domain`` when the operator named a failure domain); replay calls the same
             engine method on them, which is deterministic from the same state.
``repair``   ``job_id``, ``nodes``, ``cap_w`` (the new placement) and, for a gang, ``gang``
             (its reservation after the repair); replay repairs and checks the result.
``set-limit`` ``row``, ``watts``.  ``reset-limits``: no fields.
``envelope`` ``evict`` (job ids released), ``caps`` (job id -> new cap): an applied plan.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._checks import check_job
from ..spec import Cluster
from ..engine import Engine
from ..errors import (DuplicateJobError, GpuschedError, JobError, PlacementError,
                      ServiceError, SnapshotError, UnknownJobError)
from ..job import Job, Placement
from ..power import check_curve
from .journal import Journal
from .site import SITE_OPS, SiteOps, replay_site
from .schemas import RequestError, request_schemas, resolve, validate

__all__ = ["PlacementService"]

# The fields of a Job, as JobError.field names them: they sit inside the job's body.
_JOB_FIELDS = frozenset({"id", "gpus", "max_cap_w", "min_cap_w", "weight", "sensitivity",
                         "curve", "priority", "preemptible"})


def _request_field(field: str | None, where: str) -> str | None:
    """The request path of the error's ``field``: a Job field lies in the job's body at
    ``where``; any other field is an argument of the call, a key of the request body
    (``pod``, ``queue[3].id``)."""
    if field is None:
        return None
    return f"{where}.{field}" if field in _JOB_FIELDS else f"body.{field}"


def _job_error(exc: GpuschedError, where: str) -> RequestError:
    """A 4xx for an engine error, naming the request field its ``field`` points at."""
    status = 409 if isinstance(exc, DuplicateJobError) else (
        404 if isinstance(exc, UnknownJobError) else 422)
    return RequestError(status, str(exc), _request_field(exc.field, where))


def _plain(value: Any) -> Any:
    """JSON-ready copy of an allocate result (dataclasses, numpy arrays, Placements)."""
    if isinstance(value, Placement):
        return value.to_dict()
    if isinstance(value, Job):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _note_time(placed_at: dict[str, float], entry: dict[str, Any]) -> None:
    """Keep ``placed_at`` in step with one journal entry: a place sets, a release drops."""
    if entry.get("op") == "place":
        at = entry.get("at")
        if isinstance(at, (int, float)) and not isinstance(at, bool):
            placed_at[str(entry["job"]["id"])] = float(at)
    elif entry.get("op") == "release":
        placed_at.pop(str(entry.get("job_id")), None)


class PlacementService(SiteOps):
    """Engine + journal + Kubernetes gangs, thread-safe behind one lock.

    Parameters
    ----------
    cluster : Cluster
    state_dir : path
        The journal and snapshots live here; the state found there is recovered.
    backend : str, optional
        Engine backend (default: the compiled core when available).
    snapshot_every : int
        Take a snapshot and empty the journal after this many entries.
    gang_timeout_s : float
        A Kubernetes gang reservation whose pods are not all bound within this many
        seconds is released (HiveD-style gang expiry).
    clock : callable
        Seconds since the epoch (``time.time``); gang deadlines are journaled as
        absolute times of it, so they survive a restart.  Tests pass a fake one.
    binder : callable, optional
        ``binder(namespace, pod, uid, node)`` for the k8s bind verb (see ``k8s.GangBook``).
    """

    def __init__(self, cluster: Cluster, state_dir: str | os.PathLike[str], *,
                 backend: str | None = None, snapshot_every: int = 10_000,
                 gang_timeout_s: float = 300.0,
                 clock: Callable[[], float] = time.time,
                 binder: Callable[[str, str, str, str], None] | None = None) -> None:
        from .k8s import Extender

        if snapshot_every < 1:
            raise ServiceError(f"snapshot_every={snapshot_every} must be >= 1",
                               field="snapshot_every")
        self.cluster = cluster
        self.lock = threading.Lock()
        self.snapshot_every = snapshot_every
        self._next_checkpoint_entries = snapshot_every
        self._backend = backend
        self.engine = Engine(cluster, backend=backend)
        self.gangs = Extender(self.engine, self.lock, cluster, self.record,
                              timeout_s=gang_timeout_s, clock=clock, binder=binder)
        self.schemas = request_schemas(cluster)
        self._resolved: dict[str, dict[str, Any]] = {}
        self._plans: dict[str, Any] = {}
        self.journal = Journal(state_dir)
        self.journal.on_cut = self._after_failed_sync
        # job id -> Unix seconds it was placed (journaled as a place entry's "at"), for
        # `gpusched jobs`; entries written before "at" existed leave a job without one
        self.placed_at: dict[str, float] = {}
        try:
            self._recover()
        except BaseException:
            self.journal.close()
            raise

    # ---- recovery -------------------------------------------------------------------

    def _recover(self) -> None:
        recovery = self.journal.recover()
        self.placed_at = self._load(recovery, self.engine, self.gangs)
        self.recovered_entries = len(recovery.entries)

    def _load(self, recovery: Any, engine: Engine, gangs: Any) -> dict[str, float]:
        """Build ``engine`` and ``gangs`` from a snapshot and the journal entries after it;
        returns the placement times they hold."""
        placed_at: dict[str, float] = {}
        if recovery.snapshot is not None:
            engine.load_snapshot(recovery.snapshot)
            gangs.load(recovery.snapshot.get("k8s_gangs", []))
            times = recovery.snapshot.get("placed_at")
            if isinstance(times, dict):
                placed_at.update({str(j): float(t) for j, t in times.items()
                                  if isinstance(t, (int, float)) and not isinstance(t, bool)})
        for entry in recovery.entries:
            try:
                self._replay(entry, engine, gangs)
            except (GpuschedError, KeyError, TypeError, ValueError) as exc:
                raise SnapshotError(f"{self.journal.journal_path}: entry seq {entry['seq']} "
                                    f"({entry.get('op')!r}) does not replay: {exc}") from exc
            _note_time(placed_at, entry)
        return placed_at

    @staticmethod
    def _replay(entry: dict[str, Any], engine: Engine, gangs: Any) -> None:
        op = entry["op"]
        if op == "place":
            job = Job.from_dict(entry["job"])
            engine._apply(job, entry["nodes"], entry["gpus_per_node"], entry["cap_w"])
            if entry.get("gang") is not None:
                gangs.restore_one(entry["gang"])
        elif op == "release":
            engine.release(entry["job_id"])
            gangs.forget_job(entry["job_id"])
        elif op == "cut":
            engine.release(entry["job_id"])
            job = Job.from_dict(entry["job"])
            engine._apply(job, entry["nodes"], entry["gpus_per_node"], entry["cap_w"])
            gangs.restore_one(entry["gang"])
        elif op == "set-cap":
            engine.set_cap(entry["job_id"], entry["cap_w"])
        elif op == "bind":
            gangs.replay_bind(entry["gang"], entry["pod"], entry["node"])
        elif op == "unbind":
            gangs.replay_unbind(entry["gang"], entry["pod"])
        elif op in SITE_OPS:
            replay_site(entry, engine, gangs)
        else:
            raise SnapshotError(f"unknown journal op {op!r}", field="op")

    def _roll_back_to_disk(self) -> None:
        """After a failed append: make memory what the directory holds (caller has the lock).

        Callers change the engine (or a gang reservation) and then journal the change; when
        the append fails, that change must not stay in memory, or a later checkpoint would
        write out what its client was told had failed.  The journal has already cut the
        partial record off, so the directory holds every change appended before it (the
        acknowledged ones and those whose fsync is under way): rebuild from it.
        """
        from .k8s import Extender

        old = self.gangs
        engine = Engine(self.cluster, backend=self._backend)
        gangs = Extender(engine, self.lock, self.cluster, self.record,
                         timeout_s=old.timeout_s, clock=old.clock, binder=old.binder)
        try:
            placed_at = self._load(self.journal.read(), engine, gangs)
            self.engine.load_snapshot(engine.snapshot())
        except (OSError, GpuschedError) as exc:
            self.journal.broken = self.journal.broken or (
                f"memory could not be rebuilt from disk after a failed append ({exc})")
            return
        old.adopt(gangs)
        self.placed_at = placed_at

    def _after_failed_sync(self, exc: OSError) -> None:
        """A journal fsync failed: cut what it covered off the disk and out of memory.

        Called by the journal (on the event loop, holding no lock).  Every record written
        since the last good fsync belongs to a request that has not been answered; all
        of them get 503, so none of them may stay in memory or in the file.
        """
        with self.lock:
            self.journal.cut_to_durable(exc)
            if self.journal.broken is None:
                self._roll_back_to_disk()

    # ---- journaling (caller holds self.lock) -------------------------------------------

    def record(self, entry: dict[str, Any]) -> int:
        """Append ``entry`` to the journal; return the ticket the reply must wait for.

        If the append fails, memory is rolled back to the directory's state and the
        OSError propagates (the caller answers 503): the change is neither in memory nor
        on disk.
        """
        if entry.get("op") == "place":
            entry.setdefault("at", round(time.time(), 3))
        try:
            seq = self.journal.write(entry)
        except OSError:
            self._roll_back_to_disk()
            raise
        _note_time(self.placed_at, entry)
        return seq

    def record_place(self, job: Job, placement: Placement,
                     gang: dict[str, Any] | None = None) -> int:
        entry: dict[str, Any] = {"op": "place", "job": job.to_dict(),
                                 "nodes": list(placement.nodes),
                                 "gpus_per_node": placement.gpus_per_node,
                                 "cap_w": placement.cap_w}
        if gang is not None:
            entry["gang"] = gang
        return self.record(entry)

    def snapshot(self) -> dict[str, Any]:
        return {**self.engine.snapshot(), "k8s_gangs": self.gangs.dump(),
                "placed_at": {j: t for j, t in sorted(self.placed_at.items())
                              if j in self.engine}}

    def maybe_checkpoint(self) -> bool:
        """Snapshot and empty the journal if it is long and no fsync is in flight.

        Every entry is durable in the journal before this runs, so a failed checkpoint
        (no descriptor left, disk full) loses nothing: it is reported on stderr and tried
        again after another ``snapshot_every`` entries, and never fails a request.
        """
        with self.lock:
            if (self.journal.entries_since_snapshot < self._next_checkpoint_entries
                    or self.journal.flushing or self.journal.broken is not None):
                return False
            try:
                self.journal.checkpoint(self.snapshot())
            except OSError as exc:
                self._next_checkpoint_entries = (self.journal.entries_since_snapshot
                                                 + self.snapshot_every)
                print(f"gpusched serve: checkpoint failed ({exc}); the journal still holds "
                      "every change, retrying later", file=sys.stderr)
                return False
            self._next_checkpoint_entries = self.snapshot_every
            return True

    def checkpoint(self) -> None:
        with self.lock:
            self.journal.checkpoint(self.snapshot())

    def close(self) -> None:
        """Snapshot (so the next start replays nothing) and release the directory."""
        with self.lock:
            # A broken journal means memory may hold changes the disk refused: never
            # snapshot them; the next start recovers from the directory.
            if (self.journal.entries_since_snapshot and not self.journal.flushing
                    and self.journal.broken is None):
                try:
                    self.journal.checkpoint(self.snapshot())
                except OSError as exc:
                    print(f"gpusched serve: final checkpoint failed ({exc}); the journal "
                          "still holds every change", file=sys.stderr)
            try:
                self.journal.close()
            except OSError as exc:
                print(f"gpusched serve: closing the journal failed ({exc})", file=sys.stderr)

    # ---- validation -----------------------------------------------------------------

    def check(self, schema_name: str, body: Any) -> None:
        schema = self._resolved.get(schema_name)
        if schema is None:
            schema = self._resolved[schema_name] = resolve(self.schemas[schema_name],
                                                           self.schemas)
        validate(body, schema)

    @staticmethod
    def _job(data: dict[str, Any], where: str) -> Job:
        try:
            return Job.from_dict(data)
        except JobError as exc:
            raise _job_error(exc, where) from None

    def _placement_dict(self, placement: Placement) -> dict[str, Any]:
        names = self.cluster.node_names
        return {**placement.to_dict(), "node_names": [names[n] for n in placement.nodes]}

    # ---- operations: each returns (reply dict, journal ticket to wait for or 0) -------

    def place(self, body: Any) -> tuple[dict[str, Any], int]:
        self.check("PlaceRequest", body)
        job = self._job(body["job"], "body.job")
        pod = body.get("pod")
        with self.lock:
            try:
                placement = self.engine.place(job, pod=pod)
                if placement is None:
                    explanation = self.engine.explain(job, pod=pod)
            except GpuschedError as exc:
                raise _job_error(exc, "body.job") from None
            if placement is None:
                return {"placed": False, "placement": None,
                        "explanation": self._explanation_dict(explanation)}, 0
            seq = self.record_place(job, placement)
        return {"placed": True, "placement": self._placement_dict(placement),
                "explanation": None}, seq

    def release(self, body: Any) -> tuple[dict[str, Any], int]:
        self.check("ReleaseRequest", body)
        job_id = body["job_id"]
        with self.lock:
            try:
                placement = self.engine.release(job_id)
            except UnknownJobError as exc:
                raise RequestError(404, str(exc), "body.job_id") from None
            seq = self.record({"op": "release", "job_id": job_id})
            self.gangs.forget_job(job_id)
        return {"released": self._placement_dict(placement)}, seq

    def batch(self, body: Any) -> tuple[dict[str, Any], int]:
        """Places and releases in order, each as if sent alone; one wait for all of them.

        Each op gets its own status: 200 with the reply ``/v1/place`` or ``/v1/release``
        would give, or that call's error (its ``field`` under ``body.ops[i]``).  A failed
        append stops the batch: that op and the rest get 503, and nothing of them
        happened.  The caller waits for the last ticket: the records of one batch are
        written without a pause, so one fsync covers them all, and a failed fsync cuts
        them all (the whole reply is then 503).
        """
        self.check("BatchRequest", body)
        results: list[dict[str, Any]] = []
        ticket = 0
        ops = body["ops"]
        for i, op in enumerate(ops):
            request = {k: v for k, v in op.items() if k != "op"}
            try:
                reply, written = (self.place if op["op"] == "place" else self.release)(request)
            except RequestError as exc:
                field = exc.field
                if field is not None and (field == "body" or field.startswith("body.")):
                    field = f"body.ops[{i}]{field[4:]}"
                results.append({"status": exc.status,
                                "error": exc.message if field is None
                                else f"{field}: {exc.message}", "field": field})
                continue
            except OSError as exc:   # memory is back to the disk's state: the rest is off
                results.extend({"status": 503, "error": f"journal write failed, nothing "
                                                        f"changed: {exc}", "field": None}
                               for _ in ops[i:])
                break
            results.append({"status": 200, "reply": reply})
            ticket = max(ticket, written)
        return {"results": results}, ticket

    def explain(self, body: Any) -> dict[str, Any]:
        self.check("PlaceRequest", body)
        job = self._job(body["job"], "body.job")
        with self.lock:
            try:
                explanation = self.engine.explain(job, pod=body.get("pod"))
            except GpuschedError as exc:
                raise _job_error(exc, "body.job") from None
        return self._explanation_dict(explanation)

    def _explanation_dict(self, explanation: Any) -> dict[str, Any]:
        names = self.cluster.node_names
        return {"job_id": explanation.job_id, "status": explanation.status,
                "cap_w": explanation.cap_w, "nodes": list(explanation.nodes),
                "node_names": [names[n] for n in explanation.nodes],
                "binding": explanation.binding, "binding_kind": explanation.binding_kind,
                "message": explanation.message}

    def state(self, top: int = 5) -> dict[str, Any]:
        with self.lock:
            rack_power_w = self.engine.rack_power_w()
            summary = {"cluster": self.cluster.name, "backend": self.engine.backend,
                       "gpus": self.cluster.num_gpus, "free_gpus": self.engine.free_gpus(),
                       "jobs": len(self.engine), "total_power_w": int(rack_power_w.sum()),
                       "journal_seq": self.journal.written_seq, "gangs": len(self.gangs)}
        c = self.cluster.constraints
        load = c.A @ rack_power_w.astype(float)
        used = load / np.maximum(c.b, 1e-9)
        order = np.argsort(-used, kind="stable")[:top]
        summary["tightest_rows"] = [{"name": c.names[i], "kind": c.kinds[i],
                                     "load": round(float(load[i]), 3),
                                     "limit": float(c.b[i])} for i in order]
        return summary

    def placements(self) -> dict[str, Any]:
        with self.lock:
            placements = self.engine.placements()
        return {"placements": [self._placement_dict(p) for p in placements]}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "backend": self.engine.backend,
                "journal_seq": self.journal.written_seq}

    # ---- allocate and rebalance caps (gpusched.plan) ---------------------------------------
    # imported in the handlers, not at the top: it loads scipy.optimize, which the place and
    # release path never needs

    def rebalance_caps(self, body: Any) -> tuple[dict[str, Any], int]:
        self.check("RebalanceRequest", body)
        from .. import plan as allocate
        apply = bool(body.get("apply", False))
        # The LP runs outside the service lock (the engine's own lock guards its reads),
        # so places and releases go on meanwhile; the caps are then set under the lock,
        # each one checked against the state of that moment.
        plan = allocate.rebalance_caps(self.engine, apply=False)
        reply = _plain(plan)
        seq = 0
        if apply:
            with self.lock:
                seq = self._apply_caps(dict(getattr(plan, "cap_w", {}) or {}))
        reply["applied"] = apply
        return reply, seq

    def _apply_caps(self, cap_w: dict[str, Any]) -> int:
        """Set new caps, lowering ones first so no row breaks on the way; journaled."""
        current = {p.job_id: p.cap_w for p in self.engine.placements()}
        changes = sorted(((int(round(float(c))) - current[j], j, int(round(float(c))))
                          for j, c in cap_w.items() if j in current
                          and int(round(float(c))) != current[j]))
        done: list[tuple[str, int]] = []
        try:
            for _, job_id, cap in changes:
                self.engine.set_cap(job_id, cap)
                done.append((job_id, current[job_id]))
        except GpuschedError as exc:
            for job_id, old in reversed(done):
                self.engine.set_cap(job_id, old)
            raise RequestError(409, f"the cap plan does not apply ({exc}); nothing "
                                    "changed") from None
        seq = 0
        for job_id, _ in done:
            seq = self.record({"op": "set-cap", "job_id": job_id,
                               "cap_w": self.engine.placement(job_id).cap_w})
        return seq

    def allocate(self, body: Any) -> tuple[dict[str, Any], int]:
        self.check("AllocateRequest", body)
        from .. import plan as allocate
        queue = [self._job(j, f"body.queue[{i}]") for i, j in enumerate(body["queue"])]
        if len({j.id for j in queue}) != len(queue):
            raise RequestError(422, "job ids in the queue must be distinct", "body.queue")
        # allocate() checks each job against the cluster too, but its error names only
        # the Job field; checked here, the reply can name the queue entry as well.
        for i, job in enumerate(queue):
            try:
                check_job(self.cluster, job, ())
                check_curve(self.cluster.power, job)
            except JobError as exc:
                raise _job_error(exc, f"body.queue[{i}]") from None
        time_limit_s = float(body.get("time_limit_s", 1.0))
        # The MILP takes up to time_limit_s: solve outside the service lock (places and
        # releases go on), then apply under it; apply() refuses, and reports, any job
        # whose planned spot was taken meanwhile.
        try:
            allocation = allocate.allocate(self.engine, queue, time_limit_s=time_limit_s)
        except GpuschedError as exc:
            raise _job_error(exc, "body.queue") from None
        seq = 0
        with self.lock:
            if body.get("apply"):
                try:
                    placed = allocate.apply(self.engine, allocation)
                except (PlacementError, JobError) as exc:
                    raise RequestError(409, f"the allocation does not apply: {exc}") from None
                # apply() places each job with its planned cap as max_cap_w: journal
                # the job as the engine holds it, so replay rebuilds the same state.
                held = {j.id: j for j in self.engine.jobs() if j.id in placed}
                for job_id, placement in placed.items():
                    seq = self.record_place(held[job_id], placement)
            # after apply: it adds the jobs it could not place to allocation.dropped
            reply: dict[str, Any] = {"allocation": _plain(allocation),
                                     "applied": bool(body.get("apply"))}
            if body.get("apply"):
                reply["placements"] = {j: self._placement_dict(p) for j, p in placed.items()}
        return reply, seq

    @property
    def state_dir(self) -> Path:
        return self.journal.state_dir
