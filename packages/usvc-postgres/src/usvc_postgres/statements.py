"""The PostgreSQL queue's SQL, built once per table name, and rows turned into jobs.

Every time that decides ownership (run-at, lease expiry) is the server's ``now()``: the
start of the statement's transaction, one reading for every row a statement writes. Every
transition after a claim names the job's id, its fencing token (``lease_token``, a fresh
``gen_random_uuid()`` per claim) and the status it expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from usvc_core.adapter_support.payload import decode_payload
from usvc_core.jobs import Job, JobStatus

__all__ = ["COLUMNS", "Statements", "job_from_row"]

COLUMNS = (
    "id, microservice, action, payload, status, priority, run_at, attempts, max_attempts, "
    "token, idempotency_key, lease_owner, lease_token, lease_expires_at, results, error_code, "
    "error_message, runtime_ms, created_at, updated_at, started_at, finished_at, unique_key, "
    "cancel_requested"
)
_UNFINISHED = "('Ready', 'Assigned', 'Processing')"
_OWNED = "('Assigned', 'Processing')"
_SECONDS = "* interval '1 second'"


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in COLUMNS.split(","))


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of the queue on table ``table`` (a validated plain name);
    ``keep``: how many attempts of a job the history holds."""

    table: str
    keep: int = 20

    def _closing(self, outcome: str, code: str, message: str, finished: str = "now()") -> str:
        """``attempt_log`` with the row's current attempt appended (its values before the
        update) as ``outcome``, the last ``keep`` kept."""
        log = "coalesce(attempt_log, '[]'::jsonb)"
        entry = (
            f"jsonb_build_object('n', attempt_no, 'w', lease_owner, 's', started_at, "
            f"'f', {finished}, 'o', {outcome}, 'c', {code}, 'm', {message})"
        )
        return (
            f"(SELECT coalesce(jsonb_agg(e ORDER BY i), '[]'::jsonb) "
            f"FROM jsonb_array_elements({log} || jsonb_build_array({entry})) "
            f"WITH ORDINALITY AS a(e, i) "
            f"WHERE i > jsonb_array_length({log}) + 1 - {int(self.keep)})"
        )

    @property
    def _not_paused(self) -> str:
        """A claim's condition on a job of service ``$1``: its action is not paused (a
        primary-key probe of the small paused table, in the claim's own snapshot)."""
        return (
            f"NOT EXISTS (SELECT 1 FROM {self.table}_paused p "
            f"WHERE p.microservice = $1 AND p.action = {self.table}.action)"
        )

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel; payload: ``<origin> <service>``, the process that
        made jobs of the service due (it woke its own workers already)."""
        return f"{self.table}_due"

    # --- producing ---------------------------------------------------------------------------

    @property
    def insert(self) -> str:
        # $10: notify listeners (a job due now), $11: this process's origin mark (it woke
        # its own workers already); pg_notify is delivered at commit.
        return f"""
WITH ins AS (
    INSERT INTO {self.table} (microservice, action, payload, priority, run_at, max_attempts,
                              token, idempotency_key, unique_key)
    VALUES ($1, $2, $3, $4, now() + $5 {_SECONDS}, $6, $7, $8, $9)
    ON CONFLICT DO NOTHING
    RETURNING id, run_at, created_at)
SELECT id, run_at, created_at,
    CASE WHEN $10 THEN pg_notify('{self.channel}', $11 || ' ' || $1) END
FROM ins"""

    @property
    def insert_many(self) -> str:
        return f"""
INSERT INTO {self.table} (microservice, action, payload, priority, run_at, max_attempts,
                          token, idempotency_key, unique_key)
SELECT u.m, u.a, u.p, u.pr, now() + u.d {_SECONDS}, u.ma, u.tok, u.ik, u.uk
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::float8[], $6::int[],
            $7::text[], $8::text[], $9::text[])
     WITH ORDINALITY AS u(m, a, p, pr, d, ma, tok, ik, uk, n)
ORDER BY u.n
ON CONFLICT DO NOTHING
RETURNING id, run_at, created_at"""

    @property
    def notify_many(self) -> str:
        """$1 services, $2 origin mark."""
        return f"SELECT pg_notify('{self.channel}', $2 || ' ' || s) FROM unnest($1::text[]) AS s"

    @property
    def unique_holder(self) -> str:
        return f"""SELECT id FROM {self.table} WHERE microservice = $1 AND unique_key = $2
AND NOT id = ANY($3::bigint[])"""

    @property
    def idempotency_holder(self) -> str:
        return f"""SELECT id FROM {self.table}
