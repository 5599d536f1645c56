"""One error hierarchy: every deliberate error is a GpuschedError, and names its field.

The source walk fails on a bare builtin raised on purpose anywhere in the package; the
field tests feed each Job field a bad value and check the error names that field, in
the same words and with the same ``field`` on both engine twins.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import gpusched
from gpusched import Engine, Job
from gpusched.errors import (DuplicateJobError, GpuschedError, JobError, SpecError,
                             UnknownJobError)
from tests.conftest import both_backends

PACKAGE_DIR = Path(gpusched.__file__).parent

# The builtins that bad input must not surface as: raise a GpuschedError subclass that
# also derives from the builtin instead (JobError is a ValueError, UnknownJobError a
# KeyError), so callers catching the builtin keep working.
BARE_BUILTINS = {"ValueError", "TypeError", "KeyError", "RuntimeError", "IndexError",
                 "LookupError", "Exception"}

# (exception, how its message starts) of the raises that are not about a caller's
# input.  Keyed by message, not path, so the entries survive modules being split.
ALLOWED_BARE_RAISES = {
    # Internal invariants of the journal: the service itself calls it out of order.
    ("RuntimeError", "Journal.recover() must run before write()"),
    ("RuntimeError", "the journal is closed; nothing to flush"),
    ("RuntimeError", "checkpoint while a journal fsync is in flight"),
    # The TOML writer meets a type the spec schema never produces: a bug, not input.
    ("TypeError", "cannot write "),
    # The Kubernetes API server failed or is absent: the world, not the caller's input;
    # the bind verb reports it in ExtenderBindingResult.Error.
    ("RuntimeError", "KUBERNETES_SERVICE_HOST is not set"),
    ("RuntimeError", "API server answered "),
    ("RuntimeError", "API server unreachable: "),
    # The fluid bound's LP solver failed on a well-formed problem: a solver fault.
    ("RuntimeError", "fluid bound LP failed: "),
}

# Exception classes defined in the package that are not (yet) GpuschedErrors.
ALLOWED_FOREIGN_CLASSES: set[str] = {
    # control flow inside one function (a search over its step budget), caught there and
    # never seen by a caller: the HiGHS fallback answers instead
    "gpusched.plan.preempt._TooLong",
}


def _message_start(call: ast.Call) -> str:
    """The constant text a raise's message starts with ("" if it starts computed)."""
    if not call.args:
        return ""
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    if isinstance(first, ast.JoinedStr) and first.values:
        head = first.values[0]
        if isinstance(head, ast.Constant):
            return str(head.value)
    return ""


