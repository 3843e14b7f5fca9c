"""A worker's part in the fleet kept in its store (:class:`~usvc_core.ports.FleetAdmin`):
it heartbeats its record, releases at once the jobs of workers gone silent, shows the
service's paused actions in health, and removes its record when it stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

import structlog

from usvc_core.health import HealthRegistry, Status
from usvc_core.ports import (
    GONE_AFTER_HEARTBEATS,
    Clock,
    FleetAdmin,
    ReclaimResult,
    WorkerRecord,
)

__all__ = ["FORGET_GONE_AFTER_SECONDS", "PAUSED_CHECK", "FleetMember", "show_paused"]

#: The health check that turns YELLOW while an operator has paused some action.
PAUSED_CHECK = "paused_actions"
#: How long a gone worker stays listed (as gone) before its record is deleted.
FORGET_GONE_AFTER_SECONDS = 3600.0
_FORGET_EVERY_SECONDS = 60.0
_LEAVE_TIMEOUT_SECONDS = 5.0

_log = structlog.get_logger("usvc.fleet")


def show_paused(health: HealthRegistry, paused: Iterable[str]) -> None:
    """The ``paused_actions`` check: YELLOW naming the paused actions; GREEN again once none
    is (kept, not removed: /metrics keeps showing the last status of every check it saw)."""
    names = sorted(paused)
    if names:
        reason = f"paused by an operator: {', '.join(names)} (their jobs wait Ready)"
        health.update(PAUSED_CHECK, Status.YELLOW, {"paused": names, "reason": reason})
    elif health.get(PAUSED_CHECK) is not None:
        health.update(PAUSED_CHECK, Status.GREEN, {"paused": []})


class FleetMember:
    """Runs a worker's fleet duties; the worker calls :meth:`beat` every heartbeat and
    :meth:`reclaim` twice as often, and :meth:`leave` after its drain.

    Args:
        fleet: the store's fleet port.
        record: this worker's record as of now (``running`` counted at each call).
        heartbeat_seconds: the promised heartbeat; two missed ones make the worker gone.
        renew_leases: called when this worker itself went silent for two heartbeats
            (frozen, or cut from the store): it may have been declared gone and its jobs
            given to others, and renewing its leases finds out which (and stops them).
        on_reclaimed: called with the jobs of gone workers put back to Ready or failed.
        on_error: called with the operation's name and the error when the store fails.
    """

    def __init__(
        self,
        fleet: FleetAdmin,
        record: Callable[[], WorkerRecord],
        *,
        heartbeat_seconds: float,
        clock: Clock,
        health: HealthRegistry,
        renew_leases: Callable[[], Awaitable[None]],
        on_reclaimed: Callable[[ReclaimResult], None],
        on_error: Callable[[str, Exception], Awaitable[None]],
    ) -> None:
        self.fleet = fleet
        self._record = record
        self.microservice = record().microservice
        self.heartbeat_seconds = heartbeat_seconds
        self._clock = clock
        self._health = health
        self._renew_leases = renew_leases
        self._on_reclaimed = on_reclaimed
        self._on_error = on_error
        self._last_beat: float | None = None  # clock time at which the last good beat began
        # Since when every heartbeat went through (None: the last one failed, or none yet).
        self._connected_since: float | None = None
        self._last_forget = float("-inf")

    def silent(self) -> bool:
        """Whether this worker's last good heartbeat is two heartbeats old (or none yet)."""
        if self._last_beat is None:
            return True
        return self._clock.monotonic() - self._last_beat > (
            GONE_AFTER_HEARTBEATS * self.heartbeat_seconds
        )

    async def beat(self) -> None:
        """Record this worker as live; after a silence, renew the leases at once; show
        paused actions in health."""
        began = self._clock.monotonic()
        was_silent = self._last_beat is not None and self.silent()
        record = self._record()
        try:
            await self.fleet.heartbeat_worker(record)
            paused = await self.fleet.paused_actions(record.microservice)
        except Exception as exc:
            self._connected_since = None
            await self._on_error("heartbeat_worker", exc)
            return
        if self._connected_since is None or was_silent:
            self._connected_since = began
        self._last_beat = began
        if was_silent:
            _log.warning(
                "this worker was silent for two heartbeats: it may have been declared gone "
                "and its jobs given to other workers; renewing its leases now",
                worker_id=record.worker_id,
            )
            await self._renew_leases()
        show_paused(self._health, paused)

    def _can_judge(self) -> bool:
        """Whether this worker's own heartbeats have gone through for two heartbeats in a
        row: only then does another worker's silence mean that worker, not the store (an
        outage silences every worker at once, and none of them is gone when it ends)."""
        since = self._connected_since
        return (
            since is not None
            and not self.silent()
            and self._clock.monotonic() - since >= GONE_AFTER_HEARTBEATS * self.heartbeat_seconds
        )

    async def reclaim(self) -> None:
        """Put the jobs of gone workers back to Ready now; now and then, forget workers
        gone for long. Only once this worker has reached the store for two heartbeats in
        a row (see :meth:`_can_judge`)."""
        if not self._can_judge():
            return
        microservice = self.microservice
        try:
            result = await self.fleet.reclaim_gone_workers(microservice)
        except Exception as exc:
            await self._on_error("reclaim_gone_workers", exc)
            return
        if len(result):
            _log.warning(
                "released the jobs of gone workers (silent for two heartbeats)",
                requeued=len(result.requeued),
                failed=len(result.failed),
            )
            self._on_reclaimed(result)
        now = self._clock.monotonic()
        if now - self._last_forget >= _FORGET_EVERY_SECONDS:
            self._last_forget = now
            try:
                await self.fleet.forget_gone_workers(microservice, FORGET_GONE_AFTER_SECONDS)
            except Exception as exc:
                await self._on_error("forget_gone_workers", exc)

    async def leave(self) -> None:
        """Remove this worker's record (a clean stop: its jobs are released already)."""
        record = self._record()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_LEAVE_TIMEOUT_SECONDS):
                await self.fleet.remove_worker(record.microservice, record.worker_id)
                return
        _log.warning("could not remove this worker's record; it will show as gone")
