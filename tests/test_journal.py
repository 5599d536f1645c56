"""The journal: recovery and replay, then fault injection (failed and partial appends, a
full disk, damaged complete records, checkpoint failures, and crashes between the steps of
place and checkpoint).

The promise checked after every restart: every acknowledged change is there, nothing
unacknowledged is, and the directory starts.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import gpusched
from gpusched.errors import SnapshotError
from gpusched.serve import PlacementService, create_app
from gpusched.serve import journal as journal_module
from gpusched.serve.journal import JOURNAL_NAME, SNAPSHOT_NAME, Journal, encode_entry
from gpusched.state import decode_state, encode_state, write_atomic

from .support.services import crash_copy, stream
from .support.verify import check_engine

pytest.importorskip("starlette")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def array() -> gpusched.Cluster:
    return gpusched.Cluster.preset("colossus-array")


def placed(service: PlacementService) -> set[str]:
    return {p.job_id for p in service.engine.placements()}


def restart(service: PlacementService, tmp_path, name: str, backend=None) -> PlacementService:
    """The directory as a crash leaves it (no final checkpoint), started again."""
    target = tmp_path / name
    shutil.copytree(service.state_dir, target, ignore=shutil.ignore_patterns("lock"))
    return PlacementService(service.cluster, target, backend=backend)


class FailingWrites:
    """os.write that, from the armed call on, writes ``partial`` bytes then fails."""

    def __init__(self, partial: int, err: int = errno.ENOSPC) -> None:
        self.partial, self.err, self.armed = partial, err, False
        self.real = os.write

    def __call__(self, fd: int, data) -> int:
        if not self.armed:
            return self.real(fd, data)
        if self.partial:
            done = self.real(fd, bytes(data[:self.partial]))
            self.partial = 0  # the next call (the rest of the record) fails
            return done
        raise OSError(self.err, os.strerror(self.err))


@pytest.mark.parametrize("partial", [0, 1, 17])
def test_failed_append_changes_nothing_in_memory_or_on_disk(tmp_path, array, backend,
                                                            monkeypatch, partial):
    service = PlacementService(array, tmp_path / "s", backend=backend)
    with TestClient(create_app(service)) as client:
        for i in range(5):
            assert client.post("/v1/place", json={"job": {"id": f"ok{i}", "gpus": 8}}
                               ).json()["placed"]
        before = json.dumps(service.engine.snapshot(), sort_keys=True)
        size = (service.state_dir / JOURNAL_NAME).stat().st_size
        writes = FailingWrites(partial)
        monkeypatch.setattr(journal_module.os, "write", writes)
        writes.armed = True
        reply = client.post("/v1/place", json={"job": {"id": "lost", "gpus": 64}})
        assert reply.status_code == 503
        release = client.post("/v1/release", json={"job_id": "ok0"})
        assert release.status_code == 503
        # memory is what the disk holds: the refused place and release are not in it
        assert json.dumps(service.engine.snapshot(), sort_keys=True) == before
        assert (service.state_dir / JOURNAL_NAME).stat().st_size == size  # cut off again
        assert service.journal.broken is None
        # the disk has room again: the service goes on, and a checkpoint holds no ghost
        writes.armed = False
        assert client.post("/v1/place", json={"job": {"id": "after", "gpus": 8}}
                           ).json()["placed"]
        service.checkpoint()
        assert "lost" not in placed(service) and "ok0" in placed(service)
        again = restart(service, tmp_path, "copy", backend)
        assert placed(again) == {f"ok{i}" for i in range(5)} | {"after"}
        again.close()


def test_failed_cut_stops_appends_and_the_next_start_drops_the_tail(tmp_path, array,
                                                                    monkeypatch):
    service = PlacementService(array, tmp_path / "s")
    with TestClient(create_app(service)) as client:
        assert client.post("/v1/place", json={"job": {"id": "ok", "gpus": 8}}).json()["placed"]
        writes = FailingWrites(9)
        monkeypatch.setattr(journal_module.os, "write", writes)

        def no_cut(fd, size):
            raise OSError(errno.EIO, "I/O error")
        monkeypatch.setattr(journal_module.os, "ftruncate", no_cut)
        writes.armed = True
        assert client.post("/v1/place", json={"job": {"id": "lost", "gpus": 8}}
                           ).status_code == 503
        assert service.journal.broken is not None
        writes.armed = False
        # every mutating call and the gang listing (which expires, so appends) refuse
        assert client.post("/v1/place", json={"job": {"id": "x", "gpus": 8}}
                           ).status_code == 503
        assert client.get("/v1/k8s/gangs").status_code == 503
        data = (service.state_dir / JOURNAL_NAME).read_bytes()
        assert not data.endswith(b"\n")  # the partial record is still there
        again = restart(service, tmp_path, "copy")
        assert placed(again) == {"ok"}
        again.close()


class FailingFsync:
    """os.fsync that fails its next ``count`` calls once armed (EIO: the disk said no)."""

    def __init__(self, count: int = 1) -> None:
        self.count, self.real = count, os.fsync

    def __call__(self, fd: int) -> None:
        if self.count:
            self.count -= 1
            raise OSError(errno.EIO, "simulated fsync failure")
        self.real(fd)


def test_failed_fsync_rolls_memory_back_and_cuts_the_journal(tmp_path, array, backend,
                                                             monkeypatch):
    # Issue 13: a failed fsync answered 503 but kept the change in memory, and its record
    # in the file: a later checkpoint, or the page cache, brought it back after a restart.
    service = PlacementService(array, tmp_path / "s", backend=backend)
    with TestClient(create_app(service)) as client:
        for i in range(5):
            assert client.post("/v1/place", json={"job": {"id": f"ok{i}", "gpus": 8}}
                               ).json()["placed"]
        before = json.dumps(service.engine.snapshot(), sort_keys=True)
        size = (service.state_dir / JOURNAL_NAME).stat().st_size
        monkeypatch.setattr(journal_module.os, "fsync", FailingFsync(1))
        reply = client.post("/v1/place", json={"job": {"id": "lost", "gpus": 64}})
        assert reply.status_code == 503, reply.text
        monkeypatch.undo()
        assert json.dumps(service.engine.snapshot(), sort_keys=True) == before
        assert (service.state_dir / JOURNAL_NAME).stat().st_size == size
        assert service.journal.broken is None
        assert client.post("/v1/place", json={"job": {"id": "after", "gpus": 8}}
                           ).json()["placed"]
        service.checkpoint()
        again = restart(service, tmp_path, "copy", backend)
        assert placed(again) == {f"ok{i}" for i in range(5)} | {"after"}
        again.close()


def test_a_batch_whose_fsync_fails_happened_not_at_all(tmp_path, array, monkeypatch):
    service = PlacementService(array, tmp_path / "s")
    with TestClient(create_app(service)) as client:
        assert client.post("/v1/place", json={"job": {"id": "ok", "gpus": 8}}
                           ).json()["placed"]
        monkeypatch.setattr(journal_module.os, "fsync", FailingFsync(1))
        reply = client.post("/v1/batch", json={"ops": [
            {"op": "place", "job": {"id": f"b{i}", "gpus": 8}} for i in range(3)]
            + [{"op": "release", "job_id": "ok"}]})
        monkeypatch.undo()
        assert reply.status_code == 503, reply.text
        assert placed(service) == {"ok"}
        again = restart(service, tmp_path, "copy")
        assert placed(again) == {"ok"}
        again.close()


def test_a_failed_group_commit_fails_its_whole_group_and_reuses_no_ticket(tmp_path, array,
                                                                          backend,
                                                                          monkeypatch):
    import asyncio

    service = PlacementService(array, tmp_path / "s", backend=backend)
    journal = service.journal
    _, ticket = service.place({"job": {"id": "ok", "gpus": 8}})
    asyncio.run(journal.wait_durable(ticket))

    async def scenario() -> None:
        # three requests written before their shared fsync, which fails
        group = [service.place({"job": {"id": f"g{i}", "gpus": 8}})[1] for i in range(3)]
        monkeypatch.setattr(journal_module.os, "fsync", FailingFsync(1))
        waits = [asyncio.ensure_future(journal.wait_durable(t)) for t in group]
        await asyncio.sleep(0)
        # one more written while that fsync runs: its record is cut with the group's
        late = service.place({"job": {"id": "g3", "gpus": 8}})[1]
        waits.append(asyncio.ensure_future(journal.wait_durable(late)))
        results = await asyncio.gather(*waits, return_exceptions=True)
        monkeypatch.undo()
        assert all(isinstance(r, OSError) for r in results), results
        assert placed(service) == {"ok"}
        # the next change takes the cut records' seq again, but never their ticket
        reply, fresh = service.place({"job": {"id": "later", "gpus": 8}})
        assert reply["placed"] and fresh > late
        await journal.wait_durable(fresh)
        assert journal.durable_seq == 2   # "ok" and "later"
        for stale in group + [late]:   # a cut record is never reported durable
            with pytest.raises(OSError):
                await journal.wait_durable(stale)
    asyncio.run(scenario())
    assert journal.broken is None
    again = restart(service, tmp_path, "copy", backend)
    assert placed(again) == {"ok", "later"}
    again.close()
    service.journal.close()


def test_damaged_complete_last_record_is_refused_not_dropped(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    for i in range(4):
        service.place({"job": {"id": f"j{i}", "gpus": 8}})
    service.journal.sync()
    path = service.state_dir / JOURNAL_NAME
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit of the acknowledged last record, newline intact
    copy = tmp_path / "copy"
    shutil.copytree(service.state_dir, copy, ignore=shutil.ignore_patterns("lock"))
    (copy / JOURNAL_NAME).write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="line 4 is corrupted: a complete record"):
        PlacementService(array, copy)
    assert (copy / JOURNAL_NAME).read_bytes() == bytes(data)  # nothing was cut off


@pytest.mark.parametrize("errno_", [errno.EMFILE, errno.ENOSPC])
def test_failed_checkpoint_never_fails_a_durable_request(tmp_path, array, monkeypatch,
                                                         errno_):
    service = PlacementService(array, tmp_path / "s", snapshot_every=3)
    real = journal_module.write_atomic
    failing = {"on": True}

    def write_atomic(path, data):
        if failing["on"]:
            raise OSError(errno_, os.strerror(errno_))
        real(path, data)
    monkeypatch.setattr(journal_module, "write_atomic", write_atomic)
    with TestClient(create_app(service)) as client:
        for i in range(8):
            reply = client.post("/v1/place", json={"job": {"id": f"j{i}", "gpus": 8}})
            assert reply.status_code == 200 and reply.json()["placed"], reply.text
        assert service.journal.broken is None
        failing["on"] = False
        for i in range(8, 12):
            assert client.post("/v1/place", json={"job": {"id": f"j{i}", "gpus": 8}}
                               ).status_code == 200
        again = restart(service, tmp_path, "copy")
        assert placed(again) == {f"j{i}" for i in range(12)}
        again.close()


def test_crash_between_checkpoint_steps_recovers_every_acknowledged_change(tmp_path, array,
                                                                           monkeypatch):
    """A crash after each step of a checkpoint: the snapshot's temp file, its rename, the
    journal's temp file, its rename.  Each is simulated by failing the step after it."""
    steps = ["mkstemp", "fsync", "replace"]
    for step in steps:
        for occurrence in (1, 2):  # the snapshot's write, then the journal's
            service = PlacementService(array, tmp_path / f"s-{step}-{occurrence}")
            rng = np.random.default_rng(occurrence)
            acked = set()
            for i in range(12):
                reply, _ = service.place({"job": {"id": f"j{i}", "gpus": int(rng.choice(
                    [1, 8, 16]))}})
                if reply["placed"]:
                    acked.add(f"j{i}")
            service.journal.sync()
            calls = {"n": 0}
            module = journal_module.write_atomic.__globals__
            real = module["os"].replace if step == "replace" else None

            def crash(*args, **kwargs):
                calls["n"] += 1
                raise OSError(errno.EIO, "simulated crash")
            target = {"mkstemp": (module["tempfile"], "mkstemp"),
                      "fsync": (module["os"], "fsync"),
                      "replace": (module["os"], "replace")}[step]
            original = getattr(*target)
            seen = {"n": 0}

            def nth(*args, **kwargs):
                seen["n"] += 1
                if seen["n"] == occurrence:
                    return crash()
                return original(*args, **kwargs)
            monkeypatch.setattr(*target, nth)
            try:
                service.journal.checkpoint(service.snapshot())
            except OSError:
                pass
            monkeypatch.undo()
            del real
            again = restart(service, tmp_path, f"copy-{step}-{occurrence}")
            assert placed(again) == acked, (step, occurrence)
            again.place({"job": {"id": "later", "gpus": 8}})
            again.journal.sync()
            third = restart(again, tmp_path, f"third-{step}-{occurrence}")
            assert placed(third) == acked | {"later"}
            for s in (service, again, third):
                s.journal.close()


