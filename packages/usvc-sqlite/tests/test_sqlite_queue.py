"""What only the SQLite queue promises: its file, schema versions, durability modes, group
commit, busy handling, and QUEUE_URL wiring. Every test uses a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from usvc_core import Application
from usvc_core.errors import ConfigurationError, LeaseLostError, QueueUnavailableError
from usvc_core.jobs import AttemptOutcome, Job, JobStatus
from usvc_core.ports import EnqueueRequest, JobFilter
from usvc_core.settings import WorkerSettings
from usvc_sqlite import (
    SqliteFileError,
    SqliteQueue,
    sqlite_queue_from_url,
    statements,
)
from usvc_sqlite import queue as queue_module
from usvc_sqlite.schema import NOW, SCHEMA_VERSION, prepare

SERVICE = "sqlite-tests"


def _request(n: int = 0, **options: object) -> EnqueueRequest:
    return EnqueueRequest(
        payload={"action": "echo", "n": n},
        microservice=SERVICE,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    """An open SqliteQueue on a fresh file."""
    q = SqliteQueue(tmp_path / "jobs.db")
    await q.open()
    yield q
    await q.close()


def _pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        value = conn.execute(f"PRAGMA {name}").fetchone()[0]
    conn.close()
    return value


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    conn.close()
    return {r[0] for r in rows if not r[0].startswith("sqlite_")}


class TestQueueUrl:
    """QUEUE_URL=sqlite:///... picks the SQLite queue with the right file and options."""

    def test_relative_and_absolute_paths(self) -> None:
        """Three slashes: relative to the working directory; four: absolute."""
        settings = WorkerSettings(MICROSERVICE_NAME="s", QUEUE_URL="memory://")
        relative = sqlite_queue_from_url("sqlite:///data/jobs.db", settings)
        absolute = sqlite_queue_from_url("sqlite:////var/lib/svc/jobs.db", settings)
        assert relative.path == Path("data/jobs.db")
        assert absolute.path == Path("/var/lib/svc/jobs.db")
        assert relative.durability.value == "full"

    def test_options_in_the_query(self) -> None:
        """durability and busy_timeout come from the query string."""
        settings = WorkerSettings(MICROSERVICE_NAME="s", QUEUE_URL="memory://")
        q = sqlite_queue_from_url("sqlite:///jobs.db?durability=normal&busy_timeout=2.5", settings)
        assert (q.durability.value, q.busy_timeout) == ("normal", 2.5)

    @pytest.mark.parametrize(
        ("url", "says"),
        [
            ("sqlite://host/jobs.db", "not a host"),
            ("sqlite://", "names no file"),
            ("sqlite:///:memory:", "memory://"),
            ("sqlite:///jobs.db?durability=sometimes", "durability='sometimes'"),
            ("sqlite:///jobs.db?busy_timeout=soon", "busy_timeout"),
            ("sqlite:///jobs.db?sync=off", "unknown option"),
        ],
    )
    def test_mistakes_are_configuration_errors(self, url: str, says: str) -> None:
        """A wrong SQLite URL fails with a message saying what to write instead."""
        settings = WorkerSettings(MICROSERVICE_NAME="s", QUEUE_URL="memory://")
        with pytest.raises(ConfigurationError, match=says):
            sqlite_queue_from_url(url, settings)

    async def test_application_wires_it_from_the_settings(self, tmp_path: Path) -> None:
        """Application() finds the SQLite queue through its entry point."""
        url = f"sqlite:///{tmp_path / 'app.db'}"
        app = Application(
            settings=WorkerSettings(MICROSERVICE_NAME="s", QUEUE_URL=url, HTTP_ENABLED=False)
        )
        assert isinstance(app.queue, SqliteQueue)
        assert app.queue.path == tmp_path / "app.db"


