"""gpusched sweep on a real Dask cluster: a scheduler and two workers on 127.0.0.1.

Each test starts ``dask scheduler`` and two ``dask worker`` processes (the programs
``python -m distributed.cli.dask_scheduler`` / ``dask_worker``, which the ``dask``
command runs, started with this interpreter so they import this checkout), on free
ports, and stops them.  Workers run without a nanny, so a killed worker stays dead.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.real import need_modules

from .test_sweep import BASE, comparable

CHECKOUT = Path(__file__).resolve().parent.parent
START_S = 120  # bound on the cluster's start-up (a busy 2-core machine)
SWEEP_S = 300  # bound on a sweep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture
def dask_cluster(tmp_path):
    need_modules("distributed", pip="'gpusched[sweep]'")
    from distributed import Client

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT)] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(port), "--no-dashboard"],
            env=env, cwd=tmp_path, stdout=open(logs / "scheduler.log", "w"),
            stderr=subprocess.STDOUT))
        workers = []
        for i in range(2):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address,
                 "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                 "--name", f"w{i}", "--death-timeout", str(START_S),
                 "--local-directory", str(tmp_path / f"w{i}")],
                env=env, cwd=tmp_path, stdout=open(logs / f"w{i}.log", "w"),
                stderr=subprocess.STDOUT))
        procs += workers
        with Client(address, timeout=f"{START_S}s") as client:
            client.wait_for_workers(2, timeout=START_S)
        yield address, workers
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _spec(facility_mw: list[int]) -> dict:
    return {"sweep": {"name": "dask", "replications": 2, "timeout_s": 120},
            "base": dict(BASE), "grid": {"policy": ["fifo", "backfill"],
                                         "facility_mw": facility_mw}}


def test_dask_and_local_processes_give_the_same_table(tmp_path, dask_cluster):
    from gpusched.sweep import run

    address, workers = dask_cluster
    on_dask = run(_spec([70, 110]), tmp_path / "dask", dask=address, plots=False)
    local = run(_spec([70, 110]), tmp_path / "local", workers=2, plots=False)
    assert len(on_dask.rows) == 8 and not on_dask.failed and not local.failed
    # fifo and backfill are deterministic: every column but the wall-clock ones agrees
    assert comparable(on_dask.rows) == comparable(local.rows)
    dask_csv = list(csv.DictReader(open(tmp_path / "dask" / "runs.csv")))
    local_csv = list(csv.DictReader(open(tmp_path / "local" / "runs.csv")))
    assert comparable(dask_csv) == comparable(local_csv)
    # the runs really ran in the two dask workers (a row names its worker's pid)
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in on_dask.rows}
    assert pids == {w.pid for w in workers}


def test_a_worker_killed_mid_sweep_leaves_no_run_unaccounted(tmp_path, dask_cluster):
    from gpusched.sweep import run

    address, workers = dask_cluster
    out = tmp_path / "sweep"
    spec = _spec([70, 80, 90, 100, 110])
    box: dict = {}

    def sweep() -> None:
        try:
            box["result"] = run(spec, out, dask=address, plots=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            box["error"] = exc

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    deadline = time.monotonic() + SWEEP_S
    while len(list(out.glob("runs/*/result.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    done_at_kill = len(list(out.glob("runs/*/result.json")))
    victim, survivor = workers
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=20)
    thread.join(timeout=SWEEP_S)
    assert not thread.is_alive(), "the sweep did not finish after a worker died"
    assert "error" not in box, box.get("error")
    assert 2 <= done_at_kill < 20, "the worker was not killed in the middle of the sweep"
    result = box["result"]
    # every run accounted for: one row each, all finished, in the sweep's order
    assert len(result.rows) == 20
    assert [r["status"] for r in result.rows] == ["ok"] * 20, \
        [(r["run"], r["status"], r["error"]) for r in result.rows if r["status"] != "ok"]
    by_pid: dict[int, int] = {}
    for r in result.rows:
        pid = int(r["worker"].rsplit(":", 1)[1])
        by_pid[pid] = by_pid.get(pid, 0) + 1
    # what the dead worker left was done by the one that lived: it had filed
    # done_at_kill rows, and with one thread it can have held at most a couple more
    # results the client had fetched but not yet filed
    assert by_pid.get(survivor.pid, 0) >= 20 - done_at_kill - 2
    assert set(by_pid) <= {victim.pid, survivor.pid}
    assert len(list(out.glob("runs/*/result.json"))) == 20
