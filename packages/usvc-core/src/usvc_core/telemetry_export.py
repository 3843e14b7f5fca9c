"""The OTLP half of :mod:`usvc_core.telemetry`: endpoint checks, headers, the providers and
the log export processor. Imported only when an endpoint is set (``setup_telemetry``) or
one of its names is looked up through :mod:`usvc_core.telemetry`."""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber

from usvc_core.errors import ConfigurationError, MissingPackageError
from usvc_core.logging import add_processor
from usvc_core.telemetry import _SIGNALS, Telemetry, _basic_auth

if TYPE_CHECKING:
    from opentelemetry._logs import Logger as OTelLogger

    from usvc_core.settings import WorkerSettings

__all__ = ["LogExportProcessor", "export_telemetry", "otlp_headers", "validate_endpoint"]

_log = structlog.get_logger("usvc.telemetry")

#: Loggers whose lines are never exported: the exporter reporting its own failures.
_NOT_EXPORTED = ("opentelemetry", "grpc", "usvc.telemetry")


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


def export_telemetry(
    settings: WorkerSettings,
    traces_ep: str,
    logs_ep: str,
    env: Mapping[str, str],
    *,
    resource_attributes: Mapping[str, str] | None,
    set_global: bool,
) -> Telemetry:
    """:func:`usvc_core.telemetry.setup_telemetry` once an endpoint is set (stripped, at
    least one non-empty)."""
    user = settings.OTEL_EXPORTER_OTLP_USER
    password = settings.OTEL_EXPORTER_OTLP_PASSWORD.get_secret_value()
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


def _exporter(telemetry: Telemetry, kind: Any, endpoint: str, headers: Any) -> _AbortableExporter:
    """An OTLP exporter of ``kind`` (spans or logs) for ``endpoint``, made abortable and
    registered with ``telemetry`` (which stops it)."""
    inner = kind(endpoint=endpoint, insecure=endpoint.startswith("http://"), headers=headers)
    exporter = _AbortableExporter(inner)
    telemetry._exporters.append(exporter)
    return exporter


def _setup_traces(telemetry: Telemetry, resource: Any, endpoint: str, headers: Any) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = _exporter(telemetry, OTLPSpanExporter, endpoint, headers)
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))  # type: ignore[arg-type]
    telemetry.tracer_provider = provider


def _setup_logs(telemetry: Telemetry, resource: Any, endpoint: str, headers: Any) -> None:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    exporter = _exporter(telemetry, OTLPLogExporter, endpoint, headers)
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))  # type: ignore[arg-type]
    telemetry.logger_provider = provider
    telemetry.log_processor = LogExportProcessor(provider.get_logger("usvc"))
    add_processor(telemetry.log_processor)
