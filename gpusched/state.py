"""Durable engine state: atomic, versioned, checksummed files.

A state file is one JSON object::

    {"gpusched_state": 1, "sha256": "<hex of the canonical snapshot JSON>",
     "snapshot": {... Engine.snapshot() ...}}

It is written to a temporary file in the same directory, flushed and fsynced, renamed
over the target (atomic on POSIX), and the directory is fsynced, so after a crash the
path holds either the old state or the new one, never a mix.  Decoding refuses a
truncated file and a file whose checksum does not match (edited by hand or corrupted);
``Engine.load`` refuses, in addition, a file from another cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ._atomic import write_atomic  # re-exported: callers import it from here
from .errors import SnapshotError

# This module knows bytes and dicts, never the Engine: Engine.save and Engine.load turn an
# engine into a snapshot dict and back (the engine layer imports this one, not the reverse).
__all__ = ["STATE_FORMAT", "write_atomic", "encode_state", "decode_state", "read_state"]

STATE_FORMAT = 1


def _canonical(snapshot: dict[str, Any]) -> bytes:
    # allow_nan=False: NaN and Infinity are not JSON, and a state file never holds them
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def encode_state(snapshot: dict[str, Any]) -> bytes:
    """The bytes of a state file holding ``snapshot``."""
    digest = hashlib.sha256(_canonical(snapshot)).hexdigest()
    return json.dumps({"gpusched_state": STATE_FORMAT, "sha256": digest,
                       "snapshot": snapshot}, separators=(",", ":")).encode("utf-8") + b"\n"


def decode_state(data: bytes, source: str = "state") -> dict[str, Any]:
    """The snapshot inside state-file bytes; SnapshotError if truncated or edited."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise SnapshotError(f"{source} is not a complete gpusched state file (truncated or "
                            f"corrupted): {exc}") from None
    except RecursionError:  # thousands of nested brackets: garbage, not a state file
        raise SnapshotError(f"{source} is not a gpusched state file: nested too deeply "
                            "to be one") from None
    if not isinstance(doc, dict) or set(doc) != {"gpusched_state", "sha256", "snapshot"}:
        raise SnapshotError(f"{source} is not a gpusched state file: expected the keys "
                            "gpusched_state, sha256 and snapshot")
    # `type(...) is int`: JSON true would otherwise pass as format 1
    if type(doc["gpusched_state"]) is not int or doc["gpusched_state"] != STATE_FORMAT:
        raise SnapshotError(f"{source} has state format {doc['gpusched_state']!r}; this "
                            f"version reads format {STATE_FORMAT}")
    snapshot = doc["snapshot"]
    if not isinstance(snapshot, dict):
        raise SnapshotError(f"{source}: snapshot must be an object")
    try:
        digest = hashlib.sha256(_canonical(snapshot)).hexdigest()
    except (ValueError, RecursionError) as exc:  # NaN is not canonical JSON; deep nesting
        raise SnapshotError(f"{source}: snapshot cannot be checksummed: {exc}") from None
    if digest != doc["sha256"]:
        raise SnapshotError(f"{source} fails its checksum: it was edited or corrupted "
                            "after it was written")
    return snapshot


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The snapshot in the state file at ``path``; SnapshotError if unreadable or damaged."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read state file {str(path)!r}: {exc.strerror}") from None
    return decode_state(data, source=str(path))
