"""usvc core: the job lifecycle, ``@action`` routing, services, health, resilience, the worker
engine, settings, ``Application`` and the ports that adapters implement."""

from usvc_core.actions import ActionDefinition, ActionRegistry, JobContext, RetryJob, action
from usvc_core.app import Application
from usvc_core.clock import SystemClock
from usvc_core.errors import (
    ActionDefinitionError,
    ActionDiscoveryError,
    CircuitOpenError,
    ConfigurationError,
    DuplicateJobError,
    JobLockedError,
    JobNotFoundError,
    LeaseLostError,
    MissingPackageError,
    QueueError,
    QueueUnavailableError,
    ServiceNotFoundError,
    ServiceStartError,
    UsvcError,
)
from usvc_core.execution import Outcome, execute_job
from usvc_core.health import HealthCheck, HealthRegistry, HealthSnapshot, Status
from usvc_core.jobs import ErrorCode, Job, JobStatus
from usvc_core.logging import configure_logging, logger
from usvc_core.metrics import NullMetrics
from usvc_core.ports import (
    ActionSchema,
    Clock,
    EnqueueRequest,
    FleetAdmin,
    InstanceInfo,
    JobFilter,
    JobPage,
    JobQueue,
    LeaseRenewal,
    Metrics,
    MinuteActivity,
    QueueActivity,
    QueueAdmin,
    QueueStats,
    ReclaimResult,
    ServiceDescription,
    ServiceRegistry,
    Surface,
    WorkerRecord,
)
from usvc_core.resilience import CircuitBreaker, CircuitState, RateLimiter, RetryPolicy
from usvc_core.services import ServiceContainer, ServiceProvider
from usvc_core.settings import SettingsSource, WorkerSettings, load_settings
from usvc_core.surface_context import InstanceIdentity, SurfaceContext
from usvc_core.worker import Worker, WorkerConfig

__version__ = "0.1.0"

__all__ = [
    "ActionDefinition",
    "ActionDefinitionError",
    "ActionDiscoveryError",
    "ActionRegistry",
    "ActionSchema",
    "Application",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "ConfigurationError",
    "DuplicateJobError",
    "EnqueueRequest",
    "ErrorCode",
    "FleetAdmin",
    "HealthCheck",
    "HealthRegistry",
    "HealthSnapshot",
    "InstanceIdentity",
    "InstanceInfo",
    "Job",
    "JobContext",
    "JobFilter",
    "JobLockedError",
    "JobNotFoundError",
    "JobPage",
    "JobQueue",
    "JobStatus",
    "LeaseLostError",
    "LeaseRenewal",
    "Metrics",
    "MinuteActivity",
    "MissingPackageError",
    "NullMetrics",
    "Outcome",
    "QueueActivity",
    "QueueAdmin",
    "QueueError",
    "QueueStats",
    "QueueUnavailableError",
    "RateLimiter",
    "ReclaimResult",
    "RetryJob",
    "RetryPolicy",
    "ServiceContainer",
    "ServiceDescription",
    "ServiceNotFoundError",
    "ServiceProvider",
    "ServiceRegistry",
    "ServiceStartError",
    "SettingsSource",
    "Status",
    "Surface",
    "SurfaceContext",
    "SystemClock",
    "UsvcError",
    "Worker",
    "WorkerConfig",
    "WorkerRecord",
    "WorkerSettings",
    "action",
    "configure_logging",
    "execute_job",
    "load_settings",
    "logger",
]
