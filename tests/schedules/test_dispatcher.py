"""The dispatcher on the local stack: its EventBridge rule fired by the stack's clock, real
DynamoDB claims. Daylight-saving days in Europe/Berlin, pause and resume, overlap, a missed
window, two dispatchers at once, incremental chains, and the owner's role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dataport.schedule_store import ScheduleStore
from dataport.schedules.dispatch import Dispatcher
from dataport.scheduling.launcher import AdminKeys
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api
from tests.infrastructure.iam import assert_calls_allowed
from tests.schedules.support import DISPATCHER, RecordingLauncher, create, dispatch_with, show, utc

ADMIN = "66ad9b005f2b4a0012c0cccc"
BERLIN_DAILY = {"expression": "cron(30 2 * * *)", "timezone": "Europe/Berlin"}


@pytest.fixture
def launcher(fresh_stack: LocalStack) -> RecordingLauncher:
    recording = RecordingLauncher()
    dispatch_with(fresh_stack, recording)
    return recording


@pytest.fixture
def api(fresh_stack: LocalStack) -> Api:
    return Api(fresh_stack, seed.DEMO_USER_ID)


def _runs(api: Api, schedule_id: str) -> list[dict[str, Any]]:
    """The schedule's runs, oldest first."""
    return list(reversed(show(api, schedule_id)["lastRuns"]))


def _slots(runs: list[dict[str, Any]]) -> list[datetime]:
    return [utc(run["slot"]) for run in runs]


def _ticks_ok(fired: list[Any]) -> None:
    assert fired, "the clock fired no rule"
    assert [f for f in fired if f.error] == []


@pytest.mark.parametrize(("start", "expected"), [
    # spring forward: 02:30 does not exist on the 29th; that day's run is at 03:00 CEST
    (datetime(2026, 3, 27, 12, tzinfo=UTC),
     [datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
      datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]),
    # fall back: 02:30 happens twice on the 25th; it runs once, at the first (CEST) one
    (datetime(2026, 10, 23, 12, tzinfo=UTC),
     [datetime(2026, 10, 24, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
      datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]),
])
def test_a_daily_run_happens_once_a_day_across_daylight_saving_changes(
        api: Api, launcher: RecordingLauncher, start: datetime, expected: list[datetime]) -> None:
    api.stack.clock.set(start)
    schedule_id = create(api, schedule=BERLIN_DAILY)["scheduleId"]
    _ticks_ok(api.stack.clock.advance(timedelta(days=3), tick=timedelta(minutes=30)))

    runs = _runs(api, schedule_id)
    assert _slots(runs) == expected
    assert [r["firedAt"] for r in runs] == [r["slot"] for r in runs]  # on time, not late
    assert [r["missed"] for r in runs] == [0, 0, 0]
    assert [(b.type, b.owner_id, b.scope) for b in launcher.started] == \
        [("full", seed.DEMO_USER_ID, "user")] * 3
    assert len({b.run_key for b in launcher.started}) == 3
    assert utc(show(api, schedule_id)["nextRunAt"]) == expected[-1] + timedelta(days=1)
    assert_calls_allowed(api.stack)


def test_every_minute_the_dispatcher_fires_on_the_minute(api: Api,
                                                         launcher: RecordingLauncher) -> None:
    api.stack.clock.set(datetime(2026, 3, 29, 0, 55, 30, tzinfo=UTC))
    schedule_id = create(api, schedule=BERLIN_DAILY)["scheduleId"]
    fired = api.stack.clock.advance(timedelta(minutes=10))
    _ticks_ok(fired)
    assert [f.at.minute for f in fired if f.function == DISPATCHER] == list(range(56, 60)) + \
        list(range(6))
    assert _slots(_runs(api, schedule_id)) == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]


