"""The FastAPI app: ``GET /health`` (and its probes ``/health/live``, ``/health/ready``),
``GET /metrics`` and, in dev mode only, ``POST /dev/job`` (which answers 503 at once when
the service starts shutting down while it waits). Every body is limited while it streams
in (:mod:`usvc_http.body_limit`); errors get their status in one place
(:mod:`usvc_http.errors`)."""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from opentelemetry.context import get_current as get_current_context
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect
from usvc_core.errors import QueueError, ShuttingDownError
from usvc_core.health import Status
from usvc_core.jobs import Job, JobStatus

from usvc_http.body_limit import BodyLimit
from usvc_http.errors import clip, install_error_handlers
from usvc_http.metrics import PrometheusMetrics
from usvc_http.settings import HttpSettings, http_settings
from usvc_http.slashes import redirect_slashes_relatively


def _no_telemetry() -> None:
    return None


try:
    from fastapi.telemetry import get_telemetry_data

    _telemetry_data: Callable[[], object] = get_telemetry_data
except ImportError:  # an older FastAPI, without native telemetry
    _telemetry_data = _no_telemetry


if TYPE_CHECKING:
    from usvc_core.ports import JobQueue
    from usvc_core.surface_context import SurfaceContext

__all__ = ["build_api"]

# JSONResponse's own encoding (compact, UTF-8, no NaN), built once: json.dumps with these
# options builds an encoder, and JSONEncoder.encode a C encoder, per call. No circular
# check: an answer is built from JSON the store holds.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (
    _c_make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _c_make_encoder is not None
    else None
)


class _JSONAnswer(Response):
    """``JSONResponse(body, status_code=status)``, byte for byte and header for header
    (a test compares them), built directly: 2.3 instead of 7 µs (Response.__init__'s
    generic render and header steps skipped)."""

    media_type = "application/json"

    def __init__(self, body: dict[str, Any], status: int = 200) -> None:
        # _ENCODER: a Python without the _json accelerator
        text = _ENCODER.encode(body) if _C_ENCODE is None else "".join(_C_ENCODE(body, 0))
        self.body = text.encode()
        self.status_code = status
        self.background = None
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
        ]


