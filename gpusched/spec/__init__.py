"""The spec layer: a site's topology and its ONE constraint system A·P <= b.

- :mod:`.constraints`: :class:`Constraints` (A, b, names, kinds) and the integer units
  both engine twins read.
- :mod:`.schema`: validation of a raw spec dict, field by field.
- :mod:`.formats`: TOML and JSON text to a raw dict and back.
- :mod:`.presets`: the built-in sites.
- :mod:`.cluster`: :class:`Cluster`, which ties them together.
"""

from __future__ import annotations

from .cluster import Cluster
from .constraints import COEF_SCALE, MAX_ROW_LOAD_UNITS, RACK_KINDS, ROW_KINDS, Constraints
from .presets import PRESETS

__all__ = ["Cluster", "Constraints", "ROW_KINDS", "RACK_KINDS", "COEF_SCALE", "MAX_ROW_LOAD_UNITS",
           "PRESETS"]
