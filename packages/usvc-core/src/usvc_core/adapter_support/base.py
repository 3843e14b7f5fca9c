"""What every queue adapter does the same way: tell in-process listeners about new jobs, and
serve ``claim`` and ``claim_and_start`` from one ``_claim`` with the limits checked once."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from usvc_core.adapter_support.limits import checked_limits
from usvc_core.jobs import Job

__all__ = ["QueueBase"]


class QueueBase:
    """Mixin for adapters of :class:`usvc_core.ports.JobQueue`; subclasses implement
    :meth:`_claim` and call :meth:`_notify` after writing jobs that may be claimed now."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def on_enqueue(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    async def claim(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        max_running: Mapping[str, int] | None = None,
    ) -> list[Job]:
        return await self._claim(
            microservice,
            worker_id,
            limit,
            lease_seconds,
            start=False,
            limits=checked_limits(max_running),
        )

    async def claim_and_start(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        max_running: Mapping[str, int] | None = None,
    ) -> list[Job]:
        return await self._claim(
            microservice,
            worker_id,
            limit,
            lease_seconds,
            start=True,
            limits=checked_limits(max_running),
        )

    async def _claim(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        start: bool,
        limits: dict[str, int],
    ) -> list[Job]:
        """Claim up to ``limit`` Ready jobs (started at once when ``start``), at most
        ``limits[action]`` of an action running across the service."""
        raise NotImplementedError
