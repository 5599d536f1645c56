"""A site that changes, over the service: drain, fail, restore, limits, envelope plans.

Each change is journaled and replays on restart (the crash copy of the state directory,
no final snapshot); errors are typed and change nothing.  The kill -9 run is in
test_serve_crash.py, the gang side in test_k8s.py.
"""

from __future__ import annotations

import json
import warnings

import pytest

import gpusched
from gpusched.adapters.slurm import expand_hostlist
from gpusched.serve import PlacementService, create_app
from tests.support.services import crash_copy
from tests.support.verify import check_engine

starlette = pytest.importorskip("starlette")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "site token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def array() -> gpusched.Cluster:
    return gpusched.Cluster.preset("colossus-array")


@pytest.fixture
def served(tmp_path, array, backend):
    service = PlacementService(array, tmp_path / "state", backend=backend)
    with TestClient(create_app(service, token=TOKEN)) as client:
        yield service, client


def fingerprint(service: PlacementService) -> tuple:
    return (json.dumps(service.engine.snapshot(), sort_keys=True), service.journal.written_seq)


def replayed(service: PlacementService, tmp_path, array, backend, name: str
             ) -> PlacementService:
    """A second service on a crash copy of ``service``'s state directory."""
    return PlacementService(array, crash_copy(service, tmp_path, name), backend=backend)


def test_drain_fail_restore_by_name_and_index_are_journaled_and_replay(
        served, tmp_path, array, backend):
    service, client = served
    placed = client.post("/v1/place", json={"job": {"id": "a", "gpus": 16}},
                         headers=AUTH).json()["placement"]
    first, second = placed["node_names"]
    drained = client.post("/v1/site/drain", json={"nodes": [first, 63]}, headers=AUTH).json()
    assert drained["changed"] == [first, array.node_names[63]]
    again = client.post("/v1/site/drain", json={"nodes": first}, headers=AUTH).json()
    assert again == {"changed": [], "unchanged": 1, "jobs_hit": [], "gangs": {}}
    failed = client.post("/v1/site/fail", json={"nodes": [second]}, headers=AUTH).json()
    assert failed["jobs_hit"] == ["a"] and failed["changed"] == [second]
    states = client.get("/v1/site/nodes").json()
    assert states["counts"] == {"up": 61, "draining": 2, "down": 1, "spare": 0}
    assert states["node_names"]["down"] == [second]
    assert states["degraded"] == {"a": [second]}
    # the engine says the same
    assert service.engine.node_state(second) == "down"
    assert service.engine.node_state(first) == "draining"
    repaired = client.post("/v1/site/repair", json={"job_id": "a"}, headers=AUTH).json()
    assert repaired["repaired"] and second not in repaired["placement"]["node_names"]
    assert first in repaired["placement"]["node_names"]   # a drained node keeps its job
    restored = client.post("/v1/site/restore", json={"nodes": [second, 63]},
                           headers=AUTH).json()
    assert sorted(restored["changed"]) == sorted([second, array.node_names[63]])
    check_engine(service.engine)
    twin = replayed(service, tmp_path, array, backend, "copy")
    try:
        assert fingerprint(twin) == fingerprint(service)
        assert twin.engine.node_state(first) == "draining"
        assert twin.engine.placement("a") == service.engine.placement("a")
    finally:
        twin.close()


def test_fail_domain_and_restore_domain(served, tmp_path, array, backend):
    service, client = served
    placed = client.post("/v1/place", json={"job": {"id": "big", "gpus": 64}},
                         headers=AUTH).json()["placement"]
    rack = placed["node_names"][0].rsplit("-n", 1)[0]   # one rack: 8 nodes of 8 GPUs
    failed = client.post("/v1/site/fail-domain", json={"domain": f"{rack} feed"},
                         headers=AUTH).json()
    assert len(failed["changed"]) == 8 and failed["jobs_hit"] == ["big"]
    assert all(n.startswith(rack) for n in failed["changed"])
    assert client.get("/v1/site/nodes").json()["counts"]["down"] == 8
    twin = replayed(service, tmp_path, array, backend, "down")
    try:
        assert fingerprint(twin) == fingerprint(service)
        assert twin.engine.degraded() == service.engine.degraded()
    finally:
        twin.close()
    restored = client.post("/v1/site/restore-domain", json={"domain": f"{rack} feed"},
                           headers=AUTH).json()
    assert len(restored["changed"]) == 8
    assert client.get("/v1/site/nodes").json()["counts"]["up"] == 64


