"""Queues that need no Oracle: in memory (one process) and SQLite (one machine)."""

from __future__ import annotations

from usvc_core.errors import ConfigurationError
from usvc_core.ports import JobQueue
from usvc_core.settings import WorkerSettings

from usvc_testing.queues.memory import InMemoryQueue

__all__ = ["InMemoryQueue", "memory_queue_from_url", "sqlite_queue_from_url"]


def memory_queue_from_url(url: str, settings: WorkerSettings) -> JobQueue:
    """Entry point ``usvc.queues: memory``."""
    return InMemoryQueue()


def sqlite_queue_from_url(url: str, settings: WorkerSettings) -> JobQueue:
    """Entry point ``usvc.queues: sqlite``."""
    raise ConfigurationError("the SQLite queue is not available yet in this version")
