"""``/metrics``: the service in Prometheus' text format, written by ``prometheus_client``.

Each app has its own :class:`~prometheus_client.CollectorRegistry`, so two apps in one
process (the tests build many) never share a counter.  The site's gauges (every limit's
load and headroom, GPUs by state, jobs) are read from the engine when Prometheus
scrapes, not on every request: a place or release pays only for two counter increments
and one histogram observation.

Metric names (all prefixed ``gpusched_``):

=====================================  =========  ======================================
``row_load_w{row,kind}``               gauge      load of each limit of ``A·P <= b``, W
``row_headroom_w{row,kind}``           gauge      its limit minus its load, W
``gpus{state}``                        gauge      GPUs busy, and idle ones by node state:
                                                  free (up), draining, down
``jobs``                               gauge      jobs placed
``power_w``                            gauge      the site's power held against caps, W
``placements_total``                   counter    jobs placed through place (v1 and v2)
``releases_total``                     counter    jobs released through release
``refusals_total{reason,limit_kind}``  counter    place calls that did not fit, and why
``requests_total{method,path,status}`` counter    HTTP requests answered
``request_duration_seconds{method,     histogram  time from request to reply
path}``
=====================================  =========  ======================================

``path`` is a route of the app, or ``other`` for anything else, so a scanner trying
random URLs cannot grow the series without bound.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .floor import NODE_STATES, FloorModel, node_states

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency buckets from 0.25 ms (an in-memory place) to 10 s (a large allocate).
_BUCKETS_S = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
              1.0, 2.5, 10.0)


class _SiteCollector:
    """Reads the engine at scrape time (prometheus_client calls :meth:`collect`)."""

    def __init__(self, service: Any, floor: FloorModel) -> None:
        self.service = service
        self.floor = floor

    def describe(self) -> list[Any]:
        return []  # no describe-time sample: collect() must not run at registration

    def collect(self) -> Iterator[Any]:
        service = self.service
        with service.lock:
            engine = service.engine
            rack_power_w = engine.rack_power_w()
            node_free = np.asarray(engine.node_free_gpus(), dtype=np.int64)
            jobs = len(engine)
            states = node_states(engine)
        c = service.cluster.constraints
        load_w = self.floor.row_loads_w(rack_power_w)
        load = GaugeMetricFamily("gpusched_row_load_w",
                                 "Load of each limit of A.P <= b, in watts",
                                 labels=["row", "kind"])
        headroom = GaugeMetricFamily("gpusched_row_headroom_w",
                                     "Limit minus load of each limit, in watts",
                                     labels=["row", "kind"])
        for name, kind, value, limit in zip(c.names, c.kinds, load_w.tolist(),
                                            c.b.tolist()):
            load.add_metric([name, kind], value)
            headroom.add_metric([name, kind], limit - value)
        yield load
        yield headroom
        gpus = GaugeMetricFamily("gpusched_gpus", "GPUs by state: busy, and the idle ones "
                                 "by their node's state (free on up nodes, draining, down)",
                                 labels=["state"])
        # every GPU is counted once: busy, or idle on an up, draining, down or hot-spare
        # node (the engine's state code 3: up, held out of placement)
        idle = np.bincount(states.astype(np.int64), weights=node_free,
                           minlength=len(NODE_STATES) + 1)
        gpus.add_metric(["busy"], float(service.cluster.num_gpus - node_free.sum()))
        for k, state in enumerate(NODE_STATES + ("spare",)):
            gpus.add_metric(["free" if state == "up" else state], float(idle[k]))
        yield gpus
        yield GaugeMetricFamily("gpusched_jobs", "Jobs placed", value=jobs)
        yield GaugeMetricFamily("gpusched_power_w", "Site power held against caps, W",
                                value=float(rack_power_w.sum()))


class Metrics:
    """The app's registry, its counters, and wrappers that count place and release."""

    def __init__(self, service: Any, floor: FloorModel, paths: set[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.paths = frozenset(paths)
        self.registry.register(_SiteCollector(service, floor))
        r = self.registry
        self.placements = Counter("gpusched_placements", "Jobs placed through place",
                                  registry=r)
        self.releases = Counter("gpusched_releases", "Jobs released through release",
                                registry=r)
        self.refusals = Counter("gpusched_refusals", "Place calls that did not fit, by "
                                "reason and the kind of the limit that blocked them",
                                ["reason", "limit_kind"], registry=r)
        self.requests = Counter("gpusched_requests", "HTTP requests answered",
                                ["method", "path", "status"], registry=r)
        self.latency = Histogram("gpusched_request_duration_seconds",
                                 "Time from request to reply", ["method", "path"],
                                 buckets=_BUCKETS_S, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        route = path if path in self.paths else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def counting_place(self, op: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``op`` (service.place) that counts what it placed or refused."""
        def place(body: Any) -> Any:
            reply, seq = op(body)
            if reply["placed"]:
                self.placements.inc()
            else:
                why = reply["explanation"]
                self.refusals.labels(why["status"], why.get("binding_kind") or "").inc()
            return reply, seq
        return place

    def counting_release(self, op: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def release(body: Any) -> Any:
            result = op(body)
            self.releases.inc()
            return result
        return release
