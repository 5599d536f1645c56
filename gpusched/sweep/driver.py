"""Run a sweep: skip what is done, send the rest to an executor, file every answer.

The output directory::

    OUT/sweep.json            what made it (name, spec file, gpusched version, run ids)
    OUT/runs/<run id>/        one per run, named by the hash of its configuration and
        config.json           the gpusched version (spec.run_id); written before it runs
        report.json           simulate's report for this one policy (report.html too,
        summary.md            when the simulator writes one)
        result.json           the run's row of runs.csv; written last, it marks the run done
    OUT/runs.csv (.parquet)   every run of the sweep file, in its order
    OUT/summary.csv, summary.md   means and 95 % CIs across seeds
    OUT/*.png, OUT/index.html     pictures and a page linking every run

A run whose ``result.json`` says ``ok`` is never run again (resume); a failed or timed
out one is.  Nothing outside ``OUT`` is written, and ``OUT`` must be empty or a sweep's.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import Executor, Future, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .._atomic import write_atomic
from ..errors import SweepError
from . import tables
from .executors import executor_for
from .runner import run_one
from .spec import OPTIONS, Run, SweepSpec, load_spec, parse_spec, version

__all__ = ["run", "SweepResult"]

MARKER = "sweep.json"


@dataclass
class SweepResult:
    """What :func:`run` did: the table's rows, the summary, and the files written."""

    out: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    ran: int = 0
    resumed: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode("utf-8")


def _check_out(out: Path) -> None:
    """OUT must be new, empty, or a sweep's own: a user's directory is never filled."""
    if out.exists() and not out.is_dir():
        raise SweepError(f"{str(out)!r} exists and is not a directory", field="out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise SweepError(f"{str(out)!r} is not empty and holds no {MARKER}: not a sweep's "
                         "directory; name a new or empty one", field="out")


def _done(run_dir: Path, run: Run) -> dict[str, Any] | None:
    try:
        row = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if row.get("status") == "ok" and row.get("identity") == json.loads(
            json.dumps(run.identity, default=str)):
        return row
    return None


def _cluster_specs(spec: SweepSpec) -> dict[str, dict[str, Any]]:
    """Cluster files, read and checked once here and shipped to the workers as dicts."""
    import os

    from ..errors import GpuschedError
    from ..spec import PRESETS, Cluster

    found: dict[str, dict[str, Any]] = {}
    for run in spec.runs():
        name = run.config["cluster"]
        if name in found or name in PRESETS:
            continue
        if not os.path.isfile(name):
            raise SweepError(f"{name!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
                             "nor a cluster file", field="cluster")
        try:
            found[name] = Cluster.load(name).to_dict()
        except GpuschedError as exc:
            raise SweepError(f"cluster file {name!r}: {exc}", field="cluster") from None
    return found


def _row(run: Run, answer: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"run": run.id, "status": answer["status"],
                           "error": answer.get("error"), "point": run.point,
                           "replication": run.replication, **run.config}
    row.update({m: answer.get("metrics", {}).get(m) for m in tables.METRICS})
    row["solver_time_s"] = answer.get("metrics", {}).get("solver_time_s")
    for key in ("wall_s", "sim_wall_s", "worker", "worker_maxrss_mb"):
        row[key] = answer.get(key)
    return row


def _file_answer(out: Path, run: Run, answer: dict[str, Any]) -> dict[str, Any]:
    run_dir = out / "runs" / run.id
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, data in (answer.get("files") or {}).items():
        write_atomic(run_dir / Path(name).name, data)
    row = _row(run, answer)
    record = {**row, "identity": run.identity}
    if answer.get("traceback"):
        record["traceback"] = answer["traceback"]
    write_atomic(run_dir / "result.json", _json_bytes(record))
    return row