def test_a_paused_schedule_does_not_run_and_resumes_without_making_up(
        api: Api, launcher: RecordingLauncher) -> None:
    clock = api.stack.clock
    clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))
    schedule_id = create(api, schedule={"expression": "rate(1 hour)"})["scheduleId"]
    _ticks_ok(clock.advance(timedelta(hours=1)))
    assert len(_runs(api, schedule_id)) == 1

    assert api.request("PATCH", f"/backup-schedules/{schedule_id}",
                       json={"paused": True}).status_code == 200
    _ticks_ok(clock.advance(timedelta(hours=4), tick=timedelta(minutes=10)))
    assert len(_runs(api, schedule_id)) == 1

    resumed = api.request("PATCH", f"/backup-schedules/{schedule_id}",
                          json={"paused": False}).json()
    assert utc(resumed["nextRunAt"]) == datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
    _ticks_ok(clock.advance(timedelta(hours=2), tick=timedelta(minutes=10)))
    runs = _runs(api, schedule_id)
    assert _slots(runs) == [datetime(2026, 5, 4, h, 0, tzinfo=UTC) for h in (9, 14, 15)]
    assert [r["missed"] for r in runs] == [0, 0, 0]
    assert len(launcher.started) == 3


def test_a_run_is_skipped_and_recorded_while_the_previous_one_still_runs(
        api: Api, launcher: RecordingLauncher) -> None:
    launcher.finish = None  # backups keep running until the test says
    clock = api.stack.clock
    clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))
    schedule_id = create(api, schedule={"expression": "rate(1 hour)"})["scheduleId"]
    _ticks_ok(clock.advance(timedelta(hours=2), tick=timedelta(minutes=30)))
    launcher.complete_all()
    _ticks_ok(clock.advance(timedelta(hours=1), tick=timedelta(minutes=30)))

    runs = _runs(api, schedule_id)
    assert [(r["outcome"], r.get("reason")) for r in runs[1:2]] == \
        [("skipped", "previous_run_active")]
    assert runs[1]["backupId"] == runs[0]["backupId"]  # the one still running
    assert runs[2]["backupId"] != runs[0]["backupId"]
    assert runs[2]["outcome"] != "skipped"
    assert len(launcher.started) == 2


def test_a_missed_window_runs_once_on_recovery(api: Api, launcher: RecordingLauncher) -> None:
    clock = api.stack.clock
    clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))
    schedule_id = create(api, schedule={"expression": "rate(1 hour)"})["scheduleId"]
    # the dispatcher is down from 08:00 to 13:20: no tick fires in between
    clock.set(datetime(2026, 5, 4, 13, 20, tzinfo=UTC))
    _ticks_ok(clock.advance(timedelta(minutes=1)))

    (run,) = _runs(api, schedule_id)
    assert utc(run["dueAt"]) == datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    assert utc(run["slot"]) == datetime(2026, 5, 4, 13, 0, tzinfo=UTC)
    assert run["missed"] == 4
    assert len(launcher.started) == 1
    assert utc(show(api, schedule_id)["nextRunAt"]) == datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
    _ticks_ok(clock.advance(timedelta(minutes=30), tick=timedelta(minutes=10)))
    assert len(launcher.started) == 1


def test_two_dispatchers_at_once_fire_a_run_once(api: Api, launcher: RecordingLauncher) -> None:
    clock = api.stack.clock
    clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))
    schedule_id = create(api, schedule={"expression": "rate(1 hour)"})["scheduleId"]
    tick = datetime(2026, 5, 4, 9, 0, 2, tzinfo=UTC)

    # Two dispatchers read the due index at the same tick (an overlapping invocation, a
    # retried event), then both try to claim what they read: the claim's condition decides.
    store = ScheduleStore()
    first = Dispatcher(tick, store, launcher, AdminKeys())
    second = Dispatcher(tick, store, launcher, AdminKeys())
    seen_by_first = [r for shard in range(store.shards) for r in store.due(shard, tick)]
    seen_by_second = [r for shard in range(store.shards) for r in store.due(shard, tick)]
    assert [r.schedule_id for r in seen_by_first] == [schedule_id]
    assert seen_by_first == seen_by_second
    assert first.fire(seen_by_first[0]) is not None
    assert second.fire(seen_by_second[0]) is None
    assert (first.report.claimed, second.report.claimed, second.report.lost) == (1, 0, 1)

    # and the rule's own event delivered twice (EventBridge retries) changes nothing
    clock.set(tick)
    for _ in range(2):
        fired = clock.fire(DISPATCHER, tick)
        assert fired.error is None
        assert fired.result["claimed"] == 0
    assert len(_runs(api, schedule_id)) == 1
    assert len(launcher.started) == 1


