"""The ``usvc`` command's exit codes and the error that carries one."""

from __future__ import annotations

from enum import IntEnum

from usvc_core.errors import UsvcError

__all__ = ["CliError", "ExitCode"]


class ExitCode(IntEnum):
    """What a ``usvc`` command's exit status means (documented in the README)."""

    OK = 0
    #: the operation did not happen: job not found, nothing to cancel or retry, duplicate key
    FAILED = 1
    #: bad arguments or settings (the message says what to fix)
    USAGE = 2
    #: the job store cannot be reached or failed
    UNAVAILABLE = 3
    #: ``enqueue --wait``: the job finished Failed
    JOB_FAILED = 4
    #: ``enqueue --wait``: the job had not finished when the timeout ran out
    WAIT_TIMEOUT = 5
    #: interrupted (Ctrl-C)
    INTERRUPTED = 130


class CliError(UsvcError):
    """A one-line message for the operator and the exit code that goes with it."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code
