"""The admin API's routes for the dashboard's operator views: how many jobs a filter
matches, bulk retry and cancel (a selection or everything a filter matches), the
schedules with their next, last and missed slots, and each action's runtimes and failure
rate over the last hour. Built on the ports only, like the rest of the admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException
from pydantic import BaseModel, Field
from usvc_core.jobs import Job, JobStatus
from usvc_core.ports import JobFilter, QueueAdmin

if TYPE_CHECKING:
    from usvc_core.scheduling import Schedule
    from usvc_core.surface_context import SurfaceContext

__all__ = ["COUNT_CAP", "add_dashboard_routes"]

COUNT_CAP = 50_000  #: a count (and a bulk action over a filter) stops here
_PAGE = 1000
_MAX_SELECTION = 1000  #: ids of one bulk request
_SLOT_LOOKBACK = timedelta(hours=24)
_SLOTS_CHECKED = 20  #: most recent slots of a schedule looked up for missed ones
_RUNTIME_SAMPLES = 1000  #: most recent finished jobs per action for p50/p95
_TICK = timedelta(microseconds=1)
_OPEN = (JobStatus.READY, JobStatus.ASSIGNED, JobStatus.PROCESSING)


class CountOut(BaseModel):
    count: int
    capped: bool = Field(description=f"True: at least this many (counting stops at {COUNT_CAP})")


class BulkIn(BaseModel):
    """A selection (``ids``), or None: every job the query string's filter matches."""

    ids: Annotated[list[str], Field(max_length=_MAX_SELECTION)] | None = None


class BulkOut(BaseModel):
    operation: Literal["retry", "cancel"]
    matched: int  #: jobs selected or matching the filter
    touched: int  #: retried, cancelled or asked to stop
    capped: bool


class SlotOut(BaseModel):
    slot: datetime
    job_id: str | None
    status: str | None  #: the slot's job status (Scheduled included); None: no job
    missed: bool = False  #: counted in ScheduleOut.missed


class ScheduleOut(BaseModel):
    action: str
    cron: str
    timezone: str
    next_run: datetime
    last_run: SlotOut | None = Field(description="the latest slot that has a job")
    recent_slots: list[SlotOut] = Field(description="the latest slots, newest first")
    missed: int = Field(
        description="recent slots without a job, newer than the oldest one with a job (or "
        "all of them when none has one): no worker ran then, or the slot was skipped"
    )


class SchedulesOut(BaseModel):
    schedules: list[ScheduleOut]
    window_seconds: float = Field(description="how far back slots are checked")


class RuntimePoint(BaseModel):
    finished_at: datetime
    runtime_ms: float


class ActionRuntimeOut(BaseModel):
    action: str
    completed: int  #: in the last hour (created then), at most the samples
    failed: int
    failure_rate: float | None  #: failed / (completed + failed)
    p50_ms: float | None
    p95_ms: float | None
    points: list[RuntimePoint]


class RuntimesOut(BaseModel):
    window_seconds: float
    samples_per_action: int
    actions: list[ActionRuntimeOut]


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, round(q * len(sorted_values) + 0.4999))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _schedules(context: SurfaceContext) -> list[Schedule]:
    """The app's schedules as its scheduler reads them: ``@action(schedule=...)`` and
    ``SCHEDULES`` (which wins); a schedule the app refused at start is not there."""
    from usvc_core.scheduling import parse_schedule

    found: dict[str, Schedule] = {}
    for definition in context.actions:
        if definition.options.schedule is not None:
            found[definition.name] = parse_schedule(
                definition.name,
                definition.options.schedule,
                definition.options.timezone,
                where=definition.name,
            )
    for name, entry in context.settings.SCHEDULES.items():
        cron, tz = (
            (entry, "UTC")
            if isinstance(entry, str)
            else (entry["cron"], entry.get("timezone", "UTC"))
        )
        found[name] = parse_schedule(name, cron, tz, where=name)
    return [found[name] for name in sorted(found)]


