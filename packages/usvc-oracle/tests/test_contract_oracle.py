"""The shared queue contract, plus a few Oracle-only checks, against a real Oracle database.

Runs when USVC_TEST_ORACLE_DSN, USVC_TEST_ORACLE_USER and USVC_TEST_ORACLE_PASSWORD are set
(see the package README for an Oracle Free container); skipped otherwise. Each run creates
its own table (``USVC_CT_<random>``) with ``apply_schema`` and drops it at the end; the user
needs CREATE TABLE and CREATE SEQUENCE and a tablespace quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import oracledb
import pytest
from usvc_core.jobs import AttemptOutcome, JobStatus
from usvc_core.ports import EnqueueRequest, JobQueue
from usvc_oracle import JobLockedError, OracleQueue, OracleSettings, TableName, ddl_statements
from usvc_oracle.cli import apply_schema, table_columns
from usvc_oracle.sql import JOB_COLUMNS, UPGRADE_COLUMNS
from usvc_testing.contract import FleetContract

_ENV = ("USVC_TEST_ORACLE_DSN", "USVC_TEST_ORACLE_USER", "USVC_TEST_ORACLE_PASSWORD")
_MISSING = [name for name in _ENV if not os.environ.get(name)]

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(_MISSING),
        reason=f"needs a real Oracle database: set {', '.join(_MISSING)}",
    ),
]


def _settings(table: str) -> OracleSettings:
    return OracleSettings(
        ORACLE_DSN=os.environ["USVC_TEST_ORACLE_DSN"],
        ORACLE_USER=os.environ["USVC_TEST_ORACLE_USER"],
        ORACLE_PASSWORD=os.environ["USVC_TEST_ORACLE_PASSWORD"],
        ORACLE_TABLE=table,
        ORACLE_POOL_SIZE=4,
    )


async def _connect(settings: OracleSettings) -> Any:
    return await oracledb.connect_async(
        user=settings.ORACLE_USER,
        password=settings.ORACLE_PASSWORD.get_secret_value(),
        dsn=settings.ORACLE_DSN,
    )


async def _drop(table: TableName) -> None:
    conn = await _connect(_settings(str(table)))
    try:
        for name in (
            table.qualified_object("ATTEMPTS"),  # its foreign key names the queue table
            table.quoted,
            table.qualified_object("LIMITS"),
            table.qualified_object("WORKERS"),
            table.qualified_object("PAUSED"),
            table.qualified_object("SESSIONS"),
        ):
            with conn.cursor() as cur, contextlib.suppress(oracledb.DatabaseError):
                await cur.execute(f"DROP TABLE {name} PURGE")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def oracle_table() -> Iterator[str]:
    """A fresh queue table for this module, created with the shipped DDL, dropped after."""
    name = f"USVC_CT_{uuid.uuid4().hex[:10].upper()}"
    settings = _settings(name)

    async def create() -> None:
        conn = await _connect(settings)
        try:
            await apply_schema(conn, settings.table, io.StringIO())
        finally:
            await conn.close()

    async def drop() -> None:
        await _drop(settings.table)

    asyncio.run(create())
    yield name
    asyncio.run(drop())


class TestOracleQueue(FleetContract):
    """OracleQueue keeps every promise of the queue port and of FleetAdmin on a real
    Oracle database."""

    short_lease = 1.0  # leases expire on the database clock: the tests really wait
    delay = 1.0
    heartbeat = 1.0

    @pytest.fixture
    async def queue(self, oracle_table: str) -> AsyncIterator[OracleQueue]:
        """An open queue on the module's table (each test uses its own service name)."""
        q = OracleQueue(_settings(oracle_table))
        await q.open()
        yield q
        await q.close()

    @pytest.fixture
    async def peer(self, oracle_table: str) -> AsyncIterator[OracleQueue]:
        """A second queue with its own pool: concurrent claimers really compete."""
        q = OracleQueue(_settings(oracle_table))
        await q.open()
        yield q
        await q.close()

    async def insert_raw_job(self, queue: JobQueue, service: str, raw: str | bytes) -> str:
        """Insert a row as another producer could, relying on the column defaults."""
        assert isinstance(queue, OracleQueue)
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        conn = await _connect(queue.settings)
        try:
            with conn.cursor() as cur:
                out = cur.var(oracledb.DB_TYPE_NUMBER)
                await cur.execute(
                    f"INSERT INTO {queue.table.quoted} (MICROSERVICE, ACTION, PAYLOAD) "
                    "VALUES (:microservice, :action, :payload) RETURNING ID INTO :o_id",
                    {
                        "microservice": service,
                        "action": "contract_echo",
                        "payload": text,
                        "o_id": out,
                    },
                )
                job_id = str(int(out.getvalue()[0]))
            await conn.commit()
        finally:
            await conn.close()
        return job_id


