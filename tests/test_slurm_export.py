"""Slurm export: slurm.conf lines, topology.conf (tree) and the overlay import it back."""

from __future__ import annotations

import copy
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gpusched import Cluster
from gpusched.adapters.slurm import (HOOKS, cluster_from_topology, expand_hostlist,
                                     export_cluster, parse_topology, read_cluster,
                                     write_export)
from gpusched.adapters.slurm.exporter import FILES, ROOT_SWITCH
from gpusched.adapters.slurm.importer import load_overlay
from gpusched.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent


def _odd_site() -> Cluster:
    """Racks of two pods interleaved, a pod across two halls, named nodes out of order,
    racks of different sizes, and an extra thermal row: what a preset never has."""
    spec = Cluster.preset("tiny").to_dict()
    spec["halls"].append({"name": "hall-2", "switchboard_w": 60_000, "cooling_w": 60_000})
    spec["rows"][1]["hall"] = "hall-2"
    spec["racks"][1]["pod"] = "pod-2"          # pods 1, 2, 1, 2 ... in rack order
    spec["racks"][2]["pod"] = "pod-1"
    spec["racks"][2]["nodes"] = 3
    spec["racks"][0]["node_names"] = ["gpu-b7", "gpu-a3"]   # sorted, these would swap
    spec["limits"] = [{"name": "chiller-east", "kind": "thermal", "limit": 40_000,
                       "coefficients": {"rack-1": 0.5, "rack-3": 1.0}}]
    return Cluster.from_dict(spec)


def _round_trip(cluster: Cluster, tmp_path: Path, cloud: bool) -> Cluster:
    write_export(cluster, tmp_path, cloud=cloud)
    return read_cluster(tmp_path / "topology.conf", tmp_path / "gpusched-power.toml")


@pytest.mark.parametrize("make", [
    lambda: Cluster.preset("tiny"),
    lambda: Cluster.preset("colossus-array"),
    lambda: Cluster.preset("superpod-su"),
    lambda: Cluster.preset("colossus-100k", scale=0.05),
    lambda: Cluster.preset("colossus-100k"),
    _odd_site,
], ids=["tiny", "colossus-array", "superpod-su", "colossus-100k-x0.05", "colossus-100k",
        "odd-site"])
@pytest.mark.parametrize("cloud", [False, True], ids=["gres", "cloud"])
def test_import_of_export_is_the_same_site(make, cloud, tmp_path):
    cluster = make()
    again = _round_trip(cluster, tmp_path, cloud)
    # same nodes in the same order, racks, pods, rows, halls, limits, power model
    assert again.fingerprint == cluster.fingerprint
    assert again.name == cluster.name
    assert again.rack_names == cluster.rack_names
    assert again.pod_names == cluster.pod_names
    assert again.hall_names == cluster.hall_names
    assert list(again.constraints.names) == list(cluster.constraints.names)


def test_the_tree_is_racks_pods_halls_root():
    cluster = _odd_site()
    export = export_cluster(cluster)
    topology = parse_topology(export.topology_conf)
    # a leaf per rack, with its nodes in node order
    assert list(topology.pods) == list(cluster.rack_names)
    assert topology.pods["rack-1"] == ["gpu-b7", "gpu-a3"]
    assert topology.switches["pod-1"] == ["rack-1", "rack-3"]
    assert topology.switches["pod-2"] == ["rack-2", "rack-4"]
    # both pods have racks in both halls, so they hang off the root, and a hall with no
    # whole pod gets no switch
    assert topology.switches[ROOT_SWITCH] == ["pod-1", "pod-2"]
    assert "hall-1" not in topology.switches and "hall-2" not in topology.switches
    # where pods lie in one hall: racks, pods, halls, root
    preset = parse_topology(export_cluster(Cluster.preset("colossus-100k", scale=0.05))
                            .topology_conf)
    halls = preset.switches[ROOT_SWITCH]
    assert halls == ["hall-1", "hall-2", "hall-3", "hall-4"]
    assert all(preset.switches[p][0] in preset.pods for h in halls
               for p in preset.switches[h])


def test_node_lines_cover_every_node_once_and_say_cloud_or_gres():
    cluster = Cluster.preset("colossus-100k", scale=0.05)
    for cloud in (False, True):
        text = export_cluster(cluster, cloud=cloud).nodes_conf
        node_lines = [line for line in text.splitlines() if line.startswith("NodeName=")]
        assert len(node_lines) == cluster.num_racks
        names = [n for line in node_lines
                 for n in expand_hostlist(line.split()[0][len("NodeName="):])]
        assert names == list(cluster.node_names)
        if cloud:
            assert all(line.endswith(" CPUs=8 State=CLOUD") and "Gres" not in line
                       for line in node_lines)
        else:
            assert all("Gres=gpu:8 State=UNKNOWN" in line for line in node_lines)
        partitions = [line for line in text.splitlines() if line.startswith("PartitionName=")]
        assert partitions == ["PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE "
                              "State=UP OverSubscribe=EXCLUSIVE"]


