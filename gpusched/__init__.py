"""gpusched: power- and cooling-aware placement of gang-scheduled GPU jobs.

The public names, nothing else; see README.md for a tour.
"""

from .plan import Allocation, CapPlan, allocate, apply, rebalance_caps
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
from .power import PowerModel, throughput

__version__ = "0.1.0"

__all__ = [
    "Cluster", "Constraints", "Engine", "Explanation", "Job", "Placement", "PowerModel",
    "throughput", "available_backends",
    "GpuschedError", "SpecError", "JobError", "DuplicateJobError", "UnknownJobError",
    "PlacementError", "SnapshotError", "TraceError", "AllocationError",
    "allocate", "apply", "rebalance_caps", "Allocation", "CapPlan",
]
