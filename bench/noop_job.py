"""The benchmarks' job (not a test): a `noop` action that validates its input and does
nothing, shared by the drain scripts whose worker processes serve it, and the fill of their
queues."""

from __future__ import annotations

from pydantic import BaseModel
from usvc_core import action
from usvc_core.ports import EnqueueRequest, JobQueue

__all__ = ["NoopInput", "enqueue_noops", "noop"]


class NoopInput(BaseModel):
    n: int


@action("noop")
async def noop(input: NoopInput) -> None:
    """The benchmark's job: validates its input and does nothing."""
    return


async def enqueue_noops(queue: JobQueue, microservice: str, jobs: int) -> None:
    """Queue ``jobs`` noop jobs (``n`` = 0, 1, ...), a thousand per call."""
    for start in range(0, jobs, 1000):
        await queue.enqueue_many(
            [
                EnqueueRequest(payload={"action": "noop", "n": n}, microservice=microservice)
                for n in range(start, min(start + 1000, jobs))
            ]
        )
