"""The Kubernetes scheduler-extender front: kube-scheduler's JSON shapes, gangs, expiry.

Requests are the fixtures under tests/fixtures/k8s/, in exactly the shapes kube-scheduler
sends (k8s.io/kube-scheduler/extender/v1 has no JSON tags: keys are the Go field names).
The cluster is two DGX SuperPOD SUs read from a Slurm topology.conf, so node names are
real host names (dgx0001...).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest

from gpusched.adapters.slurm import read_cluster

starlette = pytest.importorskip("starlette")
with warnings.catch_warnings():  # starlette 1.x asks for httpx2; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from gpusched.serve import PlacementService, create_app  # noqa: E402
from tests.support.verify import check_engine  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
GANG_JOB = "k8s:training/llama-70b"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / "k8s" / name).read_text())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def cluster():
    return read_cluster(FIXTURES / "slurm" / "tree.conf", FIXTURES / "slurm" / "tree_overlay.toml")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make(tmp_path, cluster, clock, backend):
    made = []

    def build(state_dir=tmp_path / "state"):
        service = PlacementService(cluster, state_dir, backend=backend, gang_timeout_s=60,
                                   clock=clock)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = TestClient(create_app(service))
        client.__enter__()
        made.append(client)
        return service, client

    yield build
    for client in made:
        client.__exit__(None, None, None)


def pod_args(name: str, *, node_names: bool = True, gang: str = "llama-70b", size: str = "4",
             gpus: str = "8") -> dict:
    args = copy.deepcopy(fixture("filter_args_nodenames.json" if node_names
                                 else "filter_args_nodes.json"))
    meta = args["Pod"]["metadata"]
    meta["name"] = name
    meta["uid"] = f"uid-{name}"
    meta["annotations"]["gpusched.io/gang-name"] = gang
    meta["annotations"]["gpusched.io/gang-size"] = size
    args["Pod"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = gpus
    args["Pod"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = gpus
    return args


def bind_args(name: str, node: str) -> dict:
    args = fixture("bind_args.json")
    args.update(PodName=name, PodUID=f"uid-{name}", Node=node)
    return args


def test_filter_with_a_node_list_reserves_the_whole_gang(make):
    service, client = make()
    args = fixture("filter_args_nodes.json")
    reply = client.post("/v1/k8s/filter", json=args)
    assert reply.status_code == 200
    result = reply.json()
    # the ExtenderFilterResult shape, field for field
    assert set(result) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes",
                           "Error"}
    assert result["Error"] == "" and result["NodeNames"] is None
    passed = [item["metadata"]["name"] for item in result["Nodes"]["items"]]
    # the node objects come back as they were sent
    sent = {item["metadata"]["name"]: item for item in args["Nodes"]["items"]}
    assert all(item == sent[item["metadata"]["name"]] for item in result["Nodes"]["items"])
    placement = service.engine.placement(GANG_JOB)
    names = service.cluster.node_names
    assert passed == [names[n] for n in placement.nodes]
    assert placement.gpus == 32 and placement.cap_w >= 450  # 4 pods x 8 GPUs, min cap
    assert set(result["FailedNodes"]) == set(sent) - set(passed)
    assert all(msg.startswith("gpusched:") for msg in result["FailedNodes"].values())
    check_engine(service.engine)


def test_gang_pods_are_filtered_prioritized_and_bound_to_the_reservation(make):
    service, client = make()
    first = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()
    reserved = first["NodeNames"]
    assert len(reserved) == 4 and first["Nodes"] is None
    scores = client.post("/v1/k8s/prioritize", json=fixture("prioritize_args.json")).json()
    assert [s["Host"] for s in scores] == fixture("prioritize_args.json")["NodeNames"]
    assert {s["Host"] for s in scores if s["Score"] == 10} == set(reserved)
    assert all(s["Score"] == 0 for s in scores if s["Host"] not in reserved)
    for i in range(4):
        name = f"llama-70b-{i}"
        nodes = client.post("/v1/k8s/filter", json=pod_args(name)).json()["NodeNames"]
        # each bound pod takes its node's only slot, so later pods see fewer nodes
        assert nodes == reserved[i:]
        assert client.post("/v1/k8s/bind", json=bind_args(name, nodes[0])).json() == {
            "Error": ""}
    gang = client.get("/v1/k8s/gangs").json()["gangs"][0]
    assert gang["complete"] and gang["expires_in_s"] is None
    assert sorted(gang["bound"].values()) == sorted(reserved)
    # the gang holds exactly one engine job, whatever the number of pods
    assert len(service.engine) == 1


def test_bind_refuses_a_node_outside_the_reservation_or_without_a_slot(make):
    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    client.post("/v1/k8s/filter", json=pod_args("llama-70b-1"))
    outside = next(n for n in fixture("filter_args_nodenames.json")["NodeNames"]
                   if n not in reserved)
    assert "no free slot" in client.post("/v1/k8s/bind", json=bind_args("llama-70b-0",
                                                                        outside)).json()["Error"]
    assert client.post("/v1/k8s/bind", json=bind_args("llama-70b-0", reserved[0])).json() == {
        "Error": ""}
    # retrying the same bind is idempotent; a second pod on a full node is refused
    assert client.post("/v1/k8s/bind", json=bind_args("llama-70b-0", reserved[0])).json() == {
        "Error": ""}
    assert "no free slot" in client.post("/v1/k8s/bind", json=bind_args("llama-70b-1",
                                                                       reserved[0])).json()["Error"]
    assert "no gang reservation" in client.post(
        "/v1/k8s/bind", json=bind_args("never-filtered", reserved[1])).json()["Error"]


def test_small_gang_shares_one_node_in_pod_slots(make):
    service, client = make()
    result = client.post("/v1/k8s/filter", json=pod_args("pair-0", gang="pair", size="2",
                                                         gpus="4")).json()
    assert len(result["NodeNames"]) == 1
    node = result["NodeNames"][0]
    assert service.engine.placement("k8s:training/pair").gpus == 8
    client.post("/v1/k8s/bind", json=bind_args("pair-0", node))
    second = client.post("/v1/k8s/filter", json=pod_args("pair-1", gang="pair", size="2",
                                                         gpus="4")).json()
    assert second["NodeNames"] == [node]  # the node's second slot is still free
    client.post("/v1/k8s/bind", json=bind_args("pair-1", node))
    third = client.post("/v1/k8s/filter", json=pod_args("pair-2", gang="pair", size="2",
                                                        gpus="4")).json()
    assert third["NodeNames"] == []


def test_incomplete_gang_expires_and_frees_its_gpus(make, clock):
    service, client = make()
    client.post("/v1/k8s/filter", json=pod_args("llama-70b-0"))
    free_while_reserved = service.engine.free_gpus()
    clock.now += 59
    assert GANG_JOB in service.engine
    clock.now += 2  # past the 60 s timeout with none of 4 pods bound
    assert client.get("/v1/k8s/gangs").json() == {"gangs": []}
    assert GANG_JOB not in service.engine
    assert service.engine.free_gpus() == free_while_reserved + 32
    check_engine(service.engine)


def test_complete_gang_does_not_expire_and_releases_by_job_id(make, clock):
    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("p-0", size="1")).json()["NodeNames"]
    client.post("/v1/k8s/bind", json=bind_args("p-0", reserved[0]))
    clock.now += 10_000
    assert len(client.get("/v1/k8s/gangs").json()["gangs"]) == 1
    reply = client.post("/v1/release", json={"job_id": GANG_JOB})
    assert reply.status_code == 200
    assert client.get("/v1/k8s/gangs").json() == {"gangs": []}


def test_reservations_and_binds_survive_a_restart(make, tmp_path, clock):
    service, client = make(tmp_path / "a")
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    client.post("/v1/k8s/bind", json=bind_args("llama-70b-0", reserved[0]))
    before = service.engine.placement(GANG_JOB)
    # no clean shutdown: copy the directory as a crash would leave it
    service.journal.sync()
    import shutil
    shutil.copytree(tmp_path / "a", tmp_path / "b", ignore=shutil.ignore_patterns("lock"))
    again, client2 = make(tmp_path / "b")
    assert again.engine.placement(GANG_JOB) == before
    gang = client2.get("/v1/k8s/gangs").json()["gangs"][0]
    assert gang["bound"] == {"training/llama-70b-0": reserved[0]}
    nodes = client2.post("/v1/k8s/filter", json=pod_args("llama-70b-1")).json()["NodeNames"]
    assert nodes == reserved[1:]


def test_cpu_pod_passes_every_node_and_reserves_nothing(make):
    service, client = make()
    args = fixture("filter_args_cpu_pod.json")
    result = client.post("/v1/k8s/filter", json=args).json()
    assert result["NodeNames"] == args["NodeNames"] and result["FailedNodes"] == {}
    assert len(service.engine) == 0


def test_bad_annotation_is_an_extender_error_and_changes_nothing(make):
    service, client = make()
    result = client.post("/v1/k8s/filter", json=fixture("filter_args_bad_annotation.json")).json()
    assert "gpusched.io/gang-size" in result["Error"] and result["NodeNames"] == []
    assert len(service.engine) == 0 and service.journal.written_seq == 0


def test_gang_too_big_for_the_cluster_fails_every_node(make):
    service, client = make()
    result = client.post("/v1/k8s/filter", json=pod_args("huge-0", gang="huge",
                                                         size="65")).json()
    assert result["NodeNames"] == [] and len(result["FailedNodes"]) == 8
    assert all("gpus=520" in msg for msg in result["FailedNodes"].values())
    assert len(service.engine) == 0


@pytest.mark.parametrize("body, field", [
    ({}, "body.Pod"),
    ({"Pod": "not-a-pod", "NodeNames": []}, "body.Pod"),
    ({"Pod": {"metadata": {"name": "x"}}, "Nodes": {"items": [{"metadata": {}}]}},
     "body.Nodes.items[0].metadata.name"),
])
def test_malformed_extender_args_get_422_naming_the_field(make, body, field):
    service, client = make()
    reply = client.post("/v1/k8s/filter", json=body)
    assert reply.status_code == 422 and reply.json()["field"] == field
    assert len(service.engine) == 0


def test_lower_case_keys_are_accepted_like_go_does(make):
    service, client = make()
    args = pod_args("llama-70b-0")
    lower = {"pod": args["Pod"], "nodenames": args["NodeNames"]}
    result = client.post("/v1/k8s/filter", json=lower).json()
    assert len(result["NodeNames"]) == 4


# ---- binding through the API server -------------------------------------------------

class FakeApiServer:
    """A loopback HTTP server that records POSTed Bindings and answers a set status."""

    def __init__(self, status: int = 201) -> None:
        import http.server
        import threading

        self.status = status
        self.requests: list[tuple[str, dict, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body, self.headers.get("Authorization")))
                reply = json.dumps({"kind": "Status", "code": outer.status}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [201, 409])
def test_bind_posts_a_binding_to_the_api_server(tmp_path, cluster, clock, status):
    from gpusched.serve.k8s import ApiServerBinder

    api = FakeApiServer(status)
    try:
        binder = ApiServerBinder(api.url, token="sa-token")
        service = PlacementService(cluster, tmp_path / "s", gang_timeout_s=60, clock=clock,
                                   binder=binder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = TestClient(create_app(service))
        with client:
            node = client.post("/v1/k8s/filter",
                               json=pod_args("p-0", gang="p", size="1")).json()["NodeNames"][0]
            result = client.post("/v1/k8s/bind", json=bind_args("p-0", node)).json()
            path, body, auth = api.requests[0]
            assert path == "/api/v1/namespaces/training/pods/p-0/binding"
            assert body == {"apiVersion": "v1", "kind": "Binding",
                            "metadata": {"name": "p-0", "namespace": "training",
                                         "uid": "uid-p-0"},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
            assert auth == "Bearer sa-token"
            gang = client.get("/v1/k8s/gangs").json()["gangs"][0]
            if status == 201:
                assert result == {"Error": ""} and gang["complete"]
            else:  # refused: the slot is free again, and stays free after a restart
                assert "409" in result["Error"] and gang["bound"] == {}
        again = PlacementService(cluster, tmp_path / "s", clock=clock)
        assert again.gangs.reservations["training/p"].complete == (status == 201)
        again.close()
    finally:
        api.close()


# ---- issue 13: double booking, unreplayable journals, hostile annotations --------------

def crash_copy(service, state_dir, to):
    """The directory as a crash would leave it (no final checkpoint), copied to ``to``."""
    import shutil

    service.journal.sync()
    shutil.copytree(state_dir, to, ignore=shutil.ignore_patterns("lock"))


def test_expiry_keeps_the_nodes_of_bound_pods_and_frees_only_the_rest(make, clock, tmp_path):
    # Issue 13 finding 4a: a bound pod is running; its node must not be handed out again.
    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    client.post("/v1/k8s/bind", json=bind_args("llama-70b-0", reserved[0]))
    free_while_reserved = service.engine.free_gpus()
    clock.now += 61
    gangs = client.get("/v1/k8s/gangs").json()["gangs"]
    assert service.engine.free_gpus() == free_while_reserved + 24  # 3 unbound nodes
    names = service.cluster.node_names
    assert [names[n] for n in service.engine.placement(GANG_JOB).nodes] == [reserved[0]]
    assert gangs[0]["bound"] == {"training/llama-70b-0": reserved[0]}
    # the gang's later pods find no slot: the reservation was cut to its running pods
    late = client.post("/v1/k8s/filter", json=pod_args("llama-70b-1")).json()
    assert late["NodeNames"] == []
    check_engine(service.engine)
    # and so it stays after a crash and restart
    crash_copy(service, tmp_path / "state", tmp_path / "after-crash")
    again = PlacementService(service.cluster, tmp_path / "after-crash", clock=clock,
                             gang_timeout_s=60)
    assert again.engine.snapshot() == service.engine.snapshot()
    again.close()


def test_a_single_pod_never_joins_the_gang_of_the_same_name(make):
    # Issue 13 finding 4b: pod "llama-70b" without annotations vs gang "llama-70b".
    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    single = pod_args("llama-70b")
    del single["Pod"]["metadata"]["annotations"]["gpusched.io/gang-name"]
    del single["Pod"]["metadata"]["annotations"]["gpusched.io/gang-size"]
    client.post("/v1/k8s/filter", json=single)
    assert len(service.engine) == 2  # the single pod has a reservation of its own
    gang = service.gangs.reservations[next(g for g in service.gangs.reservations
                                           if service.gangs.reservations[g].size == 4)]
    assert gang.bound == {} and all(gang.free_slots(n) == 1 for n in reserved)


def test_refused_binding_after_expiry_leaves_a_journal_that_replays(tmp_path, cluster, clock):
    # Issue 13 finding 10: the reservation expires while the API server call is out.
    holder = {}

    def binder(namespace, name, uid, node):
        clock.now += 61
        holder["service"].gangs.listing()  # anything that expires reservations
        raise RuntimeError("API server answered 409: conflict")

    service = PlacementService(cluster, tmp_path / "s", gang_timeout_s=60, clock=clock,
                               binder=binder)
    holder["service"] = service
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = TestClient(create_app(service))
    with client:
        node = client.post("/v1/k8s/filter", json=pod_args("p-0")).json()["NodeNames"][0]
        result = client.post("/v1/k8s/bind", json=bind_args("p-0", node)).json()
        assert "409" in result["Error"]
        crash_copy(service, tmp_path / "s", tmp_path / "after-crash")
        expected = service.engine.snapshot()
        expected_gangs = service.gangs.dump()
        # the refused pod holds no slot: the gang was cut to it, and it is unbound again
        assert expected_gangs[0]["bound"] == {}
    again = PlacementService(cluster, tmp_path / "after-crash", gang_timeout_s=60, clock=clock)
    assert again.engine.snapshot() == expected and again.gangs.dump() == expected_gangs
    again.close()


def test_replay_tolerates_an_unbind_of_a_gone_reservation(tmp_path, cluster, clock):
    # What an older gpusched journaled in finding 10's race: it must not brick the directory.
    service = PlacementService(cluster, tmp_path / "s", clock=clock)
    service.journal.write({"op": "unbind", "gang": "training/gone", "pod": "training/p-0"})
    crash_copy(service, tmp_path / "s", tmp_path / "after-crash")
    service.close()
    again = PlacementService(cluster, tmp_path / "after-crash", clock=clock)
    assert len(again.gangs) == 0
    again.close()


@pytest.mark.parametrize("key,value", [
    ("gpusched.io/gang-size", "\u00b2"), ("gpusched.io/gang-size", "9" * 5000),
    ("gpusched.io/max-cap-w", "\u0667\u0660\u0660"), ("gpusched.io/min-cap-w", "1" * 5000),
    ("nvidia.com/gpu", "\u00b2"), ("nvidia.com/gpu", "8" * 5000)],
    ids=["size-superscript", "size-5000-digits", "max-cap-arabic", "min-cap-5000-digits",
         "gpu-superscript", "gpu-5000-digits"])
def test_non_ascii_or_huge_numbers_are_a_filter_error_naming_the_field(make, key, value):
    # Issue 13 finding 19: str.isdigit() let these through to int(), which raised: 500.
    service, client = make()
    args = pod_args("p-0")
    if key == "nvidia.com/gpu":
        args["Pod"]["spec"]["containers"][0]["resources"]["limits"][key] = value
    else:
        args["Pod"]["metadata"]["annotations"][key] = value
    for verb in ("filter", "prioritize"):
        reply = client.post(f"/v1/k8s/{verb}", json=args)
        assert reply.status_code == 200, reply.text
    result = client.post("/v1/k8s/filter", json=args).json()
    assert key in result["Error"] and result["NodeNames"] == []
    assert len(service.engine) == 0 and service.journal.written_seq == 0


def test_a_changed_gang_size_on_a_later_pod_is_refused_naming_the_annotation(make):
    service, client = make()
    client.post("/v1/k8s/filter", json=pod_args("llama-70b-0"))
    result = client.post("/v1/k8s/filter", json=pod_args("llama-70b-1", size="5")).json()
    assert result["NodeNames"] == []
    assert all("gpusched.io/gang-size" in why for why in result["FailedNodes"].values())


def test_a_gang_of_whole_nodes_not_a_multiple_of_8_names_the_annotations(make):
    service, client = make()
    result = client.post("/v1/k8s/filter", json=pod_args("odd-0", gang="odd", size="3",
                                                         gpus="4")).json()
    assert result["NodeNames"] == [] and len(service.engine) == 0
    why = next(iter(result["FailedNodes"].values()))
    assert "gpusched.io/gang-size" in why and "nvidia.com/gpu" in why and "12" in why


def test_pod_error_is_typed_and_names_its_field():
    from gpusched.errors import GpuschedError
    from gpusched.serve.k8s import PodError, parse_pod

    pod = pod_args("p-0", size="0")["Pod"]
    with pytest.raises(PodError) as info:
        parse_pod(pod)
    assert isinstance(info.value, GpuschedError)
    assert info.value.field == "gpusched.io/gang-size"


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf")])
def test_bad_gang_timeout_is_a_typed_error(cluster, timeout_s):
    import threading

    from gpusched.engine import Engine
    from gpusched.errors import GpuschedError
    from gpusched.serve.k8s import Extender

    with pytest.raises(GpuschedError, match="timeout_s"):
        Extender(Engine(cluster), threading.Lock(), cluster, lambda entry: 0,
                 timeout_s=timeout_s)


# ---- issue 18 part 5: candidates, deadlines across restarts, the cached filter answer -----

def test_a_reservation_lies_within_the_nodes_kube_scheduler_offers(make):
    service, client = make()
    names = list(service.cluster.node_names)
    # the engine's first choice would be the first SU; kube-scheduler offers only the
    # second one's nodes (say the first SU's are cordoned)
    offered = names[len(names) // 2:]
    args = pod_args("llama-70b-0")
    args["NodeNames"] = offered
    result = client.post("/v1/k8s/filter", json=args).json()
    assert result["Error"] == "" and len(result["NodeNames"]) == 4
    placement = service.engine.placement(GANG_JOB)
    assert {names[n] for n in placement.nodes} <= set(offered)
    assert set(result["NodeNames"]) == {names[n] for n in placement.nodes}
    assert placement.cap_w >= 450
    check_engine(service.engine)
    # and when the offered nodes have no room, nothing is reserved (the site has room)
    args = pod_args("other-0", gang="other")
    args["NodeNames"] = [names[n] for n in placement.nodes]
    refused = client.post("/v1/k8s/filter", json=args).json()
    assert refused["NodeNames"] == []
    assert all("kube-scheduler offered" in m for m in refused["FailedNodes"].values())
    assert "k8s:training/other" not in service.engine
    assert len(service.engine) == 1


def test_a_gang_deadline_survives_a_restart(make, tmp_path, clock):
    service, client = make(tmp_path / "a")
    client.post("/v1/k8s/filter", json=pod_args("llama-70b-0"))
    clock.now += 40   # of the 60 s timeout
    crash_copy(service, tmp_path / "a", tmp_path / "b")
    again, client2 = make(tmp_path / "b")
    gang = client2.get("/v1/k8s/gangs").json()["gangs"][0]
    assert gang["expires_in_s"] == 20   # not a fresh 60 s
    clock.now += 21
    assert client2.get("/v1/k8s/gangs").json() == {"gangs": []}
    assert GANG_JOB not in again.engine


def test_the_cached_filter_answer_follows_the_candidates_and_the_slots(make):
    service, client = make()
    names = list(service.cluster.node_names)

    def filtered(name: str, candidates: list[str]) -> dict:
        args = pod_args(name)
        args["NodeNames"] = candidates
        return client.post("/v1/k8s/filter", json=args).json()

    everything = names + ["not-a-node"]
    first = filtered("llama-70b-0", everything)
    reserved = first["NodeNames"]
    for candidates in (everything, names[::-1], names[:40] + ["ghost"], everything):
        result = filtered("llama-70b-1", candidates)
        passed = [n for n in reserved if n in candidates]
        assert result["NodeNames"] == passed
        expected = {n: ("gpusched: not a node of the gpusched cluster" if n not in names
                        else "gpusched: not reserved for gang 'training/llama-70b' "
                             "(4 node(s) are)") for n in candidates if n not in reserved}
        assert result["FailedNodes"] == expected
    # a bound pod's node leaves the answer of the next pod, as a full node
    client.post("/v1/k8s/bind", json=bind_args("llama-70b-0", reserved[0]))
    result = filtered("llama-70b-1", everything)
    assert result["NodeNames"] == reserved[1:]
    assert result["FailedNodes"][reserved[0]] == \
        "gpusched: gang 'training/llama-70b' has no free slot here"
    assert len(result["FailedNodes"]) == len(everything) - 3
    # the node-object form gets the same answer
    args = pod_args("llama-70b-1", node_names=False)
    objects = client.post("/v1/k8s/filter", json=args).json()
    sent = [item["metadata"]["name"] for item in args["Nodes"]["items"]]
    assert [item["metadata"]["name"] for item in objects["Nodes"]["items"]] == \
        [n for n in sent if n in reserved[1:]]
    assert set(objects["FailedNodes"]) == set(sent) - set(reserved[1:])


def test_a_disk_full_during_the_cut_on_expiry_never_frees_a_bound_pods_node(make, clock,
                                                                            tmp_path,
                                                                            monkeypatch):
    # Issue 13: the cut-down of an expired gang was two records, a release and a place;
    # a failed second append rolled memory back to the release alone, freeing the node
    # of a running pod.  Every append after the first one fails here.
    import errno
    import os

    from gpusched.serve import journal as journal_module

    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    client.post("/v1/k8s/bind", json=bind_args("llama-70b-0", reserved[0]))
    running = service.cluster.node_names.index(reserved[0])
    clock.now += 61
    real, writes = os.write, {"n": 0}

    def second_fails(fd, data):
        writes["n"] += 1
        if writes["n"] >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)
    monkeypatch.setattr(journal_module.os, "write", second_fails)
    client.get("/v1/k8s/gangs")  # expires the gang, whatever it answers
    monkeypatch.undo()
    assert GANG_JOB in service.engine and running in service.engine.placement(GANG_JOB).nodes
    assert service.engine.node_free_gpus()[running] == 0
    check_engine(service.engine)
    crash_copy(service, tmp_path / "state", tmp_path / "after-crash")
    again = PlacementService(service.cluster, tmp_path / "after-crash", clock=clock,
                             gang_timeout_s=60)
    assert running in again.engine.placement(GANG_JOB).nodes
    assert again.engine.node_free_gpus()[running] == 0
    again.close()


def test_crash_at_every_step_of_bind_keeps_acknowledged_binds_and_only_those(
        tmp_path, cluster, clock, backend, monkeypatch):
    """A bind's steps: book the slot, append (possibly torn), fsync, reply.  After a
    crash at each boundary, the restart holds every acknowledged bind, none that was
    never written whole, the in-flight one at most; the directory starts and the pod's
    retry from kube-scheduler completes the gang."""
    from tests.test_journal import Crash, crash_points

    def build(state_dir):
        return PlacementService(cluster, state_dir, backend=backend, gang_timeout_s=60,
                                clock=clock)

    def bind(service, name, node):
        reply, _ = service.gangs.bind(bind_args(name, node))
        assert reply == {"Error": ""}, reply

    def setup(state_dir):
        service = build(state_dir)
        reserved = service.gangs.filter(pod_args("llama-70b-0"))[0]["NodeNames"]
        for i in range(2):
            service.gangs.filter(pod_args(f"llama-70b-{i}"))
            bind(service, f"llama-70b-{i}", reserved[i])
        service.gangs.filter(pod_args("llama-70b-2"))
        service.journal.sync()
        return service, reserved

    for name, arm in crash_points(monkeypatch):
        service, reserved = setup(tmp_path / name)
        acked = {"training/llama-70b-0": reserved[0], "training/llama-70b-1": reserved[1]}
        if arm is not None:
            arm()
            with pytest.raises(Crash):
                service.gangs.bind(bind_args("llama-70b-2", reserved[2]))
            monkeypatch.undo()
        else:
            bind(service, "llama-70b-2", reserved[2])
            if name == "synced-not-replied":
                service.journal.sync()
        crash_copy(service, tmp_path / name, tmp_path / f"copy-{name}")
        again = build(tmp_path / f"copy-{name}")   # it starts
        bound = again.gangs.reservations["training/llama-70b"].bound
        assert acked.items() <= bound.items() <= {
            **acked, "training/llama-70b-2": reserved[2]}.items(), name
        if name.startswith(("before", "torn")):
            assert bound == acked, name
        if name == "synced-not-replied":
            assert len(bound) == 3
        check_engine(again.engine)
        # kube-scheduler retries the pod that got no answer, then binds the last one
        for i in (2, 3):
            nodes = again.gangs.filter(pod_args(f"llama-70b-{i}"))[0]["NodeNames"]
            bind(again, f"llama-70b-{i}", nodes[0])
        assert again.gangs.reservations["training/llama-70b"].complete
        assert sorted(again.gangs.reservations["training/llama-70b"].bound.values()) == \
            sorted(reserved)
        again.journal.sync()
        crash_copy(again, tmp_path / f"copy-{name}", tmp_path / f"third-{name}")
        third = build(tmp_path / f"third-{name}")
        assert third.gangs.reservations["training/llama-70b"].complete
        for s in (service, again, third):
            s.journal.close()


def test_a_binding_is_made_only_once_its_booking_is_durable(tmp_path, cluster, clock):
    # With the binder called before the fsync, a failed fsync (which cuts the record and
    # rolls memory back) or a power loss left a pod bound in Kubernetes whose slot
    # gpusched would hand out again.
    calls = []

    def binder(namespace, name, uid, node):
        journal = service.journal
        calls.append((name, node, journal.durable_seq == journal.written_seq))

    service = PlacementService(cluster, tmp_path / "s", gang_timeout_s=60, clock=clock,
                               binder=binder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = TestClient(create_app(service))
    with client:
        node = client.post("/v1/k8s/filter", json=pod_args("p-0", gang="p", size="1")
                           ).json()["NodeNames"][0]
        assert client.post("/v1/k8s/bind", json=bind_args("p-0", node)).json() == {
            "Error": ""}
    assert calls == [("p-0", node, True)]


def test_a_retried_bind_after_a_crash_before_the_api_call_makes_the_binding(tmp_path,
                                                                            cluster, clock):
    # The booking is durable, then the process dies before the API server call;
    # kube-scheduler retries the pod: the Binding must be made then, or never is.
    first = PlacementService(cluster, tmp_path / "a", gang_timeout_s=60, clock=clock)
    node = first.gangs.filter(pod_args("p-0", gang="p", size="1"))[0]["NodeNames"][0]
    first.gangs.bind(bind_args("p-0", node))   # no binder here: the booking alone
    crash_copy(first, tmp_path / "a", tmp_path / "b")
    first.journal.close()
    calls = []
    service = PlacementService(cluster, tmp_path / "b", gang_timeout_s=60, clock=clock,
                               binder=lambda ns, name, uid, node_: calls.append((name, node_)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = TestClient(create_app(service))
    with client:
        assert client.post("/v1/k8s/filter", json=pod_args("p-0", gang="p", size="1")
                           ).json()["NodeNames"] == [node]
        assert client.post("/v1/k8s/bind", json=bind_args("p-0", node)).json() == {
            "Error": ""}
    assert calls == [("p-0", node)]
# ---- the preempt verb (issue 16) -------------------------------------------------------

def _bind_low_gang_and_fill(service, client):
    """llama-70b (4 pods) bound on dgx0001..4, every other GPU held by a job that no plan
    may evict: the release-eval gang can only get in by preempting llama-70b."""
    for i in range(4):
        name = f"llama-70b-{i}"
        nodes = client.post("/v1/k8s/filter", json=pod_args(name)).json()["NodeNames"]
        assert client.post("/v1/k8s/bind", json=bind_args(name, nodes[0])).json() == {
            "Error": ""}
    filler = {"id": "filler", "gpus": service.engine.free_gpus(), "priority": 10 ** 9,
              "preemptible": False}
    assert client.post("/v1/place", json={"job": filler}).status_code == 200
    assert service.engine.free_gpus() == 0


@pytest.mark.parametrize("args_file", ["preempt_args_victims.json", "preempt_args_meta.json"])
def test_preempt_answers_kube_scheduler_with_the_victims_gpusched_chose(make, args_file):
    service, client = make()
    _bind_low_gang_and_fill(service, client)
    before = service.engine.snapshot()
    reply = client.post("/v1/k8s/preempt", json=fixture(args_file))
    assert reply.status_code == 200
    # ExtenderPreemptionResult: NodeNameToMetaVictims, node -> MetaVictims{Pods, NumPDB...}
    assert reply.json() == fixture("preempt_result.json")
    assert service.engine.snapshot() == before   # the verb only answers


def test_preempt_keeps_no_node_when_the_victim_has_equal_priority(make):
    service, client = make()
    _bind_low_gang_and_fill(service, client)
    args = fixture("preempt_args_meta.json")
    prio = fixture("filter_args_nodenames.json")["Pod"]["spec"]["priority"]
    args["Pod"]["metadata"]["annotations"]["gpusched.io/priority"] = str(prio)
    result = client.post("/v1/k8s/preempt", json=args).json()
    assert result == {"NodeNameToMetaVictims": {}}




# ---- a site that changes: nodes not up, gangs hit by a failure (issue 15) ------------

def test_a_draining_or_down_reserved_node_is_never_offered(make):
    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    client.post("/v1/site/drain", json={"nodes": [reserved[1]]})
    result = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()
    assert reserved[1] not in result["NodeNames"]
    assert result["NodeNames"] == [n for n in reserved if n != reserved[1]]
    assert "is draining" in result["FailedNodes"][reserved[1]]
    args = fixture("prioritize_args.json")
    args["Pod"] = pod_args("llama-70b-0")["Pod"]
    scores = {s["Host"]: s["Score"] for s in
              client.post("/v1/k8s/prioritize", json=args).json()}
    assert scores.get(reserved[1], 0) == 0
    assert all(scores[n] == 10 for n in reserved if n != reserved[1] and n in scores)
    # and with the node objects sent, the same
    with_nodes = client.post("/v1/k8s/filter",
                             json=pod_args("llama-70b-0", node_names=False)).json()
    passed = [item["metadata"]["name"] for item in with_nodes["Nodes"]["items"]]
    assert reserved[1] not in passed and "is draining" in with_nodes["FailedNodes"][reserved[1]]


def test_a_gang_hit_by_a_failure_is_repaired_and_its_lost_pod_unbound(make, clock, tmp_path):
    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    for i in range(4):
        nodes = client.post("/v1/k8s/filter", json=pod_args(f"llama-70b-{i}")).json()
        client.post("/v1/k8s/bind", json=bind_args(f"llama-70b-{i}", nodes["NodeNames"][0]))
    assert client.get("/v1/k8s/gangs").json()["gangs"][0]["complete"]
    victim = reserved[2]
    reply = client.post("/v1/site/fail", json={"nodes": victim}).json()
    assert reply["jobs_hit"] == [GANG_JOB]
    outcome = reply["gangs"]["training/llama-70b"]
    assert outcome["repaired"] and outcome["unbound_pods"] == ["training/llama-70b-2"]
    (new_node,) = outcome["new_nodes"]
    names = service.cluster.node_names
    held = [names[n] for n in service.engine.placement(GANG_JOB).nodes]
    assert victim not in held and new_node in held and len(held) == 4
    assert service.engine.degraded() == {}
    gang = client.get("/v1/k8s/gangs").json()["gangs"][0]
    assert not gang["complete"] and victim not in gang["slots"]
    assert "training/llama-70b-2" not in gang["bound"]
    assert gang["expires_in_s"] == 60   # a full timeout for the pod that replaces it
    # the recreated pod is offered the new node, and only it
    again = client.post("/v1/k8s/filter", json=pod_args("llama-70b-2")).json()
    assert again["NodeNames"] == [new_node]
    assert client.post("/v1/k8s/bind", json=bind_args("llama-70b-2", new_node)).json() == {
        "Error": ""}
    assert client.get("/v1/k8s/gangs").json()["gangs"][0]["complete"]
    check_engine(service.engine)
    crash_copy(service, tmp_path / "state", tmp_path / "after-crash")
    restarted = PlacementService(service.cluster, tmp_path / "after-crash", clock=clock,
                                 gang_timeout_s=60)
    try:
        assert restarted.engine.snapshot() == service.engine.snapshot()
        assert restarted.gangs.dump() == service.gangs.dump()
    finally:
        restarted.close()


def test_a_failed_append_undoes_the_failure_and_the_gang_repair(make, monkeypatch):
    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    client.post("/v1/k8s/bind", json=bind_args("llama-70b-0", reserved[0]))
    before = (service.engine.snapshot(), service.gangs.dump())

    def disk_full(entry):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service.journal, "write", disk_full)
    assert client.post("/v1/site/fail", json={"nodes": reserved[0]}).status_code == 503
    monkeypatch.undo()
    assert (service.engine.snapshot(), service.gangs.dump()) == before


def test_a_gang_that_cannot_be_repaired_is_released_naming_its_pods(make, tmp_path, clock):
    service, client = make()
    reserved = client.post("/v1/k8s/filter", json=pod_args("llama-70b-0")).json()["NodeNames"]
    client.post("/v1/k8s/bind", json=bind_args("llama-70b-0", reserved[0]))
    # every other node is taken: nowhere to repair into
    filler = service.engine.free_gpus()
    assert service.place({"job": {"id": "filler", "gpus": filler}})[0]["placed"]
    reply = client.post("/v1/site/fail", json={"nodes": [reserved[3]]}).json()
    outcome = reply["gangs"]["training/llama-70b"]
    assert outcome == {"repaired": False, "released": True,
                       "evict_pods": ["training/llama-70b-0"], "why": outcome["why"]}
    assert outcome["why"]
    assert GANG_JOB not in service.engine
    assert client.get("/v1/k8s/gangs").json()["gangs"] == []
    # no job holds the gang's 4 nodes now (free_gpus counts GPUs no job holds, the down
    # node's too); the down node stays out of placement
    assert service.engine.free_gpus() == 4 * 8
    assert service.engine.node_state(reserved[3]) == "down"
    assert service.place({"job": {"id": "after", "gpus": 32}})[0]["placed"] is False
    assert service.place({"job": {"id": "after", "gpus": 24}})[0]["placed"] is True
    check_engine(service.engine)
    crash_copy(service, tmp_path / "state", tmp_path / "after-crash")
    restarted = PlacementService(service.cluster, tmp_path / "after-crash", clock=clock,
                                 gang_timeout_s=60)
    try:
        assert restarted.engine.snapshot() == service.engine.snapshot()
        assert restarted.gangs.dump() == []
    finally:
        restarted.close()
