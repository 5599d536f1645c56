"""Kubernetes scheduler-extender front: filter, prioritize and bind, with gang reservations.

kube-scheduler calls an extender over HTTP with the types of
``k8s.io/kube-scheduler/extender/v1``.  Those Go structs carry no JSON tags, so on the
wire the keys are the Go field names: ``ExtenderArgs`` is ``{"Pod", "Nodes",
"NodeNames"}`` (``Nodes`` a v1.NodeList when the extender is not ``nodeCacheCapable``,
else ``NodeNames``); ``ExtenderFilterResult`` is ``{"Nodes", "NodeNames", "FailedNodes",
"FailedAndUnresolvableNodes", "Error"}``; ``HostPriorityList`` is ``[{"Host", "Score"}]``
with scores 0..10 (MaxExtenderPriority); ``ExtenderBindingArgs`` is ``{"PodName",
"PodNamespace", "PodUID", "Node"}`` and ``ExtenderBindingResult`` ``{"Error"}``.  Go's
decoder matches keys case-insensitively, so lower-case keys are accepted too.

Gangs (the contract, documented in the README):

* ``gpusched.io/gang-name``: the gang, unique in the pod's namespace.  A GPU pod without
  it is a gang of one.
* ``gpusched.io/gang-size``: the number of pods in the gang (not GPUs).
* GPUs per pod: the sum of the containers' ``nvidia.com/gpu`` limits (or requests).
  Every pod of a gang asks for the same number; when the gang spans more than one node
  it must divide the node's 8 GPUs, so whole nodes split evenly into pod slots.
* ``gpusched.io/max-cap-w`` and ``gpusched.io/min-cap-w`` (optional): the job's cap
  range in watts; without them the job is rigid at 700 W.

The first pod of a gang that reaches ``filter`` reserves nodes for the whole gang with
``Engine.place`` (job id ``k8s:<namespace>/<gang>``), journaled like any placement.  Every
pod of the gang is then filtered to the reserved nodes that still have a free pod slot,
and ``bind`` books a slot.  A reservation whose pods are not all bound within
``gang_timeout_s`` is released (HiveD's way of running gangs behind this protocol, so a
half-scheduled gang cannot hold GPUs forever).  A complete gang keeps its nodes until the
job is released (``POST /v1/release`` with its job id).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import GpuschedError
from ..job import Job
from .schemas import RequestError

if TYPE_CHECKING:
    from .service import PlacementService

__all__ = ["GangBook", "Reservation", "ApiServerBinder", "GANG_NAME", "GANG_SIZE", "MAX_CAP", "MIN_CAP",
           "GPU_RESOURCE", "MAX_EXTENDER_PRIORITY"]

GANG_NAME = "gpusched.io/gang-name"
GANG_SIZE = "gpusched.io/gang-size"
MAX_CAP = "gpusched.io/max-cap-w"
MIN_CAP = "gpusched.io/min-cap-w"
GPU_RESOURCE = "nvidia.com/gpu"
MAX_EXTENDER_PRIORITY = 10  # k8s.io/kube-scheduler/extender/v1 MaxExtenderPriority
JOB_PREFIX = "k8s:"


def _get(mapping: Any, key: str) -> Any:
    """``mapping[key]`` matched case-insensitively, as Go's encoding/json does."""
    if not isinstance(mapping, dict):
        return None
    if key in mapping:
        return mapping[key]
    lower = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == lower:
            return v
    return None


@dataclass
class PodInfo:
    """What the extender needs from a v1.Pod."""

    namespace: str
    name: str
    uid: str
    gpus: int
    gang: str            # "<namespace>/<gang name>"
    size: int            # pods in the gang
    max_cap_w: int | None
    min_cap_w: int | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class PodError(ValueError):
    """A pod whose annotations or resources the extender cannot schedule."""


def _quantity(value: Any, where: str) -> int:
    """A whole-number resource quantity (``8`` or ``"8"``); GPUs are not fractional."""
    if isinstance(value, bool):
        raise PodError(f"{where} must be a whole number, got {value!r}")
    if isinstance(value, int):
        count = value
    elif isinstance(value, str) and value.strip().isdigit():
        count = int(value.strip())
    else:
        raise PodError(f"{where} must be a whole number of GPUs, got {value!r}")
    if count < 0 or count > 1_000_000:
        raise PodError(f"{where} must be in 0..1000000, got {count}")
    return count


