"""The ``usvc`` command in process: argument values, one-line errors and exit codes, tables
and JSON documents, each command against a real in-memory queue.

The real executable, a real SQLite file and a real service are in tests/test_cli_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from argparse import ArgumentTypeError
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from usvc_core.cli import ExitCode, run
from usvc_core.cli.output import format_age, safe, table
from usvc_core.cli.values import (
    parse_data,
    parse_duration,
    parse_error_codes,
    parse_statuses,
    parse_when,
)
from usvc_core.errors import QueueUnavailableError
from usvc_core.jobs import ErrorCode, Job, JobStatus
from usvc_core.ports import EnqueueRequest
from usvc_core.settings import WorkerSettings
from usvc_testing.queues import InMemoryQueue as Queue

SERVICE = "svc"
JOB_KEYS = [
    "id",
    "microservice",
    "action",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "token",
    "idempotency_key",
    "unique_key",
    "run_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "runtime_ms",
    "lease_owner",
    "lease_expires_at",
    "cancel_requested",
    "error_code",
    "error_message",
    "payload",
    "payload_error",
    "results",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("MICROSERVICE", "QUEUE_", "DEV_", "ORACLE_", "JOB_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    (tmp_path / "src" / "actions").mkdir(parents=True)  # the service's actions: none


@pytest.fixture
def queue() -> Queue:
    return Queue()


class Cli:
    """Runs ``usvc`` in process against one queue; keeps what it printed."""

    def __init__(self, queue: Queue, capsys: pytest.CaptureFixture[str]) -> None:
        self.queue = queue
        self.capsys = capsys
        self.out = self.err = ""

    def __call__(self, *argv: str) -> int:
        code = run(["--service", SERVICE, *argv], queue_factory=self._factory)
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code

    def json(self, *argv: str) -> tuple[int, Any]:
        code = self(*argv, "--json")
        return code, json.loads(self.out)

    def _factory(self, settings: WorkerSettings) -> Queue:
        assert settings.MICROSERVICE_NAME == SERVICE
        return self.queue


@pytest.fixture
def cli(queue: Queue, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("QUEUE_URL", "sqlite:///not-used.db")  # the factory ignores it
    return Cli(queue, capsys)


def enqueue(queue: Queue, action: str = "greet", service: str = SERVICE, **data: Any) -> Job:
    return asyncio.run(
        queue.enqueue(EnqueueRequest({"action": action, **data}, microservice=service))
    )


def start(queue: Queue) -> list[Job]:
    return asyncio.run(queue.claim_and_start(SERVICE, "w1", 100, 30))


def fail(queue: Queue, job: Job, code: str = ErrorCode.HANDLER_ERROR, msg: str = "boom") -> None:
    asyncio.run(queue.fail(job, code, msg, 1.0))


def complete(queue: Queue, job: Job, results: Any = None) -> None:
    asyncio.run(queue.complete(job, results or {"ok": True}, 2.0))


def stored(queue: Queue, job_id: str) -> Job:
    job = asyncio.run(queue.get(job_id))
    assert job is not None
    return job


# --- argument values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("90", 90.0),
        ("1.5", 1.5),
        ("90s", 90.0),
        ("250ms", 0.25),
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("1H", 3600.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10x", "", "h", "1h 30m", "-5", "5s-", "nan", "inf", "1.h"])
def test_bad_durations_say_what_to_write(text: str) -> None:
    with pytest.raises(ArgumentTypeError, match="invalid duration") as info:
        parse_duration(text)
    assert "\n" not in str(info.value)


def test_times_are_utc_unless_an_offset_is_given() -> None:
    assert parse_when("2026-12-05") == datetime(2026, 12, 5, tzinfo=UTC)
    assert parse_when("2026-12-05T07:30:00Z") == datetime(2026, 12, 5, 7, 30, tzinfo=UTC)
    assert parse_when("2026-12-05T09:30+02:00") == datetime(2026, 12, 5, 7, 30, tzinfo=UTC)
    before = datetime.now(UTC)
    when = parse_when("2h")
    assert before - timedelta(hours=2) <= when <= datetime.now(UTC) - timedelta(hours=2)
    with pytest.raises(ArgumentTypeError, match="invalid time 'yesterday'"):
        parse_when("yesterday")


def test_statuses_and_error_codes_are_checked_in_any_case() -> None:
    assert parse_statuses("failed") == [JobStatus.FAILED]
    assert parse_statuses("Ready,ASSIGNED") == [JobStatus.READY, JobStatus.ASSIGNED]
    with pytest.raises(ArgumentTypeError, match="unknown status 'Done'; use one of: Ready"):
        parse_statuses("Done")
    assert parse_error_codes("timeout,cancelled") == ["TIMEOUT", "CANCELLED"]
    with pytest.raises(ArgumentTypeError, match="unknown error code 'OOPS'"):
        parse_error_codes("OOPS")


def test_data_is_a_json_object_from_text_a_file_or_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_data('{"name": "World"}') == {"name": "World"}
    (tmp_path / "in.json").write_text('{"n": 1}')
    assert parse_data(f"@{tmp_path / 'in.json'}") == {"n": 1}
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}'))
    assert parse_data("-") == {"from": "stdin"}
    with pytest.raises(ArgumentTypeError, match=r"not valid JSON \(Expecting"):
        parse_data("{name: World}")
    with pytest.raises(ArgumentTypeError, match=r"must be a JSON object .* not an array"):
        parse_data("[1, 2]")
    with pytest.raises(ArgumentTypeError, match="not null"):
        parse_data("null")
    with pytest.raises(ArgumentTypeError, match="cannot read"):
        parse_data("@missing.json")


def test_terminal_control_characters_are_shown_escaped() -> None:
    assert safe("plain é text") == "plain é text"
    assert safe("red \x1b[31m") == "red \\u001b[31m"
    assert safe("rtl \u202e x") == "rtl \\u202e x"
    assert safe("a\nb") == "a\\u000ab"
    assert safe("a\nb", newlines=True) == "a\nb"


def test_tables_align_columns_and_cut_long_cells() -> None:
    text = table(("A", "NUM", "LONG"), [("x", 5, "y" * 100), ("wide", 12, None)], right=(1,))
    lines = text.splitlines()
    assert lines[0] == "A     NUM  LONG"
    assert lines[1] == "x       5  " + "y" * 57 + "..."
    assert lines[2] == "wide   12  -"


def test_ages_read_naturally() -> None:
    assert [format_age(s) for s in (None, 0, 0.25, 42, 725, 12_000, 190_000)] == [
        "-",
        "0s",
        "250ms",
        "42s",
        "12m05s",
        "3h20m",
        "2d04h",
    ]


# --- usage and settings errors: one line, exit 2, never a traceback -----------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["enqueue", "greet", "--data", "{bad"], "argument --data: --data is not valid JSON"),
        (["enqueue", "greet", "--data", "[1]"], "must be a JSON object"),
        (["enqueue", "greet", "--data", '{"action": "other"}'], "--data has action 'other'"),
        (["enqueue", "greet", "--timeout", "5"], "--timeout goes with --wait"),
        (["enqueue", "greet", "--wait", "--timeout", "0"], "must be more than zero"),
        (["enqueue", "greet", "--priority", "high"], "invalid priority 'high'"),
        (["enqueue", "greet", "--max-attempts", "0"], "from 1 to 1000"),
        (["enqueue"], "give the ACTION to run (or --jsonl FILE)"),
        (["jobs", "ls", "--status", "Done"], "unknown status 'Done'"),
        (["jobs", "ls", "--error-code", "nope"], "unknown error code 'nope'"),
        (["jobs", "ls", "--limit", "0"], "invalid limit 0"),
        (["jobs", "ls", "--since", "soon"], "invalid time 'soon'"),
        (["jobs", "ls", "--since", "1h", "--until", "2h"], "--since must be earlier"),
        (["jobs", "retry"], "give the ids of the jobs to retry, or --all-failed"),
        (["jobs", "retry", "x", "--all-failed"], "give job ids or --all-failed, not both"),
        (["jobs", "retry", "x", "--action", "greet"], "filters go with --all-failed"),
        (["jobs", "frobnicate"], "invalid choice: 'frobnicate'"),
        (["purge"], "the following arguments are required: --older-than"),
        (["purge", "--older-than", "10x"], "invalid duration '10x'"),
        (["stats", "--minutes", "0"], "between 1 and 1440"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(cli: Cli, argv: list[str], message: str) -> None:
    assert cli(*argv) == ExitCode.USAGE
    assert cli.out == ""
    assert cli.err.count("\n") == 1, cli.err
    assert message in cli.err
    assert "Traceback" not in cli.err


def test_a_bad_cursor_is_a_usage_error(cli: Cli) -> None:
    assert cli("jobs", "ls", "--cursor", "garbage!") == ExitCode.USAGE
    assert cli.err.startswith("usvc: error: invalid --cursor: ")
    assert cli.err.count("\n") == 1


def test_missing_service_name_says_where_settings_come_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["jobs", "ls"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "invalid settings: MICROSERVICE_NAME: Field required" in err
    assert "./.env" in err


def test_settings_come_from_dotenv_and_env_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def factory(settings: WorkerSettings) -> Queue:
        seen.append(f"{settings.MICROSERVICE_NAME} {settings.QUEUE_URL}")
        return Queue()

    (tmp_path / ".env").write_text("MICROSERVICE_NAME=dotenv-svc\nQUEUE_URL=sqlite:///a.db\n")
    (tmp_path / "other.env").write_text("MICROSERVICE_NAME=other-svc\nQUEUE_URL=sqlite:///b.db\n")
    assert run(["stats"], queue_factory=factory) == 0
    assert run(["stats", "--env-file", "other.env"], queue_factory=factory) == 0
    assert (
        run(["--service", "x", "stats", "--queue-url", "sqlite:///c.db"], queue_factory=factory)
        == 0
    )
    assert seen == ["dotenv-svc sqlite:///a.db", "other-svc sqlite:///b.db", "x sqlite:///c.db"]
    assert run(["stats", "--env-file", "missing.env"], queue_factory=factory) == ExitCode.USAGE
    assert "--env-file missing.env: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEV_MODE": "True"}, "the in-memory queue (DEV_MODE=True without QUEUE_URL"),
        ({"QUEUE_URL": "memory://"}, "lives inside the service's process"),
        ({"QUEUE_URL": "sqlite:///nowhere.db"}, "QUEUE_URL=sqlite:///nowhere.db: no queue file"),
        ({"QUEUE_URL": "redis://x"}, "no installed package provides the queue scheme 'redis'"),
        ({}, "ORACLE_USER and ORACLE_PASSWORD required"),
    ],
)
def test_queues_the_command_cannot_use_are_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run(["--service", SERVICE, "stats"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_unreachable_store_exits_3(cli: Cli) -> None:
    class Down(Queue):
        async def open(self) -> None:
            raise QueueUnavailableError("connection refused")

    cli.queue = Down()
    assert cli("stats") == ExitCode.UNAVAILABLE
    assert cli.err == "usvc: error: the job store failed: connection refused\n"


def test_help_and_version_exit_0(cli: Cli) -> None:
    assert cli("--help") == 0
    assert "exit codes:" in cli.out and "enqueue --wait: the job finished Failed" in cli.out
    assert cli("--version") == 0
    assert cli.out.startswith("usvc ")


# --- the commands ---------------------------------------------------------------------------


def test_jobs_ls_shows_a_table_and_filters(cli: Cli, queue: Queue) -> None:
    a = enqueue(queue, name="a")
    b = enqueue(queue, "sleep", ms=1)
    enqueue(queue, service="other")
    (started,) = [j for j in start(queue) if j.id == a.id]
    fail(queue, started, msg="it broke\nbadly")
    assert cli("jobs", "ls") == 0
    lines = cli.out.splitlines()
    assert lines[0].split() == ["ID", "ACTION", "STATUS", "ATTEMPTS", "CREATED", "ERROR"]
    assert [line.split()[:4] for line in lines[1:]] == [
        [b.id, "sleep", "Processing", "1/3"],
        [a.id, "greet", "Failed", "1/3"],
    ]
    assert lines[2].endswith("HANDLER_ERROR: it broke badly")
    assert cli("jobs", "ls", "--status", "failed") == 0
    assert [line.split()[0] for line in cli.out.splitlines()[1:]] == [a.id]
    assert cli("jobs", "ls", "--action", "sleep", "--action", "nope") == 0
    assert [line.split()[0] for line in cli.out.splitlines()[1:]] == [b.id]
    assert cli("jobs", "ls", "--error-code", "TIMEOUT") == 0
    assert cli.out == f"no jobs of {SERVICE} match\n"
    assert cli("jobs", "ls", "--since", "1h", "--until", "2999-01-01") == 0
    assert len(cli.out.splitlines()) == 3
    assert cli("jobs", "ls", "--until", "2000-01-01") == 0
    assert "no jobs" in cli.out


def test_jobs_ls_pages_through_every_job_once(cli: Cli, queue: Queue) -> None:
    ids = [enqueue(queue, n=i).id for i in range(7)]
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(10):
        code, doc = cli.json("jobs", "ls", "--limit", "3", *cursor)
        assert code == 0
        seen += [j["id"] for j in doc["jobs"]]
        if doc["next_cursor"] is None:
            break
        cursor = ["--cursor", doc["next_cursor"]]
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    assert cli("jobs", "ls", "--limit", "3") == 0
    assert cli.out.splitlines()[-1].startswith("next page: --cursor ")


def test_jobs_ls_json_has_stable_keys(cli: Cli, queue: Queue) -> None:
    enqueue(queue, name="x")
    code, doc = cli.json("jobs", "ls")
    assert code == 0
    assert list(doc) == ["service", "jobs", "next_cursor"]
    assert list(doc["jobs"][0]) == JOB_KEYS
    assert doc["jobs"][0]["payload"] == {"action": "greet", "name": "x"}
    datetime.fromisoformat(doc["jobs"][0]["created_at"])


def test_jobs_show_prints_payload_result_and_error(cli: Cli, queue: Queue) -> None:
    job = enqueue(queue, name="<script>\x1b[2J")
    (started,) = start(queue)
    complete(queue, started, {"message": "hi"})
    assert cli("jobs", "show", job.id) == 0
    assert f"id               {job.id}" in cli.out
    assert "status           Completed" in cli.out
    assert '"message": "hi"' in cli.out
    assert '"name": "<script>\\u001b[2J"' in cli.out and "\x1b" not in cli.out
    code, doc = cli.json("jobs", "show", job.id)
    assert code == 0 and list(doc) == ["job"]
    assert list(doc["job"]) == [*JOB_KEYS, "scheduled", "attempt_history"]
    assert doc["job"]["results"] == {"message": "hi"}
    assert doc["job"]["payload"]["name"] == "<script>\x1b[2J"
    assert cli("jobs", "show", "nope") == ExitCode.FAILED
    assert cli.out == "" and cli.err == "usvc: error: job nope not found\n"


def test_jobs_retry_by_id(cli: Cli, queue: Queue) -> None:
    a, b = enqueue(queue), enqueue(queue)
    for job in start(queue):
        if job.id == a.id:
            fail(queue, job)
    assert cli("jobs", "retry", a.id) == 0
    assert cli.out == "retried 1 job\n" and cli.err == ""
    again = stored(queue, a.id)
    assert (again.status, again.attempts, again.error_code) == (JobStatus.READY, 0, None)
    code, doc = cli.json("jobs", "retry", a.id, b.id, "ghost")
    assert code == ExitCode.FAILED
    assert doc == {
        "retried": 0,
        "skipped": [
            {"id": a.id, "reason": "Ready, not Failed"},
            {"id": b.id, "reason": "Processing, not Failed"},
            {"id": "ghost", "reason": "not found"},
        ],
    }
    assert f"usvc: not retried: {b.id} (Processing, not Failed)" in cli.err
    assert cli.err.endswith("usvc: error: 3 of the given jobs not retried\n")


def test_jobs_retry_all_failed_matching_filters(cli: Cli, queue: Queue) -> None:
    jobs = [enqueue(queue), enqueue(queue), enqueue(queue, "sleep")]
    running = {j.id: j for j in start(queue)}
    fail(queue, running[jobs[0].id], ErrorCode.TIMEOUT)
    fail(queue, running[jobs[1].id], ErrorCode.HANDLER_ERROR)
    fail(queue, running[jobs[2].id], ErrorCode.TIMEOUT)
    code, doc = cli.json(
        "jobs", "retry", "--all-failed", "--error-code", "timeout", "--action", "greet"
    )
    assert (code, doc) == (0, {"retried": 1, "skipped": []})
    assert [stored(queue, j.id).status for j in jobs] == [
        JobStatus.READY,
        JobStatus.FAILED,
        JobStatus.FAILED,
    ]
    assert cli("jobs", "retry", "--all-failed") == 0
    assert cli.out == "retried 2 jobs\n"
    assert cli("jobs", "retry", "--all-failed") == 0
    assert cli.out == "retried 0 jobs\n"


def test_jobs_cancel(cli: Cli, queue: Queue) -> None:
    running = enqueue(queue)
    start(queue)
    ready = enqueue(queue)
    assert cli("jobs", "cancel", ready.id) == 0
    assert cli.out == f"cancelled job {ready.id} (Ready -> Failed CANCELLED)\n"
    assert stored(queue, ready.id).error_code == ErrorCode.CANCELLED
    code, doc = cli.json("jobs", "cancel", running.id)
    assert code == 0
    (only,) = doc["jobs"]
    assert (only["outcome"], only["previous_status"]) == ("cancel_requested", "Processing")
    assert only["job"]["cancel_requested"] is True
    assert cli("jobs", "cancel", ready.id) == ExitCode.FAILED
    assert cli.out == ""
    assert cli.err == f"usvc: error: nothing to cancel: job {ready.id} is already Failed\n"
    other = enqueue(queue, service="billing")
    assert cli("jobs", "cancel", other.id) == ExitCode.FAILED
    assert f"belongs to service billing, not {SERVICE}; pass --service billing" in cli.err
    assert stored(queue, other.id).status is JobStatus.READY
    assert cli("jobs", "cancel", "ghost") == ExitCode.FAILED


def test_enqueue_adds_a_job_with_its_options(cli: Cli, queue: Queue) -> None:
    code, doc = cli.json(
        "enqueue", "greet", "--data", '{"name": "World"}', "--priority", "5",
        "--delay", "1h", "--idempotency-key", "k1", "--max-attempts", "7",
    )  # fmt: skip
    assert code == 0
    job = stored(queue, doc["job"]["id"])
    assert job.payload == {"action": "greet", "name": "World"}
    assert (job.microservice, job.priority, job.max_attempts) == (SERVICE, 5, 7)
    assert job.idempotency_key == "k1"
    assert job.run_at is not None and job.created_at is not None
    assert job.run_at - job.created_at >= timedelta(minutes=59)
    assert cli("enqueue", "greet", "--idempotency-key", "k1") == ExitCode.FAILED
    assert job.id in cli.err and cli.err.count("\n") == 1
    assert cli("enqueue", "greet") == 0
    assert cli.out.startswith("enqueued job ") and cli.out.endswith("(greet, Ready)\n")


def test_enqueue_uses_job_max_attempts_from_settings(
    cli: Cli, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_MAX_ATTEMPTS", "9")
    code, doc = cli.json("enqueue", "greet")
    assert code == 0 and doc["job"]["max_attempts"] == 9


def test_enqueue_wait_times_out_with_exit_5(cli: Cli, queue: Queue) -> None:
    code, doc = cli.json("enqueue", "greet", "--wait", "--timeout", "200ms")
    assert code == ExitCode.WAIT_TIMEOUT
    assert doc["job"]["status"] == "Ready"
    assert "did not finish within 200ms; it goes on: usvc jobs show" in cli.err


def test_stats(cli: Cli, queue: Queue) -> None:
    jobs = [enqueue(queue), enqueue(queue), enqueue(queue, "sleep")]
    running = {j.id: j for j in start(queue)}
    complete(queue, running[jobs[0].id])
    fail(queue, running[jobs[2].id])
    enqueue(queue)
    code, doc = cli.json("stats")
    assert code == 0
    assert doc["counts"] == {
        "Ready": 1, "Assigned": 0, "Processing": 1, "Completed": 1, "Failed": 1
    }  # fmt: skip
    assert doc["total"] == 4
    assert doc["actions"]["greet"]["counts"]["Completed"] == 1
    assert doc["actions"]["sleep"]["counts"]["Failed"] == 1
    assert doc["actions"]["sleep"]["oldest_ready_age_seconds"] is None
    assert doc["actions"]["greet"]["oldest_ready_age_seconds"] >= 0
    assert (doc["completed"], doc["failed"], doc["window_minutes"]) == (1, 1, 60)
    assert len(doc["per_minute"]) == 60
    assert cli("stats") == 0
    assert cli.out.startswith(f"service {SERVICE}: 4 jobs\n")
    assert "last 60 min: 1 completed, 1 failed" in cli.out
    header = next(line for line in cli.out.splitlines() if line.startswith("ACTION"))
    assert header.split() == [
        "ACTION", "READY", "ASSIGNED", "PROCESSING", "COMPLETED", "FAILED", "OLDEST", "READY"
    ]  # fmt: skip


def test_purge(cli: Cli, queue: Queue) -> None:
    jobs = [enqueue(queue), enqueue(queue)]
    running = {j.id: j for j in start(queue)}
    complete(queue, running[jobs[0].id])
    enqueue(queue)
    assert cli("purge", "--older-than", "1h") == 0
    assert cli.out == f"purged 0 finished jobs of {SERVICE} older than 1h00m\n"
    code, doc = cli.json("purge", "--older-than", "0")
    assert (code, doc) == (0, {"service": SERVICE, "purged": 1, "older_than_seconds": 0.0})
    assert asyncio.run(queue.get(jobs[0].id)) is None
    assert stored(queue, jobs[1].id).status is JobStatus.PROCESSING


class WorkingQueue(Queue):
    """Runs each Ready job the first time anyone looks at it: a worker, in the same loop."""

    def __init__(self, outcome: str) -> None:
        super().__init__()
        self.outcome = outcome

    async def get(self, job_id: str) -> Job | None:
        for job in await self.claim_and_start(SERVICE, "w", 10, 30):
            if self.outcome == "complete":
                await self.complete(job, {"message": f"Hello, {job.payload['name']}!"}, 1.0)
            else:
                await self.fail(job, ErrorCode.HANDLER_ERROR, "it broke", 1.0)
        return await super().get(job_id)


def test_enqueue_wait_prints_the_result(cli: Cli) -> None:
    cli.queue = WorkingQueue("complete")
    assert cli("enqueue", "greet", "--data", '{"name": "World"}', "--wait") == 0
    first, *rest = cli.out.splitlines()
    assert first.startswith("job dev-1 Completed in 1.0 ms")
    assert json.loads("\n".join(rest)) == {"message": "Hello, World!"}
    code, doc = cli.json("enqueue", "greet", "--data", '{"name": "Ann"}', "--wait")
    assert code == 0 and doc["job"]["results"] == {"message": "Hello, Ann!"}


def test_enqueue_wait_on_a_failed_job_exits_4(cli: Cli) -> None:
    cli.queue = WorkingQueue("fail")
    assert cli("enqueue", "greet", "--data", '{"name": "World"}', "--wait") == ExitCode.JOB_FAILED
    assert cli.out == "job dev-1 Failed in 1.0 ms\n"
    assert cli.err == "usvc: error: job dev-1 failed: HANDLER_ERROR: it broke\n"
    code, doc = cli.json("enqueue", "greet", "--data", '{"name": "x"}', "--wait")
    assert code == ExitCode.JOB_FAILED and doc["job"]["error_code"] == "HANDLER_ERROR"


def test_unexpected_errors_are_one_line_too(cli: Cli) -> None:
    class Broken(Queue):
        async def stats(self, microservice: str) -> Any:
            raise RuntimeError("disk on fire\nsecond line")

    cli.queue = Broken()
    assert cli("stats") == ExitCode.FAILED
    assert cli.err == "usvc: error: unexpected RuntimeError: disk on fire second line\n"


def test_the_command_imports_no_adapter() -> None:
    """The CLI finds its queue through the plugin loader, never by importing an adapter."""
    import subprocess
    import sys

    code = (
        "import sys, usvc_core.cli, usvc_core.cli.main\n"
        "bad = [m for m in ('usvc_http','usvc_oracle','usvc_mongo','usvc_testing','fastapi',"
        "'oracledb','pymongo','sqlite3','httpx') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- issue 19 items 3, 7 and 15: bounds, one max_attempts default, conveniences ----------


def _write_action(root: Path, name: str, decorator: str) -> None:
    folder = root / "src" / "actions" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(
        "from usvc_core import action\n\n\n"
        f"@{decorator}\n"
        "async def handle() -> None:\n"
        "    return None\n"
    )


def test_enqueue_uses_the_actions_own_max_attempts_like_the_api(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default is the action's own ``@action(max_attempts=...)``, else JOB_MAX_ATTEMPTS:
    the rule ``Application.enqueue`` (and so the HTTP API) follows."""
    _write_action(tmp_path, "report", '@action("report", max_attempts=7)'[1:])
    _write_action(tmp_path, "plain", 'action("plain")')
    monkeypatch.setenv("JOB_MAX_ATTEMPTS", "4")
    code, doc = cli.json("enqueue", "report")
    assert (code, doc["job"]["max_attempts"]) == (0, 7)
    assert cli.err == ""
    code, doc = cli.json("enqueue", "plain")
    assert (code, doc["job"]["max_attempts"]) == (0, 4)
    code, doc = cli.json("enqueue", "report", "--max-attempts", "2")
    assert (code, doc["job"]["max_attempts"]) == (0, 2)


