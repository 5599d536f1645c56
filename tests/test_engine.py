"""Engine semantics (DESIGN.md), run on both backends through the ``backend`` fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gpusched import (Cluster, DuplicateJobError, Engine, Job, JobError, PlacementError,
                      SnapshotError, UnknownJobError)

from .support.verify import check_engine


def test_colossus_sizes_and_rows(colossus):
    assert colossus.num_gpus == 100_352
    assert colossus.num_nodes == 12_544
    assert colossus.num_racks == 2 * 392 + 2 * 784
    kinds = colossus.constraints.kinds
    assert kinds.count("rack-feed") == colossus.num_racks
    assert kinds.count("row") == colossus.num_rows == 294
    assert kinds.count("hall") == 4
    assert kinds.count("facility") == 1
    assert kinds.count("cdu") == kinds.count("rack-air") == 784
    # every rack is in its own feed row, its row's busway, its hall and the facility
    A = colossus.constraints.A.tocsc()
    for r in (0, 391, 784, colossus.num_racks - 1):
        rows = {kinds[i] for i in A.indices[A.indptr[r]:A.indptr[r + 1]]}
        assert {"rack-feed", "row", "hall", "hall-cooling", "facility"} <= rows
    assert not colossus.constraints.violations(colossus.idle_rack_power_w)
    assert colossus.constraints.violations(colossus.full_rack_power_w(700))


def test_fill_with_rigid_jobs_hits_power_before_gpus(colossus, backend):
    engine = Engine(colossus, backend=backend)
    placed = 0
    while engine.place(Job(f"r{placed}", 8)) is not None:
        placed += 1
    assert engine.free_gpus() > 0, "GPUs ran out before power did"
    why = engine.explain(Job("probe", 8))
    assert why.status == "no-power"
    assert why.binding_kind in ("hall", "hall-cooling", "facility")
    # flexible jobs still fit, at a lower cap
    flexible = engine.place(Job("flex", 8, min_cap_w=300))
    assert flexible is not None and flexible.cap_w < 700
    check_engine(engine)


def test_best_fit_on_partly_used_nodes(tiny, backend):
    engine = Engine(tiny, backend=backend)
    a = engine.place(Job("a", 3))
    b = engine.place(Job("b", 5))   # fills a's node exactly
    c = engine.place(Job("c", 2))   # a fresh node
    d = engine.place(Job("d", 6))   # best fit: c's node has exactly 6 free
    assert a.nodes == b.nodes == (0,)
    assert c.nodes == d.nodes == (1,)
    check_engine(engine)


def test_gang_takes_whole_nodes_on_fewest_racks(colossus, backend):
    engine = Engine(colossus, backend=backend)
    engine.place(Job("small", 1))
    gang = engine.place(Job("gang", 64))
    # rack 0 has a used node, so the 8-node gang takes a whole empty rack
    racks = {int(colossus.node_rack[n]) for n in gang.nodes}
    assert len(racks) == 1 and racks != {0}
    assert gang.gpus_per_node == 8 and len(gang.nodes) == 8
    big = engine.place(Job("big", 4096))
    pods = {int(colossus.node_pod[n]) for n in big.nodes}
    assert len(pods) == 4096 // 512  # whole liquid arrays, the fewest pods
    check_engine(engine)


def test_pod_hint(colossus, backend):
    engine = Engine(colossus, backend=backend)
    p = engine.place(Job("a", 16), pod=200)
    assert {int(colossus.node_pod[n]) for n in p.nodes} == {200}
    q = engine.place(Job("b", 8), pod=colossus.pod_names[7])
    assert int(colossus.node_pod[q.nodes[0]]) == 7
    with pytest.raises(JobError, match="out of range"):
        engine.place(Job("c", 8), pod=colossus.num_pods)
    assert engine.place(Job("d", 1024), pod=3) is None  # a 64-node pod cannot hold 128


def test_cap_steps_down_25_w_and_explains(tiny, backend):
    # Worked by hand from the tiny preset: five rigid 8-GPU jobs take nodes 0, 1, 2
    # (row-1 then holds 27.27 kW of its 30) and 4, 5; the facility has 6,790 W left.
    # Two more nodes cost 2 x 1,250 W busy step + 16 x (cap - 65) W, so the facility
    # allows cap <= 333 W: the grid gives 325 W.
    engine = Engine(tiny, backend=backend)
    for i in range(5):
        assert engine.place(Job(f"j{i}", 8)).cap_w == 700
    assert sorted(n for p in engine.placements() for n in p.nodes) == [0, 1, 2, 4, 5]
    why = engine.explain(Job("rigid", 16))
    assert why.status == "no-power" and why.binding == "facility IT limit"
    p = engine.place(Job("flex", 16, min_cap_w=300))
    assert p.nodes == (6, 7) and p.cap_w == 325
    assert engine.explain(Job("more", 1, min_cap_w=200)).status == "no-power"
    check_engine(engine)


def test_min_cap_off_grid_is_the_last_step(tiny, backend):
    # As above, five rigid 8-GPU jobs leave a 16-GPU job room for at most 333 W a GPU under
    # the facility IT limit (334 W is refused below).  The cap grid runs 700, 675, ..., 350,
    # 325, 300 and then a job's own minimum when that is off the grid.
    engine = Engine(tiny, backend=backend)
    for i in range(5):
        assert engine.place(Job(f"j{i}", 8)).cap_w == 700
    assert engine.explain(Job("over", 16, min_cap_w=334)).status == "no-power"
    # 350 does not fit and 330 is off the grid: the cap is the minimum itself
    off = engine.place(Job("off", 16, min_cap_w=330))
    assert off is not None and off.cap_w == 330
    check_engine(engine)
    engine.release("off")
    # the grid step 325 fits above a minimum of 312: on the grid, not the minimum, and not
    # the 333 W the limit would allow
    on = engine.place(Job("on", 16, min_cap_w=312))
    assert on is not None and on.cap_w == 325
    check_engine(engine)
    # a maximum off the grid is its own first step
    top = Engine(tiny, backend=backend).place(Job("top", 1, max_cap_w=612, min_cap_w=300))
    assert top is not None and top.cap_w == 612


def test_release_frees_exactly(colossus, backend):
    engine = Engine(colossus, backend=backend)
    fresh = (engine.rack_power_w(), engine.row_slack_units(), engine.node_free_gpus())
    jobs = [Job("a", 3), Job("b", 8), Job("c", 512, min_cap_w=500), Job("d", 1)]
    for job in jobs:
        engine.place(job)
    check_engine(engine)
    for job in reversed(jobs):
        engine.release(job.id)
    assert len(engine) == 0
    for before, after in zip(fresh, (engine.rack_power_w(), engine.row_slack_units(),
                                     engine.node_free_gpus())):
        np.testing.assert_array_equal(before, after)
    with pytest.raises(UnknownJobError, match="'a'"):
        engine.release("a")


def test_placements_handed_out_never_change(tiny, backend):
    # The compiled core recycles a released placement that no one holds any more; one
    # that a caller kept, from place or from release, must never change.
    engine = Engine(tiny, backend=backend)
    kept, live = [], []
    for i in range(300):
        job = Job(f"j{i}", (1, 8, 3, 16)[i % 4], min_cap_w=400)
        placed = engine.place(job)
        while placed is None:  # full: free the oldest job, dropping what release returns
            engine.release(live.pop(0))
            placed = engine.place(job)
        live.append(job.id)
        if i % 3 == 0:
            kept.append((placed, tuple(placed)))
        if i % 2 == 0:
            released = engine.release(live.pop())
            assert released == placed
            if i % 5 == 0:
                kept.append((released, tuple(released)))
    assert len(kept) > 100
    for placement, as_returned in kept:
        assert tuple(placement) == as_returned
    check_engine(engine)


def test_release_lets_go_of_the_job(tiny, backend):
    engine = Engine(tiny, backend=backend)
    job = Job("held-only-by-the-test", 8)
    before = sys.getrefcount(job)
    assert engine.place(job) is not None
    assert sys.getrefcount(job) > before
    engine.release(job.id)
    assert sys.getrefcount(job) == before


def test_errors_leave_state_unchanged(tiny, backend):
    engine = Engine(tiny, backend=backend)
    engine.place(Job("a", 4))
    before = engine.snapshot()
    with pytest.raises(JobError, match="multiple of 8"):
        engine.place(Job("b", 12))
    with pytest.raises(DuplicateJobError):
        engine.place(Job("a", 1))
    with pytest.raises(JobError, match="cap range"):
        engine.place(Job("c", 1, max_cap_w=750))
    with pytest.raises(UnknownJobError):
        engine.release("zzz")
    assert engine.snapshot() == before


def test_snapshot_round_trip_and_cross_backend(colossus, backend):
    engine = Engine(colossus, backend=backend)
    for i, g in enumerate([1, 2, 8, 64, 512, 3, 4096]):
        engine.place(Job(f"j{i}", g, min_cap_w=450, weight=1.5))
    snap = json.loads(json.dumps(engine.snapshot()))
    for other in ("cython", "python"):
        if other == "cython" and "cython" not in __import__("gpusched").available_backends():
            continue
        restored = Engine.restore(colossus, snap, backend=other)
        assert restored.snapshot() == snap
        assert restored.placements() == engine.placements()
        np.testing.assert_array_equal(restored.row_slack_units(), engine.row_slack_units())


def test_tampered_snapshot_is_refused_and_state_kept(tiny, backend):
    engine = Engine(tiny, backend=backend)
    engine.place(Job("a", 8))
    snap = engine.snapshot()
    target = Engine(tiny, backend=backend)
    target.place(Job("keep", 2))
    kept = target.snapshot()
    bad = json.loads(json.dumps(snap))
    bad["jobs"].append(dict(bad["jobs"][0], job=dict(bad["jobs"][0]["job"], id="b")))
    with pytest.raises(SnapshotError):
        target.load_snapshot(bad)
    assert target.snapshot() == kept


def test_set_cap(tiny, backend):
    engine = Engine(tiny, backend=backend)
    engine.place(Job("a", 8, min_cap_w=300))
    assert engine.set_cap("a", 400).cap_w == 400
    check_engine(engine)
    with pytest.raises(PlacementError, match="outside"):
        engine.set_cap("a", 250)
    assert engine.placement("a").cap_w == 400


def test_explain_names_capacity(tiny, backend):
    engine = Engine(tiny, backend=backend)
    why = engine.explain(Job("x", 64))
    assert why.status == "no-power" and why.binding_kind in ("row", "facility", "hall")
    for i in range(6):
        engine.place(Job(f"j{i}", 8, min_cap_w=200))
    assert engine.explain(Job("y", 24, min_cap_w=200)).status == "no-capacity"


def test_switch_env_forces_python():
    env = dict(os.environ, GPUSCHED_NO_EXTENSIONS="1")
    env.pop("GPUSCHED_REQUIRE_EXTENSIONS", None)
    out = subprocess.run([sys.executable, "-c",
                          "import gpusched.engine as e; print(e.DEFAULT_BACKEND, e.NO_EXTENSIONS)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["python", "True"]


def test_unknown_backend():
    with pytest.raises(ValueError, match="available backends"):
        Engine(Cluster.preset("tiny"), backend="fortran")


def test_batch_api_is_a_loop_of_single_calls(colossus, backend):
    sizes = [1, 3, 8, 64, 512, 4096, 2, 8, 16384]
    jobs = [Job(f"j{i}", g, min_cap_w=400) for i, g in enumerate(sizes * 3)]
    batched, looped = Engine(colossus, backend=backend), Engine(colossus, backend=backend)
    assert batched.place_many(jobs) == [looped.place(job) for job in jobs]
    assert batched._index_state() == looped._index_state()
    ids = [j.id for j in jobs[::2] if j.id in looped]
    assert batched.release_many(ids) == [looped.release(i) for i in ids]
    assert batched._index_state() == looped._index_state()
    # unlike the loop, a bad job anywhere refuses the whole batch: nothing is placed
    before = batched._index_state()
    with pytest.raises(JobError, match="multiple of 8"):
        batched.place_many([Job("ok", 8), Job("bad", 12), Job("never", 8)])
    assert "ok" not in batched and "never" not in batched
    assert batched._index_state() == before


def test_place_at_most_keeps_the_jobs_own_range(tiny, backend):
    engine = Engine(tiny, backend=backend)
    job = Job("a", 8, min_cap_w=300)
    p = engine.place_at_most(job, 450)
    assert p.cap_w == 450 and engine.job("a") == job  # recorded with 300..700, not 450
    assert engine.set_cap("a", 700).cap_w == 700      # so its cap may be raised later
    check_engine(engine)
    before = engine.snapshot()
    with pytest.raises(JobError, match=r"\[300, 700\]"):
        engine.place_at_most(Job("b", 8, min_cap_w=300), 250)
    assert engine.snapshot() == before


def _two_halls_spec() -> dict:
    """16 one-rack pods: hall-b's pods (0-7) have 4 nodes, hall-a's (8-15) 3 nodes and a
    switchboard that allows one more 2-node gang at 400 W at most."""
    air = {"kind": "air", "feed_w": 60_000, "air_cooling_w": 60_000}
    idle_node_w = 8 * 65 + 1550
    hall_a_w = 8 * 3 * idle_node_w + 8_000  # +2 nodes: 2 * (1250 + 8 (cap - 65)) <= 8000
    spec: dict = {"name": "two-halls", "facility": {"name": "facility", "it_limit_w": 10**7},
                  "halls": [{"name": "hall-b", "switchboard_w": 10**6, "cooling_w": 10**6},
                            {"name": "hall-a", "switchboard_w": hall_a_w,
                             "cooling_w": hall_a_w}],
                  "rows": [], "pods": [], "racks": []}
    for p in range(16):
        hall, nodes = ("hall-b", 4) if p < 8 else ("hall-a", 3)
        spec["rows"].append({"name": f"row-{p}", "hall": hall, "busway_w": 10**6})
        spec["pods"].append({"name": f"pod-{p}"})
        spec["racks"].append({"name": f"rack-{p}", "row": f"row-{p}", "pod": f"pod-{p}",
                              "nodes": nodes, **air})
    return spec


def test_gang_visits_pods_best_first_until_one_allows_full_cap(backend):
    # Best fit ranks hall-a's fuller pods (3 empty nodes) before hall-b's (4), and each
    # allows 400 W; the search walks all eight and takes the first pod in rank order
    # that allows 700 W, pod-0.  The compiled core ranks the first few pods by a scan
    # and sorts the rest: ranking pod-5 (5th by index) by mistake would put it here.
    cluster = Cluster.from_dict(_two_halls_spec())
    engine = Engine(cluster, backend=backend)
    placement = engine.place(Job("g", 16, min_cap_w=200))
    assert placement.cap_w == 700
    assert [cluster.node_pod[n] for n in placement.nodes] == [0, 0]
    assert engine.place(Job("rigid-in-a", 16), pod="pod-8") is None
    assert engine.place(Job("capped-in-a", 16, min_cap_w=200), pod="pod-8").cap_w == 400
    check_engine(engine)
