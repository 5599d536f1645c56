"""A Cluster is topology arrays plus ONE constraint system A·P <= b.

A cluster is built from a plain dict (the same shape TOML and JSON files parse to),
validated field by field: an error names the field as a dotted path and says what
would be valid.  Presets build such a dict.  See ``shared/physics.md`` §2 for where
each preset number comes from.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any, Iterable, Mapping

import numpy as np

from .._atomic import write_atomic
from ..errors import SpecError
from ..power import PowerModel
from . import formats
from .constraints import COEF_SCALE, MAX_ROW_LOAD_UNITS, RACK_KINDS, ROW_KINDS, Constraints
from .presets import PRESETS
from .schema import _normalise, _public

__all__ = ["Cluster"]

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
        self._check_loads_fit_int64()
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

        >>> Cluster.preset("tiny").num_gpus
        64
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
        path, format = formats.spec_format(path)
        return cls.loads(formats.read_text(path), format=format)

    @classmethod
    def loads(cls, text: str, *, format: str) -> "Cluster":
        """Parse spec text in ``format`` ``"toml"`` or ``"json"``."""
        return cls(formats.parse(text, format))

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
        return formats.dump(self.to_dict(), format)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the spec as ``.toml`` or ``.json`` (by the file's extension), atomically.

        The text is encoded before anything is opened and goes to a temporary file in the
        same directory that is fsynced and renamed over ``path``: a failed save leaves an
        existing file as it was.
        """
        path, format = formats.spec_format(path)
        write_atomic(path, self.dumps(format).encode("utf-8"))

    def with_limits(self, limits_w: Mapping[str, float] | None = None, *,
                    every_w: float | None = None, name: str | None = None) -> "Cluster":
        """The same racks, nodes, names and coefficients with changed limits.

        ``limits_w`` maps constraint row names (``constraints.names``) to new limits; with
        ``every_w`` every row not named in ``limits_w`` gets that limit.  Rack indices and
        row order are unchanged, so rack powers from one cluster can be checked against
        the other's constraints.  Raises :class:`SpecError` for an unknown row name or a
        limit the spec refuses.
        """
        import copy

        spec = copy.deepcopy(self.to_dict())
        if name is not None:
            spec["name"] = name
        wanted = dict(limits_w or {})
        unknown = sorted(set(wanted) - set(self.constraints.names))
        if unknown:
            raise SpecError(f"names constraint row(s) {unknown[:5]}, which do not exist; "
                            f"rows are {list(self.constraints.names[:5])}, ...",
                            field="limits_w")
        for row_name, field in zip(self.constraints.names, self._row_fields):
            value = wanted.get(row_name, every_w)
            if value is None:
                continue
            # a row's field is "section[i].key" or "section.key" (see _build_constraints)
            head, key = field.rsplit(".", 1)
            if head.endswith("]"):
                section, index = head[:-1].split("[")
                spec[section][int(index)][key] = value
            else:
                spec[head][key] = value
        return Cluster(spec)

    @cached_property
    def fingerprint(self) -> str:
        """A hash (sha256 hex) of what a placement's meaning depends on.

        Node names in node order, each rack's name, nodes, kind, pod and row, each row's
        hall, the power model, and the constraint system (row names, kinds, integer
        coefficients, integer limits).  Two clusters with one fingerprint give node
        index i the same host and every row the same limit, so a snapshot's node indices
        mean the same on both; reordered racks, renamed hosts or a changed limit change it.
        The site's ``name`` is not part of it (a snapshot also checks that).
        """
        import hashlib
        import json

        c = self.constraints
        canonical = {
            "power": self.power.to_dict(),
            "node_names": list(self.node_names),
            "racks": [[r["name"], r["nodes"], r["kind"], r["pod"], r["row"]]
                      for r in self._spec["racks"]],
            "rows": [[r["name"], r["hall"]] for r in self._spec["rows"]],
            "pods": list(self.pod_names),
            "constraint_names": list(c.names), "constraint_kinds": list(c.kinds),
            "A_indptr": c.A_units.indptr.tolist(), "A_indices": c.A_units.indices.tolist(),
            "A_units": c.A_units.data.tolist(), "b_units": c.b_units.tolist(),
        }
        text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()

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
        import scipy.sparse as sp  # lazily: see spec/constraints.py

        A = sp.csr_matrix((np.array(vals, dtype=float), (np.array(rows), np.array(cols))),
                          shape=(len(b), len(s["racks"])))
        A.sum_duplicates()
        A.sort_indices()
        b_arr = np.array(b, dtype=float)
        b_arr.setflags(write=False)
        self._row_fields = tuple(fields)
        return Constraints(A=A, b=b_arr, names=tuple(names), kinds=tuple(kinds),
                           rack_pod=self.rack_pod)

    def _check_loads_fit_int64(self) -> None:
        """Refuse a spec whose rows could reach a load the int64 engine cannot hold.

        The bound is the row's load with every node at its most (``node_other_busy_w`` plus
        every GPU at ``gpu_tdp_w``, above any cap a job can get): racks x nodes x node
        power x coefficient x COEF_SCALE, summed over the row's racks.  Each field is inside
        its own range, but their product need not be (19 racks of 1,024 nodes at 1 MW with
        a coefficient of 1,000 reach 2e19), so the product is checked here.  Float64 sums
        are exact to 1e-10 relative here, far inside the margin between 2**62 and 2**63.
        """
        c, power = self.constraints, self.power
        node_max_w = power.node_other_busy_w + power.gpus_per_node * power.gpu_tdp_w
        rack_max_w = self.rack_nodes.astype(np.float64) * node_max_w
        row_max_units = c.A_units.astype(np.float64) @ rack_max_w
        bad = np.flatnonzero(row_max_units > MAX_ROW_LOAD_UNITS)
        if bad.size:
            i = int(bad[np.argmax(row_max_units[bad])])
            field = self._row_fields[i]
            culprit = (field.rsplit(".", 1)[0] + ".coefficients" if field.startswith("limits[")
                       else "power.node_other_busy_w")
            raise SpecError(
                f"row {c.names[i]!r} could carry {row_max_units[i]:.3g} coefficient-units "
                f"(coefficient x 1e6 x W, every node at {node_max_w:,} W), over the engine's "
                f"int64 bound {MAX_ROW_LOAD_UNITS:.3g}; lower its coefficients, the node "
                f"power or the racks in it ({bad.size} row(s) over)", field=culprit)

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
            idx = c.rows_of_kind(kind)
            if not idx.size:
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

