"""Restores end to end on the local stack (real ASL, real pymongo): a restore is an import whose
source is a backup, so every case runs through the import workflow: by id and by upload, every
mode crossed with every conflict choice, a chain with deletions, a damaged backup refused, a
fault mid-restore, isolation and the administrator's targets."""

from __future__ import annotations

import base64
import copy
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from bson import ObjectId
from pymongo.database import Database

from dataport.backups.catalog import BackupCatalog
from dataport.imports.plan import STAT_FIELDS
from dataport.models.backups import BackupStatus
from dataport.models.tasks import ImportStep
from dataport.progress.events import SnapshotEvent
from dataport.settings import get_settings
from dataport.source.collections import PROJECTS, SESSIONS, is_message_collection
from dataport.source.content_hash import content_hash
from dataport.source.mongo import Document
from dataport.source.writes import IMPORT_TAG, Target
from dataport.workflows import imports as import_tasks
from infrastructure.local import seed
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, bucket_leftovers, seeded_db
from tests.e2e.import_client import EMPTY_USER, messages_of, snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_import_flow import job_objects
from tests.restores.backups import flip_byte, increment_of, of_user

OWNER = seed.DEMO_USER_ID
#: fields a restore sets on what it writes (the rest must be the backup's, exactly)
WRITTEN = {"_id", IMPORT_TAG, "updatedAt"}


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_restore",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def owner(fresh_stack: LocalStack) -> Restorer:
    return Restorer(Api(fresh_stack, OWNER))


def sessions_of(db: Database[Document], user_id: str) -> dict[str, Document]:
    projects = [p["_id"] for p in db[PROJECTS].find({"user_id": ObjectId(user_id)})]
    return {s["sessionId"]: s for s in db[SESSIONS].find({"projectId": {"$in": projects}})}


def content(db: Database[Document], user_id: str) -> dict[str, Any]:
    """A user's sessions and messages as a restore must give them back (without what a
    restore sets itself)."""
    found: dict[str, Any] = {}
    for sid, session in sessions_of(db, user_id).items():
        found[sid] = (without(session, *WRITTEN),
                      {u: without(m, *WRITTEN) for u, m in messages_of(db, sid).items()})
    return found


def without(doc: Document, *fields: str) -> Document:
    return {k: v for k, v in doc.items() if k not in fields}


def one(db: Database[Document], collection: str, query: Document) -> Document:
    found = db[collection].find_one(query)
    assert found is not None, (collection, query)
    return found


def forget(db: Database[Document], session_ids: list[str]) -> None:
    """The sessions and their messages deleted (data lost since the backup)."""
    for name in db.list_collection_names():
        if is_message_collection(name):
            db[name].delete_many({"sessionId": {"$in": session_ids}})
    db[SESSIONS].delete_many({"sessionId": {"$in": session_ids}})


@pytest.mark.parametrize("grouped", [True, False], ids=["sessions-with-messages",
                                                       "messages-apart"])
def test_a_full_backup_restored_by_id_gives_every_lost_session_back_exactly(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack, grouped: bool) -> None:
    """Both orders a backup's messages may have: the export worker's (each session's
    messages in the sessions' order: staged light, messages written once) and any other
    (staged in full)."""
    expected = content(db, OWNER)
    backup_id = store_backup(of_user(db, ObjectId(OWNER), grouped=grouped), OWNER)
    forget(db, list(expected))
    assert sessions_of(db, OWNER) == {}

    job = owner.run(backupId=backup_id, mode="merge", conflicts="overwrite")
    assert job["status"] == "succeeded", job
    assert job["report"]["format"] == "dataport-backup"
    assert job["outcome"]["sessions"]["inserted"] == len(expected)
    assert job["chain"] == [backup_id]
    assert content(db, OWNER) == expected

    assert owner.rollback(job["jobId"])["status"] == "rolled_back"
    assert sessions_of(db, OWNER) == {}


