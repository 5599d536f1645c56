"""A reader thread may list an engine's jobs while another places and releases
(issue 13, finding 7): the twin's views once iterated its dict without the lock and
raised "dictionary changed size during iteration"."""

from __future__ import annotations

import sys
import threading

from gpusched import Engine, Job


def test_views_while_another_thread_places_and_releases(colossus, backend):
    engine = Engine(colossus, backend=backend)
    engine.place_many([Job(f"resident-{i}", 1) for i in range(3_000)])
    errors: list[BaseException] = []
    done = threading.Event()

    def churn() -> None:
        try:
            for i in range(20_000):
                engine.place(Job(f"churn-{i}", 1))
                if i >= 8:
                    engine.release(f"churn-{i - 8}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def read() -> None:
        try:
            while not done.is_set():
                placements, jobs = engine.placements(), engine.jobs()
                assert len(placements) >= 3_000 and len(jobs) >= 3_000
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over often, mid-iteration
    try:
        threads = [threading.Thread(target=churn), threading.Thread(target=read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    assert len(engine) == 3_008
