"""RetryPolicy: exponential backoff with full jitter and a cap, Retry-After honoured."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from usvc_core import RetryPolicy


class TestRetryPolicy:
    def test_ceiling_doubles_until_the_cap(self) -> None:
        """Without jitter the delays are base, 2*base, 4*base, ... never above the cap."""
        policy = RetryPolicy(max_attempts=10, base_seconds=0.5, cap_seconds=3.0, jitter=False)
        assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]

    def test_huge_attempt_numbers_stay_capped(self) -> None:
        """A very large attempt number does not overflow; the cap holds."""
        policy = RetryPolicy(base_seconds=1.0, cap_seconds=60.0, jitter=False)
        assert policy.delay(10_000) == 60.0

    def test_retry_after_wins_and_is_capped(self) -> None:
        """A server's Retry-After replaces the backoff, up to the cap; negatives are ignored."""
        policy = RetryPolicy(base_seconds=1.0, cap_seconds=30.0, jitter=False)
        assert policy.delay(1, retry_after=7.0) == 7.0
        assert policy.delay(1, retry_after=0.0) == 0.0
        assert policy.delay(1, retry_after=120.0) == 30.0
        assert policy.delay(2, retry_after=-1.0) == 2.0

    def test_should_retry_counts_attempts(self) -> None:
        """max_attempts=3 allows attempts 1, 2 and 3 and nothing after."""
        policy = RetryPolicy(max_attempts=3)
        assert [policy.should_retry(n) for n in (1, 2, 3)] == [True, True, False]

    def test_jitter_is_spread_out(self) -> None:
        """Full jitter gives different delays to clients failing together."""
        policy = RetryPolicy(base_seconds=8.0, cap_seconds=60.0, rng=random.Random(7))
        delays = {round(policy.delay(1), 6) for _ in range(50)}
        assert len(delays) > 40

    def test_rejects_nonsense_parameters(self) -> None:
        """At least one attempt, and no negative times."""
        with pytest.raises(ValueError, match="max_attempts"):
            RetryPolicy(max_attempts=0)
        with pytest.raises(ValueError, match="must not be negative"):
            RetryPolicy(base_seconds=-1)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0, max_value=100),
    cap=st.floats(min_value=0, max_value=1000),
    seed=st.integers(),
)
def test_jittered_delay_stays_between_zero_and_the_ceiling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    """Every jittered delay lies in [0, min(cap, base * 2**(attempt-1))]."""
    policy = RetryPolicy(base_seconds=base, cap_seconds=cap, rng=random.Random(seed))
    delay = policy.delay(attempt)
    assert 0 <= delay <= policy.ceiling(attempt) <= cap