@pytest.fixture
def small_tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the disk-full case needs root (CI runs as root)")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_on_a_real_tmpfs(small_tmpfs, array, backend, tmp_path):
    state = small_tmpfs / "state"
    service = PlacementService(array, state, backend=backend, snapshot_every=10 ** 6)
    acked: set[str] = set()
    refused = 0
    with TestClient(create_app(service)) as client:
        filler = small_tmpfs / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:  # fill the disk, then leave a few KiB free
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - 8192))
        for i in range(400):
            reply = client.post("/v1/place", json={"job": {
                "id": f"job-with-a-long-name-{i:04d}-" + "x" * 40, "gpus": 1}})
            if reply.status_code == 200:
                if reply.json()["placed"]:
                    acked.add(f"job-with-a-long-name-{i:04d}-" + "x" * 40)
            else:
                assert reply.status_code == 503, reply.text
                refused += 1
        assert refused, "the disk never filled up"
        assert placed(service) == acked
        assert service.journal.broken is None
        # the directory as a crash leaves it, taken while the disk is still full
        copy = tmp_path / "copy"
        shutil.copytree(state, copy, ignore=shutil.ignore_patterns("lock"))
        restarted = PlacementService(array, copy, backend=backend)
        assert placed(restarted) == acked
        restarted.close()
        filler.unlink()
    copy = tmp_path / "copy-after-close"
    shutil.copytree(state, copy, ignore=shutil.ignore_patterns("lock"))
    restarted = PlacementService(array, copy, backend=backend)
    assert placed(restarted) == acked
    restarted.close()


