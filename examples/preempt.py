"""A high-priority gang preempts its way onto a full, power-bound colossus-100k.

    python examples/preempt.py
"""

from gpusched import Cluster, Engine, Job

cluster = Cluster.preset("colossus-100k")          # 100,352 GPUs, facility 90 MW
engine = Engine(cluster)

# Fill the site with research and fine-tuning jobs until the facility row refuses more:
# two in three are rigid at 575 W, one in three may go down to 250 W.
sizes = (1, 2, 4, 2, 4, 8, 16, 64, 256)
i = refused = 0
while refused < 50:
    job = Job(f"bg-{i}", sizes[i % len(sizes)], min_cap_w=575 if i % 3 else 250,
              priority=i % 3)
    refused = 0 if engine.place_at_most(job, 575) is not None else refused + 1
    i += 1
print(f"{len(engine)} jobs on {engine.gpus_in_use():,} GPUs, "
      f"{engine.total_power_w() / 1e6:.2f} MW")

urgent = Job("release-eval", 4096, priority=5, min_cap_w=500, preemptible=False)
print(engine.explain(urgent).message)

# Work since each job's last checkpoint decides what an eviction costs.
since = {p.job_id: (7 * i) % 3600 for i, p in enumerate(engine.placements())}
plan = engine.plan_preemption(urgent, since_checkpoint_s=since)
print(f"plan ({plan.method}): {len(plan.cap_changes)} cap-downs, {len(plan.victims)} "
      f"evictions of priority <= {plan.max_victim_priority}, "
      f"{plan.work_lost_gpu_h:.1f} GPU-hours lost, {plan.gpus_evicted} GPUs evicted")
placement = plan.apply()
print(f"{urgent.id} runs on {len(placement.nodes)} nodes at {placement.cap_w} W; "
      f"{engine.total_power_w() / 1e6:.2f} MW, every row holds: "
      f"{not cluster.constraints.violations(engine.rack_power_w())}")
