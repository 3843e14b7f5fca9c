"""``QUEUE_URL=sqlite:///...``: the entry point ``usvc.queues: sqlite``."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from usvc_core.errors import ConfigurationError
from usvc_core.settings import WorkerSettings

from usvc_sqlite.connection import Durability
from usvc_sqlite.queue import SqliteQueue

__all__ = ["sqlite_queue_from_url"]

_SQLITE_OPTIONS = ("durability", "busy_timeout")


def sqlite_queue_from_url(url: str, settings: WorkerSettings) -> SqliteQueue:
    """The queue a ``sqlite:`` URL names.

    ``sqlite:///jobs.db`` is relative to the working directory, ``sqlite:////abs/jobs.db``
    absolute. Options go in the query: ``?durability=normal&busy_timeout=10``.
    """
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"QUEUE_URL={url!r}: an SQLite queue is a local file, not a host "
            f"({parts.netloc!r}); write sqlite:///relative/jobs.db or sqlite:////abs/jobs.db"
        )
    path = unquote(parts.path)[1:]  # the third slash ends the empty authority
    if not path or path == ":memory:":
        raise ConfigurationError(
            f"QUEUE_URL={url!r} names no file; write sqlite:///jobs.db (relative) or "
            "sqlite:////var/lib/svc/jobs.db (absolute), or use memory:// for one process"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_SQLITE_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"QUEUE_URL={url!r}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(_SQLITE_OPTIONS)}"
        )
    try:
        busy_timeout = float(options.get("busy_timeout", "5"))
    except ValueError:
        raise ConfigurationError(
            f"QUEUE_URL={url!r}: busy_timeout must be a number of seconds"
        ) from None
    return SqliteQueue(
        path,
        durability=options.get("durability", Durability.FULL),
        busy_timeout=busy_timeout,
        attempt_history=settings.JOB_ATTEMPT_HISTORY,
    )
