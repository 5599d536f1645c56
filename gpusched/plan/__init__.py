"""Cluster-wide allocation with scipy (HiGHS): which queued jobs run, in which pod, at which cap.

Two solvers, both on the cluster's one constraint system ``A · P <= b``:

* :func:`allocate` -- a MILP (``scipy.optimize.milp``) over the queue: admit or not, the
  pod, and the cap level of every queued job, maximising ``sum weight * gpus * s(cap)``
  given the load already running.  :func:`apply` then places the admitted jobs.
* :func:`rebalance_caps` -- an LP (``scipy.optimize.linprog``) over the caps of the jobs
  already running, placement fixed; its dual prices name the limits that bind.

The model of :func:`allocate`
-----------------------------
*Cap levels.*  A job's caps are its grid ``max_cap_w, max - 25, ..., min_cap_w``
(``PowerModel.cap_grid_w``) plus the whole-watt breakpoints of its throughput curve
(:func:`cap_levels_w`), with s read from the job's curve at the site's TDP
(``PowerModel.speed``, the same number the simulator uses).  One integer variable per (job, place, level) selects a grid
point, so the objective uses s(cap) exactly at the grid points; this is the chord
(piecewise-linear) form of the concave s with breakpoints on the 25 W grid.

*Power.*  Admitting a job adds, per node, ``busy_step_w + gpus_per_node * (cap -
gpu_idle_w)`` W for a job of whole nodes (it takes empty nodes).  A job of 1..8 GPUs is
charged ``gpus * (cap - gpu_idle_w) + busy_step_w``: the busy step counted always, which
over-counts when it lands on a node already busy (conservative, never short).  Every
row is charged with coefficient max(A[i, r] for r in the pod): exact for rows whose
coefficient is uniform over the pod (busways, switchboards, cooling plants, the
facility), conservative otherwise (thermal rows over part of a pod).  Rows that load
every pod alike (a hall's switchboard and its cooling plant) are parallel; only the
tightest is kept.

*Rows, by where they sit.*  A row touching two or more pods (hall, hall cooling,
facility, multi-pod thermal) is a *zone row*; pods in the same zone rows form a zone
(a hall, in the presets).  A row touching one pod is a *pod row* (its busway) -- unless
it touches a single rack of a multi-rack pod, then it is a *rack row* (feed, CDU,
residual air, air cooling).  Rows at pod level and above aggregate exactly.  Rack rows
cannot: each pod is derated instead, counting as usable only the nodes its racks can
power at the queue's highest cap (``h_r`` = the rack's tightest headroom; empty nodes
first, then partly used ones).  Rows that cannot bind even if the whole queue ran at its
highest cap in the place that loads them most are dropped from the model (in
colossus-100k: every busway and rack row of an empty site).

*Capacity, by size class.*  Sizes are rounded up to powers of two (GPUs below a node,
nodes above; in a class of a single pod whole-node jobs keep their exact size, since
for one bin the sum is exact).  For items whose sizes divide each other, "for every
size s, the items of size >= s fit in ``sum over bins of s * floor(free / s)``" is
necessary, and first-fit decreasing -- optimal for divisible sizes (Coffman, Garey
and Johnson, J. Complexity 1987) -- packs whatever meets it; so one row per size
class and pod class expresses node capacity and the free GPUs of partly used nodes.
The tests check that :func:`apply` places every job admitted.

*Pod classes (exact aggregation).*  Pods equal in state (usable empty nodes, the free
GPUs of their usable partly used nodes), in zone and with no binding pod row are
interchangeable: they become one class with an integer member count, and placements
stay exact because the size-class rows above hold per member.  A pod whose own row
can bind is a class of its own.  Jobs larger than a pod *span* pods: they take whole
empty pods of one zone (integer ``u_c`` members of class c reserved for them) and are
placed on those nodes by :func:`apply` with the engine's checked ``place_on``.

*Job classes (exact aggregation).*  Queued jobs equal in size, caps, weight and
throughput curve are interchangeable too: one integer variable per (job class, place,
level), bounded by the class's count; the earliest jobs of a class are admitted first.

*When it is still too big.*  Above 600 integer variables the LP relaxation is solved
first (``linprog``, HiGHS): it gives the bound, and its reduced costs.  A restricted
MILP then keeps free only the LP's support, the neighbouring cap level on either side of
each variable in it, and the 50 variables outside it with the smallest reduced cost
(the ones closest to paying for the room a rounded-out job leaves); everything else is
fixed at 0 (method ``"lp-fix"``, relax-and-fix).  A vertex of the LP has at most as many
fractional job classes as binding coupling rows, so that MILP is small.  If it finds
nothing within its node limit, the LP point is rounded (down for jobs, whole pods up for spanning
jobs) and filled greedily by reduced cost.  Up to ``exact_max_vars`` variables the full
MILP also runs (node limit again), and the better incumbent is kept.  No clock
decides any of this (the wall-clock limit is a reported safety net), so the same
inputs give the same allocation on every machine.  The gap is always
against the best bound (LP or MILP dual bound), so it is honest for every method.

Everything the MILP admits is placed by :func:`apply` in the order of ``admitted``
(spanning jobs, then whole-node jobs largest first, then small jobs largest first); a
job the engine still refuses (a rack row the derate missed, a state changed since the
solve) lands in the result's ``dropped`` with the engine's own explanation.
"""

from __future__ import annotations

from ..errors import AllocationError
from .allocation import DEFAULT_NODE_LIMIT, allocate
from .apply import apply
from .envelope import EnvelopePlan, plan_envelope
from .rebalance import CapPlan, rebalance_caps
from .result import Allocation

__all__ = ["DEFAULT_NODE_LIMIT", "allocate", "apply", "rebalance_caps", "Allocation", "CapPlan",
           "AllocationError", "plan_envelope", "EnvelopePlan"]
