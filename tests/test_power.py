"""The power model: PowerModel checks, node power, the cap grid, and s(cap) curves."""

from __future__ import annotations

import numpy as np
import pytest

from gpusched import Job
from gpusched.errors import JobError, SpecError
from gpusched.power import (CURVES, H100_CURVE, PowerModel, QuadraticCurve, TabulatedCurve,
                            check_curve, resolve_curve, throughput)

TABLE_4 = {200: 0.320, 300: 0.594, 400: 0.821, 500: 0.915, 600: 0.966, 700: 1.0}


def test_h100_table_is_the_papers_points_at_700_w():
    caps = np.array(sorted(TABLE_4), dtype=float)
    assert H100_CURVE.speed(caps, 700.0).tolist() == pytest.approx([TABLE_4[c] for c in
                                                                    sorted(TABLE_4)])
    # piecewise linear between them: halfway from 300 to 400 W
    assert H100_CURVE.speed(350, 700.0) == pytest.approx((0.594 + 0.821) / 2)
    assert CURVES["h100-mayr2026"] is H100_CURVE
    assert "2603.16164" in H100_CURVE.source


def test_curves_are_read_at_the_tdp_given():
    # the same fraction of TDP gives the same s, whatever the TDP
    assert H100_CURVE.speed(250, 500.0) == pytest.approx(H100_CURVE.speed(350, 700.0))
    q = QuadraticCurve(1.25)
    assert q.speed(400, 500.0) == pytest.approx(throughput(560, 1.25, 700.0))
    power = PowerModel(gpu_tdp_w=500, cap_min_w=150, cap_max_w=500, gpu_idle_w=50)
    job = Job("a", 8, max_cap_w=500, min_cap_w=150, curve="h100-mayr2026")
    assert power.speed(job, 300) == pytest.approx(H100_CURVE.speed(420, 700.0))


@pytest.mark.parametrize("points, where", [
    (((0.3, 0.3), (0.5, 0.4), (1.0, 1.0)), "points[1]"),        # slope rises there: convex
    (((0.3, 0.3), (0.6, 1.2), (1.0, 1.0)), "points[1]"),        # s above 1
    (((0.3, -0.1), (1.0, 1.0)), "points[0]"),                   # s below 0
    (((0.3, 0.3), (1.2, 1.0)), "points[1]"),                    # cap above the TDP
    (((0.0, 0.0), (1.0, 1.0)), "points[0]"),                    # cap at 0
    (((0.5, 0.8), (0.4, 0.9), (1.0, 1.0)), "points[1]"),        # unsorted
    (((0.5, 0.9), (1.0, 0.8)), "points[1]"),                    # decreasing
    (((1.0, 1.0),), "points"),                                  # one point
])
def test_bad_tables_are_refused_with_the_point_named(points, where):
    with pytest.raises(SpecError) as info:
        TabulatedCurve("bad", points, "test")
    assert info.value.field == f"curve 'bad'.{where}"


def test_a_job_names_its_curve_and_round_trips():
    job = Job("a", 8, max_cap_w=700, min_cap_w=300, curve="h100-mayr2026")
    assert job.curve is H100_CURVE
    data = job.to_dict()
    assert data["curve"] == "h100-mayr2026"
    assert Job.from_dict(data) == job
    custom = TabulatedCurve("mine", ((0.5, 0.7), (1.0, 1.0)), "test")
    job2 = Job("b", 1, max_cap_w=700, min_cap_w=350, curve=custom)
    assert Job.from_dict(job2.to_dict()).curve == custom
    # the default stays the proxy and stays out of to_dict (old snapshots compare equal)
    plain = Job("c", 8, sensitivity=2.0)
    assert "curve" not in plain.to_dict() and plain.curve == QuadraticCurve(2.0)
    assert Job("d", 8, curve={"kind": "quadratic", "sensitivity": 1.5}).sensitivity == 1.5


@pytest.mark.parametrize("curve", ["no-such-curve", 3, {"kind": "tabulated", "name": "x",
                                                         "points": [[0.5, 0.9], [1, 0.5]]}])
