"""A job that kills its worker cannot loop (issue 22 item 3, store side): real worker
processes on one SQLite file run a job whose handler ends the process at once, before its
first lease renewal. The first rescue takes it for a claim whose reply was lost and gives
the attempt back; the second spends it, so with ``max_attempts=1`` the job ends Failed
(LEASE_EXPIRED) after exactly two runs, and the next worker lives on. When a loaded machine
lets a renewal confirm the start before the kill, that job must end Failed after one run,
and the test tries a new job."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

import pytest
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

    def worker(*, healthy: bool = True) -> ServiceProcess:
        svc = service(
            ROOT / "tests" / "services" / "poison", {**env, "HTTP_PORT": str(free_port())}
        )
        if healthy:
            svc.wait_healthy()
        return svc

    async def enqueue() -> str:
        queue = SqliteQueue(db)
        await queue.open()
        try:
            request = EnqueueRequest({"action": "poison"}, microservice=SERVICE, max_attempts=1)
            return (await queue.enqueue(request)).id
        finally:
            await queue.close()

    def failed(job_id: str) -> bool:
        return _job_state(db, job_id)[0] is JobStatus.FAILED

    def runs_of(job_id: str) -> list[str]:
        """The ``confirmed`` flag of each run of the job (see the handler)."""
        lines = [line.split() for line in runs.read_text().splitlines()]
        return [confirmed for id_, _, confirmed in lines if id_ == job_id]

    # The premise: the handler kills its worker before the worker's first lease renewal
    # (every LEASE_SECONDS / 3, on a timer of its own) confirms the start. A loaded machine
    # can delay the handler past that renewal; the handler's line then says so (it reads it
    # under the database's write lock), that job takes the other path (its attempt was
    # spent at once: Failed after one run), which is checked too, and a new job tries again.
    for _ in range(5):
        first = worker()
        job_id = asyncio.run(enqueue())
        assert first.wait(60) != 0  # the job killed it
        if runs_of(job_id) == ["0"]:
            break
        assert runs_of(job_id) == ["1"]
        rescuer = worker()  # rescues it: a confirmed start spent its only attempt
        wait_until(functools.partial(failed, job_id), timeout=60)
        status, attempts, outcomes, code = _job_state(db, job_id)
        assert (status, attempts, code) == (JobStatus.FAILED, 1, ErrorCode.LEASE_EXPIRED.value)
        assert outcomes == [AttemptOutcome.LEASE_EXPIRED]
        assert runs_of(job_id) == ["1"]
        assert rescuer.proc.poll() is None
        rescuer.stop()
    else:
        pytest.fail(f"every poison run was confirmed before its kill: {runs.read_text()}")
    # Rescues the job after its lease, runs it: killed again, maybe before its HTTP surface
    # answers (a loaded machine starts the worker loop first), so no wait for /health.
    second = worker(healthy=False)
    assert second.wait(60) != 0
    third = worker()  # rescues it once more: no attempt left, so Failed; it lives on
    wait_until(functools.partial(failed, job_id), timeout=60)
    status, attempts, outcomes, code = _job_state(db, job_id)
    assert (status, attempts, code) == (JobStatus.FAILED, 1, ErrorCode.LEASE_EXPIRED.value)
    assert outcomes == [AttemptOutcome.NOT_STARTED, AttemptOutcome.LEASE_EXPIRED]
    assert len(runs_of(job_id)) == 2
    assert third.proc.poll() is None
