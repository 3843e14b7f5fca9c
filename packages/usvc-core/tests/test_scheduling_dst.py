"""Slots across daylight-saving transitions, checked against a brute-force reference that
looks at every second near each transition; the two slot functions agree everywhere."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usvc_core.scheduling import Schedule, parse_schedule
from usvc_core.zone_transitions import Transition, transition_after

SECOND = timedelta(seconds=1)
#: (zone, year): 30-minute DST (Lord Howe), midnight changes (Santiago, Tehran in 2021),
#: southern hemisphere, and the usual 02:00/03:00 ones.
ZONES = [
    ("Europe/Berlin", 2026),
    ("America/New_York", 2026),
    ("Australia/Lord_Howe", 2026),
    ("America/Santiago", 2026),
    ("Asia/Tehran", 2021),
]
#: Real-time forms (hour field ``*``) and fixed-hour forms, 5 and 6 fields.
CRONS = [
    "* * * * * *",
    "*/20 * * * * *",
    "*/15 * * * *",
    "30 * * * *",
    "*/20 * 2 * * *",
    "30 2 * * *",
    "0,30 0-3,23 * * *",
    "*/45 */10 0,1,2,3,23 * * *",
]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def transitions(zone: str, year: int) -> list[Transition]:
    found: list[Transition] = []
    moment, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    while (tr := transition_after(ZoneInfo(zone), moment, end)) is not None:
        found.append(tr)
        moment = tr.at
    return found


def matches(schedule: Schedule, wall: datetime) -> bool:
    e = schedule.expression
    return (
        wall.second in e.seconds
        and wall.minute in e.minutes
        and wall.hour in e.hours
        and e.day_matches(wall.date())
    )


def reference_slots(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every slot in [start, end), second by second, straight from the written rules."""
    zone = ZoneInfo(schedule.timezone)
    slots: list[datetime] = []
    t = start
    while t < end:
        local = t.astimezone(zone)
        wall = local.replace(tzinfo=None)
        before = (t - SECOND).astimezone(zone).utcoffset()
        after = local.utcoffset()
        assert before is not None and after is not None
        if schedule.follows_real_time:
            slot = matches(schedule, wall)
        else:
            # First occurrences only (fold=1 is the repeat), and the end of a gap stands
            # for every wall time the gap skipped.
            slot = matches(schedule, wall) and local.fold == 0
            if after > before:
                gap_start = (t - SECOND).astimezone(zone).replace(tzinfo=None) + SECOND
                w = gap_start
                while w < wall and not slot:
                    slot = matches(schedule, w)
                    w += SECOND
        if slot:
            slots.append(t)
        t += SECOND
    return slots


CASES = [(zone, year, cron) for zone, year in ZONES for cron in CRONS]


