"""The ``usvc`` command's entry point: parse, connect, run one command, print, exit."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from usvc_core.cli.exitcodes import CliError, ExitCode
from usvc_core.cli.output import Result, safe, to_json
from usvc_core.cli.parser import attach_negative_durations, build_parser
from usvc_core.errors import (
    ConfigurationError,
    DuplicateJobError,
    JobNotFoundError,
    QueueError,
    UsvcError,
)

if TYPE_CHECKING:
    from usvc_core.cli.connect import QueueFactory
    from usvc_core.settings import WorkerSettings

__all__ = ["main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    """The console script ``usvc``."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            # A payload in a script the terminal cannot show must not end in a traceback.
            stream.reconfigure(errors="backslashreplace")
    # Adapter warnings go to stderr: stdout holds the command's output alone.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="usvc: %(message)s")
    try:
        return run(sys.argv[1:] if argv is None else argv, on_queue_built=_route_adapter_logs)
    except BrokenPipeError:
        # The reader went away (usvc jobs ls | head): nothing left to tell it. Point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.FAILED)


def run(
    argv: Sequence[str],
    *,
    queue_factory: QueueFactory | None = None,
    on_queue_built: Callable[[], None] = lambda: None,
) -> int:
    """Run one ``usvc`` command; returns its exit code. ``queue_factory`` builds the queue
    from the settings (by default the service's own, through the plugin loader);
    ``on_queue_built`` runs once it is built (``main`` routes the adapters' logs then)."""
    parser = build_parser()
    try:
        args = parser.parse_args(attach_negative_durations(argv))
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    # Not for --help and usage errors: the settings, the plugin loader, the event loop.
    import asyncio

    from usvc_core.cli.connect import cli_settings, settings_queue

    try:
        settings = cli_settings(args.env_file, args.service, args.queue_url)
        result = asyncio.run(
            _execute(args, settings, queue_factory or settings_queue, on_queue_built)
        )
    except KeyboardInterrupt:
        return _fail("interrupted", ExitCode.INTERRUPTED)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except (JobNotFoundError, DuplicateJobError) as exc:
        return _fail(str(exc), ExitCode.FAILED)
    except QueueError as exc:
        return _fail(f"the job store failed: {exc}", ExitCode.UNAVAILABLE)
    except ConfigurationError as exc:
        return _fail(str(exc), ExitCode.USAGE)
    except UsvcError as exc:
        return _fail(str(exc), ExitCode.FAILED)
    except Exception as exc:  # never a traceback: one line naming what broke
        return _fail(f"unexpected {type(exc).__name__}: {exc}", ExitCode.FAILED)
    return _print(result, as_json=args.json)


async def _execute(
    args: argparse.Namespace,
    settings: WorkerSettings,
    factory: QueueFactory,
    on_built: Callable[[], None],
) -> Result:
    from usvc_core.cli.connect import Session, open_queue

    async with open_queue(settings, factory, on_built) as queue:
        session = Session(queue=queue, settings=settings, service=settings.MICROSERVICE_NAME)
        result: Result = await args.handler(session, args)
        return result


def _route_adapter_logs() -> None:
    """Send structlog's lines to stderr at WARNING, when the queue's package uses it: left
    unconfigured, structlog prints every level to stdout, which holds the output. Not
    imported otherwise (it costs a noticeable part of a command's start-up)."""
    if "structlog" in sys.modules:
        from usvc_core.logging import configure_logging

        configure_logging(stream=sys.stderr, level=logging.WARNING)


def _print(result: Result, *, as_json: bool) -> int:
    if as_json:
        print(to_json(result.document))
    elif result.text:
        print(result.text)
    for note in result.notes:
        print(f"usvc: {note}", file=sys.stderr)
    if result.error is not None:
        _fail(result.error, result.code)
    return int(result.code)


def _fail(message: str, code: ExitCode) -> int:
    print(f"usvc: error: {safe(' '.join(message.split()))}", file=sys.stderr)
    return int(code)
