"""An in-process OTLP/gRPC receiver for tests: spans and log records on a real socket.

No collector binary is needed: the receiver is a ``grpcio`` server on ``127.0.0.1`` port 0
speaking the real OTLP protobuf services, so exporters, serialisation, headers and retries
are all exercised. Needs the extra ``usvc-testing[otlp]`` (grpcio, opentelemetry-proto)::

    from usvc_testing.otlp import OtlpReceiver

    with OtlpReceiver(basic_auth=("svc", "secret")) as rx:
        env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.endpoint, ...}
        ...  # run the service
        assert rx.wait_for(lambda r: len(r.spans) >= 3)
        assert rx.spans[0].attributes["token"] == "..."

The pytest plugin also offers it as the fixture ``usvc_otlp_receiver``.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from usvc_core.errors import MissingPackageError

try:
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
    from opentelemetry.proto.trace.v1 import trace_pb2
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingPackageError(
        f"usvc_testing.otlp needs grpcio and opentelemetry-proto ({exc.name} is missing): "
        "uv add --dev 'usvc-testing[otlp]'"
    ) from exc

__all__ = [
    "ExportCall",
    "OtlpReceiver",
    "ReceivedLogRecord",
    "ReceivedSpan",
    "SpanEvent",
    "basic_auth_header",
]

Signal = Literal["traces", "logs"]


def basic_auth_header(user: str, password: str) -> str:
    """The ``authorization`` value an exporter sends for ``user``/``password`` (RFC 7617)."""
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _hex_id(raw: bytes) -> str:
    """Hex of an id; ``""`` for an absent (empty or all-zero) one."""
    return raw.hex() if any(raw) else ""


def _attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """One event of a span (e.g. ``exception``) with its attributes."""

    name: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One span as the receiver decoded it. Ids are lower-case hex; a root span has
    ``parent_span_id == ""``."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str  #: e.g. ``SPAN_KIND_CONSUMER``
    status_code: str  #: ``STATUS_CODE_UNSET``, ``STATUS_CODE_OK`` or ``STATUS_CODE_ERROR``
    status_message: str
    attributes: Mapping[str, Any]
    events: tuple[SpanEvent, ...]
    resource: Mapping[str, Any]
    scope: str
    start_time_unix_nano: int
    end_time_unix_nano: int


@dataclass(frozen=True, slots=True)
class ReceivedLogRecord:
    """One log record as the receiver decoded it; ``trace_id``/``span_id`` are ``""`` when
    the record was emitted outside a span."""

    body: Any
    severity_text: str
    severity_number: int
    attributes: Mapping[str, Any]
    trace_id: str
    span_id: str
    resource: Mapping[str, Any]
    scope: str
    time_unix_nano: int


@dataclass(frozen=True, slots=True)
class ExportCall:
    """One Export RPC: its signal, the request metadata (headers) and whether it was
    accepted (``False`` when the credentials did not match)."""

    signal: Signal
    metadata: Mapping[str, str]
    accepted: bool
    items: int


@dataclass(slots=True)
class _Store:
    spans: list[ReceivedSpan] = field(default_factory=list)
    logs: list[ReceivedLogRecord] = field(default_factory=list)
    calls: list[ExportCall] = field(default_factory=list)


class OtlpReceiver:
    """A started-on-demand OTLP/gRPC receiver for traces and logs.

    Args:
        basic_auth: ``(user, password)``: refuse calls without this ``authorization``
            header with ``UNAUTHENTICATED`` (what a collector's basicauth extension does).
        required_headers: further headers every call must carry (keys lower-case).
        host: the interface to bind (loopback by default).
    """

    def __init__(
        self,
        *,
        basic_auth: tuple[str, str] | None = None,
        required_headers: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        required = {k.lower(): v for k, v in (required_headers or {}).items()}
        if basic_auth is not None:
            required["authorization"] = basic_auth_header(*basic_auth)
        self._required = required
        self._host = host
        self._store = _Store()
        # A re-entrant lock: predicates passed to wait_for may read the properties below.
        self._cond = threading.Condition(threading.RLock())
        self._server: Any = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: the value for ``OTEL_EXPORTER_OTLP_*_ENDPOINT``."""
        if not self.port:
            raise RuntimeError("the OTLP receiver is not started")
        return f"http://{self._host}:{self.port}"

    def start(self) -> str:
        """Listen on a free port; returns :attr:`endpoint`."""
        if self._server is not None:
            return self.endpoint
        receiver = self

        class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
                return receiver._export_traces(request, context)

        class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
                return receiver._export_logs(request, context)

        self._executor = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-rx")
        server = grpc.server(self._executor)
        # The generated *_pb2_grpc modules carry no type hints.
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(), server)  # type: ignore[no-untyped-call]
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(), server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"{self._host}:0")
        server.start()
        self._server = server
        return self.endpoint

    def stop(self) -> None:
        """Stop listening (received data stays readable)."""
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what arrived ------------------------------------------------------------------------

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Accepted spans, in arrival order."""
        with self._cond:
            return list(self._store.spans)

    @property
    def logs(self) -> list[ReceivedLogRecord]:
        """Accepted log records, in arrival order."""
        with self._cond:
            return list(self._store.logs)

    @property
    def calls(self) -> list[ExportCall]:
        """Every Export call, accepted or refused, in arrival order."""
        with self._cond:
            return list(self._store.calls)

    def spans_named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name == name]

    def clear(self) -> None:
        with self._cond:
            self._store = _Store()

    def wait_for(self, predicate: Callable[[OtlpReceiver], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(receiver)`` holds (re-checked on each arrival) or
        ``timeout`` seconds pass; returns whether it held."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    async def wait_for_async(
        self,
        predicate: Callable[[OtlpReceiver], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - returns False on timeout, like wait_for
    ) -> bool:
        """:meth:`wait_for` without blocking the event loop (for in-process services)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # --- the gRPC side -----------------------------------------------------------------------

    def _admit(self, signal: Signal, context: Any, items: int) -> bool:
        metadata = {str(k): str(v) for k, v in context.invocation_metadata()}
        accepted = all(metadata.get(k) == v for k, v in self._required.items())
        with self._cond:
            self._store.calls.append(ExportCall(signal, metadata, accepted, items))
            self._cond.notify_all()
        return accepted

    def _export_traces(self, request: Any, context: Any) -> Any:
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        if not self._admit("traces", context, count):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad credentials")
        received = [
            ReceivedSpan(
                name=s.name,
                trace_id=_hex_id(s.trace_id),
                span_id=_hex_id(s.span_id),
                parent_span_id=_hex_id(s.parent_span_id),
                kind=trace_pb2.Span.SpanKind.Name(s.kind),
                status_code=trace_pb2.Status.StatusCode.Name(s.status.code),
                status_message=s.status.message,
                attributes=_attributes(s.attributes),
                events=tuple(SpanEvent(e.name, _attributes(e.attributes)) for e in s.events),
                resource=_attributes(rs.resource.attributes),
                scope=ss.scope.name,
                start_time_unix_nano=s.start_time_unix_nano,
                end_time_unix_nano=s.end_time_unix_nano,
            )
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        with self._cond:
            self._store.spans.extend(received)
            self._cond.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def _export_logs(self, request: Any, context: Any) -> Any:
        count = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        if not self._admit("logs", context, count):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad credentials")
        received = [
            ReceivedLogRecord(
                body=_any_value(r.body),
                severity_text=r.severity_text,
                severity_number=r.severity_number,
                attributes=_attributes(r.attributes),
                trace_id=_hex_id(r.trace_id),
                span_id=_hex_id(r.span_id),
                resource=_attributes(rl.resource.attributes),
                scope=sl.scope.name,
                time_unix_nano=r.time_unix_nano,
            )
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]
        with self._cond:
            self._store.logs.extend(received)
            self._cond.notify_all()
        return logs_service_pb2.ExportLogsServiceResponse()
