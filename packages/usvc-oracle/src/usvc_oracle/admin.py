"""Bind values of the operators' statements: job filters and the listing's page cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from usvc_core.adapter_support import decode_cursor as shared_decode_cursor
from usvc_core.adapter_support import encode_cursor as shared_encode_cursor
from usvc_core.jobs import JobStatus
from usvc_core.ports import JobFilter

from usvc_oracle.rows import padded
from usvc_oracle.sql import IN_LIST_SIZE, STATUS_LIST_SIZE

__all__ = ["decode_cursor", "encode_cursor", "filter_binds", "naive_utc"]


def naive_utc(value: datetime | None, what: str = "time") -> datetime | None:
    """A time as the TIMESTAMP columns hold it: UTC without a zone. A time without a
    timezone is refused: it would be read in whatever zone its caller happened to mean."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{what} {value.isoformat()} has no timezone: pass an aware datetime")
    return value.astimezone(UTC).replace(tzinfo=None)


def _set(values: frozenset[str], prefix: str, what: str) -> dict[str, Any]:
    if len(values) > IN_LIST_SIZE:
        raise ValueError(f"filter on at most {IN_LIST_SIZE} {what}s at once, got {len(values)}")
    return {f"any_{prefix}": 1 if not values else 0, **padded(sorted(values), prefix)}


def filter_binds(where: JobFilter, *, statuses: bool) -> dict[str, Any]:
    """The bind values of ``_ADMIN_FILTER`` (and of the status list when ``statuses``)."""
    binds: dict[str, Any] = {
        "microservice": where.microservice,
        **_set(where.actions, "action", "action"),
        **_set(where.error_codes, "error", "error code"),
        "created_after": naive_utc(where.created_after, "created_after"),
        "created_before": naive_utc(where.created_before, "created_before"),
    }
    if statuses:  # the listing: its further filters too
        binds["scheduled"] = None if where.scheduled is None else int(where.scheduled)
        binds["error_text"] = where.error_text or None
        names = sorted(JobStatus(s).value for s in where.statuses)
        binds["any_status"] = 1 if not names else 0
        binds.update(padded(names, "status", STATUS_LIST_SIZE))
    return binds


def encode_cursor(created_at: datetime, job_id: int) -> str:
    """An opaque page cursor: the last row's (CREATED_AT, ID), the listing's sort key."""
    # CREATED_AT comes back from the database naive, in UTC.
    return shared_encode_cursor(created_at.replace(tzinfo=None).isoformat(), job_id)


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (CREATED_AT, ID) a cursor carries; ValueError when it is not one of ours."""
    when, number = shared_decode_cursor(cursor, (str, int))
    try:
        created = datetime.fromisoformat(when)
    except ValueError:
        created = None
    if created is None or created.tzinfo is not None or number < 1:
        raise ValueError("malformed page cursor: pass back a next_cursor")
    return created, number
