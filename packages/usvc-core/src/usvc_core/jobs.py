"""The job: its statuses, its error codes and the transitions between statuses, in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "NON_RETRYABLE_CODES",
    "RESERVED_PAYLOAD_KEYS",
    "SCHEDULED",
    "TRACE_KEY",
    "TRANSITIONS",
    "AttemptOutcome",
    "ErrorCode",
    "Job",
    "JobAttempt",
    "JobStatus",
    "can_transition",
]


#: Payload key holding the producer's W3C trace context (a dict of strings).
TRACE_KEY = "_trace"
#: Keys the kit reads from a payload; they are not passed to the input model.
RESERVED_PAYLOAD_KEYS = frozenset({"action", TRACE_KEY})


class JobStatus(StrEnum):
    """Where a job is in its life. The strings are stored in the queue table as they are."""

    READY = "Ready"  #: waiting to be claimed (possibly not before ``run_at``)
    ASSIGNED = "Assigned"  #: claimed by a worker under a lease, not yet started
    PROCESSING = "Processing"  #: its handler is running; this attempt has been counted
    COMPLETED = "Completed"  #: finished with results
    FAILED = "Failed"  #: finished with an error code and message

    @property
    def is_finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


class ErrorCode(StrEnum):
    """The closed set of reasons a job can fail. Each message says what to fix."""

    UNKNOWN_ACTION = "UNKNOWN_ACTION"  #: no handler is registered for the payload's action
    INVALID_PAYLOAD = "INVALID_PAYLOAD"  #: not a JSON object with an "action" string
    VALIDATION_ERROR = "VALIDATION_ERROR"  #: the payload does not match the input model
    HANDLER_ERROR = "HANDLER_ERROR"  #: the handler raised
    TIMEOUT = "TIMEOUT"  #: the handler ran past its timeout
    RESULT_NOT_SERIALIZABLE = "RESULT_NOT_SERIALIZABLE"  #: the handler returned something not JSON
    LEASE_EXPIRED = "LEASE_EXPIRED"  #: the worker died or stalled too often; no attempts left
    CANCELLED = "CANCELLED"  #: an operator cancelled the job (CLI, admin API or dashboard)


#: Failures that will fail the same way on every attempt: never retried.
NON_RETRYABLE_CODES = frozenset(
    {
        ErrorCode.UNKNOWN_ACTION,
        ErrorCode.INVALID_PAYLOAD,
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.RESULT_NOT_SERIALIZABLE,
        ErrorCode.CANCELLED,
    }
)

_R, _A, _P, _C, _F = (
    JobStatus.READY,
    JobStatus.ASSIGNED,
    JobStatus.PROCESSING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
)

#: Every allowed move. Ready->Failed covers jobs whose payload cannot even be read;
#: Assigned->Failed covers a lease that expired with no attempts left.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _R: frozenset({_A, _F}),
    _A: frozenset({_P, _R, _F}),  # start, release/lease expiry, bad payload at start
    _P: frozenset({_C, _F, _R}),  # ok, error, retry/release/lease expiry
    _C: frozenset(),
    _F: frozenset(),
}


def can_transition(old: JobStatus, new: JobStatus) -> bool:
    """Whether the lifecycle allows moving a job from ``old`` to ``new``."""
    return new in TRANSITIONS[old]


# Slots: a field's default as a class attribute (a plain dataclass's) keeps CPython 3.12
# from specialising any read or write of that field, and so does an instance __dict__
# that a copy made a split one. Adapters and the worker touch a job's fields some 40
# times per job: about 330 instructions each unspecialised against 90.
@dataclass(slots=True)
class Job:
    """One job as the queue stores it.

    ``payload`` is the decoded JSON payload (normally an object with an ``"action"``).
    When the stored payload could not be decoded, ``payload`` is ``None`` and
    ``payload_error`` says why; the worker then fails the job with ``INVALID_PAYLOAD``.
    ``lease_token`` is the fencing token of the current claim: every transition after a
    claim names it, so a worker whose lease was reclaimed cannot overwrite the outcome.
    """

    id: str
    microservice: str
    action: str
    payload: Any
    status: JobStatus = JobStatus.READY
    priority: int = 0
    run_at: datetime | None = None
    attempts: int = 0
    max_attempts: int = 3
    token: str = ""
    idempotency_key: str | None = None
    lease_owner: str | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    results: Any = None
    error_code: str | None = None
    error_message: str | None = None
    runtime_ms: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    unique_key: str | None = None  #: unique among all jobs of its service, finished ones too
    cancel_requested: bool = False  #: an operator asked its worker to stop it
    payload_error: str | None = None
    # --- store: attempt history (issue 21 item 1) -------------------------------------------
    #: earlier and current attempts, oldest first, the last N (the adapter's
    #: ``attempt_history``); filled by ``get``, empty in claims and list pages
    attempt_history: tuple[JobAttempt, ...] = ()
    # --- end store ---------------------------------------------------------------------------

    def __post_init__(self) -> None:
        if not self.token:
            self.token = self.id

    def snapshot(self) -> Job:
        """A shallow copy, made fast: adapters hand these out on every transition."""
        raise NotImplementedError  # replaced below the class by the generated copier

    @property
    def trace_context(self) -> dict[str, str]:
        """W3C trace context (``traceparent``/``tracestate``) the producer put in the payload."""
        carrier = self.payload.get(TRACE_KEY) if isinstance(self.payload, dict) else None
        if not isinstance(carrier, dict):
            return {}
        return {k: v for k, v in carrier.items() if isinstance(k, str) and isinstance(v, str)}

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempts)

    # --- store: the scheduled view (issue 21 item 2) ------------------------------------------

    def is_scheduled(self, now: datetime) -> bool:
        """Whether the job is *scheduled*: Ready, but not due before ``run_at`` (a derived
        view; the stored status stays Ready)."""
        return self.status is JobStatus.READY and self.run_at is not None and self.run_at > now

    def shown_status(self, now: datetime) -> str:
        """The status an operator sees: ``Scheduled`` for a Ready job not yet due, else the
        stored status string."""
        return SCHEDULED if self.is_scheduled(now) else self.status.value

    # --- end store ---------------------------------------------------------------------------


def _field_copier(cls: type[Job]) -> Callable[[Job], Job]:
    """``cls.snapshot``: a function copying every field one by one, written out for the
    class's fields (as dataclasses writes ``__init__``). A slotted object has no dict to
    copy, and a loop of getattr/setattr costs twice as much."""
    lines = ["def snapshot(self):", "    clone = new(cls)"]
    lines += [f"    clone.{f.name} = self.{f.name}" for f in fields(cls)]
    source = "\n".join([*lines, "    return clone", ""])
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    exec(source, namespace)
    copier: Callable[[Job], Job] = namespace["snapshot"]
    copier.__qualname__ = f"{cls.__qualname__}.snapshot"
    copier.__doc__ = cls.snapshot.__doc__
    return copier


# The method itself, not a method calling it: one Python frame less per snapshot.
Job.snapshot = _field_copier(Job)  # type: ignore[method-assign,assignment]


# --- store: attempt history and the scheduled view (issues 21 items 1-2, 22 item 3) ----------

#: The derived status of a Ready job whose ``run_at`` is in the future (never stored).
SCHEDULED = "Scheduled"


class AttemptOutcome(StrEnum):
    """How one attempt of a job ended (see :class:`JobAttempt`)."""

    RUNNING = "running"  #: its worker runs it now
    COMPLETED = "completed"  #: the job completed
    FAILED = "failed"  #: the job failed for good (error code and message say why)
    RETRIED = "retried"  #: it failed and the job went back to Ready for another attempt
    RELEASED = "released"  #: its worker shut down and gave it back; no attempt spent
    LEASE_EXPIRED = "lease_expired"  #: its worker stopped renewing the lease; attempt spent
    #: rescued after its lease expired without its worker ever confirming the start (the
    #: claim committed but its reply was lost): the attempt was given back (once per job)
    NOT_STARTED = "not_started"


@dataclass(frozen=True, slots=True)
class JobAttempt:
    """One attempt of a job: a start by a worker, and how it ended.

    ``number`` counts the job's attempts from 1 over its whole life (an operator's retry
    does not start again at 1), so that a bounded history still says which ones it holds.
    """

    number: int
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: AttemptOutcome
    error_code: str | None = None
    error_message: str | None = None


# --- end store -------------------------------------------------------------------------------
