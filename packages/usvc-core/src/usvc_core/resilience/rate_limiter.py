"""Rate limiter: a bucket of ``max_tokens`` tokens; each token spent comes back
``refill_seconds`` later.

Our own rather than aiolimiter or pyrate-limiter: aiolimiter reads the event loop's clock
(not injectable) and leaks continuously, which lets close to ``2 * max_tokens`` calls through
in one window; pyrate-limiter's async path sleeps on ``asyncio.sleep`` and does not serve
waiters first-come first-served. We need all three: an injectable clock, FIFO waiters whose
cancellation costs no token, and the hard guarantee that no window of ``refill_seconds``
sees more than ``max_tokens`` grants (what a remote API's "N requests per window" means).
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from usvc_core.clock import SystemClock
from usvc_core.ports import Clock

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token bucket whose tokens return one by one, ``refill_seconds`` after being spent.

    A full bucket allows a burst of ``max_tokens``; an emptied bucket is full again
    ``refill_seconds`` later; no window of ``refill_seconds`` ever sees more than
    ``max_tokens`` grants.

    ``await acquire()`` waits for a token; waiters are served first-come first-served and a
    waiter that is cancelled takes no token. ``try_acquire()`` never waits and never jumps
    the queue. ``async with limiter:`` acquires on entry.

    Args:
        max_tokens: bucket size (the largest burst; the most grants per window).
        refill_seconds: how long a spent token stays away (the window).
        clock: time source (``usvc_testing.FakeClock`` in tests).
    """

    def __init__(self, max_tokens: int, refill_seconds: float, *, clock: Clock | None = None):
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if refill_seconds <= 0:
            raise ValueError("refill_seconds must be positive")
        self.max_tokens = max_tokens
        self.refill_seconds = refill_seconds
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._returns: deque[float] = deque()  # when each spent token comes back, ascending
        self._waiters: deque[asyncio.Future[None]] = deque()  # head = next to be served

    @property
    def available(self) -> int:
        """Tokens in the bucket now."""
        self._collect()
        return self.max_tokens - len(self._returns)

    @property
    def waiting(self) -> int:
        """Callers queued in ``acquire()``."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a token if one is free and nobody is queued before us; never waits."""
        return not self._waiters and self._take()

    async def acquire(self) -> None:
        """Wait until a token is ours (first come, first served)."""
        if self.try_acquire():
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            if self._waiters[0] is not turn:
                await turn  # resolved by the waiter before us when it leaves the queue
            while not self._take():
                await self._clock.sleep(self._returns[0] - self._clock.monotonic())
        finally:
            # Leaving the queue, with a token or cancelled (then without one): the next in
            # line becomes the head and starts waiting for the clock.
            was_head = self._waiters[0] is turn
            self._waiters.remove(turn)
            if was_head and self._waiters and not self._waiters[0].done():
                self._waiters[0].set_result(None)

    async def __aenter__(self) -> RateLimiter:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Tokens are not given back on exit: they return with time."""

    def _collect(self) -> None:
        now = self._clock.monotonic()
        while self._returns and self._returns[0] <= now:
            self._returns.popleft()

    def _take(self) -> bool:
        self._collect()
        if len(self._returns) >= self.max_tokens:
            return False
        self._returns.append(self._clock.monotonic() + self.refill_seconds)
        return True

    def __repr__(self) -> str:
        return (
            f"<RateLimiter {self.available}/{self.max_tokens} per {self.refill_seconds:g} s, "
            f"{self.waiting} waiting>"
        )
