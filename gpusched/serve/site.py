"""The service's side of a site that changes: node states, live limits, envelope plans.

:class:`SiteOps` is mixed into :class:`~gpusched.serve.service.PlacementService`: each
operation validates its body, runs the engine's site method under the service lock,
journals what changed (one record kind per operation, see ``service.py``) and returns a
plain dict.  ``replay_site`` applies those records on restart.

Kubernetes gangs hit by a failure are handled here too, under the same lock and in the
same journal group as the failure: a gang is repaired in place (``Engine.repair``), its
pods bound on the lost nodes are unbooked (their node is gone, so is the pod) and the
replacement slots are open to the recreated pods, with a fresh deadline; a gang that
cannot be repaired is released, and the reply names its bound pods for the operator (or
the job controller) to delete.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import numpy as np

from .._engine_py import NODE_STATE_NAMES
from ..errors import (DomainError, GpuschedError, LimitError, RepairError, SnapshotError,
                      StalePlanError, UnknownJobError, UnknownNodeError, UnknownRowError)
from ..job import Placement
from .k8s.gangs import Reservation
from .k8s.wire import JOB_PREFIX
from .schemas import RequestError

if TYPE_CHECKING:
    from ..engine import Engine
    from .k8s import Extender

__all__ = ["SiteOps", "SITE_OPS", "replay_site", "PLANS_KEPT"]

SITE_OPS = frozenset({"drain", "fail", "restore", "repair", "set-limit", "reset-limits",
                      "envelope"})
"""Journal ops of a site that changes (wire format 1.2)."""

PLANS_KEPT = 8
"""Envelope plans the service keeps for ``apply``; an older id is refused as stale."""



def _site_error(exc: GpuschedError) -> RequestError:
    """A 4xx for an engine site error, naming the request field."""
    field = None if exc.field is None else f"body.{exc.field}"
    if isinstance(exc, (UnknownNodeError, DomainError, UnknownRowError, UnknownJobError)):
        status, code = 404, {UnknownNodeError: "unknown-node", DomainError: "unknown-domain",
                             UnknownRowError: "unknown-row",
                             UnknownJobError: "unknown-job"}[type(exc)]
    elif isinstance(exc, RepairError):
        status, code = 409, "not-degraded"
    elif isinstance(exc, StalePlanError):
        status, code = 409, "stale-plan"
    elif isinstance(exc, LimitError):
        status, code = 422, "bad-limit"
    else:
        status, code = 422, None
    return RequestError(status, str(exc), field, code=code)


def replay_site(entry: dict[str, Any], engine: "Engine", gangs: "Extender") -> None:
    """Apply one site record of the journal (``service.py`` lists them)."""
    op = entry["op"]
    if op == "drain":
        engine.drain(entry["nodes"])
    elif op == "fail":
        engine.fail(entry["nodes"])
        for sub in entry.get("gangs", ()):   # the gangs it hit: repaired or released
            if sub["op"] == "release":
                engine.release(sub["job_id"])
                gangs.forget_job(sub["job_id"])
            else:
                replay_site(sub, engine, gangs)
    elif op == "restore":
        engine.restore_nodes(entry["nodes"])
    elif op == "repair":
        placement = engine.repair(entry["job_id"])
        if placement is None or list(placement.nodes) != entry["nodes"] \
                or placement.cap_w != entry["cap_w"]:
            raise SnapshotError(f"repair of {entry['job_id']!r} replays to {placement}, not to "
                             f"the journaled nodes {entry['nodes']} at {entry['cap_w']} W")
        if entry.get("gang") is not None:
            gangs.restore_one(entry["gang"])
    elif op == "set-limit":
        engine.set_limit(entry["row"], entry["watts"])
    elif op == "reset-limits":
        engine.reset_limits()
    elif op == "envelope":
        for job_id in entry["evict"]:
            engine.release(job_id)
            gangs.forget_job(job_id)
        for job_id, cap in entry["caps"].items():
            engine.set_cap(job_id, cap)


class SiteOps:
    """The site operations of the placement service (see the module docstring)."""

    if TYPE_CHECKING:
        engine: Engine
        gangs: Extender
        lock: Any
        _plans: dict[str, Any]
        journal: Any

        def check(self, schema_name: str, body: Any) -> None: ...
        def record(self, entry: dict[str, Any]) -> int: ...

    # ---- reads ------------------------------------------------------------------------

    def node_report(self) -> dict[str, Any]:
        """Counts by state, the names of the nodes not up, and the degraded jobs."""
        with self.lock:
            codes = self.engine.node_states()
            degraded = self.engine.degraded()
        names = self.engine.cluster.node_names
        counts = np.bincount(codes.astype(np.int64), minlength=len(NODE_STATE_NAMES))
        nodes = {NODE_STATE_NAMES[s]: np.flatnonzero(codes == s).tolist()
                 for s in range(1, len(NODE_STATE_NAMES))}
        return {"counts": {NODE_STATE_NAMES[s]: int(counts[s])
                           for s in range(len(NODE_STATE_NAMES))},
                "nodes": nodes,
                "node_names": {k: [names[n] for n in v] for k, v in nodes.items()},
                "degraded": {job_id: [names[n] for n in lost]
                             for job_id, lost in degraded.items()}}

    def violations(self) -> dict[str, Any]:
        """The rows over their live limits, and every limit changed from the spec's."""
        with self.lock:
            over = self.engine.violations()
            changed = self.engine.changed_limits()
        return {"violations": [{"row": r, "load_w": load, "limit_w": limit}
                               for r, load, limit in over],
                "changed_limits": changed}

    # ---- node states --------------------------------------------------------------------

    def _nodes_op(self, body: Any, op: str, schema: str, key: str
                  ) -> tuple[dict[str, Any], int]:
        self.check(schema, body)
        names = self.engine.cluster.node_names
        domain = body.get("domain") if key == "domain" else None
        with self.lock:
            try:
                nodes = (self.engine._domain_nodes(domain) if key == "domain"
                         else self.engine._node_list(body["nodes"]))
            except GpuschedError as exc:
                raise _site_error(exc) from None
            before = self.engine.node_states().copy()
            hit: list[str] = []
            if op == "drain":
                self.engine.drain(nodes)
            elif op == "fail":
                hit = self.engine.fail(nodes)
            else:
                self.engine.restore_nodes(nodes)
            after = self.engine.node_states()
            changed = [n for n in nodes if before[n] != after[n]]
            gangs: dict[str, Any] = {}
            repairs: list[dict[str, Any]] = []
            for job_id in hit:
                if job_id.startswith(JOB_PREFIX) and \
                        job_id[len(JOB_PREFIX):] in self.gangs.reservations:
                    outcome, sub = self._repair_gang(job_id)
                    gangs[job_id[len(JOB_PREFIX):]] = outcome
                    repairs.append(sub)
            seq = 0
            if changed:
                # one record for the failure and what it did to gangs: a failed append
                # then undoes all of it, never leaving a failure without its repairs
                entry: dict[str, Any] = {"op": op, "nodes": changed}
                if domain is not None:
                    entry["domain"] = domain
                if repairs:
                    entry["gangs"] = repairs
                seq = self.record(entry)
        reply = {"changed": [names[n] for n in changed], "unchanged": len(nodes) - len(changed),
                 "jobs_hit": hit, "gangs": gangs}
        return reply, seq

    def drain(self, body: Any) -> tuple[dict[str, Any], int]:
        return self._nodes_op(body, "drain", "NodesRequest", "nodes")

    def fail(self, body: Any) -> tuple[dict[str, Any], int]:
        return self._nodes_op(body, "fail", "NodesRequest", "nodes")

    def restore(self, body: Any) -> tuple[dict[str, Any], int]:
        return self._nodes_op(body, "restore", "NodesRequest", "nodes")

    def fail_domain(self, body: Any) -> tuple[dict[str, Any], int]:
        return self._nodes_op(body, "fail", "DomainRequest", "domain")

    def restore_domain(self, body: Any) -> tuple[dict[str, Any], int]:
        return self._nodes_op(body, "restore", "DomainRequest", "domain")

    # ---- repair -------------------------------------------------------------------------

    def _placement_reply(self, placement: Placement) -> dict[str, Any]:
        names = self.engine.cluster.node_names
        return {**placement.to_dict(), "node_names": [names[n] for n in placement.nodes]}

    def repair(self, body: Any) -> tuple[dict[str, Any], int]:
        self.check("RepairRequest", body)
        job_id = body["job_id"]
        with self.lock:
            if job_id.startswith(JOB_PREFIX) and \
                    job_id[len(JOB_PREFIX):] in self.gangs.reservations:
                try:
                    self.engine._degraded_job(job_id)
                except GpuschedError as exc:
                    raise _site_error(exc) from None
                outcome, sub = self._repair_gang(job_id)
                seq = self.record(sub)
                placement = (self.engine.placement(job_id) if outcome["repaired"]
                             else None)
                return {"repaired": outcome["repaired"],
                        "placement": None if placement is None
                        else self._placement_reply(placement),
                        "explanation": outcome.get("why"), "gang": outcome}, seq
            try:
                why = self.engine.explain_repair(job_id)
                placement = self.engine.repair(job_id)
            except GpuschedError as exc:
                raise _site_error(exc) from None
            if placement is None:
                return {"repaired": False, "placement": None,
                        "explanation": why.message, "gang": None}, 0
            seq = self.record({"op": "repair", "job_id": job_id,
                               "nodes": list(placement.nodes), "cap_w": placement.cap_w})
        return {"repaired": True, "placement": self._placement_reply(placement),
                "explanation": None, "gang": None}, seq

    def _repair_gang(self, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Repair a Kubernetes gang hit by a failure, or release it (caller has the lock);
        returns the reply's part and the journal entry, which the caller writes.

        Repaired: the reservation's slots on lost nodes move to the new nodes, the pods
        bound on lost nodes are unbooked (they ran on a node that is gone) and the gang
        is open again, with a full timeout, for the pods that replace them.  Not
        repairable: the reservation and its job are released; the pods it had bound are
        named in the reply (``evict_pods``) for whoever deletes them.
        """
        gang = job_id[len(JOB_PREFIX):]
        old = self.gangs.reservations[gang]
        names = self.engine.cluster.node_names
        lost = {names[n] for n in self.engine.lost_nodes(job_id)}
        why = self.engine.explain_repair(job_id)
        placement = self.engine.repair(job_id)
        if placement is None:
            pods = sorted(old.bound)
            self.engine.release(job_id)
            self.gangs.forget_job(job_id)
            return {"repaired": False, "released": True, "evict_pods": pods,
                    "why": why.message}, {"op": "release", "job_id": job_id}
        per_node = old.gpus_per_pod and placement.gpus_per_node // old.gpus_per_pod
        slots = {names[n]: old.slots.get(names[n], per_node) for n in placement.nodes}
        bound = {pod: node for pod, node in old.bound.items() if node not in lost}
        dropped = sorted(set(old.bound) - set(bound))
        new = Reservation(gang, job_id, old.size, old.gpus_per_pod, placement.cap_w, slots,
                          bound=bound, deadline=(old.deadline if not dropped
                                                 else self.gangs.clock()
                                                 + self.gangs.timeout_s),
                          complete=len(bound) >= old.size)
        meta = {**new.meta(), "bound": dict(new.bound), "complete": new.complete}
        self.gangs.forget_job(job_id)
        self.gangs.restore_one(meta)
        return ({"repaired": True, "released": False, "unbound_pods": dropped,
                 "new_nodes": sorted(set(slots) - set(old.slots))},
                {"op": "repair", "job_id": job_id, "nodes": list(placement.nodes),
                 "cap_w": placement.cap_w, "gang": meta})

    # ---- live limits --------------------------------------------------------------------

    def set_limit(self, body: Any) -> tuple[dict[str, Any], int]:
        self.check("SetLimitRequest", body)
        row, watts = body["row"], body["watts"]
        with self.lock:
            try:
                before = self.engine.set_limit(row, watts)
            except GpuschedError as exc:
                raise _site_error(exc) from None
            name = self.engine.cluster.constraints.names[self.engine._row_index(row)]
            seq = self.record({"op": "set-limit", "row": name, "watts": watts})
            over = [v for v in self.engine.violations() if v[0] == name]
        return {"row": name, "limit_w": watts, "before_w": before,
                "over": bool(over)}, seq

    def reset_limits(self, body: Any) -> tuple[dict[str, Any], int]:
        self.check("EmptyRequest", body)
        with self.lock:
            changed = self.engine.changed_limits()
            if not changed:
                return {"reset": []}, 0
            self.engine.reset_limits()
            seq = self.record({"op": "reset-limits"})
        return {"reset": sorted(changed)}, seq

    # ---- envelope plans -----------------------------------------------------------------

    def plan(self, body: Any) -> dict[str, Any]:
        """An envelope plan back under every live limit, kept under ``plan_id``."""
        self.check("EmptyRequest", body)
        from ..plan.envelope import plan_envelope   # scipy: not on the place path
        plan = plan_envelope(self.engine)
        # random, not counted: an id from before a restart never names a later plan
        plan_id = f"plan-{secrets.token_hex(8)}"
        with self.lock:
            self._plans[plan_id] = plan
            while len(self._plans) > PLANS_KEPT:
                del self._plans[next(iter(self._plans))]
        return {"plan_id": plan_id, "status": plan.status, "caps": dict(plan.caps),
                "evict": list(plan.evict),
                "over": [{"row": r, "load_w": load, "limit_w": limit}
                         for r, load, limit in plan.over],
                "gpus_evicted": plan.gpus_evicted,
                "throughput_lost": plan.throughput_lost,
                "solve_time_s": plan.solve_time_s}

    def apply_plan(self, body: Any) -> tuple[dict[str, Any], int]:
        """Apply a kept plan; 409 ``stale-plan`` if the state changed or the id is gone."""
        self.check("ApplyPlanRequest", body)
        plan_id = body["plan_id"]
        with self.lock:
            plan = self._plans.get(plan_id)
            if plan is None:
                raise RequestError(409, f"no envelope plan {plan_id!r} is kept (ids are "
                                        f"kept for the last {PLANS_KEPT} plans and not "
                                        "across a restart); fetch a new one with "
                                        "POST /v1/site/plan", "body.plan_id",
                                   code="stale-plan")
            try:
                done = self.engine.apply_envelope(plan)
            except StalePlanError as exc:
                raise RequestError(409, str(exc), "body.plan_id", code="stale-plan") from None
            del self._plans[plan_id]
            for placement in done["evicted"]:
                self.gangs.forget_job(placement.job_id)
            caps = {job_id: p.cap_w for job_id, p in done["caps"].items()}
            evicted = [p.job_id for p in done["evicted"]]
            seq = 0
            if evicted or caps:
                seq = self.record({"op": "envelope", "evict": evicted, "caps": caps})
            over = self.engine.violations()
        return {"plan_id": plan_id, "evicted": evicted, "caps": caps,
                "violations": [{"row": r, "load_w": load, "limit_w": limit}
                               for r, load, limit in over]}, seq

