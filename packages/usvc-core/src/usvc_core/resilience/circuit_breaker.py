"""Circuit breaker: stop calling a dependency that keeps failing, then probe it carefully.

States and the only transitions between them::

    CLOSED --failure_threshold consecutive failures--> OPEN
    OPEN --recovery_timeout elapsed--> HALF_OPEN
    HALF_OPEN --one failure--> OPEN
    HALF_OPEN --success_threshold successes--> CLOSED

In HALF_OPEN one trial call runs at a time; everything else is refused until it reports,
or until ``recovery_timeout`` has passed since it was handed out: a trial that never reports
(its caller was cancelled between ``can_execute()`` and the record, or only looked) is then
given up and the next call becomes the trial.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from enum import StrEnum
from types import TracebackType
from typing import ParamSpec, TypeVar

from usvc_core.clock import SystemClock
from usvc_core.errors import CircuitOpenError
from usvc_core.ports import Clock

__all__ = ["CircuitBreaker", "CircuitState"]

P = ParamSpec("P")
T = TypeVar("T")
StateListener = Callable[["CircuitState", "CircuitState"], None]


class CircuitState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"  #: calls pass; consecutive failures are counted
    OPEN = "open"  #: calls are refused until ``recovery_timeout`` has passed
    HALF_OPEN = "half_open"  #: one trial call at a time decides between CLOSED and OPEN


class CircuitBreaker:
    """Counts failures of calls to one dependency and refuses calls while it is down.

    Three ways to use it:

    - the explicit protocol: ``if not cb.can_execute(): raise CircuitOpenError(...)``, then
      ``cb.record_success()`` or ``cb.record_failure()``; ``can_execute()`` hands out the
      single HALF_OPEN trial, so every ``True`` must be followed by one record (or
      :meth:`release`); a permit never settled expires after ``recovery_timeout``;
    - ``async with cb:`` raises :class:`~usvc_core.errors.CircuitOpenError` when refused and
      records the outcome itself (an exception in ``failure_on`` is a failure, other
      exceptions and cancellation record nothing);
    - ``@cb`` on an ``async def`` does the same around every call.

    A result that arrives after the state changed under it (a slow call started while CLOSED
    finishing in HALF_OPEN) is ignored when it comes through ``async with`` or the decorator.

    Args:
        failure_threshold: consecutive failures that open a closed circuit.
        recovery_timeout: seconds an open circuit waits before it allows a trial call.
        success_threshold: successful trial calls that close a half-open circuit.
        clock: time source (``usvc_testing.FakeClock`` in tests).
        name: shown in error messages.
        failure_on: exception types that count as failures in ``async with`` / decorator use.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        success_threshold: int = 2,
        *,
        clock: Clock | None = None,
        name: str = "circuit",
        failure_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if success_threshold < 1:
            raise ValueError("success_threshold must be at least 1")
        if recovery_timeout < 0:
            raise ValueError("recovery_timeout must not be negative")
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.success_threshold = success_threshold
        self.name = name
        self.failure_on = failure_on
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._state = CircuitState.CLOSED
        self._generation = 0  # bumped on every transition; tags permits to spot stale results
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._trial_started_at = 0.0
        self._listeners: list[StateListener] = []
        self._entered: dict[asyncio.Task[object] | None, list[int]] = {}

    # --- observation -----------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state (an open circuit turns HALF_OPEN here once its timeout passed)."""
        if (
            self._state is CircuitState.OPEN
            and self._clock.monotonic() >= self._opened_at + self.recovery_timeout
        ):
            self._transition(CircuitState.HALF_OPEN)
        return self._state

    @property
    def failure_count(self) -> int:
        """Consecutive failures counted while CLOSED."""
        return self._failures

    @property
    def success_count(self) -> int:
        """Successful trial calls counted while HALF_OPEN."""
        return self._successes

    def seconds_until_trial(self) -> float:
        """How long an open circuit still refuses every call (0 when not OPEN)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.recovery_timeout - self._clock.monotonic())

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(old, new)`` on every transition (health and metrics use this)."""
        self._listeners.append(listener)

    # --- the explicit protocol -------------------------------------------------------------

    def can_execute(self) -> bool:
        """Whether a call may go now. In HALF_OPEN a ``True`` reserves the one trial call."""
        return self._acquire() is not None

    def record_success(self) -> None:
        """Report that the call allowed by the last ``can_execute()`` succeeded."""
        self._settle(self._generation, ok=True)

    def record_failure(self) -> None:
        """Report that the call allowed by the last ``can_execute()`` failed."""
        self._settle(self._generation, ok=False)

    def release(self) -> None:
        """Give back a permit without an outcome (the call was cancelled or never made)."""
        self._settle(self._generation, ok=None)

    def open_error(self) -> CircuitOpenError:
        """The error to raise for a refused call."""
        wait = self.seconds_until_trial()
        if wait > 0:
            return CircuitOpenError(
                f"circuit {self.name!r} is open; next trial in {wait:.1f} s", retry_after=wait
            )
        return CircuitOpenError(f"circuit {self.name!r} is half-open; a trial call is running")

    # --- async with / decorator ------------------------------------------------------------

    async def __aenter__(self) -> CircuitBreaker:
        generation = self._acquire()
        if generation is None:
            raise self.open_error()
        # Keyed by task so that concurrent ``async with`` blocks each settle their own permit.
        self._entered.setdefault(asyncio.current_task(), []).append(generation)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = asyncio.current_task()
        stack = self._entered[task]
        generation = stack.pop()
        if not stack:
            del self._entered[task]
        if exc is None:
            self._settle(generation, ok=True)
        elif isinstance(exc, self.failure_on):
            self._settle(generation, ok=False)
        else:  # cancelled, or an error that says nothing about the dependency
            self._settle(generation, ok=None)

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Use as a decorator: every call of ``fn`` goes through the breaker."""

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            async with self:
                return await fn(*args, **kwargs)

        return guarded

    # --- the state machine -----------------------------------------------------------------

    def _acquire(self) -> int | None:
        """A permit (the current generation) or ``None`` when the call is refused."""
        state = self.state
        if state is CircuitState.OPEN:
            return None
        if state is CircuitState.HALF_OPEN:
            now = self._clock.monotonic()
            if self._trial_in_flight:
                if now < self._trial_started_at + self.recovery_timeout:
                    return None
                # The trial never reported: give it up. Its permit goes stale, so a late
                # result through ``async with`` cannot decide the next trial.
                self._generation += 1
            self._trial_in_flight = True
            self._trial_started_at = now
        return self._generation

    def _settle(self, generation: int, *, ok: bool | None) -> None:
        if generation != self._generation:
            return  # the state changed while this call ran: its result is about the past
        state = self._state
        if state is CircuitState.OPEN:
            return
        if state is CircuitState.HALF_OPEN:
            self._trial_in_flight = False
            if ok is None:
                return
            if not ok:
                self._transition(CircuitState.OPEN)
                return
            self._successes += 1
            if self._successes >= self.success_threshold:
                self._transition(CircuitState.CLOSED)
            return
        if ok is None:
            return
        if ok:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._transition(CircuitState.OPEN)

    def _transition(self, new: CircuitState) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._failures = 0
        self._successes = 0
        self._trial_in_flight = False
        if new is CircuitState.OPEN:
            self._opened_at = self._clock.monotonic()
        for listener in list(self._listeners):
            listener(old, new)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state.value}>"
