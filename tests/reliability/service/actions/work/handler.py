"""``work``: sleeps ``ms`` milliseconds (0-50 in the kill suite) and records its execution.

``linger``: the first time it runs sleeps ``seconds`` (a job a worker is caught holding);
runs after that, by any process (as its record file shows), return at once. Records its
executions too and returns the pid of the process that ran it, so a test can tell whose
outcome was kept."""

import asyncio
import os

from pydantic import BaseModel, Field
from usvc_core import JobContext, action

from .recorder import record, started_before


class WorkInput(BaseModel):
    n: int
    ms: int = Field(default=0, ge=0)


@action("work")
async def handle(input: WorkInput, job: JobContext) -> dict[str, int]:
    record("S", job.job_id)
    await asyncio.sleep(input.ms / 1000)
    record("E", job.job_id)
    return {"n": input.n, "attempt": job.attempt}


class LingerInput(BaseModel):
    seconds: float = Field(default=0, ge=0)


@action("linger")
async def linger(input: LingerInput, job: JobContext) -> dict[str, int]:
    first = not started_before(job.job_id)
    record("S", job.job_id)
    if first:
        await asyncio.sleep(input.seconds)
    record("E", job.job_id)
    return {"pid": os.getpid(), "attempt": job.attempt}
