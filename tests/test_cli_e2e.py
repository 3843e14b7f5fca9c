"""The installed ``usvc`` executable, run as a subprocess against a real SQLite queue file,
beside a real service working that queue."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from usvc_sqlite import SqliteQueue

from tests.conftest import DEV_SH_EXAMPLE, ROOT, ServiceProcess, free_port, wait_until

pytestmark = pytest.mark.slow

SERVICE = "e2e"


def usvc_executable() -> str:
    """The console script installed next to this interpreter (the workspace's venv)."""
    beside = Path(sys.executable).parent / "usvc"
    found = str(beside) if beside.exists() else shutil.which("usvc")
    assert found, "the usvc console script is not installed (uv sync)"
    return found


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def doc(self) -> Any:
        return json.loads(self.out)


class Usvc:
    """Runs ``usvc`` as an operator does: in a directory whose .env names the queue."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.exe = usvc_executable()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MICROSERVICE", "QUEUE_", "DEV_", "ORACLE_", "JOB_"))
        }

    def __call__(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
        proc = subprocess.run(
            [self.exe, *argv],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def json(self, *argv: str) -> Any:
        run = self(*argv, "--json")
        assert run.code == 0, run.err
        return run.doc


def create_queue_file(path: Path) -> None:
    """What a service's first start does: usvc refuses a queue file that does not exist."""

    async def create() -> None:
        queue = SqliteQueue(path)
        await queue.open()
        await queue.close()

    asyncio.run(create())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text(f"MICROSERVICE_NAME={SERVICE}\nQUEUE_URL=sqlite:///jobs.db\n")
    create_queue_file(tmp_path / "jobs.db")
    # As where the service runs: usvc enqueue reads its actions' own max_attempts there.
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "actions").symlink_to(ROOT / "tests" / "e2e_service" / "actions")
    return tmp_path


@pytest.fixture
def usvc(workdir: Path) -> Usvc:
    return Usvc(workdir)


def start_service(service: Callable[..., ServiceProcess], db: Path, **extra: str) -> ServiceProcess:
    svc = service(
        ROOT / "tests" / "e2e_service",
        {
            "MICROSERVICE_NAME": SERVICE,
            "QUEUE_URL": f"sqlite:///{db}",  # absolute: the service runs in its own directory
            "POLLING_INTERVAL_SECONDS": "0.1",
            "HTTP_PORT": str(free_port()),
            **extra,
        },
    )
    svc.wait_healthy()
    return svc


