"""The exception hierarchy shared by both engine twins, the spec layer and the service.

Every error gpusched raises on bad input derives from :class:`GpuschedError`, and each
one also derives from the builtin it refines (``ValueError``, ``KeyError``, ``TypeError``)
so that callers who do not know gpusched still catch it sensibly.  Messages name the
offending value and say what would have been valid.
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
]


class GpuschedError(Exception):
    """Base class of every error gpusched raises on purpose."""


class SpecError(GpuschedError, ValueError):
    """A cluster specification (preset, TOML or JSON file, dict) is invalid.

    ``field`` names the offending field as a dotted path (``racks[3].feed_w``) when one
    is known, so tools can point at it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{field}: {message}")
        self.field = field


class JobError(GpuschedError, ValueError):
    """A job, or an argument given with it, is invalid (bad size, cap, id, pod)."""


class DuplicateJobError(JobError):
    """A job id is already placed on the engine."""


class UnknownJobError(GpuschedError, KeyError):
    """A job id is not placed on the engine (release of an unknown or released id)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class PlacementError(GpuschedError, ValueError):
    """An explicit placement (from a snapshot or an allocation) cannot be applied."""


class SnapshotError(GpuschedError, ValueError):
    """A snapshot or saved state file is malformed, tampered with or from another cluster."""


class TraceError(GpuschedError, ValueError):
    """A job trace file is malformed; the message carries the line number."""


class AllocationError(GpuschedError, ValueError):
    """An argument of ``allocate``, ``apply`` or ``rebalance_caps`` is invalid."""
