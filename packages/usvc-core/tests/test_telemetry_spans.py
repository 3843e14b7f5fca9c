"""The worker's span per job: name, attributes, parent, final status (in-memory exporter)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from usvc_core import RetryJob, action
from usvc_core.actions.registry import ActionRegistry
from usvc_core.jobs import TRACE_KEY, Job
from usvc_core.ports import EnqueueRequest
from usvc_core.worker import UNKNOWN_ACTION_LABEL, Worker, WorkerConfig
from usvc_testing import InMemoryQueue

SERVICE = "spans-test"


@action("ok")
async def ok_handler() -> dict[str, int]:
    return {"n": 1}


@action("flaky")
async def flaky_handler() -> None:
    raise RetryJob("not yet", delay_seconds=60)


class NeedsName(BaseModel):
    name: str


@action("named")
async def named_handler(input: NeedsName) -> None:
    return None


@action("slow")
async def slow_handler() -> None:
    await asyncio.sleep(60)


async def eventually(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (polling) until ``predicate()`` holds; fail after ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def _job_id(span: ReadableSpan) -> Any:
    return (span.attributes or {}).get("job.id")


@dataclass
class Rig:
    queue: InMemoryQueue
    worker: Worker
    spans: InMemorySpanExporter
    tracer: trace.Tracer

    async def enqueue(self, payload: dict[str, Any]) -> Job:
        return await self.queue.enqueue(EnqueueRequest(payload=payload, microservice=SERVICE))

    async def run(self, payload: dict[str, Any]) -> Job:
        """Enqueue ``payload`` and wait until the worker recorded an outcome."""
        job = await self.enqueue(payload)
        await self.until(lambda: any(_job_id(s) == job.id for s in self.finished()))
        return job

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    async def until(self, predicate: Callable[[], bool]) -> None:
        await eventually(predicate)

    def span_of(self, job: Job) -> ReadableSpan:
        [span] = [s for s in self.finished() if _job_id(s) == job.id]
        return span


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider recording finished spans in memory."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp, exporter
    tp.shutdown()


@pytest.fixture
async def rig(provider: tuple[TracerProvider, InMemorySpanExporter]) -> AsyncIterator[Rig]:
    """A running worker with a tracer, on an in-memory queue."""
    tp, exporter = provider
    actions = ActionRegistry()
    for handler in (ok_handler, flaky_handler, slow_handler, named_handler):
        actions.add(handler)
    queue = InMemoryQueue()
    config = WorkerConfig(microservice=SERVICE, polling_interval=0.02, shutdown_timeout=0.1)
    tracer = tp.get_tracer("test")
    worker = Worker(queue, actions, config, tracer=tracer)
    task = asyncio.create_task(worker.run())
    yield Rig(queue, worker, exporter, tracer)
    worker.request_stop()
    await asyncio.wait_for(task, 10)


async def test_completed_job_span(rig: Rig) -> None:
    """One consumer span named after the action, with token, id, attempt and final status."""
    job = await rig.run({"action": "ok"})
    span = rig.span_of(job)
    assert span.name == "job ok"
    assert span.kind is trace.SpanKind.CONSUMER
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "token": job.token,
        "job.id": job.id,
        "job.action": "ok",
        "job.attempt": 1,
        "job.outcome": "completed",
        "job.status": "Completed",
    }
    assert span.status.status_code is trace.StatusCode.UNSET
    assert span.parent is None


async def test_span_continues_the_producers_trace(rig: Rig) -> None:
    """W3C trace context in the payload makes the job span a child of the producer span."""
    with rig.tracer.start_as_current_span("producer") as producer:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    job = await rig.run({"action": "ok", TRACE_KEY: carrier})
    span = rig.span_of(job)
    assert span.parent is not None
    assert span.parent.span_id == producer.get_span_context().span_id
    assert span.context is not None
    assert span.context.trace_id == producer.get_span_context().trace_id


async def test_job_without_context_is_a_root_even_inside_a_span(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A worker started inside a span does not make untraced jobs its children."""
    tp, exporter = provider
    actions = ActionRegistry()
    actions.add(ok_handler)
    queue = InMemoryQueue()
    with tp.get_tracer("test").start_as_current_span("ambient"):
        worker = Worker(
            queue,
            actions,
            WorkerConfig(microservice=SERVICE, polling_interval=0.02),
            tracer=tp.get_tracer("test"),
        )
        task = asyncio.create_task(worker.run())
    job = await queue.enqueue(EnqueueRequest(payload={"action": "ok"}, microservice=SERVICE))
    await eventually(lambda: any(s.name == "job ok" for s in exporter.get_finished_spans()))
    worker.request_stop()
    await asyncio.wait_for(task, 10)
    [span] = [s for s in exporter.get_finished_spans() if s.name == "job ok"]
    assert span.attributes is not None
    assert span.attributes["job.id"] == job.id
    assert span.parent is None