@pytest.mark.parametrize("layout", ["file", "under-file", "journal-dir", "snapshot-dir",
                                    "lock-dir"])
def test_unusable_state_directory_is_a_snapshot_error(tmp_path, array, layout):
    state = tmp_path / "state"
    if layout == "file":
        state.write_text("x")
    elif layout == "under-file":
        (tmp_path / "f").write_text("x")
        state = tmp_path / "f" / "state"
    else:
        state.mkdir()
        (state / {"journal-dir": "journal.log", "snapshot-dir": "snapshot.state",
                  "lock-dir": "lock"}[layout]).mkdir()
    with pytest.raises(SnapshotError, match="is not usable"):
        PlacementService(array, state)


@pytest.mark.parametrize("args, message", [
    (["--state", "{file}"], "is not usable"),
    (["--state", "{dir}", "--snapshot-every", "0"], "--snapshot-every"),
    (["--state", "{dir}", "--gang-timeout-s", "nan"], "--gang-timeout-s"),
    (["--state", "{dir}", "--gang-timeout-s", "-1"], "--gang-timeout-s"),
])
def test_serve_cli_refuses_bad_arguments_without_a_traceback(tmp_path, args, message):
    (tmp_path / "file").write_text("x")
    args = [a.format(file=tmp_path / "file", dir=tmp_path / "d") for a in args]
    result = subprocess.run([sys.executable, "-m", "gpusched.cli", "serve", "--cluster",
                             "colossus-array", "--port", "0", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_snapshot_format_true_is_refused(array):
    engine = gpusched.Engine(array)
    snapshot = engine.snapshot()
    snapshot["format"] = True
    with pytest.raises(SnapshotError, match="format True"):
        gpusched.Engine(array).load_snapshot(snapshot)


# ---- recovery: replay, torn and damaged records, one server per directory ------------

@pytest.mark.parametrize("snapshot_every", [1, 7, 10_000])
def test_recovery_replays_to_the_same_state(tmp_path, array, backend, snapshot_every):
    service = PlacementService(array, tmp_path / "s", backend=backend,
                               snapshot_every=snapshot_every)
    for seed in range(3):
        stream(service, seed, 60)
        service.maybe_checkpoint()
    copy = crash_copy(service, tmp_path, "copy")
    again = PlacementService(array, copy, backend=backend)
    assert again.engine.snapshot() == service.engine.snapshot()
    assert again.journal.written_seq == service.journal.written_seq
    check_engine(again.engine)
    service.close()
    # a clean close leaves a snapshot and an empty journal
    assert (tmp_path / "s" / JOURNAL_NAME).read_bytes() == b""
    reopened = PlacementService(array, tmp_path / "s", backend=backend)
    assert reopened.recovered_entries == 0
    assert reopened.engine.snapshot() == service.engine.snapshot()


def test_snapshot_file_loads_with_engine_load(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 5, 40)
    service.checkpoint()
    engine = gpusched.Engine.load(array, tmp_path / "s" / SNAPSHOT_NAME)
    assert engine.placements() == service.engine.placements()


@pytest.mark.parametrize("tail", [b"0badc0de {\"op\":\"rel", b"deadbeef", b"\x00" * 40])
def test_torn_last_record_is_dropped_and_cut_off(tmp_path, array, tail):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 1, 30)
    expected = service.engine.snapshot()
    seq = service.journal.written_seq
    copy = crash_copy(service, tmp_path, "copy")
    with open(copy / JOURNAL_NAME, "ab") as f:
        f.write(tail)
    again = PlacementService(array, copy)
    assert again.engine.snapshot() == expected and again.journal.written_seq == seq
    assert not (copy / JOURNAL_NAME).read_bytes().endswith(tail)
    # appending after the cut gives a journal that recovers cleanly again
    again.place({"job": {"id": "after-crash", "gpus": 8}})
    again.journal.sync()
    third = PlacementService(array, crash_copy(again, tmp_path, "third"))
    assert "after-crash" in third.engine


def test_corrupted_middle_record_is_refused_with_its_line(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 2, 20)
    copy = crash_copy(service, tmp_path, "copy")
    lines = (copy / JOURNAL_NAME).read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b'"gpus"', b'"gpuz"')  # checksum no longer matches
    (copy / JOURNAL_NAME).write_bytes(b"\n".join(lines))
    with pytest.raises(SnapshotError, match="line 5 is corrupted"):
        PlacementService(array, copy)


