"""How late the event loop runs: a task that sleeps a quarter second and measures by how
much more than that it slept.

Everything a worker does (lease renewals, claims, the scheduler, /health) runs on one
event loop, so a handler or library call that holds it stalls them all: leases expire and
live jobs are reclaimed. The lag is exported as ``event_loop_lag_seconds`` (the largest lag
seen over the last window, so a scrape between stalls still sees one) and turns the
``event_loop`` health check YELLOW while the loop lost at least ``yellow_lost_seconds`` of
the last ``window_seconds`` (a sustained or long stall, not one slow callback); it turns
GREEN again once a window has passed without.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import structlog

from usvc_core.health import HealthRegistry, Status
from usvc_core.ports import Metrics

__all__ = ["EVENT_LOOP_CHECK", "LoopLagMonitor"]

EVENT_LOOP_CHECK = "event_loop"
_log = structlog.get_logger("usvc.event_loop")


class LoopLagMonitor:
    """Samples the loop's lag every ``interval`` seconds; see the module docstring."""

    def __init__(
        self,
        *,
        health: HealthRegistry | None = None,
        metrics: Metrics | None = None,
        interval: float = 0.25,
        window_seconds: float = 5.0,
        yellow_lost_seconds: float = 1.0,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._health = health
        self._metrics = metrics
        self._interval = interval
        self._window = window_seconds
        self._yellow = yellow_lost_seconds
        self._now = now
        self._samples: deque[tuple[float, float]] = deque()  # (when, lag)
        self.status = Status.GREEN
        if health is not None:
            health.register(EVENT_LOOP_CHECK, Status.GREEN, self._details())

    def _details(self) -> dict[str, float]:
        lags = [lag for _, lag in self._samples]
        return {
            "max_lag_seconds": round(max(lags, default=0.0), 4),
            "lost_seconds": round(sum(lags), 4),
            "window_seconds": self._window,
        }

    def record(self, when: float, lag: float) -> None:
        """One sample: ``lag`` seconds late at loop time ``when``."""
        self._samples.append((when, lag))
        while self._samples and self._samples[0][0] < when - self._window:
            self._samples.popleft()
        lags = [sample for _, sample in self._samples]
        if self._metrics is not None:
            self._metrics.event_loop_lag(max(lags))
        status = Status.YELLOW if sum(lags) >= self._yellow else Status.GREEN
        if status is not self.status:
            log = _log.warning if status is Status.YELLOW else _log.info
            log("event loop lag", status=status.name, **self._details())
        if self._health is not None and (status is not self.status or status is Status.YELLOW):
            self._health.update(EVENT_LOOP_CHECK, status, self._details())
        self.status = status

    async def run(self) -> None:
        """Sample until cancelled."""
        loop = asyncio.get_running_loop()
        now = self._now or loop.time
        while True:
            began = now()
            await asyncio.sleep(self._interval)
            ended = now()
            self.record(ended, max(0.0, ended - began - self._interval))
