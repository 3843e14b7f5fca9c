"""What the contract cannot say about the PostgreSQL queue: its settings and entry points,
its schema command, the plans of its hot and admin queries, LISTEN/NOTIFY wake-up, and
PgBouncer in transaction pooling (polling, no session state)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import entry_points
from typing import Any

import asyncpg
import pytest
from pgserver import PgBouncer, PgServer
from usvc_core.errors import ConfigurationError, QueueUnavailableError
from usvc_core.jobs import JobStatus
from usvc_core.plugins import queue_from_settings
from usvc_core.ports import EnqueueRequest, JobFilter
from usvc_core.settings import WorkerSettings
from usvc_postgres import ListenMode, PostgresQueue, PostgresSettings, postgres_queue_from_url
from usvc_postgres.cli import main as cli_main
from usvc_postgres.settings import parse_postgres_url
from usvc_postgres.wakeup import Listener

# One xdist worker for the module: its analysed table and its pgbouncer are built once.
pytestmark = pytest.mark.xdist_group("postgres_queue")


def _queue(url: str, **overrides: Any) -> PostgresQueue:
    return PostgresQueue(**{**parse_postgres_url(url), **overrides})


def _job(service: str, n: int = 0, **options: Any) -> EnqueueRequest:
    return EnqueueRequest(payload={"action": "echo", "n": n}, microservice=service, **options)


# --- settings and entry points ------------------------------------------------------------------


def test_a_url_gives_host_port_user_database_and_options() -> None:
    values = parse_postgres_url("postgresql://app@db.example:6432/jobs?table=q1&pgbouncer=true")
    assert values == {
        "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6432",
        "POSTGRES_USER": "app",
        "POSTGRES_DB": "jobs",
        "POSTGRES_TABLE": "q1",
        "POSTGRES_PGBOUNCER": "true",
    }
    assert parse_postgres_url("postgresql://") == {}


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://app:secret@db/jobs", "POSTGRES_PASSWORD"),
        ("postgresql://db/jobs?sslmode=require", "unknown option"),
        ("postgresql://db:notaport/jobs", "port"),
        ("postgresql://db/a/b", "one database"),
    ],
)
def test_a_bad_url_is_refused_saying_what_to_fix(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        parse_postgres_url(url)


def test_a_table_name_that_is_not_plain_is_refused() -> None:
    with pytest.raises(ValueError, match="plain table name"):
        PostgresSettings(POSTGRES_TABLE="jobs; DROP TABLE x")


def test_the_entry_points_build_the_queue_from_settings_alone() -> None:
    queues = {ep.name: ep for ep in entry_points(group="usvc.queues")}
    assert {"postgresql", "postgres"} <= set(queues)
    models = {ep.name: ep.load() for ep in entry_points(group="usvc.settings")}
    assert models["postgres"] is PostgresSettings
    worker = WorkerSettings(
        MICROSERVICE_NAME="svc",
        QUEUE_URL="postgresql://app@db:5433/jobs",
        POSTGRES_POOL_SIZE=3,  # type: ignore[call-arg]
    )
    queue = queue_from_settings(worker)
    assert isinstance(queue, PostgresQueue)
    s = queue.settings
    assert (s.POSTGRES_HOST, s.POSTGRES_PORT, s.POSTGRES_DB, s.POSTGRES_USER) == (
        "db",
        5433,
        "jobs",
        "app",
    )
    assert s.POSTGRES_POOL_SIZE == 3
    assert isinstance(postgres_queue_from_url("postgres://", worker), PostgresQueue)


async def test_an_unreachable_server_is_unavailable_not_a_crash() -> None:
    from pgserver import free_port

    queue = PostgresQueue(POSTGRES_HOST="127.0.0.1", POSTGRES_PORT=free_port())
    with pytest.raises(QueueUnavailableError, match="unavailable"):
        await queue.open()


# --- the schema command -------------------------------------------------------------------------


def test_ddl_apply_and_check(pg_server: PgServer) -> None:
    table = f"cli_{uuid.uuid4().hex[:8]}"
    args = ["--url", pg_server.url, "--table", table]
    out = io.StringIO()
    assert cli_main(["ddl", "--table", table], out) == 0
    assert f"CREATE TABLE IF NOT EXISTS {table}" in out.getvalue()
    out = io.StringIO()
    assert cli_main(["check", *args], out) == 1
    assert "does not exist" in out.getvalue()
    assert cli_main(["apply", *args], io.StringIO()) == 0
    assert cli_main(["apply", *args], io.StringIO()) == 0  # again: nothing to do
    out = io.StringIO()
    assert cli_main(["check", *args], out) == 0
    assert "ready for workers" in out.getvalue()


async def test_workers_that_may_not_create_the_schema_say_how_to_create_it(
    pg_server: PgServer,
) -> None:
    queue = _queue(pg_server.url, POSTGRES_TABLE="never_applied", POSTGRES_CREATE_SCHEMA=False)
    with pytest.raises(ConfigurationError, match="python -m usvc_postgres apply"):
        await queue.open()


# --- plans ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plans_table(pg_server: PgServer) -> str:
    """A table of 30,000 jobs over 30 services in every status, analysed."""
    table = f"plans_{uuid.uuid4().hex[:8]}"

    async def fill() -> None:
        queue = _queue(pg_server.url, POSTGRES_TABLE=table, POSTGRES_LISTEN="off")
        await queue.open()
        await queue.close()
        conn = await asyncpg.connect(pg_server.url)
        try:
            await conn.execute(
                f"""INSERT INTO {table} (microservice, action, payload, status, priority,
                    lease_token, lease_expires_at, finished_at, error_code)
                SELECT 'svc-' || (g % 30), 'act-' || (g % 7), '{{}}',
                    (ARRAY['Ready','Assigned','Processing','Completed','Completed',
                           'Completed','Failed'])[1 + g % 7],
                    g % 3, md5(g::text), now() + interval '1 minute',
                    CASE WHEN g % 7 >= 3 THEN now() END,
                    CASE WHEN g % 7 = 6 THEN 'HANDLER_ERROR' END
                FROM generate_series(1, 30000) g"""
            )
            await conn.execute(f"ANALYZE {table}")
        finally:
            await conn.close()

    asyncio.run(fill())
    return table


async def _plan(url: str, sql: str, *args: Any, analyze: bool = False) -> list[dict[str, Any]]:
    """Every node of the statement's plan (run, with its actual rows, when ``analyze``)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(f"EXPLAIN (ANALYZE {analyze}, FORMAT JSON) {sql}", *args)
    finally:
        await conn.close()
    nodes: list[dict[str, Any]] = []
    pending = [json.loads(rows[0][0])[0]["Plan"]]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(node.get("Plans", []))
    return nodes


