"""OracleQueue: the job queue port on one Oracle table, through python-oracledb (async, thin).

Every operation is one short transaction on a pooled connection; no transaction stays open
while a job runs. Ownership after a claim is a lease (expiry on the database clock) plus a
fencing token: each later write names id + token + expected status, and a write that
matches no row means the lease was lost.

Failures: a lost session or a transient error (deadlock, listener busy, pool exhausted...)
is retried a few times with backoff on a fresh connection; then QueueUnavailableError hands
the outage to the worker's own backoff. Permanent errors are raised at once, with a hint.
A row lock held by another session is never waited on unboundedly (see ``usvc_oracle.sql``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import oracledb
from usvc_core.adapter_support import (
    QueueBase,
    capped_counts,
    check_action_name,
    check_count_limit,
    check_worker_record,
    current_attempt,
)
from usvc_core.errors import (
    ConfigurationError,
    DuplicateJobError,
    JobNotFoundError,
    LeaseLostError,
    QueueError,
    QueueUnavailableError,
    UsvcError,
)
from usvc_core.health import HealthRegistry, Status
from usvc_core.jobs import AttemptOutcome, ErrorCode, Job, JobAttempt, JobStatus
from usvc_core.logging import logger
from usvc_core.ports import (
    GONE_AFTER_HEARTBEATS,
    EnqueueRequest,
    JobFilter,
    JobPage,
    LeaseRenewal,
    Metrics,
    MinuteActivity,
    QueueActivity,
    QueueStats,
    ReclaimResult,
    WorkerRecord,
)

from usvc_oracle.admin import decode_cursor, encode_cursor, filter_binds
from usvc_oracle.driver import ConnectionLike, CursorLike, PoolLike, clob_as_text, create_pool
from usvc_oracle.errors import JobLockedError, OracleQueueError
from usvc_oracle.failures import Failure, FailureKind, classify, constraint_name
from usvc_oracle.rows import (
    check_length,
    chunks,
    clob_inputs,
    db_id,
    decode_payload,
    dispatch_order,
    error_text,
    job_from_row,
    number,
    padded,
    seconds,
    utc,
)
from usvc_oracle.settings import OracleSettings
from usvc_oracle.sql import (
    CLAIM_COLUMNS,
    CLAIM_STARTED_COLUMNS,
    IN_LIST_SIZE,
    JOB_COLUMNS,
    PROCESSING_COLUMNS,
    ROW_LOCK_WAIT_SECONDS,
    Statements,
    in_list_binds,
)

__all__ = ["LIMITS_CHECK", "OracleQueue"]

_log = logger.bind(queue="oracle")
#: The health check the max_running stall warning sets (see OracleQueue.observe).
LIMITS_CHECK = "oracle_max_running"

T = TypeVar("T")

#: Rows one reclaim transaction looks at, and rows one purge transaction deletes.
RECLAIM_BATCH = 4 * IN_LIST_SIZE
PURGE_BATCH = 500
#: Bounds on the loops that repeat a full batch (the worker calls again later anyway).
_MAX_BATCHES = 20
_BACKOFF_CAP_SECONDS = 2.0
#: Due delayed jobs one claim moves into the claim's index, and how often a claim does so
#: even when it finds enough undelayed work.
PROMOTE_BATCH = 2 * IN_LIST_SIZE
_PROMOTE_EVERY_SECONDS = 1.0
_PAUSED_REFRESH_SECONDS = 1.0
#: Owned writes remembered as sent-but-unconfirmed (a worker repeats them within seconds).
_MAX_UNCONFIRMED = 10_000
#: Most jobs find_jobs returns (the port's FIND_LIMIT).
FIND_LIMIT = 100
#: Most jobs one admin page may hold.
MAX_PAGE = 1000

_REQUEUED_MESSAGE = "lease expired (the worker crashed or stalled); the job will run again"
_FAILED_MESSAGE = (
    "lease expired (the worker crashed or stalled) during the last attempt; no attempts left"
)
#: A reclaimed start never confirmed: "claimed by worker <w> but never confirmed ..." (the
#: statement puts LEASE_OWNER between the two).
_UNSTARTED_MESSAGE = "claimed by worker "
_UNSTARTED_TAIL = (
    " but never confirmed started (the claim's reply was probably lost); the attempt was given back"
)
#: How many attempts of a job ``get`` shows by default (``JOB_ATTEMPT_HISTORY``).
DEFAULT_ATTEMPT_HISTORY = 20
_EXHAUSTED_MESSAGE = (
    "no attempts left: this Ready row's ATTEMPTS had already reached MAX_ATTEMPTS when it "
    "was claimed (written or reset by another producer or an operator); set ATTEMPTS to 0 "
    "to run it again"
)
_CANCELLED_MESSAGE = "cancelled by an operator"

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
_ENQUEUE_OUT = ("ID", "RUN_AT", "CREATED_AT", "UPDATED_AT")


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

    def commit_with_next(self) -> None:
        """The next statement commits the transaction: the thin driver sends the commit
        with it (autocommit), one round trip instead of two. ``_run`` turns it off before
        the connection goes back to the pool."""
        self.committing = True
        self.conn.autocommit = True

    @contextlib.contextmanager
    def cursor(self) -> Iterator[CursorLike]:
        cur = self.conn.cursor()
        try:
            yield cur
        finally:
            cur.close()


def _id_binds(cur: CursorLike, **more: Any) -> None:
    """Bind the padded ID list as NUMBER (a NULL pad would otherwise be VARCHAR)."""
    cur.setinputsizes(**dict.fromkeys(in_list_binds(), _NUMBER), **more)


def _key_order(row: Mapping[str, Any]) -> tuple[str, bool, str, bool, str]:
    """Rows with a unique key first, by key, then by idempotency key; keyless rows last."""
    unique, idem = row["unique_key"], row["idempotency_key"]
    return (row["microservice"], unique is None, unique or "", idem is None, idem or "")


def _check_limits(limits: dict[str, int]) -> None:
    """What Oracle adds to the shared ``max_running`` checks: names that fit the column, and
    no more actions than the claim's IN-lists hold."""
    for action in limits:
        check_length("action", action)
    if len(limits) > IN_LIST_SIZE:
        raise ValueError(f"at most {IN_LIST_SIZE} actions may have a max_running")


@dataclass(slots=True)
class _Pick:
    """What one claim has locked so far: rows to take, rows to fail, every row seen."""

    ids: list[int] = field(default_factory=list)
    exhausted: list[int] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    promoted: bool = False


@dataclass(slots=True)
class _Slots:
    """The claim's view of the ``max_running`` limits, while it holds their rows."""

    remaining: dict[str, int]  #: held limited actions -> jobs this claim may still take
    skip: set[str]  #: limited actions this claim must not take (full, or another's turn)


