"""Durable state: atomic, versioned, checksummed files that survive a SIGKILL mid-save.

- ``Engine.save`` / ``Engine.load`` round-trip on each backend and across backends, down
  to every derived index.
- Truncated files, edited bytes, a wrong format version, a tampered snapshot with a
  fresh checksum, garbage and missing files are all refused with SnapshotError.
- A child process saves in a loop and is SIGKILLed at random moments, a fixed number of
  times; after each kill the file on disk is exactly the state the child last reported
  saved, or the one after it (old or new, never a mix), and the next child resumes
  from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gpusched import Cluster, Engine, Job
from gpusched.errors import SnapshotError
from gpusched.state import STATE_FORMAT, decode_state, encode_state

from .support import save_loop
from .conftest import both_backends
from .support.verify import check_engine

ROOT = Path(__file__).resolve().parent.parent
KILLS = 12


def _busy_engine(cluster: Cluster, backend: str) -> Engine:
    engine = Engine(cluster, backend=backend)
    for i, (gpus, min_cap) in enumerate([(1, None), (3, 300), (8, None), (16, 250), (2, 200),
                                         (8, 400), (5, None)]):
        engine.place(Job(f"job-{i}", gpus, min_cap_w=min_cap))
    engine.release("job-2")
    engine.set_cap("job-1", 600)
    return engine


def _same_state(a: Engine, b: Engine) -> None:
    assert a.snapshot() == b.snapshot()
    assert a._index_state() == b._index_state()
    assert a.placements() == b.placements() and a.jobs() == b.jobs()


def test_round_trip(tiny, backend, tmp_path):
    engine = _busy_engine(tiny, backend)
    path = tmp_path / "state.json"
    engine.save(path)
    loaded = Engine.load(tiny, path, backend=backend)
    assert loaded.backend == backend
    _same_state(engine, loaded)
    check_engine(loaded)
    # it goes on exactly like the original
    assert loaded.place(Job("next", 4)) == engine.place(Job("next", 4))
    _same_state(engine, loaded)


def test_round_trip_across_backends(tiny, tmp_path):
    backends = both_backends()
    if len(backends) < 2:
        pytest.skip("needs the compiled core")
    for saver in backends:
        engine = _busy_engine(tiny, saver)
        path = tmp_path / f"{saver}.json"
        engine.save(path)
        for loader in backends:
            _same_state(engine, Engine.load(tiny, path, backend=loader))


def test_file_has_version_and_checksum(tiny, backend, tmp_path):
    engine = _busy_engine(tiny, backend)
    path = tmp_path / "state.json"
    engine.save(path)
    doc = json.loads(path.read_bytes())
    assert doc["gpusched_state"] == STATE_FORMAT
    canonical = json.dumps(doc["snapshot"], sort_keys=True, separators=(",", ":"))
    assert doc["sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert doc["snapshot"] == engine.snapshot()
    # no temporary file is left behind by a completed save
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def _saved(tiny, tmp_path) -> tuple[Path, bytes, Engine]:
    engine = _busy_engine(tiny, "python")
    path = tmp_path / "state.json"
    engine.save(path)
    return path, path.read_bytes(), engine


def test_every_truncation_is_refused(tiny, backend, tmp_path):
    path, data, _ = _saved(tiny, tmp_path)
    # every cut but the trailing newline (the JSON is complete without it)
    for cut in range(0, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(SnapshotError, match="state.json"):
            Engine.load(tiny, path, backend=backend)


@given(data=st.data())
def test_edited_byte_is_refused_or_harmless(tiny, tmp_path_factory, data):
    """Change one byte anywhere: refused with SnapshotError, or the state is unchanged."""
    tmp_path = tmp_path_factory.mktemp("edit")
    path, original, engine = _saved(tiny, tmp_path)
    at = data.draw(st.integers(0, len(original) - 1), label="at")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[at]), label="byte")
    path.write_bytes(original[:at] + bytes([new]) + original[at + 1:])
    backend = data.draw(st.sampled_from(both_backends()), label="backend")
    try:
        loaded = Engine.load(tiny, path, backend=backend)
    except SnapshotError:
        return
    # only whitespace outside the checksummed snapshot can change harmlessly
    assert chr(new).isspace() or chr(original[at]).isspace()
    _same_state(engine, loaded)


def test_edited_cap_fails_checksum(tiny, backend, tmp_path):
    path, data, _ = _saved(tiny, tmp_path)
    edited = data.replace(b'"cap_w":600', b'"cap_w":700', 1)
    assert edited != data
    path.write_bytes(edited)
    with pytest.raises(SnapshotError, match="checksum"):
        Engine.load(tiny, path, backend=backend)


def test_tampered_snapshot_with_fresh_checksum_is_refused(tiny, backend, tmp_path):
    """Whoever recomputes the checksum still cannot restore an impossible state."""
    path, data, engine = _saved(tiny, tmp_path)
    snap = engine.snapshot()
    entry = next(e for e in snap["jobs"] if e["gpus_per_node"] == 8)
    snap["jobs"].append({**entry, "job": {**entry["job"], "id": "stowaway"}})
    path.write_bytes(encode_state(snap))
    with pytest.raises(SnapshotError, match="stowaway"):
        Engine.load(tiny, path, backend=backend)
    # a cap over a rack's limits
    snap = engine.snapshot()
    snap["jobs"][0]["cap_w"] = 900
    path.write_bytes(encode_state(snap))
    with pytest.raises(SnapshotError):
        Engine.load(tiny, path, backend=backend)


@pytest.mark.parametrize("content,words", [
    (b"", "truncated"),
    (b"\xff\xfe\x00", "truncated or corrupted"),
    (b"[]", "expected the keys"),
    (b'{"gpusched_state": 2, "sha256": "", "snapshot": {}}', "format 2"),
    (b'{"gpusched_state": true, "sha256": "", "snapshot": {}}', "format True"),
    (b'{"gpusched_state": 1, "sha256": "00", "snapshot": {}}', "checksum"),
    (b'{"gpusched_state": 1, "sha256": "00", "snapshot": []}', "must be an object"),
    (b'{"gpusched_state": 1, "sha256": 5, "snapshot": {"x": NaN}}', "checksum"),
    (b"[" * 100_000, "nested too deeply"),
], ids=["empty", "not-utf8", "list", "format-2", "format-true", "bad-sum", "snap-list",
        "nan", "deep"])
def test_garbage_is_refused(tiny, tmp_path, content, words):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(SnapshotError, match=words):
        Engine.load(tiny, path)


def test_state_of_another_cluster_is_refused(tiny, tmp_path):
    path, _, _ = _saved(tiny, tmp_path)
    with pytest.raises(SnapshotError, match="not of 'colossus-array'"):
        Engine.load(Cluster.preset("colossus-array"), path)


def test_missing_file_is_refused(tiny, tmp_path):
    with pytest.raises(SnapshotError, match="cannot read"):
        Engine.load(tiny, tmp_path / "nope.json")
    with pytest.raises(SnapshotError, match="cannot read"):
        Engine.load(tiny, tmp_path)  # a directory


def test_failed_save_leaves_old_file(tiny, tmp_path, monkeypatch):
    """A save that dies before the rename leaves the old file and no temporary one."""
    path, data, engine = _saved(tiny, tmp_path)
    engine.place(Job("more", 1))

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        engine.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert decode_state(path.read_bytes()) == json.loads(data)["snapshot"]


def test_sigkill_while_saving_leaves_old_or_new(tmp_path):
    """KILLS children save in a loop and are SIGKILLed at random moments."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    cluster = save_loop.cluster()
    path = tmp_path / "state.json"
    Engine(cluster).save(path)
    replay = Engine(cluster, backend="python")  # the expected states, step by step
    replay_c = 0
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    saves = []
    for kill in range(KILLS):
        child = subprocess.Popen([sys.executable, "-m", "tests.support.save_loop", str(path)],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        ready = child.stdout.readline()
        assert ready.startswith("ready "), (ready, child.stderr.read())
        start = int(ready.split()[1])
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, err
        reported = [int(line) for line in out.split()]
        last = reported[-1] if reported else start
        saves.append(last - start)
        loaded = {b: Engine.load(cluster, path, backend=b) for b in both_backends()}
        c = save_loop.steps_done(loaded["python"])
        assert c in (last, last + 1), (f"seed {seed}, kill {kill}: file holds state {c}, "
                                       f"the child had saved {last}")
        while replay_c < c:
            replay_c = save_loop.advance(replay, replay_c)
        for engine in loaded.values():
            _same_state(replay, engine)
            check_engine(engine)
    # the kills did land while saves were going on, not only before the first one
    assert sum(saves) > 0, f"seed {seed}: no child saved anything before it was killed"
    print(f"\nSIGKILL test (seed {seed}): {KILLS} kills, saves per child {saves}, "
          f"final state {replay_c}")
