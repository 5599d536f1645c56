"""gpusched: power- and cooling-aware placement of gang-scheduled GPU jobs.

The public names, nothing else; see README.md for a tour.

The allocator (``allocate``, ``apply``, ``rebalance_caps``, ``Allocation``, ``CapPlan``,
from :mod:`gpusched.plan`) is loaded on first use (PEP 562): it imports
``scipy.optimize``, which costs more than the rest of the package together, and the
engine, the service and ``gpusched --help`` do not need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .spec import Cluster, Constraints
from .engine import Engine, Explanation, available_backends
from .errors import (
    AllocationError,
    DuplicateJobError,
    GpuschedError,
    JobError,
    PlacementError,
    SnapshotError,
    SpecError,
    TraceError,
    UnknownJobError,
)
from .job import Job, Placement
from ._version import __version__
from .power import PowerModel, throughput

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from .plan import Allocation, CapPlan, allocate, apply, rebalance_caps


# public name -> the module that defines it, imported when the name is first read
_LAZY = {name: "gpusched.plan"
         for name in ("allocate", "apply", "rebalance_caps", "Allocation", "CapPlan")}

__all__ = [
    "Cluster", "Constraints", "Engine", "Explanation", "Job", "Placement", "PowerModel",
    "throughput", "available_backends",
    "GpuschedError", "SpecError", "JobError", "DuplicateJobError", "UnknownJobError",
    "PlacementError", "SnapshotError", "TraceError", "AllocationError",
    "allocate", "apply", "rebalance_caps", "Allocation", "CapPlan",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gpusched' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
