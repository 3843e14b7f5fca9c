"""``work``: sleeps ``ms`` milliseconds (0-50 in the kill suite) and records its execution."""

import asyncio

from pydantic import BaseModel, Field
from usvc_core import JobContext, action

from .recorder import record


class WorkInput(BaseModel):
    n: int
    ms: int = Field(default=0, ge=0)


@action("work")
async def handle(input: WorkInput, job: JobContext) -> dict[str, int]:
    record("S", job.job_id)
    await asyncio.sleep(input.ms / 1000)
    record("E", job.job_id)
    return {"n": input.n, "attempt": job.attempt}
