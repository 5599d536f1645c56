"""The compiled core's C-level API, typedefs, and thread safety."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from gpusched import Cluster, Engine, Job, available_backends

from .support.verify import check_engine

needs_core = pytest.mark.skipif("cython" not in available_backends(),
                                reason="compiled core not built")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cython_embed"


@needs_core
def test_typedefs_match_numpy_dtypes(tiny):
    # index_t is int32 and units_t int64 in gpusched/_engine_c.pxd; the views expose the
    # memoryviews' own dtypes, so a changed typedef shows here
    engine = Engine(tiny, backend="cython")
    assert engine.node_free_gpus().dtype == np.int32
    assert engine.rack_power_w().dtype == np.int64
    assert engine.row_slack_units().dtype == np.int64
    py = Engine(tiny, backend="python")
    assert py.node_free_gpus().dtype == engine.node_free_gpus().dtype


@needs_core
def test_cython_example_builds_and_matches_python_api(tmp_path):
    for name in ("embed_demo.pyx", "setup.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    script = (
        "import json, gpusched, embed_demo\n"
        "c = gpusched.Cluster.preset('colossus-100k')\n"
        "e = gpusched.Engine(c, backend='cython')\n"
        "placed, free_mid = embed_demo.run_demo(e, 5, 64)\n"
        "print(json.dumps({'placed': placed, 'free_mid': free_mid, 'free_end': e.free_gpus()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert out.returncode == 0, out.stderr[-2000:]
    import json
    result = json.loads(out.stdout)
    cluster = Cluster.preset("colossus-100k")
    reference = Engine(cluster, backend="python")
    expected = [reference.place(Job(f"j{i}", 64, min_cap_w=400)) for i in range(5)]
    assert [(cap, nodes) for cap, nodes in result["placed"]] == [
        (p.cap_w, list(p.nodes)) for p in expected]
    assert result["free_mid"] == cluster.num_gpus - 5 * 64
    assert result["free_end"] == cluster.num_gpus


@pytest.mark.parametrize("threads", [4])
def test_engine_is_safe_across_threads(colossus, backend, threads):
    engine = Engine(colossus, backend=backend)
    errors: list[BaseException] = []
    sizes = [1, 3, 8, 64, 512, 4096]

    def worker(t: int) -> None:
        try:
            for i in range(150):
                job = Job(f"t{t}-{i}", sizes[(i + t) % len(sizes)], min_cap_w=300)
                if engine.place(job) is not None and i % 3:
                    engine.release(job.id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors
    ids = {p.job_id for p in engine.placements()}
    assert all(i % 3 == 0 for i in (int(x.split("-")[1]) for x in ids))
    check_engine(engine)
