"""When a schedule fires: a cron expression read in an IANA time zone, or a fixed rate.

Cron is evaluated by `cronsim` on wall-clock time in the schedule's zone, with Debian cron's
daylight-saving rules: a fixed time that does not exist on the day the clocks go forward runs
once, right after the change (02:30 in Europe/Berlin on 2026-03-29 runs at 03:00 CEST), and a
fixed time that happens twice when they go back runs once, at its first occurrence. Rates are
counted from the schedule's anchor (its creation), in UTC, and do not move with the clocks.

Every instant that leaves this module is an aware UTC datetime on a whole minute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

#: the shortest time between two runs a schedule may ask for (a backup every minute would be
#: a denial of service against the database, not a backup policy)
MIN_INTERVAL = timedelta(hours=1)
#: consecutive runs checked against MIN_INTERVAL when an expression is accepted
_INTERVALS_CHECKED = 48
#: a catch-up after a long outage counts at most this many missed slots (it fires once anyway)
MAX_MISSED_COUNTED = 1000

_CRON = re.compile(r"^cron\((?P<fields>[^()]+)\)$")
_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]{0,4}) (?P<unit>minutes?|hours?|days?)\)$")
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


class InvalidSchedule(ValueError):
    """The expression or the time zone cannot be used; the message says why and how to fix it."""


class Cadence(Protocol):
    def next_after(self, instant: datetime) -> datetime:
        """The first run strictly after `instant` (aware), in UTC."""


@dataclass(frozen=True)
class CronCadence:
    fields: str
    zone: ZoneInfo

    def next_after(self, instant: datetime) -> datetime:
        return next(self._runs(instant))

    def _runs(self, instant: datetime) -> Iterator[datetime]:
        for local in CronSim(self.fields, instant.astimezone(self.zone)):
            yield local.astimezone(UTC)


@dataclass(frozen=True)
class RateCadence:
    every: timedelta
    anchor: datetime

    def next_after(self, instant: datetime) -> datetime:
        if instant < self.anchor:
            return self.anchor
        steps = (instant - self.anchor) // self.every + 1
        return self.anchor + steps * self.every


def cadence(expression: str, timezone: str, anchor: datetime) -> CronCadence | RateCadence:
    """The cadence of `cron(<5 fields>)` in `timezone`, or of `rate(<n> minutes|hours|days)`
    counted from `anchor`; InvalidSchedule when either cannot be used or fires more often than
    MIN_INTERVAL allows."""
    zone = _zone(timezone)
    found: CronCadence | RateCadence
    if (cron := _CRON.match(expression.strip())) is not None:
        fields = " ".join(cron["fields"].split())
        if len(fields.split(" ")) != 5:
            raise InvalidSchedule("A cron expression has five fields: minute hour day-of-month "
                                  "month day-of-week, e.g. cron(30 2 * * *).")
        try:
            CronSim(fields, datetime(2026, 1, 1, tzinfo=zone))
        except CronSimError as error:
            raise InvalidSchedule(f"The cron expression is not valid: {error}.") from None
        found = CronCadence(fields, zone)
    elif (rate := _RATE.match(expression.strip())) is not None:
        every = int(rate["value"]) * _UNITS[rate["unit"].rstrip("s")]
        found = RateCadence(every, whole_minute(anchor))
    else:
        raise InvalidSchedule("The schedule is `cron(<minute> <hour> <day> <month> <weekday>)` "
                              "(read in the schedule's time zone) or `rate(<n> minutes|hours|"
                              "days)`, e.g. cron(30 2 * * *) or rate(12 hours).")
    _check_interval(found, anchor)
    return found


def catch_up(cadence: Cadence, due: datetime, now: datetime) -> tuple[datetime, datetime, int]:
    """For a schedule due at `due` (<= now): the slot to run now (the latest one not after
    `now`), the next run after `now`, and how many earlier slots that one run stands for
    (0 when the dispatcher was on time). A schedule that missed a day of hourly slots runs once
    on recovery, not 24 times. After MAX_MISSED_COUNTED slots (weeks of outage at the shortest
    interval) counting stops: the slot is then the last one counted."""
    slot, missed = due, 0
    following = cadence.next_after(slot)
    while following <= now and missed < MAX_MISSED_COUNTED:
        slot, following = following, cadence.next_after(following)
        missed += 1
    if following <= now:
        following = cadence.next_after(now)
    return slot, following, missed


def whole_minute(instant: datetime) -> datetime:
    """`instant` in UTC with seconds dropped (runs are scheduled to the minute)."""
    return instant.astimezone(UTC).replace(second=0, microsecond=0)


def upcoming(cadence: Cadence, after: datetime, count: int) -> list[datetime]:
    runs, instant = [], after
    for _ in range(count):
        instant = cadence.next_after(instant)
        runs.append(instant)
    return runs


def _walk(cadence: Cadence, after: datetime) -> Iterator[datetime]:
    instant = after
    while True:
        instant = cadence.next_after(instant)
        yield instant


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"Unknown time zone {name!r}: use an IANA name such as "
                              "Europe/Berlin, America/New_York or UTC.") from None


def _check_interval(found: Cadence, anchor: datetime) -> None:
    runs = list(islice(_walk(found, anchor), _INTERVALS_CHECKED))
    if any(later - earlier < MIN_INTERVAL for earlier, later in pairwise(runs)):
        raise InvalidSchedule("Backups may run at most once an hour; choose a schedule whose "
                              "runs are at least an hour apart.")
