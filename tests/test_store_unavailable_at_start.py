"""A store that cannot be reached at start: the service stays up with ``job_queue`` RED,
serves ``/health`` (503), retries, exits 0 on SIGTERM, and runs jobs once the store answers.
Real subprocesses, real HTTP, a real SQLite file locked by another connection, and the real
oracledb driver against a closed port. Permanent mistakes still fail startup with one line."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from usvc_sqlite import SqliteQueue

from tests.conftest import ROOT, ServiceProcess, free_port, wait_until

SERVICE = ROOT / "tests" / "e2e_service"
RETRY_EVENT = "job queue unavailable; retrying to open it"


@pytest.fixture
def locked_queue_file(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A queue file with its schema, whose write lock another connection holds."""
    path = tmp_path / "jobs.db"

    async def create() -> None:
        queue = SqliteQueue(path)
        await queue.open()
        await queue.close()

    asyncio.run(create())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # what a long write of another process looks like
    try:
        yield path, holder
    finally:
        holder.close()


def health(svc: ServiceProcess) -> httpx.Response | None:
    if svc.proc.poll() is not None:
        raise AssertionError(f"service exited early:\n{svc.output()}")
    try:
        return httpx.get(f"{svc.url}/health", timeout=2)
    except httpx.HTTPError:
        return None


def wait_for_health(svc: ServiceProcess, code: int) -> dict[str, Any]:
    def reached() -> httpx.Response | None:
        response = health(svc)
        return response if response is not None and response.status_code == code else None

    body: dict[str, Any] = wait_until(reached, timeout=60).json()
    return body


def retry_lines(svc: ServiceProcess) -> list[dict[str, Any]]:
    return [e for e in svc.json_lines() if e.get("event") == RETRY_EVENT]


def sqlite_env(path: Path) -> dict[str, str]:
    return {
        "MICROSERVICE_NAME": "e2e",
        "DEV_MODE": "True",
        "QUEUE_URL": f"sqlite:///{path}?busy_timeout=0.2",
        "LOG_CONSOLE_JSON": "True",
    }


def test_locked_sqlite_file_at_start_then_sigterm(
    service: Callable[..., ServiceProcess], locked_queue_file: tuple[Path, sqlite3.Connection]
) -> None:
    """The file stays locked past busy_timeout: /health answers 503 with job_queue RED and
    the reason, every failed open is logged, and SIGTERM ends the process with 0."""
    path, _ = locked_queue_file
    svc = service(SERVICE, sqlite_env(path))
    body = wait_for_health(svc, 503)
    check = body["checks"]["job_queue"]
    assert (body["status"], check["status"]) == ("RED", "RED")
    assert "locked" in check["details"]["error"]
    wait_until(lambda: len(retry_lines(svc)) >= 2)
    attempts = [e["attempt"] for e in retry_lines(svc)]
    assert attempts == list(range(1, len(attempts) + 1))  # one line per failed attempt
    assert all("locked" in e["error"] for e in retry_lines(svc))
    svc.signal(signal.SIGTERM)
    assert svc.wait(30) == 0
    assert "worker started" not in [e.get("event") for e in svc.json_lines()]


def test_locked_sqlite_file_at_start_then_released_runs_jobs(
    service: Callable[..., ServiceProcess], locked_queue_file: tuple[Path, sqlite3.Connection]
) -> None:
    """Once the other connection lets go, the retry opens the queue, the worker starts,
    /health turns 200 and POST /dev/job runs a job."""
    path, holder = locked_queue_file
    svc = service(SERVICE, sqlite_env(path))
    wait_for_health(svc, 503)
    holder.execute("ROLLBACK")
    body = wait_for_health(svc, 200)
    assert body["checks"]["job_queue"]["status"] == "GREEN"
    r = httpx.post(f"{svc.url}/dev/job", json={"action": "greet", "name": "Ada"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["results"] == {"message": "Hello, Ada!"}
    events = [e.get("event") for e in svc.json_lines()]
    assert events.index(RETRY_EVENT) < events.index("job queue open; starting the worker")
    assert events.index("job queue open; starting the worker") < events.index("worker started")
    svc.signal(signal.SIGTERM)
    assert svc.wait(30) == 0


def oracle_env(**extra: str) -> dict[str, str]:
    return {
        "MICROSERVICE_NAME": "e2e",
        "DEV_MODE": "False",
        "ORACLE_DSN": f"127.0.0.1:{free_port()}/FREEPDB1",  # nothing listens there
        "ORACLE_USER": "app",
        "ORACLE_PASSWORD": "not-a-real-password",
        "ORACLE_CONNECT_TIMEOUT_SECONDS": "2",
        "ORACLE_RETRIES": "0",
        "LOG_CONSOLE_JSON": "True",
        **extra,
    }


def test_oracle_connection_refused_at_start(service: Callable[..., ServiceProcess]) -> None:
    """The real oracledb driver against a closed port: the service stays up, RED, retrying;
    SIGTERM -> 0."""
    svc = service(SERVICE, oracle_env())
    body = wait_for_health(svc, 503)
    check = body["checks"]["job_queue"]
    assert check["status"] == "RED"
    assert "cannot reach Oracle" in check["details"]["error"]
    assert "not-a-real-password" not in svc.output()
    wait_until(lambda: len(retry_lines(svc)) >= 2)
    svc.signal(signal.SIGTERM)
    assert svc.wait(30) == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (oracle_env(ORACLE_TABLE="JOBS; DROP TABLE X"), "ORACLE_TABLE"),
        ({"MICROSERVICE_NAME": "e2e", "QUEUE_URL": "sqlite:////no/such/dir/jobs.db"}, "/no/such"),
    ],
    ids=["hostile-oracle-table", "sqlite-missing-directory"],
)
def test_permanent_mistakes_still_fail_startup(
    service: Callable[..., ServiceProcess], env: dict[str, str], message: str
) -> None:
    """What retrying cannot fix ends the process with status 2 and one clear message."""
    svc = service(SERVICE, env)
    assert svc.wait(60) == 2
    out = svc.output()
    [line] = [line for line in out.splitlines() if line.startswith("usvc: ")]
    assert message in out
    assert RETRY_EVENT not in out
    assert line
