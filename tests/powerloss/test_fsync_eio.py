"""fsync failing with EIO ("fsyncgate", issue 24 item 6): once a flush of the WAL failed, the
SQLite queue acknowledges nothing more (the kernel dropped the pages it could not write and
the next fsync would succeed without them), reports the store broken (the worker's
``job_queue`` check goes RED), and works again once reopened, with every write it did
acknowledge still there after a power cut."""

from __future__ import annotations

import asyncio

import pytest
from usvc_core import Application, EnqueueRequest, Status, WorkerSettings
from usvc_core.errors import QueueUnavailableError
from usvc_core.worker import QUEUE_CHECK
from usvc_sqlite import SqliteQueue

from tests.powerloss.harness import SERVICE_DIR, LazyMount, read_rows

pytestmark = pytest.mark.slow


def job(n: int) -> EnqueueRequest:
    return EnqueueRequest(payload={"action": "work", "n": n}, microservice="powerloss")


def worker_app(queue: SqliteQueue) -> Application:
    """A worker of the power-loss service on ``queue``, without HTTP."""
    settings = WorkerSettings(
        _env_file=None,
        MICROSERVICE_NAME="powerloss",
        HTTP_ENABLED=False,
        POLLING_INTERVAL_SECONDS=0.05,
        SHUTDOWN_TIMEOUT_SECONDS=2,
    )
    return Application(
        SERVICE_DIR / "actions",
        settings=settings,
        queue=queue,
        surfaces=[],
        configure_logging=False,
    )


async def until_red(app: Application) -> None:
    """Until the queue check is RED, 20 s at most (the caller asserts it is)."""
    for _ in range(400):
        check = app.health.get(QUEUE_CHECK)
        if check is not None and check.status is Status.RED:
            return
        await asyncio.sleep(0.05)


async def test_after_a_failed_fsync_nothing_is_acknowledged_until_reopened(
    lazy_mount: LazyMount,
) -> None:
    db = lazy_mount.mnt / "jobs.db"
    queue = SqliteQueue(db, durability="full")
    await queue.open()
    try:
        first = await queue.enqueue(job(1))
        lazy_mount.fail_fsyncs(1)
        with pytest.raises(QueueUnavailableError, match="fsync"):
            await queue.enqueue(job(2))
        # The next fsync would succeed, without job 2's pages: refused all the same.
        with pytest.raises(QueueUnavailableError, match="reopened"):
            await queue.enqueue(job(3))
        with pytest.raises(QueueUnavailableError):
            await queue.ping()
    finally:
        await queue.close()
    lazy_mount.cut()
    lazy_mount.start()
    assert first.id is not None and int(first.id) in read_rows(db)
    reopened = SqliteQueue(db, durability="full")
    await reopened.open()
    try:
        fourth = await reopened.enqueue(job(4))
    finally:
        await reopened.close()
    lazy_mount.cut()
    lazy_mount.start()
    assert {int(first.id), int(fourth.id)} <= set(read_rows(db))


async def test_a_worker_on_a_broken_store_reports_red(lazy_mount: LazyMount) -> None:
    """A job's completion meets the failed fsync: the worker's queue check turns RED and
    stays so (the store is not trusted again without a reopen)."""
    queue = SqliteQueue(lazy_mount.mnt / "jobs.db", durability="full")
    app = worker_app(queue)
    async with app:
        # The job takes a second, so the fault is armed before its completion is flushed.
        await queue.enqueue(
            EnqueueRequest(payload={"action": "work", "n": 1, "ms": 1000}, microservice="powerloss")
        )
        lazy_mount.fail_fsyncs(1)
        await until_red(app)
        check = app.health.get(QUEUE_CHECK)
        assert check is not None and check.status is Status.RED, check
        assert "fsync" in str(check.details.get("error")), check.details
        await asyncio.sleep(0.5)
        check = app.health.get(QUEUE_CHECK)
        assert check is not None and check.status is Status.RED  # still: no silent recovery


async def test_an_io_error_inside_sqlite_breaks_the_store_too(lazy_mount: LazyMount) -> None:
    """The failed fsync is SQLite's own (the worker's first write after it opened the file),
    not the queue's WAL flush: the store is as unknown, so the check turns RED and stays."""
    producer = SqliteQueue(lazy_mount.mnt / "jobs.db", durability="full")
    await producer.open()
    await producer.enqueue(job(1))
    await producer.close()
    lazy_mount.fail_fsyncs(1)
    queue = SqliteQueue(lazy_mount.mnt / "jobs.db", durability="full")
    app = worker_app(queue)
    async with app:
        await until_red(app)
        await asyncio.sleep(1.0)  # a transient error would have cleared by now
        check = app.health.get(QUEUE_CHECK)
        assert check is not None and check.status is Status.RED, check
        assert "reopened" in str(check.details.get("error")), check.details
