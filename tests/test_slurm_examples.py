"""The README's library and Slurm examples run and say what they should."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_slurm_example_prints_nodelists_and_caps(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["slurm_nodelist.py"])
    runpy.run_path(str(EXAMPLES / "slurm_nodelist.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "--nodelist=gpu[0001-0032]" in out
    # the facility limit of the overlay (450 kW) forces the last job below 700 W
    assert "sweep --nodes=16 --nodelist=gpu[0045-0060] train.sh  # cap 350 W" in out


def test_library_example_runs_into_a_power_limit(capsys):
    runpy.run_path(str(EXAMPLES / "library_place.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "llm-pretrain: 2048 nodes" in out
    assert "does not fit: GPUs are free" in out
