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
    assert policy._uncontended(sim)  # an empty site has watts to spare on every zone row
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


# ---- issue 13 finding 1: no reachable row load overflows int64 -----------------------

def _overflow_spec(coefficient: float) -> dict:
    """The issue's example: 19 racks of 1,024 nodes, nodes at 1 MW, an extra row over
    every rack with ``coefficient``, every limit at 1e12 W."""
    racks = [{"name": f"r{i}", "row": "row", "pod": "pod", "kind": "air", "nodes": 1024,
              "feed_w": 1e12, "air_cooling_w": 1e12} for i in range(19)]
    return {"name": "overflow", "power": {"node_other_busy_w": 1_000_000},
            "facility": {"it_limit_w": 1e12},
            "halls": [{"name": "hall", "switchboard_w": 1e12}],
            "rows": [{"name": "row", "hall": "hall", "busway_w": 1e12}],
            "pods": [{"name": "pod"}], "racks": racks,
            "limits": [{"name": "extra", "limit": 1e12,
                        "coefficients": {r["name"]: coefficient for r in racks}}]}


def _exact_row_loads(cluster, rack_power_w) -> list[int]:
    """Row loads in coefficient units with Python ints (no overflow): the oracle."""
    A = cluster.constraints.A_units
    return [sum(int(A.data[k]) * int(rack_power_w[A.indices[k]])
                for k in range(A.indptr[i], A.indptr[i + 1])) for i in range(A.shape[0])]


def test_spec_whose_row_load_can_overflow_int64_is_refused():
    with pytest.raises(SpecError) as info:
        Cluster.from_dict(_overflow_spec(1000))
    assert info.value.field == "limits[0].coefficients"
    assert "'extra'" in str(info.value) and "int64" in str(info.value)
    spec = _overflow_spec(1)
    spec["limits"] = []
    spec["power"]["gpus_per_node"] = 64
    spec["power"]["gpu_tdp_w"] = 1_000_000
    spec["power"]["cap_max_w"] = 1_000_000
    spec["racks"] = spec["racks"] * 1  # built-in rows: 19 x 1024 x 65 MW x 1e6 > 2**62
    for k in range(19, 200):
        spec["racks"].append(dict(spec["racks"][0], name=f"r{k}"))
    with pytest.raises(SpecError) as info:
        Cluster.from_dict(spec)
    assert info.value.field == "power.node_other_busy_w"