def parse_pod(pod: Any) -> PodInfo:
    """Read name, GPUs and gang annotations from a v1.Pod; PodError if they are unusable."""
    if not isinstance(pod, dict):
        raise PodError("Pod must be an object (a v1.Pod)")
    meta = _get(pod, "metadata") or {}
    if not isinstance(meta, dict):
        raise PodError("Pod.metadata must be an object")
    name = _get(meta, "name")
    namespace = _get(meta, "namespace") or "default"
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        raise PodError("Pod.metadata.name and .namespace must be non-empty strings")
    uid = _get(meta, "uid")
    annotations = _get(meta, "annotations") or {}
    if not isinstance(annotations, dict):
        raise PodError("Pod.metadata.annotations must be an object of strings")
    gpus = 0
    spec = _get(pod, "spec") or {}
    containers = _get(spec, "containers") if isinstance(spec, dict) else None
    for i, container in enumerate(containers if isinstance(containers, list) else []):
        resources = _get(container, "resources") or {}
        limits = _get(resources, "limits") or {}
        requests = _get(resources, "requests") or {}
        value = (limits if isinstance(limits, dict) else {}).get(GPU_RESOURCE)
        if value is None:
            value = (requests if isinstance(requests, dict) else {}).get(GPU_RESOURCE)
        if value is not None:
            gpus += _quantity(value, f"containers[{i}].resources {GPU_RESOURCE}")

    def annotation_int(key: str, lo: int, hi: int) -> int | None:
        raw = annotations.get(key)
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw.strip().isdigit() or not lo <= int(raw) <= hi:
            raise PodError(f"annotation {key}={raw!r} must be a whole number in {lo}..{hi}")
        return int(raw)

    gang_name = annotations.get(GANG_NAME)
    if gang_name is None:
        gang, size = f"{namespace}/{name}", 1
        if GANG_SIZE in annotations:
            raise PodError(f"annotation {GANG_SIZE} needs {GANG_NAME} as well")
    else:
        if not isinstance(gang_name, str) or not gang_name or len(gang_name) > 200:
            raise PodError(f"annotation {GANG_NAME} must be a name of 1..200 characters")
        given_size = annotation_int(GANG_SIZE, 1, 100_000)
        if given_size is None:
            raise PodError(f"annotation {GANG_SIZE} (pods in the gang) is required with "
                           f"{GANG_NAME}")
        size = given_size
        gang = f"{namespace}/{gang_name}"
    return PodInfo(namespace, name, str(uid) if uid is not None else "", gpus, gang, size,
                   annotation_int(MAX_CAP, 1, 100_000), annotation_int(MIN_CAP, 1, 100_000))


@dataclass
class Reservation:
    """Nodes held for a gang: pod slots per node, the pods bound so far, the deadline."""

    gang: str
    job_id: str
    size: int
    gpus_per_pod: int
    cap_w: int
    slots: dict[str, int]                 # node name -> pods it takes
    bound: dict[str, str] = field(default_factory=dict)   # pod key -> node name
    deadline: float = 0.0
    complete: bool = False

    def free_slots(self, node: str) -> int:
        used = sum(1 for n in self.bound.values() if n == node)
        return self.slots.get(node, 0) - used

    def meta(self) -> dict[str, Any]:
        """What the journal keeps (the deadline is re-armed on recovery)."""
        return {"gang": self.gang, "job_id": self.job_id, "size": self.size,
                "gpus_per_pod": self.gpus_per_pod, "cap_w": self.cap_w, "slots": self.slots}


