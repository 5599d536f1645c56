"""Preemption plans: least cost against a brute force, atomic apply, stale plans refused."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from gpusched import Cluster, Engine, Job
from gpusched.errors import (DuplicateJobError, PlacementError, PreemptionError,
                             StalePlanError)
from gpusched.plan.preempt import plan_preemption

NO_VICTIM = -(2 ** 40)


def small_site(facility_w: float) -> Cluster:
    """Two pods of two racks of two nodes (32 GPUs a pod), limits a random state binds."""
    racks = []
    for r in range(4):
        racks.append({"name": f"rack-{r}", "row": f"row-{r // 2}", "pod": f"pod-{r // 2}",
                      "kind": "liquid", "nodes": 2, "feed_w": 18_000, "cdu_w": 30_000,
                      "residual_air_w": 10_000})
    return Cluster.from_dict({
        "name": "small", "facility": {"name": "facility", "it_limit_w": facility_w},
        "halls": [{"name": "hall-1", "switchboard_w": 80_000, "cooling_w": 80_000}],
        "rows": [{"name": "row-0", "hall": "hall-1", "busway_w": 34_000},
                 {"name": "row-1", "hall": "hall-1", "busway_w": 34_000}],
        "pods": [{"name": "pod-0"}, {"name": "pod-1"}], "racks": racks})


def random_state(seed: int, backend: str | None = None):
    rng = random.Random(seed)
    cluster = small_site(rng.choice([45_000, 55_000, 70_000]))
    engine = Engine(cluster, backend=backend)
    since = {}
    for i in range(30):
        gpus = rng.choice([1, 2, 4, 8, 8, 16])
        flexible = rng.random() < 0.5
        job = Job(f"j{i}", gpus, min_cap_w=rng.choice([300, 450]) if flexible else None,
                  priority=rng.randint(0, 3), preemptible=rng.random() < 0.8)
        if engine.place(job) is not None:
            since[job.id] = rng.choice([0, 600, 1800, 3600])
    preemptor = Job("urgent", rng.choice([4, 8, 16, 32]), priority=rng.randint(2, 5),
                    min_cap_w=rng.choice([400, 700]))
    return cluster, engine, since, preemptor


def cost_of(engine: Engine, victims, since) -> tuple:
    """A victim's GPUs are the ones it holds: fewer than its size once it lost a node."""
    if not victims:
        return (NO_VICTIM, 0.0, 0)
    jobs = [engine.job(v) for v in victims]
    held = {v: len(engine.placement(v).nodes) * engine.placement(v).gpus_per_node
            for v in victims}
    return (max(j.priority for j in jobs),
            round(sum(held[j.id] * since.get(j.id, 0) / 3600 for j in jobs), 9),
            sum(held.values()))


def brute_force(cluster, engine, since, job):
    """The least cost over every victim set, each tried on a fresh engine with every
    flexible job left running at its min cap (the most watts cap-downs can free): the
    job goes where the engine's own ``place`` puts it at ``min_cap_w`` or, for a gang,
    on any choice of empty nodes of one domain that ``place_on`` takes (the engine's
    gang search is a rule, not a search of every choice)."""
    snapshot = engine.snapshot()
    evictable = [j.id for j in engine.jobs() if j.preemptible and j.priority < job.priority]
    G = cluster.gpus_per_node
    pods = ([q for q in range(cluster.num_pods) if cluster.pod_nodes[q] * G >= job.gpus]
            if G < job.gpus <= int(cluster.pod_nodes.max()) * G else [None])
    best = None
    for r in range(len(evictable) + 1):
        for victims in itertools.combinations(evictable, r):
            key = cost_of(engine, victims, since)
            if best is not None and key >= best:
                continue
            trial = Engine.restore(cluster, snapshot)
            for v in victims:
                trial.release(v)
            for running in trial.jobs():
                if running.min_cap_w < trial.placement(running.id).cap_w:
                    trial.set_cap(running.id, running.min_cap_w)
            if (any(trial.place(job.replace(max_cap_w=job.min_cap_w), q) is not None
                    for q in pods) or (job.gpus > G and any(
                        gang_fits_somewhere(cluster, trial, job, q) for q in pods))):
                best = key
    return best


