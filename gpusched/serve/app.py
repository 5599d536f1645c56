"""The Starlette application: routes, bearer token, JSON in and out, durable replies.

Each handler parses the body, calls :class:`PlacementService` (which runs the engine
under its lock and appends to the journal) and, for a change, awaits the journal's fsync
before it answers: an acknowledged place or release survives a crash.  The engine is
not async, but its calls take microseconds, so they run on the event loop thread; only
the fsync goes to a worker thread, and concurrent requests share it (group commit).
"""

from __future__ import annotations

import asyncio
import hmac
import sys
import traceback
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import compact, ui
from .access import RequestLog
from .floor import FloorModel
from .schemas import (MAX_BODY_BYTES, RequestError, openapi_document, parse_json,
                      render_json)
from .service import PlacementService

__all__ = ["create_app", "JSONReply", "BODY_TIMEOUT_S"]

BODY_TIMEOUT_S = 30.0
"""A client gets this long to send a whole body: a stalled upload must not hold a
connection (and its descriptor) forever."""


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes MAX_BODY_BYTES.

    A declared Content-Length over the limit is refused before a byte is read; a chunked
    or under-declared body is counted as it streams in, so the server never holds more
    than the limit plus one chunk per request.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() \
            and int(declared) > MAX_BODY_BYTES:
        raise RequestError(413, f"request body of {declared} bytes (Content-Length) is "
                                f"over the {MAX_BODY_BYTES} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(413, f"request body is over the {MAX_BODY_BYTES} byte "
                                    "limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_content_type(request: Request) -> None:
    """Refuse a body that says it is not JSON (a browser's text/plain form post)."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise RequestError(415, f"Content-Type {declared!r} is not JSON; send "
                                "'Content-Type: application/json'", "headers.content-type")


def _bearer_token(header: bytes) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, as the bytes sent.

    RFC 7235: the scheme is case-insensitive and is followed by one or more spaces.
    """
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.lstrip(b" ")


class JSONReply(Response):
    """JSON in UTF-8 (``schemas.render_json``: orjson, a 1 MB filter reply in about a ms)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return render_json(content)


def _error(exc: RequestError) -> JSONReply:
    return JSONReply(exc.to_dict(), status_code=exc.status)


def create_app(service: PlacementService, *, token: str | None = None,
               k8s_open: bool = False, close_on_shutdown: bool = True) -> Starlette:
    """A Starlette app serving ``service``.

    Parameters
    ----------
    service : PlacementService
    token : str, optional
        When set, every mutating call needs ``Authorization: Bearer <token>`` (compared in
        constant time); others get 401.
    k8s_open : bool
        Leave the Kubernetes verbs open even with a token: kube-scheduler's extender
        client sends no Authorization header, so with a token set it can only reach the
        verbs this way (run the service as a sidecar on 127.0.0.1).
    close_on_shutdown : bool
        Snapshot and release the state directory when the server stops.
    """
    # Compared as UTF-8 bytes: what curl sends from a UTF-8 shell.
    expected = None if token is None else token.encode("utf-8", "surrogateescape")
    openapi = openapi_document(service.cluster, token_required=token is not None,
                               k8s_open=k8s_open)
    compact.v2_paths(openapi)
    openapi["paths"].update(ui.operator_paths())
    floor = FloorModel(service.cluster)
    metrics = _metrics(service, floor, set(openapi["paths"]))
    place_op: Callable[[Any], Any] = service.place
    release_op: Callable[[Any], Any] = service.release
    if metrics is not None:
        place_op = metrics.counting_place(place_op)
        release_op = metrics.counting_release(release_op)

    def authorised(request: Request) -> bool:
        if expected is None:
            return True
        # Starlette decodes header bytes as Latin-1; encoding back gives the raw bytes.
        given = _bearer_token(request.headers.get("authorization", "").encode("latin-1"))
        # compare_digest takes time independent of where the bytes differ
        return hmac.compare_digest(given if given is not None else b"", expected)

    # an operation takes the request body, or nothing when the route has no body
    Operation = Callable[..., "tuple[Any, int] | Any"]

    def endpoint(op: Operation, *, mutating: bool, durable: bool, k8s: bool = False,
                 has_body: bool = True, threaded: bool = False,
                 then: Callable[[Any], "tuple[Any, int]"] | None = None,
                 reshape: Callable[[Any, Any], Any] | None = None
                 ) -> Callable[[Request], Awaitable[Response]]:
        # ``then``: a second step, run (in a worker thread) on the first one's result once
        # that is durable, for work outside gpusched that must never be ahead of the
        # journal (the API server's Binding)
        guarded = mutating and not (k8s and k8s_open)

        async def handle(request: Request) -> Response:
            try:
                if guarded and not authorised(request):
                    raise RequestError(401, "this call changes state and needs the header "
                                            "'Authorization: Bearer <token>' with the "
                                            "server's token")
                if mutating and service.journal.broken is not None:
                    return _broken()
                body = None
                if has_body:
                    _json_content_type(request)
                    try:
                        # asyncio.timeout, not wait_for: no task per request
                        async with asyncio.timeout(BODY_TIMEOUT_S):
                            raw = await read_body(request)
                    except TimeoutError:
                        raise RequestError(408, f"the body did not arrive within "
                                                f"{BODY_TIMEOUT_S:g} s") from None
                    body = parse_json(raw)
                if threaded:  # it may wait on the network: keep the event loop free
                    result = await run_in_threadpool(op, body)
                else:
                    result = op(body) if has_body else op()
                seq = 0
                if durable:
                    result, seq = result
                if seq:
                    await service.journal.wait_durable(seq)
                    # durable now: a checkpoint failure is logged, never this reply's
                    service.maybe_checkpoint()
                if then is not None:
                    result, seq = await run_in_threadpool(then, result)
                    if seq:
                        await service.journal.wait_durable(seq)
                if isinstance(result, dict):
                    result.pop("_seq", None)
                if reshape is not None:  # a v2 reply: hostlists (compact.py)
                    result = reshape(result, request.query_params)
                return JSONReply(result)
            except RequestError as exc:
                reply = _error(exc)
                if exc.status in (408, 413):  # the rest of the body is not read
                    reply.headers["connection"] = "close"
                return reply
            except OSError as exc:
                return _journal_failed(exc)
            except Exception as exc:  # a bug: say so, keep serving
                traceback.print_exc(file=sys.stderr)
                return JSONReply({"error": f"internal error: {type(exc).__name__}: {exc}",
                                  "field": None}, status_code=500)

        return handle

    def _broken() -> JSONReply:
        return JSONReply({"error": f"the journal failed ({service.journal.broken}); "
                                   "restart the server to recover from disk",
                          "field": None}, status_code=503)

    def _journal_failed(exc: OSError) -> JSONReply:
        # The service rolled memory back to the directory, so nothing of this request
        # stays; the journal is marked broken only when even that was not possible.
        traceback.print_exc(file=sys.stderr)
        return JSONReply({"error": f"journal write failed, nothing changed: {exc}",
                          "field": None}, status_code=503)

    async def gangs(request: Request) -> Response:
        # Listing expires reservations, which appends to the journal.
        if service.journal.broken is not None:
            return _broken()
        try:
            listing = service.gangs.listing()
            seq = listing.pop("_seq")
            if seq:
                await service.journal.wait_durable(seq)
        except OSError as exc:
            return _journal_failed(exc)
        return JSONReply(listing)

    async def openapi_json(request: Request) -> Response:
        return JSONReply(openapi)

    # the site's spec and every placement, for `gpusched status/jobs --server`: read only,
    # open like /v1/state; the spec is built once, it never changes while serving
    cluster_spec = service.cluster.to_dict()

    async def snapshot(request: Request) -> Response:
        with service.lock:
            return JSONReply({"cluster": cluster_spec, "snapshot": service.snapshot()})

    k8s = service.gangs
    routes = [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/v1/health", endpoint(service.health, mutating=False, durable=False,
                                     has_body=False), methods=["GET"]),
        Route("/v1/state", endpoint(service.state, mutating=False, durable=False,
                                    has_body=False), methods=["GET"]),
        Route("/v1/snapshot", snapshot, methods=["GET"]),
        Route("/v1/placements", endpoint(service.placements, mutating=False, durable=False,
                                         has_body=False), methods=["GET"]),
        Route("/v1/place", endpoint(place_op, mutating=True, durable=True),
              methods=["POST"]),
        Route("/v1/release", endpoint(release_op, mutating=True, durable=True),
              methods=["POST"]),
        Route("/v1/batch", endpoint(service.batch, mutating=True, durable=True),
              methods=["POST"]),
        Route("/v1/explain", endpoint(service.explain, mutating=False, durable=False),
              methods=["POST"]),
        # the solvers take up to seconds: run them off the event loop
        Route("/v1/rebalance-caps", endpoint(service.rebalance_caps, mutating=True,
                                             durable=True, threaded=True), methods=["POST"]),
        Route("/v1/allocate", endpoint(service.allocate, mutating=True, durable=True,
                                       threaded=True), methods=["POST"]),
        Route("/v1/k8s/filter", endpoint(k8s.filter, mutating=True, durable=True, k8s=True),
              methods=["POST"]),
        Route("/v1/k8s/prioritize", endpoint(k8s.prioritize, mutating=False, durable=False,
                                             k8s=True), methods=["POST"]),
        Route("/v1/k8s/bind", endpoint(k8s.book, mutating=True, durable=True, k8s=True,
                                       then=(k8s.finish_bind if k8s.binder is not None
                                             else None)),
              methods=["POST"]),
        Route("/v1/k8s/preempt", endpoint(k8s.preempt, mutating=False, durable=False,
                                          k8s=True, threaded=True), methods=["POST"]),
        Route("/v1/k8s/gangs", gangs, methods=["GET"]),
        # a site that changes (site.py): every change journaled, like place and release
        Route("/v1/site/nodes", endpoint(service.node_report, mutating=False,
                                         durable=False, has_body=False), methods=["GET"]),
        Route("/v1/site/violations", endpoint(service.violations, mutating=False,
                                              durable=False, has_body=False),
              methods=["GET"]),
        *(Route(f"/v1/site/{name}", endpoint(op, mutating=True, durable=True),
                methods=["POST"])
          for name, op in (("drain", service.drain), ("fail", service.fail),
                           ("restore", service.restore),
                           ("fail-domain", service.fail_domain),
                           ("restore-domain", service.restore_domain),
                           ("repair", service.repair), ("set-limit", service.set_limit),
                           ("reset-limits", service.reset_limits),
                           ("apply", service.apply_plan))),
        # the envelope LP takes up to a second: off the event loop; it changes nothing
        # but is behind the token, as what it keeps is for apply
        Route("/v1/site/plan", endpoint(service.plan, mutating=True, durable=False,
                                        threaded=True), methods=["POST"]),
    ]
    # v2: every v1 route again; place, explain, release and placements answer with
    # hostlists (compact.py)
    v2_ops: dict[str, tuple[Operation, bool, bool, bool]] = {
              "/v2/place": (place_op, True, True, True),
              "/v2/release": (release_op, True, True, True),
              "/v2/explain": (service.explain, False, False, True),
              "/v2/placements": (service.placements, False, False, False),
              "/v2/site/nodes": (service.node_report, False, False, False),
              "/v2/site/drain": (service.drain, True, True, True),
              "/v2/site/fail": (service.fail, True, True, True),
              "/v2/site/restore": (service.restore, True, True, True),
              "/v2/site/fail-domain": (service.fail_domain, True, True, True),
              "/v2/site/restore-domain": (service.restore_domain, True, True, True)}
    hostlists = compact.HostlistWriter(service.cluster)
    for route in list(routes):
        if not route.path.startswith("/v1/"):
            continue
        path = "/v2/" + route.path[len("/v1/"):]
        if path in v2_ops:
            op, mutating, durable, has_body = v2_ops[path]
            handler = endpoint(op, mutating=mutating, durable=durable, has_body=has_body,
                               reshape=compact.reshaper(hostlists, path))
        else:
            handler = route.endpoint
        routes.append(Route(path, handler, methods=sorted(route.methods or ["GET"])))
    routes += ui.routes(service, floor, openapi, token_required=token is not None,
                        json_reply=JSONReply)
    if metrics is not None:
        routes.append(Route("/metrics", _metrics_endpoint(metrics), methods=["GET"]))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_on_shutdown:
                service.close()

    observe = metrics.observe_request if metrics is not None else None
    return Starlette(routes=routes, lifespan=lifespan,
                     middleware=[Middleware(RequestLog, observe=observe)])


def _metrics(service: PlacementService, floor: FloorModel, paths: set[str]) -> Any:
    """The app's Prometheus metrics, or None without prometheus_client (then /metrics
    is 404 and nothing is counted)."""
    try:
        from .metrics import Metrics
    except ImportError:
        return None
    return Metrics(service, floor, paths)


def _metrics_endpoint(metrics: Any) -> Callable[[Request], Awaitable[Response]]:
    from .metrics import CONTENT_TYPE

    async def scrape(request: Request) -> Response:
        # the site's gauges read the engine under the service lock: off the event loop,
        # so a scrape of a 5,791-limit site does not stall places
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    return scrape
