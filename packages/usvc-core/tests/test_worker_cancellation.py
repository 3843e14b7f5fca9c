"""Why the worker stops a job's handler, and what each reason makes of the job: a timeout
(TIMEOUT), an operator's cancellation (Failed, CANCELLED), a lost lease (nothing written), a
shutdown (back to Ready); a CancelledError nobody asked for stays the handler's failure.
Waiting callers (``watch``) get a clear signal when the worker stops.

Worker and queue share a FakeClock: time moves only when a test advances it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from usvc_core import (
    ActionRegistry,
    EnqueueRequest,
    Job,
    JobStatus,
    RetryJob,
    Worker,
    WorkerConfig,
    action,
)
from usvc_core.errors import ShuttingDownError
from usvc_core.metrics import NullMetrics
from usvc_testing import FakeClock, InMemoryQueue

MS = "svc"
gates: dict[str, asyncio.Event] = {}
calls: dict[str, int] = {}


def gate(name: str) -> asyncio.Event:
    return gates.setdefault(name, asyncio.Event())


@action("stuck", timeout_seconds=2)
async def stuck() -> dict[str, str]:
    calls["stuck"] = calls.get("stuck", 0) + 1
    await gate("stuck").wait()
    return {"done": "yes"}


@action("stuck_retried", timeout_seconds=2, retry_on=(TimeoutError,))
async def stuck_retried() -> None:
    calls["stuck_retried"] = calls.get("stuck_retried", 0) + 1
    await gate("never").wait()


@action("blocks")
async def blocks() -> dict[str, str]:
    calls["blocks"] = calls.get("blocks", 0) + 1
    await gate("blocks").wait()
    return {"done": "yes"}


@action("stubborn")
async def stubborn() -> dict[str, str]:
    """Swallows its cancellation and returns a result."""
    try:
        await gate("never").wait()
    except asyncio.CancelledError:
        return {"swallowed": "cancellation"}
    return {"done": "yes"}


@action("leaks")
async def leaks() -> None:
    """Lets through the CancelledError of a task it awaited (nobody cancelled the job)."""
    inner = asyncio.create_task(asyncio.sleep(30))
    inner.cancel()
    await inner


@action("later")
async def later() -> dict[str, int]:
    calls["later"] = calls.get("later", 0) + 1
    if calls["later"] == 1:
        raise RetryJob("not yet", delay_seconds=30)
    return {"attempt": calls["later"]}


class RecordingMetrics(NullMetrics):
    def __init__(self) -> None:
        self.finished: list[tuple[str, str]] = []

    def job_finished(self, action: str, outcome: str, duration_seconds: float) -> None:
        self.finished.append((action, outcome))


class Rig:
    """A worker and an in-memory queue on one fake clock."""

    def __init__(self, **config: Any) -> None:
        self.clock = FakeClock()
        self.queue = InMemoryQueue(self.clock)
        self.metrics = RecordingMetrics()
        registry = ActionRegistry()
        for handler in (stuck, stuck_retried, blocks, stubborn, leaks, later):
            registry.add(handler)
        settings: dict[str, Any] = {
            "microservice": MS,
            "polling_interval": 3600.0,
            "lease_seconds": 3.0,
            "shutdown_timeout": 30.0,
            **config,
        }
        self.worker = Worker(
            self.queue,
            registry,
            WorkerConfig(**settings),
            metrics=self.metrics,
            clock=self.clock,
        )
        self.task = asyncio.create_task(self.worker.run())

    async def enqueue(self, name: str, **kw: Any) -> Job:
        return await self.queue.enqueue(EnqueueRequest({"action": name}, MS, **kw))

    async def job(self, job_id: str) -> Job:
        got = await self.queue.get(job_id)
        assert got is not None
        return got

    async def tick_until(self, pred: Callable[[], Any], step: float = 0.1) -> None:
        """Advance fake time by ``step`` until ``pred`` (sync or async) holds."""
        async with asyncio.timeout(10):  # a real-time net for a test that never sees it
            while not (await pred() if asyncio.iscoroutinefunction(pred) else pred()):
                self.clock.advance(step)
                await settle()

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        """Move fake time in steps, so that lease renewals keep up as they would."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            await settle()

    async def status_is(self, job_id: str, status: JobStatus) -> None:
        async def reached() -> bool:
            return (await self.job(job_id)).status is status

        await self.tick_until(reached)


