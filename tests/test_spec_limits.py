"""The spec layer owns the limits: one integer coefficient matrix, one zone-row set,
``with_limits``, and the spec bounds that keep every row load inside int64."""

from __future__ import annotations

import numpy as np
import pytest

from gpusched import Cluster, SpecError
from gpusched.spec import COEF_SCALE




def test_integer_coefficients_are_one_cached_matrix_with_a_s_pattern():
    c = Cluster.preset("superpod-su").constraints
    assert c.A_units is c.A_units
    assert c.A_units.dtype == np.int64
    np.testing.assert_array_equal(c.A_units.indptr, c.A.indptr)
    np.testing.assert_array_equal(c.A_units.indices, c.A.indices)
    np.testing.assert_array_equal(c.A_units.data, np.rint(c.A.data * COEF_SCALE))


def test_zone_rows_are_the_rows_shared_by_pods():
    cluster = Cluster.preset("superpod-su")
    c = cluster.constraints
    expect = [i for i in range(c.num_rows)
              if len(set(cluster.rack_pod[c.A.indices[c.A.indptr[i]:c.A.indptr[i + 1]]])) >= 2]
    assert c.zone_rows.tolist() == expect
    assert c.kinds.index("facility") in expect or cluster.num_pods == 1


def test_allocator_and_optimize_read_the_same_zone_rows():
    from gpusched import Engine
    from gpusched.plan.site import _Site
    from gpusched.simulate.policies import Optimize

    cluster = Cluster.preset("superpod-su")
    engine = Engine(cluster)
    site = _Site(engine, cluster.power.cap_max_w, aggregate=True)
    assert site.zone_rows == cluster.constraints.zone_rows.tolist()

    class _Sim:
        pass
    sim = _Sim()
    sim.cluster, sim.engine = cluster, engine
    policy = Optimize()
    assert policy._uncontended(sim) in (True, False)
    assert policy._zone_rows.tolist() == cluster.constraints.zone_rows.tolist()


def test_with_limits_changes_only_the_named_rows():
    cluster = Cluster.preset("tiny")
    c = cluster.constraints
    name = c.names[c.kinds.index("row")]
    changed = cluster.with_limits({name: 123_456.0})
    assert changed.constraints.names == c.names
    assert (changed.constraints.A != c.A).nnz == 0
    i = c.names.index(name)
    assert changed.constraints.b[i] == 123_456.0
    others = np.arange(c.num_rows) != i
    np.testing.assert_array_equal(changed.constraints.b[others], c.b[others])
    assert changed.node_names == cluster.node_names


def test_with_limits_every_row_and_unknown_name():
    cluster = Cluster.preset("tiny")
    lifted = cluster.with_limits(every_w=1e11, name="lifted")
    assert lifted.name == "lifted"
    assert (lifted.constraints.b == 1e11).all()
    assert cluster.constraints.b.max() < 1e11  # the original is unchanged
    with pytest.raises(SpecError) as info:
        cluster.with_limits({"no such row": 1.0})
    assert "no such row" in str(info.value)


def test_lifted_cluster_is_with_limits():
    from gpusched.simulate.policies import lifted_cluster

    cluster = Cluster.preset("superpod-su")
    lifted = lifted_cluster(cluster)
    assert (lifted.constraints.b == 1e11).all()
    assert lifted.constraints.names == cluster.constraints.names


# ---- issue 13 finding 5: node names unique across explicit and default names ----------

def test_explicit_node_name_equal_to_another_racks_default_is_refused():
    spec = Cluster.preset("tiny").to_dict()
    first, second = spec["racks"][0], spec["racks"][1]
    names = [f"{first['name']}-n{i}" for i in range(second["nodes"])]
    second["node_names"] = names
    with pytest.raises(SpecError) as info:
        Cluster.from_dict(spec)
    assert info.value.field.startswith("racks[1].node_names[")
    assert "racks[0]" in str(info.value) and repr(names[0]) in str(info.value)


def test_default_like_names_that_do_not_collide_are_accepted():
    spec = Cluster.preset("tiny").to_dict()
    first, second = spec["racks"][0], spec["racks"][1]
    n = first["nodes"]
    # index past the rack's size, a leading zero, and a rack with its own names
    second["node_names"] = ([f"{first['name']}-n{n}", f"{first['name']}-n00"]
                            + [f"x{i}" for i in range(second["nodes"] - 2)])
    cluster = Cluster.from_dict(spec)
    assert len(set(cluster.node_names)) == cluster.num_nodes


# ---- issue 13 finding 22: unencodable names refused; save is atomic ------------------

@pytest.mark.parametrize("place", ["name", "racks[0].name", "pods[0].name", "facility.name",
                                   "racks[1].node_names[0]", "limits[0].name"])
def test_lone_surrogate_names_are_refused_with_the_field(place):
    spec = Cluster.preset("tiny").to_dict()
    rack = spec["racks"][0]
    spec["limits"] = [{"name": "inlet", "limit": 1e9, "coefficients": {rack["name"]: 1.0}}]
    spec["racks"][1]["node_names"] = [f"h{i}" for i in range(spec["racks"][1]["nodes"])]
    bad = "a\ud800b"
    if place == "name":
        spec["name"] = bad
    elif place == "facility.name":
        spec["facility"]["name"] = bad
    elif place == "racks[0].name":
        spec["racks"][0]["name"] = bad
    elif place == "pods[0].name":
        old = spec["pods"][0]["name"]
        spec["pods"][0]["name"] = bad
        for r in spec["racks"]:
            if r["pod"] == old:
                r["pod"] = bad
    elif place == "limits[0].name":
        spec["limits"][0]["name"] = bad
    else:
        spec["racks"][1]["node_names"][0] = bad
    with pytest.raises(SpecError) as info:
        Cluster.from_dict(spec)
    assert info.value.field == place, str(info.value)
    assert "UTF-8" in str(info.value)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_failed_save_leaves_the_existing_file_intact(tmp_path, monkeypatch, suffix):
    import gpusched.spec.formats as formats

    target = tmp_path / f"site{suffix}"
    Cluster.preset("tiny").save(target)
    before = target.read_bytes()
    other = Cluster.preset("superpod-su")

    def failing_dump(spec, format):
        raise OSError("disk full (injected)")
    monkeypatch.setattr(formats, "dump", failing_dump)
    with pytest.raises(OSError):
        other.save(target)
    assert target.read_bytes() == before
    monkeypatch.undo()
    # a write that fails half way (the temp file's fsync) also leaves the old text
    import gpusched._atomic as atomic

    def failing_fsync(fd):
        raise OSError("I/O error (injected)")
    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        other.save(target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp left
    other.save(target)
    assert Cluster.load(target).num_gpus == other.num_gpus