def diverge(db: Database[Document], session_id: str) -> dict[str, str]:
    """The stored session changed since the backup: one message edited, one deleted, one
    added (the import tests' own divergence)."""
    from tests.e2e.test_import_flow import diverge as import_diverge  # noqa: PLC0415
    return import_diverge(db, session_id)


def add_session(db: Database[Document], like: str) -> str:
    """A session made after the backup (a copy of `like` under new ids); its sessionId."""
    session = copy.deepcopy(sessions_of(db, OWNER)[like])
    new_id = str(uuid.uuid4())
    session.update({"_id": ObjectId(), "sessionId": new_id, "summary": "made after the backup"})
    db[SESSIONS].insert_one(session)
    for message in messages_of(db, like).values():
        name = next(n for n in db.list_collection_names()
                    if is_message_collection(n) and db[n].find_one({"_id": message["_id"]}))
        fresh = {**message, "_id": ObjectId(), "sessionId": new_id, "uuid": str(uuid.uuid4()),
                 "parentUuid": None}
        if isinstance(fresh.get("content"), str):
            fresh["contentHash"] = content_hash(fresh["uuid"], fresh["type"],
                                                fresh["timestamp"], fresh["content"])
        db[name].insert_one(fresh)
    return new_id


MODES = ["full", "selective", "merge"]
CHOICES = ["skip", "overwrite", "rename", "merge"]


@pytest.mark.parametrize("conflicts", CHOICES)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_with_every_conflict_choice(
        db: Database[Document], owner: Restorer, mode: str, conflicts: str) -> None:
    backup = of_user(db, ObjectId(OWNER))
    at_backup = content(db, OWNER)
    changed, lost, other = sorted(at_backup)[:3]
    backup_id = store_backup(backup, OWNER)
    changes = diverge(db, changed)
    forget(db, [lost])
    added = add_session(db, other)
    # in a project made after the backup too
    project = {**one(db, PROJECTS, {"user_id": ObjectId(OWNER)}), "_id": ObjectId(),
               "path": "/work/made-after-the-backup", "name": "made-after-the-backup"}
    db[PROJECTS].insert_one(project)
    db[SESSIONS].update_one({"sessionId": added}, {"$set": {"projectId": project["_id"]}})
    before = snapshot(db)
    target_before = content(db, OWNER)

    body: dict[str, Any] = {"backupId": backup_id, "mode": mode, "conflicts": conflicts}
    if mode == "selective":
        body["selections"] = {"sessions": [changed, lost]}
    dry = owner.run(**body, dryRun=True)
    assert dry["status"] == "succeeded", dry
    assert snapshot(db) == before  # a dry run writes nothing
    job = owner.run(**body)
    assert job["status"] == "succeeded", job
    outcome = job["outcome"]
    assert without(outcome, "dryRun", "startedAt", "finishedAt") == without(
        dry["dryRun"], "dryRun", "startedAt", "finishedAt")  # the dry run said what it did
    after = content(db, OWNER)

    assert after[lost] == at_backup[lost]  # every mode brings the lost session back
    if mode == "full":  # what the backup lacks is gone: the session and its project
        assert added not in after
        assert outcome["sessions"]["removed"] == 1
        assert outcome["projectsRemoved"] == 1
        assert db[PROJECTS].find_one({"_id": project["_id"]}) is None
    else:
        assert after[added] == target_before[added]
        assert outcome["sessions"]["removed"] == 0
        assert outcome["projectsRemoved"] == 0
    untouched = set(at_backup) - {changed, lost}
    if mode != "selective":
        for sid in untouched:  # identical on both sides: left as they are
            assert after[sid] == target_before[sid]

    stored = after[changed][1]
    if conflicts == "skip":
        assert after[changed] == target_before[changed]
    elif conflicts == "overwrite":
        assert after[changed] == at_backup[changed]
    elif conflicts == "merge":
        assert set(stored) == set(at_backup[changed][1]) | {changes["added"]}
        assert stored[changes["edited"]] == at_backup[changed][1][changes["edited"]]
    else:  # rename: both kept; the restored one under a stable id, saying what it is
        assert after[changed] == target_before[changed]
        copies = [sid for sid, (session, _) in after.items()
                  if sid not in target_before and sid != lost]
        assert len(copies) == 1, copies
        session, messages = after[copies[0]]
        assert session["summary"].endswith("(restored copy)")
        assert len(messages) == len(at_backup[changed][1])
        assert {m["content"] for m in messages.values()} == {
            m["content"] for m in at_backup[changed][1].values()}

    assert owner.rollback(job["jobId"])["status"] == "rolled_back"
    assert snapshot(db) == before  # the rollback is exact


