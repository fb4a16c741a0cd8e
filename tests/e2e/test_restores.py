"""Restores end to end on the local stack (real ASL, real pymongo): a restore is an import whose
source is a backup, so every case runs through the import workflow: by id and by upload, every
mode crossed with every conflict choice, a chain with deletions, a damaged backup refused, a
fault mid-restore, isolation and the administrator's targets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from dataport.source.collections import PROJECTS, SESSIONS, is_message_collection
from dataport.source.mongo import Document
from dataport.source.writes import IMPORT_TAG
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import messages_of
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
