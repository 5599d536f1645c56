"""Cluster-wide allocation (gpusched.plan): the MILP, apply, and the cap LP.

Engine-facing tests run on both backends through the ``backend`` fixture.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpusched import Cluster, DuplicateJobError, Engine, GpuschedError, Job, JobError
from gpusched.plan import Allocation, AllocationError, CapPlan, allocate, apply, rebalance_caps

from .support.strategies import clusters, jobs as job_strategy
from .support.verify import check_engine


def value(job: Job, cap_w: int) -> float:
    return job.weight * job.gpus * job.throughput(cap_w, 700)  # every site here is H100


def delivered(placements, jobs) -> float:
    by_id = {j.id: j for j in jobs}
    return sum(value(by_id[p.job_id], p.cap_w) for p in placements.values())


def brute_force(cluster: Cluster, queue: list[Job], backend: str) -> float:
    """Best sum weight*gpus*s(cap) over every (skip | pod, cap) per job, realised by the engine.

    Each combination is placed on a fresh engine in apply's order (largest first) with
    rigid caps; it counts only if the engine places every chosen job.
    """
    G = cluster.gpus_per_node
    options = [[None] + [(p, c) for p in range(cluster.num_pods)
                         for c in cluster.power.cap_grid_w(j.max_cap_w, j.min_cap_w)]
               for j in queue]
    order = sorted(range(len(queue)), key=lambda i: (queue[i].gpus <= G, -queue[i].gpus))
    engine = Engine(cluster, backend=backend)
    best = 0.0
    for combo in itertools.product(*options):
        total = sum(value(queue[i], combo[i][1]) for i in range(len(queue)) if combo[i])
        if total <= best:
            continue
        placed, ok = [], True
        for i in order:
            if combo[i] is None:
                continue
            pod, cap = combo[i]
            if engine.place(queue[i].replace(max_cap_w=cap, min_cap_w=cap), pod=pod) is None:
                ok = False
                break
            placed.append(queue[i].id)
        engine.release_many(placed)
        if ok:
            best = total
    return best


def random_queue(rng: random.Random, n: int, sizes, min_caps, prefix: str = "j") -> list[Job]:
    return [Job(f"{prefix}{i}", rng.choice(sizes), min_cap_w=rng.choice(min_caps),
                weight=rng.choice([1.0, 2.0]), sensitivity=rng.choice([1.0, 1.25, 2.0]))
            for i in range(n)]


# ---- brute force -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_tiny(tiny, backend, seed):
    """The tiny preset's rack rows bind; the derate makes the MILP conservative there."""
    rng = random.Random(seed)
    queue = random_queue(rng, 3, [1, 2, 4, 8, 16, 24, 32], [650, 675, 700])
    best = brute_force(tiny, queue, backend)
    engine = Engine(tiny, backend=backend)
    allocation = allocate(engine, queue)
    placed = apply(engine, allocation)
    check_engine(engine)
    got = delivered(placed, queue)
    assert set(placed) == set(allocation.admitted)
    assert got <= best + 1e-6, "the allocation beat the exhaustive search: the search is wrong"
    assert got >= 0.85 * best - 1e-9, (queue, allocation, best)


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_where_only_shared_rows_bind(backend, seed):
    """colossus-100k at scale 0.02 (6 pods) with a binding facility: within 1%."""
    cluster = Cluster.preset("colossus-100k", scale=0.02, facility_mw=60)
    rng = random.Random(100 + seed)
    queue = random_queue(rng, 3, [64, 128, 256, 512], [650, 675, 700])
    best = brute_force(cluster, queue, backend)
    engine = Engine(cluster, backend=backend)
    allocation = allocate(engine, queue, mip_rel_gap=0)
    placed = apply(engine, allocation)
    check_engine(engine)
    got = delivered(placed, queue)
    assert got <= best + 1e-6
    assert got >= 0.99 * best - 1e-9, (queue, allocation, best)


