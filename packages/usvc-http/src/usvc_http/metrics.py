"""The metrics port on prometheus_client, with one registry per application."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from usvc_core.health import Status
from usvc_core.jobs import JobStatus
from usvc_core.ports import QueueStats

__all__ = ["JOB_DURATION_BUCKETS", "PrometheusMetrics"]

JOB_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# The bucket labels as prometheus_client writes them ("0.005", "1.0", ..., "+Inf").
_BOUNDS = [repr(float(b)) for b in JOB_DURATION_BUCKETS] + ["+Inf"]
# The bounds as floats for bisect (an int bound costs a float-int comparison per step),
# and the first one, below which most short jobs end: one comparison instead of a bisect.
_FLOAT_BOUNDS = tuple(float(b) for b in JOB_DURATION_BUCKETS)
_FIRST_BOUND = _FLOAT_BOUNDS[0]
_DURATION_HELP = (
    "Time from start to recorded outcome of one job attempt, by action and outcome "
    "(completed, failed, retried, released, lost)"
)


class _Durations:
    """One histogram child: observations per bucket (not cumulative) and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(JOB_DURATION_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class _JobCounters(Collector):
    """The metrics updated once or more per job, as plain numbers turned into samples when
    the registry is collected (a scrape).

    prometheus_client's Counter, Gauge and Histogram take a lock on every update, several
    per job: about 15% of a small job's whole cost in the worker. The worker updates these
    from its event loop only, so plain attributes do; a scrape from another thread reads
    numbers that are at worst one update old.
    """

    def __init__(self) -> None:
        self.active = 0
        self.processed = 0
        self.errors = 0
        self.claimed = 0
        self.retried: dict[str, int] = {}
        # The duration children by outcome, then action: found per job without building
        # and hashing a key tuple.
        self.durations: dict[str, dict[str, _Durations]] = {}

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("jobs_processed", "Total jobs completed", value=self.processed)
        yield CounterMetricFamily(
            "jobs_errors", "Total jobs that resulted in errors", value=self.errors
        )
        yield GaugeMetricFamily(
            "active_jobs", "Number of jobs currently being processed", value=self.active
        )
        yield CounterMetricFamily("jobs_claimed", "Jobs claimed from the queue", value=self.claimed)
        retried = CounterMetricFamily(
            "jobs_retried", "Job attempts that ended in a retry", labels=["action"]
        )
        for action, count in list(self.retried.items()):
            retried.add_metric([action], count)
        yield retried
        durations = HistogramMetricFamily(
            "job_duration_seconds", _DURATION_HELP, labels=["action", "outcome"]
        )
        for outcome, children in list(self.durations.items()):
            for action, child in list(children.items()):
                cumulative, buckets = 0, []
                for bound, count in zip(_BOUNDS, list(child.counts), strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                durations.add_metric([action, outcome], buckets, sum_value=child.total)
        yield durations

    def describe(self) -> Iterator[Metric]:
        return self.collect()


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
        self._jobs = _JobCounters()
        r.register(self._jobs)
        self.health = Gauge("health_status", "Health status (0=RED, 1=YELLOW, 2=GREEN)", registry=r)
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
        self.depth_capped = Gauge(
            "queue_depth_capped",
            "1 when queue_depth{status} reached the sample's count limit "
            "(QUEUE_STATS_COUNT_LIMIT): at least that many jobs; 0 when exact",
            ["status"],
            registry=r,
        )
        self.oldest_ready = Gauge(
            "queue_oldest_ready_age_seconds",
            "Seconds the longest-waiting due Ready job has waited since it became due "
            "(jobs scheduled for later never count; sampled; 0 when none)",
            registry=r,
        )
        self.scheduled = Gauge(
            "queue_scheduled_jobs",
            "Ready jobs of this service not due yet (run_at in the future; sampled; a lower "
            'bound while queue_depth_capped{status="Ready"} is 1)',
            registry=r,
        )
        self.check_health = Gauge(
            "health_check_status",
            "Health of each check (0=RED, 1=YELLOW, 2=GREEN)",
            ["check"],
            registry=r,
        )
        self.next_run = Gauge(
            "schedule_next_run_timestamp_seconds",
            "When each periodic action is next enqueued (Unix time)",
            ["action"],
            registry=r,
        )
        self.loop_lag = Gauge(
            "event_loop_lag_seconds",
            "How late the event loop ran: the largest lag over the last few seconds",
            registry=r,
        )
        self.paused = Gauge(
            "action_paused",
            "1 while an operator has paused the action across the fleet (sampled)",
            ["action"],
            registry=r,
        )
        self._paused: frozenset[str] = frozenset()
        self.health.set(Status.GREEN)
        for status in JobStatus:
            self.depth.labels(status=status.value)
            self.depth_capped.labels(status=status.value)

    def job_started(self, action: str) -> None:
        self._jobs.active += 1

    def job_finished(self, action: str, outcome: str, duration_seconds: float) -> None:
        jobs = self._jobs
        jobs.active -= 1
        if outcome == "completed":
            jobs.processed += 1
        elif outcome == "retried":
            jobs.retried[action] = jobs.retried.get(action, 0) + 1
        elif outcome == "failed":
            jobs.errors += 1
        children = jobs.durations.get(outcome)
        if children is None:
            children = jobs.durations[outcome] = {}
        child = children.get(action)
        if child is None:
            child = children[action] = _Durations()
        # bisect_left: a duration equal to a bound counts in that bound's bucket (le).
        if duration_seconds <= _FIRST_BOUND:
            child.counts[0] += 1
        else:
            child.counts[bisect_left(_FLOAT_BOUNDS, duration_seconds)] += 1
        child.total += duration_seconds

    def jobs_claimed(self, count: int) -> None:
        self._jobs.claimed += count

    def jobs_reclaimed(self, requeued: int, failed: int) -> None:
        self.reclaimed.inc(requeued + failed)
        self._jobs.errors += failed  # ended Failed (LEASE_EXPIRED) without a worker recording it

    def jobs_released(self, count: int) -> None:
        self.released.inc(count)

    def queue_error(self, operation: str) -> None:
        self.queue_errors.labels(operation=operation).inc()

    def queue_stats(self, stats: QueueStats) -> None:
        for status in JobStatus:  # a status absent from the sample has no jobs now
            self.depth.labels(status=status.value).set(stats.counts.get(status, 0))
            self.depth_capped.labels(status=status.value).set(status in stats.at_least)
        self.oldest_ready.set(stats.oldest_ready_age_seconds or 0.0)
        self.scheduled.set(stats.scheduled)
        # A resumed action shows 0 (not a vanished series) until the process ends.
        for action in self._paused - stats.paused_actions:
            self.paused.labels(action=action).set(0)
        for action in stats.paused_actions:
            self.paused.labels(action=action).set(1)
        self._paused = self._paused | stats.paused_actions

    def schedule_next_run(self, action: str, timestamp: float) -> None:
        self.next_run.labels(action=action).set(timestamp)

    def health_changed(self, overall: Status, checks: Mapping[str, Status]) -> None:
        self.health.set(int(overall))
        for name, status in checks.items():
            self.check_health.labels(check=name).set(int(status))

    def event_loop_lag(self, seconds: float) -> None:
        self.loop_lag.set(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
