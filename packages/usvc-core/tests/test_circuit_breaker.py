"""CircuitBreaker: the spec's protocol, ``async with``, the decorator, and its state machine."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from usvc_core import CircuitBreaker, CircuitOpenError
from usvc_core.resilience import CircuitState
from usvc_testing import FakeClock

ALLOWED = {
    (CircuitState.CLOSED, CircuitState.OPEN),
    (CircuitState.OPEN, CircuitState.HALF_OPEN),
    (CircuitState.HALF_OPEN, CircuitState.OPEN),
    (CircuitState.HALF_OPEN, CircuitState.CLOSED),
}


def make(
    clock: FakeClock, failures: int = 3, recovery: float = 15.0, successes: int = 2
) -> tuple[CircuitBreaker, list[tuple[CircuitState, CircuitState]]]:
    breaker = CircuitBreaker(failures, recovery, successes, clock=clock, name="dep")
    seen: list[tuple[CircuitState, CircuitState]] = []
    breaker.add_listener(lambda old, new: seen.append((old, new)))
    return breaker, seen


class TestExplicitProtocol:
    def test_defaults_match_the_spec(self) -> None:
        """Defaults are 5 failures, 30 s recovery, 2 successes; a new breaker is CLOSED."""
        breaker = CircuitBreaker()
        assert (breaker.failure_threshold, breaker.recovery_timeout) == (5, 30.0)
        assert breaker.success_threshold == 2
        assert breaker.state is CircuitState.CLOSED

    def test_opens_after_threshold_consecutive_failures(self) -> None:
        """Only consecutive failures count: a success in between resets the count."""
        breaker, seen = make(FakeClock())
        for _ in range(2):
            assert breaker.can_execute()
            breaker.record_failure()
        breaker.record_success()
        assert breaker.failure_count == 0
        for _ in range(3):
            assert breaker.can_execute()
            breaker.record_failure()
        assert breaker.state is CircuitState.OPEN
        assert not breaker.can_execute()
        assert seen == [(CircuitState.CLOSED, CircuitState.OPEN)]

    def test_half_open_after_recovery_timeout_then_closes(self) -> None:
        """OPEN refuses until recovery_timeout, then HALF_OPEN, then CLOSED after 2 successes."""
        clock = FakeClock()
        breaker, seen = make(clock)
        for _ in range(3):
            breaker.can_execute()
            breaker.record_failure()
        clock.advance(14.9)
        assert not breaker.can_execute()
        assert breaker.seconds_until_trial() == pytest.approx(0.1)
        clock.advance(0.1)
        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.can_execute()
        breaker.record_success()
        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.can_execute()
        breaker.record_success()
        assert breaker.state is CircuitState.CLOSED
        assert seen == [
            (CircuitState.CLOSED, CircuitState.OPEN),
            (CircuitState.OPEN, CircuitState.HALF_OPEN),
            (CircuitState.HALF_OPEN, CircuitState.CLOSED),
        ]

    def test_a_failed_trial_reopens_for_a_full_timeout(self) -> None:
        """A failure in HALF_OPEN opens the circuit again and restarts the timeout."""
        clock = FakeClock()
        breaker, _ = make(clock, failures=1, recovery=10.0)
        breaker.can_execute()
        breaker.record_failure()
        clock.advance(10)
        assert breaker.can_execute()
        breaker.record_failure()
        assert breaker.state is CircuitState.OPEN
        clock.advance(9.5)
        assert not breaker.can_execute()
        clock.advance(0.5)
        assert breaker.can_execute()

    def test_one_trial_at_a_time_in_half_open(self) -> None:
        """While the trial runs every other call is refused; release() frees the slot."""
        clock = FakeClock()
        breaker, _ = make(clock, failures=1, recovery=1.0)
        breaker.can_execute()
        breaker.record_failure()
        clock.advance(1)
        assert breaker.can_execute()
        assert not breaker.can_execute()
        assert "half-open" in str(breaker.open_error())
        breaker.release()
        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.can_execute()

    def test_results_while_open_change_nothing(self) -> None:
        """Late successes or failures that arrive while OPEN neither close nor extend it."""
        clock = FakeClock()
        breaker, _ = make(clock, failures=1, recovery=5.0)
        breaker.can_execute()
        breaker.record_failure()
        clock.advance(4)
        breaker.record_success()
        breaker.record_failure()
        assert breaker.state is CircuitState.OPEN
        clock.advance(1)
        assert breaker.state is CircuitState.HALF_OPEN

    def test_rejects_nonsense_parameters(self) -> None:
        """Thresholds below 1 and a negative timeout are refused at construction."""
        with pytest.raises(ValueError, match="failure_threshold"):
            CircuitBreaker(failure_threshold=0)
        with pytest.raises(ValueError, match="success_threshold"):
            CircuitBreaker(success_threshold=0)
        with pytest.raises(ValueError, match="recovery_timeout"):
            CircuitBreaker(recovery_timeout=-1)


class TestAsyncWithAndDecorator:
    async def test_async_with_records_outcomes_and_refuses_when_open(self) -> None:
        """Exceptions inside ``async with`` count as failures; an open circuit raises."""
        breaker, _ = make(FakeClock(), failures=2)
        for _ in range(2):
            with pytest.raises(RuntimeError):
                async with breaker:
                    raise RuntimeError("down")
        assert breaker.state is CircuitState.OPEN
        entered = False
        with pytest.raises(CircuitOpenError, match="'dep' is open"):
            async with breaker:
                entered = True
        assert not entered

    async def test_exceptions_outside_failure_on_count_nothing(self) -> None:
        """An error not listed in failure_on neither fails nor succeeds the call."""
        breaker = CircuitBreaker(1, clock=FakeClock(), failure_on=(ConnectionError,))
        with pytest.raises(ValueError):
            async with breaker:
                raise ValueError("caller bug")
        assert breaker.state is CircuitState.CLOSED
        with pytest.raises(ConnectionError):
            async with breaker:
                raise ConnectionError("remote down")
        assert breaker.state is CircuitState.OPEN

    async def test_decorator_guards_every_call(self) -> None:
        """``@breaker`` counts each call; once open the function is not called at all."""
        clock = FakeClock()
        breaker, _ = make(clock, failures=2, recovery=3.0, successes=1)
        calls: list[bool] = []

        @breaker
        async def call(ok: bool) -> str:
            calls.append(ok)
            if not ok:
                raise OSError("boom")
            return "fine"

        assert await call(True) == "fine"
        for _ in range(2):
            with pytest.raises(OSError):
                await call(False)
        with pytest.raises(CircuitOpenError):
            await call(True)
        assert calls == [True, False, False]
        clock.advance(3)
        assert await call(True) == "fine"
        assert breaker.state is CircuitState.CLOSED

    async def test_cancelled_trial_frees_the_slot(self) -> None:
        """A trial cancelled inside ``async with`` records nothing and lets the next trial go."""
        clock = FakeClock()
        breaker, _ = make(clock, failures=1, recovery=1.0)
        breaker.can_execute()
        breaker.record_failure()
        clock.advance(1)
        started = asyncio.Event()

        async def trial() -> None:
            async with breaker:
                started.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(trial())
        await started.wait()
        assert not breaker.can_execute()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.can_execute()

    def test_a_trial_that_never_reports_expires_after_recovery_timeout(self) -> None:
        """``can_execute()`` used only to look hands out the trial; with no record it is
        given up after ``recovery_timeout`` and the next caller becomes the trial."""
        clock = FakeClock()
        breaker, seen = make(clock, failures=1, recovery=5.0, successes=1)
        breaker.can_execute()
        breaker.record_failure()
        clock.advance(5)
        assert breaker.can_execute()  # looked, never reported
        clock.advance(4.9)
        assert not breaker.can_execute()  # the trial may still be running
        clock.advance(0.1)
        assert breaker.can_execute()  # given up: a new trial
        assert not breaker.can_execute()
        breaker.record_success()
        assert breaker.state is CircuitState.CLOSED
        assert seen[-1] == (CircuitState.HALF_OPEN, CircuitState.CLOSED)

    async def test_cancelled_explicit_trial_expires(self) -> None:
        """A trial cancelled between ``can_execute()`` and its record (CancelledError is not
        an Exception, so ``except Exception: record_failure()`` misses it) does not hold the
        breaker HALF_OPEN forever."""
        clock = FakeClock()
        breaker, _ = make(clock, failures=1, recovery=2.0, successes=1)
        breaker.can_execute()
        breaker.record_failure()
        clock.advance(2)
        started = asyncio.Event()

        async def call() -> None:
            if not breaker.can_execute():
                raise breaker.open_error()
            try:
                started.set()
                await asyncio.Event().wait()
                breaker.record_success()
            except Exception:
                breaker.record_failure()
                raise

        task = asyncio.create_task(call())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not breaker.can_execute()
        clock.advance(2)
        assert breaker.can_execute()
        breaker.record_success()
        assert breaker.state is CircuitState.CLOSED

    async def test_late_result_of_an_expired_trial_is_ignored(self) -> None:
        """An ``async with`` trial that outlived ``recovery_timeout`` cannot decide the trial
        that replaced it."""
        clock = FakeClock()
        breaker, _ = make(clock, failures=1, recovery=1.0, successes=1)
        breaker.can_execute()
        breaker.record_failure()
        clock.advance(1)
        finish = asyncio.Event()
        entered = asyncio.Event()

        async def slow_trial() -> None:
            async with breaker:
                entered.set()
                await finish.wait()
                raise ConnectionError("late failure")

        task = asyncio.create_task(slow_trial())
        await entered.wait()
        clock.advance(1)
        assert breaker.can_execute()  # the slow trial expired; this is the trial now
        finish.set()
        with pytest.raises(ConnectionError):
            await task
        assert breaker.state is CircuitState.HALF_OPEN  # the late failure did not reopen it
        breaker.record_success()
        assert breaker.state is CircuitState.CLOSED

    async def test_stale_result_does_not_decide_the_trial(self) -> None:
        """A slow call started while CLOSED cannot close a HALF_OPEN circuit when it ends."""
        clock = FakeClock()
        breaker, _ = make(clock, failures=1, recovery=1.0, successes=1)
        release_slow = asyncio.Event()
        entered = asyncio.Event()

        async def slow() -> None:
            async with breaker:
                entered.set()
                await release_slow.wait()

        slow_task = asyncio.create_task(slow())
        await entered.wait()
        breaker.can_execute()
        breaker.record_failure()  # another call opens the circuit
        clock.advance(1)
        assert breaker.can_execute()  # the trial is out
        release_slow.set()
        await slow_task
        assert breaker.state is CircuitState.HALF_OPEN
        assert not breaker.can_execute()  # still waiting for the real trial


class BreakerMachine(RuleBasedStateMachine):
    """Random calls, outcomes and clock moves against one breaker."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.breaker = CircuitBreaker(3, 10.0, 2, clock=self.clock)
        self.transitions: list[tuple[CircuitState, CircuitState]] = []
        self.breaker.add_listener(lambda old, new: self.transitions.append((old, new)))
        self.permits = 0  # permits handed out in the current HALF_OPEN generation
        self.trial_at = 0.0  # when the current trial was handed out
        self.opened_at: float | None = None

    @rule(seconds=st.sampled_from([0.0, 1.0, 5.0, 9.999, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def ask(self) -> None:
        before = self.breaker.state
        granted = self.breaker.can_execute()
        if before is CircuitState.OPEN:
            assert not granted
        if before is CircuitState.CLOSED:
            assert granted
        if before is CircuitState.HALF_OPEN and granted:
            now = self.clock.monotonic()
            if self.permits:  # a second trial only once the first one expired
                assert now >= self.trial_at + 10.0
                self.permits = 0
            self.permits += 1
            self.trial_at = now

    @precondition(lambda self: self.breaker.state is not CircuitState.OPEN)
    @rule(ok=st.booleans())
    def report(self, ok: bool) -> None:
        if self.breaker.state is CircuitState.HALF_OPEN:
            self.permits = 0
        if ok:
            self.breaker.record_success()
        else:
            self.breaker.record_failure()

    @invariant()
    def only_three_states_and_legal_moves(self) -> None:
        state = self.breaker.state
        assert state in set(CircuitState)
        assert set(self.transitions) <= ALLOWED  # never CLOSED->HALF_OPEN nor OPEN->CLOSED
        for (_, new), (old, _) in zip(self.transitions, self.transitions[1:], strict=False):
            assert new is old
        if state is CircuitState.HALF_OPEN:
            assert self.permits <= 1
        else:
            self.permits = 0


TestBreakerStateMachine = BreakerMachine.TestCase
TestBreakerStateMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
