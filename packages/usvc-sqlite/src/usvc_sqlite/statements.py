"""The SQLite queue's statements, and one function per queue operation.

Every function here is plain blocking code on a ``sqlite3.Connection`` and runs inside a
transaction its caller opened (``BEGIN IMMEDIATE``): the adapter runs several of them in one
transaction (group commit), the benchmark's floor runs the same SQL in a bare loop.
A transition that does not find the job under the caller's fencing token raises
:class:`~usvc_core.errors.LeaseLostError` and writes nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import heapq
import itertools
import json
import operator
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from usvc_core.adapter_support.payload import decode_payload
from usvc_core.adapter_support.stats import capped_counts
from usvc_core.errors import DuplicateJobError, JobNotFoundError, LeaseLostError
from usvc_core.jobs import AttemptOutcome, ErrorCode, Job, JobAttempt, JobStatus
from usvc_core.ports import (
    JobFilter,
    LeaseRenewal,
    MinuteActivity,
    QueueActivity,
    QueueStats,
    ReclaimResult,
)

from usvc_sqlite.schema import COUNTS, NOW, SESSIONS, TABLE

__all__ = [
    "CLAIM",
    "CLAIM_STARTED",
    "COMPLETE",
    "COUNT_FINISHED",
    "START",
    "EncodedRequest",
    "activity",
    "cancel",
    "claim",
    "claim_limited",
    "complete",
    "complete_many",
    "extend",
    "fail",
    "find_jobs",
    "get",
    "insert",
    "insert_many",
    "job_from_row",
    "list_jobs",
    "newest_first",
    "purge_chunk",
    "ready_by_action",
    "reclaim",
    "release",
    "retry",
    "retry_ids",
    "retry_matching",
    "revoke_session",
    "row_id",
    "session_revoked",
    "start",
    "stats",
]

_COLUMNS = (
    "id, microservice, action, payload, status, priority, run_at, attempts, max_attempts, "
    "token, idempotency_key, lease_owner, lease_token, lease_expires_at, results, error_code, "
    "error_message, runtime_ms, created_at, updated_at, started_at, finished_at, unique_key, "
    "cancel_requested"
)
_UNFINISHED = "('Ready', 'Assigned', 'Processing')"
_OWNED = "('Assigned', 'Processing')"

# A taken key inserts nothing and returns no row (the caller then names the holder).
INSERT = f"""
INSERT INTO {TABLE} (microservice, action, payload, priority, run_at, max_attempts, token,
                     idempotency_key, unique_key)
