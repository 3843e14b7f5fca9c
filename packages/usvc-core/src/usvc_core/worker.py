"""The worker engine: claims jobs in batches up to its free slots, runs them concurrently
under a timeout and a lease, records their outcome, survives store outages, and drains on
shutdown without losing a job."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import heapq
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from logging import INFO
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context

from usvc_core.actions.registry import ActionRegistry
from usvc_core.adapter_support.stats import check_count_limit
from usvc_core.clock import SystemClock
from usvc_core.decision import COMPLETED, Decision, Retry, decide
from usvc_core.errors import JobLockedError, LeaseLostError, ShuttingDownError
from usvc_core.execution import (
    Outcome,
    cancelled_outcome,
    handler_failed,
    handler_kwargs,
    handler_returned,
    route,
    timeout_outcome,
)
from usvc_core.fleet import FleetMember, show_paused
from usvc_core.health import HealthRegistry, Status
from usvc_core.jobs import Job, JobStatus
from usvc_core.logging import bind_job_context, is_enabled_for, log_info
from usvc_core.metrics import NullMetrics
from usvc_core.ports import Clock, FleetAdmin, JobQueue, Metrics, ReclaimResult, WorkerRecord
from usvc_core.resilience.retry import RetryPolicy

__all__ = [
    "OUTCOMES_PER_SLOT",
    "QUEUE_CHECK",
    "UNKNOWN_ACTION_LABEL",
    "CancelReason",
    "Worker",
    "WorkerConfig",
]

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
_RECORD_GRACE_SECONDS = 5.0  # how long the drain waits for outcomes still being written


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
    #: Where each count of the statistics sample stops (``queue.stats(count_limit=...)``,
    #: >= 1): its cost stays flat at any depth, and a count at the limit means at least that
    #: many (``queue_depth_capped``). None counts exactly (every Ready row, every 15 s, per
    #: worker).
    stats_count_limit: int | None = 10_000
    worker_id: str = ""
    #: Heartbeat of this worker's record in the store (0: none; the queue must implement
    #: FleetAdmin). Two missed heartbeats make it gone: its jobs go to other workers.
    heartbeat_seconds: float = 0.0
    version: str = "0.0.0"  #: the service's version, shown in the worker's record

    def __post_init__(self) -> None:
        # Refused here, not at every sample: a bad limit would fail each one as a queue error.
        check_count_limit(self.stats_count_limit)

    def with_worker_id(self) -> WorkerConfig:
        if self.worker_id:
            return self
        wid = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return dataclasses.replace(self, worker_id=wid)


class CancelReason(Enum):
    """Why the worker stops a job's handler: exactly one, recorded on the job before its
    task is cancelled; the job task turns it into what happens to the job."""

    SHUTDOWN = "shutdown"  #: the drain's deadline passed: back to Ready, no attempt spent
    TIMEOUT = "timeout"  #: the handler ran past its timeout: a TIMEOUT outcome
    LEASE_LOST = "lease_lost"  #: another worker owns the job now: nothing is written
    OPERATOR_CANCEL = "operator_cancel"  #: an operator cancelled it: Failed, CANCELLED


#: How many jobs may be writing their outcome per handler slot. A job's handler slot frees
#: as soon as its handler returns, so the next claim runs while outcomes are written (a
#: store that commits writes in groups then sends a claim with each commit); the bound
#: makes a slow or stuck store stop the claims. It must cover what one durable flush
#: carries: at 3 per slot, a 4 ms fsync held a SQLite drain to about half the rate of the
#: same design without a bound (docs/benchmarks.md); at 10 per slot the flush, not the
#: bound, sets the pace.
OUTCOMES_PER_SLOT = 10

_NEVER = float("inf")


class _JobState:
    """One owned job's state, made by ``Worker._start``, which sets every field (no
    ``__init__`` frame). Slots, no class-level defaults: CPython 3.12 specialises no access
    to an attribute that has a class-level default (half this object's per-job cost)."""

    __slots__ = ("cancel_reason", "deadline", "job", "lost", "recording", "task")

    job: Job
    task: asyncio.Task[None] | None
    deadline: float  # clock time after which the watchdog stops the handler
    recording: bool  # its handler is done; its outcome is being written
    lost: bool  # its lease is gone: no more renewals
    cancel_reason: CancelReason | None


class Worker:
    """Polls one service's jobs from a :class:`~usvc_core.ports.JobQueue` and runs them.

    ``clock`` times everything the worker waits for (idle polls, retry wake-ups,
    background duties, outage backoff, job timeouts, the drain); tests pass a fake one.
    """

    def __init__(
        self,
        queue: JobQueue,
        actions: ActionRegistry,
        config: WorkerConfig,
        *,
        health: HealthRegistry | None = None,
        metrics: Metrics | None = None,
        tracer: trace.Tracer | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.queue = queue
        self.actions = actions
        self.config = config.with_worker_id()
        self.health = health if health is not None else HealthRegistry()
        self.metrics = metrics if metrics is not None else NullMetrics()
        self.clock: Clock = clock if clock is not None else SystemClock()
        # Read once per job (its deadline): the system clock's reading without the method's
        # frame; any other clock (a fake one in tests) is asked itself.
        self._monotonic: Callable[[], float] = (
            time.monotonic if type(self.clock) is SystemClock else self.clock.monotonic
        )
        self._tracer = tracer
        self._jobs: dict[str, _JobState] = {}  # owned: handler running or outcome being written
        self._handlers = 0  # jobs of _jobs whose handler runs
        self._to_release: list[Job] = []
        self._retry_due: list[float] = []  # heap: clock times at which retried jobs are due
        self._wake = asyncio.Event()
        self._max_running: dict[str, int] | None = None  # set by run()
        self._slot_freed = asyncio.Event()
        # The poll loop waits for a free slot: only then does a job's end set the event
        # (asyncio.Event.set is a Python call; most jobs end while nobody waits).
        self._slot_awaited = False
        # Held by each claim round (the poll loop's or start_due_jobs'): no two claims in
        # flight, so neither claims past the free slots it counted.
        self._claim_lock = asyncio.Lock()
        self._idle_waiting = False  # the poll loop waits in _idle (nothing in flight)
        self._job_context = contextvars.copy_context()  # set again when the poll loop starts
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._queue_failures = 0
        self._outage_policy = RetryPolicy(
            max_attempts=1_000_000, base_seconds=0.2, cap_seconds=min(5.0, config.lease_seconds / 4)
        )
        self._background: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._name_tasks = False
        self.health.register(QUEUE_CHECK, Status.GREEN, {"last_poll": "not yet"})
        queue.on_enqueue(self.notify)
        self._started_at = self.clock.now()
        self._fleet: FleetMember | None = None
        if self.config.heartbeat_seconds > 0 and isinstance(queue, FleetAdmin):
            self._fleet = FleetMember(
                queue,
                self._worker_record,
                heartbeat_seconds=self.config.heartbeat_seconds,
                clock=self.clock,
                health=self.health,
                renew_leases=self._extend_leases,
                on_reclaimed=self._reclaimed,
                on_error=lambda operation, exc: self._queue_failed(operation, exc, sleep=False),
            )

    # --- control -----------------------------------------------------------------------------

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # What each job reports to: None for the do-nothing NullMetrics itself (not a
        # subclass), whose two calls per job would record nothing.
        self._job_metrics: Metrics | None = None if type(metrics) is NullMetrics else metrics

    @property
    def worker_id(self) -> str:
        return self.config.worker_id

    @property
    def active_jobs(self) -> int:
        """Jobs this worker owns: running their handler or writing their outcome."""
        return len(self._jobs)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def notify(self) -> None:
        """A job was enqueued in this process: poll now instead of after the interval."""
        self._wake.set()

    def request_stop(self) -> None:
        """First call: stop claiming and drain; every :meth:`watch` future fails with
        :class:`~usvc_core.errors.ShuttingDownError` (nobody waits on the drain). Second
        call: shorten the drain."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()
        waiters, self._waiters = self._waiters, {}
        for job_id, futures in waiters.items():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(_shutting_down(job_id))

    def watch(self, job_id: str) -> asyncio.Future[None]:
        """A future resolved when this worker records a final outcome for ``job_id``, or
        failed with :class:`~usvc_core.errors.ShuttingDownError` once the worker stops.

        Jobs finished by other processes are not seen here; callers poll the queue as well.
        Call :meth:`unwatch` when done with it.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._stopping.is_set():
            fut.set_exception(_shutting_down(job_id))
        else:
            self._waiters.setdefault(job_id, []).append(fut)
        return fut

    def unwatch(self, job_id: str, fut: asyncio.Future[None]) -> None:
        if fut.done() and not fut.cancelled():
            fut.exception()  # seen: no "exception was never retrieved" at garbage collection
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
        self._name_tasks = self._loop.get_debug()
        # Fleet-wide limits of @action(max_running=...): the queue enforces them in the claim.
        self._max_running = self.actions.max_running_limits() or None
        self._background = [
            asyncio.create_task(self._every(self.config.lease_seconds / 3, self._extend_leases)),
            asyncio.create_task(self._every(self.config.lease_seconds / 4, self._reclaim)),
            # Sampled at once too: queue_depth is known from the first scrape, not 15 s later.
            asyncio.create_task(
                self._every(self.config.stats_interval, self._sample_stats, at_once=True)
            ),
            asyncio.create_task(self._every(self._watchdog_interval(), self._enforce_timeouts)),
        ]
        if self._fleet is not None:
            beat = self._fleet.heartbeat_seconds
            self._background += [
                asyncio.create_task(self._every(beat, self._fleet.beat, at_once=True)),
                asyncio.create_task(self._every(beat / 2, self._fleet.reclaim)),
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
            if self._fleet is not None:
                await self._fleet.leave()
            _log.info("worker stopped", worker_id=self.worker_id)

    def _free_slots(self) -> int:
        """Free handler slots, unless too many outcomes are still being written."""
        most = self.config.max_concurrent
        return min(most - self._handlers, most * (1 + OUTCOMES_PER_SLOT) - len(self._jobs))

    async def _poll_loop(self) -> None:
        self._job_context = contextvars.copy_context()  # what every job's task starts from
        while not self._stopping.is_set():
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                self._slot_awaited = True
                try:
                    await self._slot_freed.wait()
                finally:
                    self._slot_awaited = False
                continue
            self._wake.clear()
            claimed_at = self.clock.monotonic()
            async with self._claim_lock:
                # Counted again: a start_due_jobs round may have taken slots meanwhile.
                free = self._free_slots()
                if free <= 0:
                    continue
                try:
                    jobs = await self._claim(free)
                except Exception as exc:
                    await self._queue_failed("claim", exc)
                    continue
            if len(jobs) >= free:
                # The queue may hold more: claim again as soon as a slot frees up.
                continue
            self._idle_waiting = True
            try:
                await self._idle(claimed_at)
            finally:
                self._idle_waiting = False

    async def _claim(self, free: int) -> list[Job]:
        """One claim of up to ``free`` jobs, started at once (under ``_claim_lock``)."""
        cfg = self.config
        jobs = await self.queue.claim_and_start(
            cfg.microservice, cfg.worker_id, free, cfg.lease_seconds, max_running=self._max_running
        )
        self._queue_ok()
        if jobs:
            self._metrics.jobs_claimed(len(jobs))
            self._start(jobs)
        return jobs

    def start_due_jobs(self) -> asyncio.Future[None] | None:
        """Claim and start due jobs now, when the poll loop is idle with free slots: what its
        wake-up would do one event-loop step later. A caller in this process that waits for
        a job it just enqueued (``POST /dev/job``) saves that step: with a queue whose claim
        never suspends (in-memory), the job runs, and may finish, before this returns.

        The claim runs in a task of its own, from the worker's context, so that a cancelled
        caller never drops claimed jobs; await the returned task (None: nothing to do, the
        poll loop claims as usual). A failed claim is left to the poll loop to report.
        """
        if not self._idle_waiting or self._claim_lock.locked() or self._stopping.is_set():
            return None
        free = self._free_slots()
        if free <= 0:
            return None
        return asyncio.Task(
            self._assisted_claim(free),
            loop=self._loop,
            name="usvc-claim-now",
            context=self._job_context.copy(),
            eager_start=True,
        )

    async def _assisted_claim(self, free: int) -> None:
        async with self._claim_lock:
            # Cleared before the claim, as the poll loop does: this claim sees every job
            # enqueued so far, and one enqueued during it sets the wake again.
            self._wake.clear()
            try:
                jobs = await self._claim(free)
            except Exception:
                self._wake.set()  # the poll loop claims again, and reports the failure
                return
            if len(jobs) >= free:
                self._wake.set()  # the queue may hold more: the poll loop claims as usual

    async def _idle(self, claimed_at: float) -> None:
        """Until an enqueue or a stop wakes the worker, the next retried job is due, or the
        polling interval passes."""
        seconds = self.config.polling_interval
        due = self._retry_due
        while due and due[0] <= claimed_at:
            heapq.heappop(due)  # due before the last claim: that claim has seen them
        if due:
            seconds = min(seconds, due[0] - self.clock.monotonic())
        if type(self.clock) is SystemClock:
            # The real clock: the poll loop waits on the event itself under one timer, so an
            # enqueue wakes it in one step of the event loop; _until's two helper tasks and
            # their cancellation cost three more per idle wait (a dev job pays them all).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
                    while not self._wake.is_set():
                        # Woken by an enqueue whose jobs a start_due_jobs claim took since
                        # (it cleared the wake): nothing left to claim, wait on.
                        await self._wake.wait()
            return
        await self._until(seconds, self._wake.wait())

    async def _until(self, seconds: float, *waits: Coroutine[Any, Any, Any]) -> None:
        """Return once one of ``waits`` returns or ``seconds`` pass on the worker's clock."""
        tasks = [asyncio.ensure_future(self.clock.sleep(seconds))]
        tasks += [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    def _start(self, jobs: list[Job]) -> None:
        """Own ``jobs`` and start a task for each (what is the same for every job of the
        claim is looked up once)."""
        owned = self._jobs
        loop = self._loop
        # Without a tracer the task runs the steps directly: no span, no extra frame per job.
        run = self._run_job if self._tracer is None else self._traced_run_job
        name_tasks = self._name_tasks
        for job in jobs:
            state = _JobState()
            state.job = job
            state.task = state.cancel_reason = None
            state.deadline = _NEVER
            state.recording = state.lost = False
            owned[job.id] = state
            self._handlers += 1  # per job, as its task starts: a job may end right here
            # Eager: the job runs at once up to its first real wait (a job whose queue
            # calls and handler never wait finishes right here), sparing a trip through
            # the loop per job. Named `job-<id>` only in asyncio's debug mode, where task
            # dumps are read: the name costs about 1.5 µs per job (a tenth of a no-op
            # job's whole cost in memory).
            name = f"job-{job.id}" if name_tasks else None
            state.task = asyncio.Task(run(state), loop=loop, name=name, eager_start=True)

    def _cancel(self, state: _JobState, reason: CancelReason) -> bool:
        """Stop a job's handler for ``reason``; False (nothing done) when its handler is
        done already or it is being stopped for another reason."""
        if state.recording or state.cancel_reason is not None or state.task is None:
            return False
        state.cancel_reason = reason
        state.task.cancel()
        return True

    # --- one job ---------------------------------------------------------------------------

    async def _traced_run_job(self, state: _JobState) -> None:
        assert self._tracer is not None
        job = state.job
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
            await self._run_job(state, span)

    def _known_action(self, action: str) -> str:
        """The action for metric labels and span names: a registered name, else a fixed
        placeholder (payloads are user input; labels must stay a small fixed set)."""
        return action if action in self.actions else UNKNOWN_ACTION_LABEL

    async def _run_job(self, state: _JobState, span: trace.Span | None = None) -> None:
        """One job from claim to recorded outcome: route, run the handler, decide, write."""
        job = state.job
        # Bound in this task's own context: the handler, services it calls and to_thread
        # threads see it; the next job's task starts from a fresh copy.
        bind_job_context(job.token, job.id, job.action)
        started = time.perf_counter()
        outcome: Outcome | None = None  # None after the handler: completed, no results
        success_ms = 0.0
        kind = "lost"
        policy = self.config.job_retry
        routed = route(job, self.actions)
        # The metrics label: the job's action when route found it registered (no second
        # registry lookup), else a registered name or the placeholder.
        action = (
            job.action
            if not isinstance(routed, Outcome) and routed.name == job.action
            else self._known_action(job.action)
        )
        metrics = self._job_metrics
        try:
            if metrics is not None:
                metrics.job_started(action)
            if isinstance(routed, Outcome):
                outcome = routed
            else:
                policy = routed.options.retry_policy or policy
                timeout = routed.options.timeout_seconds or self.config.job_timeout
                state.deadline = self._monotonic() + timeout
                # execute_job's steps, inline (one coroutine less per job); the watchdog
                # enforces the timeout.
                kwargs = handler_kwargs(job, routed, started)
                if isinstance(kwargs, Outcome):
                    outcome = kwargs
                else:
                    stopped = False
                    try:
                        result = await routed.handler(**kwargs)
                    except asyncio.CancelledError as exc:
                        task = asyncio.current_task()
                        if task is not None and not task.cancelling():
                            # Nobody cancelled this job: the handler let through the
                            # CancelledError of something it awaited (its own failure).
                            outcome = handler_failed(exc, routed, started)
                        else:
                            # The one place where a stop of this job becomes what happens
                            # to it.
                            stopped = True
                            runtime_ms = (time.perf_counter() - started) * 1000
                            match state.cancel_reason:
                                case CancelReason.TIMEOUT:
                                    _uncancel()
                                    outcome = timeout_outcome(routed, timeout, runtime_ms)
                                case CancelReason.OPERATOR_CANCEL:
                                    _uncancel()
                                    _log.warning("job cancelled by an operator; handler stopped")
                                    outcome = cancelled_outcome(runtime_ms)
                                case CancelReason.LEASE_LOST:
                                    return  # another worker owns it: nothing to write
                                case CancelReason.SHUTDOWN | None:  # None: cancelled from outside
                                    kind = "released"
                                    self._to_release.append(job)  # released after the drain
                                    return
                    except (Exception, SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
                        outcome = handler_failed(exc, routed, started)
                    else:
                        runtime_s = time.perf_counter() - started
                        if result is None and runtime_s <= timeout:
                            # handler_returned()'s common case: no Outcome is built for it
                            # (None stands for "completed, no results" below).
                            success_ms = runtime_s * 1000
                        else:
                            outcome = handler_returned(result, timeout, started)
                    if state.cancel_reason is not None and not stopped:
                        # The handler swallowed its stop and returned: its outcome stands.
                        _uncancel()
            state.recording = True
            self._handlers -= 1
            if self._slot_awaited:
                self._slot_freed.set()
            # decide()'s first rule, without its call for the common case
            if outcome is None:
                decision: Decision = COMPLETED
                results = None
            else:
                success_ms = outcome.runtime_ms
                results = outcome.results
                decision = COMPLETED if outcome.error_code is None else decide(outcome, job, policy)
            if decision is COMPLETED:
                # The common case written directly (one coroutine less than _record); a
                # failed write goes through _record's loop, which retries it.
                try:
                    await self.queue.complete(job, results, success_ms)
                except Exception as exc:
                    if outcome is None:
                        outcome = Outcome(runtime_ms=success_ms)
                    kind = await self._record(job, outcome, decision, exc)
                else:
                    kind = "completed"
                    self._completed(job.id, success_ms)
            else:
                assert outcome is not None  # only a written Outcome decides otherwise
                kind = await self._record(job, outcome, decision)
        except asyncio.CancelledError:
            # Only the drain stops a job that writes its outcome: it may not be written;
            # the lease expires and the job runs again.
            kind = "lost"
        finally:
            if metrics is not None:
                metrics.job_finished(action, kind, time.perf_counter() - started)
            if not state.recording:
                self._handlers -= 1
            if self._jobs.get(job.id) is state:  # not a later claim of the same job
                del self._jobs[job.id]
            if self._slot_awaited:
                self._slot_freed.set()
            if self._max_running is not None and job.action in self._max_running:
                self._wake.set()  # room under the limit: its waiting jobs may be claimed now
            if span is not None:
                _describe_span(span, job, outcome, kind)

    def _watchdog_interval(self) -> float:
        timeouts = [self.config.job_timeout] + [
            d.options.timeout_seconds for d in self.actions if d.options.timeout_seconds
        ]
        return min(1.0, max(0.005, min(timeouts) / 4))

    async def _enforce_timeouts(self) -> None:
        # One watchdog for every job: arming a timer per job costs more than the rest of a
        # small job's overhead.
        now = self.clock.monotonic()
        for state in self._jobs.values():
            if state.deadline <= now:
                self._cancel(state, CancelReason.TIMEOUT)

    async def _record(
        self,
        job: Job,
        outcome: Outcome,
        decision: Decision,
        failed: Exception | None = None,
    ) -> str:
        """Write the decision, retrying through store outages; returns the metrics outcome.
        ``failed``: what a first write made by the caller raised (handled as if here)."""
        failures = locked = 0
        if decision is COMPLETED:
            kind = "completed"
        elif isinstance(decision, Retry):
            kind = "retried"
        else:
            kind = "failed"
        while True:
            if failed is not None:
                error, failed = failed, None
            else:
                try:
                    await self._write(job, outcome, decision)
                    break
                except Exception as exc:
                    error = exc
            if isinstance(error, LeaseLostError):
                _log.warning("lease lost; outcome discarded (another worker owns the job now)")
                return "lost"
            if isinstance(error, JobLockedError):
                # The store is up; another session holds the row. Not an outage: health is
                # left alone, the lease is still renewed, and the write is repeated.
                locked += 1
                if self._hurry.is_set() and locked > 3:
                    _log.error("job row still locked at shutdown; the lease will expire")
                    return "lost"
                _log.warning(
                    "job row locked by another session; writing the outcome again shortly",
                    error=str(error)[:500],
                    attempt=locked,
                )
                await self._back_off(locked)
            else:
                failures += 1
                if self._hurry.is_set() and failures > 3:
                    _log.error("could not record outcome before shutdown; the lease will expire")
                    return "lost"
                await self._queue_failed(f"record_{kind}", error)
        self._recorded(job, outcome, decision, kind, failures=failures)
        return kind

    async def _write(self, job: Job, outcome: Outcome, decision: Decision) -> None:
        if decision is COMPLETED:
            await self.queue.complete(job, outcome.results, outcome.runtime_ms)
        elif isinstance(decision, Retry):
            await self.queue.retry(
                job,
                str(outcome.error_code),
                outcome.error_message or "",
                decision.delay,
                outcome.runtime_ms,
            )
        else:
            await self.queue.fail(
                job, str(outcome.error_code), outcome.error_message or "", outcome.runtime_ms
            )

    def _recorded(
        self, job: Job, outcome: Outcome, decision: Decision, kind: str, *, failures: int
    ) -> None:
        """What follows a written outcome: health, its log line, the retry's wake-up, the
        watchers of the job."""
        if failures or self._queue_failures:
            self._queue_ok()
        if kind == "completed":
            self._completed(job.id, outcome.runtime_ms)
            return
        _log.warning(
            "job will be retried" if kind == "retried" else "job failed",
            error_code=str(outcome.error_code),
            error_message=outcome.error_message,
            attempt=job.attempts,
        )
        if isinstance(decision, Retry):
            # Poll again when the retry is due instead of waiting for the next interval;
            # the wake makes an idle poll loop plan its sleep again.
            heapq.heappush(self._retry_due, self.clock.monotonic() + decision.delay)
            self._wake.set()
        elif job.id in self._waiters:
            self._resolve_waiters(job.id)

    def _completed(self, job_id: str, runtime_ms: float) -> None:
        """What follows a written completion: health, its log line, the job's watchers."""
        if self._queue_failures:
            self._queue_ok()
        if is_enabled_for(INFO):  # the one per-job line: skip it cheaply when filtered
            log_info(_log, "job completed", runtime_ms=round(runtime_ms, 3))
        if job_id in self._waiters:
            self._resolve_waiters(job_id)

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
            await self._back_off(self._queue_failures)

    async def _back_off(self, failures: int) -> None:
        """Wait before trying the store again (jittered, growing with ``failures``); a
        second stop signal cuts it short."""
        delay = self._outage_policy.delay(min(failures, 10))
        await self._until(max(delay, 0.05), self._hurry.wait())

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
                await self.clock.sleep(seconds * random.uniform(0.8, 1.0))
            first = False
            try:
                await duty()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("background duty failed", duty=duty.__name__, error=repr(exc))

    async def _extend_leases(self) -> None:
        owned = [state.job for state in self._jobs.values() if not state.lost]
        if not owned:
            return
        try:
            renewal = await self.queue.extend_leases(owned, self.config.lease_seconds)
        except Exception as exc:
            await self._queue_failed("extend_leases", exc, sleep=False)
            return
        for job_id in renewal.lost:
            state = self._jobs.get(job_id)
            if state is None or state.lost:
                continue
            state.lost = True
            _log.warning(
                "lease lost while running; cancelling the handler",
                job_id=job_id,
                token=state.job.token,
            )
            self._cancel(state, CancelReason.LEASE_LOST)
        for job_id in renewal.cancel:
            state = self._jobs.get(job_id)
            if state is not None and not state.lost:
                self._cancel(state, CancelReason.OPERATOR_CANCEL)

    async def _reclaim(self) -> None:
        try:
            result = await self.queue.reclaim_expired(self.config.microservice)
        except Exception as exc:
            await self._queue_failed("reclaim_expired", exc, sleep=False)
            return
        if len(result):
            _log.warning(
                "reclaimed jobs with expired leases",
                requeued=len(result.requeued),
                failed=len(result.failed),
            )
            self._reclaimed(result)
        if self.config.retention_seconds > 0:
            purged = await self.queue.purge(self.config.microservice, self.config.retention_seconds)
            if purged:
                _log.info("purged finished jobs", count=purged)

    def _reclaimed(self, result: ReclaimResult) -> None:
        """Jobs of dead workers went back to Ready (or failed): count them, claim now."""
        self.metrics.jobs_reclaimed(len(result.requeued), len(result.failed))
        self.notify()

    def _worker_record(self) -> WorkerRecord:
        """This worker as its record in the store shows it (``FleetAdmin``)."""
        cfg = self.config
        return WorkerRecord(
            worker_id=cfg.worker_id,
            microservice=cfg.microservice,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=cfg.version,
            started_at=self._started_at,
            heartbeat_seconds=cfg.heartbeat_seconds,
            actions=tuple(self.actions.names),
            concurrency=cfg.max_concurrent,
            running=len(self._jobs),
        )

    async def _sample_stats(self) -> None:
        try:
            stats = await self.queue.stats(
                self.config.microservice, count_limit=self.config.stats_count_limit
            )
        except Exception as exc:
            await self._queue_failed("stats", exc, sleep=False)
            return
        self.metrics.queue_stats(stats)
        if self._fleet is None:  # else the heartbeat shows them, sooner
            show_paused(self.health, stats.paused_actions)

    # --- shutdown ------------------------------------------------------------------------------

    async def _drain(self) -> None:
        async with self._claim_lock:  # a start_due_jobs claim in flight: drain what it starts
            pass
        tasks = [state.task for state in self._jobs.values() if state.task is not None]
        if tasks:
            _log.info(
                "draining running jobs",
                count=len(tasks),
                timeout_seconds=self.config.shutdown_timeout,
            )
            await self._until(self.config.shutdown_timeout, asyncio.wait(tasks), self._hurry.wait())
        # Whatever still runs its handler is stopped and goes back to Ready.
        for state in list(self._jobs.values()):
            self._cancel(state, CancelReason.SHUTDOWN)
        leftovers = [state.task for state in self._jobs.values() if state.task is not None]
        if leftovers:
            # Jobs still writing their outcome get a short grace, then they are abandoned
            # (their lease expires and the job runs again elsewhere).
            self._hurry.set()
            await self._until(_RECORD_GRACE_SECONDS, asyncio.wait(leftovers))
            for state in list(self._jobs.values()):
                if state.recording and state.task is not None:
                    state.cancel_reason = CancelReason.SHUTDOWN
                    state.task.cancel()
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
                await self.clock.sleep(0.2 * (attempt + 1))
                continue
            self.metrics.jobs_released(count)
            _log.info("released unfinished jobs back to Ready", count=count)
            return
        _log.error("could not release jobs; their leases will expire", count=len(jobs))


def _uncancel() -> None:
    """Take back a cancellation of the current task that the worker has turned into an
    outcome, so that the task's later waits (its outcome's write) are not cut short."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _shutting_down(job_id: str) -> ShuttingDownError:
    return ShuttingDownError(
        f"the worker is shutting down and will not finish job {job_id} now; the job is kept "
        "(it finishes during the drain or goes back to Ready)"
    )


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
