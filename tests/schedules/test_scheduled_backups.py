"""Schedules end to end: the dispatcher's rule, fired by the local stack's clock, starts real
backups (POST /backups' own start, the export ASL, the catalog) as the schedule's owner; an
incremental schedule builds its chains; the retention sweep then expires the older chain whole
and its objects with it."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests

from dataport.backups.format import BackupContainer, PasswordRequired
from dataport.settings import get_settings
from dataport.workflows.export import write_session
from tests.e2e.api_client import Api, backup_ended, seeded_dataset
from tests.e2e.restore_client import Restorer
from tests.fixtures.faults import EXPORT_WORKER, export_worker
from tests.infrastructure.iam import assert_calls_allowed
from tests.schedules.support import create, show

DB_NAME = "dataport_scheduled_backups"


dataset = seeded_dataset(DB_NAME, sessions_per_project=2)



def _next_run(api: Api, schedule_id: str) -> dict[str, Any]:
    """Advance the clock an hour (the rule ticks every 30 minutes on the way), then the run
    that fired, once its backup has ended."""
    fired = api.stack.clock.advance(timedelta(hours=1), tick=timedelta(minutes=30))
    assert [f.error for f in fired if f.error] == []
    run: dict[str, Any] = show(api, schedule_id)["lastRuns"][0]
    assert run["backupId"], run
    backup_ended(api, run["backupId"])
    return dict(show(api, schedule_id)["lastRuns"][0])


def test_an_incremental_schedule_takes_real_backups_and_retention_keeps_the_newest_chain(
        api: Api) -> None:
    api.stack.clock.set(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    schedule_id = create(api, name="hourly", schedule={"expression": "rate(1 hour)"},
                         type="incremental", fullEvery=2,
                         retention={"keepLast": 1})["scheduleId"]

    runs = [_next_run(api, schedule_id) for _ in range(3)]
    assert [r["outcome"] for r in runs] == ["completed"] * 3
    assert [(r["backupType"], r.get("parentId")) for r in runs] == [
        ("full", None), ("incremental", runs[0]["backupId"]), ("full", None)]
    backups = [backup_ended(api, r["backupId"]) for r in runs]
    assert {b["scheduleId"] for b in backups} == {schedule_id}
    assert [b["type"] for b in backups] == ["full", "incremental", "full"]
    assert backups[1]["parentId"] == backups[0]["backupId"]
    assert all(b["name"].startswith("hourly ") for b in backups)
    assert backups[0]["counts"]["sessions"] > 0

    # keepLast 1: the newest (a full backup) stays; the first chain goes whole
    swept = api.stack.clock.fire("RetentionSweepFunction")
    assert swept.error is None
    assert swept.result["expired"] == 2
    statuses = [backup_ended(api, b["backupId"])["status"] for b in backups]
    assert statuses == ["expired", "expired", "completed"]
    assert api.request("GET", f"/backups/{backups[2]['backupId']}/download").status_code == 302
    assert_calls_allowed(api.stack)


def test_a_run_is_skipped_while_the_backup_of_the_previous_one_still_runs(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:  # the real writer, once the test lets it
        assert release.wait(60)
        return write_session(*args, **kwargs)

    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(held))
    api.stack.clock.set(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    schedule_id = create(api, name="hourly", schedule={"expression": "rate(1 hour)"})[
        "scheduleId"]
    clock = api.stack.clock
    try:
        assert not [f for f in clock.advance(timedelta(hours=1), tick=timedelta(minutes=30))
                    if f.error]
        first = show(api, schedule_id)["lastRuns"][0]
        assert first["outcome"] == "running"
        assert not [f for f in clock.advance(timedelta(hours=1), tick=timedelta(minutes=30))
                    if f.error]
        skipped = show(api, schedule_id)["lastRuns"][0]
        assert (skipped["outcome"], skipped["reason"]) == ("skipped", "previous_run_active")
        assert skipped["backupId"] == first["backupId"]
    finally:
        release.set()
    assert backup_ended(api, first["backupId"])["status"] == "completed"
    third = _next_run(api, schedule_id)
    assert third["outcome"] == "completed"
    assert third["backupId"] != first["backupId"]
    listed = api.request("GET", "/backups", params={"limit": 10}).json()["backups"]
    assert sorted(b["backupId"] for b in listed) == sorted([first["backupId"],
                                                            third["backupId"]])


def test_an_encrypted_schedule_makes_encrypted_backups_that_restore_with_its_password(
        api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    password = "sch3dule-Secret-pw"
    api.stack.clock.set(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    created = create(api, name="sealed nightly", schedule={"expression": "rate(1 hour)"},
                     type="incremental", fullEvery=3, password=password)
    schedule_id = created["scheduleId"]
    assert created["encrypted"] is True
    assert "password" not in created

    runs = [_next_run(api, schedule_id) for _ in range(2)]  # a full backup, an increment
    assert [r["outcome"] for r in runs] == ["completed"] * 2, runs
    assert runs[1]["parentId"] == runs[0]["backupId"]
    for run in runs:
        with BackupContainer(_stored(api, run["backupId"])) as backup, \
                pytest.raises(PasswordRequired):
            _ = backup.manifest
        with BackupContainer(_stored(api, run["backupId"]), password) as backup:
            assert backup.manifest.encryption == "aes-256"

    # the chain restores with the password, and only with it
    restorer = Restorer(api)
    refused = restorer.run(backupId=runs[1]["backupId"], mode="merge", dryRun=True)
    assert refused["status"] == "failed", refused
    restored = restorer.run(backupId=runs[1]["backupId"], mode="merge", dryRun=True,
                            password=password)
    assert restored["status"] == "succeeded", restored
    assert restored["report"]["counts"]["sessions"] > 0

    # never shown, never stored or logged in the clear
    answers = [api.request("GET", f"/backup-schedules/{schedule_id}").text,
               api.request("GET", "/backup-schedules").text]
    rows = boto3.resource("dynamodb").Table(get_settings().schedules_table).scan()["Items"]
    assert password not in "".join(answers) + repr(rows) + "".join(capfd.readouterr())
    assert json.loads(answers[0])["encrypted"] is True

    # null removes it: the next run begins a new, plain chain
    patched = api.request("PATCH", f"/backup-schedules/{schedule_id}", json={"password": None})
    assert patched.status_code == 200, patched.text
    assert patched.json()["encrypted"] is False
    plain = _next_run(api, schedule_id)
    assert (plain["outcome"], plain["backupType"]) == ("completed", "full")
    with BackupContainer(_stored(api, plain["backupId"])) as backup:
        assert backup.manifest.encryption is None
    assert_calls_allowed(api.stack)


def _stored(api: Api, backup_id: str) -> io.BytesIO:
    """The backup's stored object, fetched through its download link."""
    answer = api.request("GET", f"/backups/{backup_id}/download")
    assert answer.status_code == 302, answer.text
    return io.BytesIO(requests.get(answer.headers["Location"], timeout=30).content)
