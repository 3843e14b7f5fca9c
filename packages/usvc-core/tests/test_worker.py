"""The worker engine against the in-memory queue: batching, wake-ups, leases, outages, drain.

Worker and queue share a FakeClock: whatever waits on time (leases, reclaims, backoff,
retries, the drain) moves when a test advances the clock, never by really sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from pydantic import BaseModel
from usvc_core import (
    ActionRegistry,
    EnqueueRequest,
    HealthRegistry,
    Job,
    JobLockedError,
    JobStatus,
    QueueUnavailableError,
    RetryPolicy,
    Status,
    Worker,
    WorkerConfig,
    action,
)
from usvc_core.clock import SystemClock
from usvc_core.metrics import NullMetrics
from usvc_core.ports import LeaseRenewal, QueueStats
from usvc_core.worker import OUTCOMES_PER_SLOT, QUEUE_CHECK
from usvc_testing import FakeClock, InMemoryQueue

MS = "svc"
gate = asyncio.Event()
runs: dict[str, int] = {}


class In(BaseModel):
    n: int = 0


@action("noop")
async def noop(input: In) -> dict[str, int]:
    runs[str(input.n)] = runs.get(str(input.n), 0) + 1
    return {"n": input.n}


@action("wait")
async def wait(input: In) -> dict[str, int]:
    await gate.wait()
    return {"n": input.n}


@action(
    "flaky",
    retry_on=(ConnectionError,),
    retry_policy=RetryPolicy(base_seconds=0.01, cap_seconds=0.01),
)
async def flaky(input: In) -> dict[str, int]:
    runs["flaky"] = runs.get("flaky", 0) + 1
    if runs["flaky"] < 3:
        raise ConnectionError("try again")
    return {"n": runs["flaky"]}


class SpyQueue(InMemoryQueue):
    """The in-memory queue, recording calls and failing or holding completions on demand."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__(clock)
        self.claims: list[int] = []
        self.extended: list[int] = []
        self.failing: set[str] = set()
        self.locked: set[str] = set()  # operations that meet another session's row lock
        self.hold_completions: asyncio.Event | None = None  # set: completions go through
        self._let_through: dict[str, asyncio.Event] = {}

    def let_through(self, job_id: str) -> None:
        """Let one held completion go through."""
        self._let_through.setdefault(job_id, asyncio.Event()).set()

    def _maybe_fail(self, op: str) -> None:
        if op in self.failing:
            raise QueueUnavailableError(f"{op}: database is down")
        if op in self.locked:
            raise JobLockedError(f"{op}: the row is locked by another session")

    async def claim_and_start(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        max_running: Mapping[str, int] | None = None,
    ) -> list[Job]:
        self._maybe_fail("claim")
        self.claims.append(limit)
        return await super().claim_and_start(
            microservice, worker_id, limit, lease_seconds, max_running=max_running
        )

    async def complete(self, job: Job, results: Any, runtime_ms: float) -> None:
        self._maybe_fail("complete")
        if self.hold_completions is not None:
            mine = self._let_through.setdefault(job.id, asyncio.Event())
            waits = [asyncio.ensure_future(e.wait()) for e in (self.hold_completions, mine)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        await super().complete(job, results, runtime_ms)

    async def extend_leases(self, jobs: Sequence[Job], lease_seconds: float) -> LeaseRenewal:
        self._maybe_fail("extend")
        self.extended.append(len(jobs))
        return await super().extend_leases(jobs, lease_seconds)


@pytest.fixture(autouse=True)
def _reset() -> None:
    global gate
    runs.clear()
    gate = asyncio.Event()  # bound to this test's loop


def registry() -> ActionRegistry:
    reg = ActionRegistry()
    for h in (noop, wait, flaky):
        reg.add(h)
    return reg


def config(**kw: Any) -> WorkerConfig:
    base: dict[str, Any] = {
        "microservice": MS,
        "max_concurrent": 10,
        "polling_interval": 3600.0,  # a test needing the interval would hang: wake-ups must work
        "lease_seconds": 30.0,
        "shutdown_timeout": 5.0,
    }
    base.update(kw)
    return WorkerConfig(**base)


async def enqueue(q: InMemoryQueue, action_name: str, n: int = 0, **kw: Any) -> Job:
    return await q.enqueue(EnqueueRequest({"action": action_name, "n": n}, MS, **kw))


async def _holds(pred: Callable[[], Any]) -> bool:
    return bool(await pred() if asyncio.iscoroutinefunction(pred) else pred())


async def until(pred: Callable[[], Any], limit: float = 10.0) -> None:
    """Poll a condition; a test that never sees it fails instead of hanging."""
    async with asyncio.timeout(limit):
        while not await _holds(pred):  # noqa: ASYNC110 - polls a condition with a limit
            await asyncio.sleep(0.01)


async def settle() -> None:
    """Let every task run until it waits on something (the store, the clock, a gate)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def tick_until(clock: FakeClock, pred: Callable[[], Any], step: float = 0.05) -> None:
    """Advance the fake clock by ``step`` until the condition holds (fake time only; a
    real-time limit fails a test that never sees it)."""
    async with asyncio.timeout(10):
        while not await _holds(pred):
            clock.advance(step)
            await settle()


async def statuses(q: InMemoryQueue, jobs: Sequence[Job]) -> list[JobStatus]:
    out = []
    for j in jobs:
        got = await q.get(j.id)
        assert got is not None
        out.append(got.status)
    return out


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., tuple[Worker, SpyQueue, HealthRegistry]]]:
    """Starts a worker on a SpyQueue, both on one FakeClock (``worker.clock``)."""
    tasks: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(**kw: Any) -> tuple[Worker, SpyQueue, HealthRegistry]:
        clock = FakeClock()
        q = SpyQueue(clock)
        health = HealthRegistry()
        w = Worker(q, registry(), config(**kw), health=health, clock=clock)
        tasks.append((w, asyncio.create_task(w.run())))
        return w, q, health

    yield start
    for w, t in tasks:
        w.request_stop()
        w.request_stop()
        clock = w.clock
        assert isinstance(clock, FakeClock)
        await tick_until(clock, t.done, step=1.0)
        await t


def fake(w: Worker) -> FakeClock:
    assert isinstance(w.clock, FakeClock)
    return w.clock


async def test_claims_in_batches_of_free_slots_and_repolls_at_once(running: Any) -> None:
    """25 jobs, 10 slots: batches never exceed the free slots and no interval wait is needed."""
    w, q, _ = running(max_concurrent=10)
    jobs = [await enqueue(q, "noop", i) for i in range(25)]
    await until(lambda: len(runs) == 25)
    await until(lambda: w.active_jobs == 0)
    assert set(await statuses(q, jobs)) == {JobStatus.COMPLETED}
    assert max(q.claims) <= 10
    assert q.claims[0] == 10 or q.claims[0] <= 10
    done = await q.get(jobs[0].id)
    assert done is not None and done.results == {"n": 0} and done.attempts == 1


async def test_a_slot_frees_when_its_handler_returns_and_outcomes_in_flight_are_bounded(
    running: Any,
) -> None:
    """Two slots, completions held back by the store: the next jobs run while earlier
    outcomes are written, but no more than OUTCOMES_PER_SLOT per slot may be in flight, so
    a stuck store stops the claims. Every job is still owned (and its lease renewed) until
    its outcome is written."""
    owned = 2 * (1 + OUTCOMES_PER_SLOT)  # 2 handler slots + their outcomes in flight
    w, q, _ = running(max_concurrent=2, lease_seconds=1.0)  # renewed every ~0.3 s
    q.hold_completions = asyncio.Event()
    jobs = [await enqueue(q, "noop", i) for i in range(owned + 2)]
    await until(lambda: len(runs) == owned)
    await settle()  # room for a wrong extra run
    assert len(runs) == owned
    assert w.active_jobs == owned  # owned until recorded
    await tick_until(fake(w), lambda: q.extended)
    assert max(q.extended) == owned
    q.hold_completions.set()
    await until(lambda: len(runs) == owned + 2)
    await until(lambda: w.active_jobs == 0)
    assert set(await statuses(q, jobs)) == {JobStatus.COMPLETED}


async def test_a_written_outcome_makes_room_for_the_next_claim(running: Any) -> None:
    """One slot, so OUTCOMES_PER_SLOT outcomes in flight beside it: jobs 0-N ran and are
    being written. When job 0's outcome is written, the worker claims job N+1 at once,
    while jobs 1-N are still being written."""
    owned = 1 + OUTCOMES_PER_SLOT
    w, q, _ = running(max_concurrent=1)
    q.hold_completions = asyncio.Event()
    jobs = [await enqueue(q, "noop", i) for i in range(owned + 2)]
    await until(lambda: len(runs) == owned)
    await settle()
    assert len(runs) == owned
    q.let_through(jobs[0].id)
    await until(lambda: len(runs) == owned + 1)
    assert runs.keys() == {str(i) for i in range(owned + 1)}
    await settle()
    assert len(runs) == owned + 1  # jobs 1..N+1 fill the slot and the outcomes in flight again
    q.hold_completions.set()
    await until(lambda: w.active_jobs == 0 and len(runs) == owned + 2)
    assert set(await statuses(q, jobs)) == {JobStatus.COMPLETED}


async def test_in_process_enqueue_wakes_an_idle_worker(running: Any) -> None:
    """With a one-hour polling interval, an enqueue is still picked up at once."""
    _, q, _ = running()
    await until(lambda: len(q.claims) >= 1)  # the worker polled once and is now idle
    job = await enqueue(q, "noop", 1)
    await until(lambda: runs.get("1") == 1)
    got = await q.get(job.id)
    assert got is not None and got.status is JobStatus.COMPLETED


async def test_slot_freeing_after_a_full_poll_triggers_a_claim(running: Any) -> None:
    """One slot, three jobs: each finished job makes room for the next without the interval."""
    _, q, _ = running(max_concurrent=1)
    jobs = [await enqueue(q, "noop", i) for i in range(3)]
    await until(lambda: len(runs) == 3)
    assert q.claims[:3] == [1, 1, 1]
    assert set(await statuses(q, jobs)) == {JobStatus.COMPLETED}


async def test_bad_jobs_fail_and_the_worker_goes_on(running: Any) -> None:
    """Unknown actions and invalid payloads end Failed; the next good job completes."""
    _, q, _ = running()
    bad = await q.enqueue(EnqueueRequest({"action": "nope"}, MS))
    wrong = await q.enqueue(EnqueueRequest({"action": "noop", "n": "x"}, MS))
    good = await enqueue(q, "noop", 5)
    await until(lambda: runs.get("5") == 1)
    b, v = await q.get(bad.id), await q.get(wrong.id)
    assert b is not None and (b.status, b.error_code) == (JobStatus.FAILED, "UNKNOWN_ACTION")
    assert v is not None and (v.status, v.error_code) == (JobStatus.FAILED, "VALIDATION_ERROR")
    g = await q.get(good.id)
    assert g is not None and g.status is JobStatus.COMPLETED


async def test_retryable_errors_are_retried_with_backoff(running: Any) -> None:
    """A retry_on error puts the job back to Ready; the third attempt completes."""
    w, q, _ = running()
    job = await enqueue(q, "flaky", max_attempts=5)

    async def done() -> bool:
        j = await q.get(job.id)
        return j is not None and j.status is JobStatus.COMPLETED

    await tick_until(fake(w), done, step=0.005)  # each retry is due within 0.01 s
    assert runs["flaky"] == 3
    got = await q.get(job.id)
    assert got is not None and got.attempts == 3 and got.results == {"n": 3}


async def test_retries_stop_at_max_attempts(running: Any) -> None:
    """With two attempts allowed the flaky job ends Failed after the second."""
    w, q, _ = running()
    job = await enqueue(q, "flaky", max_attempts=2)

    async def failed() -> bool:
        j = await q.get(job.id)
        return j is not None and j.status is JobStatus.FAILED

    await tick_until(fake(w), failed, step=0.005)
    got = await q.get(job.id)
    assert got is not None and got.attempts == 2 and got.error_code == "HANDLER_ERROR"


async def test_leases_are_extended_while_a_job_runs(running: Any) -> None:
    """A job running past its lease keeps it: the lease is renewed, nobody reclaims it."""
    w, q, _ = running(lease_seconds=0.3)
    job = await enqueue(q, "wait", 1)
    await until(lambda: w.active_jobs == 1)
    await tick_until(fake(w), lambda: fake(w).monotonic() >= 1.0)  # more than three leases
    assert len(q.extended) >= 3
    gate.set()

    async def done() -> bool:
        j = await q.get(job.id)
        return j is not None and j.status is JobStatus.COMPLETED

    await until(done)
    got = await q.get(job.id)
    assert got is not None and got.attempts == 1


async def test_a_dead_workers_job_is_reclaimed_and_run(running: Any) -> None:
    """A job claimed by a worker that vanished is reclaimed after its lease and completed."""
    clock = FakeClock()
    q0 = SpyQueue(clock)
    job = await enqueue(q0, "noop", 9)
    [claimed] = await q0.claim(MS, "dead-worker", 1, 0.2)
    await q0.mark_processing(claimed, 0.2)
    w = Worker(q0, registry(), config(lease_seconds=0.4), clock=clock)
    task = asyncio.create_task(w.run())
    try:

        async def done() -> bool:
            j = await q0.get(job.id)
            return j is not None and j.status is JobStatus.COMPLETED

        await tick_until(clock, done)
        assert runs.get("9") == 1
        got = await q0.get(job.id)
        assert got is not None and got.attempts == 2  # the dead worker's attempt counted
    finally:
        w.request_stop()
        await task


class RecordingMetrics(NullMetrics):
    def __init__(self) -> None:
        self.reclaimed: list[tuple[int, int]] = []
        self.stats: list[QueueStats] = []

    def jobs_reclaimed(self, requeued: int, failed: int) -> None:
        self.reclaimed.append((requeued, failed))

    def queue_stats(self, stats: QueueStats) -> None:
        self.stats.append(stats)


async def test_reclaims_report_requeued_and_failed_jobs_and_stats_come_at_once() -> None:
    """A reclaim that fails a job with no attempts left says so to the metrics (it ended in
    error); the queue depth is sampled at start, not one interval later."""
    clock = FakeClock()
    q = SpyQueue(clock)
    last_try = await enqueue(q, "noop", 1, max_attempts=1)
    await enqueue(q, "noop", 2, max_attempts=2)
    for claimed in await q.claim(MS, "dead-worker", 2, 0.2):
        await q.mark_processing(claimed, 0.2)
    metrics = RecordingMetrics()
    w = Worker(
        q,
        registry(),
        config(lease_seconds=0.4, stats_interval=3600.0),
        metrics=metrics,
        clock=clock,
    )
    task = asyncio.create_task(w.run())
    try:
        await until(lambda: metrics.stats)  # the clock has not moved at all
        assert metrics.stats[0].counts[JobStatus.PROCESSING] == 2
        await tick_until(clock, lambda: metrics.reclaimed)
        assert metrics.reclaimed[0] == (1, 1)
        await until(lambda: runs.get("2") == 1)
        failed = await q.get(last_try.id)
        assert failed is not None and failed.error_code == "LEASE_EXPIRED"
        assert runs.get("1") is None
    finally:
        w.request_stop()
        await task


class JobMetrics(NullMetrics):
    """A NullMetrics subclass that records the per-job calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def job_started(self, action: str) -> None:
        self.calls.append(("started", action))

    def job_finished(self, action: str, outcome: str, duration_seconds: float) -> None:
        self.calls.append(("finished", action, outcome))


async def test_per_job_metrics_reach_a_subclass_and_metrics_set_later(running: Any) -> None:
    """The worker skips the per-job calls only for NullMetrics itself: a subclass gets
    them, and so does metrics assigned after the worker was made."""
    w, q, _ = running()
    assert type(w.metrics) is NullMetrics
    await enqueue(q, "noop", 1)
    await until(lambda: runs.get("1") == 1)
    later = JobMetrics()
    w.metrics = later
    assert w.metrics is later
    await enqueue(q, "noop", 2)
    await until(lambda: len(later.calls) == 2)
    assert later.calls == [("started", "noop"), ("finished", "noop", "completed")]


async def test_the_stats_sample_counts_up_to_the_configured_limit() -> None:
    """The worker reads its sample with its config's count limit: a count at the limit is
    reported as at least that many; without a limit, exactly."""
    clock = FakeClock()
    q = SpyQueue(clock)
    for n in range(3):
        await enqueue(q, "noop", n)
    for claimed in await q.claim(MS, "other-worker", 3, 3600.0):
        await q.mark_processing(claimed, 3600.0)
    for limit, seen, at_least in ((2, 2, {JobStatus.PROCESSING}), (None, 3, set())):
        metrics = RecordingMetrics()
        cfg = config(stats_interval=3600.0, stats_count_limit=limit)
        w = Worker(q, registry(), cfg, metrics=metrics, clock=clock)
        task = asyncio.create_task(w.run())
        try:
            await until(lambda m=metrics: m.stats)  # type: ignore[misc]
            assert metrics.stats[0].counts[JobStatus.PROCESSING] == seen
            assert metrics.stats[0].at_least == at_least
        finally:
            w.request_stop()
            await task


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_a_count_limit_below_one_is_refused_with_the_config(limit: Any) -> None:
    """A config built by hand with a limit no store accepts fails at once, not at every
    sample (the setting maps 0 to exact before it gets here)."""
    with pytest.raises(ValueError, match="count_limit"):
        config(stats_count_limit=limit)


async def test_outage_goes_yellow_then_red_and_recovers(running: Any) -> None:
    """Failed claims: YELLOW, then RED with the reason; GREEN again by itself afterwards."""
    w, q, health = running(polling_interval=0.05)
    q.failing.add("claim")
    seen: list[Status] = []
    health.subscribe(lambda h: seen.append(h.get(QUEUE_CHECK).status))  # type: ignore[union-attr]
    await tick_until(fake(w), lambda: health.get(QUEUE_CHECK).status is Status.RED)  # type: ignore[union-attr]
    check = health.get(QUEUE_CHECK)
    assert check is not None and "database is down" in check.details["error"]
    assert Status.YELLOW in seen
    q.failing.clear()
    await tick_until(fake(w), lambda: health.get(QUEUE_CHECK).status is Status.GREEN)  # type: ignore[union-attr]
    job = await enqueue(q, "noop", 3)
    await until(lambda: runs.get("3") == 1)
    assert job.id


async def test_results_computed_during_an_outage_are_written_later(running: Any) -> None:
    """When complete() fails, the result is kept and written once the store is back."""
    w, q, health = running()
    q.failing.add("complete")
    job = await enqueue(q, "noop", 4)
    await until(lambda: runs.get("4") == 1)
    await tick_until(fake(w), lambda: health.get(QUEUE_CHECK).status is Status.RED)  # type: ignore[union-attr]
    stuck = await q.get(job.id)
    assert stuck is not None and stuck.status is JobStatus.PROCESSING
    q.failing.clear()

    async def done() -> bool:
        j = await q.get(job.id)
        return j is not None and j.status is JobStatus.COMPLETED

    await tick_until(fake(w), done)
    got = await q.get(job.id)
    assert got is not None and got.results == {"n": 4} and runs["4"] == 1


async def test_a_row_locked_by_another_session_is_not_an_outage(running: Any) -> None:
    """complete() meeting a foreign row lock: health stays GREEN, the worker writes the
    outcome again and it lands once the lock is gone."""
    w, q, health = running()
    q.locked.add("complete")
    seen: list[Status] = []
    health.subscribe(lambda h: seen.append(h.get(QUEUE_CHECK).status))  # type: ignore[union-attr]
    job = await enqueue(q, "noop", 5)
    await until(lambda: runs.get("5") == 1)
    for _ in range(5):  # several rounds of writing again
        fake(w).advance(1.0)
        await settle()
    stuck = await q.get(job.id)
    assert stuck is not None and stuck.status is JobStatus.PROCESSING
    q.locked.clear()

    async def done() -> bool:
        j = await q.get(job.id)
        return j is not None and j.status is JobStatus.COMPLETED

    await tick_until(fake(w), done)
    assert Status.YELLOW not in seen and Status.RED not in seen
    assert health.get(QUEUE_CHECK).status is Status.GREEN  # type: ignore[union-attr]


async def test_shutdown_releases_running_jobs_without_spending_attempts() -> None:
    """Jobs still running at the drain deadline go back to Ready with no attempt spent."""
    clock = FakeClock()
    q = SpyQueue(clock)
    w = Worker(q, registry(), config(shutdown_timeout=10), clock=clock)
    task = asyncio.create_task(w.run())
    jobs = [await enqueue(q, "wait", i) for i in range(3)]
    await until(lambda: w.active_jobs == 3)
    w.request_stop()
    await settle()  # the drain starts waiting
    clock.advance(9.9)
    await settle()
    assert not task.done() and w.active_jobs == 3  # the drain waits for its deadline
    clock.advance(0.2)
    await asyncio.wait_for(task, 10)
    for j in jobs:
        got = await q.get(j.id)
        assert got is not None
        assert (got.status, got.attempts, got.lease_token) == (JobStatus.READY, 0, None)


async def test_shutdown_lets_short_jobs_finish() -> None:
    """Jobs that finish within the drain are completed, not released."""
    q = SpyQueue(FakeClock())
    w = Worker(q, registry(), config(shutdown_timeout=10), clock=FakeClock())
    task = asyncio.create_task(w.run())
    job = await enqueue(q, "wait", 1)
    await until(lambda: w.active_jobs == 1)
    w.request_stop()
    await settle()
    assert not task.done()
    gate.set()
    await asyncio.wait_for(task, 10)
    got = await q.get(job.id)
    assert got is not None and got.status is JobStatus.COMPLETED


async def test_second_stop_shortens_the_drain() -> None:
    """A second stop request cancels and releases at once instead of waiting the timeout."""
    q = SpyQueue(FakeClock())
    w = Worker(q, registry(), config(shutdown_timeout=3600), clock=FakeClock())
    task = asyncio.create_task(w.run())
    job = await enqueue(q, "wait", 1)
    await until(lambda: w.active_jobs == 1)
    w.request_stop()
    await settle()
    assert not task.done()
    w.request_stop()
    await asyncio.wait_for(task, 10)
    got = await q.get(job.id)
    assert got is not None and got.status is JobStatus.READY and got.attempts == 0


async def test_lost_lease_cancels_the_handler_and_keeps_the_new_owner(running: Any) -> None:
    """When another claim took the job, this worker stops it and does not overwrite anything."""
    w, q, _ = running(lease_seconds=0.3)
    job = await enqueue(q, "wait", 1)
    await until(lambda: w.active_jobs == 1)
    stored = q._jobs[job.id]
    stored.lease_token = "someone-else"  # as if reclaimed and claimed by another worker
    await tick_until(fake(w), lambda: w.active_jobs == 0)
    got = await q.get(job.id)
    assert (
        got is not None and got.status is JobStatus.PROCESSING and got.lease_token == "someone-else"
    )


async def test_watch_resolves_when_this_worker_finishes(running: Any) -> None:
    """watch() futures resolve on Completed/Failed and are dropped on unwatch."""
    w, q, _ = running()
    await until(lambda: len(q.claims) >= 1)
    job = await enqueue(q, "wait", 1)
    fut = w.watch(job.id)
    assert not fut.done()
    gate.set()
    await asyncio.wait_for(fut, 10)
    w.unwatch(job.id, fut)
    assert w._waiters == {}


# --- start_due_jobs: a waiting producer in this process claims for the idle worker ----------


async def test_start_due_jobs_runs_a_quick_job_before_the_poll_loop_wakes(running: Any) -> None:
    w, q, _ = running()
    await settle()  # the poll loop waits in its idle wait
    job = await enqueue(q, "noop", n=4)
    claiming = w.start_due_jobs()
    assert claiming is not None
    # No await in between: the in-memory claim never suspends and the job runs eagerly.
    assert claiming.done()
    assert await statuses(q, [job]) == [JobStatus.COMPLETED]
    await settle()  # the poll loop's own wake-up finds nothing left and the job ran once
    assert runs["4"] == 1


async def test_start_due_jobs_never_claims_past_the_free_slots(running: Any) -> None:
    w, q, _ = running(max_concurrent=2)
    held = [await enqueue(q, "wait", n=i) for i in range(2)]
    await settle()
    assert await statuses(q, held) == [JobStatus.PROCESSING] * 2
    extra = await enqueue(q, "noop", n=9)
    assert w.start_due_jobs() is None  # both slots busy: nothing claimed
    assert await statuses(q, [extra]) == [JobStatus.READY]
    gate.set()

    async def all_completed() -> bool:
        done = await statuses(q, [*held, extra])
        return done == [JobStatus.COMPLETED] * 3

    await until(all_completed)


async def test_start_due_jobs_does_nothing_once_stopping(running: Any) -> None:
    w, q, _ = running()
    await settle()
    w.request_stop()
    job = await enqueue(q, "noop")
    assert w.start_due_jobs() is None
    assert await statuses(q, [job]) == [JobStatus.READY]


async def test_job_tasks_carry_the_job_id_in_asyncio_debug_mode(running: Any) -> None:
    loop = asyncio.get_running_loop()
    debug = loop.get_debug()
    loop.set_debug(True)
    try:
        w, q, _ = running()
        await settle()
        job = await enqueue(q, "wait")
        await settle()
        assert f"job-{job.id}" in {t.get_name() for t in asyncio.all_tasks()}
        gate.set()
    finally:
        loop.set_debug(debug)


async def test_the_poll_loop_does_not_claim_again_after_start_due_jobs_took_the_job() -> None:
    q = SpyQueue()
    w = Worker(q, registry(), config(), health=HealthRegistry(), clock=SystemClock())
    task = asyncio.create_task(w.run())
    try:
        await until(lambda: q.claims)  # the first poll found nothing; now idle
        await settle()
        before = len(q.claims)
        job = await enqueue(q, "noop", n=7)  # wakes the poll loop
        claiming = w.start_due_jobs()
        assert claiming is not None and claiming.done()
        await settle()
        assert await statuses(q, [job]) == [JobStatus.COMPLETED]
        assert len(q.claims) == before + 1  # only the assisted claim: no empty one after
        later = await enqueue(q, "noop", n=8)  # an enqueue still wakes the poll loop
        await until(lambda: runs.get("8") == 1)
        assert await statuses(q, [later]) == [JobStatus.COMPLETED]
    finally:
        w.request_stop()
        await task
