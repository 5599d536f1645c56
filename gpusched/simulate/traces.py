"""Job traces: load the real CSVs, check them line by line, and scale them to a site.

Two real formats are read (columns documented in ``shared/traces/*/README.md`` and in
``gpusched/data/README.md``):

- Microsoft ITP 2021 (ElasticFlow raw traces): ``job_id, submission_time, duration,
  num_gpu``;
- Philly VC 103959 as prepared by ElasticFlow: ``submit_time, num_gpu, duration`` (plus
  synthetic columns, which are ignored).

Any CSV with a submit column (``submission_time`` or ``submit_time``), ``duration`` (s)
and ``num_gpu`` loads; ``job_id`` is optional.  ``.csv.gz`` files are read directly.

A trace from a 2,000-GPU cluster offers a few hundred busy GPUs on average; to load a
100k-GPU site, :func:`scale_trace` multiplies gang sizes (``gang_scale``) and compresses
time between arrivals (``arrival_scale``), and :func:`fit_load` picks the compression
that gives a wanted offered load.  Durations are never changed: they are the work.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import TraceError

__all__ = [
    "TraceJob", "Trace", "BUNDLED_TRACES", "DEFAULT_TRACE", "load_trace", "parse_trace",
    "resolve_trace", "scale_trace", "fit_load", "offered_load_gpus", "repeat_to_horizon",
]

#: Traces shipped inside the package (name -> file in gpusched/data).
BUNDLED_TRACES = {
    # The first 14 days of ms-itp-2021 cluster04.csv, rows unchanged (gpusched/data/README.md).
    "itp-cluster04-14d": "itp-cluster04-14d.csv.gz",
}
DEFAULT_TRACE = "itp-cluster04-14d"

_SUBMIT_COLUMNS = ("submission_time", "submit_time")
_GPUS_PER_NODE = 8


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace: when it arrives, how many GPUs, how long it runs at full power.

    ``duration_s`` is the run time at s(cap) = 1; at cap p the job runs
    ``duration_s / s(p)``.  ``min_cap_w``/``max_cap_w`` are the caps the job accepts (the
    simulator makes trace jobs flexible, see :func:`gpusched.simulate.simulate`).
    """

    id: str
    submit_s: float
    duration_s: float
    gpus: int
    min_cap_w: int = 350
    max_cap_w: int = 700
    weight: float = 1.0
    sensitivity: float = 1.25
    kind: str = "trace"
    line: int = 0
    #: The job's throughput curve (None: the quadratic proxy with ``sensitivity``; or a
    #: name from ``gpusched.power.CURVES``), as :class:`gpusched.Job` takes it.
    curve: str | None = None


@dataclass
class Trace:
    """Jobs sorted by submit time, plus where they came from and what was skipped."""

    jobs: list[TraceJob]
    source: str
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.jobs)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def resolve_trace(name_or_path: str | os.PathLike[str]) -> Path:
    """Path of a bundled trace name (:data:`BUNDLED_TRACES`) or of an existing file."""
    text = os.fspath(name_or_path)
    if text in BUNDLED_TRACES:
        return Path(str(resources.files("gpusched") / "data" / BUNDLED_TRACES[text]))
    path = Path(text)
    if not path.is_file():
        raise TraceError(f"trace {text!r} is neither a bundled trace "
                         f"({', '.join(sorted(BUNDLED_TRACES))}) nor an existing file")
    return path


def load_trace(name_or_path: str | os.PathLike[str], *, max_gpus: int | None = None,
               skip_bad: bool = False, min_cap_w: int = 350, max_cap_w: int = 700) -> Trace:
    """Load and check a trace CSV (bundled name or path).

    Parameters
    ----------
    name_or_path : str or path
        A name from :data:`BUNDLED_TRACES` or a ``.csv`` / ``.csv.gz`` file.
    max_gpus : int, optional
        The cluster's GPU count: a gang larger than it is a bad line.
    skip_bad : bool, default False
        Skip bad lines and count them instead of raising.
    min_cap_w, max_cap_w : int
        Cap range given to every job (traces carry none).

    Returns
    -------
    Trace
        Jobs sorted by (submit time, line).

    Raises
    ------
    TraceError
        A missing column (line 1), or a bad line when ``skip_bad`` is False, with the
        line number and the reason.
    """
    path = resolve_trace(name_or_path)
    try:
        with _open_text(path) as handle:
            return parse_trace(handle, source=str(name_or_path), max_gpus=max_gpus,
                               skip_bad=skip_bad, min_cap_w=min_cap_w, max_cap_w=max_cap_w)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise TraceError(f"trace {str(name_or_path)!r} cannot be read: {exc}") from exc