def test_bad_curves_on_a_job_raise_job_error(curve):
    with pytest.raises(JobError, match="'a'"):
        Job("a", 8, curve=curve)


def test_caps_outside_the_measured_range_are_refused_on_a_site():
    power = PowerModel()
    narrow = TabulatedCurve("narrow", ((0.5, 0.8), (1.0, 1.0)), "test")
    job = Job("a", 8, max_cap_w=700, min_cap_w=300, curve=narrow)
    with pytest.raises(JobError, match="min_cap_w=300 is outside the caps its curve"):
        check_curve(power, job)
    check_curve(power, job.replace(min_cap_w=350))
    assert resolve_curve(None, 1.25) is resolve_curve(None, 1.25)


# ---- PowerModel: its checks, node power, the cap grid -------------------------------

@pytest.mark.parametrize("params, field, words", [
    ({"gpus_per_node": 0}, "power.gpus_per_node", "[1, 64]"),
    ({"gpus_per_node": 8.0}, "power.gpus_per_node", "whole number"),
    ({"cap_step_w": True}, "power.cap_step_w", "whole number"),
    ({"cap_step_w": 0}, "power.cap_step_w", "at least 1"),
    ({"gpu_idle_w": -1}, "power.gpu_idle_w", "[0, 1000000]"),
    ({"cap_min_w": 800}, "power.cap_min_w", "cap_min_w <= cap_max_w"),
    ({"gpu_idle_w": 200}, "power.gpu_idle_w", "gpu_idle_w=200 must be below cap_min_w=200"),
    ({"node_other_busy_w": 1000}, "power.node_other_busy_w", "at least node_other_idle_w"),
    ({"gpu_tdp_w": 600}, "power.gpu_tdp_w", "gpu_tdp_w=600 must be at least cap_max_w=700"),
])
def test_power_model_refuses_bad_values_naming_the_field(params, field, words):
    with pytest.raises(SpecError, match=words.replace("[", r"\[").replace("]", r"\]")) as info:
        PowerModel(**params)
    assert info.value.field == field


def test_node_power_counts_other_idle_and_capped_gpus():
    power = PowerModel()
    # an idle node: the other parts idle and eight idle GPUs
    assert power.node_power_w([]) == 1550 + 8 * 65 == power.node_idle_w
    # one busy GPU switches the other parts to busy; the rest stay idle
    assert power.node_power_w([700]) == 2800 + 7 * 65 + 700
    assert power.node_power_w([400] * 8) == 2800 + 8 * 400
    assert power.busy_step_w == 2800 - 1550
    with pytest.raises(ValueError, match="a node has 8 GPUs, got 9 caps"):
        power.node_power_w([700] * 9)


@pytest.mark.parametrize("step, max_cap, min_cap, grid", [
    (25, 700, 700, [700]),
    (25, 700, 600, [700, 675, 650, 625, 600]),
    (25, 700, 612, [700, 675, 650, 625, 612]),        # an off-grid minimum comes last
    (50, 650, 500, [650, 600, 550, 500]),
    (50, 612, 500, [612, 562, 512, 500]),             # the grid hangs from the maximum
])
def test_cap_grid_walks_down_from_the_maximum_and_ends_at_the_minimum(step, max_cap, min_cap,
                                                                       grid):
    assert PowerModel(cap_step_w=step).cap_grid_w(max_cap, min_cap) == grid


def test_throughput_proxy_is_one_at_tdp_concave_and_clipped():
    caps = np.arange(200, 701, 25, dtype=float)
    s = throughput(caps, 1.25, 700.0)
    assert s[-1] == pytest.approx(1.0)
    assert np.all(np.diff(s) >= 0)                       # more watts never slow a job down
    assert np.all(np.diff(s, 2) <= 1e-12)                # concave: the allocator's LP needs it
    assert throughput(420, 1.25, 700.0) == pytest.approx(1 - 1.25 * 0.4 ** 2)
    assert throughput(100, 4.0, 700.0) == pytest.approx(0.3)   # clipped at 0.3
    # read against the TDP given: the same fraction gives the same speed
    assert throughput(300, 1.25, 500.0) == pytest.approx(throughput(420, 1.25, 700.0))
