"""The admin API (``/admin/api/...``): look at this service's jobs, enqueue, retry, cancel.

Built on the ports only (``QueueAdmin`` and ``JobQueue``), so it works on every queue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from usvc_core.errors import DuplicateJobError, JobNotFoundError, QueueError
from usvc_core.jobs import AttemptOutcome, Job, JobStatus
from usvc_core.ports import JobFilter, QueueAdmin

from usvc_http.admin.auth import AdminAuth, Caller

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

__all__ = ["JobOut", "JobSummary", "StatsOut", "admin_router"]

_MESSAGE_PREVIEW = 300


class JobSummary(BaseModel):
    """One row of a job list (payload and result left out)."""

    id: str
    action: str
    status: JobStatus
    attempts: int
    max_attempts: int
    priority: int
    error_code: str | None
    error_message: str | None = Field(description=f"first {_MESSAGE_PREVIEW} characters")
    created_at: datetime | None
    finished_at: datetime | None
    runtime_ms: float | None
    cancel_requested: bool
    # --- store: the scheduled view (issue 21 item 2)
    run_at: datetime | None = None
    scheduled: bool = Field(default=False, description="Ready, but not due before run_at")


class AttemptOut(BaseModel):
    """One attempt of a job (issue 21 item 1)."""

    number: int
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: AttemptOutcome
    error_code: str | None
    error_message: str | None


class JobOut(BaseModel):
    """One job, whole."""

    id: str
    microservice: str
    action: str
    status: JobStatus
    priority: int
    run_at: datetime | None
    attempts: int
    max_attempts: int
    token: str
    idempotency_key: str | None
    unique_key: str | None
    payload: Any
    payload_error: str | None
    results: Any
    error_code: str | None
    error_message: str | None
    runtime_ms: float | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    # --- store: the scheduled view and the attempt history (issue 21 items 1-2)
    scheduled: bool = Field(default=False, description="Ready, but not due before run_at")
    attempt_history: list[AttemptOut] = Field(
        default_factory=list, description="the last attempts, oldest first"
    )


class JobPageOut(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class ActionStats(BaseModel):
    action: str
    counts: dict[JobStatus, int]
    oldest_ready_age_seconds: float | None
    scheduled: int = Field(default=0, description="Ready jobs not due yet")


class MinuteOut(BaseModel):
    minute: datetime
    completed: int
    failed: int


class StatsOut(BaseModel):
    service: str
    counts: dict[JobStatus, int]
    oldest_ready_age_seconds: float | None = Field(
        description="how long the longest-waiting due job has waited since it became due"
    )
    scheduled: int = Field(default=0, description="Ready jobs not due yet (in counts.Ready)")
    actions: list[ActionStats]
    per_minute: list[MinuteOut]


class EnqueueIn(BaseModel):
    payload: dict[str, Any] = Field(description='a JSON object with an "action" string')
    priority: int = 0
    delay_seconds: float = Field(default=0.0, ge=0)
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    idempotency_key: str | None = None


class RetryFilterIn(BaseModel):
    """Which Failed jobs to retry; empty lists match everything."""

    actions: list[str] = []
    error_codes: list[str] = []
    created_after: datetime | None = None
    created_before: datetime | None = None


class RetriedOut(BaseModel):
    retried: int


class CancelOut(BaseModel):
    id: str
    status: JobStatus
    outcome: Literal["cancelled", "cancel_requested", "already_finished"]


def _summary(job: Job) -> JobSummary:
    summary = JobSummary.model_validate(job, from_attributes=True)
    summary.scheduled = job.is_scheduled(datetime.now(UTC))
    message = job.error_message
    if message is not None and len(message) > _MESSAGE_PREVIEW:
        summary.error_message = message[:_MESSAGE_PREVIEW] + "…"
    return summary


def _whole(job: Job) -> JobOut:
    whole = JobOut.model_validate(job, from_attributes=True)
    whole.scheduled = job.is_scheduled(datetime.now(UTC))
    return whole


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, f"{name} needs a time zone (e.g. 2026-12-05T10:00:00Z)")
    return value


def admin_router(context: SurfaceContext, auth: AdminAuth, admin: QueueAdmin) -> APIRouter:
    """The ``/admin/api`` routes of one service."""
    service = context.settings.MICROSERVICE_NAME
    queue = context.queue

    async def caller(request: Request) -> Caller:
        try:
            who = await auth.authenticate(request)  # a revoked session is refused
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc
        if who is None:
            raise HTTPException(
                401,
                "send Authorization: Bearer <ADMIN_TOKEN>, or log in at /admin/login",
                headers={"WWW-Authenticate": 'Bearer realm="usvc admin"'},
            )
        if not auth.csrf_ok(request, who):
            raise HTTPException(403, "missing or wrong X-CSRF-Token (or a foreign Origin)")
        return who

    router = APIRouter(
        prefix="/admin/api",
        tags=["admin"],
        dependencies=[Depends(caller)],
        responses={401: {"description": "not authenticated"}, 403: {"description": "CSRF"}},
    )

    async def own_job(job_id: str) -> Job:
        try:
            job = await queue.get(job_id)
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc
        if job is None or job.microservice != service:
            raise HTTPException(404, f"service {service} has no job {job_id}")
        return job

    @router.get("/stats", response_model=StatsOut)
    async def stats(minutes: int = Query(60, ge=1, le=1440)) -> StatsOut:
        """Counts by status and by action, oldest Ready age, completed and failed per minute."""
        try:
            activity = await admin.activity(service, minutes=minutes)
            totals = await queue.stats(service)
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc
        return StatsOut(
            service=service,
            counts={s: totals.counts.get(s, 0) for s in JobStatus},
            oldest_ready_age_seconds=totals.oldest_ready_age_seconds,
            scheduled=totals.scheduled,
            actions=[
                ActionStats(
                    action=name,
                    counts=dict(counts),
                    oldest_ready_age_seconds=activity.oldest_ready_age_seconds.get(name),
                    scheduled=activity.scheduled.get(name, 0),
                )
                for name, counts in sorted(activity.counts.items())
            ],
            per_minute=[
                MinuteOut(minute=m.minute, completed=m.completed, failed=m.failed)
                for m in activity.per_minute
            ],
        )

    @router.get("/jobs", response_model=JobPageOut)
    async def list_jobs(
        *,
        status: list[JobStatus] = Query(default_factory=list),  # noqa: B008 - FastAPI's way
        action: list[str] = Query(default_factory=list),  # noqa: B008
        error_code: list[str] = Query(default_factory=list),  # noqa: B008
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = Query(50, ge=1, le=1000),
        cursor: str | None = None,
        scheduled: bool | None = Query(
            None, description="true: only jobs not due yet; false: none of them"
        ),
        error_text: str | None = Query(None, min_length=1, max_length=200),
    ) -> JobPageOut:
        """This service's jobs, newest first, a page at a time (a page may come back short
        with a cursor when a text search stopped to keep the call fast)."""
        where = JobFilter(
            service,
            statuses=frozenset(status),
            actions=frozenset(action),
            error_codes=frozenset(error_code),
            created_after=_aware(created_after, "created_after"),
            created_before=_aware(created_before, "created_before"),
            scheduled=scheduled,
            error_text=error_text,
        )
        try:
            page = await admin.list_jobs(where, limit=limit, cursor=cursor)
        except ValueError as exc:
            raise HTTPException(422, f"invalid cursor or filter: {exc}") from exc
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc
        return JobPageOut(jobs=[_summary(j) for j in page.jobs], next_cursor=page.next_cursor)

    @router.get("/find", response_model=JobPageOut)
    async def find(key: str = Query(min_length=1, max_length=500)) -> JobPageOut:
        """The jobs a job id, a unique key or an idempotency key names, newest first."""
        try:
            jobs = await admin.find_jobs(service, key)
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc
        return JobPageOut(jobs=[_summary(j) for j in jobs], next_cursor=None)

    @router.get("/jobs/{job_id}", response_model=JobOut)
    async def show(job_id: str) -> JobOut:
        """One job with its payload, result and error."""
        return _whole(await own_job(job_id))

    @router.post("/jobs", response_model=JobOut, status_code=201)
    async def enqueue(body: EnqueueIn) -> JobOut:
        """Add a job to this service's queue."""
        action = body.payload.get("action")
        if not isinstance(action, str) or not action:
            raise HTTPException(422, 'payload must have an "action" string naming the handler')
        try:
            job = await context.enqueue(
                body.payload,
                priority=body.priority,
                delay_seconds=body.delay_seconds,
                max_attempts=body.max_attempts,
                idempotency_key=body.idempotency_key,
            )
        except DuplicateJobError as exc:
            raise HTTPException(409, str(exc)) from exc
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc
        except ValueError as exc:
            raise HTTPException(422, f"payload cannot be stored as JSON: {exc}") from exc
        return _whole(job)

    @router.post("/jobs/retry", response_model=RetriedOut)
    async def retry_matching(body: RetryFilterIn) -> RetriedOut:
        """Every Failed job matching the filter back to Ready, with fresh attempts."""
        where = JobFilter(
            service,
            statuses=frozenset({JobStatus.FAILED}),
            actions=frozenset(body.actions),
            error_codes=frozenset(body.error_codes),
            created_after=_aware(body.created_after, "created_after"),
            created_before=_aware(body.created_before, "created_before"),
        )
        try:
            return RetriedOut(retried=await admin.retry_failed(service, where=where))
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc

    @router.post("/jobs/{job_id}/retry", response_model=RetriedOut)
    async def retry_one(job_id: str) -> RetriedOut:
        """One Failed job back to Ready (409 when it is not Failed)."""
        job = await own_job(job_id)
        if job.status is not JobStatus.FAILED:
            raise HTTPException(409, f"job {job_id} is {job.status.value}; only Failed jobs retry")
        try:
            return RetriedOut(retried=await admin.retry_failed(service, [job_id]))
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc

    @router.post("/jobs/{job_id}/cancel", response_model=CancelOut)
    async def cancel(job_id: str) -> CancelOut:
        """Ready/Assigned: Failed with CANCELLED now; Processing: its worker stops it at its
        next lease renewal; finished: left as it is."""
        before = await own_job(job_id)
        if before.status.is_finished:
            return CancelOut(id=job_id, status=before.status, outcome="already_finished")
        try:
            status = await admin.cancel(service, job_id)
        except JobNotFoundError as exc:
            raise HTTPException(404, f"service {service} has no job {job_id}") from exc
        except QueueError as exc:
            raise HTTPException(503, f"job queue unavailable: {exc}") from exc
        outcome: Literal["cancelled", "cancel_requested", "already_finished"]
        if status is JobStatus.PROCESSING:
            outcome = "cancel_requested"
        elif status is JobStatus.FAILED:
            outcome = "cancelled"
        else:  # it finished meanwhile
            outcome = "already_finished"
        return CancelOut(id=job_id, status=status, outcome=outcome)

    return router
