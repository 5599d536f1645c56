"""The unit a site's power and energy are printed in: kW and kWh on small sites.

A 64-GPU site draws tens of kW, so "0.1 MW" and "0 MWh" would say nothing; a 100k-GPU
site draws tens of MW.  Every figure of one table takes the unit of its largest value.
"""

from __future__ import annotations

__all__ = ["power_unit", "energy_unit"]


def power_unit(scale_w: float) -> tuple[str, float]:
    """("kW", 1e3) for a scale under 1 MW (a site's full power), else ("MW", 1e6)."""
    return ("MW", 1e6) if abs(scale_w) >= 1e6 else ("kW", 1e3)


def energy_unit(scale_wh: float) -> tuple[str, float]:
    """("kWh", 1e3) for a scale under 1 MWh, else ("MWh", 1e6)."""
    return ("MWh", 1e6) if abs(scale_wh) >= 1e6 else ("kWh", 1e3)
