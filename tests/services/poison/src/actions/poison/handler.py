"""Kills the worker process at once, before its first lease renewal: the poison job of
tests/test_poison_job_multiprocess.py. Each run leaves a line in RUNS_FILE first."""

import os
from pathlib import Path

from pydantic import BaseModel
from usvc_core import JobContext, action

# Opened once per process, line-buffered: each run's line is out before the process ends.
_RUNS = Path(os.environ["RUNS_FILE"]).open("a", buffering=1)  # noqa: SIM115


class PoisonInput(BaseModel):
    pass


@action("poison", max_attempts=1)
async def handle(input: PoisonInput, job: JobContext) -> dict[str, str]:
    _RUNS.write(f"{job.job_id} {os.getpid()}\n")
    os._exit(1)  # the process dies with the job in hand
