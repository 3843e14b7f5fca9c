"""``work``: takes ``ms`` milliseconds, then completes, fails (``fail``) or asks for one retry
on its first attempt (``retry``), so that the suite acknowledges all three outcomes."""

import asyncio

from pydantic import BaseModel, Field
from usvc_core import JobContext, RetryJob, action


class WorkInput(BaseModel):
    n: int
    ms: int = Field(default=0, ge=0)
    outcome: str = "complete"


@action("work")
async def handle(input: WorkInput, job: JobContext) -> dict[str, int]:
    await asyncio.sleep(input.ms / 1000)
    if input.outcome == "fail":
        raise ValueError(f"job {input.n} fails on purpose")
    if input.outcome == "retry" and job.attempt == 1:
        raise RetryJob("once more", delay_seconds=0)
    return {"n": input.n, "attempt": job.attempt}
