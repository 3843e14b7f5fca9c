"""Fixtures of the usvc-oracle tests: the recording fake database and a queue on it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from usvc_oracle import OracleQueue, OracleSettings

# The fake lives in a module of its own so that test modules can import its helpers.
sys.path.insert(0, str(Path(__file__).parent))

from usvc_oracle_fake import FakeDatabase, FakePool


@pytest.fixture
def fake_db() -> FakeDatabase:
    """An empty fake database holding the queue table MICRO_SVC."""
    return FakeDatabase()


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff delays the queue asked for (it never really sleeps in these tests)."""
    return []


@pytest.fixture
async def queue(fake_db: FakeDatabase, sleeps: list[float]) -> Any:
    """An open OracleQueue on the fake database."""

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    settings = OracleSettings(ORACLE_USER="app", ORACLE_PASSWORD="secret", ORACLE_RETRIES=3)
    q = OracleQueue(
        settings, pool_factory=lambda s: FakePool(fake_db), sleep=sleep, monotonic=lambda: 0.0
    )
    await q.open()
    yield q
    await q.close()
    # Every path ends its transaction: each connection went back committed or rolled back
    # (the fake refuses a release with pending changes), or was dropped; no lock survives.
    assert all(c.released or c.dead for c in fake_db.connections)
    assert not fake_db.locks