async def settle() -> None:
    """Let every task run until it waits on something (the store, the clock, a gate)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def until(pred: Callable[[], Any]) -> None:
    async with asyncio.timeout(10):
        while not pred():  # noqa: ASYNC110 - polls a condition with a limit
            await asyncio.sleep(0.005)


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Rig]]:
    gates.clear()
    calls.clear()
    rigs: list[Rig] = []

    def start(**config: Any) -> Rig:
        rigs.append(Rig(**config))
        return rigs[-1]

    yield start
    for r in rigs:
        r.worker.request_stop()
        r.worker.request_stop()
        await r.tick_until(r.task.done, step=1.0)
        await r.task


async def test_the_watchdog_stops_a_handler_past_its_timeout(rig: Callable[..., Rig]) -> None:
    """On the fake clock: 1.9 s in, the handler still runs; past 2 s it is stopped and the
    job fails with TIMEOUT (not retried: TimeoutError is not in its retry_on)."""
    r = rig()
    job = await r.enqueue("stuck")
    await until(lambda: calls.get("stuck") == 1)
    await settle()
    r.clock.advance(1.9)
    await settle()
    assert (await r.job(job.id)).status is JobStatus.PROCESSING
    await r.status_is(job.id, JobStatus.FAILED)
    failed = await r.job(job.id)
    assert failed.error_code == "TIMEOUT"
    assert failed.error_message == "handler did not finish within 2 s"
    assert ("stuck", "failed") in r.metrics.finished


async def test_a_timeout_is_retried_when_the_action_retries_timeouts(
    rig: Callable[..., Rig],
) -> None:
    """With TimeoutError in retry_on, a stopped handler's job goes back to Ready."""
    r = rig()
    job = await r.enqueue("stuck_retried", max_attempts=2)
    await until(lambda: calls.get("stuck_retried") == 1)
    await r.tick_until(lambda: ("stuck_retried", "retried") in r.metrics.finished)
    await r.status_is(job.id, JobStatus.FAILED)  # the second attempt times out too
    assert calls["stuck_retried"] == 2
    assert (await r.job(job.id)).error_code == "TIMEOUT"


async def test_an_operator_cancel_stops_the_handler_and_fails_the_job(
    rig: Callable[..., Rig],
) -> None:
    """QueueAdmin.cancel on a Processing job: at the next lease renewal the handler is
    stopped and the job recorded Failed with CANCELLED; metrics count it failed."""
    r = rig()
    job = await r.enqueue("blocks", max_attempts=5)
    await until(lambda: calls.get("blocks") == 1)
    assert await r.queue.cancel(MS, job.id) is JobStatus.PROCESSING
    await settle()
    assert (await r.job(job.id)).status is JobStatus.PROCESSING  # until the renewal
    await r.status_is(job.id, JobStatus.FAILED)  # renewals every lease_seconds / 3
    failed = await r.job(job.id)
    assert failed.error_code == "CANCELLED"
    assert failed.error_message == "cancelled by an operator while it ran"
    assert failed.attempts == 1 and failed.runtime_ms is not None
    assert r.metrics.finished == [("blocks", "failed")]
    assert r.worker.active_jobs == 0
    assert calls["blocks"] == 1  # not retried although attempts are left


async def test_an_operator_cancel_of_a_ready_job_never_runs_it(rig: Callable[..., Rig]) -> None:
    """A job cancelled while Ready is Failed at once and never claimed."""
    r = rig()
    job = await r.enqueue("blocks", delay_seconds=60)
    assert await r.queue.cancel(MS, job.id) is JobStatus.FAILED
    r.clock.advance(61)
    await settle()
    r.worker.notify()
    await settle()
    assert "blocks" not in calls
    assert (await r.job(job.id)).error_code == "CANCELLED"


async def test_a_handler_that_swallows_its_cancellation_keeps_its_outcome(
    rig: Callable[..., Rig],
) -> None:
    """The stop was asked for, but the handler caught it and returned: what it returned is
    recorded, and the worker goes on (its task is not left cancelled)."""
    r = rig()
    job = await r.enqueue("stubborn")
    await settle()
    await r.queue.cancel(MS, job.id)
    await r.status_is(job.id, JobStatus.COMPLETED)
    assert (await r.job(job.id)).results == {"swallowed": "cancellation"}
    nxt = await r.enqueue("stuck")
    await until(lambda: calls.get("stuck") == 1)
    gate("stuck").set()
    await r.status_is(nxt.id, JobStatus.COMPLETED)


async def test_a_lost_lease_stops_the_handler_and_writes_nothing(rig: Callable[..., Rig]) -> None:
    """Another worker took the job: the handler is stopped, nothing is written over the new
    owner's state, and the metrics count the job lost."""
    r = rig()
    job = await r.enqueue("blocks")
    await until(lambda: calls.get("blocks") == 1)
    r.queue._jobs[job.id].lease_token = "someone-else"  # as if reclaimed and claimed again
    await r.tick_until(lambda: r.worker.active_jobs == 0)
    after = await r.job(job.id)
    assert after.status is JobStatus.PROCESSING and after.lease_token == "someone-else"
    assert r.metrics.finished == [("blocks", "lost")]


