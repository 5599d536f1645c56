"""Both backends give identical placements, explanations and state on drawn streams."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note, strategies as st  # noqa: E402

from gpusched import Cluster, Engine  # noqa: E402

from .conftest import both_backends  # noqa: E402
from .strategies import clusters, jobs  # noqa: E402
from .verify import check_engine  # noqa: E402

pytestmark = pytest.mark.skipif(len(both_backends()) < 2, reason="needs the compiled core")


def _run_stream(cluster, data, steps):
    c_engine = Engine(cluster, backend="cython")
    py_engine = Engine(cluster, backend="python")
    live: list[str] = []
    for step in range(steps):
        if live and data.draw(st.integers(0, 3), label="op") == 0:
            job_id = live.pop(data.draw(st.integers(0, len(live) - 1), label="which"))
            assert c_engine.release(job_id) == py_engine.release(job_id)
            continue
        job = data.draw(jobs(f"j{step}", max_gpus=min(cluster.num_gpus, 256)), label="job")
        pod = data.draw(st.one_of(st.none(), st.integers(0, cluster.num_pods - 1)), label="pod")
        if job.gpus > cluster.num_gpus:
            continue
        assert c_engine.explain(job, pod) == py_engine.explain(job, pod)
        got_c, got_py = c_engine.place(job, pod), py_engine.place(job, pod)
        note(f"{job!r} pod={pod} -> {got_py!r}")
        assert got_c == got_py
        if got_py is not None:
            live.append(job.id)
    assert c_engine._index_state() == py_engine._index_state()
    check_engine(py_engine)
    check_engine(c_engine)


@given(cluster=clusters(), data=st.data())
def test_drawn_clusters_identical(cluster, data):
    _run_stream(cluster, data, steps=40)


COLOSSUS = Cluster.preset("colossus-100k", facility_mw=40)


@given(data=st.data())
def test_colossus_tight_facility_identical(data):
    # at 40 MW the facility binds early, so caps step down and candidates are scanned
    c_engine = Engine(COLOSSUS, backend="cython")
    py_engine = Engine(COLOSSUS, backend="python")
    sizes = st.sampled_from([1, 2, 8, 64, 512, 4096, 16384])
    for step in range(data.draw(st.integers(1, 30), label="steps")):
        gpus = data.draw(sizes, label="gpus")
        min_cap = data.draw(st.sampled_from([None, 500, 300]), label="min_cap")
        from gpusched import Job
        job = Job(f"j{step}", gpus, min_cap_w=min_cap)
        assert c_engine.place(job) == py_engine.place(job)
    assert c_engine._index_state() == py_engine._index_state()
    check_engine(c_engine)
