"""usvc Oracle: the production job queue on python-oracledb (async, thin mode)."""

from __future__ import annotations

from usvc_core.errors import ConfigurationError
from usvc_core.ports import JobQueue
from usvc_core.settings import WorkerSettings

__version__ = "0.1.0"

__all__ = ["oracle_queue_from_url"]


def oracle_queue_from_url(url: str, settings: WorkerSettings) -> JobQueue:
    """Entry point ``usvc.queues: oracle``."""
    raise ConfigurationError("the Oracle queue is not implemented yet in this version")
