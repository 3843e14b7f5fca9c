"""Cron expressions matched against local wall-clock time, with a bounded search.

Five fields (minute hour day-of-month month day-of-week) or six (seconds first). Each field
is a comma list of ``*``, ``N``, ``N-M``, with an optional ``/step`` (``*/5``, ``10-40/10``,
``7/15`` = 7 to the field's end in steps of 15). Months and weekdays also take English
names (``jan``, ``mon``); weekday 0 and 7 are Sunday; ``?`` is ``*`` in the day fields.
As in Vixie cron, when both day fields are restricted a day matches if either does.

The search walks fields, not instants: the next match is found by picking the next
allowed month, day, hour, minute and second in turn, so its cost does not depend on how
far away the match is (a handful of months at most; a 29 February needs at most eight
years of Februaries). Time zones are not this module's business: see ``scheduling``.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

__all__ = ["CronExpression", "CronSyntaxError", "parse_cron"]

_MONTHS = {n.lower(): i for i, n in enumerate(calendar.month_abbr) if n}
_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
# (name, low, high, names) per field, seconds first.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)
#: How far a search looks: every valid expression matches within eight years (29 February).
SEARCH_YEARS = 9


class CronSyntaxError(ValueError):
    """The expression is not one this module reads; the message says which field."""


@dataclass(frozen=True, slots=True)
class CronExpression:
    """The allowed values of each field, sorted, and the star flags cron's rules need."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday
    day_star: bool
    weekday_star: bool
    #: The hour field starts with ``*``: cron's "wildcard" job, which follows real time
    #: across daylight-saving changes (a fixed-hour job is moved instead).
    hour_star: bool

    # -- days -------------------------------------------------------------------------

    @property
    def _sorted_days(self) -> list[int]:
        return sorted(self.days)

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.day_star and self.weekday_star:
            return True
        if self.day_star:
            return in_week
        if self.weekday_star:
            return in_month
        return in_month or in_week

    def _next_day(self, day: date, last: date) -> date | None:
        """The first matching day in ``[day, last]``; visits only the allowed months."""
        while day <= last:
            if day.month not in self.months:
                i = bisect_right(self.months, day.month)
                day = (
                    date(day.year, self.months[i], 1)
                    if i < len(self.months)
                    else (date(day.year + 1, self.months[0], 1))
                )
                continue
            if self.day_matches(day):
                return day
            if self.weekday_star and not self.day_star:
                # Only the day of the month counts: jump to the next allowed one.
                last_day = calendar.monthrange(day.year, day.month)[1]
                later = [d for d in self._sorted_days if day.day < d <= last_day]
                if later:
                    day = day.replace(day=later[0])
                    continue
                day = day.replace(day=last_day)
            day += timedelta(days=1)
        return None

    def _prev_day(self, day: date, first: date) -> date | None:
        """The last matching day in ``[first, day]``."""
        while day >= first:
            if day.month not in self.months:
                i = bisect_left(self.months, day.month) - 1
                year = day.year if i >= 0 else day.year - 1
                month = self.months[i]
                day = date(year, month, calendar.monthrange(year, month)[1])
                continue
            if self.day_matches(day):
                return day
            if self.weekday_star and not self.day_star:
                earlier = [d for d in self._sorted_days if d < day.day]
                if earlier:
                    day = day.replace(day=earlier[-1])
                    continue
                day = day.replace(day=1)
            day -= timedelta(days=1)
        return None

    # -- times of day -----------------------------------------------------------------

    def _first_time_from(self, start: time) -> time | None:
        """The first allowed time of day at or after ``start`` (whole seconds)."""
        h, m, s = start.hour, start.minute, start.second
        i = bisect_left(self.hours, h)
        while i < len(self.hours):
            hour = self.hours[i]
            j = bisect_left(self.minutes, m) if hour == h else 0
            while j < len(self.minutes):
                minute = self.minutes[j]
                k = bisect_left(self.seconds, s) if (hour, minute) == (h, m) else 0
                if k < len(self.seconds):
                    return time(hour, minute, self.seconds[k])
                j += 1
            i += 1
        return None

    def _last_time_to(self, end: time) -> time | None:
        """The last allowed time of day at or before ``end``."""
        h, m, s = end.hour, end.minute, end.second
        i = bisect_right(self.hours, h) - 1
        while i >= 0:
            hour = self.hours[i]
            j = bisect_right(self.minutes, m) - 1 if hour == h else len(self.minutes) - 1
            while j >= 0:
                minute = self.minutes[j]
                k = (
                    bisect_right(self.seconds, s) - 1
                    if (hour, minute) == (h, m)
                    else len(self.seconds) - 1
                )
                if k >= 0:
                    return time(hour, minute, self.seconds[k])
                j -= 1
            i -= 1
        return None

    # -- wall-clock search ------------------------------------------------------------

    def next_match(self, start: datetime, end: datetime) -> datetime | None:
        """The first matching wall time in ``[start, end)`` (naive; ``start`` is rounded up
        to a whole second)."""
        if start.microsecond:
            start = start.replace(microsecond=0) + timedelta(seconds=1)
        day: date | None = start.date()
        first_time = start.time()
        while day is not None and day <= end.date():
            day = self._next_day(day, end.date())
            if day is None:
                return None
            found = self._first_time_from(first_time if day == start.date() else time())
            if found is not None:
                moment = datetime.combine(day, found)
                return moment if moment < end else None
            day += timedelta(days=1)
        return None

    def prev_match(self, end: datetime, start: datetime) -> datetime | None:
        """The last matching wall time in ``[start, end]`` (naive)."""
        end = end.replace(microsecond=0)
        day: date | None = end.date()
        while day is not None and day >= start.date():
            day = self._prev_day(day, start.date())
            if day is None:
                return None
            found = self._last_time_to(end.time() if day == end.date() else time(23, 59, 59))
            if found is not None:
                moment = datetime.combine(day, found)
                return moment if moment >= start else None
            day -= timedelta(days=1)
        return None