@pytest.mark.parametrize("seed", range(3))
def test_pod_and_job_classes_lose_nothing(seed):
    """Aggregating interchangeable pods and jobs is exact (power-of-two sizes)."""
    cluster = Cluster.preset("colossus-100k", scale=0.05, facility_mw=70)
    rng = random.Random(seed)
    queue = random_queue(rng, 30, [1, 2, 8, 16, 64, 256, 512, 1024], [500, 600, 700])
    engine = Engine(cluster)
    # The per-pod model is full of symmetric optima (14 pods, 4 of them alike per hall):
    # proving a zero gap takes HiGHS minutes, which is the point of the classes.  Its best
    # within 8 s is a lower bound on the optimum and its bound an upper one, which is all
    # the two assertions below need.
    exact = allocate(engine, queue, aggregate=False, mip_rel_gap=1e-4, time_limit_s=8,
                     node_limit=10**9, exact_max_vars=10**9)
    # the grouped model is solved to optimality; the clock is only a safety net (at 30 s
    # a machine busy with other work failed this test while a quiet one solves it in 1 s)
    grouped = allocate(engine, queue, mip_rel_gap=1e-4, time_limit_s=600, node_limit=10**9,
                       exact_max_vars=10**9)
    assert exact.method == "exact" and exact.stats["pod_classes"] == cluster.num_pods
    assert grouped.status == "optimal" and grouped.stats["pod_classes"] < cluster.num_pods
    assert grouped.objective >= exact.objective * (1 - 1e-4) - 1e-6
    assert grouped.objective <= exact.bound + 1e-6


def test_lp_fix_is_close_to_the_full_milp():
    cluster = Cluster.preset("colossus-100k", scale=0.1)
    rng = random.Random(7)
    queue = random_queue(rng, 60, [8, 16, 64, 128, 256, 512, 1024, 2048], [400, 500, 700])
    engine = Engine(cluster)
    full = allocate(engine, queue, time_limit_s=60, node_limit=10**9, mip_rel_gap=1e-6,
                    exact_max_vars=10**9)
    fixed = allocate(engine, queue, time_limit_s=60, node_limit=10**9, mip_rel_gap=1e-6,
                     exact_max_vars=0)
    assert fixed.method == "lp-fix"
    assert fixed.objective <= full.objective + 1e-6
    assert fixed.objective >= 0.98 * full.objective
    # the bound is the LP's: it is above every feasible value
    assert fixed.bound >= full.objective - 1e-6


# ---- apply -----------------------------------------------------------------------------

def test_apply_places_every_admitted_job_on_colossus(backend):
    """A loaded colossus, a queue with jobs larger than a pod (spanning), power binding."""
    cluster = Cluster.preset("colossus-100k", scale=0.25, facility_mw=80)
    engine = Engine(cluster, backend=backend)
    sizes = [1, 2, 4, 8, 8, 16, 64, 256]
    for i in range(150):
        engine.place(Job(f"bg-{i}", sizes[i % len(sizes)], min_cap_w=400))
    rng = random.Random(1)
    queue = random_queue(rng, 120, [1, 2, 4, 8, 16, 64, 256, 512, 1024, 4096],
                         [350, 500, 700], prefix="q")
    allocation = allocate(engine, queue)
    assert allocation.status in ("optimal", "work_limit", "time_limit")
    assert allocation.spans, "expected some job to span pods"
    before = len(engine)
    placed = apply(engine, allocation)
    assert set(placed) == set(allocation.admitted)
    assert len(engine) == before + len(placed)
    for job_id, placement in placed.items():
        job = allocation.jobs[job_id]
        assert job.min_cap_w <= placement.cap_w <= allocation.cap_w[job_id]
        if job_id not in allocation.spans:
            assert all(cluster.node_pod[n] == allocation.pod[job_id] for n in placement.nodes)
    check_engine(engine)
    assert set(allocation.admitted).isdisjoint(allocation.dropped)
    assert set(allocation.admitted) | set(allocation.dropped) == {j.id for j in queue}


