"""usvc core: the job lifecycle, ``@action`` routing, services, health, resilience, the worker
engine, settings, ``Application`` and the ports that adapters implement.

Names are imported on first use (PEP 562): ``import usvc_core.cli`` or ``usvc_core.jobs``
must not pay for the worker and OpenTelemetry, which ``Application`` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from usvc_core.lazy_names import lazy_names

if TYPE_CHECKING:
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
    from usvc_core.jobs import AttemptOutcome, ErrorCode, Job, JobAttempt, JobStatus
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
        StoreClock,
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
    "AttemptOutcome",
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
    "JobAttempt",
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
    "StoreClock",
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

_WHERE = {
    "ActionDefinition": "usvc_core.actions",
    "ActionDefinitionError": "usvc_core.errors",
    "ActionDiscoveryError": "usvc_core.errors",
    "ActionRegistry": "usvc_core.actions",
    "ActionSchema": "usvc_core.service_registry",
    "Application": "usvc_core.app",
    "AttemptOutcome": "usvc_core.jobs",
    "CircuitBreaker": "usvc_core.resilience",
    "CircuitOpenError": "usvc_core.errors",
    "CircuitState": "usvc_core.resilience",
    "Clock": "usvc_core.ports",
    "ConfigurationError": "usvc_core.errors",
    "DuplicateJobError": "usvc_core.errors",
    "EnqueueRequest": "usvc_core.ports",
    "ErrorCode": "usvc_core.jobs",
    "FleetAdmin": "usvc_core.ports",
    "HealthCheck": "usvc_core.health",
    "HealthRegistry": "usvc_core.health",
    "HealthSnapshot": "usvc_core.health",
    "InstanceIdentity": "usvc_core.surface_context",
    "InstanceInfo": "usvc_core.ports",
    "Job": "usvc_core.jobs",
    "JobAttempt": "usvc_core.jobs",
    "JobContext": "usvc_core.actions",
    "JobFilter": "usvc_core.admin_records",
    "JobLockedError": "usvc_core.errors",
    "JobNotFoundError": "usvc_core.errors",
    "JobPage": "usvc_core.admin_records",
    "JobQueue": "usvc_core.ports",
    "JobStatus": "usvc_core.jobs",
    "LeaseLostError": "usvc_core.errors",
    "LeaseRenewal": "usvc_core.ports",
    "Metrics": "usvc_core.ports",
    "MinuteActivity": "usvc_core.admin_records",
    "MissingPackageError": "usvc_core.errors",
    "NullMetrics": "usvc_core.metrics",
    "Outcome": "usvc_core.execution",
    "QueueActivity": "usvc_core.admin_records",
    "QueueAdmin": "usvc_core.ports",
    "QueueError": "usvc_core.errors",
    "QueueStats": "usvc_core.ports",
    "QueueUnavailableError": "usvc_core.errors",
    "RateLimiter": "usvc_core.resilience",
    "ReclaimResult": "usvc_core.ports",
    "RetryJob": "usvc_core.actions",
    "RetryPolicy": "usvc_core.resilience",
    "ServiceContainer": "usvc_core.services",
    "ServiceDescription": "usvc_core.ports",
    "ServiceNotFoundError": "usvc_core.errors",
    "ServiceProvider": "usvc_core.services",
    "ServiceRegistry": "usvc_core.ports",
    "ServiceStartError": "usvc_core.errors",
    "SettingsSource": "usvc_core.settings",
    "Status": "usvc_core.health",
    "StoreClock": "usvc_core.ports",
    "Surface": "usvc_core.ports",
    "SurfaceContext": "usvc_core.surface_context",
    "SystemClock": "usvc_core.clock",
    "UsvcError": "usvc_core.errors",
    "Worker": "usvc_core.worker",
    "WorkerConfig": "usvc_core.worker",
    "WorkerRecord": "usvc_core.ports",
    "WorkerSettings": "usvc_core.settings",
    "action": "usvc_core.actions",
    "configure_logging": "usvc_core.logging",
    "execute_job": "usvc_core.execution",
    "load_settings": "usvc_core.settings",
    "logger": "usvc_core.logging",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
