"""Periodic jobs on fake time: slots, time zones, catch-up, duplicates across workers,
store outages; and per-action limits reaching the claim."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from usvc_core import (
    ActionDefinitionError,
    ActionRegistry,
    Application,
    ConfigurationError,
    EnqueueRequest,
    HealthRegistry,
    JobFilter,
    JobStatus,
    QueueUnavailableError,
    Status,
    Worker,
    WorkerConfig,
    WorkerSettings,
    action,
)
from usvc_core.metrics import NullMetrics
from usvc_core.scheduling import SCHEDULER_CHECK, Schedule, Scheduler, parse_schedule, slot_key
from usvc_testing import FakeClock, InMemoryQueue

MS = "svc"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


async def until(pred: Callable[[], Any], limit: float = 10.0) -> None:
    """Poll a (possibly async) condition; a test that never sees it fails, not hangs."""
    async with asyncio.timeout(limit):
        while True:
            value = pred()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.01)


class TestSchedule:
    def test_slots_in_utc(self) -> None:
        s = parse_schedule("report", "*/15 * * * *", where="test")
        assert s.next_after(at("2026-01-01T10:07:00")) == at("2026-01-01T10:15:00")
        assert s.next_after(at("2026-01-01T10:15:00")) == at("2026-01-01T10:30:00")
        assert s.latest_at_or_before(at("2026-01-01T10:15:00")) == at("2026-01-01T10:15:00")
        assert s.latest_at_or_before(at("2026-01-01T10:14:59")) == at("2026-01-01T10:00:00")

    def test_a_time_zone_and_its_daylight_saving_jump(self) -> None:
        """06:00 in Berlin is 05:00 UTC in winter and 04:00 UTC in summer; a 02:30 slot on
        2026-03-29, when 02:00-03:00 does not exist, runs at 03:00 as the gap ends."""
        daily = parse_schedule("r", "0 6 * * *", "Europe/Berlin", where="test")
        assert daily.next_after(at("2026-01-10T00:00:00")) == at("2026-01-10T05:00:00")
        assert daily.next_after(at("2026-07-10T00:00:00")) == at("2026-07-10T04:00:00")
        gap = parse_schedule("r", "30 2 * * *", "Europe/Berlin", where="test")
        assert gap.next_after(at("2026-03-28T23:00:00")) == at("2026-03-29T01:00:00")

    def test_six_fields_start_with_seconds(self) -> None:
        s = parse_schedule("tick", "*/5 * * * * *", where="test")
        assert s.next_after(at("2026-01-01T10:00:01")) == at("2026-01-01T10:00:05")

    @pytest.mark.parametrize(
        ("cron", "tz", "message"),
        [
            ("* * * *", "UTC", "five fields"),
            ("61 * * * *", "UTC", "not a valid cron expression"),
            ("0 0 L * *", "UTC", "not a valid cron expression"),
            ("0 0 30 2 *", "UTC", "no day of the calendar matches"),
            ("0 0 * * 1-", "UTC", "not a valid cron expression"),
            ("*/15 * * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ],
    )
    def test_mistakes_say_what_to_fix(self, cron: str, tz: str, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message) as info:
            parse_schedule("report", cron, tz, where="SCHEDULES['report']")
        assert "SCHEDULES['report']" in str(info.value)

    def test_slot_keys_are_the_same_on_every_worker(self) -> None:
        slot = datetime(2026, 1, 1, 11, 15, tzinfo=UTC)
        assert slot_key("report", slot) == "schedule:report:2026-01-01T11:15:00+00:00"


class TestDecorator:
    def test_bad_schedule_names_the_handler(self) -> None:
        with pytest.raises(ActionDefinitionError, match=r"test_scheduling\.py.*not a valid cron"):

            @action("bad", schedule="99 * * * *")
            async def bad() -> None: ...

    def test_a_time_zone_without_a_schedule(self) -> None:
        with pytest.raises(ActionDefinitionError, match="timezone= applies to a schedule"):

            @action("bad", timezone="Europe/Berlin")
            async def bad() -> None: ...

    def test_unknown_time_zone(self) -> None:
        with pytest.raises(ActionDefinitionError, match="unknown time zone"):

            @action("bad", schedule="* * * * *", timezone="Nowhere/Land")
            async def bad() -> None: ...

    @pytest.mark.parametrize("limit", [0, -1, True])
    def test_max_running_must_be_a_positive_int(self, limit: Any) -> None:
        with pytest.raises(ActionDefinitionError, match="max_running must be at least 1"):
            action("sync", max_running=limit)

    def test_limits_reach_the_registry(self) -> None:
        @action("sync", max_running=2)
        async def sync() -> None: ...

        @action("free")
        async def free() -> None: ...

        reg = ActionRegistry()
        reg.add(sync)
        reg.add(free)
        assert reg.max_running_limits() == {"sync": 2}


class RecordingMetrics(NullMetrics):
    def __init__(self) -> None:
        self.next_runs: dict[str, float] = {}
        self.errors: list[str] = []

    def schedule_next_run(self, action: str, timestamp: float) -> None:
        self.next_runs[action] = timestamp

    def queue_error(self, operation: str) -> None:
        self.errors.append(operation)


def scheduler(
    queue: InMemoryQueue,
    clock: FakeClock,
    schedules: list[Schedule],
    *,
    catchup: float = 300.0,
    metrics: RecordingMetrics | None = None,
    health: HealthRegistry | None = None,
    fail: Callable[[], bool] = lambda: False,
) -> Scheduler:
    async def enqueue(schedule: Schedule, slot: datetime, key: str) -> object:
        if fail():
            raise QueueUnavailableError("database is down")
        return await queue.enqueue(EnqueueRequest({"action": schedule.action}, MS, unique_key=key))

    return Scheduler(
        schedules, enqueue, clock=clock, catchup_seconds=catchup, metrics=metrics, health=health
    )


async def slots(queue: InMemoryQueue) -> list[str]:
    page = await queue.list_jobs(JobFilter(MS), limit=1000)
    return sorted(str(j.unique_key) for j in page.jobs)


async def advance(clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    done = 0.0
    while done < seconds:
        clock.advance(step)
        done += step
        await settle()


class TestScheduler:
    async def test_each_slot_once_across_three_workers(self) -> None:
        """Three schedulers on one queue: every minute's slot is enqueued exactly once."""
        clock = FakeClock(at("2026-01-01T10:00:30"))
        q = InMemoryQueue(clock)
        every_minute = [parse_schedule("tick", "* * * * *", where="t")]
        tasks = [asyncio.create_task(scheduler(q, clock, every_minute).run()) for _ in range(3)]
        try:
            await settle()
            await advance(clock, 5 * 60)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        expected = [f"schedule:tick:2026-01-01T10:0{m}:00+00:00" for m in range(6)]
        assert await slots(q) == expected  # 10:00 caught up (30 s old), then 10:01..10:05

    async def test_a_missed_slot_older_than_the_window_is_skipped_and_logged(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        clock = FakeClock(at("2026-01-01T10:59:00"))
        q = InMemoryQueue(clock)
        hourly = [parse_schedule("report", "0 * * * *", where="t")]
        task = asyncio.create_task(scheduler(q, clock, hourly, catchup=300).run())
        await settle()
        assert await slots(q) == []  # 10:00 is 59 minutes old: skipped
        assert "older than the catch-up window, skipped" in capsys.readouterr().out
        await advance(clock, 60)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await slots(q) == ["schedule:report:2026-01-01T11:00:00+00:00"]

    async def test_only_the_latest_missed_slot_is_caught_up(self) -> None:
        """Down for three slots within the window: one catch-up run, not a burst."""
        clock = FakeClock(at("2026-01-01T10:03:10"))
        q = InMemoryQueue(clock)
        task = asyncio.create_task(
            scheduler(q, clock, [parse_schedule("tick", "* * * * *", where="t")]).run()
        )
        await settle()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await slots(q) == ["schedule:tick:2026-01-01T10:03:00+00:00"]

    async def test_next_run_in_metrics_and_health(self) -> None:
        clock = FakeClock(at("2026-01-01T10:07:00"))
        q = InMemoryQueue(clock)
        metrics = RecordingMetrics()
        health = HealthRegistry()
        task = asyncio.create_task(
            scheduler(
                q,
                clock,
                [parse_schedule("report", "*/15 * * * *", where="t")],
                metrics=metrics,
                health=health,
            ).run()
        )
        await settle()
        assert metrics.next_runs == {"report": at("2026-01-01T10:15:00").timestamp()}
        check = health.get(SCHEDULER_CHECK)
        assert check is not None and check.status is Status.GREEN
        assert check.details["next_runs"] == {"report": "2026-01-01T10:15:00+00:00"}
        await advance(clock, 8 * 60)
        assert metrics.next_runs["report"] == at("2026-01-01T10:30:00").timestamp()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def test_an_outage_is_retried_and_shown(self) -> None:
        """The store fails at the slot: YELLOW, retried, the slot still lands once."""
        clock = FakeClock(at("2026-01-01T10:00:30"))
        q = InMemoryQueue(clock)
        metrics = RecordingMetrics()
        health = HealthRegistry()
        down = {"yes": False}
        task = asyncio.create_task(
            scheduler(
                q,
                clock,
                [parse_schedule("tick", "* * * * *", where="t")],
                metrics=metrics,
                health=health,
                fail=lambda: down["yes"],
            ).run()
        )
        await settle()
        down["yes"] = True
        await advance(clock, 31)  # 10:01:01: the 10:01 slot failed
        check = health.get(SCHEDULER_CHECK)
        assert check is not None and check.status is Status.YELLOW
        assert "database is down" in check.details["error"]
        assert "schedule_enqueue" in metrics.errors
        down["yes"] = False
        await advance(clock, 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await slots(q) == [
            "schedule:tick:2026-01-01T10:00:00+00:00",
            "schedule:tick:2026-01-01T10:01:00+00:00",
        ]
        check = health.get(SCHEDULER_CHECK)
        assert check is not None and check.status is Status.GREEN


class TestApplicationWiring:
    def _app(self, tmp_path: Path, **settings: Any) -> Application:
        (tmp_path / "report").mkdir()
        (tmp_path / "report" / "handler.py").write_text(
            "from usvc_core import action\n\n\n"
            '@action("report", schedule="0 * * * *")\n'
            "async def report() -> dict[str, bool]:\n"
            '    return {"ok": True}\n'
        )
        values: dict[str, Any] = {"MICROSERVICE_NAME": MS, "HTTP_ENABLED": False}
        values.update(settings)
        return Application(
            tmp_path,
            settings=WorkerSettings(_env_file=None, **values),
            queue=InMemoryQueue(),
            surfaces=[],
            configure_logging=False,
        )

    async def test_a_settings_schedule_overrides_the_decorator(self, tmp_path: Path) -> None:
        app = self._app(tmp_path, SCHEDULES={"report": {"cron": "*/5 * * * * *"}})
        async with app:
            assert [s.cron for s in app._schedules] == ["*/5 * * * * *"]

    async def test_a_schedule_for_an_unknown_action_fails_start(self, tmp_path: Path) -> None:
        app = self._app(tmp_path, SCHEDULES={"reprot": "* * * * *"})
        with pytest.raises(ConfigurationError, match="'reprot', which no @action handles"):
            await app.start()

    async def test_retention_must_outlast_the_catch_up_window(self, tmp_path: Path) -> None:
        app = self._app(tmp_path, JOB_RETENTION_SECONDS=60, SCHEDULE_CATCHUP_SECONDS=300)
        with pytest.raises(ConfigurationError, match="must exceed SCHEDULE_CATCHUP_SECONDS"):
            await app.start()

    async def test_a_scheduled_action_must_take_an_empty_input(self, tmp_path: Path) -> None:
        (tmp_path / "greet").mkdir()
        (tmp_path / "greet" / "handler.py").write_text(
            "from pydantic import BaseModel\nfrom usvc_core import action\n\n\n"
            "class In(BaseModel):\n    name: str\n\n\n"
            '@action("greet")\nasync def greet(input: In) -> None: ...\n'
        )
        app = self._app(tmp_path, SCHEDULES={"greet": "* * * * *"})
        with pytest.raises(ConfigurationError, match="requires name: give them defaults"):
            await app.start()

    def test_a_malformed_settings_entry(self) -> None:
        with pytest.raises(ValueError, match="must be a cron string or an object"):
            WorkerSettings(_env_file=None, MICROSERVICE_NAME=MS, SCHEDULES={"r": {"cronn": "x"}})

    async def test_the_running_app_enqueues_its_slots(self, tmp_path: Path) -> None:
        """A one-second schedule from settings: jobs appear and complete, one per slot."""
        app = self._app(
            tmp_path, SCHEDULES={"report": "* * * * * *"}, POLLING_INTERVAL_SECONDS=0.05
        )
        async with app:
            queue = app.queue
            assert isinstance(queue, InMemoryQueue)

            async def completed() -> list[str]:
                page = await queue.list_jobs(
                    JobFilter(MS, statuses=frozenset({JobStatus.COMPLETED}))
                )
                return [str(j.unique_key) for j in page.jobs]

            async def two() -> bool:
                return len(await completed()) >= 2

            await until(two)
            keys = await completed()
            assert len(keys) == len(set(keys))
            assert all(k.startswith("schedule:report:") for k in keys)


class In(BaseModel):
    n: int = 0


gate = asyncio.Event()
running_now: dict[str, int] = {"sync": 0, "other": 0}
peak: dict[str, int] = {"sync": 0, "other": 0}


async def _hold(name: str) -> None:
    running_now[name] += 1
    peak[name] = max(peak[name], running_now[name])
    try:
        await gate.wait()
    finally:
        running_now[name] -= 1


@action("sync", max_running=2)
async def sync_job(input: In) -> None:
    await _hold("sync")


@action("other")
async def other_job(input: In) -> None:
    await _hold("other")


async def test_the_worker_claims_within_max_running() -> None:
    """Six `sync` jobs (max_running=2) and three others, ten slots: two `sync` run, the
    others are not held back; when the gate opens every job completes."""
    global gate
    gate = asyncio.Event()
    clock = FakeClock()
    q = InMemoryQueue(clock)
    reg = ActionRegistry()
    reg.add(sync_job)
    reg.add(other_job)
    for n in range(6):
        await q.enqueue(EnqueueRequest({"action": "sync", "n": n}, MS))
    for n in range(3):
        await q.enqueue(EnqueueRequest({"action": "other", "n": n}, MS))
    w = Worker(q, reg, WorkerConfig(MS, max_concurrent=10, polling_interval=3600), clock=clock)
    task = asyncio.create_task(w.run())
    try:
        await until(lambda: running_now["other"] == 3)
        await settle()
        assert running_now == {"sync": 2, "other": 3}
        gate.set()

        async def all_done() -> bool:
            return (await q.stats(MS)).counts.get(JobStatus.COMPLETED, 0) == 9

        await until(all_done)
        assert peak["sync"] == 2
    finally:
        w.request_stop()
        await task


class StoreBehind:
    """A store whose clock is ``behind`` seconds behind the worker's (its clock runs fast)."""

    def __init__(self, clock: FakeClock, behind: float) -> None:
        self.clock, self.behind = clock, behind

    async def store_now(self) -> datetime:
        return self.clock.now() - timedelta(seconds=self.behind)


class TestStoreClock:
    async def test_a_slot_waits_for_the_stores_time(self) -> None:
        """The worker's clock runs 3 s fast: each slot is enqueued once the store's clock
        reaches it, not when the worker's does."""
        clock = FakeClock(at("2026-01-01T10:00:30"))
        q = InMemoryQueue(clock)
        store = StoreBehind(clock, 3.0)
        enqueued: list[tuple[str, datetime]] = []

        async def enqueue(schedule: Schedule, slot: datetime, key: str) -> object:
            enqueued.append((key, await store.store_now()))
            return await q.enqueue(EnqueueRequest({"action": schedule.action}, MS, unique_key=key))

        every_minute = [parse_schedule("tick", "* * * * *", where="t")]
        s = Scheduler(every_minute, enqueue, clock=clock, catchup_seconds=300, store_clock=store)
        task = asyncio.create_task(s.run())
        try:
            await settle()
            await advance(clock, 3 * 60, step=0.5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert [k for k, _ in enqueued] == [
            f"schedule:tick:2026-01-01T10:0{m}:00+00:00" for m in range(4)
        ]
        for key, store_time in enqueued:
            slot = datetime.fromisoformat(key.removeprefix("schedule:tick:"))
            assert store_time >= slot, (key, store_time)
        # Not later than needed either: at the slot on the store's clock (0.5 s steps).
        assert enqueued[1][1] - at("2026-01-01T10:01:00") <= timedelta(seconds=0.5)

    def test_store_clock_is_a_port(self) -> None:
        from usvc_core import StoreClock
        from usvc_sqlite import SqliteQueue

        assert isinstance(StoreBehind(FakeClock(), 1), StoreClock)
        assert isinstance(SqliteQueue(":memory:"), StoreClock)
        assert not isinstance(InMemoryQueue(), StoreClock)


async def test_sqlite_store_now_is_the_file_systems_clock(tmp_path: Path) -> None:
    from usvc_sqlite import SqliteQueue

    queue = SqliteQueue(tmp_path / "jobs.db")
    before = datetime.now(UTC) - timedelta(seconds=1)  # the file system's clock is coarser
    first = await queue.store_now()
    second = await queue.store_now()
    assert before <= first <= second <= datetime.now(UTC) + timedelta(seconds=1)
    assert first.tzinfo is UTC
    assert (tmp_path / "jobs.db-clock").exists()


class TestDaylightSavingOnFakeTime:
    """The scheduler itself across Berlin's 2026 change days (issue 24 items 2 and 3)."""

    async def run(self, cron: str, start: str, seconds: float, step: float) -> list[str]:
        clock = FakeClock(at(start))
        q = InMemoryQueue(clock)
        schedule = [parse_schedule("r", cron, "Europe/Berlin", where="t")]
        task = asyncio.create_task(scheduler(q, clock, schedule, catchup=300).run())
        try:
            await settle()
            await advance(clock, seconds, step=step)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return await slots(q)

    async def test_the_repeated_hour_runs_a_fixed_slot_once(self) -> None:
        keys = await self.run("30 2 * * *", "2026-10-24T23:00:00", 4 * 3600, 60)
        assert keys == ["schedule:r:2026-10-25T00:30:00+00:00"]  # 02:30 CEST only

    async def test_the_skipped_hour_runs_once_right_after_the_gap(self) -> None:
        keys = await self.run("*/20 * 2 * * *", "2026-03-29T00:30:00", 3600, 10)
        assert keys == ["schedule:r:2026-03-29T01:00:00+00:00"]  # 03:00 CEST

    async def test_catch_up_after_the_gap_runs_that_days_slot(self) -> None:
        keys = await self.run("*/20 * 2 * * *", "2026-03-29T01:00:10", 60, 10)
        assert keys == ["schedule:r:2026-03-29T01:00:00+00:00"]

    async def test_a_sub_hourly_schedule_keeps_real_time_through_fall_back(self) -> None:
        keys = await self.run("*/30 * * * *", "2026-10-24T23:50:00", 3 * 3600, 60)
        expected = [f"2026-10-25T{h:02d}:{m:02d}:00+00:00" for h in range(3) for m in (0, 30)]
        assert keys == [f"schedule:r:{k}" for k in expected]  # every 30 min, no gap, no repeat
