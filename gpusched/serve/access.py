"""The access log and the request timer: one ASGI middleware around the whole app.

Every answered request is logged at ``info`` on the ``gpusched.serve.access`` logger as

    POST /v2/place 200 0.8ms 127.0.0.1

(method, path, status, time to the end of the reply, client).  The query string and the
headers are never logged, so neither a bearer token nor anything a client puts in a URL
reaches the log.  ``gpusched serve --log-level info`` shows it; at the default
(``warning``) the logger is off and a request pays one ``isEnabledFor`` check.  The same
timing feeds ``/metrics``' latency histogram when metrics are on.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

__all__ = ["RequestLog", "LOGGER"]

LOGGER = logging.getLogger("gpusched.serve.access")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _printable(path: str) -> str:
    """``path`` as one log line: a newline or escape sequence in a URL is shown escaped,
    so a client cannot forge log lines."""
    return path if path.isascii() and path.isprintable() else ascii(path)


class RequestLog:
    """ASGI middleware: log and time every HTTP request of ``app``."""

    def __init__(self, app: Any, observe: Callable[[str, str, int, float], None] | None = None
                 ) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - start
            method, path = scope["method"], scope["path"]
            if self.observe is not None:
                self.observe(method, path, status, seconds)
            if LOGGER.isEnabledFor(logging.INFO):
                client = scope.get("client")
                LOGGER.info("%s %s %d %.1fms %s", method, _printable(path), status,
                            seconds * 1000,
                            client[0] if client else "-")
