"""Errors of the Oracle queue, in the families of ``usvc_core.errors``."""

from __future__ import annotations

from usvc_core import errors as core
from usvc_core.errors import QueueError

from usvc_oracle.failures import Failure

__all__ = ["JobLockedError", "OracleQueueError"]


class OracleQueueError(QueueError):
    """Oracle refused an operation for a reason retrying cannot fix; the message says why
    and, for known misconfigurations, what to change."""

    def __init__(self, message: str, failure: Failure) -> None:
        super().__init__(message)
        self.failure = failure


class JobLockedError(OracleQueueError, core.JobLockedError):
    """Another session (an operator's uncommitted UPDATE, a SQL tool left open) has held
    the job's row lock longer than the bounded wait: the store is up, that session is in
    the way. Nothing was written; the call may be repeated once the lock is gone."""
