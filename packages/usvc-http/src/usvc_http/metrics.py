"""The metrics port on prometheus_client, with one registry per application."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from usvc_core.health import Status
from usvc_core.jobs import JobStatus
from usvc_core.ports import QueueStats

__all__ = ["JOB_DURATION_BUCKETS", "PrometheusMetrics"]

JOB_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class PrometheusMetrics:
    """Implements :class:`usvc_core.ports.Metrics`.

    The spec's four metrics keep their names and help texts and stay unlabelled (so they
    exist at 0 before the first job): ``jobs_processed_total`` counts jobs completed,
    ``jobs_errors_total`` jobs that ended Failed (an attempt that will be retried counts in
    ``jobs_retried_total`` instead). Label values are only registered action names, outcomes,
    queue operations, statuses and check names: never tokens, ids or payload values.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.processed = Counter("jobs_processed", "Total jobs completed", registry=r)
        self.errors = Counter("jobs_errors", "Total jobs that resulted in errors", registry=r)
        self.active = Gauge("active_jobs", "Number of jobs currently being processed", registry=r)
        self.health = Gauge("health_status", "Health status (0=RED, 1=YELLOW, 2=GREEN)", registry=r)
        self.duration = Histogram(
            "job_duration_seconds",
            "Time from start to recorded outcome of one job attempt, by action and outcome "
            "(completed, failed, retried, released, lost)",
            ["action", "outcome"],
            buckets=JOB_DURATION_BUCKETS,
            registry=r,
        )
        self.claimed = Counter("jobs_claimed", "Jobs claimed from the queue", registry=r)
        self.retried = Counter(
            "jobs_retried", "Job attempts that ended in a retry", ["action"], registry=r
        )
        self.reclaimed = Counter(
            "jobs_lease_reclaimed", "Jobs whose lease expired and were reclaimed", registry=r
        )
        self.released = Counter(
            "jobs_released", "Jobs released back to Ready on shutdown", registry=r
        )
        self.queue_errors = Counter(
            "queue_errors", "Failed job-queue operations", ["operation"], registry=r
        )
        self.depth = Gauge(
            "queue_depth", "Jobs of this service by status (sampled)", ["status"], registry=r
        )
        self.oldest_ready = Gauge(
            "queue_oldest_ready_age_seconds",
            "Age of the oldest Ready job (sampled; 0 when none)",
            registry=r,
        )
        self.check_health = Gauge(
            "health_check_status",
            "Health of each check (0=RED, 1=YELLOW, 2=GREEN)",
            ["check"],
            registry=r,
        )
        self.health.set(Status.GREEN)
        for status in JobStatus:
            self.depth.labels(status=status.value)
        # labels() takes a lock and builds a key on every call; the set of children is small.
        self._duration_children: dict[tuple[str, str], Histogram] = {}

    def job_started(self, action: str) -> None:
        self.active.inc()

    def job_finished(self, action: str, outcome: str, duration_seconds: float) -> None:
        self.active.dec()
        if outcome == "completed":
            self.processed.inc()
        elif outcome == "retried":
            self.retried.labels(action=action).inc()
        elif outcome == "failed":
            self.errors.inc()
        child = self._duration_children.get((action, outcome))
        if child is None:
            child = self._duration_children[(action, outcome)] = self.duration.labels(
                action=action, outcome=outcome
            )
        child.observe(duration_seconds)

    def jobs_claimed(self, count: int) -> None:
        self.claimed.inc(count)

    def jobs_reclaimed(self, count: int) -> None:
        self.reclaimed.inc(count)

    def jobs_released(self, count: int) -> None:
        self.released.inc(count)

    def queue_error(self, operation: str) -> None:
        self.queue_errors.labels(operation=operation).inc()

    def queue_stats(self, stats: QueueStats) -> None:
        for status in JobStatus:  # a status absent from the sample has no jobs now
            self.depth.labels(status=status.value).set(stats.counts.get(status, 0))
        self.oldest_ready.set(stats.oldest_ready_age_seconds or 0.0)

    def health_changed(self, overall: Status, checks: Mapping[str, Status]) -> None:
        self.health.set(int(overall))
        for name, status in checks.items():
            self.check_health.labels(check=name).set(int(status))

    def render(self) -> bytes:
        return generate_latest(self.registry)
