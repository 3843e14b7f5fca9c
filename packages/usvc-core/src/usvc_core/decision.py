"""What becomes of a job after one attempt: the one retry decision, a pure function of the
attempt's outcome, the job and the action's retry policy."""

from __future__ import annotations

from dataclasses import dataclass

from usvc_core.execution import Outcome
from usvc_core.jobs import NON_RETRYABLE_CODES, Job
from usvc_core.resilience.retry import RetryPolicy

__all__ = ["COMPLETED", "FAILED", "Completed", "Decision", "Failed", "Retry", "decide"]


@dataclass(frozen=True, slots=True)
class Completed:
    """Record the results: the job is Completed."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Put the job back to Ready, due after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Failed:
    """Record the error: the job is Failed, no attempt follows."""


Decision = Completed | Retry | Failed
COMPLETED = Completed()
FAILED = Failed()


def decide(outcome: Outcome, job: Job, policy: RetryPolicy) -> Decision:
    """Completed when the attempt succeeded. Retry when the outcome asks for one, its error
    is one that can pass (not in ``NON_RETRYABLE_CODES``) and the job has attempts left
    (``job.attempts`` counts this one); the delay is the one the handler asked for
    (``RetryJob(delay_seconds=...)``), else the policy's backoff after this attempt (the
    policy's jitter is the only randomness, from its own ``rng``), and never sooner than
    ``outcome.retry_not_before`` (an open circuit's next trial). Failed otherwise."""
    if outcome.error_code is None:
        return COMPLETED
    if (
        outcome.retry
        and outcome.error_code not in NON_RETRYABLE_CODES
        and job.attempts < job.max_attempts
    ):
        delay = outcome.retry_delay
        chosen = delay if delay is not None else policy.delay(job.attempts)
        # An open circuit refuses every call until its next trial: retrying sooner would
        # only burn attempts.
        return Retry(max(chosen, outcome.retry_not_before or 0.0))
    return FAILED
