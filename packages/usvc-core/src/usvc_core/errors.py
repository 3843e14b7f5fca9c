"""The one error tree of the kit.

::

    UsvcError
     ├─ ConfigurationError          settings or wiring are wrong (raised at startup)
     │   ├─ ActionDefinitionError   an @action cannot be registered (duplicate, not async...)
     │   ├─ ActionDiscoveryError    a handler module failed to import
     │   ├─ ServiceNotFoundError    a handler or service asks for a service nobody registered
     │   └─ MissingPackageError     a setting needs a package that is not installed
     ├─ QueueError                  the job store failed (usually transient)
     │   ├─ QueueUnavailableError   the store cannot be reached right now
     │   ├─ LeaseLostError          this worker no longer owns the job (lease expired or reclaimed)
     │   ├─ JobLockedError          another session holds the job's row past the bounded wait
     │   ├─ JobNotFoundError
     │   └─ DuplicateJobError       an unfinished job already holds this idempotency key
     ├─ CircuitOpenError            a circuit breaker refuses the call
     └─ ServiceStartError           a ServiceProvider.initialize() failed

Adapters subclass these families and always ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "ActionDefinitionError",
    "ActionDiscoveryError",
    "CircuitOpenError",
    "ConfigurationError",
    "DuplicateJobError",
    "JobLockedError",
    "JobNotFoundError",
    "LeaseLostError",
    "MissingPackageError",
    "QueueError",
    "QueueUnavailableError",
    "ServiceNotFoundError",
    "ServiceStartError",
    "ShuttingDownError",
    "UsvcError",
]


class UsvcError(Exception):
    """Root of every error raised by the usvc kit."""


class ConfigurationError(UsvcError):
    """The application is configured wrongly; the message says what to fix."""


class ActionDefinitionError(ConfigurationError):
    """An @action handler cannot be registered."""


class ActionDiscoveryError(ConfigurationError):
    """A handler module could not be imported."""


class ServiceNotFoundError(ConfigurationError):
    """A service was requested that nobody registered."""


class MissingPackageError(ConfigurationError):
    """A setting needs a package that is not installed."""


class ServiceStartError(UsvcError):
    """A service failed to initialize."""


class QueueError(UsvcError):
    """The job store failed."""


class QueueUnavailableError(QueueError):
    """The job store cannot be reached right now; retry later."""


class LeaseLostError(QueueError):
    """This worker no longer owns the job: its lease expired or was reclaimed."""


class JobLockedError(QueueError):
    """Another session (an operator's uncommitted UPDATE, a SQL tool left open) holds the
    job's row longer than the store's bounded lock wait. The store is up and nothing was
    written: repeat the call once that session lets go."""


class JobNotFoundError(QueueError):
    """No job has this id."""


class DuplicateJobError(QueueError):
    """An unfinished job of this service already holds this idempotency key."""

    def __init__(self, message: str, existing_job_id: str | None = None) -> None:
        super().__init__(message)
        self.existing_job_id = existing_job_id


class CircuitOpenError(UsvcError):
    """The circuit breaker is open: the call was not attempted. ``retry_after``: seconds
    until the breaker's next trial (None: unknown); a job retried because of this error
    waits at least that long."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDownError(UsvcError):
    """The worker is stopping: a job someone waits for (``Worker.watch``) will not be
    finished by it now. The job itself is kept (it finishes during the drain, or goes back
    to Ready)."""
