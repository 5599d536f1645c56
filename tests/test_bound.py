"""The fluid bound (gpusched.bound) against a brute-force optimum on tiny sites."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gpusched import Cluster, Job
from gpusched.bound import FluidBound, job_class_key
from gpusched.power import H100_CURVE, TabulatedCurve

BIG = 1e9


def tiny_site(facility_w: float, feeds_w: tuple[float, float], *, busy_step_w: int = 0,
              busway_w: float = BIG) -> Cluster:
    """Two 1-node racks (8 GPUs each) with their own feeds, a busway and a facility."""
    return Cluster.from_dict({
        "name": "bound-test",
        "power": {"cap_step_w": 100, "cap_min_w": 200, "cap_max_w": 700,
                  "node_other_idle_w": 1000, "node_other_busy_w": 1000 + busy_step_w},
        "facility": {"name": "facility", "it_limit_w": facility_w},
        "halls": [{"name": "hall-1", "switchboard_w": BIG, "cooling_w": BIG}],
        "rows": [{"name": "row-1", "hall": "hall-1", "busway_w": busway_w}],
        "pods": [{"name": "pod-1"}],
        "racks": [{"name": f"rack-{r}", "row": "row-1", "pod": "pod-1", "kind": "air",
                   "nodes": 1, "feed_w": feeds_w[r], "air_cooling_w": BIG} for r in range(2)],
    })


def brute_force(cluster: Cluster, job: Job, present_gpus: int) -> float:
    """Best sum of GPUs x s over every integer choice of how many GPUs of each rack run
    at each cap level (at most ``present_gpus`` in all), checked against every row."""
    power = cluster.power
    caps = power.cap_grid_w(job.max_cap_w, job.min_cap_w)
    s = np.array([power.speed(job, c) for c in caps])
    G = power.gpus_per_node
    # every way one 8-GPU node can hold GPUs at the levels: counts per level, total <= G
    per_rack = [n for n in itertools.product(range(G + 1), repeat=len(caps)) if sum(n) <= G]
    per_rack = np.array(per_rack)
    busy = per_rack.sum(axis=1)
    rack_w = (np.where(busy > 0, power.node_other_busy_w, power.node_other_idle_w)
              + (G - busy) * power.gpu_idle_w + per_rack @ np.array(caps))
    value = per_rack @ s
    c = cluster.constraints
    A = c.A.toarray()
    # every pair (rack 0's choice, rack 1's choice) at once
    load = A[:, 0, None, None] * rack_w[None, :, None] + A[:, 1, None, None] * rack_w[None, None, :]
    fits = np.all(load <= c.b[:, None, None] + 1e-9, axis=0)
    fits &= busy[:, None] + busy[None, :] <= present_gpus
    total = value[:, None] + value[None, :]
    return float(total[fits].max()) if fits.any() else 0.0


def bound_of(cluster: Cluster, job: Job, present_gpus: int) -> float:
    return FluidBound(cluster, quantum_gpus=1).solve({job_class_key(job): present_gpus})


JOB = Job("a", 1, max_cap_w=700, min_cap_w=400)


@pytest.mark.parametrize("facility_w, feeds_w, present", [
    # nothing binds but the GPUs present
    (BIG, (BIG, BIG), 5),
    # the facility holds 16 GPUs at 600 W exactly (2 x 1,000 W of nodes)
    (2 * 1000 + 16 * 600, (BIG, BIG), 16),
    # rack 0's feed holds its 8 GPUs at 400 W only; rack 1 is free
    (BIG, (1000 + 8 * 400, BIG), 16),
    # both: rack 0 at 500 W, and the facility leaves rack 1 at 600 W
    (2000 + 8 * 500 + 8 * 600, (1000 + 8 * 500, BIG), 16),
])
def test_bound_equals_brute_force_where_the_optimum_is_whole(facility_w, feeds_w, present):
    cluster = tiny_site(facility_w, feeds_w)
    for job in (JOB, JOB.replace(curve="h100-mayr2026")):
        assert bound_of(cluster, job, present) == pytest.approx(
            brute_force(cluster, job, present), rel=1e-9)


def test_bound_is_never_below_brute_force():
    rng = np.random.default_rng(7)
    curve = TabulatedCurve("steep", ((2 / 7, 0.2), (4 / 7, 0.7), (1.0, 1.0)), "test")
    for trial in range(12):
        cluster = tiny_site(float(rng.uniform(4000, 14000)),
                            (float(rng.uniform(3000, 7000)), float(rng.uniform(3000, 7000))),
                            busy_step_w=int(rng.choice([0, 600])),
                            busway_w=float(rng.uniform(5000, 14000)))
        job = JOB.replace(curve=curve) if trial % 2 else JOB
        present = int(rng.integers(1, 17))
        brute = brute_force(cluster, job, present)
        fluid = bound_of(cluster, job, present)
        assert fluid >= brute - 1e-9
        # the relaxation is fractional GPUs and shared busy steps: never more than a
        # GPU's worth per rack above the integer optimum on these sites
        assert fluid <= brute + 2 * 1.0 + 1e-9


def test_rounding_and_cache_keep_an_upper_bound():
    cluster = Cluster.preset("colossus-100k")
    fb = FluidBound(cluster)
    key = job_class_key(Job("a", 8, max_cap_w=700, min_cap_w=350))
    exact = fb.solve({key: 12_345})
    assert fb({key: 12_345}) >= exact
    assert fb({key: 10 ** 6}) == fb({key: cluster.num_gpus})
    # the arithmetic: every GPU busy at about 547 W under 90 MW
    assert fb({key: cluster.num_gpus}) == pytest.approx(94_300, rel=0.005)
    h100 = job_class_key(Job("b", 8, max_cap_w=700, min_cap_w=350, curve=H100_CURVE))
    both = fb({key: 50_000, h100: 50_000})
    assert fb({key: 50_000}) <= both <= fb({key: 50_000}) + fb({h100: 50_000})
