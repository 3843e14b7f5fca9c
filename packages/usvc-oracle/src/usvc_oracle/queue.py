"""OracleQueue: the job queue port on one Oracle table, through python-oracledb (async, thin).

Every operation is one short transaction on a pooled connection; no transaction stays open
while a job runs. Ownership after a claim is a lease (expiry on the database clock) plus a
fencing token: each later write names id + token + expected status, and a write that
matches no row means the lease was lost.

Failures: a lost session or a transient error (deadlock, listener busy, pool exhausted...)
is retried a few times with backoff on a fresh connection; then QueueUnavailableError hands
the outage to the worker's own backoff. Permanent errors are raised at once, with a hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import oracledb
from usvc_core.errors import (
    ConfigurationError,
    DuplicateJobError,
    JobNotFoundError,
    LeaseLostError,
    QueueError,
    QueueUnavailableError,
    UsvcError,
)
from usvc_core.jobs import ErrorCode, Job, JobStatus
from usvc_core.ports import EnqueueRequest, LeaseRenewal, QueueStats, ReclaimResult

from usvc_oracle.driver import ConnectionLike, CursorLike, PoolLike, clob_as_text, create_pool
from usvc_oracle.errors import OracleQueueError
from usvc_oracle.failures import Failure, FailureKind, classify
from usvc_oracle.settings import OracleSettings
from usvc_oracle.sql import (
    CLAIM_COLUMNS,
    CLAIM_STARTED_COLUMNS,
    IN_LIST_SIZE,
    JOB_COLUMNS,
    PROCESSING_COLUMNS,
    Statements,
    in_list_binds,
)

__all__ = ["OracleQueue"]

T = TypeVar("T")

#: Rows one reclaim transaction looks at, and rows one purge transaction deletes.
RECLAIM_BATCH = 4 * IN_LIST_SIZE
PURGE_BATCH = 500
#: Bounds on the loops that repeat a full batch (the worker calls again later anyway).
_MAX_BATCHES = 20
_MAX_ERROR_MESSAGE = 32_000
_BACKOFF_CAP_SECONDS = 2.0

_MAX_LENGTHS = {"microservice": 128, "token": 256, "idempotency_key": 256, "worker_id": 200}
_REQUEUED_MESSAGE = "lease expired (the worker crashed or stalled); the job will run again"
_FAILED_MESSAGE = (
    "lease expired (the worker crashed or stalled) during the last attempt; no attempts left"
)

_NUMBER = oracledb.DB_TYPE_NUMBER
_TIMESTAMP = oracledb.DB_TYPE_TIMESTAMP
_LONG = oracledb.DB_TYPE_LONG
_TYPES: dict[str, Any] = {
    "ID": _NUMBER,
    "PRIORITY": _NUMBER,
    "ATTEMPTS": _NUMBER,
    "MAX_ATTEMPTS": _NUMBER,
    "RUNTIME_MS": _NUMBER,
    "PAYLOAD": _LONG,  # CLOB returned as text in the same round trip
    "RESULTS": _LONG,
    "ERROR_MESSAGE": _LONG,
    "RUN_AT": _TIMESTAMP,
    "CREATED_AT": _TIMESTAMP,
    "UPDATED_AT": _TIMESTAMP,
    "ASSIGNED_AT": _TIMESTAMP,
    "STARTED_AT": _TIMESTAMP,
    "FINISHED_AT": _TIMESTAMP,
    "LEASE_EXPIRES_AT": _TIMESTAMP,
}


def _out_type(column: str) -> Any:
    return _TYPES.get(column, str)


@dataclass(slots=True)
class _Tx:
    """One attempt of one operation: its connection, and whether COMMIT has been sent."""

    conn: ConnectionLike
    attempt: int
    committing: bool = False

    async def commit(self) -> None:
        self.committing = True
        await self.conn.commit()

    @contextlib.contextmanager
    def cursor(self) -> Iterator[CursorLike]:
        cur = self.conn.cursor()
        try:
            yield cur
        finally:
            cur.close()


def _utc(value: Any) -> datetime | None:
    """Timestamps are stored as UTC and come back naive."""
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def decode_payload(raw: Any) -> tuple[Any, str | None]:
    """The stored payload as JSON, or ``(None, why)`` when it cannot be decoded."""
    if raw is None or isinstance(raw, dict | list):
        return raw, None  # NULL, or a column the driver already parsed (IS JSON)
    text = _text(raw)
    try:
        return json.loads(text or ""), None
    except ValueError as exc:
        return None, str(exc)


def _decode_results(raw: Any) -> Any:
    if raw is None or isinstance(raw, dict | list):
        return raw
    text = _text(raw) or ""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _number(value: Any, default: int = 0) -> int:
    return int(value) if value is not None else default


def _job_from_row(row: dict[str, Any], **extra: Any) -> Job:
    payload, payload_error = decode_payload(row.get("PAYLOAD"))
    error_code = row.get("ERROR_CODE")
    error_message = _text(row.get("ERROR_MESSAGE"))
    if error_code is not None and error_message is None:
        error_message = ""  # Oracle stores '' as NULL
    runtime = row.get("RUNTIME_MS")
    values: dict[str, Any] = {
        "id": str(int(row["ID"])),
        "microservice": row.get("MICROSERVICE") or "",
        "action": row.get("ACTION") or "",
        "payload": payload,
        "payload_error": payload_error,
        "status": JobStatus(row.get("STATUS") or JobStatus.READY.value),
        "priority": _number(row.get("PRIORITY")),
        "run_at": _utc(row.get("RUN_AT")),
        "attempts": _number(row.get("ATTEMPTS")),
        "max_attempts": _number(row.get("MAX_ATTEMPTS"), 1),
        "token": row.get("TOKEN") or "",
        "idempotency_key": row.get("IDEMPOTENCY_KEY"),
        "lease_owner": row.get("LEASE_OWNER"),
        "lease_token": row.get("LEASE_TOKEN"),
        "lease_expires_at": _utc(row.get("LEASE_EXPIRES_AT")),
        "results": _decode_results(row.get("RESULTS")),
        "error_code": error_code,
        "error_message": error_message,
        "runtime_ms": float(runtime) if runtime is not None else None,
        "created_at": _utc(row.get("CREATED_AT")),
        "updated_at": _utc(row.get("UPDATED_AT")),
        "started_at": _utc(row.get("STARTED_AT")),
        "finished_at": _utc(row.get("FINISHED_AT")),
    }
    values.update(extra)
    return Job(**values)


def _db_id(job_id: str) -> int | None:
    """The NUMBER id behind a port id, or None when it cannot be one of ours."""
    return int(job_id) if job_id.isascii() and job_id.isdigit() else None


def _dispatch_order(job: Job) -> tuple[int, datetime, int]:
    """Highest priority first, then oldest run_at, then oldest id."""
    return (-job.priority, job.run_at or datetime.min.replace(tzinfo=UTC), int(job.id))


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _padded_ids(ids: Sequence[int]) -> dict[str, int | None]:
    """Bind values of one fixed-width IN list; NULL never matches, so pads are harmless."""
    names = in_list_binds()
    return {name: (ids[i] if i < len(ids) else None) for i, name in enumerate(names)}


def _check_length(what: str, value: str | None) -> None:
    limit = _MAX_LENGTHS[what]
    if value is not None and len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")


def _seconds(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"not a finite number of seconds: {value!r}")
    return max(float(value), 0.0)


def _error_text(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_MESSAGE else message[:_MAX_ERROR_MESSAGE] + "..."


class OracleQueue:
    """Implements :class:`usvc_core.ports.JobQueue` on one Oracle table (see the README).

    ``pool_factory`` and ``sleep`` exist for tests: a recording fake pool, and backoff that
    does not wait on the wall clock.
    """

    def __init__(
        self,
        settings: OracleSettings,
        *,
        pool_factory: Callable[[OracleSettings], PoolLike] = create_pool,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.table = settings.table
        self.sql = Statements.render(self.table)
        self._pool_factory = pool_factory
        self._sleep = sleep
        self._pool: PoolLike | None = None
        self._listeners: list[Callable[[], None]] = []
        self._random = random.Random()

    def __repr__(self) -> str:
        return (
            f"OracleQueue(dsn={self.settings.ORACLE_DSN!r}, user={self.settings.ORACLE_USER!r}, "
            f"table={str(self.table)!r})"
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool and check that the table exists with every column."""
        if self._pool is not None:
            return
        where = (
            f"ORACLE_DSN={self.settings.ORACLE_DSN!r}, ORACLE_USER={self.settings.ORACLE_USER!r}"
            f", ORACLE_TABLE={str(self.table)!r}"
        )
        try:
            # Parses the DSN (and reads tnsnames.ora for an alias) before any connection.
            self._pool = self._pool_factory(self.settings)
        except oracledb.Error as exc:
            raise ConfigurationError(
                f"cannot use the Oracle queue ({where}): {self._permanent('open', classify(exc))}"
            ) from exc
        try:
            await self._run("open", self._probe)
        except OracleQueueError as exc:
            await self.close()
            raise ConfigurationError(f"cannot use the Oracle queue ({where}): {exc}") from exc
        except QueueUnavailableError as exc:
            await self.close()
            raise QueueUnavailableError(f"cannot reach Oracle ({where}): {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def _probe(self, tx: _Tx) -> None:
        with tx.cursor() as cur:
            await cur.execute(self.sql.probe)
            await cur.fetchall()

    @property
    def _acquire_limit(self) -> float:
        s = self.settings
        return s.ORACLE_POOL_WAIT_SECONDS + s.ORACLE_CONNECT_TIMEOUT_SECONDS

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._acquire_limit):
                    await pool.close(force=True)

    async def ping(self) -> None:
        """One round trip; any failure is reported as QueueUnavailableError."""
        try:
            await self._run("ping", self._ping, retries=0)
        except QueueUnavailableError:
            raise
        except QueueError as exc:
            raise QueueUnavailableError(str(exc)) from exc

    async def _ping(self, tx: _Tx) -> None:
        await tx.conn.ping()

    def on_enqueue(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    # --- the retry loop ------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        base = self.settings.ORACLE_RETRY_BACKOFF_SECONDS * 2.0 ** (attempt - 1)
        return min(base, _BACKOFF_CAP_SECONDS) * self._random.uniform(0.5, 1.0)

    async def _run(
        self,
        operation: str,
        work: Callable[[_Tx], Awaitable[T]],
        *,
        retries: int | None = None,
        idempotent: bool = True,
    ) -> T:
        """Run ``work`` in one transaction; retry lost sessions and transient errors.

        ``idempotent=False``: a failure while COMMIT was in flight is not retried (it may
        have committed); the caller gets QueueUnavailableError saying the outcome is unknown.
        """
        pool = self._pool
        if pool is None:
            raise QueueUnavailableError("the Oracle queue is not open (call open() first)")
        limit = self.settings.ORACLE_RETRIES if retries is None else retries
        last: tuple[Failure, BaseException] | None = None
        for attempt in range(limit + 1):
            if attempt:
                await self._sleep(self._backoff(attempt))
            try:
                # The driver bounds the wait for a free session, but not a server that
                # accepts TCP and then never answers the handshake: bound it here too.
                async with asyncio.timeout(self._acquire_limit):
                    conn = await pool.acquire()
            except TimeoutError as exc:
                last = (
                    Failure(
                        FailureKind.TRANSIENT,
                        "TIMEOUT",
                        f"no session within {self._acquire_limit:g}s (pool wait + connect)",
                    ),
                    exc,
                )
                continue
            except Exception as exc:
                failure = classify(exc)
                if failure.kind is FailureKind.PERMANENT:
                    raise self._permanent(operation, failure) from exc
                last = (failure, exc)
                continue
            conn.call_timeout = int(self.settings.ORACLE_CALL_TIMEOUT_SECONDS * 1000)
            tx = _Tx(conn, attempt)
            try:
                result = await work(tx)
                if conn.transaction_in_progress:
                    await conn.rollback()  # read-only work; never leave locks behind
            except UsvcError:
                # Our own verdict (lease lost, duplicate key...): nothing is kept.
                await self._give_back(pool, conn, rollback=True)
                raise
            except (oracledb.Error, OSError, EOFError) as exc:
                failure = classify(exc)
                if failure.kind is FailureKind.DEAD:
                    await self._discard(pool, conn)
                else:
                    await self._give_back(pool, conn, rollback=True)
                if failure.kind is FailureKind.PERMANENT:
                    raise self._permanent(operation, failure) from exc
                if tx.committing and not idempotent:
                    raise QueueUnavailableError(
                        f"Oracle {operation}: the connection failed while committing, so the "
                        f"outcome is unknown ({failure.code}: {failure.message})"
                    ) from exc
                last = (failure, exc)
                continue
            except BaseException:
                # Cancelled (or a bug) in the middle of a call: the session state is unknown.
                await self._discard(pool, conn)
                raise
            await self._give_back(pool, conn, rollback=False)
            return result
        assert last is not None
        failure, cause = last
        raise QueueUnavailableError(
            f"Oracle {operation} failed {limit + 1} time(s); last error "
            f"{failure.code}: {failure.message}"
        ) from cause

    def _permanent(self, operation: str, failure: Failure) -> OracleQueueError:
        hint = failure.hint(table=str(self.table), dsn=self.settings.ORACLE_DSN)
        text = f"Oracle {operation} failed: {failure.code}: {failure.message}"
        return OracleQueueError(f"{hint} ({text})" if hint else text, failure)

    async def _give_back(self, pool: PoolLike, conn: ConnectionLike, *, rollback: bool) -> None:
        try:
            if rollback:
                await conn.rollback()
            await pool.release(conn)
        except Exception:
            await self._discard(pool, conn)

    async def _discard(self, pool: PoolLike, conn: ConnectionLike) -> None:
        # Dropping closes the session; the server rolls back whatever it had not committed.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.settings.ORACLE_CALL_TIMEOUT_SECONDS):
                await pool.drop(conn)

    # --- producing -----------------------------------------------------------------------------

    async def enqueue(self, request: EnqueueRequest) -> Job:
        return (await self.enqueue_many([request]))[0]

    def _insert_params(self, r: EnqueueRequest) -> dict[str, Any]:
        if not r.microservice:
            raise ValueError("microservice must not be empty")
        _check_length("microservice", r.microservice)
        _check_length("token", r.token)
        _check_length("idempotency_key", r.idempotency_key)
        if not 1 <= r.max_attempts <= 99_999:
            raise ValueError("max_attempts must be between 1 and 99999")
        if abs(r.priority) >= 10**10:
            raise ValueError("priority must have at most 10 digits")
        payload = dict(r.payload)
        action = payload.get("action")
        return {
            "microservice": r.microservice,
            "action": action[:256] if isinstance(action, str) and action else None,
            "priority": int(r.priority),
            "payload": json.dumps(payload, allow_nan=False),
            "token": r.token or None,
            "idempotency_key": r.idempotency_key or None,
            "max_attempts": int(r.max_attempts),
            "delay_seconds": _seconds(r.delay_seconds),
        }

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]:
        """All or nothing: one transaction for the whole batch."""
        if not requests:
            return []
        rows = [self._insert_params(r) for r in requests]
        seen: set[tuple[str, str]] = set()
        for row in rows:
            if row["idempotency_key"] is not None:
                key = (row["microservice"], row["idempotency_key"])
                if key in seen:
                    raise DuplicateJobError(
                        f"idempotency key {key[1]!r} appears twice in one batch", None
                    )
                seen.add(key)

        async def work(tx: _Tx) -> list[Job]:
            with tx.cursor() as cur:
                outs = {c: cur.var(_out_type(c), arraysize=len(rows)) for c in _ENQUEUE_OUT}
                cur.setinputsizes(**{f"o_{c.lower()}": v for c, v in outs.items()})
                try:
                    await cur.executemany(self.sql.enqueue, rows)
                except oracledb.IntegrityError as exc:
                    if classify(exc).code != "ORA-00001":
                        raise
                    await tx.conn.rollback()
                    raise await self._duplicate(tx, rows) from exc
                ids = [int(outs["ID"].getvalue(i)[0]) for i in range(len(rows))]
                returned = {
                    c: [outs[c].getvalue(i)[0] for i in range(len(rows))] for c in _ENQUEUE_OUT
                }
            untokened = [{"id": ids[i]} for i, row in enumerate(rows) if row["token"] is None]
            if untokened:
                with tx.cursor() as cur:
                    await cur.executemany(self.sql.set_default_token, untokened)
            await tx.commit()
            jobs = []
            for i, (row, r) in enumerate(zip(rows, requests, strict=True)):
                payload, error = decode_payload(row["payload"])
                jobs.append(
                    Job(
                        id=str(ids[i]),
                        microservice=r.microservice,
                        action=row["action"] or "",
                        payload=payload,
                        payload_error=error,
                        priority=row["priority"],
                        run_at=_utc(returned["RUN_AT"][i]),
                        max_attempts=row["max_attempts"],
                        token=row["token"] or str(ids[i]),
                        idempotency_key=row["idempotency_key"],
                        created_at=_utc(returned["CREATED_AT"][i]),
                        updated_at=_utc(returned["UPDATED_AT"][i]),
                    )
                )
            return jobs

        # Not retried once COMMIT is in flight: a second insert could duplicate the job.
        jobs = await self._run("enqueue", work, idempotent=False)
        self._notify()
        return jobs

    async def _duplicate(self, tx: _Tx, rows: list[dict[str, Any]]) -> DuplicateJobError:
        for row in rows:
            if row["idempotency_key"] is None:
                continue
            with tx.cursor() as cur:
                await cur.execute(
                    self.sql.idempotency_holder,
                    {
                        "microservice": row["microservice"],
                        "idempotency_key": row["idempotency_key"],
                    },
                )
                found = await cur.fetchall()
            if found:
                holder = str(int(found[0][0]))
                return DuplicateJobError(
                    f"idempotency key {row['idempotency_key']!r} is held by unfinished job "
                    f"{holder}",
                    holder,
                )
        return DuplicateJobError("an unfinished job already holds this idempotency key", None)

    # --- claiming -------------------------------------------------------------------------------

    async def claim(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        max_running: Mapping[str, int] | None = None,
    ) -> list[Job]:
        """Lock up to ``limit`` due Ready rows (SKIP LOCKED), move them to Assigned, commit."""
        return await self._claim(microservice, worker_id, limit, lease_seconds, start=False)

    async def claim_and_start(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        max_running: Mapping[str, int] | None = None,
    ) -> list[Job]:
        """Like :meth:`claim`, but the rows go straight to Processing with the attempt
        counted, in the same UPDATE: one round trip and one commit for the whole batch
        instead of one more of each per job."""
        return await self._claim(microservice, worker_id, limit, lease_seconds, start=True)

    async def _claim(
        self, microservice: str, worker_id: str, limit: int, lease_seconds: float, *, start: bool
    ) -> list[Job]:
        if limit <= 0:
            return []
        _check_length("worker_id", worker_id)
        lease = _seconds(lease_seconds)
        columns_out: tuple[str, ...]
        if start:
            statement, columns_out = self.sql.claim_start_update, CLAIM_STARTED_COLUMNS
            status = JobStatus.PROCESSING
        else:
            statement, columns_out = self.sql.claim_update, CLAIM_COLUMNS
            status = JobStatus.ASSIGNED

        async def work(tx: _Tx) -> list[Job]:
            with tx.cursor() as cur:
                # SKIP LOCKED locks rows as the driver fetches them: never let it fetch
                # (and lock) more than we take.
                cur.prefetchrows = limit
                cur.arraysize = limit
                await cur.execute(self.sql.claim_lock, {"microservice": microservice})
                ids = sorted(int(r[0]) for r in await cur.fetchmany(limit))
            if not ids:
                return []
            token = uuid.uuid4().hex  # the row's token is this plus its id
            jobs: list[Job] = []
            for chunk in _chunks(ids, IN_LIST_SIZE):
                with tx.cursor() as cur:
                    cur.setinputsizes(**dict.fromkeys(in_list_binds(), _NUMBER))
                    outs = {c: cur.var(_out_type(c)) for c in columns_out}
                    params: dict[str, Any] = {
                        **_padded_ids(chunk),
                        "worker_id": worker_id,
                        "lease_token": token,
                        "lease_seconds": lease,
                    }
                    params.update({f"o_{c.lower()}": v for c, v in outs.items()})
                    await cur.execute(statement, params)
                    columns = {c: outs[c].getvalue() for c in columns_out}
                for i in range(len(columns["ID"])):
                    row = {c: columns[c][i] for c in columns_out}
                    jobs.append(_job_from_row(row, status=status, lease_owner=worker_id))
            await tx.commit()
            return jobs

        operation = "claim_and_start" if start else "claim"
        return sorted(await self._run(operation, work), key=_dispatch_order)

    # --- transitions of an owned job ----------------------------------------------------------

    async def _owned_update(
        self,
        operation: str,
        job: Job,
        *,
        sql: str,
        params: dict[str, Any],
        settled: frozenset[JobStatus],
        outputs: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        """Run one guarded UPDATE of ``job`` and commit.

        Returns the RETURNING values, or None when a retry found the write already done (its
        first COMMIT reached the database before the connection failed). Raises
        LeaseLostError when the row is no longer owned, JobNotFoundError when it is gone.
        """
        db_id = _db_id(job.id)
        if db_id is None or job.lease_token is None:
            raise JobNotFoundError(f"no job {job.id!r} in {self.table}")

        async def work(tx: _Tx) -> dict[str, Any] | None:
            with tx.cursor() as cur:
                outs = {c: cur.var(_out_type(c)) for c in outputs}
                full = {**params, "id": db_id, "lease_token": job.lease_token}
                full.update({f"o_{c.lower()}": v for c, v in outs.items()})
                await cur.execute(sql, full)
                changed = cur.rowcount
                values = {c: (outs[c].getvalue() or [None])[0] for c in outputs}
            if changed == 1:
                await tx.commit()
                return values
            await self._not_owned(tx, job, db_id, settled)
            return None

        return await self._run(operation, work)

    async def _not_owned(
        self, tx: _Tx, job: Job, db_id: int, settled: frozenset[JobStatus]
    ) -> None:
        """The guarded write matched nothing: was it ours already, lost, or gone?"""
        with tx.cursor() as cur:
            await cur.execute(self.sql.job_state, {"id": db_id})
            found = await cur.fetchall()
        if not found:
            raise JobNotFoundError(f"job {job.id} no longer exists in {self.table}")
        status, token = found[0][0], found[0][1]
        if tx.attempt > 0 and token == job.lease_token and JobStatus(status) in settled:
            return  # an earlier attempt of this very call committed
        raise LeaseLostError(
            f"job {job.id} is no longer owned by this claim (status {status}; "
            "its lease expired or it was reclaimed)"
        )

    async def mark_processing(self, job: Job, lease_seconds: float) -> Job:
        values = await self._owned_update(
            "mark_processing",
            job,
            sql=self.sql.mark_processing,
            params={"lease_seconds": _seconds(lease_seconds)},
            settled=frozenset({JobStatus.PROCESSING}),
            outputs=PROCESSING_COLUMNS,
        )
        if values is None:
            stored = await self.get(job.id)
            if stored is None:
                raise JobNotFoundError(f"job {job.id} no longer exists in {self.table}")
            return stored
        return replace(
            job,
            status=JobStatus.PROCESSING,
            attempts=_number(values["ATTEMPTS"], job.attempts + 1),
            started_at=_utc(values["STARTED_AT"]),
            lease_expires_at=_utc(values["LEASE_EXPIRES_AT"]),
            updated_at=_utc(values["UPDATED_AT"]),
        )

    async def complete(self, job: Job, results: Any, runtime_ms: float) -> None:
        text = None if results is None else json.dumps(results, allow_nan=False)
        await self._owned_update(
            "complete",
            job,
            sql=self.sql.complete,
            params={"results": text, "runtime_ms": float(runtime_ms)},
            settled=frozenset({JobStatus.COMPLETED}),
        )

    async def fail(
        self, job: Job, error_code: str, error_message: str, runtime_ms: float | None
    ) -> None:
        await self._owned_update(
            "fail",
            job,
            sql=self.sql.fail,
            params={
                "error_code": error_code,
                "error_message": _error_text(error_message),
                "runtime_ms": runtime_ms,
            },
            settled=frozenset({JobStatus.FAILED}),
        )

    async def retry(
        self,
        job: Job,
        error_code: str,
        error_message: str,
        delay_seconds: float,
        runtime_ms: float | None,
    ) -> JobStatus:
        values = await self._owned_update(
            "retry",
            job,
            sql=self.sql.retry,
            params={
                "error_code": error_code,
                "error_message": _error_text(error_message),
                "delay_seconds": _seconds(delay_seconds),
                "runtime_ms": runtime_ms,
            },
            settled=frozenset({JobStatus.FAILED}),
            outputs=("STATUS",),
        )
        if values is None:
            return JobStatus.FAILED
        return JobStatus(values["STATUS"])

    async def extend_leases(self, jobs: Sequence[Job], lease_seconds: float) -> LeaseRenewal:
        lease = _seconds(lease_seconds)
        lost: set[str] = set()
        asked: list[Job] = []
        rows: list[dict[str, Any]] = []
        for job in jobs:
            db_id = _db_id(job.id)
            if db_id is None or job.lease_token is None:
                lost.add(job.id)
                continue
            asked.append(job)
            rows.append({"id": db_id, "lease_token": job.lease_token, "lease_seconds": lease})
        if rows:
            counts = await self._run("extend_leases", self._each(self.sql.extend_lease, rows))
            lost.update(j.id for j, n in zip(asked, counts, strict=True) if n == 0)
        return LeaseRenewal(lost=frozenset(lost))

    def _each(self, sql: str, rows: list[dict[str, Any]]) -> Callable[[_Tx], Awaitable[list[int]]]:
        """One executemany in one transaction; returns the row count of each row."""

        async def work(tx: _Tx) -> list[int]:
            with tx.cursor() as cur:
                await cur.executemany(sql, rows, arraydmlrowcounts=True)
                counts = [int(n) for n in cur.getarraydmlrowcounts()]
            await tx.commit()
            return counts

        return work

    async def release(self, jobs: Sequence[Job]) -> int:
        rows = [
            {"id": db_id, "lease_token": j.lease_token}
            for j in jobs
            if (db_id := _db_id(j.id)) is not None and j.lease_token is not None
        ]
        if not rows:
            return 0
        counts = await self._run("release", self._each(self.sql.release, rows))
        released = sum(counts)
        if released:
            self._notify()
        return released

    async def reclaim_expired(self, microservice: str) -> ReclaimResult:
        requeued: list[str] = []
        failed: list[str] = []

        async def work(tx: _Tx) -> int:
            with tx.cursor() as cur:
                cur.prefetchrows = RECLAIM_BATCH
                cur.arraysize = RECLAIM_BATCH
                await cur.execute(self.sql.reclaim_lock, {"microservice": microservice})
                ids = sorted(int(r[0]) for r in await cur.fetchmany(RECLAIM_BATCH))
            back: list[str] = []
            dead: list[str] = []
            for chunk in _chunks(ids, IN_LIST_SIZE):
                with tx.cursor() as cur:
                    cur.setinputsizes(**dict.fromkeys(in_list_binds(), _NUMBER))
                    out_id = cur.var(_NUMBER)
                    await cur.execute(
                        self.sql.reclaim_assigned, {**_padded_ids(chunk), "o_id": out_id}
                    )
                    back.extend(str(int(i)) for i in out_id.getvalue())
                with tx.cursor() as cur:
                    cur.setinputsizes(**dict.fromkeys(in_list_binds(), _NUMBER))
                    out_id, out_status = cur.var(_NUMBER), cur.var(str)
                    await cur.execute(
                        self.sql.reclaim_processing,
                        {
                            **_padded_ids(chunk),
                            "error_code": ErrorCode.LEASE_EXPIRED.value,
                            "requeued_message": _REQUEUED_MESSAGE,
                            "failed_message": _FAILED_MESSAGE,
                            "o_id": out_id,
                            "o_status": out_status,
                        },
                    )
                    for job_id, status in zip(
                        out_id.getvalue(), out_status.getvalue(), strict=True
                    ):
                        target = dead if status == JobStatus.FAILED.value else back
                        target.append(str(int(job_id)))
            if ids:
                await tx.commit()
            requeued.extend(back)
            failed.extend(dead)
            return len(ids)

        for _ in range(_MAX_BATCHES):
            if await self._run("reclaim_expired", work) < RECLAIM_BATCH:
                break
        return ReclaimResult(requeued=requeued, failed=failed)

    # --- reading -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        db_id = _db_id(job_id)
        if db_id is None:
            return None

        async def work(tx: _Tx) -> Job | None:
            with tx.cursor() as cur:
                cur.outputtypehandler = clob_as_text
                await cur.execute(self.sql.get, {"id": db_id})
                found = await cur.fetchall()
            if not found:
                return None
            return _job_from_row(dict(zip(JOB_COLUMNS, found[0], strict=True)))

        return await self._run("get", work)

    async def stats(self, microservice: str) -> QueueStats:
        async def work(tx: _Tx) -> list[Any]:
            with tx.cursor() as cur:
                await cur.execute(self.sql.stats, {"microservice": microservice})
                return await cur.fetchall()

        counts = dict.fromkeys(JobStatus, 0)
        age: float | None = None
        for status, count, oldest, now in await self._run("stats", work):
            if status is None:
                continue
            counts[JobStatus(status)] += int(count)
            if oldest is not None and now is not None:
                age = max(0.0, (now - oldest).total_seconds())
        return QueueStats(counts=counts, oldest_ready_age_seconds=age)

    async def purge(self, microservice: str, older_than_seconds: float) -> int:
        params = {
            "microservice": microservice,
            "older_than_seconds": _seconds(older_than_seconds),
            "batch_size": PURGE_BATCH,
        }

        async def work(tx: _Tx) -> int:
            with tx.cursor() as cur:
                await cur.execute(self.sql.purge, params)
                deleted = cur.rowcount
            if deleted:
                await tx.commit()
            return deleted

        total = 0
        for _ in range(_MAX_BATCHES):
            deleted = await self._run("purge", work)
            total += deleted
            if deleted < PURGE_BATCH:
                break
        return total


_ENQUEUE_OUT = ("ID", "RUN_AT", "CREATED_AT", "UPDATED_AT")
