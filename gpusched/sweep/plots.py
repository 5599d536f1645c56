"""The sweep's pictures (matplotlib, Agg): what a planner reads off a study.

- ``work-vs-mw.png`` -- delivered work against the facility limit, one line per policy
  (mean across seeds, bars: 95 % CI), one panel per combination of the other axes;
- ``heatmap.png`` -- one metric over two chosen axes, one panel per policy, on one
  colour scale so panels compare;
- ``pareto.png`` -- energy against delivered work per configuration; the Pareto front
  (no other configuration delivers as much for less energy) joined up.  Runs that broke
  a limit (``oblivious``) are drawn hollow and kept off the front: they are not options.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .._atomic import write_atomic  # noqa: E402
from ..simulate.plots import policy_color as _color  # noqa: E402  (one per policy)
from .spec import SweepSpec  # noqa: E402
from .tables import METRICS, summarise  # noqa: E402

__all__ = ["write_plots", "plot_work_vs_mw", "plot_heatmap", "plot_pareto", "pareto_front"]

_MAX_PANELS = 6
_LABELS = {"delivered_gpu_hours": "delivered work (GPU-hours x s(cap))",
           "energy_mwh": "IT energy (MWh)", "facility_mw": "facility limit (MW)",
           "load_scale": "offered load (x site GPUs)", "fraction_of_bound":
           "delivered / fluid bound"}


def _label(key: str) -> str:
    return _LABELS.get(key, METRICS.get(key, key).split(" (")[0] if key in METRICS else key)


def _save(fig: Any, path: Path, **kwargs: Any) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, **kwargs)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def _key(value: Any) -> str:
    return json.dumps(value, default=str)


def _fixed_text(spec: SweepSpec, rows: list[dict[str, Any]], skip: Sequence[str]) -> str:
    """The options every run shares, for a subtitle (the site, the workload)."""
    first = rows[0]
    shown = []
    for k in ("cluster", "cluster_scale", "trace", "hours", "load_scale", "facility_mw"):
        if k in skip or k in spec.axes:
            continue
        v = first.get(k)
        if v is None or (k == "cluster_scale" and v == 1.0):
            continue
        shown.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    gpus = first.get("num_gpus")
    if gpus and "cluster" not in spec.axes and "cluster_scale" not in spec.axes:
        shown.append(f"{int(gpus):,} GPUs")
    return ", ".join(shown)


def _title(head: str, detail: str, width: int) -> str:
    """A title and its setup line, wrapped to the figure's width (never cut off)."""
    return "\n".join([head, *textwrap.wrap(detail, max(40, width))])


