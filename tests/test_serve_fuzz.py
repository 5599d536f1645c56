"""schemathesis against the service's own OpenAPI document: no 5xx, no reply off-schema.

Runs in process against the ASGI app (schemathesis drives it through Starlette's test
client), every operation, positive and negative data, a bounded number of examples each
(``GPUSCHED_FUZZ_EXAMPLES``, default 25), with the bearer token so mutating calls reach
the engine.  After the run the engine must still pass the independent verifier.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

import gpusched
from tests.support.verify import check_engine

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("starlette")
from schemathesis import GenerationMode, checks  # noqa: E402

from gpusched.serve import PlacementService, create_app  # noqa: E402

EXAMPLES = int(os.environ.get("GPUSCHED_FUZZ_EXAMPLES", "25"))
TOKEN = "fuzz-token"
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # tiny: its limits bind, so fuzzed jobs hit refusals and "no-power" explanations too
    service = PlacementService(gpusched.Cluster.preset("tiny"),
                               tmp_path_factory.mktemp("fuzz-state"), snapshot_every=50)
    yield service
    check_engine(service.engine)
    service.close()


@pytest.fixture(scope="module")
def schema(service):
    app = create_app(service, token=TOKEN, close_on_shutdown=False)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations():
    # The labels are fixed by the document; listing them here keeps test ids readable.
    api = ["GET /{v}/health", "GET /{v}/state", "GET /{v}/placements", "GET /{v}/snapshot",
           "POST /{v}/place",
           "POST /{v}/release", "POST /{v}/batch", "POST /{v}/explain", "POST /{v}/rebalance-caps",
           "POST /{v}/allocate", "POST /{v}/k8s/filter", "POST /{v}/k8s/prioritize",
           "POST /{v}/k8s/bind", "POST /{v}/k8s/preempt", "GET /{v}/k8s/gangs",
           # a site that changes (site.py): node states, live limits, envelope plans
           "GET /{v}/site/nodes", "GET /{v}/site/violations", "POST /{v}/site/drain",
           "POST /{v}/site/fail", "POST /{v}/site/restore", "POST /{v}/site/fail-domain",
           "POST /{v}/site/restore-domain", "POST /{v}/site/repair",
           "POST /{v}/site/set-limit", "POST /{v}/site/reset-limits", "POST /{v}/site/plan",
           "POST /{v}/site/apply"]
    # v2 answers place, explain, release and placements with hostlists (compact.py);
    # schemathesis leaves out the document's own path, /openapi.json
    operator = ["GET /", "GET /docs", "GET /ui", "GET /ui/{name}",
                "GET /metrics", "GET /v1/floor", "GET /v1/floor/layout"]
    return [a.format(v=v) for v in ("v1", "v2") for a in api] + operator


def test_the_document_lists_every_operation(schema):
    labels = sorted(result.ok().label for result in schema.get_all_operations())
    assert labels == sorted(_operations())


CASES = [pytest.param(label, GenerationMode.POSITIVE, id=f"{label}-positive")
         for label in _operations()]
# Only the POST operations take input that can be made invalid (a body).
CASES += [pytest.param(label, GenerationMode.NEGATIVE, id=f"{label}-negative")
          for label in _operations() if label.startswith("POST")]


@pytest.mark.parametrize("label, mode", CASES)
def test_fuzz_operation(schema, service, label, mode):
    operation = next(r.ok() for r in schema.get_all_operations() if r.ok().label == label)
    seen = []

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
        response = case.call_and_validate(checks=CHECKS)
        seen.append(response.status_code)

    run()
    assert seen, "schemathesis generated no request"
    assert all(status < 500 for status in seen)
    if mode is GenerationMode.NEGATIVE:
        # invalid bodies are refused (the k8s verbs answer invalid pods in-protocol)
        assert any(400 <= status < 500 for status in seen), seen
