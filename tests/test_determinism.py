"""Same inputs, same report: no wall clock decides what a simulation does."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from gpusched import Cluster, Engine, Job
from gpusched.simulate import simulate
from gpusched.simulate.cli import build_workload

#: Keys whose values are wall-clock measurements, the only machine-dependent numbers.
WALL_KEYS = ("wall_s", "solver_time_s", "solve_time_s")


def report_text(result) -> str:
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in WALL_KEYS}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(result.to_dict()), indent=1, default=float)


@pytest.fixture(scope="module")
def small_run():
    cluster = Cluster.preset("colossus-100k", scale=1 / 16)
    jobs, _ = build_workload(cluster, trace="synthetic", horizon_s=6 * 3600, seed=3)
    return cluster, jobs


def run(cluster, jobs, policy="optimize"):
    return simulate(cluster, jobs, policy, horizon_s=6 * 3600)


def test_a_small_simulation_twice_gives_the_same_report_byte_for_byte(small_run):
    cluster, jobs = small_run
    first, second = report_text(run(cluster, jobs)), report_text(run(cluster, jobs))
    assert first == second
    assert json.loads(first)["jobs"]["started"] > 0


def test_a_slow_machine_gives_the_same_report(small_run, monkeypatch):
    """A clock that runs 1,000 times fast (every solve looks late) changes nothing."""
    cluster, jobs = small_run
    normal = report_text(run(cluster, jobs))
    real = time.perf_counter
    origin = real()
    monkeypatch.setattr(time, "perf_counter", lambda: origin + 1000 * (real() - origin))
    slow = report_text(run(cluster, jobs))
    monkeypatch.setattr(time, "perf_counter", real)
    assert slow == normal


def test_allocate_decides_by_work_not_by_the_clock(monkeypatch):
    """An instance large enough for LP-and-fix followed by the full MILP: with a clock
    running 1,000 times fast, every solve looks late, and still the answer is the same."""
    import random

    from gpusched.plan import allocate

    cluster = Cluster.preset("colossus-100k", scale=0.1)
    rng = random.Random(0)
    sizes = [1, 2, 8, 16, 64, 128, 256, 512, 1024, 2048]
    queue = [Job(f"q{i}", rng.choice(sizes), max_cap_w=700,
                 min_cap_w=rng.choice([350, 400, 500, 700]),
                 sensitivity=rng.choice([1.0, 1.25, 2.0])) for i in range(150)]
    engine = Engine(cluster)

    def answer():
        a = allocate(engine, queue, exact_max_vars=10**9)
        return a.status, a.admitted, a.cap_w, a.pod, round(a.objective, 9)

    normal = answer()
    real = time.perf_counter
    origin = real()
    monkeypatch.setattr(time, "perf_counter", lambda: origin + 1000 * (real() - origin))
    slow = answer()
    monkeypatch.setattr(time, "perf_counter", real)
    assert slow == normal
    assert normal[0] in ("optimal", "work_limit")