def test_allocation_beats_greedy_on_a_binding_facility(backend):
    cluster = Cluster.preset("colossus-100k", scale=0.1, facility_mw=85)
    rng = random.Random(3)
    queue = random_queue(rng, 80, [8, 16, 64, 128, 256, 512], [350, 450, 700])
    greedy = Engine(cluster, backend=backend)
    greedy_value = sum(value(j, p.cap_w) for j in queue
                       if (p := greedy.place(j)) is not None)
    engine = Engine(cluster, backend=backend)
    placed = apply(engine, allocate(engine, queue))
    check_engine(engine)
    assert delivered(placed, queue) > greedy_value


def test_apply_reports_a_job_the_engine_refuses(tiny, backend):
    engine = Engine(tiny, backend=backend)
    allocation = allocate(engine, [Job("a", 16), Job("b", 8)])
    assert set(allocation.admitted) == {"a", "b"}
    engine.place(Job("squatter", 16))   # the state changes between solve and apply
    engine.place(Job("squatter-2", 16))
    placed = apply(engine, allocation)
    refused = set(allocation.admitted) - set(placed)
    assert refused, "expected the engine to refuse something"
    for job_id in refused:
        assert "refused by the engine" in allocation.dropped[job_id]
    check_engine(engine)


# ---- results that are not solutions ------------------------------------------------------

def test_empty_queue(tiny, backend):
    engine = Engine(tiny, backend=backend)
    allocation = allocate(engine, [])
    assert allocation.status == "empty"
    assert allocation.admitted == () and allocation.objective == 0
    assert apply(engine, allocation) == {}


def test_infeasible_queue_is_a_status_not_an_exception(tiny, backend):
    engine = Engine(tiny, backend=backend)
    # four whole nodes at 700 W need 25.3 kW of a busway with 21.7 kW left
    allocation = allocate(engine, [Job("big", 32)])
    assert allocation.status == "infeasible"
    assert allocation.admitted == ()
    assert "no power" in allocation.dropped["big"] and "busway" in allocation.dropped["big"]
    assert apply(engine, allocation) == {}
    assert len(engine) == 0


def test_full_cluster_is_infeasible(tiny, backend):
    engine = Engine(tiny, backend=backend)
    for i in range(4):
        engine.place(Job(f"f{i}", 8, min_cap_w=200))
    for i in range(8):
        engine.place(Job(f"s{i}", 4, min_cap_w=200))
    allocation = allocate(engine, [Job("late", 8)])
    assert allocation.status == "infeasible"
    assert "late" in allocation.dropped


# ---- bad arguments ------------------------------------------------------------------------

def test_bad_arguments_raise_and_change_nothing(tiny, backend):
    engine = Engine(tiny, backend=backend)
    engine.place(Job("running", 8))
    before = engine.snapshot()
    with pytest.raises(JobError, match="queue\\[1\\]"):
        allocate(engine, [Job("a", 1), {"id": "b", "gpus": 1}])
    with pytest.raises(DuplicateJobError, match="twice"):
        allocate(engine, [Job("a", 1), Job("a", 2)])
    with pytest.raises(DuplicateJobError, match="already running"):
        allocate(engine, [Job("running", 1)])
    with pytest.raises(JobError, match="multiple of 8"):
        allocate(engine, [Job("odd", 12)])
    with pytest.raises(AllocationError, match="time_limit_s"):
        allocate(engine, [Job("a", 1)], time_limit_s=-1)
    with pytest.raises(AllocationError, match="time_limit_s"):
        allocate(engine, [Job("a", 1)], time_limit_s=math.nan)
    with pytest.raises(AllocationError, match="mip_rel_gap"):
        allocate(engine, [Job("a", 1)], mip_rel_gap=-0.1)
    with pytest.raises(AllocationError, match="sequence"):
        allocate(engine, 5)
    with pytest.raises(AllocationError, match="Allocation"):
        apply(engine, {"admitted": ["a"]})
    with pytest.raises(AllocationError, match="apply"):
        rebalance_caps(engine, apply="yes")
    assert issubclass(AllocationError, GpuschedError)
    assert engine.snapshot() == before


