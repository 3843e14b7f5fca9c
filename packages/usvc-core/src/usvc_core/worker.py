"""The worker engine: claims jobs in batches up to its free slots, runs them concurrently
under a timeout and a lease, records their outcome, survives store outages, and drains on
shutdown without losing a job."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from logging import INFO
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context

from usvc_core.actions.registry import ActionDefinition, ActionRegistry
from usvc_core.errors import LeaseLostError
from usvc_core.execution import Outcome, execute_job, route, timeout_outcome
from usvc_core.health import HealthRegistry, Status
from usvc_core.jobs import NON_RETRYABLE_CODES, Job, JobStatus
from usvc_core.logging import is_enabled_for
from usvc_core.metrics import NullMetrics
from usvc_core.ports import JobQueue, Metrics
from usvc_core.resilience.retry import RetryPolicy

__all__ = ["QUEUE_CHECK", "UNKNOWN_ACTION_LABEL", "Worker", "WorkerConfig"]

QUEUE_CHECK = "job_queue"
#: The action name in metrics and span names for a job whose action is not registered.
UNKNOWN_ACTION_LABEL = "<unknown>"
#: The status a job is left in after an attempt with this outcome (``lost``: not known).
_STATUS_AFTER = {
    "completed": JobStatus.COMPLETED.value,
    "failed": JobStatus.FAILED.value,
    "retried": JobStatus.READY.value,
    "released": JobStatus.READY.value,
}
_log = structlog.get_logger("usvc.worker")
_RED_AFTER_FAILURES = 3


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    microservice: str
    max_concurrent: int = 10
    polling_interval: float = 5.0
    job_timeout: float = 300.0
    lease_seconds: float = 30.0
    shutdown_timeout: float = 60.0
    job_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(cap_seconds=300.0))
    retention_seconds: float = 0.0
    stats_interval: float = 15.0
    worker_id: str = ""

    def with_worker_id(self) -> WorkerConfig:
        if self.worker_id:
            return self
        wid = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return dataclasses.replace(self, worker_id=wid)


_RECORDING_BATCHES = 3  # see Worker._return_slot


@dataclass(slots=True, eq=False)
class _Running:
    job: Job
    phase: str = "run"  # run (its handler) -> record (writing its outcome)
    lost: bool = False
    timed_out: bool = False
    deadline: float = float("inf")  # loop time after which the watchdog cancels the handler
    task: asyncio.Task[None] | None = None
    slot_returned: bool = False  # its slot was handed on while its outcome is written


class Worker:
    """Polls one service's jobs from a :class:`~usvc_core.ports.JobQueue` and runs them."""

    def __init__(
        self,
        queue: JobQueue,
        actions: ActionRegistry,
        config: WorkerConfig,
        *,
        health: HealthRegistry | None = None,
        metrics: Metrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.queue = queue
        self.actions = actions
        self.config = config.with_worker_id()
        self.health = health if health is not None else HealthRegistry()
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        self._tracer = tracer
        self._running: dict[str, _Running] = {}
        self._recording = 0  # jobs in _running whose slot was handed on (see _return_slot)
        # Jobs writing their outcome that found every hand-on place taken: each takes over
        # the place of a recording job that finishes (see _finished).
        self._slot_queue: collections.deque[_Running] = collections.deque()
        self._to_release: list[Job] = []
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._queue_failures = 0
        self._outage_policy = RetryPolicy(
            max_attempts=1_000_000, base_seconds=0.2, cap_seconds=min(5.0, config.lease_seconds / 4)
        )
        self._background: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.health.register(QUEUE_CHECK, Status.GREEN, {"last_poll": "not yet"})
        queue.on_enqueue(self.notify)

    # --- control -----------------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        return self.config.worker_id

    @property
    def active_jobs(self) -> int:
        return len(self._running)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def notify(self) -> None:
        """A job was enqueued in this process: poll now instead of after the interval."""
        self._wake.set()

    def request_stop(self) -> None:
        """First call: stop claiming and drain. Second call: shorten the drain."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()

    def watch(self, job_id: str) -> asyncio.Future[None]:
        """A future resolved when this worker records a final outcome for ``job_id``.

        Jobs finished by other processes are not seen here; callers poll the queue as well.
        Call :meth:`unwatch` when done with it.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(fut)
        return fut

    def unwatch(self, job_id: str, fut: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            with contextlib.suppress(ValueError):
                waiters.remove(fut)
            if not waiters:
                del self._waiters[job_id]

    # --- main loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`request_stop`; then drain, release and return."""
        self._loop = asyncio.get_running_loop()
        self._background = [
            asyncio.create_task(self._every(self.config.lease_seconds / 3, self._extend_leases)),
            asyncio.create_task(self._every(self.config.lease_seconds / 4, self._reclaim)),
            # Sampled at once too: queue_depth is known from the first scrape, not 15 s later.
            asyncio.create_task(
                self._every(self.config.stats_interval, self._sample_stats, at_once=True)
            ),
            asyncio.create_task(self._every(self._watchdog_interval(), self._enforce_timeouts)),
        ]
        _log.info(
            "worker started",
            worker_id=self.worker_id,
            microservice=self.config.microservice,
            max_concurrent=self.config.max_concurrent,
            actions=self.actions.names,
        )
        try:
            await self._poll_loop()
        finally:
            await self._drain()
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            _log.info("worker stopped", worker_id=self.worker_id)

    async def _poll_loop(self) -> None:
        cfg = self.config
        while not self._stopping.is_set():
            free = cfg.max_concurrent - len(self._running) + self._recording
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()
            try:
                jobs = await self.queue.claim_and_start(
                    cfg.microservice, cfg.worker_id, free, cfg.lease_seconds
                )
            except Exception as exc:
                await self._queue_failed("claim", exc)
                continue
            self._queue_ok()
            if jobs:
                self.metrics.jobs_claimed(len(jobs))
                for job in jobs:
                    self._start(job)
            if len(jobs) >= free:
                # The queue may hold more: claim again as soon as a slot frees up.
                continue
            await self._idle(cfg.polling_interval)

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _start(self, job: Job) -> None:
        running = _Running(job)
        self._running[job.id] = running
        # Without a tracer the task runs the steps directly: no span, no extra frame per job.
        coro = self._job_task(running) if self._tracer is None else self._traced_job_task(running)
        # Eager: the job runs at once up to its first real wait (a job whose queue calls and
        # handler never wait finishes right here), sparing a trip through the loop per job.
        running.task = asyncio.Task(coro, loop=self._loop, name=f"job-{job.id}", eager_start=True)

    def _return_slot(self, running: _Running) -> None:
        """Hand a job's slot on once its handler is done, while its outcome is written.

        The slot bounds concurrent handlers, not writes: the next batch is claimed and runs
        while the queue commits this one's outcome (for a durable store, the next claim then
        overlaps this commit's fsync instead of waiting behind it). The job stays owned
        (lease renewed, drained) until it is recorded. At most three batches' worth of
        jobs (3 x ``max_concurrent``) record on returned slots at once: room for a batch
        whose commit is being made durable, one whose outcomes go out with the next claim,
        and one finishing meanwhile, so that claims keep travelling with commits (measured:
        with room for one batch, every other claim waited for a commit of its own); a slow
        store still slows the claims.
        """
        if self._recording < self.config.max_concurrent * _RECORDING_BATCHES:
            running.slot_returned = True
            self._recording += 1
            self._slot_freed.set()
        else:
            self._slot_queue.append(running)

    def _finished(self, running: _Running) -> None:
        if self._running.pop(running.job.id, None) is not None and running.slot_returned:
            # Its place passes to a job that is recording on its own slot: without this, a
            # batch that started while the previous one was recording would keep its slots
            # until its own commit, and every other claim would wait for a commit instead of
            # travelling with it.
            while self._slot_queue:
                heir = self._slot_queue.popleft()
                if not heir.slot_returned and heir.job.id in self._running:
                    heir.slot_returned = True
                    break
            else:
                self._recording -= 1
        self._slot_freed.set()

    # --- one job ---------------------------------------------------------------------------

    async def _traced_job_task(self, running: _Running) -> None:
        assert self._tracer is not None
        job = running.job
        carrier = job.trace_context
        with self._tracer.start_as_current_span(
            f"job {self._known_action(job.action)}",
            # The producer's span when the job carries one; never the worker's own context.
            context=propagate.extract(carrier) if carrier else Context(),
            kind=trace.SpanKind.CONSUMER,
            attributes={"token": job.token, "job.id": job.id, "job.action": job.action},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            await self._job_task(running, span)

    def _known_action(self, action: str) -> str:
        """The action for metric labels and span names: a registered name, else a fixed
        placeholder (payloads are user input; labels must stay a small fixed set)."""
        return action if action in self.actions else UNKNOWN_ACTION_LABEL

    async def _job_task(self, running: _Running, span: trace.Span | None = None) -> None:
        job = running.job
        # Bound in this task's own context: the handler, services it calls and to_thread
        # threads see it; the next job's task starts from a fresh copy.
        structlog.contextvars.bind_contextvars(token=job.token, job_id=job.id, action=job.action)
        action = self._known_action(job.action)
        started = time.perf_counter()
        outcome: Outcome | None = None
        kind = "lost"
        try:
            self.metrics.job_started(action)
            routed = route(job, self.actions)
            outcome = (
                routed if isinstance(routed, Outcome) else await self._execute(running, routed)
            )
            running.phase = "record"
            self._return_slot(running)
            kind = await self._record(running, outcome)
            self.metrics.job_finished(action, kind, time.perf_counter() - started)
        except asyncio.CancelledError:
            # Cancelled while its handler ran: the job goes back to Ready (released at the
            # end of the drain). While recording: the outcome may not be written; the lease
            # expires and the job runs again.
            lost = running.lost or running.phase == "record"
            kind = "lost" if lost else "released"
            self.metrics.job_finished(action, kind, time.perf_counter() - started)
            if not lost:
                self._to_release.append(job)
        finally:
            self._finished(running)
            if span is not None:
                _describe_span(span, job, outcome, kind)

    async def _execute(self, running: _Running, definition: ActionDefinition) -> Outcome:
        # One watchdog enforces every job's timeout (see _enforce_timeouts): arming an
        # asyncio timer per job costs more than the rest of a small job's overhead.
        timeout = definition.options.timeout_seconds or self.config.job_timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        running.deadline = started + timeout
        try:
            return await execute_job(
                running.job, definition, self.config.job_timeout, enforce_timeout=False
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not running.timed_out or task is None:
                raise
            task.uncancel()
            return timeout_outcome(definition, timeout, (loop.time() - started) * 1000)

    def _watchdog_interval(self) -> float:
        timeouts = [self.config.job_timeout] + [
            d.options.timeout_seconds for d in self.actions if d.options.timeout_seconds
        ]
        return min(1.0, max(0.005, min(timeouts) / 4))

    async def _enforce_timeouts(self) -> None:
        now = asyncio.get_running_loop().time()
        for running in self._running.values():
            if running.phase == "run" and not running.timed_out and running.deadline <= now:
                running.timed_out = True
                if running.task is not None:
                    running.task.cancel()

    async def _record(self, running: _Running, outcome: Outcome) -> str:
        """Write the outcome, retrying through store outages; returns the metrics outcome."""
        job = running.job
        retry_delay = 0.0
        if outcome.ok:
            kind = "completed"
        elif (
            outcome.retry
            and outcome.error_code not in NON_RETRYABLE_CODES
            and job.attempts < job.max_attempts
        ):
            kind = "retried"
            if outcome.retry_delay is not None:
                retry_delay = outcome.retry_delay
            else:
                definition = self.actions.get(job.action)
                policy = (
                    definition.options.retry_policy if definition else None
                ) or self.config.job_retry
                retry_delay = policy.delay(job.attempts)
        else:
            kind = "failed"
        failures = 0
        while True:
            try:
                if kind == "completed":
                    await self.queue.complete(job, outcome.results, outcome.runtime_ms)
                elif kind == "retried":
                    await self.queue.retry(
                        job,
                        str(outcome.error_code),
                        outcome.error_message or "",
                        retry_delay,
                        outcome.runtime_ms,
                    )
                else:
                    await self.queue.fail(
                        job,
                        str(outcome.error_code),
                        outcome.error_message or "",
                        outcome.runtime_ms,
                    )
                break
            except LeaseLostError:
                _log.warning("lease lost; outcome discarded (another worker owns the job now)")
                return "lost"
            except Exception as exc:
                failures += 1
                if self._hurry.is_set() and failures > 3:
                    _log.error("could not record outcome before shutdown; the lease will expire")
                    return "lost"
                await self._queue_failed(f"record_{kind}", exc)
        if failures or self._queue_failures:
            self._queue_ok()
        if kind == "completed":
            if is_enabled_for(INFO):  # the one per-job line: skip it cheaply when filtered
                _log.info("job completed", runtime_ms=round(outcome.runtime_ms, 3))
        else:
            _log.warning(
                "job will be retried" if kind == "retried" else "job failed",
                error_code=str(outcome.error_code),
                error_message=outcome.error_message,
                attempt=job.attempts,
            )
        if kind == "retried":
            # Poll again when the retry is due instead of waiting for the next interval.
            asyncio.get_running_loop().call_later(retry_delay, self.notify)
        elif self._waiters:
            self._resolve_waiters(job.id)
        return kind

    def _resolve_waiters(self, job_id: str) -> None:
        for fut in self._waiters.pop(job_id, ()):
            if not fut.done():
                fut.set_result(None)

    # --- health of the store -----------------------------------------------------------------

    def _queue_ok(self) -> None:
        if self._queue_failures:
            _log.info("job queue reachable again", after_failures=self._queue_failures)
            self._queue_failures = 0
        check = self.health.get(QUEUE_CHECK)
        if (
            check is None
            or check.status is not Status.GREEN
            or check.details.get("last_poll") != "ok"
        ):
            self.health.update(QUEUE_CHECK, Status.GREEN, {"last_poll": "ok"})

    async def _queue_failed(
        self, operation: str, exc: BaseException, *, sleep: bool = True
    ) -> None:
        self._queue_failures += 1
        self.metrics.queue_error(operation)
        status = Status.RED if self._queue_failures >= _RED_AFTER_FAILURES else Status.YELLOW
        reason = f"{type(exc).__name__}: {exc}"[:500]
        self.health.update(
            QUEUE_CHECK,
            status,
            {
                "last_poll": "error",
                "operation": operation,
                "error": reason,
                "consecutive_failures": self._queue_failures,
            },
        )
        _log.warning(
            "job queue operation failed",
            operation=operation,
            error=reason,
            consecutive_failures=self._queue_failures,
        )
        if sleep:
            delay = self._outage_policy.delay(min(self._queue_failures, 10))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.05)):
                    await self._hurry.wait()

    # --- background duties -----------------------------------------------------------------

    async def _every(
        self,
        seconds: float,
        duty: Callable[[], Coroutine[Any, Any, None]],
        *,
        at_once: bool = False,
    ) -> None:
        first = at_once
        while True:
            if not first:
                await asyncio.sleep(seconds * random.uniform(0.8, 1.0))
            first = False
            try:
                await duty()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("background duty failed", duty=duty.__name__, error=repr(exc))

    async def _extend_leases(self) -> None:
        owned = [r.job for r in self._running.values() if not r.lost]
        if not owned:
            return
        try:
            renewal = await self.queue.extend_leases(owned, self.config.lease_seconds)
        except Exception as exc:
            await self._queue_failed("extend_leases", exc, sleep=False)
            return
        for job_id in renewal.lost:
            running = self._running.get(job_id)
            if running is None or running.lost:
                continue
            running.lost = True
            _log.warning(
                "lease lost while running; cancelling the handler",
                job_id=job_id,
                token=running.job.token,
            )
            if running.phase == "run" and running.task is not None:
                running.task.cancel()

    async def _reclaim(self) -> None:
        try:
            result = await self.queue.reclaim_expired(self.config.microservice)
        except Exception as exc:
            await self._queue_failed("reclaim_expired", exc, sleep=False)
            return
        if len(result):
            self.metrics.jobs_reclaimed(len(result.requeued), len(result.failed))
            _log.warning(
                "reclaimed jobs with expired leases",
                requeued=len(result.requeued),
                failed=len(result.failed),
            )
            self.notify()
        if self.config.retention_seconds > 0:
            purged = await self.queue.purge(self.config.microservice, self.config.retention_seconds)
            if purged:
                _log.info("purged finished jobs", count=purged)

    async def _sample_stats(self) -> None:
        try:
            stats = await self.queue.stats(self.config.microservice)
        except Exception as exc:
            await self._queue_failed("stats", exc, sleep=False)
            return
        self.metrics.queue_stats(stats)

    # --- shutdown ------------------------------------------------------------------------------

    async def _drain(self) -> None:
        running = [r.task for r in self._running.values() if r.task is not None]
        if running:
            _log.info(
                "draining running jobs",
                count=len(running),
                timeout_seconds=self.config.shutdown_timeout,
            )
            hurry: asyncio.Future[Any] = asyncio.ensure_future(self._hurry.wait())
            done_all: asyncio.Future[Any] = asyncio.gather(*running, return_exceptions=True)
            await asyncio.wait(
                [hurry, done_all],
                timeout=self.config.shutdown_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            hurry.cancel()
        # Whatever still runs its handler is cancelled and goes back to Ready.
        for r in list(self._running.values()):
            if r.task is not None and r.phase == "run":
                r.task.cancel()
        leftovers = [r.task for r in self._running.values() if r.task is not None]
        if leftovers:
            # Tasks still recording an outcome get a short grace, then they are abandoned
            # (their lease expires and the job runs again elsewhere).
            self._hurry.set()
            _, pending = await asyncio.wait(leftovers, timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        await self._release_leftovers()

    async def _release_leftovers(self) -> None:
        if not self._to_release:
            return
        jobs, self._to_release = self._to_release, []
        for attempt in range(5):
            try:
                count = await self.queue.release(jobs)
            except Exception as exc:
                _log.warning("release failed", error=repr(exc), attempt=attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            self.metrics.jobs_released(count)
            _log.info("released unfinished jobs back to Ready", count=count)
            return
        _log.error("could not release jobs; their leases will expire", count=len(jobs))


def _describe_span(span: trace.Span, job: Job, outcome: Outcome | None, kind: str) -> None:
    """Final attributes and status of a job's span (status left unset on success, as the
    OpenTelemetry guidance for instrumentation asks)."""
    span.set_attribute("job.attempt", job.attempts)
    span.set_attribute("job.outcome", kind)
    status = _STATUS_AFTER.get(kind)
    if status is not None:
        span.set_attribute("job.status", status)
    if outcome is not None and not outcome.ok:
        span.set_attribute("job.error_code", str(outcome.error_code))
        span.set_status(trace.StatusCode.ERROR, outcome.error_message or "")
    elif kind == "lost":
        span.set_status(trace.StatusCode.ERROR, "job lost")