# ---------------------------------------------------------------------------- chains


def test_an_incremental_chain_with_deletions_restores_the_source_as_of_the_increment(
        db: Database[Document], owner: Restorer) -> None:
    base = of_user(db, ObjectId(OWNER))
    store_backup(base, OWNER)
    edited, deleted, other = sorted(content(db, OWNER))[:3]
    # the source changes after the base: one session edited, one deleted, one added
    db[SESSIONS].update_one({"sessionId": edited}, {"$set": {"summary": "edited later"}})
    changes = diverge(db, edited)
    forget(db, [deleted])
    added = add_session(db, other)
    expected = content(db, OWNER)
    increment = increment_of(db, ObjectId(OWNER), base, [edited, added], [deleted])
    increment_id = store_backup(increment, OWNER)

    forget(db, list(sessions_of(db, OWNER)))  # everything lost
    job = owner.run(backupId=increment_id, mode="full", conflicts="overwrite")
    assert job["status"] == "succeeded", job
    assert job["chain"] == [base.backup_id, increment_id]
    restored = content(db, OWNER)
    assert deleted not in restored  # the increment's deletion holds
    assert restored[edited][0]["summary"] == "edited later"
    assert changes["added"] in restored[edited][1]
    # the test edited the source's messages behind ClaudeLens' back, leaving that session's
    # stats stale; a restore recomputes them from the messages (as imports do)
    restored[edited] = (without(restored[edited][0], *STAT_FIELDS), restored[edited][1])
    expected[edited] = (without(expected[edited][0], *STAT_FIELDS), expected[edited][1])
    assert restored == expected  # the source as it was at the increment's watermark


# ---------------------------------------------------------------------------- damage, faults


def test_a_flipped_byte_is_refused_before_anything_is_written(
        db: Database[Document], owner: Restorer) -> None:
    backup = of_user(db, ObjectId(OWNER))
    member = "messages/00001-00002.jsonl.zst"
    damaged = flip_byte(backup.container(), member)
    backup_id = store_backup(backup, OWNER, data=damaged)
    forget(db, sorted(sessions_of(db, OWNER))[:2])
    before = snapshot(db)

    job = owner.run(backupId=backup_id, mode="full", conflicts="overwrite")
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "backup_corrupted"
    assert member in job["error"]["message"]
    assert job["report"]["errorsTotal"] >= 1
    assert snapshot(db) == before  # nothing written, nothing removed
    record = BackupCatalog().find(backup_id)
    assert record is not None
    assert record.status is BackupStatus.CORRUPTED
    again = owner.start(backupId=backup_id, mode="merge")
    assert again.status_code == 409  # a corrupted backup is not restored again
    assert again.json()["error"]["details"]["code"] == "backup_corrupted"


