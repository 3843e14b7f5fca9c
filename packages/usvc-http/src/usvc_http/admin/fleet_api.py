"""The admin API's fleet routes (``/admin/api/workers``, ``/admin/api/actions``): the
worker processes recorded in the store and the actions an operator paused, with pause and
resume. Present when the queue implements ``FleetAdmin`` (every queue of the kit)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel
from usvc_core.jobs import JobStatus
from usvc_core.ports import FleetAdmin, QueueAdmin

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

__all__ = ["ActionOut", "WorkerOut", "add_fleet_routes"]

_RUNNING = (JobStatus.ASSIGNED, JobStatus.PROCESSING)
# Errors of the store get their status from usvc_http.errors, as on every admin route.
ActionName = Annotated[str, PathParam(min_length=1, max_length=200)]


class WorkerOut(BaseModel):
    """One worker process as its last heartbeat recorded it."""

    worker_id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_seen_at: datetime | None
    heartbeat_seconds: float
    gone: bool
    actions: list[str]
    concurrency: int
    running: int


class WorkersOut(BaseModel):
    workers: list[WorkerOut]


class ActionOut(BaseModel):
    """An action this service handles, has jobs of, or has paused."""

    action: str
    registered: bool  #: handled by this process
    paused: bool
    paused_at: datetime | None
    max_running: int | None
    ready: int
    running: int  #: Assigned or Processing


class ActionsOut(BaseModel):
    actions: list[ActionOut]


class PauseOut(BaseModel):
    action: str
    paused: bool
    changed: bool  #: False: it was paused (or running) already


def add_fleet_routes(
    router: APIRouter, context: SurfaceContext, admin: QueueAdmin, fleet: FleetAdmin
) -> None:
    """Add the fleet routes to the admin API's ``router`` (its authentication included)."""
    service = context.settings.MICROSERVICE_NAME
    limits = context.actions.max_running_limits()

    @router.get("/workers", response_model=WorkersOut)
    async def workers() -> WorkersOut:
        """This service's worker processes, oldest first; ``gone``: silent for two
        heartbeats (its jobs went back to Ready)."""
        records = await fleet.list_workers(service)
        return WorkersOut(
            workers=[
                WorkerOut(
                    worker_id=r.worker_id,
                    host=r.host,
                    pid=r.pid,
                    version=r.version,
                    started_at=r.started_at,
                    last_seen_at=r.last_seen_at,
                    heartbeat_seconds=r.heartbeat_seconds,
                    gone=r.gone,
                    actions=list(r.actions),
                    concurrency=r.concurrency,
                    running=r.running,
                )
                for r in records
            ]
        )

    @router.get("/actions", response_model=ActionsOut)
    async def actions() -> ActionsOut:
        """Every action handled here, with jobs, or paused: depth, running, limit, pause."""
        paused = await fleet.paused_actions(service)
        counts = (await admin.activity(service, minutes=1)).counts
        names = sorted({*context.actions.names, *counts, *paused})
        return ActionsOut(
            actions=[
                ActionOut(
                    action=name,
                    registered=name in context.actions,
                    paused=name in paused,
                    paused_at=paused.get(name),
                    max_running=limits.get(name),
                    ready=counts.get(name, {}).get(JobStatus.READY, 0),
                    running=sum(counts.get(name, {}).get(s, 0) for s in _RUNNING),
                )
                for name in names
            ]
        )

    @router.post("/actions/{action}/pause", response_model=PauseOut)
    async def pause(action: ActionName) -> PauseOut:
        """No worker of the service claims the action's jobs until it is resumed; jobs
        already running finish."""
        changed = await fleet.pause_action(service, action)
        return PauseOut(action=action, paused=True, changed=changed)

    @router.post("/actions/{action}/resume", response_model=PauseOut)
    async def resume(action: ActionName) -> PauseOut:
        """The action's jobs are claimed again."""
        changed = await fleet.resume_action(service, action)
        return PauseOut(action=action, paused=False, changed=changed)
