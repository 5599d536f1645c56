"""Where an operator command finds the site: a state file, or a running service.

``--state FILE`` is a gpusched state file (``gpusched.state``: checksummed, written
atomically) that ``gpusched place`` creates and updates; ``--server URL`` is a running
``gpusched serve``.  Both give a :class:`SiteView`: the cluster, an engine holding the
placed jobs, and when each was placed.

Placement times live in the snapshot under ``placed_at`` (job id -> Unix seconds), an
extra key that ``Engine.load`` ignores, so a state file written here still loads
anywhere.  The service does not record them (yet), so over ``--server`` they are
unknown ("-").

A state file is never replaced unless it loaded: ``--create`` starts an empty site only
when nothing is at the path.  A file that is truncated, fails its checksum or belongs
to another cluster is refused with the reason, and left as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from ..engine import available_backends
from ..errors import ServiceError, ServiceUnreachableError, SpecError, UsageError

if TYPE_CHECKING:
    from ..engine import Engine
    from ..spec import Cluster

__all__ = ["TOKEN_ENV", "SiteView", "add_site_arguments", "open_view", "changing",
           "open_for_change", "save_view", "Client", "client_for"]

TOKEN_ENV = "GPUSCHED_TOKEN"
SERVER_TIMEOUT_S = 30.0
NEW_SITE_CLUSTER = "colossus-100k"

_URL = re.compile(r"^https?://[^/\s]+(/[^\s]*)?$")


@dataclass
class SiteView:
    """A site as one command sees it: read once, changed in memory, saved (a file) once."""

    cluster: "Cluster"
    engine: "Engine"
    where: str                                     # the file or URL, for messages
    placed_at: dict[str, float] = field(default_factory=dict)
    reserved: dict[str, str] = field(default_factory=dict)  # k8s gangs still binding


def add_site_arguments(parser: argparse.ArgumentParser, *, create: bool = False) -> None:
    """``--state`` / ``--server`` (one of them), ``--cluster`` and ``--backend``."""
    where = parser.add_argument_group("where the site is (give one)")
    where.add_argument("--state", metavar="FILE",
                       help="state file written by 'gpusched place'")
    where.add_argument("--server", metavar="URL",
                       help="a running 'gpusched serve', e.g. http://127.0.0.1:8787; "
                            f"changes send ${TOKEN_ENV} as the bearer token")
    if create:
        where.add_argument("--create", action="store_true",
                           help="start an empty site if nothing is at --state yet (an "
                                "existing file is never replaced)")
    parser.add_argument("--cluster", metavar="PRESET|FILE", default=None,
                        help="the site: a preset or .toml/.json spec (default: the preset "
                             "the state file names; for a new file colossus-100k; over "
                             "--server, the server's)")
    parser.add_argument("--backend", choices=available_backends(), default=None,
                        help="engine twin for a state file (default: the compiled core "
                             "when built)")


def _check_where(args: argparse.Namespace) -> None:
    if (args.state is None) == (args.server is None):
        raise UsageError("give exactly one of --state FILE and --server URL",
                         field="state" if args.state is None else "server")
    if args.server is not None:
        if not _URL.match(args.server):
            raise UsageError(f"--server {args.server!r} is not an http:// or https:// URL, "
                             "e.g. http://127.0.0.1:8787", field="server")
        if args.cluster is not None:
            raise UsageError("--cluster is the server's own; leave it out with --server",
                             field="cluster")


def _cluster_named(name: str) -> "Cluster":
    from ..spec import Cluster

    return Cluster.resolve(name)


# ---- state files -----------------------------------------------------------------------

def _view_of_snapshot(cluster: "Cluster", snapshot: dict[str, Any], where: str,
                      backend: str | None) -> SiteView:
    from ..engine import Engine

    engine = Engine.restore(cluster, snapshot, backend=backend)
    placed_at = snapshot.get("placed_at")
    times = ({str(k): float(v) for k, v in placed_at.items()
              if k in engine and isinstance(v, (int, float)) and not isinstance(v, bool)}
             if isinstance(placed_at, dict) else {})
    reserved: dict[str, str] = {}
    for gang in snapshot.get("k8s_gangs", []) or []:
        if isinstance(gang, dict) and not gang.get("complete", True):
            reserved[str(gang.get("job_id"))] = (f"{len(gang.get('bound', {}))}/"
                                                 f"{gang.get('size')} pods bound")
    return SiteView(cluster, engine, where, times, reserved)


def _read_state_file(args: argparse.Namespace) -> SiteView:
    from ..state import read_state

    snapshot = read_state(args.state)
    name = args.cluster
    if name is None:
        from ..spec import PRESETS

        name = snapshot.get("cluster")
        if name not in PRESETS:
            raise SpecError(f"state file {args.state!r} is of cluster {name!r}, which is not a "
                            "preset: pass --cluster with its .toml/.json spec", field="cluster")
    return _view_of_snapshot(_cluster_named(str(name)), snapshot, args.state, args.backend)


def open_view(args: argparse.Namespace) -> SiteView:
    """The site ``--state`` or ``--server`` names, read only."""
    _check_where(args)
    if args.server is not None:
        reply = client_for(args).get("/v1/snapshot")
        from ..spec import Cluster

        try:
            cluster = Cluster.from_dict(reply["cluster"])
            return _view_of_snapshot(cluster, reply["snapshot"], args.server, None)
        except (KeyError, TypeError) as exc:
            raise ServiceError(f"{args.server}/v1/snapshot did not answer a cluster and a "
                               f"snapshot ({type(exc).__name__}: {exc})") from None
    return _read_state_file(args)


@contextlib.contextmanager
def changing(args: argparse.Namespace) -> Iterator[None]:
    """Hold the state file's directory locked while a command reads, changes and saves it.

    Two ``gpusched place`` runs on one file would otherwise both read the old state and
    the second save would drop the first one's job.  The lock is flock(2) on the
    directory itself, so it leaves no file behind and also covers ``--create`` on a
    path where nothing is yet; it is released when the process ends, however it ends.
    Over ``--server`` the service serialises changes itself.
    """
    if args.state is None:
        yield
        return
    import fcntl

    directory = os.path.dirname(os.path.abspath(args.state))
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def open_for_change(args: argparse.Namespace) -> SiteView:
    """The state file to change: loaded, or (``--create`` and nothing there) empty.

    Anything at the path must load; the reason it does not is the error, and the file
    stays untouched.  Only an absent path (not even a broken symlink) starts empty.
    Call it inside ``changing(args)``.
    """
    _check_where(args)
    assert args.state is not None
    if os.path.lexists(args.state):
        return _read_state_file(args)
    if not getattr(args, "create", False):
        raise UsageError(f"state file {args.state!r} does not exist; pass --create to start "
                         "an empty site there", field="state")
    from ..engine import Engine

    cluster = _cluster_named(args.cluster or NEW_SITE_CLUSTER)
    return SiteView(cluster, Engine(cluster, backend=args.backend), args.state)


def save_view(view: SiteView) -> None:
    """Write the view's engine, with the placement times of its live jobs, atomically."""
    from ..state import encode_state, write_atomic

    snapshot = view.engine.snapshot()
    snapshot["placed_at"] = {j: t for j, t in sorted(view.placed_at.items())
                             if j in view.engine}
    write_atomic(view.where, encode_state(snapshot))


