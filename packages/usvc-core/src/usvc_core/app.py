"""``Application``: the composition root. It reads the settings, discovers actions, wires the
queue, metrics, services and surfaces, runs the worker, and shuts everything down in order."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog
from opentelemetry import propagate, trace

from usvc_core.actions.discovery import discover_actions, resolve_actions_dir
from usvc_core.actions.registry import ActionRegistry
from usvc_core.errors import MissingPackageError, UsvcError
from usvc_core.health import HealthRegistry
from usvc_core.jobs import TRACE_KEY, Job
from usvc_core.logging import configure_logging
from usvc_core.metrics import NullMetrics
from usvc_core.plugins import (
    METRICS_GROUP,
    SURFACE_GROUP,
    named_entry_points,
    queue_from_settings,
)
from usvc_core.ports import EnqueueRequest, JobQueue, Metrics, Surface
from usvc_core.resilience.retry import RetryPolicy
from usvc_core.services import S, ServiceContainer, ServiceProvider
from usvc_core.settings import WorkerSettings, load_settings
from usvc_core.telemetry import Telemetry, setup_telemetry
from usvc_core.worker import Worker, WorkerConfig

__all__ = ["Application"]

_log = structlog.get_logger("usvc.app")
SurfaceFactory = Callable[["Application"], Surface | None]


class Application:
    """A job-worker service.

    ``Application().run()`` is all a ``main.py`` needs: settings come from the environment
    and ``.env``, actions from ``src/actions/*/handler.py``, adapters from the installed
    packages. Everything can also be passed explicitly, and ``async with app:`` runs it
    inside a test.

    Args:
        actions_dir: where to discover ``*/handler.py`` (default ``src/actions``).
        settings: use these instead of reading the environment.
        queue: the job queue (default: chosen by QUEUE_URL / DEV_MODE / ORACLE_USER).
        surfaces: surface factories (default: every installed ``usvc.surfaces`` entry point).
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
        self._telemetry = Telemetry()
        self._global_telemetry = False  # serve() makes the trace provider process-wide
        self._started = False
        self.instance_id = uuid.uuid4().hex
        self.started_at = datetime.now(UTC)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.http_port: int | None = None  # set by the HTTP surface once it listens

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
        )

    def _load_actions(self) -> None:
        directory = resolve_actions_dir(self._actions_dir)
        handlers = discover_actions(directory) if directory is not None else []
        for handler in [*handlers, *self._explicit_actions]:
            self.actions.add(handler)
        if not len(self.actions):
            where = directory or Path(self._actions_dir or "src/actions")
            _log.warning("no actions found", actions_dir=str(where))

    def _surface_factories_from_settings(self) -> list[SurfaceFactory]:
        if self._surface_factories is not None:
            return list(self._surface_factories)
        eps = named_entry_points(SURFACE_GROUP)
        if self.settings.MONGODB_URI.get_secret_value() and "mongo_registry" not in eps:
            raise MissingPackageError(
                "MONGODB_URI is set, but the registry needs the package usvc-mongo, which is "
                "not installed: uv add usvc-mongo (or leave MONGODB_URI empty)"
            )
        return [ep.load() for _, ep in sorted(eps.items())]

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
        self._worker_task = asyncio.create_task(self._worker.run(), name="usvc-worker")
        self._started = True
        _log.info(
            "application started",
            microservice=settings.MICROSERVICE_NAME,
            queue=type(self.queue).__name__,
            dev_mode=settings.DEV_MODE,
            surfaces=[s.name for s in self._surfaces],
        )

    async def _start_parts(self, settings: WorkerSettings) -> None:
        self._load_actions()
        self.actions.check_services(self.container)
        queue = self.queue
        metrics = self.metrics
        self.health.subscribe(
            lambda h: metrics.health_changed(
                h.aggregate(), {n: c.status for n, c in h.snapshot().checks.items()}
            )
        )
        await queue.open()
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
                for factory in self._surface_factories_from_settings():
                    surface = factory(self)
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

    async def _close_telemetry(self) -> None:
        timeout = self.settings.OTEL_FLUSH_TIMEOUT_SECONDS
        # In a thread: the flush is bounded but blocking.
        await asyncio.to_thread(self._telemetry.shutdown, timeout)

    async def stop(self) -> None:
        """Stop claiming, drain and release jobs, stop surfaces, clean up services."""
        if not self._started:
            return
        self._started = False
        if self._worker is not None and self._worker_task is not None:
            self._worker.request_stop()
            await asyncio.gather(self._worker_task, return_exceptions=True)
        await self._stop_surfaces()
        await self.container.cleanup()
        await self.queue.close()
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
    ) -> Job:
        """Add a job for this service; the current trace context travels with it (unless the
        payload already carries one under ``TRACE_KEY``: an explicit producer context wins)."""
        body = dict(payload)
        if not isinstance(body.get(TRACE_KEY), dict):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if carrier:
                body[TRACE_KEY] = carrier
        if max_attempts is None:
            definition = self.actions.get(str(body.get("action")))
            opt = definition.options.max_attempts if definition else None
            max_attempts = opt or self.settings.JOB_MAX_ATTEMPTS
        return await self.queue.enqueue(
            EnqueueRequest(
                payload=body,
                microservice=self.settings.MICROSERVICE_NAME,
                priority=priority,
                delay_seconds=delay_seconds,
                max_attempts=max_attempts,
                token=token,
                idempotency_key=idempotency_key,
            )
        )

    async def wait_for_job(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 - returns the unfinished job on timeout instead of raising
        """Wait up to ``timeout`` seconds for a job to finish; return it (finished or not).

        Raises :class:`~usvc_core.errors.ShuttingDownError` at once when the service starts
        shutting down meanwhile (nobody waits on the drain; the job itself is kept).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        fut = self.worker.watch(job_id)  # before the first read, so no finish is missed
        try:
            while True:
                job = await self.queue.get(job_id)
                if job is None or job.status.is_finished:
                    return job
                left = deadline - loop.time()
                if left <= 0:
                    return job
                # Woken at once when this process finishes it; the poll covers other processes.
                await asyncio.wait([fut], timeout=min(left, 0.5))
                if fut.done():
                    fut.result()  # ShuttingDownError once the worker stops
        finally:
            self.worker.unwatch(job_id, fut)
