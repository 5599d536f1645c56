"""``gpusched serve``: run the placement service under uvicorn.

    gpusched serve --cluster colossus-100k --state /var/lib/gpusched --port 8787

Listens on 127.0.0.1 unless ``--host`` says otherwise.  ``--token`` (or the environment
variable ``GPUSCHED_TOKEN``) makes every mutating call require a bearer token.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import resource
import socket
import sys
from typing import Any

from ..spec import PRESETS, Cluster
from ..engine import available_backends
from ..errors import GpuschedError

__all__ = ["add_arguments", "run", "guarded_protocol", "connection_budget",
           "configure_logging"]

TOKEN_ENV = "GPUSCHED_TOKEN"

# shown under `gpusched serve --help` (gpusched.cli reads EXAMPLES)
EXAMPLES = """
gpusched serve --cluster tiny --state /tmp/gpusched-state --port 8787
GPUSCHED_TOKEN=s3cret gpusched serve --cluster colossus-100k --state /var/lib/gpusched
gpusched status --server http://127.0.0.1:8787     # then, from another shell
"""

JOURNAL_FD_RESERVE = 64
"""Descriptors kept free of client connections: the journal, its checkpoint's temp
files and directory fsyncs, the lock, the listening socket and worker threads need them
even when clients hold every connection they may."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds > 0")
    return value


def connection_budget(requested: int | None) -> int:
    """How many client connections to allow: ``requested``, within the descriptor limit.

    Raises the soft RLIMIT_NOFILE to the hard one (as far as it goes) and keeps
    ``JOURNAL_FD_RESERVE`` descriptors for the journal: a client flood can then never
    leave the journal without a descriptor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    # descriptors already open (stdio, the engine's files) count against the limit too
    ceiling = max(1, soft - JOURNAL_FD_RESERVE - len(os.listdir("/proc/self/fd"))) \
        if os.path.isdir("/proc/self/fd") else max(1, soft - 2 * JOURNAL_FD_RESERVE)
    return min(requested, ceiling) if requested is not None else min(1024, ceiling)


def guarded_protocol(base: type, *, max_connections: int, idle_timeout_s: float) -> type:
    """``base`` (a uvicorn HTTP protocol class) that bounds connections and idleness.

    uvicorn closes a keep-alive connection only once a response is complete, so a client
    that connects and sends nothing, or half a request line, would hold its descriptor
    for ever.  Here every connection must deliver a complete request head within
    ``idle_timeout_s`` of connecting or of its last response, and a connection beyond
    ``max_connections`` is closed as soon as it is accepted.  A stalled body is bounded
    by the app's own body timeout.
    """

    class Guarded(base):
        _idle_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._arm_idle()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_idle()
            super().connection_lost(exc)

        def _arm_idle(self) -> None:
            self._disarm_idle()
            self._idle_timer = self.loop.call_later(idle_timeout_s, self._idle_timeout)

        def _disarm_idle(self) -> None:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None

        def _idle_timeout(self) -> None:
            self._idle_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def _request_head_complete(self) -> None:
            self._disarm_idle()

        # httptools calls this once the request head is parsed
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._request_head_complete()

        # h11 has no such callback: a new request cycle means the head is complete
        def handle_events(self) -> None:
            before = getattr(self, "cycle", None)
            super().handle_events()
            if getattr(self, "cycle", None) is not before:
                self._request_head_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_idle()

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``gpusched serve``'s options to ``parser``."""
    parser.add_argument("--cluster", default="colossus-100k",
                        help=f"preset ({', '.join(sorted(PRESETS))}) or .toml/.json file")
    parser.add_argument("--state", required=True,
                        help="state directory: write-ahead journal and snapshots")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: loopback only)")
    parser.add_argument("--port", type=int, default=8787,
                        help="TCP port (0: pick a free one and print it)")
    parser.add_argument("--token", default=None,
                        help=f"bearer token for mutating calls (default: ${TOKEN_ENV})")
    parser.add_argument("--k8s-open", action="store_true",
                        help="leave the Kubernetes extender verbs open even with a token "
                             "(kube-scheduler sends no Authorization header)")
    parser.add_argument("--snapshot-every", type=_positive_int, default=10_000,
                        help="journal entries between snapshots (>= 1)")
    parser.add_argument("--gang-timeout-s", type=_positive_seconds, default=300.0,
                        help="seconds a Kubernetes gang has to bind all its pods (> 0)")
    parser.add_argument("--max-connections", type=_positive_int, default=None,
                        help="client connections open at once; more are closed at "
                             "accept (default 1024, less if the descriptor limit is low)")
    parser.add_argument("--idle-timeout-s", type=_positive_seconds, default=10.0,
                        help="seconds a connection may sit without a complete request "
                             "head before it is closed (default 10)")
    parser.add_argument("--kube-api", default=None, metavar="URL|in-cluster",
                        help="bind k8s pods through this API server (the bind verb); "
                             "'in-cluster' uses the pod's service account. Without it, "
                             "bind only books the pod's slot in its gang reservation")
    parser.add_argument("--kube-token-file", default=None,
                        help="bearer token file for --kube-api URL")
    parser.add_argument("--kube-ca-file", default=None, help="CA bundle for --kube-api URL")
    parser.add_argument("--backend", choices=available_backends(), default=None)
    parser.add_argument("--log-level", default="warning",
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="log level of gpusched and uvicorn; 'info' logs every request "
                             "(method, path, status, ms, client; never a token)")