def bare_raises(source: str) -> list[tuple[int, str, str]]:
    """(line, builtin, message start) of every ``raise <bare builtin>`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = (target.id if isinstance(target, ast.Name)
                else target.attr if isinstance(target, ast.Attribute) else None)
        if name in BARE_BUILTINS:
            start = _message_start(node.exc) if isinstance(node.exc, ast.Call) else ""
            found.append((node.lineno, name, start))
    return sorted(found)


def _allowed(name: str, start: str) -> bool:
    return any(name == kind and start.startswith(prefix)
               for kind, prefix in ALLOWED_BARE_RAISES)


def test_the_walk_finds_a_bare_raise():
    # the walk itself must see the forms it polices, or the next test proves nothing
    source = ("def f(x):\n    if x:\n        raise ValueError(f'x={x} is bad')\n"
              "    raise builtins.KeyError('k')\n    raise JobError('fine')\n")
    assert bare_raises(source) == [(3, "ValueError", "x="), (4, "KeyError", "k")]


def test_no_bare_builtin_is_raised_on_purpose():
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for line, name, start in bare_raises(path.read_text(encoding="utf-8")):
            if not _allowed(name, start):
                offenders.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{line}: "
                                 f"raise {name}({start!r}...)")
    assert not offenders, ("raise a gpusched.errors class (keeping the builtin as a "
                           "second base) instead of:\n" + "\n".join(offenders))


def _package_modules() -> list[Any]:
    modules = []
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="gpusched."):
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError as exc:  # an optional dependency (starlette) is missing
            if exc.name is not None and exc.name.startswith("gpusched"):
                raise
    return modules


def test_every_exception_class_of_the_package_is_a_gpusched_error():
    foreign = sorted(
        f"{module.__name__}.{name}"
        for module in _package_modules()
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
        and value.__module__ == module.__name__
        and not issubclass(value, GpuschedError)
        and f"{module.__name__}.{name}" not in ALLOWED_FOREIGN_CLASSES)
    assert not foreign, f"not GpuschedError subclasses: {foreign}"


def test_field_is_a_keyword_of_every_error_and_keeps_the_builtin_base():
    from gpusched import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, GpuschedError)
        assert cls("a message").field is None
        assert cls("a message", field="gpus").field == "gpus"
        if cls is not GpuschedError:  # the builtin base that callers may catch
            assert issubclass(cls, (ValueError, KeyError, TypeError)), name
    # SpecError alone puts the field in front of the message (a path into a file)
    assert str(SpecError("must be > 0", field="racks[3].feed_w")) == \
        "racks[3].feed_w: must be > 0"
    assert str(JobError("must be at least 1", field="gpus")) == "must be at least 1"
    assert str(UnknownJobError("no job 'x'", field="job_id")) == "no job 'x'"


# ---- each bad Job field is named by field ---------------------------------------------

@pytest.mark.parametrize("fields, field", [
    ({"id": ""}, "id"),
    ({"id": "x" * 257}, "id"),
    ({"id": 7}, "id"),
    ({"gpus": 0}, "gpus"),
    ({"gpus": 2.5}, "gpus"),
    ({"gpus": True}, "gpus"),
    ({"max_cap_w": float("nan")}, "max_cap_w"),
    ({"max_cap_w": "700"}, "max_cap_w"),
    ({"max_cap_w": 650.5}, "max_cap_w"),
    ({"min_cap_w": float("inf")}, "min_cap_w"),
    ({"min_cap_w": 500, "max_cap_w": 400}, "min_cap_w"),
    ({"weight": -1.0}, "weight"),
    ({"weight": float("nan")}, "weight"),
    ({"sensitivity": -0.5}, "sensitivity"),
    ({"sensitivity": "high"}, "sensitivity"),
    ({"curve": "no-such-curve"}, "curve"),
    ({"curve": {"kind": "tabulated", "name": "flat", "points": [[0.5, 1.0]]}}, "curve"),
    ({"curve": 3}, "curve"),
])
def test_a_bad_job_field_is_named_by_the_error(fields, field):
    args = {"id": "j", "gpus": 8, **fields}
    with pytest.raises(JobError) as caught:
        Job(**args)
    assert caught.value.field == field


@pytest.mark.parametrize("data, field", [
    ({"id": "j", "gpus": 8, "colour": "red"}, "colour"),
    ({"gpus": 8}, "id"),
    ({"id": "j"}, "gpus"),
])
def test_job_from_dict_names_the_bad_key(data, field):
    with pytest.raises(JobError) as caught:
        Job.from_dict(data)
    assert caught.value.field == field


def _lying_job(name: str, value: Any) -> Job:
    """A Job subclass whose ``name`` reads as ``value``, past Job's own checks, so the
    engine's checks (the ones the twins share) meet it."""

    class LyingJob(Job):
        __slots__ = ()

        def __getattribute__(self, attr: str) -> Any:
            return value if attr == name else object.__getattribute__(self, attr)

    return LyingJob("liar", 8, min_cap_w=400)