def gang_fits_somewhere(cluster, trial, job, pod):
    """Whether some ``k`` empty up nodes of ``pod`` (the site if None) take the gang at
    ``min_cap_w``: every count of nodes per rack, each rack's lowest empty nodes (the
    empty nodes of one rack weigh alike on every row), tried with the checked
    ``place_on``."""
    G = cluster.gpus_per_node
    k = job.gpus // G
    free, state = trial.node_free_gpus(), trial.node_state_codes()
    empty_by_rack = {}
    for n in range(cluster.num_nodes):
        if free[n] == G and state[n] == 0 and (pod is None or cluster.node_pod[n] == pod):
            empty_by_rack.setdefault(int(cluster.node_rack[n]), []).append(n)
    racks = sorted(empty_by_rack)
    for counts in itertools.product(*(range(len(empty_by_rack[r]) + 1) for r in racks)):
        if sum(counts) != k:
            continue
        nodes = sorted(n for r, c in zip(racks, counts) for n in empty_by_rack[r][:c])
        try:
            trial.place_on(job, nodes, job.min_cap_w)
        except PlacementError:
            continue
        trial.release(job.id)
        return True
    return False


@pytest.mark.parametrize("seed", range(40))
def test_plan_cost_equals_the_brute_force_optimum(seed):
    cluster, engine, since, job = random_state(seed)
    plan = plan_is_the_brute_force_optimum(cluster, engine, since, job)
    if plan is not None:
        check_applied(cluster, engine, plan, job)


def plan_is_the_brute_force_optimum(cluster, engine, since, job):
    """Assert the default plan costs what the brute force finds (or that neither finds
    one, and planning changed nothing); the plan, or None."""
    evictable = [j for j in engine.jobs() if j.preemptible and j.priority < job.priority]
    if len(evictable) > 10:
        pytest.skip("too many victim sets for the brute force")
    best = brute_force(cluster, engine, since, job)
    before = engine.snapshot()
    if best is None:
        with pytest.raises(PreemptionError):
            plan_preemption(engine, job, since_checkpoint_s=since)
        assert engine.snapshot() == before
        return None
    plan = plan_preemption(engine, job, since_checkpoint_s=since)   # auto: exact here
    assert engine.snapshot() == before  # planning changes nothing
    assert plan.method == "exact"
    got = (NO_VICTIM if plan.max_victim_priority is None else plan.max_victim_priority,
           plan.work_lost_gpu_h, plan.gpus_evicted)
    assert got == best, plan
    return plan


#: tight_state seeds where the first k empty nodes of a domain are not the gang's best:
#: the plan missed the optimum there (no plan at all on 150, 220 and 282) before the
#: node search, and on 163 the engine's own gang search misses it too
TIGHT_SEEDS = sorted({150, 155, 163, 192, 220, 282, *range(0, 300, 9)})


@pytest.mark.parametrize("seed", TIGHT_SEEDS)
@pytest.mark.parametrize("closed", [False, True], ids=["tight", "nodes closed"])
def test_the_plan_costs_the_brute_force_optimum_on_tight_sites(seed, closed, backend):
    made = tight_state(seed, backend, closed=closed)
    if made is None:
        pytest.skip("too many victim sets for the enumeration")
    cluster, engine, since, job = made
    plan = plan_is_the_brute_force_optimum(cluster, engine, since, job)
    if plan is not None:
        check_applied(cluster, engine, plan, job)


def test_a_gang_on_a_small_site_takes_nodes_other_than_the_first_empty_ones(backend):
    # seed 150: once the cheapest victims go, the first two empty nodes of the pod sit on
    # a rack whose feed cannot take them; two empty nodes elsewhere can
    from gpusched.plan import preempt

    cluster, engine, since, job = tight_state(150, backend)
    plan = plan_preemption(engine, job, since_checkpoint_s=since, method="exact")
    site = preempt._Site(engine, job, since)
    victims = np.isin(site.ids, plan.victims)
    _free, empty, _ = site.after(victims)
    first = [n for n in range(cluster.num_nodes)
             if empty[n] and cluster.node_pod[n] == cluster.node_pod[plan.placement.nodes[0]]]
    assert list(plan.placement.nodes) != first[:len(plan.placement.nodes)]
    assert site.fit(job, np.array(first[:len(plan.placement.nodes)]), site.G, victims) is None
    check_applied(cluster, engine, plan, job)


