"""The gpusched command line: one module per subcommand, loaded only when it runs.

Every subcommand module (``gpusched/cli/status.py``, ``gpusched/simulate/cli.py``, ...)
has ``add_arguments(parser)`` and ``run(args) -> int``, and may have ``DESCRIPTION`` and
``EXAMPLES`` (plain text for ``--help``; else its docstring is used).  ``COMMANDS`` lists
the built-in ones and ``_PLUGGED`` those of other layers, whose extras may be missing (a
missing import makes the subcommand say it is unavailable rather than fail).  A new
subcommand is one module and one line in either table.

Start-up is kept light: building the parser imports only the module of the subcommand
asked for, so ``gpusched --help`` loads neither the simulator (matplotlib, scipy) nor
the service (starlette, uvicorn).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from types import ModuleType
from typing import NoReturn, Sequence

from ..errors import GpuschedError, ServiceUnreachableError, UsageError

__all__ = ["main", "COMMANDS", "EXIT_CODES"]

# subcommand -> (module with add_arguments(parser) and run(args), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("gpusched.cli.status", "GPUs and power per hall and row, like sinfo"),
    "jobs": ("gpusched.cli.jobs", "the placed jobs, like squeue"),
    "place": ("gpusched.cli.place", "place one job on the site"),
    "release": ("gpusched.cli.release", "release placed jobs, freeing their GPUs and watts"),
    "explain": ("gpusched.cli.explain", "say whether a job fits now, at which cap, and why"),
    "show": ("gpusched.cli.show", "summarise a cluster and place a sample job stream"),
    "drain": ("gpusched.cli.drain", "take nodes out of placement; running jobs stay"),
    "fail": ("gpusched.cli.fail", "put nodes or a failure domain down (their jobs degrade)"),
    "restore": ("gpusched.cli.restore", "bring nodes or a failure domain back up"),
}

# subcommands of other layers: same protocol, but their optional extras may be missing
_PLUGGED: dict[str, tuple[str, str]] = {
    "simulate": ("gpusched.simulate.cli", "replay a job trace on a cluster under a policy"),
    "serve": ("gpusched.serve.cli", "run the placement service (HTTP/JSON, k8s extender)"),
    "sweep": ("gpusched.sweep.cli", "run many simulations (a what-if study), locally or on Dask"),
    "slurm": ("gpusched.adapters.slurm.cli", "export a site to Slurm, copy the controller hooks"),
}

EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "a bug in gpusched (it prints a traceback; please report it)",
    2: "bad usage or input: an argument, file, cluster or job id is wrong, or the "
       "service refused the request",
    3: "the job does not fit now (place, explain): the message says what binds",
    4: "the service at --server cannot be reached, timed out or failed",
    130: "interrupted (Ctrl-C)",
}

PROG = "gpusched"


def _version() -> str:
    from .._version import __version__
    return __version__


def _exit_codes_text() -> str:
    import textwrap

    return "exit codes:\n" + "\n".join(
        textwrap.fill(text, 88, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
        for code, text in EXIT_CODES.items())


_TOP_EXAMPLES = """\
examples:
  gpusched place --state st.json --create --cluster tiny --id train-a --gpus 16
  gpusched status --state st.json
  gpusched jobs --state st.json
  gpusched explain --state st.json --gpus 32 --min-cap-w 400
  gpusched release --state st.json train-a
  gpusched status --server http://127.0.0.1:8787      # a running gpusched serve
  gpusched simulate --cluster tiny --hours 2 --out run-1

Every command takes --help.  Against a service, mutating commands send the bearer token
in $GPUSCHED_TOKEN."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks; adds each option's default.

    The default is added only where the help text does not already state one, and
    not for flags (False), options without a default (None) or required ones.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" not in text and action.default not in (None, False, argparse.SUPPRESS)
                and not action.required and action.option_strings
                and not isinstance(action.default, bool)):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line raised as UsageError, not usage plus exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _plain(doc: str | None) -> str:
    """A docstring as terminal text: no reST double backquotes or ``::`` markers."""
    text = (doc or "").strip()
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r":(?:class|func|meth|mod|data):`~?([^`]+)`", r"\1", text)
    return text.replace("::\n", ":\n")


