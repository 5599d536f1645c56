"""Spec validation: check a raw dict field by field, fill defaults, resolve names.

An error names the field as a dotted path (``racks[3].feed_w``) and says what would be
valid.  :func:`_normalise` returns the spec with private ``_``-keys (indices, the
:class:`~gpusched.power.PowerModel`) that :class:`~gpusched.spec.Cluster` reads.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import SpecError
from ..power import PowerModel
from .constraints import _MAX_LIMIT_W, COEF_SCALE, RACK_KINDS, ROW_KINDS

# ======================================================================================
# Validation helpers
# ======================================================================================

def _need(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise SpecError("is missing", field=f"{where}.{key}" if where else key)
    return mapping[key]


def _check_keys(mapping: Any, allowed: Iterable[str], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise SpecError(f"must be a table/object, got {type(mapping).__name__}",
                        field=where or "(top level)")
    allowed = set(allowed)
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        # the field is the first unknown key itself, so a tool can point at it
        raise SpecError(f"unknown key(s) {unknown}; valid keys are {sorted(allowed)}",
                        field=f"{where}.{unknown[0]}" if where else unknown[0])


def _ref(value: Any, index: Mapping[str, int], what: str, where: str) -> str:
    """``value`` as the name of one of ``index``'s items, or SpecError naming ``where``."""
    if not isinstance(value, str) or value not in index:
        raise SpecError(f"names {what} {value!r}, which is not in {what}s ({_few(index)})",
                        field=where)
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise SpecError(f"must be a non-empty string of at most 200 characters, got {value!r}",
                        field=where)
    try:
        value.encode("utf-8")  # every spec file, snapshot and wire format is UTF-8
    except UnicodeEncodeError as exc:
        raise SpecError(f"must be text that UTF-8 can encode, got {value!r} (a lone surrogate "
                        f"{value[exc.start]!r} at position {exc.start})", field=where) from None
    return value


def _watts(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SpecError(f"must be a number of watts, got {value!r}", field=where)
    if isinstance(value, (int, np.integer)) and abs(int(value)) > _MAX_LIMIT_W:
        # checked before float(): an int of 400 digits (valid JSON) would overflow it
        raise SpecError(f"must be in [0, {_MAX_LIMIT_W:g}], got {value!r}", field=where)
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"must be finite, got {value!r}", field=where)
    if value < 0:
        raise SpecError(f"must be >= 0 (a limit), got {value!r}", field=where)
    if value > _MAX_LIMIT_W:
        raise SpecError(f"must be at most {_MAX_LIMIT_W:g}, got {value!r}", field=where)
    return value


