"""Reading a stored payload that another producer may have written badly."""

from __future__ import annotations

import json
import json.scanner
from typing import Any

__all__ = ["decode_payload"]

# What json.loads runs, minus its wrappers (typeshed types the argument oddly).
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def decode_payload(raw: Any) -> tuple[Any, str | None]:
    """The stored payload decoded, or ``(None, why)`` when it is not valid JSON text.

    Never raises: a bad payload must not break the claim that delivers it (the worker
    fails that job with ``INVALID_PAYLOAD`` instead).
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"not UTF-8 text ({exc})"
    if not isinstance(raw, str):
        return raw, None  # a number stored by another producer is still a JSON value
    try:
        # The decoder's C scanner straight away: json.loads adds two Python calls around
        # it, a fifth of a small payload's cost. Anything unusual (surrounding whitespace,
        # trailing text, an error) takes json.loads for its exact result or message.
        value, end = _scan(raw, 0)
        if end == len(raw):
            return value, None
    except (StopIteration, json.JSONDecodeError, ValueError, RecursionError):
        pass
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as exc:
        return None, str(exc)
    except RecursionError:
        return None, "nested too deeply"
