"""An instance backup restored into an empty instance (a migration to a fresh ClaudeLens), end
to end on the local stack: the backup made by POST /backups from a seeded database, the
functions then pointed at a second database on the same server that holds nothing, the restore
(`target: instance`, mode `full`) run there. Every user's data comes back, content and identity
(sessionIds, message uuids, project paths and owners, message bodies byte for byte once the
new `_id`s are set aside: `_id` is not identity, docs/backups.md), in the message layout of the
source (monthly: the backup records it, and the empty database, which has none yet, gets it),
and its rollback leaves the new instance empty again."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import bson
import pytest
from pymongo.database import Database

from dataport.source.collections import (
    PROJECTS,
    SESSIONS,
    Layout,
    collection_name_for,
    detect_layout,
    is_message_collection,
    message_collections,
)
from dataport.source.mongo import Document
from dataport.source.writes import IMPORT_TAG
from infrastructure.local.demo_backup import (
    differences,
    functions_on,
    instance_content,
    users_of,
)
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.restore_client import Restorer
from tests.e2e.test_instance_restores import ADMIN
from tests.e2e.test_restores import made_backup


@pytest.fixture
def source(fresh_stack: LocalStack,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_migration_source",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def empty(source: Database[Document]) -> Iterator[Database[Document]]:
    database = source.client[f"{source.name}_empty"]
    source.client.drop_database(database.name)
    yield database
    source.client.drop_database(database.name)


def messages_as_bson(db: Database[Document]) -> dict[str, bytes]:
    """Every message by uuid, as the BSON bytes of its fields in stored order, its `_id` and
    the restore's tag set aside."""
    return {doc["uuid"]: bson.encode({k: v for k, v in doc.items() if k not in {"_id", IMPORT_TAG}})
            for name in db.list_collection_names() if is_message_collection(name)
            for doc in db[name].find()}


def identities(db: Database[Document]) -> dict[str, Any]:
    """Who owns what: projects as (owner, path), sessions as (owner, project path, sessionId),
    messages as (sessionId, uuid)."""
    projects = {p["_id"]: (str(p["user_id"]), p["path"]) for p in db[PROJECTS].find()}
    return {
        "projects": sorted(projects.values()),
        "sessions": sorted((*projects.get(s["projectId"], ("no owner", "no project")),
                            s["sessionId"])
                           for s in db[SESSIONS].find()),
        "messages": sorted((m["sessionId"], m["uuid"]) for name in db.list_collection_names()
                           if is_message_collection(name) for m in db[name].find()),
    }


def everything_in(db: Database[Document]) -> int:
    """Documents of any collection of the database, not only ClaudeLens' ones."""
    return sum(db[name].count_documents({}) for name in db.list_collection_names())


def test_an_instance_backup_restored_into_an_empty_instance_gives_every_user_everything(
        fresh_stack: LocalStack, source: Database[Document],
        empty: Database[Document]) -> None:
    admin = Restorer(Api(fresh_stack, ADMIN, admin=True))
    backup = made_backup(admin.api, {"name": "before the move", "scope": "instance"})
    expected, expected_ids = instance_content(source), identities(source)
    expected_bodies = messages_as_bson(source)
    assert len(expected) == 3  # the seed's three users
    assert len(expected_bodies) > 100
    assert everything_in(empty) == 0

    with functions_on(empty.name):
        job = admin.run(backupId=backup["backupId"], target="instance", mode="full",
                        conflicts="overwrite", timeout=300)
        assert job["status"] == "succeeded", job
        restored = instance_content(empty)
        assert differences(expected, restored) == []  # every field of everything but `_id`s
        assert identities(empty) == expected_ids
        assert messages_as_bson(empty) == expected_bodies  # byte for byte
        # where the source kept them: the same monthly collections, each message in its month
        assert detect_layout(source) is Layout.MONTHLY
        assert message_collections(empty) == message_collections(source)
        for name in message_collections(empty):
            assert all(collection_name_for(Layout.MONTHLY, message["timestamp"]) == name
                       for message in empty[name].find({}, {"timestamp": 1}))
        assert sorted(admin.job(shard)["targetUserId"] for shard in job["shards"]) == users_of(
            source)  # one shard per user, into that user
        assert users_of(empty) == users_of(source)

        rolled = admin.rollback(job["jobId"], timeout=300)
        assert rolled["status"] == "rolled_back", rolled
        assert everything_in(empty) == 0  # the new instance empty again
    assert instance_content(source) == expected  # the source untouched

    # the comparison finds what a restore could get wrong
    first, *_ = sorted(restored)
    assert differences(expected, {u: c for u, c in restored.items() if u != first}) == [
        f"missing user {first}"]
    altered = copy.deepcopy(restored)
    session_id, (session, messages) = next(iter(altered[first]["sessions"].items()))
    message = sorted(messages)[0]
    messages[message] = messages[message].replace('"sessionId"', '"sessionid"', 1)
    assert differences(expected, altered) == [
        f"user {first}: session {session_id}: 0 messages missing, 0 unexpected, 1 changed "
        f"({message})"]
    session["projectId"] = "/elsewhere"
    assert f"user {first}: session {session_id}: projectId differ" in differences(
        expected, altered)
