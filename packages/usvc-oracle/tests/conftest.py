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


#: Store contract tests (issue 21 item 1, issue 22 item 3's server-side rule) that the
#: Oracle queue does not pass yet: it keeps no per-attempt history (``Job.attempt_history``)
#: and rescues an unconfirmed claim_and_start job by its lost COMMIT (the client-side
#: give-back), not by a server-side "never confirmed" flag. Strict: they turn red the day
#: they pass, so the marker goes with the gap.
_NOT_YET_ON_ORACLE = {
    "test_a_claim_whose_reply_was_lost_gets_its_attempt_back",
    "test_a_job_that_kills_its_worker_before_confirming_cannot_loop",
    "test_every_attempt_keeps_its_worker_times_outcome_and_error",
    "test_the_attempt_history_keeps_the_last_attempts_only",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the store contract tests the Oracle queue does not pass yet (see above)."""
    for item in items:
        name = getattr(item, "originalname", item.name)
        if name in _NOT_YET_ON_ORACLE and "usvc-oracle" in str(item.path):
            item.add_marker(
                pytest.mark.xfail(
                    strict=True,
                    reason="not implemented on Oracle yet: per-attempt history and the "
                    "server-side never-started rescue (see the usvc-oracle README, Limits)",
                )
            )
