"""gpusched.plan.profile: free GPUs, nodes and watts over future time, and reservations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpusched import Cluster
from gpusched.engine import Engine
from gpusched.errors import SpecError
from gpusched.job import Job
from gpusched.plan.profile import Profile
from gpusched.plan.timeline import Timeline
from tests.support.sites import BIG, facility_site

G = 8
# a node's draw per job of 8 GPUs at 700 W above idle: 8 x (700 - 65) + 1,250 busy step
JOB_W = 8 * (700 - 65) + 1250


def idle_draw_w(nodes: int) -> int:
    """What the facility row carries with every node idle (read from an engine)."""
    cluster = facility_site(nodes, facility_w=10 ** 6)
    c = cluster.constraints
    row = int(np.argmin(c.b_units))
    slack = Engine(cluster).row_slack_units()[row]
    return int((c.b_units[row] - slack) // 10 ** 6)


def job(job_id: str, gpus: int) -> Job:
    return Job(job_id, gpus, max_cap_w=700, min_cap_w=700)


class Site:
    """An engine, its timeline and the jobs running on it, to build profiles from."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.engine = Engine(cluster)
        self.timeline = Timeline(cluster)
        self.rows = self.timeline.rows

    def run(self, job_id: str, gpus: int, end_s: float) -> None:
        """Start a job of ``gpus`` GPUs expected to end at ``end_s``."""
        before = self.engine.row_slack_units()[self.rows]
        placement = self.engine.place(job(job_id, gpus))
        assert placement is not None
        units = before - self.engine.row_slack_units()[self.rows]
        whole = len(placement.nodes) if gpus >= G else 0
        self.timeline.add(job_id, end_s, gpus, tuple(units.tolist()), whole,
                          self.timeline.hall_of(placement))

    def profile(self, now_s: float = 0.0, max_breakpoints: int = 200) -> Profile:
        empty = np.array([int((self.engine.node_free_gpus() == G).sum())])
        return Profile(self.timeline, now_s, self.engine.free_gpus(),
                       self.engine.row_slack_units()[self.rows], empty, max_breakpoints)


def test_profile_frees_what_running_jobs_hold_at_their_ends():
    s = Site(facility_site(4))
    s.run("a", 16, 100.0)
    s.run("b", 8, 300.0)
    p = s.profile()
    assert p.t.tolist() == [0.0, 100.0, 300.0]
    assert p.gpus.tolist() == [8, 24, 32]
    assert p.nodes.tolist() == [1, 3, 4]
    # the facility row's slack grows by each job's watts (units are micro-watts here)
    facility = int(np.argmax(s.cluster.constraints.b_units[s.rows] < 1e14))
    assert p.units[1, facility] - p.units[0, facility] == 2 * JOB_W * 10 ** 6


def test_earliest_start_is_the_first_end_after_which_the_job_fits_over_its_run():
    s = Site(facility_site(4))
    s.run("a", 16, 100.0)
    s.run("b", 8, 300.0)
    p = s.profile()
    assert p.find(job("small", 8), 50.0)[0] == 0        # one node is free now
    assert p.find(job("pair", 16), 50.0)[0] == 1        # at t=100
    assert p.find(job("site", 32), 50.0)[0] == 2        # at t=300, every node free
    assert p.find(job("too-big", 40), 50.0) == (-1, None)
    assert p.reserve(job("too-big", 40), 50.0).start_s == math.inf


def test_reservation_is_taken_off_over_its_interval_only():
    s = Site(facility_site(4))
    s.run("a", 16, 100.0)
    p = s.profile()
    slot = p.reserve(job("three", 24), 50.0)
    assert (slot.start_s, slot.end_s) == (100.0, 150.0)
    assert p.t.tolist() == [0.0, 100.0, 150.0]           # its end became a breakpoint
    assert p.gpus.tolist() == [16, 8, 32]
    assert p.nodes.tolist() == [2, 1, 4]
    # a reservation that starts inside a segment splits it too
    p.take(p.demands(job("x", 8))[0], 20.0, 60.0)
    assert p.t.tolist() == [0.0, 20.0, 60.0, 100.0, 150.0]
    assert p.gpus.tolist() == [16, 8, 16, 8, 32]


