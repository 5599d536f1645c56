"""Built-in sites as spec dicts (numbers: shared/physics.md §2 and DESIGN.md's table)."""

from __future__ import annotations

import math
from typing import Any, Callable

from ..errors import SpecError

__all__ = ["PRESETS"]

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
