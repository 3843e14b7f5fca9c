"""The opaque page cursors of ``QueueAdmin.list_jobs``: the sort key of a page's last job,
encoded so a caller can only pass it back."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(*parts: str | int | float) -> str:
    """An opaque cursor holding ``parts`` (the sort key of a page's last job)."""
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type]) -> list[Any]:
    """The parts of a cursor made by :func:`encode_cursor`, checked against ``kinds``;
    ValueError for anything else."""
    shown = cursor[:60] + "..." if isinstance(cursor, str) and len(cursor) > 60 else cursor
    bad = ValueError(
        f"cursor {shown!r} is not one that list_jobs gave out: pass back a next_cursor"
    )
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
        # json.loads reads NaN and Infinity; no sort key we give out holds them.
        or any(isinstance(p, float) and not math.isfinite(p) for p in parts)
    ):
        raise bad
    return parts