def test_an_incremental_schedule_builds_chains_of_full_every_backups(
        api: Api, launcher: RecordingLauncher) -> None:
    clock = api.stack.clock
    clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))
    schedule_id = create(api, schedule={"expression": "rate(1 hour)"}, type="incremental",
                         fullEvery=3)["scheduleId"]
    _ticks_ok(clock.advance(timedelta(hours=7), tick=timedelta(minutes=30)))

    runs = _runs(api, schedule_id)
    ids = [r["backupId"] for r in runs]
    assert [(r["backupType"], r.get("parentId")) for r in runs] == [
        ("full", None), ("incremental", ids[0]), ("incremental", ids[1]),
        ("full", None), ("incremental", ids[3]), ("incremental", ids[4]),
        ("full", None)]
    assert [b.parent_id for b in launcher.started] == [r.get("parentId") for r in runs]


def test_a_failed_increment_is_not_a_parent(api: Api, launcher: RecordingLauncher) -> None:
    clock = api.stack.clock
    clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))
    schedule_id = create(api, schedule={"expression": "rate(1 hour)"}, type="incremental",
                         fullEvery=5)["scheduleId"]
    _ticks_ok(clock.advance(timedelta(hours=1)))
    launcher.finish = "failed"
    _ticks_ok(clock.advance(timedelta(hours=1), tick=timedelta(minutes=30)))
    launcher.finish = "completed"
    _ticks_ok(clock.advance(timedelta(hours=1), tick=timedelta(minutes=30)))
    runs = _runs(api, schedule_id)
    assert [r.get("parentId") for r in runs] == [None, runs[0]["backupId"],
                                                 runs[0]["backupId"]]


def test_a_run_that_cannot_start_is_recorded_failed_and_the_next_one_tries_again(
        api: Api, launcher: RecordingLauncher) -> None:
    clock = api.stack.clock
    clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))
    schedule_id = create(api, schedule={"expression": "rate(1 hour)"})["scheduleId"]
    launcher.refuse = True
    _ticks_ok(clock.advance(timedelta(hours=1)))
    launcher.refuse = False
    _ticks_ok(clock.advance(timedelta(hours=1), tick=timedelta(minutes=30)))
    runs = _runs(api, schedule_id)
    assert next((r["outcome"], r.get("reason")) for r in runs) == ("failed", "transient")
    assert runs[1]["backupId"]
    assert runs[1]["outcome"] != "failed"


def test_an_instance_schedule_runs_only_while_its_owner_holds_an_admin_key(
        fresh_stack: LocalStack, launcher: RecordingLauncher) -> None:
    admin = Api(fresh_stack, ADMIN, admin=True)
    clock = fresh_stack.clock
    clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))
    key = admin.request("POST", "/api-keys", json={"name": "schedules", "role": "admin"}).json()
    schedule_id = create(admin, name="whole instance", scope="instance",
                         schedule={"expression": "rate(1 hour)"})["scheduleId"]
    _ticks_ok(clock.advance(timedelta(hours=1)))
    assert admin.request("DELETE", f"/api-keys/{key['keyId']}").status_code == 200
    _ticks_ok(clock.advance(timedelta(hours=1), tick=timedelta(minutes=30)))

    runs = _runs(admin, schedule_id)
    assert runs[0]["backupId"]
    assert runs[0]["outcome"] != "refused"
    assert (runs[1]["outcome"], runs[1]["reason"]) == ("refused", "owner_not_admin")
    assert [(b.scope, b.owner_id) for b in launcher.started] == [("instance", ADMIN)]
    assert_calls_allowed(fresh_stack)
