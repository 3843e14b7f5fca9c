"""The HTTP surface over a real socket: /health, /metrics, /dev/job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from usvc_core import Application, Status, WorkerSettings
from usvc_http import http_surface

HANDLER = """
import asyncio
from pydantic import BaseModel
from usvc_core import action

class GreetInput(BaseModel):
    name: str

class GreetOutput(BaseModel):
    message: str

@action("greet")
async def handle(input: GreetInput) -> GreetOutput:
    return GreetOutput(message=f"Hello, {input.name}!")

@action("slow")
async def slow() -> dict:
    await asyncio.sleep(5)
    return {}
"""

AppFactory = Callable[..., Any]


@pytest.fixture
def actions_dir(tmp_path: Path) -> Path:
    (tmp_path / "greet").mkdir()
    (tmp_path / "greet" / "handler.py").write_text(HANDLER)
    return tmp_path


@pytest.fixture
async def serve(actions_dir: Path) -> AsyncIterator[AppFactory]:
    apps: list[Application] = []

    async def start(**kw: Any) -> tuple[Application, httpx.AsyncClient]:
        base: dict[str, Any] = {
            "MICROSERVICE_NAME": "greeting-service",
            "DEV_MODE": True,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": 0,
            "POLLING_INTERVAL_SECONDS": 3600,
            "SHUTDOWN_TIMEOUT_SECONDS": 0.5,
        }
        base.update(kw)
        app = Application(actions_dir, settings=WorkerSettings(**base), configure_logging=False)
        await app.start()
        apps.append(app)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}", timeout=10)
        return app, client

    yield start
    for app in apps:
        await app.stop()


def samples(text: str) -> dict[str, float]:
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if not s.labels
    }


async def test_dev_job_round_trip_and_metrics(serve: AppFactory) -> None:
    """POST /dev/job answers 200 with the result; /metrics counts it."""
    app, client = await serve()
    async with client:
        r = await client.post("/dev/job", json={"action": "greet", "name": "World"})
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "Completed"
        assert body["results"] == {"message": "Hello, World!"}
        assert body["error"] is None and body["job_id"].startswith("dev-")
        assert isinstance(body["runtime_ms"], float)
        m = await client.get("/metrics")
        assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
        values = samples(m.text)
        assert values["jobs_processed_total"] == 1
        assert values["jobs_errors_total"] == 0
        assert values["active_jobs"] == 0
        assert values["health_status"] == 2


async def test_unknown_action_is_422_with_the_specs_shape(serve: AppFactory) -> None:
    """A failed job answers 422 with error_code and error_message."""
    _, client = await serve()
    async with client:
        r = await client.post("/dev/job", json={"action": "invalid"})
        assert r.status_code == 422
        body = r.json()
        assert body["status"] == "Failed" and body["results"] is None
        assert body["error"]["error_code"] == "UNKNOWN_ACTION"
        assert body["error"]["error_message"].startswith("no action handler matched: invalid")
        v = await client.post("/dev/job", json={"action": "greet"})
        assert v.status_code == 422 and v.json()["error"]["error_code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 422, "must be a JSON object"),
        (b'{"name": "x"}', 422, '"action" string'),
        (b'{"action": ""}', 422, '"action" string'),
    ],
)
async def test_broken_bodies_get_a_clear_detail(
    serve: AppFactory, body: bytes, status: int, fragment: str
) -> None:
    """Bodies that are not a JSON object with an action are refused with a detail."""
    _, client = await serve()
    async with client:
        r = await client.post(
            "/dev/job", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == status
        assert fragment in r.json()["detail"]


async def test_oversized_body_is_refused(serve: AppFactory) -> None:
    """Bodies over HTTP_MAX_BODY_BYTES get 413."""
    _, client = await serve(HTTP_MAX_BODY_BYTES=100)
    async with client:
        r = await client.post("/dev/job", json={"action": "greet", "name": "x" * 200})
        assert r.status_code == 413


async def test_bounded_wait_answers_504(serve: AppFactory) -> None:
    """A job that outlives DEV_JOB_WAIT_SECONDS answers 504 with its id and status."""
    _, client = await serve(DEV_JOB_WAIT_SECONDS=0.1)
    async with client:
        r = await client.post("/dev/job", json={"action": "slow"})
        assert r.status_code == 504
        assert r.json()["status"] in ("Ready", "Assigned", "Processing")


async def test_dev_job_answers_the_same_through_fastapis_own_handler(
    serve: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route skips FastAPI's per-request work except while FastAPI's telemetry records
    the request; both ways answer the same, and OpenAPI documents the route."""
    from usvc_http import routes

    _, client = await serve()
    async with client:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "post" in paths["/dev/job"] and "get" in paths["/health"]
        assert (await client.get("/dev/job")).status_code == 405
        assert (await client.get("/health")).status_code == 200
        answers = []
        for recording in (False, True):
            if recording:
                monkeypatch.setattr(routes, "_telemetry_data", object)
            r = await client.post("/dev/job", json={"action": "greet", "name": "W"})
            body = r.json()
            assert body.pop("job_id").startswith("dev-")
            assert isinstance(body.pop("runtime_ms"), float)
            answers.append((r.status_code, r.headers["content-type"], body))
            r = await client.post("/dev/job", content=b"[1]")
            answers.append((r.status_code, r.headers["content-type"], r.json()))
        assert answers[:2] == answers[2:]
        assert answers[0] == (
            200,
            "application/json",
            {"status": "Completed", "results": {"message": "Hello, W!"}, "error": None},
        )