def _panels(spec: SweepSpec, rows: list[dict[str, Any]], used: Sequence[str]
            ) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows split by the axes the picture does not show (seed is averaged over)."""
    others = [k for k in spec.axes if k not in used and k != "seed"]
    if not others:
        return [("", rows)]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        title = ", ".join(f"{k}={r.get(k)}" for k in others)
        groups.setdefault(title, []).append(r)
    return list(groups.items())


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def plot_work_vs_mw(spec: SweepSpec, rows: list[dict[str, Any]], path: Path,
                    metric: str = "delivered_gpu_hours") -> Path | None:
    ok = [r for r in rows if r["status"] == "ok"]
    if "facility_mw" not in spec.axes or not ok:
        return None
    panels = _panels(spec, ok, ("facility_mw", "policy"))[:_MAX_PANELS]
    nr, nc = _grid(len(panels))
    fig, axes = plt.subplots(nr, nc, figsize=(5.2 * nc + 1, 4.2 * nr + 0.6), squeeze=False,
                             sharey=True)
    all_x = sorted({float(r["facility_mw"]) for r in ok})
    dodge = 0.012 * ((all_x[-1] - all_x[0]) or 1.0)  # bars of one limit side by side
    for ax, (title, members) in zip(axes.flat, panels):
        stats = summarise(members, ["policy", "facility_mw"], [metric])
        policies = list(dict.fromkeys(s["policy"] for s in stats))
        for i, policy in enumerate(policies):
            pts = sorted((s for s in stats if s["policy"] == policy),
                         key=lambda s: s["facility_mw"])
            shift = (i - (len(policies) - 1) / 2) * dodge
            x = [s["facility_mw"] + shift for s in pts]
            y = [s[f"{metric}_mean"] for s in pts]
            err = [s[f"{metric}_ci95"] or 0.0 for s in pts]
            n = max(s["runs"] for s in pts)
            ax.errorbar(x, y, yerr=err if any(err) else None, marker="o", capsize=3,
                        color=_color(str(policy), i), lw=1.5, alpha=0.9,
                        label=f"{policy}" + (f" (mean of {n} seeds, bar: 95 % CI)"
                                             if n > 1 else ""))
        if title:
            ax.set_title(title, fontsize=10)
        ax.set_xticks(all_x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    scale = ok[0].get("cluster_scale")
    xlabel = _label("facility_mw")
    if scale not in (None, 1.0) and ok[0].get("cluster") == "colossus-100k":
        xlabel += f", full site; simulated limit x{scale:g}"
    for ax in axes[-1, :]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(_label(metric))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(_title(f"{spec.name}: {_label(metric)} against the facility limit",
                        _fixed_text(spec, ok, ("facility_mw",)), 60 * nc), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _heatmap_axes(spec: SweepSpec) -> list[str] | None:
    if spec.heatmap:
        return spec.heatmap
    candidates = [k for k in spec.axes if k not in ("seed", "policy")]
    if len(candidates) == 1 and "policy" in spec.axes:
        candidates.append("policy")  # one axis: the policies are the other
    return candidates[:2] if len(candidates) >= 2 else None


def _sortable(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return values


def plot_heatmap(spec: SweepSpec, rows: list[dict[str, Any]], path: Path,
                 metric: str = "delivered_gpu_hours") -> Path | None:
    axes_keys = _heatmap_axes(spec)
    ok = [r for r in rows if r["status"] == "ok"]
    if axes_keys is None or not ok:
        return None
    kx, ky = axes_keys
    by_policy = "policy" not in axes_keys
    panels = (list(dict.fromkeys(r["policy"] for r in rows)) if by_policy else [None])
    panels = panels[:_MAX_PANELS]
    xs = _sortable(list(dict.fromkeys(r[kx] for r in rows)))
    ys = _sortable(list(dict.fromkeys(r[ky] for r in rows)))
    grids = []
    for policy in panels:
        members = [r for r in ok if policy is None or r["policy"] == policy]
        stats = {(_key(s[kx]), _key(s[ky])): s for s in summarise(members, [kx, ky], [metric])}
        grid = np.full((len(ys), len(xs)), np.nan)
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                s = stats.get((_key(x), _key(y)))
                if s is not None and s[f"{metric}_mean"] is not None:
                    grid[i, j] = s[f"{metric}_mean"]
        grids.append(grid)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids])
    if not finite.size:
        return None
    vmin, vmax = float(finite.min()), float(finite.max())
    nr, nc = _grid(len(panels))
    fig, axes = plt.subplots(nr, nc, figsize=(max(4.5, 0.9 * len(xs) + 2.5) * nc + 1,
                                              max(3.5, 0.6 * len(ys) + 2) * nr + 0.8),
                             squeeze=False, sharey=True, layout="constrained")
    image = None
    for ax, policy, grid in zip(axes.flat, panels, grids):
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=vmin, vmax=vmax,
                          aspect="auto", origin="lower")
        ax.set_facecolor("0.85")  # a missing or failed cell shows grey, and says so
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
        ax.set_yticks(range(len(ys)), [str(y) for y in ys])
        ax.set_xlabel(_label(kx))
        ax.set_title(f"policy {policy}" if policy is not None else "", fontsize=10)
        mid = (vmin + vmax) / 2
        for i in range(len(ys)):
            for j in range(len(xs)):
                v = grid[i, j]
                text = "no run" if not np.isfinite(v) else (f"{v:,.0f}" if abs(v) >= 100
                                                             else f"{v:.3g}")
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="black" if (np.isfinite(v) and v > mid) or not np.isfinite(v)
                        else "white")
    for ax in axes[:, 0]:
        ax.set_ylabel(_label(ky))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat)[:len(panels)], shrink=0.85,
                     label=_label(metric))
    averaged = [k for k in spec.axes if k not in (kx, ky, "policy")]
    fig.suptitle(_title(f"{spec.name}: {_label(metric)}"
                        + (f", mean over {', '.join(averaged)}" if averaged else ""),
                        _fixed_text(spec, ok, (kx, ky)), 70 * nc), fontsize=10)
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: at least as much work (x) for at
    most as much energy (y), and better in one; sorted by work."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], points[i][1]))
    front, best_energy = [], math.inf
    for i in order:
        if points[i][1] < best_energy:
            front.append(i)
            best_energy = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(spec: SweepSpec, rows: list[dict[str, Any]], path: Path) -> Path | None:
    ok = [r for r in rows if r["status"] == "ok" and r.get("energy_mwh") is not None]
    if not ok:
        return None
    group = [k for k in spec.axes if k != "seed"] or ["policy"]
    stats = summarise(ok, group, ["delivered_gpu_hours", "energy_mwh",
                                  "violation_row_seconds"])
    fig, ax = plt.subplots(figsize=(9, 6))
    policies = list(dict.fromkeys(s.get("policy", ok[0]["policy"]) for s in stats))
    legal = [s for s in stats if not (s["violation_row_seconds_mean"] or 0) > 0]
    for i, policy in enumerate(policies):
        mine = [s for s in stats if s.get("policy", ok[0]["policy"]) == policy]
        for broke in (False, True):
            pts = [s for s in mine if bool((s["violation_row_seconds_mean"] or 0) > 0) == broke]
            if not pts:
                continue
            color = _color(str(policy), i)
            # a run that broke a limit is a cross drawn on top, so it shows even where
            # a legal run delivered the same
            ax.scatter([s["delivered_gpu_hours_mean"] for s in pts],
                       [s["energy_mwh_mean"] for s in pts], s=60 if broke else 40,
                       zorder=4 if broke else 3, color=color, marker="x" if broke else "o",
                       label=f"{policy}" + (" (breaks limits: not an option)"
                                            if broke else ""))
    xy = [(s["delivered_gpu_hours_mean"], s["energy_mwh_mean"]) for s in legal]
    front = pareto_front(xy)
    if front:
        ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], color="k", lw=1,
                ls="--", zorder=2, label="Pareto front (most work for the energy)")
        others = [k for k in group if len({_key(s.get(k)) for s in legal}) > 1]
        # one label per cluster of nearby front points, so none is printed over another
        span_x = (max(p[0] for p in xy) - min(p[0] for p in xy)) or 1.0
        span_y = (max(p[1] for p in xy) - min(p[1] for p in xy)) or 1.0
        clusters: list[list[int]] = []
        for i in front:
            last = clusters[-1][-1] if clusters else None
            if last is not None and abs(xy[i][0] - xy[last][0]) / span_x < 0.06 \
                    and abs(xy[i][1] - xy[last][1]) / span_y < 0.06:
                clusters[-1].append(i)
            else:
                clusters.append([i])
        for k, members in enumerate(clusters):
            # every legal configuration at this spot, ties with the front point included
            near = [j for j in range(len(xy)) if any(
                abs(xy[j][0] - xy[i][0]) / span_x < 0.01
                and abs(xy[j][1] - xy[i][1]) / span_y < 0.01 for i in members)]
            lines = [", ".join(f"{legal[j].get(key)}" for key in others) for j in near]
            if len(lines) > 5:
                lines = lines[:4] + [f"and {len(lines) - 4} more"]
            anchor = xy[members[0]]
            # inside the axes: labels of the left half go right of their point, and
            # the others left; above and below in turn
            left_half = (anchor[0] - min(p[0] for p in xy)) / span_x < 0.5
            ax.annotate("\n".join(lines), anchor, textcoords="offset points", fontsize=7,
                        xytext=(8 if left_half else -8, 6 if k % 2 == 0 else -8),
                        ha="left" if left_half else "right",
                        va="bottom" if k % 2 == 0 else "top")
    ax.set_xlabel(_label("delivered_gpu_hours") + " - more is better")
    ax.set_ylabel(_label("energy_mwh") + " - less is better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    per = " per configuration, mean over seeds" if "seed" in spec.axes else \
        " per configuration"
    ax.set_title(_title(f"{spec.name}: energy against delivered work{per}",
                        _fixed_text(spec, ok, ()), 100), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_plots(spec: SweepSpec, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    made = [plot_work_vs_mw(spec, rows, out / "work-vs-mw.png"),
            plot_heatmap(spec, rows, out / "heatmap.png", spec.metric),
            plot_pareto(spec, rows, out / "pareto.png")]
    return [p for p in made if p is not None]

