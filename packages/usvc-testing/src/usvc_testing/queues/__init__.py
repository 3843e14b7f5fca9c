"""Queues that need no database server: in memory (one process), and the SQLite queue of
``usvc-sqlite`` re-exported for CI and test use."""

from __future__ import annotations

from usvc_core.ports import JobQueue
from usvc_core.settings import WorkerSettings
from usvc_sqlite import Durability, SqliteFileError, SqliteQueue

from usvc_testing.queues.memory import InMemoryQueue

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
