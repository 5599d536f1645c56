"""Side by side: Slurm's own placement and gpusched's, on one site and one job stream.

    python benchmarks/bench_vs_slurm.py [--quick] [--scale S] [--json]

The README's table: ``GPUSCHED_TRACES=<traces dir> ...`` (scale 0.1, the default).  Larger
runs stalled here (every sbatch 5.0 s from the 835th submission on; docs/slurm.md).

A real slurmctld (Debian's 22.05, started and stopped here, on 127.0.0.1, in a temporary
directory) runs the site exported by ``gpusched slurm export --cloud``: CLOUD nodes, no
slurmd, select/cons_tres, topology/tree with a leaf switch per rack, sched/backfill.  A
CPU stands for a GPU (CLOUD nodes register no GRES), so a 2-GPU job is ``-N 1 -n 2`` and
a gang of 8k GPUs ``-N k --exclusive``.

Two streams, each cut at the first jobs whose GPUs add up to 1.15x the site (a busy
moment: more is asked than fits, so placement and power both matter):

* ``itp``: Microsoft ITP 2021 cluster04 (``$GPUSCHED_TRACES/ms-itp-2021/cluster04.csv``,
  or the 14-day cut bundled in gpusched/data), gangs scaled x8 as for a 100k-GPU site
  (:func:`gpusched.simulate.traces.scale_trace`);
* ``llm``: the synthetic LLM-era mix (:func:`gpusched.simulate.synthetic.synthetic_jobs`).

Both placers get the jobs in arrival order and no job ends.  Slurm gets them through
``sbatch`` and places them with its own scheduler; gpusched through ``Engine.place``
(caps 350 to 700 W, the site's rows enforced).  Then ONE check, written here from the
cluster's matrix and the power model (no engine accounting), runs over both results:
node power from the jobs on each node (Slurm's at 700 W per GPU, since Slurm chooses no
cap), rack power, ``A @ P`` against ``b``: rows over and by how many MW; for gangs of
more than one node, racks and pods spanned against the fewest that could hold them;
jobs started; decisions per second (Slurm: jobs started over the seconds from releasing the held jobs until its
allocations stopped changing, read by ``squeue`` once a second; gpusched:
``place`` calls over their own time, in-process).

With slurmctld absent it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import subprocess
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpusched import Cluster, Engine, Job  # noqa: E402
from gpusched.simulate.synthetic import synthetic_jobs  # noqa: E402
from gpusched.simulate.traces import TraceJob, load_trace, scale_trace  # noqa: E402

OVERSUBSCRIBE = 1.15
SLURM_CAP_W = 700
SETTLE_S = 12.0            # allocations unchanged this long: Slurm is done
SETTLE_TIMEOUT_S = 600.0
# Slurm's defaults (the main scheduler at each submit, 100 jobs deep), but backfill every
# 5 s instead of 30 so that it settles sooner; deeper queues made each submit wait on the
# scheduler's lock here (one sbatch per 5 s)
SCHEDULER = "SchedulerParameters=bf_interval=5"


# ---- the job streams ----------------------------------------------------------------

def _itp(cluster: Cluster) -> tuple[str, list[TraceJob]]:
    traces = os.environ.get("GPUSCHED_TRACES")
    path = Path(traces) / "ms-itp-2021" / "cluster04.csv" if traces else None
    name = str(path) if path is not None and path.is_file() else "itp-cluster04-14d"
    trace = load_trace(name, skip_bad=True, gpus_per_node=cluster.gpus_per_node)
    # x8, as the trace would be scaled to a 100k-GPU site: a 1-GPU job becomes a node and
    # a 64-GPU one 64 nodes.  (x1 on a 2,048-GPU site is 643 jobs, whose sbatch calls alone
    # outlast a --quick run on this 2-core machine.)
    gang_scale = 8
    jobs = scale_trace(trace.jobs, gang_scale=gang_scale, max_gpus=cluster.num_gpus // 4,
                       gpus_per_node=cluster.gpus_per_node)
    return f"ITP cluster04 ({Path(name).name}), gangs x{gang_scale}", jobs


def _llm(cluster: Cluster) -> tuple[str, list[TraceJob]]:
    # small jobs take 2 % of the GPUs instead of 10 %: a few hundred jobs in all, since
    # from the 835th submission on every sbatch here took 5.0 s (see docs/slurm.md)
    jobs = synthetic_jobs(cluster.num_gpus, 7 * 86_400, load=1.0, seed=0, small_share=0.02,
                          gpus_per_node=cluster.gpus_per_node)
    return "synthetic LLM-era mix, seed 0, small jobs 2 %", jobs


def busy_moment(jobs: list[TraceJob], cluster: Cluster) -> list[TraceJob]:
    """The first jobs (arrival order) whose GPUs add up to OVERSUBSCRIBE x the site."""
    out, total = [], 0
    for job in sorted(jobs, key=lambda j: j.submit_s):
        out.append(job)
        total += job.gpus
        if total >= OVERSUBSCRIBE * cluster.num_gpus:
            break
    return out


# ---- the two placers ------------------------------------------------------------------

def run_gpusched(cluster: Cluster, jobs: list[TraceJob]) -> tuple[dict[str, tuple[list[int], int]], float]:
    """job id -> (node indices, cap W) of every job placed, and the seconds it took."""
    engine = Engine(cluster)
    requests = [Job(j.id, j.gpus, min_cap_w=j.min_cap_w, max_cap_w=j.max_cap_w) for j in jobs]
    start = time.perf_counter()
    placements = [engine.place(job) for job in requests]
    elapsed = time.perf_counter() - start
    return {p.job_id: (list(p.nodes), int(p.cap_w)) for p in placements if p is not None}, elapsed


def run_slurm(cluster: Cluster, jobs: list[TraceJob], programs: dict[str, str],
              root: Path) -> tuple[dict[str, tuple[list[int], int]], float, float]:
    """job id -> (node indices, 700 W) of every job Slurm started; seconds to submit all
    (held), seconds from their release until the allocations settled."""
    from gpusched.adapters.slurm import expand_hostlist
    from tests.support.slurm import SlurmController

    index = {name: i for i, name in enumerate(cluster.node_names)}
    per_node = cluster.gpus_per_node
    with SlurmController(root, cluster, programs, extra_conf=[SCHEDULER, "MessageTimeout=60"],
                         exclusive=False) as slurm:
        def submit(job: TraceJob) -> tuple[int, str]:
            if job.gpus <= per_node:
                shape = ["-N", "1", "-n", str(job.gpus)]
            else:
                shape = ["-N", str(job.gpus // per_node), "--exclusive"]
            return slurm.sbatch("--hold", "-J", job.id, *shape, "--wrap=sleep 100000"), job.id

        # Submitted held, then released at once: Slurm sees the whole stream in submit
        # order, and its scheduling is timed apart from 1,000 sbatch processes (which,
        # interleaved with allocations, slowed every RPC to one per 5 s here).
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            ids = dict(pool.map(submit, jobs))
        submitted_s = time.perf_counter() - t0
        order = sorted(ids)
        start = time.perf_counter()
        try:
            for k in range(0, len(order), 500):
                slurm.run("scontrol", "release", ",".join(str(j) for j in order[k:k + 500]))
        except subprocess.TimeoutExpired as exc:
            raise SystemExit(
                f"bench_vs_slurm: slurmctld did not answer `scontrol release` within "
                f"{exc.timeout:.0f} s after {len(order):,} submissions (submitting took "
                f"{submitted_s:.0f} s); past about 835 submissions this controller answers "
                "one RPC per 5 s (docs/slurm.md). Use a smaller --scale.") from None
        last, last_change = None, time.perf_counter()
        started: dict[int, str] = {}
        while time.perf_counter() - start < SETTLE_TIMEOUT_S:
            rows = slurm.queue()
            started = {j: nodes for j, state, nodes in rows
                       if state in ("CONFIGURING", "RUNNING") and nodes}
            key = frozenset(started)
            if key != last:
                last, last_change = key, time.perf_counter()
            elif time.perf_counter() - last_change >= SETTLE_S:
                break
            time.sleep(1.0)
        settled_s = last_change - start
        placed = {ids[j]: ([index[n] for n in expand_hostlist(nodes)], SLURM_CAP_W)
                  for j, nodes in started.items()}
    return placed, submitted_s, settled_s


# ---- the one check, over both ---------------------------------------------------------

def _fewest(sizes: np.ndarray, nodes: int) -> int:
    """Fewest groups (racks, pods) of these sizes that hold ``nodes`` nodes."""
    return int(np.searchsorted(np.cumsum(np.sort(sizes)[::-1]), nodes) + 1)


def check(cluster: Cluster, jobs: list[TraceJob],
          placed: dict[str, tuple[list[int], int]]) -> dict[str, Any]:
    power = cluster.power
    per_node = cluster.gpus_per_node
    gpus = {j.id: j.gpus for j in jobs}
    busy = np.zeros(cluster.num_nodes, dtype=np.int64)
    cap_sum = np.zeros(cluster.num_nodes, dtype=np.int64)
    for job_id, (nodes, cap_w) in placed.items():
        share = gpus[job_id] if len(nodes) == 1 else per_node
        for n in nodes:
            busy[n] += share
            cap_sum[n] += share * cap_w
    assert busy.max(initial=0) <= per_node, "a node holds more GPUs than it has"
    node_w = np.where(busy > 0, power.node_other_busy_w, power.node_other_idle_w) \
        + (per_node - busy) * power.gpu_idle_w + cap_sum
    rack_w = np.bincount(cluster.node_rack, weights=node_w, minlength=cluster.num_racks)
    c = cluster.constraints
    load = c.A @ rack_w
    over = load - c.b
    violated = over > 1e-6
    rack_nodes = cluster.rack_nodes
    pod_nodes = cluster.pod_nodes
    gangs = [(nodes, len(nodes)) for nodes, _ in placed.values() if len(nodes) > 1]
    extra_racks, extra_pods, at_min_racks, at_min_pods = 0, 0, 0, 0
    for nodes, n in gangs:
        racks = len(set(cluster.node_rack[nodes].tolist()))
        pods = len(set(cluster.node_pod[nodes].tolist()))
        fewest_racks, fewest_pods = _fewest(rack_nodes, n), _fewest(pod_nodes, n)
        extra_racks += racks - fewest_racks
        extra_pods += pods - fewest_pods
        at_min_racks += racks == fewest_racks
        at_min_pods += pods == fewest_pods
    return {
        "jobs": len(jobs), "started": len(placed),
        "gpus_started": int(sum(gpus[j] for j in placed)),
        "rows_over": int(violated.sum()), "rows": int(len(c.b)),
        "over_mw": float(over[violated].sum() / 1e6),
        "worst_row": (c.names[int(np.argmax(over))] if violated.any() else None),
        "facility_mw": float(load[list(c.kinds).index("facility")] / 1e6)
        if "facility" in c.kinds else float("nan"),
        "gangs": len(gangs),
        "gangs_min_racks": at_min_racks, "extra_racks": extra_racks,
        "gangs_min_pods": at_min_pods, "extra_pods": extra_pods,
    }


# ---- report ---------------------------------------------------------------------------

def _row(stream: str, placer: str, r: dict[str, Any]) -> str:
    gangs = max(1, r["gangs"])
    return (f"| {stream} | {placer} | {r['started']:,} / {r['jobs']:,} | "
            f"{r['gpus_started']:,} | {r['rows_over']} | {r['over_mw']:.2f} | "
            f"{r['facility_mw']:.1f} | {r['gangs_min_racks'] / gangs:.0%} "
            f"(+{r['extra_racks']}) | {r['gangs_min_pods'] / gangs:.0%} (+{r['extra_pods']}) | "
            f"{r['rate']:,.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="colossus-100k at scale 0.05 (576 nodes), the ITP stream only")
    parser.add_argument("--scale", type=float, default=None,
                        help="colossus-100k scale (default 0.1; --quick 0.05)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)

    from tests.support.slurm import PROGRAMS

    programs = {}
    for program in PROGRAMS:
        path = shutil.which(program) or next(
            (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}") if os.path.exists(p)),
            None)
        if path is None:
            print(f"bench_vs_slurm: skipped: {program!r} is not installed "
                  "(apt-get install -y slurmctld slurm-client munge)")
            return 0
        programs[program] = path

    scale = args.scale if args.scale is not None else (0.05 if args.quick else 0.1)
    cluster = Cluster.preset("colossus-100k", scale=scale)
    streams = [_itp] if args.quick else [_itp, _llm]
    print(f"site: {cluster.name}: {cluster.num_nodes:,} nodes, {cluster.num_gpus:,} GPUs, "
          f"{cluster.num_racks:,} racks, {cluster.num_pods} pods; facility limit "
          f"{cluster.constraints.b[list(cluster.constraints.kinds).index('facility')] / 1e6:.1f} MW")
    results: list[dict[str, Any]] = []
    lines = ["| stream | placer | jobs started / offered | GPUs started | rows over | "
             "MW over (sum) | facility MW | gangs on fewest racks (extra) | "
             "gangs on fewest pods (extra) | decisions/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for make in streams:
        label, stream = make(cluster)
        jobs = busy_moment(stream, cluster)
        print(f"stream: {label}: {len(jobs):,} jobs, {sum(j.gpus for j in jobs):,} GPUs asked")
        g_placed, g_s = run_gpusched(cluster, jobs)
        g = {**check(cluster, jobs, g_placed), "rate": len(jobs) / g_s, "seconds": g_s}
        with tempfile.TemporaryDirectory(prefix="bench-vs-slurm-") as tmp:
            s_placed, submit_s, settle_s = run_slurm(cluster, jobs, programs, Path(tmp))
        s = {**check(cluster, jobs, s_placed), "rate": len(s_placed) / max(settle_s, 1e-9),
             "seconds": settle_s, "submit_seconds": submit_s}
        print(f"  slurm: {len(jobs)} sbatch --hold in {submit_s:.1f} s; after the release, "
              f"allocations settled in {settle_s:.1f} s")
        name = make.__name__.strip("_")
        lines.append(_row(name, "Slurm 22.05 (700 W)", s))
        lines.append(_row(name, "gpusched", g))
        results.append({"stream": name, "label": label, "slurm": s, "gpusched": g})
    print()
    print("\n".join(lines))
    if args.json:
        print(json.dumps({"site": cluster.name, "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
