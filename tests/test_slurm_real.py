"""gpusched against a real slurmctld: export, placement by --nodelist, the lua plugin and hooks.

The controller (tests/support/slurm.py) runs Debian's Slurm 22.05 with the site's nodes
as CLOUD nodes and no slurmd, on 127.0.0.1, in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gpusched import Cluster, Engine, Job
from gpusched.adapters.slurm import (HOOKS, expand_hostlist, hook_path, placement_nodelist,
                                     read_cluster)
from tests.support.real import need_programs
from tests.support.slurm import APT, PROGRAMS, SlurmController, free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def programs():
    return need_programs(*PROGRAMS, apt=APT)


@pytest.fixture(scope="module")
def site():
    # 576 nodes (4,608 GPUs) in four halls, as CLOUD nodes
    return Cluster.preset("colossus-100k", scale=0.05)


def test_slurm_allocates_exactly_the_nodes_gpusched_chose(tmp_path, programs, site):
    engine = Engine(site)
    sizes = [512, 64, 16, 128, 256, 64, 1024, 32]
    with SlurmController(tmp_path, site, programs) as slurm:
        # the controller read the exported topology back: every node, in the tree
        shown = slurm.run("scontrol", "show", "topology").stdout
        assert "site-root" in shown and site.rack_names[0] in shown
        submitted = {}
        for i, gpus in enumerate(sizes):
            placement = engine.place(Job(f"g{i}", gpus))
            assert placement is not None
            nodelist = placement_nodelist(site, placement)
            job_id = slurm.sbatch("-J", f"g{i}", "-N", str(len(placement.nodes)), "--exclusive",
                                  f"--nodelist={nodelist}", "--wrap=sleep 1000")
            submitted[job_id] = {site.node_names[n] for n in placement.nodes}
        for job_id, chosen in submitted.items():
            assert set(slurm.allocated_nodes(job_id)) == chosen
        # squeue lists the same jobs, each on its nodes
        listed = {job: set(expand_hostlist(nodes)) for job, _, nodes in slurm.queue()}
        assert listed == submitted
        # scancel ends them; gpusched's release frees the same nodes for the next job
        for job_id in submitted:
            slurm.run("scancel", str(job_id))
        deadline = time.monotonic() + 60
        while any(state in ("CONFIGURING", "RUNNING", "PENDING")
                  for _, state, _ in slurm.queue()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [row for row in slurm.queue() if row[1] in ("CONFIGURING", "RUNNING")]


def test_export_is_what_slurmctld_reads(tmp_path, programs, site):
    with SlurmController(tmp_path, site, programs) as slurm:
        nodes = slurm.run("scontrol", "show", "node", "-o").stdout.splitlines()
        assert len(nodes) == site.num_nodes
        assert sum("State=IDLE+CLOUD" in line for line in nodes) == site.num_nodes
        # a rack's nodes carry its kind and hall as features
        first = [line for line in nodes if f"NodeName={site.node_names[0]} " in line]
        assert first and "AvailableFeatures=liquid,hall-1" in first[0]
    # and the overlay written next to it gives the same site back
    again = read_cluster(slurm.conf_dir / "topology.conf",
                         slurm.conf_dir / "gpusched-power.toml")
    assert again.fingerprint == site.fingerprint


# ---- embedded: job_submit.lua, prolog.sh, epilog.sh -----------------------------------

def _serve(tmp_path: Path, cluster: Cluster):
    spec = tmp_path / "site.json"
    cluster.save(spec)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusched", "serve", "--cluster", str(spec),
         "--state", str(tmp_path / "gpusched-state"), "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gpusched serve exited: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"{url}/v1/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc, url
        except (OSError, ValueError):
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gpusched serve did not answer /v1/health within 60 s")


def _placements(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"{url}/v1/placements", timeout=10) as reply:
        return {p["job_id"]: p for p in json.load(reply)["placements"]}


@pytest.fixture
def embedded(tmp_path, programs, site):
    """gpusched serve + slurmctld with job_submit/lua, PrologSlurmctld and EpilogSlurmctld."""
    need_programs("curl", apt="curl")
    service, url = _serve(tmp_path, site)
    record = tmp_path / "caps.log"
    stand_in = tmp_path / "set-cap"
    # stands in for `ssh <node> nvidia-smi -pl <W>`: records what it was asked to do
    stand_in.write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n")
    stand_in.chmod(0o755)
    slurm = SlurmController(tmp_path / "slurm", site, programs, extra_conf=[
        "JobSubmitPlugins=lua",
        f"PrologSlurmctld={tmp_path / 'slurm' / 'etc' / 'prolog.sh'}",
        f"EpilogSlurmctld={tmp_path / 'slurm' / 'etc' / 'epilog.sh'}",
    ])
    for name in HOOKS:
        shutil.copy(hook_path(name), slurm.conf_dir / name)
    (slurm.conf_dir / "gpusched-slurm.conf").write_text(
        f"GPUSCHED_URL={url}\nGPUSCHED_TIMEOUT_S=10\n"
        f"GPUSCHED_CAP_COMMAND='{stand_in} {{node}} {{cap_w}}'\n")
    try:
        slurm.start()
        yield slurm, url, record
    finally:
        slurm.stop()
        service.terminate()
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()


def _tag(fields: dict[str, str]) -> tuple[str, int]:
    tag = fields["AdminComment"]
    assert tag.startswith("gpusched:job="), fields
    job, cap = tag[len("gpusched:job="):].split(",cap_w=")
    return job, int(cap)


def _wait_for(predicate, what: str, timeout_s: float = 180.0, log=None):
    # generous: slurmctld runs EpilogSlurmctld only after the job's PrologSlurmctld has
    # finished, and the whole suite shares two cores with other work
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s:.0f} s" +
                         (f"\n{log.log_tail(60)}" if log is not None else ""))


def test_lua_plugin_places_caps_and_releases_through_gpusched(embedded, site):
    slurm, url, record = embedded
    jobs = {}
    for n, comment in [(64, None), (8, "gpusched:min_cap_w=400 pretrain"), (2, None)]:
        args = ["-N", str(n), "--exclusive", "--wrap=sleep 1000"]
        if comment:
            args.append(f"--comment={comment}")
        jobs[slurm.sbatch(*args)] = n
    placed = _placements(url)
    assert len(placed) == 3
    for job_id, n in jobs.items():
        fields = slurm.job(job_id)
        gpusched_id, cap_w = _tag(fields)
        # Slurm allocated exactly the nodes gpusched chose, at the cap it recorded
        assert set(slurm.allocated_nodes(job_id)) == set(placed[gpusched_id]["node_names"])
        assert len(placed[gpusched_id]["node_names"]) == n
        assert placed[gpusched_id]["cap_w"] == cap_w
        assert fields["Comment"].startswith(fields["AdminComment"])
    # the slurmctld prolog applied each job's cap on each of its nodes, once
    expected = sorted(f"{name} {placed[_tag(slurm.job(j))[0]]['cap_w']}"
                      for j in jobs for name in placed[_tag(slurm.job(j))[0]]["node_names"])
    lines = _wait_for(lambda: sorted(record.read_text().split("\n")[:-1])
                      if record.exists() and
                      len(record.read_text().splitlines()) >= len(expected) else None,
                      "prolog runs for every node", log=slurm)
    assert lines == expected
    # the user's comment survives behind the tag
    assert any(slurm.job(j)["Comment"].endswith(" gpusched:min_cap_w=400 pretrain")
               for j in jobs)
    # scancel runs the slurmctld epilog, which releases the job in gpusched
    first = next(iter(jobs))
    first_id = _tag(slurm.job(first))[0]
    slurm.run("scancel", str(first))
    _wait_for(lambda: first_id not in _placements(url), "release after scancel", log=slurm)
    assert len(_placements(url)) == 2


def test_lua_plugin_refuses_a_job_gpusched_cannot_power(embedded, site):
    slurm, url, record = embedded
    # the site's 90 MW-per-100k facility row scaled: every node at once cannot be powered
    out = slurm.run("sbatch", "--parsable", "-N", str(site.num_nodes), "--exclusive",
                    "--wrap=true", check=False)
    assert out.returncode != 0
    assert "gpusched" in out.stderr
    assert _placements(url) == {}
    assert slurm.queue() == []


def test_prolog_on_a_node_reads_the_cap_from_the_admin_comment(embedded, site, tmp_path):
    """What slurmd would run on each node: no SLURM_JOB_COMMENT, the cap from scontrol."""
    slurm, url, record = embedded
    job_id = slurm.sbatch("-N", "1", "--exclusive", "--wrap=sleep 1000")
    slurm.allocated_nodes(job_id)
    _, cap_w = _tag(slurm.job(job_id))
    _wait_for(lambda: record.exists() and record.read_text(), "the slurmctld prolog")
    record.unlink()
    env = {k: v for k, v in slurm.env.items() if not k.startswith("SLURM_JOB")}
    env.update({"SLURM_JOB_ID": str(job_id), "SLURM_SCRIPT_CONTEXT": "prolog_slurmd"})
    out = subprocess.run([str(slurm.conf_dir / "prolog.sh")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert record.read_text() == f"{socket.gethostname().split('.')[0]} {cap_w}\n"
    # a failing cap command fails the prolog, so Slurm would not run the job uncapped
    (slurm.conf_dir / "gpusched-slurm.conf").write_text(
        f"GPUSCHED_URL={url}\nGPUSCHED_CAP_COMMAND='false {{cap_w}}'\n")
    out = subprocess.run([str(slurm.conf_dir / "prolog.sh")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "failed" in out.stderr
