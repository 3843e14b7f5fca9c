"""Parsers for the ``usvc`` command's argument values (used as argparse ``type=``): each
turns text into a value or raises ``argparse.ArgumentTypeError`` with a message that says
what to write instead."""

from __future__ import annotations

import json
import math
import re
import sys
from argparse import ArgumentTypeError
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from usvc_core.bounds import DELAY_SECONDS, MAX_ATTEMPTS, PRIORITY, Bound, OutOfBoundsError
from usvc_core.jobs import ErrorCode, JobStatus

__all__ = [
    "parse_attempts",
    "parse_data",
    "parse_delay",
    "parse_duration",
    "parse_error_codes",
    "parse_limit",
    "parse_minutes",
    "parse_positive_duration",
    "parse_priority",
    "parse_statuses",
    "parse_when",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
#: The longest duration any option takes (purge, --since, --timeout).
_MAX_DURATION_SECONDS = 36_500 * 86_400.0
_DURATION_HELP = (
    "a number of seconds or a number with a unit ms, s, m, h, d, w (30s, 15m, 1h30m, 7d)"
)


class _TooLongError(ArgumentTypeError):
    """A duration past :data:`_MAX_DURATION_SECONDS`."""


def parse_duration(text: str) -> float:
    """``90``, ``1.5``, ``90s``, ``15m``, ``1h30m``, ``7d``, ``250ms`` -> seconds (>= 0)."""
    raw = text.strip().lower()
    if raw.startswith("-"):
        raise ArgumentTypeError(
            f"invalid duration {text!r}: a duration cannot be negative; write how long, "
            f"e.g. {raw.lstrip('-') or '7d'}"
        )
    try:
        seconds = float(raw)
    except ValueError:
        parts = list(_PART.finditer(raw))
        if not parts or "".join(p.group(0) for p in parts) != raw:
            raise ArgumentTypeError(f"invalid duration {text!r}: use {_DURATION_HELP}") from None
        seconds = sum(float(p.group(1)) * _UNITS[p.group(2)] for p in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ArgumentTypeError(f"invalid duration {text!r}: must be zero or more")
    if seconds > _MAX_DURATION_SECONDS:
        # Beyond this, dates computed from it overflow (OverflowError, not a message).
        raise _TooLongError(f"invalid duration {text!r}: at most 100 years (36500d)")
    return seconds


def _bounded[N: (int, float)](bound: Bound, value: N, option: str) -> N:
    try:
        return bound.check(value)
    except OutOfBoundsError:
        raise ArgumentTypeError(f"invalid {option} {value!r}: must be {bound.describe()}") from None


def parse_delay(text: str) -> float:
    """A duration within :data:`usvc_core.bounds.DELAY_SECONDS`."""
    return _bounded(DELAY_SECONDS, parse_duration(text), "delay")


def parse_positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ArgumentTypeError(f"invalid duration {text!r}: must be more than zero")
    return seconds


def parse_when(text: str) -> datetime:
    """A point in time: ISO 8601 (``2026-12-05``, ``2026-12-05T07:30``, with or without an
    offset; no offset means UTC), or a duration meaning that long ago (``1h``, ``7d``)."""
    raw = text.strip()
    if raw.startswith("-"):
        raise ArgumentTypeError(
            f"invalid time {text!r}: a duration ago cannot be negative; write how long ago, "
            f"e.g. {raw.lstrip('-') or '2h'}"
        )
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        try:
            ago = parse_duration(raw)
        except _TooLongError:
            raise ArgumentTypeError(
                f"invalid time {text!r}: at most 100 years (36500d) ago"
            ) from None
        except ArgumentTypeError:
            raise ArgumentTypeError(
                f"invalid time {text!r}: use ISO 8601 (2026-12-05 or 2026-12-05T07:30:00Z; "
                "UTC unless an offset is given) or a duration ago (30m, 12h, 7d)"
            ) from None
        return datetime.now(UTC) - timedelta(seconds=ago)
    try:
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past the last datetime in UTC
        raise ArgumentTypeError(f"invalid time {text!r}: out of range") from None


def _split(values: str) -> list[str]:
    return [v.strip() for v in values.split(",") if v.strip()]


def parse_statuses(text: str) -> list[JobStatus]:
    """One status or several separated by commas, in any case: ``failed``, ``Ready,Assigned``."""
    by_name = {s.value.lower(): s for s in JobStatus}
    out = []
    for name in _split(text) or [text]:
        status = by_name.get(name.lower())
        if status is None:
            known = ", ".join(s.value for s in JobStatus)
            raise ArgumentTypeError(f"unknown status {name!r}; use one of: {known}")
        out.append(status)
    return out


def parse_error_codes(text: str) -> list[str]:
    """One error code or several separated by commas, in any case: ``handler_error``."""
    out = []
    for name in _split(text) or [text]:
        try:
            out.append(ErrorCode(name.upper()).value)
        except ValueError:
            known = ", ".join(c.value for c in ErrorCode)
            raise ArgumentTypeError(f"unknown error code {name!r}; use one of: {known}") from None
    return out


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ArgumentTypeError(f"invalid {what} {text!r}: must be a whole number") from None


def parse_limit(text: str) -> int:
    value = _int(text, "limit")
    if not 1 <= value <= 1000:
        raise ArgumentTypeError(f"invalid limit {value}: must be between 1 and 1000")
    return value


def parse_minutes(text: str) -> int:
    value = _int(text, "number of minutes")
    if not 1 <= value <= 1440:
        raise ArgumentTypeError(f"invalid number of minutes {value}: must be between 1 and 1440")
    return value


def parse_priority(text: str) -> int:
    return _bounded(PRIORITY, _int(text, "priority"), "priority")


def parse_attempts(text: str) -> int:
    return _bounded(MAX_ATTEMPTS, _int(text, "number of attempts"), "number of attempts")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


def parse_data(text: str) -> dict[str, Any]:
    """A job's input: a JSON object, ``@file.json`` to read it from a file, ``-`` for stdin."""
    source = "--data"
    if text == "-":
        source, text = "stdin", sys.stdin.read()
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ArgumentTypeError(
                f"cannot read {path}: {exc.__class__.__name__}: {exc}"
            ) from None
        source = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentTypeError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            """write an object such as '{"name": "World"}'"""
        ) from None
    if not isinstance(data, dict):
        raise ArgumentTypeError(
            f"{source} must be a JSON object (the job's input fields), not "
            f"{_json_kind(data)}; "
            """write an object such as '{"name": "World"}'"""
        )
    return data
