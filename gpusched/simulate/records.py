"""One record per job of a run, and ``jobs.csv``, the file an operator greps.

Columns (:data:`JOB_COLUMNS`), times in seconds of simulated time from the run's start:

- ``policy``, ``job``, ``kind`` (``trace``, ``frontier``, ``large``, ``small``);
- ``state`` at the end of the run: ``done``, ``running`` or ``queued``;
- ``submit_s``, ``start_s`` (empty if it never started), ``end_s`` (empty unless done);
- ``wait_s`` = start - submit; for a job still queued at the end, end of run - submit,
  with ``wait_censored`` = 1: its true wait is longer (right-censored);
- ``jct_s`` = end - submit, done jobs only;
- ``gpus``, ``nodes``, ``pods`` and ``hostlist`` (compressed Slurm hostlists of its pod
  and node names), ``first_cap_w`` (the cap it started at) and ``cap_w`` (its last);
- ``wait_reason``: the reason of most of its waiting seconds (gpusched.simulate.waits:
  ``gpus``, ``fragmentation``, ``power``, ``reservation``, ``priority``; empty if it
  never waited), ``wait_limit``: for power waits, the kind and name of the row that
  blocked it (``hall: hall-2 switchboard``), and ``wait_<reason>_s``, the seconds of
  each reason (they add up to ``wait_s``).
"""

from __future__ import annotations

import csv
import io
import math
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..hostlist import compress_hostlist
from .waits import WAIT_REASONS

if TYPE_CHECKING:
    from ..spec import Cluster
    from . import SimulationResult
    from .events import SimJob
    from .waits import WaitTracker

__all__ = ["JOB_COLUMNS", "job_records", "jobs_csv"]

JOB_COLUMNS = ("policy", "job", "kind", "state", "submit_s", "start_s", "end_s", "wait_s",
               "wait_censored", "jct_s", "gpus", "nodes", "pods", "hostlist", "first_cap_w",
               "cap_w", "wait_reason", "wait_limit", *(f"wait_{r}_s" for r in WAIT_REASONS))


def _state(sim_job: "SimJob") -> str:
    if not math.isnan(sim_job.finish_s):
        return "done"
    return "queued" if math.isnan(sim_job.start_s) else "running"


def job_records(all_jobs: "Iterable[SimJob]", cluster: "Cluster", waits: "WaitTracker",
                end_s: float) -> list[dict[str, Any]]:
    """A dict per job with the columns of :data:`JOB_COLUMNS` but ``policy``; the job's
    id is under ``id`` and its end under ``finish_s`` (the keys of the records before
    jobs.csv existed), which :func:`jobs_csv` writes as ``job`` and ``end_s``."""
    names = cluster.node_names
    pod_names = cluster.pod_names
    node_pod = cluster.node_pod
    out = []
    for j in all_jobs:
        state = _state(j)
        submit = j.spec.submit_s
        started = state != "queued"
        by_reason = waits.seconds_by_reason(j.id)
        waited = sum(by_reason.values())
        reason = max(WAIT_REASONS, key=lambda r: by_reason[r]) if waited > 0 else ""
        nodes = j.nodes
        if nodes:  # most jobs of a long run never start: no hostlist to write
            pods = compress_hostlist(pod_names[p] for p in sorted({int(node_pod[n])
                                                                   for n in nodes}))
            hostlist = compress_hostlist(names[n] for n in nodes)
        else:
            pods = hostlist = ""
        out.append({
            "id": j.id, "kind": j.spec.kind, "state": state, "submit_s": submit,
            "start_s": j.start_s if started else None,
            "finish_s": j.finish_s if state == "done" else None,
            "wait_s": (j.start_s if started else end_s) - submit,
            "wait_censored": int(not started),
            "jct_s": j.finish_s - submit if state == "done" else None,
            "gpus": j.gpus, "nodes": len(nodes), "pods": pods, "hostlist": hostlist,
            "first_cap_w": j.first_cap_w or None, "cap_w": j.cap_w or None,
            "wait_reason": reason,
            "wait_limit": waits.binding_by_job.get(j.id, "") if by_reason["power"] else "",
            **{f"wait_{r}_s": by_reason[r] for r in WAIT_REASONS}})
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def jobs_csv(results: "Sequence[SimulationResult]") -> str:
    """``jobs.csv``: every job of every policy of the run, policy by policy."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(JOB_COLUMNS)
    for result in results:
        for record in result.jobs:
            row = {**record, "policy": result.policy, "job": record["id"],
                   "end_s": record["finish_s"]}
            writer.writerow([_cell(row[c]) for c in JOB_COLUMNS])
    return buffer.getvalue()
