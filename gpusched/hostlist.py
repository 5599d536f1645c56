"""Slurm hostlist expressions written from node names (``gpu[0001-0003,0007]``).

A base-layer module (it imports nothing of gpusched) so every layer can write compact
node lists: the simulator's per-job records, the CLI's tables, the Slurm adapter (which
also parses them: ``gpusched.adapters.slurm.expand_hostlist``).
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["compress_hostlist"]

# ASCII digits only: a name ending in "١" is a plain name, not host number 1.
_TRAILING_NUMBER = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$")


def compress_hostlist(names: Iterable[str]) -> str:
    """A hostlist expression for ``names`` (sorted, ranges merged, zero padding kept).

    ``["gpu0001", "gpu0002", "gpu0003", "gpu0007"]`` -> ``"gpu[0001-0003,0007]"``.
    The last run of digits in a name is the one ranged over; names whose numbers have
    different zero-padded widths go into separate brackets so padding survives.
    """
    groups: dict[tuple[str, str, int], set[int]] = {}
    plain: set[str] = set()
    split: list[tuple[str, str, str]] = []
    padded: set[tuple[str, str, int]] = set()
    for name in names:
        match = _TRAILING_NUMBER.match(name)
        if match is None:
            plain.add(name)
            continue
        prefix, digits, suffix = match.groups()
        split.append((prefix, digits, suffix))
        if digits.startswith("0") and len(digits) > 1:
            padded.add((prefix, suffix, len(digits)))
    for prefix, digits, suffix in split:
        # "1000" joins the gpu[0001-...] group of width 4: Slurm pads a range to the
        # width of its lower bound, so gpu[0999-1000] expands to both names.
        width = len(digits) if (prefix, suffix, len(digits)) in padded else 0
        groups.setdefault((prefix, suffix, width), set()).add(int(digits))
    parts = sorted(plain)
    for (prefix, suffix, width), numbers in sorted(groups.items()):
        ordered = sorted(numbers)
        ranges: list[tuple[int, int]] = []
        for n in ordered:
            if ranges and n == ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], n)
            else:
                ranges.append((n, n))
        def fmt(n: int) -> str:
            return str(n).zfill(width)
        if len(ordered) == 1:
            parts.append(f"{prefix}{fmt(ordered[0])}{suffix}")
            continue
        body = ",".join(fmt(a) if a == b else f"{fmt(a)}-{fmt(b)}" for a, b in ranges)
        parts.append(f"{prefix}[{body}]{suffix}")
    return ",".join(parts)
