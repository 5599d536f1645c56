"""How the command line writes numbers, times, hostlists and tables for people."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Sequence

from .._units import energy_unit, power_unit  # re-exported for the subcommands

__all__ = ["power_unit", "power_text", "energy_unit", "table", "utc", "hostlist",
           "short_hostlist", "print_json"]


def utc(unix_s: float | None) -> str:
    """A placement time as people read it, in UTC to the second; "-" when unknown."""
    if unix_s is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix_s))


def hostlist(names: Iterable[str]) -> str:
    """A compressed Slurm hostlist (``rack-1-n[0-1]``), the Slurm adapter's writer."""
    from ..adapters.slurm import compress_hostlist  # only commands that list nodes

    return compress_hostlist(names)


def power_text(watts: float, unit: str, per: float) -> str:
    """``watts`` in ``unit``: two decimals in MW (a 600 kW row reads 0.60, not 0.6), one
    in kW."""
    return f"{watts / per:,.{2 if unit == 'MW' else 1}f}"


def _top_level_parts(expr: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    return parts + [expr[start:]]


def short_hostlist(expr: str, width: int) -> str:
    """A hostlist cut to about ``width`` characters at a whole entry, saying how many
    entries are left out ("rack-1-n[0-7],+63 more"); 0 never cuts."""
    if width <= 0 or len(expr) <= width:
        return expr
    parts = _top_level_parts(expr)
    kept: list[str] = []
    for part in parts:
        if kept and len(",".join(kept + [part])) + len(",+999 more") > width:
            break
        kept.append(part)
    return ",".join(kept) + f",+{len(parts) - len(kept)} more"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          left: Sequence[int] = (0,)) -> str:
    """A plain text table: columns padded to their widest cell, numbers right-aligned.

    ``left`` lists the column indices aligned left (names); the rest align right.
    """
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row]
                                           for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.ljust(w) if i in left else c.rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def print_json(value: Any) -> None:
    """One JSON document on stdout, keys in a stable order, for scripts and jq."""
    print(json.dumps(value, indent=1, sort_keys=False, allow_nan=False))
