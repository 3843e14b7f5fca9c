"""Fixtures of the usvc-postgres tests: a real PostgreSQL server for the session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pgserver.py is shared with tests/postgres (whose conftest adds this directory too).
sys.path.insert(0, str(Path(__file__).parent))

from pgserver import PgServer, shared_server, skip_reason


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server started for this test session (fsync and synchronous_commit on)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with shared_server() as server:
        yield server
