"""Spec fuzzing: drawn TOML and JSON cluster files, many of them broken on purpose.

A file starts as a valid drawn spec; then a mutation: a value replaced by NaN, inf, a
negative, zero or huge number, a wrong type or a unicode string; a key deleted; an
unknown key added; a name renamed to unicode; a power model field set.  Each file is
written to disk as TOML or JSON and read with ``Cluster.load``.  It either loads (and
then its constraint system is the one DESIGN.md describes, and it round-trips through
``dumps``/``loads``), or it raises SpecError whose ``field`` names the mutated field (or,
where a change shows up elsewhere, the field it breaks: a reference to a renamed pod, a
limit the idle cluster already exceeds).  No other exception, no crash.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings, strategies as st

from gpusched import Cluster
from gpusched.errors import SpecError

from .support.model import SiteModel
from .support.strategies import cluster_specs

# ---- a TOML writer for arbitrary (also wrong) values: the package's only writes valid specs


def _toml_str(text: str) -> str:
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # TOML integers are 64-bit; larger ones go as floats
        if -2**63 <= value < 2**63:
            return str(value)
        return ("inf" if value > 0 else "-inf") if abs(value) > 1e308 else repr(float(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_str(str(k))} = {_toml_value(v)}"
                               for k, v in value.items() if v is not None) + "}"
    raise TypeError(type(value))


def to_toml(spec: dict[str, Any]) -> str:
    return "\n".join(f"{_toml_str(str(k))} = {_toml_value(v)}"
                     for k, v in spec.items() if v is not None) + "\n"


def to_json(spec: Any) -> str:
    return json.dumps(spec, ensure_ascii=False, allow_nan=True)


# ---- mutations ------------------------------------------------------------------------

def _walk(node: Any, path: str = ""):
    """Yield (container, key, dotted path) for every entry, as SpecError spells fields."""
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            yield node, k, p
            yield from _walk(v, p)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            p = f"{path}[{i}]"
            yield node, i, p
            yield from _walk(v, p)


UNICODE_NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
BAD_VALUES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1, -1e9, 0, 0.5, 1e-7, 1e300, 10**30,
                     2**63, 2**64, 10**400, "", "x", "700", [], [1], {}, {"a": 1}, True, False,
                     None, 1024, 1025]),
    UNICODE_NAMES)
POWER_FIELDS = ["gpus_per_node", "gpu_tdp_w", "cap_min_w", "cap_max_w", "cap_step_w",
                "gpu_idle_w", "node_other_idle_w", "node_other_busy_w"]


@st.composite
def mutated_specs(draw):
    """(spec, mutation, path): one mutation of a valid drawn spec."""
    spec = draw(cluster_specs(max_pods=3, max_racks_per_pod=3, spread_tightness=True))
    kind = draw(st.sampled_from(["set", "set", "set", "delete", "unknown", "rename", "power",
                                 "none"]))
    entries = list(_walk(spec))
    if kind == "none":
        return spec, kind, ""
    if kind == "power":
        field = draw(st.sampled_from(POWER_FIELDS))
        value = draw(st.one_of(BAD_VALUES, st.integers(-10, 2_000_000)))
        spec["power"] = {field: value}
        return spec, kind, f"power.{field}"
    if kind == "unknown":
        tables = [("", spec)] + [(p, c[k]) for c, k, p in entries if isinstance(c[k], dict)]
        where, table = draw(st.sampled_from(tables))
        key = draw(UNICODE_NAMES.filter(lambda k: k not in table))
        table[key] = draw(BAD_VALUES)
        return spec, kind, f"{where}.{key}" if where else key
    if kind == "rename":
        names = [(c, k, p) for c, k, p in entries if k == "name"]
        container, key, path = draw(st.sampled_from(names))
        container[key] = draw(UNICODE_NAMES)
        return spec, kind, path
    container, key, path = draw(st.sampled_from(entries))
    if kind == "delete":
        del container[key]
    else:
        container[key] = draw(BAD_VALUES)
    return spec, kind, path


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def _related(field: str, path: str) -> bool:
    """The error's field is the mutated one, inside it, around it or beside it."""
    if field == path:
        return True
    for a, b in ((field, path), (path, field)):
        if a.startswith(b + ".") or a.startswith(b + "["):
            return True
    parent = _parent(path)
    return bool(parent) and (field.startswith(parent + ".") or field.startswith(parent + "["))


def _explained_elsewhere(err: SpecError, kind: str, path: str) -> bool:
    """A change that surfaces at another field, by design."""
    field, message = err.field or "", str(err)
    if "all-idle cluster already breaks" in message:
        return kind in ("set", "delete", "power")  # a number now too small for idle power
    last = re.sub(r"\[\d+\]", "", field.rsplit(".", 1)[-1])
    if last in ("hall", "row", "pod") and "which is not in" in message:
        return kind in ("rename", "delete", "set")  # a reference to a renamed/removed item
    if re.fullmatch(r"pods\[\d+\]", field) and "holds no rack" in message:
        return path.startswith("racks")
    return False


