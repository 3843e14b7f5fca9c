"""``RestAPIService``: a service that calls one REST API through an httpx client, with rate
limiting, a circuit breaker, timeouts, retries, health reporting and outbound metrics.

httpx itself (≈ 3 MB and 30-60 ms of imports) is loaded with the client, on the first
request or the first use of :attr:`RestAPIService.client`, not when a subclass is defined
or the service starts: a service pays for it once it calls its API.
"""

from __future__ import annotations

import asyncio
import sys
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, cast

import structlog
from usvc_core.clock import SystemClock
from usvc_core.errors import CircuitOpenError, UsvcError
from usvc_core.health import HealthRegistry, Status
from usvc_core.ports import Clock
from usvc_core.resilience import CircuitBreaker, CircuitState, RateLimiter, RetryPolicy
from usvc_core.services import ServiceProvider

from usvc_http.metrics import PrometheusMetrics
from usvc_http.rest.config import RestAPIConfig, env_prefix_for, with_env_overrides
from usvc_http.rest.metrics import OutboundMetrics
from usvc_http.rest.retry_after import parse_retry_after

if TYPE_CHECKING:
    import httpx

__all__ = ["IDEMPOTENT_METHODS", "AsyncTransport", "RestAPIService", "TransportError"]

_log = structlog.get_logger("usvc.http.rest")

#: Methods that RFC 9110 defines as idempotent: repeating them is always safe.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class AsyncTransport(Protocol):
    """What the client needs of a transport: ``httpx.AsyncBaseTransport``'s interface
    (``httpx.MockTransport`` in tests). A protocol rather than httpx's class because the
    service container reads ``__init__``'s type hints at start, before httpx is loaded."""

    async def handle_async_request(self, request: httpx.Request, /) -> httpx.Response: ...

    async def aclose(self) -> None: ...


