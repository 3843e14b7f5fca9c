"""Records every run of a job: one line with the job id, in a file of this process.

The test that starts several of these processes counts the lines per job id to prove each
job ran exactly once.
"""

import os
from pathlib import Path

from pydantic import BaseModel
from usvc_core import JobContext, action

# One file per process, opened once; line buffering writes each run out at once.
_RUNS = (Path(os.environ["COUNT_DIR"]) / f"runs-{os.getpid()}.txt").open("a", buffering=1)


class CountInput(BaseModel):
    n: int


class CountOutput(BaseModel):
    n: int
    pid: int


@action("count")
async def handle(input: CountInput, job: JobContext) -> CountOutput:
    _RUNS.write(f"{job.job_id}\n")
    return CountOutput(n=input.n, pid=os.getpid())