@pytest.mark.parametrize(("zone", "year", "cron"), CASES)
def test_dst_days_match_the_brute_force_reference(zone: str, year: int, cron: str) -> None:
    schedule = parse_schedule("a", cron, zone, where="test")
    found = transitions(zone, year)
    assert len(found) == 2, found
    checked = 0
    for tr in found:
        start, end = tr.at - timedelta(hours=2), tr.at + timedelta(hours=2)
        slots = reference_slots(schedule, start, end)
        checked += len(slots)
        # A stride, and the seconds around the transition and around (some) slots.
        probes = {start + timedelta(seconds=s) for s in range(0, 4 * 3600, 127)}
        for p in [*slots[:: max(1, len(slots) // 200)], tr.at]:
            probes.update({p - SECOND, p - timedelta(microseconds=1), p, p + SECOND})
        probes.update(tr.at + timedelta(seconds=s) for s in range(-30, 30))
        for t in sorted(probes):
            i = bisect_right(slots, t)
            if i < len(slots) and t >= start:
                assert schedule.next_after(t) == slots[i], (zone, cron, t)
            if i > 0 and t < end:
                assert schedule.latest_at_or_before(t) == slots[i - 1], (zone, cron, t)
    assert checked, "no slot near either transition: the case checks nothing"


class TestCronRules:
    """Issue 24 items 2 and 3, pinned."""

    def test_catch_up_after_the_gap_finds_that_days_slot(self) -> None:
        s = parse_schedule("a", "*/20 * 2 * * *", "Europe/Berlin", where="test")
        for second in range(20):
            moment = at("2026-03-29T01:00:00") + timedelta(seconds=second)
            assert s.latest_at_or_before(moment) == at("2026-03-29T01:00:00")

    def test_repeated_hour_runs_once_first_occurrence(self) -> None:
        s = parse_schedule("a", "30 2 * * *", "Europe/Berlin", where="test")
        first = s.next_after(at("2026-10-24T23:00:00"))
        assert first == at("2026-10-25T00:30:00")  # 02:30 CEST
        assert s.next_after(first) == at("2026-10-26T01:30:00")  # not 02:30 CET

    def test_skipped_hour_runs_once_as_the_gap_ends(self) -> None:
        s = parse_schedule("a", "*/20 * 2 * * *", "Europe/Berlin", where="test")
        first = s.next_after(at("2026-03-28T23:00:00"))
        assert first == at("2026-03-29T01:00:00")  # 03:00 CEST
        assert s.next_after(first) == at("2026-03-30T00:00:00")

    def test_sub_hourly_follows_real_time(self) -> None:
        s = parse_schedule("a", "*/30 * * * *", "Europe/Berlin", where="test")
        slots, t = [], at("2026-10-24T23:59:59")
        for _ in range(5):
            t = s.next_after(t)
            slots.append(t)
        step = timedelta(minutes=30)
        assert slots == [at("2026-10-25T00:00:00") + i * step for i in range(5)]


ZONE_NAMES = [zone for zone, _ in ZONES]


@st.composite
def instants(draw: st.DrawFn) -> tuple[str, str, datetime]:
    zone, year = draw(st.sampled_from(ZONES))
    cron = draw(st.sampled_from(CRONS))
    tr = draw(st.sampled_from(transitions(zone, year)))
    offset = draw(st.integers(-3 * 86400 * 10**6, 3 * 86400 * 10**6))
    return zone, cron, tr.at + timedelta(microseconds=offset)


@settings(max_examples=400, deadline=None)
@given(instants())
def test_latest_and_next_agree(case: tuple[str, str, datetime]) -> None:
    """No slot lies between latest_at_or_before(t) and next_after(t), and each finds the
    other's slot."""
    zone, cron, t = case
    s = parse_schedule("a", cron, zone, where="test")
    latest, following = s.latest_at_or_before(t), s.next_after(t)
    assert latest <= t < following
    assert s.next_after(latest) == following
    assert s.latest_at_or_before(following) == following
    assert s.latest_at_or_before(following - timedelta(microseconds=1)) == latest


#: Syntax coverage: names, ranges, steps, lists, both day fields (either may match).
SYNTAX = [
    "*/7 * * * *",
    "5-40/5 9-17 * * mon-fri",
    "0 0 29 2 *",
    "15 10 13 * fri",
    "0 12 1,15 jan,jul *",
    "30 7/5 * * 7",
    "10,20 */3 1-7 * 1",
    "*/13 5 4 * * sun",
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SYNTAX),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
)
def test_utc_slots_match_croniter(cron: str, moment: datetime) -> None:
    """Without daylight saving, the field search agrees with croniter on the same syntax."""
    from croniter import croniter

    moment = moment.replace(tzinfo=UTC)
    six = len(cron.split()) == 6
    s = parse_schedule("a", cron, where="test")
    expected_next = croniter(cron, moment, second_at_beginning=six).get_next(datetime)
    expected_prev = croniter(cron, moment + timedelta(microseconds=1), second_at_beginning=six)
    assert s.next_after(moment) == expected_next
    assert s.latest_at_or_before(moment) == expected_prev.get_prev(datetime)


def test_the_work_per_slot_is_bounded_at_every_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24 item 1 without a stopwatch: croniter stepped through the spring-forward gap
    one candidate at a time (thousands for a seconds schedule). Here every slot computation
    around each transition, in every zone and form above, looks at a handful of days and
    times of day: the count of those steps is pinned, not a duration."""
    from usvc_core.cron import CronExpression

    steps = 0
    real_day, real_time = CronExpression.day_matches, CronExpression._first_time_from
    real_last = CronExpression._last_time_to

    def counted(real: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            nonlocal steps
            steps += 1
            return real(*args)

        return wrapper

    monkeypatch.setattr(CronExpression, "day_matches", counted(real_day))
    monkeypatch.setattr(CronExpression, "_first_time_from", counted(real_time))
    monkeypatch.setattr(CronExpression, "_last_time_to", counted(real_last))
    worst = 0
    for zone, year in ZONES:
        for cron in CRONS:
            schedule = parse_schedule("a", cron, zone, where="test")
            for tr in transitions(zone, year):
                for s in [*range(-3600, 3601, 31), *range(-5, 6)]:
                    t = tr.at + timedelta(seconds=s)
                    for call in (schedule.next_after, schedule.latest_at_or_before):
                        steps = 0
                        call(t)
                        worst = max(worst, steps)
    print(f"most steps for one slot: {worst}")
    assert 0 < worst <= 16, worst
