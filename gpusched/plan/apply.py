"""apply: place an Allocation's admitted jobs on the engine."""

from __future__ import annotations

from typing import Any

from ..errors import AllocationError, PlacementError
from ..job import Placement
from .result import Allocation


def apply(engine: Any, allocation: Allocation) -> dict[str, Placement]:
    """Place the admitted jobs of ``allocation`` on ``engine``, in its order.

    Each job goes to its planned pod with ``engine.place_at_most(job, cap, pod=pod)``
    (its ``min_cap_w`` kept, so a rack row can still step it down); a job larger than a
    pod goes on its planned nodes with the engine's checked ``place_on``, at the planned
    cap or, failing that, the next grid caps down to ``min_cap_w``.

    Returns
    -------
    dict of str to Placement
        The placements made.  A job the engine refuses is not in it; its id and the
        engine's reason are added to ``allocation.dropped`` (the Allocation is frozen,
        its dict is not).  Never raises for a refused job.
    """
    if not isinstance(allocation, Allocation):
        raise AllocationError(f"apply needs an Allocation, got {type(allocation).__name__}", field="allocation")
    placed: dict[str, Placement] = {}
    refused: dict[str, str] = {}
    power = engine.cluster.power
    with engine._lock:
        for job_id in allocation.admitted:
            job = allocation.jobs[job_id]
            cap = allocation.cap_w[job_id]
            planned = job.replace(max_cap_w=cap, min_cap_w=min(job.min_cap_w, cap))
            if job_id in engine:
                refused[job_id] = "already running on the engine"
                continue
            nodes = allocation.spans.get(job_id)
            if nodes is not None:
                placement = None
                reason = "its planned nodes are no longer free or powered"
                for c in power.cap_grid_w(cap, planned.min_cap_w):
                    try:
                        placement = engine.place_on(job, nodes, c)
                        break
                    except PlacementError as exc:
                        reason = str(exc)
                if placement is None:
                    refused[job_id] = f"refused by the engine: {reason}"
                else:
                    placed[job_id] = placement
                continue
            # the engine keeps the job's own cap range, so rebalance_caps may raise it later
            placement = engine.place_at_most(job, cap, pod=allocation.pod[job_id])
            if placement is None:
                why = engine.explain(planned, pod=allocation.pod[job_id])
                refused[job_id] = f"refused by the engine: {why.message}"
            else:
                placed[job_id] = placement
    allocation.dropped.update(refused)
    return placed
