"""gpusched.simulate: replay a job trace on a site under a policy, and measure it.

>>> from gpusched import Cluster
>>> from gpusched.simulate import simulate, TraceJob
>>> jobs = [TraceJob("a", 0.0, 3600.0, 8), TraceJob("b", 60.0, 1800.0, 16)]
>>> result = simulate(Cluster.preset("tiny"), jobs, "fifo")
>>> result.metrics["jobs"]["done"]
2

Modules: ``events`` (the event loop), ``policies`` (fifo, backfill, optimize,
oblivious), ``traces`` (CSV loaders and scaling), ``synthetic`` (LLM-era job mix),
``metrics`` (what is measured), ``plots`` (PNGs), ``cli`` (``gpusched simulate``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..bound import FluidBound
from ..spec import Cluster
from .events import Simulator
from .failures import EnvelopeWindow, FailureModel, SiteEvents, check_site_options
from .metrics import Recorder, summarise_jobs
from .policies import POLICIES, Policy, make_policy
from .records import job_records
from .synthetic import frontier_gangs, synthetic_jobs
from .traces import Trace, TraceJob, fit_load, load_trace, repeat_to_horizon, scale_trace

__all__ = ["simulate", "SimulationResult", "TraceJob", "Trace", "load_trace", "scale_trace",
           "fit_load", "repeat_to_horizon", "synthetic_jobs", "frontier_gangs", "POLICIES",
           "make_policy", "FailureModel", "EnvelopeWindow"]


@dataclass
class SimulationResult:
    """What one run measured (see :mod:`gpusched.simulate.metrics`).

    Attributes
    ----------
    policy : str
    metrics : dict
        ``jobs`` (counts, JCT and wait in hours), ``totals`` (energy, delivered
        GPU-hours x s, utilisation, fragmentation), ``peaks`` (each level against its
        limit), ``violations`` (row-seconds and excess against the real cluster),
        ``policy`` (its parameters and counters), ``wall_s``.
    series : dict of ndarray
        The state after every instant: ``t_s``, ``facility_w``, ``hall_w`` (one column
        per hall), ``busy_gpus``, ``work_gpus``, ``frag_gpus``, ``violated_rows``,
        ``bound_gpus`` (the fluid bound of the jobs present, gpusched.bound).
    rack_power_at_peak_w : ndarray of int64
        Rack powers at the instant of peak facility power (for the floor map).
    node_free_at_peak : ndarray of int64
        Free GPUs of each node at that instant.
    jct_s : ndarray
        Completion times (finish - submit) of the jobs done, in seconds.
    """

    policy: str
    cluster: Cluster
    horizon_s: float
    metrics: dict[str, Any]
    series: dict[str, np.ndarray]
    rack_power_at_peak_w: np.ndarray
    jct_s: np.ndarray
    jobs: list[dict[str, Any]] = field(default_factory=list)
    node_free_at_peak: np.ndarray | None = None
    ever_violated_rows: np.ndarray | None = None

    def to_dict(self, series_points: int = 400) -> dict[str, Any]:
        """JSON-ready: the metrics plus the series thinned to about ``series_points``."""
        t = self.series["t_s"]
        step = max(1, len(t) // series_points)
        thin = {k: (v[::step] if v.ndim == 1 else v[::step]).tolist()
                for k, v in self.series.items()}
        return {"policy": self.policy, "cluster": self.cluster.name,
                "horizon_s": self.horizon_s, **self.metrics,
                "series": {"every_nth_sample": step, **thin}}


def simulate(cluster: Cluster, jobs: Sequence[TraceJob], policy: str | Policy = "optimize",
             *, horizon_s: float | None = None,
             progress: Callable[[float], None] | None = None,
             keep_jobs: bool = False, bound: FluidBound | None = None,
             failures: FailureModel | None = None, spares: int = 0,
             envelope: Sequence[EnvelopeWindow] | None = None,
             envelope_plan: bool = True) -> SimulationResult:
    """Replay ``jobs`` on ``cluster`` under ``policy`` and measure the run.

    Parameters
    ----------
    cluster : Cluster
        The site; its ``constraints`` are checked at every instant, whatever the policy.
    jobs : sequence of TraceJob
        Arrivals (``submit_s``), gang sizes, run times at full power and cap ranges.
        Trace loaders give every job ``min_cap_w=350, max_cap_w=700``: flexible, so caps
        matter (physics.md §3 keeps optimiser caps in [350, 700] W).
    policy : str or Policy, default "optimize"
        ``fifo``, ``backfill`` (power-aware), ``backfill-preempt``, ``backfill-gpu``,
        ``backfill-conservative``, ``optimize`` or ``oblivious`` (see
        :mod:`gpusched.simulate.policies`), or a Policy object.
    horizon_s : float, optional
        Stop at this simulated time (arrivals after it are dropped; jobs still queued or
        running are counted as such).  Default: run until every job is done.
    progress : callable, optional
        Called now and then with the simulated time (the CLI's tqdm bar).
    keep_jobs : bool
        Also return one record per job (id, gpus, submit, start, finish, caps).
    bound : FluidBound, optional
        The cluster's fluid bound (``gpusched.bound``), to share its cache between runs
        on one cluster; a new one by default.
    failures : FailureModel, optional
        Node failures, checkpoints, repair and requeue (:mod:`gpusched.simulate.failures`);
        none by default.
    spares : int, default 0
        Hot spare nodes per pod, held with their watts by the engine.
    envelope : sequence of EnvelopeWindow, optional
        Live limits over time (curtailment, a feed target); ``envelope_plan`` (default)
        brings the site back under each at once with ``gpusched.plan.plan_envelope``,
        otherwise new load is only held off the rows over, as Slurm's HRES does.

    Returns
    -------
    SimulationResult
    """
    pol = make_policy(policy) if isinstance(policy, str) else policy
    recorder = Recorder(cluster, bound)
    horizon = math.inf if horizon_s is None else float(horizon_s)
    wall = time.perf_counter()
    check_site_options(failures, spares, envelope)
    site = None
    if failures is not None or spares or envelope:
        site = SiteEvents(cluster, failures=failures, spares=spares,
                          envelope=list(envelope or []), envelope_plan=envelope_plan)
    sim = Simulator(cluster, list(jobs), pol, recorder, horizon_s=horizon, progress=progress,
                    site=site)
    sim.run()
    wall = time.perf_counter() - wall
    end_s = sim.now
    recorder.waits.finish(sim.queue, end_s)  # jobs still queued waited until the end
    job_summary = summarise_jobs(sim.all_jobs, end_s)
    metrics = {
        "jobs": job_summary,
        "totals": recorder.totals(end_s),
        "peaks": recorder.peaks(),
        "violations": recorder.violations(),
        "policy_info": {**pol.describe(), "power_aware": pol.power_aware},
        "bound_info": recorder.bound.describe(),
        "end_s": end_s,
        "wall_s": round(wall, 3),
    }
    if site is not None:
        metrics["site"] = site.metrics(end_s)
    series = {k: np.asarray(v) for k, v in recorder.series.items()}
    jct = np.array([j.finish_s - j.spec.submit_s for j in sim.done])
    records = job_records(sim.all_jobs, cluster, recorder.waits, end_s) if keep_jobs else []
    return SimulationResult(pol.name, cluster, end_s, metrics, series,
                            recorder.rack_power_at_peak_w, jct, records,
                            recorder.node_free_at_peak, recorder.ever_violated.copy())