@cache
def _never_sent() -> tuple[type[Exception], ...]:
    """Failures that happen before the request could reach the server."""
    import httpx

    return (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@cache
def _transient() -> tuple[type[Exception], ...]:
    """Failures worth another attempt (and that count against the circuit)."""
    import httpx

    return (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class _HttpxClassCheck(type):
    """``isinstance``/``issubclass`` against the httpx class of the same name once httpx is
    loaded; before that no instance of it can exist, so nothing matches."""

    def __instancecheck__(cls, instance: object) -> bool:
        return cls.__subclasscheck__(type(instance))

    def __subclasscheck__(cls, subclass: type) -> bool:
        httpx = sys.modules.get("httpx")
        return httpx is not None and issubclass(subclass, getattr(httpx, cls.__name__))


if TYPE_CHECKING:
    from httpx import TransportError
else:

    class TransportError(metaclass=_HttpxClassCheck):
        """``httpx.TransportError`` for ``@action(retry_on=...)`` and ``isinstance``, without
        importing httpx where the handler is defined: ``retry_on=(CircuitOpenError,
        TransportError)`` retries a job whose REST call got no response (timeout,
        connection).

        Not for ``except`` clauses, which test real subclasses (Python refuses this class
        there with a TypeError): catch ``httpx.TransportError`` itself.
        """


class _ServerError(Exception):
    """A 5xx answer, raised inside the breaker so that it counts as a failure."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class RestAPIService(ServiceProvider):
    """Base class of a service that talks to one REST API.

    Subclass it, set ``name`` and ``config``, and call :meth:`request` from your methods.
    Each attempt of a request goes through, in this order: the rate limiter, the circuit
    breaker, the request under ``REQUEST_TIMEOUT_SECONDS``; 5xx answers, 429, timeouts and
    connection errors are retried up to ``MAX_RETRIES`` times with exponential backoff and
    full jitter, a ``Retry-After`` header wins over the backoff.

    POST and PATCH are not idempotent: a retry after the request may have reached the
    server could apply it twice (charge a customer twice). They are therefore retried only
    when the connection failed before anything was sent, unless the call passes an
    ``idempotency_key`` (sent as the ``Idempotency-Key`` header, so the server can drop
    duplicates), sets that header itself, or opts in with ``retry_non_idempotent=True``.

    Health check ``<name>``: GREEN after a success; YELLOW with
    ``{"last_status": ..., "attempt": ...}`` while retrying or after a request failed;
    RED while the circuit is open.

    Options come from ``config`` and can be overridden per deployment by environment
    variables ``<PREFIX><OPTION>``, the prefix being the service name upper-cased with
    non-alphanumerics as ``_`` (``PAYMENT_API_BASE_URL`` for ``payment_api``), or
    ``env_prefix`` when set.

    Args:
        clock: time source for the rate limiter, the breaker and the backoff sleeps.
        transport: an httpx transport to use instead of the network (e.g.
            ``httpx.MockTransport`` in unit tests of a subclass).
    """

    config: RestAPIConfig = RestAPIConfig()
    #: Override the environment prefix derived from ``name`` (include the trailing ``_``).
    env_prefix: ClassVar[str | None] = None
    #: The dotenv file read for overrides (besides the environment); ``None`` for none.
    env_file: ClassVar[str | None] = ".env"

    # Class-level defaults, so that a subclass ``__init__`` that forgets super() still works.
    _clock: Clock | None = None
    _transport: AsyncTransport | None = None
    _client: httpx.AsyncClient | None = None
    _outbound: OutboundMetrics | None = None
    _open = False  # between initialize() and cleanup(): the client may be built

    def __init__(
        self, *, clock: Clock | None = None, transport: AsyncTransport | None = None
    ) -> None:
        self._clock = clock
        self._transport = transport
        self._trial_timer: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Resolve the config, build the limiter, breaker and retry policy; the client is
        built on first use. Subclasses that override it call ``await super().initialize()``
        first."""
        name = self.service_name()
        self.config = cfg = with_env_overrides(
            self.config, self.env_prefix or env_prefix_for(name), self.env_file
        )
        self.clock: Clock = self._clock or SystemClock()
        self.limiter = RateLimiter(
            cfg.RATE_LIMIT_REQUESTS, cfg.RATE_LIMIT_WINDOW_SECONDS, clock=self.clock
        )
        self.breaker = CircuitBreaker(
            cfg.CB_FAILURE_THRESHOLD,
            cfg.CB_RECOVERY_TIMEOUT,
            cfg.CB_SUCCESS_THRESHOLD,
            clock=self.clock,
            name=name,
            # httpx's transient errors join when the client is built (see _build_client).
            failure_on=(_ServerError,),
        )
        self.breaker.add_listener(self._on_circuit_change)
        self.retry_policy = RetryPolicy(
            max_attempts=cfg.MAX_RETRIES + 1,
            base_seconds=cfg.RETRY_BACKOFF_BASE,
            cap_seconds=cfg.RETRY_BACKOFF_MAX_SECONDS,
        )
        if getattr(self, "health_registry", None) is None:  # used outside an Application
            self.bind_health_registry(HealthRegistry())
        self._last_failure: dict[str, Any] = {}
        self.health_registry.register(name, Status.GREEN)
        if isinstance(self.app_metrics, PrometheusMetrics):
            self._outbound = OutboundMetrics.on(self.app_metrics.registry)
            self._outbound.circuit(name, CircuitState.CLOSED)
        self._open = True

    def _build_client(self) -> httpx.AsyncClient:
        import httpx

        from usvc_http.rest.transport import LazyTransport

        cfg = self.config
        self.breaker.failure_on = (_ServerError, *_transient())
        pool = cfg.CONNECTION_POOL_SIZE
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        self._client = httpx.AsyncClient(
            base_url=cfg.BASE_URL,
            timeout=cfg.REQUEST_TIMEOUT_SECONDS,
            limits=limits,
            # Pools (and the SSL context) are built on first use: not on the start-up path.
            transport=cast("httpx.AsyncBaseTransport | None", self._transport)
            or LazyTransport(limits),
        )
        return self._client

    async def cleanup(self) -> None:
        """Close the client and its connections."""
        self._open = False
        timer, self._trial_timer = self._trial_timer, None
        if timer is not None:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Self:
        """Standalone use (scripts, tests): ``async with PaymentAPI() as api:``."""
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cleanup()

    @property
    def client(self) -> httpx.AsyncClient:
        """The httpx client (exists between ``initialize()`` and ``cleanup()``; built, and
        httpx imported, on first use)."""
        if self._client is not None:
            return self._client
        if not self._open:
            raise UsvcError(
                f"{type(self).__qualname__} is not initialized: register it with "
                "app.register_service(...) or use 'async with' around it"
            )
        return self._build_client()

    # --- requests --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        idempotency_key: str | None = None,
        retry_non_idempotent: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request with rate limiting, circuit breaking, timeout and retries.

        ``url`` may be relative to ``BASE_URL`` or absolute. Other keyword arguments are
        those of ``httpx.AsyncClient.request`` (``json``, ``params``, ``headers``, ...).

        Returns the response, also a 4xx or 5xx one (call ``raise_for_status()`` as needed):
        after the last retry the last response is returned.

        Raises:
            CircuitOpenError: the circuit is open; nothing was sent.
            httpx.TransportError: the last attempt got no response (timeout, connection).
        """
        if self._client is None and self._open and "httpx" not in sys.modules:
            # The first request of the process imports httpx (30-60 ms) off the event loop.
            await asyncio.to_thread(__import__, "httpx")
        client = self.client
        import httpx  # loaded with the client

        verb = method.upper()
        headers = httpx.Headers(kwargs.pop("headers", None))
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        may_repeat = (
            verb in IDEMPOTENT_METHODS or retry_non_idempotent or ("Idempotency-Key" in headers)
        )
        send_options: dict[str, Any] = {
            k: kwargs.pop(k) for k in ("auth", "follow_redirects") if k in kwargs
        }
        deadline = None if "timeout" in kwargs else self.config.REQUEST_TIMEOUT_SECONDS
        last_error: Exception | None = None
        attempt = 0
        while True:
            attempt += 1
            if self.breaker.state is CircuitState.OPEN:  # do not spend a token to be refused
                raise self.breaker.open_error() from last_error
            await self.limiter.acquire()
            request = client.build_request(verb, url, headers=headers, **kwargs)
            try:
                response = await self._attempt(client, request, send_options, deadline)
            except CircuitOpenError as exc:
                raise exc from last_error
            except _ServerError as failure:
                response = failure.response
            except httpx.TransportError as exc:
                self._count(_error_class(exc))
                last_error = exc
                self._report_failure({"last_status": None, "attempt": attempt, "error": _name(exc)})
                retryable = isinstance(exc, _transient()) and (
                    may_repeat or isinstance(exc, _never_sent())
                )
                if not (retryable and self.retry_policy.should_retry(attempt)):
                    raise
                delay = self.retry_policy.delay(attempt)
                self._log_retry(request, attempt, delay, error=_name(exc))
                await self.clock.sleep(delay)
                continue

            status = response.status_code
            self._count(f"{status // 100}xx")
            if status < 500 and status != 429:
                self._report_success(status)
                return response
            self._report_failure({"last_status": status, "attempt": attempt})
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock.now())
            too_long = retry_after is not None and retry_after > self.retry_policy.cap_seconds
            if not may_repeat or too_long or not self.retry_policy.should_retry(attempt):
                return response
            await response.aclose()
            last_error = httpx.HTTPStatusError(
                f"HTTP {status}", request=response.request, response=response
            )
            delay = self.retry_policy.delay(attempt, retry_after)
            self._log_retry(request, attempt, delay, status=status)
            await self.clock.sleep(delay)

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        request: httpx.Request,
        send_options: dict[str, Any],
        deadline: float | None,
    ) -> httpx.Response:
        """One attempt through the breaker; 5xx raises ``_ServerError`` to count as failure."""
        async with self.breaker:
            try:
                # httpx bounds each phase (connect, every read, ...); this bounds the whole.
                async with asyncio.timeout(deadline):
                    response = await client.send(request, **send_options)
            except TimeoutError:
                import httpx

                raise httpx.TimeoutException(
                    f"no complete response within {deadline:g} s", request=request
                ) from None
            if response.status_code >= 500:
                raise _ServerError(response)
            return response

    # --- health, metrics, logs -------------------------------------------------------------

    def _report_success(self, status: int) -> None:
        name = self.service_name()
        if self.breaker.state is CircuitState.HALF_OPEN:  # more trial successes needed
            details = {"circuit": "half_open", "last_status": status}
            self.health_registry.update(name, Status.YELLOW, details)
        else:
            self.health_registry.update(name, Status.GREEN, {"last_status": status})

    def _report_failure(self, details: dict[str, Any]) -> None:
        self._last_failure = details
        if self.breaker.state is CircuitState.OPEN:
            self.health_registry.update(
                self.service_name(), Status.RED, {"circuit": "open", **details}
            )
        else:
            self.health_registry.update(self.service_name(), Status.YELLOW, details)

    def _on_circuit_change(self, old: CircuitState, new: CircuitState) -> None:
        name = self.service_name()
        if self._outbound is not None:
            self._outbound.circuit(name, new)
        _log.warning("circuit state changed", service=name, old=old.value, new=new.value)
        if new is CircuitState.OPEN:
            self.health_registry.update(name, Status.RED, {"circuit": "open", **self._last_failure})
            self._arm_trial_timer()
        elif new is CircuitState.HALF_OPEN:
            self.health_registry.update(name, Status.YELLOW, {"circuit": "half_open"})

    def _arm_trial_timer(self) -> None:
        """Look at the breaker again when its recovery timeout is over.

        An open breaker turns HALF_OPEN when its state is next read, which is at the next
        call; without calls /health would say RED long after the service may be tried
        again. The look turns it HALF_OPEN, and the health YELLOW, on time.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # opened outside an event loop: the next call will look
            return
        if self._trial_timer is not None and not self._trial_timer.done():
            self._trial_timer.cancel()
        self._trial_timer = loop.create_task(self._look_when_trial_due())

    async def _look_when_trial_due(self) -> None:
        while (wait := self.breaker.seconds_until_trial()) > 0:
            await self.clock.sleep(wait)

    def _count(self, status_class: str) -> None:
        if self._outbound is not None:
            self._outbound.attempt(self.service_name(), status_class)

    def _log_retry(
        self,
        request: httpx.Request,
        attempt: int,
        delay: float,
        *,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        _log.info(
            "retrying request",
            service=self.service_name(),
            method=request.method,
            url=str(request.url.copy_with(query=None)),  # queries may carry secrets
            attempt=attempt,
            status=status,
            error=error,
            delay_seconds=round(delay, 3),
        )


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def _error_class(exc: httpx.TransportError) -> str:
    import httpx

    return "timeout" if isinstance(exc, httpx.TimeoutException) else "error"
