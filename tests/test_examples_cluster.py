"""examples/cluster.toml loads, has the shape its comments state, places a job on both
backends, and uses only keys that docs/cluster-format.md documents; every relative link in
README.md and docs/*.md names a file that is in the repository."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from gpusched import Cluster, Engine, Job

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cluster.toml"
FORMAT_DOC = ROOT / "docs" / "cluster-format.md"


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return Cluster.load(EXAMPLE)


def test_shape_matches_the_comments(cluster: Cluster) -> None:
    assert (cluster.num_halls, cluster.num_rows, cluster.num_pods, cluster.num_racks) == (2, 4, 4, 8)
    assert (cluster.num_nodes, cluster.num_gpus) == (48, 384)
    assert Counter(cluster.constraints.kinds) == {
        "rack-feed": 8, "cdu": 4, "rack-air": 4, "air-cooling": 4, "row": 4, "hall": 2,
        "hall-cooling": 2, "facility": 1, "thermal": 1}
    assert cluster.constraints.num_rows == 30
    # the facility limit binds when every GPU runs at 700 W, as the comment says
    assert cluster.full_rack_power_w(700).sum() > 360_000
    assert "gpu-a01" in cluster.node_names


def test_places_a_job(cluster: Cluster, backend: str) -> None:
    engine = Engine(cluster, backend=backend)
    placement = engine.place(Job("pretrain", 64, min_cap_w=350))
    assert placement is not None and len(placement.nodes) == 8
    assert engine.row_slack_w().min() >= 0
    engine.release("pretrain")
    assert engine.free_gpus() == cluster.num_gpus


def _documented_keys() -> set[str]:
    """The first column of the doc's key table, with the ``[]`` of lists dropped."""
    keys = set()
    for line in FORMAT_DOC.read_text().splitlines():
        m = re.match(r"\|\s*`([a-z_.\[\]]+)`\s*\|", line)
        if m:
            keys.add(m.group(1).replace("[]", ""))
    return keys


def _used_keys(value: object, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}.{k}" if prefix else k
            keys.add(path)
            if not (prefix.endswith("coefficients") or k == "coefficients"):
                keys |= _used_keys(v, path)
    elif isinstance(value, list):
        for item in value:
            keys |= _used_keys(item, prefix)
    return keys


def test_every_key_of_the_example_is_documented() -> None:
    import tomllib
    used = _used_keys(tomllib.loads(EXAMPLE.read_text()))
    documented = _documented_keys()
    assert len(documented) > 30  # the table was found and parsed
    assert used - documented == set()


def test_every_key_the_validator_accepts_is_documented() -> None:
    from gpusched.spec import schema as spec
    from gpusched.power import PowerModel
    accepted = set(spec._SPEC_KEYS)
    for table, keys in (("facility", spec._FACILITY_KEYS), ("halls", spec._HALL_KEYS),
                        ("rows", spec._ROW_KEYS), ("pods", spec._POD_KEYS),
                        ("racks", spec._RACK_KEYS), ("limits", spec._LIMIT_KEYS),
                        ("power", tuple(PowerModel.__dataclass_fields__))):
        accepted |= {f"{table}.{k}" for k in keys}
    assert accepted - _documented_keys() == set()


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", ["README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_name_files_in_the_repository(doc: str) -> None:
    path = ROOT / doc
    missing = []
    for target in _LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        file = target.split("#", 1)[0]
        if not (path.parent / file).exists():
            missing.append(target)
    assert missing == []


def test_readme_cites_no_file_outside_the_repository() -> None:
    text = (ROOT / "README.md").read_text() + (ROOT / "setup.py").read_text()
    assert re.findall(r"(?<!docs/)\b(DESIGN\.md|STYLE\.md|shared/[\w./-]+)", text) == []
