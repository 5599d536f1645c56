"""The operator tables, byte for byte, against golden files in tests/fixtures/cli/.

Each case writes a deterministic site (tests/support/cli_sites.py: fixed jobs placed in
order, fixed placement times) to ``st.json`` in a fresh directory and runs the command
line in-process on both engine twins.  A change to a table shows up as a diff here;
when the change is meant, regenerate the files and review the diff before committing::

    GPUSCHED_UPDATE_GOLDEN=1 python -m pytest tests/test_cli_golden.py -q
    git diff tests/fixtures/cli/
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpusched.cli import main
from tests.support.cli_sites import write_site

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "cli"
UPDATE = os.environ.get("GPUSCHED_UPDATE_GOLDEN") == "1"

# golden file -> (preset written to st.json, argv, exit status)
CASES: dict[str, tuple[str, list[str], int]] = {
    "tiny-status.txt": ("tiny", ["status", "--state", "st.json"], 0),
    "tiny-jobs.txt": ("tiny", ["jobs", "--state", "st.json"], 0),
    "tiny-jobs-by-gpus.txt": ("tiny", ["jobs", "--state", "st.json", "--sort", "gpus"], 0),
    "tiny-explain.txt": ("tiny", ["explain", "--state", "st.json", "--gpus", "8",
                                  "--min-cap-w", "350"], 3),
    "tiny-show.txt": ("tiny", ["show", "tiny", "--jobs", "0"], 0),
    "array-status.txt": ("colossus-array", ["status", "--state", "st.json"], 0),
    "array-jobs.txt": ("colossus-array", ["jobs", "--state", "st.json"], 0),
    "colossus-status.txt": ("colossus-100k", ["status", "--state", "st.json"], 0),
    "colossus-jobs.txt": ("colossus-100k", ["jobs", "--state", "st.json"], 0),
}


@pytest.mark.parametrize("backend", ["python", "cython"])
@pytest.mark.parametrize("golden", sorted(CASES))
def test_table_matches_its_golden_file(golden, backend, tmp_path, monkeypatch, capsys):
    from gpusched import available_backends

    if backend not in available_backends():
        pytest.skip(f"the {backend} twin is not built here")
    preset, argv, status = CASES[golden]
    monkeypatch.chdir(tmp_path)
    write_site(preset, tmp_path / "st.json")
    if argv[0] != "show":
        argv = [*argv, "--backend", backend]
    else:
        argv = [*argv, "--backend", backend]
    assert main(argv) == status
    out = capsys.readouterr().out
    path = GOLDEN / golden
    if UPDATE and backend == "python":
        path.write_text(out, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with GPUSCHED_UPDATE_GOLDEN=1"
    assert out == path.read_text(encoding="utf-8"), (
        f"{' '.join(argv)} no longer prints {path.name}; if that is meant, regenerate it "
        "(see this module's docstring)")
