"""What the operator endpoints cost: reply sizes v1 against v2, a /metrics scrape, the floor.

In process (Starlette's TestClient, no sockets), on colossus-100k by default:

* ``explain`` and ``place`` of a 65,536-GPU gang: bytes of the v1 reply (every node by
  index and name) against v2 (a hostlist), and the time of each;
* ``/metrics`` (5,791 limits, two gauges each) and ``/v1/floor`` (2,352 racks): bytes and
  time per scrape or poll, with the site a third full of 8- to 512-GPU jobs;
* the same ``/v1/floor`` poll with ``?since=SEQ`` while nothing changed.

    python benchmarks/bench_ops.py            # colossus-100k
    python benchmarks/bench_ops.py --quick    # the tiny site, one repeat (CI smoke run)

It prints numbers and asserts none.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# this checkout's gpusched, not whichever one is installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gpusched  # noqa: E402
from gpusched.serve import PlacementService, create_app  # noqa: E402


def timed(call, repeats: int) -> tuple[float, object]:
    """Median wall time of ``call()`` in ms, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", default="colossus-100k")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny site, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.cluster, args.repeats = "tiny", 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    cluster = gpusched.Cluster.resolve(args.cluster)
    gang = min(65536, cluster.num_gpus * 2 // 3 // cluster.gpus_per_node * cluster.gpus_per_node)
    rows = []
    with tempfile.TemporaryDirectory() as state:
        service = PlacementService(cluster, state)
        with TestClient(create_app(service)) as client:
            job = {"job": {"id": "gang", "gpus": gang, "min_cap_w": 200}}
            for version in ("v1", "v2"):
                ms, reply = timed(lambda: client.post(f"/{version}/explain", json=job),
                                  args.repeats)
                rows.append((f"explain {gang:,}-GPU gang, {version}",
                             f"{len(reply.content):,} B", f"{ms:.1f} ms"))
            for version in ("v1", "v2"):
                def place_release():
                    reply = client.post(f"/{version}/place", json=job)
                    client.post(f"/{version}/release", json={"job_id": "gang"})
                    return reply
                ms, reply = timed(place_release, args.repeats)
                rows.append((f"place+release {gang:,}-GPU gang, {version}",
                             f"{len(reply.content):,} B (place)", f"{ms:.1f} ms"))
            rng = random.Random(0)
            target = cluster.num_gpus // 3
            placed = i = 0
            while placed < target and i < 20_000:
                gpus = rng.choice([8, 8, 64, 512]) if cluster.num_gpus >= 1024 else 8
                reply = client.post("/v1/place", json={"job": {"id": f"j{i}", "gpus": gpus,
                                                              "min_cap_w": 300}}).json()
                placed += gpus if reply["placed"] else 0
                i += 1
            jobs = len(service.engine)
            ms, reply = timed(lambda: client.get("/metrics"), args.repeats)
            rows.append((f"/metrics scrape ({cluster.constraints.num_rows:,} limits, "
                         f"{jobs:,} jobs)", f"{len(reply.content):,} B", f"{ms:.1f} ms"))
            first = time.perf_counter()
            reply = client.get("/v1/floor")
            first_ms = (time.perf_counter() - first) * 1000
            assert reply.status_code == 200, (reply.status_code, reply.text[:300])
            seq = reply.json()["seq"]
            rows.append((f"/v1/floor after a change ({cluster.num_racks:,} racks)",
                         f"{len(reply.content):,} B", f"{first_ms:.1f} ms"))
            ms, reply = timed(lambda: client.get(f"/v1/floor?since={seq}"), args.repeats)
            rows.append(("/v1/floor?since=SEQ, nothing changed", f"{len(reply.content):,} B",
                         f"{ms:.1f} ms"))
    width = max(len(r[0]) for r in rows)
    print(f"{'operator endpoints on ' + cluster.name:<{width}}  {'size':>22}  {'time':>9}")
    for name, size, ms in rows:
        print(f"{name:<{width}}  {size:>22}  {ms:>9}")


if __name__ == "__main__":
    main()