class TestOracleOnly:
    """What only a real Oracle can show about this adapter."""

    async def test_apply_is_idempotent(self, oracle_table: str) -> None:
        """Applying the DDL to an existing table reports every object as already there."""
        settings = _settings(oracle_table)
        conn = await _connect(settings)
        out = io.StringIO()
        try:
            created = await apply_schema(conn, TableName.parse(oracle_table), out)
        finally:
            await conn.close()
        assert created == 0
        assert out.getvalue().count("exists:") == 15

    async def test_apply_upgrades_a_table_of_the_first_layout(self) -> None:
        """A table created without UNIQUE_KEY and CANCEL_REQUESTED gets them from apply
        (ALTER TABLE ADD), and a worker can then open it; its old Ready index with a DESC
        key is found in the dictionary and named."""
        table = TableName.parse(f"USVC_UP_{uuid.uuid4().hex[:8].upper()}")
        old = "\n".join(
            line
            for line in ddl_statements(table)[0].splitlines()
            if not line.strip().startswith(tuple(UPGRADE_COLUMNS))
        )
        old_ready_index = (
            f"CREATE INDEX {table.qualified_object('READY_IX')} ON {table.quoted} ("
            "CASE WHEN STATUS = 'Ready' THEN MICROSERVICE END, "
            "CASE WHEN STATUS = 'Ready' THEN PRIORITY END DESC)"
        )
        conn = await _connect(_settings(str(table)))
        try:
            with conn.cursor() as cur:
                await cur.execute(old)
                await cur.execute(old_ready_index)
            assert await table_columns(conn, table) == set(JOB_COLUMNS) - set(UPGRADE_COLUMNS)
            out = io.StringIO()
            await apply_schema(conn, table, out)
            assert await table_columns(conn, table) == set(JOB_COLUMNS)
            assert f"index {table.table}_READY_IX of {table} has a DESC key" in out.getvalue()
            queue = OracleQueue(_settings(str(table)))
            await queue.open()
            await queue.close()
        finally:
            await conn.close()
            await _drop(table)

    async def test_the_claim_index_holds_only_claimable_rows(self, oracle_table: str) -> None:
        """The claim index's keys are ascending CASE expressions, NULL for every row that is
        not Ready or is delayed, so finished and delayed rows are not in it (a DESC key
        would index them all)."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        service = f"ix-{uuid.uuid4().hex[:8]}"
        try:
            await queue.enqueue_many(
                [EnqueueRequest(payload={"action": "a"}, microservice=service)] * 5
            )
            await queue.enqueue(
                EnqueueRequest(payload={"action": "a"}, microservice=service, delay_seconds=3600)
            )
            for job in await queue.claim_and_start(service, "w", 3, 30):
                await queue.complete(job, None, 1.0)
            conn = await _connect(_settings(oracle_table))
            try:
                with conn.cursor() as cur:
                    await cur.execute(
                        f'SELECT COUNT(*) FROM "{oracle_table}" WHERE STATUS = :s'
                        " AND DELAYED IS NULL",
                        {"s": "Ready"},
                    )
                    ((ready,),) = await cur.fetchall()
                    await cur.execute(f'ANALYZE INDEX "{oracle_table}_CLAIM_IX" VALIDATE STRUCTURE')
                    await cur.execute("SELECT LF_ROWS - DEL_LF_ROWS FROM INDEX_STATS")
                    ((entries,),) = await cur.fetchall()
            finally:
                await conn.close()
            assert entries == ready
        finally:
            await queue.close()

    async def test_retry_with_a_100_kb_error_message(self, oracle_table: str) -> None:
        """retry() with a 100 KB (multi-byte) error message: the statement has RETURNING, so
        the text is bound as CLOB, never as a LONG; it is stored cut at 32 000 characters."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        service = f"err-{uuid.uuid4().hex[:8]}"
        try:
            await queue.enqueue(EnqueueRequest(payload={"action": "a"}, microservice=service))
            (job,) = await queue.claim_and_start(service, "w", 1, 30)
            message = "é" * 50_000  # 100 000 bytes in UTF-8
            assert await queue.retry(job, "HANDLER_ERROR", message, 0, 1.0) is JobStatus.READY
            stored = await queue.get(job.id)
            assert stored is not None
            assert stored.error_message == "é" * 32_000 + "..."
            # The history MERGE binds it as CLOB too (a select-list bind of the USING query).
            [attempt] = stored.attempt_history
            assert attempt.outcome is AttemptOutcome.RETRIED
            assert attempt.error_message == stored.error_message
        finally:
            await queue.close()

    async def test_the_attempts_ring_and_its_cascade(self, oracle_table: str) -> None:
        """The ATTEMPTS table keeps ``attempt_history`` rows per job (a ring of slots, one
        MERGE per closed attempt, no trimming DELETE), and purging a job deletes its
        attempts through the foreign key's ON DELETE CASCADE."""
        queue = OracleQueue(_settings(oracle_table), attempt_history=3)
        await queue.open()
        service = f"att-{uuid.uuid4().hex[:8]}"
        try:
            job = await queue.enqueue(
                EnqueueRequest(payload={"action": "a"}, microservice=service, max_attempts=9)
            )
            for n in range(6):
                (started,) = await queue.claim_and_start(service, "w", 1, 30)
                await queue.retry(started, "HANDLER_ERROR", f"failure {n + 1}", 0, 1.0)
            (last,) = await queue.claim_and_start(service, "w", 1, 30)
            await queue.fail(last, "HANDLER_ERROR", "for good", 1.0)
            stored = await queue.get(job.id)
            assert stored is not None
            assert [a.number for a in stored.attempt_history] == [5, 6, 7]
            assert [a.outcome for a in stored.attempt_history] == [
                AttemptOutcome.RETRIED,
                AttemptOutcome.RETRIED,
                AttemptOutcome.FAILED,
            ]
            count = f'SELECT COUNT(*) FROM "{oracle_table}_ATTEMPTS" WHERE JOB_ID = :id'
            conn = await _connect(_settings(oracle_table))
            try:
                with conn.cursor() as cur:
                    await cur.execute(count, {"id": int(job.id)})
                    assert await cur.fetchall() == [(3,)]
                await asyncio.sleep(1.1)
                assert await queue.purge(service, 1) == 1
                with conn.cursor() as cur:
                    await cur.execute(count, {"id": int(job.id)})
                    assert await cur.fetchall() == [(0,)]
            finally:
                await conn.close()
        finally:
            await queue.close()

    @pytest.mark.parametrize("n_bytes", [1_001, 4_000, 4_001, 20_000, 40_000])
    async def test_strings_around_the_string_limit(self, oracle_table: str, n_bytes: int) -> None:
        """Issue 22 item 1 on the server: payloads and error messages of 4 001-40 000 bytes
        (bound as CLOB) and of 1 001-4 000 bytes (bound as VARCHAR) pass enqueue,
        enqueue_many, fail and retry (statements with RETURNING), whatever MAX_STRING_SIZE
        the server has."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        service = f"len-{uuid.uuid4().hex[:8]}"
        overhead = len(json.dumps({"action": "a", "blob": ""}))
        blob = "x" * (n_bytes - overhead)
        message = "é" * (n_bytes // 2) + "x" * (n_bytes % 2)
        try:
            one = await queue.enqueue(
                EnqueueRequest(payload={"action": "a", "blob": blob}, microservice=service)
            )
            many = await queue.enqueue_many(
                [
                    EnqueueRequest(payload={"action": "a", "blob": b}, microservice=service)
                    for b in ("s", blob)
                ]
            )
            jobs = {j.id: j for j in await queue.claim_and_start(service, "w", 3, 30)}
            assert jobs[one.id].payload == {"action": "a", "blob": blob}
            assert jobs[many[1].id].payload == {"action": "a", "blob": blob}
            await queue.fail(jobs[one.id], "HANDLER_ERROR", message, 1.0)
            status = await queue.retry(jobs[many[1].id], "HANDLER_ERROR", message, 0, 1.0)
            assert status is JobStatus.READY
            for job_id in (one.id, many[1].id):
                stored = await queue.get(job_id)
                assert stored is not None
                assert stored.error_message == (
                    message if len(message) <= 32_000 else message[:32_000] + "..."
                )
        finally:
            await queue.close()

    async def test_a_claim_whose_commit_went_unanswered_is_given_back(
        self, oracle_table: str
    ) -> None:
        """Issue 22 item 3 on the server: rows claimed (and started) by a claim whose
        COMMIT answer was lost are put back by the next claim, attempt returned, in the
        same transaction, and handed out again. The lost answer is simulated by telling the
        queue the rows are unconfirmed, as its commit failure does."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        service = f"doubt-{uuid.uuid4().hex[:8]}"
        try:
            await queue.enqueue_many(
                [EnqueueRequest(payload={"action": "a"}, microservice=service, max_attempts=1)] * 2
            )
            lost = await queue.claim_and_start(service, "w", 2, 30)
            queue._unconfirmed_claims.update({int(j.id): str(j.lease_token) for j in lost})
            again = await queue.claim_and_start(service, "w", 2, 30)
            assert sorted(j.id for j in again) == sorted(j.id for j in lost)
            assert [j.attempts for j in again] == [1, 1]
            assert not queue._unconfirmed_claims
        finally:
            await queue.close()

    async def test_plans(self, oracle_table: str) -> None:
        """Issue 22 items 6 and 7 on the server, after statistics on a table of a few
        thousand rows in every state: the claim reads CLAIM_IX in order (no SORT), the
        promotion DELAY_IX, and the index-only queries never touch the table."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        service = f"plan-{uuid.uuid4().hex[:8]}"
        try:
            for _ in range(4):
                await queue.enqueue_many(
                    [
                        EnqueueRequest(
                            payload={"action": f"a{i % 7}"},
                            microservice=service,
                            priority=i % 3,
                            delay_seconds=3600 if i % 5 == 0 else 0,
                        )
                        for i in range(500)
                    ]
                )
            jobs = await queue.claim_and_start(service, "w", 800, 300)
            for n, job in enumerate(jobs):
                if n % 3:
                    await queue.complete(job, None, 1.0)
                elif n % 2:
                    await queue.fail(job, "HANDLER_ERROR", "x", 1.0)
        finally:
            await queue.close()
        conn = await _connect(_settings(oracle_table))
        sql = queue.sql.as_dict()

        async def plan(name: str) -> list[tuple[str, str, str]]:
            statement_id = uuid.uuid4().hex[:20]
            with conn.cursor() as cur:
                await cur.execute(
                    f"EXPLAIN PLAN SET STATEMENT_ID = '{statement_id}' FOR {sql[name]}"
                )
                await cur.execute(
                    "SELECT OPERATION, NVL(OPTIONS, ' '), NVL(OBJECT_NAME, ' ') FROM PLAN_TABLE"
                    " WHERE STATEMENT_ID = :s ORDER BY ID",
                    {"s": statement_id},
                )
                return [tuple(r) for r in await cur.fetchall()]

        try:
            with conn.cursor() as cur:
                await cur.execute(
                    "BEGIN DBMS_STATS.GATHER_TABLE_STATS(USER, :t, cascade => TRUE); END;",
                    {"t": oracle_table},
                )
            claim = await plan("claim_lock")
            assert ("INDEX", "RANGE SCAN", f"{oracle_table}_CLAIM_IX") in claim, claim
            assert not [p for p in claim if p[0] == "SORT"], claim
            promote = await plan("promote_lock")
            assert ("INDEX", "RANGE SCAN", f"{oracle_table}_DELAY_IX") in promote, promote
            assert not [p for p in promote if p[0] == "SORT" and p[1] == "ORDER BY"], promote
            for name in (
                "stats",
                "running_counts",
                "activity_counts",
                "activity_minutes",
                "filter_failed",
                "limit_waiting",
            ):
                steps = await plan(name)
                assert not [p for p in steps if p[0] == "TABLE ACCESS"], (name, steps)
            after = await plan("list_jobs_after")
            assert [p for p in after if p[2] == f"{oracle_table}_LIST_IX"], after
        finally:
            await conn.close()

    async def test_session_names_itself(self, oracle_table: str) -> None:
        """Issue 22 item 9: MODULE and ACTION reach the server with the next call."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        try:

            async def names(tx: Any) -> Any:
                with tx.cursor() as cur:
                    await cur.execute(
                        "SELECT SYS_CONTEXT('USERENV', 'MODULE'),"
                        " SYS_CONTEXT('USERENV', 'ACTION') FROM DUAL"
                    )
                    return (await cur.fetchall())[0]

            assert await queue._run("names_check", names) == (
                f"usvc {oracle_table}",
                "names_check",
            )
        finally:
            await queue.close()

    async def test_apply_on_a_live_table_builds_online(self, oracle_table: str) -> None:
        """Issue 22 item 10: apply on the existing table sets DDL_LOCK_TIMEOUT and builds a
        dropped index again ONLINE (or plainly where the edition has no online builds);
        check then finds every index VALID."""
        from usvc_oracle.cli import index_report

        conn = await _connect(_settings(oracle_table))
        try:
            with conn.cursor() as cur:
                await cur.execute(f'DROP INDEX "{oracle_table}_FAILED_IX"')
            problems, _ = await index_report(conn, TableName.parse(oracle_table))
            assert [p for p in problems if "FAILED_IX is missing" in p]
            out = io.StringIO()
            assert await apply_schema(conn, TableName.parse(oracle_table), out) == 1
            assert "created: CREATE INDEX" in out.getvalue()
            assert await index_report(conn, TableName.parse(oracle_table)) == ([], [])
        finally:
            await conn.close()

    async def test_check_follows_a_synonym(self, oracle_table: str) -> None:
        """Issue 22 item 10: a private synonym of the table (and of its limits table)
        resolves to the table in ALL_SYNONYMS; the queue works through it. Needs CREATE
        SYNONYM (skipped without it)."""
        from usvc_oracle.cli import index_report, resolve_table

        alias = f"SYN_{uuid.uuid4().hex[:8].upper()}"
        conn = await _connect(_settings(oracle_table))
        try:
            with conn.cursor() as cur:
                try:
                    await cur.execute(f'CREATE SYNONYM "{alias}" FOR "{oracle_table}"')
                    await cur.execute(
                        f'CREATE SYNONYM "{alias}_LIMITS" FOR "{oracle_table}_LIMITS"'
                    )
                except oracledb.DatabaseError as exc:
                    pytest.skip(f"no CREATE SYNONYM grant: {exc}")
            real = await resolve_table(conn, TableName.parse(alias))
            assert real.table == oracle_table
            assert (await index_report(conn, real))[0] == []
            queue = OracleQueue(_settings(alias))
            await queue.open()
            await queue.close()
        finally:
            with conn.cursor() as cur:
                for name in (alias, f"{alias}_LIMITS"):
                    with contextlib.suppress(oracledb.DatabaseError):
                        await cur.execute(f'DROP SYNONYM "{name}"')
            await conn.close()

    async def test_enqueue_many_with_payloads_over_32_kb(self, oracle_table: str) -> None:
        """enqueue_many (executemany with RETURNING) of payloads beyond a VARCHAR bind,
        mixed with small ones: every job is stored and claimed whole."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        service = f"big-{uuid.uuid4().hex[:8]}"
        try:
            sizes = [40_000, 10, 70_000, 33_000]
            jobs = await queue.enqueue_many(
                [
                    EnqueueRequest(payload={"action": "a", "blob": "x" * n}, microservice=service)
                    for n in sizes
                ]
            )
            claimed = {j.id: j for j in await queue.claim(service, "w", 4, 30)}
            for job, n in zip(jobs, sizes, strict=True):
                assert claimed[job.id].payload == {"action": "a", "blob": "x" * n}
        finally:
            await queue.close()

    async def test_a_foreign_row_lock_is_reported_not_waited_on(self, oracle_table: str) -> None:
        """An operator's uncommitted UPDATE of a running job: complete() raises
        JobLockedError after the bounded wait instead of hanging to the call timeout; once
        the operator rolls back, complete() works."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        service = f"lock-{uuid.uuid4().hex[:8]}"
        operator = await _connect(_settings(oracle_table))
        try:
            await queue.enqueue(EnqueueRequest(payload={"action": "a"}, microservice=service))
            (job,) = await queue.claim_and_start(service, "w", 1, 30)
            with operator.cursor() as cur:
                await cur.execute(
                    f'UPDATE "{oracle_table}" SET PRIORITY = 1 WHERE ID = :id', {"id": int(job.id)}
                )
            with pytest.raises(JobLockedError, match=f"job {job.id}"):
                await queue.complete(job, None, 1.0)
            await operator.rollback()
            await queue.complete(job, None, 1.0)
        finally:
            await operator.close()
            await queue.close()

    async def test_large_payload_and_results_round_trip(self, oracle_table: str) -> None:
        """Payloads and results far beyond VARCHAR2 sizes go through the CLOB columns."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        try:
            service = f"big-{uuid.uuid4().hex[:8]}"
            blob = "x" * 200_000
            job = await queue.enqueue(
                EnqueueRequest(payload={"action": "a", "blob": blob}, microservice=service)
            )
            [claimed] = await queue.claim(service, "w", 1, 30)
            assert claimed.payload == {"action": "a", "blob": blob}
            started = await queue.mark_processing(claimed, 30)
            await queue.complete(started, {"echo": blob}, 1.0)
            stored = await queue.get(job.id)
            assert stored is not None
            assert stored.status is JobStatus.COMPLETED
            assert stored.results == {"echo": blob}
        finally:
            await queue.close()

    async def test_missing_table_fails_open_with_the_fix(self, oracle_table: str) -> None:
        """open() on a table that does not exist names the command that creates it."""
        queue = OracleQueue(_settings(f"{oracle_table}_NOPE"))
        with pytest.raises(Exception, match=r"python -m usvc_oracle apply"):
            await queue.open()

    async def test_payload_column_keeps_json_text(self, oracle_table: str) -> None:
        """The stored payload is the request's JSON text, readable by any other client."""
        queue = OracleQueue(_settings(oracle_table))
        await queue.open()
        try:
            job = await queue.enqueue(
                EnqueueRequest(payload={"action": "a", "n": 1}, microservice="plain")
            )
        finally:
            await queue.close()
        conn = await _connect(_settings(oracle_table))
        try:
            with conn.cursor() as cur:
                await cur.execute(
                    f'SELECT TO_CHAR(PAYLOAD), TOKEN FROM "{oracle_table}" WHERE ID = :id',
                    {"id": int(job.id)},
                )
                ((payload, token),) = await cur.fetchall()
        finally:
            await conn.close()
        assert json.loads(payload) == {"action": "a", "n": 1}
        assert token is None  # no token given: NULL, read back as the id
        assert job.token == job.id
