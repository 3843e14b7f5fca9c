"""Application: wiring from settings, lifecycle, enqueue/wait, startup failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
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
    with pytest.raises(ConfigurationError, match="unknown scheme"):
        _ = Application(settings=s).queue
