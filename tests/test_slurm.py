"""Slurm adapter: topology.conf (tree and block), the power overlay, hostlists."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpusched
from gpusched.adapters.slurm import (cluster_from_topology, compress_hostlist,
                                     expand_hostlist, load_overlay, parse_topology,
                                     placement_nodelist, read_cluster, read_topology)
from gpusched.errors import SpecError
from tests.verify import check_engine

SLURM = Path(__file__).parent / "fixtures" / "slurm"


# ---- hostlists ----------------------------------------------------------------------

@pytest.mark.parametrize("expr, names", [
    ("tux[0-3,12,18-20]", ["tux0", "tux1", "tux2", "tux3", "tux12", "tux18", "tux19",
                           "tux20"]),
    ("gpu[0001-0003]", ["gpu0001", "gpu0002", "gpu0003"]),
    ("gpu[0998-1001]", ["gpu0998", "gpu0999", "gpu1000", "gpu1001"]),
    ("s[01-02],login", ["s01", "s02", "login"]),
    ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
    ("node7", ["node7"]),
    ("a[1-2]-ib", ["a1-ib", "a2-ib"]),
])
def test_expand_hostlist(expr, names):
    assert expand_hostlist(expr) == names


@pytest.mark.parametrize("expr", ["", "gpu[1-3", "gpu]1[", "gpu[3-1]", "gpu[a-b]",
                                  "gpu[1-2],,x", "gpu[[1-2]]", "gpu[1-]", "g pu1"])
def test_expand_hostlist_refuses_malformed_expressions(expr):
    with pytest.raises(ValueError):
        expand_hostlist(expr)


@pytest.mark.parametrize("names, expr", [
    (["gpu0001", "gpu0002", "gpu0003", "gpu0007"], "gpu[0001-0003,0007]"),
    (["gpu0999", "gpu1000"], "gpu[0999-1000]"),
    (["n3", "n1", "n2", "n10"], "n[1-3,10]"),
    (["dgx0005"], "dgx0005"),
    (["a1-ib", "a2-ib", "login"], "login,a[1-2]-ib"),
])
def test_compress_hostlist(names, expr):
    assert compress_hostlist(names) == expr


host_names = st.builds(
    lambda prefix, number, width, suffix: f"{prefix}{str(number).zfill(width)}{suffix}",
    st.sampled_from(["gpu", "dgx", "r1n", "node-"]), st.integers(0, 1200),
    st.sampled_from([0, 2, 4]), st.sampled_from(["", "-ib"]))


@given(st.lists(host_names, min_size=1, max_size=60))
def test_compress_then_expand_gives_the_same_hosts(names):
    expr = compress_hostlist(names)
    expanded = expand_hostlist(expr)
    assert sorted(expanded) == sorted(set(names))
    assert len(expanded) == len(set(names))  # no name twice


# ---- topology.conf ------------------------------------------------------------------

def test_tree_topology_leaves_are_pods():
    topology = read_topology(SLURM / "tree.conf")
    assert topology.plugin == "tree"
    assert list(topology.pods) == ["su01", "su02"]
    assert topology.pods["su01"] == [f"dgx{i:04d}" for i in range(1, 33)]
    assert topology.switches == {"spine01": ["su01", "su02"]}


def test_block_topology_blocks_are_pods():
    topology = read_topology(SLURM / "block.conf")
    assert topology.plugin == "block" and topology.block_sizes == [16, 32]
    assert [len(v) for v in topology.pods.values()] == [16, 16, 16, 16]
    assert "blk-c" in topology.pods  # the lower-case line


@pytest.mark.parametrize("text, line, words", [
    ("SwitchName=s1 Nodes=n[1-4]\nSwitchName=s2 Nodes=n[5-8\n", 2, "without ']'"),
    ("SwitchName=s1 Nodes=n[1-4] Speed=100\n", 1, "unknown parameter"),
    ("SwitchName=s1 Nodes n[1-4]\n", 1, "is not Key=Value"),
    ("# header\n\nSwitchName=s1 Nodes=n[1-4]\nSwitchName=s1 Nodes=n[5-8]\n", 4,
     "defined twice"),
    ("SwitchName=s1 Nodes=n[1-4]\nSwitchName=s2 Nodes=n[4-8]\n", 2, "already under 's1'"),
    ("SwitchName=s1 Nodes=n[1-4]\nSwitchName=top Switches=s[1-2]\n", 2, "'s2', which is "
                                                                        "not defined"),
    ("SwitchName=s1 Nodes=n[1-4]\nBlockName=b1 Nodes=n[5-8]\n", 2, "mixes"),
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=4,6\n", 2, "power-of-two"),
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=4\nBlockSizes=4\n", 3, "twice"),
    ("BlockName=b1 Nodes=n[1-4]\nBlockSizes=four\n", 2, "whole numbers"),
    ("Nodes=n[1-4]\n", 1, "must start a switch"),
    ("SwitchName=s1 Nodes=n[1-4] LinkSpeed=fast\n", 1, "LinkSpeed"),
    ("SwitchName=s1 Nodes=n[1-4] Switches=s2\nSwitchName=s2 Nodes=m1\n", 1, "not both"),
    ("SwitchName=s1\n", 1, "lists no Nodes"),
    ("SwitchName=s1 nodes=n1 NODES=n2\n", 1, "given twice"),
    ("SwitchName=s/1 Nodes=n1\n", 1, "characters"),
    ("# nothing but comments\n", 0, "no SwitchName"),
])
def test_malformed_lines_name_their_line(text, line, words):
    with pytest.raises(SpecError, match=words) as info:
        parse_topology(text, source="topology.conf")
    assert info.value.field == f"line {line}"


def test_malformed_fixture_file():
    with pytest.raises(SpecError, match="runs backwards") as info:
        read_topology(SLURM / "malformed_tree.conf")
    assert info.value.field == "line 4"


# ---- the cluster ----------------------------------------------------------------------

def test_tree_cluster_from_topology_and_overlay(backend):
    cluster = read_cluster(SLURM / "tree.conf", SLURM / "tree_overlay.toml")
    assert (cluster.num_nodes, cluster.num_racks, cluster.num_pods, cluster.num_rows) == (
        64, 16, 2, 2)
    assert cluster.node_names[:2] == ("dgx0001", "dgx0002")
    assert cluster.pod_names == ("su01", "su02")
    assert cluster.rack_names[:2] == ("su01-r1", "su01-r2")
    c = cluster.constraints
    assert c.b[c.row("row-1 busway")] == 320_000 and c.b[c.row("facility IT limit")] == 600_000
    # a spec round trip keeps the Slurm names
    again = gpusched.Cluster.from_dict(cluster.to_dict())
    assert again.node_names == cluster.node_names
    engine = gpusched.Engine(cluster, backend=backend)
    p = engine.place(gpusched.Job("llm", 64, min_cap_w=400))
    nodelist = placement_nodelist(cluster, p)
    assert nodelist == "dgx[0001-0008]"
    assert expand_hostlist(nodelist) == [cluster.node_names[n] for n in p.nodes]
    check_engine(engine)


def test_block_cluster_mixes_liquid_and_air_racks():
    cluster = read_cluster(SLURM / "block.conf", SLURM / "block_overlay.toml")
    assert list(cluster.rack_kind) == [0] * 4 + [1] * 8  # 2 blocks x 2 liquid, 2 x 4 air
    assert cluster.rack_nodes.tolist() == [8] * 4 + [4] * 8
    assert cluster.num_halls == 2 and cluster.num_pods == 4


def test_nodelist_of_scattered_nodes_keeps_padding():
    cluster = read_cluster(SLURM / "tree.conf", SLURM / "tree_overlay.toml")
    assert placement_nodelist(cluster, [0, 1, 2, 9, 40]) == "dgx[0001-0003,0010,0041]"


@pytest.fixture
def tree_overlay():
    return load_overlay(SLURM / "tree_overlay.toml")


def with_rows(overlay, rows):
    return {**overlay, "rows": rows}


@pytest.mark.parametrize("change, field, words", [
    (lambda o: {**o, "colour": 1}, "overlay", "unknown key"),
    (lambda o: {k: v for k, v in o.items() if k != "rows"}, "overlay.rows", "is missing"),
    (lambda o: with_rows(o, [{**o["rows"][0], "nodes": "dgx[0001-0030]"}, o["rows"][1]]),
     "overlay.rows", "in no row"),
    (lambda o: with_rows(o, [{**o["rows"][0], "nodes": "dgx[0001-0034]"},
                             {**o["rows"][1], "nodes": "dgx[0035-0064]"}]),
     "overlay.rows", "spans rows"),
    (lambda o: with_rows(o, [o["rows"][0], {**o["rows"][1], "nodes": "dgx[0032-0064]"}]),
     "overlay.rows[1].nodes", r"also in rows\[0\]"),
    (lambda o: with_rows(o, [{**o["rows"][0], "nodes": "dgx[0001-0032"}, o["rows"][1]]),
     "overlay.rows[0].nodes", "without"),
    (lambda o: {**o, "rack_groups": [{"nodes": "cpu[1-2]", "feed_w": 1}]},
     "overlay.rack_groups[0].nodes", "not in"),
    (lambda o: {**o, "racks": {**o["racks"], "nodes_per_rack": 0}},
     "overlay.racks.nodes_per_rack", ">= 1"),
    (lambda o: {**o, "racks": {**o["racks"], "feed_w": -5}}, "racks[0].feed_w", ">= 0"),
    (lambda o: with_rows(o, [{**o["rows"][0], "hall": "hall-z"}, o["rows"][1]]),
     "rows[0].hall", "hall-z"),
])
def test_bad_overlays_name_the_field(tree_overlay, change, field, words):
    topology = read_topology(SLURM / "tree.conf")
    with pytest.raises(SpecError, match=words) as info:
        cluster_from_topology(topology, change(tree_overlay))
    assert info.value.field == field


def test_overlay_that_is_not_toml(tmp_path):
    bad = tmp_path / "overlay.toml"
    bad.write_text("[facility\nit_limit_w = 1\n")
    with pytest.raises(SpecError, match="invalid TOML"):
        load_overlay(bad)
