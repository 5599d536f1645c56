"""gpusched as a Python library: place gangs at a power cap, ask why, release.

    python examples/library_place.py
"""

from __future__ import annotations

from gpusched import Cluster, Engine, Job

# 100,352 H100s in 4 halls; the facility IT limit (90 MW) is below full power (~105 MW).
cluster = Cluster.preset("colossus-100k")
engine = Engine(cluster)

# A 16,384-GPU pre-training gang that accepts caps down to 450 W, and small jobs.
big = engine.place(Job("llm-pretrain", 16_384, min_cap_w=450))
print(f"llm-pretrain: {len(big.nodes)} nodes at {big.cap_w} W, first "
      f"{cluster.node_names[big.nodes[0]]}")
for i in range(4):
    p = engine.place(Job(f"finetune-{i}", 8))
    print(f"finetune-{i}: node {cluster.node_names[p.nodes[0]]} at {p.cap_w} W")

# Fill the site with rigid 4,096-GPU jobs until the power rows refuse one, and say why.
k = 0
while (p := engine.place(Job(f"rigid-{k}", 4096))) is not None:
    k += 1
print(f"placed {k} rigid 4,096-GPU jobs; {engine.gpus_in_use():,} GPUs busy, "
      f"{engine.total_power_w() / 1e6:.1f} MW")
print(engine.explain(Job(f"rigid-{k}", 4096)))

engine.release("llm-pretrain")
print(f"after releasing llm-pretrain: {engine.free_gpus():,} GPUs free")
