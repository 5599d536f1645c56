"""Every bad job and bad call gets a typed error naming the value, and changes nothing.

The table is ``tests/support/bad_inputs.py`` (the state machine draws from it too).  Each row
runs on both backends against an engine holding live jobs, and afterwards the engine's
snapshot, its every derived index and its views are exactly what they were.
"""

from __future__ import annotations

import json

import pytest

from gpusched import Engine, Job
from gpusched.errors import GpuschedError, PlacementError

from .support.bad_inputs import BAD_CALLS, Ctx
from .support.verify import check_engine


def _loaded_engine(cluster, backend: str) -> Engine:
    engine = Engine(cluster, backend=backend)
    engine.place(Job("a", 1, min_cap_w=300))
    engine.place(Job("b", 8))
    engine.place(Job("gone", 2))
    engine.release("gone")
    engine.place(Job("c", 16, min_cap_w=250))
    return engine


def _state(engine: Engine):
    """Everything observable, the order jobs are listed in included."""
    snap = engine.snapshot()
    placements = [p.to_dict() for p in engine.placements()]
    return (json.dumps(snap, sort_keys=True), engine._index_state(), placements,
            engine.free_gpus(), engine.row_slack_units().tolist())


def test_table_is_big_enough():
    assert len(BAD_CALLS) >= 25
    assert len({row.name for row in BAD_CALLS}) == len(BAD_CALLS)


@pytest.mark.parametrize("row", BAD_CALLS, ids=[row.name for row in BAD_CALLS])
def test_bad_call_raises_and_changes_nothing(row, tiny, backend):
    engine = _loaded_engine(tiny, backend)
    ctx = Ctx(live="a", live_gpus=1, released="gone", num_gpus=tiny.num_gpus,
              num_pods=tiny.num_pods, snapshot=engine.snapshot())
    before = _state(engine)
    with pytest.raises(row.error) as info:
        row.call(engine, ctx)
    assert isinstance(info.value, GpuschedError)
    message = str(info.value).lower()
    missing = [w for w in row.words if w.lower() not in message]
    assert not missing, f"message {str(info.value)!r} lacks {missing}"
    assert _state(engine) == before
    check_engine(engine)
    # and the engine still works after the error
    assert engine.place(Job("after", 1)) is not None


def test_both_backends_raise_the_same_words(tiny):
    from .conftest import both_backends

    backends = both_backends()
    if len(backends) < 2:
        pytest.skip("needs the compiled core")
    for row in BAD_CALLS:
        messages = []
        for backend in backends:
            engine = _loaded_engine(tiny, backend)
            ctx = Ctx(live="a", live_gpus=1, released="gone", num_gpus=tiny.num_gpus,
                      num_pods=tiny.num_pods, snapshot=engine.snapshot())
            with pytest.raises(row.error) as info:
                row.call(engine, ctx)
            messages.append((type(info.value), str(info.value)))
        assert messages[0] == messages[1], row.name


def test_set_cap_that_breaks_a_row_changes_nothing(tiny, backend):
    engine = _loaded_engine(tiny, backend)
    engine.place(Job("d", 16, min_cap_w=200))
    # the 55 kW facility limit holds e below 700 W
    assert engine.place(Job("e", 8, min_cap_w=200)).cap_w < 700
    before = _state(engine)
    with pytest.raises(PlacementError, match="at 700 W it would break"):
        engine.set_cap("e", 700)
    assert _state(engine) == before
    check_engine(engine)


def test_failed_set_cap_keeps_job_order(tiny, backend):
    engine = _loaded_engine(tiny, backend)
    before = _state(engine)
    with pytest.raises(PlacementError):
        engine.set_cap("a", 199)
    assert _state(engine) == before
