"""Where the ``usvc`` command's queue comes from: the service's own settings (environment,
then ``.env`` in the current directory, or ``--env-file``) and the plugin loader."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from usvc_core.cli.exitcodes import CliError, ExitCode
from usvc_core.plugins import queue_from_settings, queue_scheme
from usvc_core.ports import JobQueue, QueueAdmin
from usvc_core.settings import ENV_FILE, WorkerSettings, describe_validation_error

__all__ = [
    "AdminQueue",
    "QueueFactory",
    "Session",
    "cli_settings",
    "open_queue",
    "settings_queue",
]

_SETTINGS_HINT = (
    "the usvc command reads the service's settings from the environment and ./.env "
    "(or --env-file); --service and --queue-url override two of them"
)


@runtime_checkable
class AdminQueue(JobQueue, QueueAdmin, Protocol):
    """A queue with the operator's methods: every adapter of the kit is one."""


@dataclass(frozen=True, slots=True)
class Session:
    """What every command works with: the opened queue, the settings, the service."""

    queue: JobQueue
    settings: WorkerSettings
    service: str

    @property
    def admin(self) -> AdminQueue:
        """The queue, for the commands that need the operator's port too."""
        if not isinstance(self.queue, AdminQueue):
            raise CliError(
                f"the queue {type(self.queue).__name__} does not implement QueueAdmin "
                "(list_jobs, retry_failed, cancel, activity); upgrade its package",
                ExitCode.USAGE,
            )
        return self.queue


#: Builds the (unopened) queue from the settings; tests pass their own.
QueueFactory = Callable[[WorkerSettings], JobQueue]


def cli_settings(
    env_file: str | None = None, service: str | None = None, queue_url: str | None = None
) -> WorkerSettings:
    """The service's settings, with the command line's overrides: the core's alone. The
    queue's package reads its own when the queue is built; the other packages' settings
    (HTTP, registries) are the service's business, and loading their models would import
    their frameworks into every command."""
    # The command always reads ./.env (or --env-file), as the service does when started
    # from that directory: also under a test session, where the default reads none.
    overrides: dict[str, Any] = {"_env_file": ENV_FILE}
    if env_file is not None:
        if not Path(env_file).is_file():
            raise CliError(f"--env-file {env_file}: no such file", ExitCode.USAGE)
        overrides["_env_file"] = env_file
    if service is not None:
        overrides["MICROSERVICE_NAME"] = service
    if queue_url is not None:
        overrides["QUEUE_URL"] = queue_url
    try:
        return WorkerSettings(**overrides)
    except ValidationError as exc:
        lines = describe_validation_error(exc).splitlines()[1:]
        detail = "; ".join(line.strip() for line in lines if line.strip())
        raise CliError(f"invalid settings: {detail}; {_SETTINGS_HINT}", ExitCode.USAGE) from None


def settings_queue(settings: WorkerSettings) -> JobQueue:
    """The queue the service itself uses, refusing the ones another process cannot share."""
    scheme = queue_scheme(settings)
    if scheme == "memory":
        raise CliError(
            "the in-memory queue (DEV_MODE=True without QUEUE_URL, or QUEUE_URL=memory://) "
            "lives inside the service's process; point QUEUE_URL at a shared queue "
            "(sqlite:///path/to/jobs.db, or oracle:// with the Oracle settings)",
            ExitCode.USAGE,
        )
    if scheme == "sqlite":
        _require_sqlite_file(settings.QUEUE_URL)
    return queue_from_settings(settings)


def _require_sqlite_file(url: str) -> None:
    # Opening an SQLite queue creates a missing file: a mistyped path, or a relative one
    # read from another directory than the service's, would show an empty queue (or take
    # jobs no worker ever sees) instead of an error.
    parts = urlsplit(url)
    path = unquote(parts.path)[1:]
    if parts.netloc or not path or path == ":memory:":
        return  # the adapter explains what is wrong with this URL
    if not Path(path).is_file():
        raise CliError(
            f"QUEUE_URL={url}: no queue file at {Path(path).resolve()} (a sqlite:/// path is "
            "relative to the current directory; run usvc where the service runs, or start "
            "the service once to create the file)",
            ExitCode.USAGE,
        )


@asynccontextmanager
async def open_queue(
    settings: WorkerSettings, factory: QueueFactory, on_built: Callable[[], None] = lambda: None
) -> AsyncIterator[JobQueue]:
    """The queue, opened; closed on the way out. ``on_built`` runs once its package is
    imported, before it opens."""
    queue = factory(settings)
    on_built()
    await queue.open()
    try:
        yield queue
    finally:
        await queue.close()
