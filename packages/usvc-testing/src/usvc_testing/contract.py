"""The queue contract: the behaviour every :class:`~usvc_core.ports.JobQueue` adapter must
show, as a reusable test mixin.

How to run it against an adapter: subclass :class:`JobQueueContract` in a class whose name
starts with ``Test`` and override the ``queue`` fixture (open the queue on an empty store,
yield it, close it)::

    import pytest
    from usvc_testing.contract import JobQueueContract

    class TestMyQueue(JobQueueContract):
        @pytest.fixture
        async def queue(self, tmp_path):
            q = MyQueue(tmp_path / "jobs.db")
            await q.open()
            yield q
            await q.close()

Optional hooks, for what a store-agnostic suite cannot do by itself:

- ``peer`` fixture: a second, independent handle on the same store (another connection or
  pool), so that concurrent claimers really compete. Default: ``queue`` itself.
- :meth:`JobQueueContract.travel`: let time pass on the store's clock. Default: a real
  ``asyncio.sleep`` (right for stores with their own clock: SQLite, Oracle); a queue on a
  ``FakeClock`` advances the clock instead.
- :meth:`JobQueueContract.insert_raw_job`: store a payload the way another producer could
  (possibly not JSON). Default: the bad-payload tests skip, saying the hook is missing.
- ``short_lease`` and ``delay`` (class attributes): the lease and run-at delay, in
  seconds, of the tests that wait for them to pass; keep them small for a real clock.
- ``attempt_history`` (class attribute, default 20): how many attempts of a job the
  adapter under test keeps (its default ``JOB_ATTEMPT_HISTORY``).

An adapter that also implements :class:`~usvc_core.ports.FleetAdmin` (worker records, gone
workers, paused actions: every queue of the kit) subclasses :class:`FleetContract` instead,
which adds those tests to the contract.

Each test uses its own service name (the ``service`` fixture), so the suite also runs on a
store shared with other data, such as a real Oracle table.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import BaseModel
from usvc_core.actions import action
from usvc_core.app import Application
from usvc_core.errors import DuplicateJobError, JobNotFoundError, LeaseLostError
from usvc_core.jobs import SCHEDULED, AttemptOutcome, ErrorCode, Job, JobStatus
from usvc_core.metrics import NullMetrics
from usvc_core.ports import (
    EnqueueRequest,
    FleetAdmin,
    JobFilter,
    JobQueue,
    LeaseRenewal,
    QueueAdmin,
    WorkerRecord,
)
from usvc_core.settings import WorkerSettings

__all__ = ["FleetContract", "JobQueueContract"]

_LONG_LEASE = 60.0


class _EchoInput(BaseModel):
    n: int


@action("contract_echo")
async def _echo(input: _EchoInput) -> dict[str, int]:
    return {"n": input.n}


def _request(service: str, n: int = 0, **options: Any) -> EnqueueRequest:
    return EnqueueRequest(
        payload={"action": "contract_echo", "n": n}, microservice=service, **options
    )


def _of(service: str, action_name: str, n: int = 0, **options: Any) -> EnqueueRequest:
    return EnqueueRequest(payload={"action": action_name, "n": n}, microservice=service, **options)


class JobQueueContract:
    """Behaviour every JobQueue adapter must show. Override the ``queue`` fixture."""

    #: Lease (seconds) of the tests that let a lease expire; they wait a bit longer.
    short_lease: float = 0.3
    #: Run-at delay (seconds) of the tests that wait for a delayed job to become due.
    delay: float = 1.0

    # --- hooks -----------------------------------------------------------------------------

    @pytest.fixture
    def queue(self) -> JobQueue:
        """An open queue on an empty store. Adapters must override this fixture."""
        raise NotImplementedError("override the `queue` fixture in the adapter's test class")

    @pytest.fixture
    def peer(self, queue: JobQueue) -> JobQueue:
        """A second handle on the same store (override to open another connection)."""
        return queue

    @pytest.fixture
    def service(self) -> str:
        """A service name no other test uses."""
        return f"contract-{uuid.uuid4().hex[:12]}"

    async def travel(self, seconds: float) -> None:
        """Let ``seconds`` pass on the store's clock (default: really wait)."""
        await asyncio.sleep(seconds)

    async def insert_raw_job(self, queue: JobQueue, service: str, raw: str | bytes) -> str:
        """Store a job whose payload is ``raw`` as another producer wrote it; return its id."""
        pytest.skip(f"{type(self).__name__} does not define insert_raw_job(queue, service, raw)")

    # --- helpers ---------------------------------------------------------------------------

    async def _started(
        self, queue: JobQueue, service: str, *, lease: float = _LONG_LEASE, **options: Any
    ) -> Job:
        """Enqueue one job, claim it and mark it processing."""
        await queue.enqueue(_request(service, **options))
        [claimed] = await queue.claim(service, "worker-a", 1, lease)
        return await queue.mark_processing(claimed, lease)

    @staticmethod
    def _admin(queue: JobQueue) -> QueueAdmin:
        """The queue's operator port (every adapter implements it beside JobQueue; see
        ``test_the_queue_is_also_a_queue_admin``)."""
        return cast(QueueAdmin, queue)

    @staticmethod
    async def _get(queue: JobQueue, job_id: str) -> Job:
        job = await queue.get(job_id)
        assert job is not None, f"job {job_id} vanished"
        return job

    # --- producing -------------------------------------------------------------------------

    async def test_enqueue_returns_a_ready_job_that_get_finds(
        self, queue: JobQueue, service: str
    ) -> None:
        """An enqueued job is Ready with what was asked, and get returns the same job."""
        job = await queue.enqueue(_request(service, 7, priority=3, max_attempts=5))
        assert isinstance(job.id, str)
        assert job.status is JobStatus.READY
        assert (job.microservice, job.action, job.priority) == (service, "contract_echo", 3)
        assert (job.attempts, job.max_attempts) == (0, 5)
        assert job.payload == {"action": "contract_echo", "n": 7}
        assert job.payload_error is None
        stored = await self._get(queue, job.id)
        assert stored.status is JobStatus.READY
        assert stored.payload == job.payload
        assert (stored.priority, stored.max_attempts, stored.token) == (3, 5, job.token)
        assert stored.created_at is not None
        assert stored.run_at is not None

    async def test_token_defaults_to_the_job_id_and_keeps_a_given_one(
        self, queue: JobQueue, service: str
    ) -> None:
        """Without a token the job id is the correlation token; a given token is kept."""
        plain = await queue.enqueue(_request(service))
        tagged = await queue.enqueue(_request(service, token="corr-42"))
        assert plain.token == plain.id
        assert tagged.token == "corr-42"
        assert (await self._get(queue, tagged.id)).token == "corr-42"
        assert (await self._get(queue, plain.id)).token == plain.id

    async def test_get_of_an_unknown_id_is_none(self, queue: JobQueue) -> None:
        """get answers None for ids that name no job."""
        assert await queue.get("no-such-job") is None
        assert await queue.get("987654321") is None

    async def test_enqueue_many_returns_jobs_in_request_order(
        self, queue: JobQueue, service: str
    ) -> None:
        """enqueue_many stores every job and returns them in the order asked."""
        jobs = await queue.enqueue_many([_request(service, n) for n in range(5)])
        assert [j.payload["n"] for j in jobs] == [0, 1, 2, 3, 4]
        assert len({j.id for j in jobs}) == 5
        stored = [await self._get(queue, j.id) for j in jobs]
        assert [j.payload["n"] for j in stored] == [0, 1, 2, 3, 4]

    async def test_enqueue_notifies_listeners(self, queue: JobQueue, service: str) -> None:
        """Every enqueue through this object calls the on_enqueue listeners (in-process wake-up)."""
        calls: list[int] = []
        queue.on_enqueue(lambda: calls.append(1))
        await queue.enqueue(_request(service))
        await queue.enqueue_many([_request(service), _request(service)])
        assert len(calls) == 2

    async def test_max_attempts_below_one_is_refused(self, queue: JobQueue, service: str) -> None:
        """A job that could never run is refused at enqueue."""
        with pytest.raises(ValueError, match="max_attempts"):
            await queue.enqueue(_request(service, max_attempts=0))

    # --- claiming ------------------------------------------------------------------------------

    async def test_claim_assigns_under_a_lease_with_a_fencing_token(
        self, queue: JobQueue, service: str
    ) -> None:
        """A claimed job is Assigned to the worker, with a lease and a fresh fencing token."""
        await queue.enqueue(_request(service))
        [job] = await queue.claim(service, "worker-a", 5, _LONG_LEASE)
        assert job.status is JobStatus.ASSIGNED
        assert job.lease_owner == "worker-a"
        assert job.lease_token
        assert job.lease_expires_at is not None
        assert job.attempts == 0
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.lease_token) == (JobStatus.ASSIGNED, job.lease_token)

    async def test_claim_takes_at_most_limit_and_only_its_service(
        self, queue: JobQueue, service: str
    ) -> None:
        """claim hands out at most ``limit`` jobs, all of the asked service."""
        other = f"{service}-other"
        await queue.enqueue_many([_request(service, n) for n in range(5)])
        await queue.enqueue_many([_request(other, n) for n in range(3)])
        assert await queue.claim(service, "worker-a", 0, _LONG_LEASE) == []
        first = await queue.claim(service, "worker-a", 3, _LONG_LEASE)
        second = await queue.claim(service, "worker-a", 10, _LONG_LEASE)
        assert (len(first), len(second)) == (3, 2)
        assert {j.microservice for j in first + second} == {service}
        assert await queue.claim(service, "worker-a", 10, _LONG_LEASE) == []
        assert len(await queue.claim(other, "worker-b", 10, _LONG_LEASE)) == 3

    async def test_claim_order_is_priority_then_age(self, queue: JobQueue, service: str) -> None:
        """Higher priority first; within a priority, the job waiting longest first."""
        jobs = await queue.enqueue_many(
            [_request(service, n, priority=p) for n, p in enumerate([0, 5, 0, 9, 5])]
        )
        order = []
        for _ in range(5):
            [claimed] = await queue.claim(service, "worker-a", 1, _LONG_LEASE)
            order.append(claimed.id)
        assert order == [jobs[3].id, jobs[1].id, jobs[4].id, jobs[0].id, jobs[2].id]
        again = await queue.enqueue_many([_request(service, n, priority=n % 2) for n in range(4)])
        batch = await queue.claim(service, "worker-a", 4, _LONG_LEASE)
        assert [j.id for j in batch] == [again[1].id, again[3].id, again[0].id, again[2].id]

    async def test_delayed_job_is_not_claimed_before_its_run_at(
        self, queue: JobQueue, service: str
    ) -> None:
        """A job enqueued with a delay becomes claimable only when the delay has passed."""
        job = await queue.enqueue(_request(service, delay_seconds=self.delay))
        assert await queue.claim(service, "worker-a", 1, _LONG_LEASE) == []
        await self.travel(self.delay + 0.2)
        [claimed] = await queue.claim(service, "worker-a", 1, _LONG_LEASE)
        assert claimed.id == job.id

    @pytest.mark.parametrize("method", ["claim", "claim_and_start"])
    async def test_concurrent_claimers_never_share_a_job(
        self, queue: JobQueue, peer: JobQueue, service: str, method: str
    ) -> None:
        """Claimers racing on the same store each get different jobs, and all jobs get out."""
        jobs = await queue.enqueue_many([_request(service, n) for n in range(60)])

        async def claimer(q: JobQueue, name: str) -> list[str]:
            got: list[str] = []
            while batch := await getattr(q, method)(service, name, 7, _LONG_LEASE):
                got.extend(j.id for j in batch)
                await asyncio.sleep(0)
            return got

        results = await asyncio.gather(
            *(claimer(q, f"w{i}") for i, q in enumerate([queue, peer, queue, peer, queue, peer]))
        )
        claimed = [job_id for got in results for job_id in got]
        assert sorted(claimed) == sorted(j.id for j in jobs)  # each once, none left
        assert sum(1 for got in results if got) >= 2

    # --- per-action limits (max_running) ------------------------------------------------

    @pytest.mark.parametrize("method", ["claim", "claim_and_start"])
    async def test_max_running_caps_an_action_and_fills_the_batch_from_others(
        self, queue: JobQueue, service: str, method: str
    ) -> None:
        """A batch larger than an action's limit gets at most the limit of that action; the
        jobs over it stay Ready and the batch is filled from other actions, lower-priority
        ones included, best first."""
        slow = await queue.enqueue_many([_of(service, "slow", n, priority=9) for n in range(5)])
        fast = await queue.enqueue_many([_of(service, "fast", n) for n in range(3)])
        batch = await getattr(queue, method)(
            service, "worker-a", 10, _LONG_LEASE, max_running={"slow": 2}
        )
        assert [j.id for j in batch] == [slow[0].id, slow[1].id, *(j.id for j in fast)]
        for job in slow[2:]:
            assert (await self._get(queue, job.id)).status is JobStatus.READY
        assert (
            await getattr(queue, method)(
                service, "worker-a", 10, _LONG_LEASE, max_running={"slow": 2}
            )
            == []
        )

    async def test_max_running_counts_every_worker_of_the_service(
        self, queue: JobQueue, peer: JobQueue, service: str
    ) -> None:
        """The limit holds across claimers (Assigned and Processing both count) and only
        for the named action; another service's jobs of the same action do not count."""
        other = f"{service}-other"
        await queue.enqueue_many([_of(service, "slow", n) for n in range(6)])
        await queue.enqueue_many([_of(other, "slow", n) for n in range(2)])
        [started] = await queue.claim_and_start(
            service, "worker-a", 1, _LONG_LEASE, max_running={"slow": 3}
        )
        assert started.status is JobStatus.PROCESSING
        [assigned] = await peer.claim(service, "worker-b", 1, _LONG_LEASE, max_running={"slow": 3})
        assert assigned.status is JobStatus.ASSIGNED
        third = await peer.claim(service, "worker-c", 5, _LONG_LEASE, max_running={"slow": 3})
        assert len(third) == 1
        assert await queue.claim(service, "worker-d", 5, _LONG_LEASE, max_running={"slow": 3}) == []
        theirs = await peer.claim(other, "worker-e", 5, _LONG_LEASE, max_running={"slow": 3})
        assert len(theirs) == 2
        assert (await queue.stats(service)).counts[JobStatus.READY] == 3

    async def test_max_running_holds_when_claimers_race(
        self, queue: JobQueue, peer: JobQueue, service: str
    ) -> None:
        """Claimers racing on the same store never run more of a limited action than its
        limit, and still take every job of the unlimited action."""
        await queue.enqueue_many([_of(service, "slow", n) for n in range(20)])
        fast = await queue.enqueue_many([_of(service, "fast", n) for n in range(30)])

        async def claimer(q: JobQueue, name: str) -> list[Job]:
            got: list[Job] = []
            while batch := await q.claim_and_start(
                service, name, 4, _LONG_LEASE, max_running={"slow": 3}
            ):
                got.extend(batch)
                await asyncio.sleep(0)
            return got

        results = await asyncio.gather(
            *(claimer(q, f"w{i}") for i, q in enumerate([queue, peer, queue, peer]))
        )
        claimed = [job for got in results for job in got]
        assert len({j.id for j in claimed}) == len(claimed)
        assert sum(1 for j in claimed if j.action == "slow") == 3
        assert {j.id for j in claimed if j.action == "fast"} == {j.id for j in fast}

    async def test_max_running_frees_a_place_when_a_job_leaves_running(
        self, queue: JobQueue, service: str
    ) -> None:
        """A completed, failed or released job of a limited action makes room for the next
        one, taken in order; a job over the limit waits for no unlimited job."""
        slow = await queue.enqueue_many([_of(service, "slow", n) for n in range(5)])
        limit = {"slow": 1}
        [first] = await queue.claim_and_start(service, "w", 3, _LONG_LEASE, max_running=limit)
        assert first.id == slow[0].id
        assert await queue.claim_and_start(service, "w", 3, _LONG_LEASE, max_running=limit) == []
        await queue.complete(first, {}, 1.0)
        [second] = await queue.claim_and_start(service, "w", 3, _LONG_LEASE, max_running=limit)
        assert second.id == slow[1].id
        await queue.fail(second, ErrorCode.HANDLER_ERROR.value, "boom", 1.0)
        [third] = await queue.claim(service, "w", 3, _LONG_LEASE, max_running=limit)
        assert third.id == slow[2].id
        assert await queue.release([third]) == 1
        [again] = await queue.claim(service, "w", 3, _LONG_LEASE, max_running=limit)
        assert again.id == slow[2].id  # released: back in its place, not behind the others
        assert [j.id for j in await queue.claim(service, "w", 3, _LONG_LEASE)] == [
            slow[3].id,
            slow[4].id,
        ]  # without limits, nothing holds them back

    async def test_max_running_of_zero_holds_an_action_back_and_bad_limits_are_refused(
        self, queue: JobQueue, service: str
    ) -> None:
        """A limit of 0 claims no job of that action; a negative or non-whole limit is a
        ValueError that names the action. Without limits the held-back jobs are claimed."""
        held = await queue.enqueue(_of(service, "paused"))
        other = await queue.enqueue(_of(service, "fast"))
        batch = await queue.claim(service, "w", 5, _LONG_LEASE, max_running={"paused": 0})
        assert [j.id for j in batch] == [other.id]
        bad_limits: list[Any] = [-1, 1.5]
        for bad in bad_limits:
            with pytest.raises(ValueError, match="paused"):
                await queue.claim(service, "w", 5, _LONG_LEASE, max_running={"paused": bad})
        assert [j.id for j in await queue.claim(service, "w", 5, _LONG_LEASE)] == [held.id]

    # --- running ---------------------------------------------------------------------------

    async def test_mark_processing_counts_the_attempt(self, queue: JobQueue, service: str) -> None:
        """Assigned -> Processing counts one attempt and records when it started."""
        await queue.enqueue(_request(service))
        [claimed] = await queue.claim(service, "worker-a", 1, _LONG_LEASE)
        started = await queue.mark_processing(claimed, _LONG_LEASE)
        assert (started.status, started.attempts) == (JobStatus.PROCESSING, 1)
        assert started.lease_token == claimed.lease_token
        stored = await self._get(queue, claimed.id)
        assert (stored.status, stored.attempts) == (JobStatus.PROCESSING, 1)
        assert stored.started_at is not None
        with pytest.raises(LeaseLostError):
            await queue.mark_processing(claimed, _LONG_LEASE)  # already started

    async def test_claim_and_start_hands_out_started_jobs(
        self, queue: JobQueue, service: str
    ) -> None:
        """claim_and_start is claim plus mark_processing: Processing, attempt counted, one
        fencing token each, best first, only its service, at most ``limit``."""
        jobs = await queue.enqueue_many(
            [_request(service, n, priority=p) for n, p in enumerate([0, 5, 0, 9])]
        )
        await queue.enqueue(_request(f"{service}-other"))
        batch = await queue.claim_and_start(service, "worker-a", 3, _LONG_LEASE)
        assert [j.id for j in batch] == [jobs[3].id, jobs[1].id, jobs[0].id]
        assert len({j.lease_token for j in batch}) == 3
        for job in batch:
            assert (job.status, job.attempts, job.lease_owner) == (
                JobStatus.PROCESSING,
                1,
                "worker-a",
            )
            assert job.started_at is not None
            assert job.lease_expires_at is not None
            stored = await self._get(queue, job.id)
            assert (stored.status, stored.attempts, stored.lease_token) == (
                JobStatus.PROCESSING,
                1,
                job.lease_token,
            )
        with pytest.raises(LeaseLostError):
            await queue.mark_processing(batch[0], _LONG_LEASE)  # already started
        await queue.complete(batch[0], {"ok": True}, 1.0)
        assert (await self._get(queue, batch[0].id)).status is JobStatus.COMPLETED
        [last] = await queue.claim_and_start(service, "worker-b", 10, _LONG_LEASE)
        assert last.id == jobs[2].id
        assert await queue.claim_and_start(service, "worker-b", 10, _LONG_LEASE) == []
        assert await queue.claim_and_start(service, "worker-b", 0, _LONG_LEASE) == []

    async def test_claim_and_start_jobs_release_and_reclaim_like_started_ones(
        self, queue: JobQueue, service: str
    ) -> None:
        """A job claimed and started at once is released with its attempt given back, and
        reclaimed after its lease (its start confirmed by a renewal) with the attempt spent
        (LEASE_EXPIRED)."""
        first, second = await queue.enqueue_many([_request(service, 1), _request(service, 2)])
        [a] = await queue.claim_and_start(service, "worker-a", 1, _LONG_LEASE)
        assert a.id == first.id
        assert await queue.release([a]) == 1
        stored = await self._get(queue, a.id)
        assert (stored.status, stored.attempts) == (JobStatus.READY, 0)
        both = await queue.claim_and_start(service, "worker-b", 2, self.short_lease)
        assert {j.id for j in both} == {first.id, second.id}
        await queue.extend_leases(both, self.short_lease)  # started: see never-started below
        await self.travel(self.short_lease + 0.2)
        result = await queue.reclaim_expired(service)
        assert sorted(result.requeued) == sorted([first.id, second.id])
        for job in both:
            stored = await self._get(queue, job.id)
            assert (stored.status, stored.attempts) == (JobStatus.READY, 1)
            assert stored.error_code == ErrorCode.LEASE_EXPIRED.value
            with pytest.raises(LeaseLostError):
                await queue.complete(job, {}, 1.0)

    async def test_complete_records_the_results(self, queue: JobQueue, service: str) -> None:
        """complete stores the results and runtime and finishes the job."""
        job = await self._started(queue, service)
        await queue.complete(job, {"message": "hi", "items": [1, 2]}, 12.5)
        stored = await self._get(queue, job.id)
        assert stored.status is JobStatus.COMPLETED
        assert stored.results == {"message": "hi", "items": [1, 2]}
        assert stored.runtime_ms == 12.5
        assert stored.finished_at is not None
        assert (stored.error_code, stored.error_message) == (None, None)
        with pytest.raises(LeaseLostError):
            await queue.complete(job, {"again": True}, 1.0)
        assert (await self._get(queue, job.id)).results == {"message": "hi", "items": [1, 2]}

    async def test_fail_records_the_error(self, queue: JobQueue, service: str) -> None:
        """fail finishes the job with its error code and message."""
        job = await self._started(queue, service)
        await queue.fail(job, ErrorCode.HANDLER_ERROR.value, "boom: fix the handler", 3.0)
        stored = await self._get(queue, job.id)
        assert stored.status is JobStatus.FAILED
        assert (stored.error_code, stored.error_message) == (
            "HANDLER_ERROR",
            "boom: fix the handler",
        )
        assert stored.finished_at is not None

    async def test_retry_goes_back_to_ready_and_honours_run_at(
        self, queue: JobQueue, service: str
    ) -> None:
        """A retry with attempts left is Ready again only after its delay; then it can succeed."""
        job = await self._started(queue, service, max_attempts=3)
        status = await queue.retry(job, "HANDLER_ERROR", "flaky", self.delay, 2.0)
        assert status is JobStatus.READY
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.attempts, stored.error_code) == (
            JobStatus.READY,
            1,
            "HANDLER_ERROR",
        )
        assert await queue.claim(service, "worker-a", 1, _LONG_LEASE) == []
        await self.travel(self.delay + 0.2)
        [again] = await queue.claim(service, "worker-b", 1, _LONG_LEASE)
        assert again.id == job.id
        assert again.lease_token != job.lease_token
        started = await queue.mark_processing(again, _LONG_LEASE)
        assert started.attempts == 2
        await queue.complete(started, {"ok": True}, 1.0)
        done = await self._get(queue, job.id)
        assert done.status is JobStatus.COMPLETED
        assert (done.error_code, done.error_message) == (None, None)

    async def test_retry_without_attempts_left_fails(self, queue: JobQueue, service: str) -> None:
        """A retry of the last attempt fails the job with the error it gave."""
        job = await self._started(queue, service, max_attempts=1)
        status = await queue.retry(job, "TIMEOUT", "took too long", 0.0, 5.0)
        assert status is JobStatus.FAILED
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.error_code) == (JobStatus.FAILED, "TIMEOUT")
        assert stored.finished_at is not None

    # --- fencing -------------------------------------------------------------------------------

    async def test_a_forged_token_changes_nothing(self, queue: JobQueue, service: str) -> None:
        """Transitions naming another fencing token are refused and write nothing."""
        job = await self._started(queue, service)
        forged = dataclasses.replace(job, lease_token="forged")
        with pytest.raises(LeaseLostError):
            await queue.complete(forged, {"x": 1}, 1.0)
        with pytest.raises(LeaseLostError):
            await queue.fail(forged, "HANDLER_ERROR", "x", 1.0)
        with pytest.raises(LeaseLostError):
            await queue.retry(forged, "HANDLER_ERROR", "x", 0.0, 1.0)
        assert (await queue.extend_leases([forged], _LONG_LEASE)).lost == {job.id}
        assert await queue.release([forged]) == 0
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.attempts, stored.results) == (JobStatus.PROCESSING, 1, None)

    async def test_a_job_not_started_cannot_be_finished(
        self, queue: JobQueue, service: str
    ) -> None:
        """complete, fail and retry expect Processing: an Assigned job is refused."""
        await queue.enqueue(_request(service))
        [claimed] = await queue.claim(service, "worker-a", 1, _LONG_LEASE)
        with pytest.raises(LeaseLostError):
            await queue.complete(claimed, {}, 1.0)
        with pytest.raises(LeaseLostError):
            await queue.fail(claimed, "HANDLER_ERROR", "x", None)
        with pytest.raises(LeaseLostError):
            await queue.retry(claimed, "HANDLER_ERROR", "x", 0.0, None)
        assert (await self._get(queue, claimed.id)).status is JobStatus.ASSIGNED

    async def test_a_reclaimed_worker_cannot_overwrite_the_new_attempt(
        self, queue: JobQueue, peer: JobQueue, service: str
    ) -> None:
        """After its lease expired and another worker claimed the job, the first worker
        learns it lost the job on every transition, and the second worker's outcome stands."""
        stale = await self._started(queue, service, lease=self.short_lease)
        await self.travel(self.short_lease + 0.2)
        assert (await queue.reclaim_expired(service)).requeued == [stale.id]
        [fresh] = await peer.claim(service, "worker-b", 1, _LONG_LEASE)
        assert fresh.id == stale.id
        assert fresh.lease_token != stale.lease_token
        fresh = await peer.mark_processing(fresh, _LONG_LEASE)
        with pytest.raises(LeaseLostError):
            await queue.complete(stale, {"who": "a"}, 1.0)
        with pytest.raises(LeaseLostError):
            await queue.fail(stale, "HANDLER_ERROR", "a", 1.0)
        with pytest.raises(LeaseLostError):
            await queue.retry(stale, "HANDLER_ERROR", "a", 0.0, 1.0)
        with pytest.raises(LeaseLostError):
            await queue.mark_processing(stale, _LONG_LEASE)
        assert (await queue.extend_leases([stale], _LONG_LEASE)).lost == {stale.id}
        assert await queue.release([stale]) == 0
        await peer.complete(fresh, {"who": "b"}, 1.0)
        stored = await self._get(queue, stale.id)
        assert (stored.status, stored.results, stored.attempts) == (
            JobStatus.COMPLETED,
            {"who": "b"},
            2,
        )
        with pytest.raises(LeaseLostError):
            await queue.complete(stale, {"who": "a"}, 1.0)

    # --- release ---------------------------------------------------------------------------

    async def test_release_gives_back_the_attempt_of_a_started_job(
        self, queue: JobQueue, service: str
    ) -> None:
        """A released Processing job is Ready again with the attempt not spent."""
        job = await self._started(queue, service)
        assert await queue.release([job]) == 1
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.attempts, stored.lease_owner) == (JobStatus.READY, 0, None)
        [again] = await queue.claim(service, "worker-b", 1, _LONG_LEASE)
        assert again.id == job.id
        assert (await queue.mark_processing(again, _LONG_LEASE)).attempts == 1
        with pytest.raises(LeaseLostError):
            await queue.complete(job, {}, 1.0)  # the released claim is over

    async def test_release_of_assigned_jobs_keeps_their_place_in_line(
        self, queue: JobQueue, service: str
    ) -> None:
        """Released jobs go back ahead of jobs enqueued after them, attempts untouched."""
        first = await queue.enqueue_many([_request(service, n) for n in range(2)])
        claimed = await queue.claim(service, "worker-a", 2, _LONG_LEASE)
        later = await queue.enqueue(_request(service, 9))
        assert await queue.release(claimed) == 2
        assert await queue.release(claimed) == 0  # already released
        batch = await queue.claim(service, "worker-b", 3, _LONG_LEASE)
        assert [j.id for j in batch] == [first[0].id, first[1].id, later.id]
        assert [j.attempts for j in batch] == [0, 0, 0]

    # --- leases --------------------------------------------------------------------------------

    async def test_reclaim_requeues_an_expired_assigned_job_without_spending_an_attempt(
        self, queue: JobQueue, service: str
    ) -> None:
        """An Assigned job whose lease expired is Ready again; no attempt was spent."""
        job = await queue.enqueue(_request(service, max_attempts=1))
        await queue.claim(service, "worker-a", 1, self.short_lease)
        await self.travel(self.short_lease + 0.2)
        result = await queue.reclaim_expired(service)
        assert (list(result.requeued), list(result.failed)) == ([job.id], [])
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.attempts, stored.lease_token) == (JobStatus.READY, 0, None)
        assert len(await queue.claim(service, "worker-b", 1, _LONG_LEASE)) == 1

    async def test_reclaim_requeues_an_expired_started_job_while_attempts_are_left(
        self, queue: JobQueue, service: str
    ) -> None:
        """A Processing job whose worker stopped renewing runs again; the attempt counts."""
        job = await self._started(queue, service, lease=self.short_lease, max_attempts=2)
        await self.travel(self.short_lease + 0.2)
        result = await queue.reclaim_expired(service)
        assert (list(result.requeued), list(result.failed)) == ([job.id], [])
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.attempts) == (JobStatus.READY, 1)
        assert stored.error_code == ErrorCode.LEASE_EXPIRED.value

    async def test_reclaim_fails_an_expired_started_job_with_no_attempts_left(
        self, queue: JobQueue, service: str
    ) -> None:
        """The last attempt's lost lease fails the job with LEASE_EXPIRED and a message."""
        job = await self._started(queue, service, lease=self.short_lease, max_attempts=1)
        await self.travel(self.short_lease + 0.2)
        result = await queue.reclaim_expired(service)
        assert (list(result.requeued), list(result.failed)) == ([], [job.id])
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.error_code) == (JobStatus.FAILED, "LEASE_EXPIRED")
        assert "no attempts left" in (stored.error_message or "")
        assert stored.finished_at is not None

    async def test_reclaimed_jobs_keep_their_place_in_line(
        self, queue: JobQueue, service: str
    ) -> None:
        """A dead worker's jobs run before jobs enqueued after them: their recovery must not
        wait for the backlog to drain (found by the reliability kill suite)."""
        started = await self._started(queue, service, lease=self.short_lease, max_attempts=2)
        await queue.enqueue(_request(service, 1))
        [assigned] = await queue.claim(service, "worker-a", 1, self.short_lease)
        later = await queue.enqueue(_request(service, 2))
        await self.travel(self.short_lease + 0.2)
        assert len(await queue.reclaim_expired(service)) == 2
        batch = await queue.claim(service, "worker-b", 3, _LONG_LEASE)
        assert [j.id for j in batch] == [started.id, assigned.id, later.id]

    async def test_reclaim_leaves_live_leases_and_other_services_alone(
        self, queue: JobQueue, service: str
    ) -> None:
        """Only expired leases of the asked service are reclaimed."""
        other = f"{service}-other"
        live = await self._started(queue, service)
        await queue.enqueue(_request(other))
        await queue.claim(other, "worker-a", 1, self.short_lease)
        await self.travel(self.short_lease + 0.2)
        assert len(await queue.reclaim_expired(service)) == 0
        assert (await self._get(queue, live.id)).status is JobStatus.PROCESSING
        assert len(await queue.reclaim_expired(other)) == 1

    async def test_extend_leases_keeps_jobs_owned(self, queue: JobQueue, service: str) -> None:
        """A renewed lease outlives the original one: the job is not reclaimed."""
        job = await self._started(queue, service, lease=self.short_lease)
        before = (await self._get(queue, job.id)).lease_expires_at
        assert await queue.extend_leases([job], _LONG_LEASE) == LeaseRenewal()
        after = (await self._get(queue, job.id)).lease_expires_at
        assert before is not None
        assert after is not None
        assert after > before
        await self.travel(self.short_lease + 0.2)
        assert len(await queue.reclaim_expired(service)) == 0
        await queue.complete(job, {"ok": 1}, 1.0)

    async def test_extend_leases_reports_the_jobs_it_lost(
        self, queue: JobQueue, service: str
    ) -> None:
        """extend_leases returns the ids of jobs this claim no longer owns."""
        kept = await self._started(queue, service)
        gone = await self._started(queue, service)
        await queue.complete(gone, {}, 1.0)
        assert (await queue.extend_leases([kept, gone], _LONG_LEASE)).lost == {gone.id}
        assert await queue.extend_leases([], _LONG_LEASE) == LeaseRenewal()

    # --- idempotency keys ----------------------------------------------------------------------

    async def test_an_idempotency_key_admits_one_unfinished_job(
        self, queue: JobQueue, service: str
    ) -> None:
        """A second job with the key of an unfinished one is refused, naming the holder."""
        first = await queue.enqueue(_request(service, idempotency_key="order-1"))
        with pytest.raises(DuplicateJobError) as caught:
            await queue.enqueue(_request(service, idempotency_key="order-1"))
        assert caught.value.existing_job_id == first.id
        other = await queue.enqueue(_request(f"{service}-other", idempotency_key="order-1"))
        assert other.id != first.id  # keys are per service

    async def test_an_idempotency_key_is_free_again_once_its_job_finished(
        self, queue: JobQueue, service: str
    ) -> None:
        """After its job finished, the key may be used by a new job."""
        job = await self._started(queue, service, idempotency_key="order-2")
        with pytest.raises(DuplicateJobError):
            await queue.enqueue(_request(service, idempotency_key="order-2"))
        await queue.complete(job, {}, 1.0)
        again = await queue.enqueue(_request(service, idempotency_key="order-2"))
        assert again.id != job.id

    async def test_enqueue_many_with_a_taken_key_enqueues_nothing(
        self, queue: JobQueue, service: str
    ) -> None:
        """enqueue_many is all or nothing: one taken key refuses the whole batch."""
        await queue.enqueue(_request(service, idempotency_key="k1"))
        with pytest.raises(DuplicateJobError):
            await queue.enqueue_many(
                [
                    _request(service, 1),
                    _request(service, 2, idempotency_key="k1"),
                    _request(service, 3),
                ]
            )
        with pytest.raises(DuplicateJobError):
            await queue.enqueue_many(
                [
                    _request(service, 4, idempotency_key="k2"),
                    _request(service, 5, idempotency_key="k2"),
                ]
            )
        stats = await queue.stats(service)
        assert stats.counts[JobStatus.READY] == 1

    # --- unique keys -------------------------------------------------------------------------

    async def test_a_unique_key_admits_one_job_and_is_returned(
        self, queue: JobQueue, service: str
    ) -> None:
        """A second job with the unique key of a Ready one is refused; the error names the
        key and the job holding it; the key is stored and returned with the job."""
        first = await queue.enqueue(_request(service, unique_key="slot:1"))
        assert first.unique_key == "slot:1"
        assert (await self._get(queue, first.id)).unique_key == "slot:1"
        with pytest.raises(DuplicateJobError) as caught:
            await queue.enqueue(_request(service, 2, unique_key="slot:1"))
        assert caught.value.existing_job_id == first.id
        assert "slot:1" in str(caught.value)
        assert first.id in str(caught.value)
        plain = await queue.enqueue(_request(service))
        assert plain.unique_key is None
        assert (await self._get(queue, plain.id)).unique_key is None
        assert (await queue.stats(service)).counts[JobStatus.READY] == 2

    @pytest.mark.parametrize("outcome", ["complete", "fail"])
    async def test_a_unique_key_stays_taken_after_its_job_finished(
        self, queue: JobQueue, service: str, outcome: str
    ) -> None:
        """Unlike an idempotency key, a unique key holds across finished jobs (Completed or
        Failed), so that a scheduled slot runs once; the refusal names the finished job."""
        job = await self._started(queue, service, unique_key="slot:2")
        if outcome == "complete":
            await queue.complete(job, {}, 1.0)
        else:
            await queue.fail(job, ErrorCode.HANDLER_ERROR.value, "boom", 1.0)
        assert (await self._get(queue, job.id)).status.is_finished
        with pytest.raises(DuplicateJobError) as caught:
            await queue.enqueue(_request(service, unique_key="slot:2"))
        assert caught.value.existing_job_id == job.id
        with pytest.raises(DuplicateJobError):
            await queue.enqueue_many([_request(service, unique_key="slot:2")])
        assert (await queue.stats(service)).counts[JobStatus.READY] == 0

    async def test_a_unique_key_is_free_again_once_its_job_is_purged(
        self, queue: JobQueue, service: str
    ) -> None:
        """Purging the finished job that held a unique key frees the key."""
        job = await self._started(queue, service, unique_key="slot:3")
        await queue.complete(job, {}, 1.0)
        await self.travel(1.0)
        assert await queue.purge(service, 0.5) == 1
        again = await queue.enqueue(_request(service, unique_key="slot:3"))
        assert (again.id != job.id, again.unique_key) == (True, "slot:3")

    async def test_services_may_share_a_unique_key(self, queue: JobQueue, service: str) -> None:
        """Unique keys are per service."""
        mine = await queue.enqueue(_request(service, unique_key="slot:4"))
        theirs = await queue.enqueue(_request(f"{service}-other", unique_key="slot:4"))
        assert mine.id != theirs.id
        assert (await self._get(queue, theirs.id)).unique_key == "slot:4"

    async def test_enqueue_many_with_a_taken_unique_key_enqueues_nothing(
        self, queue: JobQueue, service: str
    ) -> None:
        """enqueue_many is all or nothing for unique keys too: a key held by a stored job,
        or given twice in the batch, refuses the whole batch."""
        held = await queue.enqueue(_request(service, unique_key="u1"))
        with pytest.raises(DuplicateJobError) as caught:
            await queue.enqueue_many(
                [
                    _request(service, 1, unique_key="u0"),
                    _request(service, 2, unique_key="u1"),
                    _request(service, 3),
                ]
            )
        assert caught.value.existing_job_id == held.id
        with pytest.raises(DuplicateJobError, match="u2"):
            await queue.enqueue_many(
                [_request(service, 4, unique_key="u2"), _request(service, 5, unique_key="u2")]
            )
        assert (await queue.stats(service)).counts[JobStatus.READY] == 1
        jobs = await queue.enqueue_many(
            [_request(service, 6, unique_key="u0"), _request(service, 7, unique_key="u2")]
        )
        assert [j.unique_key for j in jobs] == ["u0", "u2"]

    # --- operator cancellation -----------------------------------------------------------

    async def test_cancel_fails_a_ready_job_at_once(self, queue: JobQueue, service: str) -> None:
        """A Ready job is Failed with CANCELLED, a message saying an operator did it, and a
        finish time; no claim hands it out."""
        job = await queue.enqueue(_request(service))
        assert await self._admin(queue).cancel(service, job.id) is JobStatus.FAILED
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.error_code) == (JobStatus.FAILED, "CANCELLED")
        assert "operator" in (stored.error_message or "")
        assert stored.finished_at is not None
        assert await queue.claim(service, "worker-a", 5, _LONG_LEASE) == []
        assert (await queue.stats(service)).counts[JobStatus.FAILED] == 1

    async def test_cancel_fails_an_assigned_job_and_its_claimer_loses_it(
        self, queue: JobQueue, service: str
    ) -> None:
        """An Assigned job is Failed with CANCELLED; its claimer can no longer start it, and
        its lease renewal reports it lost."""
        await queue.enqueue(_request(service))
        [claimed] = await queue.claim(service, "worker-a", 1, _LONG_LEASE)
        assert await self._admin(queue).cancel(service, claimed.id) is JobStatus.FAILED
        stored = await self._get(queue, claimed.id)
        assert (stored.status, stored.error_code) == (JobStatus.FAILED, "CANCELLED")
        assert (await queue.extend_leases([claimed], _LONG_LEASE)).lost == {claimed.id}
        with pytest.raises(LeaseLostError):
            await queue.mark_processing(claimed, _LONG_LEASE)

    async def test_cancel_asks_the_worker_of_a_processing_job_to_stop(
        self, queue: JobQueue, service: str
    ) -> None:
        """A Processing job stays Processing with cancel_requested; its owner's next lease
        renewal returns it in ``cancel`` (not ``lost``), and the worker then records it
        Failed with CANCELLED. Asking twice changes nothing more."""
        job = await self._started(queue, service)
        other = await self._started(queue, service)
        admin = self._admin(queue)
        assert await admin.cancel(service, job.id) is JobStatus.PROCESSING
        assert await admin.cancel(service, job.id) is JobStatus.PROCESSING
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.cancel_requested) == (JobStatus.PROCESSING, True)
        assert not (await self._get(queue, other.id)).cancel_requested
        renewal = await queue.extend_leases([job, other], _LONG_LEASE)
        assert renewal == LeaseRenewal(lost=frozenset(), cancel=frozenset({job.id}))
        await queue.fail(job, ErrorCode.CANCELLED.value, "cancelled by an operator", 2.0)
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.error_code) == (JobStatus.FAILED, "CANCELLED")
        assert (await queue.extend_leases([job, other], _LONG_LEASE)).lost == {job.id}

    async def test_cancel_leaves_finished_jobs_as_they_are(
        self, queue: JobQueue, service: str
    ) -> None:
        """Cancelling a Completed or Failed job returns its status and changes nothing."""
        done = await self._started(queue, service)
        await queue.complete(done, {"ok": True}, 1.0)
        failed = await self._started(queue, service)
        await queue.fail(failed, ErrorCode.HANDLER_ERROR.value, "boom", 1.0)
        admin = self._admin(queue)
        assert await admin.cancel(service, done.id) is JobStatus.COMPLETED
        assert await admin.cancel(service, failed.id) is JobStatus.FAILED
        stored_done = await self._get(queue, done.id)
        assert (stored_done.status, stored_done.results, stored_done.cancel_requested) == (
            JobStatus.COMPLETED,
            {"ok": True},
            False,
        )
        stored_failed = await self._get(queue, failed.id)
        assert (stored_failed.error_code, stored_failed.error_message) == ("HANDLER_ERROR", "boom")

    async def test_cancel_of_an_unknown_job_or_another_services_job_is_not_found(
        self, queue: JobQueue, service: str
    ) -> None:
        """An id that names no job of the service raises JobNotFoundError; another
        service's job is left untouched."""
        admin = self._admin(queue)
        with pytest.raises(JobNotFoundError):
            await admin.cancel(service, "no-such-job")
        with pytest.raises(JobNotFoundError):
            await admin.cancel(service, "987654321")
        theirs = await queue.enqueue(_request(f"{service}-other"))
        with pytest.raises(JobNotFoundError):
            await admin.cancel(service, theirs.id)
        assert (await self._get(queue, theirs.id)).status is JobStatus.READY

    @pytest.mark.parametrize("back", ["release", "retry", "reclaim"])
    async def test_a_cancel_request_is_cleared_when_the_job_goes_back_to_ready(
        self, queue: JobQueue, service: str, back: str
    ) -> None:
        """A job whose cancellation was asked but that went back to Ready (released,
        retried, or reclaimed after its lease) runs again without the request."""
        lease = self.short_lease if back == "reclaim" else _LONG_LEASE
        job = await self._started(queue, service, lease=lease)
        assert await self._admin(queue).cancel(service, job.id) is JobStatus.PROCESSING
        if back == "release":
            assert await queue.release([job]) == 1
        elif back == "retry":
            status = await queue.retry(job, ErrorCode.HANDLER_ERROR.value, "x", 0.0, 1.0)
            assert status is JobStatus.READY
        else:
            await self.travel(self.short_lease + 0.2)
            assert list((await queue.reclaim_expired(service)).requeued) == [job.id]
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.cancel_requested) == (JobStatus.READY, False)
        [again] = await queue.claim_and_start(service, "worker-b", 1, _LONG_LEASE)
        assert again.id == job.id
        assert not again.cancel_requested
        assert await queue.extend_leases([again], _LONG_LEASE) == LeaseRenewal()

    # --- operators: list, retry, activity -----------------------------------------------------

    async def test_the_queue_is_also_a_queue_admin(self, queue: JobQueue) -> None:
        """Every adapter implements the operator port beside the job port."""
        assert isinstance(queue, QueueAdmin)

    async def test_list_jobs_pages_newest_first(self, queue: JobQueue, service: str) -> None:
        """Jobs come newest first, ``limit`` at a time; the cursor leads to the next page and
        the last page has none. Other services' jobs never appear."""
        jobs = await queue.enqueue_many([_request(service, n) for n in range(7)])
        await queue.enqueue(_request(f"{service}-other"))
        admin = self._admin(queue)
        seen: list[list[str]] = []
        cursor: str | None = None
        while True:
            page = await admin.list_jobs(JobFilter(service), limit=3, cursor=cursor)
            seen.append([j.id for j in page.jobs])
            cursor = page.next_cursor
            if cursor is None:
                break
        newest_first = [j.id for j in reversed(jobs)]
        assert seen == [newest_first[0:3], newest_first[3:6], newest_first[6:]]
        whole = await admin.list_jobs(JobFilter(service), limit=1000)
        assert ([j.id for j in whole.jobs], whole.next_cursor) == (newest_first, None)
        assert whole.jobs[0].payload == {"action": "contract_echo", "n": 6}
        assert (await admin.list_jobs(JobFilter(f"{service}-none"))).jobs == []

    async def test_list_jobs_pages_stay_stable_while_jobs_are_added(
        self, queue: JobQueue, service: str
    ) -> None:
        """Jobs enqueued between two pages do not shift the pages: every job there was at
        the first page is listed once, and none enqueued later."""
        first = await queue.enqueue_many([_request(service, n) for n in range(8)])
        admin = self._admin(queue)
        page = await admin.list_jobs(JobFilter(service), limit=3)
        listed = [j.id for j in page.jobs]
        await self.travel(0.01)
        later = await queue.enqueue_many([_request(service, 100 + n) for n in range(5)])
        while page.next_cursor is not None:
            page = await admin.list_jobs(JobFilter(service), limit=3, cursor=page.next_cursor)
            listed.extend(j.id for j in page.jobs)
            await queue.enqueue(_request(service, 200))
        assert listed == [j.id for j in reversed(first)]
        assert not {j.id for j in later} & set(listed)
        newest = await admin.list_jobs(JobFilter(service), limit=1)
        assert newest.jobs[0].payload["n"] == 200

    async def test_list_jobs_filters_by_status_action_error_and_time(
        self, queue: JobQueue, service: str
    ) -> None:
        """Each filter narrows the list; together they all apply. ``created_after`` is
        inclusive, ``created_before`` exclusive."""
        admin = self._admin(queue)
        early = await queue.enqueue(_of(service, "a", 0))  # stays Ready
        await self.travel(0.05)
        a_failed = await self._started(queue, service, priority=9)  # action contract_echo
        await queue.fail(a_failed, "TIMEOUT", "slow", 1.0)
        await self.travel(0.05)
        b_jobs = await queue.enqueue_many([_of(service, "b", n, priority=5) for n in range(3)])
        [b_first] = await queue.claim_and_start(service, "w", 1, _LONG_LEASE)
        await queue.fail(b_first, "HANDLER_ERROR", "boom", 1.0)
        [b_running] = await queue.claim_and_start(service, "w", 1, _LONG_LEASE)
        await self.travel(0.05)
        late = await queue.enqueue(_of(service, "a", 9))
        assert (b_first.id, b_running.id) == (b_jobs[0].id, b_jobs[1].id)

        async def ids(**where: Any) -> list[str]:
            page = await admin.list_jobs(JobFilter(service, **where), limit=100)
            return [j.id for j in page.jobs]

        stored = {j.id: await self._get(queue, j.id) for j in (early, a_failed, late, *b_jobs)}
        assert await ids(statuses=frozenset({JobStatus.FAILED})) == [b_first.id, a_failed.id]
        assert await ids(statuses=frozenset({JobStatus.READY, JobStatus.PROCESSING})) == [
            late.id,
            b_jobs[2].id,
            b_jobs[1].id,
            early.id,
        ]
        assert await ids(actions=frozenset({"a"})) == [late.id, early.id]
        assert await ids(error_codes=frozenset({"TIMEOUT"})) == [a_failed.id]
        after = stored[a_failed.id].created_at
        before = stored[late.id].created_at
        assert after is not None
        assert before is not None
        window = await ids(created_after=after, created_before=before)
        assert window == [*(j.id for j in reversed(b_jobs)), a_failed.id]
        combined = await ids(
            statuses=frozenset({JobStatus.FAILED, JobStatus.READY}),
            actions=frozenset({"b", "contract_echo"}),
            error_codes=frozenset({"HANDLER_ERROR"}),
            created_after=after,
        )
        assert combined == [b_first.id]

    async def test_list_jobs_refuses_bad_limits_cursors_and_naive_times(
        self, queue: JobQueue, service: str
    ) -> None:
        """A page holds 1 to 1000 jobs; a cursor list_jobs did not give out and a time
        without a timezone are ValueErrors."""
        await queue.enqueue_many([_request(service, n) for n in range(3)])
        admin = self._admin(queue)
        for limit in (0, 1001):
            with pytest.raises(ValueError, match="limit"):
                await admin.list_jobs(JobFilter(service), limit=limit)
        assert len((await admin.list_jobs(JobFilter(service), limit=1000)).jobs) == 3
        for cursor in ("", "not a cursor", "eyJhIjoxfQ", "W10", "%%%"):
            with pytest.raises(ValueError, match="cursor"):
                await admin.list_jobs(JobFilter(service), cursor=cursor)
        naive = datetime(2026, 1, 1)
        with pytest.raises(ValueError, match="timezone"):
            await admin.list_jobs(JobFilter(service, created_after=naive))

    async def test_retry_failed_by_id_gives_fresh_attempts_and_clears_the_error(
        self, queue: JobQueue, service: str
    ) -> None:
        """A Failed job goes back to Ready, due now, attempts 0, with no error, results or
        finish time, and runs again; jobs that are not Failed, unknown ids and another
        service's jobs are left alone and not counted."""
        failed = await self._started(queue, service, max_attempts=1)
        await queue.fail(failed, "HANDLER_ERROR", "boom", 3.0)
        done = await self._started(queue, service)
        await queue.complete(done, {"ok": 1}, 1.0)
        waiting = await queue.enqueue(_request(service, 5, delay_seconds=600))
        theirs = await self._started(queue, f"{service}-other")
        await queue.fail(theirs, "HANDLER_ERROR", "boom", 1.0)
        admin = self._admin(queue)
        ids = [failed.id, done.id, waiting.id, theirs.id, "no-such-job", "987654321"]
        assert await admin.retry_failed(service, ids) == 1
        again = await self._get(queue, failed.id)
        assert (again.status, again.attempts, again.max_attempts) == (JobStatus.READY, 0, 1)
        assert (again.error_code, again.error_message, again.results) == (None, None, None)
        assert (again.finished_at, again.runtime_ms) == (None, None)
        assert (await self._get(queue, done.id)).status is JobStatus.COMPLETED
        assert (await self._get(queue, waiting.id)).status is JobStatus.READY
        assert (await self._get(queue, theirs.id)).status is JobStatus.FAILED
        [claimed] = await queue.claim_and_start(service, "worker-b", 5, _LONG_LEASE)
        assert (claimed.id, claimed.attempts) == (failed.id, 1)
        await queue.complete(claimed, {"second": True}, 1.0)
        assert (await self._get(queue, failed.id)).results == {"second": True}
        assert await admin.retry_failed(service, [failed.id]) == 0  # Completed now

    async def test_retry_failed_by_filter_retries_only_matching_failed_jobs(
        self, queue: JobQueue, service: str
    ) -> None:
        """Every Failed job matching the filter goes back to Ready, and no other."""
        timeouts = []
        for _ in range(3):
            job = await self._started(queue, service)
            await queue.fail(job, "TIMEOUT", "slow", 1.0)
            timeouts.append(job)
        crashed = await self._started(queue, service)
        await queue.fail(crashed, "HANDLER_ERROR", "boom", 1.0)
        theirs = await self._started(queue, f"{service}-other")
        await queue.fail(theirs, "TIMEOUT", "slow", 1.0)
        admin = self._admin(queue)
        ready_only = JobFilter(service, statuses=frozenset({JobStatus.READY}))
        assert await admin.retry_failed(service, where=ready_only) == 0
        where = JobFilter(service, error_codes=frozenset({"TIMEOUT"}))
        assert await admin.retry_failed(service, where=where) == 3
        for job in timeouts:
            assert (await self._get(queue, job.id)).status is JobStatus.READY
        assert (await self._get(queue, crashed.id)).status is JobStatus.FAILED
        assert (await self._get(queue, theirs.id)).status is JobStatus.FAILED
        assert await admin.retry_failed(service, where=where) == 0
        everything_failed = JobFilter(service, statuses=frozenset({JobStatus.FAILED}))
        assert await admin.retry_failed(service, where=everything_failed) == 1
        assert (await queue.stats(service)).counts[JobStatus.READY] == 4

    async def test_retry_failed_leaves_a_job_whose_idempotency_key_is_taken(
        self, queue: JobQueue, service: str
    ) -> None:
        """A Failed job whose idempotency key an unfinished job holds now stays Failed
        (that job does the work): a key is held by one unfinished job at a time."""
        first = await self._started(queue, service, idempotency_key="order-9")
        await queue.fail(first, "HANDLER_ERROR", "boom", 1.0)
        second = await self._started(queue, service, idempotency_key="order-9")
        await queue.fail(second, "HANDLER_ERROR", "boom", 1.0)
        admin = self._admin(queue)
        assert await admin.retry_failed(service, [first.id, second.id]) == 1
        statuses = {(await self._get(queue, j.id)).status for j in (first, second)}
        assert statuses == {JobStatus.READY, JobStatus.FAILED}
        with pytest.raises(DuplicateJobError):
            await queue.enqueue(_request(service, idempotency_key="order-9"))
        assert await admin.retry_failed(service, [first.id, second.id]) == 0

    async def test_retry_failed_needs_ids_or_a_filter_of_the_service(
        self, queue: JobQueue, service: str
    ) -> None:
        """Nothing named, both named, or a filter of another service: ValueError."""
        admin = self._admin(queue)
        with pytest.raises(ValueError, match="ids or a filter"):
            await admin.retry_failed(service)
        with pytest.raises(ValueError, match="ids or a filter"):
            await admin.retry_failed(service, ["1"], where=JobFilter(service))
        with pytest.raises(ValueError, match="service"):
            await admin.retry_failed(service, where=JobFilter(f"{service}-other"))

    async def test_activity_counts_by_action_and_status(
        self, queue: JobQueue, service: str
    ) -> None:
        """Counts by action and status of the service alone (actions with no jobs absent),
        and the oldest due Ready job's age by action (delayed jobs are not waiting)."""
        await queue.enqueue_many([_of(service, "a", n) for n in range(3)])
        await queue.enqueue(_of(service, "later", delay_seconds=600))
        [running] = await queue.claim_and_start(service, "w", 1, _LONG_LEASE)
        await queue.enqueue_many([_of(service, "b", n) for n in range(2)])
        [done] = await queue.claim_and_start(service, "w", 1, _LONG_LEASE)
        await queue.complete(done, {}, 1.0)
        await queue.enqueue(_of(f"{service}-other", "c"))
        await self.travel(0.05)
        activity = await self._admin(queue).activity(service)
        counts = {
            action: {status: n for status, n in by_status.items() if n}
            for action, by_status in activity.counts.items()
        }
        assert counts == {
            "a": {JobStatus.READY: 1, JobStatus.PROCESSING: 1, JobStatus.COMPLETED: 1},
            "b": {JobStatus.READY: 2},
            "later": {JobStatus.READY: 1},
        }
        assert (running.action, done.action) == ("a", "a")
        assert set(activity.oldest_ready_age_seconds) == {"a", "b"}
        assert all(age >= 0 for age in activity.oldest_ready_age_seconds.values())

    async def test_activity_ready_age_counts_from_when_a_job_became_due(
        self, queue: JobQueue, service: str
    ) -> None:
        """A delayed job waits from its run-at on, not from its enqueue."""
        await queue.enqueue(_of(service, "a", delay_seconds=self.delay))
        await self.travel(self.delay + 0.2)
        age = (await self._admin(queue).activity(service)).oldest_ready_age_seconds["a"]
        assert 0 <= age < self.delay

    async def test_activity_counts_finished_jobs_per_minute(
        self, queue: JobQueue, service: str
    ) -> None:
        """Exactly ``minutes`` whole minutes, oldest first, one minute apart; jobs finished
        now are counted, Completed and Failed apart, in the minute holding their finish."""
        finished: list[Job] = []
        for n in range(3):
            job = await self._started(queue, service)
            if n < 2:
                await queue.complete(job, {}, 1.0)
            else:
                await queue.fail(job, "HANDLER_ERROR", "boom", 1.0)
            finished.append(await self._get(queue, job.id))
        other = await self._started(queue, f"{service}-other")
        await queue.complete(other, {}, 1.0)
        admin = self._admin(queue)
        activity = await admin.activity(service, minutes=5)
        minutes = [m.minute for m in activity.per_minute]
        assert len(minutes) == 5
        assert all(m.utcoffset() == timedelta(0) for m in minutes)  # UTC, timezone-aware
        assert all(m.second == 0 and m.microsecond == 0 for m in minutes)
        assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(minutes))
        assert sum(m.completed for m in activity.per_minute) == 2
        assert sum(m.failed for m in activity.per_minute) == 1
        for job in finished:
            assert job.finished_at is not None
            slot = max(
                (m for m in activity.per_minute if m.minute <= job.finished_at),
                key=lambda m: m.minute,
            )
            assert job.finished_at - slot.minute < timedelta(minutes=1)
            assert (slot.completed if job.status is JobStatus.COMPLETED else slot.failed) >= 1
        assert len((await admin.activity(service, minutes=1)).per_minute) == 1
        assert len((await admin.activity(service)).per_minute) == 60
        for bad in (0, 1441):
            with pytest.raises(ValueError, match="minutes"):
                await admin.activity(service, minutes=bad)

    # --- housekeeping ----------------------------------------------------------------------

    async def test_purge_deletes_only_old_finished_jobs_of_the_service(
        self, queue: JobQueue, service: str
    ) -> None:
        """purge removes finished jobs older than the retention, and nothing else."""
        other = f"{service}-other"
        old_done = await self._started(queue, service)
        await queue.complete(old_done, {}, 1.0)
        old_failed = await self._started(queue, service)
        await queue.fail(old_failed, "HANDLER_ERROR", "x", 1.0)
        other_done = await self._started(queue, other)
        await queue.complete(other_done, {}, 1.0)
        waiting = await queue.enqueue(_request(service))
        await self.travel(1.0)
        recent = await self._started(queue, service)
        await queue.complete(recent, {}, 1.0)
        assert await queue.purge(service, 0.5) == 2
        assert await queue.get(old_done.id) is None
        assert await queue.get(old_failed.id) is None
        for kept in (other_done, waiting, recent):
            assert await queue.get(kept.id) is not None
        assert await queue.purge(service, 0.5) == 0

    async def test_stats_count_jobs_by_status_for_one_service(
        self, queue: JobQueue, service: str
    ) -> None:
        """stats gives the count of every status and the oldest Ready job's age."""
        other = f"{service}-other"
        empty = await queue.stats(service)
        assert all(empty.counts.get(s, 0) == 0 for s in JobStatus)
        assert empty.oldest_ready_age_seconds is None
        await queue.enqueue_many([_request(service, n) for n in range(6)])
        await queue.enqueue(_request(other))
        claimed = await queue.claim(service, "worker-a", 4, _LONG_LEASE)
        done = await queue.mark_processing(claimed[0], _LONG_LEASE)
        await queue.complete(done, {}, 1.0)
        failed = await queue.mark_processing(claimed[1], _LONG_LEASE)
        await queue.fail(failed, "HANDLER_ERROR", "x", 1.0)
        await queue.mark_processing(claimed[2], _LONG_LEASE)
        stats = await queue.stats(service)
        assert {s: stats.counts.get(s, 0) for s in JobStatus} == {
            JobStatus.READY: 2,
            JobStatus.ASSIGNED: 1,
            JobStatus.PROCESSING: 1,
            JobStatus.COMPLETED: 1,
            JobStatus.FAILED: 1,
        }
        assert stats.oldest_ready_age_seconds is not None
        assert stats.oldest_ready_age_seconds >= 0

    async def test_stats_with_a_count_limit_stops_each_count_at_the_limit(
        self, queue: JobQueue, service: str
    ) -> None:
        """With ``count_limit`` each status's count stops at the limit and ``at_least`` names
        those that reached it (below: exact; at or above: the limit, a lower bound); without
        one every count is exact. The oldest due job's wait is read either way."""
        await queue.enqueue_many([_request(service, n) for n in range(2)])
        below = await queue.stats(service, count_limit=3)
        assert (below.counts[JobStatus.READY], below.at_least) == (2, frozenset())
        await queue.enqueue(_request(service, 2))
        at = await queue.stats(service, count_limit=3)
        assert (at.counts[JobStatus.READY], at.at_least) == (3, frozenset({JobStatus.READY}))
        await queue.enqueue_many([_request(service, n) for n in range(3, 5)])
        exact = await queue.stats(service)
        assert (exact.counts[JobStatus.READY], exact.at_least) == (5, frozenset())
        assert (await queue.stats(service, count_limit=None)).counts[JobStatus.READY] == 5
        above = await queue.stats(service, count_limit=3)
        assert (above.counts[JobStatus.READY], above.at_least) == (3, frozenset({JobStatus.READY}))
        assert exact.oldest_ready_age_seconds is not None
        assert above.oldest_ready_age_seconds is not None
        assert above.oldest_ready_age_seconds >= exact.oldest_ready_age_seconds
        assert (await queue.stats(service, count_limit=5)).at_least == {JobStatus.READY}
        assert (await queue.stats(service, count_limit=6)).at_least == frozenset()

        claimed = await queue.claim(service, "worker-a", 4, _LONG_LEASE)
        stats = await queue.stats(service, count_limit=3)
        assert {s: stats.counts.get(s, 0) for s in JobStatus} == {
            JobStatus.READY: 1,
            JobStatus.ASSIGNED: 3,
            JobStatus.PROCESSING: 0,
            JobStatus.COMPLETED: 0,
            JobStatus.FAILED: 0,
        }
        assert stats.at_least == {JobStatus.ASSIGNED}
        for job in claimed[:3]:
            await queue.complete(await queue.mark_processing(job, _LONG_LEASE), {}, 1.0)
        failed = await queue.mark_processing(claimed[3], _LONG_LEASE)
        await queue.fail(failed, "HANDLER_ERROR", "x", 1.0)
        stats = await queue.stats(service, count_limit=3)
        assert {s: stats.counts.get(s, 0) for s in JobStatus} == {
            JobStatus.READY: 1,
            JobStatus.ASSIGNED: 0,
            JobStatus.PROCESSING: 0,
            JobStatus.COMPLETED: 3,
            JobStatus.FAILED: 1,
        }
        assert stats.at_least == {JobStatus.COMPLETED}
        assert (await queue.stats(service, count_limit=2)).at_least == {JobStatus.COMPLETED}
        exact = await queue.stats(service)
        assert (exact.counts[JobStatus.COMPLETED], exact.at_least) == (3, frozenset())

    async def test_stats_with_a_count_limit_counts_scheduled_jobs_with_the_ready_ones(
        self, queue: JobQueue, service: str
    ) -> None:
        """The scheduled count rides on the Ready count: exact while Ready is below the
        limit, a lower bound (never above the limit nor the true count) once it reaches it."""
        await queue.enqueue(_request(service, 0))
        await queue.enqueue(_request(service, 1, delay_seconds=3600))
        below = await queue.stats(service, count_limit=5)
        assert (below.counts[JobStatus.READY], below.scheduled, below.at_least) == (
            2,
            1,
            frozenset(),
        )
        await queue.enqueue_many([_request(service, n, delay_seconds=3600) for n in range(2, 6)])
        exact = await queue.stats(service)
        assert (exact.counts[JobStatus.READY], exact.scheduled) == (6, 5)
        capped = await queue.stats(service, count_limit=3)
        assert (capped.counts[JobStatus.READY], capped.at_least) == (
            3,
            frozenset({JobStatus.READY}),
        )
        assert 0 <= capped.scheduled <= 3
        assert capped.oldest_ready_age_seconds is not None  # the due job, wherever it sorts

    async def test_stats_refuses_a_count_limit_below_one(
        self, queue: JobQueue, service: str
    ) -> None:
        for bad in (0, -1):
            with pytest.raises(ValueError, match="count_limit"):
                await queue.stats(service, count_limit=bad)

    # --- payloads another producer wrote -------------------------------------------------------

    async def test_a_payload_that_is_not_json_does_not_break_a_claim(
        self, queue: JobQueue, service: str
    ) -> None:
        """A bad payload is delivered with payload_error; the good jobs of the claim come too."""
        good = await queue.enqueue(_request(service, 1))
        bad_id = await self.insert_raw_job(queue, service, '{"action": "contract_echo", n: 1')
        claimed = {j.id: j for j in await queue.claim(service, "worker-a", 10, _LONG_LEASE)}
        assert set(claimed) == {good.id, bad_id}
        bad = claimed[bad_id]
        assert bad.payload is None
        assert bad.payload_error
        assert claimed[good.id].payload_error is None
        started = await queue.mark_processing(bad, _LONG_LEASE)
        await queue.fail(started, ErrorCode.INVALID_PAYLOAD.value, "payload is not JSON", None)
        stored = await self._get(queue, bad_id)
        assert (stored.status, stored.error_code) == (JobStatus.FAILED, "INVALID_PAYLOAD")

    async def test_the_worker_fails_bad_payloads_and_completes_the_rest(
        self, queue: JobQueue, service: str, tmp_path: Path
    ) -> None:
        """A real worker on this queue completes good jobs and fails a non-JSON payload with
        INVALID_PAYLOAD, without stopping."""
        bad_id = await self.insert_raw_job(queue, service, b"\xff\xfe not even text")
        good = await queue.enqueue_many([_request(service, n) for n in range(25)])
        app = _application(queue, service, tmp_path)
        async with app:
            finished = await _wait_finished(queue, [bad_id, *(j.id for j in good)], 30.0)
        bad = finished[bad_id]
        assert (bad.status, bad.error_code) == (JobStatus.FAILED, "INVALID_PAYLOAD")
        assert "not valid JSON" in (bad.error_message or "")
        for job in good:
            done = finished[job.id]
            assert (done.status, done.results) == (JobStatus.COMPLETED, {"n": job.payload["n"]})

    # --- store: sessions, due ages, never-started rescues, attempt history, the scheduled
    # view, filters and lookup (issues 19 items 4 and 9, 21 items 1, 2 and 5, 22 item 3) ------

    #: How many attempts ``get`` shows with the adapter's default setting.
    attempt_history: int = 20

    async def _store_now(self, queue: JobQueue, service: str) -> datetime:
        """Now on the store's clock: the creation time of a job made for the purpose."""
        probe = await queue.enqueue(_of(service, "clock-probe"))
        assert probe.created_at is not None
        return probe.created_at

    async def test_a_revoked_session_is_refused_through_every_handle(
        self, queue: JobQueue, peer: JobQueue, service: str
    ) -> None:
        """A session revoked through one handle is revoked for every process on the store;
        other sessions are not; revoking twice is harmless."""
        admin, other = self._admin(queue), self._admin(peer)
        now = await self._store_now(queue, service)
        assert not await admin.session_revoked("session-1")
        await admin.revoke_session("session-1", now + timedelta(hours=12))
        assert await admin.session_revoked("session-1")
        assert await other.session_revoked("session-1")
        assert not await other.session_revoked("session-2")
        await other.revoke_session("session-1", now + timedelta(hours=12))
        assert await admin.session_revoked("session-1")

    async def test_a_revocation_ends_when_its_session_would_have_expired(
        self, queue: JobQueue, service: str
    ) -> None:
        """A revocation is kept until ``until`` only (then the session is dead anyway and
        the store forgets it); one already past is not kept; naive times are refused."""
        admin = self._admin(queue)
        now = await self._store_now(queue, service)
        await admin.revoke_session("short", now + timedelta(seconds=self.delay))
        await admin.revoke_session("past", now - timedelta(seconds=1))
        assert await admin.session_revoked("short")
        assert not await admin.session_revoked("past")
        await self.travel(self.delay + 0.2)
        await admin.revoke_session("later", now + timedelta(hours=1))  # purges expired ones
        assert not await admin.session_revoked("short")
        assert await admin.session_revoked("later")
        with pytest.raises(ValueError, match="timezone"):
            await admin.revoke_session("naive", datetime(2030, 1, 1))

    async def test_stats_oldest_ready_age_counts_due_jobs_only_from_when_they_became_due(
        self, queue: JobQueue, service: str
    ) -> None:
        """A job scheduled for later is counted as scheduled, never as waiting; a delayed
        job that became due waits from its run-at, not from its enqueue."""
        await queue.enqueue(_request(service, delay_seconds=3600))
        stats = await queue.stats(service)
        assert stats.counts[JobStatus.READY] == 1
        assert stats.scheduled == 1
        assert stats.oldest_ready_age_seconds is None
        await queue.enqueue(_request(service, delay_seconds=self.delay))
        await self.travel(self.delay + 0.2)
        stats = await queue.stats(service)
        assert (stats.counts[JobStatus.READY], stats.scheduled) == (2, 1)
        assert stats.oldest_ready_age_seconds is not None
        assert 0.1 <= stats.oldest_ready_age_seconds < self.delay
        activity = await self._admin(queue).activity(service)
        assert activity.scheduled == {"contract_echo": 1}
        assert activity.counts["contract_echo"][JobStatus.READY] == 2
        assert 0.1 <= activity.oldest_ready_age_seconds["contract_echo"] < self.delay

    async def test_a_claim_whose_reply_was_lost_gets_its_attempt_back(
        self, queue: JobQueue, service: str
    ) -> None:
        """claim_and_start committed but its caller never heard (no renewal, no outcome):
        rescued, the job is Ready with its attempt given back (``not_started``). Once its
        start is confirmed by a renewal, a rescue spends the attempt as before."""
        job = await queue.enqueue(_request(service, max_attempts=1))
        [lost] = await queue.claim_and_start(service, "worker-a", 1, self.short_lease)
        await self.travel(self.short_lease + 0.2)
        assert list((await queue.reclaim_expired(service)).requeued) == [job.id]
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.attempts) == (JobStatus.READY, 0)
        assert stored.error_code == ErrorCode.LEASE_EXPIRED.value
        [attempt] = stored.attempt_history
        assert (attempt.number, attempt.worker_id) == (1, "worker-a")
        assert attempt.outcome is AttemptOutcome.NOT_STARTED
        with pytest.raises(LeaseLostError):
            await queue.complete(lost, {}, 1.0)
        [again] = await queue.claim_and_start(service, "worker-b", 1, self.short_lease)
        renewal = await queue.extend_leases([again], self.short_lease)  # the start, confirmed
        assert renewal.lost == frozenset()
        await self.travel(self.short_lease + 0.2)
        assert list((await queue.reclaim_expired(service)).failed) == [job.id]
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.attempts) == (JobStatus.FAILED, 1)
        assert stored.error_code == ErrorCode.LEASE_EXPIRED.value
        assert [a.outcome for a in stored.attempt_history] == [
            AttemptOutcome.NOT_STARTED,
            AttemptOutcome.LEASE_EXPIRED,
        ]

    async def test_a_job_that_kills_its_worker_before_confirming_cannot_loop(
        self, queue: JobQueue, service: str
    ) -> None:
        """An attempt is given back once per job: a job whose worker dies every time before
        its first renewal (a poison job) spends its attempts from the second rescue on."""
        job = await queue.enqueue(_request(service, max_attempts=1))
        for _ in range(2):
            assert len(await queue.claim_and_start(service, "w", 1, self.short_lease)) == 1
            await self.travel(self.short_lease + 0.2)
            await queue.reclaim_expired(service)
        stored = await self._get(queue, job.id)
        assert (stored.status, stored.attempts) == (JobStatus.FAILED, 1)
        assert await queue.claim_and_start(service, "w", 1, self.short_lease) == []
        assert [a.outcome for a in stored.attempt_history] == [
            AttemptOutcome.NOT_STARTED,
            AttemptOutcome.LEASE_EXPIRED,
        ]

    async def test_every_attempt_keeps_its_worker_times_outcome_and_error(
        self, queue: JobQueue, service: str
    ) -> None:
        """Retries, rescues, releases and an operator's retry each leave the earlier
        attempts as they were: worker, start, end, outcome, error code and message."""
        job = await queue.enqueue(_request(service, max_attempts=3))
        [first] = await queue.claim_and_start(service, "worker-a", 1, _LONG_LEASE)
        await queue.retry(first, "HANDLER_ERROR", "first failure", 0.0, 1.0)
        [second] = await queue.claim(service, "worker-b", 1, self.short_lease)
        await queue.mark_processing(second, self.short_lease)
        await self.travel(self.short_lease + 0.2)
        await queue.reclaim_expired(service)
        [third] = await queue.claim_and_start(service, "worker-c", 1, _LONG_LEASE)
        assert await queue.release([third]) == 1
        [fourth] = await queue.claim_and_start(service, "worker-d", 1, _LONG_LEASE)
        assert fourth.attempts == 3
        await queue.retry(fourth, "TIMEOUT", "too slow", 0.0, 1.0)  # none left: Failed
        assert await self._admin(queue).retry_failed(service, [job.id]) == 1
        [fifth] = await queue.claim_and_start(service, "worker-e", 1, _LONG_LEASE)
        running = await self._get(queue, job.id)
        assert running.attempt_history[-1].outcome is AttemptOutcome.RUNNING
        assert running.attempt_history[-1].worker_id == "worker-e"
        await queue.complete(fifth, {"ok": True}, 1.0)
        history = (await self._get(queue, job.id)).attempt_history
        assert [(a.number, a.worker_id, a.outcome, a.error_code, a.error_message) for a in history][
            :2
        ] == [
            (1, "worker-a", AttemptOutcome.RETRIED, "HANDLER_ERROR", "first failure"),
            (
                2,
                "worker-b",
                AttemptOutcome.LEASE_EXPIRED,
                "LEASE_EXPIRED",
                history[1].error_message,
            ),
        ]
        assert [(a.number, a.worker_id, a.outcome, a.error_code) for a in history[2:]] == [
            (3, "worker-c", AttemptOutcome.RELEASED, None),
            (4, "worker-d", AttemptOutcome.FAILED, "TIMEOUT"),
            (5, "worker-e", AttemptOutcome.COMPLETED, None),
        ]
        assert history[3].error_message == "too slow"
        for attempt in history:
            assert attempt.started_at is not None
            assert attempt.finished_at is not None
            assert attempt.started_at <= attempt.finished_at
        for earlier, later in itertools.pairwise(history):
            assert earlier.finished_at is not None
            assert later.started_at is not None
            assert earlier.finished_at <= later.started_at

    async def test_the_attempt_history_keeps_the_last_attempts_only(
        self, queue: JobQueue, service: str
    ) -> None:
        """The history is bounded: the last ``attempt_history`` attempts, numbered on."""
        most = self.attempt_history
        await queue.enqueue(_request(service, max_attempts=most + 3))
        for n in range(most + 2):
            [job] = await queue.claim_and_start(service, "w", 1, _LONG_LEASE)
            await queue.retry(job, "HANDLER_ERROR", f"failure {n + 1}", 0.0, 1.0)
        stored = await self._get(queue, job.id)
        assert [a.number for a in stored.attempt_history] == list(range(3, most + 3))
        assert stored.attempt_history[-1].error_message == f"failure {most + 2}"

    async def test_a_ready_job_not_yet_due_is_shown_as_scheduled(
        self, queue: JobQueue, service: str
    ) -> None:
        """A Ready job whose run-at is in the future is *scheduled* (derived: stored Ready);
        ``scheduled=True`` lists those, ``scheduled=False`` the others. The job view has
        its run-at, keys, lease owner and expiry."""
        admin = self._admin(queue)
        later = await queue.enqueue(
            _request(service, delay_seconds=3600, idempotency_key="idem-1", unique_key="uniq-1")
        )
        due = await queue.enqueue(_request(service))
        now = await self._store_now(queue, service)
        stored = await self._get(queue, later.id)
        assert stored.status is JobStatus.READY
        assert stored.is_scheduled(now)
        assert stored.shown_status(now) == SCHEDULED
        assert stored.run_at is not None
        assert stored.run_at - now > timedelta(minutes=59)
        assert (stored.idempotency_key, stored.unique_key) == ("idem-1", "uniq-1")
        assert (await self._get(queue, due.id)).shown_status(now) == "Ready"

        async def ids(**where: Any) -> list[str]:
            page = await admin.list_jobs(JobFilter(service, **where), limit=100)
            return [j.id for j in page.jobs]

        assert await ids(scheduled=True) == [later.id]
        ready = frozenset({JobStatus.READY})
        assert later.id not in await ids(statuses=ready, scheduled=False)
        assert due.id in await ids(statuses=ready, scheduled=False)
        [claimed] = await queue.claim(service, "worker-a", 1, _LONG_LEASE)
        leased = await self._get(queue, claimed.id)
        assert leased.lease_owner == "worker-a"
        assert leased.lease_expires_at is not None
        assert leased.lease_expires_at > now

    async def test_list_jobs_finds_text_in_error_messages(
        self, queue: JobQueue, service: str
    ) -> None:
        """``error_text`` matches a part of the error message, ASCII letters in any case."""
        refused = await self._started(queue, service)
        await queue.fail(refused, "HANDLER_ERROR", "Connection REFUSED by db:5432", 1.0)
        slow = await self._started(queue, service)
        await queue.fail(slow, "TIMEOUT", "took 30 s; 100% of the budget_", 1.0)
        await queue.enqueue(_request(service))
        admin = self._admin(queue)

        async def ids(text: str, **where: Any) -> list[str]:
            page = await admin.list_jobs(JobFilter(service, error_text=text, **where))
            return [j.id for j in page.jobs]

        assert await ids("refused") == [refused.id]
        assert await ids("connection refused BY") == [refused.id]
        assert await ids("100%") == [slow.id]  # no wildcard
        assert await ids("_") == [slow.id]
        assert await ids("nowhere") == []
        assert await ids("refused", error_codes=frozenset({"TIMEOUT"})) == []

    async def test_list_jobs_pages_through_every_filter_with_cursors(
        self, queue: JobQueue, service: str
    ) -> None:
        """Pages of a filtered list (several statuses, several actions) hold every matching
        job once, newest first."""
        admin = self._admin(queue)
        made: list[Job] = []
        for n in range(9):
            made.append(await queue.enqueue(_of(service, "abc"[n % 3], n)))
            await self.travel(0.002)
        [gone] = await queue.claim_and_start(service, "w", 1, _LONG_LEASE)
        await queue.fail(gone, "HANDLER_ERROR", "x", 1.0)  # the oldest leaves the filter
        assert len(await queue.claim(service, "w", 2, _LONG_LEASE)) == 2  # Assigned: kept
        where = JobFilter(
            service,
            statuses=frozenset({JobStatus.READY, JobStatus.ASSIGNED}),
            actions=frozenset({"a", "c"}),
        )
        expected = [j.id for j in reversed(made) if j.action in {"a", "c"} and j.id != gone.id]
        listed: list[str] = []
        cursor: str | None = None
        while True:
            page = await admin.list_jobs(where, limit=2, cursor=cursor)
            listed.extend(j.id for j in page.jobs)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert listed == expected

    async def test_find_jobs_by_id_unique_key_or_idempotency_key(
        self, queue: JobQueue, service: str
    ) -> None:
        """find_jobs answers the job an id, a unique key or an idempotency key names
        (finished jobs too, newest first), only of the service asked."""
        admin = self._admin(queue)
        old = await self._started(queue, service, idempotency_key="order-7")
        await queue.complete(old, {}, 1.0)
        slot = await queue.enqueue(_request(service, unique_key="schedule:x:1"))
        new = await queue.enqueue(_request(service, idempotency_key="order-7"))
        await queue.enqueue(_request(f"{service}-other", idempotency_key="order-7"))
        assert [j.id for j in await admin.find_jobs(service, slot.id)] == [slot.id]
        assert [j.id for j in await admin.find_jobs(service, "schedule:x:1")] == [slot.id]
        assert [j.id for j in await admin.find_jobs(service, "order-7")] == [new.id, old.id]
        assert await admin.find_jobs(service, "nothing-like-it") == []
        assert await admin.find_jobs(f"{service}-other", slot.id) == []

    # --- end store ---------------------------------------------------------------------------


