"""A site that changes, on colossus-100k: fail, set_limit, repair and plan_envelope.

Both twins side by side, with the ratio (the Python twin's time over the compiled
core's):

- ``fail`` of one idle node (then restored, untimed), and of one node of a running
  32,768-GPU gang (the call that finds and degrades the job);
- ``set_limit`` of one row (a busway set and put back);
- ``repair`` of one failed node of a 32,768-GPU gang on a half-full site (p50 and p99);
- ``plan_envelope`` for a facility cut of 25 % on a full site, and its apply.

Each op goes through ``Engine`` (the validation in gpusched/_site.py, then the twin's
core primitives), so these are the times a caller sees.  Targets (issue 15): fail and
set_limit at most 10 us, repair p50 at most 100 us, plan_envelope at most 1 s.

    python benchmarks/bench_site.py            # a table
    python benchmarks/bench_site.py --json
    python benchmarks/bench_site.py --quick    # CI smoke: tiny counts

A benchmark, not a test: it asserts no time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_perf import BACKENDS, background  # noqa: E402
from harness import _gc_off  # noqa: E402

from gpusched import Cluster, Engine, Job  # noqa: E402
from gpusched.plan import plan_envelope  # noqa: E402

GANG_GPUS = 32_768


def _times(op: Callable[[int], Any], undo: Callable[[int], Any], count: int) -> list[float]:
    """Seconds of ``op(i)`` for i in range(count), ``undo(i)`` after each, untimed."""
    out = []
    clock = time.perf_counter
    for i in range(count):
        start = clock()
        op(i)
        out.append(clock() - start)
        undo(i)
    return out


def _p(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))]


def half_full(cluster: Cluster) -> dict[str, Any]:
    """A snapshot of a half-full site whose first job is a 32,768-GPU gang."""
    engine = Engine(cluster, backend=BACKENDS[0])
    assert engine.place(Job("gang", GANG_GPUS, min_cap_w=400)) is not None
    background(engine, 0.5)
    return engine.snapshot()


def bench_ops(cluster: Cluster, snap: dict[str, Any], count: int) -> dict[str, Any]:
    """Times with the cyclic GC off, as harness.measure (and timeit) take them."""
    with _gc_off():
        return _bench_ops(cluster, snap, count)


def _bench_ops(cluster: Cluster, snap: dict[str, Any], count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    for backend in BACKENDS:
        engine = Engine.restore(cluster, snap, backend=backend)
        free = engine.node_free_gpus()
        idle_nodes = [n for n in range(cluster.num_nodes) if free[n] == 8][-count:]
        gang_nodes = list(engine.placement("gang").nodes)
        row = next(i for i, k in enumerate(cluster.constraints.kinds) if k == "row")
        limit = float(engine.limits_w()[row])
        r: dict[str, Any] = {}
        # warm-up: the first repair builds the engine's topology index (about 0.1 s)
        engine.fail(gang_nodes[0])
        engine.repair("gang")
        engine.restore(gang_nodes[0])
        fail_idle = _times(lambda i: engine.fail(idle_nodes[i]),
                           lambda i: engine.restore(idle_nodes[i]), count)
        r["fail_idle_node_us"] = statistics.median(fail_idle) * 1e6
        idle_w = cluster.power.node_idle_w  # the core primitive fail ends in, alone
        core = _times(lambda i: engine._set_node_state(idle_nodes[i], 2, -idle_w),
                      lambda i: engine._set_node_state(idle_nodes[i], 0, idle_w), count)
        r["core_set_node_state_us"] = statistics.median(core) * 1e6
        r["set_limit_us"] = statistics.median(_times(
            lambda i: engine.set_limit(row, limit - 1000.0),
            lambda i: engine.set_limit(row, limit), count)) * 1e6
        # a gang node fails, then is repaired; the failed node comes back, untimed
        fails, repairs, placed = [], [], []
        for i in range(count):
            node = engine.placement("gang").nodes[i % 64]
            start = time.perf_counter()
            hit = engine.fail(node)
            mid = time.perf_counter()
            new = engine.repair("gang")
            end = time.perf_counter()
            assert hit == ["gang"] and new is not None
            fails.append(mid - start)
            repairs.append(end - mid)
            placed.append((node, new.cap_w, len(new.nodes)))
            engine.restore(node)
        r["fail_gang_node_us"] = statistics.median(fails) * 1e6
        r["repair_p50_us"] = _p(repairs, 0.5) * 1e6
        r["repair_p99_us"] = _p(repairs, 0.99) * 1e6
        answers[backend] = (placed, engine._index_state()["node_state"])
        assert len(gang_nodes) == GANG_GPUS // 8
        out[backend] = r
    if len(set(json.dumps(a) for a in answers.values())) != 1:
        raise SystemExit("the twins repaired differently")
    return out


def bench_envelope(cluster: Cluster, repeats: int) -> dict[str, Any]:
    base = Engine(cluster, backend=BACKENDS[0])
    background(base, 1.0)
    snap = base.snapshot()
    out: dict[str, Any] = {}
    plans = {}
    for backend in BACKENDS:
        engine = Engine.restore(cluster, snap, backend=backend)
        facility = len(cluster.constraints.names) - 1
        load = engine.limits_w()[facility] - engine.row_slack_w()[facility]
        engine.set_limit(facility, 0.75 * load)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            plan = plan_envelope(engine)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        engine.apply_envelope(plan)
        apply_s = time.perf_counter() - start
        plans[backend] = (plan.caps, plan.evict, plan.status)
        out[backend] = {"jobs": len(engine) + len(plan.evict),
                        "load_mw": load / 1e6, "limit_mw": 0.75 * load / 1e6,
                        "plan_s": statistics.median(times), "apply_s": apply_s,
                        "cap_downs": len(plan.caps), "evicted": len(plan.evict),
                        "status": plan.status, "rows_over_after": len(engine.violations())}
    if len({json.dumps(p, sort_keys=True) for p in plans.values()}) != 1:
        raise SystemExit("the twins planned differently")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--count", type=int, default=200, help="ops per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="plan_envelope runs")
    parser.add_argument("--quick", action="store_true",
                        help="tiny counts: only checks the benchmark runs (CI smoke)")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.repeats = 5, 1
    cluster = Cluster.preset("colossus-100k")
    results = {"ops": bench_ops(cluster, half_full(cluster), args.count),
               "envelope": bench_envelope(cluster, args.repeats)}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    ops = results["ops"]
    print(f"bench_site on colossus-100k ({cluster.num_gpus:,} GPUs), {args.count} ops each; "
          "times per call through Engine")
    names = list(ops[BACKENDS[0]])
    header = f"{'':28}" + "".join(f"{b:>12}" for b in BACKENDS)
    print(header + ("       ratio" if len(BACKENDS) == 2 else ""))
    for name in names:
        cells = "".join(f"{ops[b][name]:12.1f}" for b in BACKENDS)
        ratio = (f"{ops['python'][name] / ops['cython'][name]:11.1f}x"
                 if len(BACKENDS) == 2 else "")
        print(f"{name:28}{cells}{ratio}")
    env = results["envelope"]
    for b in BACKENDS:
        e = env[b]
        print(f"plan_envelope {b}: {e['jobs']} jobs, {e['load_mw']:.1f} MW -> "
              f"{e['limit_mw']:.1f} MW: {e['plan_s']:.3f} s to plan ({e['status']}: "
              f"{e['cap_downs']} cap-downs, {e['evicted']} evicted), {e['apply_s']:.3f} s to "
              f"apply, {e['rows_over_after']} rows over after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