def check_applied(cluster, engine, plan, job):
    victims = {v: engine.job(v) for v in plan.victims}
    placement = plan.apply()
    assert engine.placement(job.id) == placement == plan.placement
    for v, victim in victims.items():
        assert v not in engine
        assert victim.preemptible and victim.priority < job.priority
    for change in plan.cap_changes:
        assert engine.placement(change.job_id).cap_w == change.to_cap_w < change.from_cap_w
    assert cluster.constraints.violations(engine.rack_power_w()) == []
    assert (engine.row_slack_units() >= 0).all()


@pytest.mark.parametrize("seed", range(40, 60))
def test_heuristic_plans_apply_and_never_evict_equal_or_higher(seed):
    cluster, engine, since, job = random_state(seed)
    before = engine.snapshot()
    try:
        plan = plan_preemption(engine, job, since_checkpoint_s=since, method="heuristic")
    except PreemptionError:
        assert engine.snapshot() == before
        return
    evictable = [j for j in engine.jobs() if j.preemptible and j.priority < job.priority]
    if len(evictable) <= 10:  # never cheaper than the optimum: else the oracle is wrong
        best = brute_force(cluster, engine, since, job)
        got = (NO_VICTIM if plan.max_victim_priority is None else plan.max_victim_priority,
               plan.work_lost_gpu_h, plan.gpus_evicted)
        assert best is not None and got >= best
    check_applied(cluster, engine, plan, job)


def full_power_bound_site():
    """tiny, filled with low-priority flexible jobs until the facility row binds."""
    engine = Engine(Cluster.preset("tiny"))
    for i in range(8):
        engine.place(Job(f"low{i}", 8, min_cap_w=400))
    return engine


def tight_state(seed: int, backend: str | None = None, closed: bool = False):
    """A site of 8 to 16 nodes whose rack feeds differ, so which empty nodes a gang takes
    decides whether the rows hold; at most 13 evictable jobs (else None).  ``closed``: then
    up to two nodes drained (their jobs stay) and one failed."""
    rng = random.Random(seed)
    nodes = rng.choice([2, 3, 4])
    racks = [{"name": f"rack-{r}", "row": f"row-{r // 2}", "pod": f"pod-{r // 2}",
              "kind": "liquid", "nodes": nodes, "feed_w": rng.choice([12_000, 20_000, 30_000]),
              "cdu_w": 40_000, "residual_air_w": 10_000} for r in range(4)]
    cluster = Cluster.from_dict({
        "name": "tight", "facility": {"name": "facility",
                                      "it_limit_w": rng.choice([50_000, 70_000, 100_000])},
        "halls": [{"name": "hall-1", "switchboard_w": 200_000, "cooling_w": 200_000}],
        "rows": [{"name": "row-0", "hall": "hall-1", "busway_w": rng.choice([30_000, 50_000])},
                 {"name": "row-1", "hall": "hall-1", "busway_w": 50_000}],
        "pods": [{"name": "pod-0"}, {"name": "pod-1"}], "racks": racks})
    engine = Engine(cluster, backend=backend)
    since = {}
    for i in range(40):
        job = Job(f"j{i}", rng.choice([1, 2, 4, 8, 8, 16]),
                  min_cap_w=rng.choice([300, 450, None]), priority=rng.randint(0, 3),
                  preemptible=rng.random() < 0.7)
        if engine.place_at_most(job, max(job.min_cap_w, rng.choice([400, 550, 700]))):
            since[job.id] = rng.choice([0, 7, 60, 600, 1800, 3600])
    preemptor = Job("urgent", rng.choice([1, 4, 8, 16, 24, 32]), priority=rng.randint(1, 5),
                    min_cap_w=rng.choice([300, 500, 700]))
    if closed:
        other = random.Random(seed + 1)
        nodes = other.sample(range(cluster.num_nodes), 3)
        engine.drain(nodes[:other.randint(1, 2)])
        for gone in engine.fail(nodes[2:]):
            since.pop(gone, None)
    evictable = [j for j in engine.jobs() if j.preemptible and j.priority < preemptor.priority]
    if len(evictable) > 13:
        return None
    return cluster, engine, since, preemptor