# (what the engine is given, the field the error must name).  Each goes through the
# checks the engine does itself (the cluster's node size, GPU count and cap range,
# live ids, pods), which the compiled twin runs partly in C.
ENGINE_CASES = {
    "gpus-not-whole-nodes": (lambda: (Job("a", 12), None), "gpus"),
    "gpus-over-the-cluster": (lambda: (Job("a", 128), None), "gpus"),
    "max-cap-over-the-gpu": (lambda: (Job("a", 8, max_cap_w=800), None), "max_cap_w"),
    "min-cap-under-the-gpu": (lambda: (Job("a", 8, min_cap_w=100), None), "min_cap_w"),
    "id-already-placed": (lambda: (Job("held", 8), None), "id"),
    "pod-out-of-range": (lambda: (Job("a", 8), 2), "pod"),
    "pod-unknown-name": (lambda: (Job("a", 8), "pod-9"), "pod"),
    "pod-not-an-index": (lambda: (Job("a", 8), 1.5), "pod"),
    "subclass-gpus-float": (lambda: (_lying_job("gpus", 8.0), None), "gpus"),
    "subclass-gpus-zero": (lambda: (_lying_job("gpus", 0), None), "gpus"),
    "subclass-min-above-max": (lambda: (_lying_job("min_cap_w", 701), None), "min_cap_w"),
    "subclass-max-cap-str": (lambda: (_lying_job("max_cap_w", "700"), None), "max_cap_w"),
    "subclass-id-int": (lambda: (_lying_job("id", 5), None), "id"),
}


def _engine_error(backend: str, call: str, job: Job, pod: Any) -> GpuschedError:
    engine = Engine(gpusched.Cluster.preset("tiny"), backend=backend)
    engine.place(Job("held", 8))
    before = engine.snapshot()
    with pytest.raises(GpuschedError) as caught:
        if call == "place":
            engine.place(job, pod=pod)
        elif call == "explain":
            engine.explain(job, pod=pod)
        else:
            engine.place_many([Job("fine", 1), job], pod=pod)
    assert engine.snapshot() == before
    return caught.value


@pytest.mark.parametrize("call", ["place", "explain", "place_many"])
@pytest.mark.parametrize("case", sorted(ENGINE_CASES))
def test_engine_errors_name_the_field_alike_on_both_twins(case, call):
    make, field = ENGINE_CASES[case]
    answers = []
    for backend in both_backends():
        exc = _engine_error(backend, call, *make())
        answers.append((backend, type(exc), str(exc), exc.field))
        assert exc.field == field, (backend, str(exc))
    assert len({a[1:] for a in answers}) == 1, answers


def test_batch_and_release_errors_name_the_id_alike_on_both_twins():
    answers = set()
    for backend in both_backends():
        engine = Engine(gpusched.Cluster.preset("tiny"), backend=backend)
        engine.place(Job("held", 8))
        with pytest.raises(DuplicateJobError) as twice:
            engine.place_many([Job("a", 1), Job("a", 1)])
        with pytest.raises(UnknownJobError) as unknown:
            engine.release("nobody")
        with pytest.raises(UnknownJobError) as released_twice:
            engine.release_many(["held", "held"])
        with pytest.raises(UnknownJobError) as not_str:
            engine.release(7)
        assert twice.value.field == "id"
        assert {unknown.value.field, released_twice.value.field,
                not_str.value.field} == {"job_id"}
        answers.add(tuple((str(e.value), e.value.field)
                          for e in (twice, unknown, released_twice, not_str)))
    assert len(answers) == 1, answers


def test_engine_argument_errors_name_the_argument(backend):
    tiny = gpusched.Cluster.preset("tiny")
    with pytest.raises(ValueError) as no_backend:
        Engine(tiny, backend="fortran")
    assert isinstance(no_backend.value, GpuschedError)
    assert no_backend.value.field == "backend"
    with pytest.raises(TypeError) as not_a_cluster:
        Engine("tiny", backend=backend)
    assert isinstance(not_a_cluster.value, GpuschedError)
    assert not_a_cluster.value.field == "cluster"
    engine = Engine(tiny, backend=backend)
    engine.place(Job("a", 8, min_cap_w=400))
    for bad in (300, 7.5):
        with pytest.raises(GpuschedError) as caught:
            engine.set_cap("a", bad)
        assert caught.value.field == "cap_w"
    with pytest.raises(KeyError) as no_row:
        tiny.constraints.row("no-such-row")
    assert isinstance(no_row.value, GpuschedError) and no_row.value.field == "name"
    assert str(no_row.value) == "no constraint row named 'no-such-row'"