def test_operate_a_running_service(
    usvc: Usvc, workdir: Path, service: Callable[..., ServiceProcess]
) -> None:
    """enqueue --wait, ls, show, cancel a delayed job, retry it, stats and purge, against the
    SQLite file a real service works."""
    # A short lease: an operator's cancel reaches a running handler at the next renewal.
    start_service(service, workdir / "jobs.db", LEASE_SECONDS="1.5")

    # enqueue --wait: the service runs the job; --json is one document
    done = usvc.json("enqueue", "greet", "--data", '{"name": "World"}', "--wait")
    assert done["job"]["status"] == "Completed"
    assert done["job"]["results"] == {"message": "Hello, World!"}
    human = usvc("enqueue", "greet", "--data", '{"name": "Ann"}', "--wait", "--timeout", "30s")
    assert human.code == 0, human.err
    assert " Completed in " in human.out and '"message": "Hello, Ann!"' in human.out

    # a job that fails: exit 4, the error on one line
    bad = usvc("enqueue", "greet", "--data", '{"nom": "typo"}', "--wait")
    assert bad.code == 4, bad.err
    assert bad.err.startswith("usvc: error: job ") and "failed: VALIDATION_ERROR:" in bad.err
    assert bad.err.count("\n") == 1
    failed = usvc.json("jobs", "ls", "--status", "Failed")
    assert [j["error_code"] for j in failed["jobs"]] == ["VALIDATION_ERROR"]
    bad_id = failed["jobs"][0]["id"]
    table = usvc("jobs", "ls", "--status", "failed")
    assert table.code == 0
    assert table.out.splitlines()[0].split() == [
        "ID", "ACTION", "STATUS", "ATTEMPTS", "CREATED", "ERROR"
    ]  # fmt: skip
    assert bad_id in table.out and "VALIDATION_ERROR" in table.out

    # cancel a Ready job (delayed an hour), then retry it: the service runs it now
    later = usvc.json("enqueue", "greet", "--data", '{"name": "Later"}', "--delay", "1h")
    later_id = later["job"]["id"]
    assert later["job"]["status"] == "Ready"
    cancel = usvc("jobs", "cancel", later_id)
    assert cancel.code == 0, cancel.err
    assert cancel.out == f"cancelled job {later_id} (Ready -> Failed CANCELLED)\n"
    shown = usvc.json("jobs", "show", later_id)["job"]
    assert (shown["status"], shown["error_code"]) == ("Failed", "CANCELLED")
    again = usvc("jobs", "cancel", later_id)
    assert again.code == 1 and "nothing to cancel" in again.err
    retry = usvc("jobs", "retry", later_id)
    assert (retry.code, retry.out) == (0, "retried 1 job\n")

    def completed() -> bool:
        return bool(usvc.json("jobs", "show", later_id)["job"]["status"] == "Completed")

    wait_until(completed)
    assert usvc.json("jobs", "show", later_id)["job"]["results"] == {"message": "Hello, Later!"}

    # retry every Failed job matching a filter: it fails again the same way
    assert usvc.json("jobs", "retry", "--all-failed", "--error-code", "VALIDATION_ERROR") == {
        "retried": 1,
        "skipped": [],
    }
    wait_until(lambda: usvc.json("jobs", "show", bad_id)["job"]["status"] == "Failed")

    # a job that is Processing: its cancellation is requested, and its worker stops it
    usvc.json("enqueue", "sleep", "--data", '{"ms": 60000}', "--idempotency-key", "long")
    sleeping = wait_until(
        lambda: usvc.json("jobs", "ls", "--status", "Processing", "--action", "sleep")["jobs"]
    )
    dup = usvc("enqueue", "sleep", "--idempotency-key", "long")
    assert dup.code == 1 and sleeping[0]["id"] in dup.err
    requested = usvc.json("jobs", "cancel", sleeping[0]["id"])
    assert [j["outcome"] for j in requested["jobs"]] == ["cancel_requested"]

    def stopped() -> dict[str, Any] | None:
        job: dict[str, Any] = usvc.json("jobs", "show", sleeping[0]["id"])["job"]
        return job if job["status"] == "Failed" else None

    cancelled = wait_until(stopped)
    assert cancelled["error_code"] == "CANCELLED"
    assert "cancelled by an operator while it ran" in cancelled["error_message"]

    # stats: counts by status and action, last hour's throughput
    stats = usvc.json("stats")
    assert stats["counts"]["Completed"] == 3
    assert stats["actions"]["greet"]["counts"]["Completed"] == 3
    assert stats["completed"] == 3 and stats["failed"] >= 1
    text = usvc("stats")
    assert text.code == 0 and f"service {SERVICE}: " in text.out
    assert "last 60 min: 3 completed" in text.out

    # purge every finished job; the unfinished one stays
    purged = usvc.json("purge", "--older-than", "0s")
    assert purged["purged"] >= 4
    left = usvc.json("jobs", "ls")["jobs"]
    assert left == []
    assert usvc("jobs", "show", later_id).code == 1


@DEV_SH_EXAMPLE
def test_the_readme_walkthrough_on_the_example(
    tmp_path: Path, service: Callable[..., ServiceProcess]
) -> None:
    """README: the greeting example on a SQLite queue; usvc, run in the example's directory,
    reads its .env and runs a job through it."""
    db = tmp_path / "jobs.db"
    svc = service(
        ROOT,
        {"QUEUE_URL": f"sqlite:///{db}", "POLLING_INTERVAL_SECONDS": "0.2"},
        argv=["bash", str(ROOT / "scripts" / "dev.sh"), "example"],
    )
    svc.wait_healthy()
    usvc = Usvc(ROOT / "examples" / "greeting")  # its .env: MICROSERVICE_NAME=greeting-service
    run = usvc(
        "enqueue", "greet", "--data", '{"name": "World"}', "--wait",
        env={"QUEUE_URL": f"sqlite:///{db}"},
    )  # fmt: skip
    assert run.code == 0, run.err
    first, *rest = run.out.splitlines()
    assert re.fullmatch(r"job \d+ Completed in \d+\.\d ms", first), first
    assert json.loads("\n".join(rest)) == {"message": "Hello, World!"}


