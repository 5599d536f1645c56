"""Write-ahead journal and snapshots: the service's crash-safe state directory.

Layout of ``--state DIR``::

    DIR/snapshot.state   the last snapshot, in gpusched.state format (checksummed, written
                         atomically); its engine part loads with ``Engine.load`` as is, and it
                         carries ``journal_seq``, the last journal entry it includes
    DIR/journal.log      entries after the snapshot, one per line: ``<crc32 hex> <json>\\n``
    DIR/lock             held (flock) by the one server that owns DIR

Every entry has a ``seq`` number, consecutive from the snapshot's ``journal_seq + 1``.
Recovery loads the snapshot and replays the entries whose ``seq`` is above it, so an
entry that is both in the snapshot and still in the journal is applied once.

Crash points of a checkpoint (snapshot, then a new empty journal), and why each is safe:

1. during the snapshot's temp file: the old snapshot and the whole journal remain;
2. after the snapshot's rename: the new snapshot covers every journal entry (``seq <=
   journal_seq``), which replay skips;
3. during the journal's replacement (temp file, fsync, rename): the old journal (all
   entries skipped) or the new empty one is there; either replays to the same state.

A crash in the middle of an append leaves a torn last record: bytes with no newline
after them (a record is acknowledged only after its newline is written and fsynced).
Recovery drops such a tail and truncates the file before appending again.  A complete,
newline-terminated record that fails its checksum was damaged after it was written (it
may have been acknowledged): recovery refuses it with a SnapshotError naming the line,
wherever it is, rather than silently losing an acknowledged change.

A failed append (disk full, I/O error) is cut off again at once (``ftruncate`` to the
length before it), so the file never holds a partial record followed by good ones; if
even the cut fails, the journal is marked ``broken`` and refuses every later append, and
the next start treats the unterminated tail as torn.

A failed fsync fails every record written since the last good one (the group whose
fsync it was, and any written while it ran): the file is cut back to its last durable
length (``ftruncate``, then fsync), the owner rolls memory back to that state
(``on_cut``), and each of those records' waiters gets the error.  A write returns a
*ticket*, counted over the journal's life and never reused, so a waiter whose record was
cut can never be answered by a later record that took the same ``seq``.  If the cut
itself fails the journal is ``broken``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from ..errors import GpuschedError, SnapshotError
from ..state import decode_state, encode_state, write_atomic

__all__ = ["Journal", "JournalBroken", "JournalCut", "Recovery", "SNAPSHOT_NAME",
           "JOURNAL_NAME"]

SNAPSHOT_NAME = "snapshot.state"
JOURNAL_NAME = "journal.log"
LOCK_NAME = "lock"


class JournalBroken(GpuschedError, OSError):
    """The journal stopped taking appends: memory and disk may disagree until a restart.

    An OSError too, so the service answers it as it answers any failed write (503).
    """


class JournalCut(GpuschedError, OSError):
    """A record's fsync failed and the record was cut off the journal: it never happened.

    An OSError too, so the service answers it as it answers any failed write (503).
    """


def _unusable(state_dir: Path, exc: OSError) -> str:
    return (f"state directory {str(state_dir)!r} is not usable: {exc.strerror or exc} "
            f"({exc.filename or state_dir}); --state must name a directory (or a path "
            f"that can be created as one) holding only {SNAPSHOT_NAME}, {JOURNAL_NAME} "
            f"and {LOCK_NAME} as regular files")


def encode_entry(entry: dict[str, Any]) -> bytes:
    """One journal record: crc32 of the JSON, a space, the JSON, a newline.

    orjson writes the JSON (a tenth of the standard library's time on the place path);
    what it cannot write (an id holding a lone surrogate) the standard library writes
    with ASCII escapes.  Either way the checksum covers the bytes as written, and
    ``decode_entry`` reads both.
    """
    try:
        body = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        body = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_entry(line: bytes) -> dict[str, Any] | None:
    """The entry in a record, or None if the record is damaged (bad checksum or JSON)."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        entry = json.loads(body)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int):
        return None
    return entry


@dataclass
class Recovery:
    """What a state directory holds: the snapshot and the journal entries after it."""

    snapshot: dict[str, Any] | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    snapshot_seq: int = 0
    torn_bytes: int = 0

    @property
    def last_seq(self) -> int:
        return self.entries[-1]["seq"] if self.entries else self.snapshot_seq


class Journal:
    """The append-only journal of one state directory (one owner at a time).

    Parameters
    ----------
    state_dir : path
        Created if missing.  A second Journal on the same directory, in this process or
        another, raises SnapshotError: two writers would interleave their records.

    Notes
    -----
    ``write`` appends a record with ``os.write`` (no fsync) and returns its ticket;
    ``sync`` makes everything written so far durable.  The HTTP layer calls ``write``
    under the engine lock, so the file order is the engine order, and then awaits
    ``wait_durable(ticket)`` before it replies: concurrent requests share one fsync
    (group commit), and a failed fsync fails every request of its group.

    ``on_cut``, set by the owner, is called with the error after a failed fsync, in
    place of ``cut_to_durable``: it takes the owner's lock, calls ``cut_to_durable`` and
    rolls its memory back to what the directory then holds.
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SnapshotError(_unusable(self.state_dir, exc)) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SnapshotError(f"state directory {str(self.state_dir)!r} is in use by "
                                "another gpusched server") from None
        self._fd: int | None = None
        self._size = 0           # bytes of whole records in the journal file
        self.broken: str | None = None   # why appends stopped, once memory and disk disagree
        self.written_seq = 0
        self.durable_seq = 0
        self.snapshot_seq = 0
        self._durable_size = 0   # bytes of the journal file known to be on disk
        self.ticket = 0          # appends so far, over the journal's life
        self._settled_ticket = 0   # every ticket up to here is durable, or was cut
        self._cut_tickets: list[tuple[int, int]] = []   # (first, last) of each cut
        self.on_cut: Callable[[OSError], None] | None = None
        self._flush_task: asyncio.Future[None] | None = None

    @property
    def snapshot_path(self) -> Path:
        return self.state_dir / SNAPSHOT_NAME

    @property
    def journal_path(self) -> Path:
        return self.state_dir / JOURNAL_NAME

    # ---- recovery -------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Read the snapshot and the journal after it; cut a torn tail off the journal.

        Raises SnapshotError for a damaged snapshot, a damaged complete record, entries
        that do not follow on from the snapshot, or a directory whose files cannot be read
        (a directory where a file should be, no permission).
        """
        try:
            return self._recover()
        except OSError as exc:
            raise SnapshotError(_unusable(self.state_dir, exc)) from None

    def read(self) -> Recovery:
        """What the directory holds now, without changing it (a torn tail is skipped)."""
        snapshot, snapshot_seq = self._read_snapshot()
        data = self.journal_path.read_bytes() if self.journal_path.exists() else b""
        entries, _ = self._parse(data, snapshot_seq)
        return Recovery(snapshot, entries, snapshot_seq, 0)

    def _read_snapshot(self) -> tuple[dict[str, Any] | None, int]:
        snapshot = None
        snapshot_seq = 0
        if self.snapshot_path.exists():
            snapshot = decode_state(self.snapshot_path.read_bytes(),
                                    source=str(self.snapshot_path))
            snapshot_seq = snapshot.get("journal_seq", 0)
            if isinstance(snapshot_seq, bool) or not isinstance(snapshot_seq, int) \
                    or snapshot_seq < 0:
                raise SnapshotError(f"{self.snapshot_path}: journal_seq must be a whole "
                                    f"number >= 0, got {snapshot_seq!r}")
        return snapshot, snapshot_seq

    def _recover(self) -> Recovery:
        for leftover in self.state_dir.glob(f".{SNAPSHOT_NAME}.*.tmp"):
            leftover.unlink()  # a checkpoint that crashed before its rename
        for leftover in self.state_dir.glob(f".{JOURNAL_NAME}.*.tmp"):
            leftover.unlink()
        snapshot, snapshot_seq = self._read_snapshot()
        data = self.journal_path.read_bytes() if self.journal_path.exists() else b""
        entries, good_bytes = self._parse(data, snapshot_seq)
        torn = len(data) - good_bytes
        if torn:
            print(f"gpusched serve: dropped a torn last journal record ({torn} bytes) in "
                  f"{self.journal_path}: the crash happened before it was acknowledged",
                  file=sys.stderr)
            with open(self.journal_path, "r+b") as f:
                f.truncate(good_bytes)
                f.flush()
                os.fsync(f.fileno())
        recovery = Recovery(snapshot, entries, snapshot_seq, torn)
        self.snapshot_seq = snapshot_seq
        self.written_seq = self.durable_seq = recovery.last_seq
        self._size = self._durable_size = good_bytes
        self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._fsync_dir()
        return recovery

    def _parse(self, data: bytes, snapshot_seq: int) -> tuple[list[dict[str, Any]], int]:
        """The entries after the snapshot and the length of the whole records.

        Only the bytes after the last newline can be torn; every line before it is a
        complete record and must decode.
        """
        entries: list[dict[str, Any]] = []
        whole = data.rfind(b"\n") + 1   # bytes up to and including the last newline
        expected = snapshot_seq + 1
        lines = data[:whole].split(b"\n")[:-1]
        for number, line in enumerate(lines, start=1):
            entry = decode_entry(line)
            if entry is None:
                later = "" if number == len(lines) else \
                    f", and {len(lines) - number} record(s) follow it"
                raise SnapshotError(f"{self.journal_path}: line {number} is corrupted: a complete "
                                    f"record (newline-terminated) that fails its checksum "
                                    f"or does not decode{later}; only an unterminated last "
                                    "record can be a torn append, so this file was damaged "
                                    "after it was written and may hold acknowledged "
                                    "changes. Restore the state directory from a backup")
            if entry["seq"] <= snapshot_seq and expected == snapshot_seq + 1:
                continue  # already in the snapshot (a crash between checkpoint steps)
            if entry["seq"] != expected:
                raise SnapshotError(f"{self.journal_path}: line {number} has seq "
                                    f"{entry['seq']}, expected {expected}: entries are "
                                    "missing between the snapshot and the journal")
            expected += 1
            entries.append(entry)
        return entries, whole

    # ---- appending ------------------------------------------------------------------

    def write(self, entry: dict[str, Any]) -> int:
        """Append ``entry`` (given the next seq) without fsync; return its ticket."""
        if self._fd is None:
            raise RuntimeError("Journal.recover() must run before write()")
        if self.broken is not None:
            raise JournalBroken(f"the journal failed earlier ({self.broken}); restart the "
                                "server to recover from disk")
        seq = self.written_seq + 1
        record = encode_entry({**entry, "seq": seq})
        view = memoryview(record)
        try:
            while view:
                done = os.write(self._fd, view)
                view = view[done:]
        except OSError as exc:
            self._cut_partial(exc)
            raise
        self._size += len(record)
        self.written_seq = seq
        self.ticket += 1
        return self.ticket

    def _cut_partial(self, exc: OSError) -> None:
        """Remove the bytes of a failed append, or stop appending if that fails too."""
        assert self._fd is not None  # only called for an append on the open file
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as cut:
            self.broken = (f"an append failed ({exc}) and its partial record could not be "
                           f"cut off ({cut})")

    def sync(self) -> None:
        """Make every record written so far durable (blocking fsync)."""
        if self._fd is not None and self.durable_seq < self.written_seq:
            target = (self.written_seq, self.ticket, self._size)
            os.fsync(self._fd)
            self._settle(*target)

    def _settle(self, seq: int, ticket: int, size: int) -> None:
        """Records up to ``seq`` (tickets up to ``ticket``, ``size`` bytes) are durable."""
        self.durable_seq = max(self.durable_seq, seq)
        self._settled_ticket = max(self._settled_ticket, ticket)
        self._durable_size = max(self._durable_size, size)

    async def wait_durable(self, ticket: int) -> None:
        """Return once the record of ``ticket`` is on disk; concurrent callers share an
        fsync.  Raises the fsync's OSError, or JournalCut, if the record was cut off."""
        while True:
            if any(first <= ticket <= last for first, last in self._cut_tickets):
                raise JournalCut("the journal's fsync failed and this change was cut off "
                                 "the journal again")
            if self._settled_ticket >= ticket:
                return
            if self._flush_task is None:
                self._flush_task = asyncio.ensure_future(self._flush())
            await asyncio.shield(self._flush_task)

    async def _flush(self) -> None:
        try:
            target = (self.written_seq, self.ticket, self._size)
            fd = self._fd
            if fd is None:  # closed meanwhile (close() syncs first), or never recovered
                raise RuntimeError("the journal is closed; nothing to flush")
            try:
                await asyncio.get_running_loop().run_in_executor(None, os.fsync, fd)
            except OSError as exc:
                # Memory holds changes the disk refused: cut them off the file and roll
                # memory back (the owner does both under its lock), then fail their waiters.
                if self.on_cut is not None:
                    self.on_cut(exc)
                else:
                    self.cut_to_durable(exc)
                raise
            self._settle(*target)
        finally:
            self._flush_task = None

    def cut_to_durable(self, exc: OSError) -> None:
        """After a failed fsync: cut the journal back to its last durable length.

        Every ticket written since the last good fsync is failed for good (its waiters
        get JournalCut); the next write takes the seq after the last durable one but a
        new ticket.  The caller holds the owner's lock (no write meanwhile).  If the cut
        does not hold either (ftruncate or its fsync fails), the journal is ``broken``.
        """
        if self.ticket > self._settled_ticket:
            self._cut_tickets.append((self._settled_ticket + 1, self.ticket))
        self._settled_ticket = self.ticket
        if self._fd is None or self.broken is not None:
            return
        try:
            os.ftruncate(self._fd, self._durable_size)
            os.fsync(self._fd)
        except OSError as cut:
            self.broken = (f"fsync failed ({exc}) and the journal could not be cut back "
                           f"to its last durable record ({cut})")
            return
        self._size = self._durable_size
        self.written_seq = self.durable_seq

    @property
    def flushing(self) -> bool:
        return self._flush_task is not None

    @property
    def entries_since_snapshot(self) -> int:
        return self.written_seq - self.snapshot_seq

    # ---- checkpoints ----------------------------------------------------------------

    def checkpoint(self, snapshot: dict[str, Any]) -> None:
        """Write ``snapshot`` (the state after every written entry), then empty the journal.

        The caller holds the engine lock, so no entry is written meanwhile, and no fsync
        is in flight (it would run on the journal descriptor this replaces).
        """
        if self._flush_task is not None:
            raise RuntimeError("checkpoint while a journal fsync is in flight")
        if self.broken is not None:
            raise JournalBroken(f"no checkpoint: the journal failed earlier ({self.broken})")
        seq = self.written_seq
        write_atomic(self.snapshot_path, encode_state({**snapshot, "journal_seq": seq}))
        # The snapshot is durable now: the journal's entries are covered by it even if
        # emptying the journal fails below (recovery skips seq <= journal_seq).
        self.snapshot_seq = seq
        write_atomic(self.journal_path, b"")
        old_fd, self._fd = self._fd, os.open(self.journal_path,
                                             os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if old_fd is not None:
            os.close(old_fd)
        self._size = self._durable_size = 0
        self.durable_seq = seq
        self._settled_ticket = self.ticket

    def _fsync_dir(self) -> None:
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        """Sync and release the directory (the lock goes with the descriptor)."""
        try:
            if self._fd is not None and self.broken is None:
                self.sync()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
