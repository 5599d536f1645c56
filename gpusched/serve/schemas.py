"""Request validation and the OpenAPI document, from one set of JSON Schemas.

The schemas below are both what ``/openapi.json`` publishes and what :func:`validate`
checks a request body against, so the two can never disagree.  They are built per
cluster: ranges such as ``gpus <= num_gpus`` or ``cap_min_w <= max_cap_w <= cap_max_w``
come from the cluster the service runs, so an out-of-range value is refused here with
the field's path, before anything reaches the engine.

The validator covers the subset of JSON Schema used here (type, nullable, properties,
required, additionalProperties: false, minimum/maximum, minLength/maxLength, items,
minItems/maxItems, anyOf, enum).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from .._site import FAILURE_DOMAIN_KINDS
from ..errors import GpuschedError
from ..job import PRIORITY_MAX, PRIORITY_MIN
from ..spec import Cluster

__all__ = ["RequestError", "RawJSON", "parse_json", "render_json", "validate",
           "request_schemas", "openapi_document"]

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_QUEUE = 10_000
MAX_BATCH = 1_000
API_VERSION = "1.2"
"""The wire format's version (OpenAPI ``info.version``).  1.1 over 1: ``/v1/batch``;
replies in UTF-8 rather than ASCII escapes (the same JSON); a gang in ``/v1/k8s/gangs``
carries its ``deadline`` (Unix seconds).  1.2 over 1.1: the ``/v1/site/...`` routes
(node states, live limits, envelope plans) and an optional ``code`` in error replies.
Every 1.0 and 1.1 request means what it meant."""


class RequestError(GpuschedError):
    """A request the service refuses; ``status`` is the HTTP code, ``field`` the path."""

    def __init__(self, status: int, message: str, field: str | None = None, *,
                 code: str | None = None) -> None:
        super().__init__(message if field is None else f"{field}: {message}", field=field)
        self.status = status
        self.message = message
        self.code = code   # a machine-readable kind, e.g. "stale-plan" (wire format 1.2)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": str(self), "field": self.field}
        if self.code is not None:
            out["code"] = self.code
        return out


def _reject_constant(name: str) -> None:
    # json.loads lets an error of this hook through unchanged
    raise RequestError(400, f"request body is not valid JSON: {name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Decode a request body; RequestError 400 for anything that is not strict JSON.

    orjson (C) parses it: a 12,544-name filter body in under a millisecond, against about
    4 ms for the standard library.  What orjson refuses goes to the standard library,
    so the answer for unusual input (a lone surrogate escape, which orjson refuses and
    the standard library accepts) is what it was before, and so are the error messages.
    Integers beyond 64 bits come back as floats from orjson: the schemas then refuse
    them as "must be an integer" (422), as they refused them as out of range before.
    """
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(413, f"request body of {len(body)} bytes is over the "
                                f"{MAX_BODY_BYTES} byte limit")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None