async def test_a_cancel_while_the_outcome_is_written_changes_nothing(
    rig: Callable[..., Rig],
) -> None:
    """A cancellation that arrives once the handler has returned is not a stop: the
    outcome being written stands."""
    r = rig()
    held = asyncio.Event()
    complete = r.queue.complete

    async def slow_complete(job: Job, results: Any, runtime_ms: float) -> None:
        await held.wait()
        await complete(job, results, runtime_ms)

    r.queue.complete = slow_complete  # type: ignore[method-assign]
    job = await r.enqueue("blocks")
    await until(lambda: calls.get("blocks") == 1)
    gate("blocks").set()
    await settle()  # the handler returned; its outcome waits for the store
    await r.queue.cancel(MS, job.id)
    r.clock.advance(1.1)  # a lease renewal reports the cancellation
    await settle()
    held.set()
    await r.status_is(job.id, JobStatus.COMPLETED)
    assert r.metrics.finished == [("blocks", "completed")]


async def test_a_cancelled_error_leaked_by_the_handler_is_a_handler_error(
    rig: Callable[..., Rig],
) -> None:
    """Nobody stopped the job: the CancelledError its handler let through fails it with
    HANDLER_ERROR, and the worker keeps running."""
    r = rig()
    job = await r.enqueue("leaks")
    await r.status_is(job.id, JobStatus.FAILED)
    failed = await r.job(job.id)
    assert failed.error_code == "HANDLER_ERROR"
    assert failed.error_message is not None
    assert failed.error_message.startswith("CancelledError raised by the handler")
    assert not r.task.done()


async def test_shutdown_puts_running_jobs_back_after_the_drain_deadline(
    rig: Callable[..., Rig],
) -> None:
    """On the fake clock: the drain waits its 30 s, then stops the handler; the job goes
    back to Ready with its attempt given back, counted released."""
    r = rig()
    job = await r.enqueue("blocks")
    await until(lambda: calls.get("blocks") == 1)
    r.worker.request_stop()
    await settle()
    await r.advance(29.5)
    assert not r.task.done()
    await r.advance(1)
    await asyncio.wait_for(r.task, 10)
    back = await r.job(job.id)
    assert (back.status, back.attempts, back.lease_token) == (JobStatus.READY, 0, None)
    assert r.metrics.finished == [("blocks", "released")]


async def test_a_retried_job_runs_again_when_it_is_due(rig: Callable[..., Rig]) -> None:
    """RetryJob(delay_seconds=30) with a one-hour polling interval: the worker does not
    run it before 30 s on its clock, and claims it when it is due without an enqueue."""
    r = rig()
    job = await r.enqueue("later")
    await until(lambda: calls.get("later") == 1)
    await settle()
    assert (await r.job(job.id)).status is JobStatus.READY
    await r.advance(29)
    assert calls["later"] == 1
    await r.status_is(job.id, JobStatus.COMPLETED)
    assert calls["later"] == 2
    assert (await r.job(job.id)).results == {"attempt": 2}


async def test_stopping_fails_every_watch_with_a_clear_signal(rig: Callable[..., Rig]) -> None:
    """request_stop: a caller waiting on watch() learns at once that the worker stops (it
    does not wait for the drain); a watch made afterwards fails the same way."""
    r = rig()
    job = await r.enqueue("blocks")
    await until(lambda: calls.get("blocks") == 1)
    fut = r.worker.watch(job.id)
    r.worker.request_stop()
    with pytest.raises(ShuttingDownError, match=f"will not finish job {job.id} now"):
        await fut
    r.worker.unwatch(job.id, fut)
    late = r.worker.watch(job.id)
    assert late.done()
    with pytest.raises(ShuttingDownError):
        late.result()
    r.worker.unwatch(job.id, late)
    assert not r.task.done()  # still draining: the job keeps running
    gate("blocks").set()
    await r.status_is(job.id, JobStatus.COMPLETED)


async def test_a_watch_dropped_unseen_after_a_stop_logs_nothing(
    rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    """unwatch marks a failed watch as seen: no 'exception was never retrieved' later."""
    r = rig()
    fut = r.worker.watch("some-job")
    r.worker.request_stop()
    r.worker.unwatch("some-job", fut)
    del fut
    with contextlib.suppress(Exception):
        import gc

        gc.collect()
    await settle()
    assert "never retrieved" not in caplog.text