@pytest.mark.parametrize("change, field, words", [
    (lambda s: s["racks"][0].update(name="rack 1"), "racks", ["switch name"]),
    (lambda s: s["racks"][0].update(name="pod-2"), "pods", ["pod-2", "also a rack name"]),
    (lambda s: s["pods"][0].update(name=ROOT_SWITCH) or
     [r.update(pod=ROOT_SWITCH) for r in s["racks"] if r["pod"] == "pod-1"],
     "pods", ["root switch"]),
    (lambda s: s["racks"][0].update(node_names=["n[1]", "n2"]), "node_names[0]", ["["]),
])
def test_names_slurm_cannot_take_are_refused(change, field, words, tmp_path):
    spec = copy.deepcopy(Cluster.preset("tiny").to_dict())
    change(spec)
    cluster = Cluster.from_dict(spec)
    with pytest.raises(SpecError) as info:
        write_export(cluster, tmp_path / "out")
    assert info.value.field == field
    assert all(w in str(info.value) for w in words), str(info.value)
    assert not (tmp_path / "out").exists()   # nothing written


def test_export_never_replaces_files_unless_asked(tmp_path):
    (tmp_path / "topology.conf").write_text("mine\n")
    with pytest.raises(SpecError) as info:
        write_export(Cluster.preset("tiny"), tmp_path)
    assert info.value.field == "out" and "topology.conf" in str(info.value)
    assert (tmp_path / "topology.conf").read_text() == "mine\n"
    assert not (tmp_path / "slurm-nodes.conf").exists()
    write_export(Cluster.preset("tiny"), tmp_path, overwrite=True)
    assert (tmp_path / "topology.conf").read_text().startswith("# gpusched export")


@pytest.mark.parametrize("edit, words", [
    (lambda o: o.update(leaf_switches="nodes"), ["pods", "racks", "nodes"]),
])
def test_overlay_leaf_switches_must_be_pods_or_racks(edit, words, tmp_path):
    write_export(Cluster.preset("tiny"), tmp_path)
    overlay = load_overlay(tmp_path / "gpusched-power.toml")
    edit(overlay)
    topology = parse_topology((tmp_path / "topology.conf").read_text())
    with pytest.raises(SpecError) as info:
        cluster_from_topology(topology, overlay)
    assert info.value.field == "overlay.leaf_switches"
    assert all(w in str(info.value) for w in words)


@pytest.mark.parametrize("text, words", [
    ("SwitchName=r1 Nodes=n[1-2]\nSwitchName=r2 Nodes=n[3-4]\nSwitchName=p Switches=r1\n",
     ["'r2'", "no switch above"]),
    ("SwitchName=r1 Nodes=n[1-2]\nSwitchName=r2 Nodes=n[3-4]\nSwitchName=p Switches=r1,q\n"
     "SwitchName=q Switches=r2\n", ["both racks", "'p'"]),
    ("BlockName=b1 Nodes=n[1-4]\n", ["topology/tree"]),
])
def test_rack_leaves_need_a_pod_switch_above_each(text, words):
    overlay = {"leaf_switches": "racks", "facility": {"it_limit_w": 1e6},
               "halls": [{"name": "h", "switchboard_w": 1e6}],
               "rack_groups": [{"nodes": "n[1-4]", "kind": "air", "feed_w": 40_000,
                                "air_cooling_w": 40_000}],
               "rows": [{"name": "row", "hall": "h", "busway_w": 1e6, "nodes": "n[1-4]"}]}
    with pytest.raises(SpecError) as info:
        cluster_from_topology(parse_topology(text), overlay)
    assert info.value.field == "overlay.leaf_switches"
    assert all(w in str(info.value) for w in words), str(info.value)


def test_rack_leaves_with_a_pod_switch_import():
    text = ("SwitchName=r1 Nodes=n[1-2]\nSwitchName=r2 Nodes=n[3-4]\n"
            "SwitchName=p Switches=r[1-2]\n")
    overlay = {"leaf_switches": "racks", "facility": {"it_limit_w": 1e6},
               "halls": [{"name": "h", "switchboard_w": 1e6}],
               "rack_groups": [{"nodes": "n[1-4]", "kind": "air", "feed_w": 40_000,
                                "air_cooling_w": 40_000}],
               "rows": [{"name": "row", "hall": "h", "busway_w": 1e6, "nodes": "n[1-4]"}]}
    cluster = cluster_from_topology(parse_topology(text), overlay)
    assert cluster.rack_names == ("r1", "r2") and cluster.pod_names == ("p",)
    assert cluster.node_names == ("n1", "n2", "n3", "n4")


def _gpusched(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpusched", *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


def test_cli_export_and_hooks(tmp_path):
    out = _gpusched("slurm", "export", "tiny", "--out", str(tmp_path / "x"), "--cloud")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(FILES)
    assert "State=CLOUD" in (tmp_path / "x" / "slurm-nodes.conf").read_text()
    again = _gpusched("slurm", "export", "tiny", "--out", str(tmp_path / "x"))
    assert again.returncode == 2 and "--force" in again.stderr
    assert "State=CLOUD" in (tmp_path / "x" / "slurm-nodes.conf").read_text()
    forced = _gpusched("slurm", "export", "tiny", "--out", str(tmp_path / "x"), "--force")
    assert forced.returncode == 0 and "Gres=gpu:8" in (tmp_path / "x" / "slurm-nodes.conf").read_text()

    hooks = _gpusched("slurm", "hooks", "--out", str(tmp_path / "etc"))
    assert hooks.returncode == 0, hooks.stderr
    for name in HOOKS:
        path = tmp_path / "etc" / name
        assert path.stat().st_size > 0
        assert bool(path.stat().st_mode & stat.S_IXUSR) == name.endswith(".sh")
    assert "function slurm_job_submit" in (tmp_path / "etc" / "job_submit.lua").read_text()
