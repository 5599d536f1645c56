"""The spec layer: presets, validation that names the field, TOML/JSON round trips."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from gpusched import Cluster, SpecError
from gpusched.spec import PRESETS


@pytest.fixture
def tiny_spec():
    return Cluster.preset("tiny").to_dict()


def _rejects(spec, field: str, *words: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        Cluster.from_dict(spec)
    assert info.value.field == field, str(info.value)
    for word in words:
        assert word in str(info.value)
    return info.value


def test_rack_in_no_row_is_refused(tiny_spec):
    del tiny_spec["racks"][1]["row"]
    _rejects(tiny_spec, "racks[1].row", "every rack must be in a row")


def test_rack_in_an_unknown_row_is_refused(tiny_spec):
    tiny_spec["racks"][2]["row"] = "row-9"
    _rejects(tiny_spec, "racks[2].row", "'row-9'", "not in rows")


def test_negative_limit_is_refused(tiny_spec):
    tiny_spec["rows"][0]["busway_w"] = -1
    _rejects(tiny_spec, "rows[0].busway_w", ">= 0")


def test_idle_power_breaking_a_row_is_refused_naming_its_field(tiny_spec):
    # 4 idle nodes of row-1 draw 4 x 2,070 W = 8,280 W
    tiny_spec["rows"][0]["busway_w"] = 8_000
    err = _rejects(tiny_spec, "rows[0].busway_w", "all-idle", "'row-1 busway'")
    assert "8,280 > 8,000" in str(err)


def test_unknown_key_and_preset_are_refused(tiny_spec):
    spec = copy.deepcopy(tiny_spec)
    spec["racks"][0]["volts"] = 415
    with pytest.raises(SpecError, match="volts"):
        Cluster.from_dict(spec)
    with pytest.raises(SpecError, match="presets are"):
        Cluster.preset("colossus-1m")


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_presets_round_trip(name, fmt, tmp_path):
    cluster = Cluster.preset(name)
    path = tmp_path / f"site.{fmt}"
    cluster.save(path)
    again = Cluster.load(path)
    assert again.to_dict() == cluster.to_dict()
    assert (again.constraints.A != cluster.constraints.A).nnz == 0
    np.testing.assert_array_equal(again.constraints.b, cluster.constraints.b)
    assert again.constraints.names == cluster.constraints.names


def test_colossus_parameters():
    assert Cluster.preset("colossus-100k", facility_mw=120).summary()["facility_limit_mw"] == 120
    small, big = (Cluster.preset("colossus-100k", scale=s) for s in (0.01, 10))
    assert small.num_gpus == 2 * 512 + 2 * 256
    assert big.num_gpus == 2 * 490 * 512 + 2 * 980 * 256
    with pytest.raises(SpecError, match="scale"):
        Cluster.preset("colossus-100k", scale=0)


def test_file_extension_is_checked(tmp_path):
    with pytest.raises(SpecError, match=".toml or .json"):
        Cluster.preset("tiny").save(tmp_path / "site.yaml")
