"""/backup-schedules over HTTP on the local stack: make, list, show, change, pause, resume and
delete; validation; isolation; instance scope needs an administrator with an admin key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataport.scheduling.routes import MAX_SCHEDULES
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api
from tests.schedules.support import create, show, utc

OTHER_USER = "66ad9b005f2b4a0012c0bbbb"
ADMIN = "66ad9b005f2b4a0012c0cccc"


@pytest.fixture
def api(fresh_stack: LocalStack) -> Api:
    return Api(fresh_stack, seed.DEMO_USER_ID)


def test_a_schedule_shows_its_next_run_in_its_time_zone(api: Api) -> None:
    api.stack.clock.set(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    created = create(api, name="nightly", schedule={"expression": "cron(30 2 * * *)",
                                                    "timezone": "Europe/Berlin"},
                     type="incremental", fullEvery=7,
                     retention={"keepLast": 14, "keepDays": 30})
    # 02:30 does not exist in Berlin on 2026-03-29: the run is right after the change, 03:00 CEST
    assert utc(created["nextRunAt"]) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert created["schedule"] == {"expression": "cron(30 2 * * *)", "timezone": "Europe/Berlin"}
    assert created["retention"] == {"keepLast": 14, "keepDays": 30}
    assert created["paused"] is False
    assert created["lastRuns"] == []
    assert created["links"]["self"] == f"/backup-schedules/{created['scheduleId']}"
    assert show(api, created["scheduleId"]) == created


@pytest.mark.parametrize(("body", "field"), [
    ({"schedule": {"expression": "cron(30 2 * *)"}}, "schedule"),
    ({"schedule": {"expression": "cron(61 2 * * *)"}}, "schedule"),
    ({"schedule": {"expression": "every day"}}, "schedule"),
    ({"schedule": {"expression": "cron(30 2 * * *)", "timezone": "Mars/Olympus"}}, "schedule"),
    ({"schedule": {"expression": "rate(5 minutes)"}}, "schedule"),
    ({"schedule": {"expression": "cron(*/10 * * * *)"}}, "schedule"),
])
def test_an_unusable_schedule_is_refused_with_what_to_write(api: Api, body: dict[str, object],
                                                            field: str) -> None:
    answer = api.request("POST", "/backup-schedules",
                         json={"name": "nightly", "retention": {"keepLast": 3}, **body})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field
    assert api.request("GET", "/backup-schedules").json()["schedules"] == []


@pytest.mark.parametrize("body", [
    {"retention": {}},
    {"retention": {"keepLast": 0}},
    {"type": "incremental"},
    {"type": "full", "fullEvery": 3},
    {"name": "x"},
    {"name": "   "},
    {"name": "  ab "},
    {"name": "semi;colon"},
    {"scope": "everyone"},
    {"unknown": 1},
    {"password": "short"},
    {"password": 12345678},
])
def test_a_malformed_request_is_400_naming_the_field(api: Api, body: dict[str, object]) -> None:
    answer = api.request("POST", "/backup-schedules", json={
        "name": "nightly", "schedule": {"expression": "rate(1 day)"},
        "retention": {"keepLast": 3}, **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    assert answer.json()["error"]["details"]


def test_pause_resume_change_and_delete(api: Api) -> None:
    api.stack.clock.set(datetime(2026, 6, 1, 10, 20, tzinfo=UTC))
    created = create(api, schedule={"expression": "rate(6 hours)"})
    schedule_id = created["scheduleId"]
    assert utc(created["nextRunAt"]) == datetime(2026, 6, 1, 16, 20, tzinfo=UTC)

    paused = api.request("PATCH", f"/backup-schedules/{schedule_id}", json={"paused": True})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    assert paused.json().get("nextRunAt") is None

    api.stack.clock.set(datetime(2026, 6, 2, 9, 0, tzinfo=UTC))
    resumed = api.request("PATCH", f"/backup-schedules/{schedule_id}",
                          json={"paused": False, "name": "every six hours",
                                "retention": {"keepDays": 10}}).json()
    # counted from the anchor (creation), first after now: what was missed is not made up
    assert utc(resumed["nextRunAt"]) == datetime(2026, 6, 2, 10, 20, tzinfo=UTC)
    assert resumed["name"] == "every six hours"
    assert resumed["retention"] == {"keepLast": None, "keepDays": 10}

    moved = api.request("PATCH", f"/backup-schedules/{schedule_id}", json={
        "schedule": {"expression": "cron(0 22 * * 1-5)", "timezone": "America/New_York"}}).json()
    assert utc(moved["nextRunAt"]) == datetime(2026, 6, 3, 2, 0, tzinfo=UTC)  # Tue 22:00 EDT

    for bad in ({}, {"name": None}, {"fullEvery": 4}, {"paused": "soon"}):
        refused = api.request("PATCH", f"/backup-schedules/{schedule_id}", json=bad)
        assert refused.status_code == 400, (bad, refused.text)
    assert show(api, schedule_id)["name"] == "every six hours"

    assert api.request("DELETE", f"/backup-schedules/{schedule_id}").status_code == 204
    assert api.request("GET", f"/backup-schedules/{schedule_id}").status_code == 404
    assert api.request("DELETE", f"/backup-schedules/{schedule_id}").status_code == 404


def test_schedules_are_their_owners_alone_and_listed_in_pages(api: Api) -> None:
    made = [create(api, name=f"schedule {n}", schedule={"expression": "rate(1 day)"})
            for n in range(3)]
    intruder = Api(api.stack, OTHER_USER)
    schedule_id = made[0]["scheduleId"]
    assert intruder.request("GET", f"/backup-schedules/{schedule_id}").status_code == 404
    assert intruder.request("PATCH", f"/backup-schedules/{schedule_id}",
                            json={"paused": True}).status_code == 404
    assert intruder.request("DELETE", f"/backup-schedules/{schedule_id}").status_code == 404
    assert intruder.request("GET", "/backup-schedules").json()["schedules"] == []
    assert show(api, schedule_id)["paused"] is False

    first = api.request("GET", "/backup-schedules", params={"limit": 2}).json()
    assert len(first["schedules"]) == 2
    rest = api.request("GET", "/backup-schedules",
                       params={"limit": 2, "nextToken": first["nextToken"]}).json()
    listed = [s["scheduleId"] for s in first["schedules"] + rest["schedules"]]
    assert sorted(listed) == sorted(m["scheduleId"] for m in made)
    stolen = intruder.request("GET", "/backup-schedules",
                              params={"nextToken": first["nextToken"]})
    assert stolen.status_code == 400


def test_a_user_has_at_most_so_many_schedules(api: Api) -> None:
    for n in range(MAX_SCHEDULES):
        create(api, name=f"schedule {n}", schedule={"expression": "rate(1 day)"})
    answer = api.request("POST", "/backup-schedules", json={
        "name": "one more", "schedule": {"expression": "rate(1 day)"},
        "retention": {"keepLast": 1}})
    assert answer.status_code == 409
    assert answer.json()["error"]["details"]["limit"] == MAX_SCHEDULES


def test_instance_scope_needs_an_administrator_holding_an_admin_key(api: Api) -> None:
    body = {"name": "whole instance", "schedule": {"expression": "rate(1 day)"},
            "scope": "instance", "retention": {"keepLast": 3}}
    refused = api.request("POST", "/backup-schedules", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"

    admin = Api(api.stack, ADMIN, admin=True)
    no_key = admin.request("POST", "/backup-schedules", json=body)
    assert no_key.status_code == 403
    assert no_key.json()["error"]["code"] == "admin_key_required"

    key = admin.request("POST", "/api-keys", json={"name": "schedules", "role": "admin"})
    assert key.status_code == 201, key.text
    made = admin.request("POST", "/backup-schedules", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["scope"] == "instance"
    assert api.request("GET", f"/backup-schedules/{made.json()['scheduleId']}").status_code == 404


def test_a_name_is_kept_without_the_spaces_around_it_in_any_script(api: Api) -> None:
    """Schedules and backups take the same names: 3-100 letters of any script, digits,
    spaces, `-` and `_`, counted and kept once the spaces around them are stripped."""
    made = api.request("POST", "/backup-schedules", json={
        "name": "  Nächtliche Sicherung 夜間 ", "schedule": {"expression": "rate(1 day)"},
        "retention": {"keepLast": 3}})
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "Nächtliche Sicherung 夜間"
    renamed = api.request("PATCH", f"/backup-schedules/{made.json()['scheduleId']}",
                          json={"name": " weekly-2 "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "weekly-2"
    backup = api.request("POST", "/backups", json={"name": "  Ünïcødé 名前  "})
    assert backup.status_code == 202, backup.text
    assert api.request("GET", f"/backups/{backup.json()['backupId']}").json()["name"] == (
        "Ünïcødé 名前")
