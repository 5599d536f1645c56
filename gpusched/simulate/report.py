"""What a run of ``gpusched simulate`` tells people: the table, summary.md, report.html.

Every figure of the table is defined once, in :func:`metric_rows`, next to the code that
computes it; the terminal table, summary.md and report.html all print those rows and
their definitions, so the three never disagree.  report.html is one self-contained file:
its pictures are embedded as base64 ``data:`` URIs and its style is inline, so it opens
offline, mailed or archived, and loads nothing from the network (docs/report.md
describes its sections).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .waits import WAIT_REASONS

if TYPE_CHECKING:
    from . import SimulationResult

__all__ = ["Row", "metric_rows", "summary_table", "summary_markdown", "report_html",
           "wait_reasons", "frontier_fate", "frontier_lines", "class_rows", "preemption_note",
           "frontier_delay_line", "CLASS_COLUMNS", "CAVEATS", "WAIT_REASON_TEXT", "PICTURES"]

#: What each wait reason of jobs.csv means (gpusched.simulate.waits decides them).
WAIT_REASON_TEXT = {
    "gpus": "fewer GPUs were free in the whole site than the job needs (GPU capacity)",
    "fragmentation": "enough GPUs were free, but not on nodes in the shape the gang needs",
    "power": "the GPUs were there, but even at its lowest cap the job would have broken a "
             "power or cooling row: the binding limit (jobs.csv names it)",
    "reservation": "it would have fit, but the policy held the free GPUs or watts for the "
                   "blocked head of the queue (backfill's reservation, optimize's drain)",
    "priority": "it would have fit, but the policy started other jobs first (the queue's "
                "order behind a blocked head, the allocator's choice, or its next round)",
}

#: The pictures a run writes, with how to read each (report.html and summary.md).
PICTURES = {
    "power.png": "Power over time: the facility and every hall against its own limit "
                 "(dashed), the queued GPU demand, GPUs busy, and work delivered against "
                 "the fluid bound; one colour and line style per policy.",
    "floor-{policy}.png": "The floor at the instant of peak facility power under {policy}: "
                          "the facility against its limit on top; per hall, each cell a rack "
                          "(idle, busy at full cap, or throttled below it; pale when only "
                          "part of its GPUs are busy), and under it the hall's power rows, "
                          "switchboard and cooling plant against their own limits; red, with "
                          "a cross, where a limit is broken (a red frame: the hall's own).",
    "jct-cdf.png": "Wait and job completion time of every job that arrived, as the "
                   "fraction of those jobs; jobs not started (or not done) by the end of "
                   "the run keep each curve below 1 (censoring).",
    "classes.png": "Per priority class (highest first) and policy: the wait to start (bar: "
                   "mean, diamond: p50, over every job of the class, censored), the work "
                   "preemption threw away (GPU-hours since each victim's last checkpoint, "
                   "with the number of evictions; no bar for a policy that never "
                   "preempts) and the cap-downs that preemption and envelope plans made.",
}

#: The columns of the per-class table (summary.md, report.html), each with its term.
CLASS_COLUMNS = [
    ("class", "the jobs' class: frontier pretraining (the frontier gangs), production "
              "fine-tuning (large jobs), research (small jobs), or trace (a real trace's "
              "jobs, unclassed)"),
    ("priority", "higher is more urgent: under backfill and backfill-preempt jobs of "
                 "priority 200 and up go ahead of the rest of the queue; under "
                 "backfill-preempt a blocked head of priority above 0 may evict "
                 "preemptible running jobs of lower priority (frontier gangs are not "
                 "preemptible)"),
    ("arrived / started", "jobs of the class submitted before the end of the run; of them, "
                          "started"),
    ("wait mean / p50 / max (h)*", "start - submit over every job of the class that "
                                   "arrived; *a job still queued counts until the end "
                                   "(censored), so these are lower bounds"),
    ("JCT p50 (h)", "finish - submit over the class's jobs done"),
    ("preemptions", "evictions of the class's running jobs by a preemption plan; each goes "
                    "back to the queue and restarts from its last checkpoint"),
    ("work lost (GPU-h)", "GPU-hours each evicted job had run since its last checkpoint, "
                          "thrown away by those evictions"),
    ("cap-downs", "times a preemption or envelope plan lowered the cap of a running job of "
                  "the class (it runs slower, it is not stopped)"),
]

CAVEATS = [
    "Waits are counted with censoring: a job still queued at the end of the run counts as "
    "waiting until then, so its true wait is longer and the wait statistics over all jobs "
    "are lower bounds.  The waits of started jobs only (the figure reported before) leave "
    "the longest waits out and flatter a policy that starts few jobs.",
    "JCT statistics are over the jobs done; jobs still running or queued at the end are "
    "counted in 'jobs running / queued at end' and in the CDF picture, not in the JCT row.",
    "Why a job waited is read from the engine (Engine.explain) when the state changes, at "
    "most once per simulated minute; a job's total wait is exact, its split between "
    "reasons can be late by up to a minute at each change.",
    "Run times are the trace's durations at full power divided by s(cap), the job's "
    "throughput at its cap; every trace job accepts caps 350..700 W.",
    "The trace is scaled to the site (gang sizes multiplied, arrivals compressed to the "
    "offered load) and frontier gangs are synthetic: the mix is plausible, not this site's.",
    "oblivious runs on a copy of the site with every limit lifted; its violations are what "
    "it would have broken on the real site.",
    "Floor maps show one instant, the peak of facility power; the violation rows of the "
    "table cover the whole run.",
]


@dataclass(frozen=True)
class Row:
    name: str
    values: list[str]
    definition: str


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _units(results: "Sequence[SimulationResult]") -> tuple[str, float]:
    """MW on a site whose facility limit is at least 1 MW, else kW."""
    limit = results[0].metrics["peaks"]["facility"]["limit_w"]
    return ("MW", 1e6) if limit >= 1e6 else ("kW", 1e3)


def _stats(block: Mapping[str, Any]) -> str:
    return (f"{_fmt(block.get('mean_h'), '.2f')} / {_fmt(block.get('p50_h'), '.2f')} / "
            f"{_fmt(block.get('p99_h'), '.2f')}")


def wait_reasons(result: "SimulationResult") -> dict[str, float]:
    """Job-hours waited by reason over every job of the run (censored waits included)."""
    return {r: sum(rec[f"wait_{r}_s"] for rec in result.jobs) / 3600 for r in WAIT_REASONS}


def _series_mean(result: "SimulationResult", key: str) -> float | None:
    """Time-weighted mean of a step series (each value holds until the next sample)."""
    t = result.series.get("t_s")
    y = result.series.get(key)
    if t is None or y is None or len(t) < 2 or t[-1] <= t[0]:
        return None
    return float(np.sum(np.diff(t) * np.asarray(y[:-1], dtype=float)) / (t[-1] - t[0]))


def metric_rows(results: "Sequence[SimulationResult]") -> list[Row]:
    """The table, one value per policy, each row with its definition."""
    unit, scale = _units(results)
    energy_unit = f"{unit}h"

    def jobs(r: "SimulationResult", key: str) -> Any:
        return r.metrics["jobs"][key]

    def totals(r: "SimulationResult", key: str) -> Any:
        return r.metrics["totals"][key]

    def peak(r: "SimulationResult") -> str:
        f = r.metrics["peaks"]["facility"]
        return f"{f['peak_w'] / scale:,.1f} / {f['limit_w'] / scale:,.1f}"

    def hall(r: "SimulationResult") -> str:
        h = max(r.metrics["peaks"]["halls"].values(), key=lambda v: v["peak_over_limit"])
        return f"{h['peak_w'] / scale:,.1f} / {h['limit_w'] / scale:,.1f}"

    def viol(r: "SimulationResult") -> str:
        v = r.metrics["violations"]
        if not v["row_seconds"]:
            return "0"
        return (f"{v['row_seconds']:,.0f} row-s, max +{v['max_excess_w'] / scale:,.2f} "
                f"{unit} ({v['max_excess_row']})")

    def waited(r: "SimulationResult") -> str:
        if not r.jobs:
            return "-"
        hours = wait_reasons(r)
        total = sum(hours.values())
        if total <= 0:
            return "0"
        top = max(hours, key=lambda k: hours[k])
        return f"{total:,.0f} ({top} {hours[top] / total:.0%})"

    def queued(r: "SimulationResult") -> str:
        mean = _series_mean(r, "queued_gpus")
        if mean is None:
            return "-"
        return f"{mean:,.0f} / {max(r.series['queued_gpus']):,.0f}"

    def energy(r: "SimulationResult") -> str:
        return _fmt(totals(r, "energy_mwh") * 1e6 / scale, ",.0f")

    rows = [
        Row("jobs arrived / started / done",
            [f"{jobs(r, 'arrived'):,} / {jobs(r, 'started'):,} / {jobs(r, 'done'):,}"
             for r in results],
            "jobs submitted before the end of the run; of them, started; of them, finished"),
        Row("jobs running / queued at end",
            [f"{jobs(r, 'running_at_end'):,} / {jobs(r, 'queued_at_end'):,}" for r in results],
            "jobs still running, and still waiting, when the run ended"),
        Row("wait mean / p50 / p99 (h), all jobs*",
            [_stats(jobs(r, "wait")) for r in results],
            "start - submit over every job that arrived; *a job still queued at the end "
            "counts as waiting until the end (censored), so these are lower bounds"),
        Row("wait of started jobs only (h)", [_stats(jobs(r, "wait_started")) for r in results],
            "start - submit over the jobs that started: leaves the longest waits out"),
        Row("job-hours waited (top reason)", [waited(r) for r in results],
            "the sum of all waits (censored ones included), and the reason of the largest "
            "share of it (see 'Why jobs waited')"),
        Row("JCT mean / p50 / p99 (h), done jobs", [_stats(jobs(r, "jct")) for r in results],
            "job completion time, finish - submit, over the jobs done"),
        Row("queued GPUs mean / max", [queued(r) for r in results],
            "GPUs asked for by the jobs waiting in the queue, time-weighted mean and peak"),
        Row("GPU utilisation", [f"{totals(r, 'utilisation'):.1%}" for r in results],
            "GPU-hours busy / (GPUs x hours of the run)"),
        Row("delivered GPU-hours x s", [_fmt(totals(r, "delivered_gpu_hours")) for r in results],
            "work done: GPU-hours of busy GPUs, each weighted by s(cap), its throughput at "
            "its cap (1 at full power)"),
        Row("fluid bound GPU-hours x s", [_fmt(totals(r, "bound_gpu_hours")) for r in results],
            "the most work any policy could deliver with the jobs present at each instant "
            "(gpusched.bound: a linear programme over the site's rows)"),
        Row("fraction of bound (saturated)",
            [f"{_fmt(totals(r, 'fraction_of_bound'), '.1%')} "
             f"({_fmt(totals(r, 'fraction_of_bound_saturated'), '.1%')})" for r in results],
            "delivered / fluid bound; in brackets over the time when the jobs present asked "
            "for every GPU, where only the policy keeps work below the bound"),
        Row("mean s(cap) of busy GPUs", [_fmt(totals(r, "mean_speed"), ".3f") for r in results],
            "delivered / busy GPU-hours: how much caps slowed the running jobs"),
        Row(f"energy ({energy_unit})", [energy(r) for r in results],
            "IT energy: facility power integrated over the run"),
        Row(f"peak facility {unit} / limit", [peak(r) for r in results],
            "highest facility IT power of the run, and the facility limit"),
        Row(f"peak hall {unit} / limit", [hall(r) for r in results],
            "the hall closest to (or furthest over) its switchboard limit at its peak"),
        Row("fragmented GPUs (mean)",
            [_fmt(totals(r, "fragmented_gpus_mean")) for r in results],
            "free GPUs on partly used nodes (no whole-node gang can use them), "
            "time-weighted mean"),
        Row("row violations", [viol(r) for r in results],
            "row-seconds during which a row of the real site's A·P <= b was broken, and the "
            "worst excess; only a policy that ignores power can have any"),
        Row("wall time (s)", [_fmt(r.metrics["wall_s"], ".1f") for r in results],
            "the simulation's own run time on this machine"),
    ]
    return rows + site_rows(results)


def site_rows(results: "Sequence[SimulationResult]") -> list[Row]:
    """Rows for failures, spares and the envelope (gpusched.simulate.failures), when the
    run had any."""
    sites = [r.metrics.get("site") for r in results]
    if not any(sites):
        return []
    unit, scale = _units(results)   # kW on a small site
    per_mw = 1e6 / scale

    def col(fn: Any) -> list[str]:
        return [fn(s) if s else "-" for s in sites]

    rows = [
        Row("interruptions / jobs hit",
            col(lambda s: f"{s['interruptions']} / {s['jobs_hit']}"),
            "node failures drawn, and the running jobs they hit"),
        Row("repairs (into spares) / requeues",
            col(lambda s: f"{s['repairs']} ({s['repairs_into_spares']}) / {s['requeues']}"),
            "hit jobs repaired in place (those repaired into hot spares alone), and hit "
            "jobs requeued whole after waiting for a repair"),
        Row("time to resume p50 / p99 (min)",
            col(lambda s: f"{_fmt(s['resume_min_p50'], '.1f')} / "
                          f"{_fmt(s['resume_min_p99'], '.1f')}"),
            "from the failure to the hit job running again, restart included"),
        Row("work lost (GPU-h)", col(lambda s: _fmt(s["work_lost_gpu_h"], ",.1f")),
            "GPU-hours redone (the work since the last checkpoint) plus GPU-hours held "
            "without progress (degraded, or restarting)"),
        Row(f"spares: GPUs / {unit} held (mean)",
            col(lambda s: f"{_fmt(s['spare_gpus_mean'], ',.0f')} / "
                          f"{_fmt(s['spare_held_mw_mean'] * per_mw, ',.2f')}"),
            "GPUs of the hot spare nodes, and the watts their busy power holds in the "
            "rows, time-weighted means"),
    ]
    if any(s and s["envelope"] for s in sites):
        rows += [
            Row(f"{unit}-s over the envelope",
                col(lambda s: _fmt(s["over_envelope_mw_s"] * per_mw, ",.1f")),
                "integral of the excess over the live limits while an envelope window is "
                "open (zero once its plan is applied)"),
            Row("work during the event (GPU-h x s)",
                col(lambda s: _fmt(s["event_delivered_gpu_h"], ",.0f")),
                "delivered work while an envelope window is open"),
            Row("envelope evictions", col(lambda s: _fmt(s["envelope_evictions"], ",d")),
                "jobs the envelope plans evicted (requeued, keeping their checkpoint)"),
        ]
    return rows


def summary_table(results: "Sequence[SimulationResult]") -> str:
    """A plain-text table, one column per policy (what the CLI prints)."""
    rows = metric_rows(results)
    width = max(len(row.name) for row in rows) + 2
    cols = [max(len(r.policy), *(len(row.values[i]) for row in rows)) + 2
            for i, r in enumerate(results)]
    lines = ["".ljust(width) + "".join(r.policy.rjust(w) for r, w in zip(results, cols))]
    for row in rows:
        lines.append(row.name.ljust(width)
                     + "".join(v.rjust(w) for v, w in zip(row.values, cols)))
    lines.append("* censored: jobs still queued at the end count as waiting until then")
    return "\n".join(lines)


def _h(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.2f} h"


def frontier_fate(results: "Sequence[SimulationResult]") -> list[dict[str, Any]]:
    """Each frontier gang under each policy: when it came, started, ended, and why it
    waited (empty when the run has none)."""
    out = []
    for r in results:
        for rec in r.jobs:
            if rec.get("kind") != "frontier":
                continue
            out.append({"policy": r.policy, "job": rec["id"], "gpus": rec["gpus"],
                        "submit": _h(rec["submit_s"]), "state": rec["state"],
                        "start": _h(rec["start_s"]), "end": _h(rec["finish_s"]),
                        "wait": _h(rec["wait_s"]) + (" (still queued)"
                                                     if rec["wait_censored"] else ""),
                        "pods": rec["pods"] or "-", "cap": _fmt(rec["first_cap_w"], "d"),
                        "why": rec["wait_reason"] or "-",
                        "limit": rec["wait_limit"] or ""})
    return out


def frontier_lines(results: "Sequence[SimulationResult]") -> list[str]:
    """One line per frontier gang and policy, for the terminal."""
    lines = []
    for f in frontier_fate(results):
        why = f" ({f['why']}{', ' + f['limit'] if f['limit'] else ''})" if f["why"] != "-" else ""
        if f["state"] == "queued":
            fate = f"still queued at the end after {f['wait']}{why}"
        else:
            fate = (f"started at {f['start']} after waiting {f['wait']}{why}, "
                    + (f"done at {f['end']}" if f["state"] == "done" else "running at the end"))
        lines.append(f"{f['job']} ({f['gpus']:,} GPUs, submitted at {f['submit']}) under "
                     f"{f['policy']}: {fate}")
    return lines


def class_rows(result: "SimulationResult") -> list[list[str]]:
    """The per-class table of one policy, a row per class (highest priority first), the
    cells in the order of :data:`CLASS_COLUMNS`."""
    rows = []
    for cls in result.metrics["jobs"].get("by_class", {}).values():
        w = cls["wait"]
        rows.append([cls.get("name", "-"), f"{cls['priority']}"
                     + ("" if cls.get("preemptible", True) else " (not preemptible)"),
                     f"{cls['arrived']:,} / {cls['started']:,}",
                     f"{_fmt(w['mean_h'], '.2f')} / {_fmt(w['p50_h'], '.2f')} / "
                     f"{_fmt(w.get('max_h'), '.2f')}",
                     _fmt(cls["jct"]["p50_h"], ".2f"), f"{cls['preemptions']:,}",
                     _fmt(cls["lost_gpu_h"], ",.1f"), f"{cls.get('cap_downs', 0):,}"])
    return rows


def preemption_note(result: "SimulationResult") -> str:
    """Whether the policy preempts, and its plans' counters (report.json's policy_info)."""
    info = result.metrics.get("policy_info", {})
    site = result.metrics.get("site") or {}
    envelope = (f"; envelope plans lowered {site['envelope_cap_downs']:,} caps"
                if site.get("envelope_cap_downs") else "")
    if not info.get("preempt"):
        return "preemption off" + envelope
    ckpt = info.get("checkpoint_s", 0)
    every = f"checkpoints every {ckpt / 60:g} min" if ckpt else "no checkpoints"
    return (f"preemption on ({every}): {info['preemption_plans']:,} plans, "
            f"{info['evictions']:,} evictions, {info['cap_downs']:,} cap-downs, "
            f"{info['lost_gpu_h']:,.1f} GPU-h lost" + envelope)


def frontier_delay_line(result: "SimulationResult") -> str:
    """The frontier pretraining gangs' start delay under one policy, in one line."""
    d = result.metrics["jobs"].get("frontier_start_delay") or {}
    if not d.get("gangs"):
        return (f"{result.policy}: no frontier gang arrived (none fits a site this small, "
                "or --frontier 0)")
    line = (f"{result.policy}: {d['started']} of {d['gangs']} frontier gangs started; start "
            f"delay p50 {_fmt(d['p50_h'], '.2f')} h, mean {_fmt(d['mean_h'], '.2f')} h, "
            f"max {_fmt(d['max_h'], '.2f')} h")
    if d["never_started"]:
        line += (f"; {d['never_started']} never started (counted until the end of the run: "
                 "lower bounds)")
    return line


