"""usvc PostgreSQL: the reference networked job queue (SKIP LOCKED claims, leases and fencing
tokens on the server's clock, LISTEN/NOTIFY wake-up with polling behind it) on asyncpg."""

from __future__ import annotations

from usvc_core.settings import WorkerSettings

from usvc_postgres.queue import PostgresQueue
from usvc_postgres.schema import ddl
from usvc_postgres.settings import ListenMode, PostgresSettings, settings_for

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
    return PostgresQueue(settings_for(url, settings), attempt_history=settings.JOB_ATTEMPT_HISTORY)
