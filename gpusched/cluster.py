"""The spec layer: a Cluster is topology arrays plus ONE constraint system A·P <= b.

P is the vector of rack powers in watts.  Every limit the site has, electrical or
thermal, is a row of A with a name and a kind; the engine, the scipy allocator, the
verifier and the reports all read this one system and nobody re-derives a limit.

A cluster is built from a plain dict (the same shape TOML and JSON files parse to),
validated field by field: an error names the field as a dotted path and says what
would be valid.  Presets build such a dict.  See ``shared/physics.md`` §2 for where
each preset number comes from.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import scipy.sparse as sp

from .errors import SpecError
from .power import PowerModel

__all__ = ["Cluster", "Constraints", "ROW_KINDS", "RACK_KINDS", "COEF_SCALE", "PRESETS"]

#: Kinds of constraint rows.  ``thermal`` rows (inlet temperature, D·P <= T_red - T_sup,
#: Tang et al. 2008) come only from a spec's extra ``limits``.
ROW_KINDS = ("rack-feed", "row", "hall", "facility", "cdu", "rack-air", "air-cooling",
             "hall-cooling", "thermal")
#: Rack cooling kinds: direct liquid cooling with a CDU, or air.
RACK_KINDS = ("liquid", "air")
#: The engine works in integers: coefficients are held in millionths, loads in
#: coefficient-millionths times watts.  Sums then never depend on the order they are
#: added in, so both twins agree to the last unit.
COEF_SCALE = 1_000_000
_MAX_LIMIT_W = 1e12  # a terawatt: anything above is a typo, and keeps the int64 sums safe


# ======================================================================================
# The constraint system
# ======================================================================================

@dataclass(frozen=True, eq=False)
class Constraints:
    """The cluster's limits as ``A · P <= b`` (one row per limit, one column per rack).

    Attributes
    ----------
    A : scipy.sparse.csr_matrix, float64, shape (num_rows, num_racks)
        Non-negative coefficients (1 for electrical rows, the liquid or air heat fraction
        for cooling rows).
    b : ndarray of float64, shape (num_rows,)
        The limits, in watts for electrical and cooling rows.
    names : tuple of str
        A human name per row, e.g. ``"hall-2 switchboard"``.
    kinds : tuple of str
        Each row's kind, one of :data:`ROW_KINDS`.
    """

    A: sp.csr_matrix
    b: np.ndarray
    names: tuple[str, ...]
    kinds: tuple[str, ...]

    @property
    def num_rows(self) -> int:
        return self.A.shape[0]

    # Integer forms the engine twins read.  Computed once, here, so both agree.
    @cached_property
    def b_units(self) -> np.ndarray:
        """``floor(b * COEF_SCALE)`` as int64."""
        return np.array([math.floor(v * COEF_SCALE) for v in self.b], dtype=np.int64)

    @cached_property
    def _csc_units(self) -> sp.csc_matrix:
        units = self.A.tocsc(copy=True)
        units.sort_indices()
        units.data = np.rint(units.data * COEF_SCALE)
        units.eliminate_zeros()  # a zero coefficient would divide by zero in the engine
        return units

    @cached_property
    def rack_rows_indptr(self) -> np.ndarray:
        """For rack r, its rows are ``rack_rows_index[indptr[r]:indptr[r+1]]`` (int32)."""
        return self._csc_units.indptr.astype(np.int32)

    @cached_property
    def rack_rows_index(self) -> np.ndarray:
        return self._csc_units.indices.astype(np.int32)

    @cached_property
    def rack_rows_coef_units(self) -> np.ndarray:
        """Coefficients of those rows, in millionths (int64)."""
        return self._csc_units.data.astype(np.int64)

    @cached_property
    def rack_rows_run_end(self) -> np.ndarray:
        """For each (rack r, row i) entry: the end (exclusive) of the run r, r+1, ... of
        consecutive racks that are all in row i with the same coefficient (int32).

        Racks of one run see row i the same way, so when row i keeps one of them below a
        cap, it keeps all of them there: the engine's search skips the rest of the run.
        """
        csr = self._csc_units.tocsr()
        csr.sort_indices()
        end = np.empty(csr.nnz, dtype=np.int64)
        for i in range(csr.shape[0]):
            lo, hi = csr.indptr[i], csr.indptr[i + 1]
            racks, coefs = csr.indices[lo:hi], csr.data[lo:hi]
            # a run breaks where the next rack is not r + 1 or has another coefficient
            breaks = np.flatnonzero((np.diff(racks) != 1) | (np.diff(coefs) != 0))
            starts = np.concatenate(([0], breaks + 1))
            stops = np.concatenate((breaks + 1, [len(racks)]))
            run_of = np.repeat(np.arange(len(starts)), stops - starts)
            end[lo:hi] = racks[stops[run_of] - 1] + 1
        # end[] is in CSR order (row-major); map it to the CSC order the engine reads
        by_entry = sp.csr_matrix((end.astype(float), csr.indices, csr.indptr),
                                 shape=csr.shape).tocsc()
        by_entry.sort_indices()
        return by_entry.data.astype(np.int32)

    def load_units(self, rack_power_w: np.ndarray) -> np.ndarray:
        """Integer row loads ``A_units · P`` for integer rack powers (exact)."""
        units = self._csc_units
        return (units.astype(np.int64).tocsr() @ np.asarray(rack_power_w, dtype=np.int64))

    def slack_w(self, rack_power_w: np.ndarray) -> np.ndarray:
        """``b - A·P`` in the rows' own units (watts for power rows), as float64."""
        return self.b - self.A @ np.asarray(rack_power_w, dtype=float)

    def violations(self, rack_power_w: np.ndarray) -> list[tuple[str, float, float]]:
        """``(name, load, limit)`` for each row the rack powers break, by the exact test."""
        load = self.load_units(rack_power_w)
        bad = np.flatnonzero(load > self.b_units)
        return [(self.names[i], float(load[i]) / COEF_SCALE, float(self.b[i])) for i in bad]

    def row(self, name: str) -> int:
        """Index of the row called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no constraint row named {name!r}") from None


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
# Cluster
# ======================================================================================

class Cluster:
    """A GPU site: nodes in racks, racks in pods (network) and rows (power), rows in halls.

    Build one with :meth:`preset`, :meth:`load` or :meth:`from_dict`.  It is immutable.

    Attributes
    ----------
    name : str
    power : PowerModel
    node_rack : ndarray of int32, shape (num_nodes,)
        Rack of each node; nondecreasing, so the nodes of a rack are contiguous.
    rack_first_node : ndarray of int32, shape (num_racks + 1,)
        Nodes of rack r are ``rack_first_node[r]:rack_first_node[r+1]``.
    rack_pod, rack_row, rack_hall : ndarray of int32, shape (num_racks,)
        Network pod (Colossus array or SuperPOD scalable unit), power row, hall.
    rack_kind : ndarray of int8, shape (num_racks,)
        Index into :data:`RACK_KINDS` (0 liquid, 1 air).
    constraints : Constraints
        The system ``A · P <= b`` over rack powers.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._spec = _normalise(spec)
        s = self._spec
        self.name: str = s["name"]
        self.power: PowerModel = s["_power"]
        self.hall_names = tuple(h["name"] for h in s["halls"])
        self.row_names = tuple(r["name"] for r in s["rows"])
        self.pod_names = tuple(p["name"] for p in s["pods"])
        self.rack_names = tuple(r["name"] for r in s["racks"])
        racks = s["racks"]
        row_hall = np.array([r["_hall"] for r in s["rows"]], dtype=np.int32)
        self.rack_row = np.array([r["_row"] for r in racks], dtype=np.int32)
        self.rack_pod = np.array([r["_pod"] for r in racks], dtype=np.int32)
        self.rack_hall = row_hall[self.rack_row]
        self.rack_kind = np.array([RACK_KINDS.index(r["kind"]) for r in racks], dtype=np.int8)
        nodes_per_rack = np.array([r["nodes"] for r in racks], dtype=np.int32)
        self.rack_first_node = np.zeros(len(racks) + 1, dtype=np.int32)
        np.cumsum(nodes_per_rack, out=self.rack_first_node[1:])
        self.node_rack = np.repeat(np.arange(len(racks), dtype=np.int32), nodes_per_rack)
        for arr in (self.rack_row, self.rack_pod, self.rack_hall, self.rack_kind,
                    self.rack_first_node, self.node_rack):
            arr.setflags(write=False)
        self.constraints = self._build_constraints()
        self._check_idle_fits()

    # ---- construction ---------------------------------------------------------------

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> "Cluster":
        """Build and validate a cluster from a spec dict; raises :class:`SpecError`."""
        return cls(spec)

    @classmethod
    def preset(cls, name: str, **params: Any) -> "Cluster":
        """A built-in cluster: ``colossus-100k``, ``colossus-array``, ``superpod-su``, ``tiny``.

        ``colossus-100k`` takes ``facility_mw`` (default 90) and ``scale`` (default 1: the
        number of pods per hall, with the hall and facility limits, is multiplied by it).
        """
        try:
            builder = PRESETS[name]
        except KeyError:
            raise SpecError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}",
                            field="preset") from None
        try:
            spec = builder(**params)
        except TypeError as exc:
            raise SpecError(f"bad parameters {params} for preset {name!r}: {exc}",
                            field="preset") from None
        return cls(spec)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Cluster":
        """Load a ``.toml`` or ``.json`` spec file."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".toml", ".json"):
            raise SpecError(f"cluster files end in .toml or .json, got {path.name!r}",
                            field="path")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"{path} is not UTF-8 text: {exc}", field="path") from None
        except OSError as exc:
            raise SpecError(f"cannot read {str(path)!r}: {exc.strerror}", field="path") from None
        return cls.loads(text, format=suffix[1:])

    @classmethod
    def loads(cls, text: str, *, format: str) -> "Cluster":
        """Parse spec text in ``format`` ``"toml"`` or ``"json"``."""
        # NaN and Infinity parse (TOML has them, JSON files often do) so that the field
        # check rejects them naming the field, not a line and column.
        if format == "toml":
            try:
                spec = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise SpecError(f"invalid TOML: {exc}") from None
            except RecursionError:
                raise SpecError("invalid TOML: nested too deeply") from None
        elif format == "json":
            try:
                spec = json.loads(text)
            except ValueError as exc:  # JSONDecodeError, or an int of > 4300 digits
                raise SpecError(f"invalid JSON: {exc}") from None
            except RecursionError:
                raise SpecError("invalid JSON: nested too deeply") from None
        else:
            raise SpecError(f"format must be 'toml' or 'json', got {format!r}", field="format")
        return cls(spec)

    @classmethod
    def resolve(cls, name_or_path: str | os.PathLike[str]) -> "Cluster":
        """A preset by name, else a spec file by path (what the CLI's ``--cluster`` takes)."""
        if isinstance(name_or_path, str) and name_or_path in PRESETS:
            return cls.preset(name_or_path)
        if os.path.exists(name_or_path):
            return cls.load(name_or_path)
        raise SpecError(f"{str(name_or_path)!r} is neither a preset ({', '.join(sorted(PRESETS))})"
                        " nor an existing .toml/.json file", field="cluster")

    def to_dict(self) -> dict[str, Any]:
        """The spec as a plain dict (JSON- and TOML-ready); ``from_dict`` round-trips it."""
        return {k: v for k, v in _public(self._spec).items()}

    def dumps(self, format: str = "json") -> str:
        spec = self.to_dict()
        if format == "json":
            return json.dumps(spec, indent=1)
        if format == "toml":
            return _dump_toml(spec)
        raise SpecError(f"format must be 'toml' or 'json', got {format!r}", field="format")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the spec as ``.toml`` or ``.json`` (by the file's extension)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".toml", ".json"):
            raise SpecError(f"cluster files end in .toml or .json, got {path.name!r}",
                            field="path")
        path.write_text(self.dumps(suffix[1:]), encoding="utf-8")

    # ---- sizes ----------------------------------------------------------------------

    @property
    def gpus_per_node(self) -> int:
        return self.power.gpus_per_node

    @property
    def num_nodes(self) -> int:
        return len(self.node_rack)

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    @property
    def num_racks(self) -> int:
        return len(self.rack_pod)

    @property
    def num_pods(self) -> int:
        return len(self.pod_names)

    @property
    def num_rows(self) -> int:
        return len(self.row_names)

    @property
    def num_halls(self) -> int:
        return len(self.hall_names)

    @cached_property
    def rack_nodes(self) -> np.ndarray:
        """Nodes per rack (int32)."""
        return np.diff(self.rack_first_node).astype(np.int32)

    @cached_property
    def node_pod(self) -> np.ndarray:
        return self.rack_pod[self.node_rack]

    @cached_property
    def pod_nodes(self) -> np.ndarray:
        """Nodes per pod (int32)."""
        return np.bincount(self.rack_pod, weights=self.rack_nodes,
                           minlength=self.num_pods).astype(np.int32)

    @cached_property
    def node_names(self) -> tuple[str, ...]:
        """A name per node: the spec's ``node_names`` or ``<rack>-n<i>``."""
        names: list[str] = []
        for rack in self._spec["racks"]:
            if "node_names" in rack:
                names.extend(rack["node_names"])
            else:
                names.extend(f"{rack['name']}-n{i}" for i in range(rack["nodes"]))
        return tuple(names)

    @cached_property
    def idle_rack_power_w(self) -> np.ndarray:
        """Rack power with every GPU free (int64 watts)."""
        return self.rack_nodes.astype(np.int64) * self.power.node_idle_w

    def full_rack_power_w(self, cap_w: int) -> np.ndarray:
        """Rack power with every GPU busy at ``cap_w`` (int64 watts)."""
        node_w = self.power.node_other_busy_w + self.gpus_per_node * int(cap_w)
        return self.rack_nodes.astype(np.int64) * node_w

    # ---- constraints ----------------------------------------------------------------

    def _build_constraints(self) -> Constraints:
        s = self._spec
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        b: list[float] = []
        names: list[str] = []
        kinds: list[str] = []
        fields: list[str] = []  # the spec field each row's limit comes from, for errors

        def add(name: str, kind: str, limit: float, racks: Iterable[int], coef: float,
                field: str) -> None:
            i = len(b)
            for r in racks:
                rows.append(i)
                cols.append(int(r))
                vals.append(coef)
            b.append(limit)
            names.append(name)
            kinds.append(kind)
            fields.append(field)

        for r, rack in enumerate(s["racks"]):
            add(f"{rack['name']} feed", "rack-feed", rack["feed_w"], [r], 1.0,
                f"racks[{r}].feed_w")
            if rack["kind"] == "liquid":
                phi = rack["liquid_fraction"]
                add(f"{rack['name']} cdu", "cdu", rack["cdu_w"], [r], phi, f"racks[{r}].cdu_w")
                add(f"{rack['name']} residual air", "rack-air", rack["residual_air_w"], [r],
                    round(1.0 - phi, 6), f"racks[{r}].residual_air_w")
            else:
                add(f"{rack['name']} air cooling", "air-cooling", rack["air_cooling_w"], [r], 1.0,
                    f"racks[{r}].air_cooling_w")
        for i, row in enumerate(s["rows"]):
            add(f"{row['name']} busway", "row", row["busway_w"],
                np.flatnonzero(self.rack_row == i), 1.0, f"rows[{i}].busway_w")
        for h, hall in enumerate(s["halls"]):
            in_hall = np.flatnonzero(self.rack_hall == h)
            add(f"{hall['name']} switchboard", "hall", hall["switchboard_w"], in_hall, 1.0,
                f"halls[{h}].switchboard_w")
            # Both the liquid loop and the residual air end up in the hall's plant.
            add(f"{hall['name']} cooling plant", "hall-cooling", hall["cooling_w"], in_hall, 1.0,
                f"halls[{h}].cooling_w")
        facility = s["facility"]
        add(f"{facility['name']} IT limit", "facility", facility["it_limit_w"],
            range(len(s["racks"])), 1.0, "facility.it_limit_w")
        rack_index = {name: i for i, name in enumerate(self.rack_names)}
        for j, limit in enumerate(s["limits"]):
            i = len(b)
            for rack_name, coef in limit["coefficients"].items():
                if rack_name not in rack_index:
                    raise SpecError(f"names rack {rack_name!r}, which does not exist",
                                    field=f"limits[{j}].coefficients")
                rows.append(i)
                cols.append(rack_index[rack_name])
                vals.append(coef)
            b.append(limit["limit"])
            names.append(limit["name"])
            kinds.append(limit["kind"])
            fields.append(f"limits[{j}].limit")
        if len(set(names)) != len(names):
            seen: set[str] = set()
            dup = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
            raise SpecError(f"two constraint rows are both named {dup!r}", field="limits")
        A = sp.csr_matrix((np.array(vals, dtype=float), (np.array(rows), np.array(cols))),
                          shape=(len(b), len(s["racks"])))
        A.sum_duplicates()
        A.sort_indices()
        b_arr = np.array(b, dtype=float)
        b_arr.setflags(write=False)
        self._row_fields = tuple(fields)
        return Constraints(A=A, b=b_arr, names=tuple(names), kinds=tuple(kinds))

    def _check_idle_fits(self) -> None:
        c = self.constraints
        load = c.load_units(self.idle_rack_power_w)
        bad = np.flatnonzero(load > c.b_units)
        if bad.size:
            i = int(bad[0])
            raise SpecError(f"the all-idle cluster already breaks {c.names[i]!r}: "
                            f"{load[i] / COEF_SCALE:,.0f} > {c.b[i]:,.0f}; every limit must hold "
                            f"with no job running ({bad.size} row(s) broken)",
                            field=self._row_fields[i])

    # ---- summaries ------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Sizes and the power envelope at a glance (what ``gpusched show`` prints)."""
        c = self.constraints
        full = c.A @ self.full_rack_power_w(self.power.cap_max_w).astype(float)
        idle = c.A @ self.idle_rack_power_w.astype(float)
        by_kind: dict[str, dict[str, Any]] = {}
        for kind in ROW_KINDS:
            idx = [i for i, k in enumerate(c.kinds) if k == kind]
            if not idx:
                continue
            ratio = full[idx] / np.maximum(c.b[idx], 1e-9)
            by_kind[kind] = {"rows": len(idx), "binding_at_full_power": int((ratio > 1).sum()),
                             "worst_full_over_limit": round(float(ratio.max()), 3)}
        return {
            "name": self.name, "gpus": self.num_gpus, "nodes": self.num_nodes,
            "racks": self.num_racks, "pods": self.num_pods, "rows": self.num_rows,
            "halls": self.num_halls, "constraint_rows": c.num_rows,
            "liquid_racks": int((self.rack_kind == 0).sum()),
            "air_racks": int((self.rack_kind == 1).sum()),
            "idle_mw": round(float(self.idle_rack_power_w.sum()) / 1e6, 3),
            "full_power_mw": round(float(self.full_rack_power_w(self.power.cap_max_w).sum())
                                   / 1e6, 3),
            "facility_limit_mw": round(float(c.b[c.kinds.index("facility")]) / 1e6, 3),
            "rows_by_kind": by_kind,
            "idle_headroom_min_w": round(float((c.b - idle).min()), 1),
        }

    def __repr__(self) -> str:
        return (f"Cluster({self.name!r}, gpus={self.num_gpus}, nodes={self.num_nodes}, "
                f"racks={self.num_racks}, pods={self.num_pods}, rows={self.constraints.num_rows})")


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
    node_names_seen: set[str] = set()
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
                    raise SpecError(f"duplicate node name {node_name!r}",
                                    field=f"{where}.node_names[{k}]")
                node_names_seen.add(node_name)
            out["node_names"] = list(names)
        racks.append(out)

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


# ======================================================================================
# Presets (numbers: shared/physics.md §2 and DESIGN.md's table)
# ======================================================================================

_LIQ64 = {"kind": "liquid", "nodes": 8, "feed_w": 88_000, "cdu_w": 90_000,
          "liquid_fraction": 0.88, "residual_air_w": 10_000}
_AIR32 = {"kind": "air", "nodes": 4, "feed_w": 40_800, "air_cooling_w": 40_800}


def _site(name: str, halls: list[tuple[str, str, int, float]], facility_w: float,
          racks_per_pod: int = 8) -> dict[str, Any]:
    """Halls of pods, one pod = one row of ``racks_per_pod`` identical racks.

    ``halls`` holds (hall name, rack kind, pods in the hall, switchboard = cooling watts).
    """
    spec: dict[str, Any] = {"name": name, "facility": {"name": "facility",
                                                       "it_limit_w": facility_w},
                            "halls": [], "rows": [], "pods": [], "racks": []}
    for hall_name, kind, pods, hall_w in halls:
        spec["halls"].append({"name": hall_name, "switchboard_w": hall_w, "cooling_w": hall_w})
        rack = _LIQ64 if kind == "liquid" else _AIR32
        busway_w = 600_000 if kind == "liquid" else 320_000
        pod_word = "array" if kind == "liquid" else "su"
        for _ in range(pods):
            p = len(spec["pods"]) + 1
            pod = f"{pod_word}-{p:03d}"
            row = f"row-{p:03d}"
            spec["pods"].append({"name": pod})
            spec["rows"].append({"name": row, "hall": hall_name, "busway_w": busway_w})
            for _ in range(racks_per_pod):
                r = len(spec["racks"]) + 1
                spec["racks"].append({"name": f"rack-{r:04d}", "row": row, "pod": pod, **rack})
    return spec


def _colossus_100k(facility_mw: float = 90.0, scale: float = 1.0) -> dict[str, Any]:
    """4 halls: 2 liquid (49 arrays of 8 LIQ64 racks), 2 air (98 SUs of 8 AIR32 racks).

    100,352 GPUs on 12,544 nodes.  Hall switchboard and cooling 25 MW each, facility IT
    limit 90 MW against ~105 MW at full power (DESIGN.md).  ``scale`` multiplies the pods
    per hall and the hall and facility limits, for scaling studies (1k to 1M GPUs).
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0 < scale <= 100):
        raise SpecError(f"scale must be in (0, 100], got {scale!r}", field="scale")
    if not (isinstance(facility_mw, (int, float)) and math.isfinite(facility_mw)
            and facility_mw > 0):
        raise SpecError(f"facility_mw must be a positive number, got {facility_mw!r}",
                        field="facility_mw")
    liquid_pods = max(1, round(49 * scale))
    air_pods = max(1, round(98 * scale))
    hall_w = 25e6 * scale
    suffix = "" if scale == 1 else f"-x{scale:g}"
    return _site(f"colossus-100k{suffix}", [
        ("hall-1", "liquid", liquid_pods, hall_w), ("hall-2", "liquid", liquid_pods, hall_w),
        ("hall-3", "air", air_pods, hall_w), ("hall-4", "air", air_pods, hall_w),
    ], facility_mw * 1e6 * scale)


def _colossus_array() -> dict[str, Any]:
    """One Colossus liquid array: 8 LIQ64 racks, 512 GPUs, one 600 kW row."""
    return _site("colossus-array", [("hall-1", "liquid", 1, 25e6)], 25e6)


def _superpod_su() -> dict[str, Any]:
    """One DGX SuperPOD H100 scalable unit: 8 AIR32 racks, 256 GPUs, one 320 kW row."""
    return _site("superpod-su", [("hall-1", "air", 1, 25e6)], 25e6)


def _tiny() -> dict[str, Any]:
    """64 GPUs for tests: one liquid pod and one air pod of 2 racks x 2 nodes.

    The limits bind on purpose: a row takes 30 kW (4 nodes at full power draw 33.6 kW)
    and the facility 55 kW (all 8 nodes would draw 67.2 kW).
    """
    return {
        "name": "tiny", "facility": {"name": "facility", "it_limit_w": 55_000},
        "halls": [{"name": "hall-1", "switchboard_w": 60_000, "cooling_w": 60_000}],
        "rows": [{"name": "row-1", "hall": "hall-1", "busway_w": 30_000},
                 {"name": "row-2", "hall": "hall-1", "busway_w": 30_000}],
        "pods": [{"name": "pod-1"}, {"name": "pod-2"}],
        "racks": [
            {"name": "rack-1", "row": "row-1", "pod": "pod-1", "kind": "liquid", "nodes": 2,
             "feed_w": 18_000, "cdu_w": 15_000, "liquid_fraction": 0.88,
             "residual_air_w": 2_500},
            {"name": "rack-2", "row": "row-1", "pod": "pod-1", "kind": "liquid", "nodes": 2,
             "feed_w": 18_000, "cdu_w": 15_000, "liquid_fraction": 0.88,
             "residual_air_w": 2_500},
            {"name": "rack-3", "row": "row-2", "pod": "pod-2", "kind": "air", "nodes": 2,
             "feed_w": 17_000, "air_cooling_w": 17_000},
            {"name": "rack-4", "row": "row-2", "pod": "pod-2", "kind": "air", "nodes": 2,
             "feed_w": 17_000, "air_cooling_w": 16_000},
        ],
    }


PRESETS: dict[str, Callable[..., dict[str, Any]]] = {
    "colossus-100k": _colossus_100k,
    "colossus-array": _colossus_array,
    "superpod-su": _superpod_su,
    "tiny": _tiny,
}
