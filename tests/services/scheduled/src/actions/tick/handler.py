"""Runs at every slot of SCHEDULES["tick"]; records each run (job id, process)."""

import os
from pathlib import Path

from usvc_core import JobContext, action

_LOG = (Path(os.environ["EVENT_DIR"]) / f"tick-{os.getpid()}.txt").open("a", buffering=1)


@action("tick")
async def handle(job: JobContext) -> dict[str, int]:
    _LOG.write(f"{job.job_id}\n")
    return {"pid": os.getpid()}