async def test_retried_and_failed_jobs_carry_the_error(rig: Rig) -> None:
    """A retry leaves the job Ready, a bad payload Failed; both spans are errors with a code."""
    retried = await rig.run({"action": "flaky"})
    invalid = await rig.run({"action": "named"})
    span = rig.span_of(retried)
    assert span.attributes is not None
    assert span.attributes["job.outcome"] == "retried"
    assert span.attributes["job.status"] == "Ready"
    assert span.attributes["job.error_code"] == "HANDLER_ERROR"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description is not None
    assert "not yet" in span.status.description
    span = rig.span_of(invalid)
    assert span.attributes is not None
    assert span.attributes["job.outcome"] == "failed"
    assert span.attributes["job.status"] == "Failed"
    assert span.attributes["job.error_code"] == "VALIDATION_ERROR"
    assert span.status.status_code is trace.StatusCode.ERROR


async def test_unknown_action_keeps_span_names_bounded(rig: Rig) -> None:
    """An unregistered action from a payload does not become a span name."""
    job = await rig.run({"action": "no-such-action-7f3a"})
    span = rig.span_of(job)
    assert span.name == f"job {UNKNOWN_ACTION_LABEL}"
    assert span.attributes is not None
    assert span.attributes["job.action"] == "no-such-action-7f3a"
    assert span.attributes["job.error_code"] == "UNKNOWN_ACTION"
    assert span.attributes["job.status"] == "Failed"


async def test_job_released_on_shutdown_is_not_an_error(rig: Rig) -> None:
    """A job cancelled by shutdown ends its span as released, back to Ready, status unset."""
    job = await rig.enqueue({"action": "slow"})
    await rig.until(lambda: rig.worker.active_jobs == 1)
    rig.worker.request_stop()
    await rig.until(lambda: any(s.name == "job slow" for s in rig.finished()))
    span = rig.span_of(job)
    assert span.attributes is not None
    assert span.attributes["job.outcome"] == "released"
    assert span.attributes["job.status"] == "Ready"
    assert span.status.status_code is trace.StatusCode.UNSET
    assert not span.events  # a cancellation is not recorded as an exception


async def test_no_tracer_means_no_span_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a tracer the worker never touches the OpenTelemetry API per job."""
    actions = ActionRegistry()
    actions.add(ok_handler)
    queue = InMemoryQueue()
    worker = Worker(queue, actions, WorkerConfig(microservice=SERVICE, polling_interval=0.02))
    calls: list[str] = []

    def spy_extract(*args: Any, **kwargs: Any) -> Any:
        calls.append("extract")
        return None

    monkeypatch.setattr(propagate, "extract", spy_extract)
    task = asyncio.create_task(worker.run())
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    job = await queue.enqueue(
        EnqueueRequest(payload={"action": "ok", TRACE_KEY: carrier}, microservice=SERVICE)
    )
    await asyncio.wait_for(worker.watch(job.id), 10)
    worker.request_stop()
    await asyncio.wait_for(task, 10)
    done = await queue.get(job.id)
    assert done is not None
    assert done.status.value == "Completed"
    assert calls == []
