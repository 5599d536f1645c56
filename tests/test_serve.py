"""The placement service in process: endpoints, validation, the token.

The subprocess crash test is in test_serve_crash.py, the schemathesis run in
test_serve_fuzz.py.
"""

from __future__ import annotations

import json
import warnings

import pytest

import gpusched
from gpusched.errors import DuplicateJobError, JobError
from gpusched.serve import PlacementService, create_app
from tests.support.services import crash_copy
from tests.support.verify import check_engine

starlette = pytest.importorskip("starlette")
with warnings.catch_warnings():  # starlette 1.x asks for httpx2; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "correct horse battery staple"
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


# ---- endpoints ----------------------------------------------------------------------

def test_place_explain_release_round_trip(served):
    service, client = served
    job = {"id": "llm-a", "gpus": 64, "min_cap_w": 400}
    explained = client.post("/v1/explain", json={"job": job}).json()
    assert explained["status"] == "placeable"
    placed = client.post("/v1/place", json={"job": job}, headers=AUTH).json()
    assert placed["placed"] and placed["explanation"] is None
    p = placed["placement"]
    # explain promised what place then did
    assert p["nodes"] == explained["nodes"] and p["cap_w"] == explained["cap_w"]
    assert p["node_names"] == [service.cluster.node_names[n] for n in p["nodes"]]
    assert service.engine.placement("llm-a").nodes == tuple(p["nodes"])
    state = client.get("/v1/state").json()
    assert state["free_gpus"] == 512 - 64 and state["jobs"] == 1 and state["journal_seq"] == 1
    assert client.get("/v1/placements").json()["placements"] == [p]
    released = client.post("/v1/release", json={"job_id": "llm-a"}, headers=AUTH).json()
    assert released["released"] == p
    assert client.get("/v1/state").json()["free_gpus"] == 512
    check_engine(service.engine)


def test_refusal_is_200_with_the_reason(served):
    service, client = served
    client.post("/v1/place", json={"job": {"id": "all", "gpus": 512, "min_cap_w": 200}},
                headers=AUTH)
    reply = client.post("/v1/place", json={"job": {"id": "more", "gpus": 8}}, headers=AUTH)
    assert reply.status_code == 200
    body = reply.json()
    assert body["placed"] is False and body["explanation"]["status"] == "no-capacity"
    assert "more" not in service.engine


def test_health_and_openapi(served):
    _, client = served
    assert client.get("/v1/health").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/v1/place", "/v1/release", "/v1/explain", "/v1/state", "/v1/rebalance-caps",
                 "/v1/allocate", "/v1/health", "/v1/k8s/filter", "/v1/k8s/prioritize",
                 "/v1/k8s/bind"):
        assert path in spec["paths"]
    # ranges come from this cluster
    job = spec["components"]["schemas"]["Job"]["properties"]
    assert job["gpus"]["maximum"] == 512 and job["max_cap_w"]["minimum"] == 200
    assert spec["paths"]["/v1/place"]["post"]["security"] == [{"bearer": []}]


@pytest.mark.parametrize("body, status, field", [
    (b"{not json", 400, None),
    (b'{"job": {"id": "x", "gpus": NaN}}', 400, None),
    (b"\xff\xfe", 400, None),
    ({"job": {"id": "x", "gpus": 8}, "extra": 1}, 422, "body.extra"),
    ({"job": {"id": "x", "gpus": 8, "colour": "red"}}, 422, "body.job.colour"),
    ({"job": {"id": "x"}}, 422, "body.job.gpus"),
    ({}, 422, "body.job"),
    ([], 422, "body"),
    ({"job": None}, 422, "body.job"),
    ({"job": {"id": "", "gpus": 8}}, 422, "body.job.id"),
    ({"job": {"id": "x", "gpus": 0}}, 422, "body.job.gpus"),
    ({"job": {"id": "x", "gpus": 513}}, 422, "body.job.gpus"),
    ({"job": {"id": "x", "gpus": 12}}, 422, "body.job.gpus"),
    ({"job": {"id": "x", "gpus": 8.5}}, 422, "body.job.gpus"),
    ({"job": {"id": "x", "gpus": True}}, 422, "body.job.gpus"),
    ({"job": {"id": "x", "gpus": "8"}}, 422, "body.job.gpus"),
    ({"job": {"id": "x", "gpus": 8, "max_cap_w": 800}}, 422, "body.job.max_cap_w"),
    ({"job": {"id": "x", "gpus": 8, "min_cap_w": 150}}, 422, "body.job.min_cap_w"),
    ({"job": {"id": "x", "gpus": 8, "min_cap_w": 600, "max_cap_w": 500}}, 422,
     "body.job.min_cap_w"),
    ({"job": {"id": "x", "gpus": 8, "weight": -1}}, 422, "body.job.weight"),
    ({"job": {"id": "x", "gpus": 8}, "pod": 1}, 422, "body.pod"),
    ({"job": {"id": "x", "gpus": 8}, "pod": "no-such-pod"}, 422, "body.pod"),
    ({"job": {"id": "held", "gpus": 8}}, 409, "body.job.id"),
])
def test_bad_place_requests_get_4xx_naming_the_field_and_change_nothing(served, body, status,
                                                                        field):
    service, client = served
    client.post("/v1/place", json={"job": {"id": "held", "gpus": 8}}, headers=AUTH)
    before = fingerprint(service)
    if isinstance(body, bytes):
        reply = client.post("/v1/place", content=body, headers=AUTH)
    else:
        reply = client.post("/v1/place", json=body, headers=AUTH)
    assert reply.status_code == status, reply.text
    error = reply.json()
    assert error["field"] == field
    if field is not None:
        assert error["error"].startswith(field)
    assert fingerprint(service) == before


