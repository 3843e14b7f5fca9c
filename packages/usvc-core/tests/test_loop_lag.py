"""Event-loop lag: sampled, exported, and YELLOW on sustained lag (issue 24 item 1)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from usvc_core import Application, HealthRegistry, Status, WorkerSettings
from usvc_core.loop_lag import EVENT_LOOP_CHECK, LoopLagMonitor
from usvc_core.metrics import NullMetrics
from usvc_testing import InMemoryQueue


class LagMetrics(NullMetrics):
    def __init__(self) -> None:
        self.lags: list[float] = []

    def event_loop_lag(self, seconds: float) -> None:
        self.lags.append(seconds)


def status(health: HealthRegistry) -> Status:
    check = health.get(EVENT_LOOP_CHECK)
    assert check is not None
    return check.status


class TestRule:
    def test_one_slow_callback_stays_green(self) -> None:
        health = HealthRegistry()
        monitor = LoopLagMonitor(health=health)
        for i in range(20):
            monitor.record(i * 0.25, 0.3 if i == 10 else 0.0)
        assert status(health) is Status.GREEN

    def test_sustained_lag_turns_yellow_then_green_after_a_window(self) -> None:
        health, metrics = HealthRegistry(), LagMetrics()
        monitor = LoopLagMonitor(health=health, metrics=metrics)
        when = 0.0
        for _ in range(8):  # 0.2 s late at every sample: 1.6 s lost in 5 s
            when += 0.45
            monitor.record(when, 0.2)
        assert status(health) is Status.YELLOW
        assert metrics.lags[-1] == 0.2
        for _ in range(25):  # 6.25 s of an idle loop
            when += 0.25
            monitor.record(when, 0.0)
        assert status(health) is Status.GREEN
        assert metrics.lags[-1] == 0.0

    def test_one_long_stall_is_yellow(self) -> None:
        health = HealthRegistry()
        monitor = LoopLagMonitor(health=health)
        monitor.record(3.25, 3.0)
        assert status(health) is Status.YELLOW


async def test_an_application_reports_a_blocked_loop(tmp_path: Path) -> None:
    """A handler-like blocking call holds the loop 1.5 s: the running application's check
    turns YELLOW and the metric shows at least that lag."""
    metrics = LagMetrics()
    app = Application(
        tmp_path,
        settings=WorkerSettings(_env_file=None, MICROSERVICE_NAME="svc", HTTP_ENABLED=False),
        queue=InMemoryQueue(),
        surfaces=[],
        metrics=metrics,
        configure_logging=False,
    )
    async with app:
        await asyncio.sleep(0.6)  # a couple of healthy samples
        assert status(app.health) is Status.GREEN
        time.sleep(1.5)  # noqa: ASYNC251 - the point: a call that blocks the event loop
        for _ in range(200):  # the next sample sees it; 10 s at most
            if status(app.health) is Status.YELLOW:
                break
            await asyncio.sleep(0.05)
        assert max(metrics.lags) >= 1.0
        assert app.health.aggregate() is Status.YELLOW
