"""Backups and restores across both message layouts, on the local stack (real ASL, real
pymongo): ClaudeLens keeps messages in one `messages` collection or in monthly
`messages_YYYY_MM` ones. A backup (POST /backups, the real export pipeline) reads every message
collection of its source, a restore writes the target's layout, so a backup of either layout
restores exactly into either, an incremental chain with a deletion included. A backup records
its source's layout in its manifest (`messageLayout`), and a restore into a database with no
message collection yet (a fresh instance) writes that one: in one execution, in parallel shards
of one user, and in an instance restore's shards, every user's messages in the source's
layout; an older backup, which records none, restores into the single layout there."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from dataport.backups.catalog import BackupCatalog
from dataport.backups.format import BackupContainer, BackupManifest
from dataport.bucket import packages_bucket
from dataport.imports.plan import STAT_FIELDS
from dataport.settings import get_settings
from dataport.source.collections import (
    MESSAGES,
    SESSIONS,
    Layout,
    collection_name_for,
    message_collections,
)
from dataport.source.mongo import Document, connect, reset
from infrastructure.local import seed
from infrastructure.local.demo_backup import differences, instance_content, users_of
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api
from tests.e2e.import_client import messages_of, snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_instance_restores import ADMIN
from tests.e2e.test_restores import (
    OWNER,
    add_session,
    content,
    diverge,
    forget,
    made_backup,
    sessions_of,
    without,
)
from tests.restores.backups import of_user


@dataclass
class Databases:
    """Seeded databases of either layout; the functions read and write the one `use` names."""

    stack: LocalStack
    monkeypatch: pytest.MonkeyPatch
    opened: dict[str, Database[Document]]

    def seeded(self, layout: str) -> Database[Document]:
        name = f"dataport_layouts_{layout}_{uuid.uuid4().hex[:8]}"
        db = connect(self.stack.mongo_uri, name)
        # the same seed in both layouts: the same documents, messages stored apart
        seed.seed(db, layout=layout, sessions_per_project=2)
        self.opened[name] = db
        return db

    def empty(self) -> Database[Document]:
        """A database holding nothing (no collection): a fresh instance."""
        name = f"dataport_layouts_empty_{uuid.uuid4().hex[:8]}"
        db = connect(self.stack.mongo_uri, name)
        db.client.drop_database(name)
        self.opened[name] = db
        return db

    def use(self, db: Database[Document]) -> None:
        self.monkeypatch.setenv("MONGODB_DATABASE", db.name)
        get_settings.cache_clear()
        reset()


@pytest.fixture
def databases(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[Databases]:
    found = Databases(fresh_stack, monkeypatch, {})
    try:
        yield found
    finally:
        for db in found.opened.values():
            db.client.drop_database(db.name)
            db.client.close()
        monkeypatch.undo()
        get_settings.cache_clear()
        reset()


@pytest.fixture
def owner(fresh_stack: LocalStack) -> Restorer:
    return Restorer(Api(fresh_stack, OWNER))


def assert_in_layout(db: Database[Document], layout: str) -> None:
    """Every message where the layout keeps it, and no collection of the other layout."""
    names = message_collections(db)
    if layout == "single":
        assert names == [MESSAGES]
    else:
        assert MESSAGES not in names
        assert len(names) > 1  # the seed spans months: a restore must route by timestamp
    for name in names:
        for message in db[name].find({}, {"timestamp": 1}):
            assert name == collection_name_for(Layout(layout), message["timestamp"]), (
                name, message)


def verified(api: Api, backup_id: str) -> None:
    answer = api.request("POST", f"/backups/{backup_id}/verify")
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True, answer.json()


@pytest.mark.parametrize(("source_layout", "target_layout"), [
    ("single", "single"), ("single", "monthly"), ("monthly", "single")])
def test_a_backup_of_either_layout_restores_exactly_into_either(
        databases: Databases, owner: Restorer, source_layout: str, target_layout: str) -> None:
    source = databases.seeded(source_layout)
    target = source if target_layout == source_layout else databases.seeded(target_layout)
    assert_in_layout(source, source_layout)
    databases.use(source)
    expected = content(source, OWNER)
    made = made_backup(owner.api, {"name": f"{source_layout} layout"})
    assert made["counts"]["sessions"] == len(expected)
    assert made["counts"]["messages"] == sum(len(m) for _, m in expected.values())
    verified(owner.api, made["backupId"])

    # the target since then: a session changed, one lost, one added (in its own layout)
    databases.use(target)
    changed, lost, other = sorted(content(target, OWNER))[:3]
    diverge(target, changed)
    forget(target, [lost])
    added = add_session(target, other)
    before = snapshot(target)
    assert content(target, OWNER) != expected

    job = owner.run(backupId=made["backupId"], mode="full", conflicts="overwrite")
    assert job["status"] == "succeeded", job
    assert job["outcome"]["sessions"]["removed"] == 1
    assert content(target, OWNER) == expected
    assert added not in sessions_of(target, OWNER)
    assert_in_layout(target, target_layout)

    assert owner.rollback(job["jobId"])["status"] == "rolled_back"
    assert snapshot(target) == before  # the rollback is exact, in the target's layout too


def touched(db: Database[Document], session_id: str, **fields: Any) -> None:
    """The session updated now (as ClaudeLens does), so an increment picks it up."""
    session = db[SESSIONS].find_one({"sessionId": session_id})
    assert session is not None
    session.update(fields, updatedAt=datetime.now(UTC) + timedelta(seconds=1))
    # replace, not $set: the embedded nx-27017 stores a $set datetime as a string
    db[SESSIONS].replace_one({"_id": session["_id"]}, session)


@pytest.mark.parametrize("target_layout", ["single", "monthly"])
def test_an_incremental_chain_of_the_single_layout_with_a_deletion_restores_exactly(
        databases: Databases, owner: Restorer, target_layout: str) -> None:
    source = databases.seeded("single")
    databases.use(source)
    base = made_backup(owner.api, {"name": "single base"})
    edited, deleted, other = sorted(content(source, OWNER))[:3]
    # the source changes after the base: a session edited, one deleted, one added
    changes = diverge(source, edited)
    touched(source, edited, summary="edited later")
    forget(source, [deleted])
    added = add_session(source, other)
    touched(source, added)
    time.sleep(1.1)  # the increment's watermark is after the changes
    increment = made_backup(owner.api, {"name": "single increment", "type": "incremental",
                                        "parentId": base["backupId"]})
    assert increment["counts"]["sessions"] == 2
    assert increment["counts"]["deletions"] == 1
    for made in (base, increment):
        verified(owner.api, made["backupId"])
    expected = content(source, OWNER)
    assert_in_layout(source, "single")

    if target_layout == "single":  # the same database, everything lost since
        target = source
        forget(target, list(sessions_of(target, OWNER)))
    else:  # a monthly database as the source was at the base (the same seed)
        target = databases.seeded(target_layout)
        databases.use(target)
        assert deleted in sessions_of(target, OWNER)
    job = owner.run(backupId=increment["backupId"], mode="full", conflicts="overwrite")
    assert job["status"] == "succeeded", job
    assert job["chain"] == [base["backupId"], increment["backupId"]]
    restored = content(target, OWNER)
    assert deleted not in restored  # the increment's deletion holds
    assert restored[edited][0]["summary"] == "edited later"
    assert changes["added"] in restored[edited][1]
    assert changes["deleted"] not in restored[edited][1]
    assert set(restored[added][1]) == set(messages_of(source, added))
    # the test edited the source's messages behind ClaudeLens' back, leaving that session's
    # stats stale; a restore recomputes them from the messages (as imports do)
    restored[edited] = (without(restored[edited][0], *STAT_FIELDS), restored[edited][1])
    expected[edited] = (without(expected[edited][0], *STAT_FIELDS), expected[edited][1])
    assert restored == expected  # the source as it was at the increment's watermark
    assert_in_layout(target, target_layout)



# ------------------------------------------------------------------ into an empty database


def manifest_of(backup_id: str) -> BackupManifest:
    """The manifest of a backup POST /backups made, read from its stored object."""
    record = BackupCatalog().find(backup_id)
    assert record is not None
    assert record.object_key is not None
    with (packages_bucket().open_read(record.object_key) as stream,
          BackupContainer(stream) as backup):
        return backup.manifest


def documents_in(db: Database[Document]) -> int:
    return sum(db[name].count_documents({}) for name in db.list_collection_names())


def shard_size(databases: Databases, messages: int) -> None:
    """Restores of more than `messages` messages run in parallel shards of about that many."""
    databases.monkeypatch.setenv("RESTORE_SHARD_MESSAGES", str(messages))
    get_settings.cache_clear()


def where_each_is(db: Database[Document], user_id: str) -> list[tuple[str, datetime]]:
    """Each of the user's messages: the collection it is in and its timestamp."""
    sessions = list(sessions_of(db, user_id))
    return [(name, message["timestamp"]) for name in message_collections(db)
            for message in db[name].find({"sessionId": {"$in": sessions}}, {"timestamp": 1})]