def _execute(pending: list[Run], tasks: dict[str, dict[str, Any]],
             make_executor: Callable[[], Executor], on_answer: Callable[[Run, dict], None],
             progress: bool) -> None:
    """Every pending run through the executor; a broken local pool is replaced once."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pending), desc="sweep", unit="run", file=sys.stderr)
    failed = 0
    retries: dict[str, int] = {}
    todo = list(pending)
    try:
        while todo:
            executor = make_executor()
            futures: dict[Future[dict[str, Any]], Run] = {}
            for r in todo:
                try:
                    futures[executor.submit(run_one, tasks[r.id])] = r
                except BrokenProcessPool as exc:
                    # an executor given by the caller cannot be replaced: what it can no
                    # longer take is failed, and said so
                    on_answer(r, {"status": "failed", "error": f"executor broken: {exc}"})
                    failed += 1
                    if bar is not None:
                        bar.update(1)
            todo = []
            for future in as_completed(futures):
                run = futures[future]
                try:
                    answer = future.result()
                except BrokenProcessPool as exc:
                    # a worker died (killed, out of memory): the pool is gone, and every
                    # run still in it with it; each gets one more go on a new pool
                    if retries.get(run.id, 0) < 1:
                        retries[run.id] = retries.get(run.id, 0) + 1
                        todo.append(run)
                        continue
                    answer = {"status": "failed", "error": f"worker process died: {exc}"}
                except Exception as exc:  # noqa: BLE001 - KilledWorker, cancelled, ...
                    answer = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                on_answer(run, answer)
                if answer["status"] != "ok":
                    failed += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=failed)
            todo.sort(key=lambda r: r.index)
    finally:
        if bar is not None:
            bar.close()


def run(spec: SweepSpec | str | Path | dict[str, Any], out: str | Path = "gpusched-sweep",
        *, dask: str | None = None, workers: int | None = None,
        timeout_s: float | None = None, progress: bool = False, plots: bool = True,
        executor: Executor | None = None) -> SweepResult:
    """Run a sweep; see the module docstring for what lands in ``out``.

    Parameters
    ----------
    spec : SweepSpec, path of a sweep file, or its dict
    out : directory of the results (new, empty, or an earlier run of a sweep: resumed)
    dask : None for local processes, ``"local"`` for a LocalCluster, or a scheduler
        address (``tcp://host:8786``)
    workers : processes (local, or LocalCluster workers); default: the CPUs available
    timeout_s : per run, overriding the file's ``sweep.timeout_s``
    executor : an Executor of your own (overrides ``dask`` and ``workers``); it is used,
        not shut down
    """
    if isinstance(spec, (str, Path)):
        spec = load_spec(spec)
    elif isinstance(spec, dict):
        spec = parse_spec(spec)
    if timeout_s is not None:
        if not timeout_s > 0:
            raise SweepError(f"must be positive, got {timeout_s!r}", field="timeout_s")
        spec.timeout_s = float(timeout_s)
    out = Path(out)
    _check_out(out)
    runs = spec.runs()
    shipped = _cluster_specs(spec)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / MARKER, _json_bytes({
        "name": spec.name, "spec": spec.source, "gpusched": version(),
        "axes": spec.axes, "runs": [r.id for r in runs]}))

    rows: dict[str, dict[str, Any]] = {}
    pending: list[Run] = []
    for r in runs:
        done = _done(out / "runs" / r.id, r)
        if done is not None:
            done.pop("identity", None)
            done.pop("traceback", None)
            rows[r.id] = done
        else:
            pending.append(r)
    result = SweepResult(out, [], [], ran=len(pending), resumed=len(rows))
    tasks = {}
    for r in pending:
        run_dir = out / "runs" / r.id
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "config.json", _json_bytes(r.identity))
        tasks[r.id] = {"id": r.id, "config": r.config, "version": r.identity["gpusched"],
                       "timeout_s": spec.timeout_s,
                       "cluster_spec": shipped.get(r.config["cluster"])}

    def on_answer(r: Run, answer: dict[str, Any]) -> None:
        rows[r.id] = _file_answer(out, r, answer)

    if pending:
        if executor is not None:
            given = executor
            _execute(pending, tasks, lambda: given, on_answer, progress)
        else:
            with executor_for(dask, workers) as factory:
                _execute(pending, tasks, factory, on_answer, progress)
    result.rows = [rows[r.id] for r in runs]
    result.failed = [row for row in result.rows if row["status"] != "ok"]
    result.files = write_results(spec, out, result.rows, plots=plots)
    result.summary = tables.summarise(result.rows, _group_keys(spec))
    return result


def _group_keys(spec: SweepSpec) -> list[str]:
    """The axes a summary row is about: every varying option but the seed."""
    return [k for k in spec.axes if k != "seed"] or ["policy"]


def write_results(spec: SweepSpec, out: Path, rows: list[dict[str, Any]], *,
                  plots: bool = True) -> list[Path]:
    """runs.csv (+ .parquet), summary.csv/.md, the pictures and index.html."""
    option_keys = list(OPTIONS) + sorted({k for r in spec.runs() for k in r.config
                                          if k not in OPTIONS})
    written = tables.write_table(rows, tables.columns(option_keys), out / "runs.csv")
    group = _group_keys(spec)
    summary = tables.summarise(rows, group)
    written += tables.write_table(summary, tables.summary_columns(group), out / "summary.csv")
    shown = [m for m in ("delivered_gpu_hours", "fraction_of_bound", "energy_mwh",
                         "jct_mean_h", "jobs_done") if m != spec.metric]
    md = (f"# Sweep {spec.name}\n\n{len(rows)} runs, "
          f"{sum(r['status'] == 'ok' for r in rows)} ok; mean ± 95 % CI half-width across "
          f"seeds.\n\n" + tables.markdown(summary, group, [spec.metric, *shown]))
    write_atomic(out / "summary.md", md.encode("utf-8"))
    written.append(out / "summary.md")
    pictures: list[Path] = []
    if plots and any(r["status"] == "ok" for r in rows):
        from .plots import write_plots

        pictures = write_plots(spec, rows, out)
        written += pictures
    from .index import write_index

    written.append(write_index(spec, rows, summary, group, pictures, out))
    return written
