"""Application: wiring from settings, lifecycle, enqueue/wait, startup failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from usvc_core import (
    ActionDiscoveryError,
    Application,
    ConfigurationError,
    JobStatus,
    MissingPackageError,
    NullMetrics,
    ServiceNotFoundError,
    ServiceProvider,
    ServiceStartError,
    Status,
    WorkerSettings,
    action,
)
from usvc_core.errors import QueueUnavailableError
from usvc_core.plugins import queue_from_settings
from usvc_core.surface_context import SurfaceContext
from usvc_testing import InMemoryQueue

HANDLER = """
from pydantic import BaseModel
from usvc_core import action

class In(BaseModel):
    name: str

@action("greet")
async def handle(input: In) -> dict:
    return {"message": f"Hello, {input.name}!"}
"""


def settings(**kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {
        "MICROSERVICE_NAME": "svc",
        "DEV_MODE": True,
        "HTTP_ENABLED": False,
        "POLLING_INTERVAL_SECONDS": 3600,
    }
    base.update(kw)
    return WorkerSettings(**base)


@pytest.fixture
def actions_dir(tmp_path: Path) -> Path:
    (tmp_path / "greet").mkdir()
    (tmp_path / "greet" / "handler.py").write_text(HANDLER)
    return tmp_path


async def test_enqueue_and_wait_for_result(actions_dir: Path) -> None:
    """A job enqueued through the app completes and wait_for_job returns it at once."""
    app = Application(actions_dir, settings=settings(), configure_logging=False)
    async with app:
        assert isinstance(app.queue, InMemoryQueue)
        job = await app.enqueue({"action": "greet", "name": "World"})
        done = await app.wait_for_job(job.id, 10)
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.results == {"message": "Hello, World!"}
        assert app.health.snapshot().checks["job_queue"].status is Status.GREEN
        assert done.max_attempts == 3


def test_the_stats_count_limit_comes_from_the_settings(actions_dir: Path) -> None:
    """QUEUE_STATS_COUNT_LIMIT bounds the worker's statistics sample; 0 counts exactly."""
    limit = Application(actions_dir, settings=settings(), configure_logging=False)
    assert limit._worker_config().stats_count_limit == 10_000
    given = settings(QUEUE_STATS_COUNT_LIMIT=500)
    app = Application(actions_dir, settings=given, configure_logging=False)
    assert app._worker_config().stats_count_limit == 500
    exact = settings(QUEUE_STATS_COUNT_LIMIT=0)
    app = Application(actions_dir, settings=exact, configure_logging=False)
    assert app._worker_config().stats_count_limit is None


async def test_wait_times_out_with_the_unfinished_job(actions_dir: Path) -> None:
    """wait_for_job returns the job as it is when it does not finish in time."""
    app = Application(actions_dir, settings=settings(), configure_logging=False)
    async with app:
        job = await app.enqueue({"action": "greet", "name": "x"}, delay_seconds=3600)
        got = await app.wait_for_job(job.id, 0.05)
        assert got is not None and got.status is JobStatus.READY
        assert await app.wait_for_job("dev-999", 0.05) is None


class Greeter(ServiceProvider):
    async def initialize(self) -> None:
        self.word = "Hi"


@action("hi")
async def hi(greeter: Greeter) -> dict[str, str]:
    return {"said": greeter.word}


class Missing(ServiceProvider):
    pass


@action("needs")
async def needs(m: Missing) -> None:
    return None


async def test_explicit_actions_and_services(tmp_path: Path) -> None:
    """add_action and register_service work without discovery; services are injected."""
    app = Application(tmp_path, settings=settings(), configure_logging=False)
    app.add_action(hi)
    app.register_service(Greeter)
    async with app:
        job = await app.enqueue({"action": "hi"})
        done = await app.wait_for_job(job.id, 10)
        assert done is not None and done.results == {"said": "Hi"}


async def test_missing_service_fails_startup(tmp_path: Path) -> None:
    """A handler needing an unregistered service stops the start, not the first job."""
    app = Application(tmp_path, settings=settings(), configure_logging=False)
    app.add_action(needs)
    with pytest.raises(ServiceNotFoundError, match="register_service"):
        await app.start()


