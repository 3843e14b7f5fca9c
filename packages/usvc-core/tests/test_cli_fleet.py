"""``usvc workers ls`` and ``usvc actions ls|pause|resume`` in process, against a real
in-memory queue on a fake clock: tables, JSON documents, exit codes, and the pause really
holding the action's jobs back from a claim."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from usvc_core.cli import ExitCode, run
from usvc_core.ports import EnqueueRequest, WorkerRecord
from usvc_core.settings import WorkerSettings
from usvc_testing import FakeClock
from usvc_testing.queues import InMemoryQueue

SERVICE = "svc"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("MICROSERVICE", "QUEUE_", "DEV_", "ORACLE_", "JOB_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUEUE_URL", "sqlite:///not-used.db")  # the factory ignores it


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 6, 4, 0, tzinfo=UTC))


@pytest.fixture
def queue(clock: FakeClock) -> InMemoryQueue:
    return InMemoryQueue(clock)


def usvc(queue: InMemoryQueue, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = run(["--service", SERVICE, *argv], queue_factory=lambda s: _same(queue, s))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _same(queue: InMemoryQueue, settings: WorkerSettings) -> InMemoryQueue:
    assert settings.MICROSERVICE_NAME == SERVICE
    return queue


def beat(queue: InMemoryQueue, worker_id: str, **fields: Any) -> None:
    record = WorkerRecord(
        worker_id=worker_id,
        microservice=SERVICE,
        host="box-1",
        pid=4242,
        version="1.0.0",
        started_at=datetime(2026, 12, 6, 3, 0, tzinfo=UTC),
        heartbeat_seconds=2.0,
        actions=("greet", "report"),
        concurrency=10,
        running=3,
    )
    values = {**{f: getattr(record, f) for f in record.__dataclass_fields__}, **fields}
    asyncio.run(queue.heartbeat_worker(WorkerRecord(**values)))


def test_workers_ls_shows_live_and_gone_workers(
    queue: InMemoryQueue, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = usvc(queue, capsys, "workers", "ls")
    assert (code, out.strip()) == (0, "no worker of svc recorded")
    beat(queue, "box-1:4242:aa")
    clock.advance(10)  # five heartbeats: gone
    beat(queue, "box-2:77:bb", host="box-2", pid=77)
    code, out = usvc(queue, capsys, "workers", "ls")
    assert code == 0
    header, _, titles, gone, live = out.splitlines()
    assert header == "service svc: 1 live, 1 gone"
    assert titles.split()[:3] == ["WORKER", "STATE", "HOST"]
    assert gone.split()[:4] == ["box-1:4242:aa", "gone", "box-1", "4242"]
    assert live.split()[:4] == ["box-2:77:bb", "live", "box-2", "77"]
    assert "3/10" in live
    assert "greet, report" in live
    code, out = usvc(queue, capsys, "workers", "ls", "--json")
    document = json.loads(out)
    assert [(w["worker_id"], w["gone"]) for w in document["workers"]] == [
        ("box-1:4242:aa", True),
        ("box-2:77:bb", False),
    ]
    assert document["workers"][1]["last_seen_at"] == "2026-12-06T04:00:10+00:00"


def test_actions_pause_holds_jobs_back_until_resume(
    queue: InMemoryQueue, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(queue.enqueue(EnqueueRequest({"action": "greet"}, SERVICE)))
    beat(queue, "box-1:4242:aa")
    code, out = usvc(queue, capsys, "actions", "pause", "greet")
    assert code == 0
    assert out.startswith("paused greet across every worker of svc")
    code, out = usvc(queue, capsys, "actions", "pause", "greet")
    assert (code, out.strip()) == (0, "greet was paused already")
    assert asyncio.run(queue.claim_and_start(SERVICE, "w", 10, 30)) == []
    code, out = usvc(queue, capsys, "stats")
    assert out.splitlines()[-1] == "paused: greet"
    code, out = usvc(queue, capsys, "stats", "--json")
    assert json.loads(out)["paused_actions"] == ["greet"]

    code, out = usvc(queue, capsys, "actions", "ls")
    assert code == 0
    titles, greet, report = out.splitlines()
    assert titles.split() == ["ACTION", "READY", "RUNNING", "PAUSED"]
    assert greet.split() == ["greet", "1", "0", "paused", "since", "2026-12-06", "04:00:00Z"]
    assert report.split() == ["report", "0", "0", "-"]
    code, out = usvc(queue, capsys, "actions", "ls", "--json")
    [greet_doc, _] = json.loads(out)["actions"]
    assert greet_doc["paused"] is True
    assert greet_doc["paused_at"] == "2026-12-06T04:00:00+00:00"
    assert (greet_doc["ready"], greet_doc["live_workers_handle_it"]) == (1, True)

    code, out = usvc(queue, capsys, "actions", "resume", "greet", "--json")
    assert code == 0
    assert json.loads(out) == {
        "service": SERVICE,
        "action": "greet",
        "paused": False,
        "changed": True,
    }
    code, out = usvc(queue, capsys, "actions", "resume", "greet")
    assert out.strip() == "greet was not paused"
    assert len(asyncio.run(queue.claim_and_start(SERVICE, "w", 10, 30))) == 1


def test_actions_and_workers_need_a_subcommand(
    queue: InMemoryQueue, capsys: pytest.CaptureFixture[str]
) -> None:
    assert usvc(queue, capsys, "actions")[0] == ExitCode.USAGE
    assert usvc(queue, capsys, "workers")[0] == ExitCode.USAGE
    code, out = usvc(queue, capsys, "actions", "pause")
    assert code == ExitCode.USAGE
    assert "action" in out
