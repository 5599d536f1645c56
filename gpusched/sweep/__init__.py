"""gpusched.sweep: what-if studies, many simulate runs at once, locally or on Dask.

>>> from gpusched.sweep import parse_spec
>>> spec = parse_spec({"base": {"cluster": "tiny", "trace": "synthetic", "hours": 1},
...                    "grid": {"policy": ["fifo", "backfill"]},
...                    "sweep": {"replications": 2}})
>>> [(r.config["policy"], r.config["seed"]) for r in spec.runs()]
[('fifo', 0), ('fifo', 1), ('backfill', 0), ('backfill', 1)]

``run(spec, out)`` runs them (``dask="local"`` or ``"tcp://host:8786"`` for Dask) and
writes the tables, pictures and index.html (:mod:`gpusched.sweep.driver`).

Modules: ``spec`` (sweep files, the options, run identities), ``runner`` (one run, in a
worker), ``executors`` (process pool, Dask), ``driver`` (resume, submit, file),
``tables`` (runs.csv, summary with CIs), ``plots``, ``index`` (index.html), ``cli``.
"""

from __future__ import annotations

from .driver import SweepResult, run
from .spec import OPTIONS, PLANNED, Run, SweepSpec, load_spec, parse_spec

__all__ = ["run", "SweepResult", "SweepSpec", "Run", "load_spec", "parse_spec", "OPTIONS",
           "PLANNED"]
