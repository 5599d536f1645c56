"""A seeded synthetic LLM-era workload: frontier gangs, large jobs and many small ones.

No public trace holds a gang above 128 GPUs (ms-itp-2021 tops out at 64, Philly at 128), so
the large end of today's training mix has to be generated.  Three classes:

==========  ===========================================  ==========================================
class       gang sizes                                   run time at full power (lognormal)
==========  ===========================================  ==========================================
frontier    16,384, 20,480, 24,576 or 32,768 (uniform)   median 10 days, sigma 0.5 (A): pretraining
            -- Grok 2 trained on about 20,000 H100s (S)  runs outlast any simulated window
large       512, 1,024, 2,048 or 4,096 (uniform, A)      median 4 h, sigma 1.08 (A; p90 16 h)
small       1..64 with the ITP 2021 shares (P):          median 2.93 h, p90 8.00 h (P: ITP 2021 all
            1: 83.2 %, 2: 2.1 %, 4: 3.4 %, 8: 10.1 %,    clusters) so sigma = ln(8.00/2.93)/1.2816
            16: 0.55 %, 32: 0.51 %, 64: 0.10 %           = 0.784; at least 600 s, at most 437 h
==========  ===========================================  ==========================================

Priority classes (A): frontier gangs are *frontier pretraining* (priority 200, not
preemptible), large jobs *production fine-tuning* (priority 100), small jobs *research*
(priority 0); both of the latter are preemptible.  ``backfill`` puts the urgent class
(priority 200 and up) ahead of the rest of its queue, and ``backfill-preempt`` also lets a
blocked head of priority above 0 evict lower ones; :func:`priority_classes` gives a real
trace the same classes by gang size.

(P) = computed from shared/traces/ms-itp-2021/README.md (69,351 jobs), (S) = press, (A) =
our assumption.  Arrivals are a Poisson process over the horizon (frontier gangs in its
first quarter).  The number of large and small jobs is set by the offered load: what the
frontier gangs leave of ``load * cluster_gpus`` is shared ``1 - small_share`` to large
jobs and ``small_share`` to small ones, which gives hundreds of large jobs and thousands
of small ones per simulated week on a 100k-GPU site.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..errors import TraceError
from .traces import TraceJob, whole_gang

__all__ = ["synthetic_jobs", "frontier_gangs", "priority_classes", "PRIORITY_CLASSES",
           "SMALL_SIZES", "SMALL_SHARES"]

#: kind -> (class name, priority, preemptible)
PRIORITY_CLASSES = {"frontier": ("frontier pretraining", 200, False),
                    "large": ("production fine-tuning", 100, True),
                    "small": ("research", 0, True)}

#: ITP 2021, all ten clusters: jobs per gang size (shared/traces/ms-itp-2021/README.md).
SMALL_SIZES = (1, 2, 4, 8, 16, 32, 64)
SMALL_SHARES = (57_682, 1_483, 2_371, 7_009, 381, 354, 71)
SMALL_MEDIAN_S = 2.93 * 3600
SMALL_SIGMA = math.log(8.00 / 2.93) / 1.2816  # p90 = median * exp(1.2816 sigma)
SMALL_MIN_S, SMALL_MAX_S = 600.0, 437.0 * 3600
LARGE_SIZES = (512, 1024, 2048, 4096)
LARGE_MEDIAN_S, LARGE_SIGMA = 4 * 3600.0, 1.08
FRONTIER_SIZES = (16_384, 20_480, 24_576, 32_768)
FRONTIER_MEDIAN_S, FRONTIER_SIGMA = 10 * 86_400.0, 0.5


def _lognormal_mean(median_s: float, sigma: float) -> float:
    return median_s * math.exp(sigma * sigma / 2)


def frontier_gangs(count: int, horizon_s: float, *, seed: int = 0, cluster_gpus: int | None = None,
                   min_cap_w: int = 350, weight: float = 1.0,
                   gpus_per_node: int | None = None) -> list[TraceJob]:
    """``count`` frontier pretraining gangs arriving in the first quarter of the horizon.

    Sizes larger than a third of ``cluster_gpus`` are dropped, so small test clusters
    get none rather than an unplaceable one.  Sizes are rounded up to whole nodes of
    ``gpus_per_node`` GPUs (no change for nodes of a power of two up to 4,096).
    """
    if count < 0:
        raise TraceError(f"frontier gang count {count} must be >= 0", field="count")
    rng = np.random.default_rng([seed, 16_384])
    sizes = rng.choice(FRONTIER_SIZES, size=count)
    starts = np.sort(rng.uniform(0, 0.25 * horizon_s, size=count))
    durations = FRONTIER_MEDIAN_S * np.exp(FRONTIER_SIGMA * rng.standard_normal(count))
    gangs = [whole_gang(int(g), gpus_per_node) for g in sizes]
    _name, priority, preemptible = PRIORITY_CLASSES["frontier"]
    return [TraceJob(f"frontier-{i}", float(t), float(d), g, min_cap_w=min_cap_w,
                     weight=weight, kind="frontier", priority=priority,
                     preemptible=preemptible)
            for i, (g, t, d) in enumerate(zip(gangs, starts, durations))
            if cluster_gpus is None or g <= cluster_gpus // 3]


def synthetic_jobs(cluster_gpus: int, horizon_s: float, *, load: float = 1.0,
                   frontier: int = 2, small_share: float = 0.1, seed: int = 0,
                   min_cap_w: int = 350, gpus_per_node: int | None = None) -> list[TraceJob]:
    """A synthetic LLM-era job mix offering ``load`` x ``cluster_gpus`` busy GPUs.

    Parameters
    ----------
    cluster_gpus : int
        GPUs of the site the mix is for.
    horizon_s : float
        Arrivals fall in ``[0, horizon_s)``.
    load : float, default 1.0
        Offered load relative to the cluster (GPU-seconds asked / GPU-seconds available).
    frontier : int, default 2
        Frontier pretraining gangs (16k to 32k GPUs); none on clusters under 64k GPUs.
    small_share : float, default 0.1
        Share of the non-frontier demand taken by small (1..64-GPU) jobs.
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same jobs.
    gpus_per_node : int, optional
        The site's GPUs per node: every gang size is rounded up to a valid one (whole
        nodes above a node), so the mix runs on any node size.  Default: the power
        model's default, for which no size changes.

    Returns
    -------
    list of TraceJob, sorted by submit time.
    """
    if not (horizon_s > 0 and math.isfinite(horizon_s)):
        raise TraceError(f"horizon_s={horizon_s!r} must be a positive number of seconds", field="horizon_s")
    if not (load > 0 and math.isfinite(load)):
        raise TraceError(f"load={load!r} must be a positive number", field="load")
    if not 0 <= small_share <= 1:
        raise TraceError(f"small_share={small_share!r} must be in [0, 1]", field="small_share")
    rng = np.random.default_rng(seed)
    jobs = frontier_gangs(frontier, horizon_s, seed=seed, cluster_gpus=cluster_gpus,
                          min_cap_w=min_cap_w, gpus_per_node=gpus_per_node)
    frontier_gpus = sum(j.gpus for j in jobs)
    rest_gpus = max(0.1 * cluster_gpus, load * cluster_gpus - frontier_gpus)
    large_sizes = [g for g in LARGE_SIZES if g <= cluster_gpus // 2] or [8]
    n_large = int(round((1 - small_share) * rest_gpus * horizon_s
                        / (np.mean(large_sizes) * _lognormal_mean(LARGE_MEDIAN_S, LARGE_SIGMA))))
    shares = np.array(SMALL_SHARES, dtype=float) / sum(SMALL_SHARES)
    small_mean_gpus = float(np.dot(SMALL_SIZES, shares))
    n_small = int(round(small_share * rest_gpus * horizon_s
                        / (small_mean_gpus * _lognormal_mean(SMALL_MEDIAN_S, SMALL_SIGMA))))
    large_g = rng.choice(large_sizes, size=n_large)
    large_t = rng.uniform(0, horizon_s, size=n_large)
    large_d = LARGE_MEDIAN_S * np.exp(LARGE_SIGMA * rng.standard_normal(n_large))
    jobs += [TraceJob(f"large-{i}", float(t), float(max(600.0, d)),
                      whole_gang(int(g), gpus_per_node),
                      min_cap_w=min_cap_w, kind="large",
                      priority=PRIORITY_CLASSES["large"][1])
             for i, (g, t, d) in enumerate(zip(large_g, large_t, large_d))]
    small_g = rng.choice(SMALL_SIZES, size=n_small, p=shares)
    small_t = rng.uniform(0, horizon_s, size=n_small)
    small_d = np.clip(SMALL_MEDIAN_S * np.exp(SMALL_SIGMA * rng.standard_normal(n_small)),
                      SMALL_MIN_S, SMALL_MAX_S)
    jobs += [TraceJob(f"small-{i}", float(t), float(d), whole_gang(int(g), gpus_per_node),
                      min_cap_w=min_cap_w, kind="small")
             for i, (g, t, d) in enumerate(zip(small_g, small_t, small_d))]
    jobs.sort(key=lambda j: (j.submit_s, j.id))
    return jobs


def priority_classes(jobs: "list[TraceJob]", *, frontier_gpus: int = 16_384,
                     large_gpus: int = 512) -> "list[TraceJob]":
    """A real trace's jobs with the synthetic mix's classes, by gang size: at least
    ``frontier_gpus`` GPUs is frontier pretraining, at least ``large_gpus`` production
    fine-tuning, the rest research (``kind`` is set to the class's key)."""
    out = []
    for job in jobs:
        kind = ("frontier" if job.gpus >= frontier_gpus else
                "large" if job.gpus >= large_gpus else "small")
        _name, priority, preemptible = PRIORITY_CLASSES[kind]
        out.append(replace(job, kind=kind, priority=priority, preemptible=preemptible))
    return out
