"""A retry caused by an open circuit waits at least until the breaker's next trial (issue 19
item 12): attempts are not burnt while every call would be refused. On a FakeClock."""

from __future__ import annotations

import pytest
from usvc_core import (
    ActionRegistry,
    CircuitBreaker,
    CircuitOpenError,
    ErrorCode,
    Job,
    JobStatus,
    RetryPolicy,
    action,
)
from usvc_core.decision import Retry, decide
from usvc_core.execution import Outcome, execute_job, route
from usvc_core.health import HealthRegistry
from usvc_core.services import ServiceContainer
from usvc_testing import FakeClock

POLICY = RetryPolicy(base_seconds=0.5, cap_seconds=300.0, jitter=False)


def _job(attempts: int) -> Job:
    return Job(
        id="j1",
        microservice="svc",
        action="pay",
        payload={"action": "pay"},
        status=JobStatus.PROCESSING,
        attempts=attempts,
        max_attempts=3,
    )


async def _attempt(breaker: CircuitBreaker, *, wrap: bool, attempts: int = 1) -> Outcome:
    @action("pay", retry_on=(CircuitOpenError, RuntimeError))
    async def pay() -> None:
        try:
            async with breaker:
                raise AssertionError("an open circuit lets no call through")
        except CircuitOpenError as exc:
            if wrap:
                raise RuntimeError("payment provider unavailable") from exc
            raise

    registry = ActionRegistry()
    registry.add(pay)
    registry.bind(ServiceContainer(HealthRegistry()))
    definition = route(_job(attempts), registry)
    assert not isinstance(definition, Outcome)
    return await execute_job(_job(attempts), definition, 30.0)


@pytest.mark.parametrize("wrap", [False, True])
async def test_a_retry_after_an_open_circuit_waits_for_its_next_trial(wrap: bool) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=10.0, clock=clock)
    assert breaker.can_execute()
    breaker.record_failure()  # open: next trial 10 s from now
    clock.advance(0.6)

    outcome = await _attempt(breaker, wrap=wrap)
    assert outcome.error_code == ErrorCode.HANDLER_ERROR and outcome.retry
    assert outcome.retry_not_before == pytest.approx(9.4)
    for attempts in (1, 2):  # the policy alone would say 0.5 s, then 1 s
        decision = decide(outcome, _job(attempts), POLICY)
        assert isinstance(decision, Retry)
        assert decision.delay == pytest.approx(breaker.seconds_until_trial())

    # Later retries with a longer backoff than the wait keep their own delay.
    clock.advance(9.0)
    late = await _attempt(breaker, wrap=wrap)
    assert late.retry_not_before == pytest.approx(0.4)
    assert decide(late, _job(2), RetryPolicy(base_seconds=5.0, jitter=False)) == Retry(10.0)


def test_other_errors_keep_the_policys_delay() -> None:
    outcome = Outcome(error_code=ErrorCode.HANDLER_ERROR, error_message="x", retry=True)
    assert decide(outcome, _job(1), POLICY) == Retry(0.5)
    asked = Outcome(
        error_code=ErrorCode.HANDLER_ERROR, retry=True, retry_delay=20.0, retry_not_before=3.0
    )
    assert decide(asked, _job(1), POLICY) == Retry(20.0)
