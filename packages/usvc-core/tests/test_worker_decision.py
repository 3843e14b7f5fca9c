"""The one retry decision: every combination of outcome, error code, retry request, delay
and attempts left, against what it must decide."""

from __future__ import annotations

import itertools
import random

import pytest
from usvc_core import ErrorCode, Job, JobStatus, RetryPolicy
from usvc_core.decision import COMPLETED, FAILED, Completed, Failed, Retry, decide
from usvc_core.execution import Outcome
from usvc_core.jobs import NON_RETRYABLE_CODES

POLICY = RetryPolicy(base_seconds=2.0, cap_seconds=100.0, jitter=False)  # ceiling: 2 * 2**(n-1)


def job(attempts: int, max_attempts: int = 3) -> Job:
    return Job(
        id="j",
        microservice="svc",
        action="a",
        payload={"action": "a"},
        status=JobStatus.PROCESSING,
        attempts=attempts,
        max_attempts=max_attempts,
    )


def expected(code: ErrorCode | None, retry: bool, delay: float | None, attempts: int) -> object:
    """The rule, written out independently of the implementation."""
    if code is None:
        return COMPLETED
    if not retry or code in NON_RETRYABLE_CODES or attempts >= 3:
        return FAILED
    return Retry(delay if delay is not None else 2.0 * 2 ** (attempts - 1))


CASES = list(
    itertools.product(
        [None, *ErrorCode],  # success, then every error code
        [False, True],  # the outcome asks for a retry
        [None, 0.0, 7.5],  # the handler's own delay (RetryJob)
        [1, 2, 3, 4],  # attempts counted, this one included (4: a reclaimed job over its max)
    )
)


@pytest.mark.parametrize(("code", "retry", "delay", "attempts"), CASES)
def test_decide_table(
    code: ErrorCode | None, retry: bool, delay: float | None, attempts: int
) -> None:
    """Completed on success; Retry only when asked, retryable and attempts are left (the
    handler's delay first, else the policy's backoff after this attempt); Failed else."""
    outcome = Outcome(
        results={"ok": 1} if code is None else None,
        error_code=code,
        error_message=None if code is None else "why",
        retry=retry,
        retry_delay=delay,
    )
    assert decide(outcome, job(attempts), POLICY) == expected(code, retry, delay, attempts)


def test_the_table_covers_every_decision() -> None:
    """The table above reaches each kind of decision, non-retryable codes included."""
    kinds = {type(expected(*case)) for case in CASES}
    assert kinds == {Completed, Retry, Failed}
    assert any(code in NON_RETRYABLE_CODES and retry for code, retry, _, _ in CASES)


def test_a_jittered_policy_draws_from_its_own_rng() -> None:
    """With jitter the delay is the policy's draw in [0, ceiling]: seeded, repeatable."""
    outcome = Outcome(error_code=ErrorCode.HANDLER_ERROR, retry=True)
    first = decide(outcome, job(2), RetryPolicy(base_seconds=2.0, rng=random.Random(7)))
    again = decide(outcome, job(2), RetryPolicy(base_seconds=2.0, rng=random.Random(7)))
    assert isinstance(first, Retry) and first == again and 0 <= first.delay <= 4.0


def test_decide_does_not_touch_its_inputs() -> None:
    """Pure: the outcome and the job are left as they were."""
    outcome = Outcome(error_code=ErrorCode.TIMEOUT, retry=True, runtime_ms=3.0)
    j = job(1)
    before = (repr(outcome), repr(j))
    decide(outcome, j, POLICY)
    assert (repr(outcome), repr(j)) == before
