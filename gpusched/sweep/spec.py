"""Sweep files: which simulate options vary, over which values, and how often.

A sweep file is TOML (or the same structure as a dict)::

    [sweep]
    name = "mw-vs-policy"     # a label for the tables and pictures
    replications = 3          # each point runs with seeds seed, seed+1, seed+2
    timeout_s = 600           # per run, wall clock

    [base]                    # simulate options every run shares
    cluster = "colossus-100k"
    trace = "synthetic"

    [grid]                    # every combination of these values ...
    policy = ["fifo", "optimize"]
    facility_mw = [70, 90, 110]

    [[points]]                # ... and/or an explicit list of points
    policy = "backfill"
    facility_mw = 80

    [plots]
    heatmap = ["facility_mw", "load_scale"]   # the two axes of the heat map
    metric = "delivered_gpu_hours"            # what it colours

A key of ``base``, ``grid`` or ``points`` is a simulate option: a row of :data:`OPTIONS`,
or a keyword parameter of :func:`gpusched.simulate.simulate` that the table does not
list yet (passed through as given, so an option the simulator gains is sweepable at
once).  Anything else is refused with a :class:`~gpusched.errors.SweepError` naming the
key; :data:`PLANNED` maps names a sweep might reach for to the option to use instead.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import SweepError

__all__ = ["Option", "OPTIONS", "PLANNED", "SweepSpec", "Run", "load_spec", "parse_spec",
           "run_id", "version"]

_SECTIONS = ("sweep", "base", "grid", "points", "plots")
#: Most runs one sweep file may expand to: 100,000 result directories is a study for
#: several files, and a typo ("range(1e6)") should fail here, not fill a disk.
MAX_RUNS = 100_000


def version() -> str:
    """The gpusched version the runs are made with (part of every run's identity)."""
    from .._version import __version__

    return __version__


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _positive(value: Any) -> str | None:
    return None if _finite(value) and value > 0 else "must be a positive number"


def _non_negative_int(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else "must be a whole number >= 0"


def _int(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else \
        "must be a whole number"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _policy(value: Any) -> str | None:
    from ..simulate.policies import POLICIES

    if value in POLICIES:
        return None
    return f"must be one policy of {', '.join(POLICIES)} (one per run; sweep several " \
           f"with a grid)"


def _non_negative(value: Any) -> str | None:
    return None if _finite(value) and value >= 0 else "must be a number >= 0"


def _scale(value: Any) -> str | None:
    return None if _finite(value) and 0 < value <= 100 else "must be in (0, 100]"


@dataclass(frozen=True)
class Option:
    """One simulate option a sweep can set: where it goes and what it accepts.

    ``target`` says which step of a run reads it: ``cluster`` (building the site),
    ``workload`` (:func:`gpusched.simulate.cli.build_workload`), ``policy`` or
    ``simulate`` (a keyword of :func:`gpusched.simulate.simulate`).
    """

    key: str
    default: Any
    target: str
    check: Callable[[Any], str | None]
    help: str


def _options() -> dict[str, Option]:
    from ..simulate import cli as sim_cli

    rows = [
        Option("cluster", "colossus-100k", "cluster", _text,
               "preset name or .toml/.json cluster file (read on the client, shipped)"),
        Option("cluster_scale", 1.0, "cluster", _scale,
               "colossus-100k only: pods per hall and the hall and facility limits x this"),
        Option("facility_mw", None, "cluster", _positive,
               "facility IT limit in MW; colossus-100k: the preset's (before "
               "cluster_scale), any other site: its facility row set to this"),
        Option("trace", sim_cli.DEFAULT_TRACE, "workload", _text,
               "bundled trace name, 'synthetic', or a CSV path every worker can read"),
        Option("load_scale", sim_cli.DEFAULT_LOAD, "workload", _positive,
               "offered load as a multiple of the site's GPUs"),
        Option("gang_scale", sim_cli.DEFAULT_GANG_SCALE, "workload", _positive,
               "multiply every trace gang size"),
        Option("frontier", sim_cli.DEFAULT_FRONTIER, "workload", _non_negative_int,
               "frontier pretraining gangs added to the trace"),
        Option("hours", sim_cli.DEFAULT_HOURS, "workload", _positive, "simulated hours"),
        Option("seed", 0, "workload", _int, "seed of the frontier gangs and synthetic mix"),
        Option("skip_bad", False, "workload", _flag, "skip bad trace lines"),
        Option("policy", "optimize", "policy", _policy, "one policy per run"),
        # a site that changes (gpusched.simulate.failures)
        Option("failure_rate", 0.0, "site", _non_negative,
               "node interruptions per GPU-hour (0: none; Llama 3's rate is 1.97e-5)"),
        Option("spares", 0, "simulate", _non_negative_int, "hot spare nodes per pod"),
        Option("demand_response", None, "site", _non_negative,
               "hour at which the facility limit is cut by 25 % for 3 h (none by default)"),
        Option("envelope_plan", True, "simulate", _flag,
               "bring the site back under an envelope at once (false: hold new starts only)"),
    ]
    return {o.key: o for o in rows}


#: The simulate options a sweep knows by name, with their defaults (simulate's own).
#: Adding an option the simulator gained is one row here (or nothing, for a keyword of
#: ``simulate()``: see :func:`passthrough_keys`).
OPTIONS: dict[str, Option] = _options()

#: Names a sweep might reach for that are spelled otherwise here: a sweep that names one
#: is refused with the option to use instead (simulate's ``failures`` and ``envelope``
#: keywords take objects, which a sweep file builds from these options).
PLANNED: dict[str, str] = {
    "failures": "failure_rate",
    "spare_policy": "spares",
    "envelope": "demand_response",
    "curtailment": "demand_response",
}

# simulate() keywords a sweep sets itself (or that make no sense per run)
_SIMULATE_OWN = {"cluster", "jobs", "policy", "horizon_s", "progress", "keep_jobs", "bound",
                 "failures", "envelope"}


def passthrough_keys() -> set[str]:
    """Keyword parameters of ``simulate()`` not in :data:`OPTIONS`: passed through as is."""
    from ..simulate import simulate

    params = inspect.signature(simulate).parameters
    return {name for name, p in params.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and name not in _SIMULATE_OWN and name not in OPTIONS}


def _check_option(key: Any, value: Any, where: str, passthrough: set[str]) -> None:
    path = f"{where}.{key}"
    if not isinstance(key, str):
        raise SweepError(f"keys are option names, got {key!r}", field=where)
    if key in OPTIONS:
        problem = OPTIONS[key].check(value)
        if problem is not None:
            raise SweepError(f"{problem}, got {value!r}", field=path)
        return
    if key in passthrough:
        return
    known = ", ".join(sorted(OPTIONS) + sorted(passthrough))
    if key in PLANNED:
        raise SweepError(f"{key!r} is not a sweep option: use {PLANNED[key]!r} "
                         f"({OPTIONS[PLANNED[key]].help}); options are {known}", field=path)
    raise SweepError(f"unknown simulate option {key!r}; options are {known}", field=path)


@dataclass(frozen=True)
class Run:
    """One simulate of a sweep: its full configuration and identity."""

    index: int                 # position in the sweep's expansion (the table's order)
    point: int                 # which grid/list point it came from
    replication: int
    config: dict[str, Any]     # every option, defaults filled in
    identity: dict[str, Any]   # what the run's hash covers (config + version + files)
    id: str                    # run_id(identity): names its directory

    def label(self, axes: list[str]) -> str:
        return ", ".join(f"{k}={self.config[k]}" for k in axes)


def run_id(identity: Mapping[str, Any]) -> str:
    """The first 16 hex digits of sha256 over the identity's canonical JSON."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class SweepSpec:
    """A parsed sweep file; :meth:`runs` expands it."""

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    points: list[dict[str, Any]]
    replications: int = 1
    timeout_s: float = 3600.0
    heatmap: list[str] | None = None
    metric: str = "delivered_gpu_hours"
    source: str | None = None
    _runs: list[Run] | None = field(default=None, repr=False)

    @property
    def axes(self) -> list[str]:
        """Options that take more than one value across the runs (seed included)."""
        runs = self.runs()
        keys = list(dict.fromkeys([*self.grid, *(k for p in self.points for k in p),
                                   *(["seed"] if self.replications > 1 else [])]))
        return [k for k in keys if len({json.dumps(r.config.get(k), default=str)
                                        for r in runs}) > 1]

    def runs(self) -> list[Run]:
        if self._runs is None:
            self._runs = _expand(self)
        return self._runs


def _expand(spec: SweepSpec) -> list[Run]:
    keys = list(spec.grid)
    combos = [dict(zip(keys, values)) for values in
              itertools.product(*(spec.grid[k] for k in keys))] if keys else []
    if not keys and not spec.points:
        combos = [{}]
    points = combos + [dict(p) for p in spec.points]
    total = len(points) * spec.replications
    if total > MAX_RUNS:
        raise SweepError(f"expands to {total:,} runs, more than {MAX_RUNS:,}; split the "
                         "study into several sweep files", field="grid")
    defaults = {k: o.default for k, o in OPTIONS.items()}
    files: dict[str, str] = {}
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for p_index, point in enumerate(points):
        merged = {**defaults, **spec.base, **point}
        for r in range(spec.replications):
            config = dict(merged)
            config["seed"] = int(merged["seed"]) + r
            identity: dict[str, Any] = {"config": config, "gpusched": version()}
            # a file's contents are part of the configuration: an edited cluster file
            # or trace is a new run, not a resumed one
            for key in ("cluster", "trace"):
                value = config[key]
                if isinstance(value, str) and os.path.isfile(value):
                    if value not in files:
                        files[value] = _file_sha256(value)
                    identity[f"{key}_sha256"] = files[value]
            rid = run_id(identity)
            if rid in seen:
                where = f"points[{p_index - len(combos)}]" if p_index >= len(combos) \
                    else "grid"
                raise SweepError(f"run {config} appears twice (also as run "
                                 f"{seen[rid]} of the expansion); drop one", field=where)
            seen[rid] = len(runs)
            runs.append(Run(len(runs), p_index, r, config, identity, rid))
    return runs


def _values(key: str, value: Any, where: str, passthrough: set[str]) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise SweepError(f"a grid axis is a non-empty list of values, got {value!r}",
                         field=f"{where}.{key}")
    for v in value:
        _check_option(key, v, where, passthrough)
    if len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
        raise SweepError(f"repeats a value in {value!r}", field=f"{where}.{key}")
    return list(value)


def parse_spec(data: Mapping[str, Any], *, source: str | None = None) -> SweepSpec:
    """Check a sweep (the TOML's structure as a dict) and return it; see the module doc."""
    if not isinstance(data, Mapping):
        raise SweepError(f"a sweep is a table of sections, got {type(data).__name__}")
    unknown = [k for k in data if k not in _SECTIONS]
    if unknown:
        raise SweepError(f"unknown section {unknown[0]!r}; sections are "
                         f"{', '.join(_SECTIONS)}", field=str(unknown[0]))
    passthrough = passthrough_keys()

    def table(name: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            raise SweepError(f"must be a table, got {value!r}", field=name)
        return value

    head = table("sweep")
    for key in head:
        if key not in ("name", "replications", "timeout_s"):
            raise SweepError(f"unknown key {key!r}; [sweep] takes name, replications, "
                             "timeout_s (simulate options go in [base], [grid] or "
                             "[[points]])", field=f"sweep.{key}")
    name = head.get("name", Path(source).stem if source else "sweep")
    # it names the default results directory, so it is one plain path component
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name)):
        raise SweepError(f"must be letters, digits, '.', '_' or '-' (a directory name), "
                         f"got {name!r}", field="sweep.name")
    replications = head.get("replications", 1)
    if not (isinstance(replications, int) and not isinstance(replications, bool)
            and 1 <= replications <= 1000):
        raise SweepError(f"must be a whole number from 1 to 1000, got {replications!r}",
                         field="sweep.replications")
    timeout_s = head.get("timeout_s", 3600.0)
    if _positive(timeout_s):
        raise SweepError(f"must be a positive number of seconds, got {timeout_s!r}",
                         field="sweep.timeout_s")

    base = dict(table("base"))
    for key, value in base.items():
        _check_option(key, value, "base", passthrough)
    grid = {key: _values(key, value, "grid", passthrough)
            for key, value in table("grid").items()}
    raw_points = data.get("points", [])
    if not isinstance(raw_points, list):
        raise SweepError(f"is a list of tables ([[points]]), got {raw_points!r}",
                         field="points")
    points = []
    for i, point in enumerate(raw_points):
        if not isinstance(point, Mapping):
            raise SweepError(f"must be a table, got {point!r}", field=f"points[{i}]")
        for key, value in point.items():
            _check_option(key, value, f"points[{i}]", passthrough)
        points.append(dict(point))
    if replications > 1 and ("seed" in grid or any("seed" in p for p in points)):
        raise SweepError("replications already vary the seed (seed, seed+1, ...); vary "
                         "it with a seed axis or with replications, not both",
                         field="sweep.replications")

    plots = table("plots")
    for key in plots:
        if key not in ("heatmap", "metric"):
            raise SweepError(f"unknown key {key!r}; [plots] takes heatmap, metric",
                             field=f"plots.{key}")
    heatmap = plots.get("heatmap")
    if heatmap is not None:
        if not (isinstance(heatmap, list) and len(heatmap) == 2
                and all(isinstance(k, str) for k in heatmap) and heatmap[0] != heatmap[1]):
            raise SweepError(f"names two different options, got {heatmap!r}",
                             field="plots.heatmap")
        for key in heatmap:
            if key not in grid and not any(key in p for p in points):
                raise SweepError(f"{key!r} is not an axis of this sweep (axes: "
                                 f"{', '.join(grid) or 'none'})", field="plots.heatmap")
    from .tables import METRICS

    metric = plots.get("metric", "delivered_gpu_hours")
    if metric not in METRICS:
        raise SweepError(f"unknown metric {metric!r}; metrics are {', '.join(METRICS)}",
                         field="plots.metric")
    spec = SweepSpec(str(name), base, grid, points, replications, float(timeout_s),
                     list(heatmap) if heatmap else None, str(metric), source)
    spec.runs()  # duplicates and size fail now, before any work
    return spec


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and check a sweep file (TOML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"no sweep file {str(path)!r}", field="spec") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"cannot read {str(path)!r}: {exc}", field="spec") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{str(path)!r} is not valid TOML: {exc}", field="spec") from None
    return parse_spec(data, source=str(path))