def _application(queue: JobQueue, service: str, tmp_path: Path) -> Application:
    actions_dir = tmp_path / "no-actions"
    actions_dir.mkdir(exist_ok=True)
    settings = WorkerSettings(
        MICROSERVICE_NAME=service,
        POLLING_INTERVAL_SECONDS=0.05,
        MAX_CONCURRENT_JOBS=4,
        HTTP_ENABLED=False,
        QUEUE_URL="memory://",
    )
    app = Application(
        actions_dir,
        settings=settings,
        queue=queue,
        surfaces=[],
        metrics=NullMetrics(),
        configure_logging=False,
    )
    app.add_action(_echo)
    return app


async def _wait_finished(queue: JobQueue, ids: Sequence[str], within: float) -> dict[str, Job]:
    """Poll until every job is finished (bounded); return them."""
    finished: dict[str, Job] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while len(finished) < len(ids):
                for job_id in ids:
                    if job_id not in finished:
                        job = await queue.get(job_id)
                        if job is not None and job.status.is_finished:
                            finished[job_id] = job
                await asyncio.sleep(0.02)
    missing = [i for i in ids if i not in finished]
    assert not missing, f"jobs not finished after {within}s: {missing[:5]}"
    return finished


# --- the fleet: worker records, gone workers, paused actions ------------------------------


