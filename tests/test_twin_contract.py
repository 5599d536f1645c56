"""The twin contract (gpusched/_core.py): both engine cores provide the same members.

mypy proves the types (``python -m mypy gpusched``) and stubtest proves the stub
matches the compiled module; these tests check at run time what those cannot: that
both classes really have every member, with the same parameter names, and that the
stub, the Protocol and the twins list the same members.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from gpusched import Engine, _core, _engine_py
from gpusched.engine import available_backends

PACKAGE = Path(_core.__file__).resolve().parent


def _core_class(backend: str) -> type:
    if backend == "python":
        return _engine_py.EngineCore
    if "cython" not in available_backends():
        pytest.skip("compiled core not built")
    from gpusched import _engine_c

    return _engine_c.EngineCore


def _protocol_members() -> set[str]:
    tree = ast.parse((PACKAGE / "_core.py").read_text())
    proto = next(n for n in tree.body if isinstance(n, ast.ClassDef)
                 and n.name == "EngineCoreAPI")
    return {n.name for n in proto.body if isinstance(n, ast.FunctionDef)}


def test_protocol_lists_every_core_method():
    # CORE_METHODS (for run-time checks) and the Protocol's methods are one list
    assert _protocol_members() - {"cluster", "_lock"} == set(_core.CORE_METHODS)


def test_stub_declares_the_contract():
    tree = ast.parse((PACKAGE / "_engine_c.pyi").read_text())
    stub = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "EngineCore")
    declared = {n.name for n in stub.body if isinstance(n, ast.FunctionDef)}
    declared |= {n.target.id for n in stub.body
                 if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert _protocol_members() <= declared


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_core_has_every_contract_member(backend, tiny):
    cls = _core_class(backend)
    missing = [name for name in _core.CORE_METHODS if not callable(getattr(cls, name, None))]
    assert not missing
    core = cls(tiny)
    assert core.cluster is tiny
    with core._lock:  # a context manager, re-entrant
        with core._lock:
            pass


@pytest.mark.parametrize("name", [m for m in _core.CORE_METHODS if not m.startswith("__")])
def test_twins_take_the_same_parameters(name):
    # positional parameter names as the callers pass them (explain, restore, set_cap)
    compiled = _core_class("cython")

    def names(cls):
        return [p.name for p in inspect.signature(getattr(cls, name)).parameters.values()]

    assert names(compiled) == names(_engine_py.EngineCore)


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_cluster_is_read_only_on_both_twins(backend, tiny):
    # The compiled core's cluster is a readonly attribute; the twin's was a plain one
    # that could be reassigned under a live state.  Both refuse now.
    if backend not in available_backends():
        pytest.skip("compiled core not built")
    engine = Engine(tiny, backend=backend)
    with pytest.raises(AttributeError):
        engine.cluster = tiny
    assert engine.cluster is tiny
