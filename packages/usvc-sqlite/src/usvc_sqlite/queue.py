"""``SqliteQueue``: the whole queue port on one SQLite file, shared by the worker processes
of one machine."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from usvc_core.adapter_support import (
    QueueBase,
    check_action_name,
    check_count_limit,
    check_filter,
    check_minutes,
    check_page_limit,
    check_retry_target,
    check_worker_record,
    decode_cursor,
    encode_cursor,
)
from usvc_core.errors import ConfigurationError, QueueUnavailableError
from usvc_core.jobs import Job, JobStatus
from usvc_core.ports import (
    FIND_LIMIT,
    EnqueueRequest,
    FleetAdmin,
    JobFilter,
    JobPage,
    JobQueue,
    LeaseRenewal,
    QueueActivity,
    QueueAdmin,
    QueueStats,
    ReclaimResult,
    StoreClock,
    WorkerRecord,
)

from usvc_sqlite import fleet
from usvc_sqlite import statements as sql
from usvc_sqlite.connection import Durability, SqliteConnection
from usvc_sqlite.schema import SqliteFileError, prepare

__all__ = ["DEFAULT_ATTEMPT_HISTORY", "SqliteQueue"]

#: How many attempts of a job ``get`` shows by default (``JOB_ATTEMPT_HISTORY``).
DEFAULT_ATTEMPT_HISTORY = 20

# Compact, standard JSON (no NaN); built once, json.dumps with options builds one per call.
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_PURGE_CHUNK = 500  # rows per purge transaction, so other processes get the lock in between
# Pause after each purge chunk, at least as long as the chunk took: a writer of another
# process that found the lock taken sleeps in SQLite's busy handler (steps of 1 to 100 ms)
# and would miss a shorter gap, again and again, while the purge goes on.
_PURGE_PAUSE = 0.02
_RETRY_CHUNK = 1000  # jobs per retry_failed transaction, for the same reason


class SqliteQueue(QueueBase, JobQueue, QueueAdmin, FleetAdmin, StoreClock):
    """Implements :class:`usvc_core.ports.JobQueue`, :class:`usvc_core.ports.QueueAdmin`
    and :class:`usvc_core.ports.FleetAdmin` on an SQLite file (WAL mode).

    Any number of processes on one machine may open the same file: claims take the write
    lock (``BEGIN IMMEDIATE``) and move jobs with one ``UPDATE ... RETURNING``, so a job is
    handed to one claimer at a time. Lease and run-at times come from SQLite's clock. The
    schema is created and migrated by :meth:`open`.

    Concurrent writes of one process (say, the completions of ten jobs) share one
    transaction and one commit (group commit); each caller returns once its transaction is
    on disk as ``durability`` promises (see :class:`Durability`).

    Args:
        path: the database file (created if missing; its directory must exist).
        durability: ``"full"`` (default) or ``"normal"``; see :class:`Durability`.
        busy_timeout: seconds to wait for another process's write lock before the
            operation fails with :class:`~usvc_core.errors.QueueUnavailableError`.
        attempt_history: how many attempts of each job ``get`` keeps and shows (the last
            ones; ``JOB_ATTEMPT_HISTORY``).

    .. versionadded:: usvc-testing 0.2.0
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability | str = Durability.FULL,
        busy_timeout: float = 5.0,
        attempt_history: int = DEFAULT_ATTEMPT_HISTORY,
    ) -> None:
        super().__init__()
        if isinstance(attempt_history, bool) or not isinstance(attempt_history, int):
            raise ConfigurationError(f"attempt_history={attempt_history!r} must be a whole number")
        if not 1 <= attempt_history <= 1000:
            raise ConfigurationError(
                f"attempt_history={attempt_history!r}: keep 1 to 1000 attempts per job"
            )
        self.attempt_history = attempt_history
        self.path = Path(path)
        try:
            self.durability = Durability(durability)
        except ValueError:
            choices = ", ".join(d.value for d in Durability)
            raise ConfigurationError(
                f"durability={durability!r} is not one of: {choices}"
            ) from None
        if busy_timeout < 0:
            raise ConfigurationError(f"busy_timeout={busy_timeout!r} must not be negative")
        self.busy_timeout = busy_timeout
        self._db: SqliteConnection | None = None
        self._closed_counts = (0, 0)

    def __repr__(self) -> str:
        return f"SqliteQueue({str(self.path)!r}, durability={self.durability.value!r})"

    # --- lifecycle -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        where = str(self.path)
        if not self.path.parent.is_dir():
            raise SqliteFileError(
                f"cannot create the SQLite queue {where}: directory {self.path.parent} "
                "does not exist"
            )
        if self.path.is_dir():
            raise SqliteFileError(f"cannot use {where} as the SQLite queue: it is a directory")
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                cached_statements=64,
                check_same_thread=False,  # opened on the helper thread, written from the loop
            )
        except sqlite3.OperationalError as exc:
            # Retrying cannot fix a file this process may not open (permissions, a socket).
            raise SqliteFileError(f"cannot open the SQLite queue {where}: {exc}") from exc
        try:
            _use_wal(conn, where, patience=self.busy_timeout)
            conn.execute("PRAGMA journal_size_limit = 67108864")
            prepare(conn, where)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc):
                raise SqliteFileError(f"{where} is not an SQLite database file") from exc
            if "readonly" in str(exc):
                raise SqliteFileError(
                    f"the SQLite queue {where} is read-only for this process: {exc}"
                ) from exc
            raise
        except BaseException:
            conn.close()
            raise
        return conn

    async def open(self) -> None:
        if self._db is not None:
            return
        db = SqliteConnection(
            self._connect,
            str(self.path),
            self.durability,
            wal_path=f"{self.path}-wal",
            busy_timeout=self.busy_timeout,
        )
        await db.open()
        self._db = db

    async def store_now(self) -> datetime:
        """The time of the file system holding the database (:class:`StoreClock`): a byte
        written to ``<path>-clock`` and its modification time read back, stamped by the
        kernel, whose clock every process on the file (one machine) shares. A process's
        own clock skew does not reach it."""
        return await asyncio.to_thread(_file_system_time, Path(f"{self.path}-clock"))

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        await db.close()
        self._closed_counts = (db.transactions, db.operations)

    @property
    def commits(self) -> tuple[int, int]:
        """(write transactions committed, operations they carried) since the last open."""
        db = self._db
        return (db.transactions, db.operations) if db is not None else self._closed_counts

    def _conn(self) -> SqliteConnection:
        if self._db is None:
            raise QueueUnavailableError(f"SQLite queue {self.path} is not open")
        return self._db

    async def ping(self) -> None:
        await self._conn().call(lambda conn: conn.execute("SELECT 1").fetchone())

    # --- producing -------------------------------------------------------------------------

    @staticmethod
    def _encode(r: EnqueueRequest) -> sql.EncodedRequest:
        if r.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        text = _JSON.encode(dict(r.payload))
        return sql.EncodedRequest(
            microservice=r.microservice,
            payload=json.loads(text),
            text=text,
            priority=r.priority,
            delay=r.delay_seconds,
            max_attempts=r.max_attempts,
            token=r.token,
            idempotency_key=r.idempotency_key,
            unique_key=r.unique_key,
        )

    async def enqueue(self, request: EnqueueRequest) -> Job:
        encoded = self._encode(request)
        job = await self._conn().write(lambda conn: sql.insert(conn, encoded), durable=True)
        self._notify()
        return job

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]:
        encoded = [self._encode(r) for r in requests]
        if not encoded:
            return []
        jobs = await self._conn().write(lambda conn: sql.insert_many(conn, encoded), durable=True)
        self._notify()
        return jobs

    # --- owning ------------------------------------------------------------------------------

    async def _claim(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease: float,
        *,
        start: bool,
        limits: dict[str, int],
    ) -> list[Job]:
        if limit <= 0:
            return []

        def claim(conn: sqlite3.Connection) -> list[Job]:
            # Paused actions are held back as actions at a limit of 0.
            held = {**limits, **fleet.paused_limits(conn, microservice)}
            if held:
                return sql.claim_limited(
                    conn, microservice, worker_id, limit, lease, limits=held, start=start
                )
            return sql.claim(conn, microservice, worker_id, limit, lease, start=start)

        return await self._conn().write(claim, durable=False)

    async def mark_processing(self, job: Job, lease_seconds: float) -> Job:
        return await self._conn().write(
            lambda conn: sql.start(conn, job, lease_seconds), durable=False
        )

    async def extend_leases(self, jobs: Sequence[Job], lease_seconds: float) -> LeaseRenewal:
        if not jobs:
            return LeaseRenewal()
        owned = list(jobs)
        return await self._conn().write(
            lambda conn: sql.extend(conn, owned, lease_seconds), durable=False
        )

    async def complete(self, job: Job, results: Any, runtime_ms: float) -> None:
        text = "null" if results is None else _JSON.encode(results)
        # The completions of one turn of the event loop (a batch finishing) go to SQLite as
        # one operation: one call per batch instead of one per job.
        db = self._db  # self._conn() inlined: this runs once per job
        if db is None:
            raise QueueUnavailableError(f"SQLite queue {self.path} is not open")
        await db.write_row(sql.complete_many, (job, text, runtime_ms), durable=True)

    async def fail(
        self, job: Job, error_code: str, error_message: str, runtime_ms: float | None
    ) -> None:
        await self._conn().write(
            lambda conn: sql.fail(conn, job, error_code, error_message, runtime_ms),
            durable=True,
        )

    async def retry(
        self,
        job: Job,
        error_code: str,
        error_message: str,
        delay_seconds: float,
        runtime_ms: float | None,
    ) -> JobStatus:
        return await self._conn().write(
            lambda conn: sql.retry(
                conn,
                job,
                error_code,
                error_message,
                delay=delay_seconds,
                runtime_ms=runtime_ms,
                history=self.attempt_history,
            ),
            durable=True,
        )

    async def release(self, jobs: Sequence[Job]) -> int:
        if not jobs:
            return 0
        owned = list(jobs)
        released = await self._conn().write(
            lambda conn: sql.release(conn, owned, self.attempt_history), durable=True
        )
        if released:
            self._notify()
        return released

    async def reclaim_expired(self, microservice: str) -> ReclaimResult:
        return await self._conn().write(
            lambda conn: self._reclaim(conn, microservice), durable=False
        )

    def _reclaim(self, conn: sqlite3.Connection, microservice: str) -> ReclaimResult:
        """The reclaim of expired leases (also ends the leases of gone workers)."""
        return sql.reclaim(conn, microservice, self.attempt_history)

    # --- operating (QueueAdmin) ------------------------------------------------------------

    async def cancel(self, microservice: str, job_id: str) -> JobStatus:
        return await self._conn().write(
            lambda conn: sql.cancel(conn, microservice, job_id), durable=True
        )

    async def list_jobs(
        self, where: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        check_page_limit(limit)
        check_filter(where)
        after = None
        if cursor is not None:
            created, rid = decode_cursor(cursor, (float, int))
            after = (created, rid)
        jobs, last = await self._conn().call(lambda conn: sql.list_jobs(conn, where, limit, after))
        return JobPage(jobs=jobs, next_cursor=None if last is None else encode_cursor(*last))

    async def retry_failed(
        self, microservice: str, job_ids: Sequence[str] = (), where: JobFilter | None = None
    ) -> int:
        check_retry_target(microservice, job_ids, where)
        retried = 0
        if where is None:
            ids = list(job_ids)
            for start in range(0, len(ids), _RETRY_CHUNK):
                chunk = functools.partial(
                    sql.retry_ids,
                    microservice=microservice,
                    job_ids=ids[start : start + _RETRY_CHUNK],
                    history=self.attempt_history,
                )
                retried += await self._conn().write(chunk, durable=True)
        else:
            after: tuple[float, int] | None = None
            while True:
                step = functools.partial(
                    sql.retry_matching,
                    where=where,
                    after=after,
                    chunk=_RETRY_CHUNK,
                    history=self.attempt_history,
                )
                done, after = await self._conn().write(step, durable=True)
                retried += done
                if after is None:
                    break
        if retried:
            self._notify()
        return retried

    async def activity(self, microservice: str, *, minutes: int = 60) -> QueueActivity:
        check_minutes(minutes)
        return await self._conn().call(lambda conn: sql.activity(conn, microservice, minutes))

    # --- store: lookup and session revocations -----------------------------------------------

    async def find_jobs(self, microservice: str, key: str) -> Sequence[Job]:
        return await self._conn().call(
            lambda conn: sql.find_jobs(conn, microservice, key, FIND_LIMIT)
        )

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        if not isinstance(until, datetime) or until.utcoffset() is None:
            raise ValueError(f"until={until!r} must be a timezone-aware datetime")
        moment = until.timestamp()
        await self._conn().write(
            lambda conn: sql.revoke_session(conn, session_id, moment), durable=True
        )

    async def session_revoked(self, session_id: str) -> bool:
        return await self._conn().call(lambda conn: sql.session_revoked(conn, session_id))

    # --- end store -----------------------------------------------------------------------------

    # --- reading and housekeeping --------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        return await self._conn().call(lambda conn: sql.get(conn, job_id, self.attempt_history))

    async def stats(self, microservice: str, *, count_limit: int | None = None) -> QueueStats:
        check_count_limit(count_limit)

        def read(conn: sqlite3.Connection) -> QueueStats:
            paused = frozenset(fleet.paused_limits(conn, microservice))
            found = sql.stats(conn, microservice, count_limit)
            return dataclasses.replace(found, paused_actions=paused)

        return await self._conn().call(read)

    async def purge(self, microservice: str, older_than_seconds: float) -> int:
        total = 0
        while True:
            started = time.monotonic()
            deleted = await self._conn().write(
                lambda conn: sql.purge_chunk(conn, microservice, older_than_seconds, _PURGE_CHUNK),
                durable=False,
            )
            total += deleted
            if deleted < _PURGE_CHUNK:
                return total
            await asyncio.sleep(max(_PURGE_PAUSE, time.monotonic() - started))

    # --- the fleet (FleetAdmin) --------------------------------------------------------------

    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        check_worker_record(record)
        await self._conn().write(lambda conn: fleet.heartbeat(conn, record), durable=False)

    async def remove_worker(self, microservice: str, worker_id: str) -> None:
        await self._conn().write(
            lambda conn: fleet.remove(conn, microservice, worker_id), durable=False
        )

    async def list_workers(self, microservice: str) -> list[WorkerRecord]:
        return await self._conn().call(lambda conn: fleet.list_workers(conn, microservice))

    async def reclaim_gone_workers(self, microservice: str) -> ReclaimResult:
        if not await self._conn().call(lambda conn: fleet.has_gone_owner(conn, microservice)):
            return ReclaimResult()
        return await self._conn().write(
            lambda conn: fleet.reclaim_gone(conn, microservice, self._reclaim), durable=False
        )

    async def forget_gone_workers(self, microservice: str, older_than_seconds: float) -> int:
        return await self._conn().write(
            lambda conn: fleet.forget_gone(conn, microservice, older_than_seconds),
            durable=False,
        )

    async def pause_action(self, microservice: str, action: str) -> bool:
        check_action_name(action)
        return await self._conn().write(
            lambda conn: fleet.pause(conn, microservice, action), durable=True
        )

    async def resume_action(self, microservice: str, action: str) -> bool:
        check_action_name(action)
        resumed = await self._conn().write(
            lambda conn: fleet.resume(conn, microservice, action), durable=True
        )
        if resumed:
            self._notify()  # its waiting jobs may be claimed now
        return resumed

    async def paused_actions(self, microservice: str) -> dict[str, datetime]:
        return await self._conn().call(lambda conn: fleet.paused(conn, microservice))


def _use_wal(conn: sqlite3.Connection, where: str, *, patience: float) -> None:
    deadline = time.monotonic() + patience
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            # Turning a new file to WAL needs an exclusive lock, and SQLite does not wait for
            # it (no busy handler): processes opening one new file at once collide here.
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
    if str(mode).lower() != "wal":
        raise SqliteFileError(
            f"{where}: SQLite refused WAL mode (journal_mode={mode}); the queue needs a file "
            "on a local filesystem"
        )


def _file_system_time(path: Path) -> datetime:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"\0", 0)  # the kernel stamps the write with its own clock
        stamp = os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
    return datetime.fromtimestamp(stamp / 1e9, UTC)