WHERE microservice = $1 AND idempotency_key = $2 AND status IN {_UNFINISHED}
AND NOT id = ANY($3::bigint[])"""

    # --- claiming ------------------------------------------------------------------------------

    def _assign(self, picked: str, *, start: bool) -> str:
        status = "'Processing'" if start else "'Assigned'"
        attempts = "j.attempts + 1" if start else "j.attempts"
        started = "now()" if start else "j.started_at"
        # A start counts in the history's numbering; claim_and_start's is unconfirmed
        # until the claimer renews the lease or records an outcome.
        numbered = "j.attempt_no + 1" if start else "j.attempt_no"
        confirmed = "false" if start else "j.start_confirmed"
        return f"""
WITH picked AS ({picked})
UPDATE {self.table} j
SET status = {status}, attempts = {attempts}, started_at = {started},
    attempt_no = {numbered}, start_confirmed = {confirmed},
    lease_owner = $2, lease_token = gen_random_uuid()::text,
    lease_expires_at = now() + $3 {_SECONDS}, updated_at = now()
FROM picked WHERE j.id = picked.id
RETURNING {_prefixed("j")}"""

    def claim(self, *, start: bool) -> str:
        """$1 service, $2 worker, $3 lease seconds, $4 limit. The CTE is a fence: the
        planner may not turn it into a join that locks more rows than the limit."""
        picked = f"""
    SELECT id FROM {self.table}
    WHERE microservice = $1 AND status = 'Ready' AND run_at <= now() AND {self._not_paused}
    ORDER BY priority DESC, run_at, id
    LIMIT $4 FOR UPDATE SKIP LOCKED"""
        return self._assign(picked, start=start)

    def claim_ids(self, *, start: bool) -> str:
        """$1 service, $2 worker, $3 lease seconds, $4 ids (locked by this transaction)."""
        picked = "SELECT unnest($4::bigint[]) AS id, $1::text AS service"
        return self._assign(picked, start=start).replace(
            "FROM picked WHERE j.id = picked.id",
            "FROM picked WHERE j.id = picked.id AND j.microservice = picked.service "
            "AND j.status = 'Ready'",
        )

    @property
    def claim_lock(self) -> str:
        """One claim under max_running at a time per service (released at commit)."""
        return "SELECT pg_advisory_xact_lock(hashtext($1))"

    @property
    def running_by_action(self) -> str:
        return f"""SELECT action, count(*) FROM {self.table}
WHERE microservice = $1 AND status IN {_OWNED} AND action = ANY($2::text[]) GROUP BY action"""

    @property
    def due_of_action(self) -> str:
        """$1 service, $2 action, $3 limit."""
        return f"""SELECT id, priority, run_at FROM {self.table}
WHERE microservice = $1 AND action = $2 AND status = 'Ready' AND run_at <= now()
    AND {self._not_paused}
ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED"""

    @property
    def due_of_others(self) -> str:
        """$1 service, $2 limited actions (excluded), $3 limit."""
        return f"""SELECT id, priority, run_at FROM {self.table}
WHERE microservice = $1 AND status = 'Ready' AND run_at <= now()
    AND NOT action = ANY($2::text[]) AND {self._not_paused}
ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED"""

    # --- owning -------------------------------------------------------------------------------

    @property
    def start(self) -> str:
        """$1 lease seconds, $2 id, $3 token."""
        return f"""UPDATE {self.table}
SET status = 'Processing', attempts = attempts + 1, started_at = now(),
    attempt_no = attempt_no + 1, start_confirmed = true,
    lease_expires_at = now() + $1 {_SECONDS}, updated_at = now()
WHERE id = $2 AND lease_token = $3 AND status = 'Assigned'
RETURNING attempts, started_at, lease_expires_at, updated_at"""

    @property
    def extend(self) -> str:
        """$1 lease seconds, $2 ids, $3 tokens: the renewed ids and their cancel flags."""
        return f"""UPDATE {self.table} j
SET lease_expires_at = now() + $1 {_SECONDS}, updated_at = now(), start_confirmed = true
FROM unnest($2::bigint[], $3::text[]) AS u(id, token)
WHERE j.id = u.id AND j.lease_token = u.token AND j.status IN {_OWNED}
RETURNING j.id, j.cancel_requested"""

    @property
    def complete_many(self) -> str:
        """$1 ids, $2 tokens, $3 results, $4 runtimes: the ids completed."""
        return f"""UPDATE {self.table} j
SET status = 'Completed', results = u.results, runtime_ms = u.runtime_ms, start_confirmed = true,
    error_code = NULL, error_message = NULL, lease_expires_at = NULL,
    finished_at = now(), updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[])
     AS u(id, token, results, runtime_ms)
