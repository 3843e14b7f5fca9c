"""OTLP setup: endpoint checks, headers and basic auth, lazy SDK import, bounded shutdown,
and export to a real (in-process) OTLP/gRPC receiver."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from usvc_core import (
    Application,
    ConfigurationError,
    MissingPackageError,
    UsvcError,
    action,
    logger,
)
from usvc_core.health import Status
from usvc_core.logging import configure_logging
from usvc_core.settings import WorkerSettings
from usvc_core.telemetry import otlp_headers, setup_telemetry, validate_endpoint
from usvc_testing import InMemoryQueue
from usvc_testing.otlp import OtlpReceiver, basic_auth_header

USER, PASSWORD = "usvc", "s3cr:t pw"


def settings(**values: Any) -> WorkerSettings:
    base: dict[str, Any] = {
        "MICROSERVICE_NAME": "telemetry-test",
        "DEV_MODE": True,
        "HTTP_ENABLED": False,
        "JOB_MAX_ATTEMPTS": 1,
        "POLLING_INTERVAL_SECONDS": 0.05,
        "OTEL_FLUSH_TIMEOUT_SECONDS": 5,
    }
    return WorkerSettings(**{**base, **values})


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """JSON log output captured for the test; logging is reset afterwards."""
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    yield out
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GreetIn(BaseModel):
    name: str


@action("greet")
async def greet(input: GreetIn) -> dict[str, str]:
    logger.info("greeting someone", who=input.name)
    if input.name == "fail":
        raise RuntimeError("asked to fail")
    return {"message": f"Hello, {input.name}!"}


async def run_jobs(
    app: Application, names: list[str], parent: trace.Span | None = None
) -> list[str]:
    """Enqueue one greet job per name (under ``parent`` when given); wait; return tokens."""
    jobs = []
    for name in names:
        if parent is not None:
            with trace.use_span(parent, end_on_exit=False):
                jobs.append(await app.enqueue({"action": "greet", "name": name}))
        else:
            jobs.append(await app.enqueue({"action": "greet", "name": name}))
    for job in jobs:
        done = await app.wait_for_job(job.id, 10)
        assert done is not None
        assert done.status.is_finished
    return [job.token for job in jobs]


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("otel-collector:4317", "scheme"),
        ("grpc://otel-collector:4317", "scheme"),
        ("http://:4317", "no host"),
        ("http://otel-collector", "no port"),
        ("http://otel-collector:99999", "not a valid URL"),
        ("http://otel-collector:4318/v1/traces", "no path"),
        ("http://user:pw@otel-collector:4317", "OTEL_EXPORTER_OTLP_USER"),
    ],
)
def test_bad_endpoint_is_a_configuration_error(value: str, says: str) -> None:
    """Each malformed endpoint fails with a message naming the variable and the problem."""
    with pytest.raises(ConfigurationError) as caught:
        validate_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value)
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in str(caught.value)
    assert says in str(caught.value)


@pytest.mark.parametrize("value", ["http://otel-collector:4317", " https://10.0.0.7:4317/ "])
def test_good_endpoint_is_accepted(value: str) -> None:
    """http:// and https:// endpoints with host and port pass (surrounding blanks ignored)."""
    assert validate_endpoint("X", value) == value.strip()


async def test_bad_endpoint_fails_application_start() -> None:
    """Application.start() raises ConfigurationError before starting any part."""
    queue = InMemoryQueue()
    app = Application(
        settings=settings(OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="collector:4317"),
        queue=queue,
        surfaces=[],
        configure_logging=False,
    )
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        await app.start()
    with pytest.raises(UsvcError, match="not started"):
        _ = app.worker


def test_other_protocol_is_refused() -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf is refused: only gRPC is offered."""
    with pytest.raises(ConfigurationError, match="only OTLP over gRPC"):
        setup_telemetry(
            settings(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:4317"),
            environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        )


def test_password_without_user_is_refused() -> None:
    """A password with no user is a half-configured login: startup fails."""
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_USER is empty"):
        setup_telemetry(settings(OTEL_EXPORTER_OTLP_PASSWORD="pw"))


def test_headers_are_merged_lower_cased_with_basic_auth() -> None:
    """Env headers keep their values, keys are lower-cased, basic auth wins on authorization."""
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "X-Tenant=acme,Authorization=Bearer%20old",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "X-Only-Logs=Yes",
    }
    traces = otlp_headers("traces", USER, PASSWORD, env)
    logs = otlp_headers("logs", USER, PASSWORD, env)
    assert traces == {"x-tenant": "acme", "authorization": basic_auth_header(USER, PASSWORD)}
    assert logs == {"x-only-logs": "Yes", "authorization": basic_auth_header(USER, PASSWORD)}
    assert otlp_headers("traces", "", "", {}) == {}


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the SDK installed, an endpoint fails startup naming usvc-core[otlp]."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(MissingPackageError, match=r"usvc-core\[otlp\]"):
        setup_telemetry(settings(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:4317"))


def test_without_endpoints_the_sdk_is_never_imported(tmp_path: Any) -> None:
    """A service with no OTLP endpoint runs jobs without importing the SDK or any tracer."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from usvc_core import Application, WorkerSettings, action
        from usvc_testing import InMemoryQueue

        @action("noop")
        async def noop() -> None:
            return None

        async def main():
            s = WorkerSettings(MICROSERVICE_NAME="x", DEV_MODE=True, HTTP_ENABLED=False,
                               POLLING_INTERVAL_SECONDS=0.05)
            app = Application(settings=s, queue=InMemoryQueue(), surfaces=[],
                              configure_logging=False)
            app.add_action(noop)
            async with app:
                job = await app.enqueue({"action": "noop"})
                done = await app.wait_for_job(job.id, 10)
                tracer = app.worker._tracer
            sdk = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "grpc")))
            print(done.status.value, tracer, sdk)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Completed None []"


