"""The registry surface: publish the schemas once, heartbeat on a timer, deregister on stop,
and report it all as the ``mongodb_registry`` health check."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog
from usvc_core.clock import SystemClock
from usvc_core.errors import ConfigurationError
from usvc_core.health import Status
from usvc_core.ports import Clock, InstanceInfo, ServiceDescription, ServiceRegistry

from usvc_mongo.registry import MongoServiceRegistry
from usvc_mongo.settings import mongo_settings

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

__all__ = [
    "RED_AFTER_FAILURES",
    "REGISTRY_CHECK",
    "STALE_AFTER_INTERVALS",
    "RegistrySurface",
    "registry_surface",
]

REGISTRY_CHECK = "mongodb_registry"
RED_AFTER_FAILURES = 3
#: A check whose last successful heartbeat is older than this many intervals is not GREEN,
#: even while the heartbeat in flight has not failed yet.
STALE_AFTER_INTERVALS = 2
_MAX_ERROR_CHARS = 300
_MIN_OPERATION_SECONDS = 1.0

_log = structlog.get_logger("usvc.mongo")


@runtime_checkable
class _Closable(Protocol):
    async def close(self) -> None: ...


class RegistrySurface:
    """Runs the heartbeat loop of one process next to the worker.

    Health check ``mongodb_registry``: YELLOW until the first publish, GREEN after each
    successful one, YELLOW after 1-2 consecutive failures, RED from the third; YELLOW too
    once the last success is older than ``STALE_AFTER_INTERVALS`` heartbeat intervals (a
    heartbeat that hangs has not failed yet, but is not news). It goes back to GREEN by
    itself at the next successful heartbeat. Failures never leave the loop: the worker goes
    on processing jobs while MongoDB is down. ``clock`` times the intervals and staleness
    (``usvc_testing.FakeClock`` in tests).
    """

    name = "mongo_registry"

    def __init__(
        self,
        app: SurfaceContext,
        registry: ServiceRegistry,
        *,
        heartbeat_seconds: float,
        beat_timeout_seconds: float = 30.0,
        stop_timeout_seconds: float = 5.0,
        close_timeout_seconds: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self._app = app
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._registry = registry
        self._interval = heartbeat_seconds
        self._beat_timeout = beat_timeout_seconds
        self._stop_timeout = stop_timeout_seconds
        self._close_timeout = close_timeout_seconds
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._published = False
        self._beats_attempted = 0
        self._failures = 0
        self._last_success: datetime | None = None
        self._last_success_at: float | None = None  # on self._clock
        #: successful and failed heartbeats so far (for tests and diagnostics)
        self.successes = 0
        self.failures_total = 0

    @property
    def registry(self) -> ServiceRegistry:
        return self._registry

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    async def start(self) -> None:
        self._app.health.register(REGISTRY_CHECK, Status.YELLOW, self._details())
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="usvc-mongo-registry")
        self._watchdog = asyncio.create_task(self._watch(), name="usvc-mongo-registry-watch")

    async def stop(self) -> None:
        """Let the heartbeat in flight finish and deregister, both within
        ``stop_timeout_seconds``; then close the client within ``close_timeout_seconds``."""
        self._stopping.set()
        deadline = asyncio.get_running_loop().time() + self._stop_timeout
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        task, self._task = self._task, None
        if task is not None:
            _, pending = await asyncio.wait([task], timeout=self._stop_timeout)
            if pending:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._beats_attempted:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._registry.deregister(self._app.instance_id)
                _log.info("deregistered from the service registry")
            except Exception as exc:  # the TTL index removes the document anyway
                _log.warning("could not deregister; the TTL will expire it", error=_short(exc))
        if isinstance(self._registry, _Closable):
            try:
                async with asyncio.timeout(self._close_timeout):
                    await self._registry.close()
            except Exception as exc:
                _log.warning("could not close the registry client", error=_short(exc))

    # --- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.beat()
            except Exception:  # e.g. a health listener that raised: keep beating regardless
                _log.exception("service registry heartbeat loop error")
            await self._pause(self._interval)

    async def _watch(self) -> None:
        """Turn a GREEN check YELLOW once its last success is too old (see the class doc)."""
        while not self._stopping.is_set():
            await self._pause(self._interval / 2)
            try:
                self.check_staleness()
            except Exception:
                _log.exception("service registry staleness check error")

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` on the clock, or less if the surface is stopping."""
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([sleep, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleep, stop):
                task.cancel()
            await asyncio.gather(sleep, stop, return_exceptions=True)

    def check_staleness(self) -> bool:
        """Whether the last success is older than ``STALE_AFTER_INTERVALS`` intervals; a
        GREEN check is turned YELLOW then."""
        if self._last_success_at is None:
            return False  # YELLOW until the first success anyway
        age = self._clock.monotonic() - self._last_success_at
        if age <= STALE_AFTER_INTERVALS * self._interval:
            return False
        check = self._app.health.get(REGISTRY_CHECK)
        if check is not None and check.status is Status.GREEN:
            error = (
                f"no successful heartbeat for {age:.1f} s "
                f"(one every {self._interval:g} s; the one in flight has not answered)"
            )
            self._app.health.update(REGISTRY_CHECK, Status.YELLOW, self._details(error))
            _log.warning("service registry heartbeat overdue", seconds_since_success=round(age, 1))
        return True

    async def beat(self) -> bool:
        """One heartbeat (publishing the schemas first until that succeeded); never raises
        except on cancellation. Returns whether it succeeded."""
        self._beats_attempted += 1
        try:
            async with asyncio.timeout(self._beat_timeout):
                if not self._published:
                    await self._registry.publish_schemas(self.description())
                    self._published = True
                await self._registry.heartbeat(self.instance())
        except Exception as exc:
            self._on_failure(exc)
            return False
        self._on_success()
        return True

    def description(self) -> ServiceDescription:
        settings = self._app.settings
        return ServiceDescription(
            service=settings.MICROSERVICE_NAME,
            version=settings.SERVICE_VERSION,
            actions=[definition.schema() for definition in self._app.actions],
        )

    def instance(self) -> InstanceInfo:
        me, settings = self._app.instance, self._app.settings
        snapshot = self._app.health.snapshot()
        return InstanceInfo(
            instance_id=me.instance_id,
            service=settings.MICROSERVICE_NAME,
            version=settings.SERVICE_VERSION,
            host=me.host,
            port=me.http_port or 0,
            pid=me.pid,
            started_at=me.started_at,
            health=snapshot.status,
            checks={
                name: {"status": check.status.name, "details": check.details}
                for name, check in snapshot.checks.items()
            },
        )

    # --- health --------------------------------------------------------------------------------

    def _details(self, error: str | None = None) -> dict[str, Any]:
        details: dict[str, Any] = {
            "last_success": self._last_success.isoformat() if self._last_success else None,
            "consecutive_failures": self._failures,
        }
        if error is not None:
            details["last_error"] = error
        return details

    def _on_success(self) -> None:
        self.successes += 1
        if self._failures:
            _log.info("service registry reachable again", after_failures=self._failures)
        elif self.successes == 1:
            _log.info("registered in the service registry", instance_id=self._app.instance_id)
        self._failures = 0
        self._last_success = datetime.now(UTC)
        self._last_success_at = self._clock.monotonic()
        self._app.health.update(REGISTRY_CHECK, Status.GREEN, self._details())

    def _on_failure(self, exc: BaseException) -> None:
        self.failures_total += 1
        self._failures += 1
        status = Status.RED if self._failures >= RED_AFTER_FAILURES else Status.YELLOW
        error = _short(exc)
        self._app.health.update(REGISTRY_CHECK, status, self._details(error))
        _log.warning(
            "service registry heartbeat failed",
            consecutive_failures=self._failures,
            status=status.name,
            error=error,
        )


def _short(exc: BaseException) -> str:
    # Registry errors are already scrubbed of credentials; others come from our own code.
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "timed out"
    return text[:_MAX_ERROR_CHARS]


def registry_surface(
    app: SurfaceContext, *, timeout_seconds: float = 10.0
) -> RegistrySurface | None:
    """Entry point ``usvc.surfaces: mongo_registry``; disabled while MONGODB_URI is empty.

    ``timeout_seconds`` bounds one MongoDB operation, retries included (pass a smaller one
    with ``functools.partial`` in tests), and is itself bounded by the heartbeat interval
    (but not below 1 s): a server that went away shows within a few intervals, not after
    the driver's default timeouts. A heartbeat is bounded by three operations.
    """
    settings = mongo_settings(app.settings)
    if not settings.enabled:
        return None
    if settings.MONGODB_KEY_TTL_SECONDS <= settings.MONGODB_HEARTBEAT_SECONDS:
        raise ConfigurationError(
            f"MONGODB_KEY_TTL_SECONDS ({settings.MONGODB_KEY_TTL_SECONDS}) must be greater than "
            f"MONGODB_HEARTBEAT_SECONDS ({settings.MONGODB_HEARTBEAT_SECONDS}), or instances "
            "expire between two heartbeats (the defaults are 90 and 30)"
        )
    # Not below 1 s: a TLS and authentication handshake needs some time even when healthy.
    bound = max(settings.MONGODB_HEARTBEAT_SECONDS, _MIN_OPERATION_SECONDS)
    timeout_seconds = min(timeout_seconds, bound)
    registry = MongoServiceRegistry.from_settings(
        settings, app.settings.MICROSERVICE_NAME, timeout_seconds=timeout_seconds
    )
    _log.info(
        "service registry enabled",
        uri=registry.redacted_uri,
        database=settings.MONGODB_DATABASE,
        heartbeat_seconds=settings.MONGODB_HEARTBEAT_SECONDS,
    )
    return RegistrySurface(
        app,
        registry,
        heartbeat_seconds=settings.MONGODB_HEARTBEAT_SECONDS,
        beat_timeout_seconds=3 * timeout_seconds,
        stop_timeout_seconds=min(5.0, max(1.0, timeout_seconds)),
        close_timeout_seconds=registry.server_selection_seconds + 2.0,
    )
