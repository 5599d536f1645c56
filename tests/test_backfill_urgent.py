"""Power-aware backfill's urgent jobs: ahead of the queue, and at most the efficient cap.

Issue 16's target "the frontier gangs start sooner than under fifo" failed where they
waited at all: in submit order a frontier gang waits for every head before it to start,
and backfill starts those heads no sooner than fifo does.  Jobs of priority at least
``urgent_priority`` (200 by default, the synthetic mix's frontier pretraining) now go
ahead of the rest.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gpusched import Job
from gpusched.errors import SpecError
from gpusched.simulate import TraceJob, simulate
from gpusched.simulate.events import SimJob
from gpusched.simulate.policies import Backfill, PreemptingBackfill
from tests.support.sites import facility_site


def job(job_id: str, submit_s: float, duration_s: float, gpus: int, *, priority: int = 0,
        rigid: bool = True) -> TraceJob:
    caps = {"min_cap_w": 700, "max_cap_w": 700} if rigid else {}
    return TraceJob(job_id, submit_s, duration_s, gpus, priority=priority, **caps)


def spans(result) -> dict[str, tuple[float, float]]:
    return {j["id"]: (j["start_s"], j["finish_s"]) for j in result.jobs}


# Two nodes.  j1 (8 GPUs, 0..100) holds one.  j2 (16 GPUs, arrives 10) needs both and
# waits for j1; so does the urgent u (16 GPUs, priority 200, arrives 20).  In submit
# order j2 runs 100..150 and u 150..200; with u ahead of j2, u runs 100..150.
URGENT_JOBS = [job("j1", 0, 100, 8), job("j2", 10, 50, 16),
               job("u", 20, 50, 16, priority=200)]


@pytest.mark.parametrize("policy, expected", [
    ("fifo", {"j1": (0, 100), "j2": (100, 150), "u": (150, 200)}),
    (Backfill(urgent_priority=None), {"j1": (0, 100), "j2": (100, 150), "u": (150, 200)}),
    ("backfill", {"j1": (0, 100), "u": (100, 150), "j2": (150, 200)}),
    (Backfill(urgent_priority=300), {"j1": (0, 100), "j2": (100, 150), "u": (150, 200)}),
    (Backfill(urgent_priority=150), {"j1": (0, 100), "u": (100, 150), "j2": (150, 200)}),
])
def test_an_urgent_job_goes_ahead_of_the_queue_by_hand(policy, expected):
    result = simulate(facility_site(), URGENT_JOBS, policy, keep_jobs=True)
    assert spans(result) == expected
    assert result.metrics["violations"]["row_seconds"] == 0


def test_an_urgent_job_that_starts_ahead_of_waiting_jobs_gets_at_most_the_efficient_cap():
    # three nodes: j1 holds two until 100; w (16 GPUs) waits for them; the urgent u
    # (8 GPUs, flexible) arrives at 10, goes ahead of w and fits on the free node now
    jobs = [job("j1", 0, 100, 16), job("w", 5, 50, 16),
            job("u", 10, 1000, 8, priority=200, rigid=False)]
    site = facility_site(3)
    efficient_w = Backfill()._efficient_cap_w(SimpleNamespace(cluster=site),
                                              Job("u", 8, min_cap_w=350, max_cap_w=700))
    assert 350 <= efficient_w < 700   # so the cap below is the rule's, not the max
    capped = {j["id"]: j for j in simulate(site, jobs, "backfill", keep_jobs=True).jobs}
    assert capped["u"]["start_s"] == 10 and capped["u"]["first_cap_w"] == efficient_w
    free = {j["id"]: j for j in simulate(site, jobs, Backfill(cap_urgent=False),
                                         keep_jobs=True).jobs}
    assert free["u"]["start_s"] == 10 and free["u"]["first_cap_w"] == 700
    # with nothing waiting behind it, an urgent job starts at the engine's highest cap
    alone = {j["id"]: j for j in simulate(site, [jobs[2]], "backfill", keep_jobs=True).jobs}
    assert alone["u"]["first_cap_w"] == 700


def sim_job(job_id: str, submit_s: float, priority: int = 0, *, requeued: bool = False,
            preemptions: int = 0) -> SimJob:
    spec = job(job_id, submit_s, 10, 1, priority=priority)
    return SimJob(spec, Job(job_id, 1, priority=priority), requeued=requeued,
                  preemptions=preemptions)


@pytest.mark.parametrize("urgent_priority, expected", [
    # urgent jobs (>= 200) in submit order ahead of the rest, the preempted p (submitted
    # at 15) back in submit order among the rest; a requeued job stays first
    (200, ["r", "u1", "u2", "a", "p", "b", "c"]),
    # submit order only; the preempted p (submitted at 15) goes back between a and b
    (None, ["r", "a", "u1", "p", "b", "u2", "c"]),
])
def test_the_queue_order_of_arrivals_and_preempted_jobs(urgent_priority, expected):
    policy = Backfill(urgent_priority=urgent_priority)
    sim = SimpleNamespace(queue=[sim_job("r", 50, requeued=True)])
    for sj in (sim_job("a", 10), sim_job("u1", 12, 200), sim_job("b", 20),
               sim_job("u2", 30, 500), sim_job("c", 40),
               sim_job("p", 15, 100, preemptions=1)):
        policy.queued(sim, sj)
    assert [sj.id for sj in sim.queue] == expected


@pytest.mark.parametrize("bad", [{"urgent_priority": 1.5}, {"urgent_priority": True},
                                 {"urgent_priority": 2 ** 31}, {"depth": 0},
                                 {"interval_s": -1.0}, {"checkpoint_s": float("inf")}])
def test_backfill_options_are_checked(bad):
    with pytest.raises(SpecError, match=next(iter(bad))):
        Backfill(**bad)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=next(iter(bad))):
        PreemptingBackfill(**bad)


def test_the_report_says_which_jobs_are_urgent():
    info = simulate(facility_site(), URGENT_JOBS, "backfill").metrics["policy_info"]
    assert info["urgent_priority"] == 200 and info["cap_urgent"] is True


def test_an_urgent_arrival_that_becomes_the_head_gets_a_full_pass():
    # three nodes; j1 holds two until 100.  The head a (24 GPUs) is reserved at 100, so
    # c and d (8 GPUs, 150 s: past 100) are refused.  The urgent u (16 GPUs) arrives at
    # 5 and becomes the head: its reservation at 100 leaves a node over, so at the next
    # full pass (32: the 30 s interval from the pass at 2) c, first in the queue, takes
    # it.  A pass that tried only the jobs behind the last one tried (as if the head had
    # not changed) started d there instead.
    jobs = [job("j1", 0, 100, 16), job("a", 1, 50, 24), job("c", 2, 150, 8),
            job("d", 3, 150, 8), job("u", 5, 10, 16, priority=200)]
    got = spans(simulate(facility_site(3), jobs, "backfill", keep_jobs=True))
    assert got["c"] == (32, 182) and got["u"] == (100, 110)
    assert got["d"][0] > got["c"][0]
