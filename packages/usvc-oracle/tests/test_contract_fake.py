"""The shared queue contract on OracleQueue over the recording fake driver.

This checks the adapter's logic (transactions, fencing, retries, ordering, decoding) against
every promise of the port, with the fake standing in for Oracle: it is not a run against a
real database (see test_contract_oracle.py for that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from usvc_core.ports import JobQueue
from usvc_oracle import OracleQueue, OracleSettings
from usvc_oracle_fake import FakeDatabase, FakePool
from usvc_testing.contract import FleetContract


def _open_queue(db: FakeDatabase) -> OracleQueue:
    settings = OracleSettings(ORACLE_USER="app", ORACLE_PASSWORD="secret")
    return OracleQueue(settings, pool_factory=lambda s: FakePool(db))


class TestOracleQueueOnFakeDriver(FleetContract):
    """OracleQueue keeps the port's promises when the driver behaves as the fake models it."""

    db: FakeDatabase

    @pytest.fixture
    async def queue(self) -> AsyncIterator[OracleQueue]:
        """A queue on an empty fake database whose clock this test moves."""
        self.db = FakeDatabase()
        q = _open_queue(self.db)
        await q.open()
        yield q
        await q.close()
        assert all(c.released or c.dead for c in self.db.connections)
        assert not self.db.locks

    @pytest.fixture
    async def peer(self, queue: OracleQueue) -> AsyncIterator[OracleQueue]:
        """A second queue with its own pool on the same fake database."""
        other = _open_queue(self.db)
        await other.open()
        yield other
        await other.close()

    async def travel(self, seconds: float) -> None:
        """Move the fake database's clock."""
        self.db.advance(seconds)

    async def insert_raw_job(self, queue: JobQueue, service: str, raw: str | bytes) -> str:
        """A row written by another producer, payload stored as given."""
        return str(self.db.add(service, PAYLOAD=raw, ACTION="contract_echo", TOKEN=None))
