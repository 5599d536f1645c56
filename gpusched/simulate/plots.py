"""PNG pictures of simulation results (matplotlib, Agg backend: no display needed).

- :func:`plot_power` -- facility and hall power over time against their limits, with
  GPU utilisation below, one line per policy;
- :func:`plot_floor` -- the halls as grids of racks, coloured by the power headroom of
  each rack's own feed at the instant of peak facility power;
- :func:`plot_jct_cdf` -- the cumulative distribution of job completion times, one
  curve per policy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from . import SimulationResult

__all__ = ["plot_power", "plot_floor", "plot_jct_cdf", "write_plots"]

_COLORS = {"optimize": "tab:green", "fifo": "tab:blue", "backfill": "tab:purple",
           "oblivious": "tab:red"}


def _color(policy: str, i: int) -> str:
    return _COLORS.get(policy, f"C{i}")


def _steps(t: np.ndarray, y: np.ndarray, points: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Thin a step series to about ``points`` samples keeping each window's maximum."""
    if len(t) <= points:
        return t, y
    edges = np.linspace(0, len(t), points + 1).astype(int)
    return t[edges[:-1]], np.maximum.reduceat(y, edges[:-1], axis=0)


def plot_power(results: "Sequence[SimulationResult]", path: str | os.PathLike[str]) -> Path:
    """Facility and hall power (MW) against their limits, GPU utilisation (%), and the
    work delivered (GPU-equivalents, sum of GPUs x s) against the fluid bound."""
    first = results[0]
    fig, (ax_f, ax_h, ax_u, ax_w) = plt.subplots(
        4, 1, figsize=(10, 11), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2, 2]})
    c = first.cluster.constraints
    facility = [i for i, k in enumerate(c.kinds) if k == "facility"]
    halls = [i for i, k in enumerate(c.kinds) if k == "hall"]
    for i, res in enumerate(results):
        t_h = res.series["t_s"] / 3600
        color = _color(res.policy, i)
        t, y = _steps(t_h, res.series["facility_w"] / 1e6)
        ax_f.step(t, y, where="post", color=color, lw=1.2, label=res.policy)
        hall_w = np.asarray(res.series["hall_w"], dtype=float).reshape(len(t_h), -1) / 1e6
        t, y = _steps(t_h, hall_w.max(axis=1))
        ax_h.step(t, y, where="post", color=color, lw=1.2, label=f"{res.policy}: busiest hall")
        t, y = _steps(t_h, 100 * res.series["busy_gpus"] / res.cluster.num_gpus)
        ax_u.step(t, y, where="post", color=color, lw=1.2, label=res.policy)
        frac = res.metrics["totals"].get("fraction_of_bound")
        t, y = _steps(t_h, res.series["work_gpus"] / 1e3)
        ax_w.step(t, y, where="post", color=color, lw=1.2,
                  label=f"{res.policy}" + ("" if frac is None else f" ({frac:.1%} of bound)"))
        if "bound_gpus" in res.series:
            t, y = _steps(t_h, res.series["bound_gpus"] / 1e3)
            ax_w.step(t, y, where="post", color=color, lw=0.8, ls=":",
                      label=f"fluid bound, jobs present under {res.policy}")
    if facility:
        limit = c.b[facility[0]] / 1e6
        ax_f.axhline(limit, color="k", ls="--", lw=1, label=f"facility limit {limit:g} MW")
    top_w = first.cluster.power.cap_max_w
    full = first.cluster.full_rack_power_w(top_w).sum() / 1e6
    ax_f.axhline(full, color="grey", ls=":", lw=1, label=f"every GPU at {top_w} W ({full:.0f} MW)")
    if halls:
        limit = c.b[halls].min() / 1e6
        ax_h.axhline(limit, color="k", ls="--", lw=1, label=f"hall switchboard {limit:g} MW")
    ax_f.set_ylabel("IT power, MW")
    ax_h.set_ylabel("hall power, MW")
    ax_u.set_ylabel("GPUs busy, %")
    ax_u.set_ylim(0, 105)
    ax_w.set_ylabel("work, k GPU-equiv.")
    ax_w.set_xlabel("simulated time, hours")
    ax_f.set_title(f"{first.cluster.name}: power and utilisation over time")
    for ax in (ax_f, ax_h, ax_u, ax_w):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_floor(result: "SimulationResult", path: str | os.PathLike[str]) -> Path:
    """The halls as grids of racks, coloured by headroom of each rack's tightest own row.

    Headroom = 1 - load / limit over the rows that touch only that rack (feed, CDU,
    residual air, air cooling), at the instant of peak facility power.  Red is at or
    over the limit; a hatched cell (oblivious runs) is over.
    """
    cluster = result.cluster
    c = cluster.constraints
    rack_w = np.asarray(result.rack_power_at_peak_w, dtype=float)
    load = c.A @ rack_w
    A = c.A.tocsr()
    single = np.diff(A.indptr) == 1          # rows that touch one rack
    rows = np.flatnonzero(single)
    rack_of_row = A.indices[A.indptr[rows]]
    ratio = load[rows] / np.maximum(c.b[rows], 1e-9)
    used = np.zeros(cluster.num_racks)
    np.maximum.at(used, rack_of_row, ratio)
    headroom = 1.0 - used
    n_halls = cluster.num_halls
    cols = 2 if n_halls > 1 else 1
    rows_fig = math.ceil(n_halls / cols)
    fig, axes = plt.subplots(rows_fig, cols, figsize=(6 * cols, 3.8 * rows_fig), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("RdYlGn")
    image = None
    for h in range(rows_fig * cols):
        ax = axes[h // cols][h % cols]
        if h >= n_halls:
            ax.axis("off")
            continue
        racks = np.flatnonzero(cluster.rack_hall == h)
        pods = cluster.rack_row[racks]
        pod_ids = np.unique(pods)
        width = int(np.max(np.bincount(pods - pods.min()))) if len(pods) else 1
        grid = np.full((len(pod_ids), width), np.nan)
        for j, pod in enumerate(pod_ids):
            members = racks[pods == pod]
            grid[j, :len(members)] = headroom[members]
        # rows of the floor = power rows; show them as columns for a wide hall picture
        image = ax.imshow(grid.T, cmap=cmap, vmin=0.0, vmax=0.5, aspect="auto",
                          interpolation="nearest")
        over = np.argwhere(grid.T < 0)
        if len(over):
            ax.scatter(over[:, 1], over[:, 0], marker="x", s=6, color="k", lw=0.5)
        kind = "liquid" if cluster.rack_kind[racks[0]] == 0 else "air"
        peak = load[[i for i, k in enumerate(c.kinds) if k == "hall"][h]] / 1e6 \
            if "hall" in c.kinds else float("nan")
        ax.set_title(f"{cluster.hall_names[h]} ({kind}, {len(racks)} racks): "
                     f"{peak:.1f} MW at peak", fontsize=9)
        ax.set_xlabel("power row (pod)")
        ax.set_ylabel("rack in row")
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8,
                     label="rack headroom at peak (1 - load/limit), clipped to 0.5")
    fig.suptitle(f"{result.policy}: rack headroom at peak facility power "
                 f"({rack_w.sum() / 1e6:.1f} MW, t = {result.metrics['peaks']['facility']['at_s'] / 3600:.1f} h)",
                 fontsize=11)
    return _save(fig, path)


def plot_jct_cdf(results: "Sequence[SimulationResult]", path: str | os.PathLike[str]) -> Path:
    """Empirical CDF of job completion time (hours, log scale), one curve per policy."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, res in enumerate(results):
        jct = np.sort(res.jct_s) / 3600
        if not len(jct):
            continue
        ax.step(jct, np.arange(1, len(jct) + 1) / len(jct), where="post",
                color=_color(res.policy, i),
                label=f"{res.policy} ({len(jct):,} jobs done, p50 {np.median(jct):.2f} h)")
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (finish - submit), hours")
    ax.set_ylabel("fraction of completed jobs")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no job completed", ha="center", transform=ax.transAxes)
    ax.set_title("JCT distribution per policy")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: "plt.Figure", path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_plots(results: "Sequence[SimulationResult]", out_dir: str | os.PathLike[str]
                ) -> list[Path]:
    """Every picture for these results into ``out_dir``; returns the paths written.

    ``power.png`` always; ``floor-<policy>.png`` per policy; ``jct-cdf.png`` when
    several policies are compared.
    """
    out = Path(out_dir)
    paths = [plot_power(results, out / "power.png")]
    for res in results:
        paths.append(plot_floor(res, out / f"floor-{res.policy}.png"))
    if len(results) > 1:
        paths.append(plot_jct_cdf(results, out / "jct-cdf.png"))
    return paths
