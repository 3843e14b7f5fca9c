"""RateLimiter: bursts, refill, FIFO waiters, cancellation, and the per-window guarantee."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usvc_core import RateLimiter
from usvc_testing import FakeClock


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(20):
        await asyncio.sleep(0)


class TestRateLimiter:
    def test_burst_then_refusal(self) -> None:
        """A full bucket grants max_tokens at once, then try_acquire refuses."""
        limiter = RateLimiter(3, 60.0, clock=FakeClock())
        assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
        assert limiter.available == 0

    def test_each_token_returns_refill_seconds_after_it_was_spent(self) -> None:
        """Tokens spent at different times come back at different times."""
        clock = FakeClock()
        limiter = RateLimiter(2, 10.0, clock=clock)
        assert limiter.try_acquire()
        clock.advance(4)
        assert limiter.try_acquire()
        clock.advance(5.5)
        assert not limiter.try_acquire()
        clock.advance(0.5)
        assert limiter.try_acquire()  # the first token is back at t=10
        assert not limiter.try_acquire()  # the second returns at t=14
        clock.advance(4)
        assert limiter.available == 1

    async def test_acquire_waits_for_the_clock(self) -> None:
        """acquire() blocks on the injected clock and returns once a token is back."""
        clock = FakeClock()
        limiter = RateLimiter(1, 5.0, clock=clock)
        await limiter.acquire()
        task = asyncio.create_task(limiter.acquire())
        await settle()
        assert not task.done()
        assert clock.sleepers == 1
        clock.advance(4)
        await settle()
        assert not task.done()
        clock.advance(1)
        await settle()
        assert task.done()
        assert limiter.available == 0

    async def test_waiters_are_served_first_come_first_served(self) -> None:
        """Queued callers get tokens in arrival order, and try_acquire cannot jump the queue."""
        clock = FakeClock()
        limiter = RateLimiter(1, 1.0, clock=clock)
        assert limiter.try_acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            await limiter.acquire()
            order.append(i)

        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(waiter(i)))
            await settle()
        assert limiter.waiting == 5
        for expected in range(1, 6):
            clock.advance(1)
            assert not limiter.try_acquire()  # the token belongs to the head of the queue
            await settle()
            assert len(order) == expected
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2, 3, 4]

    async def test_cancelled_waiter_takes_no_token(self) -> None:
        """Cancelling the head or a middle waiter leaves the tokens to the others, in order."""
        clock = FakeClock()
        limiter = RateLimiter(1, 1.0, clock=clock)
        assert limiter.try_acquire()
        got: list[str] = []

        async def waiter(name: str) -> None:
            await limiter.acquire()
            got.append(name)

        tasks = {n: asyncio.create_task(waiter(n)) for n in "abcd"}
        await settle()
        tasks["a"].cancel()  # the head, sleeping on the clock
        tasks["c"].cancel()  # in the middle of the queue
        await settle()
        assert limiter.waiting == 2
        clock.advance(1)
        await settle()
        assert got == ["b"]
        clock.advance(1)
        await settle()
        assert got == ["b", "d"]
        assert tasks["a"].cancelled()
        assert tasks["c"].cancelled()
        assert limiter.available == 0

    async def test_async_with_acquires(self) -> None:
        """``async with limiter:`` spends one token."""
        limiter = RateLimiter(2, 1.0, clock=FakeClock())
        async with limiter:
            assert limiter.available == 1

    def test_rejects_nonsense_parameters(self) -> None:
        """A bucket needs at least one token and a positive refill time."""
        with pytest.raises(ValueError, match="max_tokens"):
            RateLimiter(0, 1.0)
        with pytest.raises(ValueError, match="refill_seconds"):
            RateLimiter(1, 0)


# Times are multiples of 1/8 s so that float sums are exact and windows are unambiguous.
eighths = st.integers(min_value=0, max_value=40).map(lambda n: n / 8)


@settings(max_examples=150, deadline=None)
@given(
    max_tokens=st.integers(min_value=1, max_value=5),
    refill=st.integers(min_value=1, max_value=40).map(lambda n: n / 8),
    steps=st.lists(
        st.tuples(eighths, st.integers(min_value=0, max_value=4), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    ),
)
async def test_never_more_than_max_tokens_in_any_window(
    max_tokens: int, refill: float, steps: list[tuple[float, int, int]]
) -> None:
    """However calls arrive (try_acquire, acquire, cancellations), any window of
    refill_seconds sees at most max_tokens grants."""
    clock = FakeClock()
    limiter = RateLimiter(max_tokens, refill, clock=clock)
    grants: list[float] = []
    waiters: list[asyncio.Task[None]] = []

    async def waiter() -> None:
        await limiter.acquire()
        grants.append(clock.monotonic())

    for advance, tries, new_waiters in steps:
        clock.advance(advance)
        await settle()
        grants.extend(clock.monotonic() for _ in range(tries) if limiter.try_acquire())
        waiters.extend(asyncio.create_task(waiter()) for _ in range(new_waiters))
        await settle()
        if waiters and advance > 2:
            waiters[len(waiters) // 2].cancel()
            await settle()
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)

    for start in grants:
        in_window = [g for g in grants if start <= g < start + refill]
        assert len(in_window) <= max_tokens
