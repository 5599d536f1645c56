"""A site that changes: drains, failures, domain failures, repair, hot spares, live limits.

Every test runs on both twins (the ``backend`` fixture); ``check_engine`` recomputes GPU
use and power from the placements and node states alone and holds every row against the
live limits.  The last tests run one scripted story on both twins and compare them.
"""

from __future__ import annotations

import pytest

from gpusched import Engine, Job
from gpusched.plan import plan_envelope
from gpusched.errors import (DomainError, LimitError, RepairError, SpareError,
                             StalePlanError, UnknownJobError, UnknownNodeError)

from .conftest import both_backends
from .support.verify import check_engine


def _engine(tiny, backend):
    return Engine(tiny, backend=backend)


# ---- node states ---------------------------------------------------------------------

def test_drain_keeps_running_jobs_and_takes_no_new_ones(tiny, backend):
    engine = _engine(tiny, backend)
    engine.place(Job("small", 4))                      # node 0, best fit later
    assert engine.drain(0) == [0]
    assert engine.drain([0, "rack-1-n0"]) == []        # idempotent: nothing changed
    assert engine.node_state(0) == "draining"
    assert engine.placement("small").nodes == (0,)
    placed = engine.place(Job("more", 4))
    assert placed is not None and placed.nodes != (0,)
    check_engine(engine)
    assert engine.restore(0) == [0]
    assert engine.restore(0) == []
    assert engine.place(Job("fill", 4)).nodes == (0,)  # best fit: node 0 again
    check_engine(engine)


def test_fail_frees_the_node_power_and_degrades_the_job(tiny, backend):
    engine = _engine(tiny, backend)
    engine.place(Job("gang", 16, min_cap_w=400))       # nodes 0, 1
    rack_before = int(engine.rack_power_w()[0])
    assert engine.fail("rack-1-n1") == ["gang"]
    assert engine.fail(1) == []                         # already down: nothing hit
    # the node drew busy power at 700 W; now it draws node_down_w (0 W)
    power = tiny.power
    busy_node_w = power.node_other_busy_w + 8 * 700
    assert int(engine.rack_power_w()[0]) == rack_before - busy_node_w + power.node_down_w
    assert engine.degraded() == {"gang": (1,)}
    assert engine.placement("gang").nodes == (0,)
    assert engine.node_states().tolist()[1] == 2
    assert engine.nodes_by_state()["down"] == ["rack-1-n1"]
    check_engine(engine)
    # nothing is ever placed on a down node
    for i in range(6):
        p = engine.place(Job(f"f{i}", 8))
        assert p is None or 1 not in p.nodes
    check_engine(engine)
    # release of a degraded job frees only what it still holds
    engine.release("gang")
    check_engine(engine)
    assert engine.degraded() == {}


def test_no_search_path_takes_a_node_that_is_not_up(tiny, backend):
    """Gangs inside a pod, small jobs with a pod hint and spread gangs scan racks
    directly (not the free lists): they must skip nodes that are not up too."""
    engine = _engine(tiny, backend)
    engine.fail([0, 1])
    engine.drain(2)
    assert engine.place(Job("gang", 16), pod=0) is None        # pod-1: only node 3 is up
    assert engine.place(Job("small", 4), pod=0).nodes == (3,)
    gang = engine.place(Job("big", 24, min_cap_w=300))
    assert gang is not None and not {0, 1, 2} & set(gang.nodes)
    check_engine(engine)


def test_place_on_refuses_a_node_that_is_not_up(tiny, backend):
    from gpusched.errors import PlacementError

    engine = _engine(tiny, backend)
    engine.fail(2)
    engine.drain(3)
    for node in (2, 3):
        with pytest.raises(PlacementError, match="only up nodes"):
            engine.place_on(Job("x", 8), [node], 500)
    check_engine(engine)


def test_explain_names_nodes_that_are_not_up(tiny, backend):
    engine = _engine(tiny, backend)
    engine.drain(range(0, 8))
    why = engine.explain(Job("x", 8))
    assert why.status == "no-capacity"
    assert "rack-1-n0 (draining)" in why.message
    assert why.held_nodes[0] == "rack-1-n0 (draining)"


def test_fail_domain_uses_the_constraint_rows(tiny, backend):
    engine = _engine(tiny, backend)
    engine.place(Job("a", 16))
    assert engine.fail_domain("rack-1 feed") == ["a"]
    assert engine.nodes_by_state()["down"] == ["rack-1-n0", "rack-1-n1"]
    assert engine.fail_domain("row-1 busway") == []     # rack-2 too; no job left there
    assert len(engine.nodes_by_state()["down"]) == 4
    check_engine(engine)
    assert engine.restore_domain("row-1 busway") == [0, 1, 2, 3]
    check_engine(engine)
    with pytest.raises(DomainError, match="facility"):
        engine.fail_domain("facility IT limit")
    with pytest.raises(DomainError, match="not a failure domain"):
        engine.fail_domain("rack-9 feed")


# ---- repair --------------------------------------------------------------------------

