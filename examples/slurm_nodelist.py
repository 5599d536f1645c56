"""Slurm: read topology.conf plus a power overlay, place jobs, print --nodelist lines.

    python examples/slurm_nodelist.py [topology.conf] [power.toml]

A job submit plugin or a wrapper around sbatch would do the same: ask gpusched where
the gang fits under the power limits and at which cap, then pin the job there with
``--nodelist`` (and set the cap with ``nvidia-smi -pl`` in the prolog).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpusched import Engine, Job
from gpusched.adapters.slurm import placement_nodelist, read_cluster

HERE = Path(__file__).parent
topology = sys.argv[1] if len(sys.argv) > 1 else HERE / "slurm" / "topology.conf"
overlay = sys.argv[2] if len(sys.argv) > 2 else HERE / "slurm" / "power.toml"

cluster = read_cluster(topology, overlay)
print(f"{cluster.name}: {cluster.num_gpus} GPUs on {cluster.num_nodes} nodes, pods "
      f"{', '.join(cluster.pod_names)}, {cluster.num_racks} racks")
engine = Engine(cluster)
for job in (Job("pretrain", 256, min_cap_w=400), Job("sft", 64, min_cap_w=500),
            Job("eval", 8), Job("sweep", 128, min_cap_w=300)):
    placement = engine.place(job)
    if placement is None:
        print(f"# {job.id}: {engine.explain(job)}")
        continue
    print(f"sbatch --job-name={job.id} --nodes={len(placement.nodes)} "
          f"--nodelist={placement_nodelist(cluster, placement)} train.sh  "
          f"# cap {placement.cap_w} W")