@pytest.mark.parametrize("error, field", [
    # the message has no "gpus=": only the error's field can say which field it is
    (JobError("the job asks for more GPUs than the site has", field="gpus"), "body.job.gpus"),
    # the message names pod=, the field says gpus: the field wins
    (JobError("pod=1 has no room for gpus of this size", field="gpus"), "body.job.gpus"),
    (JobError("no pod has room for this job", field="pod"), "body.pod"),
    (DuplicateJobError("that name is taken", field="id"), "body.job.id"),
    # no field: none is made up from the words of the message
    (JobError("gpus=8 cannot run here"), None),
])
def test_the_reply_names_the_field_the_error_carries(served, monkeypatch, error, field):
    service, client = served

    def refuse(self, job, pod=None):
        raise error

    monkeypatch.setattr(type(service.engine), "place", refuse)
    reply = client.post("/v1/place", json={"job": {"id": "x", "gpus": 8}}, headers=AUTH)
    assert reply.status_code == (409 if isinstance(error, DuplicateJobError) else 422)
    assert reply.json()["field"] == field
    assert reply.json()["error"] == (str(error) if field is None else f"{field}: {error}")


def test_a_bad_job_in_the_allocate_queue_is_named_by_its_index(served):
    service, client = served
    before = fingerprint(service)
    queue = [{"id": "q0", "gpus": 8}, {"id": "q1", "gpus": 12}]
    reply = client.post("/v1/allocate", json={"queue": queue}, headers=AUTH)
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "body.queue[1].gpus"
    assert fingerprint(service) == before


@pytest.mark.parametrize("body, status, field", [
    ({"job_id": "nobody"}, 404, "body.job_id"),
    ({"job_id": 7}, 422, "body.job_id"),
    ({"job_id": "held", "force": True}, 422, "body.force"),
    ({}, 422, "body.job_id"),
])
def test_bad_release_requests(served, body, status, field):
    service, client = served
    client.post("/v1/place", json={"job": {"id": "held", "gpus": 8}}, headers=AUTH)
    before = fingerprint(service)
    reply = client.post("/v1/release", json=body, headers=AUTH)
    assert (reply.status_code, reply.json()["field"]) == (status, field)
    assert fingerprint(service) == before


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer{TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN} "}])
def test_mutating_calls_need_the_token(served, headers):
    service, client = served
    before = fingerprint(service)
    for path, body in (("/v1/place", {"job": {"id": "a", "gpus": 8}}),
                       ("/v1/release", {"job_id": "a"}), ("/v1/rebalance-caps", {}),
                       ("/v1/allocate", {"queue": []}),
                       ("/v1/k8s/bind", {"PodName": "p", "PodNamespace": "d", "Node": "n"})):
        reply = client.post(path, json=body, headers=headers)
        assert reply.status_code == 401, path
    assert fingerprint(service) == before
    # reads and explain stay open
    assert client.post("/v1/explain", json={"job": {"id": "a", "gpus": 8}}).status_code == 200
    assert client.get("/v1/state").status_code == 200


