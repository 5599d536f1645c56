"""SIGKILL the real server in the middle of a request stream; restart; nothing acked is lost.

The server runs as a subprocess (``python -m gpusched.cli serve``) on 127.0.0.1 with a
port picked by the OS, first with no snapshot (recovery is pure journal replay), then with
snapshots every 13 entries so kills also land around checkpoints.  The client streams places and releases one at a time and keeps the state
the acknowledged replies imply.  A second thread SIGKILLs the server at a random moment.
After a restart on the same state directory the placements must be exactly the
acknowledged state, except for the one request in flight at the kill, which the client
never heard about and which may have gone either way (a real client retries it; a
retried place then gets 409 "already placed").
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")


def start_server(state_dir: Path, snapshot_every: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusched.cli", "serve", "--cluster", "colossus-array",
         "--state", str(state_dir), "--port", "0", "--snapshot-every", str(snapshot_every)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on http://" in line:
            url = line.rsplit("listening on ", 1)[1].split()[0]
            assert url.startswith("http://127.0.0.1:")
            return proc, url
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()!r}")


def placements(url: str) -> dict[str, tuple]:
    with httpx.Client(base_url=url, timeout=10) as client:
        reply = client.get("/v1/placements").json()["placements"]
    return {p["job_id"]: (tuple(p["nodes"]), p["gpus_per_node"], p["cap_w"]) for p in reply}


def run_until_killed(proc: subprocess.Popen, url: str, acked: dict[str, tuple],
                     rng: random.Random, prefix: str, kill_after: int):
    """Stream requests; SIGKILL the server from another thread; return the op in flight."""
    killer = None
    sent = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        while True:
            if sent == kill_after:
                delay_s = rng.uniform(0, 0.004)
                killer = threading.Timer(delay_s, os.kill, (proc.pid, signal.SIGKILL))
                killer.start()
            if acked and rng.random() < 0.4:
                job_id = rng.choice(sorted(acked))
                op = ("release", job_id, None)
                request = ("/v1/release", {"job_id": job_id})
            else:
                job = {"id": f"{prefix}-{sent}", "gpus": rng.choice([1, 2, 4, 8, 8, 16, 32]),
                       "min_cap_w": rng.choice([300, 500, 700])}
                op = ("place", job["id"], None)
                request = ("/v1/place", {"job": job})
            try:
                reply = client.post(request[0], json=request[1])
            except httpx.TransportError:
                killer.join()
                proc.wait(timeout=10)
                return op
            sent += 1
            assert reply.status_code == 200, reply.text
            body = reply.json()
            if op[0] == "release":
                del acked[op[1]]
            elif body["placed"]:
                p = body["placement"]
                acked[op[1]] = (tuple(p["nodes"]), p["gpus_per_node"], p["cap_w"])
            if sent > kill_after + 10_000:
                raise AssertionError("the server survived SIGKILL")


def test_sigkill_mid_stream_loses_no_acknowledged_placement(tmp_path):
    # One backend per run: the server takes the default one, and CI runs the suite once
    # per backend (GPUSCHED_NO_EXTENSIONS=1 for the pure-Python twin).
    state_dir = tmp_path / "state"
    rng = random.Random(20261127)
    acked: dict[str, tuple] = {}
    in_flight: tuple = ()  # the request the last kill interrupted (set by each round)
    # Round 0 recovers from the journal alone, round 1 from snapshots taken every 13
    # entries plus the journal after the last one.
    for round_, snapshot_every in enumerate((100_000, 13)):
        proc, url = start_server(state_dir, snapshot_every)
        try:
            if round_:
                assert_recovered(url, acked, in_flight)
            in_flight = run_until_killed(proc, url, acked, rng, f"r{round_}",
                                         kill_after=rng.randint(40, 120))
            assert proc.returncode == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    proc, url = start_server(state_dir, 100_000)
    try:
        assert_recovered(url, acked, in_flight)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def assert_recovered(url: str, acked: dict[str, tuple], in_flight: tuple) -> None:
    """Recovered state == acked state, or acked state plus the in-flight op."""
    recovered = placements(url)
    kind, job_id, _ = in_flight
    if kind == "place":
        extra = {k: v for k, v in recovered.items() if k not in acked}
        assert set(extra) <= {job_id}, f"unacknowledged placements came back: {extra}"
        if extra:  # it was journaled before the kill: adopt it as the client would on retry
            acked[job_id] = extra[job_id]
        assert recovered == acked
    else:
        if job_id not in recovered:  # the release was journaled before the kill
            acked.pop(job_id)
        assert recovered == acked


# ---- a site that changes: drains, failures, restores, repairs, limits, plans ----------

def site_state(url: str) -> tuple:
    """What the server holds: placements, the nodes not up, the changed limits."""
    with httpx.Client(base_url=url, timeout=10) as client:
        nodes = client.get("/v1/site/nodes").json()["nodes"]
        limits = client.get("/v1/site/violations").json()["changed_limits"]
    return (placements(url), {k: sorted(v) for k, v in nodes.items()},
            {k: round(v, 3) for k, v in limits.items()})


def model_state(engine) -> tuple:
    codes = engine.node_states()
    return ({p.job_id: (tuple(p.nodes), p.gpus_per_node, p.cap_w) for p in engine.placements()},
            {s: [int(n) for n in (codes == i).nonzero()[0]]
             for i, s in ((1, "draining"), (2, "down"), (3, "spare"))},
            {k: round(v, 3) for k, v in engine.changed_limits().items()})


def site_op(rng: random.Random, model, prefix: str, sent: int) -> tuple:
    """The next request of the site stream: (kind, path, body, apply to a model engine)."""
    n_nodes = model.cluster.num_nodes
    degraded = sorted(model.degraded())
    roll = rng.random()
    if degraded and rng.random() < 0.5:
        job_id = rng.choice(degraded)
        return ("repair", "/v1/site/repair", {"job_id": job_id},
                lambda e, reply=None: e.repair(job_id))
    if roll < 0.16:
        kind = rng.choice(["drain", "fail", "restore"])
        held = [n for p in model.placements() for n in p.nodes]
        node = (rng.choice(held) if held and kind == "fail" and rng.random() < 0.7
                else rng.randrange(n_nodes))   # mostly a node a job runs on
        method = {"drain": "drain", "fail": "fail", "restore": "restore_nodes"}[kind]
        return (kind, f"/v1/site/{kind}", {"nodes": [node]},
                lambda e, reply=None: getattr(e, method)([node]))
    if roll < 0.19:
        load = float(model.rack_power_w().sum())
        watts = round(load * rng.uniform(0.7, 1.1), 1)
        return ("set-limit", "/v1/site/set-limit", {"row": "facility IT limit",
                                                    "watts": watts},
                lambda e, reply=None: e.set_limit("facility IT limit", watts))
    if roll < 0.22:
        return ("plan", "/v1/site/plan", {}, None)
    live = sorted(p.job_id for p in model.placements())
    if live and roll < 0.45:
        job_id = rng.choice(live)
        return ("release", "/v1/release", {"job_id": job_id},
                lambda e, reply=None: e.release(job_id))
    job = {"id": f"{prefix}-{sent}", "gpus": rng.choice([1, 2, 4, 8, 8, 16, 32]),
           "min_cap_w": rng.choice([300, 500, 700])}

    def place(e, reply=None):
        from gpusched import Job
        return e.place(Job.from_dict(job))
    return ("place", "/v1/place", {"job": job}, place)


def apply_envelope_reply(engine, reply: dict) -> None:
    for job_id in reply["evicted"]:
        engine.release(job_id)
    for job_id, cap in reply["caps"].items():
        engine.set_cap(job_id, cap)


def run_site_until_killed(proc, url, model, rng, prefix, kill_after, kinds):
    """Stream site changes and places; SIGKILL; return the op in flight (or None)."""
    killer = None
    sent = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while True:
            if sent == kill_after:
                killer = threading.Timer(rng.uniform(0, 0.004), os.kill,
                                         (proc.pid, signal.SIGKILL))
                killer.start()
            kind, path, body, apply = site_op(rng, model, prefix, sent)
            in_flight: tuple = (kind, apply)
            try:
                reply = client.post(path, json=body)
                if kind == "plan":   # then apply it: the durable step
                    plan = reply.json()
                    done = {"evicted": plan["evict"], "caps": plan["caps"]}
                    in_flight = ("apply", lambda e, done=done: apply_envelope_reply(e, done))
                    reply = client.post("/v1/site/apply", json={"plan_id": plan["plan_id"]})
            except httpx.TransportError:
                killer.join()
                proc.wait(timeout=10)
                return in_flight
            sent += 1
            assert reply.status_code == 200, reply.text
            answer = reply.json()
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "plan":
                apply_envelope_reply(model, answer)
            else:
                result = apply(model)
                if kind == "repair":
                    assert answer["repaired"] == (result is not None)
                if kind == "place":
                    assert answer["placed"] == (result is not None)
                    if result is not None:
                        assert answer["placement"]["nodes"] == list(result.nodes)
            if sent % 25 == 0:   # the model is the server, while it runs
                assert model_state(model) == site_state(url)
            if sent > kill_after + 10_000:
                raise AssertionError("the server survived SIGKILL")


def test_sigkill_mid_site_stream_loses_no_acknowledged_change(tmp_path):
    """Every acknowledged drain, fail, restore, repair, limit and plan apply survives a
    kill -9 (from the journal, then from snapshots every 13 entries); the one request in
    flight may have gone either way, and nothing else that was not acknowledged is there."""
    import gpusched

    cluster = gpusched.Cluster.preset("colossus-array")
    model = gpusched.Engine(cluster)
    state_dir = tmp_path / "state"
    rng = random.Random(20261202)
    in_flight: tuple = ("none", None)
    kinds: dict[str, int] = {}   # acknowledged requests of each kind
    for round_, snapshot_every in enumerate((100_000, 13, 100_000)):
        proc, url = start_server(state_dir, snapshot_every)
        try:
            if round_:
                model = assert_site_recovered(url, model, in_flight)
            if round_ == 2:
                break
            in_flight = run_site_until_killed(proc, url, model, rng, f"s{round_}",
                                              kill_after=rng.randint(60, 150),
                                              kinds=kinds)
            assert proc.returncode == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
    # the stream did what it is meant to test: every kind of change was acknowledged
    assert {"place", "release", "drain", "fail", "restore", "repair", "set-limit",
            "plan"} <= set(kinds), kinds


def assert_site_recovered(url: str, model, in_flight: tuple):
    """Recovered == the acknowledged model, or the model with the in-flight op applied
    (returned as the new model)."""
    import gpusched

    recovered = site_state(url)
    if recovered == model_state(model):
        return model
    kind, apply = in_flight
    assert apply is not None, f"recovered state differs with nothing in flight ({kind})"
    other = gpusched.Engine.from_snapshot(model.cluster, model.snapshot())
    apply(other)
    assert recovered == model_state(other), f"recovered state is neither the acknowledged " \
                                            f"one nor it plus the {kind} in flight"
    return other
