"""Periodic jobs: each schedule's slots are enqueued once across the whole fleet.

Every worker process of a service runs a :class:`Scheduler`. At each slot it enqueues
``{"action": <name>}`` under the unique key ``schedule:<action>:<slot in UTC>``, which the
store holds across finished jobs too (until they are purged): of N workers enqueueing the
same slot, one succeeds and the others get :class:`~usvc_core.errors.DuplicateJobError`.
No leader election, no lock: the queue's unique index is the coordination.

At start-up the most recent slot that passed (while no worker ran) is enqueued when it is
at most ``catchup_seconds`` old; older slots are skipped and logged, so a long outage does
not end in a burst of stale runs (systemd's ``Persistent=`` timers behave the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from usvc_core.cron import SEARCH_YEARS, CronExpression, CronSyntaxError, parse_cron
from usvc_core.errors import ConfigurationError, DuplicateJobError
from usvc_core.health import HealthRegistry, Status
from usvc_core.ports import Clock, Metrics, StoreClock
from usvc_core.zone_transitions import (
    Transition,
    offset_at,
    transition_after,
    transition_at_or_before,
    warm,
)

__all__ = [
    "SCHEDULER_CHECK",
    "Schedule",
    "Scheduler",
    "cancel_and_wait",
    "parse_schedule",
    "slot_key",
]

SCHEDULER_CHECK = "scheduler"
_log = structlog.get_logger("usvc.scheduler")
#: The longest single sleep: a wall clock that jumps (NTP, suspend) is noticed this soon.
_MAX_SLEEP = 30.0
_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
#: How far the slot functions look; every valid expression matches within eight years.
_HORIZON = timedelta(days=366 * SEARCH_YEARS)
#: Longer than any fall-back in tzdata (they repeat at most a few hours of wall time).
_LONGEST_FOLD = timedelta(days=1)
_TICK = timedelta(microseconds=1)
#: A store clock behind ours by more than this is logged (NTP keeps hosts within ms).
_SKEW_WARNING_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Schedule:
    """One action run on a cron expression, in a time zone.

    Five fields (minute hour day month weekday) or six, the first then being seconds
    (``"*/5 * * * * *"``: every five seconds). Daylight saving follows cron's rules:

    - a schedule whose hour field starts with ``*`` (``* * * * *``, ``*/20 * * * * *``,
      ``30 */2 * * *``) follows real time: it has a slot at every instant whose local wall
      time matches, so wall times skipped by spring-forward have none and wall times
      repeated by fall-back have two (they are distinct instants);
    - any other schedule names fixed hours (``30 2 * * *``, ``*/20 * 2 * * *``): a slot
      whose wall time falls in a spring-forward gap runs once, at the instant the gap ends
      (all of the gap's slots become that one); a wall time repeated by fall-back runs at
      its first occurrence only.

    Both slot functions are bounded: they search wall time field by field inside each
    stretch of constant UTC offset, and step over the zone's transitions explicitly.
    """

    action: str
    cron: str
    timezone: str = "UTC"
    expression: CronExpression = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "expression", parse_cron(self.cron))

    @property
    def _tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def follows_real_time(self) -> bool:
        """Cron's "wildcard" job (hour field ``*...``): no DST adjustment."""
        return self.expression.hour_star

    def _gap_has_slot(self, tr: Transition) -> bool:
        wall = tr.at.replace(tzinfo=None)
        return self.expression.next_match(wall + tr.before, wall + tr.after) is not None

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after ``moment`` (UTC)."""
        zone, fixed = self._tz, not self.follows_real_time
        moment = moment.astimezone(UTC)
        limit = moment + _HORIZON
        offset = offset_at(zone, moment)
        # Wall-time lower bound (inclusive): the next whole second after ``moment``.
        low = _wall(moment) + offset + _TICK
        if fixed:
            # Just after a fall-back, the repeated wall times already ran before it.
            back = transition_at_or_before(zone, moment, moment - _LONGEST_FOLD)
            if back is not None and not back.is_gap:
                low = max(low, _wall(back.at) + back.before)
        while True:
            # The first match if the offset stays; valid unless a transition comes first.
            wall = self.expression.next_match(low, _wall(limit) + offset)
            candidate = limit if wall is None else (wall - offset).replace(tzinfo=UTC)
            tr = transition_after(zone, moment, candidate + _TICK)
            if tr is None:
                if wall is None:
                    raise ConfigurationError(f"schedule {self.cron!r} has no slot after {moment}")
                return candidate
            if fixed and tr.is_gap and self._gap_has_slot(tr):
                return tr.at
            moment, offset = tr.at, tr.after
            low = _wall(tr.at) + (tr.before if fixed and not tr.is_gap else tr.after)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last slot at or before ``moment`` (UTC)."""
        zone, fixed = self._tz, not self.follows_real_time
        moment = moment.astimezone(UTC)
        limit = moment - _HORIZON
        offset = offset_at(zone, moment)
        high = _wall(moment) + offset  # inclusive
        while True:
            wall = self.expression.prev_match(high, _wall(limit) + offset)
            candidate = limit if wall is None else (wall - offset).replace(tzinfo=UTC)
            # A transition after the candidate (up to ``moment``) starts this stretch.
            tr = transition_at_or_before(zone, moment, candidate + _TICK)
            if tr is None:
                if wall is None:
                    raise ConfigurationError(f"schedule {self.cron!r} has no slot before {moment}")
                if not fixed:
                    return candidate
                back = transition_at_or_before(zone, candidate, candidate - _LONGEST_FOLD)
                if back is None or back.is_gap or wall >= _wall(back.at) + back.before:
                    return candidate
                # A repeated wall time: it ran at its first occurrence, before ``back``;
                # nothing earlier in this stretch is a slot either.
                tr = back
            if fixed and tr.is_gap and self._gap_has_slot(tr):
                return tr.at
            # The stretch before the transition ends one second before it.
            moment, offset = tr.at - timedelta(seconds=1), tr.before
            high = _wall(moment) + offset


def _wall(moment: datetime) -> datetime:
    """A UTC instant as a naive datetime, to which an offset is added to get wall time."""
    return moment.replace(tzinfo=None)


def parse_schedule(action: str, cron: str, timezone: str = "UTC", *, where: str) -> Schedule:
    """A validated :class:`Schedule`; a mistake raises ConfigurationError naming ``where``."""
    if not isinstance(cron, str) or len(cron.split()) not in (5, 6):
        raise ConfigurationError(
            f"{where}: schedule {cron!r} is not a cron expression: give five fields "
            "(minute hour day month weekday) or six (seconds first)"
        )
    try:
        parse_cron(cron)
    except CronSyntaxError as exc:
        raise ConfigurationError(
            f"{where}: schedule {cron!r} is not a valid cron expression ({exc})"
        ) from None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{where}: unknown time zone {timezone!r} (an IANA name such as 'Europe/Berlin')"
        ) from None
    return Schedule(action, cron, timezone)