WHERE j.id = u.id AND j.lease_token = u.token AND j.status = 'Processing'
RETURNING j.id"""

    @property
    def fail(self) -> str:
        """$1 code, $2 message, $3 runtime, $4 id, $5 token."""
        return f"""UPDATE {self.table}
SET status = 'Failed', error_code = $1, error_message = $2, runtime_ms = $3,
    start_confirmed = true, lease_expires_at = NULL, finished_at = now(), updated_at = now()
WHERE id = $4 AND lease_token = $5 AND status = 'Processing'"""

    @property
    def retry(self) -> str:
        """$1 code, $2 message, $3 runtime, $4 delay, $5 id, $6 token: the new status."""
        done = "attempts >= max_attempts"
        return f"""UPDATE {self.table}
SET status = CASE WHEN {done} THEN 'Failed' ELSE 'Ready' END,
    error_code = $1, error_message = $2, runtime_ms = $3,
    run_at = CASE WHEN {done} THEN run_at ELSE now() + greatest($4, 0) {_SECONDS} END,
    finished_at = CASE WHEN {done} THEN now() END,
    lease_owner = CASE WHEN {done} THEN lease_owner END,
    lease_token = CASE WHEN {done} THEN lease_token END,
    cancel_requested = CASE WHEN {done} THEN cancel_requested ELSE false END,
    attempt_log = CASE WHEN {done} THEN attempt_log
        ELSE {self._closing("'retried'", "$1::text", "$2::text")} END,
    started_at = CASE WHEN {done} THEN started_at END,
    start_confirmed = true, lease_expires_at = NULL, updated_at = now()
WHERE id = $5 AND lease_token = $6 AND status = 'Processing'
RETURNING status"""

    @property
    def release(self) -> str:
        """$1 ids, $2 tokens: back to Ready in their old place (run_at unchanged); a started
        job gets back the attempt its start counted. Returns the services released to."""
        return f"""UPDATE {self.table} j
SET status = 'Ready',
    attempts = CASE WHEN j.status = 'Processing' THEN greatest(j.attempts - 1, 0)
               ELSE j.attempts END,
    started_at = CASE WHEN j.status = 'Processing' THEN NULL ELSE j.started_at END,
    attempt_log = CASE WHEN j.status = 'Processing'
        THEN {self._closing("'released'", "NULL::text", "NULL::text")} ELSE j.attempt_log END,
    start_confirmed = true, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    cancel_requested = false, updated_at = now()
FROM unnest($1::bigint[], $2::text[]) AS u(id, token)
WHERE j.id = u.id AND j.lease_token = u.token AND j.status IN {_OWNED}
RETURNING j.microservice"""

    @property
    def reclaim(self) -> str:
        """Expired leases of service $1: Assigned -> Ready; Processing never confirmed,
        the first time -> Ready with the attempt given back (``not_started``); Processing
        -> Ready with the attempt spent (``lease_expired``), or Failed when none is left."""
        running = "status = 'Processing'"
        unconfirmed = f"({running} AND NOT start_confirmed AND NOT attempt_given_back)"
        exhausted = f"({running} AND NOT {unconfirmed} AND attempts >= max_attempts)"
        requeued = f"({running} AND NOT {exhausted})"
        never = (
            "format('claimed by worker %s but never confirmed started (the claim''s reply "
            "was probably lost); the attempt was given back', lease_owner)"
        )
        spent = "'lease expired; the job will run again'"
        message = f"CASE WHEN {unconfirmed} THEN {never} ELSE {spent} END"
        outcome = f"CASE WHEN {unconfirmed} THEN 'not_started' ELSE 'lease_expired' END"
        return f"""UPDATE {self.table}
SET status = CASE WHEN {exhausted} THEN 'Failed' ELSE 'Ready' END,
    attempts = CASE WHEN {unconfirmed} THEN greatest(attempts - 1, 0) ELSE attempts END,
    attempt_given_back = attempt_given_back OR {unconfirmed},
    error_code = CASE WHEN {running} THEN 'LEASE_EXPIRED' ELSE error_code END,
    error_message = CASE
        WHEN NOT {running} THEN error_message
        WHEN {exhausted} THEN format('the worker running attempt %s of %s stopped '
            'renewing its lease (crashed or stalled); no attempts left', attempts, max_attempts)
        ELSE {message} END,
    attempt_log = CASE WHEN {requeued}
        THEN {self._closing(outcome, "'LEASE_EXPIRED'", message)} ELSE attempt_log END,
    started_at = CASE WHEN {exhausted} THEN started_at END,
    finished_at = CASE WHEN {exhausted} THEN now() ELSE finished_at END,
    runtime_ms = CASE WHEN {exhausted} THEN NULL ELSE runtime_ms END,
    lease_owner = CASE WHEN {exhausted} THEN lease_owner END,
    lease_token = CASE WHEN {exhausted} THEN lease_token END,
    cancel_requested = CASE WHEN {exhausted} THEN cancel_requested ELSE false END,
    start_confirmed = true, lease_expires_at = NULL, updated_at = now()
