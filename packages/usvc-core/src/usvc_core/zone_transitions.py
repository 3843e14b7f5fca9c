"""Where a time zone's UTC offset changes (daylight saving, or a new standard offset).

zoneinfo answers "what is the offset at this instant" but does not list its transitions,
so they are found by probing: the offset every six hours through a year, then a binary
search to the second wherever two probes differ. One year costs about 1,500 probes (a few
milliseconds), once per zone and year (cached). Two transitions less than six hours apart
that cancel out would be missed; tzdata has none in the years a scheduler runs (from 1990
to 2040 the closest two of any zone are 6.9 days apart: America/Cambridge_Bay, 2000).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "Transition",
    "offset_at",
    "transition_after",
    "transition_at_or_before",
    "warm",
]

_STEP = 6 * 3600


@dataclass(frozen=True, slots=True)
class Transition:
    """At ``at`` (UTC, a whole second) the offset changes from ``before`` to ``after``.

    ``after > before`` opens a gap in wall time (spring forward): the wall times
    ``[at + before, at + after)`` never happen. ``after < before`` repeats the wall times
    ``[at + after, at + before)`` (fall back).
    """

    at: datetime
    before: timedelta
    after: timedelta

    @property
    def is_gap(self) -> bool:
        return self.after > self.before


def offset_at(zone: ZoneInfo, moment: datetime) -> timedelta:
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _offset(zone: ZoneInfo, timestamp: int) -> timedelta:
    offset = datetime.fromtimestamp(timestamp, zone).utcoffset()
    assert offset is not None
    return offset


@lru_cache(maxsize=256)
def _year(zone: ZoneInfo, year: int) -> tuple[Transition, ...]:
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found: list[Transition] = []
    # The probe just before the year catches a change at its very first second.
    t, offset = start - 1, _offset(zone, start - 1)
    while t < end - 1:
        u = min(t + _STEP, end - 1)
        new = _offset(zone, u)
        if new != offset:
            lo, hi = t, u  # offset(lo) == old, offset(hi) != old
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(zone, mid) == offset:
                    lo = mid
                else:
                    hi = mid
            found.append(Transition(datetime.fromtimestamp(hi, UTC), offset, new))
        t, offset = u, new
    return tuple(found)


def transition_after(zone: ZoneInfo, moment: datetime, limit: datetime) -> Transition | None:
    """The first transition strictly after ``moment`` and before ``limit``."""
    year = moment.year
    while year <= limit.year:
        items = _year(zone, year)
        i = bisect_right([tr.at for tr in items], moment)
        for tr in items[i:]:
            if tr.at >= limit:
                return None
            return tr
        year += 1
    return None


def transition_at_or_before(zone: ZoneInfo, moment: datetime, limit: datetime) -> Transition | None:
    """The last transition at or before ``moment`` and at or after ``limit``."""
    year = moment.year
    while year >= limit.year:
        items = _year(zone, year)
        i = bisect_left([tr.at for tr in items], moment + timedelta(microseconds=1))
        if i > 0:
            tr = items[i - 1]
            return tr if tr.at >= limit else None
        year -= 1
    return None


def warm(zones: Iterable[ZoneInfo], years: Iterable[int]) -> None:
    """Compute (and cache) the transitions ahead of need: the scheduler does this at start
    and once a year, so a slot computation never pays for it."""
    for zone in zones:
        for year in years:
            _year(zone, year)
