"""allocate: decide which queued jobs to admit, where and at which cap."""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from .._checks import check_job
from ..errors import AllocationError, DuplicateJobError, JobError
from ..power import check_curve
from ..job import Job
from .model import _Model
from .result import Allocation
from .site import _Site
from .solve import solve


#: Branch-and-bound nodes per MILP: enough to close the gap below 0.1 % on the benchmark's
#: instances (benchmarks/bench_allocate.py) while 1,000 jobs on colossus-100k stay < 2 s.
DEFAULT_NODE_LIMIT = 200


def _check_queue(engine: Any, queue: Any) -> list[Job]:
    if isinstance(queue, (str, bytes)) or not hasattr(queue, "__iter__"):
        raise AllocationError(f"queue must be a sequence of gpusched.Job, got "
                              f"{type(queue).__name__}", field="queue")
    jobs = list(queue)
    running = {j.id: None for j in engine.jobs()}
    seen: dict[str, int] = {}
    for i, job in enumerate(jobs):
        if not isinstance(job, Job):
            raise JobError(f"queue[{i}] is a {type(job).__name__} ({job!r}); the queue must "
                           "hold gpusched.Job values", field=f"queue[{i}]")
        if job.id in seen:
            raise DuplicateJobError(f"Job {job.id!r} is twice in the queue (queue[{seen[job.id]}]"
                                    f" and queue[{i}]); job ids must be unique", field=f"queue[{i}].id")
        seen[job.id] = i
        if job.id in running:
            raise DuplicateJobError(f"Job {job.id!r} (queue[{i}]) is already running on the "
                                    "engine; release it first or use another id", field=f"queue[{i}].id")
        check_job(engine.cluster, job, {})
        check_curve(engine.cluster.power, job)
    return jobs


def _check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
        valid = ">= 0" if allow_zero else "> 0"
        raise AllocationError(f"{name}={value!r} must be a finite number {valid}", field=name)
    return float(value)


def allocate(engine: Any, queue: Sequence[Job], *, time_limit_s: float = 10.0,
             mip_rel_gap: float = 1e-3, aggregate: bool = True,
             exact_max_vars: int = 4_000, node_limit: int = DEFAULT_NODE_LIMIT) -> Allocation:
    """Decide which queued jobs to admit, where and at which cap (MILP, HiGHS).

    Parameters
    ----------
    engine : Engine
        The live state; not changed.  Its running load counts against every row.
    queue : sequence of Job
        Jobs waiting, in priority (FIFO) order; ties in the optimum favour earlier jobs.
    time_limit_s : float, default 10
        Wall-clock safety net of each solve (HiGHS).  It decides nothing on a normal
        run: the work limit below does.  When it fires, the status is
        ``"time_limit"`` and the result depends on the machine's speed.
    node_limit : int, default 200
        Branch-and-bound nodes each MILP may explore (HiGHS ``node_limit``).  Reaching
        it returns the best incumbent, status ``"work_limit"``: the same answer on
        every machine and every run.
    mip_rel_gap : float, default 1e-3
        Relative gap at which HiGHS stops.
    aggregate : bool, default True
        Aggregate interchangeable pods and jobs into classes (exact); False gives the
        one-variable-per-pod-and-job model, for measuring.
    exact_max_vars : int, default 4,000
        Up to this many integer variables the full MILP runs too (after LP-and-fix when
        the model has more than 600); 0 forces LP-and-fix alone.

    Returns
    -------
    Allocation

    Raises
    ------
    JobError, DuplicateJobError
        A queue entry is not a Job, an id is repeated or already running, or a job can
        never run on this cluster.
    AllocationError
        ``time_limit_s`` or ``mip_rel_gap`` is not a finite positive number.
    """
    start = time.perf_counter()
    time_limit_s = _check_positive("time_limit_s", time_limit_s)
    if (isinstance(node_limit, bool) or not isinstance(node_limit, (int, np.integer))
            or node_limit < 1):
        raise AllocationError(f"node_limit={node_limit!r} must be a whole number >= 1", field="node_limit")
    mip_rel_gap = _check_positive("mip_rel_gap", mip_rel_gap, allow_zero=True)
    with engine._lock:
        jobs = _check_queue(engine, queue)
        job_by_id = {j.id: j for j in jobs}
        if not jobs:
            return Allocation("empty", (), {}, {}, 0.0, 0.0, 0.0,
                              time.perf_counter() - start, {}, "none", job_by_id)
        cap_ref = max(j.max_cap_w for j in jobs)
        site = _Site(engine, cap_ref, aggregate)
    model = _Model(site, jobs, aggregate)
    result = solve(model, time_limit_s, mip_rel_gap, exact_max_vars, int(node_limit))
    return result.finish(start, job_by_id)