WHERE microservice = $1 AND status IN {_OWNED} AND lease_expires_at < now()
RETURNING id, status"""

    @property
    def state(self) -> str:
        """$1 id: status and fencing token (why a transition found nothing)."""
        return f"SELECT status, lease_token FROM {self.table} WHERE id = $1"

    @property
    def states(self) -> str:
        return f"SELECT id, status, lease_token FROM {self.table} WHERE id = ANY($1::bigint[])"

    # --- operating ------------------------------------------------------------------------------

    @property
    def get(self) -> str:
        """The job and its attempt history (``attempt_no``, ``attempt_log``)."""
        return f"SELECT {COLUMNS}, attempt_no, attempt_log FROM {self.table} WHERE id = $1"

    # --- store: lookup by key, admin session revocations (issues 21.5, 19.4) -------------

    @property
    def find_jobs(self) -> str:
        """$1 service, $2 row id (or NULL), $3 key, $4 limit."""
        return f"""SELECT {COLUMNS} FROM {self.table}
WHERE microservice = $1 AND (id = $2 OR unique_key = $3 OR idempotency_key = $3)
ORDER BY created_at DESC, id DESC LIMIT $4"""

    @property
    def forget_sessions(self) -> str:
        return f"DELETE FROM {self.table}_revoked_sessions WHERE until <= now()"

    @property
    def revoke_session(self) -> str:
        """$1 session id, $2 until (kept only when still ahead)."""
        return f"""INSERT INTO {self.table}_revoked_sessions (session_id, until)
SELECT $1, $2 WHERE $2 > now()
ON CONFLICT (session_id) DO UPDATE
SET until = greatest({self.table}_revoked_sessions.until, excluded.until)"""

    @property
    def session_revoked(self) -> str:
        return f"""SELECT 1 FROM {self.table}_revoked_sessions
WHERE session_id = $1 AND until > now()"""

    @property
    def cancel_waiting(self) -> str:
        return f"""UPDATE {self.table}
SET status = 'Failed', error_code = 'CANCELLED',
    error_message = 'cancelled by an operator while ' || status || ' (it never ran)',
    lease_expires_at = NULL, finished_at = now(), updated_at = now()
WHERE id = $1 AND microservice = $2 AND status IN ('Ready', 'Assigned')"""

    @property
    def cancel_running(self) -> str:
        return f"""UPDATE {self.table} SET cancel_requested = true, updated_at = now()
WHERE id = $1 AND microservice = $2 AND status = 'Processing'"""

    @property
    def status_in(self) -> str:
        return f"SELECT status FROM {self.table} WHERE id = $1 AND microservice = $2"

    @property
    def counts(self) -> str:
        """$1 service: count by status, one branch per partial index; the Ready branch
        counts the scheduled jobs (not due yet) in the same pass."""
        t = self.table
        return f"""
SELECT 'Ready', count(*), count(*) FILTER (WHERE run_at > now())
FROM {t} WHERE microservice = $1 AND status = 'Ready'
UNION ALL
SELECT status, count(*), 0 FROM {t} WHERE microservice = $1 AND status IN {_OWNED}
GROUP BY status
UNION ALL
SELECT status, count(*), 0 FROM {t}
WHERE microservice = $1 AND status IN ('Completed', 'Failed') GROUP BY status"""

    @property
    def counts_upto(self) -> str:
        """$1 service, $2 limit: ``counts`` with each status's count stopped at the limit,
        each branch an index scan that stops after $2 rows of its partial index (``_ready``,
        ``_owned``, ``_failed``; Completed on ``_finished``, passing the Failed rows among
        them), so that the cost does not grow with the depth. Each ORDER BY is its index's
        order: it holds the planner to the index (a sequential scan that stops at $2 rows
        reads every row of the table before the first Ready one, the finished history
        included). The scheduled count rides on the Ready entries read (the first $2 in
        claim order)."""
        t = self.table

        def upto(status: str, order: str) -> str:
            return f"""SELECT '{status}', count(*), 0 FROM (
    SELECT 1 FROM {t} WHERE microservice = $1 AND status = '{status}'
    ORDER BY {order} LIMIT $2) AS s"""

        return f"""
