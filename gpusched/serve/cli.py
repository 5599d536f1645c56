"""``gpusched serve``: run the placement service under uvicorn.

    gpusched serve --cluster colossus-100k --state /var/lib/gpusched --port 8787

Listens on 127.0.0.1 unless ``--host`` says otherwise.  ``--token`` (or the environment
variable ``GPUSCHED_TOKEN``) makes every mutating call require a bearer token.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from ..spec import PRESETS, Cluster
from ..engine import available_backends

__all__ = ["add_arguments", "run"]

TOKEN_ENV = "GPUSCHED_TOKEN"


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
    parser.add_argument("--snapshot-every", type=int, default=10_000,
                        help="journal entries between snapshots")
    parser.add_argument("--gang-timeout-s", type=float, default=300.0,
                        help="seconds a Kubernetes gang has to bind all its pods")
    parser.add_argument("--kube-api", default=None, metavar="URL|in-cluster",
                        help="bind k8s pods through this API server (the bind verb); "
                             "'in-cluster' uses the pod's service account. Without it, "
                             "bind only books the pod's slot in its gang reservation")
    parser.add_argument("--kube-token-file", default=None,
                        help="bearer token file for --kube-api URL")
    parser.add_argument("--kube-ca-file", default=None, help="CA bundle for --kube-api URL")
    parser.add_argument("--backend", choices=available_backends(), default=None)
    parser.add_argument("--log-level", default="warning",
                        choices=["critical", "error", "warning", "info", "debug"])


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
    service = PlacementService(cluster, args.state, backend=args.backend,
                               snapshot_every=args.snapshot_every,
                               gang_timeout_s=args.gang_timeout_s, binder=binder)
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
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0
