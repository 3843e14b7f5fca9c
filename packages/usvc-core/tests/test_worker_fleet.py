"""The worker's part in the fleet kept in the store (FleetAdmin), on the in-memory queue
with a FakeClock: its record and heartbeat, gone workers' jobs taken in about two
heartbeats instead of a lease, its own silence answered by an immediate lease renewal,
paused actions held back and shown in health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel
from usvc_core import (
    ActionRegistry,
    EnqueueRequest,
    HealthRegistry,
    Job,
    JobStatus,
    QueueUnavailableError,
    Status,
    Worker,
    WorkerConfig,
    WorkerRecord,
    action,
)
from usvc_core.fleet import PAUSED_CHECK
from usvc_testing import FakeClock, InMemoryQueue

MS = "svc"
BEAT = 1.0
LEASE = 30.0
started: list[int] = []
cancelled: list[int] = []
gate = asyncio.Event()


class In(BaseModel):
    n: int = 0


@action("hold")
async def hold(input: In) -> dict[str, int]:
    started.append(input.n)
    try:
        await gate.wait()
    except asyncio.CancelledError:
        cancelled.append(input.n)
        raise
    return {"n": input.n}


@action("quick")
async def quick(input: In) -> dict[str, int]:
    started.append(input.n)
    return {"n": input.n}


@action("limited", max_running=2)
async def limited(input: In) -> dict[str, int]:
    started.append(input.n)
    return {"n": input.n}


class FlakyFleetQueue(InMemoryQueue):
    """The in-memory queue whose heartbeats can be made to fail (a worker cut off)."""

    beats_fail = False

    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        if self.beats_fail:
            raise QueueUnavailableError("heartbeat: database is down")
        await super().heartbeat_worker(record)


@pytest.fixture(autouse=True)
def _reset() -> None:
    global gate
    started.clear()
    cancelled.clear()
    gate = asyncio.Event()


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def tick_until(clock: FakeClock, pred: Callable[[], Any], step: float = 0.05) -> float:
    """Advance fake time until ``pred`` holds; returns the fake seconds it took."""
    began = clock.monotonic()
    async with asyncio.timeout(10):
        while not (await pred() if asyncio.iscoroutinefunction(pred) else pred()):
            clock.advance(step)
            await settle()
    return clock.monotonic() - began


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[FakeClock, FlakyFleetQueue, Callable[..., Worker]]]:
    clock = FakeClock()
    queue = FlakyFleetQueue(clock)
    tasks: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(**kw: Any) -> Worker:
        registry = ActionRegistry()
        registry.add(hold)
        registry.add(quick)
        registry.add(limited)
        options: dict[str, Any] = {
            "microservice": MS,
            "max_concurrent": 4,
            "polling_interval": 3600.0,
            "lease_seconds": LEASE,
            "shutdown_timeout": 0.5,
            "heartbeat_seconds": BEAT,
            "version": "2.0.1",
        }
        config = WorkerConfig(**{**options, **kw})
        worker = Worker(queue, registry, config, health=HealthRegistry(), clock=clock)
        tasks.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield clock, queue, start
    gate.set()
    for worker, _ in tasks:
        worker.request_stop()
        worker.request_stop()
    for _, task in tasks:
        await tick_until(clock, task.done, step=1.0)
        await task


async def enqueue(queue: InMemoryQueue, action_name: str, n: int = 0) -> Job:
    return await queue.enqueue(EnqueueRequest({"action": action_name, "n": n}, MS))


def _dead_record(worker_id: str) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id,
        microservice=MS,
        host="elsewhere",
        pid=1,
        version="2.0.1",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        heartbeat_seconds=BEAT,
    )


async def test_a_worker_records_itself_and_leaves_on_a_clean_stop(fleet: Any) -> None:
    clock, queue, start = fleet
    worker = start()
    await settle()
    [record] = await queue.list_workers(MS)
    assert (record.worker_id, record.version, record.concurrency) == (worker.worker_id, "2.0.1", 4)
    assert (record.actions, record.heartbeat_seconds, record.running) == (
        ("hold", "limited", "quick"),
        BEAT,
        0,
    )
    await enqueue(queue, "hold")
    await tick_until(clock, lambda: started)
    clock.advance(BEAT)
    await settle()
    [record] = await queue.list_workers(MS)
    assert record.running == 1
    assert not record.gone
    gate.set()
    worker.request_stop()
    async with asyncio.timeout(5):
        while await queue.list_workers(MS):  # removed once the drain is over
            clock.advance(0.5)
            await settle()


async def test_the_jobs_of_a_gone_worker_are_taken_in_about_two_heartbeats(fleet: Any) -> None:
    """A worker that died holding jobs (its record stops) loses them to a live worker about
    two heartbeats after its last one, long before their 30 s leases expire; the one that
    had started counts its attempt."""
    clock, queue, start = fleet
    await queue.heartbeat_worker(_dead_record("dead"))
    jobs = [await enqueue(queue, "quick", n) for n in range(3)]
    await queue.claim(MS, "dead", 1, LEASE)
    running = await queue.claim_and_start(MS, "dead", 2, LEASE)
    await queue.extend_leases(running, LEASE)  # it had them in hand when it died
    start()
    took = await tick_until(clock, lambda: len(started) == 3)
    assert took <= 2 * BEAT + BEAT / 2 + 0.2, took
    for job in jobs:
        done = await queue.get(job.id)
        assert done is not None
        assert done.status is JobStatus.COMPLETED
    finished = [await queue.get(job.id) for job in jobs]
    assert sorted(j.attempts for j in finished if j is not None) == [1, 2, 2]
    [gone, _live] = await queue.list_workers(MS)
    assert (gone.worker_id, gone.gone) == ("dead", True)


async def test_a_worker_silent_for_two_heartbeats_finds_its_lost_jobs_at_once(
    fleet: Any,
) -> None:
    """Cut off from the store for two heartbeats, a worker is declared gone and its job
    goes to another worker. At its first heartbeat back it renews its leases at once
    (not a third of a lease later), learns the job is lost and stops its handler; the
    other worker's outcome stands."""
    clock, queue, start = fleet
    worker = start()
    job = await enqueue(queue, "hold", 7)
    await tick_until(clock, lambda: started == [7])
    queue.beats_fail = True
    clock.advance(2 * BEAT + 0.5)
    await settle()
    assert [r.gone for r in await queue.list_workers(MS)] == [True]
    assert (await queue.reclaim_gone_workers(MS)).requeued == [job.id]
    [taken] = await queue.claim_and_start(MS, "other", 1, LEASE)
    queue.beats_fail = False
    took = await tick_until(clock, lambda: cancelled == [7])
    assert took <= BEAT + 0.1, took  # the next heartbeat, not the renewal a third of a lease on
    assert not worker.active_jobs
    await queue.complete(taken, {"by": "other"}, 1.0)
    done = await queue.get(job.id)
    assert done is not None
    assert (done.status, done.results) == (JobStatus.COMPLETED, {"by": "other"})