@pytest.mark.parametrize(("layout", "sharded"), [
    ("monthly", False), ("single", False), ("monthly", True)],
    ids=["monthly", "single", "monthly-in-shards"])
def test_a_backup_restored_into_an_empty_database_writes_its_sources_layout(
        databases: Databases, owner: Restorer, layout: str, sharded: bool) -> None:
    source = databases.seeded(layout)
    databases.use(source)
    # by project path: a fresh database's projects are new documents (their own `_id`s)
    expected = {OWNER: instance_content(source)[OWNER]}
    made = made_backup(owner.api, {"name": f"{layout} into a fresh instance"})
    assert manifest_of(made["backupId"]).message_layout is Layout(layout)

    fresh = databases.empty()
    databases.use(fresh)
    if sharded:  # the user's sessions in several shards at once, each into the empty database
        shard_size(databases, 40)
    job = owner.run(backupId=made["backupId"], mode="full", conflicts="overwrite", timeout=180)
    assert job["status"] == "succeeded", job
    assert (len(job.get("shards") or []) > 2) == sharded, job
    assert differences(expected, instance_content(fresh)) == []
    assert_in_layout(fresh, layout)  # monthly: no `messages`, each message in its month

    assert owner.rollback(job["jobId"], timeout=180)["status"] == "rolled_back"
    assert documents_in(fresh) == 0


