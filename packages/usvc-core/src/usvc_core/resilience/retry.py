"""Retry policy: exponential backoff with full jitter and a cap; honours Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait between attempts.

    ``delay(attempt)`` for the n-th failed attempt (1-based) is a random value in
    ``[0, min(cap, base * 2 ** (attempt - 1))]`` ("full jitter"), so that many clients
    failing together do not retry together. A server's ``Retry-After`` wins when given
    (still capped).
    """

    max_attempts: int = 3
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("base_seconds and cap_seconds must not be negative")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 62)  # bounded: 2**62 s is already "forever"
        return float(min(self.cap_seconds, self.base_seconds * (2**exponent)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.cap_seconds)
        ceiling = self.ceiling(attempt)
        return self.rng.uniform(0, ceiling) if self.jitter else ceiling

    def should_retry(self, attempt: int) -> bool:
        """Whether another attempt is allowed after ``attempt`` attempts."""
        return attempt < self.max_attempts