def plan_or_none(engine, job, since, method):
    try:
        return plan_preemption(engine, job, since_checkpoint_s=since, method=method)
    except PreemptionError:
        return None


@pytest.mark.parametrize("seed", range(0, 300, 5))
@pytest.mark.parametrize("states", ["random", "tight", "tight, nodes closed"])
def test_the_milp_plan_costs_what_the_enumeration_finds(seed, states, backend):
    made = (random_state(seed, backend) if states == "random"
            else tight_state(seed, backend, closed=states != "tight"))
    if made is None:
        pytest.skip("too many victim sets for the enumeration")
    cluster, engine, since, job = made
    before = engine.snapshot()
    exact = plan_or_none(engine, job, since, "exact")
    milp = plan_or_none(engine, job, since, "milp")
    assert engine.snapshot() == before   # planning changes nothing
    assert (exact is None) == (milp is None), (seed, exact, milp)
    if milp is None:
        return
    assert milp.method == "milp"
    assert milp.cost == exact.cost, (seed, exact, milp)
    check_applied(cluster, engine, milp, job)


@pytest.mark.parametrize("seed", [30, 150, 155, 192, 220, 282])
def test_under_the_first_k_rule_the_milp_gang_takes_the_first_empty_nodes(
        seed, backend, monkeypatch):
    # the rule a site above NODE_SEARCH_MAX_NODES keeps (forced here on a small one): a
    # gang takes the first k empty nodes of a pod.  On these states the gang's cheap
    # victims empty nodes that rule would not give it: a model free to take any empty
    # nodes proposes sets the test refuses (64, 5, 20, 56 and 64 of them on 30, 155, 192,
    # 220 and 282, the last two with no plan at all); the model that takes the first k
    # proposes none, and its plan is the first-k enumeration's
    from gpusched.plan import preempt

    monkeypatch.setattr(preempt, "NODE_SEARCH_MAX_NODES", 0)
    cluster, engine, since, job = tight_state(seed, backend)
    assert job.gpus > cluster.gpus_per_node
    exact = plan_or_none(engine, job, since, "exact")
    milp = plan_or_none(engine, job, since, "milp")
    assert (exact is None) == (milp is None)
    site = preempt._Site(engine, job, since)
    domains = preempt._domains(site, job, -1)
    refused = []
    for threshold in sorted(set(site.priority[site.evictable].tolist())):
        model = preempt._VictimModel(site, job, domains,
                                     site.evictable & (site.priority <= threshold), threshold)
        found = model.least(lambda v: preempt._try_victims(site, job, v, domains))
        refused += model.cuts
        if found is not None:
            assert exact is not None and site.cost(found[0])[0] == exact.max_victim_priority
            break
    assert refused == []
    # the node search (any k empty nodes, on a site this small) never costs more, and
    # finds a plan where the first k leave none
    monkeypatch.setattr(preempt, "NODE_SEARCH_MAX_NODES", 1024)
    searched = plan_or_none(engine, job, since, "exact")
    assert searched is not None and (exact is None) == (seed in (150, 220, 282))
    if exact is not None:
        assert cost_key(searched) <= cost_key(exact)
    if milp is not None:
        assert milp.cost == exact.cost and milp.victims
        assert milp.placement.nodes == exact.placement.nodes
        check_applied(cluster, engine, milp, job)


def cost_key(plan):
    return (NO_VICTIM if plan.max_victim_priority is None else plan.max_victim_priority,
            plan.work_lost_gpu_h, plan.gpus_evicted)


