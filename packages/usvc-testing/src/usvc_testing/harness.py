"""Run one action the way the worker would, without a queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from usvc_core.actions.registry import ActionRegistry
from usvc_core.decision import Retry, decide
from usvc_core.execution import Outcome, execute_job, route
from usvc_core.health import HealthRegistry
from usvc_core.jobs import Job, JobStatus
from usvc_core.resilience.retry import RetryPolicy
from usvc_core.services import ServiceContainer, ServiceProvider

__all__ = ["ActionResult", "run_action"]


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What the worker would record for the job."""

    status: JobStatus
    results: Any
    error_code: str | None
    error_message: str | None
    runtime_ms: float
    would_retry: bool

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.COMPLETED


async def run_action(
    handlers: Callable[..., Awaitable[Any]] | Iterable[Callable[..., Awaitable[Any]]],
    payload: Mapping[str, Any] | Any,
    *,
    services: Iterable[ServiceProvider | type[ServiceProvider]] = (),
    timeout_seconds: float = 300.0,
    attempt: int = 1,
    max_attempts: int = 3,
    token: str = "test-token",
    health: HealthRegistry | None = None,
) -> ActionResult:
    """Route ``payload`` to one of ``handlers`` and run it like the worker does.

    ``services``: instances are injected as they are (fakes); classes are created,
    initialized and cleaned up. A payload that is not a dict is passed through, so bad
    payloads can be tested too.
    """
    registry = ActionRegistry()
    for handler in [handlers] if callable(handlers) else list(handlers):
        registry.add(handler)
    container = ServiceContainer(health or HealthRegistry())
    for service in services:
        if isinstance(service, ServiceProvider):
            container.override(type(service), service)
        else:
            container.register(service)
    registry.check_services(container)
    await container.initialize()
    try:
        registry.bind(container)
        body = dict(payload) if isinstance(payload, Mapping) else payload
        action = body.get("action") if isinstance(body, dict) else None
        job = Job(
            id="run-action-1",
            microservice="test",
            action=action if isinstance(action, str) else "",
            payload=body,
            status=JobStatus.PROCESSING,
            attempts=attempt,
            max_attempts=max_attempts,
            token=token,
        )
        routed = route(job, registry)
        outcome = (
            routed
            if isinstance(routed, Outcome)
            else await execute_job(job, routed, timeout_seconds)
        )
    finally:
        await container.cleanup()
    return ActionResult(
        status=JobStatus.COMPLETED if outcome.ok else JobStatus.FAILED,
        results=outcome.results,
        error_code=str(outcome.error_code) if outcome.error_code else None,
        error_message=outcome.error_message,
        runtime_ms=outcome.runtime_ms,
        # The worker's own decision; the policy only sets a delay, which is not reported.
        would_retry=isinstance(decide(outcome, job, RetryPolicy()), Retry),
    )
