"""Hand-checkable sites for the simulator and planner tests: one row of air racks where
only the facility limit binds (every other limit is ``BIG``), so the expected answers
depend on GPUs and on the facility's watts alone."""

from __future__ import annotations

from gpusched import Cluster

BIG = 1e9


def facility_site(nodes: int = 2, facility_w: float = BIG, *, racks: int = 1) -> Cluster:
    """``racks`` air racks (``rack-1``, ...) of ``nodes`` 8-GPU nodes each, in one row and
    one pod; only the facility limit is set."""
    return Cluster.from_dict({
        "name": f"test-{racks}x{nodes}", "facility": {"name": "facility", "it_limit_w": facility_w},
        "halls": [{"name": "hall-1", "switchboard_w": BIG, "cooling_w": BIG}],
        "rows": [{"name": "row-1", "hall": "hall-1", "busway_w": BIG}],
        "pods": [{"name": "pod-1"}],
        "racks": [{"name": f"rack-{r + 1}", "row": "row-1", "pod": "pod-1", "kind": "air",
                   "nodes": nodes, "feed_w": BIG, "air_cooling_w": BIG}
                  for r in range(racks)],
    })
