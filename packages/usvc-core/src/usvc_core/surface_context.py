"""What a surface gets from the application: a narrow view, not the whole ``Application``.

A surface factory (entry point ``usvc.surfaces``) is called with one
:class:`SurfaceContext` and returns a :class:`~usvc_core.ports.Surface` (or None when its
settings disable it). The attribute names are the application's own, so code written
against ``Application`` reads the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from usvc_core.actions.registry import ActionRegistry
    from usvc_core.health import HealthRegistry
    from usvc_core.jobs import Job
    from usvc_core.ports import JobQueue, Metrics, Surface
    from usvc_core.settings import WorkerSettings

__all__ = ["Enqueue", "InstanceIdentity", "SurfaceContext", "SurfaceFactory", "WaitForJob"]


class Enqueue(Protocol):
    """``Application.enqueue``: add a job for this service."""

    def __call__(
        self,
        payload: Mapping[str, Any],
        *,
        priority: int = 0,
        delay_seconds: float = 0.0,
        max_attempts: int | None = None,
        token: str | None = None,
        idempotency_key: str | None = None,
        unique_key: str | None = None,
    ) -> Awaitable[Job]: ...


#: ``Application.wait_for_job(job_id, timeout)``: the job once finished, or as it is then.
WaitForJob = Callable[[str, float], Awaitable["Job | None"]]


@dataclass(slots=True)
class InstanceIdentity:
    """Who this process is, as the registry advertises it. ``http_port`` is set by the HTTP
    surface once it listens (None: no HTTP)."""

    instance_id: str
    host: str
    pid: int
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    http_port: int | None = None


@dataclass(frozen=True, slots=True)
class SurfaceContext:
    """Everything a surface may use. ``settings`` holds the core's settings; an adapter
    reads its own model with ``settings.source.load(Model)``."""

    settings: WorkerSettings
    queue: JobQueue
    health: HealthRegistry
    actions: ActionRegistry
    metrics: Metrics
    instance: InstanceIdentity
    enqueue: Enqueue
    wait_for_job: WaitForJob
    #: Whether the worker loop runs (a liveness probe's question); True when not told.
    worker_running: Callable[[], bool] = field(default=lambda: True)

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    @property
    def http_port(self) -> int | None:
        return self.instance.http_port


#: The value of a ``usvc.surfaces`` entry point.
SurfaceFactory = Callable[[SurfaceContext], "Surface | None"]