def test_repair_replaces_exactly_the_lost_nodes_nearest_first(tiny, backend):
    engine = _engine(tiny, backend)
    engine.place(Job("gang", 16, min_cap_w=400))       # nodes 0, 1 (rack-1)
    engine.place(Job("other", 8))                       # node 2 (rack-2, pod-1)
    engine.fail(0)
    repaired = engine.repair("gang")
    # rack-1 has no other up node; pod-1's free one is node 3
    assert repaired.nodes == (1, 3)
    assert repaired.cap_w == 700
    assert engine.degraded() == {}
    check_engine(engine)
    with pytest.raises(RepairError, match="lost no node"):
        engine.repair("gang")
    with pytest.raises(UnknownJobError):
        engine.repair("nobody")


def test_repair_of_several_lost_nodes_in_one_call(tiny, backend):
    engine = _engine(tiny, backend)
    engine.place(Job("gang", 32, min_cap_w=300))       # nodes 0..3
    assert engine.fail([0, 2]) == ["gang"]
    assert engine.degraded() == {"gang": (0, 2)}
    repaired = engine.repair("gang")
    assert len(repaired.nodes) == 4 and not {0, 2} & set(repaired.nodes)
    check_engine(engine)


def test_repair_lowers_a_flexible_cap_and_refuses_a_rigid_one(tiny, backend):
    for min_cap, expect in ((300, "lower"), (700, None)):
        engine = _engine(tiny, backend)
        engine.place(Job("gang", 16, min_cap_w=min_cap))
        engine.fail(1)
        # squeeze the facility so the replacement fits only below 700 W
        load = engine.limits_w()[-1] - engine.row_slack_w()[-1]
        engine.set_limit("facility IT limit", load + 3000)
        result = engine.repair("gang")
        if expect is None:
            assert result is None
            why = engine.explain_repair("gang")
            assert why.status == "no-power" and why.binding == "facility IT limit"
            assert engine.degraded() == {"gang": (1,)}
        else:
            assert result is not None and result.cap_w < 700
            assert len(result.nodes) == 2
        check_engine(engine)


# ---- hot spares ----------------------------------------------------------------------

def test_spares_hold_nodes_and_watts_and_serve_repairs_first(tiny, backend):
    engine = _engine(tiny, backend)
    idle_total = engine.total_power_w()
    report = engine.set_spares(1, per="pod")
    assert report.nodes == (3, 7)                      # highest index in each pod
    power = tiny.power
    reserve = power.busy_step_w + 8 * (power.gpu_tdp_w - power.gpu_idle_w)
    assert report.held_w == 2 * reserve and report.gpus == 16
    assert engine.total_power_w() == idle_total + 2 * reserve
    check_engine(engine)
    # normal placement never takes a spare
    placed = [engine.place(Job(f"j{i}", 8)) for i in range(8)]
    assert sum(p is not None for p in placed) <= 6
    assert all(p is None or not {3, 7} & set(p.nodes) for p in placed)
    check_engine(engine)
    victim = next(p for p in placed if p is not None)
    engine.fail(victim.nodes[0])
    repaired = engine.repair(victim.job_id)
    assert repaired.nodes in ((3,), (7,))
    check_engine(engine)
    # the pool is one short until the failed node comes back, which refills it
    assert sum(engine.spares().short.values()) == 1
    engine.restore(victim.nodes[0])
    assert engine.spares().short == {}
    check_engine(engine)


def test_spare_policy_bigger_than_a_pod_is_refused(tiny, backend):
    engine = _engine(tiny, backend)
    before = engine.snapshot()
    with pytest.raises(SpareError, match="smallest pod"):
        engine.set_spares(5)
    with pytest.raises(SpareError, match="'pod' or 'row'"):
        engine.set_spares(1, per="hall")
    assert engine.snapshot() == before
    assert engine.set_spares(0).nodes == ()


# ---- live limits and the envelope plan ------------------------------------------------

def test_set_limit_never_refuses_and_blocks_new_load(tiny, backend):
    engine = _engine(tiny, backend)
    engine.place(Job("flex", 16, min_cap_w=300))
    engine.place(Job("rigid", 8))
    before = engine.set_limit("facility IT limit", 20_000)
    assert before == tiny.constraints.b[-1]
    over = engine.violations()
    assert [name for name, _l, _b in over] == ["facility IT limit"]
    assert over[0][2] == 20_000.0
    assert engine.place(Job("new", 1)) is None          # the row is over: no more load
    engine.set_cap("flex", 600)                         # lowering is always allowed
    with pytest.raises(Exception):
        engine.set_cap("flex", 700)                      # raising is not
    check_engine(engine, allow_over=True)
    with pytest.raises(LimitError):
        engine.set_limit("facility IT limit", float("nan"))
    with pytest.raises(LimitError):
        engine.set_limit("facility IT limit", -1)


