"""Start ``gpusched serve`` as a real subprocess on 127.0.0.1 and stop it again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 60


def start_server(cluster: str, state_dir: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``python -m gpusched.cli serve`` on a free port; returns the process and its URL.

    stderr is a pipe: read it only after :func:`stop` (the server writes its log there).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusched.cli", "serve", "--cluster", cluster,
         "--state", str(state_dir), "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on http://" in line:
            url = line.rsplit("listening on ", 1)[1].split()[0]
            assert url.startswith("http://127.0.0.1:"), url
            return proc, url
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait(timeout=30)
    raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()!r}")


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM (then SIGKILL after 30 s); returns what the server wrote to stderr."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    return err or ""
