"""What a handler may learn about the job it runs, and the signals it may raise."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["JobContext", "RetryJob"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """Ask for it in a handler by type hint: ``async def handle(input: In, job: JobContext)``.

    ``token`` is the correlation id (use it, or ``job_id``, as an idempotency key for
    effects that must not repeat: delivery is at-least-once).
    """

    job_id: str
    token: str
    action: str
    attempt: int  #: 1 for the first run
    max_attempts: int


class RetryJob(Exception):  # noqa: N818 - a signal, not a failure
    """Raise from a handler to run the job again later (while attempts are left)."""

    def __init__(self, reason: str = "retry requested", delay_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_seconds = delay_seconds
