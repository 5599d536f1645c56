"""Where the runs go: a ``concurrent.futures.Executor``, local processes or Dask.

- :func:`local` -- a ``ProcessPoolExecutor`` of fresh interpreters (``spawn``): the
  default, no daemons.  A worker that dies breaks the whole pool (the standard library's
  rule); the sweep then starts a new pool and resubmits what was unfinished.
- :func:`dask` -- ``"local"`` starts a ``dask.distributed.LocalCluster`` of single-thread
  worker processes; ``"tcp://host:8786"`` connects to an existing scheduler.  Either way
  the sweep gets ``Client.get_executor()``, a standard Executor.  Dask reruns the tasks
  of a worker that died on the others (up to its ``allowed-failures``).

Dask is imported here, only when asked for: ``import gpusched`` never loads it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, Callable, Iterator

from ..errors import SweepError

__all__ = ["local", "dask", "executor_for", "INSTALL_DASK"]

INSTALL_DASK = "pip install 'gpusched[sweep]'"


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


@contextlib.contextmanager
def local(workers: int | None = None) -> Iterator[Callable[[], Executor]]:
    """Yields a factory of process pools (a new one after a pool breaks)."""
    n = workers or default_workers()
    pools: list[ProcessPoolExecutor] = []

    def make() -> Executor:
        # spawn: each worker a fresh interpreter, as a Dask worker is, and no fork of a
        # process that runs threads (the progress bar's)
        pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
        pools.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise SweepError(f"--dask needs dask.distributed, which is not installed ({exc}); "
                         f"install it with `{INSTALL_DASK}`", field="dask") from None
    return distributed


@contextlib.contextmanager
def dask(address: str, workers: int | None = None) -> Iterator[Callable[[], Executor]]:
    """Yields a factory that returns the Dask client's executor (always the same one)."""
    distributed = _import_distributed()
    if address != "local" and "://" not in address:
        raise SweepError(f"--dask takes 'local' or a scheduler address such as "
                         f"tcp://host:8786, got {address!r}", field="dask")
    with contextlib.ExitStack() as stack:
        if address == "local":
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers or default_workers(), threads_per_worker=1,
                processes=True, host="127.0.0.1", dashboard_address=None))
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(address, timeout="30s"))
            except OSError as exc:
                raise SweepError(f"cannot reach the Dask scheduler at {address}: {exc}",
                                 field="dask") from None
        executor = client.get_executor(pure=False)
        yield lambda: executor


def executor_for(dask_address: str | None, workers: int | None
                 ) -> contextlib.AbstractContextManager[Callable[[], Executor]]:
    if workers is not None and workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}", field="workers")
    return local(workers) if dask_address is None else dask(dask_address, workers)