def test_at_the_int64_bound_the_twins_keep_the_row(backend):
    from gpusched import Engine, Job
    from gpusched.errors import PlacementError
    from gpusched.spec import MAX_ROW_LOAD_UNITS

    power = 1_000_000 + 8 * 700
    coef = (MAX_ROW_LOAD_UNITS // (19 * 1024 * power)) / COEF_SCALE  # just inside the bound
    coef = float(int(coef * COEF_SCALE) / COEF_SCALE)
    cluster = Cluster.from_dict(_overflow_spec(coef))
    full = cluster.full_rack_power_w(cluster.power.gpu_tdp_w)
    exact = _exact_row_loads(cluster, full)
    assert max(exact) <= MAX_ROW_LOAD_UNITS < 2 ** 63
    c = cluster.constraints
    extra = c.row("extra")
    # violations computes the exact load at the bound and reports the row
    broken = {name: load for name, load, _ in c.violations(full)}
    assert list(broken) == ["extra"]
    assert broken["extra"] == pytest.approx(exact[extra] / COEF_SCALE, rel=1e-12)
    assert c.load_units(full).tolist() == exact
    engine = Engine(cluster, backend=backend)
    everything = Job("all", cluster.num_gpus, max_cap_w=700, min_cap_w=200)
    assert engine.place(everything) is None           # would break "extra" ~4.6x over
    with pytest.raises(PlacementError):
        engine.place_on(everything, list(range(cluster.num_nodes)), 700)
    assert engine.gpus_in_use() == 0
    # what does fit is placed, and the row holds (checked with Python ints)
    placed = engine.place(Job("some", 8 * 1024, max_cap_w=700, min_cap_w=200))
    assert placed is not None
    load = _exact_row_loads(cluster, engine.rack_power_w())
    assert all(x <= b for x, b in zip(load, c.b_units.tolist()))
    assert c.violations(engine.rack_power_w()) == []


# ---- issue 13 finding 6: a snapshot loads only on the topology and limits it was of --

SLURM = __import__("pathlib").Path(__file__).parent / "fixtures" / "slurm"


def _slurm_site(tmp_path, topology: str, overlay: str, tag: str):
    from gpusched.adapters.slurm import read_cluster

    (tmp_path / f"{tag}.conf").write_text(topology)
    (tmp_path / f"{tag}.toml").write_text(overlay)
    return read_cluster(tmp_path / f"{tag}.conf", tmp_path / f"{tag}.toml")


def _snapshot_with_a_job(cluster, backend):
    from gpusched import Engine, Job

    engine = Engine(cluster, backend=backend)
    assert engine.place(Job("trainer", 8)) is not None
    return engine.snapshot()


def _variants(tmp_path):
    topology = (SLURM / "tree.conf").read_text()
    overlay = (SLURM / "tree_overlay.toml").read_text()
    lines = topology.splitlines(keepends=True)
    su01 = next(i for i, line in enumerate(lines) if line.startswith("SwitchName=su01"))
    su02 = next(i for i, line in enumerate(lines) if line.startswith("SwitchName=su02"))
    lines[su01], lines[su02] = lines[su02], lines[su01]
    reordered = "".join(lines)
    original = _slurm_site(tmp_path, topology, overlay, "original")
    return original, {
        "reordered leaf switches": _slurm_site(tmp_path, reordered, overlay, "reordered"),
        "renamed hosts": _slurm_site(tmp_path, topology.replace("dgx", "hgx"),
                                     overlay.replace("dgx", "hgx"), "renamed"),
    }


def test_snapshot_is_refused_on_a_reordered_or_renamed_slurm_site(tmp_path, backend):
    from gpusched import Engine
    from gpusched.errors import SnapshotError

    original, variants = _variants(tmp_path)
    snapshot = _snapshot_with_a_job(original, backend)
    for what, other in variants.items():
        # what the old check compared is the same: name, GPUs, constraint rows
        assert (other.name, other.num_gpus, other.constraints.num_rows) == \
            (original.name, original.num_gpus, original.constraints.num_rows), what
        assert other.fingerprint != original.fingerprint, what
        engine = Engine(other, backend=backend)
        with pytest.raises(SnapshotError) as info:
            engine.load_snapshot(snapshot)
        assert "cluster_fingerprint" in str(info.value), what
        assert engine.jobs() == []
    # the same site imported again has the same fingerprint and loads
    again = _slurm_site(tmp_path, (SLURM / "tree.conf").read_text(),
                        (SLURM / "tree_overlay.toml").read_text(), "again")
    assert again.fingerprint == original.fingerprint
    assert [j.id for j in Engine.restore(again, snapshot, backend=backend).jobs()] == ["trainer"]


def test_fingerprint_follows_limits_not_the_name():
    cluster = Cluster.preset("tiny")
    c = cluster.constraints
    assert cluster.with_limits(name="other name").fingerprint == cluster.fingerprint
    changed = cluster.with_limits({c.names[0]: float(c.b[0]) + 1})
    assert changed.fingerprint != cluster.fingerprint


def test_a_snapshot_without_fingerprint_loads_only_when_empty(backend):
    from gpusched import Engine
    from gpusched.errors import SnapshotError

    cluster = Cluster.preset("tiny")
    empty = Engine(cluster, backend=backend).snapshot()
    del empty["cluster_fingerprint"]
    assert Engine.restore(cluster, empty, backend=backend).jobs() == []
    full = _snapshot_with_a_job(cluster, backend)
    del full["cluster_fingerprint"]
    engine = Engine(cluster, backend=backend)
    with pytest.raises(SnapshotError) as info:
        engine.load_snapshot(full)
    assert "no cluster_fingerprint" in str(info.value)
    assert engine.jobs() == []
