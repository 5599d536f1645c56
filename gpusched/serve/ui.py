"""The operator's pages: ``/`` and ``/docs`` (the API, from the OpenAPI document), ``/ui``
(a live floor map) and the compact JSON the map polls (``/v1/floor``).

Everything is shipped in the package (``gpusched/serve/static/``): no script, font or
style sheet comes from the network, so the pages work on an air-gapped site.  The docs
page is rendered from the same OpenAPI document ``/openapi.json`` serves, so every
route is on it.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .floor import FloorModel

__all__ = ["routes", "operator_paths", "docs_page", "static_text"]

_STATIC = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8",
           "docs.css": "text/css; charset=utf-8"}


def static_text(name: str) -> str:
    """A file of ``gpusched/serve/static``, as shipped in the package."""
    return resources.files("gpusched.serve").joinpath("static", name).read_text("utf-8")


def operator_paths() -> dict[str, Any]:
    """OpenAPI entries for the routes that are not part of the placement API."""
    def get(summary: str, media: str | list[str], description: str = "",
            parameters: list[dict[str, Any]] | None = None,
            status: str = "200", extra: dict[str, Any] | None = None) -> dict[str, Any]:
        types = [media] if isinstance(media, str) else media
        op: dict[str, Any] = {"summary": summary,
                              "responses": {status: {"description": "OK" if status == "200"
                                                     else "redirect",
                                                     "content": {m: {} for m in types}},
                                            **(extra or {})}}
        if status != "200":
            op["responses"][status].pop("content")
        if description:
            op["description"] = description
        if parameters:
            op["parameters"] = parameters
        return {"get": op}

    not_found = {"404": {"description": "no such file",
                         "content": {"application/json": {"schema": {
                             "$ref": "#/components/schemas/Error"}}}}}
    return {
        "/": get("redirects to /docs", "text/html", status="307"),
        "/docs": get("this page: every endpoint, with examples", "text/html"),
        "/openapi.json": get("the OpenAPI 3.0 document of the service", "application/json"),
        "/ui": get("the live floor map: halls, rows and racks by headroom and state",
                   "text/html"),
        "/ui/{name}": get("the floor map's script and style sheets",
                          ["text/javascript", "text/css"],
                          parameters=[{"name": "name", "in": "path", "required": True,
                                       "schema": {"type": "string",
                                                  "enum": sorted(_STATIC)}}],
                          extra=not_found),
        "/metrics": get("Prometheus text format: limits' load and headroom, GPUs by "
                        "state, placements, refusals, request latency",
                        "text/plain"),
        "/v1/floor/layout": get("the floor's layout: halls, power rows, racks, wide limits "
                                "(what /ui draws once)", "application/json"),
        "/v1/floor": get(
            "the floor now: busy GPUs, power and headroom per rack, wide limits, node "
            "states, jobs and their racks", "application/json",
            "With ?since=SEQ, answers {\"seq\": SEQ, \"unchanged\": true} while the "
            "journal position is still SEQ, so polling an idle service costs little.",
            parameters=[{"name": "since", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 0}}]),
    }


# ---- the docs page ---------------------------------------------------------------------

def _schema_name(content: dict[str, Any]) -> str:
    for media, body in content.items():
        ref = body.get("schema", {}).get("$ref") if isinstance(body, dict) else None
        if ref:
            return ref.rsplit("/", 1)[1]
        return media
    return ""


def _schema_link(content: dict[str, Any], doc: dict[str, Any]) -> str:
    """The schema of ``content`` as a link to its block on the page (HTML)."""
    name = _schema_name(content)
    if name in doc["components"]["schemas"]:
        return f'<a href="#schema-{html.escape(name)}">{html.escape(name)}</a>'
    return html.escape(name)


def _endpoint_rows(doc: dict[str, Any]) -> str:
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            request = _schema_link(op.get("requestBody", {}).get("content", {}), doc)
            replies = ", ".join(f"{code} {_schema_link(r.get('content', {}), doc)}".strip()
                                for code, r in op["responses"].items())
            params = ", ".join(f"?{p['name']}" for p in op.get("parameters", []))
            token = "token" if op.get("security") else ""
            anchor = f"{method}-{path}".replace("/", "-")
            rows.append(
                f'<tr id="{html.escape(anchor)}"><td><code>{method.upper()}</code></td>'
                f"<td><code>{html.escape(path)}</code> {html.escape(params)}</td>"
                f"<td>{html.escape(op['summary'])}"
                + (f"<br><small>{html.escape(op['description'])}</small>"
                   if op.get("description") else "")
                + f"</td><td>{request}</td><td>{replies}</td>"
                f"<td>{token}</td></tr>")
    return "\n".join(rows)


def _schema_blocks(doc: dict[str, Any]) -> str:
    blocks = []
    for name, schema in doc["components"]["schemas"].items():
        text = json.dumps(schema, indent=1)
        blocks.append(f'<details id="schema-{html.escape(name)}"><summary>'
                      f"<code>{html.escape(name)}</code></summary>"
                      f"<pre>{html.escape(text)}</pre></details>")
    return "\n".join(blocks)


def docs_page(doc: dict[str, Any], *, token_required: bool) -> str:
    """The HTML of ``/docs`` for the OpenAPI document ``doc``."""
    page = static_text("docs.html")
    fill = {
        "TITLE": html.escape(doc["info"]["title"]),
        "DESCRIPTION": html.escape(doc["info"]["description"]),
        "TOKEN": ("This server requires a token: calls marked <em>token</em> need "
                  "<code>Authorization: Bearer &lt;token&gt;</code>; others get 401."
                  if token_required else
                  "This server runs without a token: every call is open."),
        "ENDPOINTS": _endpoint_rows(doc),
        "SCHEMAS": _schema_blocks(doc),
    }
    for key, value in fill.items():
        page = page.replace("{{" + key + "}}", value)
    return page


# ---- routes ------------------------------------------------------------------------

def routes(service: Any, floor: FloorModel, doc: dict[str, Any], *,
           token_required: bool, json_reply: Any) -> list[Route]:
    """The operator routes of the app serving ``service``."""
    docs_html = docs_page(doc, token_required=token_required)
    ui_html = static_text("ui.html")
    statics = {name: static_text(name) for name in _STATIC}

    async def index(request: Request) -> Response:
        return RedirectResponse("/docs", status_code=307)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_html)

    async def ui(request: Request) -> Response:
        return HTMLResponse(ui_html)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in statics:
            return json_reply({"error": f"no static file {name!r}", "field": None},
                              status_code=404)
        return Response(statics[name], media_type=_STATIC[name],
                        headers={"cache-control": "no-cache"})

    async def layout(request: Request) -> Response:
        return json_reply(floor.layout())

    async def live(request: Request) -> Response:
        since = request.query_params.get("since")
        seq = service.journal.written_seq
        if since is not None and since.isdigit() and int(since) == seq:
            return json_reply({"seq": seq, "unchanged": True})
        return json_reply(floor.live(service))

    return [
        Route("/", index, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/ui", ui, methods=["GET"]),
        Route("/ui/{name}", static, methods=["GET"]),
        Route("/v1/floor/layout", layout, methods=["GET"]),
        Route("/v1/floor", live, methods=["GET"]),
    ]