async def test_dev_job_reads_a_body_sent_in_pieces(serve: AppFactory) -> None:
    """A chunked body (no Content-Length) is read whole, piece by piece."""
    _, client = await serve()

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b'{"action": "gr', b'eet", "name"', b': "Chunked"}'):
            yield piece

    async with client:
        r = await client.post("/dev/job", content=pieces())
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 200 and r.json()["results"] == {"message": "Hello, Chunked!"}


@pytest.mark.parametrize(
    "body",
    [
        {"job_id": "dev-1", "status": "Completed", "results": {"ü": "☃", "n": [1.5, None]}},
        {"detail": 'quote " and \\ backslash'},
    ],
)
def test_answers_are_encoded_as_jsonresponse_encodes(body: dict[str, Any]) -> None:
    from fastapi.responses import JSONResponse
    from usvc_http.routes import _JSONAnswer

    ours, theirs = _JSONAnswer(body, 422), JSONResponse(body, status_code=422)
    assert (ours.body, ours.status_code, ours.raw_headers, ours.background) == (
        theirs.body,
        theirs.status_code,
        theirs.raw_headers,
        theirs.background,
    )
    for answer in (_JSONAnswer, JSONResponse):  # neither sends what JSON cannot hold
        with pytest.raises(ValueError, match="Out of range float"):
            answer({"results": [float("nan")]})


def _loads_outcome(parse: Callable[[bytes], Any], raw: bytes) -> tuple[str, Any]:
    try:
        return "value", parse(raw)
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"action": "a", "n": [1, 2.5, null], "s": "\\u00fc\\ud800"}',
        b'{"action": "a"}  \n',
        b'{"action": "a"} x',
        b'{"action": NaN}',
        b"{not json",
        b"{",
        b"{\xff}",
        b"\xef\xbb\xbf{}",
        '{"a": 1}'.encode("utf-16-le"),
        b"[1]",
        b" {}",
        b"",
        b"[" * 100_000,
    ],
)
def test_the_body_is_read_as_json_loads_reads_it(raw: bytes) -> None:
    """The route's parser (the scanner straight away for a plain object) gives what
    json.loads gives: the same value, or the same error and message."""
    import json

    from usvc_http.routes import _parse_body

    assert _loads_outcome(_parse_body, raw) == _loads_outcome(json.loads, raw)


async def test_dev_job_absent_outside_dev_mode(serve: AppFactory) -> None:
    """Without DEV_MODE the endpoint does not exist, not even in OpenAPI."""
    _, client = await serve(DEV_MODE=False, QUEUE_URL="memory://")
    async with client:
        assert (
            await client.post("/dev/job", json={"action": "greet", "name": "x"})
        ).status_code == 404
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/dev/job" not in paths and "/health" in paths