# ---- rebalance_caps -----------------------------------------------------------------------

def test_nothing_binds_every_job_gets_its_max_cap(colossus, backend):
    engine = Engine(colossus, backend=backend)
    for i, gpus in enumerate([1, 8, 64, 512]):
        engine.place(Job(f"j{i}", gpus, min_cap_w=300))
        engine.set_cap(f"j{i}", 300 + 25 * i)
    plan = rebalance_caps(engine)
    assert plan.cap_w == {f"j{i}": 700 for i in range(4)}
    assert plan.binding == [] and plan.duals == {}
    assert "no limit binds" in plan.describe()
    plan.apply(engine)
    assert [p.cap_w for p in engine.placements()] == [700] * 4
    check_engine(engine)


def test_rebalance_on_a_binding_facility(backend):
    cluster = Cluster.preset("colossus-100k", scale=0.1, facility_mw=70)
    engine = Engine(cluster, backend=backend)
    rng = random.Random(5)
    queue = random_queue(rng, 120, [8, 16, 64, 128, 256], [300, 400, 500])
    for job in queue:
        engine.place(job)      # greedy: early jobs at 700 W, late ones squeezed
    jobs = {j.id: j for j in engine.jobs()}
    before = sum(value(jobs[p.job_id], p.cap_w) for p in engine.placements())
    plan = rebalance_caps(engine)
    assert isinstance(plan, CapPlan) and plan.status == "optimal"
    assert set(plan.cap_w) == set(jobs)
    for job_id, cap in plan.cap_w.items():
        job = jobs[job_id]
        assert job.min_cap_w <= cap <= job.max_cap_w
        assert (job.max_cap_w - cap) % 25 == 0 or cap == job.min_cap_w
    assert all(price >= 0 for price in plan.duals.values())
    assert plan.binding and plan.binding[0] == "facility IT limit"
    assert plan.lp_objective >= before - 1e-6
    assert plan.objective > before
    text = plan.describe()
    assert text.startswith("facility IT limit: ") and "GPU-equivalents of throughput per kW" in text
    # one more kW is worth w * s'(cap) * 1000 of the marginal job: 0.1 here (a job near
    # its max cap), at most 2 * 2.0 * 2 * (1 - 300/700) / 700 * 1000 = 6.5 for any job
    assert 0.01 < plan.duals["facility IT limit"] < 6.6
    placements = plan.apply(engine)
    assert {p.job_id: p.cap_w for p in engine.placements()} == plan.cap_w
    assert set(placements) <= set(plan.cap_w)
    check_engine(engine)


def test_rebalance_with_nothing_running(tiny, backend):
    plan = rebalance_caps(Engine(tiny, backend=backend))
    assert plan.status == "empty" and plan.cap_w == {} and plan.binding == []


def test_rebalance_apply_flag_sets_caps(tiny, backend):
    engine = Engine(tiny, backend=backend)
    engine.place(Job("a", 16, min_cap_w=300))
    engine.place(Job("b", 16, min_cap_w=300))
    engine.set_cap("a", 300)
    plan = rebalance_caps(engine, apply=True)
    assert {p.job_id: p.cap_w for p in engine.placements()} == plan.cap_w
    check_engine(engine)


# ---- properties --------------------------------------------------------------------------

@st.composite
def instances(draw):
    cluster = draw(clusters(max_pods=4, max_racks_per_pod=3, max_nodes_per_rack=4))
    n = draw(st.integers(0, 6))
    queue = [draw(job_strategy(f"q{i}", max_gpus=32)) for i in range(n)]
    return cluster, queue


