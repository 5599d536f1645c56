"""The examples in gpusched's docstrings run, on whichever backend this run tests.

Every module of the package is imported and its docstrings' ``>>>`` examples are run with
``doctest``.  A module that needs an optional extra which is not installed (the service
needs starlette) is skipped with the reason, not failed.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "gpusched"
OPTIONAL = {"starlette", "uvicorn", "httpx", "httptools", "uvloop"}


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def examples(name: str) -> list[doctest.DocTest]:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {exc.name}, an optional extra that is not installed")
        raise
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name)
            if t.examples and getattr(module, "__file__", None)]


@pytest.mark.parametrize("name", module_names())
def test_docstring_examples_run(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_the_public_entry_points_carry_examples():
    # Engine (place and release), Cluster.preset, Job and the simulator show a reader how
    # to start
    found = {t.name for name in ("gpusched.engine", "gpusched.spec.cluster", "gpusched.job",
                                 "gpusched.simulate") for t in examples(name)}
    for entry in ("gpusched.engine.Engine", "gpusched.spec.cluster.Cluster.preset",
                  "gpusched.job.Job", "gpusched.simulate"):
        assert entry in found, f"{entry} has no docstring example"