def _setup(results: "Sequence[SimulationResult]", info: Mapping[str, Any]) -> str:
    cluster = results[0].cluster
    unit, scale = _units(results)
    limit = results[0].metrics["peaks"]["facility"]["limit_w"] / scale
    text = (f"{cluster.name}: {cluster.num_gpus:,} GPUs in {cluster.num_halls} hall(s), "
            f"{cluster.num_racks:,} racks, facility limit {limit:g} {unit}. Workload: "
            f"{info.get('trace')} ({info.get('jobs', 0):,} jobs over "
            f"{info.get('horizon_h', 0):g} simulated hours, offered load "
            f"{info.get('load_scale', 0):g}x the GPUs")
    if info.get("kind") == "trace":
        text += (f", gangs x{info['gang_scale']:g}, arrivals x{info['arrival_scale']:g}, "
                 f"frontier gangs {info['frontier_gangs']}")
    return text + "); every job accepts caps 350..700 W."


def _violation_notes(results: "Sequence[SimulationResult]") -> list[str]:
    notes = []
    for r in results:
        v = r.metrics["violations"]
        if v["row_seconds"]:
            notes.append(f"`{r.policy}` would have broken {v['rows_ever_violated']} rows of "
                         f"A·P <= b for {v['row_seconds']:,.0f} row-seconds in total; worst "
                         f"{v['max_excess_row']} at {v['max_load_over_limit']:.1%} of its "
                         f"limit; excess energy {v['excess_kwh']:,.0f} kWh "
                         f"(by kind: {v['row_seconds_by_kind']}).")
    return notes


