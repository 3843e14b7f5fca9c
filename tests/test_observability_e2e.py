"""End to end: the greeting example as a real process, exporting over OTLP/gRPC to the
in-process receiver of usvc-testing, and printing JSON logs we read back."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from usvc_testing.otlp import OtlpReceiver, ReceivedSpan, basic_auth_header

from tests.conftest import ROOT, ServiceProcess

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "greeting"
USER, PASSWORD = "greeter", "pa:ss word"


def example_env(**values: str) -> dict[str, str]:
    return {
        "MICROSERVICE_NAME": "greeting-service",
        "DEV_MODE": "True",
        "LOG_CONSOLE_JSON": "True",
        "MAX_CONCURRENT_JOBS": "10",
        "POLLING_INTERVAL_SECONDS": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export spans while the service runs
        **values,
    }


def copy_example(workdir: Path) -> Path:
    """A copy of the example without a developer's .env (settings come from the test only)."""
    shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns(".env", "__pycache__"))
    return workdir


@pytest.fixture
def example(
    service: Callable[..., ServiceProcess], tmp_path: Path
) -> Callable[..., ServiceProcess]:
    """Starts a copy of the example with extra settings and waits until it is healthy."""
    count = iter(range(100))

    def start(**values: str) -> ServiceProcess:
        workdir = copy_example(tmp_path / f"greeting-{next(count)}")
        process = service(workdir, example_env(**values))
        process.wait_healthy(60)
        return process

    return start


def stop(process: ServiceProcess, seconds: float = 60) -> int:
    """SIGTERM, as an orchestrator stops it; the exit status."""
    process.signal(signal.SIGTERM)
    return process.wait(seconds)