def test_paging_and_filters_on_a_real_file(usvc: Usvc, workdir: Path) -> None:
    """--limit/--cursor walk every job once, newest first; a cursor that is not one is a
    usage error."""
    ids = [
        usvc.json("enqueue", "greet", "--data", f'{{"name": "{i}"}}')["job"]["id"] for i in range(5)
    ]
    seen: list[str] = []
    cursor: list[str] = []
    while True:
        page = usvc.json("jobs", "ls", "--limit", "2", *cursor)
        seen += [j["id"] for j in page["jobs"]]
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert seen == ids[::-1]
    human = usvc("jobs", "ls", "--limit", "2")
    assert human.out.splitlines()[-1].startswith("next page: --cursor ")
    bad = usvc("jobs", "ls", "--cursor", "not-a-cursor")
    assert bad.code == 2 and bad.err.startswith("usvc: error: invalid --cursor")
    assert usvc.json("jobs", "ls", "--since", "2999-01-01")["jobs"] == []
    assert len(usvc.json("jobs", "ls", "--since", "1h", "--action", "greet")["jobs"]) == 5


def test_enqueue_wait_without_a_worker_times_out(usvc: Usvc, workdir: Path) -> None:
    run = usvc("enqueue", "greet", "--wait", "--timeout", "300ms", "--json")
    assert run.code == 5
    assert run.doc["job"]["status"] == "Ready"
    assert "did not finish within 300ms" in run.err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["enqueue", "greet", "--data", "{not json"], 2, "--data is not valid JSON"),
        (["enqueue", "greet", "--data", '"World"'], 2, "must be a JSON object"),
        (["jobs", "ls", "--status", "Broken"], 2, "unknown status 'Broken'"),
        (["purge", "--older-than", "10x"], 2, "invalid duration '10x'"),
        (["jobs", "ls", "--since", "last tuesday"], 2, "invalid time 'last tuesday'"),
        (["jobs", "show", "no-such-job"], 1, "job no-such-job not found"),
        (["jobs", "cancel", "no-such-job"], 1, "job no-such-job not found"),
        (["nope"], 2, "invalid choice: 'nope'"),
    ],
)
def test_bad_arguments_exit_codes(
    usvc: Usvc, workdir: Path, argv: list[str], code: int, message: str
) -> None:
    run = usvc(*argv)
    assert run.code == code
    assert run.out == ""
    assert run.err.count("\n") == 1 and message in run.err


def test_settings_and_store_errors(
    usvc: Usvc, workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Missing settings and missing or broken queue files exit 2; a store that cannot be
    reached exits 3; each says so on one line."""
    elsewhere = tmp_path_factory.mktemp("no-env")
    lost = Usvc(elsewhere)
    run = lost("stats")
    assert run.code == 2 and "MICROSERVICE_NAME: Field required" in run.err
    run = lost("stats", "--env-file", str(workdir / ".env"))
    assert run.code == 2 and "no queue file at" in run.err  # sqlite:///jobs.db read here
    run = lost("stats", "--service", SERVICE, env={"DEV_MODE": "True"})
    assert run.code == 2 and "the in-memory queue" in run.err
    (elsewhere / "text.db").write_text("not a database, just text\n" * 100)
    run = lost("stats", "--service", SERVICE, "--queue-url", "sqlite:///text.db")
    assert run.code == 2 and "is not an SQLite database file" in run.err
    assert run.err.count("\n") == 1

    # another process holds the file exclusively: the store is unavailable
    holder = sqlite3.connect(workdir / "jobs.db", isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        run = usvc("stats", "--queue-url", "sqlite:///jobs.db?busy_timeout=0.2")
    finally:
        holder.close()
    assert run.code == 3, run.err
    assert run.err.startswith("usvc: error: the job store failed: ") and "locked" in run.err