# --- bounded shutdown --------------------------------------------------------------------------


@pytest.mark.parametrize("collector", ["refusing", "silent"])
def test_shutdown_is_bounded_when_the_collector_is_down(
    collector: str, monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO
) -> None:
    """With an exporter timeout of 10 min, shutdown still returns (reporting a loss)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "600")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if collector == "silent":
            sock.listen(8)  # accepts TCP connections, never answers
            endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        else:
            endpoint = f"http://127.0.0.1:{free_port()}"
        telemetry = setup_telemetry(
            settings(
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint,
                OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=endpoint,
            )
        )
        tracer = telemetry.tracer()
        assert tracer is not None
        for i in range(3):
            with tracer.start_as_current_span("work"):
                logger.info("working", token=f"tok-{i}")
        assert telemetry.shutdown(timeout=0.5) is False
    assert "telemetry not delivered before the flush timeout" in log_lines.getvalue()


def test_shutdown_delivers_everything_when_the_collector_is_up() -> None:
    """A reachable collector gets every span before shutdown returns True."""
    with OtlpReceiver() as rx:
        telemetry = setup_telemetry(settings(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rx.endpoint))
        tracer = telemetry.tracer()
        assert tracer is not None
        for i in range(5):
            with tracer.start_as_current_span(f"span-{i}"):
                pass
        assert telemetry.shutdown(timeout=10) is True
        assert sorted(s.name for s in rx.spans) == [f"span-{i}" for i in range(5)]
        assert rx.spans[0].resource["service.name"] == "telemetry-test"


# --- export to a real receiver -----------------------------------------------------------------


async def test_spans_and_logs_reach_the_receiver_with_basic_auth(log_lines: io.StringIO) -> None:
    """One span per job (token, parent), logs with token and span id, auth header on every call."""
    producer_spans = InMemorySpanExporter()
    producer = TracerProvider(shutdown_on_exit=False)
    producer.add_span_processor(SimpleSpanProcessor(producer_spans))
    with OtlpReceiver(basic_auth=(USER, PASSWORD)) as rx:
        app = Application(
            settings=settings(
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rx.endpoint,
                OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=rx.endpoint,
                OTEL_EXPORTER_OTLP_USER=USER,
                OTEL_EXPORTER_OTLP_PASSWORD=PASSWORD,
            ),
            queue=InMemoryQueue(),
            surfaces=[],
            configure_logging=False,
        )
        app.add_action(greet)
        async with app:
            with producer.get_tracer("test").start_as_current_span("enqueue") as parent:
                traced = await run_jobs(app, ["ann", "fail"], parent)
            untraced = await run_jobs(app, ["bob"])
        producer.shutdown()
        # stop() flushed: everything is there already.
        spans = {s.attributes["token"]: s for s in rx.spans if s.name == "job greet"}
        logs = rx.logs
        calls = rx.calls

    parent_ctx = producer_spans.get_finished_spans()[0].context
    assert parent_ctx is not None
    assert set(spans) == {*traced, *untraced}
    assert len([s for s in rx.spans if s.name == "job greet"]) == 3  # one span per job
    for token in traced:
        assert spans[token].trace_id == format(parent_ctx.trace_id, "032x")
        assert spans[token].parent_span_id == format(parent_ctx.span_id, "016x")
    assert spans[untraced[0]].parent_span_id == ""
    ok, failed = spans[traced[0]], spans[traced[1]]
    assert ok.kind == "SPAN_KIND_CONSUMER"
    assert ok.attributes["job.id"] == traced[0]
    assert ok.attributes["job.action"] == "greet"
    assert ok.attributes["job.attempt"] == 1
    assert ok.attributes["job.status"] == "Completed"
    assert ok.status_code == "STATUS_CODE_UNSET"
    assert failed.attributes["job.status"] == "Failed"
    assert failed.attributes["job.error_code"] == "HANDLER_ERROR"
    assert failed.status_code == "STATUS_CODE_ERROR"
    assert "asked to fail" in failed.status_message
    assert ok.resource["service.name"] == "telemetry-test"

    job_logs = [r for r in logs if "token" in r.attributes]
    assert {r.attributes["token"] for r in job_logs} == set(spans)
    for record in job_logs:  # each line is correlated with its own job's span
        assert record.span_id == spans[record.attributes["token"]].span_id
    greetings = [r for r in job_logs if r.body == "greeting someone"]
    assert sorted(r.attributes["who"] for r in greetings) == ["ann", "bob", "fail"]
    assert {r.severity_text for r in job_logs if r.body == "job failed"} == {"WARN"}

    assert calls
    assert all(
        c.accepted and c.metadata["authorization"] == basic_auth_header(USER, PASSWORD)
        for c in calls
    )
    printed = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert any(line["event"] == "greeting someone" for line in printed)  # stdout still gets it


async def test_wrong_password_is_refused_and_the_service_stays_healthy(
    monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO
) -> None:
    """The receiver refuses every export; jobs still complete and health stays GREEN."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export while the service runs
    with OtlpReceiver(basic_auth=(USER, PASSWORD)) as rx:
        app = Application(
            settings=settings(
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rx.endpoint,
                OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=rx.endpoint,
                OTEL_EXPORTER_OTLP_USER=USER,
                OTEL_EXPORTER_OTLP_PASSWORD="wrong",
            ),
            queue=InMemoryQueue(),
            surfaces=[],
            configure_logging=False,
        )
        app.add_action(greet)
        async with app:
            tokens = await run_jobs(app, ["a", "b", "c"])
            # Wait for the first refused batches while the service runs.
            assert await rx.wait_for_async(
                lambda r: {c.signal for c in r.calls} == {"traces", "logs"}
            )
            assert app.health.aggregate() is Status.GREEN
            for token in tokens:
                job = await app.queue.get(token)
                assert job is not None
                assert job.status.value == "Completed"
        calls = rx.calls
    assert calls
    assert not any(c.accepted for c in calls)
    assert rx.spans == []
    assert rx.logs == []