VALUES (?, ?, ?, ?, {NOW} + ?, ?, ?, ?, ?)
ON CONFLICT (microservice, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status IN {_UNFINISHED} DO NOTHING
ON CONFLICT (microservice, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING id, run_at, created_at
"""

_HOLDER = f"""
SELECT id FROM {TABLE}
WHERE microservice = ? AND idempotency_key = ? AND status IN {_UNFINISHED}
"""

_UNIQUE_HOLDER = f"SELECT id FROM {TABLE} WHERE microservice = ? AND unique_key = ?"

# The ids of the next ``limit`` Ready and due jobs of one service, best first.
_DUE = f"""
    SELECT id FROM {TABLE}
    WHERE microservice = ? AND status = 'Ready' AND run_at <= {NOW}
    ORDER BY priority DESC, run_at, id
    LIMIT ?"""

_ASSIGN = f"""
UPDATE {TABLE}
SET status = 'Assigned', lease_owner = ?, lease_token = lower(hex(randomblob(16))),
    lease_expires_at = {NOW} + ?, updated_at = {NOW}
WHERE id IN (<ids>)
RETURNING {_COLUMNS}
"""

# A start not yet confirmed by its claimer (see reclaim: a lost reply gives the attempt back).
_ASSIGN_STARTED = f"""
UPDATE {TABLE}
SET status = 'Processing', attempts = attempts + 1, started_at = {NOW},
    attempt_no = attempt_no + 1, start_confirmed = 0,
    lease_owner = ?, lease_token = lower(hex(randomblob(16))),
    lease_expires_at = {NOW} + ?, updated_at = {NOW}
WHERE id IN (<ids>)
RETURNING {_COLUMNS}
"""

#: Ready and due jobs of one service to Assigned, best first, each with a fresh fencing
#: token. Parameters: worker id, lease seconds, service, limit.
CLAIM = _ASSIGN.replace("<ids>", _DUE)

#: Ready -> Assigned -> Processing in one statement: ``CLAIM`` and ``START`` of each claimed
#: job, with one fencing token and one clock reading. Parameters: as ``CLAIM``.
CLAIM_STARTED = _ASSIGN_STARTED.replace("<ids>", _DUE)

# For claims under per-action limits (see claim_limited), all on the index by action.
_RUNNING = f"""
SELECT action, count(*) FROM {TABLE} INDEXED BY {TABLE}_leased
WHERE microservice = ? AND status IN ('Assigned', 'Processing') GROUP BY action
"""
_FIRST_READY_ACTION = f"""
SELECT action FROM {TABLE} INDEXED BY {TABLE}_ready_action
WHERE microservice = ? AND status = 'Ready'
ORDER BY action LIMIT 1
"""
_NEXT_READY_ACTION = f"""
SELECT action FROM {TABLE} INDEXED BY {TABLE}_ready_action
WHERE microservice = ? AND status = 'Ready' AND action > ?
ORDER BY action LIMIT 1
"""
_DUE_OF_ACTION = f"""
SELECT id, priority, run_at FROM {TABLE} INDEXED BY {TABLE}_ready_action
WHERE microservice = ? AND action = ? AND status = 'Ready' AND run_at <= {NOW}
ORDER BY priority DESC, run_at, id
LIMIT ?
"""

#: Assigned -> Processing, counting the attempt. Parameters: lease seconds, id, lease token.
START = f"""
UPDATE {TABLE}
SET status = 'Processing', attempts = attempts + 1, started_at = {NOW},
    attempt_no = attempt_no + 1, start_confirmed = 1,
    lease_expires_at = {NOW} + ?, updated_at = {NOW}
WHERE id = ? AND lease_token = ? AND status = 'Assigned'
RETURNING attempts, started_at, lease_expires_at, updated_at
"""

_EXTEND = f"""
UPDATE {TABLE} SET lease_expires_at = {NOW} + ?, updated_at = {NOW}, start_confirmed = 1
WHERE id = ? AND lease_token = ? AND status IN {_OWNED}
RETURNING cancel_requested
"""

#: Processing -> Completed under the caller's fencing token. Parameters: results JSON,
#: runtime ms, id, lease token.
COMPLETE = f"""
UPDATE {TABLE}
SET status = 'Completed', results = ?, runtime_ms = ?, error_code = NULL, error_message = NULL,
    lease_expires_at = NULL, finished_at = {NOW}, updated_at = {NOW}
WHERE id = ? AND lease_token = ? AND status = 'Processing'
"""

#: The jobs of some row ids counted as finished with a status, one upsert per service and
#: action, read from the rows themselves: the statements that finish jobs keep the table of
#: counts (schema 8), in their own transaction, a batch of completions with one statement.
#: Parameters: status, then the ids, one ``?`` each in place of ``<ids>``.
COUNT_FINISHED = f"""
INSERT INTO {COUNTS} (microservice, action, status, jobs)
SELECT microservice, action, ?, count(*) FROM {TABLE}
WHERE id IN (<ids>) GROUP BY microservice, action
ON CONFLICT DO UPDATE SET jobs = jobs + excluded.jobs
"""
_COUNT_CHUNK = 100  # ids per COUNT_FINISHED (a statement text per size, cached)

# Failed jobs an operator sent back to Ready no longer count as Failed.
_UNCOUNT_FAILED = f"""
UPDATE {COUNTS} SET jobs = jobs - ?
WHERE microservice = ? AND action = ? AND status = 'Failed'
"""

_FAIL = f"""
UPDATE {TABLE}
SET status = 'Failed', error_code = ?, error_message = ?, runtime_ms = ?,
    lease_expires_at = NULL, finished_at = {NOW}, updated_at = {NOW}
WHERE id = ? AND lease_token = ? AND status = 'Processing'
"""

# --- store: attempt history ------------------------------------------------------------------
# A job's closed attempts are a JSON array in ``attempt_log`` (each ``[number, worker,
# started, finished, outcome, error code, error message]``), the last ``history`` of them;
# its current attempt is the row's own columns (lease owner, started_at, status, error).
# Going back to Ready closes the attempt: it joins the log and ``started_at`` is cleared.


def _closed(history: int, outcome: str, code: str, message: str, finished: str = NOW) -> str:
    """``attempt_log`` with the row's current attempt appended (SQL expressions)."""
    log = "coalesce(attempt_log, '[]')"
    return (
        f"json_insert(CASE WHEN json_array_length({log}) >= {int(history)} "
        f"THEN json_remove({log}, '$[0]') ELSE {log} END, '$[#]', json_array(attempt_no, "
        f"lease_owner, started_at, {finished}, {outcome}, {code}, {message}))"
    )


# With no attempts left a retry is a failure; otherwise back to Ready, due after the delay.
@functools.cache
def _retry_statement(history: int) -> str:
    spent = "attempts >= max_attempts"
    return f"""
UPDATE {TABLE}
SET status = CASE WHEN {spent} THEN 'Failed' ELSE 'Ready' END,
    error_code = :code, error_message = :message, runtime_ms = :runtime,
    run_at = CASE WHEN {spent} THEN run_at ELSE {NOW} + max(:delay, 0) END,
    finished_at = CASE WHEN {spent} THEN {NOW} END,
    attempt_log = CASE WHEN {spent} THEN attempt_log
        ELSE {_closed(history, "'retried'", ":code", ":message")} END,
    started_at = CASE WHEN {spent} THEN started_at END,
    lease_owner = CASE WHEN {spent} THEN lease_owner END,
    lease_token = CASE WHEN {spent} THEN lease_token END,
    cancel_requested = CASE WHEN {spent} THEN cancel_requested ELSE 0 END,
    lease_expires_at = NULL, updated_at = {NOW}
WHERE id = :id AND lease_token = :token AND status = 'Processing'
RETURNING status
"""


# Back to Ready in its old place in line (run_at unchanged); a started job gets back the
# attempt that mark_processing counted.
@functools.cache
def _release_statement(history: int) -> str:
    return f"""
UPDATE {TABLE}
SET status = 'Ready',
    attempts = CASE WHEN status = 'Processing' THEN max(attempts - 1, 0) ELSE attempts END,
    attempt_log = CASE WHEN status = 'Processing'
        THEN {_closed(history, "'released'", "NULL", "NULL")} ELSE attempt_log END,
    started_at = CASE WHEN status = 'Processing' THEN NULL ELSE started_at END,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, cancel_requested = 0,
    updated_at = {NOW}
WHERE id = ? AND lease_token = ? AND status IN {_OWNED}
"""


# Never started: claimed and started at once, and no word from the claimer since (no lease
# renewal, no outcome), the first time for this job: the attempt is given back. Afterwards
# a rescue spends it, so a job that kills its worker cannot loop.
_UNSTARTED = "(status = 'Processing' AND start_confirmed = 0 AND attempt_given_back = 0)"
_EXHAUSTED = f"(status = 'Processing' AND NOT {_UNSTARTED} AND attempts >= max_attempts)"
_RESCUE_MESSAGE = f"""CASE
        WHEN {_UNSTARTED} THEN printf('claimed by worker %s but never confirmed started '
            || '(the claim''s reply was probably lost); the attempt was given back',
            lease_owner)
        WHEN attempts >= max_attempts THEN printf('the worker running attempt %d of %d '
            || 'stopped renewing its lease (crashed or stalled); no attempts left',
            attempts, max_attempts)
        ELSE 'lease expired; the job will run again' END"""


@functools.cache
def _reclaim_statement(history: int) -> str:
    outcome = f"CASE WHEN {_UNSTARTED} THEN 'not_started' ELSE 'lease_expired' END"
    return f"""
UPDATE {TABLE}
SET status = CASE WHEN {_EXHAUSTED} THEN 'Failed' ELSE 'Ready' END,
    attempts = CASE WHEN {_UNSTARTED} THEN max(attempts - 1, 0) ELSE attempts END,
    attempt_given_back = CASE WHEN {_UNSTARTED} THEN 1 ELSE attempt_given_back END,
    error_code = CASE WHEN status = 'Processing' THEN 'LEASE_EXPIRED' ELSE error_code END,
    error_message = CASE WHEN status <> 'Processing' THEN error_message
        ELSE {_RESCUE_MESSAGE} END,
    attempt_log = CASE WHEN status <> 'Processing' OR {_EXHAUSTED} THEN attempt_log
        ELSE {_closed(history, outcome, "'LEASE_EXPIRED'", _RESCUE_MESSAGE)} END,
    started_at = CASE WHEN {_EXHAUSTED} THEN started_at END,
    finished_at = CASE WHEN {_EXHAUSTED} THEN {NOW} ELSE finished_at END,
    runtime_ms = CASE WHEN {_EXHAUSTED} THEN NULL ELSE runtime_ms END,
    lease_owner = CASE WHEN {_EXHAUSTED} THEN lease_owner END,
    lease_token = CASE WHEN {_EXHAUSTED} THEN lease_token END,
    cancel_requested = CASE WHEN {_EXHAUSTED} THEN cancel_requested ELSE 0 END,
    lease_expires_at = NULL, updated_at = {NOW}
WHERE microservice = ? AND status IN {_OWNED} AND lease_expires_at < {NOW}
RETURNING id, status
"""


#: The statements as a file's default history bound writes them (for plan tests).
_RECLAIM = _reclaim_statement(20)

# --- end store -------------------------------------------------------------------------------

_GET = f"SELECT {_COLUMNS}, attempt_log, attempt_no FROM {TABLE} WHERE id = ?"

# An operator's cancellation: a job not yet started fails at once; a running one is asked
# to stop (its worker sees the flag when it renews its lease, then records CANCELLED).
_CANCEL_WAITING = f"""
UPDATE {TABLE}
SET status = 'Failed', error_code = 'CANCELLED',
    error_message = 'cancelled by an operator while ' || status || ' (it never ran)',
    lease_expires_at = NULL, finished_at = {NOW}, updated_at = {NOW}
WHERE id = ? AND microservice = ? AND status IN ('Ready', 'Assigned')
"""
_CANCEL_RUNNING = f"""
UPDATE {TABLE} SET cancel_requested = 1, updated_at = {NOW}
WHERE id = ? AND microservice = ? AND status = 'Processing'
"""
_STATUS_IN = f"SELECT status FROM {TABLE} WHERE id = ? AND microservice = ?"
_STATUS = f"SELECT status FROM {TABLE} WHERE id = ?"
# One query per partial index, so that counting never scans the whole table.
# Jobs by action and status: the unfinished ones counted on the index of leased jobs (the
# Ready ones: see ready_by_action), the finished ones read from the table of counts the
# triggers keep (see the schema, version 7): no walk over a million finished jobs.
_OTHERS_BY_ACTION = f"""
SELECT action, status, count(*) FROM {TABLE} INDEXED BY {TABLE}_leased
WHERE microservice = ? AND status IN {_OWNED} GROUP BY action, status
UNION ALL
SELECT action, status, jobs FROM {COUNTS} WHERE microservice = ? AND jobs > 0
"""
_PURGE = f"""
DELETE FROM {TABLE} WHERE id IN (
    SELECT id FROM {TABLE}
    WHERE microservice = ? AND status IN ('Completed', 'Failed') AND finished_at < {NOW} - ?
    LIMIT ?)
"""

# --- rows -> jobs -------------------------------------------------------------------------


_STATUSES = {status.value: status for status in JobStatus}


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


# The time columns of _COLUMNS: run_at, lease_expires_at, created_at, updated_at,
# started_at, finished_at.
_TIME_COLUMNS = operator.itemgetter(6, 13, 18, 19, 20, 21)


def _batch_times(rows: Sequence[Sequence[Any]]) -> Callable[[float | None], datetime | None]:
    """The time converter of a batch of rows: each distinct value converted once (the rows
    of one claim share their lease, start and update times: one clock reading per
    statement), then a dict's own ``get`` per time (no Python call; ``None`` is no key,
    so NULL stays None)."""
    values = set(itertools.chain.from_iterable(map(_TIME_COLUMNS, rows)))
    values.discard(None)
    fromtimestamp = datetime.fromtimestamp
    return {v: fromtimestamp(v, UTC) for v in values}.get


def _results(raw: Any) -> Any:
    if raw is None:
        return None
    value, error = decode_payload(raw)
    return raw if error is not None else value


def job_from_row(
    row: Sequence[Any], time: Callable[[float | None], datetime | None] = _time
) -> Job:
    """A :class:`Job` from a row of ``_COLUMNS``; ``time`` converts its times."""
    payload, payload_error = decode_payload(row[3])
    job_id = str(row[0])
    status = _STATUSES.get(row[4]) or JobStatus(row[4])
    # Positional, in the order of Job's fields (which _COLUMNS follows): half the cost of
    # 25 keyword arguments, paid for every claimed job. tests/test_sqlite_queue.py checks
    # every field against the row.
    return Job(
        job_id,
        row[1],
        row[2],
        payload,
        status,
        row[5],
        time(row[6]),
        row[7],
        row[8],
        row[9] or job_id,
        row[10],
        row[11],
        row[12],
        time(row[13]),
        None if row[14] is None else _results(row[14]),
        row[15],
        row[16],
        row[17],
        time(row[18]),
        time(row[19]),
        time(row[20]),
        time(row[21]),
        row[22],
        bool(row[23]),
        payload_error,
    )


def row_id(job_id: str) -> int | None:
    """The rowid behind a job id, or None when the id cannot be one of ours."""
    return int(job_id) if job_id.isascii() and job_id.isdigit() else None


def _lost(conn: sqlite3.Connection, job: Job, rid: int | None) -> LeaseLostError:
    row = None if rid is None else conn.execute(_STATUS, (rid,)).fetchone()
    where = "no longer exists" if row is None else f"is {row[0]} under another claim"
    return LeaseLostError(f"job {job.id} is no longer owned by this claim: it {where}")


# --- producing ---------------------------------------------------------------------------


class EncodedRequest:
    """An enqueue request with its payload already encoded (on the caller's side, so an
    unserializable payload fails there, before any transaction). ``payload`` is the decoded
    copy of ``text`` that the returned job carries."""

    __slots__ = (
        "action",
        "delay",
        "idempotency_key",
        "max_attempts",
        "microservice",
        "payload",
        "priority",
        "text",
        "token",
        "unique_key",
    )

    def __init__(
        self,
        *,
        microservice: str,
        payload: Any,
        text: str,
        priority: int,
        delay: float,
        max_attempts: int,
        token: str | None,
        idempotency_key: str | None,
        unique_key: str | None = None,
    ) -> None:
        action = payload.get("action") if isinstance(payload, dict) else None
        self.microservice = microservice
        self.action = action if isinstance(action, str) else ""
        self.payload = payload
        self.text = text
        self.priority = priority
        self.delay = max(delay, 0.0)
        self.max_attempts = max_attempts
        self.token = token
        self.idempotency_key = idempotency_key
        self.unique_key = unique_key


def insert(conn: sqlite3.Connection, r: EncodedRequest) -> Job:
    """Add one Ready job; DuplicateJobError when its unique or idempotency key is taken."""
    row = conn.execute(
        INSERT,
        (
            r.microservice,
            r.action,
            r.text,
            r.priority,
            r.delay,
            r.max_attempts,
            r.token,
            r.idempotency_key,
            r.unique_key,
        ),
    ).fetchone()
    if row is None:
        if r.unique_key is not None:
            held = conn.execute(_UNIQUE_HOLDER, (r.microservice, r.unique_key)).fetchone()
            if held is not None:
                raise DuplicateJobError(
                    f"unique key {r.unique_key!r} is held by job {held[0]}", str(held[0])
                )
        holder = conn.execute(_HOLDER, (r.microservice, r.idempotency_key)).fetchone()
        holder_id = None if holder is None else str(holder[0])
        raise DuplicateJobError(
            f"idempotency key {r.idempotency_key!r} is held by unfinished job {holder_id}",
            holder_id,
        )
    job_id = str(row[0])
    created = _time(row[2])
    return Job(
        id=job_id,
        microservice=r.microservice,
        action=r.action,
        payload=r.payload,
        priority=r.priority,
        run_at=_time(row[1]),
        max_attempts=r.max_attempts,
        token=r.token or job_id,
        idempotency_key=r.idempotency_key,
        created_at=created,
        updated_at=created,
        unique_key=r.unique_key,
    )


def insert_many(conn: sqlite3.Connection, requests: Sequence[EncodedRequest]) -> list[Job]:
    """Add all jobs or none (a savepoint undoes the ones before a duplicate key)."""
    _refuse_repeated_keys(requests)
    conn.execute("SAVEPOINT insert_many")
    try:
        jobs = [insert(conn, r) for r in requests]
    except BaseException:
        conn.execute("ROLLBACK TO insert_many")
        conn.execute("RELEASE insert_many")
        raise
    conn.execute("RELEASE insert_many")
    return jobs


def _refuse_repeated_keys(requests: Sequence[EncodedRequest]) -> None:
    """A key given twice in one batch is refused before anything is written (the store
    would name as holder a job that the rollback then removes)."""
    unique: set[tuple[str, str]] = set()
    idempotency: set[tuple[str, str]] = set()
    for r in requests:
        for kind, key, seen in (
            ("unique", r.unique_key, unique),
            ("idempotency", r.idempotency_key, idempotency),
        ):
            if key is None:
                continue
            if (r.microservice, key) in seen:
                raise DuplicateJobError(f"{kind} key {key!r} is given twice in this enqueue_many")
            seen.add((r.microservice, key))


# --- owning ------------------------------------------------------------------------------


def claim(
    conn: sqlite3.Connection,
    microservice: str,
    worker_id: str,
    limit: int,
    lease: float,
    *,
    start: bool = False,
) -> list[Job]:
    """Claim up to ``limit`` jobs; with ``start``, also start them (``claim_and_start``)."""
    statement = CLAIM_STARTED if start else CLAIM
    return _jobs(conn.execute(statement, (worker_id, lease, microservice, limit)).fetchall())


def claim_limited(
    conn: sqlite3.Connection,
    microservice: str,
    worker_id: str,
    limit: int,
    lease: float,
    *,
    limits: Mapping[str, int],
    start: bool = False,
) -> list[Job]:
    """:func:`claim` with at most ``limits[action]`` jobs of an action Assigned or Processing
    in the service, counted in the caller's write transaction (no other claim runs
    meanwhile). Jobs over their limit stay Ready and are stepped over.

    Each action with Ready jobs is read on its own (a seek per action on the index by
    action), so a long backlog of an action at its limit costs a claim nothing: a scan of
    the service's Ready jobs in order would step over every one of them at every claim."""
    running = dict(conn.execute(_RUNNING, (microservice,)).fetchall())
    candidates: list[tuple[int, float, int]] = []
    for action in _ready_actions(conn, microservice):
        room = limit
        if action in limits:
            room = min(limit, limits[action] - running.get(action, 0))
        if room > 0:
            candidates.extend(conn.execute(_DUE_OF_ACTION, (microservice, action, room)))
    if not candidates:
        return []
    candidates.sort(key=lambda c: (-c[1], c[2], c[0]))
    ids = [c[0] for c in candidates[:limit]]
    statement = _assign_ids(len(ids), start=start)
    return _jobs(conn.execute(statement, (worker_id, lease, *ids)).fetchall())


@functools.cache
def _assign_ids(count: int, *, start: bool) -> str:
    template = _ASSIGN_STARTED if start else _ASSIGN
    return template.replace("<ids>", ", ".join("?" * count))


_RUN_AT_ID = operator.itemgetter(6, 0)
_PRIORITY = operator.itemgetter(5)


def _jobs(rows: list[Any]) -> list[Job]:
    # RETURNING gives rows in no promised order; hand them out best first (priority down,
    # then run-at and id up): two stable sorts on C keys, no Python call per row.
    rows.sort(key=_RUN_AT_ID)
    rows.sort(key=_PRIORITY, reverse=True)
    times = _batch_times(rows)
    return [job_from_row(row, times) for row in rows]


def start(conn: sqlite3.Connection, job: Job, lease: float) -> Job:
    """Assigned -> Processing, counting the attempt."""
    rid = row_id(job.id)
    row = conn.execute(START, (lease, rid, job.lease_token)).fetchone()
    if row is None:
        raise _lost(conn, job, rid)
    started = job.snapshot()
    started.status = JobStatus.PROCESSING
    started.attempts = row[0]
    started.started_at = _time(row[1])
    started.lease_expires_at = _time(row[2])
    started.updated_at = _time(row[3])
    return started


def extend(conn: sqlite3.Connection, jobs: Sequence[Job], lease: float) -> LeaseRenewal:
    """Renew the leases; report the jobs lost and the ones an operator asked to cancel."""
    lost: set[str] = set()
    cancel: set[str] = set()
    for job in jobs:
        row = conn.execute(_EXTEND, (lease, row_id(job.id), job.lease_token)).fetchone()
        if row is None:
            lost.add(job.id)
        elif row[0]:
            cancel.add(job.id)
    return LeaseRenewal(lost=frozenset(lost), cancel=frozenset(cancel))


@functools.cache
def _count_statement(count: int) -> str:
    return COUNT_FINISHED.replace("<ids>", ", ".join("?" * count))


def _count_finished(conn: sqlite3.Connection, status: str, rids: Sequence[int | None]) -> None:
    """Count the jobs of ``rids``, each just moved to ``status``, as finished (a list of
    ids over a JSON array: a tenth of the cost). See COUNT_FINISHED."""
    for start in range(0, len(rids), _COUNT_CHUNK):
        chunk = rids[start : start + _COUNT_CHUNK]
        conn.execute(_count_statement(len(chunk)), (status, *chunk))


def complete(conn: sqlite3.Connection, job: Job, results: str, runtime_ms: float) -> None:
    rid = row_id(job.id)
    if conn.execute(COMPLETE, (results, runtime_ms, rid, job.lease_token)).rowcount != 1:
        raise _lost(conn, job, rid)
    _count_finished(conn, JobStatus.COMPLETED.value, [rid])


def complete_many(
    conn: sqlite3.Connection, rows: Sequence[tuple[Job, str, float]]
) -> list[tuple[bool, Any]]:
    """:func:`complete` for each ``(job, results, runtime_ms)``: ``(True, None)``, or
    ``(False, LeaseLostError)`` for a job this caller no longer owns.

    All rows in one ``executemany`` (one call into SQLite, the common case) and counted
    with one statement; when some lease was lost, that is undone (savepoint) and each row
    goes alone, to say which."""
    conn.execute("SAVEPOINT complete_many")
    # row_id inlined: one Python call fewer per completion.
    params = [
        (
            text,
            runtime_ms,
            int(i) if (i := job.id).isascii() and i.isdigit() else None,
            job.lease_token,
        )
        for job, text, runtime_ms in rows
    ]
    if conn.executemany(COMPLETE, params).rowcount == len(rows):
        _count_finished(conn, JobStatus.COMPLETED.value, [p[2] for p in params])
        conn.execute("RELEASE complete_many")
        return [(True, None)] * len(rows)
    conn.execute("ROLLBACK TO complete_many")
    conn.execute("RELEASE complete_many")
    done: list[tuple[bool, Any]] = []
    for job, results, runtime_ms in rows:
        try:
            complete(conn, job, results, runtime_ms)
        except LeaseLostError as exc:
            done.append((False, exc))
        else:
            done.append((True, None))
    return done


def fail(
    conn: sqlite3.Connection, job: Job, code: str, message: str, runtime_ms: float | None
) -> None:
    rid = row_id(job.id)
    if conn.execute(_FAIL, (code, message, runtime_ms, rid, job.lease_token)).rowcount != 1:
        raise _lost(conn, job, rid)
    _count_finished(conn, JobStatus.FAILED.value, [rid])


def retry(
    conn: sqlite3.Connection,
    job: Job,
    code: str,
    message: str,
    *,
    delay: float,
    runtime_ms: float | None,
    history: int = 20,
) -> JobStatus:
    rid = row_id(job.id)
    params = {
        "code": code,
        "message": message,
        "runtime": runtime_ms,
        "delay": delay,
        "id": rid,
        "token": job.lease_token,
    }
    row = conn.execute(_retry_statement(history), params).fetchone()
    if row is None:
        raise _lost(conn, job, rid)
    if row[0] == JobStatus.FAILED.value:  # no attempts left
        _count_finished(conn, row[0], [rid])
    return JobStatus(row[0])


def release(conn: sqlite3.Connection, jobs: Sequence[Job], history: int = 20) -> int:
    statement = _release_statement(history)
    return sum(conn.execute(statement, (row_id(job.id), job.lease_token)).rowcount for job in jobs)


def reclaim(conn: sqlite3.Connection, microservice: str, history: int = 20) -> ReclaimResult:
    rows = conn.execute(_reclaim_statement(history), (microservice,)).fetchall()
    requeued = sorted((r[0] for r in rows if r[1] == JobStatus.READY), key=int)
    failed = sorted((r[0] for r in rows if r[1] == JobStatus.FAILED), key=int)
    if failed:
        _count_finished(conn, JobStatus.FAILED.value, failed)
    return ReclaimResult(requeued=[str(i) for i in requeued], failed=[str(i) for i in failed])


# --- reading and housekeeping ------------------------------------------------------------


def cancel(conn: sqlite3.Connection, microservice: str, job_id: str) -> JobStatus:
    """An operator's cancellation (see ``QueueAdmin.cancel``); JobNotFoundError when the
    service has no such job."""
    rid = row_id(job_id)
    if rid is not None:
        if conn.execute(_CANCEL_WAITING, (rid, microservice)).rowcount:
            _count_finished(conn, JobStatus.FAILED.value, [rid])
            return JobStatus.FAILED
        if conn.execute(_CANCEL_RUNNING, (rid, microservice)).rowcount:
            return JobStatus.PROCESSING
        row = conn.execute(_STATUS_IN, (rid, microservice)).fetchone()
        if row is not None:
            return JobStatus(row[0])
    raise JobNotFoundError(f"service {microservice!r} has no job {job_id!r}")


# --- store: pages of jobs, each filter on its own index ----------------------------------------
#
# A page is newest first (created_at, then id, descending). The filter's most selective
# kind of value drives: error codes, else actions, else statuses, each read along its own
# index (microservice, <column>, created_at) from the cursor on, one seek per value, and
# the per-value runs merged (each already in order: no sort, no OFFSET). The rest of the
# filter is checked on the rows read. Without any of those, the index of every job by
# creation time is read. Text in the error message drives by error code too (every job
# with a message has one): the distinct codes present are found by index seeks.

_DISTINCT_CODE = f"""
SELECT error_code FROM {TABLE} INDEXED BY {TABLE}_error_created
WHERE microservice = ? AND error_code > ? ORDER BY error_code LIMIT 1
"""


def _error_codes_present(conn: sqlite3.Connection, microservice: str) -> list[str]:
    codes: list[str] = []
    row = conn.execute(_DISTINCT_CODE, (microservice, "")).fetchone()
    while row is not None:
        codes.append(row[0])
        row = conn.execute(_DISTINCT_CODE, (microservice, row[0])).fetchone()
    return codes


def _filtered(where: JobFilter, skip: str | None, *, text: bool = True) -> tuple[str, list[Any]]:
    """The conditions of ``where`` but its ``skip`` column, after ``microservice = ?``
    (and the driving column's ``= ?``), and their parameters."""
    conditions = ""
    params: list[Any] = []
    statuses = sorted(JobStatus(status).value for status in where.statuses)
    if where.scheduled is True:
        conditions += f" AND status = 'Ready' AND run_at > {NOW}"
    elif where.scheduled is False:
        conditions += f" AND NOT (status = 'Ready' AND run_at > {NOW})"
    if statuses and skip != "status":
        # Written out: a closed set of names, and SQLite plans better with literals.
        conditions += f" AND status IN ({', '.join(repr(name) for name in statuses)})"
    for column, values in (("action", where.actions), ("error_code", where.error_codes)):
        if values and skip != column:
            conditions += f" AND {column} IN ({', '.join('?' * len(values))})"
            params.extend(sorted(values))
    if where.error_text is not None and text:
        conditions += _HAS_TEXT
        params.append(where.error_text)
    if where.created_after is not None:
        conditions += " AND created_at >= ?"
        params.append(_bound(where.created_after))
    if where.created_before is not None:
        conditions += " AND created_at < ?"
        params.append(_bound(where.created_before))
    return conditions, params


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _bound(moment: datetime) -> float:
    """The stored time below which a job's ``created_at`` (a float, shown rounded to the
    microsecond) shows as earlier than ``moment``: half a microsecond before it, so that a
    job's own ``created_at`` given back as a bound matches the job."""
    return ((moment - _EPOCH) // _MICROSECOND - 0.5) / 1e6


_LEASED_NAMES = frozenset({JobStatus.ASSIGNED.value, JobStatus.PROCESSING.value})


def _driver(conn: sqlite3.Connection, where: JobFilter) -> tuple[str | None, str, list[Any]]:
    """The driving column, its index and its values (``[None]``: the creation-time index)."""
    codes: list[Any] = sorted(where.error_codes)
    if not codes and where.error_text is not None:
        codes = _error_codes_present(conn, where.microservice)
        if not codes:
            return "error_code", f"{TABLE}_error_created", []
    if codes:
        return "error_code", f"{TABLE}_error_created", codes
    if where.actions:
        return "action", f"{TABLE}_action_created", sorted(where.actions)
    statuses = sorted(JobStatus(status).value for status in where.statuses)
    if not statuses and where.scheduled:
        statuses = [JobStatus.READY.value]
    if statuses:
        return "status", f"{TABLE}_ready_created", statuses  # the index is per status
    return None, f"{TABLE}_created", [None]


def newest_first(
    conn: sqlite3.Connection,
    columns: str,
    where: JobFilter,
    after: tuple[float, int] | None,
    count: int,
) -> list[Any]:
    """Up to ``count`` rows (``created_at, id, <columns>``) of the jobs matching ``where``,
    newest first, after the sort key ``after``."""
    column, index, values = _driver(conn, where)
    conditions, params = _filtered(where, column)
    if after is not None:
        conditions += " AND (created_at, id) < (?, ?)"
        params.extend(after)
    runs: list[list[Any]] = []
    for value in values:
        drive = "" if column is None else f" AND {column} = ?"
        head = [where.microservice] if column is None else [where.microservice, value]
        source = index
        if column == "status":
            # A literal (a closed set) saying the partial index's own WHERE word for word:
            # SQLite uses a partial index only for a query whose terms imply its WHERE.
            name = JobStatus(value).value
            head = [where.microservice]
            if name in _LEASED_NAMES:
                # Leased jobs are in no index by creation time (a claim would move them in
                # and out of one): their own index, bounded by the jobs running, is read
                # and sorted.
                drive = f" AND status IN {_OWNED} AND status = '{name}'"
                source = f"{TABLE}_leased"
            else:
                drive = f" AND status = '{name}'"
                source = f"{TABLE}_{name.lower()}_created"
        statement = (
            f"SELECT created_at, id, {columns} FROM {TABLE} INDEXED BY {source} "
            f"WHERE microservice = ?{drive}{conditions} "
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        runs.append(conn.execute(statement, (*head, *params, count)).fetchall())
    if len(runs) == 1:
        return runs[0]
    merged = heapq.merge(*runs, key=lambda row: (row[0], row[1]), reverse=True)
    return list(itertools.islice(merged, count))


_HAS_TEXT = " AND instr(lower(error_message), lower(?)) > 0"

#: Jobs with an error a text search reads per error code in one call: past them, the page
#: comes back short with a cursor that searches on (each call stays fast however rare the
#: text is; the dashboard offers to search further).
TEXT_SCAN = 2000


def _searched(
    conn: sqlite3.Connection, where: JobFilter, after: tuple[float, int] | None, count: int
) -> tuple[list[Any], tuple[float, int] | None]:
    """:func:`newest_first` for a filter with ``error_text``, reading at most
    :data:`TEXT_SCAN` jobs per error code: the rows found, and the key down to which every
    code was searched when some code has more (None when all were searched)."""
    column, index, values = _driver(conn, where)
    conditions, params = _filtered(where, column, text=False)
    if after is not None:
        conditions += " AND (created_at, id) < (?, ?)"
        params.extend(after)
    source = f"FROM {TABLE} INDEXED BY {index} WHERE microservice = ? AND {column} = ?"
    order = "ORDER BY created_at DESC, id DESC"
    floors: list[tuple[float, int]] = []
    runs: list[list[Any]] = []
    for value in values:
        head = [where.microservice, value]
        window = conn.execute(
            f"SELECT created_at, id {source}{conditions} {order} LIMIT ?",
            (*head, *params, TEXT_SCAN),
        ).fetchall()
        bound = ""
        extra: list[Any] = []
        if len(window) == TEXT_SCAN:
            deepest = (window[-1][0], window[-1][1])
            floors.append(deepest)
            bound = " AND (created_at, id) >= (?, ?)"
            extra = list(deepest)
        statement = f"SELECT created_at, id, {_COLUMNS} {source}{conditions}{bound}{_HAS_TEXT}"
        runs.append(
            conn.execute(
                f"{statement} {order} LIMIT ?",
                (*head, *params, *extra, where.error_text, count),
            ).fetchall()
        )
    floor: tuple[float, int] | None = max(floors) if floors else None
    merged = heapq.merge(*runs, key=lambda row: (row[0], row[1]), reverse=True)
    rows = [row for row in merged if floor is None or (row[0], row[1]) >= floor]
    return rows[:count], floor


def list_jobs(
    conn: sqlite3.Connection, where: JobFilter, limit: int, after: tuple[float, int] | None
) -> tuple[list[Job], tuple[float, int] | None]:
    """Up to ``limit`` jobs matching ``where``, newest first, after the sort key ``after``
    (created_at, id) of the previous page's last job; and the key to go on from when there
    may be more (a text search may return a short page with such a key: see TEXT_SCAN)."""
    floor = None
    if where.error_text is None:
        rows = newest_first(conn, _COLUMNS, where, after, limit + 1)
    else:
        rows, floor = _searched(conn, where, after, limit + 1)
    more = len(rows) > limit
    del rows[limit:]
    last: tuple[float, int] | None = (rows[-1][0], rows[-1][1]) if more else None
    if not more and floor is not None:
        last = floor  # searched down to there: the next call searches on from it
    found = [row[2:] for row in rows]
    times = _batch_times(found)
    return [job_from_row(row, times) for row in found], last


# --- end store ---------------------------------------------------------------------------------


# ``OR IGNORE``: a Failed job whose idempotency key an unfinished job took meanwhile stays
# Failed (that job does the work); the unique index would refuse it.
_FINAL_OUTCOME = "CASE WHEN error_code = 'LEASE_EXPIRED' THEN 'lease_expired' ELSE 'failed' END"


@functools.cache
def _retry_failed_statement(history: int, count: int) -> str:
    closed = _closed(history, _FINAL_OUTCOME, "error_code", "error_message", "finished_at")
    return f"""
UPDATE OR IGNORE {TABLE}
SET status = 'Ready', attempts = 0, run_at = {NOW},
    attempt_log = CASE WHEN started_at IS NULL THEN attempt_log ELSE {closed} END,
    error_code = NULL, error_message = NULL,
    results = NULL, runtime_ms = NULL, started_at = NULL, finished_at = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, cancel_requested = 0,
    updated_at = {NOW}
WHERE microservice = ? AND status = 'Failed' AND id IN ({", ".join("?" * count)})
RETURNING action"""


def retry_ids(
    conn: sqlite3.Connection, microservice: str, job_ids: Sequence[str], history: int = 20
) -> int:
    """The Failed jobs of the service among ``job_ids`` back to Ready, due now, with fresh
    attempts and no error (the last attempt joins the history); returns how many."""
    rids = sorted({rid for rid in map(row_id, job_ids) if rid is not None})
    if not rids:
        return 0
    statement = _retry_failed_statement(history, len(rids))
    actions = collections.Counter(
        row[0] for row in conn.execute(statement, (microservice, *rids)).fetchall()
    )
    conn.executemany(
        _UNCOUNT_FAILED, [(count, microservice, action) for action, count in actions.items()]
    )
    return actions.total()


def retry_matching(
    conn: sqlite3.Connection,
    where: JobFilter,
    after: tuple[float, int] | None,
    chunk: int,
    history: int = 20,
) -> tuple[int, tuple[float, int] | None]:
    """:func:`retry_ids` for the next ``chunk`` Failed jobs matching ``where`` (newest
    first, after the sort key ``after``); returns how many, and the key to go on from
    (None after the last chunk)."""
    if where.statuses and JobStatus.FAILED not in where.statuses:
        return 0, None  # the filter names no Failed job
    failed = dataclasses.replace(where, statuses=frozenset({JobStatus.FAILED}))
    keys = newest_first(conn, "1", failed, after, chunk)
    if not keys:
        return 0, None
    retried = retry_ids(conn, where.microservice, [str(key[1]) for key in keys], history)
    return retried, ((keys[-1][0], keys[-1][1]) if len(keys) == chunk else None)


# Ready jobs by action, each action read on the index of its Ready jobs in claim order
# (covering: it holds run_at and created_at too): how many, and per priority (a run in
# run-at order, usually the only one) how many are scheduled (run_at in the future) and when
# the longest-waiting due one became due (max(created_at, run_at)).
_READY_COUNT = f"""
SELECT count(*) FROM {TABLE} INDEXED BY {TABLE}_ready_action
WHERE microservice = ? AND action = ? AND status = 'Ready'
"""
_NEXT_READY_PRIORITY = f"""
SELECT priority FROM {TABLE} INDEXED BY {TABLE}_ready_action
WHERE microservice = ? AND action = ? AND status = 'Ready' AND priority < ?
ORDER BY priority DESC LIMIT 1
"""
_SCHEDULED_COUNT = f"""
SELECT count(*) FROM {TABLE} INDEXED BY {TABLE}_ready_action
WHERE microservice = ? AND action = ? AND status = 'Ready' AND priority = ? AND run_at > ?
"""
_DUE_IN_ORDER = f"""
SELECT run_at, max(created_at, run_at) FROM {TABLE} INDEXED BY {TABLE}_ready_action
WHERE microservice = ? AND action = ? AND status = 'Ready' AND priority = ? AND run_at <= ?
ORDER BY run_at
"""
# The bounded counts of stats(count_limit=n): each reads at most n entries of the index.
_READY_COUNT_UPTO = f"""
SELECT count(*) FROM (
    SELECT 1 FROM {TABLE} INDEXED BY {TABLE}_ready_action
    WHERE microservice = ? AND action = ? AND status = 'Ready' LIMIT ?)
"""
_SCHEDULED_COUNT_UPTO = f"""
SELECT count(*) FROM (
    SELECT 1 FROM {TABLE} INDEXED BY {TABLE}_ready_action
    WHERE microservice = ? AND action = ? AND status = 'Ready' AND priority = ? AND run_at > ?
    LIMIT ?)
"""
#: Above any priority (an INTEGER column; a REAL compares with it numerically).
_TOP = float("inf")


def _oldest_due(
    conn: sqlite3.Connection, key: tuple[str, str, int], now: float, best: float | None
) -> float | None:
    """When the longest-waiting due job of one action and priority became due (``best``
    if none became due earlier). In run-at order, a job became due no earlier than its
    run-at, so the walk stops at the first run-at past the best found: at once for the
    adapter's own jobs (their run-at is never before their creation), a few steps for rows
    another producer wrote with an earlier run-at."""
    for run_at, due in conn.execute(_DUE_IN_ORDER, (*key, now)):
        if best is not None and run_at >= best:
            break
        best = due if best is None else min(best, due)
    return best


def _ready_actions(conn: sqlite3.Connection, microservice: str) -> Iterator[str]:
    """The service's actions that have Ready jobs, one index seek each."""
    row = conn.execute(_FIRST_READY_ACTION, (microservice,)).fetchone()
    while row is not None:
        yield row[0]
        row = conn.execute(_NEXT_READY_ACTION, (microservice, row[0])).fetchone()


def _ready_priorities(conn: sqlite3.Connection, microservice: str, action: str) -> Iterator[int]:
    """The priorities of one action's Ready jobs, highest first, one index seek each."""
    level = conn.execute(_NEXT_READY_PRIORITY, (microservice, action, _TOP)).fetchone()
    while level is not None:
        yield level[0]
        level = conn.execute(_NEXT_READY_PRIORITY, (microservice, action, level[0])).fetchone()


def ready_by_action(
    conn: sqlite3.Connection, microservice: str, now: float
) -> dict[str, tuple[int, int, float | None]]:
    """action -> (Ready jobs, of which scheduled, when the oldest due one became due)."""
    found: dict[str, tuple[int, int, float | None]] = {}
    for action in _ready_actions(conn, microservice):
        [count] = conn.execute(_READY_COUNT, (microservice, action)).fetchone()
        scheduled = 0
        due: float | None = None
        for priority in _ready_priorities(conn, microservice, action):
            key = (microservice, action, priority)
            [later] = conn.execute(_SCHEDULED_COUNT, (*key, now)).fetchone()
            scheduled += later
            due = _oldest_due(conn, key, now, due)
        found[action] = (count, scheduled, due)
    return found


# One count per minute: a range of the finished index each, counted in index order (one
# GROUP BY over the window would sort all of its rows first).
_IN_MINUTE = f"""
SELECT status, count(*) FROM {TABLE}
WHERE microservice = ? AND status IN ('Completed', 'Failed')
    AND finished_at >= ? AND finished_at < ?
GROUP BY status
"""


def activity(conn: sqlite3.Connection, microservice: str, minutes: int) -> QueueActivity:
    """Counts by action and status, the oldest due Ready job by action, and finished jobs
    per minute; read in one transaction (one snapshot, one clock reading)."""
    conn.execute("BEGIN")
    try:
        now = float(conn.execute(f"SELECT {NOW}").fetchone()[0])
        counts: dict[str, dict[JobStatus, int]] = {}
        waiting: dict[str, float] = {}
        later: dict[str, int] = {}
        for action, (count, scheduled, due) in ready_by_action(conn, microservice, now).items():
            counts.setdefault(action, dict.fromkeys(JobStatus, 0))[JobStatus.READY] = count
            if scheduled:
                later[action] = scheduled
            if due is not None:
                waiting[action] = max(now - due, 0.0)
        for action, status, count in conn.execute(_OTHERS_BY_ACTION, (microservice,) * 2):
            counts.setdefault(action, dict.fromkeys(JobStatus, 0))[JobStatus(status)] = count
        first = (now // 60 - (minutes - 1)) * 60
        per_minute: list[MinuteActivity] = []
        for i in range(minutes):
            start = first + 60 * i
            found = dict(conn.execute(_IN_MINUTE, (microservice, start, start + 60)).fetchall())
            per_minute.append(
                MinuteActivity(
                    minute=datetime.fromtimestamp(start, UTC),
                    completed=found.get(JobStatus.COMPLETED.value, 0),
                    failed=found.get(JobStatus.FAILED.value, 0),
                )
            )
    finally:
        conn.execute("COMMIT")
    return QueueActivity(
        counts=counts, oldest_ready_age_seconds=waiting, per_minute=per_minute, scheduled=later
    )


def get(conn: sqlite3.Connection, job_id: str, history: int = 20) -> Job | None:
    """The job with its attempt history (the last ``history`` attempts)."""
    rid = row_id(job_id)
    row = None if rid is None else conn.execute(_GET, (rid,)).fetchone()
    if row is None:
        return None
    job = job_from_row(row)
    job.attempt_history = _attempts(job, row[-2], row[-1], history)
    return job


def _attempts(job: Job, log: str | None, number: int, history: int) -> tuple[JobAttempt, ...]:
    """The closed attempts of ``attempt_log`` and the current one the row describes."""
    attempts = [
        JobAttempt(n, worker, _time(started), _time(finished), AttemptOutcome(outcome), code, text)
        for n, worker, started, finished, outcome, code, text in json.loads(log or "[]")
    ]
    if job.started_at is not None:
        if job.status is JobStatus.COMPLETED:
            outcome, code, text = AttemptOutcome.COMPLETED, None, None
        elif job.status is JobStatus.FAILED:
            expired = job.error_code == ErrorCode.LEASE_EXPIRED.value
            outcome = AttemptOutcome.LEASE_EXPIRED if expired else AttemptOutcome.FAILED
            code, text = job.error_code, job.error_message
        else:
            outcome, code, text = AttemptOutcome.RUNNING, None, None
        finished = job.finished_at if job.status.is_finished else None
        attempts.append(
            JobAttempt(number, job.lease_owner, job.started_at, finished, outcome, code, text)
        )
    return tuple(attempts[-history:])


def _ready_up_to(
    conn: sqlite3.Connection, microservice: str, now: float, limit: int
) -> tuple[int, int, list[float]]:
    """(Ready jobs up to ``limit``, scheduled ones up to ``limit``, when each action's oldest
    due job became due): ``ready_by_action`` with counts that stop at the limit, so that it
    costs the same at any depth (the oldest due job is a short walk per priority anyway)."""
    ready = scheduled = 0
    dues: list[float] = []
    for action in _ready_actions(conn, microservice):
        if ready < limit:
            ready += conn.execute(
                _READY_COUNT_UPTO, (microservice, action, limit - ready)
            ).fetchone()[0]
        due: float | None = None
        for priority in _ready_priorities(conn, microservice, action):
            key = (microservice, action, priority)
            if scheduled < limit:
                scheduled += conn.execute(
                    _SCHEDULED_COUNT_UPTO, (*key, now, limit - scheduled)
                ).fetchone()[0]
            due = _oldest_due(conn, key, now, due)
        if due is not None:
            dues.append(due)
    return ready, scheduled, dues


def stats(
    conn: sqlite3.Connection, microservice: str, count_limit: int | None = None
) -> QueueStats:
    """Counts by status, scheduled jobs and the oldest due job's wait, in one snapshot;
    with ``count_limit``, each count stops there (see ``JobQueue.stats``)."""
    conn.execute("BEGIN")
    try:
        now = float(conn.execute(f"SELECT {NOW}").fetchone()[0])
        counts = dict.fromkeys(JobStatus, 0)
        # Owned jobs are few (bounded by the workers' slots) and finished ones are a few
        # rows of the counts table: read exactly, then cut.
        for _, status, count in conn.execute(_OTHERS_BY_ACTION, (microservice,) * 2):
            counts[JobStatus(status)] += count
        if count_limit is None:
            ready = ready_by_action(conn, microservice, now).values()
            counts[JobStatus.READY] = sum(count for count, _, _ in ready)
            scheduled = sum(later for _, later, _ in ready)
            dues = [due for _, _, due in ready if due is not None]
        else:
            counts[JobStatus.READY], scheduled, dues = _ready_up_to(
                conn, microservice, now, count_limit
            )
    finally:
        conn.execute("COMMIT")
    age = max(now - min(dues), 0.0) if dues else None
    counts, at_least = capped_counts(counts, count_limit)
    return QueueStats(
        counts=counts, oldest_ready_age_seconds=age, scheduled=scheduled, at_least=at_least
    )


# --- store: lookup and session revocations -----------------------------------------------------

_BY_UNIQUE = f"SELECT {_COLUMNS} FROM {TABLE} WHERE microservice = ? AND unique_key = ?"
_BY_IDEMPOTENCY = f"""
SELECT {_COLUMNS} FROM {TABLE} INDEXED BY {TABLE}_idempotency_all
WHERE microservice = ? AND idempotency_key = ?
ORDER BY id DESC LIMIT ?
"""
_BY_ID = f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = ? AND microservice = ?"


def find_jobs(conn: sqlite3.Connection, microservice: str, key: str, most: int) -> list[Job]:
    """The jobs ``key`` names by id, unique key or idempotency key, newest first."""
    rows: dict[int, Any] = {}
    rid = row_id(key)
    found = [] if rid is None else conn.execute(_BY_ID, (rid, microservice)).fetchall()
    found += conn.execute(_BY_UNIQUE, (microservice, key)).fetchall()
    found += conn.execute(_BY_IDEMPOTENCY, (microservice, key, most)).fetchall()
    for row in found:
        rows[row[0]] = row
    ordered = sorted(rows.values(), key=lambda row: (row[18], row[0]), reverse=True)
    ordered = ordered[:most]
    times = _batch_times(ordered)
    return [job_from_row(row, times) for row in ordered]


_FORGET_SESSIONS = f"DELETE FROM {SESSIONS} WHERE until <= {NOW}"
_REVOKE = f"""
INSERT INTO {SESSIONS} (session_id, until) SELECT :sid, :until WHERE :until > {NOW}
ON CONFLICT (session_id) DO UPDATE SET until = max(until, excluded.until)
"""
_REVOKED = f"SELECT 1 FROM {SESSIONS} WHERE session_id = ? AND until > {NOW}"


def revoke_session(conn: sqlite3.Connection, session_id: str, until: float) -> None:
    """Keep ``session_id`` revoked until ``until``; forget revocations past theirs."""
    conn.execute(_FORGET_SESSIONS)
    conn.execute(_REVOKE, {"sid": session_id, "until": until})


def session_revoked(conn: sqlite3.Connection, session_id: str) -> bool:
    return conn.execute(_REVOKED, (session_id,)).fetchone() is not None


# --- end store ---------------------------------------------------------------------------------


def purge_chunk(conn: sqlite3.Connection, microservice: str, older_than: float, limit: int) -> int:
    return conn.execute(_PURGE, (microservice, older_than, limit)).rowcount
