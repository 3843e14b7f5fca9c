"""The per-action limits a claim is given (``max_running``), checked the same way by every queue."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["checked_limits"]


def checked_limits(max_running: Mapping[str, int] | None) -> dict[str, int]:
    """``max_running`` as a plain dict (empty when there are no limits); a limit that is not
    a whole number of at least 0 raises ValueError naming the action."""
    if not max_running:
        return {}
    limits: dict[str, int] = {}
    for action, most in max_running.items():
        if isinstance(most, bool) or not isinstance(most, int) or most < 0:
            raise ValueError(
                f"max_running[{action!r}] = {most!r}: a limit is a whole number of jobs, 0 or more"
            )
        limits[action] = most
    return limits
