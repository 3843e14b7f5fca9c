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
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace

from usvc_core.errors import ConfigurationError
from usvc_core.lazy_names import lazy_names
from usvc_core.logging import remove_processor

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.trace import TracerProvider

    from usvc_core.settings import WorkerSettings
    from usvc_core.telemetry_export import (
        LogExportProcessor,
        _AbortableExporter,
        otlp_headers,
        validate_endpoint,
    )

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
_SIGNALS = {"traces": "TRACES", "logs": "LOGS"}

# The OTLP half (usvc_core.telemetry_export) loads on first use (PEP 562): a service with
# no endpoint set never needs it.
__getattr__, __dir__ = lazy_names(
    __name__,
    dict.fromkeys(
        ("LogExportProcessor", "otlp_headers", "validate_endpoint"), "usvc_core.telemetry_export"
    ),
)


# --- configuration ---------------------------------------------------------------------------


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
    # The OTLP half: validation, headers, providers, log export; loaded only when an
    # endpoint is set (an idle service without one never needs it).
    from usvc_core.telemetry_export import export_telemetry

    return export_telemetry(
        settings,
        traces_ep,
        logs_ep,
        env,
        resource_attributes=resource_attributes,
        set_global=set_global,
    )
