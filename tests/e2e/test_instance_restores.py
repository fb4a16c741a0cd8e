"""Instance restores end to end on the local stack (real ASL: the restore machine's Distributed
Map starting the import machine once per user; real pymongo): an instance backup restored into
the instance gives every user their own data back under their own account, a dry run writes
nothing, a rollback puts every user back exactly, a damaged backup writes nothing; only an
administrator may do any of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from pymongo.database import Database

from dataport.backups.catalog import BackupCatalog
from dataport.bucket import packages_bucket
from dataport.models.backups import BackupStatus
from dataport.models.jobs import JobStatus
from dataport.progress.events import ProgressEvent, SnapshotEvent, SucceededEvent
from dataport.progress.throttle import MIN_INTERVAL_MS
from dataport.source.collections import PROJECTS
from dataport.source.mongo import Document
from infrastructure.local import seed
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_restores import add_session, content, diverge, forget, sessions_of
from tests.fixtures.faults import RESTORE_SHARDS, spaced_shard_counts
from tests.infrastructure.iam import assert_calls_allowed
from tests.restores.backups import flip_byte, of_instance, of_user

ADMIN = seed.DEMO_USER_ID


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_instance_restore",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def admin(fresh_stack: LocalStack) -> Restorer:
    return Restorer(Api(fresh_stack, ADMIN, admin=True))


def users_of(db: Database[Document]) -> list[str]:
    return sorted(str(user) for user in db[PROJECTS].distinct("user_id"))


def everyone(db: Database[Document]) -> dict[str, dict[str, Any]]:
    return {user: content(db, user) for user in users_of(db)}


def test_an_instance_backup_restored_in_full_gives_every_user_their_data_and_rolls_back(
        db: Database[Document], admin: Restorer) -> None:
    users = users_of(db)
    assert len(users) == 3  # the seed's users: one shard each
    at_backup = everyone(db)
    backup_id = store_backup(of_instance(db), ADMIN)
    first, second = (user for user in users if user != ADMIN)
    lost = sorted(at_backup[first])[0]
    forget(db, [lost])
    changed = sorted(at_backup[second])[0]
    diverge(db, changed)
    added = add_session(db, sorted(at_backup[ADMIN])[0])  # made after the backup: removed
    before = snapshot(db)

    body: dict[str, Any] = {"backupId": backup_id, "target": "instance", "mode": "full",
                            "conflicts": "overwrite"}
    dry = admin.run(**body, dryRun=True)
    assert dry["status"] == "succeeded", dry
    assert snapshot(db) == before  # a dry run writes nothing
    assert dry["targetUserId"] == "instance"
    assert len(dry["shards"]) == len(users)

    job = admin.run(**body, timeout=180)
    assert job["status"] == "succeeded", job
    assert everyone(db) == at_backup  # every user equal to the backup, under their account
    outcome = job["outcome"]
    assert outcome["sessions"]["inserted"] == 1  # the lost one
    assert outcome["sessions"]["replaced"] == 1  # the changed one
    assert outcome["sessions"]["removed"] == 1  # the one made after the backup
    assert added not in sessions_of(db, ADMIN)
    assert without(outcome, "dryRun", "startedAt", "finishedAt") == without(
        dry["outcome"], "dryRun", "startedAt", "finishedAt")  # the dry run said what it did
    shards = {admin.job(shard)["targetUserId"]: admin.job(shard) for shard in job["shards"]}
    assert sorted(shards) == users  # one shard per user, each into that user
    for shard in shards.values():
        assert shard["parentId"] == job["jobId"]
        assert shard["status"] == "succeeded"
        assert shard["report"]["errorsTotal"] == 0  # every member checked, each shard

    assert admin.rollback(job["jobId"], timeout=180)["status"] == "rolled_back"
    assert snapshot(db) == before  # every user back exactly as before the restore
    assert {admin.job(shard)["status"] for shard in job["shards"]} <= {"rolled_back",
                                                                      "succeeded"}
    assert_calls_allowed(admin.api.stack)  # every call the functions made, by their policies


def test_an_instance_restore_counts_its_records_over_the_websocket_as_shards_end(
        db: Database[Document], admin: Restorer, monkeypatch: pytest.MonkeyPatch) -> None:
    users = users_of(db)
    backup = of_instance(db)
    backup_id = store_backup(backup, ADMIN)
    records = len(backup.projects) + len(backup.sessions) + len(backup.messages)
    stack = admin.api.stack
    # the shards run in parallel and may end within the throttle's 500 ms: their counts are
    # spaced apart so that each is heard (the counting itself is the template's)
    monkeypatch.setitem(stack.handler_overrides, RESTORE_SHARDS,
                        spaced_shard_counts(MIN_INTERVAL_MS / 1000 + 0.1))
    answer = admin.start(backupId=backup_id, target="instance", mode="merge")
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["jobId"]
    with ProgressSocket(stack.ws_url, stack.token_for(ADMIN)) as socket:
        socket.subscribe(job_id)
        events = list(socket.follow(job_id, timeout=180))

    restoring = [e.progress for e in events if isinstance(e, (ProgressEvent, SnapshotEvent))
                 and e.progress.phase == "restoring"]
    assert {p.total for p in restoring} == {records}, restoring  # records, not shards
    counted = [p.current for p in restoring if p.current > 0]
    assert counted == sorted(counted), restoring  # they only rise
    assert len(set(counted)) >= len(users), restoring  # each shard's end heard
    assert counted[-1] == records, restoring  # up to every record
    end = events[-1]
    assert isinstance(end, SucceededEvent), end
    assert (end.progress.current, end.progress.total) == (records, records)
    assert admin.job(job_id)["status"] == JobStatus.SUCCEEDED.value


def test_a_merge_restore_of_an_instance_backup_keeps_what_users_made_since(
        db: Database[Document], admin: Restorer) -> None:
    at_backup = everyone(db)
    backup_id = store_backup(of_instance(db), ADMIN)
    added = add_session(db, sorted(at_backup[ADMIN])[0])
    lost = {user: sorted(sessions)[0] for user, sessions in at_backup.items()}
    forget(db, list(lost.values()))

    job = admin.run(backupId=backup_id, target="instance", mode="merge", conflicts="skip",
                    timeout=180)
    assert job["status"] == "succeeded", job
    assert job["outcome"]["sessions"]["inserted"] == len(lost)
    for user, session_id in lost.items():
        assert content(db, user)[session_id] == at_backup[user][session_id]
    assert added in sessions_of(db, ADMIN)  # merge removes nothing


def test_a_damaged_instance_backup_writes_nothing_for_any_user(
        db: Database[Document], admin: Restorer) -> None:
    backup = of_instance(db)
    data = flip_byte(backup.container(), "messages/00001-00001.jsonl.zst")
    backup_id = store_backup(backup, ADMIN, data=data)
    forget(db, [sorted(sessions_of(db, ADMIN))[0]])
    before = snapshot(db)

    job = admin.run(backupId=backup_id, target="instance", mode="full", timeout=180)
    assert job["status"] == "failed", job
    # the plan reads the backup once, every member checked: refused before any shard starts
    assert job["error"]["code"] == "backup_corrupted"
    assert "messages/00001-00001.jsonl.zst" in job["error"]["message"]
    assert job["shards"] == []
    assert snapshot(db) == before  # no user's data was touched
    assert packages_bucket().keys(f"imports/{job['jobId']}/") == []  # no part left
    record = BackupCatalog().find(backup_id)
    assert record is not None
    assert record.status is BackupStatus.CORRUPTED


def test_a_user_whose_data_fails_its_checks_leaves_the_others_restored_and_undoable(
        db: Database[Document], admin: Restorer) -> None:
    users = users_of(db)
    broken, *fine = [user for user in users if user != ADMIN]
    backup = of_instance(db)
    theirs = set(sessions_of(db, broken))
    bad = next(m for m in backup.messages if m["sessionId"] in theirs)
    bad["costUsd"] = Decimal128("-1")  # refused by the import's checks: that shard only
    backup_id = store_backup(backup, ADMIN)
    at_backup = everyone(db)
    lost = {user: sorted(at_backup[user])[0] for user in users}
    forget(db, list(lost.values()))
    before = snapshot(db)

    job = admin.run(backupId=backup_id, target="instance", mode="merge", timeout=180)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "shards_failed"
    assert broken in job["error"]["message"]
    shards = {admin.job(shard)["targetUserId"]: admin.job(shard) for shard in job["shards"]}
    assert shards[broken]["status"] == "failed"
    assert shards[broken]["error"]["code"] == "invalid_upload"
    assert lost[broken] not in sessions_of(db, broken)  # nothing of the refused user written
    for user in [ADMIN, *fine]:  # the others were restored
        assert shards[user]["status"] == "succeeded"
        assert content(db, user)[lost[user]] == at_backup[user][lost[user]]
    assert job["outcome"]["sessions"]["inserted"] == len(users) - 1

    assert admin.rollback(job["jobId"], timeout=180)["status"] == "rolled_back"
    assert snapshot(db) == before  # what the other shards wrote is undone


def test_a_user_backup_restored_into_the_instance_goes_back_to_its_owner(
        db: Database[Document], admin: Restorer) -> None:
    other = next(user for user in users_of(db) if user != ADMIN)
    at_backup = content(db, other)
    backup_id = store_backup(of_user(db, ObjectId(other)), other)
    lost = sorted(at_backup)[0]
    forget(db, [lost])
    job = admin.run(backupId=backup_id, target="instance", mode="merge")
    assert job["status"] == "succeeded", job
    assert job["targetUserId"] == other
    assert job.get("shards") is None  # one user: a restore of its own, no shards
    assert content(db, other) == at_backup


def test_instance_restores_need_an_administrator(
        db: Database[Document], admin: Restorer, fresh_stack: LocalStack) -> None:
    backup_id = store_backup(of_instance(db), ADMIN)
    user = Restorer(Api(fresh_stack, ADMIN))  # the same user, without the role
    answer = user.start(backupId=backup_id, target="instance")
    assert answer.status_code == 403, answer.text  # the target needs the role
    answer = user.start(backupId=backup_id)
    assert answer.status_code == 404, answer.text  # and the backup is not theirs to see
    before = snapshot(db)
    answer = admin.start(backupId=backup_id, target=ADMIN)
    assert answer.status_code == 400, answer.text  # an instance backup goes to the instance
    assert answer.json()["error"]["details"]["field"] == "target"
    job = admin.run(backupId=backup_id, target="instance", mode="merge", dryRun=True,
                    timeout=180)
    assert job["status"] == "succeeded", job
    assert snapshot(db) == before
    for shard in job["shards"]:  # the shards are the administrator's restores, not the users'
        owner = Restorer(Api(fresh_stack, admin.job(shard)["targetUserId"]))
        if owner.api.user_id != ADMIN:
            assert owner.api.request("GET", f"/restores/{shard}").status_code == 404


def without(doc: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in fields}


def test_instance_restores_have_their_own_hourly_limit(
        db: Database[Document], admin: Restorer) -> None:
    backup_id = store_backup(of_instance(db), ADMIN)
    for _ in range(2):  # InstanceRestoreRateLimit's default
        answer = admin.start(backupId=backup_id, target="instance", dryRun=True)
        assert answer.status_code == 202, answer.text
    answer = admin.start(backupId=backup_id, target="instance", dryRun=True)
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    other = next(user for user in users_of(db) if user != ADMIN)
    user_backup = store_backup(of_user(db, ObjectId(other)), other)
    answer = admin.start(backupId=user_backup, target=other, dryRun=True)
    assert answer.status_code == 202, answer.text  # a restore into one user counts apart
