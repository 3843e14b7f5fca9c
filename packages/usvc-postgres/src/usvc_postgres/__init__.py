"""usvc PostgreSQL: the reference networked job queue (SKIP LOCKED claims, leases and fencing
tokens on the server's clock, LISTEN/NOTIFY wake-up with polling behind it) on asyncpg."""

from __future__ import annotations

from typing import TYPE_CHECKING

from usvc_core.lazy_names import lazy_names

if TYPE_CHECKING:
    from usvc_core.settings import WorkerSettings

    from usvc_postgres.queue import PostgresQueue
    from usvc_postgres.schema import ddl
    from usvc_postgres.settings import ListenMode, PostgresSettings

__version__ = "0.1.0"

__all__ = [
    "ListenMode",
    "PostgresQueue",
    "PostgresSettings",
    "ddl",
    "postgres_queue_from_url",
]


def postgres_queue_from_url(url: str, settings: WorkerSettings) -> PostgresQueue:
    """Entry point ``usvc.queues: postgresql`` (and ``postgres``).

    ``url`` is ``postgresql://`` (everything from the POSTGRES_* settings) or
    ``postgresql://[user@]host[:port]/dbname[?table=NAME&pgbouncer=true]``; the password
    always comes from POSTGRES_PASSWORD. Invalid settings raise ConfigurationError here.
    """
    from usvc_postgres.queue import PostgresQueue
    from usvc_postgres.settings import settings_for

    return PostgresQueue(settings_for(url, settings), attempt_history=settings.JOB_ATTEMPT_HISTORY)


# Every service loads ``usvc_postgres.settings`` at start-up (the ``usvc.settings`` entry
# point) and with it this package: the queue and asyncpg (~0.4 s) load only when used.
_WHERE = {
    "ListenMode": "usvc_postgres.settings",
    "PostgresQueue": "usvc_postgres.queue",
    "PostgresSettings": "usvc_postgres.settings",
    "ddl": "usvc_postgres.schema",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
