"""Explanation: why a job can or cannot be placed (or repaired) now.

Its own module so that both ``engine.py`` (``Engine.explain``) and ``_site.py``
(``Engine.explain_repair``) return it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Explanation"]


@dataclass(frozen=True)
class Explanation:
    """Why a job can or cannot be placed now (``Engine.explain``).

    ``status`` is ``"placeable"``, ``"no-capacity"`` (not enough free GPUs or nodes in
    the right shape) or ``"no-power"`` (GPUs are free but a row of A·P <= b would break
    even at ``min_cap_w``).  ``binding`` names the row that limits the cap (or that
    blocks the job); it is None when nothing limits it.
    """

    job_id: str
    status: str
    cap_w: int | None
    nodes: tuple[int, ...]
    binding: str | None
    binding_kind: str | None
    message: str
    #: Nodes that are not up (``"rack-1-n0 (down)"``) and would fit the job if they
    #: were: named when they are what blocks it.
    held_nodes: tuple[str, ...] = ()

    @property
    def placeable(self) -> bool:
        return self.status == "placeable"

    def __str__(self) -> str:
        return self.message
