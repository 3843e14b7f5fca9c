"""usvc Oracle: the production job queue on python-oracledb (async, thin mode)."""

from __future__ import annotations

from usvc_core.settings import WorkerSettings

from usvc_oracle.errors import JobLockedError, OracleQueueError
from usvc_oracle.naming import TableName
from usvc_oracle.queue import OracleQueue
from usvc_oracle.settings import OracleSettings, settings_for
from usvc_oracle.sql import Statements, ddl_statements

__version__ = "0.1.0"

__all__ = [
    "JobLockedError",
    "OracleQueue",
    "OracleQueueError",
    "OracleSettings",
    "Statements",
    "TableName",
    "ddl_statements",
    "oracle_queue_from_url",
]


def oracle_queue_from_url(url: str, settings: WorkerSettings) -> OracleQueue:
    """Entry point ``usvc.queues: oracle``.

    ``url`` is ``oracle://`` (everything from ORACLE_* settings) or
    ``oracle://[user@]host[:port]/service_name[?table=NAME]``; the password always comes from
    ORACLE_PASSWORD. Invalid settings (a hostile ORACLE_TABLE, missing credentials) raise
    ConfigurationError here, at startup.
    """
    return OracleQueue(settings_for(url, settings), attempt_history=settings.JOB_ATTEMPT_HISTORY)
