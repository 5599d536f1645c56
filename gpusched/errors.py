"""The exception hierarchy shared by both engine twins, the spec layer and the service.

Every error gpusched raises on bad input derives from :class:`GpuschedError`, and each
one also derives from the builtin it refines (``ValueError``, ``KeyError``, ``TypeError``)
so that callers who do not know gpusched still catch it sensibly.  Messages name the
offending value and say what would have been valid.

Each error carries ``field``: the name of the one field or argument at fault (``"gpus"``
of a Job, ``"pod"``, ``"horizon_s"``, ``"racks[3].feed_w"``), or None when no single one
is.  Tools such as the HTTP service read it to point at the bad part of a request; they
never parse the message, whose words are for people and may change.
"""

from __future__ import annotations

__all__ = [
    "GpuschedError",
    "SpecError",
    "JobError",
    "DuplicateJobError",
    "UnknownJobError",
    "PlacementError",
    "SnapshotError",
    "TraceError",
    "AllocationError",
    "BackendError",
    "NotAClusterError",
    "UnknownRowError",
    "PowerError",
    "ServiceError",
    "UnknownNodeError",
    "DomainError",
    "RepairError",
    "LimitError",
    "SpareError",
    "StalePlanError",
    "SweepError",
    "UsageError",
    "ServiceUnreachableError",
    "PreemptionError",
    "OutputError",
]


class GpuschedError(Exception):
    """Base class of every error gpusched raises on purpose.

    ``field`` (keyword only) names the field or argument at fault, or is None.
    """

    field: str | None

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        self.field = field


class _KeyText:
    """Mixin for the KeyError subclasses: print the message, not KeyError's quoted repr."""

    args: tuple[object, ...]

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SpecError(GpuschedError, ValueError):
    """A cluster specification (preset, TOML or JSON file, dict) is invalid.

    ``field`` names the offending field as a dotted path (``racks[3].feed_w``) when one
    is known, so tools can point at it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{field}: {message}", field=field)


class JobError(GpuschedError, ValueError):
    """A job, or an argument given with it, is invalid (bad size, cap, id, pod)."""


class DuplicateJobError(JobError):
    """A job id is already placed on the engine."""


class UnknownJobError(_KeyText, GpuschedError, KeyError):
    """A job id is not placed on the engine (release of an unknown or released id)."""


class PlacementError(GpuschedError, ValueError):
    """An explicit placement (from a snapshot or an allocation) cannot be applied."""


class SnapshotError(GpuschedError, ValueError):
    """A snapshot or saved state file is malformed, tampered with or from another cluster."""


class TraceError(GpuschedError, ValueError):
    """A job trace file is malformed; the message carries the line number."""


class AllocationError(GpuschedError, ValueError):
    """An argument of ``allocate``, ``apply`` or ``rebalance_caps`` is invalid."""


class BackendError(GpuschedError, ValueError):
    """An engine backend was asked for that is not available in this installation."""


class NotAClusterError(SpecError, TypeError):
    """Something other than a :class:`gpusched.Cluster` was given where one is needed."""


class UnknownRowError(_KeyText, GpuschedError, KeyError):
    """A constraint row was looked up by a name the cluster has no row for."""


class PowerError(GpuschedError, ValueError):
    """An argument of the power model is invalid (more busy GPUs than a node has)."""


class ServiceError(GpuschedError, ValueError):
    """An argument of the placement service (``gpusched serve``) is invalid."""


class UnknownNodeError(_KeyText, GpuschedError, KeyError):
    """A node was named (by index or host name) that the cluster does not have."""


class DomainError(GpuschedError, ValueError):
    """A failure domain was named that is not a rack feed, cooling unit, busway or hall
    switchboard row of the cluster's constraint system."""


class RepairError(GpuschedError, ValueError):
    """``Engine.repair`` was asked to repair a job that has lost no node."""


class LimitError(GpuschedError, ValueError):
    """A live limit (``Engine.set_limit``) is not a finite, non-negative number of watts."""


class SpareError(GpuschedError, ValueError):
    """A hot-spare policy asks for more nodes than a domain has, or has a bad field."""


class StalePlanError(GpuschedError, ValueError):
    """A plan (an envelope plan, or a preemption plan) was applied twice, or to an engine
    whose state changed since the plan was made; nothing was changed (plan again)."""


class SweepError(GpuschedError, ValueError):
    """A sweep file (``gpusched sweep``), or an argument of ``gpusched.sweep``, is invalid.

    ``field`` names the key at fault as a dotted path (``grid.facility_mw``,
    ``points[2].policy``, ``sweep.replications``), and the message starts with it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{field}: {message}", field=field)


class UsageError(GpuschedError, ValueError):
    """A command-line argument is missing, malformed or conflicts with another one."""


class ServiceUnreachableError(ServiceError, ConnectionError):
    """The service at ``--server`` could not be reached, timed out or failed (5xx).

    Not the user's input at fault, so the command line exits with its own status (4):
    a script can retry this one and not a refused request.  A ConnectionError too, so
    callers that catch network failures catch it.
    """


class PreemptionError(GpuschedError, ValueError):
    """A preemption plan was asked for a job it cannot be made for (already placed, a
    bad argument), or no set of cap-downs and evictions lets the job start."""

class OutputError(GpuschedError, ValueError):
    """An output path cannot be used: not a directory, not writable, or it holds an
    earlier run's files and overwriting was not asked for (``gpusched simulate --out``)."""
