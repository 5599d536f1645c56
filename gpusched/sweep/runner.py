"""One run of a sweep, as a worker process does it: build, simulate, measure, pack.

:func:`run_one` is what an executor is given: a module-level function of one plain
dict, so it pickles by reference to a local process or a Dask worker anywhere.  It
never raises for a run's own failure (a bad option value, a trace error, a timeout, a
bug): it returns ``status`` and the error, so one bad run cannot abort a sweep.  It
writes nothing: the files of the run come back as bytes and the client writes them, so
workers need no shared file system (only the traces they read, when those are paths).
"""

from __future__ import annotations

import json
import math
import os
import resource
import socket
import time
import traceback
from typing import Any

from ..errors import GpuschedError, SweepError

__all__ = ["run_one", "RunTimeout"]


class RunTimeout(GpuschedError, TimeoutError):
    """Raised from simulate's progress callback when a run passes its wall-clock limit."""


def _cluster(config: dict[str, Any], cluster_spec: dict[str, Any] | None) -> Any:
    from ..errors import SpecError
    from ..spec import Cluster

    name = config["cluster"]
    scale, mw = config["cluster_scale"], config["facility_mw"]
    if cluster_spec is not None:
        cluster = Cluster.from_dict(cluster_spec)  # a file, read once by the client
    elif name == "colossus-100k":
        params: dict[str, Any] = {"scale": scale}
        if mw is not None:
            params["facility_mw"] = mw
        return Cluster.preset(name, **params)
    else:
        cluster = Cluster.resolve(name)
    if scale != 1.0:
        raise SpecError(f"cluster_scale applies to the colossus-100k preset, not {name!r}",
                        field="cluster_scale")
    if mw is not None:
        # other sites: the facility row (or rows) of A·P <= b gets the swept limit
        c = cluster.constraints
        rows = {n: mw * 1e6 for n, k in zip(c.names, c.kinds) if k == "facility"}
        if not rows:
            raise SpecError(f"cluster {name!r} has no facility row to set", field="facility_mw")
        cluster = cluster.with_limits(rows)
    return cluster


def metrics_row(result: Any, info: dict[str, Any]) -> dict[str, Any]:
    """The table's columns of one result (see :data:`gpusched.sweep.tables.METRICS`)."""
    m = result.metrics
    jobs, totals, peaks, viol = m["jobs"], m["totals"], m["peaks"], m["violations"]
    fac = peaks["facility"]
    limit = fac["limit_w"]
    return {
        "num_gpus": result.cluster.num_gpus,
        "jobs": info.get("jobs"),
        "jobs_done": jobs["done"],
        "jobs_queued_at_end": jobs["queued_at_end"],
        "jct_mean_h": jobs["jct"]["mean_h"],
        "jct_p99_h": jobs["jct"]["p99_h"],
        "wait_mean_h": jobs["wait"]["mean_h"],
        "wait_p99_h": jobs["wait"]["p99_h"],
        "utilisation": totals["utilisation"],
        "delivered_gpu_hours": totals["delivered_gpu_hours"],
        "bound_gpu_hours": totals["bound_gpu_hours"],
        "fraction_of_bound": totals["fraction_of_bound"],
        "mean_speed": totals["mean_speed"],
        "energy_mwh": totals["energy_mwh"],
        "mean_power_mw": totals["mean_power_mw"],
        "peak_facility_mw": round(fac["peak_w"] / 1e6, 6),
        "facility_limit_mw": None if math.isinf(limit) else round(limit / 1e6, 6),
        "fragmented_gpus_mean": totals["fragmented_gpus_mean"],
        "violation_row_seconds": viol["row_seconds"],
        "rows_ever_violated": viol["rows_ever_violated"],
        "rounds_stopped_by_time_limit": m["policy_info"].get("rounds_stopped_by_time_limit"),
        # a site that changes: empty when the run had no failures, spares or envelope
        **{key: (m.get("site") or {}).get(key) for key in (
            "jobs_hit", "resume_min_p50", "work_lost_gpu_h", "spare_gpus_mean",
            "over_envelope_mw_s")},
    }


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """Run ``task`` (id, config, version, timeout_s, cluster_spec); see the module doc."""
    from .._version import __version__

    started = time.perf_counter()
    deadline = started + float(task["timeout_s"])
    out: dict[str, Any] = {"id": task["id"], "status": "ok", "error": None, "metrics": {},
                           "files": {}, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        if __version__ != task["version"]:
            # a worker with another gpusched would file its answers under the wrong name
            raise SweepError(f"worker runs gpusched {__version__}, the sweep wants "
                             f"{task['version']}", field="gpusched")
        out.update(_simulate(task, deadline))
    except RunTimeout as exc:
        out.update(status="timeout", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a run's failure is data, not a crash
        out.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback="".join(traceback.format_exc(limit=8)))
    out["wall_s"] = round(time.perf_counter() - started, 3)
    # ru_maxrss is in KiB on Linux: the worker's high-water mark, for sizing workers
    out["worker_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                    / 1024, 1)
    return out


def _site_keywords(config: dict[str, Any], cluster: Any) -> dict[str, Any]:
    """simulate()'s failure, spare and envelope keywords from a run's options."""
    from ..simulate.failures import FailureModel, demand_response

    out: dict[str, Any] = {"spares": config.get("spares", 0),
                           "envelope_plan": config.get("envelope_plan", True)}
    if config.get("failure_rate"):
        out["failures"] = FailureModel(rate_per_gpu_h=float(config["failure_rate"]),
                                       seed=int(config["seed"]))
    if config.get("demand_response") is not None:
        out["envelope"] = demand_response(cluster, float(config["demand_response"]))
    return out


def _simulate(task: dict[str, Any], deadline: float) -> dict[str, Any]:
    from ..bound import FluidBound
    from ..simulate import simulate
    from ..simulate.cli import build_workload, summary_markdown
    from ..simulate.policies import make_policy
    from .spec import OPTIONS

    config = task["config"]
    limit_s = float(task["timeout_s"])

    def check_clock(_now_s: float = 0.0) -> None:
        if time.perf_counter() > deadline:
            raise RunTimeout(f"over its timeout of {limit_s:g} s wall clock",
                             field="timeout_s")

    cluster = _cluster(config, task.get("cluster_spec"))
    horizon_s = float(config["hours"]) * 3600
    jobs, info = build_workload(cluster, trace=config["trace"], horizon_s=horizon_s,
                                load=config["load_scale"], gang_scale=config["gang_scale"],
                                frontier=config["frontier"], seed=config["seed"],
                                skip_bad=config["skip_bad"])
    check_clock()
    extra = {k: v for k, v in config.items() if k not in OPTIONS}  # simulate() keywords
    extra.update(_site_keywords(config, cluster))
    sim_started = time.perf_counter()
    result = simulate(cluster, jobs, make_policy(config["policy"]), horizon_s=horizon_s,
                      progress=check_clock, bound=FluidBound(cluster), **extra)
    # the same report.json simulate writes, for one policy, plus what the sweep set
    report = {"cluster": cluster.summary(), "workload": info,
              "results": {result.policy: result.to_dict()},
              "wall_s": round(time.perf_counter() - sim_started, 2),
              "sweep": {"run": task["id"], "config": config, "gpusched": task["version"]}}
    files = {"report.json": (json.dumps(report, indent=1, default=float) + "\n").encode(),
             "summary.md": summary_markdown([result], info).encode()}
    return {"metrics": {**metrics_row(result, info),
                        "solver_time_s": result.metrics["policy_info"].get("solver_time_s")},
            "files": files, "sim_wall_s": result.metrics["wall_s"]}
