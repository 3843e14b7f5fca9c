"""At most two of these run at once across every worker process (max_running=2); each run
writes its start and end time, so the test can measure the real overlap."""

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel
from usvc_core import JobContext, action

_LOG = (Path(os.environ["EVENT_DIR"]) / f"sync-{os.getpid()}.txt").open("a", buffering=1)


class SyncInput(BaseModel):
    seconds: float = 0.2


@action("sync", max_running=2)
async def handle(input: SyncInput, job: JobContext) -> None:
    _LOG.write(f"start {job.job_id} {time.time():.6f}\n")
    await asyncio.sleep(input.seconds)
    _LOG.write(f"end {job.job_id} {time.time():.6f}\n")
