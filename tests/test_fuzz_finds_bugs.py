"""The state machine catches real bugs: each one is planted in a subclass of the Python twin.

The bugs live here, in the test, never in the package:

- a release that frees one GPU too few;
- a skipped row check (the search ignores the rack-feed rows);
- a tie broken the other way (among nodes that allow the same cap, the last one wins);
- a cap step of 50 W instead of 25 W;
- a repair that ignores the rows (it plans as if every row had room to spare);
- hot spares whose watts are not held (a spare is budgeted as an idle node);
- a failure that does not free the node's power (a down node keeps its idle watts).
- a preemption plan that also evicts a job of equal or higher priority, and one that plans
  as if the facility row had no limit (its apply is refused on an unchanged state).

Each buggy twin is run through :class:`tests.test_engine_stateful.EngineMachine` with the
``ci`` profile's settings (shrinking off: finding is the claim, and a shrunk example
is not needed here), twice: against the independent model alone (no compiled core),
and against the real Cython twin alone (model checks off).  The test asserts the run
fails with the detector's own error, so it proves both detectors find every bug.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import numpy as np

from gpusched._engine_py import DOWN, FOUND, NO_CAPACITY, NO_POWER, SPARE
from gpusched.engine import _PythonEngine

from .support.model import ModelViolation
from .test_engine_stateful import HAVE_CYTHON, EngineMachine, TwinMismatch


class ReleasesOneGpuTooFew(_PythonEngine):
    """release() gives back every GPU but one: the first node keeps one at the job's cap."""

    def release(self, job_id):
        with self._lock:
            placement = super().release(job_id)
            self._commit(placement.nodes[:1], 1, placement.cap_w, +1)
            return placement


class SkipsRackFeedRows(_PythonEngine):
    """The search never looks at rack-feed rows (commits still count them)."""

    def __init__(self, cluster):
        super().__init__(cluster)
        kinds = cluster.constraints.kinds
        keep = [[i for i, (row, _coef) in enumerate(rows) if kinds[row] != "rack-feed"]
                for rows in self._rack_rows]
        # every per-rack list aligned with _rack_rows is filtered alike
        self._seen_by_search = {
            name: [[entries[i] for i in k] for entries, k in zip(getattr(self, name), keep)]
            for name in ("_rack_rows", "_rack_run_end") if hasattr(self, name)}

    def _search(self, gpus, max_cap, min_cap, pod):
        saved = {name: getattr(self, name) for name in self._seen_by_search}
        for name, value in self._seen_by_search.items():
            setattr(self, name, value)
        try:
            return super()._search(gpus, max_cap, min_cap, pod)
        finally:
            for name, value in saved.items():
                setattr(self, name, value)


class BreaksTiesTheOtherWay(_PythonEngine):
    """Among nodes that allow the same cap, the *last* in locality order wins.

    Written over the twin's stable primitives (free GPUs per node, ``_rack_cap``), so
    it keeps the bug, and only the bug, while the twin's search is optimised.
    """

    def _search_node(self, g, max_cap, min_cap, pod):
        G, node_pod = self._G, self.cluster.node_pod
        order = sorted((self._node_free[n], n) for n in range(self.cluster.num_nodes)
                       if self._node_free[n] >= g and (pod < 0 or node_pod[n] == pod))
        best_cap, best_node, best_row, first_row = -1, -1, -1, -2
        for free, n in order:
            cap, row = self._rack_cap(self._node_rack[n], g, free == G, max_cap, min_cap)[:2]
            if first_row == -2:
                first_row = row
            if cap > 0 and cap >= best_cap:  # the bug: >= where the twin has >
                best_cap, best_node, best_row = cap, n, row
        if best_node < 0:
            return (NO_CAPACITY, -1, [], -1) if first_row == -2 else (NO_POWER, -1, [], first_row)
        return FOUND, best_cap, [best_node], best_row


class Steps50Watts(_PythonEngine):
    """Walks the cap down in 50 W steps instead of 25 W."""

    def __init__(self, cluster):
        super().__init__(cluster)
        self._cap_step_w = 50


class RepairIgnoresRows(_PythonEngine):
    """repair() plans as if every row had room to spare."""

    def _plan_repair(self, job, old, lost):
        slack = self.row_slack_units()
        self.row_slack_units = lambda: np.full(slack.shape, 2**60, dtype=np.int64)
        try:
            return super()._plan_repair(job, old, lost)
        finally:
            del self.row_slack_units


