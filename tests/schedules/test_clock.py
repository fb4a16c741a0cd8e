"""The local stack's clock on its own: which rules of template.yaml it fires, when, with what
event; the real-time follower `make local` runs."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from infrastructure.local.clock import LocalClock
from tests.fixtures.environment import template

T0 = datetime(2026, 3, 29, 0, 58, 30, tzinfo=UTC)


def _clock() -> tuple[LocalClock, list[tuple[str, dict[str, Any]]]]:
    invoked: list[tuple[str, dict[str, Any]]] = []

    def invoke(function: str, event: Any) -> Any:
        invoked.append((function, event))
        return {"ok": True}

    return LocalClock(template().functions(), invoke, "us-east-1", "123456789012",
                      "dataport-local"), invoked


def test_advance_fires_each_rule_at_its_ticks_with_eventbridges_event() -> None:
    clock, invoked = _clock()
    clock.set(T0)
    fired = clock.advance(timedelta(hours=1, minutes=3))
    assert clock.now() == T0 + timedelta(hours=1, minutes=3)
    dispatcher = [f.at for f in fired if f.function == "ScheduleDispatcherFunction"]
    assert dispatcher == [datetime(2026, 3, 29, 0, 59, tzinfo=UTC) + timedelta(minutes=n)
                          for n in range(63)]
    assert [f.at for f in fired if f.function == "RetentionSweepFunction"] == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 29, 2, 0, tzinfo=UTC)]
    assert {f.function for f in fired} == {"ScheduleDispatcherFunction",
                                           "RetentionSweepFunction"}
    event = invoked[0][1]
    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["time"] == "2026-03-29T00:59:00Z"


def test_a_coarser_tick_crosses_days_quickly_and_never_fires_a_rule_more_often() -> None:
    clock, _ = _clock()
    clock.set(T0)
    fired = clock.advance(timedelta(days=1), tick=timedelta(minutes=30))
    assert len([f for f in fired if f.function == "ScheduleDispatcherFunction"]) == 48
    assert len([f for f in fired if f.function == "RetentionSweepFunction"]) == 24


def test_an_error_is_reported_not_raised() -> None:
    def broken(function: str, event: Any) -> Any:
        raise RuntimeError("boom")

    clock = LocalClock(template().functions(), broken, "us-east-1", "1", "s")
    clock.set(T0)
    fired = clock.fire("ScheduleDispatcherFunction")
    assert isinstance(fired.error, RuntimeError)
    assert fired.at == T0


def test_follow_fires_the_ticks_time_passes() -> None:
    clock, invoked = _clock()
    clock.set(T0)
    stop = threading.Event()
    follower = threading.Thread(target=clock.follow, args=(stop, 0.01))
    follower.start()
    try:
        time.sleep(0.05)
        clock.set(T0 + timedelta(minutes=3))
        deadline = time.monotonic() + 10
        while len(invoked) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        follower.join(5)
    assert [(function, event["time"]) for function, event in invoked] == [
        ("ScheduleDispatcherFunction", "2026-03-29T00:59:00Z"),
        ("ScheduleDispatcherFunction", "2026-03-29T01:00:00Z"),
        ("RetentionSweepFunction", "2026-03-29T01:00:00Z"),
        ("ScheduleDispatcherFunction", "2026-03-29T01:01:00Z")]