@pytest.mark.parametrize(
    ("what", "index"),
    [
        ("claim", "ready"),
        ("due_of_action", "ready_action"),
        ("running_by_action", "owned"),
        ("reclaim", "owned"),
        ("purge", "finished"),
        ("list", "created"),
        ("list_failed", "failed"),
        ("oldest_due", "due"),
    ],
)
async def test_hot_and_admin_queries_read_their_index(
    pg_server: PgServer, plans_table: str, what: str, index: str
) -> None:
    """The plan names the index meant for the query, and no sequential scan of the table."""
    queue = _queue(pg_server.url, POSTGRES_TABLE=plans_table)
    sql = queue.sql
    cases: dict[str, tuple[str, tuple[Any, ...]]] = {
        "claim": (sql.claim(start=True), ("svc-1", "w", 30.0, 10)),
        "due_of_action": (sql.due_of_action, ("svc-1", "act-1", 10)),
        "running_by_action": (sql.running_by_action, ("svc-1", ["act-1"])),
        "reclaim": (sql.reclaim, ("svc-1",)),
        "purge": (sql.purge, ("svc-1", 3600.0, 5000)),
        "list": queue.list_jobs_sql(JobFilter(microservice="svc-1"), 50),
        "list_failed": queue.list_jobs_sql(
            JobFilter(microservice="svc-1", statuses=frozenset({JobStatus.FAILED})), 50
        ),
        "oldest_due": (sql.oldest_due, ("svc-1",)),
    }
    statement, args = cases[what]
    nodes = await _plan(pg_server.url, statement, *args)
    shown = [(n["Node Type"], n.get("Index Name") or n.get("Relation Name")) for n in nodes]
    assert any(n.get("Index Name") == f"{plans_table}_{index}" for n in nodes), shown
    assert not any(
        n["Node Type"] == "Seq Scan" and n.get("Relation Name") == plans_table for n in nodes
    ), shown


async def test_the_statistics_find_the_longest_waiting_job_with_one_seek_at_any_depth(
    pg_server: PgServer,
) -> None:
    """Every worker samples stats() every 15 s: at 20,000 Ready jobs its oldest-due read
    still reads one index entry (it read every Ready row), and the sample stays exact."""
    table = f"deep_{uuid.uuid4().hex[:8]}"
    queue = _queue(pg_server.url, POSTGRES_TABLE=table, POSTGRES_LISTEN="off")
    await queue.open()
    conn = await asyncpg.connect(pg_server.url)
    try:
        # Due jobs enqueued now and some an hour ago with a run_at older still (due from
        # their enqueue), and scheduled ones: the oldest due is the one enqueued an hour ago.
        await conn.execute(
            f"""INSERT INTO {table} (microservice, action, payload, created_at, run_at)
            SELECT 'svc', 'act', '{{}}', now() - CASE WHEN g % 1000 = 0 THEN interval '1 hour'
                ELSE interval '0' END,
                now() + CASE WHEN g % 100 = 1 THEN interval '1 hour'
                    WHEN g % 1000 = 0 THEN interval '-2 hours' ELSE interval '0' END
            FROM generate_series(1, 20000) g"""
        )
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    finally:
        await conn.close()
    try:
        nodes = await _plan(pg_server.url, queue.sql.oldest_due, "svc", analyze=True)
        stats = await queue.stats("svc")
    finally:
        await queue.close()
    scans = [n for n in nodes if n.get("Index Name") == f"{table}_due"]
    assert scans and scans[0]["Actual Rows"] == 1, nodes
    assert (stats.counts[JobStatus.READY], stats.scheduled) == (20000, 200)
    assert stats.oldest_ready_age_seconds is not None
    assert 3500 < stats.oldest_ready_age_seconds < 3700


