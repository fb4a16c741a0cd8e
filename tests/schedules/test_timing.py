"""When schedules fire: cron read in a time zone (daylight-saving days), rates, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dataport.schedules.timing import MAX_MISSED_COUNTED, InvalidSchedule, cadence, catch_up

ANCHOR = datetime(2026, 1, 1, 0, 0, 20, tzinfo=UTC)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
         second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(("zone", "after", "expected"), [
    # New York springs forward on 2026-03-08 (02:00 -> 03:00): 02:30 runs at 03:00 EDT
    ("America/New_York", _utc(2026, 3, 7, 12), [_utc(2026, 3, 8, 7, 0), _utc(2026, 3, 9, 6, 30)]),
    # and falls back on 2026-11-01 (02:00 -> 01:00): 01:30 happens twice, runs once (EDT)
    ("America/New_York", _utc(2026, 10, 31, 12), [_utc(2026, 11, 1, 5, 30),
                                                   _utc(2026, 11, 2, 6, 30)]),
    ("Europe/Berlin", _utc(2026, 3, 28, 12), [_utc(2026, 3, 29, 1, 0), _utc(2026, 3, 30, 0, 30)]),
])
def test_cron_runs_once_a_day_on_daylight_saving_days(zone: str, after: datetime,
                                                       expected: list[datetime]) -> None:
    expression = "cron(30 1 * * *)" if after.month == 10 else "cron(30 2 * * *)"
    when = cadence(expression, zone, ANCHOR)
    first = when.next_after(after)
    assert [first, when.next_after(first)] == expected


def test_a_rate_counts_from_its_anchor_in_utc_whatever_the_clocks_do() -> None:
    when = cadence("rate(6 hours)", "Europe/Berlin", ANCHOR)
    assert when.next_after(_utc(2026, 3, 29, 0, 30)) == _utc(2026, 3, 29, 6, 0)
    assert when.next_after(_utc(2025, 6, 1)) == _utc(2026, 1, 1)  # not before the anchor


def test_catch_up_runs_the_latest_slot_once_and_counts_the_rest() -> None:
    hourly = cadence("cron(0 * * * *)", "UTC", ANCHOR)
    assert catch_up(hourly, _utc(2026, 5, 4, 9), _utc(2026, 5, 4, 9, 0, 4)) == (
        _utc(2026, 5, 4, 9), _utc(2026, 5, 4, 10), 0)
    assert catch_up(hourly, _utc(2026, 5, 4, 9), _utc(2026, 5, 4, 13, 20)) == (
        _utc(2026, 5, 4, 13), _utc(2026, 5, 4, 14), 4)
    slot, following, missed = catch_up(hourly, _utc(2026, 1, 1), _utc(2026, 6, 1, 0, 30))
    assert missed == MAX_MISSED_COUNTED  # counting stops; the next run is still after now
    assert following == _utc(2026, 6, 1, 1)
    assert slot == _utc(2026, 1, 1) + timedelta(hours=MAX_MISSED_COUNTED)


@pytest.mark.parametrize(("expression", "zone"), [
    ("cron(30 2 * *)", "UTC"), ("cron(0 25 * * *)", "UTC"), ("rate(0 hours)", "UTC"),
    ("rate(30 minutes)", "UTC"), ("cron(0,30 * * * *)", "UTC"), ("at(2026-01-01T00:00)", "UTC"),
    ("cron(0 2 * * *)", "Europe/Atlantis"),
])
def test_what_cannot_be_used_is_refused_with_a_reason(expression: str, zone: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        cadence(expression, zone, ANCHOR)
    assert str(refused.value)
