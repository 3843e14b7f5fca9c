"""Argument checks of the operator port (``QueueAdmin``) that every adapter makes the
same way, each saying what to fix."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from usvc_core.admin_records import JobFilter

__all__ = [
    "MAX_MINUTES",
    "MAX_PAGE",
    "check_filter",
    "check_minutes",
    "check_page_limit",
    "check_retry_target",
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
