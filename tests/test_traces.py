"""gpusched.simulate.traces: loading, checking, scaling and repeating job traces."""

from __future__ import annotations

import gzip
import json
import signal
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpusched import Cluster, TraceError
from gpusched.simulate import TraceJob, fit_load, load_trace, repeat_to_horizon, scale_trace
from gpusched.simulate.traces import MAX_LINE_BYTES, parse_trace


# ---- traces ----------------------------------------------------------------------------

ITP_HEADER = "job_id,submission_time,duration,num_gpu\n"


def parse(text: str, **kw):
    return parse_trace(text.splitlines(keepends=True), source="t.csv", **kw)


@pytest.mark.parametrize("body, line, words", [
    ("a,0,100,8\nb,5,-3,8\n", 3, "duration '-3' must be a positive"),
    ("a,0,100,8\nb,5,100,256\n", 3, "larger than the cluster (128 GPUs)"),
    ("a,0,100,12\n", 2, "must be a multiple of 8"),
    ("a,0,abc,8\n", 2, "must be finite decimal numbers"),
    ("a,0,100\n", 2, "3 fields"),
    ("a,0,100,8\na,1,100,8\n", 3, "appears twice"),
    ("a,-1,100,8\n", 2, "submit time '-1'"),
    ("a,0,100,0\n", 2, "at least 1"),
])
def test_bad_trace_lines_are_refused_with_line_number(body, line, words):
    with pytest.raises(TraceError) as info:
        parse(ITP_HEADER + body, max_gpus=128)
    assert f"line {line}:" in str(info.value)
    assert words in str(info.value)


def test_missing_column_is_refused_on_line_1():
    with pytest.raises(TraceError, match=r"line 1: missing column\(s\) num_gpu"):
        parse("job_id,submission_time,duration\na,0,100\n")


def test_skip_bad_counts_and_keeps_the_good_lines():
    trace = parse(ITP_HEADER + "a,0,100,8\nb,5,-3,8\nc,9,100,256\nd,7,50,1\n", max_gpus=128,
                  skip_bad=True)
    assert [j.id for j in trace.jobs] == ["a", "d"]      # sorted by submit time
    assert trace.skipped == 2
    assert trace.skipped_reasons[0].startswith("line 3:")


def test_philly_columns_load(tmp_path):
    path = tmp_path / "philly.csv"
    path.write_text("job_id,submit_time,real_iteration,model_name,ddl,batch_size,num_gpu,"
                    "real_duration,duration,iteration\n"
                    "0,0,1282877,vgg16,771220,256,1,976570,976570,1282877\n"
                    "1,219316,26446831,vgg16,2065619,64,4,1792395,1792395,26446831\n")
    trace = load_trace(path)
    assert [(j.submit_s, j.gpus, j.duration_s) for j in trace.jobs] == [
        (0.0, 1, 976570.0), (219316.0, 4, 1792395.0)]


def test_bundled_trace_is_the_first_14_days_of_cluster04():
    trace = load_trace("itp-cluster04-14d")
    assert len(trace) == 4587 and trace.skipped == 0
    first = trace.jobs[0]
    # the first row of ms-itp-2021 cluster04.csv
    assert (first.id, first.submit_s, first.duration_s, first.gpus) == (
        "c9c620ea-4336-c1a9-8abe-e26bd13076b8", 5810.0, 288476.0, 16)
    # gang sizes of the window (gpusched/data/README.md)
    sizes = np.unique([j.gpus for j in trace.jobs], return_counts=True)
    assert dict(zip(*(s.tolist() for s in sizes))) == {1: 3629, 2: 36, 4: 25, 8: 777, 16: 21, 32: 99}
    assert max(j.submit_s for j in trace.jobs) < 5810 + 14 * 86400
    assert all(j.min_cap_w == 350 and j.max_cap_w == 700 for j in trace.jobs)


def test_gzipped_trace_and_unknown_name(tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress((ITP_HEADER + "a,0,100,8\n").encode()))
    assert len(load_trace(path)) == 1
    with pytest.raises(TraceError, match="neither a bundled trace"):
        load_trace(tmp_path / "nope.csv")