def add_dashboard_routes(
    router: APIRouter,
    context: SurfaceContext,
    admin: QueueAdmin,
    job_filter: Callable[..., Awaitable[JobFilter]],
) -> None:
    """Add the dashboard's routes to the admin API's ``router`` (its authentication
    included); ``job_filter`` is the list route's filter dependency."""
    service = context.settings.MICROSERVICE_NAME
    # a default, not Annotated: the annotations are strings, and job_filter is no global
    where_filter = Depends(job_filter)

    async def matching(where: JobFilter) -> AsyncIterator[Job]:
        cursor: str | None = None
        seen = 0
        while seen < COUNT_CAP:
            try:
                page = await admin.list_jobs(where, limit=_PAGE, cursor=cursor)
            except (ValueError, OverflowError) as exc:
                raise HTTPException(422, f"invalid filter: {exc}") from exc
            for job in page.jobs[: COUNT_CAP - seen]:
                yield job
            seen += len(page.jobs)
            cursor = page.next_cursor
            if cursor is None:
                return

    @router.get("/jobs/count", response_model=CountOut)
    async def count(where: JobFilter = where_filter) -> CountOut:
        """How many jobs the filter matches (the list's query string), up to a cap."""
        total = 0
        async for _ in matching(where):
            total += 1
        return CountOut(count=total, capped=total >= COUNT_CAP)

    async def bulk(
        operation: Literal["retry", "cancel"], where: JobFilter, body: BulkIn | None
    ) -> BulkOut:
        if body is not None and body.ids is not None:
            jobs = [
                j
                for key in dict.fromkeys(body.ids)
                for j in await admin.find_jobs(service, key)
                if j.id == key
            ]
            capped = False
        else:
            jobs = [j async for j in matching(where)]
            capped = len(jobs) >= COUNT_CAP
        if operation == "retry":
            failed = [j.id for j in jobs if j.status is JobStatus.FAILED]
            touched = 0
            for start in range(0, len(failed), _PAGE):
                touched += await admin.retry_failed(service, failed[start : start + _PAGE])
        else:
            touched = 0
            for job in jobs:
                if job.status in _OPEN and not job.cancel_requested:
                    status = await admin.cancel(service, job.id)
                    touched += status in (JobStatus.FAILED, JobStatus.PROCESSING)
        return BulkOut(operation=operation, matched=len(jobs), touched=touched, capped=capped)

    @router.post("/jobs/bulk/retry", response_model=BulkOut)
    async def bulk_retry(
        body: Annotated[BulkIn | None, Body()] = None, where: JobFilter = where_filter
    ) -> BulkOut:
        """Retry the Failed ones among the selected jobs (``ids``), or among every job the
        query string's filter matches."""
        return await bulk("retry", where, body)

    @router.post("/jobs/bulk/cancel", response_model=BulkOut)
    async def bulk_cancel(
        body: Annotated[BulkIn | None, Body()] = None, where: JobFilter = where_filter
    ) -> BulkOut:
        """Cancel the unfinished ones among the selected jobs (``ids``), or among every job
        the query string's filter matches (running ones stop at their next renewal)."""
        return await bulk("cancel", where, body)

    @router.get("/schedules", response_model=SchedulesOut)
    async def schedules() -> SchedulesOut:
        """Each schedule with its next slot, its latest slots (with their jobs) and how
        many of them have no job: missed while no worker ran, or skipped."""
        from usvc_core.scheduling import slot_key

        now = datetime.now(UTC)
        window = _SLOT_LOOKBACK
        retention = context.settings.JOB_RETENTION_SECONDS
        if retention > 0:  # older slots' jobs may have been purged: not "missed"
            window = min(window, timedelta(seconds=retention))
        found: list[ScheduleOut] = []
        for schedule in _schedules(context):
            slots: list[SlotOut] = []
            slot = schedule.latest_at_or_before(now)
            while len(slots) < _SLOTS_CHECKED and now - slot <= window:
                jobs = await admin.find_jobs(service, slot_key(schedule.action, slot))
                job = jobs[0] if jobs else None
                slots.append(
                    SlotOut(
                        slot=slot,
                        job_id=job.id if job else None,
                        status=job.shown_status(now) if job else None,
                    )
                )
                slot = schedule.latest_at_or_before(slot - _TICK)
            ran = [s for s in slots if s.job_id is not None]
            # Slots before the first run in view are not counted: a new service has no
            # history. The newest slot may be being enqueued right now: not missed yet.
            first_run = ran[-1].slot if ran else None
            for s in slots[1:]:
                s.missed = s.job_id is None and (first_run is None or s.slot > first_run)
            found.append(
                ScheduleOut(
                    action=schedule.action,
                    cron=schedule.cron,
                    timezone=schedule.timezone,
                    next_run=schedule.next_after(now),
                    last_run=ran[0] if ran else None,
                    recent_slots=slots,
                    missed=sum(s.missed for s in slots),
                )
            )
        return SchedulesOut(schedules=found, window_seconds=window.total_seconds())

    @router.get("/actions/runtime", response_model=RuntimesOut)
    async def runtimes() -> RuntimesOut:
        """Per action, over jobs created in the last hour (the latest samples at most):
        runtime p50/p95 of the completed ones, failure rate of the finished ones."""
        since = datetime.now(UTC) - timedelta(hours=1)
        counts = (await admin.activity(service, minutes=1)).counts
        names = sorted({*context.actions.names, *counts})
        out: list[ActionRuntimeOut] = []
        for name in names:

            async def recent(status: JobStatus, action: str = name) -> list[Job]:
                where = JobFilter(
                    service,
                    statuses=frozenset({status}),
                    actions=frozenset({action}),
                    created_after=since,
                )
                page = await admin.list_jobs(where, limit=_RUNTIME_SAMPLES)
                return list(page.jobs)

            done, failed = await recent(JobStatus.COMPLETED), await recent(JobStatus.FAILED)
            timed = sorted(j.runtime_ms for j in done if j.runtime_ms is not None)
            finished = len(done) + len(failed)
            points: list[Any] = [
                RuntimePoint(finished_at=j.finished_at, runtime_ms=j.runtime_ms)
                for j in done[:200]
                if j.finished_at is not None and j.runtime_ms is not None
            ]
            out.append(
                ActionRuntimeOut(
                    action=name,
                    completed=len(done),
                    failed=len(failed),
                    failure_rate=len(failed) / finished if finished else None,
                    p50_ms=_percentile(timed, 0.50),
                    p95_ms=_percentile(timed, 0.95),
                    points=points,
                )
            )
        return RuntimesOut(window_seconds=3600, samples_per_action=_RUNTIME_SAMPLES, actions=out)