async def test_failing_service_stops_startup_and_closes_queue(tmp_path: Path) -> None:
    """A service whose initialize fails aborts the start and closes the queue."""

    class Bad(ServiceProvider):
        async def initialize(self) -> None:
            raise RuntimeError("nope")

    queue = InMemoryQueue()
    app = Application(tmp_path, settings=settings(), queue=queue, configure_logging=False)
    app.register_service(Bad)
    with pytest.raises(ServiceStartError):
        await app.start()
    assert queue.closed


async def test_missing_actions_dir(tmp_path: Path) -> None:
    """An explicit actions_dir that does not exist is a clear error."""
    app = Application(tmp_path / "nope", settings=settings(), configure_logging=False)
    with pytest.raises(ActionDiscoveryError, match="is not a directory"):
        await app.start()


def test_queue_adapters_are_found_by_scheme(tmp_path: Path) -> None:
    """memory:// resolves through the entry point; a missing adapter names its package."""
    app = Application(tmp_path, settings=settings(QUEUE_URL="memory://"))
    assert isinstance(app.queue, InMemoryQueue)
    assert isinstance(Application(settings=settings()).metrics, object)
    assert not isinstance(Application(settings=settings(), metrics=NullMetrics()).metrics, str)


def test_mongo_uri_without_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MONGODB_URI set while usvc-mongo is absent fails naming the package."""
    import usvc_core.app as app_module

    monkeypatch.setattr(app_module, "named_entry_points", lambda group: {})
    app = Application(tmp_path, settings=settings(MONGODB_URI="mongodb://h/"))
    with pytest.raises(MissingPackageError, match="uv add usvc-mongo"):
        app._surface_factories_from_settings()


def test_run_reports_configuration_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """run() prints a configuration mistake as one message and exits with status 2."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MICROSERVICE_NAME", raising=False)
    with pytest.raises(SystemExit) as info:
        Application().run()
    assert info.value.code == 2
    assert "MICROSERVICE_NAME: Field required" in capsys.readouterr().err


async def test_double_start_and_stop(actions_dir: Path) -> None:
    """Starting twice is refused; stopping twice is harmless."""
    app = Application(actions_dir, settings=settings(), configure_logging=False)
    await app.start()
    with pytest.raises(Exception, match="already started"):
        await app.start()
    await app.stop()
    await app.stop()


def test_bad_queue_url_is_a_configuration_error() -> None:
    """An unknown scheme reaching the app is reported as a configuration error."""
    s = settings()
    object.__setattr__(s, "QUEUE_URL", "redis://x")
    with pytest.raises(ConfigurationError, match="no installed package provides the queue scheme"):
        _ = Application(settings=s).queue


# --- a store unreachable at start (issue 13 item 8) -------------------------------------------


class FlakyOpenQueue(InMemoryQueue):
    """An in-memory queue whose first ``unavailable`` opens fail as a store that cannot be
    reached; then ``later`` (if any) is raised once; then it opens."""

    def __init__(self, unavailable: int, later: Exception | None = None) -> None:
        super().__init__()
        self.unavailable = unavailable
        self.later = later
        self.opens = 0
        self.closes = 0

    async def open(self) -> None:
        self.opens += 1
        if self.opens <= self.unavailable:
            raise QueueUnavailableError(f"connection refused (attempt {self.opens})")
        if self.later is not None:
            raise self.later
        await super().open()

    async def close(self) -> None:
        self.closes += 1
        await super().close()


