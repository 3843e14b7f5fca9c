"""Where the kit's error tree meets HTTP: one table from error to status, and the handlers
that answer with it, so an error a route does not catch still gets its status (never a
bare 500) and no answer echoes much of what the client sent.

Like the CLI's exit codes: the most specific class wins (the table is walked along the
error's MRO).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from usvc_core.bounds import OutOfBoundsError
from usvc_core.errors import (
    CircuitOpenError,
    ConfigurationError,
    DuplicateJobError,
    JobLockedError,
    JobNotFoundError,
    LeaseLostError,
    QueueError,
    ShuttingDownError,
    UsvcError,
)

from usvc_http.security import ADMIN_HEADERS

__all__ = [
    "ECHO_LIMIT",
    "clip",
    "error_response",
    "install_error_handlers",
    "status_for",
]

_log = structlog.get_logger("usvc.http")

#: The most characters of a client's input an error answer repeats.
ECHO_LIMIT = 200

# (status, what the answer says before the error's own message)
_STATUSES: Mapping[type[BaseException], tuple[int, str]] = {
    OutOfBoundsError: (422, ""),
    DuplicateJobError: (409, ""),
    JobNotFoundError: (404, ""),
    LeaseLostError: (409, ""),
    JobLockedError: (503, "the job is locked by another session, try again: "),
    QueueError: (503, "job queue unavailable: "),
    CircuitOpenError: (503, "a dependency is unavailable: "),
    ShuttingDownError: (503, "the service is shutting down: "),
    ConfigurationError: (500, "the service is misconfigured: "),
    UsvcError: (500, ""),
}
#: Seconds a client waits before repeating a call answered 503.
_RETRY_AFTER = "1"


def status_for(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and message for ``exc``: its class's entry in the error table (the
    most specific one), 500 "internal error" for anything outside the tree."""
    for cls in type(exc).__mro__:
        found = _STATUSES.get(cls)
        if found is not None:
            status, prefix = found
            return status, clip(f"{prefix}{exc}", 500)
    return 500, "internal error"


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis says it was cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _echo(value: Any) -> Any:
    """A client's value as an error may repeat it: short scalars as they are, anything
    else as a clipped repr; never NaN or infinity (not JSON)."""
    if value is None or (isinstance(value, bool | int) and abs(value) < 2**53):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str):
        return clip(value)
    return clip(repr(value))


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors[:20]:
        entry: dict[str, Any] = {
            "loc": [clip(str(p), 100) for p in err.get("loc", ())],
            "field": ".".join(str(p) for p in err.get("loc", ())[1:])[:100] or None,
            "msg": clip(str(err.get("msg", ""))),
            "type": str(err.get("type", "")),
        }
        if "input" in err:
            entry["input"] = _echo(err["input"])
        out.append(entry)
    return out


def error_response(
    status: int, detail: Any, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """``{"detail": ...}`` with ``status``; a 503 says when to try again."""
    sent = dict(headers or {})
    if status == 503:
        sent.setdefault("Retry-After", _RETRY_AFTER)
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=sent)


def install_error_handlers(api: FastAPI) -> None:
    """Answer the kit's errors with their status, validation errors with a short 422, and
    anything else with a plain 500 (logged with its traceback)."""

    async def kit_error(request: Request, exc: Exception) -> JSONResponse:
        status, message = status_for(exc)
        if status >= 500:  # 503: the store or a dependency is away (the worker says so too)
            log = _log.warning if status == 503 else _log.error
            log("request failed", path=request.url.path, error=message, status=status)
        extra: dict[str, Any] = {}
        if isinstance(exc, DuplicateJobError) and exc.existing_job_id is not None:
            extra["existing_job_id"] = exc.existing_job_id
        return error_response(status, message, **extra)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, _validation_errors(exc.errors()))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = clip(exc.detail, 500) if isinstance(exc.detail, str) else exc.detail
        return error_response(exc.status_code, detail, exc.headers)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error(
            "request failed",
            path=request.url.path,
            error=f"{type(exc).__name__}: {clip(str(exc), 500)}",
            exc_info=exc,
        )
        # Sent by Starlette's outermost middleware, past the one that adds the headers.
        admin = request.url.path.startswith("/admin")
        return error_response(500, "internal error", ADMIN_HEADERS if admin else None)

    api.add_exception_handler(UsvcError, kit_error)
    api.add_exception_handler(RequestValidationError, invalid)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(Exception, unexpected)
