"""What `gpusched simulate` writes (issue 17, parts 3-5): jobs.csv and why jobs waited,
censored waits, report.html, report.json's run record, the pictures, and --out."""

from __future__ import annotations

import csv
import io
import json
import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from gpusched import Cluster
from gpusched.cli import main
from gpusched.simulate import TraceJob, simulate
from gpusched.simulate.cli import prepare_out
from gpusched.simulate.plots import OKABE_ITO, write_plots
from gpusched.simulate.records import JOB_COLUMNS, jobs_csv
from gpusched.errors import OutputError
from tests.support.sites import BIG, facility_site


def rigid(job_id: str, submit_s: float, duration_s: float, gpus: int) -> TraceJob:
    return TraceJob(job_id, submit_s, duration_s, gpus, min_cap_w=700, max_cap_w=700)


def by_id(result) -> dict:
    return {j["id"]: j for j in result.jobs}


# Two nodes.  j1 (8 GPUs) runs 0..1000.  j2 (16 GPUs, arrives 100) needs both nodes.
# j3 (8 GPUs, arrives 200, 300 s) fits on the free node.
#  fifo: j2 waits 100..1000 for GPUs; j3 waits behind the blocked head (priority) from
#        200 to 1000, then for GPUs (j2 holds both nodes) until 1500.
#  backfill: j3 ends (500) before j2's reservation (1000): it runs 200..500 at once.
HOL = [rigid("j1", 0, 1000, 8), rigid("j2", 100, 500, 16), rigid("j3", 200, 300, 8)]


def test_fifo_records_and_why_each_job_waited_by_hand():
    result = simulate(facility_site(), HOL, "fifo", keep_jobs=True)
    jobs = by_id(result)
    j1, j2, j3 = jobs["j1"], jobs["j2"], jobs["j3"]
    assert (j1["start_s"], j1["finish_s"], j1["wait_s"], j1["wait_reason"]) == (0, 1000, 0, "")
    assert (j2["start_s"], j2["finish_s"], j2["wait_s"]) == (1000, 1500, 900)
    assert j2["wait_reason"] == "gpus" and j2["wait_gpus_s"] == 900
    assert (j3["start_s"], j3["finish_s"], j3["wait_s"]) == (1500, 1800, 1300)
    assert j3["wait_priority_s"] == 800 and j3["wait_gpus_s"] == 500
    assert j3["wait_reason"] == "priority"
    for j in jobs.values():   # the reasons add up to the wait, and nothing is censored
        assert sum(j[f"wait_{r}_s"] for r in ("gpus", "fragmentation", "power",
                                              "reservation", "priority")) == j["wait_s"]
        assert j["state"] == "done" and j["wait_censored"] == 0 and j["cap_w"] == 700
    assert j2["nodes"] == 2 and j2["hostlist"] == "rack-1-n[0-1]" and j2["pods"] == "pod-1"
    assert j3["jct_s"] == 1600


def test_backfill_starts_the_short_job_and_the_head_waits_for_gpus():
    jobs = by_id(simulate(facility_site(), HOL, "backfill", keep_jobs=True))
    assert (jobs["j3"]["start_s"], jobs["j3"]["wait_s"]) == (200, 0)
    assert jobs["j2"]["wait_reason"] == "gpus" and jobs["j2"]["wait_s"] == 900


def test_censoring_a_job_still_queued_waits_until_the_horizon():
    result = simulate(facility_site(), HOL, "fifo", horizon_s=1200, keep_jobs=True)
    jobs = by_id(result)
    assert jobs["j2"]["state"] == "running" and jobs["j2"]["finish_s"] is None
    assert jobs["j2"]["jct_s"] is None and jobs["j2"]["wait_censored"] == 0
    j3 = jobs["j3"]
    assert j3["state"] == "queued" and j3["start_s"] is None and j3["wait_censored"] == 1
    assert j3["wait_s"] == 1000                     # 200 .. the horizon at 1200
    assert (j3["wait_priority_s"], j3["wait_gpus_s"]) == (800, 200)
    w = result.metrics["jobs"]
    assert w["wait"]["censored"] == 1 and w["wait"]["jobs"] == 3
    assert w["wait"]["mean_h"] == pytest.approx((0 + 900 + 1000) / 3 / 3600, abs=1e-3)
    assert w["wait_started"]["mean_h"] == pytest.approx((0 + 900) / 2 / 3600, abs=1e-3)
    # queued GPU demand: 16 (j2) from 100, 24 with j3 from 200, 8 after j2 starts
    t, q = result.series["t_s"], result.series["queued_gpus"]
    assert [int(q[np.searchsorted(t, x, side="right") - 1]) for x in (50, 150, 500, 1100)] \
        == [0, 16, 24, 8]