def test_exporter_errors_are_not_exported(log_lines: io.StringIO) -> None:
    """Lines of the exporter's own loggers are printed but never exported (no feedback loop)."""
    own_loggers = [
        "opentelemetry.exporter.otlp.proto.grpc.exporter",
        "opentelemetry.sdk._shared_internal",
        "grpc._channel",
        "usvc.telemetry",
    ]
    with OtlpReceiver() as rx:
        telemetry = setup_telemetry(settings(OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=rx.endpoint))
        for name in own_loggers:
            logging.getLogger(name).error("Failed to export logs (from %s)", name)
        logging.getLogger("somelib").warning("a library line")
        logger.info("our line", token="tok-1")
        assert telemetry.shutdown(timeout=10) is True
        records = rx.logs
    assert sorted(r.body for r in records) == ["a library line", "our line"]
    printed = log_lines.getvalue()
    assert all(f"(from {name})" in printed for name in own_loggers)


def test_global_trace_provider_is_only_set_when_asked() -> None:
    """Tests that start apps keep the process-wide provider untouched."""
    with OtlpReceiver() as rx:
        telemetry = setup_telemetry(settings(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rx.endpoint))
        try:
            assert telemetry.tracer_provider is not trace.get_tracer_provider()
        finally:
            telemetry.shutdown(timeout=5)


def test_trace_context_round_trips_without_an_sdk_span() -> None:
    """The API alone carries a W3C traceparent through (what the worker relies on)."""
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    ctx = propagate.extract(carrier)
    span_ctx = trace.get_current_span(ctx).get_span_context()
    assert format(span_ctx.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"


def test_exported_records_keep_level_exception_and_context(log_lines: io.StringIO) -> None:
    """Severity, exception fields, bound context and stdlib lines reach the receiver."""
    with OtlpReceiver() as rx:
        telemetry = setup_telemetry(settings(OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=rx.endpoint))
        with structlog.contextvars.bound_contextvars(token="tok-7", job_id="job-7"):
            try:
                int("not a number")
            except ValueError:
                logger.exception("parsing failed", payload={"a": 1}, missing=None)
            logging.getLogger("httpx").warning("HTTP Request: GET http://x 503")
        logger.debug("filtered out")  # below INFO: neither printed nor exported
        assert telemetry.shutdown(timeout=10) is True
        records = {r.body: r for r in rx.logs}
    assert set(records) == {"parsing failed", "HTTP Request: GET http://x 503"}
    failed = records["parsing failed"]
    assert (failed.severity_text, failed.severity_number) == ("ERROR", 17)
    assert failed.attributes["token"] == "tok-7"
    assert failed.attributes["job_id"] == "job-7"
    assert failed.attributes["exception.type"] == "ValueError"
    assert "not a number" in failed.attributes["exception.message"]
    assert failed.attributes["payload"] == "{'a': 1}"  # non-primitive values as repr
    assert "missing" not in failed.attributes
    assert failed.resource["service.name"] == "telemetry-test"
    library = records["HTTP Request: GET http://x 503"]
    assert library.severity_text == "WARN"
    assert library.attributes["token"] == "tok-7"
    assert library.attributes["logger"] == "httpx"
