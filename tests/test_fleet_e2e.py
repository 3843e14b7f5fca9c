"""The fleet as an operator sees it, with the installed ``usvc`` executable beside two real
service processes on one SQLite file: ``usvc workers ls`` lists both from their heartbeats,
``usvc actions pause`` holds an action's jobs back in every process (and turns their health
YELLOW) until ``usvc actions resume``, a SIGKILLed worker turns gone and a stopped one
leaves."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServiceProcess, wait_until
from tests.test_cli_e2e import Usvc, start_service, usvc, workdir  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def _health(proc: ServiceProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{proc.url}/health", timeout=5).json()
    return body


def _status_is(proc: ServiceProcess, status: str) -> Callable[[], bool]:
    return lambda: _health(proc)["status"] == status


def test_workers_and_paused_actions_across_two_processes(
    usvc: Usvc,  # noqa: F811 - the fixture
    workdir: Path,  # noqa: F811 - the fixture
    service: Callable[..., ServiceProcess],
) -> None:
    db = workdir / "jobs.db"
    first, second = (start_service(service, db, SERVICE_VERSION="4.5.6") for _ in range(2))

    def listed() -> list[dict[str, Any]]:
        workers: list[dict[str, Any]] = usvc.json("workers", "ls")["workers"]
        return workers if len(workers) == 2 else []

    workers = wait_until(listed, 30)
    assert sorted(w["pid"] for w in workers) == sorted([first.proc.pid, second.proc.pid])
    assert {(w["version"], w["gone"]) for w in workers} == {("4.5.6", False)}
    assert all(w["actions"] == ["greet", "sleep"] for w in workers)

    paused = usvc("actions", "pause", "greet")
    assert paused.code == 0, paused.err
    ids = [
        usvc.json("enqueue", "greet", "--data", f'{{"name": "n{n}"}}')["job"]["id"]
        for n in range(4)
    ]
    done = usvc.json("enqueue", "sleep", "--data", '{"ms": 0}', "--wait")  # others still run
    assert done["job"]["status"] == "Completed"
    for proc in (first, second):  # every process says why, within a heartbeat or two
        wait_until(_status_is(proc, "YELLOW"), 15)
        assert "greet" in _health(proc)["checks"]["paused_actions"]["details"]["reason"]
    actions = {a["action"]: a for a in usvc.json("actions", "ls")["actions"]}
    assert (actions["greet"]["paused"], actions["greet"]["ready"]) == (True, 4)
    assert actions["sleep"]["paused"] is False

    def statuses() -> set[str]:
        return {usvc.json("jobs", "show", job_id)["job"]["status"] for job_id in ids}

    assert statuses() == {"Ready"}

    assert usvc("actions", "resume", "greet").code == 0
    wait_until(lambda: statuses() == {"Completed"}, 30)
    wait_until(_status_is(first, "GREEN"), 15)

    # A SIGKILLed worker turns gone; a stopped one removes its record.
    first.signal(signal.SIGKILL)
    first.wait(30)
    wait_until(
        lambda: (
            {w["pid"]: w["gone"] for w in usvc.json("workers", "ls")["workers"]}
            == {first.proc.pid: True, second.proc.pid: False}
        ),
        30,
    )
    text = usvc("workers", "ls")
    assert text.out.splitlines()[0] == "service e2e: 1 live, 1 gone"
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0
    assert [w["pid"] for w in usvc.json("workers", "ls")["workers"]] == [first.proc.pid]
