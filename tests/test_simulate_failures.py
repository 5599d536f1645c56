"""The simulator on a site that changes: failures, repair, spares, an envelope over time.

Hand-computable runs on the ``tiny`` preset (8 nodes of 8 GPUs, 2 pods) with failures at
given times, then properties of the default failure model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpusched import Cluster, Engine, Job
from gpusched.errors import SpecError
from gpusched.simulate import EnvelopeWindow, FailureModel, TraceJob, simulate
from gpusched.simulate.failures import (LLAMA3_RATE_PER_GPU_H, demand_response,
                                        load_envelope, young_daly_s)

H = 3600.0


@pytest.fixture(scope="module")
def tiny() -> Cluster:
    return Cluster.preset("tiny")


def _rigid(job_id: str, submit_s: float, duration_s: float, gpus: int,
           cap_w: int = 700) -> TraceJob:
    return TraceJob(job_id, submit_s, duration_s, gpus, min_cap_w=cap_w, max_cap_w=cap_w)


def _model(**kw) -> FailureModel:
    base = dict(checkpoint_s=600.0, restart_s=300.0, cold_node_s=600.0,
                requeue_after_s=900.0, node_back_s=2 * H)
    base.update(kw)
    return FailureModel(**base)


def test_the_llama3_rate_is_one_failure_every_half_hour_at_100k_gpus():
    per_hour = LLAMA3_RATE_PER_GPU_H * 100_352
    assert 1.9 < per_hour < 2.0   # physics.md §6a: about two an hour
    # Young-Daly with M = 30 min and a 1-minute checkpoint: about 7.7 minutes
    assert young_daly_s(60, 1800) / 60 == pytest.approx(7.75, abs=0.05)


def test_a_hit_job_is_repaired_into_a_free_node_and_loses_the_work_since_its_checkpoint(tiny):
    # one 16-GPU job on nodes 0 and 1, 2 h of work; node 0 fails at 1,500 s
    jobs = [_rigid("a", 0.0, 2 * H, 16)]
    r = simulate(tiny, jobs, "fifo", failures=_model(at=((1500.0, 0),)))
    site = r.metrics["site"]
    assert site["interruptions"] == 1 and site["jobs_hit"] == 1
    assert site["repairs"] == 1 and site["repairs_into_spares"] == 0 and site["requeues"] == 0
    # checkpoint at 600 and 1,200 s: 300 s redone; a cold node (600 s) and a restart (300 s)
    assert site["resume_min_p50"] == pytest.approx(15.0)
    finish = 1500 + 900 + (2 * H - 1200)
    assert r.metrics["jobs"]["done"] == 1
    assert r.jct_s[0] == pytest.approx(finish)
    assert site["work_redone_gpu_h"] == pytest.approx(300 * 16 / H, abs=0.05)
    assert site["held_idle_gpu_h"] == pytest.approx(900 * 16 / H, abs=0.05)


def test_a_hot_spare_makes_the_repair_warm(tiny):
    jobs = [_rigid("a", 0.0, 2 * H, 16)]
    r = simulate(tiny, jobs, "fifo", spares=1, failures=_model(at=((1500.0, 0),)))
    site = r.metrics["site"]
    assert site["repairs_into_spares"] == 1
    assert site["resume_min_p50"] == pytest.approx(5.0)   # the restart only
    assert r.jct_s[0] == pytest.approx(1500 + 300 + (2 * H - 1200))
    # two pods, one spare node of 8 GPUs each, held the whole run except while in use
    assert 8 <= site["spare_gpus_mean"] <= 16
    assert site["spare_held_mw_mean"] > 0


def test_a_job_that_cannot_be_repaired_is_requeued_whole_and_keeps_its_checkpoint(tiny):
    # the site is full (8 nodes, 8 one-node jobs at 400 W), so node 0's job cannot be
    # repaired
    jobs = [_rigid(f"j{i}", 0.0, 4 * H, 8, cap_w=400) for i in range(8)]
    model = _model(at=((1500.0, 0),), node_back_s=H)
    r = simulate(tiny, jobs, "fifo", failures=model)
    site = r.metrics["site"]
    assert site["repairs"] == 0 and site["requeues"] == 1
    # it waits 900 s for a repair, is requeued, starts when node 0 is back at 1,500 + 3,600,
    # then restarts (300 s) from its 1,200 s checkpoint
    assert site["resume_min_p50"] == pytest.approx((H + 300) / 60)
    assert r.metrics["jobs"]["done"] == 8
    speed = tiny.power.speed(Job("x", 8, max_cap_w=400, min_cap_w=400), 400)
    # work left at the requeue: 4 h less the 1,200 s checkpoint (at this speed)
    assert max(r.jct_s) == pytest.approx(1500 + H + 300 + 4 * H / speed - 1200)


def test_a_serviced_node_stays_off_while_its_idle_watts_would_break_a_row(tiny):
    # six 700 W jobs; node 7 is empty and fails at 60 s; from 90 s the facility may draw
    # only what it draws then, so when node 7 is back (660 s) its idle watts do not fit
    # and it stays off until the window closes at 2 h
    jobs = [_rigid(f"j{i}", 0.0, 3 * H, 8) for i in range(6)]
    engine = Engine(tiny)
    placed = [engine.place(Job(j.id, j.gpus, max_cap_w=700, min_cap_w=700)) for j in jobs]
    assert all(p is not None and 7 not in p.nodes for p in placed)
    engine.fail([7])
    window = [EnvelopeWindow(90.0, 2 * H, "facility", float(engine.total_power_w()))]
    r = simulate(tiny, jobs, "fifo", failures=_model(at=((60.0, 7),), node_back_s=600),
                 envelope=window)
    site = r.metrics["site"]
    assert site["restores_deferred"] >= 1
    assert site["over_envelope_mw_s"] == 0 and r.metrics["violations"]["row_seconds"] == 0
    assert site["nodes_off_at_end"] == 0        # powered on once the window closed


def test_every_policy_meets_the_same_failures(tiny):
    model = FailureModel(rate_per_gpu_h=5e-3, seed=7)
    draws = model.draw(tiny, 24 * H)
    assert draws == model.draw(tiny, 24 * H)             # the seed and the site only
    assert draws != FailureModel(rate_per_gpu_h=5e-3, seed=8).draw(tiny, 24 * H)
    expected = 5e-3 * tiny.num_gpus * 24
    assert abs(len(draws) - expected) < 5 * math.sqrt(expected)
    jobs = [_rigid(f"j{i}", i * 600.0, 2 * H, 8) for i in range(20)]
    counts = {simulate(tiny, jobs, p, horizon_s=24 * H, failures=model)
              .metrics["site"]["interruptions"] for p in ("fifo", "backfill", "optimize")}
    assert len(counts) == 1 and counts.pop() > 0


def test_no_row_breaks_and_no_job_is_lost_under_failures_spares_and_an_envelope(tiny):
    rng = np.random.default_rng(3)
    jobs = [TraceJob(f"j{i}", float(rng.uniform(0, 6 * H)), float(rng.uniform(600, 3 * H)),
                     int(rng.choice([1, 4, 8, 16, 24])), min_cap_w=350, max_cap_w=700)
            for i in range(60)]
    envelope = demand_response(tiny, 2.0)
    for policy in ("fifo", "backfill", "optimize"):
        for spares in (0, 1):
            r = simulate(tiny, jobs, policy, failures=FailureModel(rate_per_gpu_h=4e-3, seed=1),
                         spares=spares, envelope=envelope)
            site = r.metrics["site"]
            assert r.metrics["violations"]["row_seconds"] == 0, (policy, spares)
            assert site["over_envelope_mw_s"] == 0, (policy, spares)
            assert r.metrics["jobs"]["done"] == len(jobs), (policy, spares)
            assert site["interruptions"] > 0


def test_the_envelope_plan_brings_the_site_under_and_holding_alone_does_not(tiny):
    # six rigid one-node jobs at 700 W; the facility is cut below their draw for an hour
    jobs = [TraceJob(f"j{i}", 0.0, 4 * H, 8, min_cap_w=350, max_cap_w=700)
            for i in range(6)]
    base = simulate(tiny, jobs, "fifo")
    draw_w = base.metrics["peaks"]["facility"]["peak_w"]
    window = [EnvelopeWindow(H, 2 * H, "facility", draw_w * 0.8)]
    planned = simulate(tiny, jobs, "fifo", envelope=window)
    held = simulate(tiny, jobs, "fifo", envelope=window, envelope_plan=False)
    blind = simulate(tiny, jobs, "oblivious", envelope=window)
    assert planned.metrics["site"]["over_envelope_mw_s"] == 0
    assert planned.metrics["site"]["envelope_plans"] >= 1
    assert held.metrics["site"]["over_envelope_mw_s"] > 0
    assert blind.metrics["site"]["over_envelope_mw_s"] > 0
    # the plan capped, it did not evict: everyone is done, and it cost some time
    assert planned.metrics["site"]["envelope_evictions"] == 0
    assert planned.metrics["jobs"]["done"] == 6
    # each of the six was capped down once, and its class counts it (issue: preemption 4)
    assert planned.metrics["site"]["envelope_cap_downs"] == 6
    assert planned.metrics["jobs"]["by_class"]["trace"]["cap_downs"] == 6
    assert held.metrics["jobs"]["by_class"]["trace"]["cap_downs"] == 0
    assert planned.metrics["site"]["event_h"] == pytest.approx(1.0)


def test_an_envelope_file_is_read_and_its_mistakes_are_named(tmp_path, tiny):
    good = tmp_path / "env.csv"
    good.write_text("start_h,end_h,row,mw\n1,4,facility,0.04\n2,3,hall-1 switchboard,0.03\n")
    windows = load_envelope(good, tiny)
    assert windows == [EnvelopeWindow(H, 4 * H, "facility", 40_000.0),
                       EnvelopeWindow(2 * H, 3 * H, "hall-1 switchboard", 30_000.0)]
    for body, words in [("start,end\n", "columns"),
                        ("start_h,end_h,row,mw\nx,2,facility,1\n", ":2:"),
                        ("start_h,end_h,row,mw\n3,2,facility,1\n", "start_h < end_h"),
                        ("start_h,end_h,row,mw\n1,2,facility,-1\n", ">= 0"),
                        ("start_h,end_h,row,mw\n1,2,nowhere,1\n", "'nowhere'")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(body)
        with pytest.raises(SpecError, match=words) as info:
            load_envelope(bad, tiny)
        assert info.value.field == "envelope"
    with pytest.raises(SpecError, match="cannot read"):
        load_envelope(tmp_path / "missing.csv", tiny)


@pytest.mark.parametrize("kwargs, field", [
    ({"rate_per_gpu_h": -1.0}, "failure_rate"),
    ({"rate_per_gpu_h": math.nan}, "failure_rate"),
    ({"node_back_s": 0.0}, "node_back_s"),
    ({"checkpoint_s": -5.0}, "checkpoint_s"),
    ({"restart_s": math.inf}, "restart_s"),
    ({"at": ((1.0, "n0"),)}, "at"),
])
def test_a_bad_failure_model_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(SpecError) as info:
        FailureModel(**kwargs)
    assert info.value.field == field


def test_bad_site_options_are_refused_before_any_work(tiny):
    jobs = [_rigid("a", 0.0, H, 8)]
    with pytest.raises(SpecError, match="smallest pod") as info:
        simulate(tiny, jobs, "fifo", spares=4)
    assert info.value.field == "spares"
    with pytest.raises(SpecError) as info:
        simulate(tiny, jobs, "fifo", spares=-1)
    assert info.value.field == "spares"
    with pytest.raises(SpecError, match="nodes 0..7"):
        simulate(tiny, jobs, "fifo", failures=FailureModel(at=((1.0, 99),)))