class SpareWattsNotHeld(_PythonEngine):
    """A spare is budgeted as an idle node: its busy power at the spare cap is not held."""

    def _set_node_state(self, node, state, power_delta_w):
        if state == SPARE or self._node_state[node] == SPARE:
            power_delta_w = 0
        super()._set_node_state(node, state, power_delta_w)


class FailureKeepsPower(_PythonEngine):
    """A node that goes down keeps drawing its idle power in every row."""

    def _set_node_state(self, node, state, power_delta_w):
        if state == DOWN:
            power_delta_w = 0
        elif self._node_state[node] == DOWN:
            power_delta_w = 0  # consistently: coming back adds nothing either
        super()._set_node_state(node, state, power_delta_w)


BUGS = [ReleasesOneGpuTooFew, SkipsRackFeedRows, BreaksTiesTheOtherWay, Steps50Watts,
        RepairIgnoresRows, SpareWattsNotHeld, FailureKeepsPower]


# ---- planted bugs in the preemption planner (issue 16) ---------------------------------

def plan_evicting_a_higher_priority_job(engine, job, pod=None, **options):
    """The real plan, plus one more victim: a live job of equal or higher priority."""
    import dataclasses
    from gpusched.plan.preempt import plan_preemption
    plan = plan_preemption(engine, job, pod, **options)
    extra = [j.id for j in engine.jobs() if j.priority >= job.priority and j.id not in
             plan.victims and not set(engine.placement(j.id).nodes) & set(plan.placement.nodes)]
    if extra:
        plan = dataclasses.replace(plan, victims=plan.victims + (extra[0],))
    return plan


def plan_ignoring_the_row_that_binds(engine, job, pod=None, **options):
    """Plans as if the rows over every rack (the facility) had no limit."""
    from gpusched.plan import preempt
    real_init = preempt._Site.__init__

    def init(site, *args, **kwargs):
        real_init(site, *args, **kwargs)
        counts = (site.A != 0).sum(axis=1).A1
        site.slack = site.slack.copy()
        site.slack[counts == site.R] = 2 ** 50
    preempt._Site.__init__ = init
    try:
        return preempt.plan_preemption(engine, job, pod, **options)
    finally:
        preempt._Site.__init__ = real_init


PLAN_BUGS = [plan_evicting_a_higher_priority_job, plan_ignoring_the_row_that_binds]

HUNT = settings(settings.get_profile("ci"), database=None, report_multiple_bugs=False,
                phases=[Phase.explicit, Phase.generate], print_blob=False,
                suppress_health_check=list(HealthCheck))


def _machine(bug: type, *, against: str) -> type:
    return type(f"{bug.__name__}Machine", (EngineMachine,), {
        "python_engine": bug,
        "use_cython": against == "cython",
        "check_model": against == "model",
    })


@pytest.mark.parametrize("bug", BUGS, ids=[b.__name__ for b in BUGS])
def test_model_finds_planted_bug(bug):
    with pytest.raises(ModelViolation):
        run_state_machine_as_test(_machine(bug, against="model"), settings=HUNT)


@pytest.mark.skipif(not HAVE_CYTHON, reason="needs the compiled core")
@pytest.mark.parametrize("bug", BUGS, ids=[b.__name__ for b in BUGS])
def test_cython_twin_finds_planted_bug(bug):
    with pytest.raises(TwinMismatch):
        run_state_machine_as_test(_machine(bug, against="cython"), settings=HUNT)


@pytest.mark.parametrize("bug", PLAN_BUGS, ids=[b.__name__ for b in PLAN_BUGS])
def test_model_finds_planted_plan_bug(bug):
    machine = type(f"{bug.__name__}Machine", (EngineMachine,), {
        "plan_function": staticmethod(bug), "use_cython": False, "check_model": True})
    with pytest.raises(ModelViolation):
        # the site-that-changes rules share the machine: give the plan rule room to fire
        run_state_machine_as_test(machine, settings=settings(HUNT, max_examples=1500))


def test_real_twin_passes_the_same_hunt():
    """The control: the same settings find nothing in the real Python twin."""
    run_state_machine_as_test(_machine(_PythonEngine, against="model"),
                              settings=settings(HUNT, max_examples=30))
