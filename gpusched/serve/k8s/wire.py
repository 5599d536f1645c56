"""The extender's wire format: kube-scheduler's JSON keys, gpusched's pod annotations.

kube-scheduler calls an extender over HTTP with the types of
``k8s.io/kube-scheduler/extender/v1``.  Those Go structs carry no JSON tags, so on the
wire the keys are the Go field names; Go's decoder matches keys case-insensitively, so
lower-case keys are accepted too (``get``).  ``parse_pod`` reads what the extender needs
from a v1.Pod: its GPUs and its gang annotations (see the package docstring).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import GpuschedError

__all__ = ["GANG_NAME", "GANG_SIZE", "MAX_CAP", "MIN_CAP", "PRIORITY", "PREEMPTIBLE",
           "GPU_RESOURCE",
           "MAX_EXTENDER_PRIORITY", "JOB_PREFIX", "SINGLE_POD", "PodInfo", "PodError", "parse_pod", "get"]

GANG_NAME = "gpusched.io/gang-name"
GANG_SIZE = "gpusched.io/gang-size"
MAX_CAP = "gpusched.io/max-cap-w"
MIN_CAP = "gpusched.io/min-cap-w"
PRIORITY = "gpusched.io/priority"
PREEMPTIBLE = "gpusched.io/preemptible"
GPU_RESOURCE = "nvidia.com/gpu"
MAX_EXTENDER_PRIORITY = 10  # k8s.io/kube-scheduler/extender/v1 MaxExtenderPriority
JOB_PREFIX = "k8s:"
SINGLE_POD = "pod"   # the middle part of a single pod's key, "<namespace>/pod/<name>"
_GANG_NAME = re.compile(r"[!-.0-~]{1,200}")   # printable ASCII without space and '/'


def get(mapping: Any, key: str) -> Any:
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
    gang: str            # "<namespace>/<gang name>", or "<namespace>/pod/<name>" alone
    size: int            # pods in the gang
    max_cap_w: int | None
    min_cap_w: int | None
    priority: int = 0
    preemptible: bool = True

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class PodError(GpuschedError, ValueError):
    """A pod whose annotations or resources the extender cannot schedule.

    ``field`` names what is wrong: the annotation key, or the container's resource path.
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


# ASCII digits only, and few of them: str.isdigit() also takes '²' and Arabic-Indic digits
# (which int() then refuses or reads), and int() refuses strings of over 4,300 digits.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
_MAX_QUANTITY = 1_000_000


def _show(raw: Any) -> str:
    """``repr(raw)`` cut short, so a 5,000-character value does not fill the message."""
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def whole_number(raw: str, lo: int, hi: int) -> int | None:
    """``raw`` as an int in ``lo..hi`` if it is one written in ASCII digits, else None."""
    text = raw.strip()
    if _WHOLE_NUMBER.fullmatch(text) is None:
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def _quantity(value: Any, where: str) -> int:
    """A whole-number resource quantity (``8`` or ``"8"``); GPUs are not fractional."""
    count: int | None
    if isinstance(value, bool):
        count = None
    elif isinstance(value, int):
        count = value if 0 <= value <= _MAX_QUANTITY else None
    elif isinstance(value, str):
        count = whole_number(value, 0, _MAX_QUANTITY)
    else:
        count = None
    if count is None:
        raise PodError(f"{where} must be a whole number of GPUs in 0..{_MAX_QUANTITY} "
                       f"(ASCII digits), got {_show(value)}", where)
    return count


