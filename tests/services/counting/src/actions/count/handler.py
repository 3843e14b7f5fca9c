"""Records every run of a job: one line with the job id, in a file of this process.

The test that starts several of these processes counts the lines per job id to prove each
job ran exactly once.
"""

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel
from usvc_core import JobContext, action

# One file per process, opened once; line buffering writes each run out at once.
_RUNS = (Path(os.environ["COUNT_DIR"]) / f"runs-{os.getpid()}.txt").open("a", buffering=1)


class CountInput(BaseModel):
    n: int
    sleep: float = 0.0  #: seconds to take, so that jobs are in flight when a test kills us


class CountOutput(BaseModel):
    n: int
    pid: int


@action("count")
async def handle(input: CountInput, job: JobContext) -> CountOutput:
    _RUNS.write(f"{job.job_id}\n")
    if input.sleep:
        await asyncio.sleep(input.sleep)
    return CountOutput(n=input.n, pid=os.getpid())