def configure_logging(level: str) -> None:
    """Send the ``gpusched`` loggers (the access log among them) to stderr at ``level``.

    Only the package's own logger is configured, not the root one, so an application
    embedding the service keeps its own logging; uvicorn configures its loggers itself.
    """
    logger = logging.getLogger("gpusched")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_gpusched_serve", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
        handler._gpusched_serve = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def resolve_token(flag: str | None) -> str | None:
    """The bearer token: ``--token``, else ``$GPUSCHED_TOKEN``; None (open) if neither.

    An empty string is refused rather than taken as "no token": it would look like
    protection and be none.
    """
    token = flag if flag is not None else os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise SystemExit(f"gpusched serve: the token (--token or ${TOKEN_ENV}) is empty")
    return token


def run(args: argparse.Namespace) -> int:
    """Start the service; returns when the server stops (Ctrl-C or SIGTERM)."""
    import uvicorn

    from .app import create_app
    from .service import PlacementService

    if not 0 <= args.port <= 65535:
        print(f"gpusched serve: --port {args.port} must be in 0..65535", file=sys.stderr)
        return 2
    token = resolve_token(args.token)
    configure_logging(args.log_level)
    from .k8s import ApiServerBinder

    binder = None
    if args.kube_api == "in-cluster":
        binder = ApiServerBinder.in_cluster()
    elif args.kube_api:
        kube_token = None
        if args.kube_token_file:
            with open(args.kube_token_file, encoding="utf-8") as f:
                kube_token = f.read().strip()
        binder = ApiServerBinder(args.kube_api, token=kube_token, ca_file=args.kube_ca_file)
    cluster = Cluster.resolve(args.cluster)
    try:
        service = PlacementService(cluster, args.state, backend=args.backend,
                                   snapshot_every=args.snapshot_every,
                                   gang_timeout_s=args.gang_timeout_s, binder=binder)
    except GpuschedError as exc:
        print(f"gpusched serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(service, token=token, k8s_open=args.k8s_open)
    # Bind the socket ourselves so --port 0 can report the port it got before serving.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only when it does,
    # and without it Nagle's algorithm and delayed ACKs add ~40 ms to every reply.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        # Listen now, so clients that read the line below can connect at once (the
        # kernel queues them until uvicorn's loop accepts).
        sock.listen(2048)
    except OSError as exc:
        service.close()
        print(f"gpusched serve: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    print(f"gpusched serve: {cluster.name} ({cluster.num_gpus} GPUs, {service.engine.backend} "
          f"backend), {len(service.engine)} jobs recovered from {args.state} "
          f"({service.recovered_entries} journal entries replayed); listening on "
          f"http://{host}:{port}{' (token required)' if token else ''}", flush=True)
    max_connections = connection_budget(args.max_connections)
    base: type[Any]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is optional: fall back to h11
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    protocol = guarded_protocol(base, max_connections=max_connections,
                                idle_timeout_s=args.idle_timeout_s)
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="on",
                            http=protocol, timeout_keep_alive=max(1, int(args.idle_timeout_s)),
                            limit_concurrency=max_connections + 1)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0
