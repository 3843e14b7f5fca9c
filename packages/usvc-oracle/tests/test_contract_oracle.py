"""The shared queue contract, plus a few Oracle-only checks, against a real Oracle database.

Runs when USVC_TEST_ORACLE_DSN, USVC_TEST_ORACLE_USER and USVC_TEST_ORACLE_PASSWORD are set
(see the package README for an Oracle Free container); skipped otherwise. Each run creates
its own table (``USVC_CT_<random>``) with ``apply_ddl`` and drops it at the end; the user
needs CREATE TABLE.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import oracledb
import pytest
from usvc_core.jobs import JobStatus
from usvc_core.ports import EnqueueRequest, JobQueue
from usvc_oracle import OracleQueue, OracleSettings, TableName, ddl_statements
from usvc_oracle.cli import apply_ddl
from usvc_testing.contract import JobQueueContract

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


@pytest.fixture(scope="module")
def oracle_table() -> Iterator[str]:
    """A fresh queue table for this module, created with the shipped DDL, dropped after."""
    name = f"USVC_CT_{uuid.uuid4().hex[:10].upper()}"
    settings = _settings(name)

    async def create() -> None:
        conn = await _connect(settings)
        try:
            await apply_ddl(conn, ddl_statements(settings.table), io.StringIO())
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await _connect(settings)
        try:
            with conn.cursor() as cur:
                await cur.execute(f"DROP TABLE {settings.table.quoted} PURGE")
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


class TestOracleQueue(JobQueueContract):
    """OracleQueue keeps every promise of the queue port on a real Oracle database."""

    short_lease = 1.0  # leases expire on the database clock: the tests really wait
    delay = 1.0

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
            created = await apply_ddl(conn, ddl_statements(TableName.parse(oracle_table)), out)
        finally:
            await conn.close()
        assert created == 0
        assert out.getvalue().count("exists:") == 5

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
        assert token == job.id