def test_a_changed_object_is_refused_by_its_recorded_checksum(
        db: Database[Document], owner: Restorer) -> None:
    backup = of_user(db, ObjectId(OWNER))
    backup_id = store_backup(backup, OWNER, sha256="0" * 64)  # not what is stored
    before = snapshot(db)
    job = owner.run(backupId=backup_id, mode="merge")
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "backup_corrupted"
    assert "SHA-256" in job["error"]["message"]
    assert snapshot(db) == before


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Batches of 5 operations: every session spans several journalled batches."""
    monkeypatch.setenv("IMPORT_BATCH_OPS", "5")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_fault_mid_restore_leaves_every_session_whole_and_the_rollback_exact(
        db: Database[Document], owner: Restorer, small_batches: None,
        monkeypatch: pytest.MonkeyPatch, fresh_stack: LocalStack) -> None:
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
    at_backup = content(db, OWNER)
    sessions = sorted(at_backup)
    for session_id in sessions:
        diverge(db, session_id)
    before = snapshot(db)
    monkeypatch.setattr(Target, "bulk_write", failing_batch(5, keep=2))
    job = owner.run(backupId=backup_id, mode="full", conflicts="overwrite")
    assert job["status"] == "failed", job
    done = {a["sessionId"] for a in owner.actions(job["jobId"]) if a["action"] == "replace"}
    assert done  # it failed part-way
    assert done != set(sessions)
    # terminal: no open upload, and of the job's objects only what its rollback and its
    # report need (docs/imports.md: the journal's pre-images and the listings live with the
    # job's history; the pinned upload and the checked records are dropped at the failure)
    kept = rollback_needs(fresh_stack, job["jobId"])
    after = content(db, OWNER)
    for session_id in sessions:
        if session_id in done:  # wholly restored
            assert after[session_id] == at_backup[session_id]
        else:  # wholly as it was
            assert messages_of(db, session_id) == {
                m["uuid"]: m for docs in before.values() for m in docs
                if m.get("sessionId") == session_id and "uuid" in m}
    monkeypatch.undo()
    assert owner.rollback(job["jobId"])["status"] == "rolled_back"
    assert snapshot(db) == before
    assert rollback_needs(fresh_stack, job["jobId"]) == kept  # and the rollback adds none


def rollback_needs(stack: LocalStack, job_id: str) -> list[str]:
    """A failed restore's objects under `imports/<jobId>/`, having checked they are only
    its journal (the rollback's pre-images, at least one entry) and its listings, and that no
    multipart upload is open in the bucket."""
    assert stack.client("s3").list_multipart_uploads(
        Bucket=stack.bucket).get("Uploads", []) == []
    assert bucket_leftovers(stack, job_id)["uploads"] == []
    listed = stack.client("s3").list_objects_v2(Bucket=stack.bucket).get("Contents", [])
    elsewhere = [o["Key"] for o in listed if not o["Key"].startswith(f"imports/{job_id}/")]
    assert all(key.startswith("backups/") for key in elsewhere), elsewhere  # the backup only
    found = job_objects(stack, job_id)
    journal = [key for key in found if key.startswith("journal/")]
    assert journal, found
    assert all(key.endswith(".jsonl.gz") for key in journal), journal
    assert set(found) - set(journal) <= {"conflicts.jsonl", "result.jsonl"}, found
    return found


def failing_batch(n: int, *, keep: int) -> Any:
    """A Target.bulk_write whose n-th batch writes its first `keep` operations per collection,
    then fails as a dropped connection does (the import tests' own)."""
    from tests.e2e.test_import_flow import DROPPED, _failing_batch  # noqa: PLC0415
    return _failing_batch(n, keep=keep, error=DROPPED)


# ---------------------------------------------------------------------------- who may restore


def test_another_users_backup_and_restore_are_not_found(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack) -> None:
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
    stranger = Restorer(Api(fresh_stack, EMPTY_USER))
    answer = stranger.start(backupId=backup_id, mode="merge")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    job = owner.run(backupId=backup_id, mode="merge", dryRun=True)
    assert stranger.api.request("GET", f"/restores/{job['jobId']}").status_code == 404
    assert stranger.api.request("POST", f"/restores/{job['jobId']}/rollback").status_code == 404
    answer = stranger.api.request("GET", "/restores")
    assert answer.json()["restores"] == []


def test_only_an_administrator_restores_into_another_account(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack) -> None:
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
    for target in (EMPTY_USER, "instance"):
        answer = owner.start(backupId=backup_id, target=target)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "forbidden"
    admin = Restorer(Api(fresh_stack, OWNER, admin=True))
    job = admin.run(backupId=backup_id, target=EMPTY_USER, mode="merge")
    assert job["status"] == "succeeded", job
    assert job["targetUserId"] == EMPTY_USER
    restored = sessions_of(db, EMPTY_USER)
    assert len(restored) == len(sessions_of(db, OWNER))  # as copies: the owner keeps theirs
    assert not set(restored) & set(sessions_of(db, OWNER))


def test_the_sixth_restore_in_an_hour_is_refused(db: Database[Document],
                                                 owner: Restorer) -> None:
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
    for _ in range(5):
        assert owner.start(backupId=backup_id, dryRun=True).status_code == 202
    answer = owner.start(backupId=backup_id, dryRun=True)
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) > 0


# ---------------------------------------------------------------------------- uploads


def test_a_backup_file_uploaded_in_parts_is_restored(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTORE_PART_SIZE_MB", "5")
    get_settings.cache_clear()
    backup = of_user(db, ObjectId(OWNER))
    big = backup.messages[0]
    big["content"] = base64.b64encode(os.urandom(6 * 1024 * 1024)).decode()  # zstd: ~6 MB
    big["contentHash"] = content_hash(big["uuid"], big["type"], big["timestamp"],
                                      big["content"])
    data = backup.container()
    assert len(data) > 5 * 1024 * 1024
    expected = content(db, OWNER)
    forget(db, list(expected))

    answer = owner.api.request("POST", "/restores/uploads", json={"size": len(data)})
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["parts"] == 2
    size = created["partSize"]
    answer = owner.api.request("GET", f"/restores/uploads/{created['uploadId']}/parts",
                               params={"numbers": "1,2"})
    assert answer.status_code == 200, answer.text
    parts = []
    for part in answer.json()["parts"]:
        number = part["number"]
        put = requests.put(part["url"], data=data[(number - 1) * size:number * size],
                           timeout=30)
        assert put.status_code == 200, put.text
        parts.append({"number": number, "etag": put.headers["ETag"]})
    stranger = Api(owner.api.stack, EMPTY_USER)
    refused = stranger.request("POST", f"/restores/uploads/{created['uploadId']}/complete",
                               json={"parts": parts})
    assert refused.status_code == 404  # the upload is its owner's only
    answer = owner.api.request("POST", f"/restores/uploads/{created['uploadId']}/complete",
                               json={"parts": parts})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"

    job = owner.run(uploadId=created["uploadId"], mode="merge")
    assert job["status"] == "succeeded", job
    restored = content(db, OWNER)
    assert set(restored) == set(expected)
    assert restored[big["sessionId"]][1][big["uuid"]]["content"] == big["content"]


# ---------------------------------------------------------------------------- real backups


def test_a_backup_made_by_post_backups_is_restored_exactly(
        db: Database[Document], owner: Restorer) -> None:
    """The backups pipeline's own backup (POST /backups), restored into the emptied account."""
    expected = content(db, OWNER)
    made = made_backup(owner.api, {"name": "before the restore"})
    backup_id = made["backupId"]
    forget(db, list(expected))

    job = owner.run(backupId=backup_id, mode="full", conflicts="overwrite")
    assert job["status"] == "succeeded", job
    assert job["report"]["sha256"] == made["sha256"]  # the object the catalog recorded
    assert content(db, OWNER) == expected


def test_a_restore_is_watchable_live_over_the_websocket(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same protocol as imports, with kind `restore`: snapshot, progress, one end."""
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
    forget(db, sorted(sessions_of(db, OWNER))[:3])
    gate = threading.Event()
    validate = import_tasks.validate

    def held(step: ImportStep) -> ImportStep:  # the restore waits until the test listens
        assert gate.wait(60), "the test never opened the gate"
        return validate(step)

    monkeypatch.setattr(import_tasks, "validate", held)
    with ProgressSocket(fresh_stack.ws_url, fresh_stack.token_for(OWNER)) as socket:
        answer = owner.start(backupId=backup_id, mode="merge")
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["jobId"]
        socket.subscribe(job_id)
        first = socket.receive()
        gate.set()
        events = list(socket.follow(job_id, timeout=60))
    assert isinstance(first, SnapshotEvent)
    assert first.kind == "restore"
    assert events
    assert all(event.kind == "restore" for event in events)
    assert [event.type for event in events].count("job.succeeded") == 1
    assert events[-1].type == "job.succeeded"


def made_backup(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    """A backup made by POST /backups, completed."""
    answer = api.request("POST", "/backups", json=body)
    assert answer.status_code == 202, answer.text
    backup_id = answer.json()["backupId"]
    deadline = time.monotonic() + 90
    made: dict[str, Any] = api.request("GET", f"/backups/{backup_id}").json()
    while made["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, made
        time.sleep(0.1)
        made = api.request("GET", f"/backups/{backup_id}").json()
    assert made["status"] == "completed", made
    return made


def test_an_encrypted_backup_is_restored_with_its_password_and_only_with_it(
        db: Database[Document], owner: Restorer) -> None:
    password = "Tr0ub4dor&3-backup"
    expected = content(db, OWNER)
    made = made_backup(owner.api, {"name": "sealed", "password": password})
    forget(db, list(expected))

    refused = owner.run(backupId=made["backupId"], mode="merge")
    assert refused["status"] == "failed", refused
    assert [e["code"] for e in refused["report"]["errors"]] == ["zip_encrypted"]
    wrong = owner.run(backupId=made["backupId"], mode="merge", password="not-the-password")
    assert wrong["status"] == "failed", wrong
    assert wrong["report"]["errors"][0]["code"] == "wrong_password"
    assert sessions_of(db, OWNER) == {}  # nothing written by either

    job = owner.run(backupId=made["backupId"], mode="merge", password=password)
    assert job["status"] == "succeeded", job
    assert "password" not in job["request"]
    assert content(db, OWNER) == expected


def test_the_same_idempotency_key_gives_the_same_restore_and_counts_once(
        db: Database[Document], owner: Restorer) -> None:
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
    key = {"Idempotency-Key": "restore-once"}
    body = {"backupId": backup_id, "dryRun": True}
    first = owner.api.request("POST", "/restores", json=body, headers=key)
    again = owner.api.request("POST", "/restores", json=body, headers=key)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert first.json()["jobId"] == again.json()["jobId"]
    assert first.headers["X-RateLimit-Remaining"] == "4"
    assert "X-RateLimit-Remaining" not in again.headers  # the replay counted nothing
    other = owner.api.request("POST", "/restores", json={**body, "mode": "full"}, headers=key)
    assert other.status_code == 422  # the same key with another request
    assert len(owner.api.request("GET", "/restores").json()["restores"]) == 1


@pytest.mark.parametrize("by", ["path", "id"])
def test_a_selective_restore_by_project_restores_that_projects_sessions_only(
        db: Database[Document], owner: Restorer, by: str) -> None:
    backup = of_user(db, ObjectId(OWNER))
    at_backup = content(db, OWNER)
    chosen = one(db, PROJECTS, {"user_id": ObjectId(OWNER)})
    inside = sorted(s["sessionId"] for s in db[SESSIONS].find({"projectId": chosen["_id"]}))
    outside = sorted(set(at_backup) - set(inside))
    assert inside
    assert outside
    backup_id = store_backup(backup, OWNER)
    forget(db, [inside[0], outside[0]])  # one lost in the project, one elsewhere
    before = snapshot(db)

    job = owner.run(backupId=backup_id, mode="selective", conflicts="overwrite", selections={
        "projects": [chosen["path"] if by == "path" else str(chosen["_id"])]})
    assert job["status"] == "succeeded", job
    after = content(db, OWNER)
    assert after[inside[0]] == at_backup[inside[0]]  # the project's lost session is back
    assert outside[0] not in after  # the other project's is not: not selected
    assert job["outcome"]["sessions"]["inserted"] == 1
    assert owner.rollback(job["jobId"])["status"] == "rolled_back"
    assert snapshot(db) == before
