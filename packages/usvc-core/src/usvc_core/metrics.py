"""The metrics port's do-nothing implementation, used when no metrics adapter is installed."""

from __future__ import annotations

from collections.abc import Mapping

from usvc_core.health import Status
from usvc_core.ports import QueueStats

__all__ = ["NullMetrics"]


class NullMetrics:
    """Discards everything."""

    def job_started(self, action: str) -> None:
        pass

    def job_finished(self, action: str, outcome: str, duration_seconds: float) -> None:
        pass

    def jobs_claimed(self, count: int) -> None:
        pass

    def jobs_reclaimed(self, requeued: int, failed: int) -> None:
        pass

    def jobs_released(self, count: int) -> None:
        pass

    def queue_error(self, operation: str) -> None:
        pass

    def queue_stats(self, stats: QueueStats) -> None:
        pass

    def schedule_next_run(self, action: str, timestamp: float) -> None:
        pass

    def health_changed(self, overall: Status, checks: Mapping[str, Status]) -> None:
        pass

    def event_loop_lag(self, seconds: float) -> None:
        pass
