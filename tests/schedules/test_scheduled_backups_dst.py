"""A daily schedule in a non-UTC time zone, end to end across a daylight-saving change: the
dispatcher's rule, fired by the local stack's advanced clock, starts REAL backups (POST
/backups' own start, the export ASL, the catalog) through the real launcher, one completed
backup per local day at the UTC instant the zone's rules give, listed with the schedule's id.
(tests/schedules/test_dispatcher.py covers the same days with a launcher that starts none.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.api_client import Api, backup_ended, seeded_dataset
from tests.infrastructure.iam import assert_calls_allowed
from tests.schedules.support import create, show, utc

DB_NAME = "dataport_scheduled_backups_dst"

dataset = seeded_dataset(DB_NAME, sessions_per_project=2)


@pytest.mark.parametrize(("schedule", "start", "expected"), [
    # New York springs forward on 8 March 2026 (02:00 EST -> 03:00 EDT): 06:00 exists on both
    # sides and moves from 11:00 to 10:00 UTC
    ({"expression": "cron(0 6 * * *)", "timezone": "America/New_York"},
     datetime(2026, 3, 6, 12, tzinfo=UTC),
     [datetime(2026, 3, 7, 11, tzinfo=UTC), datetime(2026, 3, 8, 10, tzinfo=UTC),
      datetime(2026, 3, 9, 10, tzinfo=UTC)]),
    # Berlin springs forward on 29 March: 02:30 does not exist that day; it runs at 03:00 CEST
    ({"expression": "cron(30 2 * * *)", "timezone": "Europe/Berlin"},
     datetime(2026, 3, 27, 12, tzinfo=UTC),
     [datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
      datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]),
    # Berlin falls back on 25 October: 02:30 happens twice; one backup, at the first (CEST)
    ({"expression": "cron(30 2 * * *)", "timezone": "Europe/Berlin"},
     datetime(2026, 10, 23, 12, tzinfo=UTC),
     [datetime(2026, 10, 24, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
      datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]),
], ids=["new-york-spring-forward", "berlin-skipped-hour", "berlin-repeated-hour"])
def test_a_daily_schedule_makes_one_real_backup_a_local_day_across_a_dst_change(
        api: Api, schedule: dict[str, str], start: datetime, expected: list[datetime]) -> None:
    zone = ZoneInfo(schedule["timezone"])
    clock = api.stack.clock
    clock.set(start)
    schedule_id = create(api, name="nightly", schedule=schedule)["scheduleId"]

    for day in range(len(expected)):  # a day at a time: each day's backup ends before the next
        fired = clock.advance(timedelta(days=1), tick=timedelta(minutes=30))
        assert fired
        assert [f.error for f in fired if f.error] == []
        runs = show(api, schedule_id)["lastRuns"]
        assert len(runs) == day + 1, runs  # exactly one run that day (the repeated hour too)
        assert runs[0]["backupId"], runs[0]
        assert backup_ended(api, runs[0]["backupId"])["status"] == "completed"

    shown = show(api, schedule_id)
    runs = list(reversed(shown["lastRuns"]))  # oldest first
    assert [utc(run["slot"]) for run in runs] == expected
    assert [run["firedAt"] for run in runs] == [run["slot"] for run in runs]  # on time
    assert [run["outcome"] for run in runs] == ["completed"] * len(expected)
    assert [run["backupType"] for run in runs] == ["full"] * len(expected)
    assert utc(shown["nextRunAt"]) == _next_local_day(expected[-1], schedule, zone)

    listed = api.request("GET", "/backups", params={"limit": 50}).json()["backups"]
    made = sorted((b for b in listed if b.get("scheduleId") == schedule_id),
                  key=lambda b: b["name"])
    assert [b["backupId"] for b in made] == [run["backupId"] for run in runs]
    assert {b["status"] for b in made} == {"completed"}
    assert all(b["counts"]["sessions"] > 0 for b in made)
    # one per local day, named by its local time (the skipped hour's run by the time it ran)
    local = [slot.astimezone(zone) for slot in expected]
    assert len({moment.date() for moment in local}) == len(expected)
    assert [b["name"] for b in made] == [f"nightly {moment:%Y-%m-%d %H%M}" for moment in local]
    dst_day = runs[1]["backupId"]
    verified = api.request("POST", f"/backups/{dst_day}/verify")
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True
    assert_calls_allowed(api.stack)


def _next_local_day(last: datetime, schedule: dict[str, str], zone: ZoneInfo) -> datetime:
    """The schedule's local time on the day after `last`'s local day, in UTC (no change
    falls on these days)."""
    minute, hour = (int(part) for part in schedule["expression"][5:].split()[:2])
    day = last.astimezone(zone).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)