def test_a_later_job_needing_the_reserved_nodes_waits_for_the_reservation_to_end():
    s = Site(facility_site(4))
    s.run("a", 16, 100.0)
    s.run("b", 8, 300.0)
    p = s.profile()
    assert p.reserve(job("head", 16), 100.0).start_s == 100.0   # [100, 200)
    assert p.reserve(job("second", 24), 100.0).start_s == 200.0  # [200, 300)
    # one node is free now, but a long run would hold it through the second's slot:
    # not before the second's reservation ends
    assert p.find(job("long", 8), 1000.0)[0] == p.index(300.0)
    # a short one ends before the head's reservation starts: now
    assert p.find(job("short", 8), 50.0)[0] == 0


def test_a_job_that_watts_block_waits_until_an_end_frees_them():
    # room for three jobs' watts over the idle draw of 4 nodes: GPUs are free for a
    # fourth job now, its watts only when one of the three ends
    idle_w = idle_draw_w(4)
    cluster = facility_site(4, facility_w=idle_w + 3 * JOB_W + JOB_W // 2)
    s = Site(cluster)
    for i, end in enumerate((500.0, 200.0, 900.0)):
        s.run(f"r{i}", 8, end)
    p = s.profile()
    assert p.gpus[0] == 8 and p.nodes[0] == 1          # a node is free now ...
    k, demand = p.find(job("w", 8), 10.0)
    assert demand is not None and p.t[k] == 200.0     # ... its watts at the first end
    assert not p.fits(demand, 0.0, 10.0) and p.fits(demand, 200.0, 1e6)


def test_the_breakpoints_of_many_running_jobs_are_bounded_and_freed_late_never_early():
    s = Site(facility_site(64))
    ends = np.linspace(10.0, 640.0, 64)
    for i, end in enumerate(ends):
        s.run(f"r{i}", 8, float(end))
    exact = s.profile()
    bounded = s.profile(max_breakpoints=8)
    assert len(exact) == 65 and len(bounded) <= 9
    # at every time, the bounded profile shows at most what the exact one does
    for time_s in np.linspace(0.0, 700.0, 141):
        i, j = exact.index(time_s), bounded.index(time_s)
        assert bounded.gpus[j] <= exact.gpus[i]
        assert (bounded.units[j] <= exact.units[i]).all()
    assert bounded.gpus[-1] == exact.gpus[-1] == 512   # everything ends eventually
    with pytest.raises(SpecError, match="max_breakpoints"):
        s.profile(max_breakpoints=1)


def _plan(s: Site, queue: list[tuple[str, int, float]]) -> dict:
    """Reserve ``queue`` (id, GPUs, run) in order on a fresh profile of ``s``."""
    p = s.profile()
    return {job_id: p.reserve(job(job_id, gpus), run_s) for job_id, gpus, run_s in queue}


@pytest.mark.parametrize("seed", range(25))
def test_starting_a_job_reserved_now_delays_no_earlier_reservation(seed):
    # Random small sites: reserve the queue, start (as running jobs) those reserved now,
    # plan the rest again.  Every job queued before a started one keeps its start.
    rng = np.random.default_rng(seed)
    facility_w = idle_draw_w(8) + JOB_W * int(rng.integers(3, 9))
    s = Site(facility_site(8, facility_w=facility_w))
    for i in range(int(rng.integers(2, 6))):
        gpus = int(rng.choice([1, 4, 8, 16]))
        if gpus > s.engine.free_gpus():
            break
        try:
            s.run(f"r{i}", gpus, float(rng.integers(50, 500)))
        except AssertionError:
            break   # watts: that is the site the queue sees
    queue = [(f"q{i}", int(rng.choice([1, 4, 8, 16, 24])), float(rng.integers(20, 600)))
             for i in range(8)]
    first = _plan(s, queue)
    started = [q for q in queue if first[q[0]].starts_now]
    last = max((queue.index(q) for q in started), default=-1)
    for job_id, gpus, run_s in started:
        s.run(job_id, gpus, run_s)   # as the policy would start it: now, over its run
    again = _plan(s, [q for q in queue if q not in started])
    for job_id, _, _ in queue[:max(last, 0)]:
        if job_id in again:
            assert again[job_id].start_s == first[job_id].start_s, job_id


def test_an_easy_start_would_delay_the_second_reservation():
    # The check above can fail: a job that EASY admits (it fits in what the head leaves
    # over) but that runs through the second job's slot moves that slot.
    s = Site(facility_site(4))
    s.run("a", 16, 100.0)
    s.run("b", 8, 300.0)
    queue = [("head", 16, 100.0), ("second", 24, 100.0)]
    before = _plan(s, queue)
    assert before["second"].start_s == 200.0
    s.run("easy", 8, 1000.0)
    assert _plan(s, queue)["second"].start_s == 300.0
