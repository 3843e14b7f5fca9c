"""``Application``: the composition root. It reads the settings, discovers actions, wires the
queue, metrics, services and surfaces, runs the worker, and shuts everything down in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ValidationError

from usvc_core.actions.discovery import discover_actions, resolve_actions_dir
from usvc_core.actions.registry import ActionRegistry
from usvc_core.bounds import check_enqueue
from usvc_core.clock import SystemClock
from usvc_core.errors import (
    ConfigurationError,
    MissingPackageError,
    QueueUnavailableError,
    UsvcError,
)
from usvc_core.health import HealthRegistry, Status
from usvc_core.jobs import TRACE_KEY, Job
from usvc_core.logging import configure_logging
from usvc_core.loop_lag import EVENT_LOOP_CHECK, LoopLagMonitor
from usvc_core.metrics import NullMetrics
from usvc_core.plugins import (
    HTTP_PACKAGE,
    HTTP_SURFACE,
    METRICS_GROUP,
    SURFACE_GROUP,
    missing_setting_packages,
    named_entry_points,
    queue_from_settings,
)
from usvc_core.ports import EnqueueRequest, JobQueue, Metrics, StoreClock, Surface
from usvc_core.resilience.retry import RetryPolicy
from usvc_core.services import S, ServiceContainer, ServiceProvider
from usvc_core.settings import WorkerSettings, load_settings
from usvc_core.surface_context import InstanceIdentity, SurfaceContext, SurfaceFactory
from usvc_core.telemetry import Telemetry, setup_telemetry
from usvc_core.worker import QUEUE_CHECK, Worker, WorkerConfig

if TYPE_CHECKING:
    # croniter costs a noticeable part of start-up: imported only when a schedule exists.
    from usvc_core.scheduling import Schedule

__all__ = ["Application"]

_FALSE = ("0", "false", "no", "off", "")

_log = structlog.get_logger("usvc.app")
#: OpenTelemetry's default propagators: with an empty context neither writes anything.
_STOCK_PROPAGATORS = (TraceContextTextMapPropagator, W3CBaggagePropagator)
#: Backoff between attempts to open a store that is unreachable at start (jittered).
_OPEN_RETRY = RetryPolicy(max_attempts=1_000_000, base_seconds=0.5, cap_seconds=30.0)
_MIN_OPEN_DELAY = 0.1


class Application:
    """A job-worker service.

    ``Application().run()`` is all a ``main.py`` needs: settings come from the environment
    and ``.env``, actions from ``src/actions/*/handler.py``, adapters from the installed
    packages. Everything can also be passed explicitly, and ``async with app:`` runs it
    inside a test.

    A store that cannot be reached at start (``open()`` raises QueueUnavailableError)
    does not stop the service: the ``job_queue`` health check stays RED, ``open()`` is
    retried with backoff, and the worker starts once it succeeds. Any other error of
    ``open()`` (bad credentials, a missing table) fails the start.

    Args:
        actions_dir: where to discover ``*/handler.py`` (default ``src/actions``).
        settings: use these instead of reading the environment.
        queue: the job queue (default: chosen by QUEUE_URL / DEV_MODE).
        surfaces: surface factories, each called with a
            :class:`~usvc_core.surface_context.SurfaceContext` (default: every installed
            ``usvc.surfaces`` entry point).
        metrics: the metrics adapter (default: the installed ``usvc.metrics`` entry point).
        configure_logging: set up the structlog pipeline from the settings at start.
    """

    def __init__(
        self,
        actions_dir: str | Path | None = None,
        *,
        settings: WorkerSettings | None = None,
        queue: JobQueue | None = None,
        surfaces: Sequence[SurfaceFactory] | None = None,
        metrics: Metrics | None = None,
        configure_logging: bool = True,
    ) -> None:
        self._actions_dir = actions_dir
        self._settings = settings
        self._queue = queue
        self._surface_factories = surfaces
        self._metrics = metrics
        self._configure_logging = configure_logging
        self.health = HealthRegistry()
        self.actions = ActionRegistry()
        self.container = ServiceContainer(self.health)
        self._explicit_actions: list[Callable[..., Awaitable[Any]]] = []
        self._surfaces: list[Surface] = []
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._schedules: list[Schedule] = []
        self._scheduler_task: asyncio.Task[None] | None = None
        self._loop_lag_task: asyncio.Task[None] | None = None
        self._telemetry = Telemetry()
        self._global_telemetry = False  # serve() makes the trace provider process-wide
        self._started = False
        self._queue_open = False
        self._stop_requested = asyncio.Event()
        self.instance = InstanceIdentity(
            uuid.uuid4().hex, socket.gethostname(), os.getpid(), datetime.now(UTC)
        )

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    @property
    def host(self) -> str:
        return self.instance.host

    @property
    def pid(self) -> int:
        return self.instance.pid

    @property
    def started_at(self) -> datetime:
        return self.instance.started_at

    @property
    def http_port(self) -> int | None:
        """The port the HTTP surface listens on (None: no HTTP)."""
        return self.instance.http_port

    # --- configuration ---------------------------------------------------------------------

    @property
    def settings(self) -> WorkerSettings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def queue(self) -> JobQueue:
        if self._queue is None:
            self._queue = queue_from_settings(self.settings)
        return self._queue

    @property
    def metrics(self) -> Metrics:
        if self._metrics is None:
            eps = named_entry_points(METRICS_GROUP)
            self._metrics = next(iter(eps.values())).load()() if eps else NullMetrics()
        return self._metrics

    @property
    def worker(self) -> Worker:
        if self._worker is None:
            raise UsvcError("the application is not started")
        return self._worker

    def register_service(self, service: type[ServiceProvider] | ServiceProvider) -> None:
        """Register a service class (or instance). Order matters: dependencies first."""
        self.container.register(service)

    def override_service(self, cls: type[S], instance: S) -> None:
        """Use ``instance`` wherever ``cls`` is injected (for tests)."""
        self.container.override(cls, instance)

    def add_action(self, handler: Callable[..., Awaitable[Any]]) -> None:
        """Register an @action handler explicitly (in addition to discovery)."""
        self._explicit_actions.append(handler)

    def _worker_config(self) -> WorkerConfig:
        s = self.settings
        return WorkerConfig(
            microservice=s.MICROSERVICE_NAME,
            max_concurrent=s.MAX_CONCURRENT_JOBS,
            polling_interval=s.POLLING_INTERVAL_SECONDS,
            job_timeout=s.JOB_TIMEOUT_SECONDS,
            lease_seconds=s.LEASE_SECONDS,
            shutdown_timeout=s.SHUTDOWN_TIMEOUT_SECONDS,
            job_retry=RetryPolicy(
                max_attempts=s.JOB_MAX_ATTEMPTS,
                base_seconds=s.JOB_RETRY_BACKOFF_SECONDS,
                cap_seconds=s.JOB_RETRY_BACKOFF_MAX_SECONDS,
            ),
            retention_seconds=s.JOB_RETENTION_SECONDS,
            heartbeat_seconds=s.WORKER_HEARTBEAT_SECONDS,
            stats_count_limit=s.QUEUE_STATS_COUNT_LIMIT or None,  # 0: exact
            version=s.SERVICE_VERSION,
        )

    def _load_actions(self) -> None:
        directory = resolve_actions_dir(self._actions_dir)
        handlers = discover_actions(directory) if directory is not None else []
        for handler in [*handlers, *self._explicit_actions]:
            self.actions.add(handler)
        if not len(self.actions):
            where = directory or Path(self._actions_dir or "src/actions")
            _log.warning("no actions found", actions_dir=str(where))

    def _schedules_from_actions_and_settings(self) -> list[Schedule]:
        """``@action(schedule=...)`` plus ``SCHEDULES`` (which wins for an action in both)."""
        settings = self.settings
        found: dict[str, Schedule] = {}
        if not settings.SCHEDULES and all(d.options.schedule is None for d in self.actions):
            return []
        from usvc_core.scheduling import parse_schedule

        for d in self.actions:
            if d.options.schedule is not None:
                where = f"@action({d.name!r}) handler ({d.source})"
                found[d.name] = parse_schedule(
                    d.name, d.options.schedule, d.options.timezone, where=where
                )
        for name, entry in settings.SCHEDULES.items():
            if name not in self.actions:
                known = ", ".join(self.actions.names) or "none"
                raise ConfigurationError(
                    f"SCHEDULES names {name!r}, which no @action handles (known: {known})"
                )
            cron, tz = (
                (entry, "UTC")
                if isinstance(entry, str)
                else (
                    entry["cron"],
                    entry.get("timezone", "UTC"),
                )
            )
            found[name] = parse_schedule(name, cron, tz, where=f"SCHEDULES[{name!r}]")
        for name in found:
            definition = self.actions.get(name)
            model = definition.input_model if definition is not None else None
            if model is None:
                continue
            try:
                model.model_validate({})
            except ValidationError as exc:
                fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
                raise ConfigurationError(
                    f"action {name!r} is scheduled, and its jobs carry no input, but its "
                    f"input model {model.__name__} requires {fields}: give them defaults"
                ) from None
        retention = settings.JOB_RETENTION_SECONDS
        if found and 0 < retention <= settings.SCHEDULE_CATCHUP_SECONDS:
            raise ConfigurationError(
                f"JOB_RETENTION_SECONDS={retention:g} must exceed SCHEDULE_CATCHUP_SECONDS="
                f"{settings.SCHEDULE_CATCHUP_SECONDS:g}: a slot's job purged sooner could be "
                "enqueued again by a worker starting later"
            )
        return list(found.values())

    async def _enqueue_slot(self, schedule: Schedule, slot: datetime, key: str) -> Job:
        return await self.enqueue({"action": schedule.action}, unique_key=key)

    def _surface_factories_from_settings(self) -> list[SurfaceFactory]:
        if self._surface_factories is not None:
            return list(self._surface_factories)
        eps = named_entry_points(SURFACE_GROUP)
        missing = missing_setting_packages(self.settings.source, eps)
        if missing:
            raise MissingPackageError("\n".join(missing))
        source = self.settings.source
        http_wanted = (source.get("HTTP_ENABLED") or "true").strip().lower() not in _FALSE
        if self.settings.DEV_MODE and http_wanted and HTTP_SURFACE not in eps:
            # A warning, not an error: the worker runs fine headless (in-process producers,
            # tests); but a developer expecting POST /dev/job must learn why it is absent.
            _log.warning(
                f"DEV_MODE=True, but the package {HTTP_PACKAGE} is not installed: no "
                f"/health, /metrics nor POST /dev/job; add it: uv add {HTTP_PACKAGE} "
                "(or set HTTP_ENABLED=False to run without HTTP on purpose)"
            )
        return [ep.load() for _, ep in sorted(eps.items())]

    def surface_context(self) -> SurfaceContext:
        """What surfaces get: settings, queue, health, actions, metrics, who we are, and
        the producer calls."""
        return SurfaceContext(
            settings=self.settings,
            queue=self.queue,
            health=self.health,
            actions=self.actions,
            metrics=self.metrics,
            instance=self.instance,
            enqueue=self.enqueue,
            wait_for_job=self.wait_for_job,
            worker_running=self._worker_running,
        )

    def _worker_running(self) -> bool:
        task = self._worker_task
        return task is not None and not task.done()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start everything; on any failure undo what was started and raise."""
        if self._started:
            raise UsvcError("the application is already started")
        settings = self.settings
        if self._configure_logging:
            configure_logging(json=settings.LOG_CONSOLE_JSON, debug=settings.DEBUG)
        self._telemetry = setup_telemetry(
            settings,
            resource_attributes={"service.instance.id": self.instance_id},
            set_global=self._global_telemetry,
        )
        try:
            await self._start_parts(settings)
        except BaseException:
            await self._close_telemetry()
            raise
        assert self._worker is not None
        self._stop_requested.clear()
        monitor = LoopLagMonitor(health=self.health, metrics=self.metrics)
        self._loop_lag_task = asyncio.create_task(monitor.run(), name="usvc-loop-lag")
        self._worker_task = asyncio.create_task(self._run_worker(), name="usvc-worker")
        self._started = True
        _log.info(
            "application started",
            microservice=settings.MICROSERVICE_NAME,
            queue=type(self.queue).__name__,
            queue_open=self._queue_open,
            dev_mode=settings.DEV_MODE,
            surfaces=[s.name for s in self._surfaces],
        )

    async def _start_parts(self, settings: WorkerSettings) -> None:
        self._load_actions()
        self.actions.check_services(self.container)
        self._schedules = self._schedules_from_actions_and_settings()
        queue = self.queue
        metrics = self.metrics
        observe = getattr(queue, "observe", None)
        if callable(observe):  # an adapter with its own health checks (usvc-oracle)
            observe(self.health, metrics)
        self.health.subscribe(
            lambda h: metrics.health_changed(
                h.aggregate(), {n: c.status for n, c in h.snapshot().checks.items()}
            )
        )
        unavailable: QueueUnavailableError | None = None
        try:
            await queue.open()
            self._queue_open = True
        except QueueUnavailableError as exc:  # transient: retried in the background
            unavailable = exc
        try:
            await self.container.initialize(metrics)
            try:
                self.actions.bind(self.container)
                tracer = self._telemetry.tracer()
                if tracer is None and not isinstance(
                    trace.get_tracer_provider(), trace.ProxyTracerProvider
                ):
                    tracer = trace.get_tracer("usvc")  # the user set up OpenTelemetry
                self._worker = Worker(
                    queue,
                    self.actions,
                    self._worker_config(),
                    health=self.health,
                    metrics=metrics,
                    tracer=tracer,
                )
                if unavailable is not None:
                    self._open_failed(unavailable, attempt=1)
                context = self.surface_context()
                for factory in self._surface_factories_from_settings():
                    surface = factory(context)
                    if surface is None:
                        continue
                    await surface.start()
                    self._surfaces.append(surface)
            except BaseException:
                await self._stop_surfaces()
                await self.container.cleanup()
                raise
        except BaseException:
            await queue.close()
            raise

    async def _run_worker(self) -> None:
        if not self._queue_open and not await self._open_queue():
            return
        if self._schedules and not self._stop_requested.is_set():
            from usvc_core.scheduling import Scheduler

            scheduler = Scheduler(
                self._schedules,
                self._enqueue_slot,
                clock=SystemClock(),
                catchup_seconds=self.settings.SCHEDULE_CATCHUP_SECONDS,
                metrics=self.metrics,
                health=self.health,
                store_clock=self.queue if isinstance(self.queue, StoreClock) else None,
            )
            self._scheduler_task = asyncio.create_task(scheduler.run(), name="usvc-scheduler")
        try:
            await self.worker.run()
        finally:
            if self._scheduler_task is not None:
                from usvc_core.scheduling import cancel_and_wait

                await cancel_and_wait(self._scheduler_task)
            self._scheduler_task = None

    async def _open_queue(self) -> bool:
        """Retry ``queue.open()`` with backoff until it succeeds (True) or a stop is
        requested (False); an error other than QueueUnavailableError is raised."""
        attempt = 1
        while True:
            delay = max(_MIN_OPEN_DELAY, _OPEN_RETRY.delay(min(attempt, 10)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop_requested.wait()
            if self._stop_requested.is_set():
                return False
            attempt += 1
            opening = asyncio.ensure_future(self.queue.open())
            stop = asyncio.ensure_future(self._stop_requested.wait())
            try:
                await asyncio.wait([opening, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not opening.done():  # SIGTERM while connecting: do not wait for the store
                opening.cancel()
                await asyncio.gather(opening, return_exceptions=True)
                return False
            try:
                opening.result()
            except QueueUnavailableError as exc:
                self._open_failed(exc, attempt)
                continue
            except UsvcError as exc:
                _log.error("job queue cannot be opened", error=str(exc), attempts=attempt)
                raise
            self._queue_open = True
            _log.info("job queue open; starting the worker", attempts=attempt)
            return True

    def _open_failed(self, exc: QueueUnavailableError, attempt: int) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        retry_in = max(_MIN_OPEN_DELAY, _OPEN_RETRY.ceiling(min(attempt, 10)))
        self.health.update(
            QUEUE_CHECK,
            Status.RED,
            {"last_poll": "not open", "error": reason, "open_attempts": attempt},
        )
        _log.warning(
            "job queue unavailable; retrying to open it",
            error=reason,
            attempt=attempt,
            retry_within_seconds=round(retry_in, 3),
        )

    async def _close_telemetry(self) -> None:
        timeout = self.settings.OTEL_FLUSH_TIMEOUT_SECONDS
        # In a thread: the flush is bounded but blocking.
        await asyncio.to_thread(self._telemetry.shutdown, timeout)

    async def stop(self) -> None:
        """Stop claiming, drain and release jobs, stop surfaces, clean up services."""
        if not self._started:
            return
        self._started = False
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()
        if self._worker is not None and self._worker_task is not None:
            self._worker.request_stop()
            await asyncio.gather(self._worker_task, return_exceptions=True)
        if self._loop_lag_task is not None:
            from usvc_core.scheduling import cancel_and_wait

            await cancel_and_wait(self._loop_lag_task)
        self._loop_lag_task = None
        self.health.unregister(EVENT_LOOP_CHECK)
        await self._stop_surfaces()
        await self.container.cleanup()
        await self.queue.close()
        self._queue_open = False
        _log.info("application stopped")
        await self._close_telemetry()

    async def _stop_surfaces(self) -> None:
        while self._surfaces:
            surface = self._surfaces.pop()
            try:
                await surface.stop()
            except Exception:
                _log.exception("surface failed to stop", surface=surface.name)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Begin a graceful stop (what SIGTERM does); a second call shortens the drain."""
        self._stop_requested.set()
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()  # no new slots once the service stops claiming
        if self._worker is not None:
            self._worker.request_stop()

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT (or :meth:`request_stop`), then stop."""
        self._global_telemetry = True
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            assert self._worker_task is not None
            await asyncio.shield(self._worker_task)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()

    def _on_signal(self, sig: signal.Signals) -> None:
        _log.info(
            "signal received; shutting down",
            signal=sig.name,
            second=self._worker is not None and self._worker.stopping,
        )
        self.request_stop()

    def run(self) -> None:
        """Block until the service is stopped by SIGTERM/SIGINT. Configuration mistakes are
        printed as a clear message and exit with status 2."""
        try:
            asyncio.run(self.serve())
        except UsvcError as exc:
            print(f"usvc: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    # --- producing and awaiting jobs ----------------------------------------------------------

    async def enqueue(
        self,
        payload: Mapping[str, Any],
        *,
        priority: int = 0,
        delay_seconds: float = 0.0,
        max_attempts: int | None = None,
        token: str | None = None,
        idempotency_key: str | None = None,
        unique_key: str | None = None,
    ) -> Job:
        """Add a job for this service; the current trace context travels with it (unless the
        payload already carries one under ``TRACE_KEY``: an explicit producer context wins).
        Raises QueueUnavailableError while the store could not be opened yet, and
        :class:`~usvc_core.bounds.OutOfBoundsError` (naming the field) for a priority,
        delay or number of attempts outside :mod:`usvc_core.bounds`."""
        if self._started and not self._queue_open:
            check = self.health.get(QUEUE_CHECK)
            reason = check.details.get("error") if check is not None else None
            raise QueueUnavailableError(f"the job queue is not open yet ({reason})")
        body = dict(payload)
        if not isinstance(body.get(TRACE_KEY), dict) and _carrier_wanted():
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if carrier:
                body[TRACE_KEY] = carrier
        defaults = (
            max_attempts is None
            and priority == 0
            and delay_seconds == 0
            and type(priority) is int
            and type(delay_seconds) in (int, float)
        )
        if not defaults:  # the defaults are in bounds by definition
            check_enqueue(priority=priority, delay_seconds=delay_seconds, max_attempts=max_attempts)
        settings = self.settings
        if max_attempts is None:
            action = str(body.get("action"))
            max_attempts = self.actions.max_attempts_for(action, settings.JOB_MAX_ATTEMPTS)
        return await self.queue.enqueue(
            EnqueueRequest(
                payload=body,
                microservice=settings.MICROSERVICE_NAME,
                priority=priority,
                delay_seconds=delay_seconds,
                max_attempts=max_attempts,
                token=token,
                idempotency_key=idempotency_key,
                unique_key=unique_key,
            )
        )

    async def wait_for_job(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 - returns the unfinished job on timeout instead of raising
        """Wait up to ``timeout`` seconds for a job to finish; return it (finished or not).

        Raises :class:`~usvc_core.errors.ShuttingDownError` at once when the service starts
        shutting down meanwhile (nobody waits on the drain; the job itself is kept).
        """
        # time.monotonic, not loop.time (a Python call): only the seconds left are passed on.
        deadline = time.monotonic() + timeout
        worker = self.worker
        fut = worker.watch(job_id)  # before the first read, so no finish is missed
        try:
            # An idle worker claims now rather than one loop step later; with the in-memory
            # queue a quick job is done before the first read. Shielded: the claim task
            # must start what it claimed even if this caller is cancelled (a claim that
            # never suspended is done already: nothing to shield).
            claiming = worker.start_due_jobs()
            if claiming is not None:
                if claiming.done():
                    claiming.result()
                else:
                    await asyncio.shield(claiming)
            queue = self.queue
            while True:
                job = await queue.get(job_id)
                if job is None or job.status.is_finished:
                    return job
                left = deadline - time.monotonic()
                if left <= 0:
                    return job
                # Woken at once when this process finishes it; the poll covers other processes.
                # The future itself is awaited (one event-loop step when it resolves; what
                # asyncio.wait adds costs two more); a timeout cancels it, so watch anew.
                try:
                    async with asyncio.timeout(min(left, 0.5)):
                        await fut  # ShuttingDownError once the worker stops
                except TimeoutError:
                    worker.unwatch(job_id, fut)
                    fut = worker.watch(job_id)
        finally:
            worker.unwatch(job_id, fut)


class _Carrier:
    """The last global propagator :func:`_carrier_wanted` looked at, and whether it is
    OpenTelemetry's default (W3C trace context and baggage, nothing else)."""

    textmap: object = None
    stock = False


def _carrier_wanted() -> bool:
    """Whether ``propagate.inject`` may write anything: not when the global propagator is
    the default one and the current context is empty (no span, no baggage), where both its
    parts write nothing. It costs a dozen Python calls per enqueue to find that out."""
    textmap = propagate.get_global_textmap()
    if textmap is not _Carrier.textmap:
        _Carrier.textmap = textmap
        parts = getattr(textmap, "_propagators", None)
        _Carrier.stock = (
            type(textmap) is CompositePropagator
            and isinstance(parts, list | tuple)
            and all(type(p) in _STOCK_PROPAGATORS for p in parts)
        )
    return not _Carrier.stock or bool(otel_context.get_current())