class OracleQueue(QueueBase):
    """Implements :class:`usvc_core.ports.JobQueue` and :class:`usvc_core.ports.QueueAdmin`
    on one Oracle table (see the README).

    ``pool_factory`` and ``sleep`` exist for tests: a recording fake pool, and backoff that
    does not wait on the wall clock.
    """

    def __init__(
        self,
        settings: OracleSettings,
        *,
        pool_factory: Callable[[OracleSettings], PoolLike] = create_pool,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        attempt_history: int = DEFAULT_ATTEMPT_HISTORY,
    ) -> None:
        super().__init__()
        if isinstance(attempt_history, bool) or not isinstance(attempt_history, int):
            raise TypeError(f"attempt_history={attempt_history!r} must be a whole number")
        if attempt_history < 1:
            raise ValueError(f"attempt_history={attempt_history!r}: keep at least 1 attempt")
        #: how many attempts of a job ``get`` shows (the ATTEMPTS table's ring size)
        self.attempt_history = attempt_history
        self.settings = settings
        self.table = settings.table
        self.sql = Statements.render(self.table)
        self._pool_factory = pool_factory
        self._sleep = sleep
        self._monotonic = monotonic
        #: V$SESSION.MODULE of this queue's sessions (at most 48 bytes)
        self._module = f"usvc {self.table}"[:48]
        self._promoted_at = monotonic()
        self._opened_at = monotonic()
        #: service -> (when read, its paused actions), for the claim's index filter
        self._paused_cache: dict[str, tuple[float, set[str]]] = {}
        self._pool: PoolLike | None = None
        self._random = random.Random()
        #: (service, action) of LIMITS rows known to exist
        self._limit_rows: set[tuple[str, str]] = set()
        #: (service, action) -> (since when this queue has not held its row, last check)
        self._limit_missed: dict[tuple[str, str], tuple[float, float]] = {}
        #: (service, action) -> seconds its oldest due job had waited, while stalled
        self._limit_stalled: dict[tuple[str, str], float] = {}
        self._health: HealthRegistry | None = None
        self._metrics: Metrics | None = None
        #: row id -> lease token of claimed rows whose COMMIT went unanswered
        self._unconfirmed_claims: dict[int, str] = {}
        #: (job id, lease token, operation) of owned writes whose COMMIT went unanswered
        self._unconfirmed: dict[tuple[str, str, str], None] = {}

    def __repr__(self) -> str:
        return (
            f"OracleQueue(dsn={self.settings.ORACLE_DSN!r}, user={self.settings.ORACLE_USER!r}, "
            f"table={str(self.table)!r})"
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool and check that the tables exist with every column.

        Raises QueueUnavailableError when Oracle cannot be reached (refused, timed out,
        starting up: the application may stay up and retry) and ConfigurationError, with
        one line saying what to fix, when retrying cannot help (bad credentials, missing
        table or grant, a bad DSN)."""
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
            failure = classify(exc)
            if failure.kind is FailureKind.PERMANENT:
                raise ConfigurationError(
                    f"cannot use the Oracle queue ({where}): {self._permanent('open', failure)}"
                ) from exc
            raise QueueUnavailableError(
                f"cannot reach Oracle ({where}): {failure.code}: {failure.message}"
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
        for sql, suffix in (
            (self.sql.limits_probe, "LIMITS"),
            (self.sql.workers_probe, "WORKERS"),
            (self.sql.paused_probe, "PAUSED"),
            (self.sql.attempts_probe, "ATTEMPTS"),
        ):
            with tx.cursor() as cur:
                try:
                    await cur.execute(sql)
                except oracledb.DatabaseError as exc:
                    failure = classify(exc)
                    if failure.kind is not FailureKind.PERMANENT:
                        raise
                    table = f"{self.table}_{suffix}"
                    raise self._permanent("open", failure, table=table) from exc
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

    async def store_now(self) -> datetime:
        """The database's clock, UTC (:class:`~usvc_core.ports.StoreClock`): the scheduler
        enqueues a slot only once this has reached it."""

        async def work(tx: _Tx) -> datetime:
            with tx.cursor() as cur:
                await cur.execute(self.sql.db_now)
                ((now,),) = await cur.fetchall()
            stamp: datetime = now.replace(tzinfo=UTC)
            return stamp

        return await self._run("store_now", work)

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
            # Seen by a DBA in V$SESSION (MODULE, ACTION); sent with the next call.
            conn.module = self._module
            conn.action = operation[:32]
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

    def _permanent(
        self, operation: str, failure: Failure, *, table: str | None = None
    ) -> OracleQueueError:
        hint = failure.hint(
            table=table or str(self.table),
            dsn=self.settings.ORACLE_DSN,
            user=self.settings.ORACLE_USER,
        )
        text = f"Oracle {operation} failed: {failure.code}: {failure.message}"
        return OracleQueueError(f"{hint} ({text})" if hint else text, failure)

    async def _give_back(self, pool: PoolLike, conn: ConnectionLike, *, rollback: bool) -> None:
        try:
            conn.autocommit = False  # pooled sessions start without it
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
        check_length("microservice", r.microservice)
        check_length("token", r.token)
        check_length("idempotency_key", r.idempotency_key)
        check_length("unique_key", r.unique_key)
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
            "unique_key": r.unique_key or None,
            "max_attempts": int(r.max_attempts),
            "delay_seconds": seconds(r.delay_seconds),
        }

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]:
        """All or nothing: one transaction for the whole batch."""
        if not requests:
            return []
        rows = [self._insert_params(r) for r in requests]
        for column, what in (("idempotency_key", "idempotency key"), ("unique_key", "unique key")):
            seen: set[tuple[str, str]] = set()
            for row in rows:
                if row[column] is not None:
                    key = (row["microservice"], row[column])
                    if key in seen:
                        raise DuplicateJobError(f"{what} {key[1]!r} appears twice in one batch")
                    seen.add(key)

        # Insert in key order: two batches taking the same keys then wait on each other's
        # index entries in one order, never crosswise (ORA-00060).
        order = sorted(range(len(rows)), key=lambda i: _key_order(rows[i]))
        ordered = [rows[i] for i in order]

        async def work(tx: _Tx) -> list[Job]:
            with tx.cursor() as cur:
                outs = {c: cur.var(_out_type(c), arraysize=len(rows)) for c in _ENQUEUE_OUT}
                cur.setinputsizes(
                    **{f"o_{c.lower()}": v for c, v in outs.items()},
                    **clob_inputs(rows, ("payload",)),
                )
                try:
                    await cur.executemany(self.sql.enqueue, ordered)
                except oracledb.IntegrityError as exc:
                    raise await self._refused(tx, ordered, exc) from exc
                returned: dict[str, list[Any]] = {c: [None] * len(rows) for c in _ENQUEUE_OUT}
                for position, i in enumerate(order):
                    for c in _ENQUEUE_OUT:
                        returned[c][i] = outs[c].getvalue(position)[0]
                ids = [int(v) for v in returned["ID"]]
            # A job without a token keeps TOKEN NULL, read back as its id (no second DML).
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
                        run_at=utc(returned["RUN_AT"][i]),
                        max_attempts=row["max_attempts"],
                        token=row["token"] or str(ids[i]),
                        idempotency_key=row["idempotency_key"],
                        unique_key=row["unique_key"],
                        created_at=utc(returned["CREATED_AT"][i]),
                        updated_at=utc(returned["UPDATED_AT"][i]),
                    )
                )
            return jobs

        # Not retried once COMMIT is in flight: a second insert could duplicate the job.
        jobs = await self._run("enqueue", work, idempotent=False)
        self._notify()
        return jobs

    async def _refused(
        self, tx: _Tx, rows: list[dict[str, Any]], exc: oracledb.IntegrityError
    ) -> Exception:
        """What an insert's constraint violation means: a key held by another job
        (DuplicateJobError naming it), or a table problem (OracleQueueError saying what to
        fix). Only our two key indexes stand for duplicates."""
        failure = classify(exc)
        await tx.conn.rollback()
        name = constraint_name(exc) if failure.code == "ORA-00001" else None
        if name == f"{self.table.table}_IDEM_UX":
            return await self._holder(tx, rows, "idempotency_key")
        if name == f"{self.table.table}_UNIQ_UX":
            return await self._holder(tx, rows, "unique_key")
        if name == f"{self.table.table}_PK":
            return OracleQueueError(
                f"the ID that {self.table}'s identity column generated is taken: rows were "
                "inserted with explicit IDs ahead of the identity sequence. Move the sequence "
                f"past them: ALTER TABLE {self.table.quoted} MODIFY ID GENERATED BY DEFAULT "
                f"ON NULL AS IDENTITY (START WITH LIMIT VALUE) ({failure.code}: "
                f"{failure.message})",
                failure,
            )
        return self._permanent("enqueue", failure)

    async def _holder(self, tx: _Tx, rows: list[dict[str, Any]], column: str) -> Exception:
        sql = self.sql.idempotency_holder if column == "idempotency_key" else self.sql.unique_holder
        what = "unfinished job" if column == "idempotency_key" else "job"
        label = column.replace("_", " ")
        for row in rows:
            if row[column] is None:
                continue
            with tx.cursor() as cur:
                await cur.execute(sql, {"microservice": row["microservice"], column: row[column]})
                found = await cur.fetchall()
            if found:
                holder = str(int(found[0][0]))
                return DuplicateJobError(
                    f"{label} {row[column]!r} is held by {what} {holder}", holder
                )
        if column == "idempotency_key":
            return DuplicateJobError("an unfinished job already holds this idempotency key")
        return DuplicateJobError("a job of this service already holds this unique key")

    # --- claiming -------------------------------------------------------------------------------

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
        """Lock up to ``limit`` due Ready rows (SKIP LOCKED) and move them to Assigned, or
        straight to Processing with the attempt counted when ``start`` (one round trip and
        one commit for the whole batch), then commit."""
        if limit <= 0:
            return []
        check_length("worker_id", worker_id)
        lease = seconds(lease_seconds)
        _check_limits(limits)
        columns_out: tuple[str, ...]
        if start:
            statement, columns_out = self.sql.claim_start_update, CLAIM_STARTED_COLUMNS
            status = JobStatus.PROCESSING
        else:
            statement, columns_out = self.sql.claim_update, CLAIM_COLUMNS
            status = JobStatus.ASSIGNED

        async def work(tx: _Tx) -> list[Job]:
            given_back = await self._give_back_unconfirmed_claims(tx)
            slots = await self._limit_slots(tx, microservice, limits)
            # Paused actions are skipped inside the claim index too (a pause of a large
            # backlog must not cost a table visit per paused row); the lock query's NOT
            # EXISTS on the paused table keeps a fresher pause from being claimed meanwhile.
            paused = await self._paused_names(tx, microservice)
            room = IN_LIST_SIZE - len(slots.skip)
            slots.skip |= set(sorted(paused - slots.skip)[: max(room, 0)])
            pick = _Pick()
            # Due delayed jobs join the claim's index before the pick now and then (so a
            # steady stream of undelayed work cannot keep them out), and whenever the pick
            # comes back short (so an idle queue takes them as soon as they are due).
            if self._monotonic() - self._promoted_at >= _PROMOTE_EVERY_SECONDS:
                pick.promoted = await self._promote(tx, microservice)
            await self._pick(tx, microservice, limit, slots, rounds=len(limits), pick=pick)
            if len(pick.ids) < limit and not pick.promoted:
                pick.promoted = await self._promote(tx, microservice)
                if pick.promoted:
                    await self._pick(tx, microservice, limit, slots, rounds=len(limits), pick=pick)
            ids, exhausted = pick.ids, pick.exhausted
            if exhausted:
                await self._fail_exhausted(tx, exhausted)
            if not ids:
                if exhausted or pick.promoted or given_back:
                    await tx.commit()
                    self._settle_claims(given_back)
                return []
            token = uuid.uuid4().hex  # the row's token is this plus its id
            jobs: list[Job] = []
            batches = list(chunks(sorted(ids), IN_LIST_SIZE))
            for n, chunk in enumerate(batches, start=1):
                with tx.cursor() as cur:
                    _id_binds(cur)
                    outs = {c: cur.var(_out_type(c)) for c in columns_out}
                    params: dict[str, Any] = {
                        **padded(chunk),
                        "worker_id": worker_id,
                        "lease_token": token,
                        "lease_seconds": lease,
                    }
                    params.update({f"o_{c.lower()}": v for c, v in outs.items()})
                    if n == len(batches):
                        # The last UPDATE carries the COMMIT. Until its answer arrives the
                        # rows may be ours without our knowing: if it never comes, a later
                        # claim puts them back (see _give_back_unconfirmed_claims).
                        self._unconfirmed_claims.update({i: f"{token}{i}" for i in ids})
                        tx.commit_with_next()
                    await cur.execute(statement, params)
                    columns = {c: outs[c].getvalue() for c in columns_out}
                for i in range(len(columns["ID"])):
                    row = {c: columns[c][i] for c in columns_out}
                    jobs.append(job_from_row(row, status=status, lease_owner=worker_id))
            self._settle_claims([*given_back, *ids])
            return jobs

        operation = "claim_and_start" if start else "claim"
        if limits:
            await self._ensure_limit_rows(microservice, sorted(limits), operation)
        return sorted(await self._run(operation, work), key=dispatch_order)

    async def _ensure_limit_rows(
        self, microservice: str, actions: list[str], operation: str
    ) -> None:
        """Create the limited actions' ``<table>_LIMITS`` rows in a transaction of their
        own, committed at once, the first time this queue claims them (issue 22 item 2):
        inside a claim, an uncommitted insert would make every other first claimer wait on
        it, for the whole call timeout if its session died. A row that exists is skipped."""
        missing = [a for a in actions if (microservice, a) not in self._limit_rows]
        if not missing:
            return

        async def work(tx: _Tx) -> None:
            rows = [{"microservice": microservice, "action": a} for a in missing]
            with tx.cursor() as cur:
                await cur.executemany(self.sql.limit_insert, rows, batcherrors=True)
                for error in cur.getbatcherrors():
                    if getattr(error, "code", 1) != 1:  # ORA-00001: there already
                        raise oracledb.DatabaseError(error)
            await tx.commit()

        await self._run(operation, work)
        self._limit_rows.update((microservice, a) for a in missing)

    async def _watch_stalls(
        self, tx: _Tx, microservice: str, actions: list[str], held: set[str]
    ) -> None:
        """Warn when a limited action's jobs wait because its limits row stays locked.

        A claimer whose network died while it held the row keeps that lock until the
        server notices the dead session (SQLNET.EXPIRE_TIME, MAX_IDLE_BLOCKER_TIME); every
        other claimer skips the action meanwhile, silently. When this queue has not held an
        action's row for ORACLE_LIMIT_STALL_SECONDS and the action has had a due job
        waiting that long, it logs a warning, turns its health check YELLOW and counts a
        ``max_running_stalled`` queue error; both clear once it holds the row again."""
        now = self._monotonic()
        bound = self.settings.ORACLE_LIMIT_STALL_SECONDS
        for action in actions:
            key = (microservice, action)
            if action in held:
                self._limit_missed.pop(key, None)
                if self._limit_stalled.pop(key, None) is not None:
                    _log.info("limited action claimable again", action=action)
                    self._report_stalls()
                continue
            since, checked = self._limit_missed.setdefault(key, (now, -math.inf))
            if now - since < bound or now - checked < bound:
                continue
            self._limit_missed[key] = (since, now)
            self._limit_rows.discard(key)  # a deleted row is created again
            with tx.cursor() as cur:
                await cur.execute(
                    self.sql.limit_waiting, {"microservice": microservice, "action": action}
                )
                ((oldest_due, db_now),) = await cur.fetchall()
            waited = (db_now - oldest_due).total_seconds() if oldest_due and db_now else 0.0
            if waited < bound:
                continue
            self._limit_stalled[key] = waited
            _log.warning(
                "limited action skipped: another session has held its limits row for "
                f"{now - since:.0f} s while its oldest due job waits; a dead session keeps "
                "the lock until the server notices (SQLNET.EXPIRE_TIME, MAX_IDLE_BLOCKER_TIME)",
                action=action,
                microservice=microservice,
                table=f"{self.table}_LIMITS",
                oldest_due_seconds=round(waited),
            )
            if self._metrics is not None:
                self._metrics.queue_error("max_running_stalled")
            self._report_stalls()

    def _report_stalls(self) -> None:
        if self._health is None:
            return
        if self._limit_stalled:
            details = {f"{ms}/{a}": round(s) for (ms, a), s in sorted(self._limit_stalled.items())}
            self._health.update(LIMITS_CHECK, Status.YELLOW, {"stalled_seconds": details})
        else:
            self._health.update(LIMITS_CHECK, Status.GREEN)

    def observe(self, health: HealthRegistry, metrics: Metrics) -> None:
        """Report to the application's health and metrics (the ``max_running`` stall
        warning); called by the application when present."""
        self._health, self._metrics = health, metrics

    async def _give_back_unconfirmed_claims(self, tx: _Tx) -> list[int]:
        """Put back to Ready, in this claim's transaction, the rows of earlier claims whose
        COMMIT was sent but never answered (issue 22 item 3). If that COMMIT landed, the
        rows sit Assigned/Processing under a token no worker holds; with claim_and_start
        their attempt is spent, so a job with max_attempts=1 would end Failed at lease
        expiry without ever running. The release statement (id + token, leased) gives the
        attempt back; a row that does not match (the COMMIT did not land, or the lease was
        reclaimed meanwhile) is left alone. Rows another session holds locked are skipped
        and tried again next time. Returns the ids settled (the caller commits)."""
        if not self._unconfirmed_claims:
            return []
        settled: list[int] = []
        for chunk in chunks(sorted(self._unconfirmed_claims), IN_LIST_SIZE):
            locked = sorted(await self._lock_ids(tx, chunk))
            present = await self._existing(tx, chunk) if len(locked) < len(chunk) else set()
            settled += [i for i in chunk if i not in locked and i not in present]  # gone
            if not locked:
                continue
            rows = [{"id": i, "lease_token": self._unconfirmed_claims[i]} for i in locked]
            await self._release_rows(tx, rows)
            settled += locked
        return settled

    def _settle_claims(self, ids: Sequence[int]) -> None:
        for row_id in ids:
            self._unconfirmed_claims.pop(row_id, None)

    async def _limit_slots(self, tx: _Tx, microservice: str, limits: dict[str, int]) -> _Slots:
        """Take this claim's turn for the limited actions and count what they may still run.

        Claimers of a limited action are serialized by a row per (service, action) in the
        small ``<table>_LIMITS`` table, locked FOR UPDATE SKIP LOCKED until the claim
        commits: the holder counts the action's Assigned+Processing jobs and claims at most
        the remainder, and a claimer that finds the row taken leaves that action to the
        holder this round instead of waiting. A row rather than DBMS_LOCK, because a row
        lock needs no extra grant, ends with the transaction, and a crashed session's lock
        goes with its session.
        """
        if not limits:
            return _Slots({}, set())
        actions = sorted(limits)
        with tx.cursor() as cur:
            await cur.execute(
                self.sql.limit_lock, {"microservice": microservice, **padded(actions, "action")}
            )
            held = {str(r[0]) for r in await cur.fetchall()}
        await self._watch_stalls(tx, microservice, actions, held)
        running: dict[str, int] = {}
        if held:
            with tx.cursor() as cur:
                await cur.execute(
                    self.sql.running_counts,
                    {"microservice": microservice, **padded(sorted(held), "action")},
                )
                running = {str(a): int(n) for a, n in await cur.fetchall()}
        remaining = {a: max(0, limits[a] - running.get(a, 0)) for a in held}
        skip = {a for a in actions if remaining.get(a, 0) == 0}
        return _Slots(remaining, skip)

    async def _paused_names(self, tx: _Tx, microservice: str) -> set[str]:
        """The service's paused actions, read again at most once a second per queue."""
        now = self._monotonic()
        cached = self._paused_cache.get(microservice)
        if cached is not None and now - cached[0] < _PAUSED_REFRESH_SECONDS:
            return cached[1]
        if cached is None and now - self._opened_at < _PAUSED_REFRESH_SECONDS:
            return set()  # just opened: the lock query's NOT EXISTS covers the first second
        with tx.cursor() as cur:
            await cur.execute(self.sql.paused, {"microservice": microservice})
            names = {str(r[0]) for r in await cur.fetchall()}
        self._paused_cache[microservice] = (now, names)
        return names

    async def _promote(self, tx: _Tx, microservice: str) -> bool:
        """Move due delayed jobs (oldest first, at most PROMOTE_BATCH, skipping rows
        another session holds) into the claim's index. One round trip when none is due."""
        self._promoted_at = self._monotonic()
        with tx.cursor() as cur:
            cur.prefetchrows = PROMOTE_BATCH
            cur.arraysize = PROMOTE_BATCH
            await cur.execute(self.sql.promote_lock, {"microservice": microservice})
            ids = sorted(int(r[0]) for r in await cur.fetchmany(PROMOTE_BATCH))
        if not ids:
            return False
        with tx.cursor() as cur:
            _id_binds(cur)
            await cur.executemany(
                self.sql.promote, [padded(chunk) for chunk in chunks(ids, IN_LIST_SIZE)]
            )
        return True

    async def _pick(
        self, tx: _Tx, microservice: str, limit: int, slots: _Slots, *, rounds: int, pick: _Pick
    ) -> None:
        """Lock due Ready rows in dispatch order into ``pick``, up to ``limit`` in all, none
        of a skipped action and at most the remainder of a limited one. When an action fills
        up part-way, its other rows are left and the lock query runs again without it, so a
        full action never holds back the others (at most once per limited action). Rows
        whose attempts are already spent are set apart, to be failed."""
        for _ in range(rounds + 1):
            params: dict[str, Any] = {"microservice": microservice}
            sql = self.sql.claim_lock
            if slots.skip:
                sql = self.sql.claim_lock_except
                skipped = sorted(slots.skip)
                # NOT IN with a NULL in its list matches nothing: pad with a real value.
                params.update(padded(skipped, "skip", pad=skipped[0]))
            # Rows this claim already locked come back first (its own locks are not
            # skipped): fetch past them.
            want = limit - len(pick.ids) + len(pick.seen)
            with tx.cursor() as cur:
                # SKIP LOCKED locks rows as the driver fetches them: never let it fetch
                # (and lock) more than we take.
                cur.prefetchrows = want
                cur.arraysize = want
                await cur.execute(sql, params)
                rows = await cur.fetchmany(want)
            for raw_id, action, attempts, max_attempts in rows:
                row_id = int(raw_id)
                if row_id in pick.seen:
                    continue  # locked by this claim in an earlier round
                pick.seen.add(row_id)
                if number(attempts) >= number(max_attempts, 1):
                    pick.exhausted.append(row_id)
                    continue
                if action in slots.remaining:
                    if slots.remaining[action] <= 0:
                        continue
                    slots.remaining[action] -= 1
                pick.ids.append(row_id)
                if len(pick.ids) >= limit:
                    return
            full = {a for a, n in slots.remaining.items() if n <= 0} - slots.skip
            if len(rows) < want or not full:
                break
            slots.skip |= full

    async def _fail_exhausted(self, tx: _Tx, ids: list[int]) -> None:
        for chunk in chunks(sorted(ids), IN_LIST_SIZE):
            with tx.cursor() as cur:
                _id_binds(cur)
                await cur.execute(
                    self.sql.fail_exhausted,
                    {
                        **padded(chunk),
                        "error_code": ErrorCode.LEASE_EXPIRED.value,
                        "error_message": _EXHAUSTED_MESSAGE,
                    },
                )

    # --- transitions of an owned job ----------------------------------------------------------

    async def _lock_job(
        self, tx: _Tx, row_id: int, job_id: str, operation: str
    ) -> tuple[str, str | None, str | None, str] | None:
        """Lock one job's row, waiting at most ROW_LOCK_WAIT_SECONDS for another session;
        its (status, lease token, error code, service), or None when the row is gone."""
        with tx.cursor() as cur:
            try:
                await cur.execute(self.sql.lock_job, {"id": row_id})
            except oracledb.DatabaseError as exc:
                failure = classify(exc)
                if failure.code not in ("ORA-30006", "ORA-00054"):
                    raise
                raise JobLockedError(
                    f"Oracle {operation} of job {job_id}: another session has held its row "
                    f"lock for over {ROW_LOCK_WAIT_SECONDS} s (an uncommitted change, e.g. an "
                    f"operator's UPDATE of {self.table}); nothing was written. Commit or roll "
                    f"back that session ({failure.code}: {failure.message})",
                    failure,
                ) from exc
            found = await cur.fetchall()
        if not found:
            return None
        status, token, code, service = found[0]
        return str(status), token, code, str(service)

    async def _owned_update(
        self,
        operation: str,
        job: Job,
        *,
        sql: str,
        params: dict[str, Any],
        expected: JobStatus,
        settled: frozenset[JobStatus],
        outputs: Sequence[str] = (),
        clob: Sequence[str] = (),
        history: str | None = None,
        history_params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | JobStatus:
        """Lock ``job``'s row, check it is still owned, run one guarded UPDATE and commit.

        Returns the RETURNING values, or the job's status when the write was already done
        (a COMMIT that reached the database unseen): the row is in one of the ``settled``
        statuses with this claim's token (a requeued row keeps its last token until the
        next claim), and this call's earlier attempt or an earlier same call sent a COMMIT
        whose answer never came. Writing twice otherwise is a lost lease (the port's
        promise). Raises LeaseLostError when the row is no longer owned,
        JobNotFoundError when it is gone, JobLockedError when another session holds it.
        """
        row_id = db_id(job.id)
        if row_id is None or job.lease_token is None:
            raise JobNotFoundError(f"no job {job.id!r} in {self.table}")

        key = (job.id, job.lease_token, operation)

        async def work(tx: _Tx) -> dict[str, Any] | JobStatus:
            state = await self._lock_job(tx, row_id, job.id, operation)
            if state is None:
                raise JobNotFoundError(f"job {job.id} no longer exists in {self.table}")
            status, token, _, _ = state
            unconfirmed = tx.attempt > 0 or key in self._unconfirmed
            if token == job.lease_token and status == expected.value:
                if len(self._unconfirmed) >= _MAX_UNCONFIRMED:  # bounded: oldest out
                    self._unconfirmed.pop(next(iter(self._unconfirmed)))
                self._unconfirmed[key] = None  # until the COMMIT's answer arrives
                if history is not None:  # the attempt it closes, in the same transaction
                    with tx.cursor() as cur:
                        binds = {
                            **(history_params or {}),
                            "id": row_id,
                            "lease_token": job.lease_token,
                            "keep": self.attempt_history,
                        }
                        sizes = clob_inputs([binds], clob)
                        if sizes:
                            cur.setinputsizes(**sizes)
                        await cur.execute(history, binds)
                with tx.cursor() as cur:
                    outs = {c: cur.var(_out_type(c)) for c in outputs}
                    full = {**params, "id": row_id, "lease_token": job.lease_token}
                    full.update({f"o_{c.lower()}": v for c, v in outs.items()})
                    sizes = clob_inputs([full], clob)
                    if sizes:
                        cur.setinputsizes(**sizes)
                    # Lock, then UPDATE carrying the COMMIT: two round trips, not three.
                    tx.commit_with_next()
                    await cur.execute(sql, full)
                    changed = cur.rowcount
                    values = {c: (outs[c].getvalue() or [None])[0] for c in outputs}
                self._unconfirmed.pop(key, None)
                if changed == 1:
                    return values
            elif token == job.lease_token and JobStatus(status) in settled and unconfirmed:
                # A write of this call's kind with this claim's token committed unseen: on
                # an earlier attempt of this call, or of an earlier call that ended without
                # knowing (JobLockedError or an outage on its retry), which the worker now
                # repeats - so the check cannot hang on this call's attempt count.
                self._unconfirmed.pop(key, None)
                return JobStatus(status)
            self._unconfirmed.pop(key, None)
            raise LeaseLostError(
                f"job {job.id} is no longer owned by this claim (status {status}; "
                "its lease expired or it was reclaimed)"
            )

        return await self._run(operation, work)

    async def mark_processing(self, job: Job, lease_seconds: float) -> Job:
        values = await self._owned_update(
            "mark_processing",
            job,
            sql=self.sql.mark_processing,
            params={"lease_seconds": seconds(lease_seconds)},
            expected=JobStatus.ASSIGNED,
            settled=frozenset({JobStatus.PROCESSING}),
            outputs=PROCESSING_COLUMNS,
        )
        if isinstance(values, JobStatus):
            stored = await self.get(job.id)
            if stored is None:
                raise JobNotFoundError(f"job {job.id} no longer exists in {self.table}")
            return stored
        return replace(
            job,
            status=JobStatus.PROCESSING,
            attempts=number(values["ATTEMPTS"], job.attempts + 1),
            started_at=utc(values["STARTED_AT"]),
            lease_expires_at=utc(values["LEASE_EXPIRES_AT"]),
            updated_at=utc(values["UPDATED_AT"]),
        )

    async def complete(self, job: Job, results: Any, runtime_ms: float) -> None:
        text = None if results is None else json.dumps(results, allow_nan=False)
        await self._owned_update(
            "complete",
            job,
            sql=self.sql.complete,
            params={"results": text, "runtime_ms": float(runtime_ms)},
            expected=JobStatus.PROCESSING,
            settled=frozenset({JobStatus.COMPLETED}),
            clob=("results",),
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
                "error_message": error_text(error_message),
                "runtime_ms": runtime_ms,
            },
            expected=JobStatus.PROCESSING,
            settled=frozenset({JobStatus.FAILED}),
            clob=("error_message",),
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
                "error_message": error_text(error_message),
                "delay_seconds": seconds(delay_seconds),
                "runtime_ms": runtime_ms,
            },
            expected=JobStatus.PROCESSING,
            settled=frozenset({JobStatus.FAILED, JobStatus.READY}),
            outputs=("STATUS",),
            clob=("error_message",),
            # The last attempt's retry fails the job: it stays the row's own attempt.
            history=self.sql.history_retry if job.attempts < job.max_attempts else None,
            history_params={
                "outcome": AttemptOutcome.RETRIED.value,
                "error_code": error_code,
                "error_message": error_text(error_message),
            },
        )
        if isinstance(values, JobStatus):
            return values
        return JobStatus(values["STATUS"])

    async def _lock_ids(self, tx: _Tx, ids: Sequence[int]) -> dict[int, bool]:
        """Lock the rows of ``ids`` that no other session holds (SKIP LOCKED): id ->
        whether an operator asked to cancel it."""
        with tx.cursor() as cur:
            _id_binds(cur)
            cur.prefetchrows = len(ids) + 1
            cur.arraysize = len(ids) + 1
            await cur.execute(self.sql.lock_ids, padded(ids))
            return {int(i): bool(number(flag)) for i, flag in await cur.fetchall()}

    async def _existing(self, tx: _Tx, ids: Sequence[int]) -> set[int]:
        with tx.cursor() as cur:
            _id_binds(cur)
            await cur.execute(self.sql.existing_ids, padded(ids))
            return {int(r[0]) for r in await cur.fetchall()}

    async def extend_leases(self, jobs: Sequence[Job], lease_seconds: float) -> LeaseRenewal:
        """Renew the leases still owned; a job whose row another session holds locked is
        left for the next renewal (neither lost nor renewed: nothing waits on that lock)."""
        lease = seconds(lease_seconds)
        lost: set[str] = set()
        owned: dict[int, Job] = {}
        for job in jobs:
            row_id = db_id(job.id)
            if row_id is None or job.lease_token is None:
                lost.add(job.id)
            else:
                owned[row_id] = job
        if not owned:
            return LeaseRenewal(lost=frozenset(lost))

        async def work(tx: _Tx) -> tuple[set[str], set[str]]:
            gone: set[str] = set()
            cancel: set[str] = set()
            for chunk in chunks(sorted(owned), IN_LIST_SIZE):
                locked = await self._lock_ids(tx, chunk)
                skipped = [i for i in chunk if i not in locked]
                if skipped:
                    present = await self._existing(tx, skipped)
                    gone.update(owned[i].id for i in skipped if i not in present)
                if not locked:
                    continue
                order = sorted(locked)
                rows = [
                    {"id": i, "lease_token": owned[i].lease_token, "lease_seconds": lease}
                    for i in order
                ]
                with tx.cursor() as cur:
                    if len(owned) <= IN_LIST_SIZE:
                        tx.commit_with_next()  # one batch: it carries the COMMIT
                    await cur.executemany(self.sql.extend_lease, rows, arraydmlrowcounts=True)
                    counts = [int(n) for n in cur.getarraydmlrowcounts()]
                for i, n in zip(order, counts, strict=True):
                    if n == 0:
                        gone.add(owned[i].id)
                    elif locked[i]:
                        cancel.add(owned[i].id)
            if tx.conn.transaction_in_progress:
                await tx.commit()
            return gone, cancel

        gone, cancel = await self._run("extend_leases", work)
        return LeaseRenewal(lost=frozenset(lost | gone), cancel=frozenset(cancel))

    async def release(self, jobs: Sequence[Job]) -> int:
        """Put the jobs back to Ready; a row another session holds locked is left to the
        lease reclaim instead of being waited on."""
        owned = {
            row_id: j
            for j in jobs
            if (row_id := db_id(j.id)) is not None and j.lease_token is not None
        }
        if not owned:
            return 0

        async def work(tx: _Tx) -> int:
            released = 0
            for chunk in chunks(sorted(owned), IN_LIST_SIZE):
                locked = sorted(await self._lock_ids(tx, chunk))
                if not locked:
                    continue
                rows = [{"id": i, "lease_token": owned[i].lease_token} for i in locked]
                # Only a started job has an attempt to close (claim() hands out Assigned).
                started = any(owned[i].status is JobStatus.PROCESSING for i in locked)
                released += await self._release_rows(tx, rows, started=started)
            if tx.conn.transaction_in_progress:
                await tx.commit()
            return released

        released = await self._run("release", work)
        if released:
            self._notify()
        return released

    async def _release_rows(
        self, tx: _Tx, rows: list[dict[str, Any]], *, started: bool = True
    ) -> int:
        """Release the locked rows (id + lease token): a Processing one's attempt closes as
        ``released`` in the same transaction (``started``: some may be Processing).
        Returns how many were released."""
        if started:
            keep = {"outcome": AttemptOutcome.RELEASED.value, "keep": self.attempt_history}
            with tx.cursor() as cur:
                await cur.executemany(self.sql.history_release, [{**r, **keep} for r in rows])
        with tx.cursor() as cur:
            await cur.executemany(self.sql.release, rows, arraydmlrowcounts=True)
            return sum(int(n) for n in cur.getarraydmlrowcounts())

    async def reclaim_expired(self, microservice: str) -> ReclaimResult:
        return await self._reclaim("reclaim_expired", self.sql.reclaim_lock, microservice)

    async def _reclaim(self, operation: str, lock_sql: str, microservice: str) -> ReclaimResult:
        """Lock the rows ``lock_sql`` finds (SKIP LOCKED, a batch at a time) and end their
        leases: Assigned -> Ready; Processing -> Ready or Failed (LEASE_EXPIRED)."""
        requeued: list[str] = []
        failed: list[str] = []
        params = {"microservice": microservice, "gone_after": GONE_AFTER_HEARTBEATS}
        if ":gone_after" not in lock_sql:
            del params["gone_after"]

        async def work(tx: _Tx) -> int:
            with tx.cursor() as cur:
                cur.prefetchrows = RECLAIM_BATCH
                cur.arraysize = RECLAIM_BATCH
                await cur.execute(lock_sql, params)
                ids = sorted(int(r[0]) for r in await cur.fetchmany(RECLAIM_BATCH))
            back: list[str] = []
            dead: list[str] = []
            for chunk in chunks(ids, IN_LIST_SIZE):
                if lock_sql is not self.sql.reclaim_lock:
                    with tx.cursor() as cur:  # a gone worker's leases end now
                        _id_binds(cur)
                        await cur.execute(self.sql.end_leases, padded(chunk))
                with tx.cursor() as cur:
                    _id_binds(cur)
                    out_id = cur.var(_NUMBER)
                    await cur.execute(self.sql.reclaim_assigned, {**padded(chunk), "o_id": out_id})
                    back.extend(str(int(i)) for i in out_id.getvalue())
                messages = {
                    "error_code": ErrorCode.LEASE_EXPIRED.value,
                    "requeued_message": _REQUEUED_MESSAGE,
                    "unstarted_message": _UNSTARTED_MESSAGE,
                    "unstarted_tail": _UNSTARTED_TAIL,
                }
                with tx.cursor() as cur:  # the attempts it closes, in the same transaction
                    _id_binds(cur)
                    await cur.execute(
                        self.sql.history_reclaim,
                        {
                            **padded(chunk),
                            **messages,
                            "not_started": AttemptOutcome.NOT_STARTED.value,
                            "lease_expired": AttemptOutcome.LEASE_EXPIRED.value,
                            "keep": self.attempt_history,
                        },
                    )
                with tx.cursor() as cur:
                    _id_binds(cur)
                    out_id, out_status = cur.var(_NUMBER), cur.var(str)
                    await cur.execute(
                        self.sql.reclaim_processing,
                        {
                            **padded(chunk),
                            **messages,
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
            if await self._run(operation, work) < RECLAIM_BATCH:
                break
        if requeued:
            self._notify()
        return ReclaimResult(requeued=requeued, failed=failed)

    # --- the fleet (FleetAdmin) ------------------------------------------------------------------

    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        check_worker_record(record)
        check_length("microservice", record.microservice)
        check_length("worker_id", record.worker_id)
        started = record.started_at.astimezone(UTC).replace(tzinfo=None)
        params: dict[str, Any] = {
            "microservice": record.microservice,
            "worker_id": record.worker_id,
            "host": record.host[:255],
            "pid": int(record.pid),
            "version": record.version[:128],
            "started_at": started,
            "heartbeat_seconds": float(record.heartbeat_seconds),
            "actions": json.dumps(list(record.actions)),
            "concurrency": int(record.concurrency),
            "running": int(record.running),
        }

        async def work(tx: _Tx) -> None:
            with tx.cursor() as cur:
                cur.setinputsizes(started_at=_TIMESTAMP, **clob_inputs([params], ("actions",)))
                tx.commit_with_next()
                await cur.execute(self.sql.heartbeat, params)

        await self._run("heartbeat_worker", work)

    async def remove_worker(self, microservice: str, worker_id: str) -> None:
        async def work(tx: _Tx) -> None:
            with tx.cursor() as cur:
                tx.commit_with_next()
                await cur.execute(
                    self.sql.remove_worker, {"microservice": microservice, "worker_id": worker_id}
                )

        await self._run("remove_worker", work)

    async def list_workers(self, microservice: str) -> list[WorkerRecord]:
        async def work(tx: _Tx) -> list[Any]:
            with tx.cursor() as cur:
                cur.outputtypehandler = clob_as_text
                await cur.execute(
                    self.sql.list_workers,
                    {"microservice": microservice, "gone_after": GONE_AFTER_HEARTBEATS},
                )
                return await cur.fetchall()

        records = []
        for row in await self._run("list_workers", work):
            (worker_id, service, host, pid, version, started, beat, actions) = row[:8]
            concurrency, running, seen, gone = row[8:]
            records.append(
                WorkerRecord(
                    worker_id=str(worker_id),
                    microservice=str(service),
                    host=host or "",
                    pid=number(pid),
                    version=version or "",
                    started_at=utc(started) or datetime.min.replace(tzinfo=UTC),
                    heartbeat_seconds=float(beat),
                    actions=tuple(json.loads(actions or "[]")),
                    concurrency=number(concurrency),
                    running=number(running),
                    last_seen_at=utc(seen),
                    gone=bool(number(gone)),
                )
            )
        return records

    async def reclaim_gone_workers(self, microservice: str) -> ReclaimResult:
        return await self._reclaim("reclaim_gone_workers", self.sql.gone_lock, microservice)

    async def forget_gone_workers(self, microservice: str, older_than_seconds: float) -> int:
        params = {
            "microservice": microservice,
            "gone_after": GONE_AFTER_HEARTBEATS,
            "older_than_seconds": seconds(older_than_seconds),
        }

        async def work(tx: _Tx) -> int:
            with tx.cursor() as cur:
                tx.commit_with_next()
                await cur.execute(self.sql.forget_gone, params)
                return int(cur.rowcount)

        return await self._run("forget_gone_workers", work)

    async def pause_action(self, microservice: str, action: str) -> bool:
        check_action_name(action)
        check_length("action", action)

        async def work(tx: _Tx) -> bool:
            with tx.cursor() as cur:
                try:
                    tx.commit_with_next()
                    await cur.execute(
                        self.sql.pause, {"microservice": microservice, "action": action}
                    )
                except oracledb.IntegrityError:
                    return False  # paused already (the primary key)
            return True

        return await self._run("pause_action", work)

    async def resume_action(self, microservice: str, action: str) -> bool:
        check_action_name(action)

        async def work(tx: _Tx) -> bool:
            with tx.cursor() as cur:
                tx.commit_with_next()
                await cur.execute(self.sql.resume, {"microservice": microservice, "action": action})
                return int(cur.rowcount) == 1

        resumed = await self._run("resume_action", work)
        if resumed:
            self._notify()  # its waiting jobs may be claimed now
        return resumed

    async def paused_actions(self, microservice: str) -> dict[str, datetime]:
        async def work(tx: _Tx) -> list[Any]:
            with tx.cursor() as cur:
                await cur.execute(self.sql.paused, {"microservice": microservice})
                return await cur.fetchall()

        rows = await self._run("paused_actions", work)
        return {str(a): at for a, when in rows if (at := utc(when)) is not None}

    # --- reading -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        row_id = db_id(job_id)
        if row_id is None:
            return None

        async def work(tx: _Tx) -> Job | None:
            with tx.cursor() as cur:
                cur.outputtypehandler = clob_as_text
                await cur.execute(self.sql.get, {"id": row_id})
                found = await cur.fetchall()
            if not found:
                return None
            row = dict(zip(JOB_COLUMNS, found[0], strict=True))
            closed: list[Any] = []
            # A job started at most once has no closed attempt: no second round trip.
            if number(row["ATTEMPT_NO"]) > (0 if row["STARTED_AT"] is None else 1):
                with tx.cursor() as cur:
                    cur.outputtypehandler = clob_as_text
                    cur.prefetchrows = self.attempt_history + 1
                    cur.arraysize = self.attempt_history + 1
                    await cur.execute(self.sql.attempts, {"id": row_id})
                    closed = await cur.fetchall()
            job = job_from_row(row)
            job.attempt_history = self._history(job, number(row["ATTEMPT_NO"]), closed)
            return job

        return await self._run("get", work)

    @property
    def _final_outcomes(self) -> dict[str, Any]:
        return {
            "expired_code": ErrorCode.LEASE_EXPIRED.value,
            "lease_expired": AttemptOutcome.LEASE_EXPIRED.value,
            "failed": AttemptOutcome.FAILED.value,
            "keep": self.attempt_history,
        }

    def _history(self, job: Job, current: int, closed: Sequence[Any]) -> tuple[JobAttempt, ...]:
        """The closed attempts (oldest first) and the row's own one when it has started,
        the last ``attempt_history`` of them."""
        attempts = [
            JobAttempt(
                number=number(no),
                worker_id=worker,
                started_at=utc(started),
                finished_at=utc(finished),
                outcome=AttemptOutcome(outcome),
                error_code=code,
                error_message=None if code is None else (message or ""),
            )
            for no, worker, started, finished, outcome, code, message in closed
            # an operator's retry refused by a key (the row stayed Failed) leaves its copy
            if not (_has_current_attempt(job) and number(no) == current)
        ]
        if _has_current_attempt(job):
            attempts.append(current_attempt(job, current))
        return tuple(attempts[-self.attempt_history :])

    async def stats(self, microservice: str, *, count_limit: int | None = None) -> QueueStats:
        check_count_limit(count_limit)
        query = self.sql.stats if count_limit is None else self.sql.stats_upto
        binds: dict[str, object] = {"microservice": microservice}
        if count_limit is not None:
            binds["count_limit"] = count_limit

        async def work(tx: _Tx) -> tuple[list[Any], list[Any]]:
            with tx.cursor() as cur:
                await cur.execute(query, binds)
                rows = await cur.fetchall()
            with tx.cursor() as cur:
                await cur.execute(self.sql.paused, {"microservice": microservice})
                return rows, await cur.fetchall()

        counts = dict.fromkeys(JobStatus, 0)
        age: float | None = None
        rows, paused = await self._run("stats", work)
        scheduled = 0
        for status, count, oldest_due, now, later in rows:
            if status is None:
                continue
            counts[JobStatus(status)] += int(count)
            scheduled += int(later or 0)
            if oldest_due is not None and now is not None:
                age = max(age or 0.0, (now - oldest_due).total_seconds())
        capped, at_least = capped_counts(counts, count_limit)
        if count_limit is not None:
            scheduled = min(scheduled, count_limit)  # two indexes' counts, each up to it
        return QueueStats(
            counts=capped,
            oldest_ready_age_seconds=age,
            scheduled=scheduled,
            paused_actions=frozenset(str(a) for a, _ in paused),
            at_least=at_least,
        )

    async def purge(self, microservice: str, older_than_seconds: float) -> int:
        """Delete old finished jobs in batches; rows another session holds locked are
        skipped (the next purge takes them)."""
        params = {"microservice": microservice, "older_than_seconds": seconds(older_than_seconds)}

        async def work(tx: _Tx) -> int:
            with tx.cursor() as cur:
                cur.prefetchrows = PURGE_BATCH
                cur.arraysize = PURGE_BATCH
                await cur.execute(self.sql.purge_lock, params)
                ids = sorted(int(r[0]) for r in await cur.fetchmany(PURGE_BATCH))
            if not ids:
                return 0
            with tx.cursor() as cur:
                _id_binds(cur)
                await cur.executemany(
                    self.sql.purge, [padded(chunk) for chunk in chunks(ids, IN_LIST_SIZE)]
                )
            await tx.commit()
            return len(ids)

        total = 0
        for _ in range(_MAX_BATCHES):
            deleted = await self._run("purge", work)
            total += deleted
            if deleted < PURGE_BATCH:
                break
        return total

    # --- operators (QueueAdmin) ------------------------------------------------------------------

    async def list_jobs(
        self, where: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Newest first, on the LIST_IX index; the cursor carries the last row's
        (CREATED_AT, ID)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        after = decode_cursor(cursor) if cursor is not None else None
        params: dict[str, Any] = {
            **filter_binds(where, statuses=True),
            "page_size": limit + 1,  # one more, to know whether a next page exists
        }
        sql = self.sql.list_jobs
        if after is not None:
            sql = self.sql.list_jobs_after
            params.update(after_created=after[0], after_id=after[1])

        async def work(tx: _Tx) -> list[Any]:
            with tx.cursor() as cur:
                cur.outputtypehandler = clob_as_text
                sizes = {"created_after": _TIMESTAMP, "created_before": _TIMESTAMP}
                if after is not None:
                    sizes.update(after_created=_TIMESTAMP, after_id=_NUMBER)
                cur.setinputsizes(**sizes)
                await cur.execute(sql, params)
                return await cur.fetchall()

        rows = [dict(zip(JOB_COLUMNS, r, strict=True)) for r in await self._run("list_jobs", work)]
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = encode_cursor(last["CREATED_AT"], int(last["ID"]))
        return JobPage(jobs=[job_from_row(r) for r in page], next_cursor=next_cursor)

    async def retry_failed(
        self, microservice: str, job_ids: Sequence[str] = (), where: JobFilter | None = None
    ) -> int:
        if bool(job_ids) == (where is not None):
            raise ValueError("retry_failed takes ids or a filter (one of the two)")
        if where is not None and where.microservice != microservice:
            raise ValueError(
                f"the filter is of service {where.microservice!r}, not {microservice!r}"
            )
        if job_ids:
            ids = sorted({i for j in job_ids if (i := db_id(j)) is not None})
        elif (
            where is not None
            and (not where.statuses or JobStatus.FAILED in where.statuses)
            and where.scheduled is not True  # a Failed job is never scheduled
        ):
            ids = await self._failed_matching(where)
        else:
            ids = []  # a filter that excludes Failed matches no job to retry

        async def work(tx: _Tx) -> int:
            retried = 0
            for chunk in chunks(ids, IN_LIST_SIZE):
                locked = sorted(await self._lock_ids(tx, chunk))
                if not locked:
                    continue
                rows = [{"id": i, "microservice": microservice} for i in locked]
                with tx.cursor() as cur:  # the last attempt of a started job joins the history
                    await cur.executemany(
                        self.sql.history_retry_failed,
                        [{**r, **self._final_outcomes} for r in rows],
                    )
                with tx.cursor() as cur:
                    # A row whose idempotency key another unfinished job took meanwhile
                    # is refused by the index (ORA-00001) and stays Failed.
                    await cur.executemany(
                        self.sql.retry_failed, rows, arraydmlrowcounts=True, batcherrors=True
                    )
                    for error in cur.getbatcherrors():
                        if getattr(error, "code", 1) != 1:
                            raise oracledb.DatabaseError(error)
                    retried += sum(int(n) for n in cur.getarraydmlrowcounts())
            if tx.conn.transaction_in_progress:
                await tx.commit()
            return retried

        retried = await self._run("retry_failed", work) if ids else 0
        if retried:
            self._notify()
        return retried

    async def _failed_matching(self, where: JobFilter) -> list[int]:
        params = filter_binds(where, statuses=False)
        sql = self.sql.filter_failed  # from FAILED_IX alone
        if where.error_text:
            sql, params["error_text"] = self.sql.filter_failed_text, where.error_text

        async def work(tx: _Tx) -> list[int]:
            with tx.cursor() as cur:
                cur.setinputsizes(created_after=_TIMESTAMP, created_before=_TIMESTAMP)
                await cur.execute(sql, params)
                return sorted(int(r[0]) for r in await cur.fetchall())

        return await self._run("retry_failed", work)

    async def cancel(self, microservice: str, job_id: str) -> JobStatus:
        row_id = db_id(job_id)
        if row_id is None:
            raise JobNotFoundError(f"no job {job_id!r} in {self.table}")

        async def work(tx: _Tx) -> JobStatus:
            state = await self._lock_job(tx, row_id, job_id, "cancel")
            if state is None or state[3] != microservice:
                raise JobNotFoundError(f"no job {job_id} of {microservice!r} in {self.table}")
            status = JobStatus(state[0])
            if status in (JobStatus.READY, JobStatus.ASSIGNED):
                sql, params, after = (
                    self.sql.cancel_waiting,
                    {
                        "id": row_id,
                        "error_code": ErrorCode.CANCELLED.value,
                        "error_message": _CANCELLED_MESSAGE,
                    },
                    JobStatus.FAILED,
                )
            elif status is JobStatus.PROCESSING:
                sql, params, after = self.sql.cancel_running, {"id": row_id}, status
            else:
                return status
            with tx.cursor() as cur:
                tx.commit_with_next()
                await cur.execute(sql, params)
            return after

        return await self._run("cancel", work)

    async def find_jobs(self, microservice: str, key: str) -> list[Job]:
        """The jobs ``key`` names in ``microservice``: by id, by unique key, by idempotency
        key (finished ones too), newest first, at most FIND_LIMIT. Each lookup is one
        index probe (primary key, UNIQ_UX, KEYS_IX)."""
        row_id = db_id(key)

        async def work(tx: _Tx) -> list[Any]:
            found: list[Any] = []
            lookups: list[tuple[str, dict[str, Any]]] = [
                (self.sql.find_by_unique, {"microservice": microservice, "key": key}),
                (
                    self.sql.find_by_idempotency,
                    {"microservice": microservice, "key": key, "most": FIND_LIMIT},
                ),
            ]
            if row_id is not None:
                lookups.insert(
                    0, (self.sql.find_by_id, {"id": row_id, "microservice": microservice})
                )
            for sql, params in lookups:
                with tx.cursor() as cur:
                    cur.outputtypehandler = clob_as_text
                    await cur.execute(sql, params)
                    found += await cur.fetchall()
            return found

        rows = {
            int(r[0]): dict(zip(JOB_COLUMNS, r, strict=True))
            for r in await self._run("find_jobs", work)
        }
        newest = sorted(rows.values(), key=lambda r: (r["CREATED_AT"], int(r["ID"])), reverse=True)
        return [job_from_row(r) for r in newest[:FIND_LIMIT]]

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        """Remember an ended admin session until ``until`` (aware); every process on this
        table refuses it meanwhile. Revocations past their time are deleted on the way."""
        if not isinstance(until, datetime) or until.utcoffset() is None:
            raise ValueError(f"until={until!r} must be a timezone-aware datetime")
        params = {
            "session_id": session_id[:128],
            "until": until.astimezone(UTC).replace(tzinfo=None),
        }

        async def work(tx: _Tx) -> None:
            with tx.cursor() as cur:
                await cur.execute(self.sql.forget_sessions)
            with tx.cursor() as cur:
                cur.setinputsizes(until=_TIMESTAMP)
                tx.commit_with_next()
                await cur.execute(self.sql.revoke_session, params)

        await self._run("revoke_session", work)

    async def session_revoked(self, session_id: str) -> bool:
        async def work(tx: _Tx) -> bool:
            with tx.cursor() as cur:
                await cur.execute(self.sql.session_revoked, {"session_id": session_id[:128]})
                ((count,),) = await cur.fetchall()
            return int(count) > 0

        return await self._run("session_revoked", work)

    async def activity(self, microservice: str, *, minutes: int = 60) -> QueueActivity:
        if not 1 <= minutes <= 24 * 60:
            raise ValueError(f"minutes must be between 1 and 1440, got {minutes}")

        async def work(tx: _Tx) -> tuple[datetime, list[Any], list[Any]]:
            with tx.cursor() as cur:
                await cur.execute(self.sql.db_now)
                ((now,),) = await cur.fetchall()
            first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
            with tx.cursor() as cur:
                await cur.execute(self.sql.activity_counts, {"microservice": microservice})
                counts = await cur.fetchall()
            with tx.cursor() as cur:
                cur.setinputsizes(since=_TIMESTAMP)
                await cur.execute(
                    self.sql.activity_minutes, {"microservice": microservice, "since": first}
                )
                per_minute = await cur.fetchall()
            return now, counts, per_minute

        now, count_rows, minute_rows = await self._run("activity", work)
        counts: dict[str, dict[JobStatus, int]] = {}
        oldest: dict[str, float] = {}
        scheduled: dict[str, int] = {}
        for action, status, count, due, later in count_rows:
            name = str(action or "")
            if later:
                scheduled[name] = scheduled.get(name, 0) + int(later)
            per_status = counts.setdefault(name, {})
            per_status[JobStatus(status)] = per_status.get(JobStatus(status), 0) + int(count)
            if due is not None:
                oldest[name] = max(oldest.get(name, 0.0), (now - due).total_seconds())
        first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        slots = {first + timedelta(minutes=i): [0, 0] for i in range(minutes)}
        for minute, status, count in minute_rows:
            slot = slots.get(minute.replace(second=0, microsecond=0))
            if slot is not None:
                slot[0 if status == JobStatus.COMPLETED.value else 1] += int(count)
        return QueueActivity(
            counts=counts,
            oldest_ready_age_seconds=oldest,
            scheduled=scheduled,
            per_minute=[
                MinuteActivity(minute=m.replace(tzinfo=UTC), completed=c, failed=f)
                for m, (c, f) in slots.items()
            ],
        )


def _has_current_attempt(job: Job) -> bool:
    """Whether the row itself holds an attempt: started, and not waiting (a row the previous
    version requeued may be Ready with its last STARTED_AT still set)."""
    waiting = job.status in (JobStatus.READY, JobStatus.ASSIGNED)
    return job.started_at is not None and not waiting
