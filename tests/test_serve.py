"""The placement service in process: endpoints, validation, the token, the journal.

The subprocess crash test is in test_serve_crash.py, the schemathesis run in
test_serve_fuzz.py.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

import gpusched
from gpusched.errors import DuplicateJobError, JobError, SnapshotError
from gpusched.serve import PlacementService, create_app
from gpusched.serve.journal import JOURNAL_NAME, SNAPSHOT_NAME, Journal, encode_entry
from gpusched.state import decode_state, encode_state, write_atomic
from tests.verify import check_engine

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


# ---- the journal --------------------------------------------------------------------

def stream(service: PlacementService, seed: int, count: int) -> None:
    """Random places and releases straight on the service (no HTTP)."""
    rng = np.random.default_rng(seed)
    live: list[str] = []
    for i in range(count):
        if live and rng.random() < 0.4:
            job_id = live.pop(int(rng.integers(len(live))))
            service.release({"job_id": job_id})
        else:
            gpus = int(rng.choice([1, 2, 4, 8, 16, 64]))
            body = {"job": {"id": f"j{seed}-{i}", "gpus": gpus,
                            "min_cap_w": int(rng.choice([300, 700]))}}
            reply, _ = service.place(body)
            if reply["placed"]:
                live.append(body["job"]["id"])
    service.journal.sync()


def crash_copy(service: PlacementService, tmp_path, name: str):
    """The state directory as a crash would leave it (no final snapshot)."""
    target = tmp_path / name
    shutil.copytree(service.state_dir, target, ignore=shutil.ignore_patterns("lock"))
    return target


@pytest.mark.parametrize("snapshot_every", [1, 7, 10_000])
def test_recovery_replays_to_the_same_state(tmp_path, array, backend, snapshot_every):
    service = PlacementService(array, tmp_path / "s", backend=backend,
                               snapshot_every=snapshot_every)
    for seed in range(3):
        stream(service, seed, 60)
        service.maybe_checkpoint()
    copy = crash_copy(service, tmp_path, "copy")
    again = PlacementService(array, copy, backend=backend)
    assert again.engine.snapshot() == service.engine.snapshot()
    assert again.journal.written_seq == service.journal.written_seq
    check_engine(again.engine)
    service.close()
    # a clean close leaves a snapshot and an empty journal
    assert (tmp_path / "s" / JOURNAL_NAME).read_bytes() == b""
    reopened = PlacementService(array, tmp_path / "s", backend=backend)
    assert reopened.recovered_entries == 0
    assert reopened.engine.snapshot() == service.engine.snapshot()


def test_snapshot_file_loads_with_engine_load(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 5, 40)
    service.checkpoint()
    engine = gpusched.Engine.load(array, tmp_path / "s" / SNAPSHOT_NAME)
    assert engine.placements() == service.engine.placements()


@pytest.mark.parametrize("tail", [b"0badc0de {\"op\":\"rel", b"deadbeef", b"\x00" * 40])
def test_torn_last_record_is_dropped_and_cut_off(tmp_path, array, tail):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 1, 30)
    expected = service.engine.snapshot()
    seq = service.journal.written_seq
    copy = crash_copy(service, tmp_path, "copy")
    with open(copy / JOURNAL_NAME, "ab") as f:
        f.write(tail)
    again = PlacementService(array, copy)
    assert again.engine.snapshot() == expected and again.journal.written_seq == seq
    assert not (copy / JOURNAL_NAME).read_bytes().endswith(tail)
    # appending after the cut gives a journal that recovers cleanly again
    again.place({"job": {"id": "after-crash", "gpus": 8}})
    again.journal.sync()
    third = PlacementService(array, crash_copy(again, tmp_path, "third"))
    assert "after-crash" in third.engine


def test_corrupted_middle_record_is_refused_with_its_line(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 2, 20)
    copy = crash_copy(service, tmp_path, "copy")
    lines = (copy / JOURNAL_NAME).read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b'"gpus"', b'"gpuz"')  # checksum no longer matches
    (copy / JOURNAL_NAME).write_bytes(b"\n".join(lines))
    with pytest.raises(SnapshotError, match="line 5 is corrupted"):
        PlacementService(array, copy)


def test_missing_entries_are_refused(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 3, 20)
    copy = crash_copy(service, tmp_path, "copy")
    lines = (copy / JOURNAL_NAME).read_bytes().split(b"\n")
    (copy / JOURNAL_NAME).write_bytes(b"\n".join(lines[:3] + lines[4:]))
    with pytest.raises(SnapshotError, match="line 4 has seq 5, expected 4"):
        PlacementService(array, copy)


def test_crash_between_snapshot_and_journal_truncation(tmp_path, array):
    """Checkpoint crash point 2: new snapshot on disk, old journal still full."""
    service = PlacementService(array, tmp_path / "s")
    stream(service, 4, 50)
    copy = crash_copy(service, tmp_path, "copy")
    snapshot = {**service.snapshot(), "journal_seq": service.journal.written_seq}
    write_atomic(copy / SNAPSHOT_NAME, encode_state(snapshot))
    (copy / f".{SNAPSHOT_NAME}.abc.tmp").write_bytes(b"half a snapsh")  # crash point 1
    again = PlacementService(array, copy)
    assert again.recovered_entries == 0  # every entry is in the snapshot: skipped
    assert again.engine.snapshot() == service.engine.snapshot()
    assert not list(copy.glob(".*.tmp"))


def test_a_bad_entry_does_not_replay(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    service.place({"job": {"id": "a", "gpus": 8}})
    service.journal.sync()
    copy = crash_copy(service, tmp_path, "copy")
    with open(copy / JOURNAL_NAME, "ab") as f:  # a well-formed entry that cannot apply
        f.write(encode_entry({"seq": 2, "op": "release", "job_id": "ghost"}))
        f.write(encode_entry({"seq": 3, "op": "release", "job_id": "a"}))
    with pytest.raises(SnapshotError, match="seq 2"):
        PlacementService(array, copy)


def test_one_server_per_state_directory(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    with pytest.raises(SnapshotError, match="in use"):
        PlacementService(array, tmp_path / "s")
    service.close()
    PlacementService(array, tmp_path / "s").close()


def test_snapshot_of_another_cluster_is_refused(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 6, 10)
    service.close()
    with pytest.raises(SnapshotError, match="colossus-array"):
        PlacementService(gpusched.Cluster.preset("tiny"), tmp_path / "s")
    assert decode_state((tmp_path / "s" / SNAPSHOT_NAME).read_bytes())["journal_seq"] > 0


def test_journal_write_requires_recover(tmp_path):
    journal = Journal(tmp_path / "j")
    with pytest.raises(RuntimeError):
        journal.write({"op": "release", "job_id": "x"})
    journal.close()


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


def test_entries_from_before_the_snapshot_after_newer_ones_are_refused(tmp_path, array):
    service = PlacementService(array, tmp_path / "s")
    stream(service, 7, 10)
    service.checkpoint()
    service.place({"job": {"id": "new", "gpus": 8}})
    service.journal.sync()
    copy = crash_copy(service, tmp_path, "copy")
    with open(copy / JOURNAL_NAME, "ab") as f:
        f.write(encode_entry({"seq": 1, "op": "release", "job_id": "new"}))
    with pytest.raises(SnapshotError, match="has seq 1, expected"):
        PlacementService(array, copy)


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