def parse_pod(pod: Any) -> PodInfo:
    """Read name, GPUs and gang annotations from a v1.Pod; PodError if they are unusable."""
    if not isinstance(pod, dict):
        raise PodError("Pod must be an object (a v1.Pod)", "Pod")
    meta = get(pod, "metadata") or {}
    if not isinstance(meta, dict):
        raise PodError("Pod.metadata must be an object", "Pod.metadata")
    name = get(meta, "name")
    namespace = get(meta, "namespace") or "default"
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        raise PodError("Pod.metadata.name and .namespace must be non-empty strings",
                       "Pod.metadata.name")
    uid = get(meta, "uid")
    annotations = get(meta, "annotations") or {}
    if not isinstance(annotations, dict):
        raise PodError("Pod.metadata.annotations must be an object of strings",
                       "Pod.metadata.annotations")
    gpus = 0
    spec = get(pod, "spec") or {}
    containers = get(spec, "containers") if isinstance(spec, dict) else None
    for i, container in enumerate(containers if isinstance(containers, list) else []):
        resources = get(container, "resources") or {}
        limits = get(resources, "limits") or {}
        requests = get(resources, "requests") or {}
        value = (limits if isinstance(limits, dict) else {}).get(GPU_RESOURCE)
        if value is None:
            value = (requests if isinstance(requests, dict) else {}).get(GPU_RESOURCE)
        if value is not None:
            gpus += _quantity(value, f"containers[{i}].resources {GPU_RESOURCE}")

    def annotation_int(key: str, lo: int, hi: int) -> int | None:
        raw = annotations.get(key)
        if raw is None:
            return None
        value = whole_number(raw, lo, hi) if isinstance(raw, str) else None
        if value is None:
            raise PodError(f"annotation {key}={_show(raw)} must be a whole number in "
                           f"{lo}..{hi} (ASCII digits)", key)
        return value

    gang_name = annotations.get(GANG_NAME)
    if gang_name is None:
        # A pod on its own is keyed apart from every gang: gang names have no '/', so
        # "<namespace>/pod/<name>" is never the key of a gang, whatever it is called.
        gang, size = f"{namespace}/{SINGLE_POD}/{name}", 1
        if GANG_SIZE in annotations:
            raise PodError(f"annotation {GANG_SIZE} needs {GANG_NAME} as well", GANG_SIZE)
    else:
        if not isinstance(gang_name, str) or _GANG_NAME.fullmatch(gang_name) is None:
            raise PodError(f"annotation {GANG_NAME}={_show(gang_name)} must be a name of "
                           "1..200 printable ASCII characters without '/'", GANG_NAME)
        given_size = annotation_int(GANG_SIZE, 1, 100_000)
        if given_size is None:
            raise PodError(f"annotation {GANG_SIZE} (pods in the gang) is required with "
                           f"{GANG_NAME}", GANG_SIZE)
        size = given_size
        gang = f"{namespace}/{gang_name}"
    priority, preemptible = _priority(annotations, spec)
    return PodInfo(namespace, name, str(uid) if uid is not None else "", gpus, gang, size,
                   annotation_int(MAX_CAP, 1, 100_000), annotation_int(MIN_CAP, 1, 100_000),
                   priority, preemptible)


_SIGNED = re.compile(r"-?[0-9]{1,10}")


def _priority(annotations: dict[str, Any], spec: Any) -> tuple[int, bool]:
    """The job's priority and preemptibility from the pod.

    ``gpusched.io/priority`` (a signed integer in the Job's range) wins; without it the
    pod's ``spec.priority`` (the value admission resolved from its PriorityClass) is
    used; without either, 0.  ``gpusched.io/preemptible`` is ``"true"`` or ``"false"``
    (default true).
    """
    from ...job import PRIORITY_MAX, PRIORITY_MIN
    raw = annotations.get(PRIORITY)
    where = PRIORITY
    if raw is None:
        raw = get(spec, "priority") if isinstance(spec, dict) else None
        where = "spec.priority"
        if raw is None:
            raw = 0
    value: int | None = None
    if isinstance(raw, str) and _SIGNED.fullmatch(raw.strip()):
        value = int(raw.strip())
    elif isinstance(raw, int) and not isinstance(raw, bool) and where == "spec.priority":
        value = raw
    if value is None or not PRIORITY_MIN <= value <= PRIORITY_MAX:
        kind = "annotation " if where == PRIORITY else ""
        raise PodError(f"{kind}{where}={_show(raw)} must be a whole number in "
                       f"{PRIORITY_MIN}..{PRIORITY_MAX} (a signed 32-bit integer)", where)
    flag = annotations.get(PREEMPTIBLE, "true")
    if not isinstance(flag, str) or flag.strip().lower() not in ("true", "false"):
        raise PodError(f"annotation {PREEMPTIBLE}={_show(flag)} must be \"true\" or "
                       "\"false\"", PREEMPTIBLE)
    return value, flag.strip().lower() == "true"


