"""How the ``usvc`` command shows things: aligned plain-text tables for people, one JSON
document per command for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from usvc_core.cli.exitcodes import ExitCode
from usvc_core.jobs import Job

__all__ = [
    "Result",
    "format_age",
    "format_time",
    "job_document",
    "pretty_json",
    "safe",
    "table",
    "to_json",
]


@dataclass(frozen=True, slots=True)
class Result:
    """What a command produced: its JSON document, its text for people, its exit code and,
    when the operation did not (fully) happen, a one-line message for stderr."""

    document: Mapping[str, Any]
    text: str
    code: ExitCode = ExitCode.OK
    error: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)  #: extra lines for stderr


def safe(text: str, *, newlines: bool = False) -> str:
    """``text`` with control and format characters escaped, so a job's payload or error
    message cannot move the cursor, recolour or reorder the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (newlines and c == "\n") else _escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_document(job: Job) -> dict[str, Any]:
    """One job as JSON, with the same keys in the same order every time."""
    return {
        "id": job.id,
        "microservice": job.microservice,
        "action": job.action,
        "status": job.status.value,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "token": job.token,
        "idempotency_key": job.idempotency_key,
        "unique_key": job.unique_key,
        "run_at": _iso(job.run_at),
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "runtime_ms": job.runtime_ms,
        "lease_owner": job.lease_owner,
        "lease_expires_at": _iso(job.lease_expires_at),
        "cancel_requested": job.cancel_requested,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "payload": job.payload,
        "payload_error": job.payload_error,
        "results": job.results,
    }


def to_json(document: Mapping[str, Any]) -> str:
    # ASCII escapes keep the document valid whatever the terminal's encoding.
    return json.dumps(document, indent=2, ensure_ascii=True, default=str)


def pretty_json(value: Any) -> str:
    return safe(json.dumps(value, indent=2, ensure_ascii=False, default=str), newlines=True)


def format_time(value: datetime | None) -> str:
    """UTC, to the second: ``2026-12-05 07:30:00Z``."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def format_age(seconds: float | None) -> str:
    """``850ms``, ``42s``, ``12m05s``, ``3h20m``, ``2d04h``."""
    if seconds is None:
        return "-"
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    right: Sequence[int] = (),
    max_width: int = 60,
) -> str:
    """Columns separated by two spaces, each as wide as its widest cell (at most
    ``max_width``: longer cells end in ``...``); columns in ``right`` are right-aligned."""

    def cell(value: Any) -> str:
        text = safe(" ".join(str("-" if value is None else value).split()))
        return text if len(text) <= max_width else text[: max_width - 3] + "..."

    cells = [[cell(h) for h in headers], *([cell(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(r)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