async def wait_for(condition: Any, seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def test_unreachable_store_at_start_keeps_the_service_up(actions_dir: Path) -> None:
    """open() raising QueueUnavailableError: the app starts with job_queue RED (the reason in
    its details, each failed attempt logged), enqueue says the queue is not open, open() is
    retried, and once it succeeds the worker runs jobs."""
    queue = FlakyOpenQueue(unavailable=2)
    app = Application(actions_dir, settings=settings(), queue=queue, configure_logging=False)
    with capture_logs() as logs:
        async with app:
            check = app.health.get("job_queue")
            assert check is not None and check.status is Status.RED
            assert "connection refused (attempt 1)" in check.details["error"]
            with pytest.raises(QueueUnavailableError, match="not open yet"):
                await app.enqueue({"action": "greet", "name": "x"})
            await wait_for(lambda: queue.opens >= 3 and app.health.aggregate() is Status.GREEN)
            job = await app.enqueue({"action": "greet", "name": "Ada"})
            done = await app.wait_for_job(job.id, timeout=30)
            assert done is not None and done.results == {"message": "Hello, Ada!"}
    failures = [e for e in logs if e["event"] == "job queue unavailable; retrying to open it"]
    assert [e["attempt"] for e in failures] == [1, 2]
    assert all("connection refused" in e["error"] for e in failures)
    assert any(e["event"] == "job queue open; starting the worker" for e in logs)


async def test_stop_while_the_store_is_unreachable(actions_dir: Path) -> None:
    """Stopping while open() keeps failing returns at once; the worker never ran."""
    queue = FlakyOpenQueue(unavailable=10**9)
    app = Application(actions_dir, settings=settings(), queue=queue, configure_logging=False)
    with capture_logs() as logs:
        await app.start()
        await wait_for(lambda: queue.opens >= 2)
        app.request_stop()
        async with asyncio.timeout(10):
            await app.stop()
    assert not any(e["event"] == "worker started" for e in logs)


async def test_a_permanent_error_at_start_fails_startup(actions_dir: Path) -> None:
    """Bad credentials or a missing table (a ConfigurationError) still fail the start."""
    queue = FlakyOpenQueue(unavailable=0, later=ConfigurationError("ORA-01017: bad login"))
    app = Application(actions_dir, settings=settings(), queue=queue, configure_logging=False)
    with pytest.raises(ConfigurationError, match="ORA-01017"):
        await app.start()
    assert queue.opens == 1  # not retried


async def test_a_permanent_error_on_a_later_attempt_ends_serve(actions_dir: Path) -> None:
    """Unreachable first, then a permanent error: serve() ends with that error (run() prints
    it and exits 2), after logging it."""
    queue = FlakyOpenQueue(unavailable=1, later=ConfigurationError("table MICRO_SVC missing"))
    app = Application(actions_dir, settings=settings(), queue=queue, configure_logging=False)
    with capture_logs() as logs, pytest.raises(ConfigurationError, match="MICRO_SVC missing"):
        async with asyncio.timeout(30):
            await app.serve()
    assert any(e["event"] == "job queue cannot be opened" for e in logs)


# --- packages that a setting needs (issue 13 item 12) -----------------------------------------


def test_dev_mode_without_usvc_http_warns_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEV_MODE=True with no HTTP surface installed says which package to add."""
    import usvc_core.app as app_module

    monkeypatch.setattr(app_module, "named_entry_points", lambda group: {})
    app = Application(tmp_path, settings=settings(HTTP_ENABLED=True))
    with capture_logs() as logs:
        assert app._surface_factories_from_settings() == []
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert "DEV_MODE=True" in warning["event"] and "uv add usvc-http" in warning["event"]
    # HTTP_ENABLED=False: no HTTP on purpose, nothing to say.
    app = Application(tmp_path, settings=settings(HTTP_ENABLED=False))
    with capture_logs() as logs:
        app._surface_factories_from_settings()
    assert not logs


def test_memory_queue_without_usvc_testing_names_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-memory queue chosen by DEV_MODE=True, its package absent: the error names
    DEV_MODE and the package to add."""
    from usvc_core import plugins

    monkeypatch.setattr(plugins, "named_entry_points", lambda group: {})
    with pytest.raises(MissingPackageError) as info:
        queue_from_settings(settings())
    text = str(info.value)
    assert "DEV_MODE=True" in text and "uv add usvc-testing" in text
    with pytest.raises(MissingPackageError, match=r"DEV_MODE=False.*uv add usvc-oracle"):
        queue_from_settings(settings(DEV_MODE=False))


# --- what surfaces receive ----------------------------------------------------------------


async def test_surfaces_receive_a_narrow_context(actions_dir: Path) -> None:
    """A surface factory gets a SurfaceContext, not the Application: settings (with their
    source), queue, health, actions, metrics, who we are, and enqueue/wait_for_job."""
    seen: list[SurfaceContext] = []

    class Recorder:
        name = "recorder"

        async def start(self) -> None:
            seen[0].instance.http_port = 8123  # what the HTTP surface does once it listens

        async def stop(self) -> None:
            pass

    def factory(context: SurfaceContext) -> Recorder:
        seen.append(context)
        return Recorder()

    app = Application(actions_dir, settings=settings(), surfaces=[factory], configure_logging=False)
    async with app:
        [ctx] = seen
        assert not isinstance(ctx, Application)
        assert ctx.settings is app.settings and ctx.queue is app.queue
        assert ctx.health is app.health and ctx.actions is app.actions
        assert ctx.instance_id == app.instance_id and ctx.instance.pid == app.pid
        assert app.http_port == ctx.http_port == 8123
        job = await ctx.enqueue({"action": "greet", "name": "Ada"})
        done = await ctx.wait_for_job(job.id, 30)
        assert done is not None and done.results == {"message": "Hello, Ada!"}


# --- bounds on every number of an enqueue (issue 19 item 3) -----------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": 10**20}, "priority"),
        ({"priority": -(10**20)}, "priority"),
        ({"priority": 1e309}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"priority": False}, "priority"),  # equal to the default 0, still not a number
        ({"delay_seconds": False}, "delay_seconds"),
        ({"delay_seconds": 1e300}, "delay_seconds"),
        ({"delay_seconds": float("inf")}, "delay_seconds"),
        ({"delay_seconds": float("nan")}, "delay_seconds"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 10**6}, "max_attempts"),
    ],
)
async def test_enqueue_refuses_numbers_out_of_bounds_naming_the_field(
    actions_dir: Path, options: dict[str, Any], field: str
) -> None:
    """Never an OverflowError from a store: OutOfBoundsError (a UsvcError and ValueError)
    naming the field, and nothing enqueued."""
    from usvc_core.bounds import OutOfBoundsError

    app = Application(actions_dir, settings=settings(), configure_logging=False)
    async with app:
        with pytest.raises(OutOfBoundsError) as info:
            await app.enqueue({"action": "greet", "name": "x"}, **options)
        assert info.value.field == field
        assert str(info.value).startswith(f"{field} ")
        assert len(str(info.value)) < 200
        stats = await app.queue.stats("svc")
        assert sum(stats.counts.values()) == 0
        # The bounds themselves are accepted.
        await app.enqueue(
            {"action": "greet", "name": "x"},
            priority=1_000_000_000,
            delay_seconds=10 * 366 * 86_400,
            max_attempts=1000,
        )