def _parse_value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    value = names.get(text.lower()) if names else None
    if value is None:
        if not text.isdigit():
            raise CronSyntaxError(f"{field}: {text!r} is not a number")
        value = int(text)
    if not low <= value <= high:
        raise CronSyntaxError(f"{field}: {value} is outside {low}-{high}")
    return value


def _parse_field(text: str, low: int, high: int, names: dict[str, int], field: str) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronSyntaxError(f"{field}: step {step_text!r} is not a positive number")
            step = int(step_text)
        if body in ("*", "?"):
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first = _parse_value(a, low, high, names, field)
            last = _parse_value(b, low, high, names, field)
            if first > last:
                raise CronSyntaxError(f"{field}: range {body!r} runs backwards")
        else:
            first = _parse_value(body, low, high, names, field)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def parse_cron(text: str) -> CronExpression:
    """Read five or six fields; a mistake raises :class:`CronSyntaxError`."""
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise CronSyntaxError("give five fields (minute hour day month weekday) or six")
    sets = [
        _parse_field(part, low, high, names, name)
        for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = frozenset(d % 7 for d in sets[5])
    expression = CronExpression(
        seconds=tuple(sorted(sets[0])),
        minutes=tuple(sorted(sets[1])),
        hours=tuple(sorted(sets[2])),
        days=frozenset(sets[3]),
        months=tuple(sorted(sets[4])),
        weekdays=weekdays,
        day_star=parts[3].startswith(("*", "?")),
        weekday_star=parts[5].startswith(("*", "?")),
        hour_star=parts[2].startswith("*"),
    )
    origin = datetime(2000, 1, 1)
    if expression.next_match(origin, origin.replace(year=2000 + SEARCH_YEARS)) is None:
        raise CronSyntaxError("no day of the calendar matches (such as 30 February)")
    return expression
