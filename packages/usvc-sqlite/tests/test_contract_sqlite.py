"""The queue contract on the SQLite queue: a real file, real connections, SQLite's clock."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from usvc_core.ports import JobQueue
from usvc_sqlite import SqliteQueue
from usvc_testing.contract import FleetContract


class TestSqliteQueue(FleetContract):
    """SqliteQueue keeps every promise of the queue and fleet ports; a peer is a second
    connection."""

    @pytest.fixture
    async def queue(self, tmp_path: Path) -> AsyncIterator[SqliteQueue]:
        """A fresh SQLite file, opened."""
        q = SqliteQueue(tmp_path / "jobs.db")
        await q.open()
        yield q
        await q.close()

    @pytest.fixture
    async def peer(self, queue: SqliteQueue) -> AsyncIterator[SqliteQueue]:
        """Another SqliteQueue (its own connection and thread) on the same file."""
        other = SqliteQueue(queue.path)
        await other.open()
        yield other
        await other.close()

    async def insert_raw_job(self, queue: JobQueue, service: str, raw: str | bytes) -> str:
        """Insert the row the way another producer could, with plain sqlite3."""
        assert isinstance(queue, SqliteQueue)
        with sqlite3.connect(queue.path, isolation_level=None) as conn:
            cursor = conn.execute(
                "INSERT INTO usvc_jobs (microservice, action, payload) VALUES (?, ?, ?)",
                (service, "contract_echo", raw),
            )
            job_id = str(cursor.lastrowid)
        conn.close()
        return job_id
