"""PrometheusMetrics: the spec's four metrics, the duration histogram and the operator metrics,
read back through the exposition parser (and through a running worker)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from usvc_core import Application, RetryJob, action
from usvc_core.health import HealthRegistry, Status
from usvc_core.jobs import JobStatus
from usvc_core.ports import QueueStats
from usvc_core.settings import WorkerSettings
from usvc_core.worker import UNKNOWN_ACTION_LABEL
from usvc_http import PrometheusMetrics
from usvc_testing import InMemoryQueue

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: PrometheusMetrics) -> tuple[Samples, dict[str, tuple[str, str]]]:
    """Samples by (name, labels) and (type, help) by family name, as a scraper parses them."""
    samples: Samples = {}
    families: dict[str, tuple[str, str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        families[family.name] = (family.type, family.documentation)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, families


def test_the_specs_four_metrics_exist_at_zero_with_the_specs_help() -> None:
    """Before any job: the four metrics are there, unlabelled, with the spec's names and help."""
    samples, families = scrape(PrometheusMetrics())
    assert samples[("jobs_processed_total", ())] == 0
    assert samples[("jobs_errors_total", ())] == 0
    assert samples[("active_jobs", ())] == 0
    assert samples[("health_status", ())] == 2
    assert families["jobs_processed"] == ("counter", "Total jobs completed")
    assert families["jobs_errors"] == ("counter", "Total jobs that resulted in errors")
    assert families["active_jobs"] == ("gauge", "Number of jobs currently being processed")
    assert families["health_status"] == ("gauge", "Health status (0=RED, 1=YELLOW, 2=GREEN)")


def test_outcomes_feed_counters_and_the_duration_histogram() -> None:
    """completed -> processed, failed -> errors, retried -> retries; every outcome is timed."""
    m = PrometheusMetrics()
    for outcome in ("completed", "completed", "failed", "retried", "released", "lost"):
        m.job_started("resize")
        m.job_finished("resize", outcome, 0.2)
    m.job_started("resize")  # still running
    samples, families = scrape(m)
    assert samples[("jobs_processed_total", ())] == 2
    assert samples[("jobs_errors_total", ())] == 1
    assert samples[("jobs_retried_total", (("action", "resize"),))] == 1
    assert samples[("active_jobs", ())] == 1
    count = "job_duration_seconds_count"
    for outcome, n in (("completed", 2), ("failed", 1), ("retried", 1), ("released", 1)):
        assert samples[(count, (("action", "resize"), ("outcome", outcome)))] == n
    bucket = (("action", "resize"), ("le", "0.25"), ("outcome", "completed"))
    assert samples[("job_duration_seconds_bucket", bucket)] == 2
    bucket = (("action", "resize"), ("le", "0.1"), ("outcome", "completed"))
    assert samples[("job_duration_seconds_bucket", bucket)] == 0
    assert families["job_duration_seconds"][0] == "histogram"


def test_each_action_and_outcome_pair_has_its_own_series() -> None:
    """Durations of two actions and two outcomes, interleaved, land in four series, each
    with its own count and sum (no pair shares another's child)."""
    m = PrometheusMetrics()
    observed = [("a", "completed", 0.001), ("b", "completed", 0.3), ("a", "failed", 2.0)]
    observed += [("b", "failed", 0.004), ("a", "completed", 0.02), ("b", "completed", 0.3)]
    for name, outcome, seconds in observed:
        m.job_started(name)
        m.job_finished(name, outcome, seconds)
    samples, _ = scrape(m)
    for name in ("a", "b"):
        for outcome in ("completed", "failed"):
            mine = [s for n, o, s in observed if (n, o) == (name, outcome)]
            labels = (("action", name), ("outcome", outcome))
            assert samples[("job_duration_seconds_count", labels)] == len(mine)
            assert samples[("job_duration_seconds_sum", labels)] == pytest.approx(sum(mine))
            first = (("action", name), ("le", "0.005"), ("outcome", outcome))
            wanted = len([s for s in mine if s <= 0.005])
            assert samples[("job_duration_seconds_bucket", first)] == wanted