def test_the_milp_plan_needs_no_victim_when_cap_downs_do(backend):
    # six flexible jobs at 700 W: two nodes free, the watts short; all six preemptible
    engine = Engine(Cluster.preset("tiny"), backend=backend)
    for i in range(6):
        assert engine.place(Job(f"flex{i}", 8, min_cap_w=300)) is not None
    urgent = Job("urgent", 8, priority=1)
    assert not engine.explain(urgent).placeable
    plan = plan_preemption(engine, urgent, method="milp")
    assert plan.victims == () and plan.cap_changes and plan.cost == (None, 0.0, 0)
    check_applied(engine.cluster, engine, plan, urgent)


def test_a_plan_applied_twice_or_after_a_change_is_refused_and_changes_nothing():
    engine = full_power_bound_site()
    urgent = Job("urgent", 16, priority=10)
    plan = engine.plan_preemption(urgent)
    other = plan_preemption(engine, urgent)
    engine.release(engine.placements()[-1].job_id)     # the state moves on
    before = engine.snapshot()
    with pytest.raises(StalePlanError) as info:
        plan.apply()
    assert info.value.field == "plan"
    assert engine.snapshot() == before
    fresh = plan_preemption(engine, urgent)
    fresh.apply()
    after = engine.snapshot()
    with pytest.raises(StalePlanError):
        fresh.apply()
    with pytest.raises(StalePlanError):
        other.apply()
    assert engine.snapshot() == after


def test_a_plan_for_a_placed_job_or_with_bad_options_is_a_typed_error():
    engine = full_power_bound_site()
    placed = engine.job(engine.placements()[0].job_id)
    before = engine.snapshot()
    with pytest.raises(DuplicateJobError):
        plan_preemption(engine, placed)
    with pytest.raises(PreemptionError) as info:
        plan_preemption(engine, Job("x", 8, priority=1), method="best")
    assert info.value.field == "method"
    assert "'best'" in str(info.value)
    for valid in ("'auto'", "'exact'", "'heuristic'", "'milp'"):
        assert valid in str(info.value)
    assert engine.snapshot() == before


def test_nothing_of_equal_priority_or_not_preemptible_is_evicted():
    engine = Engine(Cluster.preset("tiny"))
    for i in range(8):
        engine.place(Job(f"peer{i}", 8, priority=5 if i % 2 else 0,
                         preemptible=bool(i % 4)))
    evictable = [j for j in engine.jobs() if j.preemptible and j.priority < 5]
    try:
        plan = plan_preemption(engine, Job("urgent", 16, priority=5))
    except PreemptionError:
        return
    assert set(plan.victims) <= {j.id for j in evictable}
    assert plan.victims


def test_cap_downs_come_before_evictions():
    # GPUs free, watts short: lowering flexible jobs is enough, nobody is evicted
    engine = Engine(Cluster.preset("tiny"))
    for i in range(5):
        engine.place(Job(f"flex{i}", 8, min_cap_w=300))
    urgent = Job("urgent", 8, priority=1)
    assert engine.place_many([]) == []
    if engine.explain(urgent).placeable:
        pytest.skip("tiny has the watts free")
    plan = plan_preemption(engine, urgent)
    assert plan.victims == () and plan.cap_changes
    plan.apply()
    assert "urgent" in engine


def test_a_victim_in_another_hall_frees_the_facility_row():
    # two halls; the preemptor's hall is empty, the facility row binds: the victim is in
    # the other hall
    racks = [{"name": f"rack-{h}{r}", "row": f"row-{h}", "pod": f"pod-{h}", "kind": "liquid",
              "nodes": 2, "feed_w": 88_000, "cdu_w": 90_000, "residual_air_w": 20_000}
             for h in range(2) for r in range(2)]
    cluster = Cluster.from_dict({
        "name": "two-halls", "facility": {"name": "facility", "it_limit_w": 42_000},
        "halls": [{"name": f"hall-{h}", "switchboard_w": 100_000, "cooling_w": 100_000}
                  for h in range(2)],
        "rows": [{"name": f"row-{h}", "hall": f"hall-{h}", "busway_w": 100_000}
                 for h in range(2)],
        "pods": [{"name": f"pod-{h}"} for h in range(2)], "racks": racks})
    engine = Engine(cluster)
    for i in range(4):
        assert engine.place(Job(f"low{i}", 8, priority=0), pod="pod-0") is not None
    urgent = Job("urgent", 16, priority=3)
    assert not engine.explain(urgent, "pod-1").placeable
    plan = plan_preemption(engine, urgent, "pod-1")
    assert plan.victims and all(engine.cluster.node_pod[engine.placement(v).nodes[0]] == 0
                                for v in plan.victims)
    plan.apply()
    assert engine.placement("urgent").nodes[0] in (4, 5, 6, 7)