def slot_key(action: str, slot: datetime) -> str:
    """The unique key of one slot: the same in every worker of the fleet."""
    return f"schedule:{action}:{slot.astimezone(UTC).isoformat()}"


Enqueue = Callable[[Schedule, datetime, str], Awaitable[object]]


class Scheduler:
    """Enqueues the slots of ``schedules`` through ``enqueue(schedule, slot, unique_key)``.

    Time comes from ``clock`` (``FakeClock`` in tests); each sleep is computed from the wall
    clock again, so wake-ups do not drift. With a ``store_clock`` (the queue, when it
    implements :class:`~usvc_core.ports.StoreClock`), a slot is enqueued only once the
    store's time has reached it: a worker whose clock runs fast waits for the store. A
    failing store is retried (same slot, backoff) and shown as the ``scheduler`` health
    check; it never stops the scheduler.
    """

    def __init__(
        self,
        schedules: Sequence[Schedule],
        enqueue: Enqueue,
        *,
        clock: Clock,
        catchup_seconds: float,
        metrics: Metrics | None = None,
        health: HealthRegistry | None = None,
        store_clock: StoreClock | None = None,
    ) -> None:
        self.schedules = list(schedules)
        self._store_clock = store_clock
        self._enqueue = enqueue
        self._clock = clock
        self._catchup = timedelta(seconds=catchup_seconds)
        self._metrics = metrics
        self._health = health
        self.next_runs: dict[str, datetime] = {}
        self._warm_year = 0
        if health is not None:
            health.register(SCHEDULER_CHECK, Status.GREEN, self._details())

    def _details(self, **extra: Any) -> Mapping[str, Any]:
        return {
            "next_runs": {a: t.isoformat() for a, t in sorted(self.next_runs.items())},
            **extra,
        }

    def _set_next(self, schedule: Schedule, slot: datetime) -> None:
        self.next_runs[schedule.action] = slot
        if self._metrics is not None:
            self._metrics.schedule_next_run(schedule.action, slot.timestamp())

    async def run(self) -> None:
        """Catch up once, then enqueue every slot as it comes, until cancelled."""
        now = self._clock.now()
        self._warm_zones(now)
        for schedule in self.schedules:
            await self._catch_up(schedule, now)
            self._set_next(schedule, schedule.next_after(now))
        if self._health is not None:
            self._health.update(SCHEDULER_CHECK, Status.GREEN, self._details())
        _log.info(
            "scheduler started",
            schedules={s.action: f"{s.cron} ({s.timezone})" for s in self.schedules},
        )
        while True:
            now = self._clock.now()
            self._warm_zones(now)
            due = [s for s in self.schedules if self.next_runs[s.action] <= now]
            if not due:
                wait = min(self.next_runs.values()) - now
                await self._clock.sleep(min(wait.total_seconds(), _MAX_SLEEP))
                continue
            for schedule in due:
                slot = self.next_runs[schedule.action]
                if now - slot > self._catchup:
                    # Far behind (the loop or the host stalled): skip to the present.
                    _log.warning(
                        "schedule slots skipped: older than the catch-up window",
                        action=schedule.action,
                        first_skipped=slot.isoformat(),
                    )
                    self._set_next(schedule, schedule.next_after(now))
                    continue
                await self._fire(schedule, slot)
                self._set_next(schedule, schedule.next_after(slot))

    def _warm_zones(self, now: datetime) -> None:
        """Zone transitions for last, this and next year, computed once a year (a few ms
        per zone and year) rather than inside a slot computation."""
        if now.year == self._warm_year:
            return
        self._warm_year = now.year
        zones = {ZoneInfo(s.timezone) for s in self.schedules}
        warm(zones, range(now.year - 1, now.year + 2))

    async def _wait_for_store(self, schedule: Schedule, slot: datetime) -> None:
        """Sleep until the store's clock has reached ``slot`` (ours may run fast)."""
        if self._store_clock is None:
            return
        warned = False
        while True:
            ahead = (slot - await self._store_clock.store_now()).total_seconds()
            if ahead <= 0:
                return
            if not warned and ahead > _SKEW_WARNING_SECONDS:
                warned = True
                _log.warning(
                    "this worker's clock runs ahead of the store's; waiting for the store",
                    action=schedule.action,
                    slot=slot.isoformat(),
                    ahead_seconds=round(ahead, 3),
                )
            await self._clock.sleep(min(ahead, _MAX_SLEEP))

    async def _catch_up(self, schedule: Schedule, now: datetime) -> None:
        last = schedule.latest_at_or_before(now)
        if now - last <= self._catchup:
            await self._fire(schedule, last)
            return
        _log.info(
            "schedule slot missed while no worker ran; older than the catch-up window, skipped",
            action=schedule.action,
            slot=last.isoformat(),
            catchup_seconds=self._catchup.total_seconds(),
        )

    async def _fire(self, schedule: Schedule, slot: datetime) -> None:
        """Enqueue one slot, retrying while the store fails; a duplicate means another
        worker of the fleet enqueued it first."""
        key = slot_key(schedule.action, slot)
        failures = 0
        while True:
            try:
                await self._wait_for_store(schedule, slot)
                await self._enqueue(schedule, slot, key)
            except DuplicateJobError:
                _log.debug("schedule slot already enqueued", action=schedule.action, key=key)
            except Exception as exc:
                failures += 1
                reason = f"{type(exc).__name__}: {exc}"[:300]
                if self._metrics is not None:
                    self._metrics.queue_error("schedule_enqueue")
                if self._health is not None:
                    self._health.update(
                        SCHEDULER_CHECK,
                        Status.YELLOW,
                        self._details(error=reason, slot=slot.isoformat()),
                    )
                _log.warning(
                    "could not enqueue a schedule slot; retrying",
                    action=schedule.action,
                    slot=slot.isoformat(),
                    error=reason,
                    attempt=failures,
                )
                delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS)) - 1]
                await self._clock.sleep(delay)
                if self._clock.now() - slot > self._catchup:
                    _log.warning(
                        "schedule slot given up: the store failed past the catch-up window",
                        action=schedule.action,
                        slot=slot.isoformat(),
                    )
                    return
                continue
            else:
                _log.info("schedule slot enqueued", action=schedule.action, slot=slot.isoformat())
            if failures and self._health is not None:
                self._health.update(SCHEDULER_CHECK, Status.GREEN, self._details())
            return


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel the scheduler's task and wait for it to end."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
