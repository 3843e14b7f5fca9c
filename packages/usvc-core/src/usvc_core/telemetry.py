"""OTLP export of traces and logs, switched on by their endpoint settings.

With neither ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` nor ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``
set, nothing here imports the OpenTelemetry SDK and jobs run without any tracing work.
With one set, the SDK and the OTLP/gRPC exporter (the extra ``usvc-core[otlp]``) are
imported, each signal gets its own provider and batch processor, and:

- ``OTEL_EXPORTER_OTLP_USER``/``PASSWORD`` become an ``authorization: Basic ...`` header
  (merged with ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_HEADERS`` from the environment; every key is
  lower-cased because gRPC refuses upper-case metadata keys);
- log export is a structlog processor (so uvicorn/httpx lines go too) that skips the
  exporter's own loggers, so an export error can never be exported and fail again;
- :meth:`Telemetry.shutdown` flushes within a bound, also when the collector is down.

Other standard ``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_TIMEOUT``, ``..._CERTIFICATE``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*``, ``OTEL_BLRP_*``) are read by the SDK from the
process environment.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber

from usvc_core.errors import ConfigurationError, MissingPackageError
from usvc_core.logging import add_processor, remove_processor

if TYPE_CHECKING:
    from opentelemetry._logs import Logger as OTelLogger
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.trace import TracerProvider

    from usvc_core.settings import WorkerSettings

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "LogExportProcessor",
    "Telemetry",
    "otlp_headers",
    "setup_telemetry",
    "validate_endpoint",
]

_log = structlog.get_logger("usvc.telemetry")

#: Seconds :meth:`Telemetry.shutdown` waits for the last spans and logs to be delivered.
DEFAULT_FLUSH_TIMEOUT = 5.0
#: Loggers whose lines are never exported: the exporter reporting its own failures.
_NOT_EXPORTED = ("opentelemetry", "grpc", "usvc.telemetry")
_SIGNALS = {"traces": "TRACES", "logs": "LOGS"}


# --- configuration ---------------------------------------------------------------------------


def validate_endpoint(variable: str, value: str) -> str:
    """Check an OTLP/gRPC endpoint (``http://host:4317`` or ``https://host:4317``); return it
    stripped, or raise :class:`ConfigurationError` saying what is wrong."""
    url = value.strip()
    example = "http://otel-collector:4317 (plain) or https://otel-collector:4317 (TLS)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"{variable}={value!r} is not a valid URL ({exc}); use {example}"
        ) from None
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"{variable}={value!r} needs the scheme http:// or https://; use {example}"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{variable}={value!r} has no host; use {example}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{variable}={value!r}: an OTLP/gRPC endpoint is scheme://host:port with no path "
            f"(OTLP/HTTP URLs like .../v1/traces are not supported); use {example}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{variable}: put credentials in OTEL_EXPORTER_OTLP_USER/OTEL_EXPORTER_OTLP_PASSWORD, "
            "not in the URL"
        )
    if port is None:
        raise ConfigurationError(f"{variable}={value!r} has no port; use {example}")
    return url


def _check_protocol(environ: Mapping[str, str], signal: str) -> None:
    for variable in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(variable, "").strip()
        if protocol and protocol != "grpc":
            raise ConfigurationError(
                f"{variable}={protocol!r}: only OTLP over gRPC is supported; unset it or set grpc"
            )


def _basic_auth(user: str, password: str) -> str | None:
    if not user and not password:
        return None
    if not user:
        raise ConfigurationError(
            "OTEL_EXPORTER_OTLP_PASSWORD is set but OTEL_EXPORTER_OTLP_USER is empty; "
            "set both for basic auth, or neither"
        )
    if ":" in user:
        raise ConfigurationError("OTEL_EXPORTER_OTLP_USER must not contain ':' (basic auth)")
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def otlp_headers(
    signal: str, user: str, password: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The headers an exporter sends: ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_HEADERS`` plus basic
    auth, with lower-case keys. ``signal`` is ``"traces"`` or ``"logs"``."""
    from opentelemetry.util.re import parse_env_headers

    env = os.environ if environ is None else environ
    upper = _SIGNALS[signal]
    raw = env.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    headers = {k.lower(): v for k, v in parse_env_headers(raw or "", liberal=True).items()}
    auth = _basic_auth(user, password)
    if auth is not None:
        headers["authorization"] = auth
    return headers


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- log export ------------------------------------------------------------------------------

_SEVERITY = {
    "debug": (SeverityNumber.DEBUG, "DEBUG"),
    "info": (SeverityNumber.INFO, "INFO"),
    "warning": (SeverityNumber.WARN, "WARN"),
    "warn": (SeverityNumber.WARN, "WARN"),
    "error": (SeverityNumber.ERROR, "ERROR"),
    "exception": (SeverityNumber.ERROR, "ERROR"),
    "critical": (SeverityNumber.FATAL, "FATAL"),
    "fatal": (SeverityNumber.FATAL, "FATAL"),
}
_NOT_ATTRIBUTES = frozenset({"event", "level", "timestamp", "exc_info", "stack_info"})


class LogExportProcessor:
    """A structlog processor that emits each line to an OpenTelemetry logger.

    It sits in the shared chain, so structlog lines and stdlib lines (uvicorn, httpx, ...)
    each pass it once. The record takes the current span (trace/span id) from the context,
    the event as body, the other keys (``token``, ``job_id``, ...) as attributes. Lines of
    the exporter's own loggers are skipped: exporting "export failed" would loop.
    """

    def __init__(self, otel_logger: OTelLogger) -> None:
        self._otel = otel_logger

    def __call__(
        self, _logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        name = event_dict.get("logger")
        if isinstance(name, str) and name.startswith(_NOT_EXPORTED):
            return event_dict
        level = str(event_dict.get("level", method_name)).lower()
        number, text = _SEVERITY.get(level, (SeverityNumber.INFO, "INFO"))
        attributes: dict[str, str | bool | int | float] = {}
        for key, value in event_dict.items():
            if key in _NOT_ATTRIBUTES or key.startswith("_") or value is None:
                continue
            attributes[key] = value if isinstance(value, (str, bool, int, float)) else repr(value)
        self._otel.emit(
            timestamp=time.time_ns(),
            body=str(event_dict.get("event", "")),
            severity_number=number,
            severity_text=text,
            attributes=attributes,
            exception=_exception(event_dict.get("exc_info")),
        )
        return event_dict


def _exception(exc_info: Any) -> BaseException | None:
    if exc_info is True:
        return sys.exc_info()[1]
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc = exc_info[1]
        return exc if isinstance(exc, BaseException) else None
    return exc_info if isinstance(exc_info, BaseException) else None


# --- the providers ---------------------------------------------------------------------------


class _AbortableExporter:
    """Wraps an SDK exporter so a shutdown past its bound can cut a stuck export short.

    The SDK's ``force_flush`` ignores its timeout and its processor shutdown waits for the
    running export (which retries until the exporter timeout while the collector is down);
    shutting the inner exporter down closes its channel and ends those retries at once.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._closed = False

    def export(self, batch: Any) -> Any:
        return self._inner.export(batch)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))

    def shutdown(self, timeout_millis: float = 30_000, **_kwargs: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._inner.shutdown()

    abort = shutdown


@dataclass(eq=False)
class Telemetry:
    """The OTLP providers of one application; empty (and free) when export is off."""

    tracer_provider: TracerProvider | None = None
    logger_provider: LoggerProvider | None = None
    log_processor: LogExportProcessor | None = None
    _exporters: list[_AbortableExporter] = field(default_factory=list)
    _closed: bool = False

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None or self.logger_provider is not None

    def tracer(self, name: str = "usvc") -> trace.Tracer | None:
        """A tracer exporting to the traces endpoint, or ``None`` when traces are off."""
        if self.tracer_provider is None:
            return None
        return self.tracer_provider.get_tracer(name)

    def shutdown(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> bool:
        """Stop log export, deliver what is buffered and close the exporters, waiting at most
        about ``timeout`` seconds. Returns whether everything was delivered in time; after
        the bound the exporters are closed and what is still buffered is dropped."""
        if self._closed:
            return True
        self._closed = True
        if self.log_processor is not None:
            remove_processor(self.log_processor)
        providers: list[Any] = [p for p in (self.tracer_provider, self.logger_provider) if p]
        if not providers:
            return True

        def flush_and_close() -> None:
            for provider in providers:
                provider.force_flush()
                provider.shutdown()

        # A daemon thread: a hung export must never keep the process alive.
        worker = threading.Thread(target=flush_and_close, name="usvc-otel-flush", daemon=True)
        worker.start()
        worker.join(timeout)
        if not worker.is_alive():
            return True
        _log.warning(
            "telemetry not delivered before the flush timeout; dropping the rest",
            timeout_seconds=timeout,
        )
        for exporter in self._exporters:
            exporter.abort()
        worker.join(1.0)
        return False


def _import_sdk() -> Any:
    try:
        from opentelemetry.sdk import resources
    except ImportError as exc:
        raise MissingPackageError(
            "OTLP export (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_LOGS_ENDPOINT) "
            f"needs the OpenTelemetry SDK and exporter, which are not installed ({exc.name}): "
            "uv add 'usvc-core[otlp]' (or leave both endpoints empty)"
        ) from exc
    return resources


def setup_telemetry(
    settings: WorkerSettings,
    *,
    resource_attributes: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    set_global: bool = False,
) -> Telemetry:
    """Build the providers the settings ask for; raise ConfigurationError on a bad value.

    ``set_global`` also makes the trace provider the process-wide one (so spans that handler
    code starts with ``opentelemetry.trace.get_tracer`` are exported too) unless one is set
    already. ``Application.run()`` does that; tests that start several apps should not.
    """
    env = os.environ if environ is None else environ
    traces_ep = settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.strip()
    logs_ep = settings.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT.strip()
    user = settings.OTEL_EXPORTER_OTLP_USER
    password = settings.OTEL_EXPORTER_OTLP_PASSWORD.get_secret_value()
    if not traces_ep and not logs_ep:
        _basic_auth(user, password)  # still report a half-configured login
        return Telemetry()
    endpoints: dict[str, str] = {}
    for signal, value in (("traces", traces_ep), ("logs", logs_ep)):
        if value:
            upper = _SIGNALS[signal]
            endpoints[signal] = validate_endpoint(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT", value)
            _check_protocol(env, upper)
    headers = {s: otlp_headers(s, user, password, env) for s in endpoints}
    resources = _import_sdk()
    resource = resources.Resource.create(
        {
            "service.name": settings.MICROSERVICE_NAME,
            "service.version": settings.SERVICE_VERSION,
            **(resource_attributes or {}),
        }
    )
    telemetry = Telemetry()
    try:
        if "traces" in endpoints:
            _setup_traces(telemetry, resource, endpoints["traces"], headers["traces"])
            if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(telemetry.tracer_provider)  # type: ignore[arg-type]
        if "logs" in endpoints:
            _setup_logs(telemetry, resource, endpoints["logs"], headers["logs"])
    except BaseException:
        telemetry.shutdown(timeout=1.0)
        raise
    for signal, url in endpoints.items():
        if user and not url.startswith("https://") and not _is_loopback(url):
            _log.warning(
                "OTLP basic auth is sent in clear text; use an https:// endpoint",
                signal=signal,
                endpoint=url,
            )
    _log.info("telemetry export on", **{f"{s}_endpoint": url for s, url in endpoints.items()})
    return telemetry


def _setup_traces(telemetry: Telemetry, resource: Any, endpoint: str, headers: Any) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    inner = OTLPSpanExporter(
        endpoint=endpoint, insecure=endpoint.startswith("http://"), headers=headers
    )
    exporter = _AbortableExporter(inner)
    telemetry._exporters.append(exporter)
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))  # type: ignore[arg-type]
    telemetry.tracer_provider = provider


def _setup_logs(telemetry: Telemetry, resource: Any, endpoint: str, headers: Any) -> None:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    inner = OTLPLogExporter(
        endpoint=endpoint, insecure=endpoint.startswith("http://"), headers=headers
    )
    exporter = _AbortableExporter(inner)
    telemetry._exporters.append(exporter)
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))  # type: ignore[arg-type]
    telemetry.logger_provider = provider
    telemetry.log_processor = LogExportProcessor(provider.get_logger("usvc"))
    add_processor(telemetry.log_processor)