def test_both_twins_give_the_same_plan():
    from gpusched.engine import available_backends
    if "cython" not in available_backends():
        pytest.skip("no compiled core: one twin only")
    for seed in range(10):
        plans = []
        for backend in ("python", "cython"):
            _c, engine, since, job = random_state(seed, backend)
            try:
                plans.append(plan_preemption(engine, job, since_checkpoint_s=since).to_dict())
            except PreemptionError as exc:
                plans.append(str(exc))
        assert plans[0] == plans[1]


def test_the_readme_example_runs_and_the_gang_gets_in():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "examples" / "preempt.py")], cwd=root,
                         capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "does not fit" in lines[1]
    assert lines[-1].startswith("release-eval runs on 512 nodes") and lines[-1].endswith("True")


def test_priorities_survive_the_journal_a_state_file_and_both_twins(tmp_path):
    from gpusched.serve import PlacementService
    cluster = Cluster.preset("tiny")
    service = PlacementService(cluster, tmp_path / "s")
    body = {"job": {"id": "eval", "gpus": 8, "priority": -7, "preemptible": False}}
    service.place(body)
    service.place({"job": {"id": "plain", "gpus": 8}})
    service.close()
    again = PlacementService(cluster, tmp_path / "s")   # replayed from the journal
    assert again.engine.job("eval").priority == -7 and not again.engine.job("eval").preemptible
    assert again.engine.job("plain").to_dict() == Job("plain", 8).to_dict()
    again.close()
    snap = again.engine.snapshot()
    from gpusched.engine import available_backends
    for backend in available_backends():
        engine = Engine.restore(cluster, snap, backend=backend)
        assert engine.job("eval") == Job("eval", 8, priority=-7, preemptible=False)
        path = tmp_path / f"state-{backend}.json"
        engine.save(path)
        assert Engine.load(cluster, path, backend=backend).job("eval").priority == -7
    # a state file written before priorities (no such keys) loads with the defaults
    old = {**snap, "jobs": [{**e, "job": {k: v for k, v in e["job"].items()
                                          if k not in ("priority", "preemptible")}}
                            for e in snap["jobs"]]}
    restored = Engine.restore(cluster, old)
    assert restored.job("eval").priority == 0 and restored.job("eval").preemptible


@pytest.mark.parametrize("steps", [200, 0], ids=["search", "highs"])
def test_the_node_count_search_finds_a_choice_exactly_when_one_exists(steps, monkeypatch):
    # the gang's nodes per group of racks: a depth-first search, or HiGHS once the search
    # runs past its budget (0 here: always), against every choice
    from gpusched.plan import preempt

    monkeypatch.setattr(preempt, "_SEARCH_STEPS", steps)
    rng = random.Random(7)
    found = 0
    for _ in range(150):
        groups, rows, k = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 6)
        columns = np.array([[rng.choice([0, 1, 2, 3]) * 10**9 for _r in range(rows)]
                            for _g in range(groups)], dtype=np.int64)
        cap_g = np.array([rng.randint(0, 3) for _g in range(groups)], dtype=np.int64)
        room = np.array([rng.randint(0, 12) * 10**9 for _r in range(rows)], dtype=np.int64)
        every = [t for t in itertools.product(*(range(c + 1) for c in cap_g))
                 if sum(t) == k and (columns.T @ np.array(t) <= room).all()]
        got = preempt._Site._group_totals(k, columns, cap_g, room)
        assert (got is None) == (not every), (columns, cap_g, room, k)
        if got is not None:
            found += 1
            assert got.sum() == k and (got <= cap_g).all() and (columns.T @ got <= room).all()
    assert 20 < found < 130   # both answers drawn often
