"""PNG pictures of simulation results (matplotlib, Agg backend: no display needed).

- :func:`plot_power` -- over time: facility power and every hall's against their own
  limits, the GPUs the queue asks for, GPUs busy, and work against the fluid bound; one
  colour and line style per policy, so lines that sit on the same limit stay apart;
- :func:`plot_floor` -- one policy's floor at the instant of peak facility power: every
  rack idle, busy at full cap or throttled, every power row and hall against its own
  limit, and red (with a cross, for readers who cannot tell the colours) where a limit
  is broken;
- :func:`plot_jct_cdf` -- wait and job completion time of every job that arrived, with
  the jobs that never started (or never ended) keeping the curves below 1;
- :func:`plot_classes` -- per priority class and policy: the wait to start, the work
  preemption threw away and the cap-downs plans made (grouped bars, a hatch per policy
  as well as a colour, so the bars stay apart in grey too).

Colours are the Okabe-Ito palette (Okabe and Ito 2008, "Color Universal Design"), which
stays distinct under the common colour-vision deficiencies; red-vermillion is kept for
broken limits only.  Power is drawn in MW on sites of 1 MW and more, in kW below.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import (FixedLocator, FuncFormatter, MaxNLocator,  # noqa: E402
                               NullLocator)

from .._atomic import write_atomic  # noqa: E402

if TYPE_CHECKING:
    from . import SimulationResult

__all__ = ["plot_power", "plot_floor", "plot_jct_cdf", "plot_classes", "write_plots",
           "OKABE_ITO"]

#: Okabe-Ito colours by name.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00",
             "purple": "#CC79A7"}
_POLICY_STYLE = {"optimize": (OKABE_ITO["blue"], "-"), "fifo": (OKABE_ITO["orange"], "--"),
                 "backfill": (OKABE_ITO["green"], "-."),
                 "oblivious": (OKABE_ITO["purple"], ":"),
                 # fixed too, so a preempting run has the same colour whatever its order
                 "backfill-preempt": (OKABE_ITO["sky"], (0, (5, 1, 1, 1))),
                 "backfill-gpu": (OKABE_ITO["black"], (0, (1, 1)))}
_SPARE = [(OKABE_ITO["sky"], (0, (5, 1, 1, 1))), (OKABE_ITO["black"], (0, (1, 1))),
          (OKABE_ITO["yellow"], "-")]
_BROKEN = OKABE_ITO["vermillion"]


def policy_color(policy: str, i: int) -> str:
    """The one colour of a policy in every picture (the sweep's too)."""
    return _POLICY_STYLE.get(policy, _SPARE[i % len(_SPARE)])[0]


def _style(policy: str, i: int) -> dict[str, Any]:
    """Colour, dash and width of a policy's lines: the first drawn widest, so a later
    line on top of it (two policies on one limit) leaves both visible."""
    color, dash = _POLICY_STYLE.get(policy, _SPARE[i % len(_SPARE)])
    return {"color": color, "ls": dash, "lw": 2.6 if i == 0 else 1.5}


def _power_unit(limit_w: float) -> tuple[str, float]:
    return ("MW", 1e6) if limit_w >= 1e6 else ("kW", 1e3)


def _gpu_unit(gpus: float) -> tuple[str, float]:
    return ("k GPUs", 1e3) if gpus >= 5000 else ("GPUs", 1.0)


def _steps(t: np.ndarray, y: np.ndarray, points: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Thin a step series to about ``points`` samples keeping each window's maximum."""
    if len(t) <= points:
        return t, y
    edges = np.linspace(0, len(t), points + 1).astype(int)
    return t[edges[:-1]], np.maximum.reduceat(y, edges[:-1], axis=0)


def _rows_of(c: Any, kind: str, rack_group: np.ndarray) -> dict[int, int]:
    """Constraint row of ``kind`` for each group (hall or power row) of racks it covers."""
    A = c.A.tocsr()
    out = {}
    for i in c.rows_of_kind(kind):
        racks = A.indices[A.indptr[i]:A.indptr[i + 1]]
        if len(racks):
            out[int(rack_group[racks[0]])] = int(i)
    return out


def plot_power(results: "Sequence[SimulationResult]", path: str | os.PathLike[str]) -> Path:
    """Facility and every hall's power against their limits, the queue, GPUs busy and
    work against the fluid bound, one line per policy."""
    first = results[0]
    cluster = first.cluster
    c = cluster.constraints
    facility = [i for i, k in enumerate(c.kinds) if k == "facility"]
    fac_limit = float(c.b[facility[0]]) if facility else float(cluster.idle_rack_power_w.sum())
    unit, scale = _power_unit(fac_limit)
    hall_rows = _rows_of(c, "hall", cluster.rack_hall)
    cool_rows = _rows_of(c, "hall-cooling", cluster.rack_hall)
    n_halls = cluster.num_halls
    n_right = max(1, n_halls)
    height = max(10.0, 2.4 * max(4, n_right))
    fig = plt.figure(figsize=(14, height), layout="constrained")
    outer = fig.add_gridspec(1, 2, width_ratios=[1.15, 1])
    left = outer[0].subgridspec(4, 1, height_ratios=[3, 2, 2, 2])
    right = outer[1].subgridspec(n_right, 1)
    ax_f = fig.add_subplot(left[0])
    ax_q = fig.add_subplot(left[1], sharex=ax_f)
    ax_u = fig.add_subplot(left[2], sharex=ax_f)
    ax_w = fig.add_subplot(left[3], sharex=ax_f)
    hall_axes = [fig.add_subplot(right[h], sharex=ax_f) for h in range(n_right)]
    hall_peak = np.zeros(n_right)
    g_unit, g_scale = _gpu_unit(cluster.num_gpus)
    end_h = max(r.horizon_s for r in results) / 3600
    for i, res in enumerate(results):
        st = _style(res.policy, i)
        t_h = res.series["t_s"] / 3600
        t, y = _steps(t_h, res.series["facility_w"] / scale)
        ax_f.step(t, y, where="post", label=res.policy, **st)
        queued = res.series.get("queued_gpus")
        if queued is not None and len(queued) == len(t_h):
            t, y = _steps(t_h, np.asarray(queued, dtype=float) / g_scale)
            ax_q.step(t, y, where="post", label=res.policy, **st)
        t, y = _steps(t_h, 100 * res.series["busy_gpus"] / cluster.num_gpus)
        ax_u.step(t, y, where="post", label=res.policy, **st)
        frac = res.metrics["totals"].get("fraction_of_bound")
        t, y = _steps(t_h, res.series["work_gpus"] / g_scale)
        ax_w.step(t, y, where="post",
                  label=res.policy + ("" if frac is None else f" ({frac:.1%} of bound)"), **st)
        if "bound_gpus" in res.series:
            t, y = _steps(t_h, res.series["bound_gpus"] / g_scale)
            ax_w.step(t, y, where="post", color=st["color"], lw=0.9, ls=(0, (1, 2)),
                      label=f"fluid bound, jobs present under {res.policy}")
        hall_w = np.asarray(res.series["hall_w"], dtype=float).reshape(len(t_h), -1) / scale
        for h, ax in enumerate(hall_axes):
            if h < hall_w.shape[1]:
                t, y = _steps(t_h, hall_w[:, h])
                hall_peak[h] = max(hall_peak[h], float(y.max(initial=0)))
                ax.step(t, y, where="post", label=res.policy, **st)
    ax_f.axhline(fac_limit / scale, color="k", ls=(0, (6, 3)), lw=1,
                 label=f"facility limit {fac_limit / scale:,.4g} {unit}")
    top_w = cluster.power.cap_max_w
    full = cluster.full_rack_power_w(top_w).sum() / scale
    ax_f.axhline(full, color="grey", ls=":", lw=1,
                 label=f"every GPU at {top_w} W ({full:,.4g} {unit})")
    ax_f.set_ylim(0, max(full, fac_limit / scale) * 1.08)
    ax_f.set_ylabel(f"facility IT power, {unit}")
    ax_f.set_title(f"{cluster.name}: power, queue and utilisation over time", loc="left")
    ax_q.set_ylabel(f"queued demand, {g_unit}")
    ax_q.set_ylim(bottom=0)
    ax_q.yaxis.set_major_locator(MaxNLocator(integer=True))  # whole GPUs on small sites
    ax_u.set_ylabel("GPUs busy, %")
    ax_u.set_ylim(0, 105)
    ax_w.set_ylabel(f"work, {g_unit}-equiv.")
    ax_w.set_ylim(bottom=0)
    ax_w.set_xlabel("simulated time, hours")
    for h, ax in enumerate(hall_axes):
        name = cluster.hall_names[h] if h < n_halls else "hall"
        if h in hall_rows:
            limit = c.b[hall_rows[h]] / scale
            ax.axhline(limit, color="k", ls=(0, (6, 3)), lw=1,
                       label=f"switchboard {limit:,.4g} {unit}")
            top = limit
            if h in cool_rows and c.b[cool_rows[h]] / scale < limit * 1.5:
                cool = c.b[cool_rows[h]] / scale
                if not math.isclose(cool, limit):
                    ax.axhline(cool, color="grey", ls=(0, (2, 2)), lw=1,
                               label=f"cooling plant {cool:,.4g} {unit}")
                    top = max(top, cool)
            ax.set_ylim(0, max(top, hall_peak[h]) * 1.12)  # an oblivious run goes over
        ax.set_ylabel(f"hall IT power, {unit}")
        ax.set_title(f"{name}: power against its own limits", loc="left", fontsize=10)
    hall_axes[-1].set_xlabel("simulated time, hours")
    for ax in (ax_f, ax_q, ax_u, ax_w, *hall_axes):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, end_h)
        # the curves climb from the lower left and stay high: the legend goes low right
        # on the power panels, where the ramp is over, and outside nothing
        ax.legend(loc="lower right", fontsize=7.5, framealpha=0.85)
    ax_q.legend(loc="upper left", fontsize=7.5, framealpha=0.85)
    return _save(fig, path)


# ---- the floor map ---------------------------------------------------------------------

# rack states, in the colormap's order
_IDLE, _PART_FULL, _FULL, _PART_THROTTLED, _THROTTLED, _RACK_BROKEN = range(6)
# throttled is yellow, not orange: orange sits too close to the vermillion of a broken
# limit (seen on the first maps drawn); yellow and vermillion differ in lightness too
_STATE_COLORS = ["#E3E3E3", "#A9D3F0", OKABE_ITO["blue"], "#F8F1A6", OKABE_ITO["yellow"],
                 _BROKEN]
_STATE_NAMES = ["idle (no GPU busy)", "some GPUs busy, at full cap", "all GPUs busy, at full cap",
                "some GPUs busy, throttled", "all GPUs busy, throttled (cap below full)",
                "over a limit: rack cell, row or hall bar, hall frame (cross)"]


def rack_states(result: "SimulationResult") -> dict[str, Any]:
    """Per rack at the instant of peak facility power: busy GPUs, mean cap of the busy
    ones (from the rack's power: node base + idle GPUs + caps), its state code, and
    whether one of its own rows (feed, CDU, residual air, air cooling) is broken."""
    cluster = result.cluster
    power = cluster.power
    G = cluster.gpus_per_node
    rack_w = np.asarray(result.rack_power_at_peak_w, dtype=float)
    node_free = result.node_free_at_peak
    if node_free is None:
        node_free = np.full(cluster.num_nodes, G)
    node_free = np.asarray(node_free)
    node_busy = G - node_free
    rack_busy = np.bincount(cluster.node_rack, weights=node_busy, minlength=cluster.num_racks)
    busy_nodes = np.bincount(cluster.node_rack, weights=node_busy > 0,
                             minlength=cluster.num_racks)
    nodes = cluster.rack_nodes.astype(float)
    base_w = (nodes * power.node_other_idle_w + busy_nodes * power.busy_step_w
              + (nodes * G - rack_busy) * power.gpu_idle_w)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_cap = np.where(rack_busy > 0, (rack_w - base_w) / np.maximum(rack_busy, 1), 0.0)
    full = mean_cap >= power.cap_max_w - 0.5
    all_busy = rack_busy >= nodes * G
    state = np.where(rack_busy == 0, _IDLE,
                     np.where(full, np.where(all_busy, _FULL, _PART_FULL),
                              np.where(all_busy, _THROTTLED, _PART_THROTTLED)))
    c = cluster.constraints
    load = c.A @ rack_w
    A = c.A.tocsr()
    single = np.flatnonzero(np.diff(A.indptr) == 1)
    over = single[load[single] > c.b[single] + 1e-6]
    broken = np.zeros(cluster.num_racks, dtype=bool)
    broken_kinds: dict[int, list[str]] = {}
    for i in over:
        rack = int(A.indices[A.indptr[i]])
        broken[rack] = True
        broken_kinds.setdefault(rack, []).append(c.kinds[i])
    return {"busy_gpus": rack_busy, "mean_cap_w": mean_cap, "state": state,
            "broken": broken, "broken_kinds": broken_kinds, "load_w": load}


def plot_floor(result: "SimulationResult", path: str | os.PathLike[str]) -> Path:
    """One policy's floor at the instant of peak facility power (see the module doc)."""
    cluster = result.cluster
    c = cluster.constraints
    racks_info = rack_states(result)
    load = racks_info["load_w"]
    state = racks_info["state"].copy()
    state[racks_info["broken"]] = _RACK_BROKEN
    fac = [i for i, k in enumerate(c.kinds) if k == "facility"]
    fac_limit = float(c.b[fac[0]]) if fac else math.inf
    unit, scale = _power_unit(fac_limit if fac else float(load.max()))
    hall_rows = _rows_of(c, "hall", cluster.rack_hall)
    cool_rows = _rows_of(c, "hall-cooling", cluster.rack_hall)
    busway = _rows_of(c, "row", cluster.rack_row)
    n_halls = cluster.num_halls
    cols = 2 if n_halls > 1 else 1
    rows_fig = math.ceil(n_halls / cols)
    small = cluster.num_racks <= 64
    width = 7.2 * cols if not small else 9.0
    fig = plt.figure(figsize=(width, 4.6 * rows_fig + 1.4), layout="constrained")
    outer = fig.add_gridspec(2, 1, height_ratios=[0.28, 4.6 * rows_fig])
    grid = outer[1].subgridspec(rows_fig, cols)
    cmap = ListedColormap(_STATE_COLORS)
    for h in range(n_halls):
        cell = grid[h // cols, h % cols].subgridspec(2, 1, height_ratios=[3.2, 1.3])
        ax = fig.add_subplot(cell[0])
        ax_bar = fig.add_subplot(cell[1])
        racks = np.flatnonzero(cluster.rack_hall == h)
        power_rows = np.unique(cluster.rack_row[racks])
        depth = max(int(np.sum(cluster.rack_row[racks] == r)) for r in power_rows)
        image = np.full((depth, len(power_rows)), np.nan)
        for j, prow in enumerate(power_rows):
            members = racks[cluster.rack_row[racks] == prow]
            image[:len(members), j] = state[members]
            for k, rack in enumerate(members):
                if racks_info["broken"][rack]:
                    # in the corner on small sites, so the cell's text stays readable
                    ax.plot(j + (0.38 if small else 0), k + (0.36 if small else 0),
                            marker="x", color="k", ms=4 if not small else 12, mew=1.2)
                if small:
                    busy = int(racks_info["busy_gpus"][rack])
                    text = (f"{cluster.rack_names[rack]}\n{busy} GPUs busy"
                            + (f"\n{racks_info['mean_cap_w'][rack]:.0f} W" if busy else ""))
                    kinds = racks_info["broken_kinds"].get(int(rack))
                    if kinds:
                        text += "\nover: " + ", ".join(kinds)
                    ink = "white" if state[rack] in (_FULL, _RACK_BROKEN) else "black"
                    ax.text(j, k, text, ha="center", va="center", fontsize=8, color=ink)
        ax.imshow(image, cmap=cmap, vmin=-0.5, vmax=len(_STATE_COLORS) - 0.5, aspect="auto",
                  interpolation="nearest", origin="lower")
        ax.set_xticks([])
        ax.set_yticks([] if not small else range(depth),
                      [] if not small else [str(k + 1) for k in range(depth)])
        ax.set_ylabel("rack in row")
        kind = "+".join(k for code, k in ((0, "liquid"), (1, "air"))
                        if np.any(cluster.rack_kind[racks] == code))
        # the hall's own limits: switchboard and cooling plant, as bars after its rows
        gauges: list[tuple[str, float]] = []
        if h in hall_rows:
            gauges.append(("hall", load[hall_rows[h]] / c.b[hall_rows[h]]))
        if h in cool_rows:
            gauges.append(("cooling", load[cool_rows[h]] / c.b[cool_rows[h]]))
        bad = any(v > 1 + 1e-9 for _, v in gauges)
        line1 = f"{cluster.hall_names[h]} ({kind}, {len(racks)} racks)"
        if h in hall_rows:
            i = hall_rows[h]
            line1 += (f": {load[i] / scale:,.4g} of {c.b[i] / scale:,.4g} {unit} switchboard "
                      f"({load[i] / c.b[i]:.0%})")
        line2 = ", ".join(f"{name} {v:.0%} of its limit" for name, v in gauges[1:])
        hall_busy = racks_info["busy_gpus"][racks]
        if hall_busy.sum():
            mean_cap = np.sum(hall_busy * racks_info["mean_cap_w"][racks]) / hall_busy.sum()
            line2 += ("; " if line2 else "") + f"busy GPUs at {mean_cap:.0f} W mean"
        if bad:
            line2 += "; HALL LIMIT BROKEN"
            for spine in ax.spines.values():  # the whole hall turns red
                spine.set_edgecolor(_BROKEN)
                spine.set_linewidth(5)
        ax.set_title(line1 + "\n" + line2, fontsize=9, loc="left",
                     color=_BROKEN if bad else "black", fontweight="bold" if bad else None)
        # each power row (busway) against its own limit, under its column of racks
        ratio = np.array([load[busway[r]] / c.b[busway[r]] if r in busway else np.nan
                          for r in power_rows])
        n_rows = len(power_rows)
        gauge_x = [n_rows + 1 + g * max(1.0, n_rows / 12) for g in range(len(gauges))]
        gauge_w = max(0.8, n_rows / 14)
        values = list(ratio) + [v for _, v in gauges]
        xs = list(range(n_rows)) + gauge_x
        widths = [0.8] * n_rows + [gauge_w] * len(gauges)
        colors = [_BROKEN if v > 1 + 1e-9 else "#7F7F7F" for v in values]
        colors[n_rows:] = [_BROKEN if v > 1 + 1e-9 else "#4D4D4D" for _, v in gauges]
        ax_bar.bar(xs, 100 * np.array(values), width=widths, color=colors)
        for x, v in zip(xs, values):
            if v > 1 + 1e-9:
                ax_bar.plot(x, 100 * v + 6, marker="x", color="k", ms=4 if not small else 9)
        ax_bar.axhline(100, color="k", ls=(0, (6, 3)), lw=1)
        ax_bar.set_xlim(-0.5, (gauge_x[-1] + gauge_w / 2 + 0.3) if gauges else n_rows - 0.5)
        ax_bar.set_ylim(0, max(115.0, float(np.nanmax(values, initial=0)) * 100 + 20))
        ax_bar.set_ylabel("load,\n% of limit", fontsize=8)
        if small:
            ticks = list(range(n_rows))
            labels = [cluster.row_names[r] for r in power_rows]
        else:  # numbered from 1, as the site's row names are
            every = max(1, n_rows // 8)
            ticks = list(range(every - 1, n_rows, every))
            labels = [str(j + 1) for j in ticks]
        ax_bar.set_xticks(ticks + gauge_x, labels + [name for name, _ in gauges], fontsize=8)
        ax_bar.set_xlabel("power rows (busways) of the hall, numbered from 1; then the hall's "
                          "own limits", fontsize=8.5)
        ax_bar.grid(alpha=0.3, axis="y")
    at_h = result.metrics["peaks"]["facility"]["at_s"] / 3600
    total = load[fac[0]] if fac else float(result.rack_power_at_peak_w.sum())
    over = bool(fac) and total > fac_limit + 1e-6
    # the facility against its limit: one horizontal bar across the top
    ax_fac = fig.add_subplot(outer[0])
    share = 100 * total / fac_limit if fac else 0.0
    ax_fac.barh([0], [share], height=0.8, color=_BROKEN if over else "#4D4D4D")
    ax_fac.axvline(100, color="k", ls=(0, (6, 3)), lw=1)
    if over:
        ax_fac.plot(share + 1.5, 0, marker="x", color="k", ms=9)
        for spine in ax_fac.spines.values():
            spine.set_edgecolor(_BROKEN)
            spine.set_linewidth(3)
    ax_fac.set_xlim(0, max(110.0, share + 6))
    ax_fac.set_yticks([0], ["facility"])
    ax_fac.tick_params(labelsize=8)
    ax_fac.set_xlabel("facility load, % of its limit", fontsize=8, labelpad=1)
    ever = (int(np.count_nonzero(result.ever_violated_rows))
            if result.ever_violated_rows is not None else 0)
    head = (f"{result.policy}: the floor at peak facility power, t = {at_h:.1f} h\n"
            f"facility {total / scale:,.4g} of {fac_limit / scale:,.4g} {unit} "
            f"({total / fac_limit:.0%})" + ("  LIMIT BROKEN" if over else ""))
    sub = (f"{ever:,} rows of A·P <= b broken at some time in the run" if ever
           else "no limit broken at any time in the run")
    fig.suptitle(head + "\n" + sub, fontsize=11, color=_BROKEN if over or ever else "black")
    handles = [Patch(facecolor=col, edgecolor="#555555", label=name)
               for col, name in zip(_STATE_COLORS, _STATE_NAMES)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3 if not small else 2,
               fontsize=8, frameon=False,
               title=f"full cap = {cluster.power.cap_max_w} W; numbers in a cell: busy GPUs "
                     "and their mean cap" if small else
               f"full cap = {cluster.power.cap_max_w} W; a throttled rack's GPUs run below it",
               title_fontsize=8)
    return _save(fig, path)


# ---- waits and completion times --------------------------------------------------------

_HOUR_TICKS = [(1 / 60, "1 min"), (5 / 60, "5 min"), (0.25, "15 min"), (0.5, "30 min"),
               (1, "1 h"), (2, "2 h"), (4, "4 h"), (8, "8 h"), (16, "16 h"), (24, "1 d"),
               (48, "2 d"), (96, "4 d"), (168, "1 wk")]


def _cdf(ax: Any, values_h: np.ndarray, total: int, floor_h: float, **style: Any) -> None:
    """Step CDF of ``values_h`` as a fraction of ``total`` jobs (the rest censored)."""
    x = np.sort(np.maximum(values_h, floor_h))
    y = np.arange(1, len(x) + 1) / max(total, 1)
    ax.step(np.concatenate([[floor_h], x]), np.concatenate([[0.0], y]), where="post", **style)


def plot_jct_cdf(results: "Sequence[SimulationResult]", path: str | os.PathLike[str]) -> Path:
    """Wait and JCT of every job that arrived, as cumulative fractions of those jobs."""
    fig, (ax_w, ax_j) = plt.subplots(1, 2, figsize=(13, 5.6), layout="constrained")
    longest = max(max(r.horizon_s for r in results) / 3600, 1 / 30)
    floor_h = 1 / 60
    for i, res in enumerate(results):
        st = _style(res.policy, i)
        n = res.metrics["jobs"]["arrived"]
        if res.jobs:
            started = np.array([rec["wait_s"] for rec in res.jobs if not rec["wait_censored"]])
        else:
            started = np.array([])
        jct = np.asarray(res.jct_s) / 3600
        queued = n - len(started) if res.jobs else res.metrics["jobs"]["queued_at_end"]
        if len(started):
            _cdf(ax_w, started / 3600, n, floor_h, label=(
                f"{res.policy}: {len(started):,} of {n:,} started; {queued:,} still queued; "
                f"p50 wait of all, censored {res.metrics['jobs']['wait']['p50_h']:.2f} h"),
                **st)
        if len(jct):
            _cdf(ax_j, jct, n, floor_h, label=(
                f"{res.policy}: {len(jct):,} of {n:,} done (p50 of done "
                f"{np.median(jct):.2f} h); {n - len(jct):,} not done"), **st)
    for ax, what in ((ax_w, "wait (start - submit)"), (ax_j, "JCT (finish - submit)")):
        ax.set_xscale("log")
        ticks = [(v, s) for v, s in _HOUR_TICKS if v <= longest * 1.5]
        ax.xaxis.set_major_locator(FixedLocator([v for v, _ in ticks]))
        ax.set_xticklabels([s for _, s in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(floor_h * 0.9, longest * 1.1)
        ax.set_ylim(0, 1.02)
        ax.axhline(1, color="grey", lw=0.8)
        ax.grid(alpha=0.3)
        ax.set_xlabel(f"{what}; under 1 min drawn at 1 min")
        ax.set_ylabel("fraction of all jobs that arrived")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8,
                      frameon=False)
        else:
            ax.text(0.5, 0.5, "no job started" if ax is ax_w else "no job done",
                    ha="center", transform=ax.transAxes)
    ax_w.set_title("How long jobs waited to start", loc="left")
    ax_j.set_title("How long jobs took to finish", loc="left")
    fig.suptitle("Every job that arrived counts; a curve stops below 1 by the share of jobs "
                 "not started (left) or not done (right) when the run ended (censored).",
                 fontsize=9.5)
    return _save(fig, path)


# ---- priority classes ------------------------------------------------------------------

_HATCHES = ["", "//", "..", "xx", "\\\\", "++"]


def _class_label(kind: str, cls: dict[str, Any]) -> str:
    """The class's name over two lines, then its priority: three classes side by side
    on one line each ran into each other."""
    words = str(cls.get("name", kind)).split(" ", 1)
    keep = "" if cls.get("preemptible", True) else "\nnot preemptible"
    return "\n".join(words) + f"\npriority {cls['priority']}{keep}"


def _count(n: int) -> str:
    """A job count in at most five characters (12,345 -> 12.3k), for a bar's label."""
    return f"{n:,}" if n < 1000 else f"{n / 1000:,.1f}k"


def _bar_labels(ax: Any, bars: Any, labels: Sequence[str], top: float,
                fontsize: float = 8) -> None:
    """Each bar's value over it (a zero bar is invisible: its label says 0)."""
    for bar, text in zip(bars, labels):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.015 * top, text,
                ha="center", va="bottom", fontsize=fontsize)


def plot_classes(results: "Sequence[SimulationResult]", path: str | os.PathLike[str]) -> Path:
    """Per priority class and policy: wait to start, work lost to preemption, cap-downs.

    The classes are report.json's ``jobs.by_class`` (gpusched.simulate.metrics), highest
    priority first; a class that a policy's run has no job of is left out of its bars.
    """
    kinds: dict[str, dict[str, Any]] = {}
    for res in results:
        for kind, cls in res.metrics["jobs"].get("by_class", {}).items():
            kinds.setdefault(kind, cls)
    order = sorted(kinds, key=lambda k: (-kinds[k]["priority"], k))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.8), layout="constrained")
    ax_w, ax_l, ax_c = axes
    n = max(1, len(results))
    width = 0.8 / n
    font = 8 if n * max(1, len(order)) <= 6 else 7   # labels of narrow bars stay apart
    x = np.arange(len(order), dtype=float)
    wait_top = max([res.metrics["jobs"]["by_class"][k]["wait"]["mean_h"] or 0.0
                    for res in results for k in order
                    if k in res.metrics["jobs"].get("by_class", {})]
                   + [res.metrics["jobs"]["by_class"][k]["wait"]["p50_h"] or 0.0
                      for res in results for k in order
                      if k in res.metrics["jobs"].get("by_class", {})] + [0.0])
    lost_top = max([res.metrics["jobs"]["by_class"][k]["lost_gpu_h"] for res in results
                    for k in order if k in res.metrics["jobs"].get("by_class", {})] + [0.0])
    caps_top = max([res.metrics["jobs"]["by_class"][k].get("cap_downs", 0) for res in results
                    for k in order if k in res.metrics["jobs"].get("by_class", {})] + [0])
    not_preempting: list[str] = []
    for i, res in enumerate(results):
        by_class = res.metrics["jobs"].get("by_class", {})
        here = [j for j, k in enumerate(order) if k in by_class]
        classes = [by_class[order[j]] for j in here]
        xs = x[here] - 0.4 + width * (i + 0.5)
        style = {"color": policy_color(res.policy, i), "edgecolor": "black", "linewidth": 0.6,
                 "hatch": _HATCHES[i % len(_HATCHES)], "width": width * 0.92,
                 "label": res.policy}
        preempts = bool(res.metrics.get("policy_info", {}).get("preempt"))
        mean = [c["wait"]["mean_h"] or 0.0 for c in classes]
        bars = ax_w.bar(xs, mean, **style)
        p50 = [c["wait"]["p50_h"] for c in classes]
        ax_w.plot([v for v, m in zip(xs, p50) if m is not None],
                  [m for m in p50 if m is not None], ls="none", marker="D", ms=7,
                  mfc="white", mec="black", mew=1.4, clip_on=False,
                  label="p50 (median) wait" if i == n - 1 else None, zorder=3)
        labels = []
        for c in classes:
            text = _fmt_h(c["wait"]["mean_h"])
            queued = c["arrived"] - c["started"]
            if queued:   # short lines: three policies' bars share a class's width
                text += f"\n{_count(queued)}/{_count(c['arrived'])}\nqueued"
            labels.append(text)
        _bar_labels(ax_w, bars, labels, max(wait_top, 1e-9), font)
        if preempts:   # a policy that never preempts gets no bar (the panel names it)
            lost = [c["lost_gpu_h"] for c in classes]
            bars = ax_l.bar(xs, lost, **style)
            _bar_labels(ax_l, bars, [f"{v:,.1f}\n{_count(c['preemptions'])} evictions"
                                     if c["preemptions"] else "0" for v, c in
                                     zip(lost, classes)], max(lost_top, 1e-9), font)
        else:
            not_preempting.append(res.policy)
        caps = [c.get("cap_downs", 0) for c in classes]
        bars = ax_c.bar(xs, caps, **style)
        _bar_labels(ax_c, bars, [f"{v:,}" for v in caps], max(caps_top, 1e-9), font)
    ticks = [_class_label(k, kinds[k]) for k in order]
    for ax, title, ylabel, top in (
            (ax_w, "Wait to start (bar: mean; diamond: p50)", "wait, hours", wait_top),
            (ax_l, "Work lost to preemption", "GPU-hours since the last checkpoint", lost_top),
            (ax_c, "Cap-downs by preemption and envelope plans", "running jobs' caps lowered",
             caps_top)):
        ax.set_xticks(x, ticks, fontsize=8.5)
        # 12,000 rather than 1.2e+04; small fractions as they are
        ax.yaxis.set_major_formatter(FuncFormatter(
            lambda v, _pos: f"{v:,.0f}" if abs(v) >= 100 else f"{v:g}"))
        ax.set_xlim(-0.6, len(order) - 0.4)
        # headroom for the labels over the bars; 1 when everything is 0, so "0" shows
        ax.set_ylim(0, top * 1.35 if top > 0 else 1.0)
        ax.set_title(title, loc="left", fontsize=10.5)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
        ax.set_axisbelow(True)
    ax_c.yaxis.set_major_locator(MaxNLocator(integer=True))
    if caps_top == 0:   # an empty panel reads as a broken picture: say why it is empty
        ax_c.text(0.5, 0.55, "no cap-downs in this run\n(no plan had to lower a cap)",
                  ha="center", va="center", transform=ax_c.transAxes, fontsize=9,
                  color="#444444")
    note = []
    if lost_top == 0:
        note.append("no work lost to preemption in this run")
    if not_preempting:   # so an empty slot is read as "never preempts", not as "lost 0"
        note.append("no bars: " + ", ".join(not_preempting) + " never preempt"
                    + ("s" if len(not_preempting) == 1 else ""))
    if note:   # in the headroom over the tallest bar's label, where no bar reaches
        ax_l.text(0.02, 0.97, "\n".join(note), ha="left", va="top",
                  transform=ax_l.transAxes, fontsize=9, color="#444444")
    # below the panels, so it never covers a bar's label
    handles, labels = ax_w.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    cluster = results[0].cluster.name if results else ""
    fig.suptitle(f"{cluster}: what each priority class got under each policy\n"
                 "waits count every job that arrived: a job not started counts until the end "
                 "of the run (censored), so its class's wait is a lower bound", fontsize=10.5)
    return _save(fig, path)


def _fmt_h(hours: float | None) -> str:
    if hours is None:
        return "-"
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:,.1f} h"


def _save(fig: "plt.Figure", path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    plt.close(fig)
    write_atomic(out, buffer.getvalue())
    return out


def write_plots(results: "Sequence[SimulationResult]", out_dir: str | os.PathLike[str]
                ) -> list[Path]:
    """Every picture for these results into ``out_dir``; returns the paths written.

    ``power.png``, ``floor-<policy>.png`` per policy, ``jct-cdf.png``, ``classes.png``.
    """
    out = Path(out_dir)
    paths = [plot_power(results, out / "power.png")]
    for res in results:
        paths.append(plot_floor(res, out / f"floor-{res.policy}.png"))
    paths.append(plot_jct_cdf(results, out / "jct-cdf.png"))
    paths.append(plot_classes(results, out / "classes.png"))
    return paths
