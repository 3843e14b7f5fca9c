"""``PostgresQueue``: the whole queue port on one PostgreSQL table, shared by any number of
worker processes on any number of machines."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from usvc_core.adapter_support import (
    QueueBase,
    capped_counts,
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
from usvc_core.errors import (
    ConfigurationError,
    DuplicateJobError,
    JobNotFoundError,
    LeaseLostError,
)
from usvc_core.jobs import AttemptOutcome, ErrorCode, Job, JobAttempt, JobStatus
from usvc_core.ports import (
    FIND_LIMIT,
    EnqueueRequest,
    FleetAdmin,
    JobFilter,
    JobPage,
    JobQueue,
    LeaseRenewal,
    MinuteActivity,
    QueueActivity,
    QueueAdmin,
    QueueStats,
    ReclaimResult,
    StoreClock,
    WorkerRecord,
)

from usvc_postgres.connection import Connections, server_settings
from usvc_postgres.fleet import FleetStatements
from usvc_postgres.schema import SCHEMA_LOCK, ddl
from usvc_postgres.settings import PostgresSettings
from usvc_postgres.statements import COLUMNS, Statements, job_from_row
from usvc_postgres.wakeup import Listener

__all__ = ["PostgresQueue"]

_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
#: How many attempts of a job ``get`` shows by default (``JOB_ATTEMPT_HISTORY``).
DEFAULT_ATTEMPT_HISTORY = 20
_PURGE_CHUNK = 5000
_RETRY_CHUNK = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUSES = {status.value: status for status in JobStatus}


def _row_id(job_id: str) -> int | None:
    """The bigint behind a job id, or None when the id cannot be one of ours."""
    if job_id.isascii() and job_id.isdigit() and len(job_id) < 19:
        return int(job_id)
    return None


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class _Encoded:
    """An enqueue request with its payload encoded on the caller's side (an unserializable
    payload fails before any round trip)."""

    __slots__ = ("action", "delay", "payload", "request", "text")

    def __init__(self, request: EnqueueRequest) -> None:
        if request.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.request = request
        self.text = _JSON.encode(dict(request.payload))
        self.payload = json.loads(self.text)
        action = self.payload.get("action")
        self.action = action if isinstance(action, str) else ""
        self.delay = max(float(request.delay_seconds), 0.0)

    def job(self, row: asyncpg.Record) -> Job:
        r = self.request
        job_id = str(row[0])
        return Job(
            id=job_id,
            microservice=r.microservice,
            action=self.action,
            payload=self.payload,
            priority=r.priority,
            run_at=row[1],
            max_attempts=r.max_attempts,
            token=r.token or job_id,
            idempotency_key=r.idempotency_key,
            created_at=row[2],
            updated_at=row[2],
            unique_key=r.unique_key,
        )


class _Completions:
    """The completions of one turn of the event loop (a batch of jobs finishing) written by
    one statement, one commit: the worker finishes jobs in bursts, and with
    ``synchronous_commit = on`` each commit waits for a WAL flush."""

    def __init__(self, queue: PostgresQueue) -> None:
        self.queue = queue
        self.pending: list[tuple[Job, str, float, asyncio.Future[None]]] = []
        self._flushing: set[asyncio.Task[None]] = set()  # the loop keeps weak references

    def add(self, job: Job, text: str, runtime_ms: float) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self.pending:
            loop.call_soon(self._start_flush)
        self.pending.append((job, text, runtime_ms, done))
        return done

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            completed = await self.queue._complete_rows([(j, t, r) for j, t, r, _ in batch])
        except BaseException as exc:
            for *_, done in batch:
                if not done.done():
                    done.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for job, _, _, done in batch:
            if done.done():
                continue
            error = completed.get(job.id)
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)


class PostgresQueue(QueueBase, JobQueue, QueueAdmin, FleetAdmin, StoreClock):
    """Implements :class:`usvc_core.ports.JobQueue` and :class:`usvc_core.ports.QueueAdmin`
    on a PostgreSQL table (``POSTGRES_TABLE``, default ``usvc_jobs``).

    Claims take due Ready jobs with ``FOR UPDATE SKIP LOCKED`` (claimers never wait on each
    other and never share a job), each under a lease on the server's clock and a fresh
    fencing token; ``max_running`` is counted inside the claim under a per-service advisory
    transaction lock. Completions of one loop turn share one statement and one commit.
    Enqueues ``NOTIFY`` listeners (see :mod:`usvc_postgres.wakeup`).
    """

    def __init__(
        self,
        settings: PostgresSettings | None = None,
        *,
        attempt_history: int = DEFAULT_ATTEMPT_HISTORY,
        **overrides: Any,
    ) -> None:
        super().__init__()
        if settings is None:
            settings = PostgresSettings(**overrides)
        elif overrides:
            settings = settings.model_copy(update=overrides)
        if isinstance(attempt_history, bool) or not isinstance(attempt_history, int):
            raise ConfigurationError(f"attempt_history={attempt_history!r} must be a whole number")
        if attempt_history < 1:
            raise ConfigurationError(f"attempt_history={attempt_history!r} must be at least 1")
        self.settings = settings
        self.attempt_history = attempt_history
        self.sql = Statements(settings.POSTGRES_TABLE, attempt_history)
        self.fleet_sql = FleetStatements(settings.POSTGRES_TABLE)
        self._db = Connections(settings)
        self._completions = _Completions(self)
        self._listener = Listener(
            settings, self.sql.channel, self._on_notification, server_settings(settings)
        )
        self._claimers: set[str] = set()
        self._origin = uuid.uuid4().hex[:16]
        self._open = False

    def __repr__(self) -> str:
        return f"PostgresQueue({self.settings.where()!r})"

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._open:
            return
        await self._db.open()
        try:
            if self.settings.POSTGRES_CREATE_SCHEMA:
                await self._db.run("create schema", self._apply_schema)
            else:
                await self._check_schema()
            await self._listener.start()
        except BaseException:
            await self._db.close()
            raise
        self._open = True

    async def _apply_schema(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", SCHEMA_LOCK)
            for statement in ddl(self.settings.POSTGRES_TABLE):
                await conn.execute(statement)

    async def _check_schema(self) -> None:
        found = await self._db.fetchval(
            "check schema", "SELECT to_regclass($1) IS NOT NULL", self.settings.POSTGRES_TABLE
        )
        if not found:
            raise ConfigurationError(
                f"the PostgreSQL queue table is missing at {self.settings.where()}: run "
                "`python -m usvc_postgres apply` (or set POSTGRES_CREATE_SCHEMA=true)"
            )

    async def close(self) -> None:
        self._open = False
        await self._listener.stop()
        await self._db.close()

    async def ping(self) -> None:
        await self._db.fetchval("ping", "SELECT 1")

    @property
    def listening(self) -> bool:
        """Whether notifications arrive (False: the workers rely on polling alone)."""
        return self._listener.active

    def _on_notification(self, payload: str) -> None:
        origin, _, service = payload.partition(" ")
        if origin == self._origin:
            return  # our own enqueue: its listeners were called already
        # Wake this process's workers for their own services (or when unsure which).
        if not service or not self._claimers or service in self._claimers:
            self._notify()

    # --- producing ---------------------------------------------------------------------------

    @property
    def _notifies(self) -> bool:
        return not self.settings.POSTGRES_PGBOUNCER

    async def enqueue(self, request: EnqueueRequest) -> Job:
        e = _Encoded(request)
        r = request
        row = await self._db.fetchrow(
            "enqueue",
            self.sql.insert,
            r.microservice,
            e.action,
            e.text,
            r.priority,
            e.delay,
            r.max_attempts,
            r.token,
            r.idempotency_key,
            r.unique_key,
            self._notifies and e.delay == 0,
            self._origin,
        )
        if row is None:
            raise await self._duplicate(e, [])
        self._notify()
        return e.job(row)

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]:
        encoded = [_Encoded(r) for r in requests]
        if not encoded:
            return []
        _refuse_repeated_keys(encoded)
        columns = (
            [e.request.microservice for e in encoded],
            [e.action for e in encoded],
            [e.text for e in encoded],
            [e.request.priority for e in encoded],
            [e.delay for e in encoded],
            [e.request.max_attempts for e in encoded],
            [e.request.token for e in encoded],
            [e.request.idempotency_key for e in encoded],
            [e.request.unique_key for e in encoded],
        )
        due = sorted({e.request.microservice for e in encoded if e.delay == 0})

        async def insert(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            async with conn.transaction():
                rows: list[asyncpg.Record] = await conn.fetch(self.sql.insert_many, *columns)
                if len(rows) < len(encoded):
                    inserted = [row[0] for row in rows]
                    for e in encoded:
                        error = await self._holder(conn, e, inserted)
                        if error is not None:
                            raise error
                    raise DuplicateJobError("a key of the batch is held by another job", None)
                if due and self._notifies:
                    await conn.execute(self.sql.notify_many, due, self._origin)
                return rows

        rows = await self._db.run("enqueue", insert)
        rows = sorted(rows, key=lambda row: row[0])  # identities follow the request order
        self._notify()
        return [e.job(row) for e, row in zip(encoded, rows, strict=True)]

    async def _duplicate(self, e: _Encoded, inserted: list[int]) -> DuplicateJobError:
        async def find(conn: asyncpg.Connection) -> DuplicateJobError | None:
            return await self._holder(conn, e, inserted)

        found = await self._db.run("enqueue", find)
        return found or DuplicateJobError(
            "the job's key was held by a job that finished meanwhile; enqueue it again", None
        )

    async def _holder(
        self, conn: asyncpg.Connection, e: _Encoded, inserted: list[int]
    ) -> DuplicateJobError | None:
        r = e.request
        if r.unique_key is not None:
            held = await conn.fetchval(
                self.sql.unique_holder, r.microservice, r.unique_key, inserted
            )
            if held is not None:
                return DuplicateJobError(
                    f"unique key {r.unique_key!r} is held by job {held}", str(held)
                )
        if r.idempotency_key is not None:
            held = await conn.fetchval(
                self.sql.idempotency_holder, r.microservice, r.idempotency_key, inserted
            )
            if held is not None:
                return DuplicateJobError(
                    f"idempotency key {r.idempotency_key!r} is held by unfinished job {held}",
                    str(held),
                )
        return None

    # --- owning ------------------------------------------------------------------------------

    async def _claim(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        start: bool,
        limits: dict[str, int],
    ) -> list[Job]:
        self._claimers.add(microservice)
        if limit <= 0:
            return []
        if limits:
            rows = await self._db.run(
                "claim",
                lambda conn: self._claim_limited(
                    conn,
                    microservice,
                    worker_id,
                    limit,
                    lease=lease_seconds,
                    limits=limits,
                    start=start,
                ),
            )
        else:
            rows = await self._db.fetch(
                "claim",
                self.sql.claim(start=start),
                microservice,
                worker_id,
                float(lease_seconds),
                limit,
            )
        return _jobs(rows)

    async def _claim_limited(
        self,
        conn: asyncpg.Connection,
        microservice: str,
        worker_id: str,
        limit: int,
        *,
        lease: float,
        limits: dict[str, int],
        start: bool,
    ) -> list[asyncpg.Record]:
        """A claim under per-action limits: one such claim per service at a time (advisory
        transaction lock), so that the running counts it reads cannot change under it.
        Each limited action's best jobs are read on their own, up to its room, so that a
        backlog of an action at its limit never crowds others out of the batch."""
        limited = sorted(limits)
        async with conn.transaction():
            await conn.execute(self.sql.claim_lock, f"{self.sql.table}:{microservice}")
            running = dict(await conn.fetch(self.sql.running_by_action, microservice, limited))
            candidates: list[asyncpg.Record] = list(
                await conn.fetch(self.sql.due_of_others, microservice, limited, limit)
            )
            for action in limited:
                room = min(limit, limits[action] - running.get(action, 0))
                if room > 0:
                    candidates.extend(
                        await conn.fetch(self.sql.due_of_action, microservice, action, room)
                    )
            if not candidates:
                return []
            candidates.sort(key=lambda c: (-c[1], c[2], c[0]))
            ids = [c[0] for c in candidates[:limit]]
            return list(
                await conn.fetch(
                    self.sql.claim_ids(start=start), microservice, worker_id, float(lease), ids
                )
            )

    async def mark_processing(self, job: Job, lease_seconds: float) -> Job:
        rid = _row_id(job.id)
        row = await self._db.fetchrow(
            "start", self.sql.start, float(lease_seconds), rid, job.lease_token
        )
        if row is None:
            raise await self._lost(job)
        started = job.snapshot()
        started.status = JobStatus.PROCESSING
        started.attempts = row[0]
        started.started_at = row[1]
        started.lease_expires_at = row[2]
        started.updated_at = row[3]
        return started

    async def extend_leases(self, jobs: Sequence[Job], lease_seconds: float) -> LeaseRenewal:
        if not jobs:
            return LeaseRenewal()
        ids = [_row_id(j.id) or 0 for j in jobs]
        tokens = [j.lease_token for j in jobs]
        rows = await self._db.fetch(
            "extend leases", self.sql.extend, float(lease_seconds), ids, tokens
        )
        kept = {str(row[0]): bool(row[1]) for row in rows}
        return LeaseRenewal(
            lost=frozenset(j.id for j in jobs if j.id not in kept),
            cancel=frozenset(job_id for job_id, cancel in kept.items() if cancel),
        )

    async def complete(self, job: Job, results: Any, runtime_ms: float) -> None:
        text = "null" if results is None else _JSON.encode(results)
        await self._completions.add(job, text, float(runtime_ms))

    async def _complete_rows(
        self, rows: Sequence[tuple[Job, str, float]]
    ) -> dict[str, LeaseLostError]:
        """Complete every row in one statement; the error of each job not completed."""
        ids = [_row_id(job.id) or 0 for job, _, _ in rows]
        tokens = [job.lease_token for job, _, _ in rows]
        done = await self._db.fetch(
            "complete",
            self.sql.complete_many,
            ids,
            tokens,
            [text for _, text, _ in rows],
            [runtime for _, _, runtime in rows],
        )
        completed = {str(row[0]) for row in done}
        missing = [job for job, _, _ in rows if job.id not in completed]
        return {job.id: await self._lost(job) for job in missing}

    async def fail(
        self, job: Job, error_code: str, error_message: str, runtime_ms: float | None
    ) -> None:
        status = await self._db.execute(
            "fail",
            self.sql.fail,
            error_code,
            error_message,
            runtime_ms,
            _row_id(job.id),
            job.lease_token,
        )
        if status != "UPDATE 1":
            raise await self._lost(job)

    async def retry(
        self,
        job: Job,
        error_code: str,
        error_message: str,
        delay_seconds: float,
        runtime_ms: float | None,
    ) -> JobStatus:
        status = await self._db.fetchval(
            "retry",
            self.sql.retry,
            error_code,
            error_message,
            runtime_ms,
            float(delay_seconds),
            _row_id(job.id),
            job.lease_token,
        )
        if status is None:
            raise await self._lost(job)
        return JobStatus(status)

    async def release(self, jobs: Sequence[Job]) -> int:
        if not jobs:
            return 0
        ids = [_row_id(j.id) or 0 for j in jobs]
        tokens = [j.lease_token for j in jobs]
        services = await self._db.fetch("release", self.sql.release, ids, tokens)
        if services:
            if self._notifies:
                await self._announce(sorted({row[0] for row in services}))
            self._notify()
        return len(services)

    async def _announce(self, services: list[str]) -> None:
        """Tell every listening process that jobs of ``services`` became due."""
        await self._db.execute("notify", self.sql.notify_many, services, self._origin)

    async def reclaim_expired(self, microservice: str) -> ReclaimResult:
        rows = await self._db.fetch("reclaim", self.sql.reclaim, microservice)
        requeued = sorted(row[0] for row in rows if row[1] == JobStatus.READY.value)
        failed = sorted(row[0] for row in rows if row[1] == JobStatus.FAILED.value)
        if requeued:
            self._notify()
        return ReclaimResult(requeued=[str(i) for i in requeued], failed=[str(i) for i in failed])

    async def _lost(self, job: Job) -> LeaseLostError:
        """The error of a transition that found the job not as its claim left it."""
        rid = _row_id(job.id)
        row = None if rid is None else await self._db.fetchrow("lease check", self.sql.state, rid)
        where = "no longer exists" if row is None else f"is {row[0]} under another claim"
        return LeaseLostError(f"job {job.id} is no longer owned by this claim: it {where}")

    # --- operating (QueueAdmin) ---------------------------------------------------------------

    async def cancel(self, microservice: str, job_id: str) -> JobStatus:
        rid = _row_id(job_id)

        async def cancel(conn: asyncpg.Connection) -> JobStatus | None:
            if rid is None:
                return None
            if await conn.execute(self.sql.cancel_waiting, rid, microservice) == "UPDATE 1":
                return JobStatus.FAILED
            if await conn.execute(self.sql.cancel_running, rid, microservice) == "UPDATE 1":
                return JobStatus.PROCESSING
            status = await conn.fetchval(self.sql.status_in, rid, microservice)
            return None if status is None else JobStatus(status)

        found = await self._db.run("cancel", cancel)
        if found is None:
            raise JobNotFoundError(f"service {microservice!r} has no job {job_id!r}")
        return found

    def _where(self, where: JobFilter, after: tuple[datetime, int] | None) -> tuple[str, list[Any]]:
        """``FROM ... WHERE`` of the jobs matching ``where``, and its parameters."""
        params: list[Any] = [where.microservice]
        text = f"FROM {self.sql.table} WHERE microservice = $1"
        if where.statuses == {JobStatus.FAILED}:
            text += " AND status = 'Failed'"  # as the partial index of Failed jobs says it
        elif where.statuses:
            params.append(sorted(JobStatus(s).value for s in where.statuses))
            text += f" AND status = ANY(${len(params)}::text[])"
        for column, values in (("action", where.actions), ("error_code", where.error_codes)):
            if values:
                params.append(sorted(values))
                text += f" AND {column} = ANY(${len(params)}::text[])"
        if where.scheduled is not None:
            later = "(status = 'Ready' AND run_at > now())"
            text += f" AND {later}" if where.scheduled else f" AND NOT {later}"
        if where.error_text is not None:
            params.append(where.error_text.lower())
            text += f" AND strpos(lower(error_message), ${len(params)}) > 0"
        if where.created_after is not None:
            params.append(where.created_after)
            text += f" AND created_at >= ${len(params)}"
        if where.created_before is not None:
            params.append(where.created_before)
            text += f" AND created_at < ${len(params)}"
        if after is not None:
            params.extend(after)
            text += f" AND (created_at, id) < (${len(params) - 1}, ${len(params)})"
        return text, params

    def list_jobs_sql(
        self, where: JobFilter, limit: int, after: tuple[datetime, int] | None = None
    ) -> tuple[str, list[Any]]:
        """The statement behind :meth:`list_jobs` (tests pin its plan)."""
        source, params = self._where(where, after)
        params.append(limit + 1)
        return (
            f"SELECT {COLUMNS} {source} ORDER BY created_at DESC, id DESC LIMIT ${len(params)}",
            params,
        )

    async def list_jobs(
        self, where: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        check_page_limit(limit)
        check_filter(where)
        after = None
        if cursor is not None:
            micros, rid = decode_cursor(cursor, (int, int))
            after = (_EPOCH + timedelta(microseconds=micros), rid)
        statement, params = self.list_jobs_sql(where, limit, after)
        rows = await self._db.fetch("list jobs", statement, *params)
        more = len(rows) > limit
        rows = rows[:limit]
        jobs = [job_from_row(row) for row in rows]
        last = encode_cursor(_micros(rows[-1][18]), rows[-1][0]) if more else None
        return JobPage(jobs=jobs, next_cursor=last)

    async def retry_failed(
        self, microservice: str, job_ids: Sequence[str] = (), where: JobFilter | None = None
    ) -> int:
        check_retry_target(microservice, job_ids, where)
        retried = 0
        if where is None:
            ids = sorted({rid for rid in map(_row_id, job_ids) if rid is not None})
            for start in range(0, len(ids), _RETRY_CHUNK):
                retried += await self._retry_ids(microservice, ids[start : start + _RETRY_CHUNK])
        elif not where.statuses or JobStatus.FAILED in where.statuses:
            failed = dataclasses.replace(where, statuses=frozenset({JobStatus.FAILED}))
            after: tuple[datetime, int] | None = None
            while True:
                source, params = self._where(failed, after)
                params.append(_RETRY_CHUNK)
                keys = await self._db.fetch(
                    "retry failed",
                    f"SELECT created_at, id {source} ORDER BY created_at DESC, id DESC "
                    f"LIMIT ${len(params)}",
                    *params,
                )
                if not keys:
                    break
                retried += await self._retry_ids(microservice, [k[1] for k in keys])
                if len(keys) < _RETRY_CHUNK:
                    break
                after = (keys[-1][0], keys[-1][1])
        if retried:
            if self._notifies:
                await self._announce([microservice])
            self._notify()
        return retried

    async def _retry_ids(self, microservice: str, ids: list[int]) -> int:
        """One statement; when two of ``ids`` share an idempotency key (both Failed), the
        unique index refuses it: then one at a time, the first one wins."""
        try:
            status = await self._db.execute(
                "retry failed", self.sql.retry_failed_ids, microservice, ids
            )
        except Exception as exc:
            if not isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise
            count = 0
            for rid in ids:
                try:
                    status = await self._db.execute(
                        "retry failed", self.sql.retry_failed_ids, microservice, [rid]
                    )
                except Exception as single:
                    if not isinstance(single.__cause__, asyncpg.UniqueViolationError):
                        raise
                    continue
                count += int(status.split()[-1])
            return count
        return int(status.split()[-1])

    async def activity(self, microservice: str, *, minutes: int = 60) -> QueueActivity:
        check_minutes(minutes)

        async def read(conn: asyncpg.Connection) -> QueueActivity:
            # One snapshot and one clock reading for the whole picture.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                now: datetime = await conn.fetchval("SELECT now()")
                counts: dict[str, dict[JobStatus, int]] = {}
                waiting: dict[str, float] = {}
                scheduled: dict[str, int] = {}
                ready = await conn.fetch(self.sql.ready_by_action, microservice)
                for action, count, age, later in ready:
                    counts.setdefault(action, dict.fromkeys(JobStatus, 0))[JobStatus.READY] = count
                    if age is not None:
                        waiting[action] = max(float(age), 0.0)
                    if later:
                        scheduled[action] = later
                for action, status, count in await conn.fetch(
                    self.sql.others_by_action, microservice
                ):
                    counts.setdefault(action, dict.fromkeys(JobStatus, 0))[JobStatus(status)] = (
                        count
                    )
                current = now.astimezone(UTC).replace(second=0, microsecond=0)
                first = current - timedelta(minutes=minutes - 1)
                found: dict[tuple[datetime, str], int] = {}
                for minute, status, count in await conn.fetch(
                    self.sql.per_minute, microservice, first
                ):
                    found[(minute.astimezone(UTC), status)] = count
            per_minute = []
            for i in range(minutes):
                minute = first + timedelta(minutes=i)
                per_minute.append(
                    MinuteActivity(
                        minute=minute,
                        completed=found.get((minute, JobStatus.COMPLETED.value), 0),
                        failed=found.get((minute, JobStatus.FAILED.value), 0),
                    )
                )
            return QueueActivity(
                counts=counts,
                oldest_ready_age_seconds=waiting,
                per_minute=per_minute,
                scheduled=scheduled,
            )

        return await self._db.run("activity", read)

    # --- store: lookup by key and admin session revocations (the rest of the store's port
    # additions, attempt history and the scheduled view among them, are still to come here)

    async def find_jobs(self, microservice: str, key: str) -> Sequence[Job]:
        rows = await self._db.fetch(
            "find_jobs", self.sql.find_jobs, microservice, _row_id(key), key, FIND_LIMIT
        )
        return [job_from_row(row) for row in rows]

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        if not isinstance(until, datetime) or until.utcoffset() is None:
            raise ValueError(f"until={until!r} must be a timezone-aware datetime")

        async def revoke(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(self.sql.forget_sessions)
                await conn.execute(self.sql.revoke_session, session_id, until)

        await self._db.run("revoke_session", revoke)

    async def session_revoked(self, session_id: str) -> bool:
        found = await self._db.fetchval("session_revoked", self.sql.session_revoked, session_id)
        return found is not None

    # --- end store -----------------------------------------------------------------------------

    # --- reading and housekeeping ------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        rid = _row_id(job_id)
        if rid is None:
            return None
        row = await self._db.fetchrow("get", self.sql.get, rid)
        if row is None:
            return None
        job = job_from_row(row)
        job.attempt_history = _history(job, row[24], row[25], self.attempt_history)
        return job

    async def stats(self, microservice: str, *, count_limit: int | None = None) -> QueueStats:
        check_count_limit(count_limit)
        query = self.sql.counts if count_limit is None else self.sql.counts_upto
        args: tuple[object, ...] = (
            (microservice,) if count_limit is None else (microservice, count_limit)
        )

        async def read(conn: asyncpg.Connection) -> QueueStats:
            found = dict.fromkeys(JobStatus, 0)
            scheduled = 0
            for status, count, later in await conn.fetch(query, *args):
                found[_STATUSES[status]] = count
                scheduled += later
            age = await conn.fetchval(self.sql.oldest_due, microservice)
            paused = await conn.fetch(self.fleet_sql.paused, microservice)
            counts, at_least = capped_counts(found, count_limit)
            return QueueStats(
                counts=counts,
                oldest_ready_age_seconds=None if age is None else max(age, 0.0),
                paused_actions=frozenset(row[0] for row in paused),
                scheduled=scheduled,
                at_least=at_least,
            )

        return await self._db.run("stats", read)

    async def purge(self, microservice: str, older_than_seconds: float) -> int:
        total = 0
        while True:
            status = await self._db.execute(
                "purge", self.sql.purge, microservice, float(older_than_seconds), _PURGE_CHUNK
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < _PURGE_CHUNK:
                return total

    # --- the fleet (FleetAdmin) and the store's clock --------------------------------------------

    async def store_now(self) -> datetime:
        moment: datetime = await self._db.fetchval("clock", "SELECT now()")
        return moment.astimezone(UTC)

    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        check_worker_record(record)
        await self._db.execute(
            "heartbeat",
            self.fleet_sql.heartbeat,
            record.microservice,
            record.worker_id,
            record.host,
            record.pid,
            record.version,
            record.started_at,
            float(record.heartbeat_seconds),
            list(record.actions),
            record.concurrency,
            record.running,
        )

    async def remove_worker(self, microservice: str, worker_id: str) -> None:
        await self._db.execute("remove worker", self.fleet_sql.remove, microservice, worker_id)

    async def list_workers(self, microservice: str) -> list[WorkerRecord]:
        rows = await self._db.fetch("list workers", self.fleet_sql.workers, microservice)
        return [
            WorkerRecord(
                worker_id=row[0],
                microservice=row[1],
                host=row[2],
                pid=row[3],
                version=row[4],
                started_at=row[5],
                heartbeat_seconds=row[6],
                actions=tuple(row[7]),
                concurrency=row[8],
                running=row[9],
                last_seen_at=row[10],
                gone=bool(row[11]),
            )
            for row in rows
        ]

    async def reclaim_gone_workers(self, microservice: str) -> ReclaimResult:
        """End the gone owners' leases, then the reclaim of expired leases, in one
        transaction: the same rules apply."""

        async def reclaim(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            async with conn.transaction():
                ended = await conn.execute(self.fleet_sql.end_gone_leases, microservice)
                if ended == "UPDATE 0":
                    return []
                return list(await conn.fetch(self.sql.reclaim, microservice))

        rows = await self._db.run("reclaim gone workers", reclaim)
        requeued = sorted(row[0] for row in rows if row[1] == JobStatus.READY.value)
        failed = sorted(row[0] for row in rows if row[1] == JobStatus.FAILED.value)
        if requeued:
            self._notify()
        return ReclaimResult(requeued=[str(i) for i in requeued], failed=[str(i) for i in failed])

    async def forget_gone_workers(self, microservice: str, older_than_seconds: float) -> int:
        status = await self._db.execute(
            "forget workers", self.fleet_sql.forget, microservice, float(older_than_seconds)
        )
        return int(status.split()[-1])

    async def pause_action(self, microservice: str, action: str) -> bool:
        check_action_name(action)
        status = await self._db.execute("pause", self.fleet_sql.pause, microservice, action)
        return status == "INSERT 0 1"

    async def resume_action(self, microservice: str, action: str) -> bool:
        check_action_name(action)
        status = await self._db.execute("resume", self.fleet_sql.resume, microservice, action)
        if status == "DELETE 1":
            if self._notifies:
                await self._announce([microservice])
            self._notify()
            return True
        return False

    async def paused_actions(self, microservice: str) -> dict[str, datetime]:
        rows = await self._db.fetch("paused actions", self.fleet_sql.paused, microservice)
        return {row[0]: row[1] for row in rows}


def _history(job: Job, number: int, log: Any, keep: int) -> tuple[JobAttempt, ...]:
    """The closed attempts (``attempt_log``) and the current one (the row), last ``keep``."""
    entries = json.loads(log) if isinstance(log, str) else (log or [])
    attempts = [
        JobAttempt(
            e["n"],
            e["w"],
            _moment(e["s"]),
            _moment(e["f"]),
            AttemptOutcome(e["o"]),
            e["c"],
            e["m"],
        )
        for e in entries
    ]
    if job.started_at is not None:
        code: str | None = None
        text: str | None = None
        if job.status is JobStatus.COMPLETED:
            outcome = AttemptOutcome.COMPLETED
        elif job.status is JobStatus.FAILED:
            expired = job.error_code == ErrorCode.LEASE_EXPIRED.value
            outcome = AttemptOutcome.LEASE_EXPIRED if expired else AttemptOutcome.FAILED
            code, text = job.error_code, job.error_message
        else:
            outcome = AttemptOutcome.RUNNING
        finished = job.finished_at if job.status.is_finished else None
        attempts.append(
            JobAttempt(number, job.lease_owner, job.started_at, finished, outcome, code, text)
        )
    return tuple(attempts[-keep:])


def _moment(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def _refuse_repeated_keys(encoded: Sequence[_Encoded]) -> None:
    """A key given twice in one batch refuses the batch (before any round trip)."""
    seen: set[tuple[str, str, str]] = set()
    for e in encoded:
        r = e.request
        for kind, key in (("unique", r.unique_key), ("idempotency", r.idempotency_key)):
            if key is None:
                continue
            mark = (kind, r.microservice, key)
            if mark in seen:
                raise DuplicateJobError(f"{kind} key {key!r} is given twice in the batch", None)
            seen.add(mark)


def _jobs(rows: Sequence[asyncpg.Record]) -> list[Job]:
    # RETURNING gives rows in no promised order; hand them out best first.
    ordered = sorted(rows, key=lambda row: (-row[5], row[6], row[0]))
    return [job_from_row(row) for row in ordered]
