"""Turning rows into jobs and requests into bind values: the queue's pure helpers."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import oracledb
from usvc_core.jobs import Job, JobStatus

from usvc_oracle.sql import IN_LIST_SIZE, in_list_binds

__all__ = [
    "MAX_LENGTHS",
    "MAX_VARCHAR_BIND_BYTES",
    "check_length",
    "chunks",
    "clob_inputs",
    "db_id",
    "decode_payload",
    "dispatch_order",
    "error_text",
    "job_from_row",
    "number",
    "padded",
    "seconds",
    "utc",
]

MAX_ERROR_MESSAGE = 32_000
#: Longest string bound as VARCHAR. The thin driver sends a longer string bind as LONG
#: once it exceeds the server's string limit, which it reads from the server's runtime
#: capabilities (``Capabilities.max_string_size``: 32 767 with MAX_STRING_SIZE=EXTENDED,
#: else 4 000) and does not expose; Oracle refuses a LONG bind next to RETURNING
#: (ORA-22816). 4 000 is right for both settings: on EXTENDED a CLOB bind is merely unneeded.
MAX_VARCHAR_BIND_BYTES = 4_000
MAX_LENGTHS = {
    "microservice": 128,
    "token": 256,
    "idempotency_key": 256,
    "unique_key": 256,
    "worker_id": 200,
    "action": 256,
}


def utc(value: Any) -> datetime | None:
    """Timestamps are stored as UTC and come back naive."""
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def decode_payload(raw: Any) -> tuple[Any, str | None]:
    """The stored payload as JSON, or ``(None, why)`` when it cannot be decoded."""
    if raw is None or isinstance(raw, dict | list):
        return raw, None  # NULL, or a column the driver already parsed (IS JSON)
    text = _text(raw)
    try:
        return json.loads(text or ""), None
    except ValueError as exc:
        return None, str(exc)


def _decode_results(raw: Any) -> Any:
    if raw is None or isinstance(raw, dict | list):
        return raw
    text = _text(raw) or ""
    try:
        return json.loads(text)
    except ValueError:
        return text


def number(value: Any, default: int = 0) -> int:
    return int(value) if value is not None else default


def job_from_row(row: dict[str, Any], **extra: Any) -> Job:
    payload, payload_error = decode_payload(row.get("PAYLOAD"))
    error_code = row.get("ERROR_CODE")
    error_message = _text(row.get("ERROR_MESSAGE"))
    if error_code is not None and error_message is None:
        error_message = ""  # Oracle stores '' as NULL
    runtime = row.get("RUNTIME_MS")
    values: dict[str, Any] = {
        "id": str(int(row["ID"])),
        "microservice": row.get("MICROSERVICE") or "",
        "action": row.get("ACTION") or "",
        "payload": payload,
        "payload_error": payload_error,
        "status": JobStatus(row.get("STATUS") or JobStatus.READY.value),
        "priority": number(row.get("PRIORITY")),
        "run_at": utc(row.get("RUN_AT")),
        "attempts": number(row.get("ATTEMPTS")),
        "max_attempts": number(row.get("MAX_ATTEMPTS"), 1),
        "token": row.get("TOKEN") or str(int(row["ID"])),  # NULL: the job's id
        "idempotency_key": row.get("IDEMPOTENCY_KEY"),
        "lease_owner": row.get("LEASE_OWNER"),
        # A requeued row keeps its last token (see the retry statement); a Ready job has none.
        "lease_token": row.get("LEASE_TOKEN")
        if row.get("STATUS") != JobStatus.READY.value
        else None,
        "lease_expires_at": utc(row.get("LEASE_EXPIRES_AT")),
        "results": _decode_results(row.get("RESULTS")),
        "error_code": error_code,
        "error_message": error_message,
        "runtime_ms": float(runtime) if runtime is not None else None,
        "unique_key": row.get("UNIQUE_KEY"),
        "cancel_requested": bool(row.get("CANCEL_REQUESTED") or 0),
        "created_at": utc(row.get("CREATED_AT")),
        "updated_at": utc(row.get("UPDATED_AT")),
        "started_at": utc(row.get("STARTED_AT")),
        "finished_at": utc(row.get("FINISHED_AT")),
    }
    values.update(extra)
    return Job(**values)


def db_id(job_id: str) -> int | None:
    """The NUMBER id behind a port id, or None when it cannot be one of ours."""
    return int(job_id) if job_id.isascii() and job_id.isdigit() else None


def dispatch_order(job: Job) -> tuple[int, datetime, int]:
    """Highest priority first, then oldest run_at, then oldest id."""
    return (-job.priority, job.run_at or datetime.min.replace(tzinfo=UTC), int(job.id))


def chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def padded(
    values: Sequence[Any], prefix: str = "id", size: int = IN_LIST_SIZE, pad: Any = None
) -> dict[str, Any]:
    """Bind values of one fixed-width IN list; NULL never matches, so NULL pads are harmless
    in ``IN``; a ``NOT IN`` list is padded with one of its own values instead."""
    if len(values) > size:
        raise ValueError(f"at most {size} values fit one list, got {len(values)}")
    names = in_list_binds(prefix, size)
    return {name: (values[i] if i < len(values) else pad) for i, name in enumerate(names)}


def check_length(what: str, value: str | None) -> None:
    limit = MAX_LENGTHS[what]
    if value is not None and len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")


def seconds(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"not a finite number of seconds: {value!r}")
    return max(float(value), 0.0)


def error_text(message: str) -> str:
    return message if len(message) <= MAX_ERROR_MESSAGE else message[:MAX_ERROR_MESSAGE] + "..."


def clob_inputs(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """``setinputsizes`` entries binding as CLOB the ``names`` whose value, in any row, is
    too long for a VARCHAR bind (empty when none is)."""
    big = {
        name
        for row in rows
        for name in names
        if isinstance(value := row.get(name), str)
        and len(value) * 4 > MAX_VARCHAR_BIND_BYTES  # cheap test before encoding
        and len(value.encode("utf-8")) > MAX_VARCHAR_BIND_BYTES
    }
    return dict.fromkeys(sorted(big), oracledb.DB_TYPE_CLOB)
