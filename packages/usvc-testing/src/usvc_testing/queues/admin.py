"""What the queues of this package share for the operator port (``QueueAdmin``): argument
checks that say what to fix, and the opaque cursors of ``list_jobs``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from usvc_core.ports import JobFilter

__all__ = [
    "MAX_MINUTES",
    "MAX_PAGE",
    "check_filter",
    "check_minutes",
    "check_page_limit",
    "check_retry_target",
    "decode_cursor",
    "encode_cursor",
]

MAX_PAGE = 1000  #: the most jobs one ``list_jobs`` page holds
MAX_MINUTES = 1440  #: the longest ``activity`` window: one day of minutes


def check_page_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit={limit!r}: a page holds 1 to {MAX_PAGE} jobs")


def check_minutes(minutes: int) -> None:
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise ValueError(f"minutes={minutes!r}: the activity window is 1 to {MAX_MINUTES} minutes")


def check_filter(where: JobFilter) -> None:
    """Times must be timezone-aware: a naive one could mean any zone."""
    for name in ("created_after", "created_before"):
        value = getattr(where, name)
        if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
            raise ValueError(f"JobFilter.{name}={value!r} must be a timezone-aware datetime")


def check_retry_target(microservice: str, job_ids: Sequence[str], where: JobFilter | None) -> None:
    """``retry_failed`` names its jobs one way: by ids, or by a filter of the same service."""
    if isinstance(job_ids, str):
        raise TypeError(f"job_ids={job_ids!r} must be a sequence of ids, not one string")
    if bool(job_ids) == (where is not None):
        raise ValueError("retry_failed needs job ids or a filter (exactly one of the two)")
    if where is not None:
        if where.microservice != microservice:
            raise ValueError(
                f"the filter is for service {where.microservice!r}, not {microservice!r}"
            )
        check_filter(where)


def encode_cursor(*parts: str | int | float) -> str:
    """An opaque cursor holding ``parts`` (the sort key of a page's last job)."""
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type]) -> list[Any]:
    """The parts of a cursor made by :func:`encode_cursor`, checked against ``kinds``;
    ValueError for anything else."""
    bad = ValueError(f"cursor {cursor!r} is not one that list_jobs gave out")
    if not isinstance(cursor, str):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (ValueError, binascii.Error):
        raise bad from None
    if (
        not isinstance(parts, list)
        or len(parts) != len(kinds)
        or not all(
            isinstance(p, k) and not isinstance(p, bool) for p, k in zip(parts, kinds, strict=True)
        )
    ):
        raise bad
    return parts