def _coefficient(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SpecError(f"must be a number, got {value!r}", field=where)
    if isinstance(value, (int, np.integer)) and abs(int(value)) > 1000:
        raise SpecError(f"must be a finite number in [0, 1000], got {value!r}", field=where)
    value = float(value)
    if not math.isfinite(value) or not 0 <= value <= 1000:
        raise SpecError(f"must be a finite number in [0, 1000], got {value!r}", field=where)
    if abs(round(value * COEF_SCALE) - value * COEF_SCALE) > 1e-6 * max(1.0, value * COEF_SCALE):
        raise SpecError(f"must be a multiple of 1e-6 (the engine's integer resolution), "
                        f"got {value!r}", field=where)
    return value


def _count(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpecError(f"must be a whole number, got {value!r}", field=where)
    if not lo <= value <= hi:
        raise SpecError(f"must be in [{lo}, {hi}], got {value!r}", field=where)
    return int(value)


def _list(spec: Mapping[str, Any], key: str, *, required: bool = True) -> list[Any]:
    if key not in spec:
        if required:
            raise SpecError("is missing (a list of tables)", field=key)
        return []
    value = spec[key]
    if not isinstance(value, list):
        raise SpecError(f"must be a list of tables, got {type(value).__name__}", field=key)
    return value


def _index_by_name(items: list[Any], key: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        name = _name(item.get("name") if isinstance(item, Mapping) else None, f"{key}[{i}].name")
        if name in index:
            raise SpecError(f"duplicate name {name!r} (also {key}[{index[name]}])",
                            field=f"{key}[{i}].name")
        index[name] = i
    return index


_SPEC_KEYS = ("name", "power", "facility", "halls", "rows", "pods", "racks", "limits")
_FACILITY_KEYS = ("name", "it_limit_w")
_HALL_KEYS = ("name", "switchboard_w", "cooling_w")
_ROW_KEYS = ("name", "hall", "busway_w")
_POD_KEYS = ("name",)
_RACK_KEYS = ("name", "row", "pod", "kind", "nodes", "feed_w", "cdu_w", "liquid_fraction",
              "residual_air_w", "air_cooling_w", "node_names")
_LIMIT_KEYS = ("name", "kind", "limit", "coefficients")

# ======================================================================================
# Spec normalisation: validate a raw dict, fill defaults, resolve names to indices
# ======================================================================================

def _normalise(raw: Mapping[str, Any]) -> dict[str, Any]:
    _check_keys(raw, _SPEC_KEYS, "")
    name = _name(raw.get("name", "cluster"), "name")
    power_raw = raw.get("power", {})
    _check_keys(power_raw, PowerModel.__dataclass_fields__, "power")
    power = PowerModel(**power_raw)

    facility_raw = _need(raw, "facility", "")
    _check_keys(facility_raw, _FACILITY_KEYS, "facility")
    facility = {"name": _name(facility_raw.get("name", "facility"), "facility.name"),
                "it_limit_w": _watts(_need(facility_raw, "it_limit_w", "facility"),
                                     "facility.it_limit_w")}

    halls_raw = _list(raw, "halls")
    hall_index = _index_by_name(halls_raw, "halls")
    halls = []
    for i, hall in enumerate(halls_raw):
        _check_keys(hall, _HALL_KEYS, f"halls[{i}]")
        sw = _watts(_need(hall, "switchboard_w", f"halls[{i}]"), f"halls[{i}].switchboard_w")
        halls.append({"name": hall["name"], "switchboard_w": sw,
                      "cooling_w": _watts(hall.get("cooling_w", sw), f"halls[{i}].cooling_w")})

    rows_raw = _list(raw, "rows")
    row_index = _index_by_name(rows_raw, "rows")
    rows = []
    for i, row in enumerate(rows_raw):
        _check_keys(row, _ROW_KEYS, f"rows[{i}]")
        hall = _ref(_need(row, "hall", f"rows[{i}]"), hall_index, "hall", f"rows[{i}].hall")
        rows.append({"name": row["name"], "hall": hall, "_hall": hall_index[hall],
                     "busway_w": _watts(_need(row, "busway_w", f"rows[{i}]"),
                                        f"rows[{i}].busway_w")})

    pods_raw = _list(raw, "pods")
    pod_index = _index_by_name(pods_raw, "pods")
    for i, pod in enumerate(pods_raw):
        _check_keys(pod, _POD_KEYS, f"pods[{i}]")
    pods = [{"name": p["name"]} for p in pods_raw]

    racks_raw = _list(raw, "racks")
    if not racks_raw:
        raise SpecError("must hold at least one rack", field="racks")
    if len(racks_raw) > 1_000_000:
        raise SpecError(f"at most 1,000,000 racks, got {len(racks_raw)}", field="racks")
    _index_by_name(racks_raw, "racks")
    racks = []
    total_nodes = 0
    node_names_seen: dict[str, str] = {}  # explicit node name -> its field
    for i, rack in enumerate(racks_raw):
        where = f"racks[{i}]"
        _check_keys(rack, _RACK_KEYS, where)
        row = rack.get("row")
        if row is None:
            raise SpecError("is missing: every rack must be in a row (its power feed)",
                            field=f"{where}.row")
        row = _ref(row, row_index, "row", f"{where}.row")
        pod = _ref(_need(rack, "pod", where), pod_index, "pod", f"{where}.pod")
        kind = rack.get("kind", "liquid")
        if kind not in RACK_KINDS:
            raise SpecError(f"must be one of {RACK_KINDS}, got {kind!r}", field=f"{where}.kind")
        nodes = _count(_need(rack, "nodes", where), f"{where}.nodes", 1, 1024)
        total_nodes += nodes
        if total_nodes > 2_000_000:
            raise SpecError("more than 2,000,000 nodes in all", field=f"{where}.nodes")
        out = {"name": rack["name"], "row": row, "pod": pod, "kind": kind, "nodes": nodes,
               "_row": row_index[row], "_pod": pod_index[pod],
               "feed_w": _watts(_need(rack, "feed_w", where), f"{where}.feed_w")}
        if kind == "liquid":
            for key in ("air_cooling_w",):
                if key in rack:
                    raise SpecError("applies to air racks only", field=f"{where}.{key}")
            phi = _coefficient(rack.get("liquid_fraction", 0.88), f"{where}.liquid_fraction")
            if not 0 <= phi <= 1:
                raise SpecError(f"must be in [0, 1], got {phi}", field=f"{where}.liquid_fraction")
            out["liquid_fraction"] = phi
            out["cdu_w"] = _watts(_need(rack, "cdu_w", where), f"{where}.cdu_w")
            out["residual_air_w"] = _watts(_need(rack, "residual_air_w", where),
                                           f"{where}.residual_air_w")
        else:
            for key in ("cdu_w", "liquid_fraction", "residual_air_w"):
                if key in rack:
                    raise SpecError("applies to liquid racks only", field=f"{where}.{key}")
            out["air_cooling_w"] = _watts(_need(rack, "air_cooling_w", where),
                                          f"{where}.air_cooling_w")
        if "node_names" in rack:
            names = rack["node_names"]
            if not isinstance(names, list) or len(names) != nodes:
                raise SpecError(f"must be a list of {nodes} names (one per node)",
                                field=f"{where}.node_names")
            for k, node_name in enumerate(names):
                _name(node_name, f"{where}.node_names[{k}]")
                if node_name in node_names_seen:
                    raise SpecError(f"duplicate node name {node_name!r} (also "
                                    f"{node_names_seen[node_name]})",
                                    field=f"{where}.node_names[{k}]")
                node_names_seen[node_name] = f"{where}.node_names[{k}]"
            out["node_names"] = list(names)
        racks.append(out)

    _check_default_names(racks, node_names_seen)

    used_pods = {r["_pod"] for r in racks}
    for i, pod in enumerate(pods):
        if i not in used_pods:
            raise SpecError(f"pod {pod['name']!r} holds no rack; remove it or put racks in it",
                            field=f"pods[{i}]")

    limits = []
    for j, limit in enumerate(_list(raw, "limits", required=False)):
        where = f"limits[{j}]"
        _check_keys(limit, _LIMIT_KEYS, where)
        kind = limit.get("kind", "thermal")
        if kind not in ROW_KINDS:
            raise SpecError(f"must be one of {ROW_KINDS}, got {kind!r}", field=f"{where}.kind")
        coefs = _need(limit, "coefficients", where)
        if not isinstance(coefs, Mapping) or not coefs:
            raise SpecError("must be a non-empty table of rack name -> coefficient",
                            field=f"{where}.coefficients")
        limits.append({
            "name": _name(_need(limit, "name", where), f"{where}.name"), "kind": kind,
            "limit": _watts(_need(limit, "limit", where), f"{where}.limit"),
            "coefficients": {str(k): _coefficient(v, f"{where}.coefficients.{k}")
                             for k, v in coefs.items()},
        })

    return {"name": name, "_power": power, "power": power.to_dict(), "facility": facility,
            "halls": halls, "rows": rows, "pods": pods, "racks": racks, "limits": limits}


_DEFAULT_NODE_NAME = re.compile(r"(.*)-n(0|[1-9][0-9]*)", re.DOTALL)


def _check_default_names(racks: list[dict[str, Any]], explicit: Mapping[str, str]) -> None:
    """Refuse an explicit node name equal to another rack's default ``<rack>-n<i>``.

    Default names are unique among themselves (rack names are, and ``<rack>-n<i>`` splits
    back into its rack and index at the last ``-n``), and explicit names were checked
    among themselves; so only explicit names of the default form need a look, and no set
    of all (up to 2,000,000) default names is built.
    """
    by_name = {r["name"]: (i, r) for i, r in enumerate(racks)}
    for node_name, field in explicit.items():
        match = _DEFAULT_NODE_NAME.fullmatch(node_name)
        if match is None or match.group(1) not in by_name:
            continue
        i, rack = by_name[match.group(1)]
        if "node_names" not in rack and int(match.group(2)) < rack["nodes"]:
            raise SpecError(f"duplicate node name {node_name!r}: it is also the default name "
                            f"of node {match.group(2)} of racks[{i}] ({rack['name']!r}, which "
                            "has no node_names); node names must be unique across the site",
                            field=field)


def _few(index: Mapping[str, int]) -> str:
    names = list(index)
    shown = ", ".join(repr(n) for n in names[:5])
    return shown + (f", ... {len(names)} in all" if len(names) > 5 else "") if names else "none"


def _public(value: Any) -> Any:
    """Strip the private ``_``-keys normalisation added."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value