def test_v2_node_states_are_counts_and_hostlists(served, array):
    service, client = served
    down = client.post("/v2/site/fail-domain", json={"domain": "rack-0003 feed"},
                       headers=AUTH).json()
    assert down["changed_hostlist"] == "rack-0003-n[0-7]" and down["changed_count"] == 8
    assert "changed" not in down
    drained = client.post("/v2/site/drain?nodes=true",
                          json={"nodes": ["rack-0001-n0", "rack-0001-n1"]},
                          headers=AUTH).json()
    assert drained["changed"] == ["rack-0001-n0", "rack-0001-n1"]
    assert drained["changed_hostlist"] == "rack-0001-n[0-1]"
    reply = client.get("/v2/site/nodes").json()
    assert reply["counts"] == {"up": 54, "draining": 2, "down": 8, "spare": 0}
    assert reply["hostlists"]["down"] == "rack-0003-n[0-7]"
    assert expand_hostlist(reply["hostlists"]["draining"]) == ["rack-0001-n0",
                                                               "rack-0001-n1"]
    assert "nodes" not in reply
    full = client.get("/v2/site/nodes?nodes=true").json()
    assert full["node_names"]["down"] == [f"rack-0003-n{i}" for i in range(8)]


def test_set_limit_plan_apply_and_a_stale_plan(served, tmp_path, array, backend):
    service, client = served
    for i in range(4):
        client.post("/v1/place", json={"job": {"id": f"j{i}", "gpus": 64, "min_cap_w": 300,
                                               "weight": 1 + i}}, headers=AUTH)
    load = service.engine.rack_power_w().sum()
    row = "facility IT limit"
    cut = float(load) * 0.8
    set_reply = client.post("/v1/site/set-limit", json={"row": row, "watts": cut},
                            headers=AUTH).json()
    assert set_reply["over"] is True and set_reply["limit_w"] == cut
    over = client.get("/v1/site/violations").json()
    assert [v["row"] for v in over["violations"]] == [row]
    assert over["changed_limits"] == {row: cut}
    plan = client.post("/v1/site/plan", json={}, headers=AUTH).json()
    assert plan["status"] in ("caps", "evictions") and plan["plan_id"]
    # a change after the plan makes it stale: 409 with the code, state unchanged
    client.post("/v1/release", json={"job_id": "j3"}, headers=AUTH)
    before = fingerprint(service)
    stale = client.post("/v1/site/apply", json={"plan_id": plan["plan_id"]}, headers=AUTH)
    assert stale.status_code == 409 and stale.json()["code"] == "stale-plan"
    assert stale.json()["field"] == "body.plan_id"
    assert fingerprint(service) == before
    unknown = client.post("/v1/site/apply", json={"plan_id": "plan-0"}, headers=AUTH)
    assert unknown.status_code == 409 and unknown.json()["code"] == "stale-plan"
    plan = client.post("/v1/site/plan", json={}, headers=AUTH).json()
    applied = client.post("/v1/site/apply", json={"plan_id": plan["plan_id"]},
                          headers=AUTH).json()
    assert applied["violations"] == [] and applied["caps"] == plan["caps"]
    assert applied["evicted"] == plan["evict"]
    assert client.get("/v1/site/violations").json()["violations"] == []
    # applied once: the id is spent
    again = client.post("/v1/site/apply", json={"plan_id": plan["plan_id"]}, headers=AUTH)
    assert again.status_code == 409
    check_engine(service.engine)
    twin = replayed(service, tmp_path, array, backend, "limits")
    try:
        assert fingerprint(twin) == fingerprint(service)
        assert twin.engine.changed_limits() == {row: cut}
        assert twin.engine.violations() == []
    finally:
        twin.close()
    reset = client.post("/v1/site/reset-limits", json={}, headers=AUTH).json()
    assert reset == {"reset": [row]}
    assert client.post("/v1/site/reset-limits", json={}, headers=AUTH).json() == {"reset": []}
    assert service.engine.changed_limits() == {}