def _record(service: str, worker_id: str, heartbeat: float, **fields: Any) -> WorkerRecord:
    values: dict[str, Any] = {
        "worker_id": worker_id,
        "microservice": service,
        "host": "host-1",
        "pid": 4242,
        "version": "1.2.3",
        "started_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "heartbeat_seconds": heartbeat,
        "actions": ("contract_echo", "slow"),
        "concurrency": 8,
        "running": 0,
    }
    values.update(fields)
    return WorkerRecord(**values)


class FleetContract(JobQueueContract):
    """The queue contract plus :class:`~usvc_core.ports.FleetAdmin`: worker records with
    heartbeats, the release of a gone worker's leases, paused actions. An adapter that
    implements ``FleetAdmin`` runs this class instead of :class:`JobQueueContract`.

    ``heartbeat`` (class attribute): the heartbeat, in seconds, of the tests that wait for
    a worker to turn gone (two heartbeats); keep it small for a real clock."""

    heartbeat: float = 0.2

    @staticmethod
    def _fleet(queue: JobQueue) -> FleetAdmin:
        assert isinstance(queue, FleetAdmin), f"{type(queue).__name__} is no FleetAdmin"
        return queue

    async def _silence(self, queue: JobQueue, service: str, *live: str) -> None:
        """Let two heartbeats and a bit pass, the ``live`` workers heartbeating meanwhile."""
        fleet = self._fleet(queue)
        for _ in range(3):
            await self.travel(self.heartbeat * 0.9)
            for worker_id in live:
                await fleet.heartbeat_worker(_record(service, worker_id, self.heartbeat))

    # --- worker records ------------------------------------------------------------------

    async def test_a_heartbeat_records_the_worker_for_its_service(
        self, queue: JobQueue, peer: JobQueue, service: str
    ) -> None:
        """Every field a worker sends comes back, with the store's last-seen time; another
        handle on the store sees it, another service does not."""
        fleet = self._fleet(queue)
        sent = _record(service, "worker-a", 5.0, running=3)
        await fleet.heartbeat_worker(sent)
        [seen] = await self._fleet(peer).list_workers(service)
        assert seen.last_seen_at is not None
        assert seen.last_seen_at.utcoffset() is not None
        assert not seen.gone
        assert dataclasses.replace(seen, last_seen_at=None) == sent
        assert await fleet.list_workers(f"{service}-other") == []

    async def test_a_heartbeat_replaces_the_record_and_list_is_oldest_first(
        self, queue: JobQueue, service: str
    ) -> None:
        fleet = self._fleet(queue)
        early = datetime(2026, 1, 1, tzinfo=UTC)
        await fleet.heartbeat_worker(_record(service, "worker-b", 5.0))
        await fleet.heartbeat_worker(_record(service, "worker-a", 5.0, started_at=early))
        [_, before] = await fleet.list_workers(service)
        await self.travel(0.05)
        await fleet.heartbeat_worker(_record(service, "worker-b", 5.0, running=7))
        first, second = await fleet.list_workers(service)
        assert (first.worker_id, second.worker_id) == ("worker-a", "worker-b")
        assert second.running == 7
        assert second.last_seen_at is not None
        assert before.last_seen_at is not None
        assert second.last_seen_at > before.last_seen_at
        await fleet.remove_worker(service, "worker-b")
        assert [r.worker_id for r in await fleet.list_workers(service)] == ["worker-a"]

    async def test_a_worker_silent_for_two_heartbeats_is_gone_and_forgotten_later(
        self, queue: JobQueue, service: str
    ) -> None:
        fleet = self._fleet(queue)
        await fleet.heartbeat_worker(_record(service, "worker-a", self.heartbeat))
        await fleet.heartbeat_worker(_record(service, "worker-b", self.heartbeat))
        await self.travel(self.heartbeat * 1.5)  # one missed heartbeat: still there
        assert [r.gone for r in await fleet.list_workers(service)] == [False, False]
        await self._silence(queue, service, "worker-b")
        gone = {r.worker_id: r.gone for r in await fleet.list_workers(service)}
        assert gone == {"worker-a": True, "worker-b": False}
        assert await fleet.forget_gone_workers(service, 3600.0) == 0  # not long enough
        assert await fleet.forget_gone_workers(service, 0.0) == 1
        assert [r.worker_id for r in await fleet.list_workers(service)] == ["worker-b"]
        # A worker that heartbeats again is live again.
        await self._silence(queue, service)
        await fleet.heartbeat_worker(_record(service, "worker-b", self.heartbeat))
        assert [r.gone for r in await fleet.list_workers(service)] == [False]

    async def test_a_heartbeat_must_be_judgeable(self, queue: JobQueue, service: str) -> None:
        fleet = self._fleet(queue)
        for bad, why in (
            (_record(service, "worker-a", 0.0), "heartbeat_seconds"),
            (_record(service, "worker-a", float("nan")), "heartbeat_seconds"),
            (_record(service, "worker-a", 1.0, started_at=datetime(2026, 1, 1)), "timezone"),
            (_record(service, "", 1.0), "worker_id"),
        ):
            with pytest.raises(ValueError, match=why):
                await fleet.heartbeat_worker(bad)
        assert await fleet.list_workers(service) == []

    # --- gone workers' leases ------------------------------------------------------------

    async def test_the_leases_of_a_gone_worker_are_released_at_once(
        self, queue: JobQueue, peer: JobQueue, service: str
    ) -> None:
        """Long before its leases expire, a gone worker's jobs go back to Ready under the
        rules of an expired lease, another worker takes them, and the gone worker's late
        writes are refused by the fencing tokens."""
        fleet = self._fleet(queue)
        await fleet.heartbeat_worker(_record(service, "worker-a", self.heartbeat))
        await fleet.heartbeat_worker(_record(service, "worker-b", self.heartbeat))
        first, second = await queue.enqueue_many([_request(service, n) for n in range(2)])
        [assigned] = await queue.claim(service, "worker-a", 1, _LONG_LEASE)
        [started] = await queue.claim_and_start(service, "worker-a", 1, _LONG_LEASE)
        await queue.extend_leases([started], _LONG_LEASE)  # its worker has it in hand
        assert len(await fleet.reclaim_gone_workers(service)) == 0  # a is live
        await self._silence(queue, service, "worker-b")
        result = await self._fleet(peer).reclaim_gone_workers(service)
        assert (sorted(result.requeued), list(result.failed)) == (
            sorted([assigned.id, started.id]),
            [],
        )
        was_assigned = await self._get(queue, assigned.id)
        was_started = await self._get(queue, started.id)
        assert (was_assigned.status, was_assigned.attempts) == (JobStatus.READY, 0)
        assert (was_started.status, was_started.attempts) == (JobStatus.READY, 1)
        assert was_started.error_code == ErrorCode.LEASE_EXPIRED.value
        assert was_started.lease_owner is None
        taken = await peer.claim_and_start(service, "worker-b", 5, _LONG_LEASE)
        assert sorted(j.id for j in taken) == sorted([first.id, second.id])
        with pytest.raises(LeaseLostError):
            await queue.complete(started, {"who": "a"}, 1.0)
        with pytest.raises(LeaseLostError):
            await queue.mark_processing(assigned, _LONG_LEASE)
        assert (await queue.extend_leases([started], _LONG_LEASE)).lost == {started.id}
        assert len(await fleet.reclaim_gone_workers(service)) == 0  # nothing twice

    async def test_a_gone_worker_on_its_last_attempt_fails_the_job(
        self, queue: JobQueue, service: str
    ) -> None:
        fleet = self._fleet(queue)
        await fleet.heartbeat_worker(_record(service, "worker-a", self.heartbeat))
        job = await self._started(queue, service, max_attempts=1)
        await self._silence(queue, service)
        assert (await fleet.reclaim_gone_workers(service)).failed == [job.id]
        failed = await self._get(queue, job.id)
        assert (failed.status, failed.error_code) == (
            JobStatus.FAILED,
            ErrorCode.LEASE_EXPIRED.value,
        )

    async def test_live_workers_unknown_owners_and_other_services_keep_their_jobs(
        self, queue: JobQueue, service: str
    ) -> None:
        """Only a gone worker's jobs of the service are released: not a live worker's, not
        those of an owner that keeps no record (they wait for their lease), not another
        service's jobs of a worker of the same id."""
        fleet = self._fleet(queue)
        other = f"{service}-other"
        await fleet.heartbeat_worker(_record(service, "worker-a", self.heartbeat))
        await fleet.heartbeat_worker(_record(other, "worker-a", 3600.0))
        await queue.enqueue_many([_request(service, n) for n in range(3)])
        await queue.enqueue(_request(other))
        await queue.claim(service, "worker-a", 1, _LONG_LEASE)
        [live] = await queue.claim(service, "worker-b", 1, _LONG_LEASE)
        [unknown] = await queue.claim(service, "worker-c", 1, _LONG_LEASE)
        [elsewhere] = await queue.claim(other, "worker-a", 1, _LONG_LEASE)
        await self._silence(queue, service, "worker-b")
        assert len((await fleet.reclaim_gone_workers(service)).requeued) == 1
        assert len(await fleet.reclaim_gone_workers(other)) == 0
        for job in (live, unknown, elsewhere):
            assert (await self._get(queue, job.id)).status is JobStatus.ASSIGNED

    # --- paused actions ------------------------------------------------------------------

    @pytest.mark.parametrize("method", ["claim", "claim_and_start"])
    async def test_a_paused_action_is_not_claimed_until_resumed(
        self, queue: JobQueue, peer: JobQueue, service: str, method: str
    ) -> None:
        """Its jobs stay Ready for every claimer while other actions, lower-priority ones
        too, are claimed; once resumed they are claimed in their usual order."""
        fleet = self._fleet(queue)
        slow = await queue.enqueue_many([_of(service, "slow", n, priority=9) for n in range(3)])
        fast = await queue.enqueue_many([_of(service, "fast", n) for n in range(2)])
        assert await fleet.pause_action(service, "slow") is True
        assert await fleet.pause_action(service, "slow") is False
        batch = await getattr(peer, method)(service, "worker-b", 10, _LONG_LEASE)
        assert [j.id for j in batch] == [j.id for j in fast]
        assert await getattr(queue, method)(service, "worker-a", 10, _LONG_LEASE) == []
        for job in slow:
            assert (await self._get(queue, job.id)).status is JobStatus.READY
        assert set(await self._fleet(peer).paused_actions(service)) == {"slow"}
        assert (await queue.stats(service)).paused_actions == {"slow"}
        assert await fleet.paused_actions(f"{service}-other") == {}
        assert await fleet.resume_action(service, "slow") is True
        assert await fleet.resume_action(service, "slow") is False
        batch = await getattr(peer, method)(service, "worker-b", 10, _LONG_LEASE)
        assert [j.id for j in batch] == [j.id for j in slow]
        assert (await queue.stats(service)).paused_actions == frozenset()

    async def test_pausing_leaves_running_jobs_alone_and_beats_max_running(
        self, queue: JobQueue, service: str
    ) -> None:
        """A job running when its action is paused keeps its lease and finishes; a pause
        holds an action whatever its limit; another service's action of the same name is
        not paused."""
        fleet = self._fleet(queue)
        other = f"{service}-other"
        running = await self._started(queue, service)
        await queue.enqueue_many([_request(service, n) for n in range(2)])
        await queue.enqueue(_request(other))
        assert await fleet.pause_action(service, "contract_echo")
        assert (await queue.extend_leases([running], _LONG_LEASE)).lost == frozenset()
        await queue.complete(running, {"n": 0}, 1.0)
        assert (await self._get(queue, running.id)).status is JobStatus.COMPLETED
        limits = {"contract_echo": 5}
        assert await queue.claim(service, "worker-a", 5, _LONG_LEASE, max_running=limits) == []
        assert len(await queue.claim(other, "worker-a", 5, _LONG_LEASE)) == 1

    async def test_pause_needs_an_action_name(self, queue: JobQueue, service: str) -> None:
        fleet = self._fleet(queue)
        with pytest.raises(ValueError, match="name the action"):
            await fleet.pause_action(service, "")
        with pytest.raises(ValueError, match="name the action"):
            await fleet.resume_action(service, "")
