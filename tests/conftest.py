"""Shared fixtures: every engine test runs once per backend (ids ``c`` and ``py``)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import gpusched
from gpusched.engine import available_backends

# Hypothesis profiles: `dev` is quick, `ci` is what .ci/run uses, `long` is a soak of
# at least 30 minutes (HYPOTHESIS_PROFILE=long pytest tests/test_engine_stateful.py).
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=200_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

BACKENDS = [
    pytest.param("cython", id="c", marks=pytest.mark.skipif(
        "cython" not in available_backends(), reason="compiled core not built")),
    pytest.param("python", id="py"),
]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def colossus() -> gpusched.Cluster:
    return gpusched.Cluster.preset("colossus-100k")


@pytest.fixture(scope="session")
def tiny() -> gpusched.Cluster:
    return gpusched.Cluster.preset("tiny")


def both_backends() -> list[str]:
    """Backends to cross in differential tests (both when the core is built)."""
    return [b for b in ("cython", "python") if b in available_backends()]
