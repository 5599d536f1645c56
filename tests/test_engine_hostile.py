"""Red-team findings of issue 13 on the engine core, each on both backends.

- finding 2: no index in the core depends on an unchecked relation between two spec
  fields (here cap_max_w below gpus_per_node);
- finding 3: no caller code runs between a search and its commit, whether it comes in
  through an id's own methods (tests/support/bad_inputs.py) or through a finaliser that the
  engine's own allocations set off;
- a Job pickles (process pools and Dask ship jobs that way).
"""

from __future__ import annotations

import gc
import pickle

import pytest

from gpusched import Cluster, Engine, Job
from gpusched.spec import PRESETS
from gpusched.errors import DuplicateJobError

from .conftest import both_backends
from .support.verify import check_engine


def _tiny_with_power(**power) -> Cluster:
    spec = PRESETS["tiny"]()
    spec["power"] = power
    return Cluster.from_dict(spec)


@pytest.mark.parametrize("gpus_per_node, cap_max_w", [(8, 4), (64, 10), (8, 7)])
def test_cap_max_below_gpus_per_node(backend, gpus_per_node, cap_max_w):
    # every field is in its documented range, and nothing orders cap_max_w and
    # gpus_per_node: the core once indexed a tuple of caps by GPUs per node
    cluster = _tiny_with_power(gpus_per_node=gpus_per_node, gpu_tdp_w=cap_max_w,
                               cap_min_w=2, cap_max_w=cap_max_w, cap_step_w=1,
                               gpu_idle_w=1)
    engine = Engine(cluster, backend=backend)
    G = gpus_per_node
    placed = [engine.place(Job(f"n{i}", G, max_cap_w=cap_max_w)) for i in range(3)]
    placed.append(engine.place(Job("gang", 2 * G, max_cap_w=cap_max_w, min_cap_w=2)))
    placed.append(engine.place(Job("small", 1, max_cap_w=cap_max_w)))
    for p in placed:
        assert p is not None
        assert type(p.gpus_per_node) is int and type(p.cap_w) is int
    assert [p.gpus_per_node for p in placed] == [G, G, G, G, 1]
    assert all(2 <= p.cap_w <= cap_max_w for p in placed)
    check_engine(engine)


def test_cap_max_below_gpus_per_node_twins_agree():
    backends = both_backends()
    if len(backends) < 2:
        pytest.skip("needs the compiled core")
    cluster = _tiny_with_power(gpus_per_node=16, gpu_tdp_w=5, cap_min_w=2, cap_max_w=5,
                               cap_step_w=1, gpu_idle_w=1)
    jobs = [Job(f"j{i}", g, max_cap_w=5, min_cap_w=2) for i, g in
            enumerate([16, 3, 32, 16, 1, 16, 48])]
    results = [[tuple(p) if p else None for p in Engine(cluster, backend=b).place_many(jobs)]
               for b in backends]
    assert results[0] == results[1]


def _place_with_a_finaliser_pending(engine: Engine, job: Job, ghost: Job,
                                    allocations: int) -> list:
    """Place ``job`` with cyclic garbage pending whose finaliser places ``ghost``, and the
    collector set to run after about ``allocations`` allocations: so the finaliser, caller
    code, runs inside whichever of the engine's own allocations that lands on.  Returns
    what the finaliser got (empty if it did not run inside place)."""
    ran: list = []

    class PlacesWhenCollected:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            try:
                ran.append(engine.place(ghost))
            except DuplicateJobError as exc:
                ran.append(exc)

    thresholds = gc.get_threshold()
    gc.collect(0)  # young garbage only: cheap, and it zeroes the allocation count
    gc.disable()
    try:
        PlacesWhenCollected()
        gc.set_threshold(allocations)
        gc.enable()
        engine.place(job)
    finally:
        gc.set_threshold(*thresholds)
        gc.enable()
    inside = list(ran)
    gc.collect(0)
    return inside


@pytest.mark.parametrize("gpus", [1, 8, 16])
def test_finaliser_during_place_cannot_take_the_same_nodes(tiny, backend, gpus):
    # Before the fix both twins put both jobs on one node for some of these positions
    # (a node at -8 free GPUs): the core committed after building its Placement, the
    # twin searched on while a finaliser placed.
    ran_inside = 0
    for allocations in range(1, 60):
        engine = Engine(tiny, backend=backend)
        got = _place_with_a_finaliser_pending(engine, Job("mine", gpus), Job("ghost", gpus),
                                              allocations)
        ran_inside += bool(got)
        check_engine(engine)  # no node over-committed, no row broken
        assert sorted(j.id for j in engine.jobs()) == ["ghost", "mine"]
    assert ran_inside, "the finaliser never ran inside place: the test tests nothing"


def test_finaliser_placing_the_same_id_during_place(tiny, backend):
    ran_inside = 0
    for allocations in range(1, 60):
        engine = Engine(tiny, backend=backend)
        try:
            got = _place_with_a_finaliser_pending(engine, Job("same", 16), Job("same", 16),
                                                  allocations)
        except DuplicateJobError:  # the finaliser took the id first: ours is refused
            got = [True]
        ran_inside += bool(got)
        check_engine(engine)
        assert [j.id for j in engine.jobs()] == ["same"]
        assert engine.free_gpus() == tiny.num_gpus - 16
    assert ran_inside


@pytest.mark.parametrize("job", [Job("a", 1), Job("gang", 64, max_cap_w=600, min_cap_w=300,
                                                   weight=2.5, sensitivity=0.5)])
def test_job_pickles(job):
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(job, protocol=protocol))
        assert type(back) is Job and back == job and back.to_dict() == job.to_dict()


def test_pickled_job_places_alike(tiny, backend):
    job = Job("a", 8, min_cap_w=300)
    a, b = Engine(tiny, backend=backend), Engine(tiny, backend=backend)
    assert a.place(job) == b.place(pickle.loads(pickle.dumps(job)))
