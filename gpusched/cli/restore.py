"""gpusched restore: bring down or draining nodes (or a failure domain) back up.

Nodes by hostlist or index; see :mod:`gpusched.cli._nodes`.  Retrying is safe: a node
already so changes nothing.
"""

from __future__ import annotations

import argparse

from ._nodes import add_node_arguments, run_node_command

__all__ = ["add_arguments", "run"]

EXAMPLES = """
gpusched restore --state st.json 'rack-0001-n[0-3]'
gpusched restore --state st.json --domain 'rack-3 feed'
GPUSCHED_TOKEN=s3cret gpusched restore --server http://127.0.0.1:8787 rack-0002-n1
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_node_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_node_command(args, "restore")
