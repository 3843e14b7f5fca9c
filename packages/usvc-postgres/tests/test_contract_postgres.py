"""The queue contract on a real PostgreSQL 15 server: real connections, the server's clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from pgserver import PgServer
from usvc_core.ports import JobQueue
from usvc_postgres import PostgresQueue
from usvc_postgres.settings import parse_postgres_url
from usvc_testing.contract import FleetContract


def queue_for(server: PgServer, **overrides: object) -> PostgresQueue:
    values = {**parse_postgres_url(server.url), **overrides}
    return PostgresQueue(**values)


class TestPostgresQueue(FleetContract):
    """PostgresQueue keeps every promise of the queue port and the fleet port; a peer is a
    second pool."""

    @pytest.fixture
    async def queue(self, pg_server: PgServer) -> AsyncIterator[PostgresQueue]:
        q = queue_for(pg_server)
        await q.open()
        yield q
        await q.close()

    @pytest.fixture
    async def peer(self, pg_server: PgServer) -> AsyncIterator[PostgresQueue]:
        other = queue_for(pg_server)
        await other.open()
        yield other
        await other.close()

    async def insert_raw_job(self, queue: JobQueue, service: str, raw: str | bytes) -> str:
        """Insert the row the way another producer could (text: bytes as Latin-1)."""
        assert isinstance(queue, PostgresQueue)
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        conn = await asyncpg.connect(**queue.settings.connect_kwargs())
        try:
            job_id = await conn.fetchval(
                f"INSERT INTO {queue.settings.POSTGRES_TABLE} (microservice, action, payload) "
                "VALUES ($1, $2, $3) RETURNING id",
                service,
                "contract_echo",
                text,
            )
        finally:
            await conn.close()
        return str(job_id)
