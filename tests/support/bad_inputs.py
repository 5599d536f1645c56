"""The table of bad jobs and bad calls, shared by test_bad_input.py and the state machine.

Each row is a call on an engine that must raise ``error`` with every word of ``words``
in its message (case-insensitive) and change nothing.  ``ctx`` gives a live job id
(``ctx.live``), a released one (``ctx.released``) and the cluster, so a row can aim at
real state.  Rows whose error comes from building the Job itself (gpus=0, NaN caps,
a non-str id) are here too: a caller meets them at the same point in their code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from gpusched import Job
from gpusched.errors import (DomainError, DuplicateJobError, JobError, LimitError,
                             PlacementError, PreemptionError, RepairError, SnapshotError,
                             SpareError, UnknownJobError, UnknownNodeError, UnknownRowError)


@dataclass(frozen=True)
class Ctx:
    live: str        # a placed job id
    live_gpus: int   # its size
    released: str    # an id placed once and released
    num_gpus: int    # the cluster's GPUs
    num_pods: int
    snapshot: dict[str, Any]  # engine.snapshot() now


@dataclass(frozen=True)
class BadCall:
    name: str
    call: Callable[[Any, Ctx], Any]
    error: type[BaseException]
    words: tuple[str, ...]


def _tampered_overlap(snap: dict[str, Any]) -> dict[str, Any]:
    """A snapshot with 8 more copies of its first job on the same node: over 8 GPUs."""
    snap = {**snap, "jobs": list(snap["jobs"])}
    first = snap["jobs"][0]
    snap["jobs"].extend({**first, "job": {**first["job"], "id": f"ghost-{i}"}}
                        for i in range(8))
    return snap


def _tampered_cap(snap: dict[str, Any]) -> dict[str, Any]:
    snap = {**snap, "jobs": list(snap["jobs"])}
    first = snap["jobs"][0]
    snap["jobs"][0] = {**first, "cap_w": 999}
    return snap


def _tampered_node(snap: dict[str, Any]) -> dict[str, Any]:
    # the first job that holds a node (a degraded job may hold none: its node failed)
    snap = {**snap, "jobs": list(snap["jobs"])}
    i = next((k for k, entry in enumerate(snap["jobs"]) if entry["nodes"]), 0)
    first = snap["jobs"][i]
    snap["jobs"][i] = {**first, "nodes": [10**6 + n for n in first["nodes"]] or [10**6]}
    return snap


# -- hostile types: ids and jobs whose own methods would run inside the engine --------

_meddled = iter(range(10**9))


def _meddle(engine: Any) -> None:
    """What a hostile object does when the engine calls it: place one more job."""
    engine.place(Job(f"meddler-{next(_meddled)}", 8))


def _meddling_str(engine: Any, text: str) -> str:
    """A str subclass equal to ``text`` whose __hash__ and __eq__ change the engine."""
    class MeddlingStr(str):
        def __hash__(self) -> int:
            _meddle(engine)
            return str.__hash__(self)

        def __eq__(self, other: object) -> bool:
            _meddle(engine)
            return str.__eq__(self, other)

    return MeddlingStr(text)


def _meddling_object(engine: Any) -> Any:
    """Not a str at all, with the same __hash__ and __eq__."""
    class Meddler:
        def __hash__(self) -> int:
            _meddle(engine)
            return hash("a")

        def __eq__(self, other: object) -> bool:
            _meddle(engine)
            return True

        def __repr__(self) -> str:
            return "<meddler>"

    return Meddler()


class UnhashableStr(str):
    __hash__ = None  # type: ignore[assignment]


class IntSubclass(int):
    pass


def _job_with_id(job_id: Any) -> Job:
    """A Job subclass whose id property hands the engine ``job_id`` (Job checked "a")."""
    class ShiftyJob(Job):
        __slots__ = ()

        def __getattribute__(self, name: str) -> Any:
            return job_id if name == "id" else object.__getattribute__(self, name)

    return ShiftyJob("a", 1)


BAD_CALLS: list[BadCall] = [
    # -- sizes
    BadCall("gpus=0", lambda e, c: e.place(Job("x", 0)), JobError, ("gpus=0", "at least 1")),
    BadCall("gpus=-1", lambda e, c: e.place(Job("x", -1)), JobError, ("gpus=-1", "at least 1")),
    BadCall("gpus=9", lambda e, c: e.place(Job("x", 9)), JobError,
            ("gpus=9", "multiple of 8", "whole nodes")),
    BadCall("gpus=12", lambda e, c: e.place(Job("x", 12)), JobError,
            ("gpus=12", "multiple of 8")),
    BadCall("gpus=2**31", lambda e, c: e.place(Job("x", 2**31)), JobError,
            ("gpus=2147483648", "more than")),
    BadCall("gpus=2**63 (beyond int64)", lambda e, c: e.place(Job("x", 2**63)), JobError,
            ("gpus=9223372036854775808",)),
    BadCall("gpus above the cluster", lambda e, c: e.place(Job("x", c.num_gpus + 8)), JobError,
            ("more than", "gpus")),
    BadCall("gpus=8.0 (float)", lambda e, c: e.place(Job("x", 8.0)), JobError,
            ("gpus=8.0", "whole number")),
    BadCall("gpus=True", lambda e, c: e.place(Job("x", True)), JobError,
            ("gpus=true", "whole number")),
    BadCall("gpus='8'", lambda e, c: e.place(Job("x", "8")), JobError,
            ("gpus='8'", "whole number")),
    # -- caps
    BadCall("max_cap_w=NaN", lambda e, c: e.place(Job("x", 1, max_cap_w=math.nan)), JobError,
            ("max_cap_w=nan", "finite")),
    BadCall("max_cap_w=inf", lambda e, c: e.place(Job("x", 1, max_cap_w=math.inf)), JobError,
            ("max_cap_w=inf", "finite")),
    BadCall("min_cap_w=-inf", lambda e, c: e.place(Job("x", 1, min_cap_w=-math.inf)),
            JobError, ("min_cap_w=-inf", "finite")),
    BadCall("min_cap_w=NaN", lambda e, c: e.place(Job("x", 1, min_cap_w=math.nan)), JobError,
            ("min_cap_w=nan", "finite")),
    BadCall("min above max", lambda e, c: e.place(Job("x", 1, max_cap_w=400, min_cap_w=500)),
            JobError, ("min_cap_w=500", "max_cap_w=400", "at most")),
    BadCall("max_cap_w=701", lambda e, c: e.place(Job("x", 1, max_cap_w=701)), JobError,
            ("max_cap_w=701", "[200, 700]")),
    BadCall("max_cap_w=10000", lambda e, c: e.place(Job("x", 8, max_cap_w=10_000)), JobError,
            ("max_cap_w=10000", "[200, 700]")),
    BadCall("min_cap_w=199", lambda e, c: e.place(Job("x", 1, min_cap_w=199)), JobError,
            ("min_cap_w=199", "[200, 700]")),
    BadCall("min_cap_w=0", lambda e, c: e.place(Job("x", 16, min_cap_w=0)), JobError,
            ("min_cap_w=0", "[200, 700]")),
    BadCall("max_cap_w=-700", lambda e, c: e.place(Job("x", 1, max_cap_w=-700, min_cap_w=-800)),
            JobError, ("max_cap_w=-700", "[200, 700]")),
    BadCall("max_cap_w=650.5", lambda e, c: e.place(Job("x", 1, max_cap_w=650.5)), JobError,
            ("max_cap_w=650.5", "whole number")),
    BadCall("weight=NaN", lambda e, c: e.place(Job("x", 1, weight=math.nan)), JobError,
            ("weight=nan", "finite")),
    # -- ids
    BadCall("id=7 (int)", lambda e, c: e.place(Job(7, 1)), JobError, ("7", "int", "str")),
    BadCall("id=None", lambda e, c: e.place(Job(None, 1)), JobError, ("none", "str")),
    BadCall("id=''", lambda e, c: e.place(Job("", 1)), JobError, ("1 to 256",)),
    BadCall("duplicate id", lambda e, c: e.place(Job(c.live, 1)), DuplicateJobError,
            ("already placed", "release it first")),
    # the compiled core finds a duplicate at its insert, or earlier when another outcome
    # would come first: these pin the order (duplicate before a bad pod, and before None)
    BadCall("duplicate id that would not fit", lambda e, c: e.place(
        Job(c.live, e.cluster.num_gpus)), DuplicateJobError, ("already placed",)),
    BadCall("duplicate id with a bad pod", lambda e, c: e.place(Job(c.live, 1), pod=10**6),
            DuplicateJobError, ("already placed",)),
    BadCall("duplicate id inside a pod", lambda e, c: e.place(Job(c.live, 1), pod=0),
            DuplicateJobError, ("already placed",)),
    BadCall("duplicate id (explain)", lambda e, c: e.explain(Job(c.live, 1)),
            DuplicateJobError, ("already placed",)),
    BadCall("place_at_most of a non-Job", lambda e, c: e.place_at_most("x", 500), JobError,
            ("expected a gpusched.Job", "str")),
    BadCall("place_at_most above the job's max", lambda e, c: e.place_at_most(
        Job("x", 8, min_cap_w=300), 710), JobError, ("cap_w=710", "[300, 700]")),
    BadCall("duplicate id in place_many", lambda e, c: e.place_many([Job(c.live, 1)]),
            DuplicateJobError, ("already placed",)),
    BadCall("not a Job", lambda e, c: e.place({"id": "x", "gpus": 1}), JobError,
            ("gpusched.job", "dict")),
    BadCall("release unknown id", lambda e, c: e.release("never-placed"), UnknownJobError,
            ("never-placed", "no job")),
    BadCall("release twice", lambda e, c: e.release(c.released), UnknownJobError,
            ("already released",)),
    BadCall("release int id", lambda e, c: e.release(7), UnknownJobError, ("7", "str")),
    BadCall("release list id (unhashable)", lambda e, c: e.release(["a"]), UnknownJobError,
            ("['a']", "str")),
    BadCall("release_many with an unknown id",
            lambda e, c: e.release_many(["never-placed"]), UnknownJobError, ("never-placed",)),
    BadCall("placement of unknown id", lambda e, c: e.placement("never-placed"),
            UnknownJobError, ("never-placed",)),
    BadCall("place_on of a non-Job", lambda e, c: e.place_on("x", [0], 500), JobError,
            ("expected a gpusched.Job", "str")),
    BadCall("place_on of None", lambda e, c: e.place_on(None, [0], 500), JobError,
            ("expected a gpusched.Job", "nonetype")),
    # -- batches are refused whole
    # (bad on every power model: more GPUs than the cluster, or not whole nodes)
    BadCall("place_many with a bad job last", lambda e, c: e.place_many(
        [Job("ok-1", 1), Job("ok-2", 1), Job("bad", c.num_gpus + 1)]), JobError,
            ("'bad'", "gpus=")),
    BadCall("place_many with a duplicate (live) id last", lambda e, c: e.place_many(
        [Job("ok-1", 1), Job(c.live, 1)]), DuplicateJobError, ("already placed",)),
    BadCall("place_many with an id twice", lambda e, c: e.place_many(
        [Job("twin", 1), Job("twin", 2)]), DuplicateJobError, ("'twin'", "twice")),
    BadCall("place_many with a non-Job last", lambda e, c: e.place_many(
        [Job("ok-1", 1), "x"]), JobError, ("expected a gpusched.Job",)),
    BadCall("place_many with a bad pod", lambda e, c: e.place_many(
        [Job("ok-1", 1)], pod=c.num_pods), JobError, ("out of range",)),
    BadCall("release_many with an unknown id last",
            lambda e, c: e.release_many([c.live, "never-placed"]), UnknownJobError,
            ("never-placed",)),
    BadCall("release_many with a duplicate id", lambda e, c: e.release_many([c.live, c.live]),
            UnknownJobError, ("twice",)),
    # -- hostile types
    BadCall("id a str subclass", lambda e, c: e.place(Job(_meddling_str(e, "m"), 8)),
            JobError, ("'m'", "str subclass", "exactly str")),
    BadCall("id a str subclass colliding with a live id",
            lambda e, c: e.place(Job(_meddling_str(e, c.live), 8)), JobError,
            ("exactly str",)),
    BadCall("id an unhashable str subclass", lambda e, c: e.place(Job(UnhashableStr("u"), 1)),
            JobError, ("'u'", "unhashablestr", "exactly str")),
    BadCall("id an int subclass", lambda e, c: e.place(Job(IntSubclass(7), 1)), JobError,
            ("7", "intsubclass", "str")),
    BadCall("id an object with meddling __eq__", lambda e, c: e.place(
        Job(_meddling_object(e), 1)), JobError, ("<meddler>", "str")),
    BadCall("Job subclass handing out a meddling id",
            lambda e, c: e.place(_job_with_id(_meddling_str(e, "a"))), JobError,
            ("exactly str",)),
    BadCall("Job subclass handing out an int id", lambda e, c: e.place(_job_with_id(7)),
            JobError, ("7", "int", "exactly str")),
    BadCall("Job subclass handing out a meddling id (place_on)",
            lambda e, c: e.place_on(_job_with_id(_meddling_str(e, "a")), [0], 700), JobError,
            ("exactly str",)),
    BadCall("release a meddling str equal to a live id",
            lambda e, c: e.release(_meddling_str(e, c.live)), UnknownJobError,
            ("exactly str",)),
    BadCall("release an unhashable str", lambda e, c: e.release(UnhashableStr(c.live)),
            UnknownJobError, ("unhashablestr", "exactly str")),
    BadCall("release a meddling object", lambda e, c: e.release(_meddling_object(e)),
            UnknownJobError, ("<meddler>",)),
    BadCall("release_many with a meddling str",
            lambda e, c: e.release_many([_meddling_str(e, c.live)]), UnknownJobError,
            ("exactly str",)),
    BadCall("placement of a meddling str", lambda e, c: e.placement(_meddling_str(e, c.live)),
            UnknownJobError, ("exactly str",)),
    BadCall("job of an unhashable str", lambda e, c: e.job(UnhashableStr(c.live)),
            UnknownJobError, ("exactly str",)),
    BadCall("set_cap of a meddling str", lambda e, c: e.set_cap(_meddling_str(e, c.live), 500),
            UnknownJobError, ("exactly str",)),
    # -- pods
    BadCall("pod=-1", lambda e, c: e.place(Job("x", 1), pod=-1), JobError,
            ("pod=-1", "out of range")),
    BadCall("pod=num_pods", lambda e, c: e.place(Job("x", 1), pod=c.num_pods), JobError,
            ("pod=", "out of range")),
    BadCall("pod=2**40", lambda e, c: e.place(Job("x", 16), pod=2**40), JobError,
            ("pod=1099511627776", "out of range")),
    BadCall("pod='nowhere'", lambda e, c: e.place(Job("x", 1), pod="nowhere"), JobError,
            ("'nowhere'", "not a pod")),
    BadCall("pod=1.0", lambda e, c: e.place(Job("x", 1), pod=1.0), JobError,
            ("pod=1.0", "index")),
    BadCall("pod=True", lambda e, c: e.place(Job("x", 1), pod=True), JobError, ("pod=true",)),
    BadCall("explain pod out of range", lambda e, c: e.explain(Job("x", 1), pod=c.num_pods),
            JobError, ("out of range",)),
    # -- caps of running jobs
    BadCall("set_cap below the job's min", lambda e, c: e.set_cap(c.live, 199), PlacementError,
            ("cap_w=199", "outside")),
    BadCall("set_cap NaN", lambda e, c: e.set_cap(c.live, math.nan), PlacementError,
            ("whole number",)),
    BadCall("set_cap unknown id", lambda e, c: e.set_cap("never-placed", 500), UnknownJobError,
            ("never-placed",)),
    # -- snapshots
    BadCall("restore a tampered snapshot (overlap)",
            lambda e, c: e.load_snapshot(_tampered_overlap(c.snapshot)), SnapshotError,
            ("ghost",)),
    BadCall("restore a tampered snapshot (cap 999)",
            lambda e, c: e.load_snapshot(_tampered_cap(c.snapshot)), SnapshotError,
            ("cap_w=999",)),
    BadCall("restore a tampered snapshot (node out of range)",
            lambda e, c: e.load_snapshot(_tampered_node(c.snapshot)), SnapshotError,
            ("node indices",)),
    BadCall("restore a snapshot of another cluster",
            lambda e, c: e.load_snapshot({**c.snapshot, "cluster": "elsewhere"}), SnapshotError,
            ("'elsewhere'",)),
    BadCall("restore a snapshot of another format",
            lambda e, c: e.load_snapshot({**c.snapshot, "format": 99}), SnapshotError,
            ("format 99",)),
    BadCall("restore a list", lambda e, c: e.load_snapshot([]), SnapshotError, ("dict",)),
    # -- a site that changes: nodes, domains, repair, spares, live limits
    BadCall("drain an unknown node name", lambda e, c: e.drain("no-such-host"),
            UnknownNodeError, ("'no-such-host'", "names")),
    BadCall("fail a node out of range", lambda e, c: e.fail(10**6), UnknownNodeError,
            ("1000000", "out of range")),
    BadCall("fail many with one bad node last", lambda e, c: e.fail([0, -1]),
            UnknownNodeError, ("-1", "out of range")),
    BadCall("restore node True", lambda e, c: e.restore(True), UnknownNodeError,
            ("true", "index")),
    BadCall("fail an unknown domain", lambda e, c: e.fail_domain("nowhere feed"), DomainError,
            ("'nowhere feed'", "not a failure domain")),
    BadCall("fail the facility row as a domain",
            lambda e, c: e.fail_domain(e.cluster.constraints.names[-1]), DomainError,
            ("facility", "not a failure domain")),
    BadCall("restore an unknown domain", lambda e, c: e.restore_domain(7), DomainError,
            ("7", "not a failure domain")),
    BadCall("repair a healthy job", lambda e, c: e.repair(c.live), RepairError,
            ("lost no node",)),
    BadCall("repair an unknown job", lambda e, c: e.repair("never-placed"), UnknownJobError,
            ("never-placed",)),
    BadCall("set_limit NaN", lambda e, c: e.set_limit(e.cluster.constraints.names[-1],
                                                      math.nan), LimitError, ("nan", "finite")),
    BadCall("set_limit -1 W", lambda e, c: e.set_limit(0, -1), LimitError, ("-1", "at least 0")),
    BadCall("set_limit inf", lambda e, c: e.set_limit(0, math.inf), LimitError,
            ("inf", "finite")),
    BadCall("set_limit '5 MW'", lambda e, c: e.set_limit(0, "5 MW"), LimitError,
            ("'5 mw'", "watts")),
    BadCall("set_limit of no row", lambda e, c: e.set_limit("nowhere busway", 1000),
            UnknownRowError, ("'nowhere busway'",)),
    BadCall("set_limit of row index out of range",
            lambda e, c: e.set_limit(10**6, 1000), UnknownRowError, ("row=1000000",)),
    BadCall("spares larger than a pod", lambda e, c: e.set_spares(10**6), SpareError,
            ("k=1000000", "smallest pod")),
    BadCall("spares per hall", lambda e, c: e.set_spares(1, per="hall"), SpareError,
            ("'hall'", "'pod' or 'row'")),
    BadCall("spares at a cap above TDP", lambda e, c: e.set_spares(1, cap_w=10_000),
            SpareError, ("cap_w=10000",)),
    BadCall("spares k=-1", lambda e, c: e.set_spares(-1), SpareError, ("k=-1",)),
    BadCall("restore jobs with a missing field",
            lambda e, c: e.load_snapshot({**c.snapshot, "jobs": [{"job": {"id": "q"}}]}),
            SnapshotError, ("jobs[0]",)),
    # -- priorities and preemption plans (issue 16)
    BadCall("priority 2**31", lambda e, c: e.place(Job("x", 1, priority=2**31)), JobError,
            ("priority=2147483648", "signed 32-bit")),
    BadCall("priority -2**31-1", lambda e, c: e.place(Job("x", 1, priority=-2**31 - 1)),
            JobError, ("priority=-2147483649",)),
    BadCall("priority 1.5", lambda e, c: e.place(Job("x", 1, priority=1.5)), JobError,
            ("priority=1.5", "whole number")),
    BadCall("priority True", lambda e, c: e.place(Job("x", 1, priority=True)), JobError,
            ("priority=true",)),
    BadCall("preemptible 'yes'", lambda e, c: e.place(Job("x", 1, preemptible="yes")),
            JobError, ("preemptible='yes'", "true or false")),
    BadCall("plan_preemption for a placed job (a duplicate)",
            lambda e, c: e.plan_preemption(e.job(c.live).replace(priority=9)),
            DuplicateJobError, ("already",)),
    BadCall("plan_preemption, unknown method",
            lambda e, c: e.plan_preemption(Job("x", 1, priority=9), method="greedy"),
            PreemptionError, ("method='greedy'",)),
    BadCall("plan_preemption, since_checkpoint_s not a mapping",
            lambda e, c: e.plan_preemption(Job("x", 1, priority=9), since_checkpoint_s=[1]),
            PreemptionError, ("since_checkpoint_s",)),
    BadCall("plan_preemption pod out of range",
            lambda e, c: e.plan_preemption(Job("x", 8, priority=9), pod=c.num_pods),
            JobError, ("out of range",)),
]
