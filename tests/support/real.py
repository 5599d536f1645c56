"""Tests that start real components (slurmctld and munged, Chromium, a Dask cluster).

Such a test asks for what it needs with :func:`need_programs` or :func:`need_modules`.
On a machine without them it is skipped, and the reason names the Debian or pip
package to install.  ``.ci/run`` sets ``GPUSCHED_REQUIRE_REAL=1``, which turns every
such skip into a failure: a CI run that quietly skipped the real slurmctld would look
green while testing nothing.

Real-component tests run in the compiled-core pass only.  They test a protocol or a
process boundary, not the twin underneath, and they are the slowest tests we have;
under ``GPUSCHED_NO_EXTENSIONS=1`` they skip with a reason that says so (not a
missing-package skip, so the switch leaves it alone).
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

REQUIRE_ENV = "GPUSCHED_REQUIRE_REAL"


def required() -> bool:
    """True when a missing real component must fail the run (``.ci/run`` sets it)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def _missing(what: str, install: str) -> None:
    message = f"needs {what}: install it with `{install}`"
    if required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 turns this skip into a failure)")
    pytest.skip(message)


def compiled_pass_only() -> None:
    """Skip in the pure-Python-twin pass: the test exercises no engine code of its own."""
    if os.environ.get("GPUSCHED_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("real-component test: runs once, in the compiled-core pass")


def need_programs(*programs: str, apt: str) -> dict[str, str]:
    """Absolute paths of ``programs``; skip (or fail under the switch) when one is absent.

    ``apt`` is the ``apt-get install`` line that provides them, e.g.
    ``"slurmctld slurm-client munge"``.
    """
    compiled_pass_only()
    found = {}
    for program in programs:
        path = shutil.which(program) or next(
            (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}") if os.path.exists(p)),
            None)
        if path is None:
            _missing(f"the program {program!r}", f"apt-get install -y {apt}")
        found[program] = str(path)
    return found


def need_modules(*modules: str, pip: str) -> None:
    """Skip (or fail under the switch) unless every module imports; ``pip`` names the extra."""
    compiled_pass_only()
    for module in modules:
        if importlib.util.find_spec(module) is None:
            _missing(f"the Python module {module!r}", f"pip install {pip}")
