"""Throughput curves: the quadratic proxy, the measured H100 table, and their checks."""

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
