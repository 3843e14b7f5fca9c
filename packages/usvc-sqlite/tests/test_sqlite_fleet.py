"""The SQLite queue's fleet statements read through the indexes made for them: the
gone-worker sweep (every half heartbeat, in every worker) and the paused-action lookup
(in every claim) never scan the jobs of the service."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from usvc_sqlite import fleet
from usvc_sqlite.schema import prepare

_WORKERS_BY_KEY = "SEARCH usvc_workers USING PRIMARY KEY (microservice=?)"


def _plan(conn: sqlite3.Connection, statement: str) -> str:
    params = [None] * statement.count("?")
    rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
    return " ; ".join(str(row[3]) for row in rows)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "plans.db", isolation_level=None)
    prepare(conn, "plans.db")
    yield conn
    conn.close()


@pytest.mark.parametrize(
    ("name", "uses"),
    [
        ("_ANY_GONE_OWNER", ["usvc_jobs_leased (microservice=?)", _WORKERS_BY_KEY]),
        ("_END_GONE_LEASES", ["usvc_jobs_leased (microservice=?)", _WORKERS_BY_KEY]),
        ("_PAUSED_NAMES", ["PRIMARY KEY (microservice=?)"]),
        ("_PAUSED", ["PRIMARY KEY (microservice=?)"]),
        ("_WORKERS", ["PRIMARY KEY (microservice=?)"]),
        ("_FORGET", ["PRIMARY KEY (microservice=?)"]),
    ],
)
def test_fleet_statements_use_their_indexes(
    conn: sqlite3.Connection, name: str, uses: list[str]
) -> None:
    plan = _plan(conn, getattr(fleet, name))
    for index in uses:
        assert index in plan, plan
    steps = [step.strip() for step in plan.split(";")]
    assert "SCAN usvc_jobs" not in steps, plan
    assert "usvc_jobs_created" not in plan, plan