def _describe(module: ModuleType) -> tuple[str, str]:
    """(description, epilog) of a subcommand's --help, from its module."""
    description = getattr(module, "DESCRIPTION", None) or _plain(module.__doc__)
    examples = getattr(module, "EXAMPLES", None)
    epilog = ("examples:\n" + "\n".join(f"  {line}" if line else "" for line in
                                        examples.strip("\n").splitlines()) + "\n\n"
              if examples else "")
    return description, epilog + _exit_codes_text()


def _command_named(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` asks for: its first word that is not an option.

    The top-level parser has no option that takes a value, so this is the word argparse
    will dispatch on (or an unknown word, which argparse then rejects).
    """
    for word in argv:
        if word == "--":
            continue
        if not word.startswith("-"):
            return word
    return None


def _build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; a subcommand gets its options only if it is ``command``.

    The others are listed by name and help text alone, so that building the parser for
    ``gpusched --help`` imports no subcommand module.
    """
    parser = _Parser(prog=PROG, formatter_class=_Formatter,
                     description="Power- and cooling-aware placement of gang-scheduled GPU "
                                 "jobs: operate a site from a state file or a running "
                                 "service, simulate policies, serve placements.",
                     epilog=_TOP_EXAMPLES + "\n\n" + _exit_codes_text())
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_Parser)
    for table in (COMMANDS, _PLUGGED):
        for name, (module_name, help_text) in table.items():
            p = sub.add_parser(name, help=help_text, formatter_class=_Formatter,
                               description=help_text)
            p.set_defaults(module=module_name)
            if name != command:
                continue
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                if table is COMMANDS:
                    raise
                p.set_defaults(unavailable=str(exc))
                continue
            p.description, p.epilog = _describe(module)
            module.add_arguments(p)
            for action in p._actions:  # an option without help text still shows its default
                if action.help is None and action.option_strings and action.default not in (
                        None, False, argparse.SUPPRESS):
                    action.help = "default: %(default)s"
    return parser


def _report(command: str | None, exc: BaseException) -> None:
    where = f"{PROG} {command}" if command else PROG
    print(f"{where}: {type(exc).__name__}: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one gpusched command; returns its exit status (see EXIT_CODES)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_named(argv)
    try:
        parser = _build_parser(command)
        if not argv:  # bare `gpusched`: the help, not an error
            parser.print_help()
            return 0
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError(f"name a command, one of {', '.join([*COMMANDS, *_PLUGGED])} "
                             f"(see '{PROG} --help')")
        if hasattr(args, "unavailable"):
            print(f"{PROG} {args.command} is unavailable: {args.unavailable}", file=sys.stderr)
            return 2
        status = int(importlib.import_module(args.module).run(args) or 0)
        sys.stdout.flush()  # a closed pipe (`gpusched jobs | head`) fails here, not at exit
        return status
    except BrokenPipeError:
        # the reader stopped reading: nothing more to say, and nobody to say it to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModuleNotFoundError as exc:
        if (exc.name or "gpusched").split(".")[0] == "gpusched":
            raise  # a module of our own missing is a bug, not an optional extra
        print(f"{PROG} {command} is unavailable: it needs the Python module {exc.name!r}, "
              "from one of the extras in pyproject.toml (e.g. pip install "
              "'gpusched[serve]')", file=sys.stderr)
        return 2
    except ServiceUnreachableError as exc:
        _report(command, exc)
        return 4
    except GpuschedError as exc:
        _report(command, exc)
        return 2
    except OSError as exc:  # a path the user gave: unreadable, a directory, disk full
        _report(command, exc)
        return 2
    except SystemExit as exc:
        # argparse's --help and --version exit 0; a subcommand that exits with a message
        # (serve's empty token) is a usage error, reported on one line
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        message = str(exc.code)
        prefix = f"{PROG} {command}: "
        print(message if message.startswith(prefix) else prefix + message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