def now_s() -> float:
    """The placement time recorded for a job placed now."""
    return round(time.time(), 3)


# ---- the service ----------------------------------------------------------------------

class Client:
    """JSON over HTTP to a gpusched service, with its errors as typed ones.

    A 4xx answer is the request's fault (ServiceError, exit 2); no answer, a timeout or
    a 5xx is the service's (ServiceUnreachableError, exit 4).
    """

    def __init__(self, base_url: str, token: str | None,
                 timeout_s: float = SERVER_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def get(self, path: str) -> Any:
        return self._call("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise self._refusal(url, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceUnreachableError(f"cannot reach {url}: {reason}",
                                          field="server") from None
        except ValueError as exc:
            raise ServiceUnreachableError(f"{url} did not answer JSON: {exc}",
                                          field="server") from None

    def _refusal(self, url: str, exc: urllib.error.HTTPError) -> Exception:
        try:
            reply = json.loads(exc.read())
            message, where = str(reply.get("error")), reply.get("field")
        except (ValueError, AttributeError, OSError):
            message, where = exc.reason, None
        if exc.code == 401:
            message += (f" (set ${TOKEN_ENV} to the server's token)" if not self.token
                        else f" (${TOKEN_ENV} is not the server's token)")
        if exc.code >= 500:
            return ServiceUnreachableError(f"{url} failed with HTTP {exc.code}: {message}",
                                           field="server")
        return ServiceError(f"{url} refused the request (HTTP {exc.code}): {message}",
                            field=where)


def client_for(args: argparse.Namespace) -> Client:
    token = os.environ.get(TOKEN_ENV) or None
    return Client(args.server, token)