async def test_a_paused_action_waits_and_health_says_why(fleet: Any) -> None:
    clock, queue, start = fleet
    worker = start()
    await queue.pause_action(MS, "quick")
    await enqueue(queue, "quick", 1)
    await enqueue(queue, "hold", 2)
    await tick_until(clock, lambda: started == [2])
    clock.advance(BEAT)
    await settle()
    assert started == [2]
    check = worker.health.get(PAUSED_CHECK)
    assert check is not None
    assert check.status is Status.YELLOW
    assert check.details["paused"] == ["quick"]
    assert "quick" in check.details["reason"]
    assert worker.health.aggregate() is Status.YELLOW
    await queue.resume_action(MS, "quick")
    await tick_until(clock, lambda: started == [2, 1])
    await tick_until(clock, lambda: worker.health.aggregate() is Status.GREEN)
    check = worker.health.get(PAUSED_CHECK)
    assert check is not None
    assert (check.status, check.details) == (Status.GREEN, {"paused": []})


async def test_after_a_store_outage_no_worker_takes_the_jobs_of_another(fleet: Any) -> None:
    """An outage silences every worker at once: when it ends, a worker back first does not
    take the jobs of one whose heartbeat comes a moment later; it judges others only after
    two heartbeats of its own in a row."""
    clock, queue, start = fleet
    start()
    await queue.heartbeat_worker(_dead_record("late"))
    await enqueue(queue, "quick", 1)
    [held] = await queue.claim(MS, "late", 1, LEASE)
    await tick_until(clock, lambda: True)
    queue.beats_fail = True  # the store is out for both
    clock.advance(3 * BEAT)
    await settle()
    queue.beats_fail = False
    for _ in range(int(1.9 * BEAT / 0.1)):  # back; "late" beats again within two heartbeats
        clock.advance(0.1)
        await settle()
    await queue.heartbeat_worker(_dead_record("late"))
    for _ in range(int(1.5 * BEAT / 0.1)):
        clock.advance(0.1)
        await settle()
    still = await queue.get(held.id)
    assert still is not None
    assert (still.status, still.lease_owner) == (JobStatus.ASSIGNED, "late")
    assert started == []


async def test_a_dead_worker_no_longer_holds_an_action_at_its_limit(fleet: Any) -> None:
    """Two jobs of a max_running=2 action held by a dead worker stopped the action for a
    whole lease; now it runs again about two heartbeats after the worker's last one."""
    clock, queue, start = fleet
    await queue.heartbeat_worker(_dead_record("dead"))
    for n in range(3):
        await enqueue(queue, "limited", n)
    await queue.claim_and_start(MS, "dead", 2, LEASE, max_running={"limited": 2})
    start()
    took = await tick_until(clock, lambda: len(started) == 3)
    assert took <= 2 * BEAT + BEAT / 2 + 0.2, took


async def test_without_heartbeats_paused_actions_show_with_the_stats(fleet: Any) -> None:
    clock, queue, start = fleet
    await queue.pause_action(MS, "quick")
    worker = start(heartbeat_seconds=0.0, stats_interval=5.0)
    await tick_until(clock, lambda: worker.health.get(PAUSED_CHECK) is not None)
    check = worker.health.get(PAUSED_CHECK)
    assert check is not None
    assert (check.status, check.details["paused"]) == (Status.YELLOW, ["quick"])
    assert await queue.list_workers(MS) == []  # no record without heartbeats