def test_enqueue_away_from_the_service_says_which_default_it_used(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "src" / "actions").rmdir()
    code, doc = cli.json("enqueue", "report")
    assert (code, doc["job"]["max_attempts"]) == (0, 3)
    assert "no src/actions here" in cli.err and "JOB_MAX_ATTEMPTS used" in cli.err
    elsewhere = tmp_path / "svc" / "src" / "actions"
    _write_action(tmp_path / "svc", "report", 'action("report", max_attempts=9)')
    code, doc = cli.json("enqueue", "report", "--actions-dir", str(elsewhere))
    assert (code, doc["job"]["max_attempts"]) == (0, 9)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--priority", str(10**20)], "invalid priority 100000000000000000000: must be"),
        (["--priority", "-" + "9" * 12], "invalid priority"),
        (["--priority", "1" * 5000], "invalid priority"),
        (["--delay", "4000d"], "invalid delay 345600000.0: must be a number from 0 to"),
        (["--delay", "1e300"], "at most 100 years"),
        (["--delay", "inf"], "invalid duration 'inf'"),
        (["--delay", "-5m"], "a duration cannot be negative"),
        (["--max-attempts", "1001"], "must be a whole number from 1 to 1000"),
    ],
)
def test_enqueue_numbers_out_of_bounds_exit_2_naming_the_option(
    cli: Cli, queue: Queue, argv: list[str], message: str
) -> None:
    assert cli("enqueue", "greet", *argv) == ExitCode.USAGE
    assert message in cli.err and cli.err.count("\n") == 1
    assert "Traceback" not in cli.err and "OverflowError" not in cli.err
    assert asyncio.run(queue.stats(SERVICE)).counts.get(JobStatus.READY, 0) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["purge", "--older-than", "-7d"],
        ["purge", "--older-than", "-5"],
        ["jobs", "ls", "--since", "-2h"],
        ["enqueue", "greet", "--wait", "--timeout", "-1s"],
    ],
)
def test_negative_durations_get_a_clear_message(cli: Cli, argv: list[str]) -> None:
    assert cli(*argv) == ExitCode.USAGE
    assert "cannot be negative" in cli.err, cli.err
    assert "expected one argument" not in cli.err


