"""`gpusched simulate` end to end on small clusters, and the PNGs it writes."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import pytest

from gpusched import Cluster
from gpusched.cli import main
from gpusched.simulate import TraceJob, simulate
from gpusched.simulate.plots import write_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.01, f"{path} is blank"


def test_pictures_are_valid_pngs(tmp_path, tiny):
    jobs = [TraceJob(f"j{i}", 60.0 * i, 1800.0, g, min_cap_w=350)
            for i, g in enumerate([16, 8, 8, 4, 16, 2])]
    results = [simulate(tiny, jobs, p) for p in ("fifo", "oblivious")]
    paths = write_plots(results, tmp_path)
    assert sorted(p.name for p in paths) == ["classes.png", "floor-fifo.png",
                                              "floor-oblivious.png", "jct-cdf.png",
                                              "power.png"]
    for path in paths:
        assert_valid_png(path)


def test_cli_runs_and_writes_report_summary_and_pngs(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["simulate", "--cluster", "tiny", "--hours", "3", "--load-scale", "1.2",
                 "--policy", "fifo,backfill,oblivious", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "delivered GPU-hours x s" in printed and "oblivious" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"fifo", "backfill", "oblivious"}
    assert report["workload"]["trace"] == "itp-cluster04-14d"
    assert report["workload"]["frontier_gangs"] == []     # none fit a 64-GPU cluster
    for name in ("fifo", "backfill"):
        assert report["results"][name]["violations"]["row_seconds"] == 0
    assert report["results"]["oblivious"]["violations"]["row_seconds"] > 0
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# gpusched simulate") and "| row violations |" in summary
    assert "`oblivious` would have broken" in summary
    for name in ("power.png", "floor-fifo.png", "floor-oblivious.png", "jct-cdf.png",
                 "classes.png"):
        assert_valid_png(out / name)


def test_cli_refuses_a_bad_trace_with_its_line_number(tmp_path, capsys):
    trace = tmp_path / "bad.csv"
    trace.write_text("job_id,submission_time,duration,num_gpu\na,0,100,8\nb,10,-5,8\n"
                     "c,20,50,4\n")
    args = ["simulate", "--cluster", "tiny", "--trace", str(trace), "--policy", "fifo",
            "--out", str(tmp_path / "out"), "--no-progress", "--no-plots", "--hours", "1"]
    assert main(args) == 2
    assert "line 3: duration '-5' must be a positive" in capsys.readouterr().err
    assert main(args + ["--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 bad trace line(s)" in captured.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["workload"]["skipped_lines"] == 1


def test_cli_refuses_a_gang_larger_than_the_cluster(tmp_path, capsys):
    trace = tmp_path / "big.csv"
    trace.write_text("job_id,submission_time,duration,num_gpu\na,0,100,128\n")
    assert main(["simulate", "--cluster", "tiny", "--trace", str(trace), "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    assert "line 2: num_gpu=128 is larger than the cluster (64 GPUs)" in capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["--policy", "lottery"], "unknown policy 'lottery'"),
    (["--hours", "0"], "--hours=0.0 must be positive"),
    (["--cluster", "tiny", "--facility-mw", "50"], "--facility-mw applies to"),
])
def test_cli_bad_options(tmp_path, capsys, args, words):
    assert main(["simulate", "--out", str(tmp_path), "--no-progress", *args]) == 2
    assert words in capsys.readouterr().err


def test_synthetic_workload_through_the_cli(tmp_path):
    out = tmp_path / "syn"
    assert main(["simulate", "--cluster", "colossus-array", "--trace", "synthetic",
                 "--hours", "4", "--policy", "backfill", "--out", str(out),
                 "--no-progress", "--no-plots", "--seed", "5"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["workload"]["kind"] == "synthetic"
    assert report["results"]["backfill"]["jobs"]["arrived"] == report["workload"]["jobs"]
    assert Cluster.preset("colossus-array").num_gpus == report["cluster"]["gpus"]


def run_trace(tmp_path, data: bytes, *extra: str, cluster: str = "tiny") -> int:
    trace = tmp_path / "trace.csv"
    trace.write_bytes(data)
    return main(["simulate", "--cluster", cluster, "--trace", str(trace), "--policy", "fifo",
                 "--out", str(tmp_path / "out"), "--no-progress", "--no-plots", "--hours", "2",
                 *extra])


def test_cli_ends_on_a_one_line_trace(tmp_path, capsys):
    # issue 13, finding 15: every job at one instant gave a period of 0, and the run
    # never ended.  The alarm fails the test instead of hanging it on such code.
    import signal

    def expire(signum, frame):
        raise AssertionError("gpusched simulate still running after 60 s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    try:
        code = run_trace(tmp_path, b"job_id,submission_time,duration,num_gpu\na,0,600,8\n",
                         "--frontier", "0")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["workload"]["jobs"] == 1
    assert report["results"]["fifo"]["jobs"]["done"] == 1


@pytest.mark.parametrize("line, words", [
    (b"b,10,100,nan", "line 3: submit time '10', duration '100' and num_gpu 'nan'"),
    (b"b,10,100,1e400", "line 3: submit time '10', duration '100' and num_gpu '1e400'"),
    (b"b\xff,10,100,8", "line 3: byte 0xff at column 2 is not UTF-8"),
    (b"b,10,100," + b"1" * 140_000, "line 3: the line is longer than 131,072 bytes"),
])
def test_cli_refuses_or_skips_an_unreadable_line_without_a_traceback(tmp_path, capsys, line,
                                                                     words):
    data = b"job_id,submission_time,duration,num_gpu\na,0,100,8\n" + line + b"\nc,20,50,4\n"
    assert run_trace(tmp_path, data) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert run_trace(tmp_path, data, "--skip-bad") == 0
    assert "skipped 1 bad trace line(s), e.g. line 3:" in capsys.readouterr().err


@pytest.fixture
def four_gpu_site(tmp_path):
    spec = Cluster.preset("tiny").to_dict()
    spec["power"] = {**spec.get("power", {}), "gpus_per_node": 4}
    path = tmp_path / "four-gpu.json"
    path.write_text(json.dumps(spec))
    assert Cluster.resolve(str(path)).gpus_per_node == 4
    return str(path)


def test_cli_checks_gangs_against_the_sites_gpus_per_node(tmp_path, capsys, four_gpu_site):
    # issue 13, finding 17: a 6-GPU line passed the hard-coded 8-GPU check on a
    # 4-GPU-per-node site and aborted the run inside the simulation, unskippable.
    data = b"job_id,submission_time,duration,num_gpu\na,0,100,4\nb,10,100,6\nc,20,50,8\n"
    assert run_trace(tmp_path, data, "--gang-scale", "1", cluster=four_gpu_site) == 2
    err = capsys.readouterr().err
    assert "line 3: num_gpu=6; the site has 4 GPUs per node" in err
    assert run_trace(tmp_path, data, "--gang-scale", "1", "--skip-bad",
                     cluster=four_gpu_site) == 0
    assert "skipped 1 bad trace line(s), e.g. line 3: num_gpu=6" in capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["workload"]["trace_jobs"] == 2
    assert report["results"]["fifo"]["jobs"]["arrived"] >= 2


def test_cli_synthetic_mix_on_six_gpu_nodes(tmp_path):
    spec = Cluster.preset("colossus-array").to_dict()
    spec["power"] = {**spec.get("power", {}), "gpus_per_node": 6}
    path = tmp_path / "six-gpu.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "syn"
    assert main(["simulate", "--cluster", str(path), "--trace", "synthetic", "--hours", "2",
                 "--policy", "fifo", "--out", str(out), "--no-progress", "--no-plots"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["results"]["fifo"]["jobs"]["arrived"] == report["workload"]["jobs"] > 0
