"""gpusched.sweep on local processes: sweep files, resume, failures, tables, pictures.

The sweeps are tiny (colossus-100k at 1/32, 3,584 GPUs, the synthetic mix: 274 jobs
over 4 simulated hours, well under a second a run).  The real-Dask tests are in
test_sweep_dask.py.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpusched.cli import main
from gpusched.errors import GpuschedError, SweepError
from gpusched.sweep import parse_spec, run
from gpusched.sweep.plots import pareto_front
from gpusched.sweep.tables import WALL_COLUMNS, summarise

from .test_simulate_cli import assert_valid_png

CHECKOUT = Path(__file__).resolve().parent.parent
BASE = {"cluster": "colossus-100k", "cluster_scale": 0.03125, "trace": "synthetic",
        "hours": 4, "frontier": 0}


def small(**grid):
    return {"sweep": {"name": "t", "replications": 2},
            "base": dict(BASE), "grid": grid or {"policy": ["fifo", "backfill"],
                                                 "facility_mw": [70, 110]}}


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in WALL_COLUMNS} for r in rows]


@pytest.fixture(scope="module")
def threads():
    with ThreadPoolExecutor(2) as pool:
        yield pool


# ---- the sweep file -----------------------------------------------------------------

BAD_SPECS = [
    # (name, sweep dict, field, words in the message)
    ("unknown option", {"grid": {"polcy": ["fifo"]}}, "grid.polcy",
     ("unknown simulate option", "policy")),
    ("renamed option", {"grid": {"failures": [0.01]}}, "grid.failures",
     ("not a sweep option", "'failure_rate'")),
    ("renamed option in base", {"base": {"spare_policy": "two-per-pod"}},
     "base.spare_policy", ("'spares'",)),
    ("a negative failure rate", {"grid": {"failure_rate": [-1e-5]}}, "grid.failure_rate",
     (">= 0",)),
    ("fractional spares", {"base": {"spares": 1.5}}, "base.spares", ("whole number",)),
    ("planned option in a point", {"points": [{"envelope": "curtail-25"}]},
     "points[0].envelope", ("'demand_response'",)),
    ("bad policy", {"grid": {"policy": ["fifo", "best"]}}, "grid.policy",
     ("one policy of", "backfill")),
    ("comma policies", {"base": {"policy": "fifo,optimize"}}, "base.policy",
     ("one policy",)),
    ("negative MW", {"grid": {"facility_mw": [90, -1]}}, "grid.facility_mw",
     ("positive",)),
    ("NaN hours", {"base": {"hours": float("nan")}}, "base.hours", ("positive",)),
    ("bool seed", {"base": {"seed": True}}, "base.seed", ("whole number",)),
    ("axis not a list", {"grid": {"facility_mw": 90}}, "grid.facility_mw",
     ("non-empty list",)),
    ("empty axis", {"grid": {"facility_mw": []}}, "grid.facility_mw", ("non-empty list",)),
    ("repeated value", {"grid": {"facility_mw": [90, 90]}}, "grid.facility_mw",
     ("repeats",)),
    ("unknown section", {"gird": {"policy": ["fifo"]}}, "gird", ("unknown section",)),
    ("name with a slash", {"sweep": {"name": "../x"}}, "sweep.name", ("directory name",)),
    ("unknown sweep key", {"sweep": {"replication": 3}}, "sweep.replication",
     ("replications",)),
    ("zero replications", {"sweep": {"replications": 0}}, "sweep.replications",
     ("1 to 1000",)),
    ("seed axis and replications", {"sweep": {"replications": 2},
                                    "grid": {"seed": [0, 1]}}, "sweep.replications",
     ("not both",)),
    ("negative timeout", {"sweep": {"timeout_s": -5}}, "sweep.timeout_s", ("positive",)),
    ("points not a list", {"points": {"policy": "fifo"}}, "points", ("list of tables",)),
    ("duplicate run", {"grid": {"policy": ["fifo"]}, "points": [{"policy": "fifo"}]},
     "points[0]", ("twice",)),
    ("heatmap of one axis", {"grid": {"policy": ["fifo", "backfill"]},
                             "plots": {"heatmap": ["policy"]}}, "plots.heatmap",
     ("two different",)),
    ("heatmap off the axes", {"grid": {"policy": ["fifo", "backfill"]},
                              "plots": {"heatmap": ["policy", "hours"]}}, "plots.heatmap",
     ("not an axis",)),
    ("unknown metric", {"plots": {"metric": "throughput"}}, "plots.metric",
     ("unknown metric", "delivered_gpu_hours")),
    ("too many runs", {"grid": {"seed": list(range(400)), "facility_mw":
                                list(range(1, 301))}}, "grid", ("more than",)),
]


@pytest.mark.parametrize("data, field, words", [b[1:] for b in BAD_SPECS],
                         ids=[b[0] for b in BAD_SPECS])
def test_a_bad_sweep_file_names_the_key(data, field, words):
    with pytest.raises(SweepError) as info:
        parse_spec(data)
    assert isinstance(info.value, (GpuschedError, ValueError))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    for word in words:
        assert word.lower() in str(info.value).lower()


def test_a_bad_file_changes_nothing_on_disk(tmp_path):
    out = tmp_path / "out"
    spec = tmp_path / "bad.toml"
    spec.write_text('[grid]\nfailures = [0.01]\n')
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    assert not out.exists()
    spec.write_text("[grid\n")
    with pytest.raises(SweepError, match="not valid TOML"):
        run(spec, out)
    with pytest.raises(SweepError, match="no sweep file") as info:
        run(tmp_path / "missing.toml", out)
    assert info.value.field == "spec"
    assert not out.exists()


def test_grid_points_and_replications_expand_in_order():
    spec = parse_spec({"sweep": {"replications": 2}, "base": {"trace": "synthetic"},
                       "grid": {"policy": ["fifo", "backfill"], "facility_mw": [80, 90]},
                       "points": [{"policy": "optimize", "load_scale": 2.0}]})
    runs = spec.runs()
    assert [(r.config["policy"], r.config["facility_mw"], r.config["seed"]) for r in runs] == [
        ("fifo", 80, 0), ("fifo", 80, 1), ("fifo", 90, 0), ("fifo", 90, 1),
        ("backfill", 80, 0), ("backfill", 80, 1), ("backfill", 90, 0), ("backfill", 90, 1),
        ("optimize", None, 0), ("optimize", None, 1)]
    assert runs[-1].config["load_scale"] == 2.0 and runs[0].config["load_scale"] == 1.6
    assert len({r.id for r in runs}) == len(runs)
    assert spec.axes == ["policy", "facility_mw", "load_scale", "seed"]
    # the identity is the configuration and the version: the same file, the same ids
    again = parse_spec({"sweep": {"replications": 2}, "base": {"trace": "synthetic"},
                        "grid": {"facility_mw": [80, 90], "policy": ["fifo", "backfill"]},
                        "points": [{"policy": "optimize", "load_scale": 2.0}]})
    assert {r.id for r in again.runs()} == {r.id for r in runs}


def test_a_cluster_file_is_part_of_a_runs_identity(tmp_path):
    from gpusched import Cluster

    path = tmp_path / "site.toml"
    Cluster.preset("tiny").save(path)
    first = parse_spec({"base": {"cluster": str(path)}}).runs()[0].id
    Cluster.preset("tiny").with_limits(every_w=None, name="tiny-renamed").save(path)
    assert parse_spec({"base": {"cluster": str(path)}}).runs()[0].id != first


def test_a_simulate_keyword_the_table_lacks_is_passed_through(monkeypatch):
    # an option the simulator gains is sweepable at once: here simulate() is given a
    # new keyword, and a sweep that names it is accepted and hands it over
    import gpusched.simulate as sim

    real = sim.simulate
    seen = []

    def simulate(*args, heat_recirculation=0.0, **kwargs):
        seen.append(heat_recirculation)
        return real(*args, **kwargs)

    monkeypatch.setattr(sim, "simulate", simulate)
    spec = parse_spec({"base": {"cluster": "tiny", "trace": "synthetic", "hours": 1,
                                "policy": "fifo"}, "grid": {"heat_recirculation": [0.0, 0.02]}})
    assert [r.config["heat_recirculation"] for r in spec.runs()] == [0.0, 0.02]
    from gpusched.sweep.runner import run_one

    answers = [run_one({"id": r.id, "config": r.config, "version": r.identity["gpusched"],
                        "timeout_s": 60, "cluster_spec": None}) for r in spec.runs()]
    assert [a["status"] for a in answers] == ["ok", "ok"]
    assert seen == [0.0, 0.02]


def test_failures_spares_and_a_demand_response_are_sweep_options():
    from gpusched.sweep.runner import run_one

    spec = parse_spec({"base": {"cluster": "tiny", "trace": "synthetic", "hours": 6,
                                "policy": "fifo", "failure_rate": 5e-3,
                                "demand_response": 1.0},
                       "grid": {"spares": [0, 1]}})
    rows = [run_one({"id": r.id, "config": r.config, "version": r.identity["gpusched"],
                     "timeout_s": 120, "cluster_spec": None})["metrics"] for r in spec.runs()]
    assert [r["spare_gpus_mean"] > 0 for r in rows] == [False, True]
    assert all(r["jobs_hit"] is not None and r["over_envelope_mw_s"] == 0 for r in rows)


# ---- running ------------------------------------------------------------------------

def test_local_processes_run_resume_and_write_every_table(tmp_path):
    out = tmp_path / "sweep"
    first = run(small(), out, workers=2)
    assert first.ran == 8 and first.resumed == 0 and not first.failed
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert len(rows) == 8
    assert [(r["policy"], r["facility_mw"], r["seed"]) for r in rows][:3] == [
        ("fifo", "70", "0"), ("fifo", "70", "1"), ("fifo", "110", "0")]
    assert all(r["status"] == "ok" and float(r["delivered_gpu_hours"]) > 0 for r in rows)
    assert all(int(r["jobs"]) > 200 for r in rows)  # a few hundred jobs a run
    # each run has its own directory, named by its hash, with simulate's report
    for r in rows:
        run_dir = out / "runs" / r["run"]
        report = json.loads((run_dir / "report.json").read_text())
        assert list(report["results"]) == [r["policy"]]
        assert report["sweep"]["config"]["facility_mw"] == int(r["facility_mw"])
        assert (run_dir / "summary.md").is_file()
        total = report["results"][r["policy"]]["totals"]["delivered_gpu_hours"]
        assert float(r["delivered_gpu_hours"]) == total
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert len(summary) == 4 and all(s["runs"] == "2" for s in summary)
    # the resumed sweep runs nothing and gives the same table
    again = run(small(), out, workers=2)
    assert again.ran == 0 and again.resumed == 8
    assert comparable(again.rows) == comparable(first.rows)
    assert comparable(list(csv.DictReader(open(out / "runs.csv")))) == comparable(rows)
    for name in ("work-vs-mw.png", "heatmap.png", "pareto.png"):
        assert_valid_png(out / name)
    index = (out / "index.html").read_text()
    assert index.count("report.json</a>") == 8 and "work-vs-mw.png" in index


def test_a_widened_sweep_runs_only_the_new_points(tmp_path, threads):
    out = tmp_path / "sweep"
    run(small(policy=["fifo"], facility_mw=[70]), out, executor=threads, plots=False)
    wider = run(small(policy=["fifo"], facility_mw=[70, 90]), out, executor=threads,
                plots=False)
    assert (wider.ran, wider.resumed) == (2, 2)


def test_a_new_version_is_a_new_run_and_a_stale_worker_is_refused(tmp_path, threads,
                                                                  monkeypatch):
    out = tmp_path / "sweep"
    before = run(small(policy=["fifo"], facility_mw=[70]), out, executor=threads, plots=False)
    import gpusched.sweep.spec as spec_mod

    monkeypatch.setattr(spec_mod, "version", lambda: "99.0")
    after = run(small(policy=["fifo"], facility_mw=[70]), out, executor=threads, plots=False)
    assert after.resumed == 0 and after.ran == 2
    assert {r["run"] for r in after.rows}.isdisjoint(r["run"] for r in before.rows)
    # the workers here still run the real version: their answers are refused, not filed
    assert [r["status"] for r in after.rows] == ["failed", "failed"]
    assert "worker runs gpusched" in after.rows[0]["error"]


def test_failures_are_counted_listed_and_never_abort_the_rest(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[sweep]\nname = "f"\ntimeout_s = 120\n'
        '[base]\ncluster = "colossus-100k"\ncluster_scale = 0.03125\ntrace = "synthetic"\n'
        'hours = 2\nfrontier = 0\npolicy = "fifo"\n'
        '[grid]\nfacility_mw = [70, 90]\n'
        '[[points]]\ntrace = "/no/such/trace.csv"\n'
        '[[points]]\ncluster = "tiny"\ncluster_scale = 0.5\n')
    out = tmp_path / "out"
    code = main(["sweep", str(spec), "--out", str(out), "--workers", "2", "--no-progress",
                 "--no-plots"])
    assert code == 1
    text = capsys.readouterr().out
    assert "2 failed" in text
    assert "TraceError" in text and "cluster_scale" in text
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed"]
    failed = json.loads((out / "runs" / rows[2]["run"] / "result.json").read_text())
    assert "Traceback" in failed["traceback"]
    assert "failed" in (out / "index.html").read_text()


def test_a_run_over_its_timeout_is_stopped_and_rerun_on_resume(tmp_path, threads):
    data = small(policy=["fifo"], facility_mw=[70])
    data["sweep"]["timeout_s"] = 1e-6
    out = tmp_path / "sweep"
    first = run(data, out, executor=threads, plots=False)
    assert [r["status"] for r in first.rows] == ["timeout", "timeout"]
    assert "timeout" in first.rows[0]["error"]
    second = run(small(policy=["fifo"], facility_mw=[70]), out, executor=threads, plots=False)
    assert second.ran == 2 and [r["status"] for r in second.rows] == ["ok", "ok"]


def test_the_index_links_a_runs_report_html_when_there_is_one(tmp_path, threads):
    from gpusched.sweep.driver import write_results
    from gpusched.sweep.spec import parse_spec as parse

    data = small(policy=["fifo"], facility_mw=[70])
    out = tmp_path / "sweep"
    result = run(data, out, executor=threads, plots=False)
    first, second = (r["run"] for r in result.rows)
    index = (out / "index.html").read_text()
    assert f"runs/{first}/report.json" in index and "report.html" not in index
    (out / "runs" / first / "report.html").write_text("<html></html>")
    write_results(parse(data), out, result.rows, plots=False)
    index = (out / "index.html").read_text()
    assert f"runs/{first}/report.html" in index and f"runs/{first}/report.json" not in index
    assert f"runs/{second}/report.json" in index


def test_a_users_directory_is_never_filled(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="not a sweep's") as info:
        run(small(), tmp_path)
    assert info.value.field == "out"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_dry_run_lists_runs_and_what_is_done(tmp_path, capsys, threads):
    spec = tmp_path / "s.toml"
    spec.write_text('[base]\ncluster = "tiny"\ntrace = "synthetic"\nhours = 1\n'
                    '[grid]\npolicy = ["fifo", "backfill"]\n')
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    assert "2 runs, 0 done, 2 to run" in capsys.readouterr().out
    run(spec, out, executor=threads, plots=False)
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    assert "2 runs, 2 done, 0 to run" in capsys.readouterr().out


def test_the_example_sweep_file_parses():
    from gpusched.sweep import load_spec

    spec = load_spec(CHECKOUT / "examples" / "sweep.toml")
    assert len(spec.runs()) == 36
    assert spec.axes == ["policy", "facility_mw", "seed"]


# ---- results ------------------------------------------------------------------------

def test_summary_means_and_student_t_intervals():
    rows = [{"policy": "fifo", "status": "ok", "seed": s, "energy_mwh": v}
            for s, v in enumerate([1.0, 2.0, 3.0])]
    rows.append({"policy": "fifo", "status": "failed", "seed": 3, "energy_mwh": None})
    (s,) = summarise(rows, ["policy"], ["energy_mwh"])
    assert s["runs"] == 3 and s["failed"] == 1 and s["energy_mwh_mean"] == 2.0
    # sd 1, n 3: t(0.975, 2) = 4.303 -> 4.303 / sqrt(3) = 2.484
    assert s["energy_mwh_ci95"] == pytest.approx(2.4841, abs=1e-4)
    (one,) = summarise(rows[:1], ["policy"], ["energy_mwh"])
    assert one["energy_mwh_ci95"] is None


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 5), (12, 5), (12, 4), (20, 9), (15, 9), (8, 1)]
    assert pareto_front(points) == [5, 2, 3]


# ---- the command and the package face -----------------------------------------------

def test_sweep_is_plugged_and_help_loads_no_dask():
    code = ("import contextlib, io, sys\nfrom gpusched.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "assert 'sweep' in out.getvalue()\nimport gpusched\n"
            "print(sorted(m for m in ('dask', 'distributed', 'gpusched.sweep') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=CHECKOUT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    result = subprocess.run([sys.executable, "-m", "gpusched", "sweep", "--help"],
                            cwd=CHECKOUT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--dask" in result.stdout


def test_dask_missing_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    # None in sys.modules makes `import distributed` raise ImportError
    monkeypatch.setitem(sys.modules, "distributed", None)
    spec = tmp_path / "s.toml"
    spec.write_text('[base]\ncluster = "tiny"\ntrace = "synthetic"\nhours = 1\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dask", "local"]) == 2
    assert "pip install 'gpusched[sweep]'" in capsys.readouterr().err
