"""The Kubernetes extender at full scale: filter latency, and one big gang end to end.

Starts the real server (``python -m gpusched.cli serve``) on 127.0.0.1 with a fresh state
directory, and plays kube-scheduler with ``nodeCacheCapable: true``: every ``filter`` and
``prioritize`` carries node names only, and ``filter`` carries every node of the site
(12,544 on colossus-100k, about 0.2 MB of JSON).  The pod is the extender's own fixture
(``tests/fixtures/k8s/filter_args_nodenames.json``) with its gang annotations set.

1. **filter**: the first pod of a gang reserves its nodes; then ``--filters`` further pods
   of that gang are filtered, and the median and 99th percentile of their round trips
   are printed (the time to the last byte of the reply, 1 MB of ``FailedNodes`` with all
   12,540 names it refuses).
2. **gang**: a fresh gang of ``--gang-pods`` 8-GPU pods goes through what kube-scheduler
   does for each pod in turn: ``filter`` with every node name, ``prioritize`` with the
   nodes that passed, ``bind`` to the best-scored one.  Every bind is journaled and
   fsynced before its reply.  The total time and pods per second are printed.

    python benchmarks/bench_extender.py                    # colossus-100k, 512-pod gang
    python benchmarks/bench_extender.py --quick            # CI smoke: a small run

It prints numbers and asserts none (targets: filter p50 <= 5 ms, a 512-pod gang <= 5 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:  # the client's own JSON work is not what is measured: use the fast library if here
    from orjson import dumps, loads
except ImportError:
    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    loads = json.loads

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's gpusched
from bench_serve import start_server  # noqa: E402

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "k8s"


class Connection:
    """One keep-alive HTTP/1.1 connection on a blocking socket: the leanest client Python
    has, so that the client's own time (it shares the machine) hides little of the
    server's.  kube-scheduler's client is Go's net/http."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.sock.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                          % (path.encode(), len(body), body))
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head = bytes(self.buffer[:end])
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(self.buffer) < end + 4 + length:
            self._receive()
        reply = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        return status, reply

    def _receive(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def pod(gang: str, size: int, index: int) -> dict:
    args = json.loads((FIXTURE / "filter_args_nodenames.json").read_text())
    meta = args["Pod"]["metadata"]
    meta["name"] = f"{gang}-{index}"
    meta["uid"] = f"uid-{gang}-{index}"
    meta["annotations"]["gpusched.io/gang-name"] = gang
    meta["annotations"]["gpusched.io/gang-size"] = str(size)
    return args["Pod"]


def filter_body(pod_: dict, node_names: list[str]) -> bytes:
    return dumps({"Pod": pod_, "Nodes": None, "NodeNames": node_names})


def check(connection: Connection, path: str, body: bytes) -> tuple[float, Any]:
    """The round trip's seconds (to the reply's last byte) and the decoded reply."""
    start = time.perf_counter()
    status, reply = connection.post(path, body)
    elapsed_s = time.perf_counter() - start
    if status != 200:
        raise SystemExit(f"{path} answered {status}: {reply[:300]!r}")
    return elapsed_s, loads(reply)


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used: Linux's /proc, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_filter(port: int, pid: int, node_names: list[str], filters: int) -> dict:
    connection = Connection(port)
    try:
        size = filters + 1
        first_s, first = check(connection, "/v1/k8s/filter",
                                     filter_body(pod("lat", size, 0), node_names))
        if first["Error"] or not first["NodeNames"]:
            raise SystemExit(f"the reservation failed: {first['Error']!r}")
        bodies = [filter_body(pod("lat", size, i), node_names) for i in range(1, size)]
        samples = []
        cpu_before_s = cpu_s(pid)
        for body in bodies:
            elapsed_s, result = check(connection, "/v1/k8s/filter", body)
            if len(result["NodeNames"]) != len(first["NodeNames"]):
                raise SystemExit("a later pod saw another reservation")
            samples.append(elapsed_s)
        cpu_after_s = cpu_s(pid)
    finally:
        connection.close()
    samples.sort()
    server_cpu_ms = (None if cpu_before_s is None or cpu_after_s is None
                     else round((cpu_after_s - cpu_before_s) / filters * 1e3, 2))
    return {"nodes": len(node_names), "request_bytes": len(bodies[0]),
            "reserve_ms": round(first_s * 1e3, 2),
            "filters": filters, "server_cpu_ms": server_cpu_ms,
            "p50_ms": round(statistics.median(samples) * 1e3, 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))] * 1e3, 2)}