def _picture_text(name: str) -> str:
    if name.startswith("floor-"):
        policy = name.removeprefix("floor-").removesuffix(".png")
        return PICTURES["floor-{policy}.png"].format(policy=policy)
    return PICTURES.get(name, "")


def summary_markdown(results: "Sequence[SimulationResult]", info: Mapping[str, Any],
                     run: Mapping[str, Any] | None = None,
                     pictures: Sequence[str] = ()) -> str:
    """summary.md: the setup, the table, its terms, why jobs waited, the frontier gangs,
    the priority classes, the pictures (linked by file name, next to it) and the
    caveats."""
    rows = metric_rows(results)
    out = ["# gpusched simulate", "", _setup(results, info), ""]
    if run:
        out += [f"Run {run.get('utc_time')} with gpusched {run.get('gpusched_version')}, "
                f"seed {run.get('seed')}: `{run.get('command_line')}`", ""]
    out += ["| | " + " | ".join(r.policy for r in results) + " |",
            "|---|" + "---|" * len(results)]
    out += [f"| {row.name} | " + " | ".join(row.values) + " |" for row in rows]
    notes = _violation_notes(results)
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    out += ["", "## Terms", ""]
    out += [f"- **{row.name}**: {row.definition}." for row in rows]
    if any(r.jobs for r in results):
        out += ["", "## Why jobs waited", "",
                "Job-hours waited, by reason (jobs.csv has each job's):", "",
                "| reason | " + " | ".join(r.policy for r in results) + " | meaning |",
                "|---|" + "---|" * len(results) + "---|"]
        hours = [wait_reasons(r) for r in results]
        for reason in WAIT_REASONS:
            out.append(f"| {reason} | " + " | ".join(f"{h[reason]:,.0f}" for h in hours)
                       + f" | {WAIT_REASON_TEXT[reason]} |")
    fate = frontier_fate(results)
    if fate:
        out += ["", "## Frontier gangs", "",
                "| policy | job | GPUs | submit | state | start | end | wait | why | pods |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        out += [f"| {f['policy']} | {f['job']} | {f['gpus']:,} | {f['submit']} | "
                f"{f['state']} | {f['start']} | {f['end']} | {f['wait']} | "
                f"{f['why']} {f['limit']} | {f['pods']} |" for f in fate]
    if any(r.metrics["jobs"].get("by_class") for r in results):
        out += ["", "## Priority classes", ""]
        for r in results:
            out += [f"**{r.policy}**: {preemption_note(r)}.", "",
                    "| " + " | ".join(name for name, _ in CLASS_COLUMNS) + " |",
                    "|---|" + "---|" * (len(CLASS_COLUMNS) - 1)]
            out += ["| " + " | ".join(cells) + " |" for cells in class_rows(r)]
            out.append("")
        out += ["Frontier start delay (start - submit of the frontier pretraining gangs):", ""]
        out += [f"- {frontier_delay_line(r)}." for r in results]
        out += [""] + [f"- **{name}**: {term}." for name, term in CLASS_COLUMNS]
    if pictures:
        out += ["", "## Pictures", ""]
        for name in pictures:
            out += [f"![{name}]({name})", "", f"*{name}*: {_picture_text(name)}", ""]
    out += ["", "## Caveats", ""] + [f"- {c}" for c in CAVEATS]
    return "\n".join(out).rstrip() + "\n"


