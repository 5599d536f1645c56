"""Start-up cost of the command line: ``gpusched --help`` and ``import gpusched``.

Each command runs as a whole, fresh process (interpreter start, imports, argument
parsing, exit), because that is what a user waits for; an in-process timing would miss
the interpreter and count imports only once.  ``python -c pass`` is timed as well, as the
floor that no change to gpusched can go below.  Every process runs with the checkout this
file is in as its working directory and first on ``PYTHONPATH``, so it measures this
checkout, not an installed copy.

    python benchmarks/bench_cli.py              # 21 runs of each command
    python benchmarks/bench_cli.py --quick      # 3 runs of each (CI smoke)
    python benchmarks/bench_cli.py --runs 50 --json out.json

It prints the best and the median of the runs and asserts no time (the target of
issue 12 is a median ``gpusched --help`` under 0.5 s; other work on a shared machine
moves the numbers, so it also prints the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parent.parent

# name -> argv after the interpreter.  "gpusched --help" runs what the installed
# ``gpusched`` script runs (the entry point gpusched.cli:main), but from this checkout
# rather than from wherever the script's install points.
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "import gpusched": ["-c", "import gpusched"],
    "gpusched --help": ["-c", "import sys; from gpusched.cli import main; sys.exit(main())",
                        "--help"],
}


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT)] + [p for p in
                                        env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("PYTHONSTARTUP", None)
    return env


def time_process(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one ``python argv`` process, from spawn to exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=CHECKOUT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(runs: int) -> dict[str, dict[str, Any]]:
    """Best and median seconds of each command over ``runs`` rounds.

    The commands take turns within a round, so a burst of load from elsewhere hits all
    of them rather than one; one untimed round first warms the file cache and .pyc files.
    """
    env = _environment()
    for argv in COMMANDS.values():
        time_process(argv, env)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            samples[name].append(time_process(argv, env))
    return {name: {"best_s": min(s), "median_s": statistics.median(s), "runs": len(s)}
            for name, s in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="timed runs of each command")
    parser.add_argument("--quick", action="store_true", help="3 runs of each (CI smoke)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs
    if runs < 1:
        parser.error(f"--runs must be at least 1, got {runs}")

    load_before = os.getloadavg()
    results = measure(runs)
    load_after = os.getloadavg()

    print(f"start-up of whole processes, {runs} runs each ({sys.executable}, "
          f"{os.cpu_count()} CPUs)")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"  {'command':<20}{'best ms':>10}{'median ms':>12}")
    for name, r in results.items():
        print(f"  {name:<20}{r['best_s'] * 1e3:>10.0f}{r['median_s'] * 1e3:>12.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"runs": runs, "load_average_before": load_before,
             "load_average_after": load_after, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