def _check(text: str, fmt: str, kind: str, path: str, tmp_path) -> Cluster | None:
    file = tmp_path / f"cluster.{fmt}"
    file.write_text(text, encoding="utf-8")
    try:
        cluster = Cluster.load(file)
    except SpecError as err:
        note(f"SpecError field={err.field!r}: {err}")
        event(f"{kind}: SpecError")
        assert err.field, f"SpecError without a field: {err}"
        if kind != "none":
            assert _related(err.field, path) or _explained_elsewhere(err, kind, path), (
                f"mutated {path!r} ({kind}) but the error names {err.field!r}: {err}")
        return None
    event(f"{kind}: loads")
    # it loaded: the system is DESIGN.md's, and the spec round-trips
    SiteModel(cluster.to_dict()).check_constraints(cluster)
    for out in ("json", "toml"):
        again = Cluster.loads(cluster.dumps(out), format=out)
        assert again.to_dict() == cluster.to_dict()
    return cluster


def test_toml_dump_escapes_del():
    spec = Cluster.preset("tiny").to_dict()
    spec["name"] = "tiny\x7f"
    cluster = Cluster.from_dict(spec)
    assert Cluster.loads(cluster.dumps("toml"), format="toml").name == "tiny\x7f"


FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


@FUZZ
@given(case=mutated_specs(), fmt=st.sampled_from(["json", "toml"]))
def test_mutated_file_loads_or_names_the_field(case, fmt, tmp_path):
    spec, kind, path = case
    note(f"{kind} {path!r}")
    if fmt == "toml":
        assume(not _has_none(spec))  # TOML has no null; JSON covers it
    text = to_json(spec) if fmt == "json" else to_toml(spec)
    cluster = _check(text, fmt, kind, path, tmp_path)
    if kind == "none":
        assert cluster is not None


def _has_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_none(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_none(v) for v in value)
    return False


@FUZZ
@given(case=mutated_specs(), cut=st.floats(0, 1), fmt=st.sampled_from(["json", "toml"]))
def test_truncated_file_is_a_spec_error(case, cut, fmt, tmp_path):
    """Cut anywhere: SpecError (syntax errors carry a line and column), never a crash."""
    spec, _, _ = case
    if fmt == "toml":
        assume(not _has_none(spec))
    text = to_json(spec) if fmt == "json" else to_toml(spec)
    text = text[:int(len(text) * cut)]
    file = tmp_path / f"cluster.{fmt}"
    file.write_text(text, encoding="utf-8")
    try:
        Cluster.load(file)
    except SpecError as err:
        assert err.field or re.search(r"line \d+|end of document", str(err)), err


@pytest.mark.parametrize("text,fmt,field", [
    ('{"facility": {"it_limit_w": NaN}}', "json", "facility.it_limit_w"),
    ('{"facility": {"it_limit_w": Infinity}}', "json", "facility.it_limit_w"),
    ('{"facility": {"it_limit_w": 1' + "0" * 400 + '}}', "json", "facility.it_limit_w"),
    ('facility = {it_limit_w = nan}', "toml", "facility.it_limit_w"),
    ('facility = {it_limit_w = -inf}', "toml", "facility.it_limit_w"),
    ('facility = {it_limit_w = 1979-05-27T07:32:00Z}', "toml", "facility.it_limit_w"),
    ('[]', "json", "(top level)"),
    ('{"colour": 1}', "json", "colour"),
    ('{"facility": {"it_limit_w": 1, "volts": 2}}', "json", "facility.volts"),
])
def test_examples_name_the_field(text, fmt, field, tmp_path):
    file = tmp_path / f"c.{fmt}"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        Cluster.load(file)
    assert info.value.field == field


def test_unhashable_references_name_the_field():
    spec = Cluster.preset("tiny").to_dict()
    for where, key in (("rows", "hall"), ("racks", "row"), ("racks", "pod")):
        broken = json.loads(json.dumps(spec))
        broken[where][0][key] = ["not", "a", "name"]
        with pytest.raises(SpecError) as info:
            Cluster.from_dict(broken)
        assert info.value.field == f"{where}[0].{key}"


@pytest.mark.parametrize("text,fmt", [("[" * 50_000, "json"),
                                      ("a = " + "[" * 50_000 + "]" * 50_000, "toml")],
                         ids=["json", "toml"])
def test_deep_nesting_is_a_spec_error(text, fmt):
    with pytest.raises(SpecError, match="nested too deeply"):
        Cluster.loads(text, format=fmt)


def test_missing_and_misnamed_files(tmp_path):
    with pytest.raises(SpecError) as info:
        Cluster.load(tmp_path / "nope.toml")
    assert info.value.field == "path"
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(SpecError) as info:
        Cluster.load(tmp_path / "bad.toml")
    assert info.value.field == "path"
    with pytest.raises(SpecError) as info:
        Cluster.load(tmp_path / "c.yaml")
    assert info.value.field == "path"


