"""An independent model of a site and its live jobs, written from DESIGN.md.

It imports no gpusched code at all.  It reads the cluster's public spec dict
(``cluster.to_dict()``: names, racks, rows, halls, limits, power model) and builds its
own constraint rows from DESIGN.md's rules:

- a rack feed row per rack (coefficient 1);
- liquid racks: a CDU row at the liquid fraction phi and a residual-air row at 1 - phi;
  air racks: an air-cooling row (coefficient 1);
- a busway row per row, a switchboard and a cooling-plant row per hall, the facility
  IT limit row (all coefficient 1 over their racks); extra ``limits`` as given.

Node power = other (idle, or busy once any GPU is used) + idle watts per free GPU + the
job's cap per busy GPU; rack power is the sum of its nodes.  All arithmetic is exact:
coefficients are whole millionths, limits are compared as exact fractions.

Besides checking a live state (GPU capacity, every row), the model says what ``place``
must return for a job of 8 GPUs or fewer by brute force over every node, and checks
the rules a gang placement must follow (whole empty nodes, fewest pods, fewest racks in
its pod, the highest cap those nodes allow).

A site that changes (DESIGN.md, "A site that changes"): the model keeps its own state per
node (up, draining, down; which up nodes are spares it reads from the engine, then holds
the engine to the rules: a spare is empty, its busy power at the spare cap is budgeted)
and its own live limits.  A down node draws ``node_down_w``; nothing sits on a down node
or a spare; only up nodes take new work; rows are held against the live limits, and a
row may be over only when ``allowed_over`` says so (a limit just lowered, a node just
restored), never because something added load to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

SCALE = 10**6  # coefficients are whole millionths

DEFAULT_POWER = {"gpus_per_node": 8, "gpu_tdp_w": 700, "cap_min_w": 200, "cap_max_w": 700,
                 "cap_step_w": 25, "gpu_idle_w": 65, "node_other_idle_w": 1550,
                 "node_other_busy_w": 2800}


UP, DRAINING, DOWN, SPARE = 0, 1, 2, 3


class ModelViolation(AssertionError):
    """The engine broke a rule the independent model checks."""


@dataclass
class Row:
    name: str
    kind: str
    coef_units: dict[int, int]   # rack -> coefficient in millionths
    limit_units: int             # floor(limit * 1e6), exact


@dataclass
class Live:
    """One live job as the model remembers it (what place / set_cap returned)."""

    gpus: int
    max_cap_w: int
    min_cap_w: int
    nodes: tuple[int, ...]
    gpus_per_node: int
    cap_w: int


@dataclass
class SiteModel:
    """The site and its live jobs; the ledger is the model's own memory."""

    spec: dict[str, Any]
    ledger: dict[str, Live] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.spec
        power = {**DEFAULT_POWER, **s.get("power", {})}
        self.G = power["gpus_per_node"]
        self.gpu_idle_w = power["gpu_idle_w"]
        self.other_idle_w = power["node_other_idle_w"]
        self.other_busy_w = power["node_other_busy_w"]
        self.node_down_w = power.get("node_down_w", 0)
        self.cap_min_w = power["cap_min_w"]
        self.cap_max_w = power["cap_max_w"]
        self.cap_step_w = power["cap_step_w"]
        pod_index = {p["name"]: i for i, p in enumerate(s["pods"])}
        row_index = {r["name"]: i for i, r in enumerate(s["rows"])}
        hall_index = {h["name"]: i for i, h in enumerate(s["halls"])}
        rack_index = {r["name"]: i for i, r in enumerate(s["racks"])}
        self.num_pods = len(s["pods"])
        self.rack_pod: list[int] = []
        self.rack_first: list[int] = []
        self.node_rack: list[int] = []
        for r, rack in enumerate(s["racks"]):
            self.rack_pod.append(pod_index[rack["pod"]])
            self.rack_first.append(len(self.node_rack))
            self.node_rack.extend([r] * rack["nodes"])
        self.rack_first.append(len(self.node_rack))
        self.num_nodes = len(self.node_rack)
        self.num_racks = len(s["racks"])
        self.node_pod = [self.rack_pod[r] for r in self.node_rack]

        rows: list[Row] = []

        def add(name: str, kind: str, limit: float, racks: list[int], coef: float) -> None:
            units = round(Fraction(coef) * SCALE)
            rows.append(Row(name, kind, {r: units for r in racks},
                            math.floor(Fraction(limit) * SCALE)))

        for r, rack in enumerate(s["racks"]):
            add(f"{rack['name']} feed", "rack-feed", rack["feed_w"], [r], 1)
            if rack.get("kind", "liquid") == "liquid":
                phi = Fraction(rack.get("liquid_fraction", 0.88))
                add(f"{rack['name']} cdu", "cdu", rack["cdu_w"], [r], phi)
                add(f"{rack['name']} residual air", "rack-air", rack["residual_air_w"], [r],
                    1 - phi)
            else:
                add(f"{rack['name']} air cooling", "air-cooling", rack["air_cooling_w"], [r], 1)
        rack_row = [row_index[rack["row"]] for rack in s["racks"]]
        row_hall = [hall_index[row["hall"]] for row in s["rows"]]
        for i, row in enumerate(s["rows"]):
            add(f"{row['name']} busway", "row", row["busway_w"],
                [r for r in range(self.num_racks) if rack_row[r] == i], 1)
        for h, hall in enumerate(s["halls"]):
            in_hall = [r for r in range(self.num_racks) if row_hall[rack_row[r]] == h]
            add(f"{hall['name']} switchboard", "hall", hall["switchboard_w"], in_hall, 1)
            add(f"{hall['name']} cooling plant", "hall-cooling",
                hall.get("cooling_w", hall["switchboard_w"]), in_hall, 1)
        facility = s["facility"]
        add(f"{facility.get('name', 'facility')} IT limit", "facility", facility["it_limit_w"],
            list(range(self.num_racks)), 1)
        for limit in s.get("limits", []):
            rows.append(Row(limit["name"], limit.get("kind", "thermal"),
                            {rack_index[k]: round(Fraction(v) * SCALE)
                             for k, v in limit["coefficients"].items()},
                            math.floor(Fraction(limit["limit"]) * SCALE)))
        self.rows = rows
        self.rack_rows: list[list[int]] = [[] for _ in range(self.num_racks)]
        for i, row in enumerate(rows):
            for r in row.coef_units:
                self.rack_rows[r].append(i)
        # the site that changes: states, spares (from the engine), live limits, losses
        self.state = [UP] * self.num_nodes
        self.spare_cap_w: int | None = None
        self.limits = [row.limit_units for row in rows]
        self.lost: dict[str, tuple[int, ...]] = {}

    def is_open(self, n: int) -> bool:
        return self.state[n] == UP

    def fail(self, nodes: list[int]) -> list[str]:
        """Put nodes down in the ledger; the jobs hit, in the order first hit."""
        hit: dict[str, None] = {}
        for n in nodes:
            if self.state[n] == DOWN:
                continue
            for job_id, l in list(self.ledger.items()):
                if n in l.nodes:
                    self.ledger[job_id] = Live(l.gpus, l.max_cap_w, l.min_cap_w,
                                               tuple(x for x in l.nodes if x != n),
                                               l.gpus_per_node, l.cap_w)
                    self.lost[job_id] = self.lost.get(job_id, ()) + (n,)
                    hit[job_id] = None
            self.state[n] = DOWN
        return list(hit)

    def domain_nodes(self, name: str) -> list[int]:
        row = next(r for r in self.rows if r.name == name)
        return [n for r in sorted(row.coef_units)
                for n in range(self.rack_first[r], self.rack_first[r + 1])]

    def sync_spares(self, engine_states: list[int], spare_cap_w: int | None) -> None:
        """Read which up nodes the engine holds as spares; every other state is the
        model's own, and the engine must agree with it."""
        for n, theirs in enumerate(engine_states):
            mine = self.state[n]
            if mine in (UP, SPARE) and theirs in (UP, SPARE):
                self.state[n] = theirs
            elif mine != theirs:
                raise ModelViolation(f"node {n}: engine state {theirs}, the model's {mine}")
        self.spare_cap_w = spare_cap_w

    # ---- the cluster's own system must be the one DESIGN.md describes ----------------

    def check_constraints(self, cluster: Any) -> None:
        """The cluster's A·P <= b has exactly the model's rows (names, coefficients, b)."""
        c = cluster.constraints
        ours = {row.name: row for row in self.rows}
        if sorted(c.names) != sorted(ours):
            raise ModelViolation(f"rows differ: cluster has {sorted(set(c.names) - set(ours))}"
                                 f" extra, {sorted(set(ours) - set(c.names))} missing")
        A = c.A.tocsr()
        for i, name in enumerate(c.names):
            got = {int(A.indices[k]): round(Fraction(float(A.data[k])) * SCALE)
                   for k in range(A.indptr[i], A.indptr[i + 1])}
            got = {r: u for r, u in got.items() if u}
            want = {r: u for r, u in ours[name].coef_units.items() if u}
            if got != want or math.floor(Fraction(float(c.b[i])) * SCALE) != ours[name].limit_units:
                raise ModelViolation(f"row {name!r}: cluster {got} <= {c.b[i]}, model {want} "
                                     f"<= {ours[name].limit_units / SCALE}")

    # ---- power ----------------------------------------------------------------------

    def node_use(self, ledger: dict[str, Live] | None = None) -> tuple[list[int], list[int]]:
        """GPUs in use and the sum of busy GPU caps, per node, from the ledger alone."""
        used = [0] * self.num_nodes
        cap_sum = [0] * self.num_nodes
        for live in (self.ledger if ledger is None else ledger).values():
            for n in live.nodes:
                used[n] += live.gpus_per_node
                cap_sum[n] += live.gpus_per_node * live.cap_w
        return used, cap_sum

    def rack_power(self, used: list[int], cap_sum: list[int]) -> list[int]:
        power = [0] * self.num_racks
        for n in range(self.num_nodes):
            if self.state[n] == DOWN:
                power[self.node_rack[n]] += self.node_down_w
                continue
            if self.state[n] == SPARE:  # held as if busy at the spare cap
                assert self.spare_cap_w is not None
                power[self.node_rack[n]] += self.other_busy_w + self.G * self.spare_cap_w
                continue
            other = self.other_busy_w if used[n] else self.other_idle_w
            power[self.node_rack[n]] += (other + (self.G - used[n]) * self.gpu_idle_w
                                         + cap_sum[n])
        return power

    def loads(self, rack_power: list[int]) -> list[int]:
        return [sum(u * rack_power[r] for r, u in row.coef_units.items()) for row in self.rows]

    def broken(self, rack_power: list[int]) -> list[str]:
        return [row.name for row, load, limit in zip(self.rows, self.loads(rack_power),
                                                     self.limits) if load > limit]

    def broken_by(self, before: list[int], after: list[int]) -> list[str]:
        """Rows whose load went up and is now over its limit: a change may not do that."""
        return [row.name for row, b, a, limit in zip(self.rows, self.loads(before),
                                                     self.loads(after), self.limits)
                if a > b and a > limit]

    def over_now(self) -> set[str]:
        used, cap_sum = self.node_use()
        return set(self.broken(self.rack_power(used, cap_sum)))

    # ---- checking an engine ---------------------------------------------------------

    def check_engine(self, engine: Any, allowed_over: set[str] = frozenset()) -> None:
        """Capacity, every row, and the engine's views, all recomputed from the ledger."""
        live = {p.job_id: p for p in engine.placements()}
        mine = {job_id: (l.nodes, l.gpus_per_node, l.cap_w) for job_id, l in self.ledger.items()}
        theirs = {job_id: (tuple(p.nodes), p.gpus_per_node, p.cap_w) for job_id, p in live.items()}
        if mine != theirs:
            raise ModelViolation(f"engine placements {theirs} differ from the model's {mine}")
        if list(live) != list(self.ledger):
            # jobs are listed in the order they were placed; set_cap and restore keep it
            raise ModelViolation(f"engine lists jobs as {list(live)}, placed as "
                                 f"{list(self.ledger)}")
        used, cap_sum = self.node_use()
        over = [n for n in range(self.num_nodes) if used[n] > self.G]
        if over:
            raise ModelViolation(f"GPUs over-committed on nodes {over}")
        for job_id, l in self.ledger.items():
            if not self.cap_min_w <= l.cap_w <= self.cap_max_w:
                raise ModelViolation(f"{job_id}: cap {l.cap_w} outside the GPU's range")
        for job_id, l in self.ledger.items():
            bad = [n for n in l.nodes if self.state[n] in (DOWN, SPARE)]
            if bad:
                raise ModelViolation(f"{job_id} sits on nodes that are down or spare: {bad}")
        spares_used = [n for n in range(self.num_nodes) if self.state[n] == SPARE and used[n]]
        if spares_used:
            raise ModelViolation(f"spare nodes hold jobs: {spares_used}")
        states = [int(x) for x in engine.node_states()]
        if states != self.state:
            raise ModelViolation(f"engine node states {states} != model {self.state}")
        rack_power = self.rack_power(used, cap_sum)
        broken = [name for name in self.broken(rack_power) if name not in allowed_over]
        if broken:
            raise ModelViolation(f"rows broken: {broken}")
        if [int(x) for x in engine.rack_power_w()] != rack_power:
            raise ModelViolation(f"engine rack power {list(engine.rack_power_w())} != model "
                                 f"{rack_power}")
        if [int(x) for x in engine.node_free_gpus()] != [self.G - u for u in used]:
            raise ModelViolation(f"engine free GPUs per node {list(engine.node_free_gpus())} "
                                 f"!= model {[self.G - u for u in used]}")
        if engine.free_gpus() != self.num_nodes * self.G - sum(used):
            raise ModelViolation(f"engine free_gpus {engine.free_gpus()} != model "
                                 f"{self.num_nodes * self.G - sum(used)}")
        slack = [limit - load for limit, load in zip(self.limits, self.loads(rack_power))]
        names = engine.cluster.constraints.names
        by_name = dict(zip((row.name for row in self.rows), slack))
        theirs_slack = [int(x) for x in engine.row_slack_units()]
        if theirs_slack != [by_name[n] for n in names]:
            raise ModelViolation("engine row slack differs from the model's")
        if len(engine) != len(self.ledger):
            raise ModelViolation(f"len(engine)={len(engine)}, model has {len(self.ledger)}")

    # ---- what place must do ---------------------------------------------------------

    def grid(self, max_cap: int, min_cap: int) -> list[int]:
        """Caps a job may get, highest first: max, max - step, ..., and min last."""
        caps = list(range(max_cap, min_cap - 1, -self.cap_step_w))
        if caps[-1] != min_cap:
            caps.append(min_cap)
        return caps

    def _fits(self, loads: list[int], rack_delta_w: dict[int, int]) -> bool:
        for i in {i for r in rack_delta_w for i in self.rack_rows[r]}:
            row = self.rows[i]
            extra = sum(row.coef_units.get(r, 0) * d for r, d in rack_delta_w.items())
            if extra > 0 and loads[i] + extra > self.limits[i]:
                return False
        return True

    def best_cap(self, loads: list[int], used: list[int], nodes: tuple[int, ...],
                 gpus_per_node: int, max_cap: int, min_cap: int) -> int | None:
        """Highest grid cap at which ``gpus_per_node`` more GPUs on ``nodes`` break no row."""
        for cap in self.grid(max_cap, min_cap):
            delta: dict[int, int] = {}
            for n in nodes:
                d = gpus_per_node * (cap - self.gpu_idle_w)
                if used[n] == 0:
                    d += self.other_busy_w - self.other_idle_w
                r = self.node_rack[n]
                delta[r] = delta.get(r, 0) + d
            if self._fits(loads, delta):
                return cap
        return None

    def expect_small(self, gpus: int, max_cap: int, min_cap: int,
                     pod: int | None) -> tuple[str, tuple[int, ...], int | None]:
        """(status, nodes, cap) ``place`` must give a job of ``gpus`` <= G, by brute force.

        Candidates are every node with room; the highest cap wins, ties go to the node
        with the fewest free GPUs (best fit), then the lowest index (DESIGN.md).
        """
        used, cap_sum = self.node_use()
        loads = self.loads(self.rack_power(used, cap_sum))
        best: tuple[int, int, int] | None = None
        seen_room = False
        cache: dict[tuple[int, bool], int | None] = {}
        for n in range(self.num_nodes):
            if (pod is not None and self.node_pod[n] != pod) or not self.is_open(n):
                continue
            free = self.G - used[n]
            if free < gpus:
                continue
            seen_room = True
            key = (self.node_rack[n], used[n] == 0)
            if key not in cache:
                cache[key] = self.best_cap(loads, used, (n,), gpus, max_cap, min_cap)
            cap = cache[key]
            if cap is not None and (best is None or (-cap, free, n) < best):
                best = (-cap, free, n)
        if best is None:
            return ("no-power" if seen_room else "no-capacity"), (), None
        return "placeable", (best[2],), -best[0]

    def check_gang(self, gpus: int, max_cap: int, min_cap: int, pod: int | None,
                   placement: Any) -> None:
        """A gang of whole nodes: rules checked against the state *before* it was placed."""
        k = gpus // self.G
        nodes = tuple(placement.nodes)
        used, cap_sum = self.node_use()
        if placement.gpus_per_node != self.G or len(nodes) != k or len(set(nodes)) != k:
            raise ModelViolation(f"gang of {gpus} GPUs got {placement}")
        if any(used[n] for n in nodes):
            raise ModelViolation(f"gang {placement} took a node already in use")
        if not all(self.is_open(n) for n in nodes):
            raise ModelViolation(f"gang {placement} took a node that is not up")
        empty_in_pod = [0] * self.num_pods
        for n in range(self.num_nodes):
            if used[n] == 0 and self.is_open(n):
                empty_in_pod[self.node_pod[n]] += 1
        pods_used = {self.node_pod[n] for n in nodes}
        if pod is not None and pods_used != {pod}:
            raise ModelViolation(f"gang {placement} left its pod hint {pod}")
        if any(empty_in_pod[p] >= k for p in range(self.num_pods)):
            if len(pods_used) != 1:
                raise ModelViolation(f"gang {placement} spans pods {pods_used} though one "
                                     "pod had room")
            (p,) = pods_used
            racks_used = {self.node_rack[n] for n in nodes}
            empty_in_rack = sorted((sum(1 for n in range(self.rack_first[r],
                                                         self.rack_first[r + 1])
                                        if used[n] == 0 and self.is_open(n))
                                    for r in range(self.num_racks) if self.rack_pod[r] == p),
                                   reverse=True)
            fewest, left = 0, k
            for e in empty_in_rack:
                if left <= 0:
                    break
                fewest += 1
                left -= e
            if len(racks_used) != fewest:
                raise ModelViolation(f"gang {placement} uses {len(racks_used)} racks of pod {p};"
                                     f" {fewest} would do")
        else:
            # No pod holds it: pods are taken whole (skipping any that would break a row,
            # so not always the fewest pods) and the remainder goes in one more pod.
            taken = [0] * self.num_pods
            for n in nodes:
                taken[self.node_pod[n]] += 1
            partial = [p for p in pods_used if taken[p] != empty_in_pod[p]]
            if len(partial) > 1:
                raise ModelViolation(f"gang {placement} takes part of pods {partial}; only "
                                     "the remainder pod may be partial")
        self.check_cap(nodes, self.G, max_cap, min_cap, placement.cap_w, used, cap_sum)

    def check_cap(self, nodes: tuple[int, ...], gpus_per_node: int, max_cap: int,
                  min_cap: int, cap_w: int, used: list[int] | None = None,
                  cap_sum: list[int] | None = None) -> None:
        """``cap_w`` is the highest grid cap the job's nodes allow (state before placing)."""
        if used is None or cap_sum is None:
            used, cap_sum = self.node_use()
        loads = self.loads(self.rack_power(used, cap_sum))
        want = self.best_cap(loads, used, nodes, gpus_per_node, max_cap, min_cap)
        if want != cap_w:
            raise ModelViolation(f"cap {cap_w} W on nodes {nodes}; the highest cap on the grid "
                                 f"{self.grid(max_cap, min_cap)[:4]}... those nodes allow is "
                                 f"{want}")

    def gang_status(self, gpus: int, pod: int | None) -> str | None:
        """'no-capacity' when too few empty nodes are in scope, else None (not decided)."""
        used, _ = self.node_use()
        k = gpus // self.G
        empty = sum(1 for n in range(self.num_nodes)
                    if used[n] == 0 and self.is_open(n)
                    and (pod is None or self.node_pod[n] == pod))
        return "no-capacity" if empty < k else None

    def fits_placement(self, nodes: tuple[int, ...], gpus_per_node: int, cap_w: int) -> bool:
        """Could ``gpus_per_node`` GPUs at ``cap_w`` go on each of ``nodes`` right now?

        Each node needs that many free GPUs (all of them for a job of whole nodes), and
        every row must hold afterwards.
        """
        used, cap_sum = self.node_use()
        before = self.rack_power(used, cap_sum)
        whole = len(nodes) > 1 or gpus_per_node == self.G
        for n in nodes:
            if not self.is_open(n) or (used[n] if whole else used[n] + gpus_per_node > self.G):
                return False
        for n in nodes:
            used[n] += gpus_per_node
            cap_sum[n] += gpus_per_node * cap_w
        return not self.broken_by(before, self.rack_power(used, cap_sum))

    def fits_after(self, job_id: str, cap_w: int) -> bool:
        """Would every row hold if ``job_id`` ran at ``cap_w`` on the same nodes?"""
        ledger = dict(self.ledger)
        l = ledger[job_id]
        ledger[job_id] = Live(l.gpus, l.max_cap_w, l.min_cap_w, l.nodes, l.gpus_per_node, cap_w)
        before = self.rack_power(*self.node_use())
        used, cap_sum = self.node_use(ledger)
        return not self.broken_by(before, self.rack_power(used, cap_sum))
