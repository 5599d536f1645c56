"""The extender verbs: filter, prioritize and bind, over a ``GangBook``."""

from __future__ import annotations

from typing import Any

from ..._engine_py import NODE_STATE_NAMES, UP
from ...errors import GpuschedError
from ...job import Job
from ..schemas import RawJSON, RequestError, render_json
from .gangs import GangBook, Reservation
from .wire import GANG_SIZE, GPU_RESOURCE, JOB_PREFIX, MAX_EXTENDER_PRIORITY, PodError, PodInfo, get, parse_pod

__all__ = ["Extender"]


def _all_strings(names: list[Any]) -> bool:
    """Whether every item is a str, in C: str.join refuses anything else (12,544 names in
    about 50 us, against about 1 ms for a Python-level type test of each)."""
    try:
        "".join(names)
    except TypeError:
        return False
    return True


_REFUSED_KEPT = 8
"""Gangs whose refusal of the nodes outside their reservation is kept rendered."""


class _Refused:
    """``FailedNodes`` for the offered nodes outside a reservation, rendered once.

    ``offered`` holds the reserved nodes among the candidates: each call adds their
    entries (a full node) to ``fragment`` and leaves out the ones that pass.
    """

    def __init__(self, reservation: Reservation, candidates: list[str],
                 node_index: dict[str, int]) -> None:
        self.reservation = reservation
        self.candidates = candidates
        failed = dict.fromkeys(candidates, f"gpusched: not reserved for gang "
                                           f"{reservation.gang!r} "
                                           f"({len(reservation.slots)} node(s) are)")
        if not failed.keys() <= node_index.keys():  # a C-speed test, no copy
            for name in failed.keys() - node_index.keys():
                failed[name] = "gpusched: not a node of the gpusched cluster"
        self.offered = reservation.slots.keys() & failed.keys()
        for name in self.offered:
            del failed[name]
        self.fragment = render_json(failed)[1:-1]   # the members, without the braces

    def with_reserved(self, failed_here: dict[str, str]) -> RawJSON:
        # bytes.join, not %-formatting: it copies the megabyte once, about 6x faster
        if not failed_here:
            return RawJSON(b"".join((b"{", self.fragment, b"}")))
        here = render_json(failed_here)[1:-1]
        return RawJSON(b"".join((b"{", self.fragment, b"," if self.fragment else b"", here,
                                 b"}")))

    def loads(self) -> dict[str, str]:
        failed: dict[str, str] = RawJSON(b"".join((b"{", self.fragment, b"}"))).loads()
        return failed


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
        if isinstance(names, list) and _all_strings(names):
            return names, None
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

    def _reserve(self, pod: PodInfo, candidates: list[str]
                 ) -> tuple[Reservation | None, str, int]:
        """The gang's reservation, made now if needed; (None, why) if it cannot be.

        A new reservation lies within ``candidates``, the nodes kube-scheduler found
        feasible for the pod (its own filters: taints, cordons, selectors).
        """
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
            allowed = self._allowed(candidates)
            if allowed is not None and not allowed.issuperset(placement.nodes):
                # Not journaled yet: undo in memory, then search the offered nodes only.
                self.engine.release(job.id)
                placement = self._place_within(job, allowed)
                if placement is None:
                    return None, (f"no placement of {total} GPUs within the "
                                  f"{len(allowed)} node(s) kube-scheduler offered (the "
                                  "site has room elsewhere)"), 0
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

    def _allowed(self, candidates: list[str]) -> set[int] | None:
        """Engine indices of the offered nodes; None when every node is offered."""
        index = self.node_index
        offered = {index[name] for name in set(candidates) if name in index}
        return None if len(offered) == self.cluster.num_nodes else offered

    def _place_within(self, job: Job, allowed: set[int]) -> Any:
        """Place ``job`` on offered nodes only, or return None.

        The engine searches the whole site; this is the fallback for a reservation it put
        on a node kube-scheduler did not offer.  Per pod of the topology (most eligible
        nodes first), the nodes with room are taken rack by rack (fullest racks first, so
        the gang spans few), and the highest cap in the job's range that keeps every row
        of A·P <= b is found by bisection with ``place_on`` (checked and atomic: a refused
        try changes nothing).
        """
        cluster = self.cluster
        G = cluster.gpus_per_node
        need = min(job.gpus, G)
        count = max(1, job.gpus // G)
        free = self.engine.node_free_gpus()
        eligible = sorted(n for n in allowed if free[n] >= need)
        by_pod: dict[int, dict[int, list[int]]] = {}
        node_pod, node_rack = cluster.node_pod, cluster.node_rack
        for n in eligible:
            by_pod.setdefault(int(node_pod[n]), {}).setdefault(int(node_rack[n]), []).append(n)
        pods = sorted(by_pod.values(), key=lambda racks: -sum(map(len, racks.values())))
        for racks in pods:
            if sum(map(len, racks.values())) < count:
                continue
            chosen: list[int] = []
            for rack_nodes in sorted(racks.values(), key=len, reverse=True):
                chosen.extend(rack_nodes[:count - len(chosen)])
                if len(chosen) == count:
                    break
            nodes = sorted(chosen)
            best = None
            low, high = job.min_cap_w, job.max_cap_w
            while low <= high:   # the highest cap that fits: fewer watts never break a row
                cap_w = (low + high + 1) // 2
                try:
                    self.engine.place_on(job, nodes, cap_w)
                except GpuschedError:
                    high = cap_w - 1
                    continue
                self.engine.release(job.id)
                best, low = cap_w, cap_w + 1
            if best is not None:
                return self.engine.place_on(job, nodes, best)
        return None

    def _refused(self, reservation: Reservation, candidates: list[str]) -> "_Refused":
        """The gang's answer for the offered nodes outside its reservation, cached.

        kube-scheduler offers the same nodes to each pod of a gang while nothing else
        changes, so the answer is kept per gang: comparing the new list with the kept
        one is a C loop without hashing, where building the answer hashes 12,544
        names.
        """
        cached = self._refused_by_gang.get(reservation.gang)
        if (cached is not None and cached.reservation is reservation
                and cached.candidates == candidates):
            return cached
        refused = _Refused(reservation, candidates, self.node_index)
        self._refused_by_gang.pop(reservation.gang, None)
        self._refused_by_gang[reservation.gang] = refused
        while len(self._refused_by_gang) > _REFUSED_KEPT:  # memory: about 2 MB each
            del self._refused_by_gang[next(iter(self._refused_by_gang))]
        return refused

    def _not_up(self, names: Any) -> dict[str, str]:
        """The reason each of ``names`` (the gang's nodes: few) is refused for not being
        up; the nodes that are up are left out."""
        codes = self.engine.node_states()
        index = self.node_index
        out = {}
        for name in names:
            code = int(codes[index[name]])
            if code != UP:
                out[name] = (f"gpusched: node {name} is {NODE_STATE_NAMES[code]}: no "
                             "pod is offered a node that is not up")
        return out

    def filter(self, args: Any) -> tuple[dict[str, Any], int]:
        """The filter verb: an ExtenderFilterResult.

        Built for kube-scheduler's ``nodeCacheCapable`` calls, which name every feasible
        node of the site each time (12,544 on colossus-100k): the answer for the nodes
        outside the gang's reservation is rendered once per gang and candidate list
        (``_Refused``); per call, the work that grows with the candidates is one C-speed
        list comparison, and the Python loops run over the gang's reserved nodes only.
        """
        raw_pod = self._pod_arg(args)
        candidates, node_objects = self._candidates(args)

        def result(passed: list[str], failed: dict[str, str], error: str = ""
                   ) -> dict[str, Any]:
            out: dict[str, Any] = {"Nodes": None, "NodeNames": None, "FailedNodes": failed,
                                   "FailedAndUnresolvableNodes": {}, "Error": error}
            if node_objects is not None:
                keep = set(passed)
                out["Nodes"] = {"metadata": {}, "items": [
                    item for item, name in zip(node_objects, candidates) if name in keep]}
            else:
                out["NodeNames"] = passed
            return out

        try:
            pod = parse_pod(raw_pod)
        except PodError as exc:
            return result([], {}, f"gpusched: {exc}"), 0
        if pod.gpus == 0:
            # Not a GPU pod: gpusched has no say (use managedResources to skip the call).
            return result(list(candidates), {}), 0
        with self.lock:
            seq = self.expire()
            reservation, why, reserve_seq = self._reserve(pod, candidates)
            seq = max(seq, reserve_seq)
            if reservation is None:
                return result([], dict.fromkeys(candidates, f"gpusched: {why}")), seq
            self._pod_gang[pod.key] = pod.gang
            already = reservation.bound.get(pod.key)
            if already is not None:
                failed = dict.fromkeys(candidates, f"gpusched: pod is already bound to "
                                                   f"{already}")
                if not failed.keys() <= self.node_index.keys():  # a C-speed test, no copy
                    for name in failed.keys() - self.node_index.keys():
                        failed[name] = "gpusched: not a node of the gpusched cluster"
                passed = [already] if failed.pop(already, None) is not None else []
                return result(passed, failed), seq
            refused = self._refused(reservation, candidates)
            passing = reservation.open_nodes & refused.offered
            full = f"gpusched: gang {pod.gang!r} has no free slot here"
            failed_here = dict.fromkeys(refused.offered - passing, full)
            # a reserved node that went draining or down (site.py repairs a gang hit by
            # a failure, but a drained node keeps its jobs) is never offered
            for name, why in self._not_up(passing).items():
                passing.discard(name)
                failed_here[name] = why
            # in the reservation's node order (kube-scheduler reads them as a set)
            passed = [name for name in reservation.slots if name in passing]
        if node_objects is None:
            # every node kube-scheduler offered, but the gang's, keeps the answer it had
            # for the gang's previous pod: spliced in as rendered then
            out = result(passed, {})
            out["FailedNodes"] = refused.with_reserved(failed_here)
            return out, seq
        failed = refused.loads()
        failed.update(failed_here)
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
            best = reservation.open_nodes if reservation is not None else set()
            if best:   # a draining or down node scores lowest, with the unreserved ones
                best = best - self._not_up(best).keys()
        return [{"Host": name, "Score": MAX_EXTENDER_PRIORITY if name in best else 0}
                for name in candidates]

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
        """The bind verb: book the pod's slot (and bind through ``binder`` if set).

        For a caller that does not wait for the journal in between; the HTTP app runs
        ``book``, waits for its record's fsync, and only then ``finish_bind``, so that a
        Binding in the API server is never ahead of the journal.
        """
        reply, seq = self.book(args)
        if "_bind" in reply:
            reply, later = self.finish_bind(reply)
            seq = max(seq, later)
        return reply, seq

    def book(self, args: Any) -> tuple[dict[str, Any], int]:
        """The bind verb's first step: book the slot, journaled.

        With a binder, the reply carries ``_bind``: the Binding that ``finish_bind``
        must still create, once the booking is durable.  A retried bind of a booked pod
        (kube-scheduler's retry after a crash, which may have come before the Binding was
        made) creates the Binding again.
        """
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
            retry = reservation.bound.get(pod_key) == node
            if not retry:
                if pod_key in reservation.bound:
                    return {"Error": f"gpusched: pod {pod_key} is already bound to "
                                     f"{reservation.bound[pod_key]}"}, seq
                if reservation.free_slots(node) <= 0:
                    return {"Error": f"gpusched: node {node} has no free slot of gang "
                                     f"{reservation.gang!r}"}, seq
                reservation.book(pod_key, node)
                if uid is not None:
                    self._pod_uid[str(uid)] = pod_key   # for the preempt verb's UIDs
                seq = self.record({"op": "bind", "gang": reservation.gang,
                                   "pod": pod_key, "node": node})
        reply: dict[str, Any] = {"Error": ""}
        if self.binder is not None:
            reply["_bind"] = (fields["PodNamespace"], fields["PodName"],
                              str(uid) if uid is not None else "", node, reservation.gang,
                              pod_key, retry)
        return reply, seq

    def finish_bind(self, booked: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The bind verb's second step: create the Binding in the API server.

        If the API server says no, the slot is freed again (journaled) — except on a
        retry, where the pod may already run there from before a crash: its slot stays
        booked, and the error is reported.
        """
        pending = booked.pop("_bind", None)
        if pending is None or self.binder is None:
            return booked, 0
        namespace, name, uid, node, gang, pod_key, retry = pending
        seq = 0
        try:
            self.binder(namespace, name, uid, node)
        except Exception as exc:  # the API server said no: free the slot again
            if not retry:
                with self.lock:
                    # The reservation may have expired (or been cut to its bound pods)
                    # while the call was out: unbind from what holds the pod now, and
                    # journal nothing if nothing does, so the journal always replays.
                    current = self.reservations.get(gang)
                    if current is not None and current.bound.get(pod_key) == node:
                        current.unbook(pod_key)
                        seq = self.record({"op": "unbind", "gang": current.gang,
                                           "pod": pod_key})
            return {"Error": f"gpusched: binding {pod_key} to {node} failed: {exc}"}, seq
        return {"Error": ""}, seq
