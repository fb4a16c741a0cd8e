"""The dispatcher function's logic: one tick at the time of the EventBridge event that woke it
(the rule fires every minute; the event's `time` is the tick, so a late or retried invocation
still dispatches what was due at its tick, and nothing later)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dataport.errors import InvalidRequest
from dataport.observability import logger
from dataport.schedule_store import ScheduleStore
from dataport.schedules.dispatch import BackupLauncher, RoleCheck, TickReport, tick
from dataport.scheduling.launcher import AdminKeys, backups_launcher
from dataport.settings import get_settings


def event_time(event: Mapping[str, Any]) -> datetime:
    """The `time` of an EventBridge scheduled event (ISO 8601, UTC)."""
    value = event.get("time") if isinstance(event, Mapping) else None
    try:
        instant = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest("The event has no valid `time`.") from None
    if instant.tzinfo is None:
        raise InvalidRequest("The event's `time` has no time zone.")
    return instant.astimezone(UTC)


def run(now: datetime, lambda_context: Any = None, *, launcher: BackupLauncher | None = None,
        roles: RoleCheck | None = None) -> TickReport:
    reserve = get_settings().worker_reserve_ms

    def time_left() -> bool:
        return lambda_context is None or \
            lambda_context.get_remaining_time_in_millis() > reserve

    report = tick(now, ScheduleStore(), launcher or backups_launcher(lambda_context),
                  roles or AdminKeys(),
                  time_left=time_left)
    logger.info("dispatcher tick", extra={"tick": now.isoformat(), "due": report.due,
                                          "claimed": report.claimed, "lost": report.lost,
                                          "outcomes": report.outcomes,
                                          "unfinished": report.unfinished})
    return report
