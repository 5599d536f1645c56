"""The engine lock on both twins: re-entry, exclusion, and no lost wake-up."""

from __future__ import annotations

import threading

from gpusched import Engine, Job

from .support.verify import check_engine


def test_lock_excludes_other_threads_and_wakes_every_waiter(tiny, backend):
    # The compiled core's lock keeps its state under the GIL and puts waiters to sleep
    # on a second lock (EngineLock's docstring); check the three things that can go
    # wrong with such a lock: re-entry, exclusion, and a lost wake-up.
    engine = Engine(tiny, backend=backend)
    with engine._lock:
        with engine._lock:  # re-entrant: the holder may call the public methods
            assert engine.place(Job("inside", 1)) is not None
    events: list[str] = []
    holding = threading.Event()

    def holder() -> None:
        with engine._lock:
            holding.set()
            # every waiter below must still be blocked, whatever the scheduler does
            for _ in range(200):
                threading.Event().wait(0.001)
            events.append("holder out")

    def waiter(i: int) -> None:
        holding.wait()
        engine.place(Job(f"w{i}", 1))
        events.append(f"w{i} in")

    # daemon threads, so a lost wake-up fails this test instead of hanging the run
    threads = [threading.Thread(target=holder, daemon=True)]
    threads += [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a waiter was never woken"
    assert events[0] == "holder out"
    assert sorted(events[1:]) == ["w0 in", "w1 in", "w2 in"]
    assert all(f"w{i}" in engine for i in range(3))
    check_engine(engine)
