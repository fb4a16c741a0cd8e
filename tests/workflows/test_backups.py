"""Backups end to end on the local stack: POST /backups runs the real export ASL (plan, shards,
staged members, UploadPartCopy assembly) with the backup writer; the stored zip is read back
independently (zipfile, zstandard, bson.json_util) and compared with MongoDB read with pymongo."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import zstandard
from bson import ObjectId, json_util

from dataport.backups.format import MANIFEST_NAME
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.formats.extjson import json_util_canonical
from dataport.source.collections import message_collections
from dataport.source.mongo import connect
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, bucket_leftovers, seeded_database

DB_NAME = "dataport_backup_tests"
TERMINAL = {"completed", "failed", "corrupted", "expired"}


@pytest.fixture(scope="module")
def dataset(local_stack: LocalStack) -> Iterator[seed.SeedSummary]:
    with pytest.MonkeyPatch.context() as patch, seeded_database(
            patch, local_stack, DB_NAME, sessions_per_project=3) as summary:
        yield summary


@pytest.fixture
def api(fresh_stack: LocalStack, dataset: seed.SeedSummary) -> Api:
    return Api(fresh_stack, seed.DEMO_USER_ID)


@pytest.fixture
def admin(api: Api) -> Api:
    return Api(api.stack, api.user_id, admin=True)


@pytest.fixture
def intruder(api: Api, dataset: seed.SeedSummary) -> Api:
    return Api(api.stack, next(u.user_id for u in dataset.users if u.user_id != api.user_id))


def _db(stack: LocalStack) -> Any:
    return connect(stack.mongo_uri, DB_NAME)


class Source:
    """What a backup should hold, read straight from MongoDB with pymongo."""

    def __init__(self, stack: LocalStack, user_id: str | None) -> None:
        db = _db(stack)
        owner = {} if user_id is None else {"user_id": ObjectId(user_id)}
        self.projects = {p["_id"]: p for p in db.projects.find(owner)}
        sessions = {} if user_id is None else {"projectId": {"$in": list(self.projects)}}
        self.sessions = {s["sessionId"]: s for s in db.sessions.find(sessions)}
        self.messages = {m["uuid"]: m for name in message_collections(db)
                         for m in db[name].find({"sessionId": {"$in": list(self.sessions)}})}
        db.client.close()


def start(api: Api, body: dict[str, Any], status: int = 202) -> dict[str, Any]:
    answer = api.request("POST", "/backups", json=body)
    assert answer.status_code == status, answer.text
    result: dict[str, Any] = answer.json()
    return result


def wait(api: Api, backup_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = api.request("GET", f"/backups/{backup_id}")
        assert answer.status_code == 200, answer.text
        backup: dict[str, Any] = answer.json()
        if backup["status"] in TERMINAL:
            return backup
        assert time.monotonic() < deadline, backup
        time.sleep(0.2)


def backup(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    made = wait(api, start(api, body)["backupId"])
    assert made["status"] == "completed", made
    return made


def download(api: Api, backup_id: str) -> bytes:
    answer = api.request("GET", f"/backups/{backup_id}/download")
    assert answer.status_code == 302, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    query = answer.headers["Location"]
    assert "X-Amz-Expires=900" in query or "Expires=" in query
    got = requests.get(query, timeout=30)
    got.raise_for_status()
    return got.content


class Stored:
    """A downloaded backup read with zipfile, zstandard and bson.json_util only."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            self.infos = {info.filename: info for info in archive.infolist()}
            self.manifest = json_util.loads(archive.read(MANIFEST_NAME))
            self.lines: dict[str, list[bytes]] = {}
            for entry in self.manifest["members"]:
                raw = archive.read(entry["path"])
                assert self.infos[entry["path"]].compress_type == zipfile.ZIP_STORED
                assert hashlib.sha256(raw).hexdigest() == entry["compressedSha256"]
                plain = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
                assert hashlib.sha256(plain).hexdigest() == entry["sha256"]
                assert len(plain) == entry["bytes"]
                assert len(raw) == entry["compressedBytes"]
                self.lines[entry["path"]] = plain.splitlines(keepends=True)
                assert len(self.lines[entry["path"]]) == entry["records"]
        assert list(self.infos)[-1] == MANIFEST_NAME

    def documents(self, collection: str) -> list[dict[str, Any]]:
        return [json_util.loads(line, json_options=EXTENDED_JSON_READ_OPTIONS)
                for entry in self.manifest["members"] if entry["collection"] == collection
                for line in self.lines[entry["path"]]]

    def raw_lines(self, collection: str) -> list[bytes]:
        return [line for entry in self.manifest["members"] if entry["collection"] == collection
                for line in self.lines[entry["path"]]]


def assert_holds_exactly(stored: Stored, source: Source) -> None:
    """Every document, byte for byte as canonical Extended JSON, and nothing else."""
    for collection, expected in (("projects", source.projects), ("sessions", source.sessions),
                                 ("messages", source.messages)):
        lines = stored.raw_lines(collection)
        assert sorted(lines) == sorted(json_util_canonical(doc) + b"\n"
                                       for doc in expected.values()), collection
    assert stored.manifest["counts"] == {
        "projects": len(source.projects), "sessions": len(source.sessions),
        "messages": len(source.messages), "deletions": 0}


def test_a_full_user_backup_holds_exactly_the_users_data_and_verifies(
        api: Api, intruder: Api) -> None:
    made = backup(api, {"name": "before migration", "description": "all of it"})
    data = download(api, made["backupId"])
    stored = Stored(data)
    assert_holds_exactly(stored, Source(api.stack, api.user_id))
    manifest = stored.manifest
    assert (manifest["format"], manifest["formatVersion"]) == ("dataport-backup", 1)
    assert (manifest["scope"], manifest["type"], manifest["ownerId"]) == (
        "user", "full", api.user_id)
    assert manifest["compression"] == {"algorithm": "zstd", "level": 3}
    # the catalog's figures are the stored object's
    assert made["sha256"] == hashlib.sha256(data).hexdigest()
    assert made["sizes"]["stored"] == len(data)
    assert made["sizes"]["uncompressed"] == manifest["bytes"]["uncompressed"]
    assert made["counts"] == manifest["counts"]
    assert made["expiresAt"] is not None

    verified = api.request("POST", f"/backups/{made['backupId']}/verify")
    assert verified.status_code == 200, verified.text
    report = verified.json()
    assert report["ok"] is True
    assert report["members"] == len(manifest["members"])
    assert report["sha256"] == made["sha256"]

    listed = api.request("GET", "/backups").json()["backups"]
    assert [b["backupId"] for b in listed] == [made["backupId"]]
    assert "objectKey" not in listed[0]
    # isolation: another user neither sees nor reaches it
    assert intruder.request("GET", "/backups").json()["backups"] == []
    for method, path in (("GET", ""), ("GET", "/download"), ("POST", "/verify"),
                         ("DELETE", "")):
        answer = intruder.request(method, f"/backups/{made['backupId']}{path}")
        assert answer.status_code == 404, (method, path, answer.text)
    assert bucket_leftovers(api.stack, made["backupId"])["uploads"] == []
