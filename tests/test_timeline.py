"""gpusched.plan.timeline: node-empty times, busy steps and the head's held cap.

A hand-made site (the ``tiny`` preset: one hall of 8 nodes of 8 GPUs) with jobs placed on
chosen nodes, so each expected answer can be worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpusched.engine import Engine
from gpusched.job import Job
from gpusched.plan.timeline import Timeline
from gpusched.spec import Cluster
from gpusched.spec.presets import _site


@pytest.fixture
def site():
    cluster = Cluster.preset("tiny")
    return cluster, Engine(cluster), Timeline(cluster)


def run(engine, timeline, job_id, gpus, node, end_s, cap_w=400):
    """Place ``job_id`` on ``node`` (or nodes) at ``cap_w`` and hold it as the policy
    does: the units it took, measured on the engine's slack of the held rows."""
    rows = timeline.rows
    before = engine.row_slack_units()[rows]
    nodes = [node] if isinstance(node, int) else list(node)
    placement = engine.place_on(Job(job_id, gpus, max_cap_w=700, min_cap_w=350), nodes, cap_w)
    units = before - engine.row_slack_units()[rows]
    G = engine.cluster.gpus_per_node
    timeline.add(job_id, end_s, gpus, tuple(units.tolist()), len(nodes) if gpus >= G else 0,
                 timeline.hall_of(placement), placement.nodes, placement.gpus_per_node)


def reserve(engine, timeline, job, **options):
    return timeline.reserve(job, 0.0, engine.free_gpus(), engine.row_slack_units()[timeline.rows],
                            node_free=engine.node_free_gpus(), **options)


def test_a_node_shared_by_small_jobs_is_empty_at_its_last_end(site):
    cluster, engine, timeline = site
    run(engine, timeline, "a", 4, 0, 100.0)
    run(engine, timeline, "b", 4, 0, 500.0)
    run(engine, timeline, "whole-1", 8, 1, 200.0, cap_w=350)
    for n in range(2, 8):
        run(engine, timeline, f"whole-{n}", 8, n, 1000.0, cap_w=350)
    head = Job("head", 16, max_cap_w=700, min_cap_w=350)
    assert reserve(engine, timeline, head).start_s == 500.0   # nodes 1 and 0
    # counted from the gangs' nodes only, the second empty node is at 1000 s
    slack = engine.row_slack_units()[timeline.rows]
    legacy = timeline.reserve(head, 0.0, engine.free_gpus(), slack,
                              empty_nodes=np.zeros(timeline.num_halls, np.int64))
    assert legacy.start_s == 1000.0
    assert timeline.nodes_empty_by([0], 499.0, engine.node_free_gpus()) == 0
    assert timeline.nodes_empty_by([0], 500.0, engine.node_free_gpus()) == 1


def test_the_busy_step_is_freed_when_the_node_empties_not_at_its_first_end(site):
    cluster, engine, timeline = site
    run(engine, timeline, "a", 4, 0, 100.0)   # turned node 0 busy; b keeps it busy
    run(engine, timeline, "b", 4, 0, 500.0)
    run(engine, timeline, "c", 8, 1, 300.0)
    for n in range(2, 8):
        run(engine, timeline, f"whole-{n}", 8, n, 1000.0, cap_w=350)
    head = Job("head", 8, max_cap_w=700, min_cap_w=350)
    reservation = reserve(engine, timeline, head)
    assert reservation.start_s == 300.0
    # the forecast at 300 s is the engine's slack once a and c are gone
    engine.release("a")
    engine.release("c")
    real = engine.row_slack_units()[timeline.rows]
    need = np.array(timeline.demand_units(head, None, reservation.hall))
    assert (np.array(reservation.extra_units) + need == real).all()


def test_the_head_is_held_at_the_highest_cap_that_fits_at_its_start(site):
    cluster, engine, timeline = site
    for n in range(7):
        run(engine, timeline, f"whole-{n}", 8, n, 100.0 * (n + 1), cap_w=550)
    head = Job("head", 16, max_cap_w=700, min_cap_w=350)
    at_min = reserve(engine, timeline, head)
    held = reserve(engine, timeline, head, cap_w=700)
    assert at_min.start_s == held.start_s == 100.0
    assert at_min.cap_w == 350
    # every held row: what is left over at the start less the head's watts at its cap
    slack = np.array(at_min.extra_units) + np.array(timeline.demand_units(head, None, at_min.hall))
    fits = [c for c in range(350, 701, 25)
            if (np.array(timeline.demand_units(head, c, held.hall)) <= slack).all()]
    assert 350 < held.cap_w == max(fits) < 700
    assert held.extra_units == tuple(
        (slack - np.array(timeline.demand_units(head, held.cap_w, held.hall))).tolist())
    # asked to hold at least that cap, the start moves to when its watts are free
    later = reserve(engine, timeline, head, cap_w=700, start_cap_w=held.cap_w + 25)
    assert later.start_s > held.start_s and later.cap_w >= held.cap_w + 25


