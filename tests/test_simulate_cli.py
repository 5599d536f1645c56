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
    assert sorted(p.name for p in paths) == ["floor-fifo.png", "floor-oblivious.png",
                                              "jct-cdf.png", "power.png"]
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
    for name in ("power.png", "floor-fifo.png", "floor-oblivious.png", "jct-cdf.png"):
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