# --- LISTEN/NOTIFY ------------------------------------------------------------------------------


@pytest.fixture
async def listening(pg_server: PgServer) -> AsyncIterator[PostgresQueue]:
    queue = _queue(pg_server.url, POSTGRES_LISTEN="on")
    await queue.open()
    yield queue
    await queue.close()


async def test_an_enqueue_by_another_process_wakes_the_listeners(
    pg_server: PgServer, listening: PostgresQueue
) -> None:
    """Another queue object (another process, another machine) enqueues; this one's
    listeners run, once the job is committed; a delayed job wakes nobody."""
    assert listening.listening
    woken = asyncio.Event()
    listening.on_enqueue(woken.set)
    service = f"wake-{uuid.uuid4().hex[:8]}"
    producer = _queue(pg_server.url, POSTGRES_LISTEN="off")
    await producer.open()
    try:
        await producer.enqueue(_job(service, delay_seconds=30))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(woken.wait(), 0.5)
        await producer.enqueue(_job(service))
        await asyncio.wait_for(woken.wait(), 5)
        woken.clear()
        await producer.enqueue_many([_job(service, 1), _job(service, 2)])
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await producer.close()


async def test_the_listener_comes_back_after_its_connection_is_killed(
    pg_server: PgServer, listening: PostgresQueue
) -> None:
    woken = asyncio.Event()
    listening.on_enqueue(woken.set)
    conn = await asyncpg.connect(pg_server.url)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        await asyncio.wait_for(woken.wait(), 10)  # woken once back (jobs may be waiting)
        woken.clear()
        async with asyncio.timeout(10):
            while not listening.listening:  # noqa: ASYNC110 (a property, no event to wait on)
                await asyncio.sleep(0.05)
        await conn.execute(
            "SELECT pg_notify($1, 'other-process some-service')", listening.sql.channel
        )
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await conn.close()


# --- PgBouncer in transaction pooling -------------------------------------------------------------


@pytest.fixture(scope="module")
def bouncer(pg_server: PgServer) -> Iterator[PgBouncer]:
    """Debian's pgbouncer in transaction pooling in front of the session's server."""
    if shutil.which("pgbouncer") is None:
        pytest.skip("no pgbouncer binary: run `bash scripts/install-postgres.sh` (Debian)")
    bouncer = PgBouncer(pg_server, pool_mode="transaction")
    bouncer.start()
    yield bouncer
    bouncer.stop()


async def test_behind_pgbouncer_listen_is_found_deaf_and_the_queue_polls(
    bouncer: PgBouncer,
) -> None:
    """LISTEN succeeds through a transaction pooler but nothing ever arrives: the probe
    says so, and the listener gives up (the worker polls)."""
    settings = PostgresSettings(**parse_postgres_url(bouncer.url), POSTGRES_LISTEN=ListenMode.AUTO)
    listener = Listener(settings, "usvc_jobs_due", lambda _: None, {})
    await listener.start()
    try:
        assert not listener.active
    finally:
        await listener.stop()


async def test_behind_pgbouncer_the_queue_works_without_session_state(
    bouncer: PgBouncer,
) -> None:
    """Every operation through transaction pooling: no prepared statement, no session
    setting, no LISTEN is relied on; a worker drains jobs by polling."""
    queue = _queue(bouncer.url, POSTGRES_PGBOUNCER=True, POSTGRES_POOL_SIZE=4)
    await queue.open()
    service = f"bouncer-{uuid.uuid4().hex[:8]}"
    try:
        assert not queue.listening
        jobs = await queue.enqueue_many([_job(service, n) for n in range(40)])
        await queue.enqueue(_job(service, 99, unique_key="slot:1"))
        limited = await queue.claim_and_start(service, "w1", 10, 30.0, max_running={"echo": 3})
        assert len(limited) == 3
        await asyncio.gather(*(queue.complete(job, {"ok": 1}, 1.0) for job in limited))
        while True:  # the same statements again and again: no prepared statement
            claimed = await queue.claim_and_start(service, "w1", 8, 30.0)
            if not claimed:
                break
            renewal = await queue.extend_leases(claimed, 30.0)
            assert not renewal.lost
            await asyncio.gather(*(queue.complete(job, {"ok": 1}, 1.0) for job in claimed))
        stats = await queue.stats(service)
        assert stats.counts[JobStatus.COMPLETED] == 41
        assert stats.counts[JobStatus.READY] == 0
        assert (await queue.get(jobs[0].id)) is not None
    finally:
        await queue.close()
