"""The sweep's tables: every run (runs.csv, runs.parquet) and the summary across seeds.

``runs.csv`` has one row per run in the sweep's own order (grid first, then the listed
points, replications innermost), whatever order the runs finished in, so two executors
give the same file apart from :data:`WALL_COLUMNS`.  ``summary.csv`` groups the runs
that differ only in seed (replications, or a seed axis) and gives each metric's mean and
the half-width of its 95 % confidence interval (Student's t, n - 1 degrees of freedom).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from .._atomic import write_atomic

__all__ = ["METRICS", "WALL_COLUMNS", "ID_COLUMNS", "write_table", "summarise",
           "read_table"]

#: Metric columns, in table order, with what they mean (units in the name).
METRICS: dict[str, str] = {
    "num_gpus": "GPUs of the site",
    "jobs": "jobs in the workload",
    "jobs_done": "jobs finished within the horizon",
    "jobs_queued_at_end": "jobs never started",
    "jct_mean_h": "mean completion time of the jobs done (h)",
    "jct_p99_h": "99th percentile completion time (h)",
    "wait_mean_h": "mean wait of the jobs started (h)",
    "wait_p99_h": "99th percentile wait (h)",
    "utilisation": "busy GPU-time over all GPU-time",
    "delivered_gpu_hours": "delivered work: GPU-hours x s(cap)",
    "bound_gpu_hours": "the fluid bound's work over the run",
    "fraction_of_bound": "delivered over the bound",
    "mean_speed": "mean s(cap) of busy GPUs",
    "energy_mwh": "IT energy (MWh)",
    "mean_power_mw": "mean IT power (MW)",
    "peak_facility_mw": "peak facility power (MW)",
    "facility_limit_mw": "facility limit (MW)",
    "fragmented_gpus_mean": "mean free GPUs on partly used nodes",
    "violation_row_seconds": "row-seconds over a limit (oblivious only)",
    "rows_ever_violated": "rows ever over their limit",
    "rounds_stopped_by_time_limit": "optimize rounds cut by the wall-clock safety net",
    "jobs_hit": "running jobs hit by a node failure",
    "resume_min_p50": "median time from a failure to the hit job running again (min)",
    "work_lost_gpu_h": "GPU-hours redone or held without progress after failures",
    "spare_gpus_mean": "GPUs held as hot spares (time-weighted mean)",
    "over_envelope_mw_s": "MW-seconds over the envelope's live limits",
}

#: Columns that depend on the machine and its load, not on the configuration: left
#: out when two runs of a sweep are compared (runs.csv keeps them).
WALL_COLUMNS = ("wall_s", "sim_wall_s", "solver_time_s", "worker", "worker_maxrss_mb")

ID_COLUMNS = ("run", "status", "error", "point", "replication")


def columns(option_keys: Sequence[str]) -> list[str]:
    return [*ID_COLUMNS, *option_keys, *METRICS, *WALL_COLUMNS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def write_table(rows: list[dict[str, Any]], cols: list[str], path: Path) -> list[Path]:
    """runs.csv (always) and runs.parquet (when pyarrow is installed), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in cols])
    write_atomic(path, text.getvalue().encode("utf-8"))
    written = [path]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    table = pa.Table.from_pylist([{c: _plain(row.get(c)) for c in cols} for row in rows])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    parquet = path.with_suffix(".parquet")
    write_atomic(parquet, sink.getvalue().to_pybytes())
    written.append(parquet)
    return written


def _plain(value: Any) -> Any:
    # one type per column for Parquet: option values may mix ints and floats
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _t95(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def summarise(rows: list[dict[str, Any]], group_keys: Sequence[str],
              metrics: Sequence[str] = tuple(METRICS)) -> list[dict[str, Any]]:
    """One row per group of ``group_keys`` values (runs that differ only in seed).

    Each metric gets ``<m>_mean`` and ``<m>_ci95`` (half-width; empty for one run), over
    the runs that finished; ``runs`` counts them and ``failed`` the others.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = tuple(_cell(row.get(k)) for k in group_keys)
        groups.setdefault(key, []).append(row)
    out = []
    for key, members in groups.items():
        ok = [r for r in members if r.get("status") == "ok"]
        summary: dict[str, Any] = {k: members[0].get(k) for k in group_keys}
        summary.update(runs=len(ok), failed=len(members) - len(ok),
                       seeds=" ".join(str(r.get("seed")) for r in ok))
        for m in metrics:
            values = [float(r[m]) for r in ok if r.get(m) not in (None, "")]
            n = len(values)
            mean = sum(values) / n if n else None
            ci = None
            if n > 1 and mean is not None:
                var = sum((v - mean) ** 2 for v in values) / (n - 1)
                ci = _t95(n - 1) * math.sqrt(var / n)
            summary[f"{m}_mean"] = None if mean is None else round(mean, 6)
            summary[f"{m}_ci95"] = None if ci is None else round(ci, 6)
        out.append(summary)
    return out


def summary_columns(group_keys: Sequence[str], metrics: Sequence[str] = tuple(METRICS)
                    ) -> list[str]:
    return [*group_keys, "runs", "failed", "seeds",
            *(f"{m}_{s}" for m in metrics for s in ("mean", "ci95"))]


def markdown(summary: list[dict[str, Any]], group_keys: Sequence[str],
             metrics: Sequence[str]) -> str:
    """The summary as a Markdown table: mean ± 95 % CI half-width per metric."""
    head = [*group_keys, "runs", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [_cell(s.get(k)) for k in group_keys] + [f"{s['runs']}"
                                                          + (f" ({s['failed']} failed)"
                                                             if s["failed"] else "")]
        for m in metrics:
            mean, ci = s.get(f"{m}_mean"), s.get(f"{m}_ci95")
            cells.append("-" if mean is None else _num(mean) + (
                f" ± {_num(ci)}" if ci is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3f}"