def bench_gang(port: int, node_names: list[str], pods: int) -> dict:
    connection = Connection(port)
    phase_s = {"filter": 0.0, "prioritize": 0.0, "bind": 0.0}
    bind = json.loads((FIXTURE / "bind_args.json").read_text())
    start = time.perf_counter()
    try:
        for i in range(pods):
            pod_ = pod("big", pods, i)
            elapsed_s, result = check(connection, "/v1/k8s/filter",
                                            filter_body(pod_, node_names))
            phase_s["filter"] += elapsed_s
            if result["Error"] or not result["NodeNames"]:
                raise SystemExit(f"pod {i} passed no node: {result['Error']!r}")
            elapsed_s, scores = check(
                connection, "/v1/k8s/prioritize",
                dumps({"Pod": pod_, "Nodes": None, "NodeNames": result["NodeNames"]}))
            phase_s["prioritize"] += elapsed_s
            best = max(scores, key=lambda s: s["Score"])["Host"]
            meta = pod_["metadata"]
            elapsed_s, bound = check(connection, "/v1/k8s/bind", dumps(
                {**bind, "PodName": meta["name"], "PodNamespace": meta["namespace"],
                 "PodUID": meta["uid"], "Node": best}))
            phase_s["bind"] += elapsed_s
            if bound["Error"]:
                raise SystemExit(f"pod {i} was not bound: {bound['Error']!r}")
    finally:
        connection.close()
    total_s = time.perf_counter() - start
    return {"pods": pods, "gpus": pods * 8, "total_s": round(total_s, 3),
            "pods_per_s": round(pods / total_s, 1),
            **{f"{k}_ms_per_pod": round(v / pods * 1e3, 2) for k, v in phase_s.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cluster", default="colossus-100k")
    parser.add_argument("--filters", type=int, default=200,
                        help="filter calls timed after the reservation")
    parser.add_argument("--gang-pods", type=int, default=512)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a small run that only checks the benchmark works (CI smoke)")
    args = parser.parse_args()
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"bench_extender: skipped, {' and '.join(missing)} not installed "
              "(pip install 'gpusched[serve]')")
        return 0
    if args.quick:
        args.filters, args.gang_pods = 10, 16
    import gpusched

    node_names = list(gpusched.Cluster.preset(args.cluster).node_names)
    with tempfile.TemporaryDirectory(prefix="gpusched-bench-") as state_dir:
        proc, port = start_server(state_dir, args.cluster, args.backend)
        try:
            filtering = bench_filter(port, proc.pid, node_names, args.filters)
            gang = bench_gang(port, node_names, args.gang_pods)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.json:
        print(json.dumps({"cluster": args.cluster, "cpus": os.cpu_count(),
                          "filter": filtering, "gang": gang}, indent=1))
        return 0
    print(f"gpusched extender on 127.0.0.1, {args.cluster} ({filtering['nodes']:,} node names "
          f"per filter, {filtering['request_bytes'] / 1e6:.2f} MB), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"filter: p50 {filtering['p50_ms']:.2f} ms, p99 {filtering['p99_ms']:.2f} ms over "
          f"{filtering['filters']} calls, server CPU {filtering['server_cpu_ms']} ms per call (the "
          f"reserving call: {filtering['reserve_ms']:.2f} ms)")
    print(f"gang of {gang['pods']} pods ({gang['gpus']:,} GPUs) through filter, prioritize, "
          f"bind: {gang['total_s']:.2f} s, {gang['pods_per_s']:,.0f} pods/s (per pod: filter "
          f"{gang['filter_ms_per_pod']:.2f} ms, prioritize {gang['prioritize_ms_per_pod']:.2f} "
          f"ms, bind {gang['bind_ms_per_pod']:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
