"""Load test of ``gpusched serve`` on loopback: place+release pairs per second, latency.

Starts the real server (``python -m gpusched.cli serve``) on 127.0.0.1 with a port the
OS picks and a fresh state directory, then drives it with C concurrent keep-alive
connections, each sending place, then release, of an 8-GPU job, for a fixed number of
pairs in all.  Every reply is journaled and fsynced before it is sent, so this measures
the durable path; concurrent requests share an fsync (group commit).  The client is a
minimal HTTP/1.1 writer on asyncio streams, so that client overhead does not hide the
server's (both run on the same machine).

    python benchmarks/bench_serve.py                       # concurrency 1, 8, 32
    python benchmarks/bench_serve.py --pairs 4000 --concurrency 16 --json
    python benchmarks/bench_serve.py --batch 16            # /v1/batch: 16 pairs a request

With ``--batch K`` each connection sends its pairs K at a time through ``/v1/batch`` (wire
format 1.1): one request of K places, then one of K releases, each answered after one
fsync; the pairs per second count pairs, not requests.

It prints numbers and asserts none (target: >= 2,000 pairs/s on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used: Linux's /proc, else None.

    The server's CPU per pair is the figure that a busy machine disturbs least."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(state_dir: str, cluster: str, backend: str | None) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "gpusched.cli", "serve", "--cluster", cluster,
               "--state", state_dir, "--port", "0", "--host", "127.0.0.1"]
    if backend:
        command += ["--backend", backend]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if "listening on http://" in line:
            return proc, int(line.rsplit(":", 1)[1].split()[0].strip("/"))
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


async def request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
                  body: bytes) -> tuple[int, bytes]:
    writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def batch_worker(port: int, worker_id: int, pairs: int, batch: int,
                       latencies_s: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for first in range(0, pairs, batch):
            ids = [f"w{worker_id}-{i}" for i in range(first, min(pairs, first + batch))]
            start = time.perf_counter()
            for path, ops in (("/v1/batch", [{"op": "place", "job": {
                    "id": job_id, "gpus": 8, "min_cap_w": 400}} for job_id in ids]),
                    ("/v1/batch", [{"op": "release", "job_id": job_id} for job_id in ids])):
                status, body = await request(reader, writer, path,
                                             json.dumps({"ops": ops}).encode())
                results = json.loads(body)["results"] if status == 200 else []
                if status != 200 or any(r["status"] != 200 for r in results):
                    raise SystemExit(f"batch failed: {status} {body[:200]!r}")
            latencies_s.extend([(time.perf_counter() - start)] * len(ids))
    finally:
        writer.close()


async def worker(port: int, worker_id: int, pairs: int, latencies_s: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in range(pairs):
            job_id = f"w{worker_id}-{i}"
            start = time.perf_counter()
            status, body = await request(reader, writer, "/v1/place", json.dumps(
                {"job": {"id": job_id, "gpus": 8, "min_cap_w": 400}}).encode())
            if status != 200 or not json.loads(body)["placed"]:
                raise SystemExit(f"place {job_id} failed: {status} {body[:200]!r}")
            status, body = await request(reader, writer, "/v1/release",
                                         json.dumps({"job_id": job_id}).encode())
            if status != 200:
                raise SystemExit(f"release {job_id} failed: {status} {body[:200]!r}")
            latencies_s.append(time.perf_counter() - start)
    finally:
        writer.close()


async def drive(port: int, pairs: int, concurrency: int, batch: int = 0) -> dict[str, float]:
    latencies_s: list[float] = []
    share = [pairs // concurrency + (1 if i < pairs % concurrency else 0)
             for i in range(concurrency)]
    start = time.perf_counter()
    if batch:
        await asyncio.gather(*(batch_worker(port, i, n, batch, latencies_s)
                               for i, n in enumerate(share)))
    else:
        await asyncio.gather(*(worker(port, i, n, latencies_s)
                               for i, n in enumerate(share)))
    elapsed_s = time.perf_counter() - start
    ordered = sorted(latencies_s)
    return {"concurrency": concurrency, "pairs": pairs, "elapsed_s": round(elapsed_s, 3),
            "pairs_per_s": round(pairs / elapsed_s, 1),
            "requests_per_s": round(sum(2 * (-(-n // batch) if batch else n)
                                        for n in share) / elapsed_s, 1),
            "p50_pair_ms": round(statistics.median(ordered) * 1e3, 3),
            "p99_pair_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
                                 * 1e3, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,8,32",
                        help="comma list of concurrent connections")
    parser.add_argument("--cluster", default="colossus-100k")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--state-parent", default=None,
                        help="directory to make the state directory in (e.g. /dev/shm, "
                             "where fsync is free, to time the HTTP stack alone)")
    parser.add_argument("--batch", type=int, default=0,
                        help="send pairs K at a time through /v1/batch (0: one request each)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run that only checks the benchmark works (CI smoke)")
    args = parser.parse_args()
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:  # the service is an optional extra: say so, and do not fail
        print(f"bench_serve: skipped, {' and '.join(missing)} not installed "
              "(pip install 'gpusched[serve]')")
        return 0
    if args.quick:
        args.pairs, args.concurrency = 100, "1,4"
    results = []
    with tempfile.TemporaryDirectory(prefix="gpusched-bench-",
                                     dir=args.state_parent) as state_dir:
        proc, port = start_server(state_dir, args.cluster, args.backend)
        try:
            asyncio.run(drive(port, min(200, args.pairs // 2), 4))  # warm-up
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                before_s = cpu_s(proc.pid)
                results.append(asyncio.run(drive(port, args.pairs, concurrency, args.batch)))
                after_s = cpu_s(proc.pid)
                results[-1]["server_cpu_us_per_pair"] = (
                    None if before_s is None or after_s is None
                    else round((after_s - before_s) / args.pairs * 1e6, 1))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.json:
        print(json.dumps({"cluster": args.cluster, "cpus": os.cpu_count(), "batch": args.batch,
                          "results": results}, indent=1))
        return 0
    print(f"gpusched serve on 127.0.0.1, {args.cluster}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; place+release of 8-GPU jobs, each reply fsynced "
          f"(state under {args.state_parent or tempfile.gettempdir()})"
          + (f"; {args.batch} pairs per /v1/batch request" if args.batch else ""))
    print(f"{'conns':>6}{'pairs':>8}{'pairs/s':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'server CPU us/pair':>20}")
    for r in results:
        print(f"{r['concurrency']:>6}{r['pairs']:>8}{r['pairs_per_s']:>10,.0f}"
              f"{r['requests_per_s']:>10,.0f}{r['p50_pair_ms']:>9.2f}{r['p99_pair_ms']:>9.2f}"
              f"{r['server_cpu_us_per_pair'] or 0:>20,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
