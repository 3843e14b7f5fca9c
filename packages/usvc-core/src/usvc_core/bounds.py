"""The numeric bounds of a job's fields, shared by every way a job comes in (the admin
API, the CLI, ``Application.enqueue``) so one value is refused the same way everywhere.

The bounds are what every store holds exactly: a 32-bit signed priority fits SQLite,
Oracle's NUMBER(10), PostgreSQL's integer and MongoDB's int32; a delay of at most ten
years stays far inside what ``datetime`` can add to now.
"""

from __future__ import annotations

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_DELAY_SECONDS",
    "MAX_PRIORITY",
    "MIN_ATTEMPTS",
    "MIN_PRIORITY",
]

MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1
MAX_DELAY_SECONDS = 10 * 366 * 24 * 3600.0  #: about ten years
MIN_ATTEMPTS = 1
MAX_ATTEMPTS = 1000
