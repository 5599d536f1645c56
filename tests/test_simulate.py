"""gpusched.simulate: replays small enough to check by hand, policies, traces, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpusched import Cluster
from gpusched.engine import DEFAULT_BACKEND
from gpusched.power import throughput
from gpusched.simulate import TraceJob, simulate, synthetic_jobs
from gpusched.simulate.events import EventQueue
from gpusched.simulate.policies import Optimize, Policy, lifted_cluster
from tests.support.sites import BIG, facility_site


def rigid(job_id: str, submit_s: float, duration_s: float, gpus: int) -> TraceJob:
    return TraceJob(job_id, submit_s, duration_s, gpus, min_cap_w=700, max_cap_w=700)


def by_id(result) -> dict:
    return {j["id"]: j for j in result.jobs}


# ---- hand-checked replays ------------------------------------------------------------

# Two nodes.  j1 (8 GPUs, 0..100) holds one; j2 (16 GPUs, arrives 10) needs both, so
# it waits for j1 and runs 100..150.  j3 (8 GPUs, arrives 20, 30 s):
#  - fifo: blocked behind j2 (head of line) although a node is free: runs 150..180;
#  - backfill: j2's reservation is at t=100 and j3 would end at 50 <= 100: runs 20..50.
HOL_JOBS = [rigid("j1", 0, 100, 8), rigid("j2", 10, 50, 16), rigid("j3", 20, 30, 8)]


@pytest.mark.parametrize("policy, expected", [
    ("fifo", {"j1": (0, 100), "j2": (100, 150), "j3": (150, 180)}),
    ("oblivious", {"j1": (0, 100), "j2": (100, 150), "j3": (150, 180)}),
    ("backfill", {"j1": (0, 100), "j2": (100, 150), "j3": (20, 50)}),
])
def test_head_of_line_blocking_and_backfill_by_hand(policy, expected):
    result = simulate(facility_site(), HOL_JOBS, policy, keep_jobs=True)
    jobs = by_id(result)
    assert {k: (jobs[k]["start_s"], jobs[k]["finish_s"]) for k in expected} == expected
    m = result.metrics
    jct = [expected[k][1] - s.submit_s for k, s in zip(("j1", "j2", "j3"), HOL_JOBS)]
    assert m["jobs"]["done"] == 3
    assert m["jobs"]["jct"]["mean_h"] == pytest.approx(round(np.mean(jct) / 3600, 3))
    wait = [expected[k][0] - s.submit_s for k, s in zip(("j1", "j2", "j3"), HOL_JOBS)]
    assert m["jobs"]["wait"]["mean_h"] == pytest.approx(round(np.mean(wait) / 3600, 3))
    # 8 GPUs x 100 s + 16 x 50 + 8 x 30 at s = 1
    assert m["totals"]["delivered_gpu_hours"] == pytest.approx(round(1840 / 3600, 1))
    assert m["violations"]["row_seconds"] == 0


def test_run_time_is_duration_over_s_of_the_cap():
    # One node under a 6,800 W facility: 2,800 W other + 8 GPUs x 500 W, so the engine
    # steps a 350..700 W job down to exactly 500 W and it runs 3600 / s(500) seconds.
    cluster = facility_site(nodes=1, facility_w=6800)
    job = TraceJob("a", 0.0, 3600.0, 8, min_cap_w=350)
    result = simulate(cluster, [job], "fifo", keep_jobs=True)
    record = by_id(result)["a"]
    assert record["first_cap_w"] == 500
    s500 = 1 - 1.25 * (1 - 500 / 700) ** 2
    assert record["finish_s"] == pytest.approx(3600 / s500)
    assert result.metrics["totals"]["mean_speed"] == pytest.approx(s500, abs=1e-4)
    # energy: 6,800 W for the whole run
    assert result.metrics["totals"]["energy_mwh"] == pytest.approx(
        round(6800 * 3600 / s500 / 3.6e9, 3))
    assert result.metrics["peaks"]["facility"]["peak_w"] == 6800


def test_oblivious_reports_what_it_would_have_broken():
    # Same node; the oblivious baseline runs the job at 700 W: 8,400 W against 6,800 W,
    # 1,600 W over the facility row (the only finite limit) for the job's 3,600 s.
    cluster = facility_site(nodes=1, facility_w=6800)
    job = TraceJob("a", 0.0, 3600.0, 8, min_cap_w=350)
    v = simulate(cluster, [job], "oblivious").metrics["violations"]
    assert v["row_seconds"] == pytest.approx(3600)
    assert v["max_excess_w"] == pytest.approx(1600)
    assert v["max_excess_row"] == "facility IT limit"
    assert v["excess_kwh"] == pytest.approx(1.6)
    assert v["rows_ever_violated"] == 1
    assert v["row_seconds_by_kind"] == {"facility": pytest.approx(3600)}


@pytest.mark.parametrize("policy", ["fifo", "backfill", "optimize", "oblivious"])
def test_only_oblivious_breaks_rows_on_a_binding_instance(tiny, policy):
    # tiny's rows bind on purpose (a row takes 30 kW, 4 nodes at full power draw 33.6 kW).
    jobs = [TraceJob(f"j{i}", 60.0 * i, 3600.0, g, min_cap_w=350)
            for i, g in enumerate([16, 16, 8, 8, 4, 4, 2, 1, 8, 16])]
    m = simulate(tiny, jobs, policy).metrics
    assert m["jobs"]["done"] == len(jobs)
    if policy == "oblivious":
        assert m["violations"]["row_seconds"] > 0
        assert m["violations"]["max_load_over_limit"] > 1
        assert m["peaks"]["facility"]["peak_over_limit"] > 1
    else:
        assert m["violations"] == {**m["violations"], "row_seconds": 0.0,
                                   "rows_ever_violated": 0}
        assert all(k["peak_over_limit"] <= 1 for k in m["peaks"]["by_kind"].values())


def test_cap_change_carries_the_work_over():
    # A job of 1,000 s at 700 W; at t = 500 its cap drops to 500 W: 500 s of work are
    # left and take 500 / s(500) more seconds.
    class CapAt500(Policy):
        name = "cap-at-500"

        def schedule(self, sim, now, reasons):
            if sim.queue:
                job = sim.queue.pop(0)
                sim.start(job, sim.engine.place(job.job))
                sim.request_round(500.0)
            elif reasons & 4:
                sim.engine.set_cap("a", 500)
                assert sim.sync_caps() == 1

    cluster = facility_site(nodes=1)
    job = TraceJob("a", 0.0, 1000.0, 8, min_cap_w=350)
    result = simulate(cluster, [job], CapAt500(), keep_jobs=True)
    record = by_id(result)["a"]
    assert record["cap_w"] == 500 and record["first_cap_w"] == 700
    assert record["finish_s"] == pytest.approx(500 + 500 / throughput(500))


def test_horizon_counts_unfinished_jobs():
    jobs = [rigid("long", 0, 10_000, 8), rigid("late", 50, 10, 16), rigid("never", 500, 1, 8)]
    m = simulate(facility_site(), jobs, "fifo", horizon_s=200).metrics
    assert m["jobs"] == {**m["jobs"], "arrived": 2, "started": 1, "done": 0,
                         "running_at_end": 1, "queued_at_end": 1}
    assert m["end_s"] == 200
    # one node of two busy for 200 s
    assert m["totals"]["utilisation"] == pytest.approx(0.5)
    assert m["totals"]["fragmented_gpus_mean"] == 0


def test_fragmentation_counts_free_gpus_on_partly_used_nodes():
    jobs = [rigid("a", 0, 100, 3), rigid("b", 0, 100, 4)]   # both on one node: 1 left
    m = simulate(facility_site(), jobs, "fifo").metrics
    assert m["totals"]["fragmented_gpus_max"] == 1
    assert m["totals"]["fragmented_gpus_mean"] == pytest.approx(1.0)


def test_simulation_is_deterministic(tiny):
    jobs = synthetic_jobs(tiny.num_gpus, 4 * 3600, load=1.5, frontier=0, seed=3)
    a = simulate(tiny, jobs, "backfill").metrics
    b = simulate(tiny, jobs, "backfill").metrics
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b


def test_event_queue_orders_by_time_then_kind_then_push_order():
    q = EventQueue()
    q.push(5.0, 1, "arrival")
    q.push(5.0, 0, "finish")
    q.push(1.0, 2, "round")
    q.push(5.0, 0, "finish-2")
    assert [q.pop()[2] for _ in range(4)] == ["round", "finish", "finish-2", "arrival"]
    assert math.isinf(q.peek_time())


def test_lifted_cluster_keeps_racks_and_lifts_every_limit(tiny):
    lifted = lifted_cluster(tiny)
    assert lifted.num_racks == tiny.num_racks
    assert lifted.rack_names == tiny.rack_names
    assert (lifted.constraints.b >= 1e11).all()


@pytest.mark.skipif(DEFAULT_BACKEND != "cython", reason="a 100k-GPU replay is a job for the "
                    "compiled core; the twins' equality is the differential tests' job")
def test_optimize_delivers_at_least_fifo_on_a_reduced_default():
    # The default scenario (colossus-100k at 90 MW, the bundled trace with gangs x4
    # offering 1.6x the GPUs, two frontier gangs), cut to its first 8 of 16 hours.
    from gpusched.simulate.cli import build_workload

    cluster = Cluster.preset("colossus-100k")
    horizon_s = 8 * 3600
    jobs, info = build_workload(cluster, horizon_s=horizon_s)
    fifo = simulate(cluster, jobs, "fifo", horizon_s=horizon_s).metrics
    opt = simulate(cluster, jobs, Optimize(), horizon_s=horizon_s).metrics
    print(f"\nreduced default, {info['jobs']} jobs: delivered GPU-h x s fifo "
          f"{fifo['totals']['delivered_gpu_hours']:,.1f}, optimize "
          f"{opt['totals']['delivered_gpu_hours']:,.1f}; wall {fifo['wall_s']} s / "
          f"{opt['wall_s']} s")
    assert opt["policy_info"]["allocator"] == "gpusched.plan"
    assert opt["totals"]["delivered_gpu_hours"] >= fifo["totals"]["delivered_gpu_hours"]
    assert opt["violations"]["row_seconds"] == 0 == fifo["violations"]["row_seconds"]


def test_synthetic_mix_is_seeded_and_has_the_three_classes():
    a = synthetic_jobs(100_352, 7 * 86400, load=1.0, frontier=3, seed=7)
    b = synthetic_jobs(100_352, 7 * 86400, load=1.0, frontier=3, seed=7)
    assert a == b
    kinds = {k: [j for j in a if j.kind == k] for k in ("frontier", "large", "small")}
    assert len(kinds["frontier"]) == 3
    assert all(16_384 <= j.gpus <= 32_768 for j in kinds["frontier"])
    assert 100 <= len(kinds["large"]) <= 2000           # hundreds per week
    assert all(512 <= j.gpus <= 4096 for j in kinds["large"])
    assert len(kinds["small"]) >= 1000                  # thousands
    assert all(j.gpus <= 64 and j.duration_s >= 600 for j in kinds["small"])
    small_median_h = np.median([j.duration_s for j in kinds["small"]]) / 3600
    assert small_median_h == pytest.approx(2.93, rel=0.1)   # ITP 2021 median


# ---- optimize while the site drains for a gang (issue 14's diagnosis) ------------------

def flexible(job_id: str, submit_s: float, duration_s: float, gpus: int) -> TraceJob:
    return TraceJob(job_id, submit_s, duration_s, gpus, min_cap_w=350, max_cap_w=700)


def test_optimize_starts_the_gang_it_drains_for_when_its_gpus_free():
    # 3 nodes.  A and B (rigid, 8 GPUs) hold two; the head H (16 GPUs) has waited past
    # max_wait_s, so rounds drain for it (1-GPU arrivals every 500 s keep rounds
    # coming).  A ends at 5,000 s: H must start then, not at the next round (5,410 s
    # with 900 s rounds).  The facility is near full while A and B run, so no fast
    # path starts H.
    jobs = [rigid("A", 0, 5000, 8), rigid("B", 0, 50_000, 8), flexible("H", 10, 3600, 16)]
    jobs += [flexible(f"x{i}", 100 + 500 * i, 600, 1) for i in range(10)]
    result = simulate(facility_site(3, 19_700), jobs, Optimize(round_interval_s=900, max_wait_s=100),
                      horizon_s=8000, keep_jobs=True)
    assert by_id(result)["H"]["start_s"] == 5000
    assert result.metrics["policy_info"]["drain_event_starts"] == 1


def test_optimize_gives_the_watts_of_a_drain_to_running_jobs():
    # A (rigid, ends 4,000 s) and C (rigid) leave B room for 450 W only.  H (24 GPUs)
    # needs all three nodes, so the site drains for it and D (8 GPUs) may not start
    # when A ends.  The watts A leaves then go to B: its cap rises to 700 W.
    jobs = [rigid("A", 0, 4000, 8), rigid("C", 0, 50_000, 8), flexible("B", 1, 50_000, 8),
            flexible("H", 5, 3600, 24), flexible("D", 6, 3600, 8)]
    result = simulate(facility_site(3, 23_200), jobs, Optimize(max_wait_s=100), horizon_s=10_000,
                      keep_jobs=True)
    records = by_id(result)
    assert records["B"]["first_cap_w"] == 450
    assert records["B"]["cap_w"] == 700
    assert records["D"]["start_s"] is None and records["H"]["start_s"] is None


def test_policy_reason_bits_are_the_event_loops_kinds():
    # One set of kinds, owned by the event loop; the policies test the loop's bits.
    from gpusched.simulate import events, policies

    assert policies.FINISHED == events.reason_bit(events.FINISH) == 1 << 0
    assert policies.ARRIVED == events.reason_bit(events.ARRIVAL) == 1 << 1
    assert policies.ROUND_DUE == events.reason_bit(events.ROUND) == 1 << 2
    bits = {events.reason_bit(k) for k in (events.FINISH, events.ARRIVAL, events.ROUND)}
    assert len(bits) == 3