async def test_enqueue_takes_the_actions_own_max_attempts(tmp_path: Path) -> None:
    """One default everywhere: ``ActionRegistry.max_attempts_for`` (the CLI uses it too)."""
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "handler.py").write_text(
        "from usvc_core import action\n\n\n"
        '@action("report", max_attempts=7)\n'
        "async def handle() -> None:\n"
        "    return None\n"
    )
    app = Application(tmp_path, settings=settings(JOB_MAX_ATTEMPTS=4), configure_logging=False)
    async with app:
        assert (await app.enqueue({"action": "report"}, delay_seconds=60)).max_attempts == 7
        assert (await app.enqueue({"action": "other"}, delay_seconds=60)).max_attempts == 4
        assert app.actions.max_attempts_for("report", 4) == 7


class _AlwaysWrites:
    """A propagator that writes a header whatever the context (a vendor's, say)."""

    fields = frozenset({"x-vendor"})

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        carrier["x-vendor"] = "1"

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        return context


async def test_enqueue_carries_what_the_propagator_writes(tmp_path: Path) -> None:
    """The trace carrier is skipped only where it would stay empty (OpenTelemetry's default
    propagators, an empty context): baggage alone, or another propagator, still travel."""
    from opentelemetry import baggage, propagate
    from opentelemetry import context as otel_context

    app = Application(tmp_path, settings=settings(), queue=InMemoryQueue(), configure_logging=False)
    assert "_trace" not in (await app.enqueue({"action": "a"}, delay_seconds=60)).payload
    token = otel_context.attach(baggage.set_baggage("tenant", "t1"))
    try:
        job = await app.enqueue({"action": "a"}, delay_seconds=60)
    finally:
        otel_context.detach(token)
    assert job.payload["_trace"] == {"baggage": "tenant=t1"}
    default = propagate.get_global_textmap()
    propagate.set_global_textmap(_AlwaysWrites())  # type: ignore[arg-type]
    try:
        job = await app.enqueue({"action": "a"}, delay_seconds=60)
    finally:
        propagate.set_global_textmap(default)
    assert job.payload["_trace"] == {"x-vendor": "1"}
    assert "_trace" not in (await app.enqueue({"action": "a"}, delay_seconds=60)).payload