def test_scaling_multiplies_offered_load():
    jobs = [TraceJob(f"j{i}", 100.0 * i, 1000.0, g) for i, g in enumerate([1, 2, 4, 8, 64])]
    scaled = scale_trace(jobs, arrival_scale=10, gang_scale=4)
    assert [j.gpus for j in scaled] == [4, 8, 16, 32, 256]
    assert [j.submit_s for j in scaled] == [0, 10, 20, 30, 40]
    fitted, rate = fit_load(jobs, 1000, 1.0, gang_scale=2)
    # offered GPUs = sum(gpus * duration) / span
    offered = sum(j.gpus * j.duration_s for j in fitted) / (fitted[-1].submit_s)
    assert offered == pytest.approx(1000)
    assert scale_trace([TraceJob("x", 0, 1, 64)], gang_scale=4, max_gpus=100)[0].gpus == 96
    with pytest.raises(TraceError):
        scale_trace(jobs, arrival_scale=0)


def test_repeat_to_horizon_keeps_the_rate_and_renames():
    jobs = [TraceJob(f"j{i}", 10.0 * i, 5.0, 1) for i in range(3)]   # 0, 10, 20
    out = repeat_to_horizon(jobs, 55)
    assert [j.submit_s for j in out] == [0, 10, 20, 30, 40, 50]
    assert [j.id for j in out][3:] == ["p1/j0", "p1/j1", "p1/j2"]


# ---- one arrival instant: the repetition ends (issue 13, finding 15) -------------------

@contextmanager
def watchdog(seconds: int):
    """Fail instead of hanging: the code before the fix looped for ever here."""
    def expire(signum, frame):
        raise AssertionError(f"still running after {seconds} s: the repetition never ends")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("submits", [[0.0], [7.0, 7.0, 7.0]])
def test_a_trace_of_one_instant_is_replayed_once(submits):
    jobs = [TraceJob(f"j{i}", t, 100.0, 1) for i, t in enumerate(submits)]
    with watchdog(20):
        out = repeat_to_horizon(jobs, 16 * 3600)
    # one pass, moved to start at 0 as every pass is
    assert [(j.id, j.submit_s) for j in out] == [(j.id, 0.0) for j in jobs]


def test_a_replay_past_the_job_bound_is_refused():
    # Arrivals a microsecond apart repeat 5.8e10 times over 16 h: refused, not built.
    jobs = [TraceJob("a", 0.0, 100.0, 1), TraceJob("b", 1e-6, 100.0, 1)]
    with watchdog(20), pytest.raises(TraceError, match="more than 2,000,000 jobs"):
        repeat_to_horizon(jobs, 16 * 3600)


@pytest.mark.parametrize("horizon_s", [0.0, -1.0, float("inf"), float("nan")])
def test_repeat_needs_a_finite_horizon(horizon_s):
    with watchdog(20), pytest.raises(TraceError, match="horizon_s"):
        repeat_to_horizon([TraceJob("a", 0.0, 1.0, 1)], horizon_s)


# ---- lines that are neither refused nor skipped (issue 13, finding 16) ------------------

@pytest.mark.parametrize("body, words", [
    ("a,0,100,nan\n", "finite decimal"),
    ("a,0,100,1e400\n", "finite decimal"),
    ("a,0,1e400,8\n", "finite decimal"),
    ("a,inf,100,8\n", "finite decimal"),
    ("a,0,100,\uff18\n", "finite decimal"),      # a fullwidth 8: float() takes it
    ("a,0,1_000,8\n", "finite decimal"),         # float() takes underscores too
    ("a,0,100," + "9" * (MAX_LINE_BYTES + 1) + "\n", "longer than 131,072"),
    ('a,0,"100,8\n', "not one CSV record"),
])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_bad_numbers_and_long_lines_name_their_line(body, words, as_bytes):
    lines = [ITP_HEADER, "b,1,100,8\n", body, "c,2,100,1\n"]
    if as_bytes:
        lines = [line.encode() for line in lines]
    with pytest.raises(TraceError) as info:
        parse_trace(lines, source="t.csv")
    assert "t.csv: line 3:" in str(info.value) and words in str(info.value)
    trace = parse_trace(lines, source="t.csv", skip_bad=True)
    assert [j.id for j in trace.jobs] == ["b", "c"]
    assert trace.skipped == 1 and trace.skipped_reasons[0].startswith("line 3:")


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_non_utf8_byte_is_one_bad_line(tmp_path, suffix):
    data = (ITP_HEADER + "a,0,100,8\n").encode() + b"b\xff,1,100,8\n" + b"c,2,100,1\n"
    path = tmp_path / f"t{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    with pytest.raises(TraceError, match="line 3: byte 0xff at column 2 is not UTF-8"):
        load_trace(path)
    trace = load_trace(path, skip_bad=True)
    assert [j.id for j in trace.jobs] == ["a", "c"] and trace.skipped == 1


