"""What :func:`~gpusched.plan.allocate` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..job import Job


@dataclass(frozen=True)
class Allocation:
    """What :func:`allocate` decided.

    Attributes
    ----------
    status : str
        ``"optimal"`` (within ``mip_rel_gap``), ``"work_limit"`` (best found when the
        node limit stopped the search: deterministic), ``"time_limit"`` (best found
        when the wall-clock safety net fired: machine-dependent), ``"infeasible"`` (no queued job can be admitted now), ``"empty"``
        (empty queue), ``"no-solution"`` (the solver found nothing within its limits).
    admitted : tuple of str
        Job ids to place, in the order :func:`apply` places them.
    pod : dict of str to int
        Pod index of each admitted job (the first of its pods for a job that spans pods).
    cap_w : dict of str to int
        Planned cap of each admitted job, on its 25 W grid.
    objective : float
        ``sum weight * gpus * s(cap)`` of the admitted jobs (GPU-equivalents).
    bound : float
        An upper bound on the best objective of the model (the solver's dual bound).
    gap : float
        ``(bound - objective) / max(bound, 1e-9)``.
    solve_time_s : float
        Wall time of the whole call, model building included.
    dropped : dict of str to str
        Queued jobs not admitted, with the reason.
    method : str
        ``"exact"`` (one class per pod and per job), ``"pod-class aggregation"``,
        ``"lp-fix"`` (LP relaxation, then a MILP over the fractional part).
    jobs : dict of str to Job
        The queued jobs by id (apply needs them).
    spans : dict of str to tuple of int
        For jobs larger than a pod, the nodes planned for them.
    """

    status: str
    admitted: tuple[str, ...]
    pod: dict[str, int]
    cap_w: dict[str, int]
    objective: float
    bound: float
    gap: float
    solve_time_s: float
    dropped: dict[str, str]
    method: str
    jobs: dict[str, Job] = field(default_factory=dict, repr=False)
    spans: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    stats: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        return (f"{self.status} ({self.method}): {len(self.admitted)} admitted, "
                f"{len(self.dropped)} not; objective {self.objective:,.1f}, bound "
                f"{self.bound:,.1f}, gap {100 * self.gap:.2f}%, {self.solve_time_s:.2f} s")
