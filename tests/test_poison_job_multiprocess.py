"""A job that kills its worker cannot loop (issue 22 item 3, store side): real worker
processes on one SQLite file run a job whose handler ends the process at once, before its
first lease renewal. The first rescue takes it for a claim whose reply was lost and gives
the attempt back; the second spends it, so with ``max_attempts=1`` the job ends Failed
(LEASE_EXPIRED) after exactly two runs, and the next worker lives on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from usvc_core.jobs import AttemptOutcome, ErrorCode, JobStatus
from usvc_core.ports import EnqueueRequest
from usvc_sqlite import SqliteQueue

from tests.conftest import ROOT, ServiceProcess, free_port, wait_until

SERVICE = "poisoned"


def _job_state(path: Path, job_id: str) -> tuple[JobStatus, int, list[AttemptOutcome], str | None]:
    async def read() -> tuple[JobStatus, int, list[AttemptOutcome], str | None]:
        queue = SqliteQueue(path)
        await queue.open()
        try:
            job = await queue.get(job_id)
        finally:
            await queue.close()
        assert job is not None
        return job.status, job.attempts, [a.outcome for a in job.attempt_history], job.error_code

    return asyncio.run(read())


def test_a_job_that_kills_its_worker_runs_twice_then_fails(
    tmp_path: Path, service: Callable[..., ServiceProcess]
) -> None:
    db = tmp_path / "jobs.db"
    runs = tmp_path / "runs.txt"
    runs.touch()
    env = {
        "MICROSERVICE_NAME": SERVICE,
        "QUEUE_URL": f"sqlite:///{db}",
        "RUNS_FILE": str(runs),
        "POLLING_INTERVAL_SECONDS": "0.1",
        "LEASE_SECONDS": "1",
        "SHUTDOWN_TIMEOUT_SECONDS": "0.5",
    }

    def worker() -> ServiceProcess:
        svc = service(
            ROOT / "tests" / "services" / "poison", {**env, "HTTP_PORT": str(free_port())}
        )
        svc.wait_healthy()
        return svc

    first = worker()

    async def enqueue() -> str:
        queue = SqliteQueue(db)
        await queue.open()
        try:
            request = EnqueueRequest({"action": "poison"}, microservice=SERVICE, max_attempts=1)
            return (await queue.enqueue(request)).id
        finally:
            await queue.close()

    job_id = asyncio.run(enqueue())
    assert first.wait(30) != 0  # the job killed it
    second = worker()  # rescues the job after its lease, runs it: killed again
    assert second.wait(30) != 0
    third = worker()  # rescues it once more: no attempt left, so Failed; it lives on
    wait_until(lambda: _job_state(db, job_id)[0] is JobStatus.FAILED, timeout=30)
    status, attempts, outcomes, code = _job_state(db, job_id)
    assert (status, attempts, code) == (JobStatus.FAILED, 1, ErrorCode.LEASE_EXPIRED.value)
    assert outcomes == [AttemptOutcome.NOT_STARTED, AttemptOutcome.LEASE_EXPIRED]
    assert len(runs.read_text().splitlines()) == 2
    assert third.proc.poll() is None