async def test_health_is_503_when_red(serve: AppFactory) -> None:
    """GREEN/YELLOW answer 200, RED answers 503; checks carry their details."""
    app, client = await serve()
    async with client:
        r = await client.get("/health")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "GREEN" and "job_queue" in body["checks"]
        app.health.update("payment_api", Status.YELLOW, {"last_status": 500, "attempt": 2})
        r = await client.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "YELLOW"
        assert r.json()["checks"]["payment_api"]["details"] == {"last_status": 500, "attempt": 2}
        app.health.update("payment_api", Status.RED, {"error": "circuit open"})
        r = await client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "RED"
        m = samples((await client.get("/metrics")).text)
        assert m["health_status"] == 0


async def test_port_in_use_is_a_clear_startup_error(serve: AppFactory, actions_dir: Path) -> None:
    """A second app on the same port fails to start, naming HTTP_HOST/HTTP_PORT."""
    app, client = await serve()
    await client.aclose()
    other = Application(
        actions_dir,
        settings=WorkerSettings(
            MICROSERVICE_NAME="x",
            DEV_MODE=True,
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=app.http_port or 0,
        ),
        configure_logging=False,
    )
    with pytest.raises(Exception, match="HTTP_HOST/HTTP_PORT"):
        await other.start()


async def test_connections_are_tcp_nodelay(serve: AppFactory) -> None:
    """Accepted connections have TCP_NODELAY: without it each response waits for the
    client's delayed ACK (about 40 ms per request)."""
    import socket

    app, client = await serve()
    async with client:
        assert (await client.get("/health")).status_code == 200
        surface = next(s for s in app._surfaces if s.name == "http")
        server = surface._server  # type: ignore[attr-defined]
        connections = list(server.server_state.connections)
        assert connections
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_http_settings_come_from_the_same_source(
    serve: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_* values given to WorkerSettings win over the environment; the port the surface
    bound is the application's ``http_port`` until it stops."""
    monkeypatch.setenv("HTTP_MAX_BODY_BYTES", "5")  # the explicit value below wins
    app, client = await serve(HTTP_MAX_BODY_BYTES=100)
    assert app.http_port and app.http_port > 0
    r = await client.post("/dev/job", json={"action": "greet", "name": "Ada"})
    assert r.status_code == 200, r.text
    r = await client.post("/dev/job", content=b"x" * 101)
    assert r.status_code == 413
    await client.aclose()
    await app.stop()
    assert app.http_port is None


def test_the_entry_point_reads_http_enabled_from_the_source(actions_dir: Path) -> None:
    """HTTP_ENABLED=False (an HttpSettings variable) turns the surface off."""
    settings = WorkerSettings(
        _env_file=None, MICROSERVICE_NAME="svc", DEV_MODE=True, HTTP_ENABLED=False
    )
    app = Application(actions_dir, settings=settings, configure_logging=False)
    assert http_surface(app.surface_context()) is None
    settings = WorkerSettings(_env_file=None, MICROSERVICE_NAME="svc", DEV_MODE=True)
    app = Application(actions_dir, settings=settings, configure_logging=False)
    surface = http_surface(app.surface_context())
    assert surface is not None and (surface.host, surface.port) == ("0.0.0.0", 8000)


async def test_metrics_show_each_schedules_next_run(serve: AppFactory) -> None:
    """A schedule from the settings: /metrics has its next run as a Unix time, the same
    slot the scheduler's health check names (a yearly schedule: it cannot move meanwhile)."""
    from datetime import UTC, datetime

    _, client = await serve(SCHEDULES={"slow": "0 0 1 1 *"})
    async with client:
        for _ in range(100):  # the scheduler starts with the worker, just after start()
            text = (await client.get("/metrics")).text
            found = [
                s
                for fam in text_string_to_metric_families(text)
                for s in fam.samples
                if s.name == "schedule_next_run_timestamp_seconds"
            ]
            if found:
                break
            await asyncio.sleep(0.05)
        assert [s.labels for s in found] == [{"action": "slow"}]
        health = (await client.get("/health")).json()
        scheduler = health["checks"]["scheduler"]
        assert scheduler["status"] == "GREEN"
        next_run = datetime.fromisoformat(scheduler["details"]["next_runs"]["slow"])
        assert (next_run.month, next_run.day, next_run.hour, next_run.minute) == (1, 1, 0, 0)
        assert next_run.tzinfo is not None and next_run.utcoffset() == UTC.utcoffset(None)
        assert found[0].value == next_run.timestamp()
