"""Fixtures of the PostgreSQL end-to-end tests: the session's server (shared with the
usvc-postgres package tests) and the helpers in packages/usvc-postgres/tests/pgserver.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parents[2] / "packages" / "usvc-postgres" / "tests")
)

from pgserver import PgServer, shared_server, skip_reason


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server started for this test session (fsync and synchronous_commit on)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with shared_server() as server:
        yield server
