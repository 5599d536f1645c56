"""The placement service from any language: start it, then talk JSON over HTTP.

This script starts ``gpusched serve`` on 127.0.0.1 (a free port, a temporary state
directory, a bearer token), then places, explains and releases jobs with nothing but
the standard library, the way a Go or C scheduler would with its own HTTP client.

    python examples/service_client.py

The same calls with curl, against a server started by hand::

    gpusched serve --cluster colossus-100k --state /tmp/gpusched-state --port 8787 --token s3cret
    curl -s -H 'Authorization: Bearer s3cret' -d '{"job": {"id": "llm-a", "gpus": 512, "min_cap_w": 450}}' \\
         http://127.0.0.1:8787/v1/place
    curl -s -d '{"job": {"id": "llm-b", "gpus": 4096}}' http://127.0.0.1:8787/v1/explain
    curl -s http://127.0.0.1:8787/v1/state
    curl -s -H 'Authorization: Bearer s3cret' -d '{"job_id": "llm-a"}' http://127.0.0.1:8787/v1/release
    curl -s http://127.0.0.1:8787/openapi.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

TOKEN = "s3cret"


def call(base: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + path, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gpusched-state-") as state:
        server = subprocess.Popen(
            [sys.executable, "-m", "gpusched.cli", "serve", "--cluster", "colossus-100k",
             "--state", state, "--port", "0", "--token", TOKEN],
            stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            print(line.strip())
            base = line.rsplit("listening on ", 1)[1].split()[0]
            status, placed = call(base, "/v1/place",
                                  {"job": {"id": "llm-a", "gpus": 512, "min_cap_w": 450}})
            p = placed["placement"]
            print(f"place -> {status}: {len(p['nodes'])} nodes "
                  f"{p['node_names'][0]}..{p['node_names'][-1]} at {p['cap_w']} W")
            status, why = call(base, "/v1/explain", {"job": {"id": "x", "gpus": 12}})
            print(f"explain a 12-GPU job -> {status}: {why['error']}")
            status, state_summary = call(base, "/v1/state")
            print(f"state -> {state_summary['free_gpus']:,} GPUs free, "
                  f"{state_summary['total_power_w'] / 1e6:.2f} MW")
            status, released = call(base, "/v1/release", {"job_id": "llm-a"})
            print(f"release -> {status}: {released['released']['job_id']}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
