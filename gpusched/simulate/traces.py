"""Job traces: load the real CSVs, check them line by line, and scale them to a site.

Two real formats are read (columns documented in ``shared/traces/*/README.md`` and in
``gpusched/data/README.md``):

- Microsoft ITP 2021 (ElasticFlow raw traces): ``job_id, submission_time, duration,
  num_gpu``;
- Philly VC 103959 as prepared by ElasticFlow: ``submit_time, num_gpu, duration`` (plus
  synthetic columns, which are ignored).

Any CSV with a submit column (``submission_time`` or ``submit_time``), ``duration`` (s)
and ``num_gpu`` loads; ``job_id`` is optional.  ``.csv.gz`` files are read directly.
A line ends at ``\n`` (a trailing ``\r`` is dropped) and is checked on its own: it must
be UTF-8, at most 128 KiB long, one CSV record, and its numbers plain ASCII decimals
(``nan``, ``inf``, ``1_000`` and ``８`` are refused, and so is anything that overflows a
float).  Gang sizes are checked against the site's GPUs per node.

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
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import TraceError
from ..power import PowerModel

__all__ = [
    "TraceJob", "Trace", "BUNDLED_TRACES", "DEFAULT_TRACE", "load_trace", "parse_trace",
    "resolve_trace", "scale_trace", "fit_load", "offered_load_gpus", "repeat_to_horizon",
    "whole_gang", "MAX_LINE_BYTES", "MAX_REPLAYED_JOBS",
]

#: Traces shipped inside the package (name -> file in gpusched/data).
BUNDLED_TRACES = {
    # The first 14 days of ms-itp-2021 cluster04.csv, rows unchanged (gpusched/data/README.md).
    "itp-cluster04-14d": "itp-cluster04-14d.csv.gz",
}
DEFAULT_TRACE = "itp-cluster04-14d"

_SUBMIT_COLUMNS = ("submission_time", "submit_time")
#: GPUs per node when no cluster is named: the power model's default.
_DEFAULT_GPUS_PER_NODE = PowerModel.gpus_per_node
#: Longest line read: real trace lines are under 200 bytes; csv's own field limit is
#: 128 KiB, and a longer line is refused (or skipped) before it is parsed.
MAX_LINE_BYTES = 128 * 1024
#: Most jobs repeat_to_horizon makes: a trace whose arrivals span a microsecond must not
#: fill memory with passes.  A replayed job with a 36-character id measured about 300
#: bytes, so this is about 600 MB; the default scenario (16 h, colossus-100k) makes 15,579.
MAX_REPLAYED_JOBS = 2_000_000
# A plain decimal in ASCII; float() would also take 'nan', 'inf', '1_0' and '８'.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


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
    #: Priority (higher is more urgent) and whether a preemption plan may evict the job,
    #: as :class:`gpusched.Job` takes them; the synthetic mix sets them per class.
    priority: int = 0
    preemptible: bool = True


@dataclass
class Trace:
    """Jobs sorted by submit time, plus where they came from and what was skipped."""

    jobs: list[TraceJob]
    source: str
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.jobs)


def _open_bytes(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _bounded_lines(handle: io.BufferedIOBase) -> Iterable[bytes]:
    """Lines split at b"\\n"; a line longer than MAX_LINE_BYTES is cut to one byte more
    (the rest is read and dropped), so no line costs more memory than the bound."""
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                rest = handle.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line


def resolve_trace(name_or_path: str | os.PathLike[str]) -> Path:
    """Path of a bundled trace name (:data:`BUNDLED_TRACES`) or of an existing file."""
    text = os.fspath(name_or_path)
    if text in BUNDLED_TRACES:
        return Path(str(resources.files("gpusched") / "data" / BUNDLED_TRACES[text]))
    path = Path(text)
    if not path.is_file():
        raise TraceError(f"trace {text!r} is neither a bundled trace "
                         f"({', '.join(sorted(BUNDLED_TRACES))}) nor an existing file", field="name_or_path")
    return path


def load_trace(name_or_path: str | os.PathLike[str], *, max_gpus: int | None = None,
               skip_bad: bool = False, min_cap_w: int = 350, max_cap_w: int = 700,
               gpus_per_node: int | None = None) -> Trace:
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
    gpus_per_node : int, optional
        The cluster's GPUs per node (``cluster.gpus_per_node``): above it a gang must take
        whole nodes.  Default: the power model's default.

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
        with _open_bytes(path) as handle:
            return parse_trace(_bounded_lines(handle), source=str(name_or_path),
                               max_gpus=max_gpus, skip_bad=skip_bad, min_cap_w=min_cap_w,
                               max_cap_w=max_cap_w, gpus_per_node=gpus_per_node)
    except (OSError, EOFError) as exc:
        raise TraceError(f"trace {str(name_or_path)!r} cannot be read: {exc}", field="name_or_path") from exc


def _gpus_per_node(gpus_per_node: int | None) -> int:
    if gpus_per_node is None:
        return _DEFAULT_GPUS_PER_NODE
    if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int) or \
            gpus_per_node < 1:
        raise TraceError(f"gpus_per_node={gpus_per_node!r} must be a whole number >= 1 "
                         "(the cluster's gpus_per_node)", field="gpus_per_node")
    return gpus_per_node


def _bad_gang(gpus: int, max_gpus: int | None, gpus_per_node: int) -> str | None:
    if gpus < 1:
        return f"num_gpu={gpus} must be at least 1"
    if gpus > gpus_per_node and gpus % gpus_per_node:
        return (f"num_gpu={gpus}; the site has {gpus_per_node} GPUs per node, so above "
                f"{gpus_per_node} a job takes whole nodes and must be a multiple of "
                f"{gpus_per_node}")
    if max_gpus is not None and gpus > max_gpus:
        return f"num_gpu={gpus} is larger than the cluster ({max_gpus} GPUs)"
    return None


def _decimal(text: str) -> float | None:
    """The value of a plain ASCII decimal, or None (also for one that overflows)."""
    text = text.strip(" \t")
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _line_text(raw: str | bytes) -> tuple[str | None, str | None]:
    """(text without its line end, None) or (None, why the line cannot be read)."""
    if len(raw) > MAX_LINE_BYTES:
        return None, (f"the line is longer than {MAX_LINE_BYTES:,} "
                      f"{'bytes' if isinstance(raw, bytes) else 'characters'}")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, (f"byte {raw[exc.start]:#04x} at column {exc.start + 1} is not "
                          "UTF-8; a trace is UTF-8 text")
    if raw.endswith("\n"):
        raw = raw[:-1]
    if raw.endswith("\r"):
        raw = raw[:-1]
    return raw, None


def _csv_fields(text: str) -> tuple[list[str] | None, str | None]:
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        return None, f"not one CSV record ({exc})"
    if len(rows) != 1:
        return None, "not one CSV record"
    return rows[0], None


def parse_trace(lines: Iterable[str | bytes], *, source: str = "<trace>",
                max_gpus: int | None = None, skip_bad: bool = False, min_cap_w: int = 350,
                max_cap_w: int = 700, gpus_per_node: int | None = None) -> Trace:
    """Parse trace CSV lines (str or UTF-8 bytes, one line each); see :func:`load_trace`."""
    per_node = _gpus_per_node(gpus_per_node)
    numbered = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None:
        raise TraceError(f"{source}: line 1: the file is empty; a trace needs a header with "
                         "submission_time (or submit_time), duration and num_gpu")
    text, problem = _line_text(first[1])
    fields = None
    if text is not None:
        fields, problem = _csv_fields(text.removeprefix("\ufeff"))
    if fields is None:
        raise TraceError(f"{source}: line 1: the header cannot be read: {problem}")
    header = [h.strip() for h in fields]
    submit_col = next((c for c in _SUBMIT_COLUMNS if c in header), None)
    missing = [name for name, present in (("submission_time or submit_time", submit_col),
                                          ("duration", "duration" in header),
                                          ("num_gpu", "num_gpu" in header)) if not present]
    if missing:
        raise TraceError(f"{source}: line 1: missing column(s) {', '.join(missing)}; the "
                         f"header has {header}", field=missing[0].split()[0])
    i_submit = header.index(submit_col)  # type: ignore[arg-type]
    i_duration = header.index("duration")
    i_gpus = header.index("num_gpu")
    i_id = header.index("job_id") if "job_id" in header else None
    width = max(i_submit, i_duration, i_gpus, i_id or 0) + 1
    jobs: list[TraceJob] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for line, raw in numbered:
        text, reason = _line_text(raw)
        row: list[str] = []
        if text is not None:
            if not text.strip(" \t"):
                continue
            fields, reason = _csv_fields(text)
            row = fields or []
        if reason is None and all(not cell.strip() for cell in row):
            continue
        submit = duration = math.nan
        gpus = 0
        if reason is not None:
            pass
        elif len(row) < width:
            reason = f"{len(row)} fields, the header has {len(header)}"
        else:
            submit_v, duration_v, gpus_v = (_decimal(row[i]) for i in
                                            (i_submit, i_duration, i_gpus))
            if submit_v is None or duration_v is None or gpus_v is None:
                reason = (f"submit time {row[i_submit]!r}, duration {row[i_duration]!r} and "
                          f"num_gpu {row[i_gpus]!r} must be finite decimal numbers "
                          "(ASCII digits; no nan, inf or overflow)")
            else:
                submit, duration = submit_v, duration_v
                if submit < 0:
                    reason = f"submit time {row[i_submit]!r} must be a finite number >= 0"
                elif duration <= 0:
                    reason = (f"duration {row[i_duration]!r} must be a positive number of "
                              "seconds")
                elif gpus_v != int(gpus_v):
                    reason = f"num_gpu {row[i_gpus]!r} must be a whole number"
                else:
                    gpus = int(gpus_v)
                    reason = _bad_gang(gpus, max_gpus, per_node)
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


def whole_gang(gpus: float, gpus_per_node: int | None = None) -> int:
    """A valid gang size near ``gpus``: 1..gpus_per_node inside a node, else whole nodes."""
    per_node = _gpus_per_node(gpus_per_node)
    if gpus <= per_node:
        return max(1, int(round(gpus)))
    return int(math.ceil(gpus / per_node) * per_node)


def scale_trace(jobs: Sequence[TraceJob], *, arrival_scale: float = 1.0,
                gang_scale: float = 1.0, max_gpus: int | None = None,
                gpus_per_node: int | None = None) -> list[TraceJob]:
    """Jobs with arrivals compressed and gangs enlarged, starting at time 0.

    Parameters
    ----------
    arrival_scale : float
        Arrival rate multiplier: time between arrivals is divided by it.
    gang_scale : float
        Gang size multiplier; results are rounded to a valid size (whole nodes above
        ``gpus_per_node``).
    max_gpus : int, optional
        Gangs are clipped to this many GPUs (the cluster size).
    gpus_per_node : int, optional
        The cluster's GPUs per node (default: the power model's default).

    Offered load (busy GPUs on average) grows by ``arrival_scale * gang_scale``.
    """
    if not (arrival_scale > 0 and math.isfinite(arrival_scale)):
        raise TraceError(f"arrival_scale={arrival_scale!r} must be a positive number", field="arrival_scale")
    if not (gang_scale > 0 and math.isfinite(gang_scale)):
        raise TraceError(f"gang_scale={gang_scale!r} must be a positive number", field="gang_scale")
    if not jobs:
        return []
    per_node = _gpus_per_node(gpus_per_node)
    t0 = min(j.submit_s for j in jobs)
    out = []
    for j in jobs:
        gpus = whole_gang(j.gpus * gang_scale, per_node)
        if max_gpus is not None and gpus > max_gpus:
            # the largest valid gang the cluster holds
            gpus = max_gpus - max_gpus % per_node if max_gpus > per_node else max_gpus
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
             gang_scale: float = 1.0,
             gpus_per_node: int | None = None) -> tuple[list[TraceJob], float]:
    """Scale a trace so it offers ``load`` x ``cluster_gpus`` busy GPUs on average.

    Gangs are multiplied by ``gang_scale`` first; the arrival rate multiplier is then
    chosen for the load.  Returns the scaled jobs and that multiplier.
    """
    if not (load > 0 and math.isfinite(load)):
        raise TraceError(f"load={load!r} must be a positive number (1.0: the trace asks "
                         "for as many GPUs as the cluster has, on average)", field="load")
    gang = scale_trace(jobs, gang_scale=gang_scale, max_gpus=cluster_gpus,
                       gpus_per_node=gpus_per_node)
    if len({j.submit_s for j in gang}) < 2:
        return gang, 1.0  # one arrival instant: there is no rate to scale
    offered = offered_load_gpus(gang)
    arrival_scale = load * cluster_gpus / offered
    return scale_trace(gang, arrival_scale=arrival_scale,
                       gpus_per_node=gpus_per_node), arrival_scale


def repeat_to_horizon(jobs: Sequence[TraceJob], horizon_s: float) -> list[TraceJob]:
    """Replay the (scaled) trace back to back until arrivals cover ``horizon_s``.

    Each pass gets new ids (``p1/...``) and is shifted by the trace span plus the mean
    gap between arrivals, so arrivals keep their rate across the seam.  A trace whose
    jobs all arrive at one instant has no rate and no period: it is replayed once.
    More than :data:`MAX_REPLAYED_JOBS` jobs is a TraceError.
    """
    if not (horizon_s > 0 and math.isfinite(horizon_s)):
        raise TraceError(f"horizon_s={horizon_s!r} must be a positive, finite number of "
                         "seconds", field="horizon_s")
    if not jobs:
        return []
    first = min(j.submit_s for j in jobs)
    last = max(j.submit_s for j in jobs)
    gap = (last - first) / max(1, len(jobs) - 1)
    period = last - first + gap
    # One instant: a period of 0 would shift nothing and loop for ever.
    passes = 1 if period <= 0 else max(1, math.ceil((horizon_s - first) / period))
    if passes * len(jobs) > MAX_REPLAYED_JOBS:
        raise TraceError(f"replaying {len(jobs):,} jobs whose arrivals repeat every "
                         f"{period:g} s over {horizon_s:g} s takes {passes:,} passes, more "
                         f"than {MAX_REPLAYED_JOBS:,} jobs; shorten the horizon or use a "
                         "trace whose arrivals span more time", field="horizon_s")
    out: list[TraceJob] = []
    for k in range(passes):
        shift = k * period - first
        if first + shift >= horizon_s:
            break
        prefix = "" if k == 0 else f"p{k}/"
        for j in jobs:
            t = j.submit_s + shift
            if t < horizon_s:
                out.append(replace(j, id=prefix + j.id, submit_s=t))
    out.sort(key=lambda j: (j.submit_s, j.id))
    return out
