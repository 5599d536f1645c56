"""Kubernetes scheduler-extender front: filter, prioritize and bind, with gang reservations.

The modules: ``wire`` (the JSON keys and pod annotations), ``gangs`` (reservations and
their bookkeeping), ``extender`` (the verbs), ``binder`` (Bindings in the API server).

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

* ``gpusched.io/gang-name``: the gang, unique in the pod's namespace (1..200 printable
  ASCII characters, no '/').  A GPU pod without it is a gang of one, keyed
  ``<namespace>/pod/<name>`` so that it never joins a gang of the same name.
* ``gpusched.io/gang-size``: the number of pods in the gang (not GPUs); every pod of the
  gang gives the same.  Numbers are ASCII digits (at most 9).
* GPUs per pod: the sum of the containers' ``nvidia.com/gpu`` limits (or requests).
  Every pod of a gang asks for the same number; when the gang spans more than one node
  it must divide the node's GPUs (the site's ``power.gpus_per_node``: 8 on an HGX H100),
  so whole nodes split evenly into pod slots.
* ``gpusched.io/max-cap-w`` and ``gpusched.io/min-cap-w`` (optional): the job's cap
  range in watts; without them the job is rigid at the site's ``power.cap_max_w`` (700 W
  on an H100).
* ``gpusched.io/priority`` (optional, a signed 32-bit integer): the job's priority;
  without it the pod's ``spec.priority`` (resolved from its PriorityClass), else 0.
  ``gpusched.io/preemptible`` (``"true"`` or ``"false"``, default true): false means no
  preemption plan evicts the gang.  Both are read from the gang's first filtered pod.

The first pod of a gang that reaches ``filter`` reserves nodes for the whole gang with
``Engine.place`` (job id ``k8s:<namespace>/<gang>``), journaled like any placement.  Every
pod of the gang is then filtered to the reserved nodes that still have a free pod slot,
and ``bind`` books a slot.  A reservation whose pods are not all bound within
``gang_timeout_s`` is released (HiveD's way of running gangs behind this protocol, so a
half-scheduled gang cannot hold GPUs forever), except the nodes of its bound pods, which
run: the reservation is cut to them and becomes a complete gang of those pods.  A complete gang keeps its nodes until the
job is released (``POST /v1/release`` with its job id).
"""

from .binder import ApiServerBinder
from .extender import Extender
from .gangs import GangBook, Reservation
from .wire import (GANG_NAME, GANG_SIZE, GPU_RESOURCE, JOB_PREFIX, MAX_CAP,
                   MAX_EXTENDER_PRIORITY, MIN_CAP, PREEMPTIBLE, PRIORITY, PodError, PodInfo,
                   parse_pod)

__all__ = ["Extender", "GangBook", "Reservation", "ApiServerBinder", "PodInfo", "PodError",
           "parse_pod", "GANG_NAME", "GANG_SIZE", "MAX_CAP", "MIN_CAP", "PRIORITY",
           "PREEMPTIBLE", "GPU_RESOURCE",
           "MAX_EXTENDER_PRIORITY", "JOB_PREFIX"]