class RawJSON:
    """A JSON value already rendered: ``render_json`` splices its bytes in unchanged.

    For the extender's filter reply, whose ``FailedNodes`` (12,540 names on
    colossus-100k) is the same for every pod of a gang given the same candidates: it is
    rendered once per gang and reused.  Only values of a reply's top-level object may be
    RawJSON.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def loads(self) -> Any:
        """The value itself (for Python callers of the verbs)."""
        return orjson.loads(self.data)


def render_json(content: Any) -> bytes:
    """A reply body: UTF-8 JSON by orjson, with RawJSON values spliced in.

    What orjson cannot write (a string holding a lone surrogate, which a client may send
    as an escape, or a non-string key) is written by the standard library with ASCII
    escapes instead, so every reply encodes.
    """
    if isinstance(content, dict) and any(isinstance(v, RawJSON) for v in content.values()):
        parts = [b"{"]
        for key, value in content.items():   # bytes.join: %-formatting is slow on a MB
            parts += (render_json(key), b":",
                      value.data if isinstance(value, RawJSON) else render_json(value), b",")
        parts[-1] = b"}"
        return b"".join(parts)
    try:
        return orjson.dumps(content)
    except TypeError:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and (not isinstance(value, float) or math.isfinite(value)))
    return isinstance(value, _JSON_TYPES[kind])


def validate(value: Any, schema: dict[str, Any], where: str = "body") -> None:
    """Raise RequestError(422) naming the first field of ``value`` that ``schema`` refuses."""
    if value is None:
        if schema.get("nullable"):
            return
        raise RequestError(422, "must not be null", where)
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                validate(value, option, where)
                return
            except RequestError as exc:
                errors.append(exc.message)
        # each option ends ", got <value>": say the value once, after the alternatives
        got = f", got {_short(value)}"
        if all(e.endswith(got) for e in errors):
            errors = [e[:-len(got)] for e in errors]
            if all(e.startswith("must be ") for e in errors):  # "must be an integer or one of"
                errors = [errors[0]] + [e[len("must be "):] for e in errors[1:]]
            raise RequestError(422, " or ".join(dict.fromkeys(errors)) + got, where)
        raise RequestError(422, " or ".join(dict.fromkeys(errors)), where)
    kind = schema.get("type")
    if kind is not None and not _type_ok(value, kind):
        raise RequestError(422, f"must be {'an' if kind[0] in 'aeio' else 'a'} {kind}, got "
                                f"{_short(value)}", where)
    if "enum" in schema and value not in schema["enum"]:
        raise RequestError(422, f"must be {_one_of(schema['enum'])}, got {_short(value)}",
                           where)
    if kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise RequestError(422, f"must be >= {schema['minimum']}, got {value}", where)
        if "maximum" in schema and value > schema["maximum"]:
            raise RequestError(422, f"must be <= {schema['maximum']}, got {value}", where)
    elif kind == "string":
        if len(value) < schema.get("minLength", 0):
            raise RequestError(422, f"must have at least {schema['minLength']} character(s)",
                               where)
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise RequestError(422, f"must have at most {schema['maxLength']} characters",
                               where)
    elif kind == "array":
        if len(value) < schema.get("minItems", 0):
            raise RequestError(422, f"must hold at least {schema['minItems']} item(s)", where)
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise RequestError(422, f"must hold at most {schema['maxItems']} items", where)
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{where}[{i}]")
    elif kind == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            unknown = sorted(k for k in value if k not in props)
            if unknown:
                raise RequestError(422, f"unknown field {unknown[0]!r}; valid fields are "
                                        f"{sorted(props)}", f"{where}.{unknown[0]}")
        for key in schema.get("required", []):
            if key not in value:
                raise RequestError(422, "is required", f"{where}.{key}")
        for key, sub in props.items():
            if key in value:
                validate(value[key], sub, f"{where}.{key}")


ENUM_SHOWN = 3
"""Choices an error names from a long enum, first and last: a cluster's 294 pod names in
one message would bury the mistake under them."""


def _one_of(choices: list[Any]) -> str:
    """``one of ['a', 'b']``, or for a long list ``one of 294 values ('a', 'b', 'c', ...,
    'z')``."""
    if len(choices) <= 2 * ENUM_SHOWN:
        return f"one of {choices}"
    shown = ", ".join(repr(c) for c in choices[:ENUM_SHOWN])
    return f"one of {len(choices)} values ({shown}, ..., {choices[-1]!r})"


def _short(value: Any) -> str:
    try:
        text = json.dumps(value)
    except RecursionError:   # a body nested thousands deep: parse_json took it, say so
        return f"a {type(value).__name__} nested too deep to show"
    return text if len(text) <= 60 else text[:57] + "..."


# ======================================================================================
# The schemas
# ======================================================================================

def request_schemas(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Named JSON Schemas (OpenAPI 3.0 dialect) for this cluster's requests and replies."""
    power = cluster.power
    cap = {"type": "integer", "minimum": power.cap_min_w, "maximum": power.cap_max_w}
    job = {
        "type": "object", "additionalProperties": False, "required": ["id", "gpus"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 256},
            "gpus": {"type": "integer", "minimum": 1, "maximum": cluster.num_gpus,
                     "description": f"1..{cluster.gpus_per_node} on one node, above that a "
                                    f"multiple of {cluster.gpus_per_node} (whole nodes)"},
            "max_cap_w": {**cap, "description": "the cap the job would like, W"},
            "min_cap_w": {**cap, "nullable": True,
                          "description": "lowest acceptable cap, W; null: rigid"},
            "weight": {"type": "number", "minimum": 0, "maximum": 1e9},
            "sensitivity": {"type": "number", "minimum": 0, "maximum": 1e3},
            "priority": {"type": "integer", "minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX,
                         "description": "higher is more urgent; preemption evicts only "
                                        "strictly lower priorities"},
            "preemptible": {"type": "boolean",
                            "description": "false: never evicted by a preemption plan"},
        },
    }
    pod = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": cluster.num_pods - 1},
                     {"type": "string", "enum": list(cluster.pod_names)}],
           "nullable": True, "description": "restrict to one pod, by index or name"}
    job_ref = {"$ref": "#/components/schemas/Job"}
    placement = {
        "type": "object", "required": ["job_id", "nodes", "gpus_per_node", "cap_w",
                                       "node_names"],
        "properties": {"job_id": {"type": "string"},
                       "nodes": {"type": "array", "items": {"type": "integer"}},
                       "node_names": {"type": "array", "items": {"type": "string"}},
                       "gpus_per_node": {"type": "integer"}, "cap_w": {"type": "integer"}},
    }
    explanation = {
        "type": "object",
        "required": ["job_id", "status", "cap_w", "nodes", "binding", "binding_kind",
                     "message"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string", "enum": ["placeable", "no-capacity", "no-power"]},
            "cap_w": {"type": "integer", "nullable": True},
            "nodes": {"type": "array", "items": {"type": "integer"}},
            "node_names": {"type": "array", "items": {"type": "string"}},
            "binding": {"type": "string", "nullable": True},
            "binding_kind": {"type": "string", "nullable": True},
            "message": {"type": "string"},
        },
    }
    free_object = {"type": "object"}
    node_ref = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": cluster.num_nodes - 1},
                          {"type": "string", "minLength": 1, "maxLength": 256}]}
    domains = [n for n, k in zip(cluster.constraints.names, cluster.constraints.kinds)
               if k in FAILURE_DOMAIN_KINDS]
    row_report = {"type": "object", "required": ["row", "load_w", "limit_w"],
                  "properties": {"row": {"type": "string"}, "load_w": {"type": "number"},
                                 "limit_w": {"type": "number"}}}
    by_state = {"type": "object", "properties": {
        s: {"type": "array", "items": {"type": "integer"}} for s in ("draining", "down",
                                                                     "spare")}}
    names_by_state = {"type": "object", "properties": {
        s: {"type": "array", "items": {"type": "string"}} for s in ("draining", "down",
                                                                    "spare")}}
    site: dict[str, dict[str, Any]] = {
        "NodesRequest": {
            "type": "object", "additionalProperties": False, "required": ["nodes"],
            "properties": {"nodes": {
                "anyOf": [node_ref, {"type": "array", "items": node_ref, "minItems": 1,
                                     "maxItems": cluster.num_nodes}],
                "description": f"a node or a list of nodes, by index (0.."
                               f"{cluster.num_nodes - 1}) or name "
                               f"({cluster.node_names[0]!r}, ...)"}}},
        "DomainRequest": {
            "type": "object", "additionalProperties": False, "required": ["domain"],
            "properties": {"domain": {"type": "string", "minLength": 1, "maxLength": 256,
                                      "description": "a failure domain: the name of a "
                                                     "rack feed, cooling, busway or "
                                                     "switchboard row, e.g. "
                                                     f"{domains[:2]!r}"}}},
        "NodesResponse": {
            "type": "object", "required": ["changed", "unchanged", "jobs_hit", "gangs"],
            "properties": {
                "changed": {"type": "array", "items": {"type": "string"},
                            "description": "names of the nodes whose state changed"},
                "unchanged": {"type": "integer",
                              "description": "nodes already in that state (a retry)"},
                "jobs_hit": {"type": "array", "items": {"type": "string"},
                             "description": "jobs that lost nodes (fail): degraded now"},
                "gangs": {"type": "object", "description": "Kubernetes gangs hit: "
                                                           "repaired or released"}}},
        "RepairRequest": {"type": "object", "additionalProperties": False,
                          "required": ["job_id"],
                          "properties": {"job_id": {"type": "string", "minLength": 1,
                                                    "maxLength": 256}}},
        "RepairResponse": {
            "type": "object", "required": ["repaired", "placement", "explanation"],
            "properties": {"repaired": {"type": "boolean"},
                           "placement": {**placement, "nullable": True},
                           "explanation": {"type": "string", "nullable": True},
                           "gang": {"type": "object", "nullable": True}}},
        "SetLimitRequest": {
            "type": "object", "additionalProperties": False, "required": ["row", "watts"],
            "properties": {"row": {"anyOf": [{"type": "string", "minLength": 1,
                                              "maxLength": 256},
                                             {"type": "integer", "minimum": 0,
                                              "maximum": cluster.constraints.num_rows - 1}],
                                   "description": "a constraint row's name or index"},
                           "watts": {"type": "number", "minimum": 0, "maximum": 1e15,
                                     "description": "the row's live limit, in its units "
                                                    "(W)"}}},
        "SetLimitResponse": {
            "type": "object", "required": ["row", "limit_w", "before_w", "over"],
            "properties": {"row": {"type": "string"}, "limit_w": {"type": "number"},
                           "before_w": {"type": "number"}, "over": {"type": "boolean"}}},
        "EmptyRequest": {"type": "object", "additionalProperties": False, "properties": {}},
        "ResetLimitsResponse": {"type": "object", "required": ["reset"],
                                "properties": {"reset": {"type": "array",
                                                         "items": {"type": "string"}}}},
        "EnvelopePlan": {
            "type": "object", "required": ["plan_id", "status", "caps", "evict", "over"],
            "properties": {
                "plan_id": {"type": "string", "description": "send it to /v1/site/apply"},
                "status": {"type": "string"},
                "caps": {"type": "object", "additionalProperties": {"type": "integer"}},
                "evict": {"type": "array", "items": {"type": "string"}},
                "over": {"type": "array", "items": row_report},
                "gpus_evicted": {"type": "integer"},
                "throughput_lost": {"type": "number"},
                "solve_time_s": {"type": "number"}}},
        "ApplyPlanRequest": {"type": "object", "additionalProperties": False,
                             "required": ["plan_id"],
                             "properties": {"plan_id": {"type": "string", "minLength": 1,
                                                        "maxLength": 64}}},
        "ApplyPlanResponse": {
            "type": "object", "required": ["plan_id", "evicted", "caps", "violations"],
            "properties": {"plan_id": {"type": "string"},
                           "evicted": {"type": "array", "items": {"type": "string"}},
                           "caps": {"type": "object",
                                    "additionalProperties": {"type": "integer"}},
                           "violations": {"type": "array", "items": row_report}}},
        "NodeStates": {
            "type": "object", "required": ["counts", "nodes", "node_names", "degraded"],
            "properties": {
                "counts": {"type": "object", "properties": {
                    s: {"type": "integer"} for s in ("up", "draining", "down", "spare")}},
                "nodes": {**by_state, "description": "indices of the nodes not up"},
                "node_names": names_by_state,
                "degraded": {"type": "object", "description": "job id -> lost node names",
                             "additionalProperties": {"type": "array",
                                                      "items": {"type": "string"}}}}},
        "Violations": {
            "type": "object", "required": ["violations", "changed_limits"],
            "properties": {"violations": {"type": "array", "items": row_report},
                           "changed_limits": {"type": "object",
                                              "additionalProperties": {"type": "number"}}}},
    }
    return {
        **site,
        "Job": job,
        "PlaceRequest": {"type": "object", "additionalProperties": False, "required": ["job"],
                         "properties": {"job": job_ref, "pod": pod}},
        "ReleaseRequest": {"type": "object", "additionalProperties": False,
                           "required": ["job_id"],
                           "properties": {"job_id": {"type": "string", "minLength": 1,
                                                     "maxLength": 256}}},
        "BatchRequest": {
            "type": "object", "additionalProperties": False, "required": ["ops"],
            "properties": {"ops": {
                "type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                "description": "each a PlaceRequest or ReleaseRequest with \"op\": "
                               "\"place\" or \"release\" added; applied in order",
                "items": {"type": "object", "required": ["op"],
                          "properties": {"op": {"type": "string",
                                                "enum": ["place", "release"]}}}}}},
        "BatchResponse": {
            "type": "object", "required": ["results"],
            "properties": {"results": {"type": "array", "items": {
                "type": "object", "required": ["status"],
                "properties": {"status": {"type": "integer"},
                               "reply": {"type": "object"},
                               "error": {"type": "string"},
                               "field": {"type": "string", "nullable": True}}}}}},
        "RebalanceRequest": {"type": "object", "additionalProperties": False,
                             "properties": {"apply": {"type": "boolean"}}},
        "AllocateRequest": {
            "type": "object", "additionalProperties": False, "required": ["queue"],
            "properties": {"queue": {"type": "array", "items": job_ref, "maxItems": MAX_QUEUE},
                           "time_limit_s": {"type": "number", "minimum": 0.001,
                                            "maximum": 600},
                           "apply": {"type": "boolean"}}},
        "Placement": placement,
        "Explanation": explanation,
        "PlaceResponse": {
            "type": "object", "required": ["placed", "placement", "explanation"],
            "properties": {"placed": {"type": "boolean"},
                           "placement": {**placement, "nullable": True},
                           "explanation": {**explanation, "nullable": True}}},
        "ReleaseResponse": {"type": "object", "required": ["released"],
                            "properties": {"released": placement}},
        "PlacementList": {"type": "object", "required": ["placements"],
                          "properties": {"placements": {"type": "array", "items": placement}}},
        "SiteSnapshot": {
            "type": "object", "required": ["cluster", "snapshot"],
            "properties": {"cluster": {"type": "object",
                                       "description": "the site's spec (Cluster.to_dict)"},
                           "snapshot": {"type": "object",
                                        "description": "the engine snapshot and k8s gangs "
                                                       "(Engine.snapshot format)"}}},
        "StateSummary": {
            "type": "object",
            "required": ["cluster", "backend", "gpus", "free_gpus", "jobs", "total_power_w",
                         "journal_seq", "tightest_rows"],
            "properties": {
                "cluster": {"type": "string"}, "backend": {"type": "string"},
                "gpus": {"type": "integer"}, "free_gpus": {"type": "integer"},
                "jobs": {"type": "integer"}, "total_power_w": {"type": "integer"},
                "journal_seq": {"type": "integer"}, "gangs": {"type": "integer"},
                "tightest_rows": {"type": "array", "items": {
                    "type": "object", "required": ["name", "kind", "load", "limit"],
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                   "load": {"type": "number"}, "limit": {"type": "number"}}}},
            }},
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": ["ok"]},
                                  "backend": {"type": "string"},
                                  "journal_seq": {"type": "integer"}}},
        "CapPlan": {**free_object, "description": "gpusched.allocate.rebalance_caps result: "
                                                  "cap_w per job, objective, duals, binding"},
        "AllocateResponse": {**free_object, "description": "gpusched.allocate.allocate "
                                                           "result, and placements if applied"},
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"},
                                 "field": {"type": "string", "nullable": True},
                                 "code": {"type": "string",
                                          "description": "the kind of refusal, where a "
                                                         "client acts on it: stale-plan, "
                                                         "unknown-node, unknown-domain, "
                                                         "unknown-row, unknown-job, "
                                                         "not-degraded, bad-limit"}}},
        # kube-scheduler extender protocol (k8s.io/kube-scheduler/extender/v1): Go field
        # names without JSON tags, so the keys are the capitalised field names.
        "ExtenderArgs": {
            "type": "object", "required": ["Pod"],
            "properties": {"Pod": {"type": "object"},
                           "Nodes": {"type": "object", "nullable": True},
                           "NodeNames": {"type": "array", "items": {"type": "string"},
                                         "nullable": True}}},
        "ExtenderFilterResult": {
            "type": "object",
            "properties": {
                "Nodes": {"type": "object", "nullable": True},
                "NodeNames": {"type": "array", "items": {"type": "string"}, "nullable": True},
                "FailedNodes": {"type": "object", "additionalProperties": {"type": "string"}},
                "FailedAndUnresolvableNodes": {"type": "object",
                                               "additionalProperties": {"type": "string"}},
                "Error": {"type": "string"}}},
        "HostPriorityList": {"type": "array", "items": {
            "type": "object", "required": ["Host", "Score"],
            "properties": {"Host": {"type": "string"},
                           "Score": {"type": "integer", "minimum": 0, "maximum": 10}}}},
        "ExtenderBindingArgs": {
            "type": "object", "required": ["PodName", "PodNamespace", "Node"],
            "properties": {"PodName": {"type": "string"}, "PodNamespace": {"type": "string"},
                           "PodUID": {"type": "string"}, "Node": {"type": "string"}}},
        "ExtenderBindingResult": {"type": "object",
                                  "properties": {"Error": {"type": "string"}}},
        # the preempt verb (extender/v1 ExtenderPreemptionArgs and ...Result)
        "ExtenderPreemptionArgs": {
            "type": "object", "required": ["Pod"],
            "properties": {"Pod": {"type": "object"},
                           "NodeNameToVictims": {"type": "object", "nullable": True},
                           "NodeNameToMetaVictims": {"type": "object", "nullable": True}}},
        "ExtenderPreemptionResult": {
            "type": "object",
            "properties": {"NodeNameToMetaVictims": {
                "type": "object", "nullable": True,
                "additionalProperties": {
                    "type": "object",
                    "properties": {"Pods": {"type": "array", "items": {
                        "type": "object", "properties": {"UID": {"type": "string"}}}},
                        "NumPDBViolations": {"type": "integer"}}}}}},
        "GangList": {"type": "object", "required": ["gangs"],
                     "properties": {"gangs": {"type": "array", "items": {"type": "object"}}}},
    }