def test_a_power_limit_is_named_as_the_reason():
    # one node busy at 700 W: 8,400 + 2,070 idle; both busy: 16,800 > 12,000
    jobs = [rigid("a", 0, 1000, 8), rigid("b", 100, 100, 8)]
    rec = by_id(simulate(facility_site(facility_w=12_000), jobs, "fifo", keep_jobs=True))["b"]
    assert rec["wait_reason"] == "power" and rec["wait_power_s"] == 900
    assert rec["wait_limit"].startswith("facility: ")


def test_free_gpus_on_the_wrong_nodes_are_fragmentation():
    # three 6-GPU jobs leave 2 GPUs free on each of 3 nodes: 6 free, no 4 on one node
    jobs = [rigid(f"s{i}", 0, 1000, 6) for i in range(3)] + [rigid("four", 100, 100, 4)]
    rec = by_id(simulate(facility_site(nodes=3), jobs, "fifo", keep_jobs=True))["four"]
    assert rec["wait_reason"] == "fragmentation" and rec["wait_fragmentation_s"] == 900


def test_jobs_csv_has_one_line_per_job_and_policy():
    results = [simulate(facility_site(), HOL, p, keep_jobs=True) for p in ("fifo", "backfill")]
    rows = list(csv.DictReader(io.StringIO(jobs_csv(results))))
    assert tuple(rows[0]) == JOB_COLUMNS
    assert [(r["policy"], r["job"]) for r in rows] == [
        (p, j) for p in ("fifo", "backfill") for j in ("j1", "j2", "j3")]
    j3 = rows[2]
    assert (j3["start_s"], j3["end_s"], j3["wait_reason"], j3["state"]) == \
        ("1500.0", "1800.0", "priority", "done")


# ---- the pictures --------------------------------------------------------------------