def _bad_gang(gpus: int, max_gpus: int | None) -> str | None:
    if gpus < 1:
        return f"num_gpu={gpus} must be at least 1"
    if gpus > _GPUS_PER_NODE and gpus % _GPUS_PER_NODE:
        return (f"num_gpu={gpus}; above {_GPUS_PER_NODE} a job takes whole nodes, so it "
                f"must be a multiple of {_GPUS_PER_NODE}")
    if max_gpus is not None and gpus > max_gpus:
        return f"num_gpu={gpus} is larger than the cluster ({max_gpus} GPUs)"
    return None


def parse_trace(lines: Iterable[str], *, source: str = "<trace>", max_gpus: int | None = None,
                skip_bad: bool = False, min_cap_w: int = 350, max_cap_w: int = 700) -> Trace:
    """Parse trace CSV text (an iterable of lines); see :func:`load_trace`."""
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise TraceError(f"{source}: line 1: the file is empty; a trace needs a header with "
                         "submission_time (or submit_time), duration and num_gpu") from None
    submit_col = next((c for c in _SUBMIT_COLUMNS if c in header), None)
    missing = [name for name, present in (("submission_time or submit_time", submit_col),
                                          ("duration", "duration" in header),
                                          ("num_gpu", "num_gpu" in header)) if not present]
    if missing:
        raise TraceError(f"{source}: line 1: missing column(s) {', '.join(missing)}; the "
                         f"header has {header}")
    i_submit = header.index(submit_col)  # type: ignore[arg-type]
    i_duration = header.index("duration")
    i_gpus = header.index("num_gpu")
    i_id = header.index("job_id") if "job_id" in header else None
    width = max(i_submit, i_duration, i_gpus, i_id or 0) + 1
    jobs: list[TraceJob] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        reason = None
        submit = duration = math.nan
        gpus = 0
        if len(row) < width:
            reason = f"{len(row)} fields, the header has {len(header)}"
        else:
            try:
                submit = float(row[i_submit])
                duration = float(row[i_duration])
                gpus_f = float(row[i_gpus])
            except ValueError:
                reason = (f"submit time {row[i_submit]!r}, duration {row[i_duration]!r} and "
                          f"num_gpu {row[i_gpus]!r} must be numbers")
            else:
                if not (math.isfinite(submit) and submit >= 0):
                    reason = f"submit time {row[i_submit]!r} must be a finite number >= 0"
                elif not math.isfinite(duration) or duration <= 0:
                    reason = (f"duration {row[i_duration]!r} must be a positive number of "
                              "seconds")
                elif gpus_f != int(gpus_f):
                    reason = f"num_gpu {row[i_gpus]!r} must be a whole number"
                else:
                    gpus = int(gpus_f)
                    reason = _bad_gang(gpus, max_gpus)
        job_id = (row[i_id].strip() if i_id is not None and len(row) > i_id else "") or \
            f"line{line}"
        if reason is None and job_id in seen:
            reason = f"job_id {job_id!r} appears twice"
        if reason is not None:
            if not skip_bad:
                raise TraceError(f"{source}: line {line}: {reason} (use --skip-bad to skip "
                                 "bad lines)")
            skipped.append(f"line {line}: {reason}")
            continue
        seen.add(job_id)
        jobs.append(TraceJob(job_id, submit, duration, gpus, min_cap_w=min_cap_w,
                             max_cap_w=max_cap_w, line=line))
    jobs.sort(key=lambda j: (j.submit_s, j.line))
    return Trace(jobs, source, len(skipped), skipped)


def _round_gang(gpus: float) -> int:
    """A valid gang size near ``gpus``: 1..8 inside a node, else whole nodes."""
    if gpus <= _GPUS_PER_NODE:
        return max(1, int(round(gpus)))
    return int(math.ceil(gpus / _GPUS_PER_NODE) * _GPUS_PER_NODE)


