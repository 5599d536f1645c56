"""index.html: the sweep on one page, linking every run's own report.

Each run links its ``report.html`` when the simulator wrote one, else its
``report.json`` and ``summary.md``; a failed run shows its error.  Plain HTML, no
script, every value escaped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

from .._atomic import write_atomic
from .spec import SweepSpec

__all__ = ["write_index"]

_SHOWN = ("delivered_gpu_hours", "fraction_of_bound", "energy_mwh", "jobs_done",
          "jct_mean_h", "peak_facility_mw", "violation_row_seconds", "wall_s")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.0f}"
    return html.escape(str(value))


def _links(out: Path, run_id: str) -> str:
    run_dir = out / "runs" / run_id
    names = ["report.html"] if (run_dir / "report.html").is_file() else [
        n for n in ("report.json", "summary.md") if (run_dir / n).is_file()]
    names.append("result.json")
    return " ".join(f'<a href="runs/{html.escape(run_id)}/{n}">{n}</a>' for n in names)


def write_index(spec: SweepSpec, rows: list[dict[str, Any]], summary: list[dict[str, Any]],
                group: Sequence[str], pictures: list[Path], out: Path) -> Path:
    axes = spec.axes or ["policy"]
    ok = sum(r["status"] == "ok" for r in rows)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>sweep {html.escape(spec.name)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td.l,th.l{text-align:left}tr.bad{background:#fdd}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>Sweep {html.escape(spec.name)}</h1>",
        f"<p>{len(rows)} runs: {ok} ok, {len(rows) - ok} failed or timed out. Tables: "
        "<a href='runs.csv'>runs.csv</a>, <a href='summary.csv'>summary.csv</a>, "
        "<a href='summary.md'>summary.md</a>.</p>",
    ]
    for picture in pictures:
        parts.append(f"<p><img src='{html.escape(picture.name)}' alt='{picture.stem}'></p>")
    parts.append("<h2>Summary (mean ± 95 % CI across seeds)</h2><table><tr>"
                 + "".join(f"<th class='l'>{html.escape(k)}</th>" for k in group)
                 + "<th>runs</th>" + "".join(f"<th>{m}</th>" for m in _SHOWN[:-1])
                 + "</tr>")
    for s in summary:
        cells = "".join(f"<td class='l'>{_cell(s.get(k))}</td>" for k in group)
        cells += f"<td>{s['runs']}" + (f" ({s['failed']} failed)" if s["failed"] else "") \
            + "</td>"
        for m in _SHOWN[:-1]:
            mean, ci = s.get(f"{m}_mean"), s.get(f"{m}_ci95")
            cells += f"<td>{_cell(mean)}" + (f" ± {_cell(ci)}" if ci else "") + "</td>"
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</table><h2>Every run</h2><table><tr><th class='l'>run</th>"
                 "<th class='l'>status</th>"
                 + "".join(f"<th class='l'>{html.escape(k)}</th>" for k in axes)
                 + "".join(f"<th>{m}</th>" for m in _SHOWN) + "<th class='l'>files</th></tr>")
    for r in rows:
        bad = r["status"] != "ok"
        status = html.escape(r["status"]) + (f": {html.escape(str(r.get('error')))}"
                                              if bad else "")
        parts.append(
            f"<tr{' class=bad' if bad else ''}><td class='l'>{html.escape(r['run'])}</td>"
            f"<td class='l'>{status}</td>"
            + "".join(f"<td class='l'>{_cell(r.get(k))}</td>" for k in axes)
            + "".join(f"<td>{_cell(r.get(m))}</td>" for m in _SHOWN)
            + f"<td class='l'>{_links(out, r['run'])}</td></tr>")
    parts.append("</table></body></html>\n")
    path = out / "index.html"
    write_atomic(path, "\n".join(parts).encode("utf-8"))
    return path
