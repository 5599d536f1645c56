"""The extender verbs: filter, prioritize and bind, over a ``GangBook``."""

from __future__ import annotations

from typing import Any

from ...errors import GpuschedError
from ...job import Job
from ..schemas import RequestError
from .gangs import GangBook, Reservation
from .wire import GANG_SIZE, GPU_RESOURCE, JOB_PREFIX, MAX_EXTENDER_PRIORITY, PodError, PodInfo, get, parse_pod

__all__ = ["Extender"]


class Extender(GangBook):
    """A ``GangBook`` that answers kube-scheduler's filter, prioritize, bind and preempt
    verbs."""

    #: pod UID -> pod key, learnt at bind (kube-scheduler's MetaVictims name pods by UID)
    _pod_uid: dict[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pod_uid = {}

    def _candidates(self, args: dict[str, Any]) -> tuple[list[str], list[Any] | None]:
        """Candidate node names, and the v1.Node objects when they were sent."""
        names = get(args, "NodeNames")
        nodes = get(args, "Nodes")
        if isinstance(nodes, dict):
            items = get(nodes, "items")
            if not isinstance(items, list):
                raise RequestError(422, "Nodes.items must be a list of v1.Node",
                                   "body.Nodes.items")
            out = []
            for i, item in enumerate(items):
                name = get(get(item, "metadata"), "name")
                if not isinstance(name, str):
                    raise RequestError(422, "every node needs metadata.name",
                                       f"body.Nodes.items[{i}].metadata.name")
                out.append(name)
            return out, items
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return list(names), None
        if names is None and nodes is None:
            return [], None
        raise RequestError(422, "NodeNames must be a list of strings or Nodes a v1.NodeList",
                           "body.NodeNames")

    @staticmethod
    def _pod_arg(args: Any) -> Any:
        if not isinstance(args, dict):
            raise RequestError(422, "ExtenderArgs must be an object", "body")
        pod = get(args, "Pod")
        if not isinstance(pod, dict):
            raise RequestError(422, "is required (the v1.Pod being scheduled)", "body.Pod")
        return pod

    def _reserve(self, pod: PodInfo) -> tuple[Reservation | None, str, int]:
        """The gang's reservation, made now if needed; (None, why) if it cannot be."""
        reservation = self.reservations.get(pod.gang)
        if reservation is not None:
            if pod.key in reservation.bound:
                return reservation, "", 0
            if reservation.complete:
                return None, (f"gang {pod.gang!r} is complete with "
                              f"{len(reservation.bound)} bound pod(s) and no free slot "
                              "(its reservation expired before all pods were bound, or "
                              f"pod {pod.key} is one too many)"), 0
            if pod.size != reservation.size:
                return None, (f"annotation {GANG_SIZE}={pod.size} differs from the "
                              f"{reservation.size} the gang {pod.gang!r} was reserved with"), 0
            if pod.gpus != reservation.gpus_per_pod:
                return None, (f"pod asks for {pod.gpus} GPUs but gang {pod.gang!r} was "
                              f"reserved for {reservation.gpus_per_pod} per pod"), 0
            return reservation, "", 0
        G = self.cluster.gpus_per_node
        total = pod.gpus * pod.size
        if pod.gpus > G:
            return None, f"a pod can have at most {G} GPUs (one node), got {pod.gpus}", 0
        if total > G and G % pod.gpus:
            return None, (f"a gang over one node needs GPUs per pod dividing {G}, got "
                          f"{pod.gpus}"), 0
        if total > G and total % G:
            return None, (f"a gang over more than one node takes whole nodes: annotation "
                          f"{GANG_SIZE}={pod.size} pods x {pod.gpus} {GPU_RESOURCE} per pod = "
                          f"{total} GPUs must be a multiple of {G}"), 0
        max_cap = pod.max_cap_w if pod.max_cap_w is not None else \
            self.cluster.power.cap_max_w
        try:
            job = Job(JOB_PREFIX + pod.gang, total, max_cap_w=max_cap,
                      min_cap_w=pod.min_cap_w, priority=pod.priority,
                      preemptible=pod.preemptible)
            placement = self.engine.place(job)
            if placement is None:
                return None, self.engine.explain(job).message, 0
        except GpuschedError as exc:
            return None, str(exc), 0
        names = self.cluster.node_names
        per_node = placement.gpus_per_node // pod.gpus
        reservation = Reservation(pod.gang, job.id, pod.size, pod.gpus, placement.cap_w,
                                  {names[n]: per_node for n in placement.nodes},
                                  deadline=self.clock() + self.timeout_s)
        self.reservations[pod.gang] = reservation
        seq = self.record({"op": "place", "job": job.to_dict(), "nodes": list(placement.nodes),
                           "gpus_per_node": placement.gpus_per_node,
                           "cap_w": placement.cap_w, "gang": reservation.meta()})
        return reservation, "", seq

    def filter(self, args: Any) -> tuple[dict[str, Any], int]:
        """The filter verb: an ExtenderFilterResult."""
        raw_pod = self._pod_arg(args)
        candidates, node_objects = self._candidates(args)
        known = set(self.cluster.node_names)

        def result(passed: list[str], failed: dict[str, str], error: str = ""
                   ) -> dict[str, Any]:
            keep = set(passed)
            out: dict[str, Any] = {"Nodes": None, "NodeNames": None, "FailedNodes": failed,
                                   "FailedAndUnresolvableNodes": {}, "Error": error}
            if node_objects is not None:
                out["Nodes"] = {"metadata": {}, "items": [
                    item for item, name in zip(node_objects, candidates) if name in keep]}
            else:
                out["NodeNames"] = [n for n in candidates if n in keep]
            return out

        try:
            pod = parse_pod(raw_pod)
        except PodError as exc:
            return result([], {}, f"gpusched: {exc}"), 0
        if pod.gpus == 0:
            # Not a GPU pod: gpusched has no say (use managedResources to skip the call).
            return result(candidates, {}), 0
        with self.lock:
            seq = self.expire()
            reservation, why, reserve_seq = self._reserve(pod)
            seq = max(seq, reserve_seq)
            if reservation is None:
                return result([], {n: f"gpusched: {why}" for n in candidates}), seq
            self._pod_gang[pod.key] = pod.gang
            passed: list[str] = []
            failed: dict[str, str] = {}
            already = reservation.bound.get(pod.key)
            for name in candidates:
                if name not in known:
                    failed[name] = "gpusched: not a node of the gpusched cluster"
                elif already is not None:
                    if name == already:
                        passed.append(name)
                    else:
                        failed[name] = f"gpusched: pod is already bound to {already}"
                elif name not in reservation.slots:
                    failed[name] = (f"gpusched: not reserved for gang {pod.gang!r} "
                                    f"({len(reservation.slots)} node(s) are)")
                elif reservation.free_slots(name) <= 0:
                    failed[name] = f"gpusched: gang {pod.gang!r} has no free slot here"
                else:
                    passed.append(name)
        return result(passed, failed), seq

    def prioritize(self, args: Any) -> list[dict[str, Any]]:
        """The prioritize verb: a HostPriorityList, 10 on the gang's free reserved slots."""
        raw_pod = self._pod_arg(args)
        candidates, _ = self._candidates(args)
        try:
            pod = parse_pod(raw_pod)
        except PodError:
            return [{"Host": n, "Score": 0} for n in candidates]
        with self.lock:
            reservation = self.reservations.get(pod.gang)
            scores = []
            for name in candidates:
                score = 0
                if reservation is not None and reservation.free_slots(name) > 0:
                    score = MAX_EXTENDER_PRIORITY
                scores.append({"Host": name, "Score": score})
        return scores

    def preempt(self, args: Any) -> dict[str, Any]:
        """The preempt verb: ExtenderPreemptionArgs in, ExtenderPreemptionResult out.

        kube-scheduler proposes, per candidate node, the pods it would evict
        (``NodeNameToVictims`` with whole v1.Pods, or ``NodeNameToMetaVictims`` with
        UIDs when the extender is ``nodeCacheCapable``).  gpusched answers from
        :func:`gpusched.plan.preempt.plan_preemption` for the pod's gang (priority from
        ``gpusched.io/priority`` or ``spec.priority``): it keeps only the candidate nodes
        the plan would place the gang on, and on each only the proposed pods of the
        gangs the plan evicts, so kube-scheduler evicts gpusched's choice.  No node is
        kept when no plan lets the gang in, or when the plan's victims include a gang
        with no proposed pod on those nodes (kube-scheduler could not evict it) -- a
        victim chosen for watts in another hall, say.  The reply is exactly the Go
        struct (its one key), so the reason is not sent; ``plan_preemption`` through
        the library says it.  Nothing is changed here: the gang is reserved by
        ``filter`` once its victims are released.
        """
        from ...errors import PreemptionError
        from ...plan.preempt import plan_preemption
        raw_pod = self._pod_arg(args)
        metas = get(args, "NodeNameToMetaVictims")
        fulls = get(args, "NodeNameToVictims")
        proposed: dict[str, list[tuple[str, str | None]]] = {}   # node -> [(uid, pod key)]
        pdb: dict[str, int] = {}
        for source, full in ((fulls, True), (metas, False)):
            if not isinstance(source, dict):
                continue
            for node, victims in source.items():
                pods = get(victims, "Pods") or []
                if not isinstance(pods, list):
                    raise RequestError(422, "Pods must be a list", f"body.{node}.Pods")
                entries = proposed.setdefault(node, [])
                for pod in pods:
                    if full:
                        meta = get(pod, "metadata") or {}
                        uid = get(meta, "uid")
                        key = f"{get(meta, 'namespace') or 'default'}/{get(meta, 'name')}"
                    else:
                        uid, key = get(pod, "UID"), None
                    if isinstance(uid, str):
                        entries.append((uid, key))
                violations = get(victims, "NumPDBViolations")
                pdb[node] = violations if isinstance(violations, int) else 0
        empty: dict[str, Any] = {"NodeNameToMetaVictims": {}}
        try:
            pod = parse_pod(raw_pod)
        except PodError as exc:
            return empty
        G = self.cluster.gpus_per_node
        total = pod.gpus * pod.size
        if pod.gpus == 0 or (total > G and total % G):
            return empty
        max_cap = pod.max_cap_w if pod.max_cap_w is not None else self.cluster.power.cap_max_w
        with self.lock:
            try:
                job = Job(JOB_PREFIX + pod.gang, total, max_cap_w=max_cap,
                          min_cap_w=pod.min_cap_w, priority=pod.priority,
                          preemptible=pod.preemptible)
                plan = plan_preemption(self.engine, job)
            except (PreemptionError, GpuschedError):
                return empty
            # the pods of each victim gang, by pod key; and UIDs seen at bind
            victim_pods: set[str] = set()
            for reservation in self.reservations.values():
                if reservation.job_id in plan.victims:
                    victim_pods.update(reservation.bound)
            uid_victim = {uid for uid, key in self._pod_uid.items() if key in victim_pods}
        names = self.cluster.node_names
        wanted = {names[n] for n in plan.placement.nodes}
        out: dict[str, Any] = {}
        covered: set[str] = set()
        for node, entries in proposed.items():
            if node not in wanted:
                continue
            chosen = [uid for uid, key in entries
                      if (key in victim_pods if key is not None else uid in uid_victim)]
            out[node] = {"Pods": [{"UID": uid} for uid in chosen],
                         "NumPDBViolations": pdb.get(node, 0)}
            covered.update(key for uid, key in entries if key in victim_pods)
            covered.update(self._pod_uid.get(uid, "") for uid in chosen)
        missing = [v for v in plan.victims if not any(
            self._pod_gang.get(key) == v[len(JOB_PREFIX):] for key in covered)]
        if missing or not out:
            return empty
        return {"NodeNameToMetaVictims": out}

    def bind(self, args: Any) -> tuple[dict[str, Any], int]:
        """The bind verb: book the pod's slot (and bind through ``binder`` if set)."""
        if not isinstance(args, dict):
            raise RequestError(422, "ExtenderBindingArgs must be an object", "body")
        fields = {}
        for key in ("PodName", "PodNamespace", "Node"):
            value = get(args, key)
            if not isinstance(value, str) or (not value and key != "PodNamespace"):
                raise RequestError(422, "is required (a string)", f"body.{key}")
            fields[key] = value
        uid = get(args, "PodUID")
        pod_key = f"{fields['PodNamespace'] or 'default'}/{fields['PodName']}"
        node = fields["Node"]
        with self.lock:
            seq = self.expire()
            gang = self._pod_gang.get(pod_key)
            reservation = self.reservations.get(gang) if gang else None
            if reservation is None:
                return {"Error": f"gpusched: pod {pod_key} has no gang reservation (it was "
                                 "not filtered by this extender, or its reservation "
                                 "expired); it will be retried"}, seq
            if reservation.bound.get(pod_key) == node:
                return {"Error": ""}, seq  # a retried bind: already done
            if pod_key in reservation.bound:
                return {"Error": f"gpusched: pod {pod_key} is already bound to "
                                 f"{reservation.bound[pod_key]}"}, seq
            if reservation.free_slots(node) <= 0:
                return {"Error": f"gpusched: node {node} has no free slot of gang "
                                 f"{reservation.gang!r}"}, seq
            reservation.bound[pod_key] = node
            if uid is not None:
                self._pod_uid[str(uid)] = pod_key   # for the preempt verb's UIDs
            reservation.complete = len(reservation.bound) >= reservation.size
            seq = self.record({"op": "bind", "gang": reservation.gang,
                                       "pod": pod_key, "node": node})
        if self.binder is not None:
            try:
                self.binder(fields["PodNamespace"], fields["PodName"],
                            str(uid) if uid is not None else "", node)
            except Exception as exc:  # the API server said no: free the slot again
                with self.lock:
                    # The reservation may have expired (or been cut to its bound pods)
                    # while the call was out: unbind from what holds the pod now, and
                    # journal nothing if nothing does, so the journal always replays.
                    current = self.reservations.get(reservation.gang)
                    if current is not None and current.bound.get(pod_key) == node:
                        del current.bound[pod_key]
                        current.complete = False
                        seq = self.record({"op": "unbind", "gang": current.gang,
                                           "pod": pod_key})
                return {"Error": f"gpusched: binding {pod_key} to {node} failed: {exc}"}, seq
        return {"Error": ""}, seq
