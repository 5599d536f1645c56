"""gpusched status: the site at a glance, like sinfo.

Per hall and per row: GPUs busy and free, the power drawn against the limit that binds
there (a hall's switchboard or cooling plant, whichever is lower; a row's busway), the
share of it used and the headroom left.  Then the tightest rows of the whole constraint
system A·P <= b (any kind: rack feeds, CDUs, rows, halls, the facility).  Power is in kW
on a site that draws under 1 MW at full power, else MW.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._format import power_text, power_unit, print_json, table
from ._site import SiteView, add_site_arguments, open_view

__all__ = ["add_arguments", "run", "site_status"]

EXAMPLES = """
gpusched status --state st.json
gpusched status --state st.json --rows all --top 10
gpusched status --server http://127.0.0.1:8787 --json | jq .facility
"""

AUTO_ROWS = 32
"""Sites with at most this many rows list every row; bigger ones their --top tightest."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_site_arguments(parser)
    parser.add_argument("--rows", choices=["auto", "all", "tight", "none"], default="auto",
                        help="rows to list under their halls: all, the --top tightest, or "
                             f"none (default auto: all up to {AUTO_ROWS} rows, else tight)")
    parser.add_argument("--top", type=int, default=5, metavar="N",
                        help="how many tightest rows to list (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="print every hall and row as JSON (ignores --rows)")


def _down_gpus(view: SiteView) -> Any:
    """Free GPUs per node that is not up (draining, down, or a hot spare): no job can
    take them.  None while every node is up, so the DOWN column appears only when some
    node is not."""
    codes = view.engine.node_state_codes()
    if not codes.any():
        return None
    return view.engine.node_free_gpus() * (codes != 0)


def _load(name: str, load_w: float, limit_w: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, **extra, "load_w": round(load_w, 1), "limit_w": round(limit_w, 1),
            "used": round(load_w / limit_w, 4) if limit_w > 0 else None,
            "headroom_w": round(limit_w - load_w, 1)}


def site_status(view: SiteView, top: int = 5) -> dict[str, Any]:
    """Every hall and row of the site, and its ``top`` tightest constraint rows."""
    import numpy as np

    cluster, engine = view.cluster, view.engine
    c = cluster.constraints
    b = engine.limits_w()   # live limits: a curtailment shows against its new limit
    G = cluster.gpus_per_node
    free_node = engine.node_free_gpus().astype(np.int64)
    rack_free = np.bincount(cluster.node_rack, weights=free_node,
                            minlength=cluster.num_racks).astype(np.int64)
    rack_gpus = cluster.rack_nodes.astype(np.int64) * G
    down_node = _down_gpus(view)
    rack_down = (None if down_node is None else
                 np.bincount(cluster.node_rack, weights=np.asarray(down_node),
                             minlength=cluster.num_racks).astype(np.int64))
    load = c.A @ engine.rack_power_w().astype(float)
    index = {name: i for i, name in enumerate(c.names)}

    def gpus(racks: Any) -> dict[str, int]:
        total, free = int(rack_gpus[racks].sum()), int(rack_free[racks].sum())
        out = {"gpus": total, "busy": total - free, "free": free}
        if rack_down is not None:   # free GPUs on nodes that are not up are not free
            down = int(rack_down[racks].sum())
            out.update(free=free - down, down=down)
        return out

    halls = []
    for h, hall in enumerate(cluster.hall_names):
        rows_here = [index[n] for n in (f"{hall} switchboard", f"{hall} cooling plant")
                     if n in index]
        i = max(rows_here, key=lambda r: load[r] / max(b[r], 1e-9))
        halls.append(_load(hall, float(load[i]), float(b[i]), limit=c.names[i],
                           **gpus(cluster.rack_hall == h)))
    rows = []
    for r, row in enumerate(cluster.row_names):
        i = index[f"{row} busway"]
        hall = cluster.hall_names[int(cluster.rack_hall[np.flatnonzero(cluster.rack_row == r)[0]])]
        rows.append(_load(row, float(load[i]), float(b[i]), hall=hall,
                          **gpus(cluster.rack_row == r)))
    used = load / np.maximum(b, 1e-9)
    tight = np.argsort(-used, kind="stable")[:max(0, top)]
    f = c.kinds.index("facility")
    full_w = float(cluster.full_rack_power_w(cluster.power.cap_max_w).sum())
    return {
        "cluster": cluster.name, "where": view.where, "jobs": len(engine),
        "full_power_w": round(full_w, 1),
        **gpus(np.arange(cluster.num_racks)),
        "facility": _load(c.names[f], float(load[f]), float(b[f])),
        "halls": halls, "rows": rows,
        "tightest": [_load(c.names[i], float(load[i]), float(b[i]), kind=c.kinds[i])
                     for i in tight],
    }


def _pct(used: float | None) -> str:
    return "-" if used is None else f"{used:.1%}"


def render(status: dict[str, Any], rows_mode: str = "auto", top: int = 5) -> str:
    """The human tables of ``site_status``."""
    fac = status["facility"]
    unit, per = power_unit(status["full_power_w"])
    has_down = "down" in status
    down = f", {status['down']:,} down" if has_down else ""
    head = (f"{status['cluster']} ({status['where']}): {status['jobs']:,} "
            f"job{'' if status['jobs'] == 1 else 's'}; "
            f"{status['busy']:,} of {status['gpus']:,} GPUs busy, {status['free']:,} free"
            f"{down}; {power_text(fac['load_w'], unit, per)} of "
            f"{power_text(fac['limit_w'], unit, per)} {unit} "
            f"{fac['name']} ({_pct(fac['used'])}), {power_text(fac['headroom_w'], unit, per)} {unit} "
            "headroom")
    if rows_mode == "auto":
        rows_mode = "all" if len(status["rows"]) <= AUTO_ROWS else "tight"
    rows = status["rows"]
    if rows_mode == "tight":
        rows = sorted(rows, key=lambda r: -(r["used"] or 0))[:max(0, top)]
    elif rows_mode == "none":
        rows = []
    shown = {r["name"] for r in rows}

    def cells(item: dict[str, Any], hall: str, row: str) -> list[Any]:
        out = [hall, row, f"{item['gpus']:,}", f"{item['busy']:,}", f"{item['free']:,}"]
        if has_down:
            out.append(f"{item['down']:,}")
        return out + [power_text(item['load_w'], unit, per), power_text(item['limit_w'], unit, per),
                      _pct(item["used"]), power_text(item['headroom_w'], unit, per)]

    headers = ["HALL", "ROW", "GPUS", "BUSY", "FREE"] + (["DOWN"] if has_down else []) + \
        [f"LOAD {unit}", f"LIMIT {unit}", "USED", f"HEADROOM {unit}"]
    lines = []
    for hall in status["halls"]:
        lines.append(cells(hall, hall["name"], ""))
        lines += [cells(r, "", r["name"]) for r in status["rows"]
                  if r["hall"] == hall["name"] and r["name"] in shown]
    out = [head, "", table(headers, lines, left=(0, 1))]
    if rows_mode == "tight" and len(status["rows"]) > len(rows):
        out.append(f"({len(rows)} tightest of {len(status['rows'])} rows; --rows all lists "
                   "every row)")
    if status["tightest"]:
        tight = [[t["name"], t["kind"], power_text(t['load_w'], unit, per),
                  power_text(t['limit_w'], unit, per), _pct(t["used"]),
                  power_text(t['headroom_w'], unit, per)] for t in status["tightest"]]
        out += ["", table(["TIGHTEST LIMIT", "KIND", f"LOAD {unit}", f"LIMIT {unit}", "USED",
                           f"HEADROOM {unit}"], tight, left=(0, 1))]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    if args.top < 0:
        from ..errors import UsageError

        raise UsageError(f"--top {args.top} must be 0 or more", field="top")
    status = site_status(open_view(args), top=args.top)
    if args.json:
        print_json(status)
    else:
        print(render(status, args.rows, args.top))
    return 0