_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1150px;padding:0 1em;color:#1a1a1a}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
vertical-align:top}th{background:#f2f2f2;text-align:left}td.n{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}td.d{color:#444;font-size:.9em}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{color:#333;font-size:.95em}code{background:#f4f4f4;padding:0 .2em}
nav a{margin-right:1em}.bad{color:#b00020;font-weight:600}
"""


def report_html(results: "Sequence[SimulationResult]", info: Mapping[str, Any],
                run: Mapping[str, Any], pictures: Mapping[str, bytes],
                files: Sequence[str] = ()) -> str:
    """report.html: one self-contained page (docs/report.md lists its sections)."""
    e = html.escape
    rows = metric_rows(results)
    policies = [r.policy for r in results]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<title>gpusched simulate: {e(results[0].cluster.name)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>gpusched simulate: {e(', '.join(policies))} on "
             f"{e(results[0].cluster.name)}</h1>",
             "<nav><a href=#setup>Setup</a><a href=#results>Results</a>"
             "<a href=#waits>Why jobs waited</a><a href=#frontier>Frontier gangs</a>"
             "<a href=#classes>Priority classes</a>"
             "<a href=#pictures>Pictures</a><a href=#caveats>Caveats</a>"
             "<a href=#run>Run</a></nav>",
             f"<h2 id=setup>Setup</h2><p>{e(_setup(results, info))}</p>"]
    # the results table, with each row's definition in its last column
    parts.append("<h2 id=results>Results</h2><table><tr><th>metric</th>"
                 + "".join(f"<th>{e(p)}</th>" for p in policies)
                 + "<th>definition</th></tr>")
    for row in rows:
        parts.append(f"<tr><th>{e(row.name)}</th>"
                     + "".join(f"<td class=n>{e(v)}</td>" for v in row.values)
                     + f"<td class=d>{e(row.definition)}</td></tr>")
    parts.append("</table>")
    for note in _violation_notes(results):
        parts.append(f"<p class=bad>{e(note.replace('`', ''))}</p>")
    parts.append("<h2 id=waits>Why jobs waited</h2>")
    if any(r.jobs for r in results):
        hours = [wait_reasons(r) for r in results]
        parts.append("<p>Job-hours waited by reason, censored waits included "
                     "(<code>jobs.csv</code> has each job's split and the limit that "
                     "blocked it).</p><table><tr><th>reason</th>"
                     + "".join(f"<th>{e(p)}</th>" for p in policies)
                     + "<th>meaning</th></tr>")
        for reason in WAIT_REASONS:
            parts.append(f"<tr><th>{reason}</th>"
                         + "".join(f"<td class=n>{h[reason]:,.0f}</td>" for h in hours)
                         + f"<td class=d>{e(WAIT_REASON_TEXT[reason])}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No per-job records in this run.</p>")
    parts.append("<h2 id=frontier>Frontier gangs</h2>")
    fate = frontier_fate(results)
    if fate:
        head = ["policy", "job", "GPUs", "submit", "state", "start", "end", "wait", "why",
                "pods"]
        parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
        for f in fate:
            cells = [f["policy"], f["job"], f"{f['gpus']:,}", f["submit"], f["state"],
                     f["start"], f["end"], f["wait"], f"{f['why']} {f['limit']}".strip(),
                     f["pods"]]
            parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    else:
        parts.append("<p>This run has no frontier gang (none fits a site this small, or "
                     "<code>--frontier 0</code>).</p>")
    parts.append("<h2 id=classes>Priority classes</h2>")
    if any(r.metrics["jobs"].get("by_class") for r in results):
        for r in results:
            parts.append(f"<p><b>{e(r.policy)}</b>: {e(preemption_note(r))}.</p><table><tr>"
                         + "".join(f"<th>{e(name)}</th>" for name, _ in CLASS_COLUMNS)
                         + "</tr>")
            for cells in class_rows(r):
                parts.append("<tr><th>" + e(cells[0]) + "</th>"
                             + "".join(f"<td class=n>{e(c)}</td>" for c in cells[1:])
                             + "</tr>")
            parts.append("</table>")
        parts.append("<p>Frontier start delay (start - submit of the frontier pretraining "
                     "gangs):</p><ul>"
                     + "".join(f"<li>{e(frontier_delay_line(r))}.</li>" for r in results)
                     + "</ul><ul>"
                     + "".join(f"<li><b>{e(name)}</b>: {e(term)}.</li>"
                               for name, term in CLASS_COLUMNS) + "</ul>")
    else:
        parts.append("<p>No job arrived in this run.</p>")
    parts.append("<h2 id=pictures>Pictures</h2>")
    if not pictures:
        parts.append("<p>No pictures (<code>--no-plots</code>).</p>")
    for name, data in pictures.items():
        b64 = base64.b64encode(data).decode("ascii")
        parts.append(f"<figure id='{e(name)}'><img alt='{e(name)}' "
                     f"src='data:image/png;base64,{b64}'><figcaption><b>{e(name)}</b>: "
                     f"{e(_picture_text(name))}</figcaption></figure>")
    parts.append("<h2 id=caveats>Caveats</h2><ul>"
                 + "".join(f"<li>{e(c)}</li>" for c in CAVEATS) + "</ul>")
    parts.append("<h2 id=run>Run</h2><table>")
    for key in ("command_line", "gpusched_version", "seed", "utc_time", "python", "out"):
        if key in run:
            parts.append(f"<tr><th>{key}</th><td><code>{e(str(run[key]))}</code></td></tr>")
    parts.append("</table><p>Parameters of each policy (from report.json):</p><table>")
    for r in results:
        described = {k: v for k, v in r.metrics.get("policy_info", {}).items()
                     if not isinstance(v, (list, dict))}
        parts.append(f"<tr><th>{e(r.policy)}</th><td>"
                     + e(", ".join(f"{k}={v}" for k, v in described.items())) + "</td></tr>")
    parts.append("</table>")
    if files:
        parts.append("<p>Files of this run: "
                     + ", ".join(f"<code>{e(f)}</code>" for f in files) + ".</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