def test_missing_entries_are_refused(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 3, 20)
    copy = crash_copy(service, tmp_path, "copy")
    lines = (copy / JOURNAL_NAME).read_bytes().split(b"\n")
    (copy / JOURNAL_NAME).write_bytes(b"\n".join(lines[:3] + lines[4:]))
    with pytest.raises(SnapshotError, match="line 4 has seq 5, expected 4"):
        PlacementService(array, copy)


def test_crash_between_snapshot_and_journal_truncation(tmp_path, array):
    """Checkpoint crash point 2: new snapshot on disk, old journal still full."""
    service = PlacementService(array, tmp_path / "s")
    stream(service, 4, 50)
    copy = crash_copy(service, tmp_path, "copy")
    snapshot = {**service.snapshot(), "journal_seq": service.journal.written_seq}
    write_atomic(copy / SNAPSHOT_NAME, encode_state(snapshot))
    (copy / f".{SNAPSHOT_NAME}.abc.tmp").write_bytes(b"half a snapsh")  # crash point 1
    again = PlacementService(array, copy)
    assert again.recovered_entries == 0  # every entry is in the snapshot: skipped
    assert again.engine.snapshot() == service.engine.snapshot()
    assert not list(copy.glob(".*.tmp"))


def test_a_bad_entry_does_not_replay(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    service.place({"job": {"id": "a", "gpus": 8}})
    service.journal.sync()
    copy = crash_copy(service, tmp_path, "copy")
    with open(copy / JOURNAL_NAME, "ab") as f:  # a well-formed entry that cannot apply
        f.write(encode_entry({"seq": 2, "op": "release", "job_id": "ghost"}))
        f.write(encode_entry({"seq": 3, "op": "release", "job_id": "a"}))
    with pytest.raises(SnapshotError, match="seq 2"):
        PlacementService(array, copy)


def test_one_server_per_state_directory(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    with pytest.raises(SnapshotError, match="in use"):
        PlacementService(array, tmp_path / "s")
    service.close()
    PlacementService(array, tmp_path / "s").close()


def test_snapshot_of_another_cluster_is_refused(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 6, 10)
    service.close()
    with pytest.raises(SnapshotError, match="colossus-array"):
        PlacementService(gpusched.Cluster.preset("tiny"), tmp_path / "s")
    assert decode_state((tmp_path / "s" / SNAPSHOT_NAME).read_bytes())["journal_seq"] > 0


def test_journal_write_requires_recover(tmp_path):
    journal = Journal(tmp_path / "j")
    with pytest.raises(RuntimeError):
        journal.write({"op": "release", "job_id": "x"})
    journal.close()


def test_entries_from_before_the_snapshot_after_newer_ones_are_refused(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 7, 10)
    service.checkpoint()
    service.place({"job": {"id": "new", "gpus": 8}})
    service.journal.sync()
    copy = crash_copy(service, tmp_path, "copy")
    with open(copy / JOURNAL_NAME, "ab") as f:
        f.write(encode_entry({"seq": 1, "op": "release", "job_id": "new"}))
    with pytest.raises(SnapshotError, match="has seq 1, expected"):
        PlacementService(array, copy)


class Crash(BaseException):
    """The process dies here: not an OSError, so nothing in the journal handles it."""


def crash_points(monkeypatch):
    """(name, arm) per step boundary of one journaled change: ``arm()`` makes the next
    append die at that point (None: the append completes, and the test stops later).

    Each cut is measured on the bytes that append actually writes, not on a probe's
    record: a record carries its wall-clock time, whose JSON length varies by a byte or
    two, so a probe's "all but the newline" could be a whole record here."""
    real = os.write

    def dying_after(cut):
        def arm() -> None:
            def write(fd, data):
                count = cut(len(data))
                assert 0 <= count < len(data), (count, len(data))   # a torn write
                if count:
                    real(fd, bytes(data[:count]))
                raise Crash(f"after {count} of {len(data)} bytes")
            monkeypatch.setattr(journal_module.os, "write", write)
        return arm
    return [("before-write", dying_after(lambda size: 0)),
            ("torn-1-byte", dying_after(lambda size: 1)),
            ("torn-half", dying_after(lambda size: size // 2)),
            ("torn-but-newline", dying_after(lambda size: size - 1)),
            ("written-not-synced", None), ("synced-not-replied", None)]


def test_crash_at_every_step_of_place_keeps_acknowledged_and_only_those(tmp_path, array,
                                                                        backend,
                                                                        monkeypatch):
    """A place's steps: engine change, append (possibly torn), fsync, reply.  After a
    crash at each boundary, the restart holds every acknowledged placement, none that
    was never written whole, the in-flight one at most, and the directory starts."""
    for name, arm in crash_points(monkeypatch):
        service = PlacementService(array, tmp_path / name, backend=backend)
        acked = set()
        for i in range(6):
            reply, _ = service.place({"job": {"id": f"ok{i}", "gpus": 8}})
            acked.add(f"ok{i}")
        service.journal.sync()
        if arm is not None:
            arm()
            with pytest.raises(Crash):
                service.place({"job": {"id": "in-flight", "gpus": 16}})
            monkeypatch.undo()
        else:
            service.place({"job": {"id": "in-flight", "gpus": 16}})
            if name == "synced-not-replied":
                service.journal.sync()
        again = restart(service, tmp_path, f"copy-{name}", backend)   # it starts
        got = placed(again)
        assert acked <= got <= acked | {"in-flight"}, name
        if name in ("before-write", "torn-1-byte", "torn-half", "torn-but-newline"):
            assert got == acked, name   # never written whole: never there
        if name == "synced-not-replied":
            assert got == acked | {"in-flight"}
        check_engine(again.engine)
        # and it goes on: a later change survives the next crash too
        again.place({"job": {"id": "later", "gpus": 8}})
        again.journal.sync()
        third = restart(again, tmp_path, f"third-{name}", backend)
        assert placed(third) == got | {"later"}
        for s in (service, again, third):
            s.journal.close()

def test_placement_times_survive_a_restart_from_the_journal_and_from_a_snapshot(tmp_path,
                                                                                array):
    # `gpusched jobs --server` shows when each job was placed: the time is journaled with
    # the place entry and kept in the snapshot, and a release forgets it
    service = PlacementService(array, tmp_path / "s", snapshot_every=3)
    for job_id in ("a", "b"):
        assert service.place({"job": {"id": job_id, "gpus": 8}})[0]["placed"]
    service.release({"job_id": "a"})
    service.journal.sync()
    times = dict(service.placed_at)
    assert sorted(times) == ["b"]
    crashed = crash_copy(service, tmp_path, "crashed")  # journal only, no final snapshot
    service.close()  # snapshot and close
    for directory in (crashed, tmp_path / "s"):
        again = PlacementService(array, directory)
        assert again.placed_at == times and again.snapshot()["placed_at"] == times
        again.close()
