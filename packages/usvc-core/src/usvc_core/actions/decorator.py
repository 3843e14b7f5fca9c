"""``@action``: marks an async function as the handler of one action."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from usvc_core.errors import ActionDefinitionError, ConfigurationError
from usvc_core.resilience.retry import RetryPolicy

__all__ = ["ACTION_ATTR", "ActionOptions", "action", "source_of"]

ACTION_ATTR = "__usvc_action__"
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, slots=True)
class ActionOptions:
    """What ``@action(...)`` was given; type hints are resolved later, at registration."""

    name: str
    timeout_seconds: float | None = None
    max_attempts: int | None = None
    retry_on: tuple[type[BaseException], ...] = ()
    retry_policy: RetryPolicy | None = None
    schedule: str | None = None  #: cron expression: enqueue this action periodically
    timezone: str = "UTC"  #: the schedule's time zone (IANA name)
    max_running: int | None = None  #: most jobs of this action running across the fleet


def source_of(fn: Callable[..., Any]) -> str:
    """``file:line`` of a function, for error messages."""
    try:
        file = inspect.getsourcefile(fn) or "<unknown>"
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        return getattr(fn, "__module__", "<unknown>")
    return f"{file}:{line}"


def action(
    name: str,
    *,
    timeout_seconds: float | None = None,
    max_attempts: int | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    retry_policy: RetryPolicy | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    max_running: int | None = None,
) -> Callable[[F], F]:
    """Register the decorated ``async def`` as the handler of jobs whose ``"action"`` is ``name``.

    Parameters are read from type hints: one ``pydantic.BaseModel`` subclass receives the
    validated payload, ``ServiceProvider`` subclasses are injected, and a ``JobContext``
    receives the job's id, token and attempt.

    Args:
        name: the payload's ``"action"`` value.
        timeout_seconds: per-job timeout (default ``JOB_TIMEOUT_SECONDS``).
        max_attempts: attempts of a job of this action (default ``JOB_MAX_ATTEMPTS``).
        retry_on: exception types after which the job is retried while attempts are left
            (by default a raising handler fails the job at once; ``RetryJob`` always retries).
        retry_policy: backoff between attempts (default from ``JOB_RETRY_BACKOFF_*``).
        schedule: a cron expression (five fields, or six with seconds first): every worker
            of the service enqueues ``{"action": name}`` at each slot, once across the fleet.
        timezone: the time zone ``schedule`` is read in (IANA name, default UTC).
        max_running: at most this many jobs of this action are Assigned or Processing
            across every worker of the service; the queue enforces it in the claim.
    """
    if not isinstance(name, str) or not name.strip():
        raise ActionDefinitionError(f"@action needs a non-empty name, got {name!r}")
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise ActionDefinitionError(f"@action({name!r}): timeout_seconds must be positive")
    if max_attempts is not None and max_attempts < 1:
        raise ActionDefinitionError(f"@action({name!r}): max_attempts must be at least 1")
    if max_running is not None and (isinstance(max_running, bool) or max_running < 1):
        raise ActionDefinitionError(f"@action({name!r}): max_running must be at least 1")
    options = ActionOptions(
        name,
        timeout_seconds,
        max_attempts,
        tuple(retry_on),
        retry_policy,
        schedule,
        timezone,
        max_running,
    )

    def decorate(fn: F) -> F:
        candidate: Any = fn  # checked at runtime: type hints cannot stop a sync def
        where = f"@action({name!r}) handler {fn.__qualname__} ({source_of(fn)})"
        if not inspect.iscoroutinefunction(candidate):
            raise ActionDefinitionError(f"{where} must be 'async def'")
        if schedule is None and timezone != "UTC":
            raise ActionDefinitionError(f"{where}: timezone= applies to a schedule; add schedule=")
        if schedule is not None:
            from usvc_core.scheduling import parse_schedule

            try:
                parse_schedule(name, schedule or "", timezone, where=where)
            except ConfigurationError as exc:
                raise ActionDefinitionError(str(exc)) from None
        setattr(fn, ACTION_ATTR, options)
        return fn

    return decorate