def scale_trace(jobs: Sequence[TraceJob], *, arrival_scale: float = 1.0,
                gang_scale: float = 1.0, max_gpus: int | None = None) -> list[TraceJob]:
    """Jobs with arrivals compressed and gangs enlarged, starting at time 0.

    Parameters
    ----------
    arrival_scale : float
        Arrival rate multiplier: time between arrivals is divided by it.
    gang_scale : float
        Gang size multiplier; results are rounded to a valid size (whole nodes above 8).
    max_gpus : int, optional
        Gangs are clipped to this many GPUs (the cluster size).

    Offered load (busy GPUs on average) grows by ``arrival_scale * gang_scale``.
    """
    if not (arrival_scale > 0 and math.isfinite(arrival_scale)):
        raise TraceError(f"arrival_scale={arrival_scale!r} must be a positive number")
    if not (gang_scale > 0 and math.isfinite(gang_scale)):
        raise TraceError(f"gang_scale={gang_scale!r} must be a positive number")
    if not jobs:
        return []
    t0 = min(j.submit_s for j in jobs)
    out = []
    for j in jobs:
        gpus = _round_gang(j.gpus * gang_scale)
        if max_gpus is not None and gpus > max_gpus:
            # the largest valid gang the cluster holds
            gpus = max_gpus - max_gpus % _GPUS_PER_NODE if max_gpus > _GPUS_PER_NODE else max_gpus
        out.append(replace(j, submit_s=(j.submit_s - t0) / arrival_scale, gpus=gpus))
    return out


def offered_load_gpus(jobs: Sequence[TraceJob], span_s: float | None = None) -> float:
    """Average GPUs the jobs ask for over ``span_s`` (default: first to last arrival)."""
    if not jobs:
        return 0.0
    if span_s is None:
        span_s = max(j.submit_s for j in jobs) - min(j.submit_s for j in jobs)
    if span_s <= 0:
        raise TraceError("offered load needs a positive time span; the trace has one "
                         "arrival time")
    return sum(j.gpus * j.duration_s for j in jobs) / span_s


def fit_load(jobs: Sequence[TraceJob], cluster_gpus: int, load: float, *,
             gang_scale: float = 1.0) -> tuple[list[TraceJob], float]:
    """Scale a trace so it offers ``load`` x ``cluster_gpus`` busy GPUs on average.

    Gangs are multiplied by ``gang_scale`` first; the arrival rate multiplier is then
    chosen for the load.  Returns the scaled jobs and that multiplier.
    """
    if not (load > 0 and math.isfinite(load)):
        raise TraceError(f"load={load!r} must be a positive number (1.0: the trace asks "
                         "for as many GPUs as the cluster has, on average)")
    gang = scale_trace(jobs, gang_scale=gang_scale, max_gpus=cluster_gpus)
    if len({j.submit_s for j in gang}) < 2:
        return gang, 1.0  # one arrival instant: there is no rate to scale
    offered = offered_load_gpus(gang)
    arrival_scale = load * cluster_gpus / offered
    return scale_trace(gang, arrival_scale=arrival_scale), arrival_scale


def repeat_to_horizon(jobs: Sequence[TraceJob], horizon_s: float) -> list[TraceJob]:
    """Replay the (scaled) trace back to back until arrivals cover ``horizon_s``.

    Each pass gets new ids (``p1/...``) and is shifted by the trace span plus the mean
    gap between arrivals, so arrivals keep their rate across the seam.
    """
    if not jobs:
        return []
    first = min(j.submit_s for j in jobs)
    last = max(j.submit_s for j in jobs)
    gap = (last - first) / max(1, len(jobs) - 1)
    period = last - first + gap
    out: list[TraceJob] = []
    k = 0
    while True:
        shift = k * period - first
        if first + shift >= horizon_s:
            break
        prefix = "" if k == 0 else f"p{k}/"
        for j in jobs:
            t = j.submit_s + shift
            if t < horizon_s:
                out.append(replace(j, id=prefix + j.id, submit_s=t))
        k += 1
    out.sort(key=lambda j: (j.submit_s, j.id))
    return out