@pytest.mark.parametrize("layout", ["monthly", "single"])
def test_an_instance_backup_restored_in_shards_into_an_empty_database_keeps_its_layout(
        databases: Databases, layout: str) -> None:
    """Every user's shards run in parallel (several a user here): they all write the backup's
    layout, so no mix is written, and every user's messages are where the source kept them."""
    admin = Restorer(Api(databases.stack, ADMIN, admin=True))
    source = databases.seeded(layout)
    databases.use(source)
    expected = instance_content(source)
    made = made_backup(admin.api, {"name": f"{layout} instance", "scope": "instance"})
    assert manifest_of(made["backupId"]).message_layout is Layout(layout)

    fresh = databases.empty()
    databases.use(fresh)
    shard_size(databases, 40)
    job = admin.run(backupId=made["backupId"], target="instance", mode="full",
                    conflicts="overwrite", timeout=300)
    assert job["status"] == "succeeded", job
    users = users_of(source)
    shards = [admin.job(shard)["targetUserId"] for shard in job["shards"]]
    assert sorted(set(shards)) == users
    assert len(shards) > len(users)  # users in several shards
    assert differences(expected, instance_content(fresh)) == []
    assert_in_layout(fresh, layout)
    for user in users:  # each user's messages where the source kept them
        placed = where_each_is(fresh, user)
        assert placed
        assert all(name == collection_name_for(Layout(layout), timestamp)
                   for name, timestamp in placed)


def test_an_older_backup_without_a_layout_restores_into_the_single_layout_of_an_empty_database(
        databases: Databases, owner: Restorer) -> None:
    """A backup made before dataport recorded the layout (its manifest has no
    `messageLayout`) still restores; a fresh database gets the single `messages` collection,
    as before, even from a monthly source."""
    source = databases.seeded("monthly")
    expected = {OWNER: instance_content(source)[OWNER]}
    older = of_user(source, ObjectId(OWNER))
    assert b"messageLayout" not in older.container()
    backup_id = store_backup(older, OWNER)

    fresh = databases.empty()
    databases.use(fresh)
    job = owner.run(backupId=backup_id, mode="full", conflicts="overwrite")
    assert job["status"] == "succeeded", job
    assert differences(expected, instance_content(fresh)) == []
    assert_in_layout(fresh, "single")
