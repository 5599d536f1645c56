"""Power and throughput models: what a node draws, and what a power cap costs a job.

All power is in integer watts, so both engine twins add the same numbers in any order.
Sources for every default are in ``shared/physics.md`` (sections 1a, 1b and 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import PowerError

__all__ = ["PowerModel", "throughput", "THROUGHPUT_FLOOR", "DEFAULT_SENSITIVITY"]

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
    """

    gpus_per_node: int = 8
    gpu_tdp_w: int = 700
    cap_min_w: int = 200
    cap_max_w: int = 700
    cap_step_w: int = 25
    gpu_idle_w: int = 65
    node_other_idle_w: int = 1550
    node_other_busy_w: int = 2800

    def __post_init__(self) -> None:
        from .errors import SpecError

        for name in (
            "gpus_per_node", "gpu_tdp_w", "cap_min_w", "cap_max_w", "cap_step_w",
            "gpu_idle_w", "node_other_idle_w", "node_other_busy_w",
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
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


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


def _is_finite_number(value: object) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and math.isfinite(value))
