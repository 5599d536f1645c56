"""Power and throughput models: what a node draws, and what a power cap costs a job.

All power is in integer watts, so both engine twins add the same numbers in any order.
Sources for every default are in ``shared/physics.md`` (sections 1a, 1b and 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PowerModel", "throughput", "THROUGHPUT_FLOOR", "DEFAULT_SENSITIVITY",
           "ThroughputCurve", "QuadraticCurve", "TabulatedCurve", "CURVES", "resolve_curve",
           "H100_CURVE", "check_curve"]

#: s(cap) never drops below this: below ~0.3 TDP the measured curves flatten (physics.md §3).
THROUGHPUT_FLOOR = 0.3
#: Default cap sensitivity k in s = 1 - k (1 - cap/TDP)^2 (physics.md §3, fit to Zeus traces).
DEFAULT_SENSITIVITY = 1.25


@dataclass(frozen=True)
class PowerModel:
    """Power of one 8-GPU H100 node, and the GPU power-cap grid.

    Node power = other + sum over its GPUs of (``gpu_idle_w`` if free, else the job's cap),
    where other is ``node_other_idle_w`` while no GPU of the node is in use and
    ``node_other_busy_w`` as soon as one is.  Budgets are held against caps, so they hold
    in the worst case: a GPU never draws more than its cap.

    Parameters
    ----------
    gpus_per_node : int
        GPUs per node (HGX H100: 8).
    gpu_tdp_w : int
        GPU thermal design power; s(cap) is relative to it (H100 SXM5: 700 W).
    cap_min_w, cap_max_w : int
        The range ``nvidia-smi -pl`` accepts (H100 SXM5: 200 to 700 W).
    cap_step_w : int
        Step of the cap grid the engine walks down and the allocator decides on (25 W).
    gpu_idle_w : int
        Draw of a GPU with no job (DPS idle example: 64 to 66 W).
    node_other_idle_w, node_other_busy_w : int
        Node power other than GPUs, idle and busy (1,550 W derived from DPS; 2,800 W
        rounded from Latif et al.'s 8.48 kW measured maximum).
    node_down_w : int
        Draw of a node that is down (failed or powered off), budgeted in every row in
        place of its idle power; default 0 W (powered off), at most ``node_idle_w``, so
        a failure never adds load to a row.
    """

    gpus_per_node: int = 8
    gpu_tdp_w: int = 700
    cap_min_w: int = 200
    cap_max_w: int = 700
    cap_step_w: int = 25
    gpu_idle_w: int = 65
    node_other_idle_w: int = 1550
    node_other_busy_w: int = 2800
    node_down_w: int = 0

    def __post_init__(self) -> None:
        from .errors import SpecError

        for name in (
            "gpus_per_node", "gpu_tdp_w", "cap_min_w", "cap_max_w", "cap_step_w",
            "gpu_idle_w", "node_other_idle_w", "node_other_busy_w", "node_down_w",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise SpecError(f"must be a whole number of watts (or GPUs), got {value!r}",
                                field=f"power.{name}")
            if value < 0 or value > 1_000_000:
                raise SpecError(f"must be in [0, 1000000], got {value!r}", field=f"power.{name}")
            object.__setattr__(self, name, int(value))
        if not 1 <= self.gpus_per_node <= 64:
            raise SpecError(f"must be in [1, 64], got {self.gpus_per_node}",
                            field="power.gpus_per_node")
        if not 0 < self.cap_min_w <= self.cap_max_w:
            raise SpecError(f"need 0 < cap_min_w <= cap_max_w, got {self.cap_min_w} and "
                            f"{self.cap_max_w}", field="power.cap_min_w")
        if self.gpu_idle_w >= self.cap_min_w:
            raise SpecError(f"gpu_idle_w={self.gpu_idle_w} must be below cap_min_w="
                            f"{self.cap_min_w}: a capped busy GPU draws more than an idle one",
                            field="power.gpu_idle_w")
        if self.cap_step_w < 1:
            raise SpecError(f"must be at least 1, got {self.cap_step_w}", field="power.cap_step_w")
        if self.node_other_busy_w < self.node_other_idle_w:
            raise SpecError("node_other_busy_w must be at least node_other_idle_w",
                            field="power.node_other_busy_w")
        if self.gpu_tdp_w < self.cap_max_w:
            raise SpecError(f"gpu_tdp_w={self.gpu_tdp_w} must be at least cap_max_w="
                            f"{self.cap_max_w}", field="power.gpu_tdp_w")
        if self.node_down_w > self.node_idle_w:
            raise SpecError(f"node_down_w={self.node_down_w} must be at most the idle node's "
                            f"{self.node_idle_w} W: a failure frees power, it never adds it",
                            field="power.node_down_w")

    @property
    def node_idle_w(self) -> int:
        """Power of a node with no GPU in use."""
        return self.node_other_idle_w + self.gpus_per_node * self.gpu_idle_w

    @property
    def busy_step_w(self) -> int:
        """Extra non-GPU power a node draws once any of its GPUs is in use."""
        return self.node_other_busy_w - self.node_other_idle_w

    def node_power_w(self, caps_w: "list[int] | tuple[int, ...]") -> int:
        """Power of one node whose busy GPUs run at ``caps_w`` (one entry per busy GPU)."""
        busy = len(caps_w)
        if busy > self.gpus_per_node:
            from .errors import PowerError
            raise PowerError(f"a node has {self.gpus_per_node} GPUs, got {busy} caps", field="caps_w")
        other = self.node_other_busy_w if busy else self.node_other_idle_w
        return other + (self.gpus_per_node - busy) * self.gpu_idle_w + sum(caps_w)

    def cap_grid_w(self, max_cap_w: int, min_cap_w: int) -> list[int]:
        """Caps the engine tries, highest first: max, max - step, ... and min last.

        ``min_cap_w`` is always the last entry, even when it is off the step grid.
        """
        caps = list(range(max_cap_w, min_cap_w - 1, -self.cap_step_w))
        if caps[-1] != min_cap_w:
            caps.append(min_cap_w)
        return caps

    def to_dict(self) -> dict[str, int]:
        # node_down_w at its default is left out, so the fingerprint of a site (and so
        # every state file written before the field existed) stays what it was
        return {name: getattr(self, name) for name in self.__dataclass_fields__
                if name != "node_down_w" or self.node_down_w}

    def speed(self, job: Any, cap_w: "float | np.ndarray") -> "float | np.ndarray":
        """s(cap) of ``job`` on this GPU: the job's curve, evaluated at this TDP.

        The one place where a curve meets a TDP, so the simulator, the allocator, the
        cap LP and the fluid bound all read the same number for the same job and cap.
        """
        return job.curve.speed(cap_w, self.gpu_tdp_w)


def throughput(cap_w: "float | np.ndarray", sensitivity: float = DEFAULT_SENSITIVITY,
               tdp_w: float = 700.0) -> "float | np.ndarray":
    """Relative training throughput at a GPU power cap, s(cap) = 1 - k (1 - cap/TDP)^2.

    Clipped to [0.3, 1]; concave and increasing in the cap, so maximising a weighted sum
    of it under linear power limits is a convex problem (physics.md §3).

    >>> round(throughput(420), 3)
    0.8
    """
    x = np.asarray(cap_w, dtype=float) / tdp_w
    s = np.clip(1.0 - sensitivity * (1.0 - x) ** 2, THROUGHPUT_FLOOR, 1.0)
    return float(s) if s.ndim == 0 else s


class ThroughputCurve:
    """Relative throughput s(cap) of a job, as a function of cap / TDP.

    Subclasses are concave and non-decreasing in the cap, so the chords through any
    breakpoints under-estimate s nowhere between them by more than the curve bends, and
    maximising a weighted sum of s under linear power limits stays convex.  The TDP is
    not part of a curve: it is the site's (``PowerModel.gpu_tdp_w``), passed in.
    """


    def speed(self, cap_w: "float | np.ndarray", tdp_w: float) -> "float | np.ndarray":
        raise NotImplementedError

    def breakpoints_w(self, min_cap_w: float, max_cap_w: float, tdp_w: float) -> list[float]:
        """Caps strictly inside (min, max) where the curve bends (chords must pass there)."""
        return []

    def check_caps(self, job_id: str, min_cap_w: int, max_cap_w: int, tdp_w: float) -> None:
        """Raise JobError if the curve says nothing about part of [min, max] at this TDP."""

    def to_json(self) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class QuadraticCurve(ThroughputCurve):
    """The proxy s = 1 - k (1 - cap/TDP)^2, clipped to [0.3, 1] (physics.md §3).

    ``sensitivity`` is k (1.25: a fit to older GPUs' Zeus traces).
    """

    sensitivity: float = DEFAULT_SENSITIVITY

    @property
    def name(self) -> str:
        return f"quadratic k={self.sensitivity:g}"

    def speed(self, cap_w: "float | np.ndarray", tdp_w: float) -> "float | np.ndarray":
        return throughput(cap_w, self.sensitivity, tdp_w)

    def breakpoints_w(self, min_cap_w: float, max_cap_w: float, tdp_w: float) -> list[float]:
        # s is smooth except where the floor clips it; chords over the cap grid are used
        return []

    def to_json(self) -> Any:
        return {"kind": "quadratic", "sensitivity": self.sensitivity}


@dataclass(frozen=True)
class TabulatedCurve(ThroughputCurve):
    """A measured curve: piecewise linear through ``(cap / TDP, s)`` points.

    Parameters
    ----------
    name : str
        How jobs and reports name it (``"h100-mayr2026"``).
    points : sequence of (float, float)
        ``(cap_fraction, s)``: the cap as a fraction of the TDP it was measured at, in
        (0, 1], strictly increasing; s in [0, 1], non-decreasing and concave (slopes
        never rise).  Caps between two points get the straight line between them; a
        job may not ask for a cap below the first point or above the last (no
        extrapolation), which :meth:`check_caps` enforces.
    source : str
        Where the numbers come from.

    Raises
    ------
    SpecError
        With ``field`` naming the offending point.
    """

    name: str
    points: tuple[tuple[float, float], ...]
    source: str = ""

    def __post_init__(self) -> None:
        from .errors import SpecError

        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"a curve needs a non-empty name, got {self.name!r}",
                            field="curve.name")
        try:
            pts = tuple((float(x), float(y)) for x, y in self.points)
        except (TypeError, ValueError):
            raise SpecError(f"points must be (cap_fraction, s) pairs, got {self.points!r}",
                            field=f"curve {self.name!r}.points") from None
        if len(pts) < 2:
            raise SpecError(f"a tabulated curve needs at least 2 points, got {len(pts)}",
                            field=f"curve {self.name!r}.points")
        for i, (x, y) in enumerate(pts):
            where = f"curve {self.name!r}.points[{i}]"
            if not (math.isfinite(x) and 0 < x <= 1):
                raise SpecError(f"cap fraction {x!r} is outside the GPU's range (0, 1] of "
                                "its TDP", field=where)
            if not (math.isfinite(y) and 0 <= y <= 1):
                raise SpecError(f"s={y!r} is outside [0, 1]", field=where)
            if i and x <= pts[i - 1][0]:
                raise SpecError(f"cap fraction {x!r} must be above the previous point's "
                                f"{pts[i - 1][0]!r} (points sorted by cap)", field=where)
            if i and y < pts[i - 1][1]:
                raise SpecError(f"s={y!r} falls below the previous point's {pts[i - 1][1]!r};"
                                " a higher cap never lowers throughput", field=where)
        slopes = [(y1 - y0) / (x1 - x0) for (x0, y0), (x1, y1) in zip(pts, pts[1:])]
        for i in range(1, len(slopes)):
            if slopes[i] > slopes[i - 1] * (1 + 1e-9) + 1e-12:
                raise SpecError(
                    f"not concave: the slope rises from {slopes[i - 1]:.4g} to "
                    f"{slopes[i]:.4g} per TDP at point {i} (cap fraction {pts[i][0]:g}); "
                    "the allocator's chords need a concave curve", field=f"curve "
                    f"{self.name!r}.points[{i}]")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "_x", np.array([p[0] for p in pts]))
        object.__setattr__(self, "_y", np.array([p[1] for p in pts]))

    def speed(self, cap_w: "float | np.ndarray", tdp_w: float) -> "float | np.ndarray":
        x = np.asarray(cap_w, dtype=float) / tdp_w
        s = np.interp(x, self._x, self._y)  # type: ignore[attr-defined]
        return float(s) if np.ndim(s) == 0 else s

    def breakpoints_w(self, min_cap_w: float, max_cap_w: float, tdp_w: float) -> list[float]:
        caps = (self._x * tdp_w).tolist()  # type: ignore[attr-defined]
        return [c for c in caps if min_cap_w < c < max_cap_w]

    def cap_range_w(self, tdp_w: float) -> tuple[float, float]:
        return float(self._x[0] * tdp_w), float(self._x[-1] * tdp_w)  # type: ignore

    def check_caps(self, job_id: str, min_cap_w: int, max_cap_w: int, tdp_w: float) -> None:
        from .errors import JobError

        lo, hi = self.cap_range_w(tdp_w)
        for name, cap in (("min_cap_w", min_cap_w), ("max_cap_w", max_cap_w)):
            if not lo - 1e-6 <= cap <= hi + 1e-6:
                raise JobError(f"Job {job_id!r}: {name}={cap} is outside the caps its curve "
                               f"{self.name!r} was measured at: [{lo:g}, {hi:g}] W at a "
                               f"{tdp_w:g} W TDP", field=name)

    def to_json(self) -> Any:
        return self.name if CURVES.get(self.name) == self else {
            "kind": "tabulated", "name": self.name, "points": [list(p) for p in self.points],
            "source": self.source}


def _load_bundled_curve(filename: str) -> TabulatedCurve:
    """A curve shipped in ``gpusched/data`` (a CSV with ``cap_w, s`` and a TDP header)."""
    from importlib import resources

    text = resources.files("gpusched").joinpath("data", filename).read_text()
    meta: dict[str, str] = {}
    rows: list[tuple[float, float]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            meta[key.strip()] = value.strip()
        elif line and not line.startswith("cap_w"):
            cap, s = line.split(",")
            rows.append((float(cap), float(s)))
    tdp_w = float(meta["tdp_w"])
    return TabulatedCurve(meta["name"], tuple((cap / tdp_w, s) for cap, s in rows),
                          meta.get("source", ""))


#: Mayr et al., arXiv:2603.16164, Table 4: LLaMA-3-8B on H100 (see gpusched/data/README.md).
H100_CURVE = _load_bundled_curve("h100-mayr2026.csv")
#: Curves a job may name by string.
CURVES: dict[str, TabulatedCurve] = {H100_CURVE.name: H100_CURVE}


def resolve_curve(curve: Any, sensitivity: float = DEFAULT_SENSITIVITY) -> ThroughputCurve:
    """A curve from what a Job was given: None (the quadratic with ``sensitivity``), a
    registered name, a ``to_json()`` dict, or a ThroughputCurve."""
    from .errors import JobError, SpecError

    if curve is None:
        return _quadratic(sensitivity)
    if isinstance(curve, ThroughputCurve):
        return curve
    if isinstance(curve, str):
        try:
            return CURVES[curve]
        except KeyError:
            raise JobError(f"unknown throughput curve {curve!r}; named curves are "
                           f"{sorted(CURVES)}, or give None for the quadratic proxy", field="curve") from None
    if isinstance(curve, dict):
        kind = curve.get("kind")
        try:
            if kind == "quadratic":
                return _quadratic(float(curve.get("sensitivity", sensitivity)))
            if kind == "tabulated":
                return TabulatedCurve(str(curve.get("name", "")),
                                      tuple(tuple(p) for p in curve.get("points", ())),
                                      str(curve.get("source", "")))
        except SpecError as exc:
            raise JobError(str(exc), field="curve") from None
        except (TypeError, ValueError) as exc:
            raise JobError(f"bad throughput curve {curve!r}: {exc}", field="curve") from None
    raise JobError(f"throughput curve {curve!r} must be None, a name from {sorted(CURVES)}, "
                   "a dict with kind 'quadratic' or 'tabulated', or a ThroughputCurve", field="curve")


def check_curve(power: PowerModel, job: Any) -> None:
    """Raise JobError if ``job``'s caps leave the range its curve covers at this TDP."""
    job.curve.check_caps(job.id, job.min_cap_w, job.max_cap_w, power.gpu_tdp_w)


_QUADRATICS: dict[float, QuadraticCurve] = {}


def _quadratic(sensitivity: float) -> QuadraticCurve:
    curve = _QUADRATICS.get(sensitivity)
    if curve is None:
        curve = _QUADRATICS[sensitivity] = QuadraticCurve(sensitivity)
    return curve


def _is_finite_number(value: object) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and math.isfinite(value))