def test_a_line_over_the_bound_is_skipped_without_being_kept(tmp_path):
    path = tmp_path / "long.csv"
    path.write_bytes((ITP_HEADER + "a,0,100,8\n").encode() + b"b,1,100," + b"7" * 300_000
                     + b"\nc,2,100,1\r\n")
    trace = load_trace(path, skip_bad=True)
    assert [j.id for j in trace.jobs] == ["a", "c"]
    assert trace.skipped_reasons == ["line 3: the line is longer than 131,072 bytes"]


def test_an_unreadable_header_is_refused_on_line_1():
    with pytest.raises(TraceError, match="line 1: the header cannot be read: byte 0xfe"):
        parse_trace([b"job_id,\xfe\n", b"a,0,100,8\n"])


def test_a_byte_order_mark_before_the_header_is_dropped():
    trace = parse_trace(["\ufeffsubmit_time,duration,num_gpu\n", "0,100,8\n"])
    assert len(trace) == 1


garbage_lines = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(lambda a, b, c: f"x,{a},{b},{c}\n",
              *[st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                          st.sampled_from(["nan", "-inf", "1e400", "1e-400", "\uff18", "1_0",
                                           "", " 8 ", "0x10", "\u0668", "8.5", "-0"]),
                          st.integers(-10, 10**30).map(str))] * 3))


@given(st.lists(garbage_lines, max_size=12))
def test_fuzz_any_line_is_refused_or_skipped_never_a_traceback(lines):
    all_lines = [ITP_HEADER, *lines]
    try:
        trace = parse_trace(all_lines, gpus_per_node=4, max_gpus=64)
    except TraceError as exc:
        assert "line " in str(exc)
    trace = parse_trace(all_lines, gpus_per_node=4, max_gpus=64, skip_bad=True)
    for job in trace.jobs:
        assert 0 <= job.submit_s < float("inf") and 0 < job.duration_s < float("inf")
        assert 1 <= job.gpus <= 64 and (job.gpus <= 4 or job.gpus % 4 == 0)


# ---- the site's GPUs per node (issue 13, finding 17; issue 12) --------------------------

@pytest.mark.parametrize("gpus_per_node, gpus, refused", [
    (4, 6, True), (4, 8, False), (4, 3, False), (6, 12, False), (6, 8, True), (8, 12, True),
    (1, 5, False),
])
def test_gang_checks_use_the_sites_gpus_per_node(gpus_per_node, gpus, refused):
    lines = [ITP_HEADER, "a,0,100,1\n", f"b,1,100,{gpus}\n"]
    if refused:
        with pytest.raises(TraceError, match=f"line 3: num_gpu={gpus}; the site has "
                                             f"{gpus_per_node} GPUs per node"):
            parse_trace(lines, gpus_per_node=gpus_per_node)
        assert parse_trace(lines, gpus_per_node=gpus_per_node, skip_bad=True).skipped == 1
    else:
        assert [j.gpus for j in parse_trace(lines, gpus_per_node=gpus_per_node).jobs] == [
            1, gpus]


def test_scaling_rounds_to_the_sites_whole_nodes():
    jobs = [TraceJob("a", 0, 100, 3), TraceJob("b", 1, 100, 6)]
    assert [j.gpus for j in scale_trace(jobs, gang_scale=2, gpus_per_node=4)] == [8, 12]
    assert [j.gpus for j in scale_trace(jobs, gang_scale=2, gpus_per_node=6)] == [6, 12]
    # clipped to the largest gang of whole 6-GPU nodes a 100-GPU site holds
    assert scale_trace(jobs, gang_scale=30, max_gpus=100, gpus_per_node=6)[1].gpus == 96
    fitted, _ = fit_load(jobs, 100, 1.0, gang_scale=2, gpus_per_node=4)
    assert [j.gpus for j in fitted] == [8, 12]


@pytest.mark.parametrize("bad", [0, -4, 2.5, True, "4"])
def test_gpus_per_node_must_be_a_whole_number(bad):
    with pytest.raises(TraceError, match="gpus_per_node"):
        parse_trace([ITP_HEADER], gpus_per_node=bad)
