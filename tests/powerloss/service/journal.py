"""The acknowledgement journal: what a durable caller was told, written outside the FUSE
mount, and the worker's queue that writes it.

Each line is one ``os.write`` on an ``O_APPEND`` descriptor of a file on the real disk, so
a SIGKILL or a power cut of the test filesystem leaves every line written before it, whole.
Lines: ``E <job id> <n>`` (enqueue returned), ``C <job id> <n>`` (complete returned),
``F <job id> <n>`` (fail returned), ``R <job id> <n> <attempts>`` (retry returned: the job
was Processing with that attempt count and is Ready again); ``n`` is the payload's job
number, so that a row cannot be mistaken for another that reused a lost job's id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from usvc_core.jobs import Job, JobStatus
from usvc_sqlite import SqliteQueue

__all__ = ["Journal", "JournaledQueue"]


class Journal:
    """One process's journal file in ``POWERLOSS_JOURNAL_DIR``."""

    def __init__(self, role: str) -> None:
        directory = Path(os.environ["POWERLOSS_JOURNAL_DIR"])
        path = directory / f"{role}-{os.getpid()}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *fields: object) -> None:
        os.write(self._fd, (" ".join(map(str, fields)) + "\n").encode())


class JournaledQueue(SqliteQueue):
    """The SQLite queue, journaling each outcome once the queue has acknowledged it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.journal = Journal("worker")

    async def complete(self, job: Job, results: Any, runtime_ms: float) -> None:
        await super().complete(job, results, runtime_ms)
        self.journal.write("C", job.id, job.payload["n"])

    async def fail(
        self, job: Job, error_code: str, error_message: str, runtime_ms: float | None
    ) -> None:
        await super().fail(job, error_code, error_message, runtime_ms)
        self.journal.write("F", job.id, job.payload["n"])

    async def retry(
        self,
        job: Job,
        error_code: str,
        error_message: str,
        delay_seconds: float,
        runtime_ms: float | None,
    ) -> JobStatus:
        status = await super().retry(job, error_code, error_message, delay_seconds, runtime_ms)
        if status is JobStatus.FAILED:
            self.journal.write("F", job.id, job.payload["n"])
        else:
            self.journal.write("R", job.id, job.payload["n"], job.attempts)
        return status
