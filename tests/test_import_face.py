"""The package's face stays light: ``import gpusched`` and ``gpusched --help`` load no
heavy dependency, and the lazily loaded names still work.

Each check runs in a fresh interpreter (``python -c``), because this test process has
long since imported everything.  The checks look at ``sys.modules``, never at a clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent

# what neither the bare import nor the top-level help may load: the allocator's solver,
# scipy.sparse (loaded once a cluster builds its constraint matrix), the simulator's plotting, the service's web stack, and the packages that bring them
HEAVY = ["scipy.optimize", "scipy.sparse", "matplotlib", "starlette", "uvicorn",
         "gpusched.plan", "gpusched.simulate", "gpusched.serve", "gpusched.sweep", "dask",
         "distributed"]

# the names gpusched loads on first use (PEP 562)
LAZY = ["allocate", "apply", "rebalance_caps", "Allocation", "CapPlan"]

# prints, as JSON, which of HEAVY are loaded after the statements before it
_REPORT = "import json, sys; print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT)] + [p for p in
                                        env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.run([sys.executable, *(["-c", code] if code else []), *args],
                          cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=120)


def _loaded_after(statements: str) -> list[str]:
    result = _run(statements + "\n" + _REPORT.format(heavy=HEAVY))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_checkout_under_test_is_the_one_imported():
    # otherwise the checks below would inspect some installed copy
    result = _run("import gpusched; print(gpusched.__file__)")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == CHECKOUT / "gpusched"


def test_import_gpusched_loads_nothing_heavy():
    assert _loaded_after("import gpusched") == []


@pytest.mark.parametrize("argv", [["--help"], ["show", "--help"], ["place", "--help"],
                                  ["status", "--help"], ["jobs", "--help"],
                                  ["release", "--help"], ["explain", "--help"]])
def test_help_loads_nothing_heavy(argv):
    statements = (
        "import contextlib, io\n"
        "from gpusched.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "assert 'usage: gpusched' in out.getvalue(), out.getvalue()\n"
    )
    assert _loaded_after(statements) == []


def test_plugged_subcommand_help_still_lists_its_options():
    # the plugged packages are imported when their subcommand is the one asked for
    for command, option in [("simulate", "--policy"), ("serve", "--state"),
                            ("sweep", "--dask")]:
        result = _run("", "-m", "gpusched", command, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: gpusched {command}" in result.stdout
        assert option in result.stdout


def test_python_dash_m_gpusched_is_the_command_line():
    result = _run("", "-m", "gpusched", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("show", "place", "simulate", "serve", "sweep"):
        assert command in result.stdout


def test_lazy_names_import_and_load_the_allocator():
    statements = (
        "from gpusched import " + ", ".join(LAZY) + "\n"
        "import gpusched, gpusched.plan as plan\n"
        f"assert all(getattr(gpusched, n) is getattr(plan, n) for n in {LAZY!r})\n"
    )
    assert _loaded_after(statements) == ["gpusched.plan", "scipy.optimize", "scipy.sparse"]


def test_lazy_names_are_public_and_listed():
    # in-process is fine here: dir and __all__ do not depend on what is loaded
    import gpusched

    for name in LAZY:
        assert name in gpusched.__all__
        assert name in dir(gpusched)
    assert set(gpusched.__all__) <= set(dir(gpusched))


def test_unknown_attribute_is_still_an_attribute_error():
    import gpusched

    with pytest.raises(AttributeError, match="no_such_name"):
        gpusched.no_such_name  # noqa: B018
    assert not hasattr(gpusched, "no_such_name")
