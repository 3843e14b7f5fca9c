"""Kills the worker process at once: the poison job of tests/test_poison_job_multiprocess.py.
Each run leaves a line in RUNS_FILE first: the job id, the process id, and whether a lease
renewal had already confirmed the start when the handler ran (1) or not (0). It reads that
holding the database's write lock and dies holding it, so no renewal can commit between
the read and the kill: the line says exactly what the store sees when the worker is gone."""

import os
import sqlite3
from pathlib import Path

from pydantic import BaseModel
from usvc_core import JobContext, action

# Opened once per process, line-buffered: each run's line is out before the process ends.
_RUNS = Path(os.environ["RUNS_FILE"]).open("a", buffering=1)  # noqa: SIM115
_DB = os.environ["QUEUE_URL"].removeprefix("sqlite:///")


class PoisonInput(BaseModel):
    pass


@action("poison", max_attempts=1)
async def handle(input: PoisonInput, job: JobContext) -> dict[str, str]:
    db = sqlite3.connect(_DB, timeout=60, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # blocks the worker's own renewals until the process ends
    [confirmed] = db.execute(
        "SELECT start_confirmed FROM usvc_jobs WHERE id = ?", (job.job_id,)
    ).fetchone()
    _RUNS.write(f"{job.job_id} {os.getpid()} {confirmed}\n")
    os._exit(1)  # the process dies with the job in hand