def test_removing_the_last_job_of_a_node_makes_it_empty_now(site):
    cluster, engine, timeline = site
    run(engine, timeline, "a", 4, 0, 100.0)
    run(engine, timeline, "b", 4, 0, 500.0)
    timeline.remove("b")
    engine.release("b")
    empty_s = timeline.node_empty_s(engine.node_free_gpus())
    assert empty_s[0] == 100.0
    timeline.remove("a")
    engine.release("a")
    assert timeline.node_empty_s(engine.node_free_gpus())[0] == -np.inf


def test_a_gang_waits_for_a_whole_pod_when_the_only_ready_pod_is_out_of_watts():
    """The engine puts a gang in one pod whenever some pod has its nodes, and only there.

    Hall 1: two empty 16-node pods, but a 100 kW switchboard (66 kW of it idle draw) that cannot feed either.
    Hall 2: two pods of 16 nodes, each half busy, so hall 2 has 16 empty nodes, spread
    over its pods.  The engine refuses the 16-node gang now (hall 1's pods are the only
    ones with 16 empty nodes), so the reservation is not "now": it is when the first
    hall-2 pod empties (100 s), and the engine then places the gang there.  Counting
    empty nodes per hall only, the timeline said "now" (issue 16, synthetic seed 2).
    """
    spec = _site("two-halls", [("hall-1", "liquid", 2, 100_000), ("hall-2", "liquid", 2, 400_000)],
                 1e6, racks_per_pod=2)
    cluster = Cluster.from_dict(spec)
    engine, timeline = Engine(cluster), Timeline(cluster)
    pods = [np.flatnonzero(cluster.node_pod == p) for p in range(4)]
    run(engine, timeline, "a", 64, pods[2][:8].tolist(), 100.0)
    run(engine, timeline, "b", 64, pods[3][:8].tolist(), 200.0)
    head = Job("head", 128, max_cap_w=700, min_cap_w=350)
    assert engine.place(head) is None
    assert "hall-1 switchboard" in str(engine.explain(head))
    reservation = reserve(engine, timeline, head)
    assert reservation.start_s == 100.0
    assert reservation.hall == 1
    engine.release("a")
    timeline.remove("a")
    placement = engine.place(head)
    assert placement is not None and set(placement.nodes) <= set(pods[2].tolist())


def test_a_gang_no_pod_can_take_is_reserved_spread_over_halls_as_the_engine_spreads_it():
    """With no pod holding its nodes, the engine spreads a gang over pods site-wide.

    Two halls of two 16-node pods, every pod with 6 empty nodes: 12 per hall, 24 in all.
    A 24-node gang fits in no pod and in no hall's empty nodes, but the engine places it
    now over both halls; counted per hall, the timeline made it wait for the first end.
    """
    spec = _site("two-halls", [("hall-1", "liquid", 2, 400_000), ("hall-2", "liquid", 2, 400_000)],
                 1e6, racks_per_pod=2)
    cluster = Cluster.from_dict(spec)
    engine, timeline = Engine(cluster), Timeline(cluster)
    for p in range(4):
        nodes = np.flatnonzero(cluster.node_pod == p)[:10].tolist()
        run(engine, timeline, f"busy-{p}", 80, nodes, 100.0 * (p + 1))
    head = Job("head", 192, max_cap_w=700, min_cap_w=350)
    reservation = reserve(engine, timeline, head)
    assert reservation.start_s == 0.0
    assert reservation.hall == -1
    assert reservation.extra_nodes == 0
    # each hall's rows are charged half the gang (12 of its 24 nodes are there)
    hall_rows = [i for i, r in enumerate(timeline.rows)
                 if cluster.constraints.names[r].endswith("switchboard")]
    slack = engine.row_slack_units()[timeline.rows]
    taken = slack - np.array(reservation.extra_units)
    assert len(hall_rows) == 2 and taken[hall_rows[0]] == taken[hall_rows[1]] > 0
    placement = engine.place(head)
    assert placement is not None
    assert {int(np.asarray(cluster.rack_hall)[cluster.node_rack[n]]) for n in placement.nodes} == {0, 1}
