"""The extender's wire format: kube-scheduler's JSON keys, gpusched's pod annotations.

kube-scheduler calls an extender over HTTP with the types of
``k8s.io/kube-scheduler/extender/v1``.  Those Go structs carry no JSON tags, so on the
wire the keys are the Go field names; Go's decoder matches keys case-insensitively, so
lower-case keys are accepted too (``get``).  ``parse_pod`` reads what the extender needs
from a v1.Pod: its GPUs and its gang annotations (see the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GANG_NAME", "GANG_SIZE", "MAX_CAP", "MIN_CAP", "GPU_RESOURCE",
           "MAX_EXTENDER_PRIORITY", "JOB_PREFIX", "PodInfo", "PodError", "parse_pod", "get"]

GANG_NAME = "gpusched.io/gang-name"
GANG_SIZE = "gpusched.io/gang-size"
MAX_CAP = "gpusched.io/max-cap-w"
MIN_CAP = "gpusched.io/min-cap-w"
GPU_RESOURCE = "nvidia.com/gpu"
MAX_EXTENDER_PRIORITY = 10  # k8s.io/kube-scheduler/extender/v1 MaxExtenderPriority
JOB_PREFIX = "k8s:"


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
    meta = get(pod, "metadata") or {}
    if not isinstance(meta, dict):
        raise PodError("Pod.metadata must be an object")
    name = get(meta, "name")
    namespace = get(meta, "namespace") or "default"
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        raise PodError("Pod.metadata.name and .namespace must be non-empty strings")
    uid = get(meta, "uid")
    annotations = get(meta, "annotations") or {}
    if not isinstance(annotations, dict):
        raise PodError("Pod.metadata.annotations must be an object of strings")
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