def test_plan_envelope_caps_first_then_evicts_and_apply_holds(tiny, backend):
    engine = _engine(tiny, backend)
    engine.place(Job("flex", 16, min_cap_w=300, weight=2))
    engine.place(Job("rigid", 8))
    engine.place(Job("flex2", 16, min_cap_w=300))
    # a cut that caps alone can meet
    engine.set_limit("facility IT limit", 40_000)
    plan = plan_envelope(engine)
    assert plan.status == "caps" and plan.evict == ()
    assert plan.caps and all(cap < 700 for cap in plan.caps.values())
    engine.apply_envelope(plan)
    assert engine.violations() == []
    check_engine(engine)
    # a deeper cut needs an eviction: the lowest weight, fewest GPUs
    engine.set_limit("facility IT limit", 27_000)
    plan = plan_envelope(engine)
    assert plan.status == "evictions"
    assert "flex" not in plan.evict
    stale = plan
    engine.set_limit("row-2 busway", 1e9)
    with pytest.raises(StalePlanError):
        engine.apply_envelope(stale)
    plan = plan_envelope(engine)
    engine.apply_envelope(plan)
    assert engine.violations() == []
    check_engine(engine)


def test_plan_envelope_when_nothing_is_over(tiny, backend):
    engine = _engine(tiny, backend)
    plan = plan_envelope(engine)
    assert plan.status == "holds" and plan.caps == {} and plan.evict == ()


# ---- snapshots -------------------------------------------------------------------------

def test_snapshot_carries_node_states_spares_limits_and_degraded_jobs(tiny, backend, tmp_path):
    engine = _engine(tiny, backend)
    engine.set_spares(1)
    engine.place(Job("gang", 16, min_cap_w=300))
    engine.place(Job("small", 2))
    engine.fail(1)
    engine.drain(5)
    engine.set_limit("facility IT limit", 20_000)
    snap = engine.snapshot()
    assert set(snap["site"]) == {"nodes", "spare_policy", "limit_units", "over", "degraded"}
    path = tmp_path / "state.json"
    engine.save(path)
    for other in both_backends():
        loaded = Engine.load(tiny, path, backend=other)
        assert loaded.snapshot() == snap
        assert loaded._index_state() == engine._index_state()
        assert loaded.degraded() == {"gang": (1,)}
        assert loaded.spares() == engine.spares()
        check_engine(loaded, allow_over=True)


def test_a_snapshot_without_site_state_still_loads(tiny, backend):
    engine = _engine(tiny, backend)
    engine.place(Job("a", 8))
    snap = engine.snapshot()
    assert "site" not in snap                           # as every snapshot before it
    loaded = Engine.restore(tiny, snap, backend=backend)
    assert loaded.placements() == engine.placements()


# ---- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("nodes", [99, -1, "no-such-host", 1.5, True, [0, 99]])
def test_unknown_nodes_change_nothing(tiny, backend, nodes):
    engine = _engine(tiny, backend)
    engine.place(Job("a", 8))
    before = engine._index_state()
    for op in (engine.drain, engine.fail, engine.restore):
        with pytest.raises(UnknownNodeError):
            op(nodes)
    assert engine._index_state() == before


# ---- the twins agree on a whole story --------------------------------------------------

def _story(engine):
    out = []
    engine.set_spares(1, per="row")
    for i, gpus in enumerate((16, 8, 4, 2, 16, 1)):
        out.append(engine.place(Job(f"j{i}", gpus, min_cap_w=300)))
    out.append(engine.fail([0, 5]))
    out.append(engine.fail_domain("rack-3 feed"))
    for job_id in list(engine.degraded()):
        out.append(engine.repair(job_id))
    out.append(engine.set_limit("hall-1 switchboard", 25_000))
    plan = plan_envelope(engine)
    out.append((plan.caps, plan.evict, plan.status))
    engine.apply_envelope(plan)
    out.append(engine.restore(range(8)))
    out.append(engine.spares())
    out.append(engine.violations())
    return out


def test_both_twins_tell_the_same_story(tiny):
    answers, states = [], []
    for backend in both_backends():
        engine = Engine(tiny, backend=backend)
        answers.append(_story(engine))
        states.append(engine._index_state())
        check_engine(engine, allow_over=True)
    assert all(a == answers[0] for a in answers)
    assert all(s == states[0] for s in states)


def test_plan_envelope_evicts_by_priority_and_preemptibility_before_weight(tiny, backend):
    """DESIGN: evictions where caps cannot get there take the lowest priority first; a job
    that is not preemptible goes only after every preemptible one, whatever its weight."""
    engine = _engine(tiny, backend)
    engine.place(Job("low-heavy", 16, weight=5, priority=0))     # rigid: caps cannot help
    engine.place(Job("high-light", 16, weight=1, priority=3))
    engine.place(Job("keep", 16, weight=0.5, priority=0, preemptible=False))
    load = engine.limits_w()[-1] - engine.row_slack_w()[-1]
    # one 16-GPU job's worth must go
    engine.set_limit("facility IT limit", load - 5_000)
    plan = plan_envelope(engine)
    assert plan.status == "evictions"
    assert plan.evict == ("low-heavy",)
    engine.apply_envelope(plan)
    assert engine.violations() == []
    check_engine(engine)