class TestFileAndSchema:
    """The adapter creates, versions and migrates its schema, and refuses files it cannot use."""

    async def test_a_new_file_gets_the_current_schema_in_wal_mode(self, tmp_path: Path) -> None:
        """open() creates the table and indexes, sets the version and turns WAL on."""
        path = tmp_path / "new.db"
        q = SqliteQueue(path)
        await q.open()
        await q.close()
        assert _pragma(path, "user_version") == SCHEMA_VERSION
        assert _pragma(path, "journal_mode") == "wal"
        assert {"usvc_jobs_ready", "usvc_jobs_leased", "usvc_jobs_idempotency"} <= _indexes(path)

    async def test_an_older_file_is_migrated_and_keeps_its_jobs(self, tmp_path: Path) -> None:
        """A file at schema version 1 is brought to the current version; its jobs still run."""
        path = tmp_path / "old.db"
        with sqlite3.connect(path, isolation_level=None) as conn:
            prepare(conn, str(path), upto=1)
            conn.execute(
                "INSERT INTO usvc_jobs (microservice, action, payload) VALUES (?, ?, ?)",
                (SERVICE, "echo", '{"action": "echo", "n": 1}'),
            )
        conn.close()
        before = _indexes(path)
        assert _pragma(path, "user_version") == 1
        q = SqliteQueue(path)
        await q.open()
        try:
            assert _pragma(path, "user_version") == SCHEMA_VERSION
            assert _indexes(path) > before
            [job] = await q.claim(SERVICE, "w", 5, 30.0)
            assert job.payload == {"action": "echo", "n": 1}
        finally:
            await q.close()

    @pytest.mark.parametrize("version", [7, 8])
    async def test_an_upgraded_file_has_the_schema_of_a_new_one_and_reads_its_jobs(
        self, tmp_path: Path, version: int
    ) -> None:
        """A file of schema 7 or 8 (two indexes of Ready jobs by action, one of finished
        jobs by action) ends with exactly a new file's tables and indexes (schema 9), and
        its jobs are counted, listed and claimed through them."""
        new = tmp_path / "new.db"
        with sqlite3.connect(new, isolation_level=None) as conn:
            prepare(conn, str(new))
        conn.close()
        path = tmp_path / f"v{version}.db"
        with sqlite3.connect(path, isolation_level=None) as conn:
            prepare(conn, str(path), upto=version)
            conn.executemany(
                "INSERT INTO usvc_jobs (microservice, action, payload, status, priority, "
                "run_at, finished_at) VALUES (?, ?, '{}', ?, ?, ?, ?)",
                [
                    (SERVICE, "a", "Ready", 0, 0.0, None),
                    (SERVICE, "a", "Ready", 3, 0.0, None),
                    (SERVICE, "b", "Ready", 0, 4e9, None),  # scheduled (2096)
                    (SERVICE, "a", "Completed", 0, 0.0, 1.0),
                ],
            )
        conn.close()
        q = SqliteQueue(path)
        await q.open()
        try:
            stats = await q.stats(SERVICE)
            assert (stats.counts[JobStatus.READY], stats.scheduled) == (3, 1)
            assert stats.counts[JobStatus.COMPLETED] == 1
            ready = JobFilter(SERVICE, statuses=frozenset({JobStatus.READY}))
            assert len((await q.list_jobs(ready)).jobs) == 3
            claimed = await q.claim_and_start(SERVICE, "w", 5, 30.0, max_running={"a": 1})
            assert [(job.action, job.priority) for job in claimed] == [("a", 3)]
        finally:
            await q.close()

        def schema(file: Path) -> list[tuple[str, str, str]]:
            with sqlite3.connect(file) as conn:
                rows = conn.execute(
                    "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
                ).fetchall()
            conn.close()
            return rows

        assert schema(path) == schema(new)
        assert not {"usvc_jobs_ready_due", "usvc_jobs_finished_action"} & _indexes(path)

    async def test_a_file_from_a_newer_version_is_refused(self, tmp_path: Path) -> None:
        """A newer schema version is refused with a clear message and left untouched."""
        path = tmp_path / "newer.db"
        q = SqliteQueue(path)
        await q.open()
        await q.close()
        with sqlite3.connect(path) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(SqliteFileError, match=r"newer usvc-testing.*Upgrade usvc-testing"):
            await SqliteQueue(path).open()
        assert _pragma(path, "user_version") == SCHEMA_VERSION + 1

    async def test_files_that_are_not_queues_are_refused(self, tmp_path: Path) -> None:
        """Not a database, a foreign usvc_jobs table, or a missing directory: clear errors."""
        junk = tmp_path / "junk.db"
        junk.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(SqliteFileError, match="not an SQLite database"):
            await SqliteQueue(junk).open()
        foreign = tmp_path / "foreign.db"
        with sqlite3.connect(foreign) as conn:
            conn.execute("CREATE TABLE usvc_jobs (x)")
        conn.close()
        with pytest.raises(SqliteFileError, match="not created by usvc-testing"):
            await SqliteQueue(foreign).open()
        with pytest.raises(SqliteFileError, match="does not exist"):
            await SqliteQueue(tmp_path / "missing" / "jobs.db").open()
        # Permanent, not "unavailable": the application must not retry these forever.
        (tmp_path / "adir.db").mkdir()
        with pytest.raises(SqliteFileError, match="it is a directory"):
            await SqliteQueue(tmp_path / "adir.db").open()

    async def test_several_processes_opening_at_once_migrate_once(self, tmp_path: Path) -> None:
        """Handles opened concurrently on a new file all end at the current version."""
        path = tmp_path / "race.db"
        queues = [SqliteQueue(path) for _ in range(4)]
        await asyncio.gather(*(q.open() for q in queues))
        try:
            await queues[0].enqueue(_request())
            assert (await queues[3].stats(SERVICE)).counts[JobStatus.READY] == 1
        finally:
            await asyncio.gather(*(q.close() for q in queues))
        assert _pragma(path, "user_version") == SCHEMA_VERSION

    def test_new_file_opened_by_many_at_once_never_reports_locked(self, tmp_path: Path) -> None:
        """Turning a new file to WAL takes a lock SQLite does not wait for; connections that
        collide there wait and retry instead of failing (workers starting together)."""
        errors: list[BaseException] = []

        def open_once(q: SqliteQueue) -> None:
            try:
                q._connect().close()
            except BaseException as exc:
                errors.append(exc)

        for n in range(60):
            queues = [SqliteQueue(tmp_path / f"new-{n}.db") for _ in range(6)]
            threads = [threading.Thread(target=open_once, args=(q,)) for q in queues]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
        assert _pragma(tmp_path / "new-0.db", "journal_mode") == "wal"