SELECT 'Ready', count(*), count(*) FILTER (WHERE run_at > now()) FROM (
    SELECT run_at FROM {t} WHERE microservice = $1 AND status = 'Ready'
    ORDER BY priority DESC, run_at, id LIMIT $2) AS r
UNION ALL
{upto("Assigned", "action")}
UNION ALL
{upto("Processing", "action")}
UNION ALL
{upto("Completed", "finished_at")}
UNION ALL
{upto("Failed", "created_at DESC, id DESC")}"""

    @property
    def oldest_due(self) -> str:
        """$1 service: seconds since the longest-waiting due Ready job became due (no row
        when none is due). A job is due from ``greatest(created_at, run_at)``, and a job
        not due has that past now(): the first entry of the ``due`` index that is due is
        the one, found with one seek at any depth."""
        return f"""SELECT extract(epoch FROM now() - greatest(created_at, run_at))::float8
FROM {self.table} WHERE microservice = $1 AND status = 'Ready' AND run_at <= now()
ORDER BY greatest(created_at, run_at) LIMIT 1"""

    @property
    def purge(self) -> str:
        """$1 service, $2 seconds, $3 chunk."""
        return f"""DELETE FROM {self.table} WHERE id IN (
    SELECT id FROM {self.table}
    WHERE microservice = $1 AND status IN ('Completed', 'Failed')
        AND finished_at < now() - $2 {_SECONDS}
    LIMIT $3)"""

    @property
    def ready_by_action(self) -> str:
        return f"""SELECT action, count(*),
    extract(epoch FROM now() - min(greatest(created_at, run_at))
        FILTER (WHERE run_at <= now()))::float8,
    count(*) FILTER (WHERE run_at > now())
FROM {self.table} WHERE microservice = $1 AND status = 'Ready' GROUP BY action"""

    @property
    def others_by_action(self) -> str:
        t = self.table
        return f"""
SELECT action, status, count(*) FROM {t}
WHERE microservice = $1 AND status IN {_OWNED} GROUP BY action, status
UNION ALL
SELECT action, status, count(*) FROM {t}
WHERE microservice = $1 AND status IN ('Completed', 'Failed') GROUP BY action, status"""

    @property
    def per_minute(self) -> str:
        """$1 service, $2 window start: finished jobs by minute and status."""
        return f"""SELECT date_trunc('minute', finished_at), status, count(*) FROM {self.table}
WHERE microservice = $1 AND status IN ('Completed', 'Failed') AND finished_at >= $2
GROUP BY 1, 2"""

    @property
    def retry_failed_ids(self) -> str:
        """$1 service, $2 ids: Failed jobs back to Ready with fresh attempts; a job whose
        idempotency key an unfinished job took meanwhile stays Failed (that job does the
        work)."""
        t = self.table
        final = "CASE WHEN j.error_code = 'LEASE_EXPIRED' THEN 'lease_expired' ELSE 'failed' END"
        closing = self._closing(final, "j.error_code", "j.error_message", "j.finished_at")
        return f"""UPDATE {t} j
SET attempt_log = CASE WHEN j.started_at IS NULL THEN j.attempt_log ELSE {closing} END,
    status = 'Ready', attempts = 0, run_at = now(), error_code = NULL, error_message = NULL,
    results = NULL, runtime_ms = NULL, started_at = NULL, finished_at = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, cancel_requested = false,
    updated_at = now()
WHERE j.microservice = $1 AND j.status = 'Failed' AND j.id = ANY($2::bigint[])
    AND (j.idempotency_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM {t} o WHERE o.microservice = j.microservice
            AND o.idempotency_key = j.idempotency_key AND o.status IN {_UNFINISHED}))"""


_STATUSES = {status.value: status for status in JobStatus}


def _results(raw: Any) -> Any:
    if raw is None:
        return None
    value, error = decode_payload(raw)
    return raw if error is not None else value


def job_from_row(row: Sequence[Any]) -> Job:
    """A :class:`Job` from a row of ``COLUMNS``."""
    payload, payload_error = decode_payload(row[3])
    job_id = str(row[0])
    status = _STATUSES.get(row[4]) or JobStatus(row[4])
    # Positional, in the order of Job's fields (which COLUMNS follows).
    return Job(
        job_id,
        row[1],
        row[2],
        payload,
        status,
        row[5],
        row[6],
        row[7],
        row[8],
        row[9] or job_id,
        row[10],
        row[11],
        row[12],
        row[13],
        _results(row[14]),
        row[15],
        row[16],
        row[17],
        row[18],
        row[19],
        row[20],
        row[21],
        row[22],
        bool(row[23]),
        payload_error,
    )