def test_jobs_cancel_takes_several_ids(cli: Cli, queue: Queue) -> None:
    first, second = enqueue(queue), enqueue(queue)
    assert cli("jobs", "cancel", first.id, second.id) == 0
    assert cli.out.splitlines() == [
        f"cancelled job {first.id} (Ready -> Failed CANCELLED)",
        f"cancelled job {second.id} (Ready -> Failed CANCELLED)",
    ]
    third = enqueue(queue)
    code, doc = cli.json("jobs", "cancel", third.id, first.id, "ghost")
    assert code == ExitCode.FAILED
    assert [j["outcome"] for j in doc["jobs"]] == [
        "cancelled",
        "already_finished",
        "not_cancelled",
    ]
    assert stored(queue, third.id).error_code == ErrorCode.CANCELLED
    assert "usvc: error: 2 of 3 jobs not cancelled" in cli.err
    assert f"not cancelled: nothing to cancel: job {first.id} is already Failed" in cli.err
    assert "not cancelled: job ghost not found" in cli.err


def test_retry_all_failed_leaves_cancelled_jobs_unless_asked(cli: Cli, queue: Queue) -> None:
    broken, stopped = enqueue(queue), enqueue(queue)
    asyncio.run(queue.cancel(SERVICE, stopped.id))
    fail(queue, start(queue)[0])
    assert stored(queue, broken.id).status is JobStatus.FAILED

    code, doc = cli.json("jobs", "retry", "--all-failed", "--dry-run")
    assert (code, doc) == (0, {"would_retry": 1, "skipped": [], "dry_run": True})
    assert stored(queue, broken.id).status is JobStatus.FAILED  # dry run: nothing changed
    assert cli("jobs", "retry", "--all-failed", "--include-cancelled", "--dry-run") == 0
    assert cli.out == "would retry 2 jobs (dry run: nothing changed)\n"

    assert cli("jobs", "retry", "--all-failed") == 0
    assert cli.out == "retried 1 job\n"
    assert stored(queue, broken.id).status is JobStatus.READY
    assert stored(queue, stopped.id).status is JobStatus.FAILED
    assert cli("jobs", "retry", "--all-failed", "--include-cancelled") == 0
    assert stored(queue, stopped.id).status is JobStatus.READY
    assert cli("jobs", "retry", "x", "--include-cancelled") == ExitCode.USAGE