def resolve(schema: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``schema`` with its ``$ref``s replaced by the named schemas (for validate)."""
    if "$ref" in schema:
        return resolve(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {k: resolve(v, schemas) for k, v in value.items()}
        elif key in ("items",) and isinstance(value, dict):
            out[key] = resolve(value, schemas)
        elif key == "anyOf":
            out[key] = [resolve(v, schemas) for v in value]
        else:
            out[key] = value
    return out


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _reply(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def openapi_document(cluster: Cluster, *, token_required: bool,
                     k8s_open: bool = False) -> dict[str, Any]:
    """The service's OpenAPI 3.0 document for ``cluster``."""
    schemas = request_schemas(cluster)
    errors = {"400": _reply("the body is not JSON", "Error"),
              "413": _reply("the body is too large", "Error"),
              "422": _reply("a field is missing, unknown or out of range; the message "
                            "names it", "Error")}
    auth = {"401": _reply("missing or wrong bearer token", "Error")} if token_required else {}
    secured: list[dict[str, list[str]]] = [{"bearer": []}] if token_required else []

    def post(summary: str, request: str, ok: dict[str, Any], *, mutating: bool,
             extra: dict[str, Any] | None = None, k8s: bool = False) -> dict[str, Any]:
        guarded = mutating and not (k8s and k8s_open)
        op: dict[str, Any] = {
            "summary": summary,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {"200": ok, **errors, **(auth if guarded else {}), **(extra or {})},
        }
        if guarded and secured:
            op["security"] = secured
        return {"post": op}

    def get(summary: str, ok: dict[str, Any], extra: dict[str, Any] | None = None
            ) -> dict[str, Any]:
        return {"get": {"summary": summary, "responses": {"200": ok, **(extra or {})}}}

    conflict = {"409": _reply("a job with this id is already placed", "Error")}
    unknown_node = {"404": _reply("no such node (code unknown-node)", "Error")}
    unknown_domain = {"404": _reply("no such failure domain (code unknown-domain)",
                                    "Error")}
    not_applied = {"409": _reply("the plan could not be applied; nothing changed", "Error")}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "gpusched placement service", "version": API_VERSION,
                 "description": f"Power- and cooling-aware gang placement on cluster "
                                f"{cluster.name!r} ({cluster.num_gpus} GPUs). Every accepted "
                                "place or release is journaled and fsynced before the reply."},
        "paths": {
            "/v1/health": get("liveness, backend and journal position",
                              _reply("the service is up", "Health")),
            "/v1/state": get("state summary: GPUs, power, the tightest limits",
                             _reply("the summary", "StateSummary")),
            "/v1/placements": get("every placement", _reply("placements", "PlacementList")),
            "/v1/snapshot": get("the site's spec and its full state (what gpusched status and "
                                "jobs --server read)", _reply("spec and snapshot",
                                                              "SiteSnapshot")),
            "/v1/place": post("place a gang-scheduled job (nodes and a power cap)",
                              "PlaceRequest", _reply("placed, or why not", "PlaceResponse"),
                              mutating=True, extra=conflict),
            "/v1/release": post("release a placed job", "ReleaseRequest",
                                _reply("what was released", "ReleaseResponse"), mutating=True,
                                extra={"404": _reply("no such job is placed", "Error")}),
            "/v1/batch": post(f"up to {MAX_BATCH} places and releases in one request, "
                              "one fsync: each op's status and reply (or error), in order",
                              "BatchRequest", _reply("every op's result, all durable",
                                                     "BatchResponse"),
                              mutating=True, extra={"503": _reply(
                                  "the journal failed; no op of the batch happened",
                                  "Error")}),
            "/v1/explain": post("say whether a job fits now and which limit binds",
                                "PlaceRequest", _reply("the explanation", "Explanation"),
                                mutating=False, extra=conflict),
            "/v1/rebalance-caps": post("LP re-balance of running jobs' caps (dual prices)",
                                       "RebalanceRequest", _reply("the cap plan", "CapPlan"),
                                       mutating=True, extra=not_applied),
            "/v1/allocate": post("MILP admission of a queue (and placement with apply)",
                                 "AllocateRequest", _reply("the allocation",
                                                           "AllocateResponse"),
                                 mutating=True, extra=not_applied),
            "/v1/k8s/filter": post("kube-scheduler extender filter verb", "ExtenderArgs",
                                   _reply("ExtenderFilterResult", "ExtenderFilterResult"),
                                   mutating=True, k8s=True),
            "/v1/k8s/prioritize": post("kube-scheduler extender prioritize verb",
                                       "ExtenderArgs",
                                       _reply("HostPriorityList", "HostPriorityList"),
                                       mutating=False, k8s=True),
            "/v1/k8s/bind": post("kube-scheduler extender bind verb", "ExtenderBindingArgs",
                                 _reply("ExtenderBindingResult", "ExtenderBindingResult"),
                                 mutating=True, k8s=True),
            "/v1/k8s/preempt": post("kube-scheduler extender preempt verb: the victims "
                                    "gpusched's preemption plan chose, per proposed node",
                                    "ExtenderPreemptionArgs",
                                    _reply("ExtenderPreemptionResult",
                                           "ExtenderPreemptionResult"),
                                    mutating=False, k8s=True),
            "/v1/k8s/gangs": get("gang reservations", _reply("gangs", "GangList")),
            "/v1/site/nodes": get("node states: counts, the nodes not up, degraded jobs",
                                  _reply("node states", "NodeStates")),
            "/v1/site/violations": get("rows over their live limits; changed limits",
                                       _reply("violations", "Violations")),
            "/v1/site/drain": post("drain nodes: no new placements, running jobs stay",
                                   "NodesRequest", _reply("what changed", "NodesResponse"),
                                   mutating=True, extra=unknown_node),
            "/v1/site/fail": post("fail nodes (down): their jobs are degraded, gangs "
                                  "repaired or released", "NodesRequest",
                                  _reply("what changed, jobs hit", "NodesResponse"),
                                  mutating=True, extra=unknown_node),
            "/v1/site/restore": post("restore down or draining nodes to up",
                                     "NodesRequest", _reply("what changed", "NodesResponse"),
                                     mutating=True, extra=unknown_node),
            "/v1/site/fail-domain": post("fail every node of a failure domain (a rack feed, "
                                         "CDU, busway, switchboard row)", "DomainRequest",
                                         _reply("what changed, jobs hit", "NodesResponse"),
                                         mutating=True, extra=unknown_domain),
            "/v1/site/restore-domain": post("restore every node of a failure domain",
                                            "DomainRequest",
                                            _reply("what changed", "NodesResponse"),
                                            mutating=True, extra=unknown_domain),
            "/v1/site/repair": post("repair a degraded job in place (its lost nodes)",
                                    "RepairRequest", _reply("the new placement, or why not",
                                                            "RepairResponse"),
                                    mutating=True, extra={
                                        "404": _reply("no such job is placed", "Error"),
                                        "409": _reply("the job is not degraded", "Error")}),
            "/v1/site/set-limit": post("set a constraint row's live limit (W); never "
                                       "refused: the row may be over", "SetLimitRequest",
                                       _reply("the limit before and after",
                                              "SetLimitResponse"), mutating=True,
                                       extra={"404": _reply("no such row", "Error")}),
            "/v1/site/reset-limits": post("put every row back at the spec's limit",
                                          "EmptyRequest", _reply("rows reset",
                                                                 "ResetLimitsResponse"),
                                          mutating=True),
            "/v1/site/plan": post("an envelope plan back under every live limit (cap-downs, "
                                  "then evictions), kept under its plan_id", "EmptyRequest",
                                  _reply("the plan", "EnvelopePlan"), mutating=True),
            "/v1/site/apply": post("apply a kept envelope plan atomically", "ApplyPlanRequest",
                                   _reply("what was evicted and capped",
                                          "ApplyPlanResponse"), mutating=True,
                                   extra={"409": _reply("code stale-plan: the state changed "
                                                        "since the plan, or the id is not "
                                                        "kept; nothing changed", "Error")}),
        },
        "components": {"schemas": schemas},
    }
    if token_required:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
