"""gpusched jobs: the placed jobs, like squeue.

One line a job: its GPUs and nodes (as a Slurm hostlist), the cap it runs at and the
range it accepts, its priority when jobs carry one, when it was placed (UTC; "-" when
the source does not record it) and its state: "placed", "degraded (lost N nodes)" after
a node failure until it is repaired, or "reserved" for a Kubernetes
gang whose pods are still binding.  Sorted by id unless --sort says otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._format import print_json, short_hostlist, table, utc
from ._job import placement_summary
from ._site import SiteView, add_site_arguments, open_view

__all__ = ["add_arguments", "run", "job_rows"]

EXAMPLES = """
gpusched jobs --state st.json
gpusched jobs --state st.json train-a eval-1 --long
gpusched jobs --server http://127.0.0.1:8787 --sort gpus --json
"""

HOSTLIST_WIDTH = 40
"""Hostlist characters shown in the table; --long shows all (a 4,096-GPU gang's list
runs to about a kilobyte)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="*", metavar="JOB",
                        help="only these jobs (default: every placed job)")
    add_site_arguments(parser)
    parser.add_argument("--sort", choices=["id", "gpus", "since", "cap"], default="id",
                        help="order of the lines (gpus and cap: largest first)")
    parser.add_argument("--long", action="store_true",
                        help=f"full hostlists (default: cut to about {HOSTLIST_WIDTH} characters, "
                             "saying how many entries are left out)")
    parser.add_argument("--json", action="store_true", help="print the jobs as JSON")


def job_rows(view: SiteView, only: list[str] | None = None, sort: str = "id"
             ) -> list[dict[str, Any]]:
    """One dict a placed job; ``priority`` only when the job has one."""
    names = view.cluster.node_names
    out = []
    for job, p in zip(view.engine.jobs(), view.engine.placements()):
        if only and job.id not in only:
            continue
        row = placement_summary(job.id, [names[n] for n in p.nodes], p.gpus_per_node,
                                p.cap_w)
        row.update(min_cap_w=job.min_cap_w, max_cap_w=job.max_cap_w)
        priority = getattr(job, "priority", None)
        if priority is not None:
            row["priority"] = priority
        row["since"] = view.placed_at.get(job.id)
        row["state"] = "reserved" if job.id in view.reserved else "placed"
        lost = view.engine.lost_nodes(job.id)
        if lost:   # a failure took nodes: it holds what survived until repaired
            row["state"] = f"degraded (lost {len(lost)} node{'s' if len(lost) > 1 else ''})"
            row["lost_nodes"] = [names[n] for n in lost]
        if job.id in view.reserved:
            row["detail"] = view.reserved[job.id]
        out.append(row)
    keys = {"id": lambda r: (r["job_id"],),
            "gpus": lambda r: (-r["gpus"], r["job_id"]),
            "cap": lambda r: (-r["cap_w"], r["job_id"]),
            "since": lambda r: (r["since"] is None, r["since"] or 0, r["job_id"])}
    return sorted(out, key=keys[sort])


def render(rows: list[dict[str, Any]], long: bool = False) -> str:
    with_priority = any("priority" in r for r in rows)
    headers = ["JOB", "GPUS", "NODES", "HOSTLIST", "CAP W", "RANGE W"] + \
        (["PRIORITY"] if with_priority else []) + ["SINCE (UTC)", "STATE"]
    lines = []
    for r in rows:
        line = [r["job_id"], f"{r['gpus']:,}", f"{r['node_count']:,}",
                short_hostlist(r["hostlist"], 0 if long else HOSTLIST_WIDTH), r["cap_w"],
                (f"{r['min_cap_w']}" if r["min_cap_w"] == r["max_cap_w"]
                 else f"{r['min_cap_w']}..{r['max_cap_w']}")]
        if with_priority:
            line.append(r.get("priority"))
        line += [utc(r["since"]), r["state"]]
        lines.append(line)
    return table(headers, lines, left=(0, 3, len(headers) - 2, len(headers) - 1))


def run(args: argparse.Namespace) -> int:
    view = open_view(args)
    unknown = [j for j in args.job_ids if j not in view.engine]
    rows = job_rows(view, args.job_ids or None, args.sort)
    if args.json:
        print_json({"jobs": rows, "unknown": unknown})
    else:
        if rows:
            print(render(rows, args.long))
        else:
            print(f"no placed jobs in {view.where}" if not args.job_ids else
                  "none of these jobs is placed")
        for j in unknown:
            print(f"not placed: {j}")
    return 0
