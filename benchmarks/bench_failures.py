"""A site that changes, simulated: what hot spares buy under failures, and what an
envelope plan buys under curtailment.

Two comparisons on the default workload of ``gpusched simulate`` (colossus-100k at
90 MW, the bundled ITP window with frontier gangs, 16 h):

1. failures at the Llama 3 rate (about 2 an hour on 100,352 GPUs), with no spares and
   with one hot spare node per pod: interruptions, repairs, time to resume of the hit
   jobs (p50/p99), work lost and delivered work;
2. a demand-response event (facility -25 % for 3 h from hour 6), with the envelope plan
   and with holding new starts only (Slurm HRES's way), plus ``oblivious``: MW-seconds
   over the envelope and work delivered during the event.

    python benchmarks/bench_failures.py                 # both, full size (about 10 min)
    python benchmarks/bench_failures.py --quick         # tiny site, short runs (CI)
    python benchmarks/bench_failures.py --png docs/img/failures.png

A benchmark, not a test: it times nothing and asserts nothing; the numbers are the
simulator's, the same on every machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpusched import Cluster  # noqa: E402
from gpusched.simulate import FailureModel, simulate  # noqa: E402
from gpusched.simulate.cli import build_workload  # noqa: E402
from gpusched.simulate.failures import demand_response  # noqa: E402


def _setup(quick: bool) -> tuple[Cluster, list[Any], float, FailureModel, list[str]]:
    if quick:
        cluster = Cluster.preset("tiny")
        horizon_s = 12 * 3600.0
        jobs, _ = build_workload(cluster, trace="synthetic", horizon_s=horizon_s, load=1.5,
                                 frontier=0, seed=1)
        # a tiny site fails rarely at the real rate: 100x it, so the smoke run has hits
        return cluster, jobs, horizon_s, FailureModel(rate_per_gpu_h=2e-3), ["fifo"]
    cluster = Cluster.preset("colossus-100k")
    horizon_s = 16 * 3600.0
    jobs, _ = build_workload(cluster, horizon_s=horizon_s)
    return cluster, jobs, horizon_s, FailureModel(), ["optimize", "fifo"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny site (CI smoke run)")
    parser.add_argument("--png", default=None, help="write the spares picture here")
    args = parser.parse_args(argv)
    cluster, jobs, horizon_s, model, policies = _setup(args.quick)

    print(f"failures on {cluster.name}, {len(jobs):,} jobs over {horizon_s / 3600:g} h, "
          f"{model.rate_per_gpu_h:.3g} interruptions per GPU-hour")
    head = (f"{'policy':<10}{'spares/pod':>11}{'hits':>6}{'repairs':>9}{'requeues':>9}"
            f"{'resume p50/p99 min':>20}{'work lost GPU-h':>17}{'delivered':>12}"
            f"{'spare GPUs':>11}")
    print(head)
    rows = []
    for policy in policies:
        for spares in (0, 1):
            r = simulate(cluster, jobs, policy, horizon_s=horizon_s, failures=model,
                         spares=spares)
            s = r.metrics["site"]
            rows.append((policy, spares, s, r.metrics["totals"]["delivered_gpu_hours"]))
            print(f"{policy:<10}{spares:>11}{s['jobs_hit']:>6}{s['repairs']:>9}"
                  f"{s['requeues']:>9}{str(s['resume_min_p50']) + ' / ' + str(s['resume_min_p99']):>20}"
                  f"{s['work_lost_gpu_h']:>17,.1f}{rows[-1][3]:>12,.0f}"
                  f"{s['spare_gpus_mean']:>11,.0f}")

    start_h = 2.0 if args.quick else 6.0
    envelope = demand_response(cluster, start_h)
    print(f"\ndemand response: facility {envelope[0].limit_w / 1e6:.3g} MW "
          f"(-25 %) from hour {start_h:g} for 3 h")
    print(f"{'policy':<10}{'envelope':>10}{'MW-s over':>12}{'evictions':>11}"
          f"{'work during event':>19}{'delivered':>12}")
    for policy, plan in [(p, True) for p in policies] + [(policies[-1], False),
                                                         ("oblivious", True)]:
        r = simulate(cluster, jobs, policy, horizon_s=horizon_s, envelope=envelope,
                     envelope_plan=plan)
        s = r.metrics["site"]
        how = "ignored" if policy == "oblivious" else ("plan" if plan else "hold")
        print(f"{policy:<10}{how:>10}{s['over_envelope_mw_s']:>12,.1f}"
              f"{s['envelope_evictions']:>11}{s['event_delivered_gpu_h']:>19,.0f}"
              f"{r.metrics['totals']['delivered_gpu_hours']:>12,.0f}")

    if args.png:
        _plot(rows, Path(args.png), cluster.name, model.rate_per_gpu_h)
        print(f"\nwrote {args.png}")
    return 0


def _plot(rows: list[tuple[str, int, dict[str, Any], float]], path: Path, site: str,
          rate_per_gpu_h: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Okabe-Ito: no spares in vermillion, one spare per pod in blue
    colours = {0: "#D55E00", 1: "#0072B2"}
    policies = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    panels = [("time to resume, p50 (min)", lambda s, d: s["resume_min_p50"] or 0),
              ("work lost (GPU-h)", lambda s, d: s["work_lost_gpu_h"]),
              ("delivered (GPU-h x s)", lambda s, d: d)]
    width = 0.38
    for ax, (title, value) in zip(axes, panels):
        for k, spares in enumerate((0, 1)):
            xs = [i + (k - 0.5) * width for i in range(len(policies))]
            ys = [value(s, d) for p in policies for (q, sp, s, d) in rows
                  if q == p and sp == spares]
            bars = ax.bar(xs, ys, width, color=colours[spares],
                          label="no spares" if spares == 0 else "1 hot spare node per pod")
            ax.bar_label(bars, labels=[_short(y) for y in ys], fontsize=7, padding=2)
        ax.set_xticks(range(len(policies)), policies)
        ax.set_title(title, fontsize=9)
        ax.margins(y=0.18)
        ax.tick_params(labelsize=8)
        ax.yaxis.set_major_formatter(lambda y, _pos: _short(y))
        ax.spines[["top", "right"]].set_visible(False)
    axes[2].set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(f"{site}, {rate_per_gpu_h:.3g} failures per GPU-hour: what hot spares buy",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(value: float) -> str:
    """1,186,876 -> 1.19M, 89,467 -> 89.5k, 15 -> 15: bar labels that do not collide."""
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
