"""OracleQueue's operator side (QueueAdmin) against the recording fake driver: listing with
filters and keyset pages, retrying failed jobs, cancelling, and the activity summary."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from usvc_core.jobs import ErrorCode, JobStatus
from usvc_core.ports import EnqueueRequest, JobFilter, QueueAdmin
from usvc_oracle import JobLockedError, OracleQueue
from usvc_oracle_fake import FakeDatabase, utc


def req(action: str = "greet", **kw: Any) -> EnqueueRequest:
    return EnqueueRequest(payload={"action": action}, microservice="svc", **kw)


async def failed(
    queue: OracleQueue, fake_db: FakeDatabase, action: str = "greet", **kw: Any
) -> str:
    """A job of ``action`` that ran and failed with HANDLER_ERROR."""
    job = await queue.enqueue(req(action, **kw))
    (started,) = [j for j in await queue.claim_and_start("svc", "w", 50, 30) if j.id == job.id]
    await queue.fail(started, ErrorCode.HANDLER_ERROR.value, "boom", 1.0)
    return job.id


async def test_is_a_queue_admin(queue: OracleQueue) -> None:
    """OracleQueue implements the QueueAdmin port."""
    assert isinstance(queue, QueueAdmin)


class TestListJobs:
    async def test_newest_first_in_keyset_pages(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Pages run newest first by (created_at, id); a job added between two pages does
        not shift the next one; the last page has no cursor."""
        ids = []
        for _ in range(5):
            ids.append((await queue.enqueue(req())).id)
            fake_db.advance(1)
        where = JobFilter(microservice="svc")
        first = await queue.list_jobs(where, limit=2)
        assert [j.id for j in first.jobs] == [ids[4], ids[3]]
        assert first.next_cursor is not None
        await queue.enqueue(req())  # newer than everything listed
        second = await queue.list_jobs(where, limit=2, cursor=first.next_cursor)
        assert [j.id for j in second.jobs] == [ids[2], ids[1]]
        last = await queue.list_jobs(where, limit=2, cursor=second.next_cursor)
        assert [j.id for j in last.jobs] == [ids[0]]
        assert last.next_cursor is None
        assert last.jobs[0].payload == {"action": "greet"}

    async def test_ties_on_created_at_are_broken_by_id(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Jobs created in the same instant page by id, none skipped or repeated."""
        ids = [j.id for j in await queue.enqueue_many([req() for _ in range(5)])]
        seen: list[str] = []
        cursor = None
        while True:
            page = await queue.list_jobs(JobFilter(microservice="svc"), limit=2, cursor=cursor)
            seen += [j.id for j in page.jobs]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == list(reversed(ids))

    async def test_filters(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """Status, action, error code and a created_at range narrow the listing; other
        services never show."""
        early = (await queue.enqueue(req("a"))).id
        fake_db.advance(10)
        broken = await failed(queue, fake_db, "b")
        ready_b = (await queue.enqueue(req("b"))).id
        fake_db.add("other", ACTION="b")
        svc = "svc"

        async def ids(**kw: Any) -> set[str]:
            page = await queue.list_jobs(JobFilter(microservice=svc, **kw), limit=50)
            return {j.id for j in page.jobs}

        assert await ids() == {early, broken, ready_b}
        assert await ids(statuses=frozenset({JobStatus.FAILED})) == {broken}
        assert await ids(actions=frozenset({"b"})) == {broken, ready_b}
        assert await ids(error_codes=frozenset({"HANDLER_ERROR"})) == {broken}
        cut = utc(fake_db.now) - timedelta(seconds=5)
        assert await ids(created_after=cut) == {broken, ready_b}
        assert await ids(created_before=cut) == {early}

    async def test_bad_arguments_are_value_errors(self, queue: OracleQueue) -> None:
        """A malformed cursor, a page size out of range or too many actions at once are
        refused with a ValueError saying what is wrong."""
        where = JobFilter(microservice="svc")
        for cursor in ("nope", "bm90IGEgY3Vyc29y", ""):
            with pytest.raises(ValueError, match="cursor"):
                await queue.list_jobs(where, cursor=cursor)
        with pytest.raises(ValueError, match="limit"):
            await queue.list_jobs(where, limit=0)
        many = JobFilter(microservice="svc", actions=frozenset(f"a{i}" for i in range(51)))
        with pytest.raises(ValueError, match="at most 50 actions"):
            await queue.list_jobs(many)


class TestRetryFailed:
    async def test_by_ids_and_by_filter(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """Failed jobs go back to Ready, due now, attempts 0, error cleared; jobs that are
        not Failed or belong to another service are left alone."""
        one = await failed(queue, fake_db, "a")
        two = await failed(queue, fake_db, "b")
        ready = (await queue.enqueue(req())).id
        theirs = fake_db.add("other", STATUS="Failed", ERROR_CODE="X")
        assert await queue.retry_failed("svc", [one, ready, str(theirs), "junk"]) == 1
        row = fake_db.rows[int(one)]
        assert (row["STATUS"], row["ATTEMPTS"], row["ERROR_CODE"], row["RUN_AT"]) == (
            "Ready",
            0,
            None,
            fake_db.now,
        )
        assert fake_db.rows[theirs]["STATUS"] == "Failed"
        where = JobFilter(microservice="svc", actions=frozenset({"b"}))
        assert await queue.retry_failed("svc", where=where) == 1
        assert fake_db.status(two) == "Ready"
        with pytest.raises(ValueError, match="ids or a filter"):
            await queue.retry_failed("svc")

    async def test_a_key_taken_meanwhile_leaves_the_job_failed(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A failed job whose idempotency key another unfinished job took meanwhile stays
        Failed (the unique index refuses it); the rest of the batch is retried."""
        keyed = await failed(queue, fake_db, idempotency_key="k")
        plain = await failed(queue, fake_db)
        await queue.enqueue(req(idempotency_key="k"))
        assert await queue.retry_failed("svc", [keyed, plain]) == 1
        assert (fake_db.status(keyed), fake_db.status(plain)) == ("Failed", "Ready")

    async def test_a_row_another_session_holds_is_skipped(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """A failed job whose row another session holds locked is skipped, not waited on."""
        locked = await failed(queue, fake_db)
        fake_db.locks[int(locked)] = 999
        assert await queue.retry_failed("svc", [locked]) == 0
        del fake_db.locks[int(locked)]
        assert await queue.retry_failed("svc", [locked]) == 1


class TestCancel:
    async def test_a_foreign_row_lock_is_reported(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """cancel waits a bounded time for another session's row lock, then says so."""
        job = await queue.enqueue(req())
        fake_db.locks[int(job.id)] = 999
        with pytest.raises(JobLockedError, match="another session"):
            await queue.cancel("svc", job.id)
        del fake_db.locks[int(job.id)]
        assert await queue.cancel("svc", job.id) is JobStatus.FAILED


class TestActivity:
    async def test_counts_oldest_ready_and_minutes(
        self, queue: OracleQueue, fake_db: FakeDatabase
    ) -> None:
        """Counts by action and status, the age of each action's oldest due Ready job,
        and completed/failed per minute on the database clock, oldest minute first."""
        fake_db.now = fake_db.now.replace(second=30)
        await failed(queue, fake_db, "b")
        fake_db.advance(60)
        await queue.enqueue(req("a"))
        (done,) = await queue.claim_and_start("svc", "w", 1, 30)
        await queue.complete(done, None, 1.0)
        await queue.enqueue(req("a"))
        await queue.enqueue(req("a", delay_seconds=3600))  # not due: not aged
        fake_db.advance(15)
        activity = await queue.activity("svc", minutes=3)
        assert activity.counts["b"] == {JobStatus.FAILED: 1}
        assert activity.counts["a"] == {JobStatus.READY: 2, JobStatus.COMPLETED: 1}
        assert activity.oldest_ready_age_seconds == {"a": 15.0}
        assert [(m.completed, m.failed) for m in activity.per_minute] == [(0, 0), (0, 1), (1, 0)]
        minutes = [m.minute for m in activity.per_minute]
        assert minutes[-1] == utc(fake_db.now.replace(second=0))
        assert minutes[0] == minutes[-1] - timedelta(minutes=2)

    async def test_oldest_due_ready_age(self, queue: OracleQueue, fake_db: FakeDatabase) -> None:
        """The age counts from when the oldest Ready job became due."""
        await queue.enqueue(req("a"))
        fake_db.advance(40)
        await queue.enqueue(req("a"))
        activity = await queue.activity("svc", minutes=1)
        assert activity.oldest_ready_age_seconds == {"a": 40.0}
        assert len(activity.per_minute) == 1
        with pytest.raises(ValueError, match="minutes"):
            await queue.activity("svc", minutes=0)