@settings(max_examples=40, deadline=None)
@given(instances())
def test_allocate_then_apply_keeps_every_row(instance):
    cluster, queue = instance
    queue = [j for j in queue if j.gpus <= cluster.num_gpus]
    engine = Engine(cluster)
    allocation = allocate(engine, queue, time_limit_s=2)
    assert isinstance(allocation, Allocation)
    assert 0 <= allocation.gap <= 1 + 1e-9
    assert allocation.bound >= allocation.objective - 1e-6
    placed = apply(engine, allocation)
    check_engine(engine)
    assert set(placed) | set(allocation.dropped) == {j.id for j in queue}
    for job_id, placement in placed.items():
        assert placement.cap_w <= allocation.cap_w[job_id]
    plan = rebalance_caps(engine)
    assert all(price >= 0 for price in plan.duals.values())
    plan.apply(engine)
    check_engine(engine)


# ---- one curve, one TDP: the allocator and the simulator read the same s ----------------

def test_a_500_w_site_reads_one_curve_in_allocate_rebalance_and_simulate():
    """On a GPU of 500 W TDP, s(cap) is the job's curve at cap / 500, everywhere."""
    from gpusched.power import H100_CURVE, throughput
    from gpusched.simulate import TraceJob, simulate

    spec = {"name": "tdp-500", "power": {"gpu_tdp_w": 500, "cap_min_w": 150,
                                         "cap_max_w": 500, "gpu_idle_w": 50},
            "facility": {"name": "facility", "it_limit_w": 1e9},
            "halls": [{"name": "hall-1", "switchboard_w": 1e9, "cooling_w": 1e9}],
            "rows": [{"name": "row-1", "hall": "hall-1", "busway_w": 1e9}],
            "pods": [{"name": "pod-1"}],
            "racks": [{"name": "rack-0", "row": "row-1", "pod": "pod-1", "kind": "air",
                       "nodes": 2, "feed_w": 1e9, "air_cooling_w": 1e9}]}
    cluster = Cluster.from_dict(spec)
    power = cluster.power
    for curve, s_400 in ((H100_CURVE, float(H100_CURVE.speed(0.8 * 700, 700))),
                         (None, float(throughput(560, 1.25, 700)))):
        job = Job("a", 8, max_cap_w=400, min_cap_w=400, curve=curve)
        assert power.speed(job, 400) == pytest.approx(s_400)   # 400 / 500 = 0.8 of TDP
        assert power.speed(job, 400) != pytest.approx(job.throughput(400, 700))
        engine = Engine(cluster)
        allocation = allocate(engine, [job])
        assert allocation.cap_w == {"a": 400}
        assert allocation.objective == pytest.approx(8 * s_400)
        apply(engine, allocation)
        assert rebalance_caps(engine).objective == pytest.approx(8 * s_400)
        trace = [TraceJob("a", 0.0, 1000.0, 8, min_cap_w=400, max_cap_w=400,
                          curve=None if curve is None else curve.name)]
        result = simulate(cluster, trace, "optimize", keep_jobs=True)
        assert result.jobs[0]["finish_s"] == pytest.approx(1000.0 / s_400)
        # the bound reads it too: 16 GPUs' worth of work with 8 GPUs present = 8 x s
        assert result.metrics["totals"]["delivered_gpu_hours"] == pytest.approx(
            8 * s_400 * (1000.0 / s_400) / 3600, abs=0.05)


def test_allocate_levels_include_a_tables_points():
    """Chords between the MILP's levels are the table's own segments."""
    from gpusched.plan.model import cap_levels_w
    from gpusched.power import PowerModel, TabulatedCurve

    curve = TabulatedCurve("odd", ((0.5, 0.8), (710 / 1400, 0.81), (0.55, 0.85), (1.0, 1.0)),
                           "test")
    power = PowerModel(cap_step_w=50)
    job = Job("a", 8, max_cap_w=700, min_cap_w=350, curve=curve)
    levels = cap_levels_w(power, job)
    assert 385 in levels and 355 in levels and levels == sorted(levels, reverse=True)
    engine = Engine(Cluster.preset("tiny"))
    allocation = allocate(engine, [job])
    assert allocation.objective == pytest.approx(8 * float(curve.speed(allocation.cap_w["a"],
                                                                       700)))
