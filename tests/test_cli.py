"""The operator command line: what it prints, what it refuses, what it never replaces.

Most checks run ``gpusched.cli.main`` in-process (the same code the ``gpusched`` script
runs); the ones about the process as a whole (a traceback on stderr, a closed pipe, a
real ``gpusched serve``) start subprocesses, bounded in time, on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpusched.hostlist import expand_hostlist

from gpusched.cli import COMMANDS, EXIT_CODES, _PLUGGED, main
from gpusched.state import encode_state, read_state
from tests.support.cli_sites import T0_S, write_site
from tests.support.real import need_modules

CHECKOUT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A tiny site with four jobs at st.json, the test's working directory."""
    monkeypatch.chdir(tmp_path)
    write_site("tiny", tmp_path / "st.json")
    return tmp_path / "st.json"


# ---- --create never replaces a file it could not load -------------------------------

def _checksum_failing(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["snapshot"]["jobs"][0]["cap_w"] -= 25  # a hand edit: the digest no longer matches
    return json.dumps(doc).encode()


def _other_cluster(tmp_path: Path) -> bytes:
    write_site("colossus-array", tmp_path / "array.json")
    return (tmp_path / "array.json").read_bytes()


def _other_limits(data: bytes) -> bytes:
    # the same preset name, but written for a site whose facility limit differs
    from gpusched import Cluster, Engine

    engine = Engine(Cluster.preset("tiny").with_limits({"facility IT limit": 50_000}))
    return encode_state(engine.snapshot())


@pytest.mark.parametrize("damage, words", [
    (lambda data, tmp: b"", "not a complete gpusched state file"),
    (lambda data, tmp: data[: len(data) // 2], "truncated or corrupted"),
    (lambda data, tmp: b"\x00\xff garbage", "not a complete gpusched state file"),
    (lambda data, tmp: _checksum_failing(data), "fails its checksum"),
    (lambda data, tmp: _other_cluster(tmp), "not of 'tiny'"),
    (lambda data, tmp: _other_limits(data), "cluster_fingerprint"),
])
def test_create_never_replaces_a_state_file_that_does_not_load(site, tmp_path, capsys,
                                                                  damage, words):
    site.write_bytes(damage(site.read_bytes(), tmp_path))
    before = site.read_bytes()
    status, out, err = run_cli(capsys, "place", "--state", "st.json", "--create",
                               "--cluster", "tiny", "--id", "new", "--gpus", "8")
    assert status == 2
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert site.read_bytes() == before, "the state file was replaced"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "array.json") == ["st.json"]


def test_create_refuses_a_directory_and_a_dangling_symlink(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    for path in ("d", "link"):
        status, _, err = run_cli(capsys, "place", "--state", path, "--create", "--cluster",
                                 "tiny", "--id", "new", "--gpus", "8")
        assert status == 2 and "SnapshotError" in err
    assert (tmp_path / "d").is_dir() and list((tmp_path / "d").iterdir()) == []
    assert (tmp_path / "link").is_symlink() and not (tmp_path / "gone").exists()


def test_create_starts_empty_only_where_nothing_is(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, "place", "--state", "new.json", "--cluster", "tiny",
                             "--id", "a", "--gpus", "8")
    assert status == 2 and "--create" in err and not (tmp_path / "new.json").exists()
    status, out, _ = run_cli(capsys, "place", "--state", "new.json", "--create", "--cluster",
                             "tiny", "--id", "a", "--gpus", "8")
    assert status == 0 and out.startswith("placed a: 8 GPUs on 1 node(s) rack-1-n0")
    snapshot = read_state(tmp_path / "new.json")
    assert [j["job"]["id"] for j in snapshot["jobs"]] == ["a"]
    assert abs(snapshot["placed_at"]["a"] - time.time()) < 600
    # --create on the file it just made adds to it: the first job stays
    status, _, _ = run_cli(capsys, "place", "--state", "new.json", "--create", "--id", "b",
                           "--gpus", "8")
    assert status == 0
    assert [j["job"]["id"] for j in read_state(tmp_path / "new.json")["jobs"]] == ["a", "b"]


# ---- the job commands over a state file ---------------------------------------------

def test_concurrent_places_on_one_file_lose_no_job(tmp_path):
    # each process reads, places and saves under the directory's lock: without it the
    # last save would keep only the jobs its own read saw
    state = tmp_path / "st.json"
    procs = [subprocess.Popen([sys.executable, "-m", "gpusched", "place", "--state",
                               str(state), "--create", "--cluster", "tiny", "--id",
                               f"j{i}", "--gpus", "1"], cwd=CHECKOUT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(6)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert sorted(j["job"]["id"] for j in read_state(state)["jobs"]) == \
        [f"j{i}" for i in range(6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st.json"]


def test_place_release_and_jobs_keep_the_file_and_times_in_step(site, capsys):
    status, out, _ = run_cli(capsys, "release", "--state", "st.json", "eval-1", "tiny-1")
    assert status == 0
    assert out.splitlines() == ["released eval-1: 4 GPUs on rack-2-n0",
                                "released tiny-1: 1 GPUs on rack-2-n0"]
    snapshot = read_state(site)
    assert sorted(snapshot["placed_at"]) == ["big", "train-a"]
    assert snapshot["placed_at"]["train-a"] == T0_S
    status, out, _ = run_cli(capsys, "jobs", "--state", "st.json", "--json")
    rows = json.loads(out)["jobs"]
    assert [(r["job_id"], r["gpus"], r["hostlist"], r["since"]) for r in rows] == [
        ("big", 32, "rack-3-n[0-1],rack-4-n[0-1]", T0_S + 1200),
        ("train-a", 16, "rack-1-n[0-1]", T0_S)]


def test_release_of_an_unknown_id_releases_nothing(site, capsys):
    before = site.read_bytes()
    status, out, err = run_cli(capsys, "release", "--state", "st.json", "eval-1", "nope")
    assert status == 2 and out == "" and "'nope'" in err and "UnknownJobError" in err
    assert site.read_bytes() == before


def test_a_refused_place_exits_3_and_leaves_the_file(site, capsys):
    before = site.read_bytes()
    status, out, _ = run_cli(capsys, "place", "--state", "st.json", "--id", "more",
                             "--gpus", "8", "--json")
    reply = json.loads(out)
    assert status == 3 and reply["placed"] is False and reply["binding_kind"] == "facility"
    assert site.read_bytes() == before


def test_place_replies_with_a_hostlist_not_every_node(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run_cli(capsys, "place", "--state", "big.json", "--create", "--id",
                             "gang", "--gpus", "4096", "--min-cap-w", "400", "--json")
    reply = json.loads(out)
    assert status == 0 and reply["gpus"] == 4096 and reply["node_count"] == 512
    assert "nodes" not in reply and "node_names" not in reply
    # 64 racks of 8 nodes: one hostlist entry a rack, a tenth of the node names' size
    assert reply["hostlist"].count("rack-") == 64 and len(out) < 1500
    status, out, _ = run_cli(capsys, "explain", "--state", "big.json", "--gpus", "4096",
                             "--json", "--nodes")
    answer = json.loads(out)
    assert status == 0 and len(answer["placement"]["nodes"]) == 512


def test_status_json_adds_up(site, capsys):
    status, out, _ = run_cli(capsys, "status", "--state", "st.json", "--json")
    s = json.loads(out)
    assert status == 0 and s["gpus"] == 64 and s["busy"] == 53 and s["free"] == 11
    assert sum(r["busy"] for r in s["rows"]) == s["busy"] == sum(h["busy"] for h in s["halls"])
    assert s["facility"]["limit_w"] == 55_000
    assert s["facility"]["load_w"] <= s["facility"]["limit_w"]
    used = [t["used"] for t in s["tightest"]]
    assert used == sorted(used, reverse=True) and len(used) == 5


def test_units_scale_with_the_site(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, tiny, _ = run_cli(capsys, "show", "tiny", "--jobs", "0")
    assert "17.0 kW idle" in tiny and "facility limit 55.0 kW" in tiny and " MW" not in tiny
    write_site("tiny", tmp_path / "st.json")
    _, status, _ = run_cli(capsys, "status", "--state", "st.json")
    assert "LOAD kW" in status and "MW" not in status


def test_simulate_prints_kw_and_kwh_on_a_small_site(tmp_path, capsys):
    status, out, _ = run_cli(capsys, "simulate", "--cluster", "tiny", "--hours", "2",
                             "--no-plots", "--no-progress", "--out", str(tmp_path / "run"))
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    assert status == 0
    assert "energy (kWh)" in lines and "energy (MWh)" not in lines
    peak = lines["peak facility kW / limit"].split()
    assert peak[-1] == "55.0" and 0 < float(peak[-3]) <= 55.0  # not "0.1 / 0"


def test_facility_mw_applies_to_any_cluster(tmp_path, capsys):
    from gpusched import Cluster

    spec = tmp_path / "site.json"
    Cluster.preset("tiny").save(spec)
    status, out, err = run_cli(capsys, "show", str(spec), "--facility-mw", "0.05", "--jobs",
                               "0")
    assert status == 0 and "facility limit 50.0 kW" in out and err == ""
    status, out, err = run_cli(capsys, "show", "colossus-array", "--facility-mw", "1",
                               "--jobs", "0")
    assert status == 0 and "facility limit 1,000.0 kW" in out and err == ""
    status, out, err = run_cli(capsys, "show", "colossus-100k", "--facility-mw", "1",
                               "--jobs", "0")
    assert status == 2 and "all-idle cluster already breaks 'facility IT limit'" in err


# ---- every subcommand over bad arguments: one typed line, a documented status ----------

# (argv, exit status, error type, words in the message).  {st} is a good tiny state
# file, {bad} a corrupt one, {missing} an absent path, {dir} an empty directory.
BAD_ARGUMENTS: list[tuple[list[str], int, str, str]] = [
    (["--nope"], 2, "UsageError", "unrecognized arguments"),
    (["nope"], 2, "UsageError", "invalid choice: 'nope'"),
    (["status"], 2, "UsageError", "exactly one of --state FILE and --server URL"),
    (["status", "--state", "{st}", "--server", "http://127.0.0.1:9"], 2, "UsageError",
     "exactly one"),
    (["status", "--state", "{missing}"], 2, "SnapshotError", "cannot read state file"),
    (["status", "--state", "{bad}"], 2, "SnapshotError", "not a complete gpusched state"),
    (["status", "--state", "{dir}"], 2, "SnapshotError", "cannot read state file"),
    (["status", "--state", "{st}", "--top", "-1"], 2, "UsageError", "--top -1"),
    (["status", "--state", "{st}", "--top", "x"], 2, "UsageError", "invalid int value"),
    (["status", "--state", "{st}", "--rows", "some"], 2, "UsageError", "invalid choice"),
    (["status", "--state", "{st}", "--cluster", "colossus-array"], 2, "SnapshotError",
     "not of 'colossus-array'"),
    (["status", "--state", "{st}", "--cluster", "nope"], 2, "SpecError", "neither a preset"),
    (["status", "--state", "{st}", "--backend", "fortran"], 2, "UsageError",
     "invalid choice"),
    (["status", "--server", "127.0.0.1:8787"], 2, "UsageError", "not an http://"),
    (["status", "--server", "http://127.0.0.1:9", "--cluster", "tiny"], 2, "UsageError",
     "--cluster is the server's own"),
    (["status", "--server", "http://127.0.0.1:9"], 4, "ServiceUnreachableError",
     "cannot reach http://127.0.0.1:9/v1/snapshot"),
    (["jobs", "--state", "{st}", "--sort", "age"], 2, "UsageError", "invalid choice"),
    (["jobs", "--state", "{bad}"], 2, "SnapshotError", "state file"),
    (["place", "--state", "{st}"], 2, "UsageError", "required: --id, --gpus"),
    (["place", "--state", "{st}", "--id", "x", "--gpus", "0"], 2, "JobError",
     "gpus=0 must be at least 1"),
    (["place", "--state", "{st}", "--id", "x", "--gpus", "2.5"], 2, "UsageError",
     "invalid int value: '2.5'"),
    (["place", "--state", "{st}", "--id", "x", "--gpus", "12"], 2, "JobError", "12"),
    (["place", "--state", "{st}", "--id", "", "--gpus", "8"], 2, "JobError",
     "1 to 256 characters"),
    (["place", "--state", "{st}", "--id", "train-a", "--gpus", "8"], 2, "DuplicateJobError",
     "already placed"),
    (["place", "--state", "{st}", "--id", "x", "--gpus", "8", "--min-cap-w", "900"], 2,
     "JobError", "min_cap_w=900 is above max_cap_w=700"),
    (["place", "--state", "{st}", "--id", "x", "--gpus", "8", "--max-cap-w", "9000"], 2,
     "JobError", "9000"),
    (["place", "--state", "{st}", "--id", "x", "--gpus", "8", "--pod", "nope"], 2,
     "JobError", "pod 'nope' is not a pod"),
    (["place", "--state", "{st}", "--id", "x", "--gpus", "8", "--pod", "99"], 2,
     "JobError", "99"),
    (["place", "--state", "{missing}", "--id", "x", "--gpus", "8"], 2, "UsageError",
     "pass --create"),
    (["place", "--state", "{bad}", "--create", "--id", "x", "--gpus", "8"], 2,
     "SnapshotError", "not a complete"),
    (["place", "--server", "http://127.0.0.1:9", "--create", "--id", "x", "--gpus", "8"], 2,
     "UsageError", "--create is for a state file"),
    (["place", "--server", "http://127.0.0.1:9", "--id", "x", "--gpus", "8"], 4,
     "ServiceUnreachableError", "cannot reach"),
    (["release", "--state", "{st}"], 2, "UsageError", "required: JOB"),
    (["release", "--state", "{st}", "nope"], 2, "UnknownJobError", "no placed job 'nope'"),
    (["release", "--state", "{missing}", "x"], 2, "UsageError", "does not exist"),
    (["explain", "--state", "{st}"], 2, "UsageError", "required: --gpus"),
    (["explain", "--state", "{st}", "--gpus", "-8"], 2, "JobError", "at least 1"),
    (["explain", "--state", "{st}", "--gpus", "8", "--min-cap-w", "50"], 2, "JobError",
     "50"),
    (["show", "nope"], 2, "SpecError", "neither a preset"),
    (["show", "{bad}"], 2, "SpecError", ""),
    (["show", "tiny", "--facility-mw", "0"], 2, "SpecError", "positive number of MW"),
    (["show", "tiny", "--facility-mw", "nan"], 2, "SpecError", "positive number of MW"),
    (["show", "tiny", "--facility-mw", "x"], 2, "UsageError", "invalid float value"),
    (["show", "tiny", "--jobs", "many"], 2, "UsageError", "invalid int value"),
    (["simulate", "--cluster", "tiny", "--hours", "0"], 2, "SpecError", "--hours=0.0"),
    (["simulate", "--cluster", "tiny", "--hours", "soon"], 2, "UsageError",
     "invalid float value"),
    (["simulate", "--cluster", "tiny", "--policy", "nope"], 2, "", "nope"),
    (["simulate", "--cluster", "nope"], 2, "SpecError", "neither a preset"),
    (["simulate", "--cluster", "tiny", "--facility-mw", "80"], 2, "SpecError",
     "--facility-mw"),
    (["simulate", "--cluster", "tiny", "--trace", "{missing}"], 2, "", "missing"),
    (["serve"], 2, "UsageError", "required: --state"),
    (["serve", "--state", "{dir}", "--port", "70000"], 2, "", "--port 70000"),
    (["serve", "--state", "{dir}", "--port", "http"], 2, "UsageError", "invalid int value"),
    (["serve", "--state", "{bad}", "--port", "0"], 2, "", "is not usable"),
    (["serve", "--state", "{dir}", "--snapshot-every", "0"], 2, "UsageError", "must be >= 1"),
    (["serve", "--state", "{dir}", "--token", ""], 2, "", "is empty"),
    (["serve", "--state", "{dir}", "--kube-api", "http://127.0.0.1:9", "--kube-token-file",
      "{missing}"], 2, "FileNotFoundError", "missing"),
    (["serve", "--cluster", "nope", "--state", "{dir}"], 2, "SpecError", "neither a preset"),
    (["drain", "--state", "{st}"], 2, "UsageError", "name the nodes to drain"),
    (["drain", "--state", "{st}", "nope-1"], 2, "UnknownNodeError", "'nope-1'"),
    (["drain", "--state", "{st}", "99"], 2, "UnknownNodeError", "0..7"),
    (["fail", "--state", "{st}", "--domain", "nowhere"], 2, "DomainError", "'nowhere'"),
    (["fail", "--state", "{st}", "rack-1-n[0-1", ], 2, "SpecError", "without ']'"),
    (["restore", "--state", "{missing}", "0"], 2, "UsageError", "does not exist"),
    (["sweep"], 2, "UsageError", "required: spec"),
    (["sweep", "{missing}"], 2, "SweepError", "no sweep file"),
    (["sweep", "{bad}"], 2, "SweepError", ""),
    (["slurm"], 2, "UsageError", "required: slurm_command"),
    (["slurm", "export", "tiny"], 2, "UsageError", "--out"),
    (["slurm", "export", "nope", "--out", "{dir}"], 2, "SpecError", "neither a preset"),
]


def _fill(argv: list[str], tmp_path: Path) -> list[str]:
    paths = {"st": tmp_path / "st.json", "bad": tmp_path / "corrupt.json",
             "missing": tmp_path / "missing", "dir": tmp_path / "emptydir"}
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]


def test_the_table_reaches_every_subcommand():
    named = {argv[0] for argv, *_ in BAD_ARGUMENTS}
    assert set(COMMANDS) | set(_PLUGGED) <= named


@pytest.mark.parametrize("argv, status, error_type, words", BAD_ARGUMENTS,
                         ids=[" ".join(a) for a, *_ in BAD_ARGUMENTS])
def test_bad_arguments_get_one_typed_line_and_a_documented_status(
        tmp_path, monkeypatch, capsys, argv, status, error_type, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPUSCHED_TOKEN", raising=False)
    write_site("tiny", tmp_path / "st.json")
    (tmp_path / "corrupt.json").write_text('{"gpusched_state": 1, "sha2')
    (tmp_path / "emptydir").mkdir()
    before = (tmp_path / "st.json").read_bytes()
    got, out, err = run_cli(capsys, *_fill(argv, tmp_path))
    assert got == status and got in EXIT_CODES, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    command = argv[0] if not argv[0].startswith("-") else None
    head = f"gpusched {command}: " if command else "gpusched: "
    assert err.startswith(head), err
    if error_type:
        assert err.startswith(f"{head}{error_type}: "), err
    assert words in err, err
    assert (tmp_path / "st.json").read_bytes() == before


def test_a_missing_extra_makes_the_subcommand_unavailable_not_a_traceback(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if gpusched[serve] were absent
    status, _, err = run_cli(capsys, "serve", "--cluster", "tiny", "--state",
                             str(tmp_path / "s"))
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("gpusched serve is unavailable: it needs the Python module "
                          "'uvicorn'")
    assert not (tmp_path / "s").exists()


def test_a_user_mistake_prints_no_traceback_from_the_process(tmp_path):
    # the whole process, as a shell runs it: an unreadable token file before serving
    result = subprocess.run(
        [sys.executable, "-m", "gpusched", "serve", "--cluster", "tiny", "--state",
         str(tmp_path / "s"), "--kube-api", "http://127.0.0.1:9", "--kube-token-file",
         str(tmp_path / "none")], capture_output=True, text=True, timeout=120, cwd=CHECKOUT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_closed_pipe_is_not_an_error(tmp_path):
    # `gpusched show | head -1`: the reader goes away early
    proc = subprocess.Popen([sys.executable, "-m", "gpusched", "show", "tiny", "--jobs",
                             "200"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=CHECKOUT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "Broken" not in err


# ---- help ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", [*COMMANDS, *_PLUGGED])
def test_every_subcommand_has_a_description_examples_and_exit_codes(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: gpusched {command}")
    assert "\nexamples:\n  gpusched " in out or "\nexamples:\n  GPUSCHED_" in out
    assert "\nexit codes:\n  0    success" in out
    assert "``" not in out and ":class:" not in out  # no raw reST


def test_help_shows_defaults(capsys):
    assert main(["status", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default auto:" in out and "(default 5)" in out
    assert main(["serve", "--help"]) == 0
    assert "default: warning" in " ".join(capsys.readouterr().out.split())


def test_bare_gpusched_prints_help_and_version_works(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gpusched") and "exit codes:" in out
    for command in [*COMMANDS, *_PLUGGED]:
        assert f"    {command}" in out
    from gpusched import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gpusched {__version__}\n"


def test_readme_documents_the_same_exit_codes():
    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Operating a site from the command line", 1)[1]
    section = section.split("\n## ", 1)[0]
    for code in EXIT_CODES:
        assert f"| {code} |" in section, f"exit code {code} is not in the README's table"


# ---- over a running service ---------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    need_modules("uvicorn", "starlette", pip="'gpusched[serve]'")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GPUSCHED_TOKEN": "s3cret",
           "PYTHONPATH": str(CHECKOUT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusched", "serve", "--cluster", "tiny", "--state",
         str(tmp_path / "served"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "listening on http://" in line:
                yield line.rsplit("listening on ", 1)[1].split()[0]
                break
            if not line and proc.poll() is not None:
                raise AssertionError(f"server did not start: {proc.stderr.read()!r}")
        else:
            raise AssertionError("server did not start within 60 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_views_and_job_commands_over_a_running_service(server, monkeypatch, capsys):
    monkeypatch.delenv("GPUSCHED_TOKEN", raising=False)
    status, _, err = run_cli(capsys, "place", "--server", server, "--id", "a", "--gpus", "16")
    assert status == 2 and "HTTP 401" in err and "set $GPUSCHED_TOKEN" in err
    monkeypatch.setenv("GPUSCHED_TOKEN", "s3cret")
    status, out, _ = run_cli(capsys, "place", "--server", server, "--id", "a", "--gpus",
                             "16", "--min-cap-w", "400")
    assert status == 0 and out == "placed a: 16 GPUs on 2 node(s) rack-1-n[0-1] at 700 W\n"
    status, out, _ = run_cli(capsys, "place", "--server", server, "--id", "b", "--gpus",
                             "32", "--min-cap-w", "350")
    assert status == 0
    status, out, _ = run_cli(capsys, "jobs", "--server", server, "--json")
    rows = {r["job_id"]: r for r in json.loads(out)["jobs"]}
    assert sorted(rows) == ["a", "b"] and rows["b"]["hostlist"] == "rack-3-n[0-1],rack-4-n[0-1]"
    assert all(abs(r["since"] - time.time()) < 600 for r in rows.values())
    # the same jobs in a state file give the same status, byte for byte but the source
    status, out, _ = run_cli(capsys, "status", "--server", server)
    assert status == 0 and out.startswith(f"tiny ({server}): 2 jobs; 48 of 64 GPUs busy")
    status, out, _ = run_cli(capsys, "explain", "--server", server, "--gpus", "8")
    assert status == 3 and "facility IT limit" in out
    status, out, err = run_cli(capsys, "release", "--server", server, "b", "nope")
    assert status == 2 and out == "released b: 32 GPUs on rack-3-n[0-1],rack-4-n[0-1]\n"
    assert "HTTP 404" in err
    status, out, _ = run_cli(capsys, "jobs", "--server", server)
    assert status == 0 and out.splitlines()[1].startswith("a ")
    # the node commands go to the service's /v1/site endpoints (journaled there)
    status, out, _ = run_cli(capsys, "fail", "--server", server, "rack-1-n1", "--json")
    assert status == 0 and json.loads(out) == {"changed": ["rack-1-n1"], "jobs_hit": ["a"]}
    status, out, _ = run_cli(capsys, "jobs", "--server", server, "--json")
    assert json.loads(out)["jobs"][0]["state"] == "degraded (lost 1 node)"
    status, out, _ = run_cli(capsys, "restore", "--server", server, "1")
    assert status == 0 and out == "restore: 1 node(s) changed: rack-1-n1\n"
    status, out, _ = run_cli(capsys, "restore", "--server", server, "1")
    assert status == 0 and "already so" in out
    status, _, err = run_cli(capsys, "drain", "--server", server, "nope-1")
    assert status == 2 and "HTTP 404" in err


def test_node_commands_fail_drain_and_restore_a_state_file(site, capsys):
    assert main(["jobs", "--state", "st.json", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    victim = jobs[0]
    node = victim["hostlist"].split(",")[0]
    first = expand_hostlist(node)[0]
    assert main(["fail", "--state", "st.json", first, "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["jobs_hit"] == [victim["job_id"]]
    assert main(["jobs", "--state", "st.json", "--json"]) == 0
    states = {j["job_id"]: j["state"] for j in json.loads(capsys.readouterr().out)["jobs"]}
    assert states[victim["job_id"]] == "degraded (lost 1 node)"
    assert main(["status", "--state", "st.json", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["down"] == 8
    # retries are safe: a second fail hits nothing, restoring twice changes nothing
    assert main(["fail", "--state", "st.json", first, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs_hit"] == []
    assert main(["restore", "--state", "st.json", first]) == 0
    assert "1 node(s) changed" in capsys.readouterr().out
    assert main(["restore", "--state", "st.json", first]) == 0
    assert "already so" in capsys.readouterr().out
    assert main(["drain", "--state", "st.json", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] == ["rack-4-n1"]
