"""The floor as an operator sees it: halls, power rows and racks, with load, headroom and state.

Two views feed the ``/ui`` page, ``/metrics`` and ``GET /v1/floor``:

* :meth:`FloorModel.layout`, which never changes while the service runs: names, which
  hall and power row each rack stands in, its GPUs, and the limits that span more than
  one power row (hall switchboards, hall cooling, the facility);
* :meth:`FloorModel.live`, read from the engine under the service lock: busy GPUs and
  power per rack, each rack's headroom against its *own* limits (its feed, CDU or air
  cooling, residual air, its row's busway), the wide limits' load, the jobs and the racks
  they hold.

A rack's headroom is the smallest ``(limit - load) / limit`` over the limits confined to
its power row; limits wider than that are reported once, against their own limit, so a
hall that is nearly full shows as a nearly full hall instead of turning every rack in it
the same colour.  Headroom is in thousandths (an integer) to keep the JSON small.

Node states (up, draining, down) come from :func:`node_states`, which reads the engine's
(a hot spare, the engine's code 3, is an up node held out of placement).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..spec import Cluster

__all__ = ["FloorModel", "node_states", "NODE_STATES"]

NODE_STATES = ("up", "draining", "down")
"""The states a node may be in, as the floor map and /metrics name them."""


def node_states(engine: Any) -> np.ndarray:
    """Each node's state as an index into :data:`NODE_STATES` (int8).

    The engine's ``node_states()`` (0 up, 1 draining, 2 down, 3 spare); an engine
    without it has every node up.  The floor map, the rack counts in ``/v1/floor`` and
    ``gpusched_gpus{state=...}`` all read this one function.
    """
    getter = getattr(engine, "node_states", None)
    if callable(getter):
        states = np.asarray(getter())
        if states.dtype.kind in "US":  # names: map them to indexes
            return np.array([NODE_STATES.index(s) for s in states], dtype=np.int8)
        return states.astype(np.int8)
    return np.zeros(engine.cluster.num_nodes, dtype=np.int8)


class FloorModel:
    """The floor of ``cluster``: a layout computed once and a live view per state change."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        c = cluster.constraints
        A = c.A.tocsc()
        row_of_rack = cluster.rack_row
        hall_of_rack = cluster.rack_hall
        csr = c.A.tocsr()
        # a limit is "local" when every rack it covers stands in one power row
        self._local = np.zeros(c.num_rows, dtype=bool)
        self._limit_hall = np.full(c.num_rows, -1, dtype=np.int64)
        for i in range(c.num_rows):
            racks = csr.indices[csr.indptr[i]:csr.indptr[i + 1]]
            if len(racks) == 0:
                continue
            self._local[i] = len(np.unique(row_of_rack[racks])) == 1
            halls = np.unique(hall_of_rack[racks])
            if len(halls) == 1:
                self._limit_hall[i] = int(halls[0])
        self._wide = np.flatnonzero(~self._local)
        # for each rack, the local limits covering it, column by column
        rack_of_entry = np.repeat(np.arange(cluster.num_racks), np.diff(A.indptr))
        keep = self._local[A.indices]
        self._entry_rack = rack_of_entry[keep]
        self._entry_limit = A.indices[keep]
        self._limits = c
        self._row_hall = np.full(cluster.num_rows, -1, dtype=np.int64)
        self._row_hall[row_of_rack] = hall_of_rack
        self._lock = threading.Lock()
        self._cache: tuple[int, dict[str, Any]] | None = None
        self._layout: dict[str, Any] | None = None

    # ---- layout -------------------------------------------------------------------

    def layout(self) -> dict[str, Any]:
        """Names and places: what the page draws once."""
        if self._layout is None:
            cl, c = self.cluster, self._limits
            self._layout = {
                "cluster": cl.name,
                "gpus": cl.num_gpus,
                "gpus_per_node": cl.gpus_per_node,
                "halls": list(cl.hall_names),
                "rows": [{"name": name, "hall": int(self._row_hall[i])}
                         for i, name in enumerate(cl.row_names)],
                "pods": list(cl.pod_names),
                "racks": {
                    "name": list(cl.rack_names),
                    "row": cl.rack_row.tolist(),
                    "hall": cl.rack_hall.tolist(),
                    "pod": cl.rack_pod.tolist(),
                    "kind": ["liquid" if k == 0 else "air" for k in cl.rack_kind.tolist()],
                    "gpus": (cl.rack_nodes * cl.gpus_per_node).tolist(),
                },
                "wide_limits": [{"name": c.names[i], "kind": c.kinds[i],
                                 "hall": int(self._limit_hall[i]),
                                 "limit_w": float(c.b[i])} for i in self._wide],
                "node_states": list(NODE_STATES),
            }
        return self._layout

    # ---- live ---------------------------------------------------------------------

    def live(self, service: Any) -> dict[str, Any]:
        """The floor now; computed once per journal position, so polling is cheap."""
        seq = service.journal.written_seq
        with self._lock:
            if self._cache is not None and self._cache[0] == seq:
                return self._cache[1]
        with service.lock:
            engine = service.engine
            seq = service.journal.written_seq
            rack_power_w = engine.rack_power_w().astype(np.int64)
            node_free = np.asarray(engine.node_free_gpus(), dtype=np.int64)
            placements = engine.placements()
            states = node_states(engine)
        view = self._view(seq, rack_power_w, node_free, placements, states)
        with self._lock:
            self._cache = (seq, view)
        return view

    def row_loads_w(self, rack_power_w: np.ndarray) -> np.ndarray:
        """Load of every limit (``A @ P``), in watts."""
        return np.asarray(self._limits.A @ rack_power_w.astype(float))

    def _view(self, seq: int, rack_power_w: np.ndarray, node_free: np.ndarray,
              placements: list[Any], states: np.ndarray) -> dict[str, Any]:
        cl, c = self.cluster, self._limits
        load_w = self.row_loads_w(rack_power_w)
        fraction = (c.b - load_w) / np.maximum(c.b, 1e-9)
        # smallest local headroom per rack, and which limit it is
        headroom = np.ones(cl.num_racks)
        binding = np.full(cl.num_racks, -1, dtype=np.int64)
        if len(self._entry_rack):
            values = fraction[self._entry_limit]
            order = np.lexsort((values, self._entry_rack))
            racks = self._entry_rack[order]
            first = np.ones(len(racks), dtype=bool)
            first[1:] = racks[1:] != racks[:-1]
            headroom[racks[first]] = values[order][first]
            binding[racks[first]] = self._entry_limit[order][first]
        busy_per_node = cl.gpus_per_node - node_free
        rack_busy = np.bincount(cl.node_rack, weights=busy_per_node,
                                minlength=cl.num_racks).astype(np.int64)
        not_up = (states == 1) | (states == 2)   # draining or down; a hot spare (3) is up
        rack_not_up = np.bincount(cl.node_rack, weights=not_up,
                                  minlength=cl.num_racks).astype(np.int64)
        counts = np.bincount(states.astype(np.int64), minlength=len(NODE_STATES))
        jobs = []
        for p in placements:
            racks_of_job = np.unique(cl.node_rack[np.asarray(p.nodes, dtype=np.int64)])
            jobs.append([p.job_id, len(p.nodes) * p.gpus_per_node, p.cap_w,
                         racks_of_job.tolist()])
        return {
            "seq": seq,
            "cluster": cl.name,
            "busy_gpus": int(rack_busy.sum()),
            "power_w": int(rack_power_w.sum()),
            "racks": {
                "busy": rack_busy.tolist(),
                "power_w": rack_power_w.tolist(),
                "headroom": np.floor(headroom * 1000).astype(np.int64).tolist(),
                "binding": [c.names[i] if i >= 0 else None for i in binding.tolist()],
                "nodes_not_up": rack_not_up.tolist(),
            },
            "wide_limits": [{"name": c.names[i], "load_w": round(float(load_w[i]), 1)}
                            for i in self._wide],
            "node_states": {s: int(counts[k]) for k, s in enumerate(NODE_STATES)},
            "jobs": jobs,
        }