class GangBook:
    """Gang reservations of one service; every method runs under the service lock.

    Parameters
    ----------
    service : PlacementService
    timeout_s : float
        Seconds a gang has, from its reservation, to bind all of its pods.
    clock : callable
        Monotonic seconds.
    binder : callable, optional
        ``binder(namespace, name, uid, node)`` creates the Binding in the API server;
        without one, ``bind`` only books the slot (and the deployment binds, e.g. with a
        second extender or a controller).  It is called outside the journal: a failure
        frees the slot again and is reported in ``ExtenderBindingResult.Error``.
    """

    def __init__(self, service: "PlacementService", *, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 binder: Callable[[str, str, str, str], None] | None = None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"gang timeout_s={timeout_s} must be > 0")
        self.service = service
        self.timeout_s = float(timeout_s)
        self.clock = clock
        self.binder = binder
        self.reservations: dict[str, Reservation] = {}
        self._pod_gang: dict[str, str] = {}   # pod key -> gang, learnt in filter

    def __len__(self) -> int:
        return len(self.reservations)

    # ---- persistence ----------------------------------------------------------------

    def dump(self) -> list[dict[str, Any]]:
        return [{**r.meta(), "bound": dict(r.bound), "complete": r.complete}
                for r in self.reservations.values()]

    def load(self, items: list[dict[str, Any]]) -> None:
        self.reservations.clear()
        for item in items:
            reservation = self.restore_one(item)
            reservation.bound = dict(item.get("bound", {}))
            reservation.complete = bool(item.get("complete", False))
            for pod in reservation.bound:
                self._pod_gang[pod] = reservation.gang

    def restore_one(self, meta: dict[str, Any]) -> Reservation:
        # A restart re-arms the deadline: the gang's pods get a full timeout to retry.
        reservation = Reservation(meta["gang"], meta["job_id"], meta["size"],
                                  meta["gpus_per_pod"], meta["cap_w"], dict(meta["slots"]),
                                  deadline=self.clock() + self.timeout_s)
        self.reservations[reservation.gang] = reservation
        return reservation

    def replay_bind(self, gang: str, pod: str, node: str) -> None:
        reservation = self.reservations[gang]
        reservation.bound[pod] = node
        reservation.complete = len(reservation.bound) >= reservation.size
        self._pod_gang[pod] = gang

    def replay_unbind(self, gang: str, pod: str) -> None:
        reservation = self.reservations[gang]
        reservation.bound.pop(pod, None)
        reservation.complete = False

    def forget_job(self, job_id: str) -> None:
        if job_id.startswith(JOB_PREFIX):
            reservation = self.reservations.pop(job_id[len(JOB_PREFIX):], None)
            if reservation is not None:
                for pod in reservation.bound:
                    self._pod_gang.pop(pod, None)

    # ---- expiry ---------------------------------------------------------------------

    def expire(self) -> int:
        """Release incomplete reservations past their deadline; return the last seq."""
        now = self.clock()
        seq = 0
        for gang, reservation in list(self.reservations.items()):
            if not reservation.complete and now > reservation.deadline:
                self.service.engine.release(reservation.job_id)
                seq = self.service.record({"op": "release", "job_id": reservation.job_id})
                self.forget_job(reservation.job_id)
        return seq

    def listing(self) -> dict[str, Any]:
        with self.service.lock:
            seq = self.expire()
            now = self.clock()
            gangs = [{**r.meta(), "bound": dict(r.bound), "complete": r.complete,
                      "expires_in_s": None if r.complete else round(r.deadline - now, 3)}
                     for r in self.reservations.values()]
        return {"gangs": gangs, "_seq": seq}

    # ---- the verbs ------------------------------------------------------------------

    def _candidates(self, args: dict[str, Any]) -> tuple[list[str], list[Any] | None]:
        """Candidate node names, and the v1.Node objects when they were sent."""
        names = _get(args, "NodeNames")
        nodes = _get(args, "Nodes")
        if isinstance(nodes, dict):
            items = _get(nodes, "items")
            if not isinstance(items, list):
                raise RequestError(422, "Nodes.items must be a list of v1.Node",
                                   "body.Nodes.items")
            out = []
            for i, item in enumerate(items):
                name = _get(_get(item, "metadata"), "name")
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
        pod = _get(args, "Pod")
        if not isinstance(pod, dict):
            raise RequestError(422, "is required (the v1.Pod being scheduled)", "body.Pod")
        return pod

    def _reserve(self, pod: PodInfo) -> tuple[Reservation | None, str, int]:
        """The gang's reservation, made now if needed; (None, why) if it cannot be."""
        reservation = self.reservations.get(pod.gang)
        if reservation is not None:
            if pod.gpus != reservation.gpus_per_pod:
                return None, (f"pod asks for {pod.gpus} GPUs but gang {pod.gang!r} was "
                              f"reserved for {reservation.gpus_per_pod} per pod"), 0
            return reservation, "", 0
        G = self.service.cluster.gpus_per_node
        total = pod.gpus * pod.size
        if pod.gpus > G:
            return None, f"a pod can have at most {G} GPUs (one node), got {pod.gpus}", 0
        if total > G and G % pod.gpus:
            return None, (f"a gang over one node needs GPUs per pod dividing {G}, got "
                          f"{pod.gpus}"), 0
        max_cap = pod.max_cap_w if pod.max_cap_w is not None else \
            self.service.cluster.power.cap_max_w
        try:
            job = Job(JOB_PREFIX + pod.gang, total, max_cap_w=max_cap,
                      min_cap_w=pod.min_cap_w)
            placement = self.service.engine.place(job)
            if placement is None:
                return None, self.service.engine.explain(job).message, 0
        except GpuschedError as exc:
            return None, str(exc), 0
        names = self.service.cluster.node_names
        per_node = placement.gpus_per_node // pod.gpus
        reservation = Reservation(pod.gang, job.id, pod.size, pod.gpus, placement.cap_w,
                                  {names[n]: per_node for n in placement.nodes},
                                  deadline=self.clock() + self.timeout_s)
        self.reservations[pod.gang] = reservation
        seq = self.service.record_place(job, placement, gang=reservation.meta())
        return reservation, "", seq

    def filter(self, args: Any) -> tuple[dict[str, Any], int]:
        """The filter verb: an ExtenderFilterResult."""
        raw_pod = self._pod_arg(args)
        candidates, node_objects = self._candidates(args)
        known = set(self.service.cluster.node_names)

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
        with self.service.lock:
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
        with self.service.lock:
            reservation = self.reservations.get(pod.gang)
            scores = []
            for name in candidates:
                score = 0
                if reservation is not None and reservation.free_slots(name) > 0:
                    score = MAX_EXTENDER_PRIORITY
                scores.append({"Host": name, "Score": score})
        return scores

    def bind(self, args: Any) -> tuple[dict[str, Any], int]:
        """The bind verb: book the pod's slot (and bind through ``binder`` if set)."""
        if not isinstance(args, dict):
            raise RequestError(422, "ExtenderBindingArgs must be an object", "body")
        fields = {}
        for key in ("PodName", "PodNamespace", "Node"):
            value = _get(args, key)
            if not isinstance(value, str) or (not value and key != "PodNamespace"):
                raise RequestError(422, "is required (a string)", f"body.{key}")
            fields[key] = value
        uid = _get(args, "PodUID")
        pod_key = f"{fields['PodNamespace'] or 'default'}/{fields['PodName']}"
        node = fields["Node"]
        with self.service.lock:
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
            reservation.complete = len(reservation.bound) >= reservation.size
            seq = self.service.record({"op": "bind", "gang": reservation.gang,
                                       "pod": pod_key, "node": node})
        if self.binder is not None:
            try:
                self.binder(fields["PodNamespace"], fields["PodName"],
                            str(uid) if uid is not None else "", node)
            except Exception as exc:  # the API server said no: free the slot again
                with self.service.lock:
                    if reservation.bound.get(pod_key) == node:
                        del reservation.bound[pod_key]
                        reservation.complete = False
                        seq = self.service.record({"op": "unbind", "gang": reservation.gang,
                                                   "pod": pod_key})
                return {"Error": f"gpusched: binding {pod_key} to {node} failed: {exc}"}, seq
        return {"Error": ""}, seq