def test_the_duration_histogram_matches_prometheus_clients_own() -> None:
    """Durations kept as plain numbers expose the same buckets, count and sum as a
    prometheus_client Histogram fed the same values (bounds included: ``le`` is <=)."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest
    from usvc_http.metrics import JOB_DURATION_BUCKETS

    values = [0.0, 0.005, 0.0051, 0.2, 1, 1.0000001, 299.9, 300, 301, 5000]
    m = PrometheusMetrics()
    reference = CollectorRegistry()
    hist = Histogram(
        "job_duration_seconds",
        "reference",
        ["action", "outcome"],
        buckets=JOB_DURATION_BUCKETS,
        registry=reference,
    )
    for v in values:
        m.job_started("resize")
        m.job_finished("resize", "completed", v)
        hist.labels(action="resize", outcome="completed").observe(v)
    ours, _ = scrape(m)
    theirs: Samples = {}
    for family in text_string_to_metric_families(generate_latest(reference).decode()):
        for sample in family.samples:
            theirs[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    wanted = {k: v for k, v in theirs.items() if not k[0].endswith("_created")}
    assert {k: v for k, v in ours.items() if k in wanted} == wanted
    assert len(wanted) == len(JOB_DURATION_BUCKETS) + 3  # buckets, +Inf, count, sum


def test_queue_and_lease_counters() -> None:
    """Claims, lease reclaims, releases on shutdown and queue errors by operation; a job a
    reclaim fails (LEASE_EXPIRED, no attempts left) counts as a job that ended in error."""
    m = PrometheusMetrics()
    m.jobs_claimed(5)
    m.jobs_claimed(2)
    m.jobs_reclaimed(2, 1)
    m.jobs_released(4)
    m.queue_error("claim")
    m.queue_error("claim")
    m.queue_error("record_completed")
    samples, _ = scrape(m)
    assert samples[("jobs_claimed_total", ())] == 7
    assert samples[("jobs_lease_reclaimed_total", ())] == 3
    assert samples[("jobs_errors_total", ())] == 1
    assert samples[("jobs_released_total", ())] == 4
    assert samples[("queue_errors_total", (("operation", "claim"),))] == 2
    assert samples[("queue_errors_total", (("operation", "record_completed"),))] == 1


def test_queue_depth_and_oldest_ready_age_follow_the_samples() -> None:
    """Every status has a depth; a status missing from a later sample drops to 0."""
    m = PrometheusMetrics()
    samples, _ = scrape(m)
    assert {s.value for s in JobStatus} == {
        dict(labels)["status"] for (name, labels) in samples if name == "queue_depth"
    }
    m.queue_stats(QueueStats({JobStatus.READY: 7, JobStatus.PROCESSING: 2}, 42.5))
    samples, _ = scrape(m)
    assert samples[("queue_depth", (("status", "Ready"),))] == 7
    assert samples[("queue_depth", (("status", "Processing"),))] == 2
    assert samples[("queue_oldest_ready_age_seconds", ())] == 42.5
    m.queue_stats(QueueStats({JobStatus.COMPLETED: 9}, None))
    samples, _ = scrape(m)
    assert samples[("queue_depth", (("status", "Ready"),))] == 0
    assert samples[("queue_depth", (("status", "Completed"),))] == 9
    assert samples[("queue_oldest_ready_age_seconds", ())] == 0


def test_a_count_at_the_sample_limit_is_flagged_as_a_lower_bound() -> None:
    """queue_depth reads the limit and queue_depth_capped says it is at least that; both
    follow each sample (every status has a series from the start)."""
    m = PrometheusMetrics()
    samples, _ = scrape(m)
    assert all(samples[("queue_depth_capped", (("status", s.value),))] == 0 for s in JobStatus)
    capped = frozenset({JobStatus.READY})
    m.queue_stats(QueueStats({JobStatus.READY: 100, JobStatus.FAILED: 3}, 1.0, at_least=capped))
    samples, _ = scrape(m)
    assert samples[("queue_depth", (("status", "Ready"),))] == 100
    assert samples[("queue_depth_capped", (("status", "Ready"),))] == 1
    assert samples[("queue_depth_capped", (("status", "Failed"),))] == 0
    m.queue_stats(QueueStats({JobStatus.READY: 40}, 1.0))
    samples, _ = scrape(m)
    assert samples[("queue_depth_capped", (("status", "Ready"),))] == 0


def test_paused_actions_show_as_a_gauge_that_drops_to_0_on_resume() -> None:
    m = PrometheusMetrics()
    m.queue_stats(QueueStats({}, None, paused_actions=frozenset({"report", "sync"})))
    samples, families = scrape(m)
    assert families["action_paused"][0] == "gauge"
    assert samples[("action_paused", (("action", "report"),))] == 1
    assert samples[("action_paused", (("action", "sync"),))] == 1
    m.queue_stats(QueueStats({}, None, paused_actions=frozenset({"sync"})))
    samples, _ = scrape(m)
    assert samples[("action_paused", (("action", "report"),))] == 0
    assert samples[("action_paused", (("action", "sync"),))] == 1


def test_health_overall_and_per_check() -> None:
    """health_status is the aggregate; health_check_status has one series per check."""
    m = PrometheusMetrics()
    registry = HealthRegistry()
    registry.subscribe(
        lambda h: m.health_changed(
            h.aggregate(), {n: c.status for n, c in h.snapshot().checks.items()}
        )
    )
    registry.register("job_queue", Status.GREEN)
    registry.register("oracle", Status.YELLOW)
    samples, _ = scrape(m)
    assert samples[("health_status", ())] == 1
    assert samples[("health_check_status", (("check", "job_queue"),))] == 2
    assert samples[("health_check_status", (("check", "oracle"),))] == 1
    registry.update("job_queue", Status.RED)
    samples, _ = scrape(m)
    assert samples[("health_status", ())] == 0
    assert samples[("health_check_status", (("check", "job_queue"),))] == 0


def test_two_instances_do_not_share_a_registry() -> None:
    """Each application has its own registry (the global one would refuse a second app)."""
    a, b = PrometheusMetrics(), PrometheusMetrics()
    a.jobs_claimed(1)
    assert scrape(a)[0][("jobs_claimed_total", ())] == 1
    assert scrape(b)[0][("jobs_claimed_total", ())] == 0


@action("ok")
async def ok_action() -> None:
    return None


@action("again")
async def again_action() -> None:
    raise RetryJob("later", delay_seconds=3600)


async def test_a_running_worker_reports_without_ids_or_tokens_in_labels() -> None:
    """Real jobs: counters move, unknown actions collapse to one label, no token in any label."""
    metrics = PrometheusMetrics()
    settings = WorkerSettings(
        MICROSERVICE_NAME="metrics-test",
        DEV_MODE=True,
        HTTP_ENABLED=False,
        POLLING_INTERVAL_SECONDS=0.05,
        JOB_MAX_ATTEMPTS=2,
    )
    app = Application(
        settings=settings,
        queue=InMemoryQueue(),
        surfaces=[],
        metrics=metrics,
        configure_logging=False,
    )
    app.add_action(ok_action)
    app.add_action(again_action)
    async with app:
        jobs = [
            await app.enqueue({"action": "ok"}, token="secret-token-1"),
            await app.enqueue({"action": "ok"}, token="secret-token-2"),
            await app.enqueue({"action": "again"}),
            await app.enqueue({"action": "nope-d41d8cd9"}),
        ]
        for job in (jobs[0], jobs[1], jobs[3]):
            assert (await app.wait_for_job(job.id, 10)) is not None
        retried = ("jobs_retried_total", (("action", "again"),))
        for _ in range(500):  # the retry is recorded right after the attempt
            if scrape(metrics)[0].get(retried) == 1:
                break
            await asyncio.sleep(0.02)
    samples, _ = scrape(metrics)
    assert samples[("jobs_processed_total", ())] == 2
    assert samples[("jobs_errors_total", ())] == 1  # the unknown action failed for good
    assert samples[("jobs_claimed_total", ())] == 4
    assert samples[("active_jobs", ())] == 0
    unknown = (("action", UNKNOWN_ACTION_LABEL), ("outcome", "failed"))
    assert samples[("job_duration_seconds_count", unknown)] == 1
    label_values = {v for _, labels in samples for _, v in labels}
    assert not [v for v in label_values if "secret" in v or "nope" in v or "dev-" in v]
    assert samples[("health_check_status", (("check", "job_queue"),))] == 2


def test_promtool_accepts_the_exposition(tmp_path: Any) -> None:
    """promtool (from Debian's prometheus package) lints our /metrics text without complaint."""
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "promtool not on PATH (bash scripts/install-prometheus.sh installs it)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    m = PrometheusMetrics()
    m.job_started("resize")
    m.job_finished("resize", "completed", 0.1)
    m.queue_error("claim")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=m.render(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
