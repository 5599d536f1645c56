"""The ``backfill-conservative`` policy: every queued job reserved, no start delays one."""

from __future__ import annotations

import pytest

from gpusched import Cluster
from gpusched.errors import SpecError
from gpusched.simulate import simulate
from gpusched.simulate.cli import build_workload
from gpusched.simulate.policies import POLICIES, ConservativeBackfill, make_policy
from tests.support.sites import facility_site

from .test_simulate import by_id, rigid

# Four nodes.  j1 (16 GPUs) holds two until 100, j2 (8) one until 300; one is free.
#  - head (16 GPUs) is reserved at 100..200 (j1's two nodes or the free one);
#  - second (24 GPUs) at 200..300: three nodes are empty once head ends;
#  - long (8 GPUs, 1,000 s): the free node is left over by head's reservation, so EASY
#    starts it at once, and it holds that node through second's slot: second waits
#    for j2 (300).  Conservative keeps it for second: long waits until 300;
#  - short (8 GPUs, 50 s) ends before head's reservation: both start it early.
STREAM = [rigid("j1", 0, 100, 16), rigid("j2", 0, 300, 8), rigid("head", 10, 100, 16),
          rigid("second", 11, 100, 24), rigid("long", 12, 1000, 8),
          rigid("short", 13, 50, 8)]


def spans(result) -> dict:
    return {k: (j["start_s"], j["finish_s"]) for k, j in by_id(result).items()}


def test_conservative_starts_what_fits_before_the_head_and_holds_the_second_slot():
    easy = spans(simulate(facility_site(nodes=4), STREAM, "backfill", keep_jobs=True))
    result = simulate(facility_site(nodes=4), STREAM, "backfill-conservative", keep_jobs=True)
    cons = spans(result)
    # EASY: long jumps the queue and second is pushed back to j2's end
    assert easy["long"][0] == 12 and easy["second"][0] == 300
    # conservative: every reservation is kept; long starts when second's slot ends
    assert cons["head"] == (100, 200)
    assert cons["second"] == (200, 300)
    assert cons["long"][0] == 300
    # and the short job fills the hole before the head's reservation
    assert cons["short"][0] < 100 and cons["short"][1] <= cons["head"][0]
    assert result.metrics["violations"]["row_seconds"] == 0
    info = result.metrics["policy_info"]
    assert info["name"] == "backfill-conservative" and info["backfilled"] >= 1


def test_conservative_matches_backfill_on_the_hand_checked_replay():
    # j3 ends before j2's reservation: both backfills start it at once
    jobs = [rigid("j1", 0, 100, 8), rigid("j2", 10, 50, 16), rigid("j3", 20, 30, 8)]
    assert spans(simulate(facility_site(), jobs, "backfill-conservative", keep_jobs=True)) == {
        "j1": (0, 100), "j2": (100, 150), "j3": (20, 50)}


@pytest.fixture(scope="module")
def array_run():
    cluster = Cluster.preset("colossus-array")
    horizon_s = 6 * 3600.0
    jobs, _ = build_workload(cluster, trace="synthetic", horizon_s=horizon_s, load=4.0)
    return cluster, jobs, horizon_s


def test_conservative_on_colossus_array_is_deterministic_and_breaks_no_row(array_run):
    cluster, jobs, horizon_s = array_run
    a = simulate(cluster, jobs, "backfill-conservative", horizon_s=horizon_s)
    b = simulate(cluster, jobs, "backfill-conservative", horizon_s=horizon_s)
    ma, mb = a.metrics, b.metrics
    assert ma["violations"]["row_seconds"] == 0
    assert ma["violations"]["rows_ever_violated"] == 0
    assert ma["jobs"]["done"] > 0
    assert ma["jobs"] == mb["jobs"] and ma["totals"] == mb["totals"]
    info = ma["policy_info"]
    assert info["passes"] > 0 and info["reserved"] > 0
    # queued jobs started out of order, past a blocked head
    assert info["backfilled"] > 0


def test_policy_is_registered_and_its_options_are_checked():
    assert POLICIES["backfill-conservative"] is ConservativeBackfill
    assert isinstance(make_policy("backfill-conservative"), ConservativeBackfill)
    assert make_policy("backfill-conservative").depth == 100
    for bad in ({"depth": 0}, {"depth": 2.5}, {"max_breakpoints": 1},
                {"interval_s": -1.0}, {"interval_s": float("inf")}):
        with pytest.raises(SpecError, match=next(iter(bad))):
            ConservativeBackfill(**bad)  # type: ignore[arg-type]
