"""Queues that need no database server: in memory (one process), and the SQLite queue of
``usvc-sqlite`` re-exported for CI and test use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from usvc_testing.queues.memory import InMemoryQueue

if TYPE_CHECKING:
    from usvc_core.ports import JobQueue
    from usvc_core.settings import WorkerSettings
    from usvc_sqlite import Durability, SqliteFileError, SqliteQueue

__all__ = [
    "Durability",
    "InMemoryQueue",
    "SqliteFileError",
    "SqliteQueue",
    "memory_queue_from_url",
]


def memory_queue_from_url(url: str, settings: WorkerSettings) -> JobQueue:
    """Entry point ``usvc.queues: memory``."""
    return InMemoryQueue(attempt_history=settings.JOB_ATTEMPT_HISTORY)


def __getattr__(name: str) -> Any:
    # The SQLite names on first use: the ``memory`` entry point (a dev-mode service) must
    # not import the SQLite adapter.
    if name in ("Durability", "SqliteFileError", "SqliteQueue"):
        import usvc_sqlite

        return getattr(usvc_sqlite, name)
    raise AttributeError(f"module 'usvc_testing.queues' has no attribute {name!r}")