def test_snapshot_carries_site_changes(tmp_path, array, backend):
    service = PlacementService(array, tmp_path / "s", backend=backend, snapshot_every=2)
    with TestClient(create_app(service, token=TOKEN)) as client:
        client.post("/v1/site/fail", json={"nodes": [5]}, headers=AUTH)
        client.post("/v1/site/drain", json={"nodes": [6]}, headers=AUTH)
        client.post("/v1/site/set-limit", json={"row": "rack-0001 feed", "watts": 12345.5},
                    headers=AUTH)
        assert service.journal.snapshot_seq >= 2
        expected = fingerprint(service)[0]
    again = PlacementService(array, tmp_path / "s", backend=backend)
    try:
        assert json.dumps(again.engine.snapshot(), sort_keys=True) == expected
        assert again.engine.node_state(5) == "down" and again.engine.node_state(6) == "draining"
        assert again.engine.changed_limits() == {"rack-0001 feed": 12345.5}
    finally:
        again.close()


@pytest.mark.parametrize("path,body,status,field,code", [
    ("/v1/site/drain", {"nodes": ["no-such-node"]}, 404, "body.nodes", "unknown-node"),
    ("/v1/site/fail", {"nodes": [0, "rack-0001-n0", "nope"]}, 404, "body.nodes",
     "unknown-node"),
    ("/v1/site/fail", {"nodes": [64]}, 422, "body.nodes", None),
    ("/v1/site/restore", {"nodes": []}, 422, "body.nodes", None),
    ("/v1/site/fail", {"nodes": [True]}, 422, "body.nodes", None),
    ("/v1/site/fail-domain", {"domain": "rack-9999 feed"}, 404, "body.domain",
     "unknown-domain"),
    ("/v1/site/fail-domain", {"domain": "facility IT limit"}, 404, "body.domain",
     "unknown-domain"),
    ("/v1/site/set-limit", {"row": "no row", "watts": 10}, 404, "body.row", "unknown-row"),
    ("/v1/site/set-limit", {"row": "rack-0001 feed", "watts": -1}, 422, "body.watts", None),
    ("/v1/site/set-limit", {"row": "rack-0001 feed"}, 422, "body.watts", None),
    ("/v1/site/set-limit", {"row": 10_000, "watts": 1}, 422, "body.row", None),
    ("/v1/site/repair", {"job_id": "ghost"}, 404, "body.job_id", "unknown-job"),
    ("/v1/site/repair", {"job_id": "healthy"}, 409, "body.job_id", "not-degraded"),
    ("/v1/site/apply", {}, 422, "body.plan_id", None),
    ("/v1/site/plan", {"extra": 1}, 422, "body.extra", None),
])
def test_bad_site_requests_are_typed_and_change_nothing(served, path, body, status, field,
                                                        code):
    service, client = served
    client.post("/v1/place", json={"job": {"id": "healthy", "gpus": 8}}, headers=AUTH)
    before = fingerprint(service)
    reply = client.post(path, json=body, headers=AUTH)
    assert reply.status_code == status, reply.text
    assert reply.json()["field"] == field
    assert reply.json().get("code") == code
    assert fingerprint(service) == before


@pytest.mark.parametrize("path", ["/v1/site/drain", "/v1/site/fail", "/v1/site/restore",
                                  "/v1/site/fail-domain", "/v1/site/restore-domain",
                                  "/v1/site/repair", "/v1/site/set-limit",
                                  "/v1/site/reset-limits", "/v1/site/plan", "/v1/site/apply",
                                  "/v2/site/fail"])
