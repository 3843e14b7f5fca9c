"""The admin API (``/admin/api/...``): look at this service's jobs, enqueue, retry, cancel.

Built on the ports only (``QueueAdmin`` and ``JobQueue``), so it works on every queue.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from usvc_core.bounds import DELAY_SECONDS, MAX_ATTEMPTS, PRIORITY
from usvc_core.jobs import AttemptOutcome, Job, JobStatus
from usvc_core.ports import FleetAdmin, JobFilter, QueueAdmin

from usvc_http.admin.auth import AdminAuth, Caller
from usvc_http.admin.dashboard_api import add_dashboard_routes
from usvc_http.admin.fleet_api import add_fleet_routes
from usvc_http.admin.gate import UNAUTHENTICATED
from usvc_http.errors import clip

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

__all__ = ["JobOut", "JobSummary", "StatsOut", "admin_router"]

_MESSAGE_PREVIEW = 300
_MAX_KEY = 255  #: characters of an idempotency key
_MAX_FILTER_VALUES = 100  #: values of one filter list
_STATUS_NAMES = {s.value.lower(): s for s in JobStatus}
_INT64 = 2**63


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
    paused_actions: list[str] = Field(default=[], description="paused across the fleet")


class EnqueueIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    payload: dict[str, Any] = Field(description='a JSON object with an "action" string')
    priority: int = Field(default=0, ge=PRIORITY.low, le=PRIORITY.high)
    delay_seconds: float = Field(default=0.0, ge=DELAY_SECONDS.low, le=DELAY_SECONDS.high)
    max_attempts: int | None = Field(default=None, ge=MAX_ATTEMPTS.low, le=MAX_ATTEMPTS.high)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=_MAX_KEY)


_FilterValues = Annotated[list[str], Field(max_length=_MAX_FILTER_VALUES)]


class RetryFilterIn(BaseModel):
    """Which Failed jobs to retry; empty lists match everything."""

    actions: _FilterValues = []
    error_codes: _FilterValues = []
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


def _statuses(names: list[str]) -> frozenset[JobStatus]:
    """Status names in any case (``failed``, ``FAILED``, ``Failed``)."""
    found = set()
    for name in names:
        status = _STATUS_NAMES.get(name.lower())
        if status is None:
            known = ", ".join(s.value for s in JobStatus)
            raise HTTPException(422, f"status {clip(name, 40)!r} is not one of {known}")
        found.add(status)
    return frozenset(found)


def _no_strange_numbers(cursor: str) -> None:
    """A cursor that decodes to JSON holding NaN, an infinity or an integer past 64 bits
    is none we gave out; refused here whichever store made the cursors."""

    def refuse(_: object) -> None:
        raise HTTPException(422, "cursor is not one that a job list gave out")

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            refuse(value)
        return value

    def integer(text: str) -> int:
        value = int(text)
        if not -_INT64 <= value < _INT64:
            refuse(value)
        return value

    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        json.loads(raw, parse_constant=refuse, parse_float=number, parse_int=integer)
    except (ValueError, binascii.Error, RecursionError):
        return  # not JSON: the store judges its own format


def admin_router(context: SurfaceContext, auth: AdminAuth, admin: QueueAdmin) -> APIRouter:
    """The ``/admin/api`` routes of one service."""
    service = context.settings.MICROSERVICE_NAME
    queue = context.queue

    async def caller(request: Request) -> Caller:
        # AdminApiGate has checked this before the body was read; checked again here so the
        # routes stay safe wherever they are mounted. A logged-out session is refused.
        who = await auth.authenticate(request)
        if who is None:
            raise HTTPException(
                401, UNAUTHENTICATED, headers={"WWW-Authenticate": 'Bearer realm="usvc admin"'}
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
        except (ValueError, OverflowError):  # an id no store could have given out
            job = None
        if job is None or job.microservice != service:
            raise HTTPException(404, f"service {service} has no job {clip(job_id, 100)}")
        return job

    @router.get("/stats", response_model=StatsOut)
    async def stats(minutes: int = Query(60, ge=1, le=1440)) -> StatsOut:
        """Counts by status and by action, oldest Ready age, completed and failed per minute."""
        activity = await admin.activity(service, minutes=minutes)
        totals = await queue.stats(service)
        return StatsOut(
            service=service,
            counts={s: totals.counts.get(s, 0) for s in JobStatus},
            oldest_ready_age_seconds=totals.oldest_ready_age_seconds,
            scheduled=totals.scheduled,
            paused_actions=sorted(totals.paused_actions),
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

    async def job_filter(
        *,
        status: list[str] = Query(default_factory=list, max_length=_MAX_FILTER_VALUES),  # noqa: B008 - FastAPI's way
        action: list[str] = Query(default_factory=list, max_length=_MAX_FILTER_VALUES),  # noqa: B008
        error_code: list[str] = Query(default_factory=list, max_length=_MAX_FILTER_VALUES),  # noqa: B008
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        scheduled: bool | None = Query(
            None, description="true: only jobs not due yet; false: none of them"
        ),
        error_text: str | None = Query(None, min_length=1, max_length=200),
    ) -> JobFilter:
        """The job filter of a list, a count or a bulk action (``status`` in any case;
        ``status=scheduled``: Ready jobs not due yet)."""
        if any(name.lower() == "scheduled" for name in status):  # the derived status
            status = [name for name in status if name.lower() != "scheduled"] + ["Ready"]
            scheduled = True
        return JobFilter(
            service,
            statuses=_statuses(status),
            actions=frozenset(action),
            error_codes=frozenset(error_code),
            created_after=_aware(created_after, "created_after"),
            created_before=_aware(created_before, "created_before"),
            scheduled=scheduled,
            error_text=error_text,
        )

    @router.get("/jobs", response_model=JobPageOut)
    async def list_jobs(
        *,
        where: JobFilter = Depends(job_filter),  # noqa: B008 - FastAPI's way (job_filter is local)
        limit: int = Query(50, ge=1, le=1000),
        cursor: str | None = Query(None, max_length=1000),
    ) -> JobPageOut:
        """This service's jobs, newest first, a page at a time (``status`` in any case;
        ``status=scheduled``: Ready jobs not due yet). A page may come back short with a
        cursor when a text search stopped to keep the call fast."""
        if cursor is not None:
            _no_strange_numbers(cursor)
        try:
            page = await admin.list_jobs(where, limit=limit, cursor=cursor)
        except (ValueError, OverflowError) as exc:  # the port's word for a bad cursor/filter
            raise HTTPException(422, clip(f"invalid cursor or filter: {exc}")) from exc
        return JobPageOut(jobs=[_summary(j) for j in page.jobs], next_cursor=page.next_cursor)

    # before /jobs/{job_id}: "count" and "bulk" are no job ids
    add_dashboard_routes(router, context, admin, job_filter)

    @router.get("/find", response_model=JobPageOut)
    async def find(key: str = Query(min_length=1, max_length=500)) -> JobPageOut:
        """The jobs a job id, a unique key or an idempotency key names, newest first."""
        jobs = await admin.find_jobs(service, key)
        return JobPageOut(jobs=[_summary(j) for j in jobs], next_cursor=None)

    @router.get("/jobs/{job_id}", response_model=JobOut)
    async def show(
        job_id: str,
        payload: bool = Query(True, description="false: leave payload and result out"),
    ) -> JobOut:
        """One job with its payload, result and error (``payload=false``: without them,
        for a page that polls)."""
        whole = _whole(await own_job(job_id))
        if not payload:
            whole.payload = whole.results = None
        return whole

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
        except ValueError as exc:  # NaN or an infinity inside the payload
            raise HTTPException(422, clip(f"payload cannot be stored as JSON: {exc}")) from exc
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
        return RetriedOut(retried=await admin.retry_failed(service, where=where))

    @router.post("/jobs/{job_id}/retry", response_model=RetriedOut)
    async def retry_one(job_id: str) -> RetriedOut:
        """One Failed job back to Ready (409 when it is not Failed)."""
        job = await own_job(job_id)
        if job.status is not JobStatus.FAILED:
            raise HTTPException(409, f"job {job.id} is {job.status.value}; only Failed jobs retry")
        return RetriedOut(retried=await admin.retry_failed(service, [job_id]))

    @router.post("/jobs/{job_id}/cancel", response_model=CancelOut)
    async def cancel(job_id: str) -> CancelOut:
        """Ready/Assigned: Failed with CANCELLED now; Processing: its worker stops it at its
        next lease renewal; finished: left as it is."""
        before = await own_job(job_id)
        if before.status.is_finished:
            return CancelOut(id=job_id, status=before.status, outcome="already_finished")
        status = await admin.cancel(service, job_id)
        outcome: Literal["cancelled", "cancel_requested", "already_finished"]
        if status is JobStatus.PROCESSING:
            outcome = "cancel_requested"
        elif status is JobStatus.FAILED:
            outcome = "cancelled"
        else:  # it finished meanwhile
            outcome = "already_finished"
        return CancelOut(id=job_id, status=status, outcome=outcome)

    if isinstance(queue, FleetAdmin):  # workers and paused actions
        add_fleet_routes(router, context, admin, queue)
    return router
