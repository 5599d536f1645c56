"""How the command line writes numbers, times, hostlists and tables for people."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Sequence

__all__ = ["power_unit", "energy_unit", "table", "utc", "hostlist", "short", "print_json"]


def power_unit(scale_w: float) -> tuple[str, float]:
    """("kW", 1e3) for a site that draws under 1 MW at full power, else ("MW", 1e6).

    A 64-GPU test site then reads "41.2 kW", not "0.0 MW"; every figure of one table
    uses the unit of the site's full power, so the columns line up.
    """
    return ("MW", 1e6) if abs(scale_w) >= 1e6 else ("kW", 1e3)


def energy_unit(scale_wh: float) -> tuple[str, float]:
    """("kWh", 1e3) below 1 MWh, else ("MWh", 1e6)."""
    return ("MWh", 1e6) if abs(scale_wh) >= 1e6 else ("kWh", 1e3)


def utc(unix_s: float | None) -> str:
    """A placement time as people read it, in UTC to the second; "-" when unknown."""
    if unix_s is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix_s))


def hostlist(names: Iterable[str]) -> str:
    """A compressed Slurm hostlist (``rack-1-n[0-1]``), the Slurm adapter's writer."""
    from ..adapters.slurm import compress_hostlist  # only commands that list nodes

    return compress_hostlist(names)


def short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in "..." when cut (0: never cut)."""
    if width <= 0 or len(text) <= width:
        return text
    return text[:max(0, width - 3)] + "..."


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
