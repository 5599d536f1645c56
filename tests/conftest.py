"""Shared fixtures: every engine test runs once per backend (ids ``c`` and ``py``)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import gpusched
from gpusched.engine import available_backends

# Hypothesis profiles, picked by HYPOTHESIS_PROFILE (default dev):
# - dev: quick, for the edit-test loop (30 examples per test).
# - ci: what .ci/run uses, on both builds; the whole suite stays under 10 minutes on 2
#   cores.  Every planted bug in test_fuzz_finds_bugs.py is found well inside it.
# - long: a soak.  `HYPOTHESIS_PROFILE=long python -m pytest tests/test_engine_stateful.py`
#   runs 20,000 state-machine runs of up to 100 steps: 0.23 s each measured on one
#   core of the dev machine, so about 75 minutes there (a box 2.5x faster still soaks
#   30 minutes); the other fuzz files scale alike.  Build with GPUSCHED_DEBUG_BUILD=1
#   to soak the bounds-checked core.
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20_000, stateful_step_count=100,
                          deadline=None, print_blob=True,
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


@pytest.fixture(autouse=True)
def _gpusched_logger_restored():
    """``gpusched serve`` run in-process (the CLI tests) configures the ``gpusched``
    logger (a handler, a level, no propagation); put it back after every test, so a
    later test's caplog still sees the access log."""
    import logging

    logger = logging.getLogger("gpusched")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
