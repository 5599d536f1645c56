"""The service for operators: /docs and /, /metrics, the access log, v2's compact replies,
short error messages and the floor map's JSON.  In process (Starlette's TestClient),
except the access-log check of ``gpusched serve --log-level info``, which runs the real
server.  The page in a browser is tests/test_ui_browser.py.
"""

from __future__ import annotations

import json
import logging
import random
import re
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import gpusched
from gpusched.adapters.slurm import expand_hostlist
from gpusched.serve import PlacementService, create_app
from gpusched.serve.compact import hostlist

starlette = pytest.importorskip("starlette")
prometheus_client = pytest.importorskip("prometheus_client")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "ops-token-never-logged"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def colossus() -> gpusched.Cluster:
    return gpusched.Cluster.preset("colossus-100k")


@pytest.fixture(scope="module")
def tiny() -> gpusched.Cluster:
    return gpusched.Cluster.preset("tiny")


def serve(cluster, tmp_path, name="state"):
    service = PlacementService(cluster, tmp_path / name)
    return service, TestClient(create_app(service, token=TOKEN))


def samples(text: str) -> dict[str, list]:
    """name -> [(labels, value)] of every sample in a Prometheus text exposition."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


# ---- / and /docs ----------------------------------------------------------------------

def test_root_points_to_the_docs(tmp_path, tiny):
    _, client = serve(tiny, tmp_path)
    with client:
        reply = client.get("/", follow_redirects=False)
        assert reply.status_code == 307 and reply.headers["location"] == "/docs"
        assert client.get("/").url.path == "/docs"


def test_docs_cover_every_route_and_load_nothing_from_the_network(tmp_path, tiny):
    service, client = serve(tiny, tmp_path)
    with client:
        page = client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        openapi = client.get("/openapi.json").json()
        app_paths = {r.path for r in client.app.routes}
        assert app_paths <= set(openapi["paths"]), app_paths - set(openapi["paths"])
        for path, item in openapi["paths"].items():
            for method in item:
                assert f"<td><code>{method.upper()}</code></td><td><code>{path}</code>" \
                    in html.replace("{", "{").replace("&#x27;", "'"), (method, path)
        for name in openapi["components"]["schemas"]:
            assert f'id="schema-{name}"' in html
        # every page and asset refers to the server itself, never to another host
        for url in ("/docs", "/ui", "/ui/ui.js", "/ui/ui.css", "/ui/docs.css"):
            text = client.get(url).text
            refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", text)
            assert all(r.startswith(("/", "#")) for r in refs), (url, refs)
            assert not re.search(r"""fetch\(\s*["']https?:""", text)
            assert "@import" not in text and "url(http" not in text
        assert "token" in html  # this server has one, and the page says so


def test_the_pages_are_package_data():
    config = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    data = config["tool"]["setuptools"]["package-data"]["gpusched"]
    assert "serve/static/*" in data
    static = CHECKOUT / "gpusched" / "serve" / "static"
    assert {p.name for p in static.iterdir()} >= {"docs.html", "docs.css", "ui.html",
                                                   "ui.js", "ui.css"}


# ---- compact replies (v2) -------------------------------------------------------------

def test_v2_place_names_nodes_by_hostlist(tmp_path, colossus):
    service, client = serve(colossus, tmp_path)
    with client:
        reply = client.post("/v2/place", json={"job": {"id": "big", "gpus": 65536,
                                                       "min_cap_w": 200}}, headers=AUTH)
        body = reply.json()
        assert body["placed"], body
        p = body["placement"]
        assert "nodes" not in p and "node_names" not in p
        held = service.engine.placement("big").nodes
        assert p["node_count"] == len(held) == 8192
        names = [colossus.node_names[n] for n in held]
        expanded = expand_hostlist(p["hostlist"])
        assert sorted(expanded) == sorted(names) and len(expanded) == len(names)
        assert len(reply.content) < 2_000  # v1 says the same in over 160 KB
        v1 = client.post("/v1/explain", json={"job": {"id": "x", "gpus": 8192}})
        v2 = client.post("/v2/explain", json={"job": {"id": "x", "gpus": 8192}})
        assert v1.json()["nodes"] and "nodes" not in v2.json()
        assert expand_hostlist(v2.json()["hostlist"]) == v1.json()["node_names"] or \
            sorted(expand_hostlist(v2.json()["hostlist"])) == sorted(v1.json()["node_names"])
        assert len(v2.content) * 20 < len(v1.content)
        full = client.post("/v2/explain?nodes=true", json={"job": {"id": "x", "gpus": 8192}})
        assert full.json()["nodes"] == v1.json()["nodes"]
        assert full.json()["node_names"] == v1.json()["node_names"]
        listing = client.get("/v2/placements").json()["placements"]
        assert [q["hostlist"] for q in listing] == [p["hostlist"]]
        assert client.get("/v2/placements?nodes=1").json()["placements"][0]["nodes"] \
            == list(held)
        released = client.post("/v2/release", json={"job_id": "big"}, headers=AUTH).json()
        assert released["released"]["hostlist"] == p["hostlist"]
        # the other v2 routes answer as v1 does
        assert client.get("/v2/state").json() == client.get("/v1/state").json()
        assert client.get("/v2/health").json() == client.get("/v1/health").json()


def test_v2_refusal_is_compact_too(tmp_path, tiny):
    service, client = serve(tiny, tmp_path)
    with client:
        client.post("/v2/place", json={"job": {"id": "all", "gpus": 64, "min_cap_w": 200}},
                    headers=AUTH)
        body = client.post("/v2/place", json={"job": {"id": "more", "gpus": 8}},
                           headers=AUTH).json()
        assert body["placed"] is False and body["placement"] is None
        assert body["explanation"]["status"] == "no-capacity"
        assert body["explanation"]["node_count"] == 0 and body["explanation"]["hostlist"] == ""


def test_v1_replies_are_unchanged(tmp_path, tiny):
    _, client = serve(tiny, tmp_path)
    with client:
        p = client.post("/v1/place", json={"job": {"id": "a", "gpus": 16}},
                        headers=AUTH).json()["placement"]
        assert set(p) == {"job_id", "nodes", "gpus_per_node", "cap_w", "node_names"}


def test_openapi_documents_both_versions(tmp_path, tiny):
    _, client = serve(tiny, tmp_path)
    with client:
        doc = client.get("/openapi.json").json()
    assert doc["info"]["version"] == "2"
    v1 = {p[4:] for p in doc["paths"] if p.startswith("/v1/")}
    v2 = {p[4:] for p in doc["paths"] if p.startswith("/v2/")}
    assert v1 - {"floor", "floor/layout"} == v2
    place = doc["paths"]["/v2/place"]["post"]
    assert place["parameters"][0]["name"] == "nodes"
    assert place["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("CompactPlaceResponse")
    compact = doc["components"]["schemas"]["CompactPlacement"]
    assert "hostlist" in compact["required"] and "nodes" not in compact["required"]


@pytest.mark.parametrize("seed", range(20))
def test_hostlist_expands_to_exactly_the_nodes(colossus, seed):
    rng = random.Random(seed)
    count = rng.choice([1, 2, 7, 64, 500, 4000])
    start = rng.randrange(colossus.num_nodes - count)
    nodes = sorted(rng.sample(range(colossus.num_nodes), count)) if seed % 2 else \
        list(range(start, start + count))
    names = [colossus.node_names[n] for n in nodes]
    expr = hostlist(names)
    expanded = expand_hostlist(expr)
    assert sorted(expanded) == sorted(names) and len(expanded) == len(names)


def test_hostlist_folds_whole_racks():
    names = [f"rack-{r:04d}-n{k}" for r in range(1, 1025) for k in range(8)]
    assert hostlist(names) == "rack-[0001-1024]-n[0-7]"
    assert hostlist(["a1", "b2", "gpu0003"]) == "a1,b2,gpu0003"


# ---- short error messages ---------------------------------------------------------------

def test_a_bad_pod_names_a_few_pods_and_the_count(tmp_path, colossus):
    _, client = serve(colossus, tmp_path)
    with client:
        reply = client.post("/v2/place", json={"job": {"id": "a", "gpus": 64},
                                               "pod": "nowhere"}, headers=AUTH)
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert len(error) < 300, error
    assert "294 values" in error and repr(colossus.pod_names[0]) in error
    assert repr(colossus.pod_names[-1]) in error
    assert repr(colossus.pod_names[100]) not in error
    assert error.count('"nowhere"') == 1 and reply.json()["field"] == "body.pod"


# ---- /metrics -------------------------------------------------------------------------

def test_metrics_parse_and_count(tmp_path, tiny):
    service, client = serve(tiny, tmp_path)
    with client:
        client.post("/v1/place", json={"job": {"id": "a", "gpus": 16, "min_cap_w": 300}},
                    headers=AUTH)
        client.post("/v2/place", json={"job": {"id": "b", "gpus": 8}}, headers=AUTH)
        client.post("/v2/place", json={"job": {"id": "huge", "gpus": 64}}, headers=AUTH)
        client.post("/v1/release", json={"job_id": "b"}, headers=AUTH)
        client.get("/no/such/page")
        reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    got = samples(reply.text)
    assert got["gpusched_placements_total"] == [({}, 2.0)]
    assert got["gpusched_releases_total"] == [({}, 1.0)]
    assert got["gpusched_refusals_total"] == [({"reason": "no-capacity", "limit_kind": ""},
                                               1.0)]
    gpus = {labels["state"]: value for labels, value in got["gpusched_gpus"]}
    assert gpus == {"busy": 16.0, "free": 48.0, "draining": 0.0, "down": 0.0, "spare": 0.0}
    assert got["gpusched_jobs"] == [({}, 1.0)]
    c = tiny.constraints
    load = c.A @ service.engine.rack_power_w().astype(float)
    rows = {(s["row"], s["kind"]): v for s, v in got["gpusched_row_load_w"]}
    assert len(rows) == c.num_rows
    for name, kind, value in zip(c.names, c.kinds, load):
        assert rows[(name, kind)] == pytest.approx(value)
    headroom = {(s["row"], s["kind"]): v for s, v in got["gpusched_row_headroom_w"]}
    for name, kind, value, limit in zip(c.names, c.kinds, load, c.b):
        assert headroom[(name, kind)] == pytest.approx(limit - value)
    counts = {(s["method"], s["path"]): v
              for s, v in got["gpusched_request_duration_seconds_count"]}
    assert counts[("POST", "/v1/place")] == 1 and counts[("POST", "/v2/place")] == 2
    assert counts[("GET", "other")] == 1  # an unknown path is not a series of its own
    statuses = {(s["path"], s["status"]) for s, _ in got["gpusched_requests_total"]}
    assert ("other", "404") in statuses


def test_each_app_has_its_own_registry(tmp_path, tiny):
    _, first = serve(tiny, tmp_path, "one")
    _, second = serve(tiny, tmp_path, "two")
    with first, second:
        first.post("/v1/place", json={"job": {"id": "a", "gpus": 8}}, headers=AUTH)
        assert samples(first.get("/metrics").text)["gpusched_placements_total"] \
            == [({}, 1.0)]
        assert samples(second.get("/metrics").text)["gpusched_placements_total"] \
            == [({}, 0.0)]


# ---- the access log ---------------------------------------------------------------------

def test_access_log_at_info_names_method_path_status_and_never_the_token(
        tmp_path, tiny, caplog):
    _, client = serve(tiny, tmp_path)
    with client, caplog.at_level(logging.INFO, logger="gpusched.serve.access"):
        client.post("/v1/place?secret=in-the-query", json={"job": {"id": "a", "gpus": 8}},
                    headers=AUTH)
        client.post("/v1/place", json={"job": {"id": "b", "gpus": 8}})  # no token: 401
        client.get("/v1/health%0AFORGED%20200")  # the server decodes it to a newline
    lines = [r.getMessage() for r in caplog.records if r.name == "gpusched.serve.access"]
    assert len(lines) == 3, lines
    assert re.fullmatch(r"POST /v1/place 200 \d+\.\dms \S+", lines[0]), lines[0]
    assert re.fullmatch(r"POST /v1/place 401 \d+\.\dms \S+", lines[1]), lines[1]
    assert "\n" not in lines[2] and "\\n" in lines[2]
    for record in caplog.records:
        text = record.getMessage()
        assert TOKEN not in text and "in-the-query" not in text
        assert record.levelno == logging.INFO


def test_access_log_is_off_below_info(tmp_path, tiny, caplog):
    _, client = serve(tiny, tmp_path)
    with client, caplog.at_level(logging.WARNING, logger="gpusched.serve.access"):
        client.get("/v1/health")
    assert not [r for r in caplog.records if r.name == "gpusched.serve.access"]


def test_serve_log_level_info_logs_requests(tmp_path):
    from tests.support.serve_process import start_server, stop

    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    proc, url = start_server("tiny", tmp_path / "state", "--log-level", "info",
                             "--token", TOKEN)
    try:
        assert httpx.get(url + "/v1/health", timeout=30).status_code == 200
        assert httpx.post(url + "/v2/place", json={"job": {"id": "a", "gpus": 8}},
                          headers=AUTH, timeout=30).status_code == 200
    finally:
        err = stop(proc)
    assert re.search(r"INFO gpusched\.serve\.access: GET /v1/health 200 \d+\.\dms 127\.0\.0\.1",
                     err), err
    assert re.search(r"POST /v2/place 200 ", err), err
    assert TOKEN not in err


# ---- the floor map's JSON -------------------------------------------------------------

def test_floor_layout_and_live_view(tmp_path, colossus):
    service, client = serve(colossus, tmp_path)
    with client:
        layout = client.get("/v1/floor/layout").json()
        assert layout["halls"] == list(colossus.hall_names)
        assert len(layout["racks"]["name"]) == colossus.num_racks
        assert sum(layout["racks"]["gpus"]) == colossus.num_gpus
        assert {w["kind"] for w in layout["wide_limits"]} >= {"hall", "facility"}
        empty = client.get("/v1/floor").json()
        assert empty["busy_gpus"] == 0 and empty["jobs"] == []
        assert all(h > 0 for h in empty["racks"]["headroom"])
        assert empty["node_states"] == {"up": colossus.num_nodes, "draining": 0, "down": 0}
        assert client.get(f"/v1/floor?since={empty['seq']}").json() == \
            {"seq": empty["seq"], "unchanged": True}
        client.post("/v2/place", json={"job": {"id": "g", "gpus": 4096, "min_cap_w": 300}},
                    headers=AUTH)
        view = client.get(f"/v1/floor?since={empty['seq']}").json()
        assert view["seq"] == empty["seq"] + 1
        held = service.engine.placement("g")
        racks = sorted(set(colossus.node_rack[list(held.nodes)].tolist()))
        assert view["jobs"] == [["g", 4096, held.cap_w, racks]]
        busy = np.array(view["racks"]["busy"])
        assert busy.sum() == 4096 and sorted(np.flatnonzero(busy).tolist()) == racks
        assert view["racks"]["power_w"] == service.engine.rack_power_w().tolist()
        # headroom of a rack: its tightest own limit, in thousandths
        c = colossus.constraints
        load = c.A @ service.engine.rack_power_w().astype(float)
        r = racks[0]
        name = view["racks"]["binding"][r]
        i = c.names.index(name)
        assert view["racks"]["headroom"][r] == int(np.floor((c.b[i] - load[i]) / c.b[i] * 1000))
        assert view["racks"]["headroom"][r] < empty["racks"]["headroom"][r]
        walls = {w["name"]: w["load_w"] for w in view["wide_limits"]}
        facility = c.names[c.kinds.index("facility")]
        assert walls[facility] == pytest.approx(float(load[c.names.index(facility)]), abs=0.1)
        json.dumps(view)  # plain JSON all the way down