class _WalSyncs:
    """Records each fsync of a queue's WAL file (os.fdatasync, or os.fsync where that is
    missing); ``hold`` keeps the next ones from returning until it is set."""

    def __init__(self, wal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wal = wal
        self.count = 0
        self.started = threading.Event()
        self.hold = threading.Event()
        self.hold.set()
        name = "fdatasync" if hasattr(os, "fdatasync") else "fsync"
        real = getattr(os, name)

        def spy(fd: int) -> None:
            if os.fstat(fd).st_ino == os.stat(self.wal).st_ino:
                self.started.set()
                self.hold.wait(30)
                real(fd)
                self.count += 1
            else:
                real(fd)

        monkeypatch.setattr(os, name, spy)


class TestDurability:
    """durability=full flushes the WAL before a durable write returns; normal never does."""

    async def test_full_syncs_enqueues_and_outcomes_not_claims(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Enqueue and complete return after a flush of the WAL; claim and start do not
        wait for one."""
        q = SqliteQueue(tmp_path / "full.db")
        syncs = _WalSyncs(tmp_path / "full.db-wal", monkeypatch)
        await q.open()
        try:
            await q.enqueue(_request())
            assert syncs.count == 1
            [job] = await q.claim(SERVICE, "w", 1, 30.0)
            job = await q.mark_processing(job, 30.0)
            assert syncs.count == 1
            await q.complete(job, {"ok": True}, 1.0)
            assert syncs.count == 2
        finally:
            await q.close()

    async def test_a_durable_write_returns_only_after_the_flush(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While the WAL's fsync has not finished, the enqueue has not returned, and the
        event loop keeps running (a claim of the committed job goes through meanwhile)."""
        q = SqliteQueue(tmp_path / "held.db")
        syncs = _WalSyncs(tmp_path / "held.db-wal", monkeypatch)
        await q.open()
        try:
            syncs.hold.clear()
            enqueue = asyncio.ensure_future(q.enqueue(_request()))
            assert await asyncio.to_thread(syncs.started.wait, 30)
            claimed = await q.claim(SERVICE, "w", 1, 30.0)  # committed, not yet on disk
            assert len(claimed) == 1
            assert not enqueue.done()
            syncs.hold.set()
            job = await enqueue
            assert job.id == claimed[0].id
            assert syncs.count == 1
        finally:
            syncs.hold.set()
            await q.close()

    async def test_a_failed_flush_fails_the_durable_callers(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When the disk refuses the flush, the caller hears it (it cannot know its write
        is safe), as an outage; and since the kernel dropped the pages it could not write,
        a later flush that succeeds proves nothing: the queue refuses every operation until
        it is reopened (fsyncgate)."""
        q = SqliteQueue(tmp_path / "eio.db")
        await q.open()
        name = "fdatasync" if hasattr(os, "fdatasync") else "fsync"
        real = getattr(os, name)

        def failing(fd: int) -> None:
            raise OSError(5, "Input/output error")

        try:
            monkeypatch.setattr(os, name, failing)
            with pytest.raises(QueueUnavailableError, match=r"fsync failed.*Input/output"):
                await q.enqueue(_request(1))
            monkeypatch.setattr(os, name, real)
            with pytest.raises(QueueUnavailableError, match="until the queue is reopened"):
                await q.enqueue(_request(2))
            await q.close()
            await q.open()
            job = await q.enqueue(_request(3))
            assert (await q.get(job.id)) is not None
        finally:
            await q.close()

    async def test_normal_never_asks_for_fsync(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """In normal mode nothing waits for a flush of the WAL."""
        q = SqliteQueue(tmp_path / "normal.db", durability="normal")
        syncs = _WalSyncs(tmp_path / "normal.db-wal", monkeypatch)
        await q.open()
        try:
            await q.enqueue(_request())
            [job] = await q.claim(SERVICE, "w", 1, 30.0)
            await q.complete(await q.mark_processing(job, 30.0), {}, 1.0)
            assert syncs.count == 0
            assert (await q.get(job.id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]
        finally:
            await q.close()

    def test_unknown_modes_and_negative_timeouts_are_refused(self, tmp_path: Path) -> None:
        """Options are checked when the queue is made."""
        with pytest.raises(ConfigurationError, match="durability"):
            SqliteQueue(tmp_path / "x.db", durability="paranoid")
        with pytest.raises(ConfigurationError, match="busy_timeout"):
            SqliteQueue(tmp_path / "x.db", busy_timeout=-1)


class TestGroupCommit:
    """Concurrent writes of one process share transactions; each keeps its own outcome."""

    async def test_concurrent_completions_share_one_transaction(self, queue: SqliteQueue) -> None:
        """Ten completions submitted together commit in one transaction."""
        await queue.enqueue_many([_request(n) for n in range(10)])
        claimed = await queue.claim(SERVICE, "w", 10, 30.0)
        started = await asyncio.gather(*(queue.mark_processing(j, 30.0) for j in claimed))
        before, _ = queue.commits
        await asyncio.gather(*(queue.complete(j, {"n": j.payload["n"]}, 1.0) for j in started))
        after, _ = queue.commits
        assert after - before == 1
        stats = await queue.stats(SERVICE)
        assert stats.counts[JobStatus.COMPLETED] == 10

    async def test_a_lost_lease_in_a_shared_transaction_fails_alone(
        self, queue: SqliteQueue
    ) -> None:
        """A transition refused for its fencing token does not undo the others."""
        await queue.enqueue_many([_request(n) for n in range(3)])
        claimed = await queue.claim(SERVICE, "w", 3, 30.0)
        a, b, c = await asyncio.gather(*(queue.mark_processing(j, 30.0) for j in claimed))
        forged = dataclasses.replace(b, lease_token="forged")
        results = await asyncio.gather(
            queue.complete(a, {}, 1.0),
            queue.complete(forged, {}, 1.0),
            queue.complete(c, {}, 1.0),
            return_exceptions=True,
        )
        assert results[0] is None
        assert isinstance(results[1], LeaseLostError)
        assert results[2] is None
        assert [(await queue.get(j.id)).status for j in (a, b, c)] == [  # type: ignore[union-attr]
            JobStatus.COMPLETED,
            JobStatus.PROCESSING,
            JobStatus.COMPLETED,
        ]

    async def test_an_operation_that_breaks_fails_alone(self, queue: SqliteQueue) -> None:
        """An operation SQLite rejects fails by itself; its neighbours commit."""
        results = await asyncio.gather(
            queue.enqueue(_request(1)),
            queue.enqueue(_request(2, priority=2**70)),  # no SQLite integer holds this
            queue.enqueue(_request(3)),
            return_exceptions=True,
        )
        assert isinstance(results[1], OverflowError)
        assert (await queue.stats(SERVICE)).counts[JobStatus.READY] == 2

    async def test_writes_submitted_while_a_transaction_runs_go_together(
        self, tmp_path: Path
    ) -> None:
        """Writes of several loop turns, submitted while the writer thread is busy with a
        transaction, commit together in the next one, each with its own result."""
        q = SqliteQueue(tmp_path / "gather.db", busy_timeout=30)
        await q.open()
        blocker = sqlite3.connect(q.path, isolation_level=None)
        try:
            before, _ = q.commits
            blocker.execute("BEGIN IMMEDIATE")
            first = asyncio.ensure_future(q.enqueue(_request(0)))
            await asyncio.sleep(0.05)  # the writer waits for the lock with it
            rest = []
            for n in range(1, 6):
                rest.append(asyncio.ensure_future(q.enqueue(_request(n))))
                await asyncio.sleep(0)  # each in a turn of its own
            blocker.execute("ROLLBACK")
            jobs = await asyncio.gather(first, *rest)
            assert [job.payload["n"] for job in jobs] == list(range(6))
            assert q.commits[0] - before == 2
        finally:
            blocker.close()
            await q.close()

    async def test_a_broken_round_fails_its_callers_and_the_writer_goes_on(
        self, queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An error outside every operation (a bug in the round itself) fails that round's
        callers instead of ending the writer thread: later writes still commit."""
        db = queue._conn()
        run_writes = db._run_writes
        calls = 0

        def once_broken(batch: Sequence[Any]) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in the round")
            return run_writes(batch)

        monkeypatch.setattr(db, "_run_writes", once_broken)
        with pytest.raises(RuntimeError, match="a bug in the round"):
            await queue.enqueue(_request(1))
        job = await queue.enqueue(_request(2))
        assert (await queue.get(job.id)) is not None

    async def test_purge_works_in_chunks(
        self, queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A large purge runs as several short transactions, deletes everything old and
        keeps what finished within the retention."""
        monkeypatch.setattr(queue_module, "_PURGE_CHUNK", 3)
        await queue.enqueue_many([_request(n) for n in range(9)])
        for job in await queue.claim(SERVICE, "w", 9, 30.0):
            await queue.complete(await queue.mark_processing(job, 30.0), {}, 1.0)
        # Eight of them finished a minute ago: set on the row, not waited for, so that no
        # clock reading can land in the millisecond they finished in.
        with sqlite3.connect(queue.path, isolation_level=None) as conn:
            conn.execute("UPDATE usvc_jobs SET finished_at = finished_at - 60 WHERE id <= 8")
        conn.close()
        before, _ = queue.commits
        assert await queue.purge(SERVICE, 30.0) == 8
        assert queue.commits[0] - before == 3  # 3 + 3 + 2
        assert (await queue.stats(SERVICE)).counts[JobStatus.COMPLETED] == 1


class TestBusyAndClosed:
    """Another process holding the write lock, or a closed queue, gives QueueUnavailableError."""

    async def test_a_held_write_lock_times_out_then_recovers(self, tmp_path: Path) -> None:
        """Past busy_timeout the write fails as unavailable; once the lock is free it works."""
        q = SqliteQueue(tmp_path / "busy.db", busy_timeout=0.2)
        await q.open()
        blocker = sqlite3.connect(q.path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(QueueUnavailableError, match="locked"):
                await q.enqueue(_request())
            blocker.execute("ROLLBACK")
            job = await q.enqueue(_request())
            assert (await q.get(job.id)) is not None
        finally:
            blocker.close()
            await q.close()

    async def test_waiting_for_the_lock_does_not_block_the_event_loop(self, tmp_path: Path) -> None:
        """A write that finds the lock taken waits off the loop: a coroutine on the same
        loop gets to release the lock, and the write then succeeds (a loop blocked by the
        wait would fail it as locked after busy_timeout)."""
        q = SqliteQueue(tmp_path / "wait.db", busy_timeout=30)
        await q.open()
        blocker = sqlite3.connect(q.path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            first = asyncio.ensure_future(q.enqueue(_request(1)))
            await asyncio.sleep(0.05)
            second = asyncio.ensure_future(q.enqueue(_request(2)))  # queues behind the first
            await asyncio.sleep(0.05)
            assert not first.done() and not second.done()
            blocker.execute("ROLLBACK")
            jobs = await asyncio.gather(first, second)
            assert [j.payload["n"] for j in jobs] == [1, 2]
            assert int(jobs[0].id) < int(jobs[1].id)  # in the order they were submitted
            third = await q.enqueue(_request(3))  # the loop has the connection back
            assert (await q.get(third.id)) is not None
        finally:
            blocker.close()
            await q.close()

    async def test_a_closed_queue_refuses_work(self, tmp_path: Path) -> None:
        """After close, operations fail as unavailable; close twice is harmless."""
        q = SqliteQueue(tmp_path / "closed.db")
        await q.open()
        await q.close()
        await q.close()
        with pytest.raises(QueueUnavailableError, match="not open"):
            await q.enqueue(_request())
        with pytest.raises(QueueUnavailableError, match="not open"):
            await q.ping()

    async def test_close_waits_for_submitted_writes(self, tmp_path: Path) -> None:
        """Writes already submitted when close starts are committed, not dropped."""
        path = tmp_path / "drain.db"
        q = SqliteQueue(path)
        await q.open()
        pending = [asyncio.ensure_future(q.enqueue(_request(n))) for n in range(20)]
        await asyncio.sleep(0)  # let them submit
        await q.close()
        jobs = await asyncio.gather(*pending)
        assert len({job.id for job in jobs}) == 20
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM usvc_jobs").fetchone()[0] == 20
        conn.close()


class TestCheckpoints:
    """The WAL is copied back and started over by the helper, not left to grow."""

    async def test_the_wal_starts_over_while_writes_go_on(self, tmp_path: Path) -> None:
        """Transactions follow each other without a pause, and the WAL still starts over
        again and again (the checkpoint sequence number in its header moves on): the loop
        finishes the helper's checkpoints between its own transactions. A WAL that only
        grew would never start over. Counted in restarts, not bounded in frames: how many
        frames the WAL reaches first depends on when a loaded machine runs the helper."""
        q = SqliteQueue(tmp_path / "wal.db", durability="normal")
        await q.open()
        wal = Path(f"{q.path}-wal")
        try:
            restarts, written = 0, 0
            sequence = _wal_checkpoint_sequence(wal)
            while restarts < 10:
                assert written < 20_000, f"the WAL started over {restarts} times in {written}"
                await q.enqueue(_request(written, idempotency_key=f"k{written}"))
                written += 1
                now = _wal_checkpoint_sequence(wal)
                restarts += now != sequence
                sequence = now
            # Wait for the helper's checkpoints (a read runs after them): another one
            # running at the same time would make the one below report busy, -1 frames.
            await q.ping()
            with sqlite3.connect(q.path) as conn:
                busy, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            conn.close()
            assert (busy, frames >= 0) == (0, True)
            assert frames < 1000  # just started over: a checkpoint's worth at the most
        finally:
            await q.close()


def _wal_checkpoint_sequence(wal: Path) -> int:
    """The checkpoint sequence number of a WAL file's header: it moves on at every
    restart of the WAL (https://sqlite.org/fileformat2.html#walformat)."""
    with wal.open("rb") as f:
        header = f.read(16)
    return int.from_bytes(header[12:16], "big")


class TestRowsToJobs:
    """Every column of a row reaches the right field of the Job."""

    def test_the_columns_follow_the_fields_of_job(self) -> None:
        """job_from_row builds Jobs positionally: the column list must stay in field order."""
        columns = [c.strip() for c in statements._COLUMNS.split(",")]
        fields = [f.name for f in dataclasses.fields(Job)]
        assert fields == [*columns, "payload_error", "attempt_history"]

    async def test_every_field_comes_from_its_column(self, queue: SqliteQueue) -> None:
        """A row with a distinct value in every column reads back field by field."""
        values = {
            "microservice": SERVICE,
            "action": "echo",
            "payload": '{"action": "echo", "n": 7}',
            "status": "Failed",
            "priority": 4,
            "run_at": 1000.5,
            "attempts": 2,
            "max_attempts": 5,
            "token": "tok",
            "idempotency_key": "key",
            "lease_owner": "owner",
            "lease_token": "lease",
            "lease_expires_at": 2000.25,
            "results": '{"r": 1}',
            "error_code": "HANDLER_ERROR",
            "error_message": "boom",
            "runtime_ms": 12.5,
            "created_at": 900.0,
            "updated_at": 3000.0,
            "started_at": 1500.0,
            "finished_at": 3000.0,
            "unique_key": "slot",
            "cancel_requested": 1,
        }
        with sqlite3.connect(queue.path, isolation_level=None) as conn:
            job_id = conn.execute(
                f"INSERT INTO usvc_jobs ({', '.join(values)}) "
                f"VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            ).lastrowid
        conn.close()
        job = await queue.get(str(job_id))
        assert job is not None

        def at(seconds: float) -> datetime:
            return datetime.fromtimestamp(seconds, UTC)

        assert dataclasses.asdict(job) == {
            **values,
            "id": str(job_id),
            "payload": {"action": "echo", "n": 7},
            "status": JobStatus.FAILED,
            "run_at": at(1000.5),
            "lease_expires_at": at(2000.25),
            "results": {"r": 1},
            "created_at": at(900.0),
            "updated_at": at(3000.0),
            "started_at": at(1500.0),
            "finished_at": at(3000.0),
            "cancel_requested": True,
            "payload_error": None,
            # a Failed job with a start and no log: its one attempt is the row's own
            "attempt_history": (
                {
                    "number": 0,
                    "worker_id": "owner",
                    "started_at": at(1500.0),
                    "finished_at": at(3000.0),
                    "outcome": AttemptOutcome.FAILED,
                    "error_code": "HANDLER_ERROR",
                    "error_message": "boom",
                },
            ),
        }


class TestOtherProducers:
    """Rows written by other programs with plain SQL are jobs like any other."""

    async def test_a_minimal_insert_gets_defaults_from_the_schema(self, queue: SqliteQueue) -> None:
        """microservice, action and payload are enough: Ready, due now, token = id."""
        with sqlite3.connect(queue.path, isolation_level=None) as conn:
            job_id = conn.execute(
                "INSERT INTO usvc_jobs (microservice, action, payload) VALUES (?, ?, ?)",
                (SERVICE, "echo", '{"action": "echo", "n": 5}'),
            ).lastrowid
        conn.close()
        [job] = await queue.claim(SERVICE, "w", 5, 30.0)
        assert job.id == str(job_id)
        assert (job.token, job.max_attempts, job.payload["n"]) == (job.id, 3, 5)
        assert job.created_at is not None

    async def test_bad_json_is_delivered_with_payload_error(self, queue: SqliteQueue) -> None:
        """Invalid JSON text is claimed with payload_error saying where it broke."""
        with sqlite3.connect(queue.path, isolation_level=None) as conn:
            conn.execute(
                "INSERT INTO usvc_jobs (microservice, action, payload) VALUES (?, ?, ?)",
                (SERVICE, "echo", '{"action": "echo", "n": }'),
            )
        conn.close()
        [job] = await queue.claim(SERVICE, "w", 5, 30.0)
        assert job.payload is None
        assert "Expecting value" in (job.payload_error or "")
        with pytest.raises(LeaseLostError):
            await queue.complete(job, {}, 1.0)  # still Assigned: the worker must start it first


def _plan(conn: sqlite3.Connection, statement: str, params: Sequence[object]) -> str:
    rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", tuple(params)).fetchall()
    return " ; ".join(str(row[3]) for row in rows)


class TestQueryPlans:
    """Each statement reads through the index made for it. SQLite plans without
    statistics, so a new index can steal a statement from the partial index it relied on
    (the index of jobs by creation time once took stats' and the claim's counts): a stolen
    plan reads every row of the service."""

    @pytest.fixture
    def conn(self, tmp_path: Path) -> Iterator[sqlite3.Connection]:
        """A connection on a file at the current schema."""
        conn = sqlite3.connect(tmp_path / "plans.db", isolation_level=None)
        prepare(conn, "plans.db")
        yield conn
        conn.close()

    @pytest.mark.parametrize(
        ("name", "uses"),
        [
            ("CLAIM", ["usvc_jobs_ready (microservice=?)"]),
            ("CLAIM_STARTED", ["usvc_jobs_ready (microservice=?)"]),
            (
                "_READY_COUNT",
                [
                    "COVERING INDEX usvc_jobs_ready_action (microservice=? AND status=? AND "
                    "action=?)"
                ],
            ),
            (
                "_NEXT_READY_PRIORITY",
                [
                    "COVERING INDEX usvc_jobs_ready_action (microservice=? AND status=? AND "
                    "action=? AND priority<?)"
                ],
            ),
            (
                "_SCHEDULED_COUNT",
                [
                    "COVERING INDEX usvc_jobs_ready_action (microservice=? AND status=? AND "
                    "action=? AND priority=? AND run_at>?)"
                ],
            ),
            (
                "_DUE_IN_ORDER",
                [
                    "COVERING INDEX usvc_jobs_ready_action (microservice=? AND status=? AND "
                    "action=? AND priority=? AND run_at<?)"
                ],
            ),
            ("_FIRST_READY_ACTION", ["COVERING INDEX usvc_jobs_ready_action (microservice=? AND"]),
            ("_DISTINCT_CODE", ["COVERING INDEX usvc_jobs_error_created (microservice=? AND "]),
            ("_BY_IDEMPOTENCY", ["usvc_jobs_idempotency_all (microservice=? AND idempotency_"]),
            ("_REVOKED", ["PRIMARY KEY (session_id=?)"]),
            ("_FORGET_SESSIONS", ["usvc_revoked_sessions_until (until<?)"]),
            ("_RECLAIM", ["usvc_jobs_leased (microservice=? AND lease_expires_at<?)"]),
            ("_PURGE", ["usvc_jobs_finished (microservice=? AND status=? AND finished_at<?)"]),
            ("_RUNNING", ["usvc_jobs_leased (microservice=?)"]),
            (
                "_NEXT_READY_ACTION",
                [
                    "COVERING INDEX usvc_jobs_ready_action (microservice=? AND status=? AND "
                    "action>?)"
                ],
            ),
            (
                "_DUE_OF_ACTION",
                [
                    "COVERING INDEX usvc_jobs_ready_action (microservice=? AND status=? AND "
                    "action=?)"
                ],
            ),
            (
                "_OTHERS_BY_ACTION",
                ["usvc_jobs_leased", "usvc_job_counts USING PRIMARY KEY (microse"],
            ),
            ("_IN_MINUTE", ["usvc_jobs_finished (microservice=? AND status=? AND finished_at>?"]),
            ("_UNIQUE_HOLDER", ["usvc_jobs_unique (microservice=? AND unique_key=?)"]),
        ],
    )
    def test_statements_use_their_indexes(
        self, conn: sqlite3.Connection, name: str, uses: list[str]
    ) -> None:
        """The hot statements and the operators' reads search their own index and never
        the index of every job by creation time or the whole table."""
        statement = getattr(statements, name)
        plan = _plan(conn, statement, [None] * statement.count("?"))
        for index in uses:
            assert index in plan, plan
        assert "usvc_jobs_created" not in plan, plan
        assert not any(step.strip() == "SCAN usvc_jobs" for step in plan.split(";")), plan

    @pytest.mark.parametrize(
        ("where", "searches"),
        [
            (JobFilter(SERVICE), ["usvc_jobs_created (created_at<?)"]),
            (
                JobFilter(SERVICE, statuses=frozenset({JobStatus.FAILED, JobStatus.READY})),
                [
                    "usvc_jobs_failed_created (microservice=? AND created_at<?)",
                    "usvc_jobs_ready_created (microservice=? AND created_at<?)",
                ],
            ),
            (
                JobFilter(SERVICE, statuses=frozenset({JobStatus.FAILED}), actions=frozenset("a")),
                ["usvc_jobs_action_created (microservice=? AND action=? AND created_at<?)"],
            ),
            (
                JobFilter(SERVICE, actions=frozenset("a"), error_codes=frozenset({"X", "Y"})),
                ["usvc_jobs_error_created (microservice=? AND error_code=? AND created_at<?)"] * 2,
            ),
            (
                JobFilter(SERVICE, statuses=frozenset({JobStatus.PROCESSING})),
                ["usvc_jobs_leased (microservice=?)"],  # the running jobs, few: sorted
            ),
            (
                JobFilter(SERVICE, scheduled=True),
                ["usvc_jobs_ready_created (microservice=? AND created_at<?)"],
            ),
            (
                JobFilter(SERVICE, error_text="refused"),
                ["usvc_jobs_error_created (microservice=? AND error_code=? AND created_at<?)"],
            ),
        ],
    )
    def test_pages_of_jobs_seek_their_filters_index_in_creation_order(
        self, conn: sqlite3.Connection, where: JobFilter, searches: list[str]
    ) -> None:
        """list_jobs reads newest first along the index of its filter's most selective
        kind of value (error code, action, status), one seek per value from the cursor
        on, merged in order: it sorts nothing (but ties on the index of every job) and
        never walks the rows of other values (a rare error code or an absent action costs
        a seek, not a scan)."""
        conn.execute(
            "INSERT INTO usvc_jobs (microservice, payload, error_code) VALUES (?, '{}', 'X')",
            (SERVICE,),
        )
        plans: list[str] = []

        class Recording:
            def execute(self, statement: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
                if statement.lstrip().startswith("SELECT created_at"):
                    plans.append(_plan(conn, statement, params))
                return conn.execute(statement, params)

        statements.newest_first(Recording(), "1", where, (1e12, 1), 10)  # type: ignore[arg-type]
        assert len(plans) == len(searches), plans
        for plan, search in zip(plans, searches, strict=True):
            assert search in plan, plan
            if "usvc_jobs_leased" not in search:
                assert "TEMP B-TREE FOR ORDER BY" not in plan, plan  # only RIGHT PART (ties)
            assert not any(step.strip() == "SCAN usvc_jobs" for step in plan.split(";")), plan


class TestClaimLimits:
    """Claims under max_running read each action on its own."""

    @staticmethod
    def _instructions_of_a_limited_claim(path: Path, backlog: int) -> tuple[int, list[Job]]:
        """SQLite VM instructions (in hundreds) that a claim of 10 under {"slow": 2} runs
        on a file with ``backlog`` Ready "slow" jobs ahead of 20 "fast" ones and two
        "slow" ones running; and the jobs it claimed."""
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            prepare(conn, str(path))
            rows = [("slow", '{"action": "slow"}', 5)] * (backlog + 2)
            rows += [("fast", '{"action": "fast"}', 0)] * 20
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO usvc_jobs (microservice, action, payload, priority) "
                f"VALUES ('{SERVICE}', ?, ?, ?)",
                rows,
            )
            conn.execute("UPDATE usvc_jobs SET status = 'Processing' WHERE id <= 2")
            conn.execute("COMMIT")
            steps = 0

            def count() -> int:
                nonlocal steps
                steps += 1
                return 0

            conn.execute("BEGIN IMMEDIATE")
            conn.set_progress_handler(count, 100)
            claimed = statements.claim_limited(
                conn, SERVICE, "w", 10, 30.0, limits={"slow": 2}, start=True
            )
            conn.set_progress_handler(None, 100)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return steps, claimed

    def test_a_long_backlog_of_a_saturated_action_costs_a_claim_nothing(
        self, tmp_path: Path
    ) -> None:
        """The claim takes 10 "fast" jobs past the saturated "slow" ones, and the work it
        does (counted in SQLite instructions, not time) does not grow with their number."""
        small, claimed_small = self._instructions_of_a_limited_claim(tmp_path / "s.db", 50)
        large, claimed_large = self._instructions_of_a_limited_claim(tmp_path / "l.db", 20_000)
        for claimed in (claimed_small, claimed_large):
            assert [j.action for j in claimed] == ["fast"] * 10
        assert large <= small + 5, (small, large)

    @pytest.mark.parametrize("limits", [None, {}])
    async def test_without_limits_the_claim_is_the_plain_statement(
        self, queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch, limits: dict[str, int] | None
    ) -> None:
        """No limits, or an empty map: the one-statement claim of every worker, untouched
        (the drain benchmark's speed); the per-action reads never run."""

        def refuse(*args: object, **kwargs: object) -> list[Job]:
            raise AssertionError("claim_limited ran for a claim without limits")

        monkeypatch.setattr(statements, "claim_limited", refuse)
        await queue.enqueue_many([_request(n) for n in range(3)])
        assert len(await queue.claim_and_start(SERVICE, "w", 5, 30.0, max_running=limits)) == 3


class TestOperatorWrites:
    """retry_failed goes in short transactions, like purge."""

    async def test_retry_failed_by_filter_works_in_chunks(
        self, queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every matching Failed job is retried once, three per transaction, also when
        they share one creation time (the chunks go by creation time, then id)."""
        monkeypatch.setattr(queue_module, "_RETRY_CHUNK", 3)
        await queue.enqueue_many([_request(n) for n in range(8)])
        for job in await queue.claim_and_start(SERVICE, "w", 8, 30.0):
            await queue.fail(job, "TIMEOUT", "slow", 1.0)
        before, _ = queue.commits
        where = JobFilter(SERVICE, error_codes=frozenset({"TIMEOUT"}))
        assert await queue.retry_failed(SERVICE, where=where) == 8
        assert queue.commits[0] - before == 3  # 3 + 3 + 2
        stats = await queue.stats(SERVICE)
        assert (stats.counts[JobStatus.READY], stats.counts[JobStatus.FAILED]) == (8, 0)


# --- store: what operators read on a large file ------------------------------------------------


class TestOperatorReads:
    """Counts kept by triggers stay exact; a text search reads a bounded stretch per call."""

    async def test_counts_kept_by_triggers_match_the_rows(self, queue: SqliteQueue) -> None:
        """Finishing, an operator's retry, purge, and rows other programs write all keep
        the table of counts equal to a count of the rows themselves."""
        jobs = await queue.enqueue_many([_request(n) for n in range(6)])
        started = await queue.claim_and_start(SERVICE, "w", 6, 30.0)
        for job in started[:3]:
            await queue.complete(job, {}, 1.0)
        for job in started[3:5]:
            await queue.fail(job, "TIMEOUT", "slow", 1.0)
        assert await queue.retry_failed(SERVICE, [started[3].id]) == 1
        with sqlite3.connect(queue.path, isolation_level=None) as conn:
            conn.execute(
                "INSERT INTO usvc_jobs (microservice, action, payload, status, finished_at) "
                "VALUES (?, 'other', '{}', 'Completed', 0)",
                (SERVICE,),
            )
        conn.close()
        await asyncio.sleep(0.05)
        assert await queue.purge(SERVICE, 3600.0) == 1  # the row finished in 1970

        def recount() -> tuple[dict[str, int], dict[str, int]]:
            with sqlite3.connect(queue.path, isolation_level=None) as c:
                kept = dict(
                    c.execute(
                        "SELECT status, sum(jobs) FROM usvc_job_counts WHERE microservice = ? "
                        "GROUP BY status",
                        (SERVICE,),
                    ).fetchall()
                )
                rows = dict(
                    c.execute(
                        "SELECT status, count(*) FROM usvc_jobs WHERE microservice = ? "
                        "AND status IN ('Completed', 'Failed') GROUP BY status",
                        (SERVICE,),
                    ).fetchall()
                )
            c.close()
            return {k: v for k, v in kept.items() if v}, rows

        kept, rows = recount()
        assert kept == rows == {"Completed": 3, "Failed": 1}
        stats = await queue.stats(SERVICE)
        assert {s: stats.counts[s] for s in JobStatus} == {
            JobStatus.READY: 1,
            JobStatus.ASSIGNED: 0,
            JobStatus.PROCESSING: 1,
            JobStatus.COMPLETED: 3,
            JobStatus.FAILED: 1,
        }
        assert len(jobs) == 6

    async def test_a_file_of_schema_7_keeps_exact_counts_through_every_finish(
        self, tmp_path: Path
    ) -> None:
        """A schema-7 file (counts kept by a trigger on every update) opens at the current
        version with its counts, and every way a job finishes or leaves Failed (complete,
        fail, a retry with no attempts left, a cancel, a rescue with no attempts left, an
        operator's retry, purge) keeps them equal to a count of the rows."""
        path = tmp_path / "v7.db"
        with sqlite3.connect(path, isolation_level=None) as conn:
            prepare(conn, str(path), upto=7)
            conn.executemany(
                "INSERT INTO usvc_jobs (microservice, action, payload, status, finished_at) "
                "VALUES (?, ?, '{}', ?, 0)",
                [(SERVICE, "old", "Completed"), (SERVICE, "old", "Failed")],
            )
        conn.close()
        q = SqliteQueue(path)
        await q.open()
        try:
            assert _pragma(path, "user_version") == SCHEMA_VERSION
            await q.enqueue_many([_request(n, max_attempts=1) for n in range(7)])
            started = await q.claim_and_start(SERVICE, "w", 5, 30.0)
            await asyncio.gather(*(q.complete(job, {}, 1.0) for job in started[:2]))
            await q.fail(started[2], "TIMEOUT", "slow", 1.0)
            assert await q.retry(started[3], "E", "no", 0.0, 1.0) is JobStatus.FAILED
            assert await q.cancel(SERVICE, (await q.claim(SERVICE, "w", 1, 30.0))[0].id) == (
                JobStatus.FAILED
            )
            await q.extend_leases([started[4]], -1.0)  # its lease ends: rescued, spent
            assert len((await q.reclaim_expired(SERVICE)).failed) == 1
            assert await q.retry_failed(SERVICE, [started[2].id]) == 1
            assert await q.purge(SERVICE, 3600.0) == 2  # the old rows finished in 1970
        finally:
            await q.close()
        with sqlite3.connect(path, isolation_level=None) as c:
            kept = c.execute(
                "SELECT action, status, jobs FROM usvc_job_counts WHERE jobs <> 0 ORDER BY 1, 2"
            ).fetchall()
            rows = c.execute(
                "SELECT action, status, count(*) FROM usvc_jobs "
                "WHERE status IN ('Completed', 'Failed') GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
        c.close()
        assert kept == rows == [("echo", "Completed", 2), ("echo", "Failed", 3)]

    async def test_a_text_search_reads_a_bounded_stretch_and_pages_on(
        self, queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With 4 jobs read per error code and call, a rare text comes back in short
        pages whose cursors search on; together they hold every match once, newest first."""
        monkeypatch.setattr(statements, "TEXT_SCAN", 4)
        await queue.enqueue_many([_request(n) for n in range(23)])
        matches: list[str] = []
        for n, job in enumerate(await queue.claim_and_start(SERVICE, "w", 23, 30.0)):
            code = "TIMEOUT" if n % 2 else "HANDLER_ERROR"
            text = "needle in the hay" if n % 5 == 0 else "hay only"
            await queue.fail(job, code, text, 1.0)
            if n % 5 == 0:
                matches.append(job.id)
        where = JobFilter(SERVICE, error_text="NEEDLE")
        found: list[str] = []
        cursor: str | None = None
        calls = 0
        while True:
            page = await queue.list_jobs(where, limit=2, cursor=cursor)
            calls += 1
            found.extend(job.id for job in page.jobs)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert found == sorted(matches, key=int, reverse=True)
        assert calls > 3  # short pages: the search went on in steps

    async def test_a_file_of_schema_5_gets_its_counts_and_keeps_its_running_jobs(
        self, tmp_path: Path
    ) -> None:
        """Migrating counts the finished jobs already there, and a job Processing before
        the upgrade counts as started (a rescue spends its attempt, as it did before)."""
        path = tmp_path / "v5.db"
        with sqlite3.connect(path, isolation_level=None) as conn:
            prepare(conn, str(path), upto=5)
            conn.executemany(
                "INSERT INTO usvc_jobs (microservice, action, payload, status, attempts, "
                "lease_owner, lease_token, lease_expires_at, started_at) "
                "VALUES (?, 'a', '{}', ?, ?, ?, ?, ?, ?)",
                [
                    (SERVICE, "Completed", 1, None, None, None, 1.0),
                    (SERVICE, "Completed", 1, None, None, None, 1.0),
                    (SERVICE, "Failed", 1, None, None, None, 1.0),
                    (SERVICE, "Processing", 1, "old-worker", "t", 1.0, 1.0),
                ],
            )
        conn.close()
        q = SqliteQueue(path)
        await q.open()
        try:
            stats = await q.stats(SERVICE)
            assert (stats.counts[JobStatus.COMPLETED], stats.counts[JobStatus.FAILED]) == (2, 1)
            rescued = await q.reclaim_expired(SERVICE)
            assert len(rescued.requeued) == 1
            [job] = (
                await q.list_jobs(JobFilter(SERVICE, statuses=frozenset({JobStatus.READY})))
            ).jobs
            assert job.attempts == 1  # spent: it may well have run
        finally:
            await q.close()

    async def test_ready_jobs_are_counted_at_every_priority_and_without_an_action(
        self, queue: SqliteQueue
    ) -> None:
        """stats and activity count the Ready jobs of each action over all its priorities
        (each read in run-at order), jobs whose payload names no action too, and the
        oldest due job is the one waiting longest whatever its priority."""
        with sqlite3.connect(queue.path, isolation_level=None) as conn:
            now = conn.execute(f"SELECT {NOW}").fetchone()[0]
            conn.executemany(
                "INSERT INTO usvc_jobs (microservice, action, payload, priority, run_at, "
                "created_at) VALUES (?, ?, '{}', ?, ?, ?)",
                [
                    (SERVICE, "a", 5, now - 10, now - 10),
                    (SERVICE, "a", 0, now - 500, now - 1000),  # due 500 s ago
                    (SERVICE, "a", -2, now + 3600, now - 2000),  # scheduled
                    (SERVICE, "a", 0, now + 60, now - 5),  # scheduled
                    (SERVICE, "", 0, now - 20, now - 20),
                ],
            )
        conn.close()
        stats = await queue.stats(SERVICE)
        assert (stats.counts[JobStatus.READY], stats.scheduled) == (5, 2)
        assert stats.oldest_ready_age_seconds is not None
        assert 500 <= stats.oldest_ready_age_seconds < 600
        activity = await queue.activity(SERVICE, minutes=1)
        assert {a: c[JobStatus.READY] for a, c in activity.counts.items()} == {"a": 4, "": 1}
        assert activity.scheduled == {"a": 2}
        ages = activity.oldest_ready_age_seconds
        assert 500 <= ages["a"] < 600
        assert 20 <= ages[""] < 120

    async def test_revocations_past_their_time_are_deleted(self, queue: SqliteQueue) -> None:
        """The table of revoked sessions holds only live ones, however many logouts."""
        soon = datetime.now(UTC) + timedelta(seconds=0.3)
        for n in range(50):
            await queue.revoke_session(f"s{n}", soon)
        await asyncio.sleep(0.5)
        await queue.revoke_session("last", datetime.now(UTC) + timedelta(hours=1))
        with sqlite3.connect(queue.path) as conn:
            rows = conn.execute("SELECT session_id FROM usvc_revoked_sessions").fetchall()
        conn.close()
        assert rows == [("last",)]