def test_purge_dry_run_counts_and_deletes_nothing(cli: Cli, queue: Queue) -> None:
    done = enqueue(queue)
    fail(queue, start(queue)[0])
    enqueue(queue)  # Ready: never purged
    code, doc = cli.json("purge", "--older-than", "0", "--dry-run")
    assert code == 0
    assert doc == {
        "service": SERVICE,
        "would_purge": 1,
        "dry_run": True,
        "older_than_seconds": 0.0,
    }
    assert stored(queue, done.id).status is JobStatus.FAILED
    assert cli("purge", "--older-than", "1h", "--dry-run") == 0
    assert (
        cli.out
        == f"would purge 0 finished jobs of {SERVICE} older than 1h00m (dry run: nothing deleted)\n"
    )
    assert cli("purge", "--older-than", "0") == 0
    assert asyncio.run(queue.get(done.id)) is None


class BatchQueue(Queue):
    """Counts the batches and the single enqueues it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def enqueue_many(self, requests: Any) -> list[Job]:
        self.batches.append(len(requests))
        return await super().enqueue_many(requests)


def test_enqueue_jsonl_from_stdin_is_one_batch(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import io

    _write_action(tmp_path, "report", 'action("report", max_attempts=6)')
    batch = BatchQueue()
    cli.queue = batch
    lines = '{"action": "greet", "name": "A"}\n\n{"action": "report"}\n{"action": "greet"}\n'
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    code, doc = cli.json("enqueue", "--jsonl", "-", "--priority", "3")
    assert code == 0, cli.err
    assert batch.batches == [3]
    assert [j["action"] for j in doc["jobs"]] == ["greet", "report", "greet"]
    assert [j["max_attempts"] for j in doc["jobs"]] == [3, 6, 3]
    assert {j["priority"] for j in doc["jobs"]} == {3}

    # ACTION given: lines are inputs of that action; a wrong line enqueues nothing.
    monkeypatch.setattr("sys.stdin", io.StringIO('{"name": "B"}\n{"name": "C"}\n'))
    assert cli("enqueue", "greet", "--jsonl", "-") == 0
    assert cli.out.splitlines()[-1] == "enqueued 2 jobs"
    monkeypatch.setattr("sys.stdin", io.StringIO('{"name": "D"}\n[1]\n'))
    assert cli("enqueue", "greet", "--jsonl", "-") == ExitCode.USAGE
    assert "stdin line 2 must be a JSON object" in cli.err
    monkeypatch.setattr("sys.stdin", io.StringIO('{"name": "E"}\n'))
    assert cli("enqueue", "--jsonl", "-") == ExitCode.USAGE
    assert "stdin line 1 names no action" in cli.err
    assert batch.batches == [3, 2]


@pytest.mark.parametrize(
    "argv",
    [
        ["purge", "--older-than", "1e308"],
        ["purge", "--older-than", "1e308", "--dry-run"],
        ["jobs", "ls", "--since", "1e308"],
        ["jobs", "retry", "--all-failed", "--until", "99999999999d"],
        ["enqueue", "greet", "--wait", "--timeout", "1e300"],
    ],
)
def test_huge_durations_are_a_usage_error_not_an_overflow(cli: Cli, argv: list[str]) -> None:
    assert cli(*argv) == ExitCode.USAGE
    assert "at most 100 years" in cli.err and cli.err.count("\n") == 1
    assert "Overflow" not in cli.err


def test_times_past_the_calendar_are_a_usage_error(cli: Cli) -> None:
    assert cli("jobs", "ls", "--until", "9999-12-31T23:00:00-05:00") == ExitCode.USAGE
    assert "out of range" in cli.err and "Overflow" not in cli.err


# --- store: attempts in `jobs show`, scheduled jobs in `stats` (issues 19.9, 21.1-2) -----------


def test_jobs_show_lists_every_attempt(cli: Cli, queue: Queue) -> None:
    request = EnqueueRequest({"action": "greet"}, microservice=SERVICE, max_attempts=3)
    job = asyncio.run(queue.enqueue(request))
    (first,) = start(queue)
    asyncio.run(queue.retry(first, "TIMEOUT", "too slow", 0.0, 1.0))
    (second,) = start(queue)
    fail(queue, second, msg="boom again")
    assert cli("jobs", "show", job.id) == 0
    rows = cli.out.split("attempts:\n")[1].splitlines()
    assert rows[0].split() == ["#", "WORKER", "STARTED", "ENDED", "OUTCOME", "ERROR"]
    assert rows[1].split()[0:2] == ["1", "w1"] and "retried" in rows[1]
    assert "TIMEOUT: too slow" in rows[1]
    assert "failed" in rows[2] and "HANDLER_ERROR: boom again" in rows[2]
    code, doc = cli.json("jobs", "show", job.id)
    assert [a["outcome"] for a in doc["job"]["attempt_history"]] == ["retried", "failed"]


def test_stats_tell_scheduled_jobs_from_waiting_ones(cli: Cli, queue: Queue) -> None:
    asyncio.run(
        queue.enqueue(EnqueueRequest({"action": "greet"}, microservice=SERVICE, delay_seconds=3600))
    )
    code, doc = cli.json("stats")
    assert code == 0
    assert (doc["counts"]["Ready"], doc["scheduled"]) == (1, 1)
    assert doc["oldest_ready_age_seconds"] is None
    assert doc["actions"]["greet"]["scheduled"] == 1
    assert cli("stats") == 0
    assert "scheduled for later: 1 of the Ready jobs" in cli.out


def test_jobs_ls_lists_scheduled_jobs_and_finds_error_text(cli: Cli, queue: Queue) -> None:
    later = asyncio.run(
        queue.enqueue(EnqueueRequest({"action": "greet"}, microservice=SERVICE, delay_seconds=60))
    )
    now = enqueue(queue)
    assert cli("jobs", "ls", "--scheduled") == 0
    assert later.id in cli.out and "Scheduled" in cli.out and f"\n{now.id} " not in cli.out
    (started,) = start(queue)
    fail(queue, started, msg="Connection REFUSED")
    code, doc = cli.json("jobs", "ls", "--error-text", "refused")
    assert code == 0 and [j["id"] for j in doc["jobs"]] == [now.id]
