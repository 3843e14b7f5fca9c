"""OracleQueue's logic against the recording fake driver: statement order, fetch sizes,
transactions on every path, retries after a lost session, fencing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import oracledb
import pytest
import structlog
from structlog.testing import capture_logs
from usvc_core.errors import (
    ConfigurationError,
    DuplicateJobError,
    JobNotFoundError,
    LeaseLostError,
    QueueUnavailableError,
)
from usvc_core.jobs import ErrorCode, JobStatus
from usvc_core.metrics import NullMetrics
from usvc_core.ports import EnqueueRequest, JobQueue, LeaseRenewal
from usvc_oracle import JobLockedError, OracleQueue, OracleQueueError, OracleSettings
from usvc_oracle_fake import (
    FakeDatabase,
    FakePool,
    connection_lost,
    ora_error,
    unique_violation,
    utc,
)


def req(action: str = "greet", priority: int = 0, **kw: Any) -> EnqueueRequest:
    return EnqueueRequest(payload={"action": action}, microservice="svc", priority=priority, **kw)


async def fill(queue: OracleQueue, n: int) -> list[str]:
    return [j.id for j in await queue.enqueue_many([req(priority=i) for i in range(n)])]


def deadlock() -> oracledb.Error:
    return ora_error("ORA-00060: deadlock detected while waiting for resource", code=60)


class TestClaim:
    async def test_is_a_job_queue(self, queue: OracleQueue) -> None:
        """OracleQueue satisfies the JobQueue protocol."""
        assert isinstance(queue, JobQueue)

    @pytest.mark.parametrize("start", [False, True], ids=["claim", "claim_and_start"])
    async def test_statement_order_and_fetch_sizes(
        self, queue: OracleQueue, fake_db: FakeDatabase, start: bool
    ) -> None:
        """A claim is lock (prefetch = arraysize = n), fetchmany(n), guarded update carrying
        the commit (autocommit: no commit round trip, issue 22 item 9); claim_and_start
        folds the start into that UPDATE: no mark_processing round trip or commit per job.
        The session names itself in V$SESSION (module, action)."""
        update = "claim_start_update" if start else "claim_update"
        status, attempts = (JobStatus.PROCESSING, 1) if start else (JobStatus.ASSIGNED, 0)
        await fill(queue, 5)
        fake_db.log.clear()
        claim = queue.claim_and_start if start else queue.claim
        jobs = await claim("svc", "w1", 3, 30)
        assert fake_db.calls() == [
            ("acquire",),
            ("execute", "claim_lock", 3, 3),
            ("fetchmany", 3),
            ("execute", update, 2, 100),
            ("autocommit",),
            ("release",),
        ]
        conn = fake_db.connections[-1]
        assert (conn.module, conn.action) == (
            "usvc MICRO_SVC",
            "claim_and_start" if start else "claim",
        )
        assert conn.autocommit is False  # turned off before the session went back
        assert [j.priority for j in jobs] == [4, 3, 2]
        assert {fake_db.status(j.id) for j in jobs} == {status.value}
        for job in jobs:
            assert (job.status, job.attempts, job.lease_owner) == (status, attempts, "w1")
            assert (job.started_at is not None) is start
        if start:  # started jobs complete without a mark_processing step
            await queue.complete(jobs[0], None, 1)
            assert fake_db.status(jobs[0].id) == "Completed"

    async def test_skips_rows_locked_by_another_claimer(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Rows another session has locked are skipped, and the claim still fills its batch."""
        ids = await fill(queue, 5)  # priorities 0..4
        fake_db.locks[int(ids[4])] = 999
        fake_db.locks[int(ids[3])] = 999
        jobs = await queue.claim("svc", "w1", 2, 30)
        assert [j.id for j in jobs] == [ids[2], ids[1]]
        del fake_db.locks[int(ids[4])], fake_db.locks[int(ids[3])]

    async def test_tokens_are_fresh_and_times_come_from_the_database(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Each claimed job has its own fencing token; the lease runs on the database clock."""
        await fill(queue, 2)
        jobs = await queue.claim("svc", "w1", 2, 30)
        assert len({j.lease_token for j in jobs}) == 2
        assert {j.lease_expires_at for j in jobs} == {utc(fake_db.now) + _seconds(30)}

    async def test_empty_queue_commits_nothing(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Claiming from an empty queue sends no update and no commit: the lock query, and
        the look for due delayed jobs (it came back short), nothing else."""
        fake_db.log.clear()
        assert await queue.claim("svc", "w1", 4, 30) == []
        assert fake_db.calls("commit", "execute") == [
            ("execute", "claim_lock", 4, 4),
            ("execute", "promote_lock", 100, 100),
        ]

    async def test_large_batches_update_in_fixed_width_chunks(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """120 jobs are claimed with three fixed-width updates, the last carrying the commit."""
        await fill(queue, 120)
        fake_db.log.clear()
        jobs = await queue.claim("svc", "w1", 120, 30)
        assert len(jobs) == 120
        calls = fake_db.calls("execute", "autocommit", "commit")
        assert [c[1] if c[0] == "execute" else c[0] for c in calls] == [
            "claim_lock",
            "claim_update",
            "claim_update",
            "claim_update",
            "autocommit",
        ]

    async def test_connection_lost_mid_claim_is_retried_and_claims_once(
        self, queue: OracleQueue, fake_db: FakeDatabase, sleeps: list[float]
    ) -> None:
        """A DPY-4011 on the update (which carries the commit: it may have landed) drops the
        session and retries on a new one, which first puts back whatever that update may
        have committed (nothing here: the release matches no row), then claims."""
        ids = await fill(queue, 3)
        fake_db.log.clear()
        fake_db.fail("claim_update", connection_lost)
        jobs = await queue.claim("svc", "w1", 3, 30)
        assert sorted(j.id for j in jobs) == sorted(ids)
        assert fake_db.calls() == [
            ("acquire",),
            ("execute", "claim_lock", 3, 3),
            ("fetchmany", 3),
            ("execute", "claim_update", 2, 100),
            ("drop",),
            ("acquire",),
            ("execute", "lock_ids", 4, 4),
            ("fetchall",),
            ("executemany", "history_release", 3),  # a started one's attempt, closed
            ("executemany", "release", 3),
            ("execute", "claim_lock", 3, 3),
            ("fetchmany", 3),
            ("execute", "claim_update", 2, 100),
            ("autocommit",),
            ("release",),
        ]
        assert len(sleeps) == 1
        assert await queue.claim("svc", "w2", 3, 30) == []
        tokens = {fake_db.rows[int(i)]["LEASE_TOKEN"] for i in ids}
        assert tokens == {j.lease_token for j in jobs}

    async def test_commit_lost_after_it_landed_never_delivers_twice(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A claim whose COMMIT landed unseen: the retry puts those rows back to Ready in
        its own transaction (by id and token) and claims again, so the best jobs are handed
        out once, under the new token, and nothing is stranded until a lease expires."""
        ids = await fill(queue, 4)
        fake_db.fail("commit", connection_lost, after=True)
        first = await queue.claim("svc", "w1", 2, 30)
        assert [j.id for j in first] == [ids[3], ids[2]]
        assert {fake_db.status(i) for i in ids[:2]} == {"Ready"}
        assert {fake_db.rows[int(j.id)]["LEASE_TOKEN"] for j in first} == {
            j.lease_token for j in first
        }
        assert all(fake_db.rows[int(i)]["ATTEMPTS"] == 0 for i in ids)

    async def test_a_lost_claim_and_start_commit_gives_the_attempt_back(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Issue 22 item 3: claim_and_start's COMMIT lands but its answer is lost, and the
        outage outlasts the retries. The jobs (max_attempts=1) are Processing with their
        one attempt spent under a token no worker holds; the next claim gives the attempt
        back and hands them out, so they run instead of ending Failed at lease expiry."""
        jobs = await queue.enqueue_many([req(max_attempts=1) for _ in range(2)])
        fake_db.fail("commit", connection_lost, after=True)
        fake_db.fail("acquire", connection_lost, times=3)
        with pytest.raises(QueueUnavailableError):
            await queue.claim_and_start("svc", "w1", 2, 30)
        assert {fake_db.status(j.id) for j in jobs} == {"Processing"}
        assert {fake_db.rows[int(j.id)]["ATTEMPTS"] for j in jobs} == {1}
        fake_db.log.clear()
        again = await queue.claim_and_start("svc", "w1", 2, 30)
        assert sorted(j.id for j in again) == sorted(j.id for j in jobs)
        assert [j.attempts for j in again] == [1, 1]
        assert [c[1] for c in fake_db.calls("execute", "executemany")][:3] == [
            "lock_ids",
            "history_release",
            "release",
        ]
        fake_db.log.clear()
        assert await queue.claim_and_start("svc", "w1", 2, 30) == []
        assert "release" not in [c[1] for c in fake_db.calls("executemany")]

    async def test_a_lost_claim_that_did_not_land_is_forgotten(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A COMMIT that failed before it landed: the rows are Ready again (the server
        rolled back); the next claim's give-back matches nothing and forgets them."""
        jobs = await queue.enqueue_many([req() for _ in range(2)])
        fake_db.fail("commit", connection_lost)
        fake_db.fail("acquire", connection_lost, times=3)
        with pytest.raises(QueueUnavailableError):
            await queue.claim_and_start("svc", "w1", 2, 30)
        assert {fake_db.status(j.id) for j in jobs} == {"Ready"}
        again = await queue.claim_and_start("svc", "w1", 2, 30)
        assert [j.attempts for j in again] == [1, 1]
        assert queue._unconfirmed_claims == {}

    async def test_outage_becomes_queue_unavailable_after_bounded_retries(
        self, queue: OracleQueue, fake_db: FakeDatabase, sleeps: list[float]
    ) -> None:
        """When the listener keeps refusing, the claim gives up after 1 + ORACLE_RETRIES tries."""
        fake_db.fail(
            "acquire",
            lambda: ora_error("DPY-6005: cannot connect to database (CONNECTION_ID=x)."),
            times=10,
        )
        with pytest.raises(QueueUnavailableError, match="claim failed 4 time"):
            await queue.claim("svc", "w1", 1, 30)
        assert len(sleeps) == 3
        assert sleeps == sorted(sleeps)  # backoff grows

    async def test_cancelled_mid_call_drops_the_session(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A claim cancelled in the middle of a call drops its connection (state unknown)."""
        await fill(queue, 2)
        fake_db.log.clear()
        fake_db.fail("claim_update", asyncio.CancelledError)
        with pytest.raises(asyncio.CancelledError):
            await queue.claim("svc", "w1", 2, 30)
        assert fake_db.calls("drop", "release", "commit") == [("drop",)]
        assert {fake_db.status(str(i)) for i in fake_db.rows} == {"Ready"}

    async def test_sets_the_call_timeout(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """Every acquired connection gets ORACLE_CALL_TIMEOUT_SECONDS as its call timeout."""
        await queue.claim("svc", "w1", 1, 30)
        assert {c.call_timeout for c in fake_db.connections} == {30_000}

    async def test_unparsable_payload_is_delivered_with_an_error(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A stored payload that is not JSON arrives as payload=None with payload_error."""
        bad = fake_db.add(PAYLOAD="{not json", ACTION="greet", PRIORITY=5)
        good = await queue.enqueue(req())
        jobs = await queue.claim("svc", "w1", 5, 30)
        assert [j.id for j in jobs] == [str(bad), good.id]
        assert jobs[0].payload is None
        assert jobs[0].payload_error
        assert jobs[1].payload == {"action": "greet"}
        assert jobs[1].payload_error is None


class TestDelayedJobs:
    """Issue 22 item 6: delayed jobs stay out of the claim's index until due."""

    async def test_a_delayed_job_waits_in_the_delay_index(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Enqueued with a delay: DELAYED = 1 (not in the claim index); a claim before it
        is due promotes nothing; once due, the claim that comes back short promotes it and
        takes it in the same transaction."""
        job = await queue.enqueue(req(delay_seconds=60))
        assert fake_db.rows[int(job.id)]["DELAYED"] == 1
        assert await queue.claim("svc", "w", 1, 30) == []
        assert fake_db.rows[int(job.id)]["DELAYED"] == 1
        fake_db.advance(61)
        fake_db.log.clear()
        (claimed,) = await queue.claim("svc", "w", 1, 30)
        assert claimed.id == job.id
        assert [c[1] for c in fake_db.calls("execute", "executemany")] == [
            "claim_lock",
            "promote_lock",
            "promote",
            "claim_lock",
            "claim_update",
        ]
        assert fake_db.rows[int(job.id)]["DELAYED"] is None

    async def test_a_promoted_job_keeps_its_priority(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A due delayed job of higher priority is taken before undelayed ones once
        promoted: the second pick orders the whole claim index again."""
        low = await queue.enqueue_many([req(priority=0) for _ in range(2)])
        high = await queue.enqueue(req(priority=5, delay_seconds=10))
        fake_db.advance(11)
        jobs = await queue.claim("svc", "w", 3, 30)
        assert [j.id for j in jobs] == [high.id, low[0].id, low[1].id]

    async def test_a_retry_with_backoff_is_delayed(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """retry() with a delay defers the job the same way; without one it is claimable
        at once."""
        await queue.enqueue_many([req(), req()])
        first, second = await queue.claim_and_start("svc", "w", 2, 30)
        await queue.retry(first, "HANDLER_ERROR", "x", 30, 1.0)
        await queue.retry(second, "HANDLER_ERROR", "x", 0, 1.0)
        assert fake_db.rows[int(first.id)]["DELAYED"] == 1
        assert fake_db.rows[int(second.id)]["DELAYED"] is None

    async def test_busy_claims_promote_now_and_then(self, fake_db: FakeDatabase) -> None:
        """Claims that always find a full batch still promote due delayed jobs once per
        second, so a stream of undelayed work cannot keep a due retry out for ever."""
        clock = [0.0]
        settings = OracleSettings(ORACLE_USER="app", ORACLE_PASSWORD="secret")
        queue = OracleQueue(
            settings, pool_factory=lambda s: FakePool(fake_db), monotonic=lambda: clock[0]
        )
        await queue.open()
        try:
            await queue.enqueue_many([req() for _ in range(4)])
            urgent = await queue.enqueue(req(priority=9, delay_seconds=5))
            fake_db.advance(6)
            fake_db.log.clear()
            assert len(await queue.claim("svc", "w", 1, 30)) == 1  # full: no promotion
            assert "promote_lock" not in [c[1] for c in fake_db.calls("execute")]
            clock[0] = 1.0
            (job,) = await queue.claim("svc", "w", 1, 30)
            assert job.id == urgent.id
        finally:
            await queue.close()

    async def test_a_paused_action_is_skipped_in_the_index(self, fake_db: FakeDatabase) -> None:
        """A paused action's jobs are stepped over by the lock query's NOT EXISTS at once,
        and, once the queue has read the paused list (at most once a second), inside the
        claim index like a full limited action: its rows cost no table visit."""
        clock = [0.0]
        settings = OracleSettings(ORACLE_USER="app", ORACLE_PASSWORD="secret")
        queue = OracleQueue(
            settings, pool_factory=lambda s: FakePool(fake_db), monotonic=lambda: clock[0]
        )
        await queue.open()
        try:
            await queue.enqueue_many([req("slow", 9), req("fast")])
            assert await queue.pause_action("svc", "slow")
            fake_db.log.clear()
            (job,) = await queue.claim("svc", "w", 5, 30)
            assert job.action == "fast"
            assert fake_db.calls("execute")[0][1] == "claim_lock"
            await queue.enqueue(req("fast"))
            clock[0] = 1.0
            fake_db.log.clear()
            (job,) = await queue.claim("svc", "w", 5, 30)
            assert job.action == "fast"
            executed = [c[1] for c in fake_db.calls("execute")]
            assert executed[0] == "paused"
            assert "claim_lock_except" in executed and "claim_lock" not in executed
        finally:
            await queue.close()

    async def test_stats_age_is_the_oldest_due_job(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Issue 22 item 7: the Ready age is how long the oldest due job has waited since
        its RUN_AT (not since it was created); delayed jobs count as Ready, and a due one
        not yet promoted counts for the age too."""
        await queue.enqueue(req(delay_seconds=100))
        await queue.enqueue(req(delay_seconds=30))
        fake_db.advance(50)
        stats = await queue.stats("svc")
        assert stats.counts[JobStatus.READY] == 2
        assert stats.oldest_ready_age_seconds == 20


def _seconds(n: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=n)


async def started(queue: OracleQueue, n: int = 1, lease: float = 30) -> list[Any]:
    await fill(queue, n)
    return [await queue.mark_processing(j, lease) for j in await queue.claim("svc", "w1", n, lease)]


class TestTransitions:
    async def test_mark_processing_counts_the_attempt(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Assigned -> Processing returns the job with its attempt counted."""
        (job,) = await started(queue)
        assert job.status is JobStatus.PROCESSING
        assert job.attempts == 1
        assert job.started_at == utc(fake_db.now)

    async def test_lost_lease_on_complete(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """A worker whose job was reclaimed and re-claimed cannot complete it."""
        (job,) = await started(queue)
        fake_db.advance(31)
        await queue.reclaim_expired("svc")
        (again,) = await queue.claim("svc", "w2", 1, 30)
        fake_db.log.clear()
        with pytest.raises(LeaseLostError, match="no longer owned"):
            await queue.complete(job, {"ok": True}, 1.0)
        assert fake_db.calls() == [
            ("acquire",),
            ("execute", "lock_job", 2, 100),
            ("fetchall",),
            ("rollback",),
            ("release",),
        ]
        row = fake_db.rows[int(job.id)]
        assert (row["STATUS"], row["LEASE_TOKEN"], row["RESULTS"]) == (
            "Assigned",
            again.lease_token,
            None,
        )

    async def test_complete_twice_is_a_lost_lease(self, queue: OracleQueue) -> None:
        """A second complete of the same claim changes nothing and says so."""
        (job,) = await started(queue)
        await queue.complete(job, {"n": 1}, 2.0)
        with pytest.raises(LeaseLostError):
            await queue.complete(job, {"n": 2}, 2.0)
        stored = await queue.get(job.id)
        assert stored is not None
        assert stored.results == {"n": 1}

    async def test_complete_whose_commit_landed_unseen_is_not_an_error(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Retrying a complete whose first COMMIT landed finds its own result and succeeds."""
        (job,) = await started(queue)
        fake_db.fail("commit", connection_lost, after=True)
        await queue.complete(job, {"ok": True}, 3.5)
        stored = await queue.get(job.id)
        assert stored is not None
        assert (stored.status, stored.results, stored.runtime_ms) == (
            JobStatus.COMPLETED,
            {"ok": True},
            3.5,
        )

    async def test_deadlock_is_rolled_back_and_retried(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """ORA-00060 rolls back, releases the session and retries; the attempt counts once."""
        await fill(queue, 1)
        (job,) = await queue.claim("svc", "w1", 1, 30)
        fake_db.log.clear()
        fake_db.fail("mark_processing", deadlock)
        job = await queue.mark_processing(job, 30)
        assert job.attempts == 1
        assert fake_db.rows[int(job.id)]["ATTEMPTS"] == 1
        assert fake_db.calls("rollback", "release", "commit", "autocommit", "drop") == [
            ("rollback",),
            ("release",),
            ("autocommit",),
            ("release",),
        ]

    @pytest.mark.parametrize("outcome", ["mark_processing", "complete", "fail", "retry"])
    async def test_a_transition_is_two_round_trips(
        self, queue: OracleQueue, fake_db: FakeDatabase, outcome: str
    ) -> None:
        """Issue 22 item 9: lock, then the guarded UPDATE carrying the COMMIT (the driver's
        autocommit on the last statement): no separate commit round trip. A retry writes
        the attempt it closes in between (issue 21 item 1: same transaction)."""
        if outcome == "mark_processing":
            await fill(queue, 1)
            (job,) = await queue.claim("svc", "w", 1, 30)
        else:
            (job,) = await started(queue)
        write = {
            "mark_processing": lambda: queue.mark_processing(job, 30),
            "complete": lambda: queue.complete(job, None, 1.0),
            "fail": lambda: queue.fail(job, "HANDLER_ERROR", "x", 1.0),
            "retry": lambda: queue.retry(job, "HANDLER_ERROR", "x", 0, 1.0),
        }[outcome]
        fake_db.log.clear()
        await write()
        assert [c[:2] for c in fake_db.calls("execute", "commit", "autocommit")] == [
            ("execute", "lock_job"),
            *([("execute", "history_retry")] if outcome == "retry" else []),
            ("execute", outcome),
            ("autocommit",),
        ]

    async def test_a_renewal_and_a_cancel_are_two_round_trips(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Lease renewal (the hot path: every worker, every lease/3) and an operator's
        cancel: lock, then the UPDATE carrying the COMMIT."""
        jobs = await started(queue, 2)
        fake_db.log.clear()
        assert (await queue.extend_leases(jobs, 30)).lost == frozenset()
        assert [c[:2] for c in fake_db.calls("execute", "executemany", "commit", "autocommit")] == [
            ("execute", "lock_ids"),
            ("executemany", "extend_lease"),
            ("autocommit",),
        ]
        fake_db.log.clear()
        await queue.cancel("svc", jobs[0].id)
        assert [c[:2] for c in fake_db.calls("execute", "commit", "autocommit")] == [
            ("execute", "lock_job"),
            ("execute", "cancel_running"),
            ("autocommit",),
        ]

    async def test_permanent_error_is_raised_at_once(
        self, queue: OracleQueue, fake_db: FakeDatabase, sleeps: list[float]
    ) -> None:
        """An error retrying cannot fix is rolled back and raised without retries."""
        (job,) = await started(queue)
        fake_db.log.clear()
        fake_db.fail("fail", lambda: ora_error("ORA-12899: value too large for column", code=12899))
        with pytest.raises(OracleQueueError, match="ORA-12899"):
            await queue.fail(job, "HANDLER_ERROR", "boom", 1.0)
        assert sleeps == []
        assert fake_db.calls("rollback", "release", "commit") == [("rollback",), ("release",)]

    async def test_fail_records_code_and_message(self, queue: OracleQueue) -> None:
        """fail stores the error code, message and runtime; the job is finished."""
        (job,) = await started(queue)
        await queue.fail(job, "HANDLER_ERROR", "boom", 1.5)
        stored = await queue.get(job.id)
        assert stored is not None
        assert (stored.status, stored.error_code, stored.error_message, stored.runtime_ms) == (
            JobStatus.FAILED,
            "HANDLER_ERROR",
            "boom",
            1.5,
        )
        assert stored.finished_at is not None

    async def test_retry_goes_back_to_ready_until_attempts_run_out(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """retry requeues after the delay (database clock), then fails on the last attempt."""
        await queue.enqueue(req(max_attempts=2))
        for attempt, expected in ((1, JobStatus.READY), (2, JobStatus.FAILED)):
            (job,) = await queue.claim("svc", "w1", 1, 30)
            job = await queue.mark_processing(job, 30)
            assert job.attempts == attempt
            status = await queue.retry(job, "HANDLER_ERROR", "again", 10, 1.0)
            assert status is expected
            if expected is JobStatus.READY:
                assert await queue.claim("svc", "w1", 1, 30) == []  # not before the delay
                assert fake_db.rows[int(job.id)]["RUN_AT"] == fake_db.now + _seconds(10)
                fake_db.advance(10)

    async def test_transition_of_unknown_job(self, queue: OracleQueue) -> None:
        """A transition naming a job that does not exist raises JobNotFoundError."""
        (job,) = await started(queue)
        job.id = "999999"
        with pytest.raises(JobNotFoundError):
            await queue.complete(job, None, 1.0)

    async def test_release_gives_the_attempt_back(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """release puts Processing and Assigned jobs back to Ready, keeping their place in line
        and giving back the attempt; listeners are woken."""
        woken: list[int] = []
        queue.on_enqueue(lambda: woken.append(1))
        await fill(queue, 2)
        woken.clear()
        a, b = await queue.claim("svc", "w1", 2, 30)
        a = await queue.mark_processing(a, 30)
        run_at = fake_db.rows[int(a.id)]["RUN_AT"]
        fake_db.advance(5)
        assert await queue.release([a, b]) == 2
        row = fake_db.rows[int(a.id)]
        assert (row["STATUS"], row["ATTEMPTS"], row["RUN_AT"], row["LEASE_TOKEN"]) == (
            "Ready",
            0,
            run_at,
            None,
        )
        assert woken == [1]
        assert await queue.release([a]) == 0  # already released: its token is gone

    async def test_extend_leases_reports_the_lost_ones(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Heartbeats extend owned leases on the database clock and name the lost ones."""
        a, b = await started(queue, 2)
        fake_db.advance(20)
        assert await queue.extend_leases([a], 30) == LeaseRenewal()  # a now runs until t=50
        fake_db.advance(11)
        assert (await queue.reclaim_expired("svc")).requeued == [b.id]
        (b2,) = await queue.claim("svc", "w2", 1, 30)
        assert (await queue.extend_leases([a, b], 60)).lost == {b.id}
        assert fake_db.rows[int(a.id)]["LEASE_EXPIRES_AT"] == fake_db.now + _seconds(60)
        assert fake_db.rows[int(b.id)]["LEASE_TOKEN"] == b2.lease_token
        assert (await queue.extend_leases([], 60)).lost == set()


class TestReclaimStatsPurge:
    async def test_reclaim_expired(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """Expired Assigned -> Ready (no attempt); Processing -> Ready while attempts are
        left, else Failed with LEASE_EXPIRED; live leases and other services are untouched."""
        assigned = (await queue.enqueue(req(priority=9))).id
        retried = (await queue.enqueue(req(priority=8, max_attempts=2))).id
        exhausted = (await queue.enqueue(req(priority=7, max_attempts=1))).id
        other = fake_db.add("other", STATUS="Assigned", LEASE_EXPIRES_AT=fake_db.now)
        jobs = await queue.claim("svc", "w1", 3, 30)
        for job in jobs[1:]:
            await queue.mark_processing(job, 30)
        live = (await queue.enqueue(req())).id
        fake_db.advance(20)
        await queue.claim("svc", "w1", 1, 30)
        fake_db.advance(11)
        result = await queue.reclaim_expired("svc")
        assert sorted(result.requeued) == sorted([assigned, retried])
        assert list(result.failed) == [exhausted]
        rows = fake_db.rows
        assert rows[int(assigned)]["ATTEMPTS"] == 0
        assert rows[int(assigned)]["ERROR_CODE"] is None
        assert (rows[int(retried)]["STATUS"], rows[int(retried)]["ERROR_CODE"]) == (
            "Ready",
            ErrorCode.LEASE_EXPIRED.value,
        )
        failed = await queue.get(exhausted)
        assert failed is not None
        assert failed.status is JobStatus.FAILED
        assert failed.error_code == ErrorCode.LEASE_EXPIRED.value
        assert "no attempts left" in (failed.error_message or "")
        assert fake_db.status(live) == "Assigned"
        assert fake_db.rows[other]["STATUS"] == "Assigned"

    async def test_stats(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """stats counts every status of one service and ages the oldest Ready job."""
        await fill(queue, 3)
        fake_db.add("other")
        fake_db.advance(7)
        await queue.claim("svc", "w1", 1, 30)
        stats = await queue.stats("svc")
        assert stats.counts[JobStatus.READY] == 2
        assert stats.counts[JobStatus.ASSIGNED] == 1
        assert stats.counts[JobStatus.COMPLETED] == 0
        assert stats.oldest_ready_age_seconds == 7

    async def test_purge_deletes_old_finished_jobs_only(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """purge deletes finished jobs older than the cutoff, in committed batches."""
        (old,) = await started(queue)
        await queue.complete(old, None, 1)
        fake_db.advance(100)
        (new,) = await started(queue)
        await queue.complete(new, None, 1)
        waiting = (await queue.enqueue(req())).id
        assert await queue.purge("svc", 50) == 1
        assert await queue.get(old.id) is None
        assert {j for j in (new.id, waiting) if await queue.get(j)} == {new.id, waiting}


class TestEnqueueAndGet:
    async def test_token_defaults_to_the_job_id(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Without a token the job id is the token: TOKEN stays NULL and reads back as the
        id, with one INSERT and no second statement (issue 22 item 9)."""
        fake_db.log.clear()
        plain = await queue.enqueue(req())
        assert [c[1] for c in fake_db.calls("execute", "executemany")] == ["enqueue"]
        tagged = await queue.enqueue(req(token="corr-1"))
        assert plain.token == plain.id
        assert fake_db.rows[int(plain.id)]["TOKEN"] is None
        stored = await queue.get(plain.id)
        assert stored is not None and stored.token == plain.id
        assert tagged.token == "corr-1"
        assert plain.run_at == utc(fake_db.now)
        assert plain.created_at == utc(fake_db.now)

    async def test_enqueue_many_inserts_in_key_order(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Issue 22 item 5: the batch is inserted in key order (unique keys, then
        idempotency keys, keyless last), so two batches taking the same keys cannot wait
        on each other crosswise (ORA-00060); the jobs come back in request order."""
        requests = [
            req(unique_key="c"),
            req(),
            req(unique_key="a", idempotency_key="z"),
            req(idempotency_key="y"),
            req(unique_key="b"),
            req(idempotency_key="x"),
        ]
        jobs = await queue.enqueue_many(requests)
        assert [(j.unique_key, j.idempotency_key) for j in jobs] == [
            (r.unique_key, r.idempotency_key) for r in requests
        ]
        inserted = sorted(jobs, key=lambda j: int(j.id))  # identity values follow inserts
        assert [(j.unique_key, j.idempotency_key) for j in inserted] == [
            ("a", "z"),
            ("b", None),
            ("c", None),
            (None, "x"),
            (None, "y"),
            (None, None),
        ]
        for job in jobs:
            row = fake_db.rows[int(job.id)]
            assert (row["UNIQUE_KEY"], row["IDEMPOTENCY_KEY"]) == (
                job.unique_key,
                job.idempotency_key,
            )

    async def test_duplicate_idempotency_key(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A key held by an unfinished job is refused with the holder's id; a batch is all
        or nothing; once the holder finishes, the key is free again."""
        first = await queue.enqueue(req(idempotency_key="k"))
        with pytest.raises(DuplicateJobError) as caught:
            await queue.enqueue(req(idempotency_key="k"))
        assert caught.value.existing_job_id == first.id
        with pytest.raises(DuplicateJobError):
            await queue.enqueue_many([req(idempotency_key="new"), req(idempotency_key="k")])
        assert len(fake_db.rows) == 1
        (job,) = await queue.claim("svc", "w1", 1, 30)
        await queue.complete(await queue.mark_processing(job, 30), None, 1)
        assert (await queue.enqueue(req(idempotency_key="k"))).id != first.id

    async def test_enqueue_is_not_retried_when_its_commit_may_have_landed(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A lost connection during COMMIT of an enqueue is reported, not retried: a retry
        could store the job twice."""
        fake_db.fail("commit", connection_lost, after=True)
        with pytest.raises(QueueUnavailableError, match="outcome is unknown"):
            await queue.enqueue(req())
        assert len(fake_db.rows) == 1

    async def test_enqueue_wakes_listeners(self, queue: OracleQueue) -> None:
        """Every enqueue through this object calls the listeners once."""
        woken: list[int] = []
        queue.on_enqueue(lambda: woken.append(1))
        await queue.enqueue(req())
        await queue.enqueue_many([req(), req()])
        assert woken == [1, 1]

    async def test_get_reads_clob_columns_as_text(self, queue: OracleQueue) -> None:
        """get decodes the payload and results CLOBs (fetched as text) into JSON values."""
        (job,) = await started(queue)
        await queue.complete(job, {"message": "hi", "n": [1, 2]}, 4.0)
        stored = await queue.get(job.id)
        assert stored is not None
        assert stored.payload == {"action": "greet"}
        assert stored.results == {"message": "hi", "n": [1, 2]}
        assert stored.lease_token == job.lease_token  # terminal rows keep the token
        assert await queue.get("nope") is None
        assert await queue.get("424242") is None

    async def test_bad_requests_are_refused_before_the_database(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Values Oracle would reject are refused with a plain ValueError."""
        fake_db.log.clear()
        for bad in (
            EnqueueRequest(payload={"action": "a"}, microservice=""),
            req(max_attempts=0),
            req(token="t" * 300),
            req(delay_seconds=float("nan")),
        ):
            with pytest.raises(ValueError):
                await queue.enqueue(bad)
        with pytest.raises(ValueError):
            await queue.enqueue(EnqueueRequest(payload={"x": float("inf")}, microservice="svc"))
        assert fake_db.log == []

    async def test_payload_round_trip(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """The stored payload is the request's JSON text, action in its own column."""
        job = await queue.enqueue(
            EnqueueRequest(payload={"action": "greet", "name": "Ada"}, microservice="svc")
        )
        row = fake_db.rows[int(job.id)]
        assert json.loads(row["PAYLOAD"]) == {"action": "greet", "name": "Ada"}
        assert row["ACTION"] == "greet"


class TestOpen:
    def make(self, fake_db: FakeDatabase, **settings: Any) -> OracleQueue:
        async def no_sleep(seconds: float) -> None:
            return None

        values: dict[str, Any] = {"ORACLE_USER": "app", "ORACLE_PASSWORD": "secret", **settings}
        return OracleQueue(
            OracleSettings(**values), pool_factory=lambda s: FakePool(fake_db), sleep=no_sleep
        )

    async def test_probe_checks_table_and_columns(self, fake_db: FakeDatabase) -> None:
        """open() reads no row but selects every column once, then releases the session."""
        queue = self.make(fake_db)
        await queue.open()
        assert fake_db.calls() == [
            ("acquire",),
            ("execute", "probe", 2, 100),
            ("fetchall",),
            ("execute", "limits_probe", 2, 100),
            ("fetchall",),
            ("execute", "workers_probe", 2, 100),
            ("fetchall",),
            ("execute", "paused_probe", 2, 100),
            ("fetchall",),
            ("execute", "attempts_probe", 2, 100),
            ("fetchall",),
            ("release",),
        ]
        await queue.ping()
        await queue.close()

    async def test_missing_table_says_how_to_create_it(self, fake_db: FakeDatabase) -> None:
        """ORA-00942 at startup fails with the command that creates the table."""
        fake_db.missing_table = True
        queue = self.make(fake_db)
        with pytest.raises(ConfigurationError) as caught:
            await queue.open()
        assert (
            "table MICRO_SVC does not exist, or ORACLE_USER app has no grant on it: run "
            "`python -m usvc_oracle apply`" in str(caught.value)
        )
        assert "\n" not in str(caught.value)
        assert fake_db.calls("close_pool") == [("close_pool",)]

    async def test_bad_credentials_name_the_settings(self, fake_db: FakeDatabase) -> None:
        """ORA-01017 at startup fails at once, naming ORACLE_USER and ORACLE_PASSWORD."""
        fake_db.fail(
            "acquire",
            lambda: ora_error("ORA-01017: invalid credential or not authorized", code=1017),
        )
        with pytest.raises(ConfigurationError, match="check ORACLE_USER and ORACLE_PASSWORD"):
            await self.make(fake_db).open()

    async def test_unreachable_database(self, fake_db: FakeDatabase) -> None:
        """A database that cannot be reached fails open() as unavailable, naming the DSN."""
        fake_db.fail("acquire", connection_lost, times=10)
        with pytest.raises(QueueUnavailableError, match="dbhost/FREEPDB1"):
            await self.make(fake_db, ORACLE_DSN="dbhost/FREEPDB1").open()

    async def test_ping_failure_is_unavailable(self, fake_db: FakeDatabase) -> None:
        """ping reports any failure as QueueUnavailableError, without retrying."""
        queue = self.make(fake_db)
        await queue.open()
        fake_db.fail("ping", connection_lost)
        with pytest.raises(QueueUnavailableError):
            await queue.ping()
        await queue.close()

    async def test_not_open(self, fake_db: FakeDatabase) -> None:
        """Using the queue before open() is an unavailable store, not a crash."""
        with pytest.raises(QueueUnavailableError, match="not open"):
            await self.make(fake_db).claim("svc", "w", 1, 30)


class TestHardening:
    """Issue 13's Oracle items, each shown on the recording fake."""

    async def test_only_the_idempotency_index_means_a_duplicate(
        self, queue: OracleQueue, fake_db: FakeDatabase, sleeps: list[float]
    ) -> None:
        """A primary-key collision (a producer inserted explicit IDs ahead of the identity
        sequence) is not a duplicate job: OracleQueueError says how to move the sequence,
        nothing is stored and nothing is retried."""
        fake_db.add(ID=1, ACTION="greet")  # the identity would hand out 1 next
        with pytest.raises(OracleQueueError, match="START WITH LIMIT VALUE") as caught:
            await queue.enqueue(req(idempotency_key="k"))
        assert not isinstance(caught.value, DuplicateJobError)
        assert "explicit IDs" in str(caught.value)
        assert len(fake_db.rows) == 1
        assert sleeps == []
        job = await queue.enqueue(req(idempotency_key="k"))  # the sequence moved on
        assert job.id == "2"

    async def test_another_constraint_is_a_permanent_error(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """An ORA-00001 on a constraint the queue does not know (a DBA's own unique index)
        is an OracleQueueError naming it, never a DuplicateJobError."""
        fake_db.fail("enqueue", lambda: unique_violation("MICRO_SVC_TOKEN_UX"))
        with pytest.raises(OracleQueueError, match="MICRO_SVC_TOKEN_UX") as caught:
            await queue.enqueue(req())
        assert not isinstance(caught.value, DuplicateJobError)

    async def test_a_retry_whose_commit_landed_unseen_returns_ready(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """retry()'s COMMIT reached the database but its answer was lost: the repeated
        call finds the row Ready with its own claim's token (kept until the next claim)
        and reports Ready (before: LeaseLostError) - as complete and fail do for their
        settled states. The job as read has no token: it is Ready."""
        (job,) = await started(queue)
        fake_db.fail("commit", connection_lost, after=True)
        status = await queue.retry(job, "HANDLER_ERROR", "again", 5, 1.0)
        assert status is JobStatus.READY
        row = fake_db.rows[int(job.id)]
        assert (row["STATUS"], row["LEASE_TOKEN"], row["ERROR_CODE"]) == (
            "Ready",
            job.lease_token,
            "HANDLER_ERROR",
        )
        stored = await queue.get(job.id)
        assert stored is not None and stored.lease_token is None

    @pytest.mark.parametrize("outcome", ["complete", "fail", "retry"])
    async def test_a_write_repeated_after_job_locked_finds_its_own_commit(
        self, queue: OracleQueue, fake_db: FakeDatabase, outcome: str
    ) -> None:
        """Issue 22 item 4: the write commits but its answer is lost; the call's retry finds
        the row locked by another session and raises JobLockedError; the worker then calls
        again (a new call, first attempt), finds the row settled with its own token and
        reports success, not a lost lease."""
        (job,) = await started(queue)
        fake_db.fail("commit", connection_lost, after=True)
        fake_db.fail(
            "lock_job",
            lambda: ora_error("ORA-30006: resource busy; acquire with WAIT timeout", code=30006),
            skip=1,
        )
        write = {
            "complete": lambda: queue.complete(job, {"ok": 1}, 1.0),
            "fail": lambda: queue.fail(job, "HANDLER_ERROR", "boom", 1.0),
            "retry": lambda: queue.retry(job, "HANDLER_ERROR", "boom", 5, 1.0),
        }[outcome]
        with pytest.raises(JobLockedError):
            await write()
        await write()  # no LeaseLostError: the first call's write is there
        expected = {"complete": "Completed", "fail": "Failed", "retry": "Ready"}[outcome]
        assert fake_db.status(job.id) == expected

    async def test_another_claims_requeue_is_still_a_lost_lease(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A Ready row with the same error code but another claim's token (that claim
        retried it) is not this claim's write: a stale worker's retry is a lost lease."""
        (job,) = await started(queue)
        fake_db.advance(31)
        await queue.reclaim_expired("svc")
        (again,) = await queue.claim_and_start("svc", "w2", 1, 30)
        assert await queue.retry(again, "HANDLER_ERROR", "boom", 5, 1.0) is JobStatus.READY
        with pytest.raises(LeaseLostError):
            await queue.retry(job, "HANDLER_ERROR", "boom", 5, 1.0)

    async def test_a_retry_after_a_reclaim_is_still_a_lost_lease(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A Ready row without a token that the reclaimer requeued (LEASE_EXPIRED) is not
        this retry's own write: the lease was lost."""
        (job,) = await started(queue)
        fake_db.advance(31)
        await queue.reclaim_expired("svc")
        fake_db.fail("lock_job", connection_lost)  # so the call is on its second attempt
        with pytest.raises(LeaseLostError):
            await queue.retry(job, "HANDLER_ERROR", "again", 5, 1.0)

    @pytest.mark.parametrize("start", [False, True], ids=["claim", "claim_and_start"])
    async def test_rows_with_no_attempts_left_are_failed_not_started(
        self, queue: OracleQueue, fake_db: FakeDatabase, start: bool
    ) -> None:
        """A Ready row another producer wrote with ATTEMPTS already at MAX_ATTEMPTS is
        never handed out: the claim fails it (LEASE_EXPIRED, saying why and how to run it
        again) and takes the next one."""
        spent = fake_db.add(ACTION="greet", PRIORITY=9, ATTEMPTS=3, MAX_ATTEMPTS=3, PAYLOAD="{}")
        good = (await queue.enqueue(req())).id
        claim = queue.claim_and_start if start else queue.claim
        jobs = await claim("svc", "w1", 2, 30)
        assert [j.id for j in jobs] == [good]
        row = fake_db.rows[spent]
        assert (row["STATUS"], row["ERROR_CODE"], row["ATTEMPTS"]) == (
            "Failed",
            ErrorCode.LEASE_EXPIRED.value,
            3,
        )
        assert "ATTEMPTS" in row["ERROR_MESSAGE"]
        assert row["FINISHED_AT"] == fake_db.now
        only_spent = fake_db.add(ACTION="greet", ATTEMPTS=5, MAX_ATTEMPTS=2)
        assert await claim("svc", "w1", 2, 30) == []
        assert fake_db.status(str(only_spent)) == "Failed"  # committed without a job

    @pytest.mark.parametrize("operation", ["complete", "fail", "retry", "mark_processing"])
    async def test_a_foreign_row_lock_is_reported_after_a_bounded_wait(
        self, queue: OracleQueue, fake_db: FakeDatabase, sleeps: list[float], operation: str
    ) -> None:
        """An operator's uncommitted UPDATE holds the job's row: the transition waits
        FOR UPDATE WAIT n (not the call timeout, which would drop the session and look like
        an outage), then raises JobLockedError naming the job and the cause, with no
        retries, and keeps its session; once the lock is gone the same call works."""
        await fill(queue, 1)
        (job,) = await queue.claim("svc", "w1", 1, 30)
        if operation != "mark_processing":
            job = await queue.mark_processing(job, 30)
        fake_db.locks[int(job.id)] = 999  # another session's row lock
        calls = {
            "complete": lambda: queue.complete(job, {"ok": 1}, 1.0),
            "fail": lambda: queue.fail(job, "HANDLER_ERROR", "boom", 1.0),
            "retry": lambda: queue.retry(job, "HANDLER_ERROR", "boom", 1.0, 1.0),
            "mark_processing": lambda: queue.mark_processing(job, 30),
        }
        fake_db.log.clear()
        with pytest.raises(JobLockedError, match=f"job {job.id}.*another session") as caught:
            await calls[operation]()
        assert not isinstance(caught.value, QueueUnavailableError)
        assert "FOR UPDATE" not in str(caught.value)
        assert sleeps == []
        assert fake_db.calls("drop", "release") == [("release",)]
        assert fake_db.rows[int(job.id)]["STATUS"] == job.status.value  # nothing written
        del fake_db.locks[int(job.id)]
        await calls[operation]()

    async def test_renewals_and_releases_skip_a_foreign_row_lock(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Lease renewal and release never wait on another session's row lock: the locked
        job is neither renewed nor reported lost (the next renewal tries again), the others
        are renewed; release leaves it to the lease reclaim."""
        a, b = await started(queue, 2)
        fake_db.locks[int(a.id)] = 999
        expires = fake_db.rows[int(a.id)]["LEASE_EXPIRES_AT"]
        fake_db.advance(10)
        renewal = await queue.extend_leases([a, b], 30)
        assert renewal == LeaseRenewal()
        assert fake_db.rows[int(a.id)]["LEASE_EXPIRES_AT"] == expires
        assert fake_db.rows[int(b.id)]["LEASE_EXPIRES_AT"] == fake_db.now + _seconds(30)
        assert await queue.release([a, b]) == 1
        assert (fake_db.status(a.id), fake_db.status(b.id)) == ("Processing", "Ready")
        del fake_db.locks[int(a.id)]

    async def test_a_vanished_row_is_lost_on_renewal(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A job whose row was deleted is reported lost by the renewal."""
        a, b = await started(queue, 2)
        del fake_db.rows[int(a.id)]
        fake_db.locks[int(b.id)] = 999
        assert (await queue.extend_leases([a, b], 30)).lost == {a.id}
        del fake_db.locks[int(b.id)]

    async def test_purge_skips_a_foreign_row_lock(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A finished row another session holds is left for the next purge, not waited on."""
        old = fake_db.add(STATUS="Completed", FINISHED_AT=fake_db.now)
        locked = fake_db.add(STATUS="Failed", FINISHED_AT=fake_db.now)
        fake_db.locks[locked] = 999
        fake_db.advance(100)
        assert await queue.purge("svc", 50) == 1
        assert set(fake_db.rows) == {locked}
        del fake_db.locks[locked]
        assert await queue.purge("svc", 50) == 1
        assert old not in fake_db.rows

    async def test_long_values_are_bound_as_clob(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Payloads, results and error messages beyond the server's string limit (4 000
        bytes) are bound as CLOB, since Oracle refuses the LONG binds the driver would
        otherwise send in a statement with RETURNING (ORA-22816); see test_long_binds."""
        big = "é" * 20_000  # 40 000 bytes in UTF-8
        request = EnqueueRequest(payload={"action": "greet", "blob": big}, microservice="svc")
        first, _ = await queue.enqueue_many([request, req()])
        assert json.loads(fake_db.rows[int(first.id)]["PAYLOAD"])["blob"] == big
        jobs = await queue.claim_and_start("svc", "w1", 2, 30)
        (job,) = [j for j in jobs if j.id == first.id]
        assert job.payload == {"action": "greet", "blob": big}
        status = await queue.retry(job, "HANDLER_ERROR", big, 0, 1.0)
        assert status is JobStatus.READY
        assert fake_db.rows[int(job.id)]["ERROR_MESSAGE"].startswith("é" * 100)


class TestStartup:
    """open(): transient failures are QueueUnavailableError (the application stays up and
    retries), permanent ones a ConfigurationError of one line."""

    def make(self, fake_db: FakeDatabase) -> OracleQueue:
        async def no_sleep(seconds: float) -> None:
            return None

        settings = OracleSettings(ORACLE_USER="app", ORACLE_PASSWORD="secret", ORACLE_RETRIES=1)
        return OracleQueue(settings, pool_factory=lambda s: FakePool(fake_db), sleep=no_sleep)

    @pytest.mark.parametrize(
        "error",
        [
            lambda: ora_error("DPY-6005: cannot connect to database (CONNECTION_ID=x)."),
            lambda: ora_error("ORA-01109: database not open", code=1109),
            lambda: ora_error("ORA-12514: listener does not currently know of service", code=12514),
            lambda: ora_error("ORA-00020: maximum number of processes (300) exceeded", code=20),
            lambda: TimeoutError("timed out"),
            lambda: ConnectionRefusedError(111, "Connection refused"),
        ],
        ids=["refused", "pdb-not-open", "service-unknown", "processes", "timeout", "socket"],
    )
    async def test_unreachable_is_unavailable(self, fake_db: FakeDatabase, error: Any) -> None:
        """A database that is down, starting or saturated fails open() as
        QueueUnavailableError, and the pool is closed for a clean retry."""
        fake_db.fail("acquire", error, times=10)
        queue = self.make(fake_db)
        with pytest.raises(QueueUnavailableError, match="cannot reach Oracle"):
            await queue.open()
        assert fake_db.calls("close_pool") == [("close_pool",)]
        fake_db.faults.clear()
        await queue.open()  # a later retry of open() succeeds
        await queue.close()

    @pytest.mark.parametrize(
        ("error", "says"),
        [
            (
                lambda: ora_error("ORA-01017: invalid credential or not authorized", code=1017),
                "check ORACLE_USER and ORACLE_PASSWORD",
            ),
            (
                lambda: ora_error("ORA-28000: The account is locked.", code=28000),
                "is locked",
            ),
        ],
        ids=["credentials", "locked"],
    )
    async def test_permanent_errors_are_configuration_errors(
        self, fake_db: FakeDatabase, error: Any, says: str
    ) -> None:
        """Bad credentials or a locked account fail open() at once with one line."""
        fake_db.fail("acquire", error, times=10)
        with pytest.raises(ConfigurationError, match=says) as caught:
            await self.make(fake_db).open()
        assert "\n" not in str(caught.value)
        assert len(fake_db.calls("acquire")) == 0  # the fault fired before logging

    async def test_a_missing_limits_table_names_it(self, fake_db: FakeDatabase) -> None:
        """A table from before max_running (no <table>_LIMITS) fails open() naming that
        table and the command that creates it."""
        fake_db.missing_limits_table = True
        with pytest.raises(ConfigurationError, match="table MICRO_SVC_LIMITS does not exist"):
            await self.make(fake_db).open()

    async def test_a_missing_attempts_table_names_it(self, fake_db: FakeDatabase) -> None:
        """A table from before the attempt history (no <table>_ATTEMPTS: `apply` not run
        after the upgrade) fails open() naming that table and the command that creates it,
        instead of failing the first retry or reclaim later."""
        fake_db.missing_attempts_table = True
        with pytest.raises(ConfigurationError, match="MICRO_SVC_ATTEMPTS does not exist") as caught:
            await self.make(fake_db).open()
        assert "apply" in str(caught.value)


class RecordingMetrics(NullMetrics):
    """Metrics that remember the queue errors they were told of."""

    def __init__(self) -> None:
        self.queue_errors: list[str] = []

    def queue_error(self, operation: str) -> None:
        self.queue_errors.append(operation)


class TestMaxRunning:
    """Per-action limits inside the claim: the limits row, the count, the re-query."""

    async def test_a_full_action_is_dropped_and_the_batch_refilled(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """The first lock query brings only rows of the limited action; once its remainder
        is taken the query runs again without it, so the batch fills from the others. The
        first claim creates the action's limits row in a transaction of its own, committed
        before the claim (issue 22 item 2); later ones only lock it."""
        slow = [j.id for j in await queue.enqueue_many([req("slow", 9) for _ in range(5)])]
        fast = [j.id for j in await queue.enqueue_many([req("fast") for _ in range(3)])]
        fake_db.log.clear()
        jobs = await queue.claim_and_start("svc", "w1", 3, 30, max_running={"slow": 1})
        assert [j.id for j in jobs] == [slow[0], fast[0], fast[1]]
        assert [c[:2] for c in fake_db.calls("execute", "executemany", "commit", "autocommit")] == [
            ("executemany", "limit_insert"),
            ("commit",),
            ("execute", "limit_lock"),
            ("execute", "running_counts"),
            ("execute", "claim_lock"),
            ("execute", "claim_lock_except"),
            ("execute", "claim_start_update"),
            ("autocommit",),
        ]
        assert fake_db.limits == {("svc", "slow")}
        assert {fake_db.status(i) for i in slow[1:]} == {"Ready"}
        fake_db.log.clear()
        jobs = await queue.claim_and_start("svc", "w2", 3, 30, max_running={"slow": 1})
        assert [j.id for j in jobs] == [fast[2]]
        assert [c[1] for c in fake_db.calls("execute")][:3] == [
            "limit_lock",
            "running_counts",
            "claim_lock_except",
        ]

    async def test_an_action_another_claimer_holds_is_left_to_it(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """While another session holds an action's limits row (it is claiming that action
        now), this claim takes none of it, without waiting, and takes the others."""
        await queue.enqueue_many([req("slow", 9) for _ in range(2)])
        fast = (await queue.enqueue(req("fast"))).id
        fake_db.limits.add(("svc", "slow"))
        fake_db.locks[("LIMITS", "svc", "slow")] = 999
        jobs = await queue.claim("svc", "w1", 5, 30, max_running={"slow": 5})
        assert [j.id for j in jobs] == [fast]
        del fake_db.locks[("LIMITS", "svc", "slow")]
        jobs = await queue.claim("svc", "w1", 5, 30, max_running={"slow": 5})
        assert [j.action for j in jobs] == ["slow", "slow"]

    async def test_an_existing_limits_row_is_not_an_error(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Another worker created the row first: the insert's ORA-00001 is skipped (batch
        errors), committed, and the claim goes on."""
        await queue.enqueue(req("slow"))
        fake_db.limits.add(("svc", "slow"))
        jobs = await queue.claim("svc", "w1", 5, 30, max_running={"slow": 1, "other": 2})
        assert [j.action for j in jobs] == ["slow"]
        assert fake_db.limits == {("svc", "slow"), ("svc", "other")}

    async def test_a_limits_row_held_for_long_is_reported(
        self, fake_db: FakeDatabase, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Issue 22 item 2: a session that died holding an action's limits row keeps its
        lock until the server notices; meanwhile every claim skips that action. Once this
        queue has not held the row for ORACLE_LIMIT_STALL_SECONDS while a due job of the
        action waited as long, it warns: a log line, the health check YELLOW, a
        max_running_stalled queue error. Holding the row again clears it."""
        from usvc_core.health import HealthRegistry, Status
        from usvc_oracle.queue import LIMITS_CHECK

        clock = [0.0]
        settings = OracleSettings(
            ORACLE_USER="app", ORACLE_PASSWORD="secret", ORACLE_LIMIT_STALL_SECONDS=60
        )
        queue = OracleQueue(
            settings, pool_factory=lambda s: FakePool(fake_db), monotonic=lambda: clock[0]
        )
        health, metrics = HealthRegistry(), RecordingMetrics()
        queue.observe(health, metrics)
        await queue.open()
        try:
            await queue.enqueue(req("slow"))
            fake_db.limits.add(("svc", "slow"))
            fake_db.locks[("LIMITS", "svc", "slow")] = 999  # a dead session's lock
            limits = {"slow": 1}
            assert await queue.claim("svc", "w1", 1, 30, max_running=limits) == []
            clock[0] = fake_db_seconds = 61.0
            fake_db.advance(fake_db_seconds)
            with capture_logs() as logs:
                # The module binds its logger at import: once another test configured
                # logging (cache_logger_on_first_use), that logger no longer sees
                # capture_logs, so it is swapped for one built under the capture.
                monkeypatch.setattr(
                    "usvc_oracle.queue._log", structlog.get_logger("usvc").bind(queue="oracle")
                )
                assert await queue.claim("svc", "w1", 1, 30, max_running=limits) == []
            assert [e["event"][:30] for e in logs if e["log_level"] == "warning"] == [
                "limited action skipped: anothe"
            ]
            check = health.get(LIMITS_CHECK)
            assert check is not None and check.status is Status.YELLOW
            assert check.details == {"stalled_seconds": {"svc/slow": 61}}
            assert metrics.queue_errors == ["max_running_stalled"]
            del fake_db.locks[("LIMITS", "svc", "slow")]
            assert [
                j.action for j in await queue.claim("svc", "w1", 1, 30, max_running=limits)
            ] == ["slow"]
            check = health.get(LIMITS_CHECK)
            assert check is not None and check.status is Status.GREEN
        finally:
            await queue.close()

    async def test_no_warning_without_a_waiting_job(self, fake_db: FakeDatabase) -> None:
        """The row held elsewhere for long but no due job of the action waiting: no
        warning (nothing was held back)."""
        clock = [0.0]
        settings = OracleSettings(
            ORACLE_USER="app", ORACLE_PASSWORD="secret", ORACLE_LIMIT_STALL_SECONDS=60
        )
        queue = OracleQueue(
            settings, pool_factory=lambda s: FakePool(fake_db), monotonic=lambda: clock[0]
        )
        await queue.open()
        try:
            fake_db.limits.add(("svc", "slow"))
            fake_db.locks[("LIMITS", "svc", "slow")] = 999
            await queue.claim("svc", "w1", 1, 30, max_running={"slow": 1})
            clock[0] = 61.0
            with capture_logs() as logs:
                await queue.claim("svc", "w1", 1, 30, max_running={"slow": 1})
            assert not [e for e in logs if e["log_level"] == "warning"]
            del fake_db.locks[("LIMITS", "svc", "slow")]
        finally:
            await queue.close()

    async def test_limits_are_checked_before_the_database(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """More limited actions than one list holds, or a limit that is not a whole number
        >= 0, are refused before any statement."""
        fake_db.log.clear()
        with pytest.raises(ValueError, match="at most 50 actions"):
            await queue.claim("svc", "w", 1, 30, max_running={f"a{i}": 1 for i in range(51)})
        with pytest.raises(ValueError, match="'a'"):
            await queue.claim("svc", "w", 1, 30, max_running={"a": -1})
        assert fake_db.log == []


class TestStoreClock:
    async def test_store_now_is_the_database_clock(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """The scheduler waits for this clock (StoreClock), not the worker's."""
        from usvc_core.ports import StoreClock

        assert isinstance(queue, StoreClock)
        assert await queue.store_now() == utc(fake_db.now)
        fake_db.now += _seconds(5)
        assert await queue.store_now() == utc(fake_db.now)


class TestLookupAndSessions:
    """The operators' lookup by id or key, and revoked admin sessions (ahead of the
    store's port additions: the contract will check them once they land)."""

    async def test_find_jobs(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """By id, unique key or idempotency key (finished jobs too), newest first, only of
        the service asked; one index probe each."""
        old = await queue.enqueue(req(idempotency_key="order-7"))
        (started_job,) = await queue.claim_and_start("svc", "w", 1, 30)
        await queue.complete(started_job, None, 1.0)
        fake_db.advance(1)
        slot = await queue.enqueue(req(unique_key="schedule:x:1"))
        fake_db.advance(1)
        new = await queue.enqueue(req(idempotency_key="order-7"))
        fake_db.log.clear()
        assert [j.id for j in await queue.find_jobs("svc", slot.id)] == [slot.id]
        assert [c[1] for c in fake_db.calls("execute")] == [
            "find_by_id",
            "find_by_unique",
            "find_by_idempotency",
        ]
        assert [j.id for j in await queue.find_jobs("svc", "schedule:x:1")] == [slot.id]
        assert [j.id for j in await queue.find_jobs("svc", "order-7")] == [new.id, old.id]
        assert await queue.find_jobs("svc", "nothing") == []
        assert await queue.find_jobs("other", slot.id) == []

    async def test_revoked_sessions(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """Revoked until a time (aware, on the database clock); past ones are forgotten."""
        from datetime import UTC, timedelta

        now = fake_db.now.replace(tzinfo=UTC)
        await queue.revoke_session("s1", now + timedelta(seconds=10))
        await queue.revoke_session("old", now - timedelta(seconds=1))
        assert await queue.session_revoked("s1")
        assert not await queue.session_revoked("old")
        assert not await queue.session_revoked("s2")
        fake_db.advance(11)
        assert not await queue.session_revoked("s1")
        await queue.revoke_session("s3", now + timedelta(hours=1))
        assert set(fake_db.sessions) == {"s3"}
        with pytest.raises(ValueError, match="timezone"):
            await queue.revoke_session("naive", fake_db.now)


class TestAttemptHistory:
    """Issue 21 item 1 and issue 22 item 3 on Oracle: the ATTEMPTS ring and the flags on
    the row, beyond what the shared contract checks."""

    async def test_the_attempts_table_is_a_ring_of_attempt_history_slots(
        self, fake_db: FakeDatabase
    ) -> None:
        """Six closed attempts with attempt_history=3 leave three rows (no trimming DELETE:
        slot = attempt number modulo 3), and get shows the last three."""
        settings = OracleSettings(ORACLE_USER="app", ORACLE_PASSWORD="secret")
        queue = OracleQueue(settings, pool_factory=lambda s: FakePool(fake_db), attempt_history=3)
        await queue.open()
        try:
            job = await queue.enqueue(req(max_attempts=9))
            for n in range(6):
                (running,) = await queue.claim_and_start("svc", "w", 1, 30)
                await queue.retry(running, "HANDLER_ERROR", f"failure {n + 1}", 0, 1.0)
            kept = sorted(a["ATTEMPT_NO"] for a in fake_db.attempts.values())
            assert kept == [4, 5, 6]
            stored = await queue.get(job.id)
            assert stored is not None
            assert [(a.number, a.error_message) for a in stored.attempt_history] == [
                (4, "failure 4"),
                (5, "failure 5"),
                (6, "failure 6"),
            ]
        finally:
            await queue.close()

    async def test_get_of_a_job_started_once_reads_no_attempts(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A job never started or started once has no closed attempt: get is one query."""
        (job,) = await started(queue)
        fake_db.log.clear()
        stored = await queue.get(job.id)
        assert stored is not None
        assert [a.outcome.value for a in stored.attempt_history] == ["running"]
        assert [c[1] for c in fake_db.calls("execute")] == ["get"]

    async def test_a_reclaim_closes_the_attempts_in_its_own_transaction(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """The history MERGE runs before the reclaim's UPDATE (which clears STARTED_AT and
        the lease owner it copies) and before the one COMMIT of the batch."""
        await fill(queue, 1)
        await queue.claim_and_start("svc", "w", 1, 5)
        fake_db.advance(6)
        fake_db.log.clear()
        assert len((await queue.reclaim_expired("svc")).requeued) == 1
        assert [
            c[1] if c[0] == "execute" else c[0] for c in fake_db.calls("execute", "commit")
        ] == [
            "reclaim_lock",
            "reclaim_assigned",
            "history_reclaim",
            "reclaim_processing",
            "commit",
        ]

    async def test_a_processing_row_of_an_older_version_counts_as_confirmed(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """START_CONFIRMED is added with DEFAULT 1: a row a worker of the previous version
        started is not given an attempt back (it may well have run)."""
        row_id = fake_db.add(
            STATUS="Processing",
            ACTION="greet",
            ATTEMPTS=1,
            MAX_ATTEMPTS=1,
            LEASE_OWNER="old-worker",
            LEASE_TOKEN="t1",
            STARTED_AT=fake_db.now,
            LEASE_EXPIRES_AT=fake_db.now,
        )
        fake_db.advance(1)
        assert list((await queue.reclaim_expired("svc")).failed) == [str(row_id)]
        assert fake_db.rows[row_id]["ATTEMPTS"] == 1

    async def test_a_start_by_a_worker_of_the_previous_version_counts_as_confirmed(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Rolling upgrade: every way back to Ready sets START_CONFIRMED to 1, so when a
        worker of the previous version (which never writes the column) starts a row a new
        worker had claimed unconfirmed before, that start is not mistaken for a lost reply."""
        job = await queue.enqueue(req(max_attempts=1))
        (running,) = await queue.claim_and_start("svc", "new-worker", 1, 30)
        assert fake_db.rows[int(job.id)]["START_CONFIRMED"] == 0
        assert await queue.release([running]) == 1
        # The previous version's claim_and_start: the columns it knows, nothing else.
        fake_db.rows[int(job.id)].update(
            STATUS="Processing",
            ATTEMPTS=1,
            LEASE_OWNER="old-worker",
            LEASE_TOKEN="old",
            STARTED_AT=fake_db.now,
            LEASE_EXPIRES_AT=fake_db.now,
        )
        fake_db.advance(1)
        assert list((await queue.reclaim_expired("svc")).failed) == [job.id]

    async def test_a_final_retry_is_two_round_trips(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A retry of the last attempt fails the job, which closes no attempt: no MERGE."""
        await queue.enqueue(req(max_attempts=1))
        (running,) = await queue.claim_and_start("svc", "w", 1, 30)
        fake_db.log.clear()
        assert await queue.retry(running, "HANDLER_ERROR", "x", 0, 1.0) is JobStatus.FAILED
        assert [c[1] for c in fake_db.calls("execute")] == ["lock_job", "retry"]

    async def test_a_ready_row_requeued_by_the_previous_version_shows_no_running_attempt(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """The previous version's retry left STARTED_AT on the Ready row: it is no attempt."""
        row_id = fake_db.add(ACTION="greet", ATTEMPTS=1, STARTED_AT=fake_db.now)
        stored = await queue.get(str(row_id))
        assert stored is not None
        assert stored.attempt_history == ()

    async def test_an_operator_retry_refused_by_a_key_leaves_no_duplicate(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """retry_failed writes the last attempt before its UPDATE; when the index refuses the
        UPDATE (another unfinished job took the key) the row stays Failed with that attempt
        still on it: get shows it once."""
        job = await queue.enqueue(req(max_attempts=1, idempotency_key="k"))
        (running,) = await queue.claim_and_start("svc", "w", 1, 30)
        await queue.fail(running, "HANDLER_ERROR", "boom", 1.0)
        await queue.enqueue(req(idempotency_key="k"))  # holds the key now
        assert await queue.retry_failed("svc", [job.id]) == 0
        stored = await queue.get(job.id)
        assert stored is not None
        assert [(a.number, a.outcome.value) for a in stored.attempt_history] == [(1, "failed")]