# ---- wide specs: whole ranges, all of Unicode, duplicates, reorderings ---------------

from gpusched.spec import MAX_ROW_LOAD_UNITS  # noqa: E402

from .support.strategies import reordered, wide_specs  # noqa: E402


def _exact_loads(cluster: Cluster, rack_power_w) -> list[int]:
    """Row loads in coefficient units with Python ints: an oracle that cannot overflow."""
    A = cluster.constraints.A_units
    return [sum(int(A.data[k]) * int(rack_power_w[A.indices[k]])
                for k in range(A.indptr[i], A.indptr[i + 1])) for i in range(A.shape[0])]


def _validate(spec: dict) -> Cluster | None:
    try:
        return Cluster.from_dict(spec)
    except SpecError as err:
        assert err.field, f"SpecError without a field: {err}"
        event(f"refused at {re.sub(r'[0-9]+', 'i', err.field.split('.')[-1])}")
        return None


@FUZZ
@given(spec=wide_specs())
def test_wide_spec_validates_and_never_overflows_or_is_refused(spec, tmp_path):
    cluster = _validate(spec)
    if cluster is None:
        return
    event("validates")
    power = cluster.power
    top = cluster.full_rack_power_w(power.gpu_tdp_w)
    exact = _exact_loads(cluster, top)
    assert max(exact) <= MAX_ROW_LOAD_UNITS, "a reachable row load past the int64 bound"
    assert cluster.constraints.load_units(top).tolist() == exact  # int64 did not wrap
    assert len(set(cluster.node_names)) == cluster.num_nodes
    for text in (cluster.name, *cluster.rack_names, *cluster.node_names):
        text.encode("utf-8")
    for fmt in ("json", "toml"):
        target = tmp_path / f"site.{fmt}"
        cluster.save(target)
        again = Cluster.load(target)
        assert again.fingerprint == cluster.fingerprint
        assert again.node_names == cluster.node_names


@FUZZ
@given(spec=wide_specs(max_racks=6), data=st.data())
def test_wide_spec_engines_keep_every_row_by_the_python_int_oracle(spec, data):
    from gpusched import Engine, Job
    from gpusched.engine import available_backends
    from gpusched.errors import GpuschedError

    cluster = _validate(spec)
    assume(cluster is not None and cluster.num_gpus <= 20_000)
    power = cluster.power
    # Known cost, not yet fixed: a gang spread over pods tries every cap of the grid,
    # highest first, until one fits, so a whole-site gang that fits at none on a spec
    # with a 1 W step over a wide cap range (valid today) makes the Python twin take
    # minutes.  Bounded here so the fuzzer tests the rows, not that; searching the caps
    # by bisection in both twins, or bounding the grid in the schema, is the fix.
    assume(len(power.cap_grid_w(power.cap_max_w, power.cap_min_w)) <= 64)
    gpus = data.draw(st.sampled_from([1, power.gpus_per_node, cluster.num_gpus]))
    try:
        job = Job("j", gpus, max_cap_w=power.cap_max_w, min_cap_w=power.cap_min_w)
    except GpuschedError:
        return
    b_units = cluster.constraints.b_units.tolist()
    answers = []
    for backend in available_backends():
        engine = Engine(cluster, backend=backend)
        try:
            placement = engine.place(job)
        except GpuschedError:
            placement = "refused"
        answers.append(placement if placement in (None, "refused")
                       else (placement.nodes, placement.cap_w))
        load = _exact_loads(cluster, engine.rack_power_w())
        assert all(x <= b for x, b in zip(load, b_units)), backend
        assert cluster.constraints.violations(engine.rack_power_w()) == []
    assert all(a == answers[0] for a in answers), answers


@FUZZ
@given(spec=wide_specs(max_racks=8), data=st.data())
def test_reordered_racks_are_another_fingerprint_and_refuse_the_snapshot(spec, data):
    from gpusched import Engine, Job
    from gpusched.errors import GpuschedError, SnapshotError

    order = data.draw(st.permutations(range(len(spec["racks"]))))
    first, second = _validate(spec), _validate(reordered(spec, list(order)))
    assert (first is None) == (second is None)  # the same fields, the same verdict
    if first is None or second is None:
        return
    same = list(order) == sorted(order)
    assert (first.fingerprint == second.fingerprint) == same
    assert sorted(first.node_names) == sorted(second.node_names)
    if same or first.num_gpus > 20_000:
        return
    engine = Engine(first)
    try:
        job = Job("j", 1, max_cap_w=first.power.cap_max_w, min_cap_w=first.power.cap_min_w)
    except GpuschedError:
        return
    if engine.place(job) is None:
        return
    event("snapshot refused on the reordered site")
    with pytest.raises(SnapshotError):
        Engine(second).load_snapshot(engine.snapshot())