def test_site_changes_need_the_token(served, path):
    service, client = served
    before = fingerprint(service)
    reply = client.post(path, json={"nodes": [0]})
    assert reply.status_code == 401
    assert fingerprint(service) == before


def test_openapi_lists_the_site_routes(served):
    _, client = served
    doc = client.get("/openapi.json").json()
    for path in ("/v1/site/drain", "/v1/site/fail", "/v1/site/restore", "/v1/site/fail-domain",
                 "/v1/site/restore-domain", "/v1/site/repair", "/v1/site/set-limit",
                 "/v1/site/reset-limits", "/v1/site/plan", "/v1/site/apply",
                 "/v1/site/nodes", "/v1/site/violations", "/v2/site/nodes", "/v2/site/plan"):
        assert path in doc["paths"], path
    assert doc["paths"]["/v1/site/apply"]["post"]["security"] == [{"bearer": []}]
    ok = doc["paths"]["/v2/site/nodes"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("CompactNodeStates")


@pytest.mark.parametrize("path,body", [
    ("/v1/site/fail", {"nodes": [0, 1]}),
    ("/v1/site/drain", {"nodes": [0]}),
    ("/v1/site/fail-domain", {"domain": "rack-0001 feed"}),
    ("/v1/site/set-limit", {"row": "facility IT limit", "watts": 1000}),
])
def test_a_failed_append_leaves_the_site_as_it_was(served, monkeypatch, path, body):
    service, client = served
    client.post("/v1/place", json={"job": {"id": "a", "gpus": 16}}, headers=AUTH)
    before = fingerprint(service)

    def disk_full(entry):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service.journal, "write", disk_full)
    reply = client.post(path, json=body, headers=AUTH)
    assert reply.status_code == 503, reply.text
    monkeypatch.undo()
    assert fingerprint(service) == before
    assert service.engine.degraded() == {} and service.engine.changed_limits() == {}


def test_metrics_and_floor_count_spares_as_up_and_every_gpu_once(served, array):
    from prometheus_client.parser import text_string_to_metric_families

    service, client = served
    service.engine.set_spares(1, per="pod")   # no endpoint yet: the engine's API
    client.post("/v1/site/drain", json={"nodes": [0]}, headers=AUTH)
    client.post("/v1/site/fail", json={"nodes": [1, 2]}, headers=AUTH)
    gpus = {s.labels["state"]: s.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            if family.name == "gpusched_gpus" for s in family.samples}
    assert gpus == {"busy": 0.0, "free": 8.0 * 60, "draining": 8.0, "down": 16.0,
                    "spare": 8.0}
    racks = client.get("/v1/floor").json()["racks"]["nodes_not_up"]
    assert sum(racks) == 3   # the spare (the pod's last node) is not hatched


def test_a_repair_record_that_replays_differently_is_refused(served, tmp_path, array,
                                                             backend):
    from gpusched.errors import SnapshotError
    from gpusched.serve.journal import decode_entry, encode_entry

    service, client = served
    placed = client.post("/v1/place", json={"job": {"id": "a", "gpus": 16}},
                         headers=AUTH).json()["placement"]
    client.post("/v1/site/fail", json={"nodes": placed["nodes"][0]}, headers=AUTH)
    assert client.post("/v1/site/repair", json={"job_id": "a"},
                       headers=AUTH).json()["repaired"]
    copy = crash_copy(service, tmp_path, "edited")
    lines = (copy / "journal.log").read_bytes().splitlines()
    entry = decode_entry(lines[-1])
    assert entry["op"] == "repair"
    entry["nodes"] = [n + 1 for n in entry["nodes"]]   # not what the engine would pick
    lines[-1] = encode_entry(entry).rstrip(b"\n")
    (copy / "journal.log").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(SnapshotError, match="repair"):
        PlacementService(array, copy, backend=backend)
