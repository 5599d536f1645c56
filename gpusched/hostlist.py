"""Slurm hostlist expressions: count, expand and compress them (``gpu[0001-0512]``).

In the base layer because every layer writes them: the simulator's jobs.csv, the
service's replies, the command line and the Slurm adapter (which re-exports them).

Slurm's rules (``scontrol show hostnames``): comma-separated names, each with brackets of
ranges; a range with a leading 0 pads to the width of its lower bound.  Only ASCII digits
are numbers.  Counts are taken before anything is expanded, so a short expression cannot
make us build more names than :data:`MAX_HOSTS`.
"""

from __future__ import annotations

import itertools
import re
from typing import Iterable

from .errors import SpecError

__all__ = ["MAX_HOSTS", "expand_hostlist", "hostlist_size", "compress_hostlist",
           "NAME_SPECIALS", "check_host_name"]


#: Most hosts one hostlist may name, and most one topology.conf (or one overlay's rows,
#: or its rack groups) may name in all.  Every count is taken before anything is
#: expanded, so a short expression cannot make the importer build more names than this.
MAX_HOSTS = 2_000_000
#: Most digits of one number in a bracket: 18 digits fit an int64, and no site numbers
#: its hosts past that.
_MAX_DIGITS = 18
_ASCII_NUMBER = re.compile(r"[0-9]+")
NAME_SPECIALS = "[], \t="

# A parsed hostlist: its comma-separated parts, each a sequence of pieces; a piece is a
# literal (str) or a bracket, a list of (first, last, width) ranges.
_Bracket = list[tuple[int, int, int]]
_Part = list["str | _Bracket"]


def _split_top(expr: str) -> list[str]:
    """Split at commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise SpecError(f"nested '[' in hostlist {expr!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise SpecError(f"']' without '[' in hostlist {expr!r}")
        elif ch == "," and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    if depth:
        raise SpecError(f"'[' without ']' in hostlist {expr!r}")
    parts.append(expr[start:])
    return parts


def _number(text: str, item: str, expr: str) -> int:
    # str.isdigit() and int() also take '²' and '١': Slurm reads only ASCII 0-9.
    if not _ASCII_NUMBER.fullmatch(text):
        raise SpecError(f"range {item!r} in hostlist {expr!r} is not N or N-M with "
                        "ASCII digits 0-9")
    if len(text) > _MAX_DIGITS:
        raise SpecError(f"number {text!r} in hostlist {expr!r} has {len(text)} digits; "
                        f"at most {_MAX_DIGITS} are read")
    return int(text)


def _parse_bracket(body: str, expr: str) -> _Bracket:
    ranges: _Bracket = []
    for item in body.split(","):
        lo, dash, hi = item.partition("-")
        start = _number(lo, item, expr)
        stop = _number(hi, item, expr) if dash else start
        if stop < start:
            raise SpecError(f"range {item!r} in hostlist {expr!r} runs backwards")
        # Slurm pads every number to the width of the lower bound when it has a leading 0.
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        ranges.append((start, stop, width))
    return ranges


def _check_literal(piece: str, expr: str) -> str:
    for ch in piece:
        # Whitespace of any kind (U+2028, U+0085, ...) and control characters are no part
        # of a host name; a name holding one could not be written back on a Slurm line.
        if ch in NAME_SPECIALS or ch.isspace() or not ch.isprintable():
            raise SpecError(f"bad character {ch!r} in host name {piece!r} of hostlist "
                            f"{expr!r}")
    return piece


def check_host_name(name: str, where: str) -> str:
    """``name`` if Slurm can write it in a hostlist; SpecError naming ``where`` if not."""
    if not isinstance(name, str) or not name:
        raise SpecError(f"host name {name!r} is empty", field=where)
    try:
        return _check_literal(name, name)
    except SpecError as exc:
        raise SpecError(str(exc), field=where) from None


def _parse_hostlist(expr: object) -> list[_Part]:
    # Only ASCII blanks are trimmed: str.strip() would also drop a trailing U+0085.
    if not isinstance(expr, str) or not expr.strip(" \t"):
        raise SpecError(f"hostlist {expr!r} is empty; write names like gpu[0001-0512]")
    parts: list[_Part] = []
    for part in _split_top(expr.strip(" \t")):
        if not part:
            raise SpecError(f"empty name in hostlist {expr!r}")
        pieces: _Part = []
        for piece in re.split(r"(\[[^\]]*\])", part):
            if piece.startswith("["):
                pieces.append(_parse_bracket(piece[1:-1], expr))
            elif piece:
                pieces.append(_check_literal(piece, expr))
        parts.append(pieces)
    return parts


def _part_size(pieces: _Part) -> int:
    size = 1
    for piece in pieces:
        if not isinstance(piece, str):
            size *= sum(stop - start + 1 for start, stop, _ in piece)
    return size


def hostlist_size(expr: str) -> int:
    """How many names ``expr`` stands for, counted without expanding it.

    The count is exact (Python integers), so ``a[1-1999999]b[1-1999999]`` gives
    3,999,996,000,001 at once.  Raises :class:`SpecError` for a malformed expression.
    """
    return sum(_part_size(pieces) for pieces in _parse_hostlist(expr))


def expand_hostlist(expr: str, *, max_hosts: int | None = None) -> list[str]:
    """Names in a Slurm hostlist expression, in order (``gpu[01-03,07]`` -> 4 names).

    The names are counted first (the sum over a bracket's ranges, the product over a
    name's brackets, the sum over its comma-separated parts); an expression naming more
    than ``max_hosts`` hosts (default 2,000,000) is refused before any name is built.

    Raises
    ------
    SpecError
        Unbalanced or nested brackets, empty names, backwards ranges, numbers that are not
        ASCII digits, or more than ``max_hosts`` names.
    """
    if max_hosts is None:
        max_hosts = MAX_HOSTS
    parts = _parse_hostlist(expr)
    total = sum(_part_size(pieces) for pieces in parts)
    if total > max_hosts:
        raise SpecError(f"hostlist {expr!r} names {total:,} hosts; at most {max_hosts:,} "
                        "are read")
    names: list[str] = []
    for pieces in parts:
        options = [[piece] if isinstance(piece, str) else
                   [str(n).zfill(width) for start, stop, width in piece
                    for n in range(start, stop + 1)] for piece in pieces]
        names.extend("".join(combo) for combo in itertools.product(*options))
    return names


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


