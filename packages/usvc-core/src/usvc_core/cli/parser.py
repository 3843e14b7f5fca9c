"""The ``usvc`` command line: its commands, their options, one-line usage errors."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from usvc_core.cli import enqueue, fleet, jobs, purge, stats
from usvc_core.cli.exitcodes import ExitCode

__all__ = ["attach_negative_durations", "build_parser"]

#: Options that take a duration: ``--older-than -7d`` must reach the duration's own check
#: (which says a duration cannot be negative) instead of argparse's "expected one argument".
_DURATION_OPTIONS = frozenset({"--older-than", "--delay", "--timeout", "--since", "--until"})

_EPILOG = """\
exit codes:
  0    done
  1    the operation did not happen (job not found, nothing to retry or cancel,
       duplicate idempotency key)
  2    bad arguments or settings
  3    the job store cannot be reached or failed
  4    enqueue --wait: the job finished Failed
  5    enqueue --wait: the job did not finish within --timeout
  130  interrupted

Settings (MICROSERVICE_NAME, QUEUE_URL, ...) come from the environment and .env in the
current directory, as for the service itself."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _common(*, leaf: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name. On the commands
    themselves they default to SUPPRESS so that they do not overwrite the top level's."""
    p = _Parser(add_help=False)
    unset = argparse.SUPPRESS if leaf else None
    g = p.add_argument_group("common options")
    g.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if leaf else False,
        help="print one JSON document instead of text",
    )
    g.add_argument(
        "--env-file", metavar="PATH", default=unset, help="read settings from this file, not .env"
    )
    g.add_argument(
        "--service", metavar="NAME", default=unset, help="the service (default MICROSERVICE_NAME)"
    )
    g.add_argument(
        "--queue-url", metavar="URL", default=unset, help="the queue (default QUEUE_URL)"
    )
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("usvc-core")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``, looking the version up only when asked (package metadata is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"usvc {_version()}")
        parser.exit()


def attach_negative_durations(argv: Sequence[str]) -> list[str]:
    """``--delay -5m`` as ``--delay=-5m``, so that argparse does not read ``-5m`` as an
    option."""
    out: list[str] = []
    for arg in argv:
        if (
            out
            and out[-1] in _DURATION_OPTIONS
            and len(arg) > 1
            and arg[0] == "-"
            and (arg[1].isdigit() or arg[1] == ".")
        ):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="usvc",
        description="Operate a usvc service's job queue: list, show, retry, cancel and\n"
        "enqueue jobs, see statistics, purge old jobs, list workers, pause actions.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(leaf=False)],
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common(leaf=True)
    jobs.add_parser(commands, common)
    enqueue.add_parser(commands, common)
    stats.add_parser(commands, common)
    purge.add_parser(commands, common)
    fleet.add_parser(commands, common)
    return parser