class _RequestResponseRoute(APIRoute):
    """A documented route whose endpoint takes the Request and returns a Response itself.

    FastAPI's per-request work around the endpoint (solving its one parameter, the
    Request, as a dependency; the endpoint context; the return value's checks) has nothing
    to do for it and costs ~30 µs per call (measured on bare FastAPI's ASGI app: 86 → 53
    µs): it is skipped, except while FastAPI's own telemetry records the request (its
    spans and data come from that work). OpenAPI still documents the route.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            # FastAPI's telemetry data lives in the current OpenTelemetry context: an empty
            # one (no SDK, no span: the common case) holds none, and is two calls to read
            # instead of five.
            if get_current_context() and _telemetry_data() is not None:
                return await full(request)
            response: Response = await endpoint(request)
            return response

        return handler


async def _read_body(request: Request) -> bytes:
    """``await request.body()`` for a route that reads its body once, without the async
    generator under it (``request.stream()``: about 10 calls for a one-piece body)."""
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect


# json.loads' own scanner, called directly for the common body (see _parse_body).
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _parse_body(raw: bytes) -> Any:
    """``json.loads(raw)``: for a body that opens an object in UTF-8 (what detect_encoding
    finds when the first byte is ``{`` and the second not NUL), the scanner straight away,
    without json.loads' four Python calls around it; anything else, trailing text or an
    error takes json.loads itself, for its exact result or message."""
    if raw[:1] == b"{" and raw[1:2] != b"\x00":
        try:
            text = raw.decode("utf-8", "surrogatepass")
            value, end = _scan(text, 0)
            if end == len(text):
                return value
        except (StopIteration, ValueError, RecursionError):
            pass
    return json.loads(raw)


def _job_body(job: Job) -> dict[str, Any]:
    error = (
        {"error_code": job.error_code, "error_message": job.error_message}
        if job.status is JobStatus.FAILED
        else None
    )
    return {
        "job_id": job.id,
        "status": str(job.status),  # its value (a StrEnum), without the enum descriptor
        "results": job.results if job.status is JobStatus.COMPLETED else None,
        "error": error,
        "runtime_ms": job.runtime_ms,
    }


def _problem(status: int, detail: str) -> Response:
    return _JSONAnswer({"detail": detail}, status)


async def _job_now(queue: JobQueue, job: Job) -> Job:
    """The job as the queue holds it now (as enqueued when the queue cannot say)."""
    try:
        current = await queue.get(job.id)
    except QueueError:
        return job
    return current if current is not None else job


def build_api(app: SurfaceContext, http: HttpSettings | None = None) -> FastAPI:
    """The HTTP API of one application (``http``: default, read from the settings source)."""
    settings = app.settings
    http = http if http is not None else http_settings(settings)
    api = FastAPI(
        title=settings.MICROSERVICE_NAME,
        version=settings.SERVICE_VERSION,
        docs_url="/docs" if settings.DEV_MODE else None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    install_error_handlers(api)
    redirect_slashes_relatively(api)
    metrics = app.metrics
    own_registry = metrics if isinstance(metrics, PrometheusMetrics) else PrometheusMetrics()

    @api.get("/health")
    async def health() -> JSONResponse:
        """The aggregate of every check: 200 GREEN or YELLOW, 503 RED (the spec's)."""
        snapshot = app.health.snapshot()
        code = 503 if snapshot.status is Status.RED else 200
        return JSONResponse(snapshot.to_dict(), status_code=code)

    @api.get("/health/ready")
    async def ready() -> JSONResponse:
        """Readiness: the same answer as /health (RED: take this instance out of rotation)."""
        return await health()

    @api.get("/health/live")
    async def live() -> JSONResponse:
        """Liveness: 200 while the process answers and its worker loop runs; an open circuit
        or a store outage does not make it 503 (a restart would not cure those)."""
        running = app.worker_running()
        return JSONResponse(
            {"status": "alive" if running else "stopped", "worker_running": running},
            status_code=200 if running else 503,
        )

    @api.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(own_registry.render(), media_type=CONTENT_TYPE_LATEST)

    if settings.DEV_MODE:
        wait_seconds = http.DEV_JOB_WAIT_SECONDS

        async def dev_job(request: Request) -> Response:
            """Submit a job and wait for its result (dev mode only)."""
            raw = await _read_body(request)  # at most HTTP_MAX_BODY_BYTES (BodyLimit)
            try:
                payload = _parse_body(raw)
            except (ValueError, RecursionError) as exc:
                return _problem(400, clip(f"body is not valid JSON: {exc}"))
            if not isinstance(payload, dict):
                return _problem(
                    422,
                    f'body must be a JSON object with an "action" string, got '
                    f"{type(payload).__name__}",
                )
            if not isinstance(payload.get("action"), str) or not payload["action"]:
                return _problem(422, 'body must have an "action" string naming the handler')
            try:
                job = await app.enqueue(payload)
            except ValueError as exc:  # e.g. NaN in the payload
                return _problem(422, clip(f"payload cannot be stored as JSON: {exc}"))
            try:
                final = await app.wait_for_job(job.id, wait_seconds)
            except ShuttingDownError:
                # Answered at once: the shutdown never waits for this request.
                final = await _job_now(app.queue, job)
                if not final.status.is_finished:
                    body = _job_body(final)
                    body["detail"] = (
                        f"the service is shutting down and stopped waiting for job {job.id} "
                        f"({final.status.value}); the job is kept: it finishes during the "
                        "shutdown, or is put back to Ready and runs again"
                    )
                    return _JSONAnswer(body, 503)
            if final is None:
                return _problem(500, f"job {job.id} disappeared from the queue")
            if not final.status.is_finished:
                body = _job_body(final)
                body["detail"] = f"job not finished after {wait_seconds:g} s; it keeps running"
                return _JSONAnswer(body, 504)
            code = 200 if final.status is JobStatus.COMPLETED else 422
            return _JSONAnswer(_job_body(final), code)

        api.router.add_api_route(
            "/dev/job",
            dev_job,
            methods=["POST"],
            response_model=None,
            route_class_override=_RequestResponseRoute,
        )
        # Tried first: the router tries its routes in order (the docs' three, the probes,
        # /metrics), each miss a path match, ~10 µs in all. No path overlaps this one, so
        # no answer changes; OpenAPI lists it first.
        api.router.routes.insert(0, api.router.routes.pop())

    # Added first, so it runs inside the admin tree's gate: anonymous callers are refused
    # before their body is counted, and every 413 under /admin gets its headers.
    api.add_middleware(BodyLimit, max_bytes=http.HTTP_MAX_BODY_BYTES)
    if http.ADMIN_TOKEN.get_secret_value():
        # Imported only when the admin tree is on: its routers and pages are ~10 modules.
        from usvc_http.admin import mount_admin

        mount_admin(api, app, http)
    return api