async def post_jobs(
    url: str, payloads: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """POST /dev/job for all payloads at once; each answer is the finished job."""
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        answers = await asyncio.gather(*(client.post("/dev/job", json=p) for p in payloads))
    assert [a.status_code for a in answers] == [200] * len(payloads), [a.text for a in answers]
    return [a.json() for a in answers]


def producer_context() -> tuple[dict[str, str], str, str]:
    """A real producer span's W3C carrier, with its trace id and span id in hex."""
    provider = TracerProvider(shutdown_on_exit=False)
    with provider.get_tracer("producer").start_as_current_span("enqueue") as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    ctx = span.get_span_context()
    return carrier, format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[str]:
    """Span ids from ``span``'s parent up to the first parent not among ``spans``."""
    by_id = {s.span_id: s for s in spans}
    chain, parent = [], span.parent_span_id
    while parent:
        chain.append(parent)
        parent = by_id[parent].parent_span_id if parent in by_id else ""
    return chain


async def test_example_exports_spans_and_logs_with_token_parent_and_auth(
    example: Callable[..., ServiceProcess],
) -> None:
    """One span per job (token, parent), log records with the token, basic auth on every call;
    and the JSON lines of this run of concurrent jobs each carry their own job's token."""
    carrier, trace_id, producer_id = producer_context()
    with OtlpReceiver(basic_auth=(USER, PASSWORD)) as rx:
        service = example(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rx.endpoint,
            OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=rx.endpoint,
            OTEL_EXPORTER_OTLP_USER=USER,
            OTEL_EXPORTER_OTLP_PASSWORD=PASSWORD,
        )
        # Trace context three ways: in the payload, as an HTTP traceparent header, none.
        in_payload, in_header, plain = await asyncio.gather(
            post_jobs(service.url, [{"action": "greet", "name": "p", "_trace": carrier}] * 2),
            post_jobs(service.url, [{"action": "greet", "name": "h"}] * 2, headers=carrier),
            post_jobs(service.url, [{"action": "greet", "name": "n"}] * 2),
        )
        assert stop(service) == 0  # stop() flushes spans and logs before exiting
        all_spans = rx.spans
        logs = rx.logs
        calls = rx.calls

    answers = in_payload + in_header + plain
    assert {a["status"] for a in answers} == {"Completed"}
    spans = [s for s in all_spans if s.name == "job greet"]
    span_of = {s.attributes["token"]: s for s in spans}
    assert len(spans) == len(span_of) == 6  # one span per job
    assert set(span_of) == {a["job_id"] for a in answers}  # the token (defaults to the id)
    for span in spans:
        assert span.attributes["job.id"] == span.attributes["token"]
        assert span.attributes["job.status"] == "Completed"
        assert span.kind == "SPAN_KIND_CONSUMER"
        assert span.resource["service.name"] == "greeting-service"
    for answer in in_payload:  # the payload's context is the job span's parent
        span = span_of[answer["job_id"]]
        assert (span.trace_id, span.parent_span_id) == (trace_id, producer_id)
    for answer in in_header:  # continued through the HTTP request's span
        span = span_of[answer["job_id"]]
        assert span.trace_id == trace_id
        assert producer_id in ancestors(span, all_spans)
    for answer in plain:
        span = span_of[answer["job_id"]]
        assert span.trace_id != trace_id
        assert producer_id not in ancestors(span, all_spans)

    completed = [r for r in logs if r.body == "job completed"]
    assert sorted(r.attributes["token"] for r in completed) == sorted(span_of)
    for record in completed:  # each record sits in its own job's span
        assert record.span_id == span_of[record.attributes["token"]].span_id
        assert record.attributes["job_id"] == record.attributes["token"]
    assert any(r.body == "application started" for r in logs)

    assert {c.signal for c in calls} == {"traces", "logs"}
    assert all(c.metadata.get("authorization") == basic_auth_header(USER, PASSWORD) for c in calls)
    check_json_log_lines(service, answers)


def check_json_log_lines(service: ServiceProcess, answers: list[dict[str, Any]]) -> None:
    """The concurrent run's stdout: JSON only; each job's lines carry its token and no other."""
    lines = [json.loads(line) for line in service.output().splitlines()]  # all JSON
    job_ids = {a["job_id"] for a in answers}
    # A line is a job's when it names the job (job_id) or carries a token; both must agree.
    job_lines = [line for line in lines if "job_id" in line or "token" in line]
    finished = sorted(line["job_id"] for line in job_lines if line["event"] == "job completed")
    assert finished == sorted(job_ids)
    for line in job_lines:
        assert line["job_id"] in job_ids
        assert line["token"] == line["job_id"]
        assert line["action"] == "greet"
    others = {line["event"] for line in lines if line not in job_lines}
    assert {"application started", "application stopped"} <= others


async def test_wrong_password_is_refused_and_the_example_stays_healthy(
    example: Callable[..., ServiceProcess],
) -> None:
    """Every export is refused (UNAUTHENTICATED); jobs still complete, /health stays GREEN."""
    with OtlpReceiver(basic_auth=(USER, PASSWORD)) as rx:
        service = example(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rx.endpoint,
            OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=rx.endpoint,
            OTEL_EXPORTER_OTLP_USER=USER,
            OTEL_EXPORTER_OTLP_PASSWORD="not-the-password",
        )
        first = await post_jobs(service.url, [{"action": "greet", "name": "a"}])
        assert rx.wait_for(lambda r: {c.signal for c in r.calls} == {"traces", "logs"}, 30)
        second = await post_jobs(service.url, [{"action": "greet", "name": "b"}] * 3)
        async with httpx.AsyncClient(base_url=service.url) as client:
            health = await client.get("/health")
        assert stop(service) == 0
        calls = rx.calls
    assert [a["status"] for a in first + second] == ["Completed"] * 4
    assert health.status_code == 200
    assert health.json()["status"] == "GREEN"
    assert not any(c.accepted for c in calls)
    assert rx.spans == []
    assert rx.logs == []


async def test_shutdown_is_bounded_when_the_collector_hangs(
    example: Callable[..., ServiceProcess],
) -> None:
    """A collector that never answers (exporter timeout 10 min) cannot hold up the exit."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts connections, never speaks
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        service = example(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_TIMEOUT="600",
            OTEL_FLUSH_TIMEOUT_SECONDS="1",
        )
        await post_jobs(service.url, [{"action": "greet", "name": "x"}])
        assert stop(service, seconds=120) == 0
    events = [line["event"] for line in service.json_lines()]
    assert "telemetry not delivered before the flush timeout; dropping the rest" in events


def test_bad_endpoint_stops_the_example_at_startup(tmp_path: Path) -> None:
    """A malformed endpoint: exit status 2 and one message naming the setting."""
    workdir = copy_example(tmp_path / "greeting")
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env = {**base, **example_env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="otel-collector:4317")}
    result = subprocess.run(
        [sys.executable, "main.py"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='otel-collector:4317'" in result.stderr
    assert "http://" in result.stderr
