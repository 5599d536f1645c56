"""A hypothesis state machine that drives the Cython core and the pure-Python twin in lockstep.

Each run draws a cluster (1 to 6 pods, racks of 1 to 8 nodes, liquid and air, limits
from loose to so tight that little fits) and then a sequence of operations: place with
and without a pod hint (sometimes after ``explain``), ``place_many``, release, release of
an unknown or released id, place of a duplicate id, ``set_cap``, snapshot and restore
(the run continues on the restored engines, each restored from the *other* twin's
snapshot), a row of the bad-input table, and releasing everything; and a site that
changes: drain, fail, fail_domain, restore, repair, set_spares, set_limit, and
plan_envelope followed by its apply.

After every step:
- both twins returned the same thing, or raised the same error with the same message;
- both hold the same state, down to every derived index (``_index_state()``);
- no job sits on a down node or a spare, every node's state is the model's, spares'
  watts are budgeted, and no step pushes a row over its live limit (only lowering a
  limit or restoring a node may leave a row over, and after an envelope plan is applied
  every row holds);
- the independent model (``tests/support/model.py``, no engine code) recomputes GPU use per node
  and rack power from its own ledger of placements and checks GPU capacity, every row of
  A·P <= b, and the engines' views.  For jobs of 8 GPUs or fewer it also says, by brute
  force over every node, exactly which node and cap ``place`` must return; for gangs it
  checks whole empty nodes, the pod rules, the fewest racks and the highest cap.
Releasing everything returns each engine to the state of a fresh one.

Without the compiled core (``GPUSCHED_NO_EXTENSIONS=1``) the lockstep test skips and the
same machine runs the Python twin alone against the model.  ``tests/test_fuzz_finds_bugs.py``
subclasses :class:`EngineMachine` with deliberately broken twins.

Run it longer with ``HYPOTHESIS_PROFILE=long`` (a soak of 30 minutes or more).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from hypothesis import event, note, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from gpusched import Cluster, Engine, Job
from gpusched.engine import available_backends
from gpusched.errors import (DuplicateJobError, GpuschedError, PlacementError,
                             PreemptionError, StalePlanError, UnknownJobError)
from gpusched.plan.preempt import plan_preemption

from gpusched.plan import plan_envelope

from .support.bad_inputs import BAD_CALLS, Ctx
from .support.model import DOWN, DRAINING, SPARE, UP, Live, ModelViolation, SiteModel
from .support.strategies import cluster_specs, jobs

HAVE_CYTHON = "cython" in available_backends()


class TwinMismatch(AssertionError):
    """The two twins answered differently."""


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """('ok', value) or ('error', type, message): comparable across twins."""
    try:
        return ("ok", call())
    except GpuschedError as exc:
        return ("error", type(exc), str(exc))


def _view(engine: Engine) -> Any:
    return json.dumps(engine.snapshot(), sort_keys=True), engine._index_state()


class EngineMachine(RuleBasedStateMachine):
    """Both twins (or the Python twin alone) against each other and the model.

    Subclasses set ``python_engine`` to another engine class (a planted bug) and
    ``use_cython`` to compare against the compiled core or only against the model.
    """

    #: Engine class standing in for the pure-Python twin; None means the real one.
    python_engine: type | None = None
    #: Drive the compiled core as well (when it is built).
    use_cython: bool = HAVE_CYTHON
    #: Check against the independent model; off only to show what the twin comparison
    #: catches by itself (tests/test_fuzz_finds_bugs.py).
    check_model: bool = True
    #: The preemption planner under test (a planted bug replaces it).
    plan_function: Callable[..., Any] = staticmethod(plan_preemption)

    def __init__(self) -> None:
        super().__init__()
        self.engines: dict[str, Engine] = {}
        self.serial = 0
        self.released: list[str] = []
        self.allowed_over: set[str] = set()
        #: priority and preemptibility of every job placed, as drawn (the model's own
        #: record: the plan checks below never ask the engine)
        self.ranks: dict[str, tuple[int, bool]] = {}

    # ---- engines --------------------------------------------------------------------

    def _new(self, backend: str) -> Engine:
        if backend == "python" and self.python_engine is not None:
            return self.python_engine(self.cluster)
        return Engine(self.cluster, backend=backend)

    def _restored(self, backend: str, snapshot: dict[str, Any]) -> Engine:
        if backend == "python" and self.python_engine is not None:
            engine = self.python_engine(self.cluster)
            engine.load_snapshot(snapshot)
            return engine
        return Engine.restore(self.cluster, snapshot, backend=backend)

    def _each(self, call: Callable[[Engine], Any]) -> tuple[Any, ...]:
        """Run ``call`` on every engine; the outcomes must be identical.  Returns one."""
        outcomes = {name: _outcome(lambda e=engine: call(e))
                    for name, engine in self.engines.items()}
        first, *rest = outcomes.values()
        for other in rest:
            if other != first:
                raise TwinMismatch(f"twins differ: {outcomes}")
        return first

    def _unchanged(self, call: Callable[[Engine], Any]) -> tuple:
        """Run ``call`` (which must fail or be read-only); every engine's state is kept."""
        before = {name: _view(e) for name, e in self.engines.items()}
        outcome = self._each(call)
        for name, engine in self.engines.items():
            if _view(engine) != before[name]:
                raise ModelViolation(f"{name}: state changed by {outcome}")
        return outcome

    @property
    def live(self) -> list[str]:
        return list(self.model.ledger)

    def _next_id(self) -> str:
        self.serial += 1
        return f"j{self.serial}"

    # ---- set-up ---------------------------------------------------------------------

    @initialize(spec=cluster_specs(spread_tightness=True, vary_power=True))
    def build(self, spec: dict[str, Any]) -> None:
        self.cluster = Cluster.from_dict(spec)
        note(f"cluster: {self.cluster!r}")
        self.model = SiteModel(self.cluster.to_dict())
        if self.check_model:
            self.model.check_constraints(self.cluster)
        names = ["python"] + (["cython"] if self.use_cython else [])
        self.engines = {name: self._new(name) for name in names}
        self.fresh = {name: _view(Engine(self.cluster, backend="python"))[1]
                      for name in names}

    def _draw_job(self, data: st.DataObject) -> Job:
        # gangs of 2 nodes up to half the cluster (at least 2), so that several fit
        max_gpus = self.model.G * max(2, min(32, self.cluster.num_nodes // 2))
        job = data.draw(jobs(self._next_id(), max_gpus=max_gpus, gpus_per_node=self.model.G),
                        label="job")
        if job.gpus > self.cluster.num_gpus:  # a one-node cluster has no room for gangs
            job = job.replace(gpus=self.model.G)
        return job.replace(priority=data.draw(st.integers(0, 2), label="priority"),
                           preemptible=data.draw(st.booleans(), label="preemptible"))

    def _draw_pod(self, data: st.DataObject) -> Any:
        pod = data.draw(st.one_of(st.none(), st.integers(0, self.cluster.num_pods - 1)),
                        label="pod")
        if pod is not None and data.draw(st.booleans(), label="pod by name"):
            return self.cluster.pod_names[pod]
        return pod

    # ---- rules ----------------------------------------------------------------------

    @rule(data=st.data(), explain_first=st.booleans())
    def place(self, data: st.DataObject, explain_first: bool) -> None:
        job = self._draw_job(data)
        pod = self._draw_pod(data)
        pod_index = (None if pod is None else
                     pod if isinstance(pod, int) else self.cluster.pod_names.index(pod))
        G = self.model.G
        small = (self.model.expect_small(job.gpus, job.max_cap_w, job.min_cap_w, pod_index)
                 if job.gpus <= G and self.check_model else None)
        if explain_first:
            kind, why = self._unchanged(lambda e: e.explain(job, pod))[:2]
            assert kind == "ok", why
            note(f"explain -> {why}")
            if small is not None and why.status != small[0]:
                raise ModelViolation(f"explain says {why.status}, the model {small}")
            if (job.gpus > G and self.check_model
                    and self.model.gang_status(job.gpus, pod_index) == "no-capacity"):
                assert why.status == "no-capacity", why
        outcome = self._each(lambda e: e.place(job, pod))
        assert outcome[0] == "ok", outcome
        placement = outcome[1]
        note(f"place {job!r} pod={pod!r} -> {placement!r}")
        if explain_first and self.check_model:
            if why.placeable != (placement is not None) or (
                    placement is not None
                    and (why.nodes, why.cap_w) != (placement.nodes, placement.cap_w)):
                raise ModelViolation(f"explain said {why}, place gave {placement}")
        self._check_and_record(job, pod_index, placement, small, "place")

    def _check_and_record(self, job: Job, pod_index: int | None, placement: Any,
                          small: tuple | None, label: str) -> None:
        """Hold ``placement`` to the model (state before it), then add it to the ledger."""
        if small is not None:
            status, nodes, cap = small
            got = None if placement is None else (placement.nodes, placement.cap_w)
            want = None if status != "placeable" else (nodes, cap)
            if got != want or (placement is not None and placement.gpus_per_node != job.gpus):
                raise ModelViolation(f"{job!r} pod={pod_index!r}: engine {placement}, the "
                                     f"model says {status} {want}")
        elif placement is not None and self.check_model:
            self.model.check_gang(job.gpus, job.max_cap_w, job.min_cap_w, pod_index, placement)
        size = "small" if job.gpus <= self.model.G else "gang"
        result = ("refused" if placement is None else
                  "capped" if placement.cap_w < job.max_cap_w else "placed")
        event(f"{label} {size}: {result}")
        if placement is not None:
            self._record(job, placement)

    def _record(self, job: Job, placement: Any) -> None:
        self.ranks[job.id] = (job.priority, job.preemptible)
        self.model.ledger[job.id] = Live(job.gpus, job.max_cap_w, job.min_cap_w,
                                         tuple(placement.nodes), placement.gpus_per_node,
                                         placement.cap_w)

    @rule(data=st.data(), n=st.integers(1, 8))
    def place_many(self, data: st.DataObject, n: int) -> None:
        # bursts fill the cluster, where caps step down and rows bind
        batch = [self._draw_job(data) for _ in range(n)]
        pod = self._draw_pod(data)
        outcome = self._each(lambda e: e.place_many(batch, pod))
        assert outcome[0] == "ok", outcome
        note(f"place_many {batch} pod={pod!r} -> {outcome[1]}")
        pod_index = (None if pod is None else
                     pod if isinstance(pod, int) else self.cluster.pod_names.index(pod))
        # place_many is place in a loop: replay it through the model one job at a time
        for job, placement in zip(batch, outcome[1]):
            small = (self.model.expect_small(job.gpus, job.max_cap_w, job.min_cap_w, pod_index)
                     if job.gpus <= self.model.G and self.check_model else None)
            self._check_and_record(job, pod_index, placement, small, "place_many")

    @precondition(lambda self: self.engines)
    @rule(data=st.data())
    def place_on(self, data: st.DataObject) -> None:
        """Place a job on nodes the caller chose (an allocation, a replayed journal)."""
        job = self._draw_job(data)
        G, num_nodes = self.model.G, self.cluster.num_nodes
        k = 1 if job.gpus <= G else job.gpus // G
        nodes = sorted(data.draw(st.lists(st.integers(0, num_nodes - 1), min_size=k,
                                          max_size=k, unique=True), label="nodes"))
        cap = data.draw(st.integers(job.min_cap_w - 10, job.max_cap_w + 10), label="cap_w")
        outcome = self._each(lambda e: e.place_on(job, nodes, cap))
        note(f"place_on {job!r} {nodes} {cap} W -> {outcome}")
        if not self.check_model:
            if outcome[0] == "ok":
                self._record(job, outcome[1])
            return
        gpn = min(job.gpus, G)
        want = (job.min_cap_w <= cap <= job.max_cap_w
                and self.model.fits_placement(tuple(nodes), gpn, cap))
        if want != (outcome[0] == "ok"):
            raise ModelViolation(f"place_on({job!r}, {nodes}, {cap}) gave {outcome}; the "
                                 f"model says it {'fits' if want else 'does not fit'}")
        if outcome[0] == "ok":
            placement = outcome[1]
            if (tuple(placement.nodes), placement.gpus_per_node, placement.cap_w) != (
                    tuple(nodes), gpn, cap):
                raise ModelViolation(f"place_on placed {placement}, asked {nodes} at {cap}")
            self._record(job, placement)
            event("place_on: placed")
        else:
            assert outcome[1] is PlacementError, outcome
            event("place_on: refused")

    @precondition(lambda self: self.engines and self.model.ledger)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.live), label="release")
        outcome = self._each(lambda e: e.release(job_id))
        assert outcome[0] == "ok", outcome
        live = self.model.ledger.pop(job_id)
        self.model.lost.pop(job_id, None)
        got = outcome[1]
        if self.check_model and (got.job_id, got.nodes, got.gpus_per_node, got.cap_w) != (
                job_id, live.nodes, live.gpus_per_node, live.cap_w):
            raise ModelViolation(f"release({job_id!r}) returned {got}, placed as {live}")
        self.released.append(job_id)

    @precondition(lambda self: self.engines)
    @rule(data=st.data())
    def release_unknown(self, data: st.DataObject) -> None:
        choices = [st.just("never-placed"), st.integers(-5, 5), st.none()]
        if self.released:
            choices.append(st.sampled_from(self.released))  # a release twice
        job_id = data.draw(st.one_of(choices), label="unknown id")
        outcome = self._unchanged(lambda e: e.release(job_id))
        assert outcome[0] == "error" and outcome[1] is UnknownJobError, outcome

    @precondition(lambda self: self.engines and self.model.ledger)
    @rule(data=st.data())
    def place_duplicate(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.live), label="duplicate")
        job = Job(job_id, 1)
        outcome = self._unchanged(lambda e: e.place(job))
        assert outcome[0] == "error" and outcome[1] is DuplicateJobError, outcome

    @precondition(lambda self: self.engines and self.model.ledger)
    @rule(data=st.data())
    def set_cap(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.live), label="set_cap id")
        live = self.model.ledger[job_id]
        cap = data.draw(st.integers(live.min_cap_w - 30, live.max_cap_w + 30), label="cap_w")
        if not self.check_model:
            outcome = self._each(lambda e: e.set_cap(job_id, cap))
            if outcome[0] == "ok":
                self.model.ledger[job_id] = Live(live.gpus, live.max_cap_w, live.min_cap_w,
                                                 live.nodes, live.gpus_per_node, cap)
            return
        fits = live.min_cap_w <= cap <= live.max_cap_w and self.model.fits_after(job_id, cap)
        if fits:
            outcome = self._each(lambda e: e.set_cap(job_id, cap))
            if outcome[0] != "ok":
                raise ModelViolation(f"set_cap({job_id!r}, {cap}) refused: {outcome}; the "
                                     "model says every row holds")
            self.model.ledger[job_id] = Live(live.gpus, live.max_cap_w, live.min_cap_w,
                                             live.nodes, live.gpus_per_node, cap)
            event("set_cap: changed")
        else:
            event("set_cap: refused")
            outcome = self._unchanged(lambda e: e.set_cap(job_id, cap))
            if outcome[0] != "error" or outcome[1] is not PlacementError:
                raise ModelViolation(f"set_cap({job_id!r}, {cap}) gave {outcome}; the model "
                                     "says a row breaks or the cap is out of range")

    @precondition(lambda self: self.engines and self.model.ledger)
    @rule(data=st.data())
    def plan_and_apply_preemption(self, data: st.DataObject) -> None:
        """A preemption plan on every twin: the same plan; it evicts only preemptible
        jobs of strictly lower priority; applied, the job runs and every row holds (the
        invariant); applied again, or after a change, it is refused with nothing changed.
        """
        job = self._draw_job(data).replace(priority=data.draw(st.integers(1, 3),
                                                              label="preemptor priority"))
        if data.draw(st.booleans(), label="half the site"):  # so that it must evict
            job = job.replace(gpus=self.model.G * max(1, self.cluster.num_nodes // 2))
        plans: dict[str, Any] = {}
        outcomes = {}
        for name, engine in self.engines.items():
            outcome = _outcome(lambda e=engine: self.plan_function(e, job))
            if outcome[0] == "ok":
                plans[name] = outcome[1]
                outcome = ("ok", outcome[1].to_dict())
            outcomes[name] = outcome
        first, *rest = outcomes.values()
        if any(other != first for other in rest):
            raise TwinMismatch(f"plans differ: {outcomes}")
        if first[0] == "error":
            event("preempt: no plan")
            assert issubclass(first[1], (PreemptionError, GpuschedError)), first
            return
        plan = next(iter(plans.values()))
        if self.check_model:
            for victim in plan.victims:
                priority, preemptible = self.ranks[victim]
                if not preemptible or priority >= job.priority:
                    raise ModelViolation(f"plan for {job!r} (priority {job.priority}) evicts "
                                         f"{victim!r} (priority {priority}, preemptible "
                                         f"{preemptible})")
        placed = self._each(lambda e: plans[next(n for n, x in self.engines.items()
                                                 if x is e)].apply())
        if placed[0] != "ok":
            raise ModelViolation(f"a fresh plan for {job!r} did not apply: {placed}")
        event(f"preempt: {len(plan.victims) > 0 and 'evicts' or 'no eviction'}"
              f"{plan.cap_changes and ', caps down' or ''}")
        for victim in plan.victims:
            del self.model.ledger[victim]
            self.released.append(victim)
        for change in plan.cap_changes:
            live = self.model.ledger[change.job_id]
            self.model.ledger[change.job_id] = Live(live.gpus, live.max_cap_w, live.min_cap_w,
                                                    live.nodes, live.gpus_per_node,
                                                    change.to_cap_w)
        self._record(job, placed[1])
        again = self._unchanged(lambda e: plans[next(n for n, x in self.engines.items()
                                                     if x is e)].apply())
        assert again[0] == "error" and again[1] is StalePlanError, again

    @precondition(lambda self: self.engines)
    @rule(json_round_trip=st.booleans())
    def snapshot_and_restore(self, json_round_trip: bool) -> None:
        snaps = {name: e.snapshot() for name, e in self.engines.items()}
        if len({json.dumps(s, sort_keys=True) for s in snaps.values()}) != 1:
            raise TwinMismatch(f"snapshots differ: {snaps}")
        names = list(self.engines)
        for i, name in enumerate(names):
            # each twin restores from the other twin's snapshot
            snap = snaps[names[(i + 1) % len(names)]]
            if json_round_trip:
                snap = json.loads(json.dumps(snap))
            self.engines[name] = self._restored(name, snap)

    @precondition(lambda self: self.engines)
    @rule(data=st.data())
    def bad_call(self, data: st.DataObject) -> None:
        rows = [r for r in BAD_CALLS
                if (self.model.ledger or not any(w in r.name for w in
                                                 ("duplicate", "set_cap below", "set_cap NaN",
                                                  "tampered", "healthy")))
                # 9 and 12 GPUs are bad because a node has 8; other power models differ
                and (self.model.G == 8 or r.name not in ("gpus=9", "gpus=12"))]
        if any(l for l in self.model.lost.values()):  # the live job may be degraded
            rows = [r for r in rows if "healthy" not in r.name]
        row = data.draw(st.sampled_from(rows), label="bad call")
        some = next(iter(self.model.ledger), "nothing-placed")
        ctx = Ctx(live=some, live_gpus=0, released=self.released[-1] if self.released
                  else "never-placed", num_gpus=self.cluster.num_gpus,
                  num_pods=self.cluster.num_pods,
                  snapshot=next(iter(self.engines.values())).snapshot())
        outcome = self._unchanged(lambda e: row.call(e, ctx))
        assert outcome[0] == "error" and issubclass(outcome[1], row.error), (row.name, outcome)

    @precondition(lambda self: self.engines and self.model.ledger)
    @rule()
    def release_everything(self) -> None:
        ids = self.live
        outcome = self._each(lambda e: e.release_many(ids))
        assert outcome[0] == "ok", outcome
        self.released.extend(ids)
        self.model.ledger.clear()
        self.model.lost.clear()
        pristine = (all(x == UP for x in self.model.state) and self.model.spare_cap_w is None
                    and self.model.limits == [r.limit_units for r in self.model.rows])
        for name, engine in self.engines.items():
            if self.check_model and pristine and engine._index_state() != self.fresh[name]:
                raise ModelViolation(f"{name}: after releasing every job the engine is not "
                                     "equal to a fresh one")
            assert engine.snapshot()["jobs"] == [] and len(engine) == 0

    # ---- a site that changes -------------------------------------------------------

    def _draw_nodes(self, data: st.DataObject) -> list[int]:
        nodes = data.draw(st.lists(st.integers(0, self.cluster.num_nodes - 1), min_size=1,
                                   max_size=3, unique=True), label="nodes")
        if data.draw(st.booleans(), label="by name"):
            return [self.cluster.node_names[n] for n in nodes]  # type: ignore[misc]
        return nodes

    def _index(self, nodes: list[Any]) -> list[int]:
        return [self.cluster.node_names.index(n) if isinstance(n, str) else n for n in nodes]

    def _sync(self, may_go_over: bool) -> None:
        """Read the spares from the engines, and hold the rows: a step may push a row over
        its live limit only if it lowered a limit or brought a node back."""
        engine = next(iter(self.engines.values()))
        policy = engine.spares().policy
        if self.check_model:
            self.model.sync_spares([int(x) for x in engine.node_states()],
                                   policy.cap_w if policy is not None else None)
            over = self.model.over_now()
            if not may_go_over and over - self.allowed_over:
                raise ModelViolation(f"a step pushed rows over: {over - self.allowed_over}")
            self.allowed_over = over
        else:
            self.model.state = [int(x) for x in engine.node_states()]
            self.model.spare_cap_w = policy.cap_w if policy is not None else None

    @precondition(lambda self: self.engines)
    @rule(data=st.data())
    def drain(self, data: st.DataObject) -> None:
        nodes = self._draw_nodes(data)
        outcome = self._each(lambda e: e.drain(nodes))
        assert outcome[0] == "ok", outcome
        changed = [n for n in self._index(nodes) if self.model.state[n] in (UP, SPARE)]
        for n in changed:
            self.model.state[n] = DRAINING
        if self.check_model and outcome[1] != changed:
            raise ModelViolation(f"drain({nodes}) changed {outcome[1]}, the model {changed}")
        event(f"drain: {'changed' if changed else 'nothing to do'}")
        self._sync(may_go_over=False)

    @precondition(lambda self: self.engines)
    @rule(data=st.data(), domain=st.booleans())
    def fail(self, data: st.DataObject, domain: bool) -> None:
        if domain:
            names = [r.name for r in self.model.rows if r.kind in (
                "rack-feed", "cdu", "air-cooling", "row", "hall")]
            name = data.draw(st.sampled_from(names), label="domain")
            outcome = self._each(lambda e: e.fail_domain(name))
            nodes = self.model.domain_nodes(name)
        else:
            busy = sorted({n for l in self.model.ledger.values() for n in l.nodes})
            if busy and data.draw(st.booleans(), label="a busy node"):
                asked = [data.draw(st.sampled_from(busy), label="busy node")]
            else:
                asked = self._draw_nodes(data)
            outcome = self._each(lambda e: e.fail(asked))
            nodes = self._index(asked)
        assert outcome[0] == "ok", outcome
        hit = self.model.fail(nodes)
        if self.check_model and outcome[1] != hit:
            raise ModelViolation(f"fail({nodes}) hit {outcome[1]}, the model says {hit}")
        event(f"fail{' domain' if domain else ''}: {len(hit)} job(s) hit")
        self._sync(may_go_over=False)

    @precondition(lambda self: self.engines)
    @rule(data=st.data())
    def restore_nodes(self, data: st.DataObject) -> None:
        nodes = self._draw_nodes(data)
        outcome = self._each(lambda e: e.restore(nodes))
        assert outcome[0] == "ok", outcome
        changed = [n for n in self._index(nodes) if self.model.state[n] in (DOWN, DRAINING)]
        for n in changed:
            self.model.state[n] = UP
        if self.check_model and outcome[1] != changed:
            raise ModelViolation(f"restore({nodes}) changed {outcome[1]}, the model {changed}")
        self._sync(may_go_over=True)  # a down node's idle power comes back

    @precondition(lambda self: self.engines and any(
        self.model.lost.get(j) for j in self.model.ledger))
    @rule(data=st.data())
    def repair(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(j for j in self.model.ledger
                                                  if self.model.lost.get(j))), label="repair")
        self._repair(job_id)

    @precondition(lambda self: self.engines and any(l.nodes for l in self.model.ledger.values()))
    @rule(data=st.data())
    def fail_squeeze_and_repair(self, data: st.DataObject) -> None:
        """A node of a running job fails, the facility is curtailed to exactly what the
        site draws now, and the job is repaired: the replacement must fit under it."""
        job_id = data.draw(st.sampled_from(sorted(j for j, l in self.model.ledger.items()
                                                  if l.nodes)), label="victim")
        node = data.draw(st.sampled_from(self.model.ledger[job_id].nodes), label="node")
        outcome = self._each(lambda e: e.fail(node))
        assert outcome[0] == "ok", outcome
        if self.check_model and outcome[1] != self.model.fail([node]):
            raise ModelViolation(f"fail({node}) hit {outcome[1]}")
        elif not self.check_model:
            self.model.fail([node])
        self._sync(may_go_over=False)
        i = len(self.model.rows) - 1  # the facility row covers every rack
        watts = self.model.loads(self.model.rack_power(*self.model.node_use()))[i] // 10**6
        outcome = self._each(lambda e: e.set_limit(self.model.rows[i].name, watts))
        assert outcome[0] == "ok", outcome
        self.model.limits[i] = watts * 10**6
        self._sync(may_go_over=True)
        self._repair(job_id)

    def _repair(self, job_id: str) -> None:
        live, lost = self.model.ledger[job_id], self.model.lost[job_id]
        used, _ = self.model.node_use()
        spares = {n for n in range(self.cluster.num_nodes) if self.model.state[n] == SPARE}
        before = {name: _view(e) for name, e in self.engines.items()}
        outcome = self._each(lambda e: e.repair(job_id))
        assert outcome[0] == "ok", outcome
        got = outcome[1]
        note(f"repair {job_id} (lost {lost}) -> {got}")
        if got is None:
            event("repair: refused")
            for name, engine in self.engines.items():
                if _view(engine) != before[name]:
                    raise ModelViolation(f"{name}: a refused repair changed the state")
            return
        event("repair: done")
        added = set(got.nodes) - set(live.nodes)
        if self.check_model:
            if (not set(live.nodes) <= set(got.nodes) or len(added) != len(lost)
                    or got.gpus_per_node != live.gpus_per_node):
                raise ModelViolation(f"repair of {live} (lost {lost}) gave {got}")
            bad = [n for n in added if used[n] or self.model.state[n] not in (UP, SPARE)]
            if bad:
                raise ModelViolation(f"repair took nodes that were busy or not up: {bad}")
            if len(spares) >= len(lost) and not added <= spares:
                raise ModelViolation(f"repair took {sorted(added)} with spares {spares} left")
            if not live.min_cap_w <= got.cap_w <= live.cap_w or (
                    live.min_cap_w == live.max_cap_w and got.cap_w != live.cap_w):
                raise ModelViolation(f"repair moved the cap {live.cap_w} -> {got.cap_w}")
        self.model.ledger[job_id] = Live(live.gpus, live.max_cap_w, live.min_cap_w,
                                         tuple(got.nodes), got.gpus_per_node, got.cap_w)
        del self.model.lost[job_id]
        for n in added:
            if self.model.state[n] == SPARE:
                self.model.state[n] = UP
        self._sync(may_go_over=False)

    @precondition(lambda self: self.engines)
    @rule(k=st.integers(0, 2), per=st.sampled_from(["pod", "row"]),
          cap=st.sampled_from([None, 450]))
    def set_spares(self, k: int, per: str, cap: int | None) -> None:
        sizes = {}
        for n in range(self.cluster.num_nodes):
            key = (self.model.node_pod[n] if per == "pod"
                   else int(self.cluster.rack_row[self.model.node_rack[n]]))
            sizes[key] = sizes.get(key, 0) + 1
        if k > min(sizes.values()):
            outcome = self._unchanged(lambda e: e.set_spares(k, per=per, cap_w=cap))
            assert outcome[0] == "error", outcome
            return
        outcome = self._each(lambda e: e.set_spares(k, per=per, cap_w=cap))
        assert outcome[0] == "ok", outcome
        event(f"set_spares: {len(outcome[1].nodes)} spare(s)")
        self._sync(may_go_over=False)

    @precondition(lambda self: self.engines)
    @rule(data=st.data(), factor=st.sampled_from([0.5, 0.8, 0.95, 1.0, 1.3, 10.0]))
    def set_limit(self, data: st.DataObject, factor: float) -> None:
        i = data.draw(st.integers(0, len(self.model.rows) - 1), label="row")
        name = self.model.rows[i].name
        load = self.model.loads(self.model.rack_power(*self.model.node_use()))[i]
        watts = int(load * factor) // 10**6
        outcome = self._each(lambda e: e.set_limit(name, watts))
        assert outcome[0] == "ok", outcome
        self.model.limits[i] = watts * 10**6
        self._sync(may_go_over=True)

    @precondition(lambda self: self.engines)
    @rule()
    def plan_and_apply(self) -> None:
        plans = {name: plan_envelope(e) for name, e in self.engines.items()}
        answers = {name: (p.caps, p.evict, p.status) for name, p in plans.items()}
        first, *rest = answers.values()
        if any(other != first for other in rest):
            raise TwinMismatch(f"envelope plans differ: {answers}")
        caps, evict, status = first
        event(f"plan_envelope: {status}")
        for name, engine in self.engines.items():
            engine.apply_envelope(plans[name])
        for job_id in evict:
            self.model.ledger.pop(job_id)
            self.model.lost.pop(job_id, None)
            self.released.append(job_id)
        for job_id, cap in caps.items():
            l = self.model.ledger[job_id]
            if not (l.min_cap_w <= cap < l.cap_w):
                raise ModelViolation(f"the plan moves {job_id} from {l.cap_w} to {cap} W")
            self.model.ledger[job_id] = Live(l.gpus, l.max_cap_w, l.min_cap_w, l.nodes,
                                             l.gpus_per_node, cap)
        self._sync(may_go_over=False)
        if self.check_model and status in ("holds", "caps", "evictions") and self.allowed_over:
            raise ModelViolation(f"after an applied {status!r} plan rows are still over: "
                                 f"{sorted(self.allowed_over)}")

    # ---- after every step -----------------------------------------------------------

    @invariant()
    def twins_agree_and_model_holds(self) -> None:
        if not self.engines:
            return
        views = {name: (e._index_state(), [p.to_dict() for p in e.placements()],
                        [j.to_dict() for j in e.jobs()]) for name, e in self.engines.items()}
        first, *rest = views.values()
        for other in rest:
            if other != first:
                raise TwinMismatch(f"twin states differ: {views}")
        if self.check_model:
            for engine in self.engines.values():
                self.model.check_engine(engine, self.allowed_over)
            # a row over its limit can only come back under between site steps
            self.allowed_over &= self.model.over_now()


TestTwinsInLockstep = pytest.mark.skipif(
    not HAVE_CYTHON, reason="compiled core not built; the Python twin is fuzzed alone "
    "against the model by TestPythonTwinAgainstModel")(EngineMachine.TestCase)


class PythonAloneMachine(EngineMachine):
    use_cython = False


TestPythonTwinAgainstModel = pytest.mark.skipif(
    HAVE_CYTHON, reason="with the compiled core built, the lockstep machine already checks "
    "the Python twin against the model")(PythonAloneMachine.TestCase)