class ApiServerBinder:
    """Create a pod's Binding in the Kubernetes API server (what ``bindVerb`` asks for).

    With ``bindVerb`` set, kube-scheduler leaves the binding to the extender, so the
    extender must POST a ``v1.Binding`` to ``/api/v1/namespaces/{ns}/pods/{pod}/binding``.

    Parameters
    ----------
    api_url : str
        The API server, e.g. ``https://kubernetes.default.svc``.
    token : str, optional
        Bearer token (a service account's, allowed to create ``pods/binding``).
    ca_file : str, optional
        CA bundle for the API server's certificate.
    timeout_s : float
    """

    TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    CA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

    def __init__(self, api_url: str, *, token: str | None = None, ca_file: str | None = None,
                 timeout_s: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.ca_file = ca_file
        self.timeout_s = timeout_s

    @classmethod
    def in_cluster(cls) -> "ApiServerBinder":
        """The binder a pod uses: service host from the environment, mounted credentials."""
        import os

        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise RuntimeError("KUBERNETES_SERVICE_HOST is not set: not running in a pod; "
                               "pass --kube-api URL instead")
        with open(cls.TOKEN_PATH, encoding="utf-8") as f:
            token = f.read().strip()
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token=token, ca_file=cls.CA_PATH)

    def __call__(self, namespace: str, name: str, uid: str, node: str) -> None:
        import json
        import ssl
        import urllib.error
        import urllib.parse
        import urllib.request

        namespace = namespace or "default"
        binding: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        if uid:
            binding["metadata"]["uid"] = uid
        url = (f"{self.api_url}/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}"
               f"/pods/{urllib.parse.quote(name, safe='')}/binding")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=json.dumps(binding).encode(),
                                         headers=headers, method="POST")
        context = (ssl.create_default_context(cafile=self.ca_file)
                   if url.startswith("https:") else None)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context):
                pass
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            raise RuntimeError(f"API server answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"API server unreachable: {exc}") from None
