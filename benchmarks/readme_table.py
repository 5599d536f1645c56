"""Write the README's performance table from bench_perf.py's JSON.

    python benchmarks/bench_perf.py --json perf.json
    python benchmarks/readme_table.py perf.json          # rewrites README.md in place

The table goes between the markers ``<!-- perf-table:start -->`` and
``<!-- perf-table:end -->``; each row gives the target, the Cython figure, the
pure-Python figure and whether the target is met.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

START, END = "<!-- perf-table:start -->", "<!-- perf-table:end -->"


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = []
    for key, label, target in (
            ("pairs_8gpu", "8-GPU place+release, Python API (pairs/s)", 300_000),
            ("batch_8gpu", "8-GPU place_many+release_many (pairs/s)", 1_000_000),
            ("pairs_1gpu", "1-GPU best fit, Python API (pairs/s)", 300_000)):
        c, p = r[key]["cython"]["pairs_per_s"], r[key]["python"]["pairs_per_s"]
        out.append((label, f">= {target:,}", f"{c:,}", f"{p:,}", met(c >= target)))
    b = r["pairs_8gpu_binding"]
    out.append(("8-GPU pairs/s while the facility row binds (caps step down)", "-",
                f"{b['cython']['pairs_per_s']:,}", f"{b['python']['pairs_per_s']:,}",
                f"{b['ratio']}x the twin"))
    ratio = r["pairs_8gpu"]["ratio"]
    spread = r["pairs_8gpu"].get("ratio_range")
    shown = f"{ratio}x" + (f" (rounds: {spread[0]}x to {spread[1]}x)" if spread else "")
    out.append(("Cython over the twin, 8-GPU stream (median of paired rounds)",
                ">= 50x (core issue), >= 100x (performance issue)", shown, "1x",
                "met" if ratio >= 100 else ("met for the core issue only" if ratio >= 50
                                            else "**not met**")))
    for key, label, limit in (("gang_4096", "4,096-GPU gang, half-full cluster (p50 / p99 µs)",
                               100), ("gang_32768",
                                      "32,768-GPU gang, half-full cluster (p50 / p99 µs)", 1000)):
        c, p = r[key]["cython"], r[key]["python"]
        out.append((label, f"p50 <= {limit:,}", f"{c['p50_us']:,} / {c['p99_us']:,}",
                    f"{p['p50_us']:,} / {p['p99_us']:,}", met(c["p50_us"] <= limit)))
    scaling = r["scaling"]["rows"]
    first, last = scaling[0], scaling[-1]
    growth = last["cython_us_per_pair"] / first["cython_us_per_pair"]
    # logarithmic growth allows the cost to rise by log(N_last) / log(N_first)
    allowed = math.log(last["gpus"]) / math.log(first["gpus"])
    out.append((f"8-GPU µs/pair from {first['gpus']:,} to {last['gpus']:,} GPUs",
                f"growth <= {allowed:.2f}x (log)", f"{first['cython_us_per_pair']} -> "
                f"{last['cython_us_per_pair']} ({growth:.2f}x)",
                f"{first.get('python_us_per_pair', '-')} -> "
                f"{scaling[-2].get('python_us_per_pair', '-')} (at {scaling[-2]['gpus']:,})",
                met(growth <= allowed)))
    m = r["memory"]
    out.append(("engine state per GPU (bytes)", "<= 64", f"{m['cython']['bytes_per_gpu']}",
                f"{m['python']['bytes_per_gpu']}", met(m["cython"]["bytes_per_gpu"] <= 64)))
    if r.get("gil"):
        g = r["gil"]
        out.append(("a Python thread's progress while another places 32k gangs",
                    "GIL released", f"{g['share_of_alone']:.0%} of alone", "-",
                    met(g["share_of_alone"] >= 0.3)))
    return out


def table(results: dict[str, Any]) -> str:
    lines = ["| measurement | target | Cython | pure Python | |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows(results)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(table(results))
        return 0
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table(results)}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