def vermillion_pixels(path) -> int:
    image = mpimg.imread(path)[..., :3]
    target = np.array([int(OKABE_ITO["vermillion"][i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.count_nonzero(np.abs(image - target).max(axis=2) < 0.03))


def test_the_oblivious_floor_map_shows_its_violations_in_red(tmp_path, tiny):
    jobs = [TraceJob(f"j{i}", 60.0 * i, 3600.0, g, min_cap_w=350)
            for i, g in enumerate([16, 16, 16, 16])]
    results = [simulate(tiny, jobs, p, keep_jobs=True) for p in ("fifo", "oblivious")]
    assert results[1].metrics["violations"]["row_seconds"] > 0
    paths = {p.name: p for p in write_plots(results, tmp_path)}
    assert set(paths) == {"power.png", "floor-fifo.png", "floor-oblivious.png", "jct-cdf.png",
                          "classes.png"}
    # fifo's map has red only in its legend's swatch; oblivious's, on racks and rows too
    assert vermillion_pixels(paths["floor-oblivious.png"]) > \
        vermillion_pixels(paths["floor-fifo.png"]) + 5000


# ---- the CLI: report.html, report.json, --out ------------------------------------------

def run_cli(out, *extra) -> int:
    # the bundled trace at 1.2x on tiny: oblivious breaks rows, fifo waits
    return main(["simulate", "--cluster", "tiny", "--hours", "3", "--load-scale", "1.2",
                 "--policy", "fifo,oblivious", "--no-progress", *(["--out", str(out)]
                                                                   if out else []), *extra])


def test_cli_writes_a_self_contained_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(out) == 0
    assert "open " + str(out / "report.html") in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    for name in ("power.png", "floor-fifo.png", "floor-oblivious.png", "jct-cdf.png",
                 "classes.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"<figure id='{name}'>" in page
    assert page.count("src='data:image/png;base64,") == 5
    for words in ("wait mean / p50 / p99 (h), all jobs*", "censored", "Why jobs waited",
                  "Caveats", "fifo", "oblivious would have broken", "command_line"):
        assert words in page
    report = json.loads((out / "report.json").read_text())
    run = report["run"]
    assert run["seed"] == 0 and run["gpusched_version"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["utc_time"])
    assert run["command_line"].startswith("gpusched simulate --cluster tiny ")
    assert "--load-scale 1.2" in run["command_line"]
    summary = (out / "summary.md").read_text()
    assert "![power.png](power.png)" in summary and "## Terms" in summary
    # a 55 kW site in kW, not "0.1 / 0" MW
    assert "| peak facility kW / limit |" in summary and "| energy (kWh) |" in summary
    assert "## Caveats" in summary and "censored" in summary
    rows = list(csv.DictReader((out / "jobs.csv").open()))
    arrived = {p: report["results"][p]["jobs"]["arrived"] for p in ("fifo", "oblivious")}
    assert len(rows) == sum(arrived.values())
    assert {r["state"] for r in rows} <= {"done", "running", "queued"}


def test_the_command_line_in_report_json_repeats_the_run(tmp_path):
    first = tmp_path / "a"
    assert run_cli(first, "--no-plots", "--seed", "4") == 0
    command = json.loads((first / "report.json").read_text())["run"]["command_line"]
    words = command.split()[1:]
    again = tmp_path / "b"
    words[words.index("--out") + 1] = str(again)
    assert main(words + ["--no-progress"]) == 0
    a, b = ((d / "jobs.csv").read_text() for d in (first, again))
    assert a == b


def test_a_run_never_overwrites_an_earlier_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(None, "--no-plots") == 0
    assert run_cli(None, "--no-plots") == 0
    runs = sorted(p.name for p in (tmp_path / "gpusched-out").iterdir())
    assert runs == ["run-001", "run-002"]
    out = tmp_path / "gpusched-out" / "run-001"
    before = (out / "jobs.csv").read_bytes()
    capsys.readouterr()
    assert run_cli(out, "--no-plots") == 2          # not empty: refused
    err = capsys.readouterr().err
    assert "is not empty" in err and "--force" in err and "Traceback" not in err
    assert (out / "jobs.csv").read_bytes() == before
    (out / "jobs.csv").write_text("mine")
    assert run_cli(out, "--no-plots", "--force") == 0
    assert (out / "jobs.csv").read_text().startswith("policy,job,")


@pytest.mark.parametrize("out, words", [
    ("/proc/nope", "--out /proc/nope: cannot create it"),
    ("/etc/passwd", "--out /etc/passwd is not a directory"),
    ("/etc/passwd/sub", "--out /etc/passwd/sub: cannot create it"),
    ("", "--out is empty"),
])
def test_a_bad_out_is_refused_before_any_work(tmp_path, capsys, out, words):
    # the trace does not exist either: the --out error must come first, with no traceback
    code = main(["simulate", "--cluster", "tiny", "--trace", str(tmp_path / "none.csv"),
                 "--out", out, "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_failed_run_removes_the_directory_it_created(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["simulate", "--cluster", "tiny", "--trace", str(tmp_path / "none.csv"),
                 "--out", str(out), "--no-progress"]) == 2
    assert not out.exists()


def test_prepare_out_raises_a_typed_error(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(OutputError) as err:
        prepare_out(str(tmp_path / "full"))
    assert err.value.field == "out"
    assert prepare_out(str(tmp_path / "full"), force=True) == (tmp_path / "full", False)
    assert prepare_out(str(tmp_path / "empty")) == (tmp_path / "empty", True)


def test_the_frontier_gangs_fate_is_in_the_summary():
    from dataclasses import replace

    from gpusched.simulate.report import frontier_fate, frontier_lines, summary_markdown
    jobs = [HOL[0], replace(HOL[1], kind="frontier"), HOL[2]]
    results = [simulate(facility_site(), jobs, "fifo", keep_jobs=True)]
    (fate,) = frontier_fate(results)
    assert (fate["job"], fate["gpus"], fate["state"], fate["why"]) == ("j2", 16, "done", "gpus")
    assert (fate["submit"], fate["start"], fate["wait"]) == ("0.03 h", "0.28 h", "0.25 h")
    assert frontier_lines(results) == [
        "j2 (16 GPUs, submitted at 0.03 h) under fifo: started at 0.28 h after waiting "
        "0.25 h (gpus), done at 0.42 h"]
    summary = summary_markdown(results, {"trace": "t", "jobs": 3, "horizon_h": 1,
                                         "load_scale": 1})
    assert "## Frontier gangs" in summary and "| fifo | j2 | 16 |" in summary


# ---- priority classes (the preemption issue, part 4) ---------------------------------

def class_tables(summary: str) -> dict[str, dict[str, list[str]]]:
    """summary.md's per-class tables: policy -> class -> the row's cells after the name."""
    tables: dict[str, dict[str, list[str]]] = {}
    section = summary.split("## Priority classes", 1)[1].split("\n## ", 1)[0]
    policy = None
    for line in section.splitlines():
        head = re.match(r"\*\*(.+?)\*\*: preemption (on|off)", line)
        if head:
            policy = head.group(1)
            tables[policy] = {}
        elif policy and line.startswith("| ") and not line.startswith("| class |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tables[policy][cells[0]] = cells[1:]
    return tables


@pytest.fixture(scope="module")
def preempting_run(tmp_path_factory):
    """The synthetic mix at 3x colossus-array's GPUs for 12 h: production fine-tuning
    jobs evict research ones under backfill-preempt; fifo never preempts."""
    out = tmp_path_factory.mktemp("classes") / "run"
    assert main(["simulate", "--cluster", "colossus-array", "--trace", "synthetic",
                 "--load-scale", "3", "--hours", "12", "--policy", "backfill-preempt,fifo",
                 "--no-progress", "--out", str(out)]) == 0
    return out, json.loads((out / "report.json").read_text())


def test_the_classes_add_up_to_the_policys_own_counters(preempting_run):
    _out, report = preempting_run
    for policy, result in report["results"].items():
        jobs, info = result["jobs"], result["policy_info"]
        classes = jobs["by_class"]
        assert list(classes) == ["large", "small"]           # highest priority first
        assert [c["name"] for c in classes.values()] == ["production fine-tuning", "research"]
        for key in ("arrived", "started", "done"):
            assert sum(c[key] for c in classes.values()) == jobs[key], (policy, key)
        censored = sum(c["wait"]["censored"] for c in classes.values())
        assert censored == jobs["wait"]["censored"] > 0
        if policy == "fifo":
            assert not info.get("preempt")
            assert all(c["preemptions"] == c["cap_downs"] == 0 for c in classes.values())
            continue
        assert info["evictions"] > 0
        assert sum(c["preemptions"] for c in classes.values()) == info["evictions"]
        assert sum(c["cap_downs"] for c in classes.values()) == info["cap_downs"]
        lost = sum(c["lost_gpu_h"] for c in classes.values())
        assert lost == pytest.approx(info["lost_gpu_h"], abs=0.1 * len(classes)) and lost > 0
        # only research is of lower priority than a blocked head: only it is evicted
        assert classes["large"]["preemptions"] == 0 and classes["small"]["preemptions"] > 0


def test_cap_downs_per_class_are_the_preemption_plans_cap_downs(tiny):
    # on the 55 kW tiny site power binds, so the plans lower caps as well as evict
    from gpusched.simulate import synthetic_jobs

    jobs = synthetic_jobs(tiny.num_gpus, 12 * 3600, load=2)
    result = simulate(tiny, jobs, "backfill-preempt", horizon_s=12 * 3600)
    info, classes = result.metrics["policy_info"], result.metrics["jobs"]["by_class"]
    assert info["cap_downs"] > 0
    assert sum(c["cap_downs"] for c in classes.values()) == info["cap_downs"]
    assert sum(c["preemptions"] for c in classes.values()) == info["evictions"] > 0
    fifo = simulate(tiny, jobs, "fifo", horizon_s=12 * 3600).metrics["jobs"]["by_class"]
    assert all(c["cap_downs"] == 0 for c in fifo.values())   # no plan, no cap-down


def test_the_class_wait_is_censored_and_the_frontier_start_delay_by_hand():
    from dataclasses import replace

    # j1 holds a node 0..1000; gang g1 (both nodes) arrives at 100 and starts at 1000;
    # gang g2 arrives at 200 and is still queued at the horizon, 1200
    jobs = [HOL[0], replace(HOL[1], id="g1", kind="frontier", priority=200),
            replace(HOL[1], id="g2", submit_s=200.0, kind="frontier", priority=200)]
    result = simulate(facility_site(), jobs, "fifo", horizon_s=1200, keep_jobs=True)
    delay = result.metrics["jobs"]["frontier_start_delay"]
    assert (delay["gangs"], delay["started"], delay["never_started"]) == (2, 1, 1)
    assert delay["mean_h"] == delay["p50_h"] == pytest.approx(950 / 3600, abs=1e-3)
    assert delay["max_h"] == pytest.approx(1000 / 3600, abs=1e-3)
    frontier = result.metrics["jobs"]["by_class"]["frontier"]
    assert frontier["name"] == "frontier pretraining" and frontier["priority"] == 200
    assert frontier["wait"]["censored"] == 1
    assert frontier["wait"]["max_h"] == pytest.approx(1000 / 3600, abs=1e-3)
    assert frontier["wait_started"]["max_h"] == pytest.approx(900 / 3600, abs=1e-3)
    assert list(result.metrics["jobs"]["by_class"]) == ["frontier", "trace"]
    from gpusched.simulate.report import frontier_delay_line
    assert frontier_delay_line(result) == (
        "fifo: 1 of 2 frontier gangs started; start delay p50 0.26 h, mean 0.26 h, max "
        "0.28 h; 1 never started (counted until the end of the run: lower bounds)")
    none = simulate(facility_site(), HOL, "fifo").metrics["jobs"]["frontier_start_delay"]
    assert none == {"gangs": 0, "started": 0, "never_started": 0, "mean_h": None,
                    "p50_h": None, "max_h": None}


def test_summary_and_report_html_have_the_class_table_per_policy(preempting_run):
    from gpusched.simulate.report import CLASS_COLUMNS

    out, report = preempting_run
    summary = (out / "summary.md").read_text()
    tables = class_tables(summary)
    assert set(tables) == {"backfill-preempt", "fifo"}
    for policy, table in tables.items():
        classes = report["results"][policy]["jobs"]["by_class"]
        assert list(table) == [c["name"] for c in classes.values()]
        for cls in classes.values():
            cells = table[cls["name"]]
            assert len(cells) == len(CLASS_COLUMNS) - 1
            w = cls["wait"]
            assert cells[0] == str(cls["priority"])
            assert cells[1] == f"{cls['arrived']:,} / {cls['started']:,}"
            assert cells[2] == f"{w['mean_h']:.2f} / {w['p50_h']:.2f} / {w['max_h']:.2f}"
            assert cells[4:] == [f"{cls['preemptions']:,}", f"{cls['lost_gpu_h']:,.1f}",
                                 f"{cls['cap_downs']:,}"]
    info = report["results"]["backfill-preempt"]["policy_info"]
    assert (f"**backfill-preempt**: preemption on (checkpoints every 60 min): "
            f"{info['preemption_plans']:,} plans, {info['evictions']:,} evictions") in summary
    assert "**fifo**: preemption off." in summary
    assert "- backfill-preempt: no frontier gang arrived" in summary
    for name, _term in CLASS_COLUMNS:                     # every column's term, once
        assert summary.count(f"- **{name}**: ") == 1
    assert "![classes.png](classes.png)" in summary
    page = (out / "report.html").read_text()
    assert "<h2 id=classes>Priority classes</h2>" in page and "href=#classes" in page
    assert page.count("<th>production fine-tuning</th>") == 2   # one table per policy
    assert "<figure id='classes.png'>" in page
    assert "classes.png" in report["files"]


def colour_pixels(path, colour: str) -> int:
    image = mpimg.imread(path)[..., :3]
    target = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.count_nonzero(np.abs(image - target).max(axis=2) < 0.03))


def test_the_class_picture_draws_each_policys_bars(preempting_run, tmp_path):
    from gpusched.simulate.plots import plot_classes, policy_color

    out, _report = preempting_run
    image = mpimg.imread(out / "classes.png")
    assert image.shape[0] >= 500 and image.shape[1] >= 1400   # readable at 100 dpi
    sky, orange = policy_color("backfill-preempt", 0), policy_color("fifo", 1)
    assert sky == OKABE_ITO["sky"] and orange == OKABE_ITO["orange"]
    # fifo loses nothing and lowers no cap: its bars are in the wait panel only, while
    # backfill-preempt's are there and in the work-lost panel too
    assert colour_pixels(out / "classes.png", sky) > colour_pixels(out / "classes.png",
                                                                   orange) > 2000
    # the same policy in the other order keeps its colour
    from gpusched.simulate import synthetic_jobs

    cluster = Cluster.preset("colossus-array")
    jobs = synthetic_jobs(cluster.num_gpus, 6 * 3600, load=3)
    results = [simulate(cluster, jobs, p, horizon_s=6 * 3600) for p in ("fifo",
                                                                          "backfill-preempt")]
    path = plot_classes(results, tmp_path / "classes.png")
    assert colour_pixels(path, sky) > 2000 and colour_pixels(path, orange) > 2000
