"""Restores end to end on the local stack (real ASL, real pymongo): a restore is an import whose
source is a backup, so every case runs through the import workflow: by id and by upload, every
mode crossed with every conflict choice, a chain with deletions, a damaged backup refused, a
fault mid-restore, isolation and the administrator's targets."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from dataport.source.collections import PROJECTS, SESSIONS, is_message_collection
from dataport.source.content_hash import content_hash
from dataport.source.mongo import Document
from dataport.source.writes import IMPORT_TAG
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import messages_of, snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.restores.backups import of_user

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


def forget(db: Database[Document], session_ids: list[str]) -> None:
    """The sessions and their messages deleted (data lost since the backup)."""
    for name in db.list_collection_names():
        if is_message_collection(name):
            db[name].delete_many({"sessionId": {"$in": session_ids}})
    db[SESSIONS].delete_many({"sessionId": {"$in": session_ids}})


def test_a_full_backup_restored_by_id_gives_every_lost_session_back_exactly(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack) -> None:
    expected = content(db, OWNER)
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
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
        fresh["contentHash"] = content_hash(fresh["uuid"], fresh["type"], fresh["timestamp"],
                                            fresh.get("content"))
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
    if mode == "full":
        assert added not in after
        assert outcome["sessions"]["removed"] == 1
    else:
        assert after[added] == target_before[added]
        assert outcome["sessions"]["removed"] == 0
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
