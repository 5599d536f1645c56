"""Helper for test_durable_state.py: a process that saves engine states in a loop.

State c is what ``advance`` gives after c steps from an empty engine on the
``superpod-su`` preset: step i places ``Job(f"j{i}", 1)`` and, once 200 jobs are live,
releases the oldest.  Run as ``python -m tests.support.save_loop PATH``: it loads PATH (the
state a previous, killed run left), prints ``ready C``, then forever advances one step,
saves atomically to PATH and prints the new C, until it is killed.
"""

from __future__ import annotations

import sys

from gpusched import Cluster, Engine, Job

WINDOW = 200


def cluster() -> Cluster:
    return Cluster.preset("superpod-su")


def steps_done(engine: Engine) -> int:
    """C for an engine in state C (its newest job is j{C-1})."""
    return max((int(job.id[1:]) + 1 for job in engine.jobs()), default=0)


def advance(engine: Engine, c: int) -> int:
    """Take the engine from state c to state c + 1; returns c + 1."""
    if c >= WINDOW:
        engine.release(f"j{c - WINDOW}")
    if engine.place(Job(f"j{c}", 1)) is None:
        raise RuntimeError(f"step {c}: a 1-GPU job did not fit")
    return c + 1


def main(path: str) -> None:
    engine = Engine.load(cluster(), path)
    c = steps_done(engine)
    print(f"ready {c}", flush=True)
    while True:
        c = advance(engine, c)
        engine.save(path)
        print(c, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
