"""The attempt a job's own fields describe, for stores that keep only closed attempts in
their history and read the current one off the job."""

from __future__ import annotations

from usvc_core.jobs import AttemptOutcome, ErrorCode, Job, JobAttempt, JobStatus

__all__ = ["current_attempt"]


def current_attempt(job: Job, number: int) -> JobAttempt:
    """Attempt ``number`` as the job describes it (the job has ``started_at``): running
    while it is not finished, else its outcome with the job's error."""
    if job.status is JobStatus.COMPLETED:
        outcome = AttemptOutcome.COMPLETED
    elif job.status is JobStatus.FAILED:
        expired = job.error_code == ErrorCode.LEASE_EXPIRED.value
        outcome = AttemptOutcome.LEASE_EXPIRED if expired else AttemptOutcome.FAILED
    else:
        return JobAttempt(number, job.lease_owner, job.started_at, None, AttemptOutcome.RUNNING)
    return JobAttempt(
        number,
        job.lease_owner,
        job.started_at,
        job.finished_at,
        outcome,
        job.error_code,
        job.error_message,
    )
