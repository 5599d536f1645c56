"""A hostile-client fuzzer against the real server (a subprocess on 127.0.0.1).

Beyond schemathesis' well-formed requests: oversized bodies (declared and chunked), idle
and half-open connections, concurrent identical requests, non-JSON content types and
tokens in other encodings, with the server's resident memory and open descriptors read
from /proc and bounded.  Every part is bounded in count and in time.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from gpusched.serve.schemas import MAX_BODY_BYTES  # noqa: E402

TOKEN = "sésame ouvre-toi"   # non-ASCII: clients send it as UTF-8
MAX_CONNECTIONS = 32
IDLE_TIMEOUT_S = 1


def start(state_dir: Path) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusched.cli", "serve", "--cluster", "colossus-array",
         "--state", str(state_dir), "--port", "0", "--token", TOKEN,
         "--max-connections", str(MAX_CONNECTIONS), "--idle-timeout-s", str(IDLE_TIMEOUT_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    if "listening on http://" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()!r}")
    url = line.rsplit("listening on ", 1)[1].split()[0]
    return proc, url, int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url, port = start(tmp_path_factory.mktemp("hostile") / "state")
    yield proc, url, port
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def auth(token: bytes = TOKEN.encode("utf-8"), scheme: bytes = b"Bearer") -> dict:
    return {"Authorization": scheme + b" " + token}


def raw_request(port: int, data: bytes, *, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def test_token_is_utf8_and_the_scheme_case_insensitive(server):
    _, url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        body = {"job": {"id": "auth-probe", "gpus": 1}}
        latin1 = client.post("/v1/place", json=body, headers=auth(TOKEN.encode("latin-1")))
        assert latin1.status_code == 401
        for scheme in (b"bearer", b"BEARER", b"Bearer"):
            reply = client.post("/v1/explain", json=body, headers=auth(scheme=scheme))
            assert reply.status_code == 200
        assert client.post("/v1/place", json=body, headers=auth(scheme=b"bEaReR")
                           ).status_code == 200
        assert client.post("/v1/release", json={"job_id": "auth-probe"},
                           headers=auth()).status_code == 200


def test_non_json_content_type_is_refused(server):
    _, url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        reply = client.post("/v1/explain", content=b'{"job": {"id": "t", "gpus": 1}}',
                            headers={"Content-Type": "text/plain"})
        assert reply.status_code == 415 and reply.json()["field"] == "headers.content-type"
        ok = client.post("/v1/explain", content=b'{"job": {"id": "t", "gpus": 1}}',
                         headers={"Content-Type": "application/json; charset=utf-8"})
        assert ok.status_code == 200


def test_oversized_bodies_are_refused_while_reading(server):
    proc, url, port = server
    base = rss_bytes(proc.pid)
    # declared: refused from the header, before the body is sent
    head = (b"POST /v1/explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (250 * 2 ** 20))
    assert status_of(raw_request(port, head)) == 413

    # chunked, and a lying Content-Length: counted as they stream; 4 at once
    def chunked(results: list, i: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /v1/explain HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (2 ** 20, b" " * 2 ** 20)
            try:
                for _ in range(64):  # up to 64 MiB, far past the limit
                    sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            reply = b""
            try:
                while b"\r\n\r\n" not in reply:
                    data = sock.recv(65536)
                    if not data:
                        break
                    reply += data
            except ConnectionResetError:
                pass
            results.append(reply)

    results: list = []
    threads = [threading.Thread(target=chunked, args=(results, i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    answered = [status_of(r) for r in results if r]
    assert answered and all(s == 413 for s in answered), answered
    # four 64 MiB uploads held the server to a few times the 4 MiB limit
    assert rss_bytes(proc.pid) - base < 8 * MAX_BODY_BYTES * 4
    assert proc.poll() is None


def test_idle_and_half_open_connections_are_bounded_and_closed(server):
    proc, url, port = server
    fds_before = open_fds(proc.pid)
    rng = random.Random(7)
    socks = []
    try:
        for i in range(4 * MAX_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            kind = rng.choice(["idle", "half-line", "half-head"])
            if kind == "half-line":
                sock.sendall(b"POST /v1/pl")
            elif kind == "half-head":
                sock.sendall(b"POST /v1/place HTTP/1.1\r\nHost: x\r\nContent-Le")
            socks.append(sock)
        time.sleep(0.5)  # let the server accept them all
        # the server never holds more than its connection budget
        assert open_fds(proc.pid) <= fds_before + MAX_CONNECTIONS + 8
        # every one of them is closed by the server within a bounded wait
        deadline = time.monotonic() + 30 * IDLE_TIMEOUT_S
        for sock in socks:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                assert sock.recv(1024) == b""  # closed by the server, no reply
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("an idle connection was never closed")
    finally:
        for sock in socks:
            sock.close()
    # and the service still works, journal included
    with httpx.Client(base_url=url, timeout=30) as client:
        reply = client.post("/v1/place", json={"job": {"id": "after-idle", "gpus": 8}},
                            headers=auth())
        assert reply.status_code == 200 and reply.json()["placed"]
        assert client.post("/v1/release", json={"job_id": "after-idle"},
                           headers=auth()).status_code == 200


def test_concurrent_identical_places_place_once(server):
    proc, url, _ = server
    replies: list = []

    def place() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            replies.append(client.post("/v1/place", json={"job": {"id": "twin", "gpus": 16}},
                                       headers=auth()))

    threads = [threading.Thread(target=place) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] + [409] * 11, codes
    with httpx.Client(base_url=url, timeout=30) as client:
        held = [p for p in client.get("/v1/placements").json()["placements"]
                if p["job_id"] == "twin"]
        assert len(held) == 1
        assert client.post("/v1/release", json={"job_id": "twin"},
                           headers=auth()).status_code == 200
    assert proc.poll() is None


# ---- the site routes (issue 15): hostile bodies change nothing -------------------------

def site_fingerprint(client: httpx.Client) -> tuple:
    return (client.get("/v1/site/nodes").json(), client.get("/v1/site/violations").json(),
            client.get("/v1/health").json()["journal_seq"])


@pytest.mark.parametrize("path,raw,headers,status", [
    ("/v1/site/set-limit", b'{"row": "facility IT limit", "watts": NaN}', {}, 400),
    ("/v1/site/set-limit", b'{"row": "facility IT limit", "watts": Infinity}', {}, 400),
    ("/v1/site/set-limit", b'{"row": "facility IT limit", "watts": 1e999}', {}, 422),
    ("/v1/site/set-limit", b'{"row": "facility IT limit", "watts": "5e6"}', {}, 422),
    ("/v1/site/set-limit", b'{"row": "facility IT limit", "watts": true}', {}, 422),
    ("/v1/site/fail", b'{"nodes": [' + b",".join([b"0"] * 65) + b"]}", {}, 422),
    ("/v1/site/fail", b'{"nodes": ["' + b"n" * 100_000 + b'"]}', {}, 422),
    ("/v1/site/fail", b'{"nodes": [[0]]}', {}, 422),
    ("/v1/site/fail", b'{"nodes": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}, 422),
    ("/v1/site/drain", b'{"nodes": [-1]}', {}, 422),
    ("/v1/site/drain", b'{"nodes": [18446744073709551616]}', {}, 422),
    ("/v1/site/fail-domain", b'{"domain": "rack-0001 feed\\u0000"}', {}, 404),
    ("/v1/site/fail-domain", b'{"domain": ["rack-0001 feed"]}', {}, 422),
    ("/v1/site/apply", b'{"plan_id": "' + b"p" * 10_000 + b'"}', {}, 422),
    ("/v1/site/fail", b'{"nodes": [0]}', {"Content-Type": "text/plain"}, 415),
    ("/v1/site/fail", b'{"nodes": [0]}', {"Authorization": "Bearer wrong"}, 401),
    ("/v1/site/restore", b'{"nodes": [0]', {}, 400),
    # nested past Python's recursion limit: the error message once crashed (500) on it
    ("/v1/place", b'{"job": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}, 422),
])
def test_hostile_site_bodies_are_refused_and_change_nothing(server, path, raw, headers,
                                                            status):
    _, url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        before = site_fingerprint(client)
        sent = {"Content-Type": "application/json", **auth(), **headers}
        reply = client.post(path, content=raw, headers=sent)
        assert reply.status_code == status, reply.text
        assert set(reply.json()) >= {"error", "field"}
        assert site_fingerprint(client) == before
