"""Cluster spec files: TOML and JSON text to a raw dict and back.

Only the text is handled here; :mod:`gpusched.spec.schema` validates what it parses.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError

FORMATS = ("toml", "json")


def spec_format(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The path and its format (``"toml"`` or ``"json"``, by the file's extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise SpecError(f"cluster files end in .toml or .json, got {path.name!r}",
                        field="path")
    return path, suffix[1:]


def read_text(path: Path) -> str:
    """A spec file's text; unreadable or non-UTF-8 files raise :class:`SpecError`."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path} is not UTF-8 text: {exc}", field="path") from None
    except OSError as exc:
        raise SpecError(f"cannot read {str(path)!r}: {exc.strerror}", field="path") from None


def parse(text: str, format: str) -> Any:
    """Parse spec text in ``format`` ``"toml"`` or ``"json"`` to a raw (unchecked) value."""
    # NaN and Infinity parse (TOML has them, JSON files often do) so that the field
    # check rejects them naming the field, not a line and column.
    if format == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"invalid TOML: {exc}") from None
        except RecursionError:
            raise SpecError("invalid TOML: nested too deeply") from None
    elif format == "json":
        try:
            return json.loads(text)
        except ValueError as exc:  # JSONDecodeError, or an int of > 4300 digits
            raise SpecError(f"invalid JSON: {exc}") from None
        except RecursionError:
            raise SpecError("invalid JSON: nested too deeply") from None
    else:
        raise SpecError(f"format must be 'toml' or 'json', got {format!r}", field="format")


def dump(spec: dict[str, Any], format: str) -> str:
    """A public spec dict as ``format`` text."""
    if format == "json":
        return json.dumps(spec, indent=1)
    if format == "toml":
        return _dump_toml(spec)
    raise SpecError(f"format must be 'toml' or 'json', got {format!r}", field="format")


# ======================================================================================
# TOML writing (tomllib only reads); enough for the spec schema above
# ======================================================================================

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else f"{value:.1f}"
    if isinstance(value, str):
        # JSON string escapes are TOML's, except that TOML also forbids a raw DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _dump_toml(spec: dict[str, Any]) -> str:
    lines = [f"name = {_toml_value(spec['name'])}", ""]
    for table in ("power", "facility"):
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in spec[table].items())
        lines.append("")
    for key in ("halls", "rows", "pods", "racks", "limits"):
        for item in spec[key]:
            lines.append(f"[[{key}]]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
            lines.append("")
    return "\n".join(lines)