def test_k8s_verbs_can_stay_open_for_kube_scheduler(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    with TestClient(create_app(service, token=TOKEN, k8s_open=True)) as client:
        body = {"PodName": "p", "PodNamespace": "d", "Node": "n"}
        assert client.post("/v1/k8s/bind", json=body).status_code == 200
        assert client.post("/v1/place", json={"job": {"id": "a", "gpus": 8}}).status_code == 401


def test_rebalance_caps_endpoint_plans_without_applying(served):
    service, client = served
    client.post("/v1/place", json={"job": {"id": "a", "gpus": 64, "min_cap_w": 300}},
                headers=AUTH)
    reply = client.post("/v1/rebalance-caps", json={"apply": False}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert "a" in reply.json()["cap_w"] and reply.json()["applied"] is False


# ---- journaling through the HTTP endpoints (the journal itself: test_journal.py) ----

def test_allocate_and_rebalance_apply_are_journaled(tmp_path, array, backend):
    service = PlacementService(array, tmp_path / "s", backend=backend)
    with TestClient(create_app(service, token=TOKEN, close_on_shutdown=False)) as client:
        queue = [{"id": f"q{i}", "gpus": g, "min_cap_w": 300}
                 for i, g in enumerate([64, 64, 128, 8, 8, 256])]
        reply = client.post("/v1/allocate", json={"queue": queue, "time_limit_s": 5,
                                                  "apply": True}, headers=AUTH)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["applied"] and set(body["placements"]) <= {j["id"] for j in queue}
        assert set(body["placements"]) == {p.job_id for p in service.engine.placements()}
        plan = client.post("/v1/rebalance-caps", json={"apply": True}, headers=AUTH)
        assert plan.status_code == 200, plan.text
        caps = {p.job_id: p.cap_w for p in service.engine.placements()}
        assert all(caps[j] == c for j, c in plan.json()["cap_w"].items())
    check_engine(service.engine)
    service.journal.sync()
    again = PlacementService(array, crash_copy(service, tmp_path, "copy"), backend=backend)
    assert again.engine.snapshot() == service.engine.snapshot()


def test_token_from_flag_or_environment(monkeypatch):
    from gpusched.serve.cli import TOKEN_ENV, resolve_token

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert resolve_token(None) is None
    assert resolve_token("flag") == "flag"
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert resolve_token(None) == "from-env" and resolve_token("flag") == "flag"
    monkeypatch.setenv(TOKEN_ENV, "  ")
    with pytest.raises(SystemExit, match="empty"):
        resolve_token(None)


# ---- /v1/batch (wire format 1.1) ---------------------------------------------------------

def test_batch_applies_each_op_in_order_with_its_own_status(served, tmp_path):
    service, client = served
    reply = client.post("/v1/batch", json={"ops": [
        {"op": "place", "job": {"id": "a", "gpus": 8}},
        {"op": "place", "job": {"id": "b", "gpus": 0}},
        {"op": "release", "job_id": "nobody"},
        {"op": "place", "job": {"id": "a", "gpus": 8}},
        {"op": "place", "job": {"id": "c", "gpus": 16, "min_cap_w": 400}},
        {"op": "release", "job_id": "a"},
    ]}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["status"] for r in results] == [200, 422, 404, 409, 200, 200]
    assert results[0]["reply"]["placed"] and results[4]["reply"]["placed"]
    assert results[1]["field"] == "body.ops[1].job.gpus"
    assert results[1]["error"].startswith("body.ops[1].job.gpus: ")
    assert results[2]["field"] == "body.ops[2].job_id"
    assert results[5]["reply"]["released"]["job_id"] == "a"
    assert {p.job_id for p in service.engine.placements()} == {"c"}
    # the same reply as the single call gives
    single = client.post("/v1/place", json={"job": {"id": "d", "gpus": 16,
                                                    "min_cap_w": 400}}, headers=AUTH).json()
    assert set(single) == set(results[4]["reply"])
    # every op of the batch was durable before the reply: a crash keeps them
    again = PlacementService(service.cluster, crash_copy(service, tmp_path, "after"))
    assert {p.job_id for p in again.engine.placements()} == {"c", "d"}
    again.close()


@pytest.mark.parametrize("body, field", [
    ({"ops": []}, "body.ops"),
    ({"ops": [{"op": "explain", "job": {"id": "x", "gpus": 1}}]}, "body.ops[0].op"),
    ({"ops": [{"job": {"id": "x", "gpus": 1}}]}, "body.ops[0].op"),
    ({"ops": [{"op": "place"}] * 1001}, "body.ops"),
    ({"ops": "place"}, "body.ops"),
])
def test_a_malformed_batch_is_refused_whole_naming_the_field(served, body, field):
    service, client = served
    reply = client.post("/v1/batch", json=body, headers=AUTH)
    assert reply.status_code == 422 and reply.json()["field"] == field, reply.text
    assert len(service.engine) == 0 and service.journal.written_seq == 0


def test_the_openapi_document_lists_batch_in_both_versions(served):
    # the document describes API 2 (compact.py): /v1 at wire format 1.1, which added
    # /v1/batch, and /v2 with hostlist replies
    _, client = served
    doc = client.get("/openapi.json").json()
    assert doc["info"]["version"] == "2"
    assert "post" in doc["paths"]["/v1/batch"] and "post" in doc["paths"]["/v2/batch"]
