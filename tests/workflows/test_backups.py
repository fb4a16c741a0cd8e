"""Backups end to end on the local stack: POST /backups runs the real export ASL (plan, shards,
staged members, UploadPartCopy assembly) with the backup writer; the stored zip is read back
independently (zipfile, zstandard, bson.json_util) and compared with MongoDB read with pymongo."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import zstandard
from bson import ObjectId, json_util

from dataport.backups.format import MANIFEST_NAME
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.formats.extjson import json_util_canonical
from dataport.progress.events import ProgressEvent, SucceededEvent
from dataport.settings import get_settings
from dataport.source.collections import message_collections
from dataport.source.mongo import connect
from dataport.workflows.export import write_session
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, backup_ended, bucket_leftovers, seeded_dataset
from tests.fixtures.faults import EXPORT_WORKER, export_worker, slow_writer
from tests.infrastructure.iam import assert_calls_allowed

DB_NAME = "dataport_backup_tests"


dataset = seeded_dataset(DB_NAME, sessions_per_project=3)



@pytest.fixture
def admin(api: Api) -> Api:
    return Api(api.stack, api.user_id, admin=True)



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


def backup(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    made = backup_ended(api, start(api, body)["backupId"])
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
    assert (manifest["format"], manifest["formatVersion"]) == ("dataport-backup", 2)
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
    assert_calls_allowed(api.stack)  # every call each function made, by its template policy


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _flip_member_byte(stack: LocalStack, key: str, member: str) -> None:
    """Flip one byte inside a member's stored data, in the bucket itself."""
    s3 = stack.client("s3")
    data = bytearray(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(member)
    name_length = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.compress_size // 2] ^= 0x20
    s3.put_object(Bucket=stack.bucket, Key=key, Body=bytes(data))


def _object_key(stack: LocalStack, backup_id: str) -> str:
    keys: list[str] = [o["Key"] for o in stack.client("s3").list_objects_v2(
        Bucket=stack.bucket, Prefix=f"backups/{backup_id}/").get("Contents", [])]
    assert len(keys) == 1, keys
    return keys[0]


def test_a_byte_flipped_in_a_stored_backup_is_found_by_verify_and_named(api: Api) -> None:
    made = backup(api, {"name": "to be damaged"})
    stored = Stored(download(api, made["backupId"]))
    member = next(e["path"] for e in stored.manifest["members"]
                  if e["collection"] == "messages")
    _flip_member_byte(api.stack, _object_key(api.stack, made["backupId"]), member)

    answer = api.request("POST", f"/backups/{made['backupId']}/verify")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["ok"] is False
    assert report["status"] == "corrupted"
    assert report["member"] == member
    assert member in report["problem"]
    shown = api.request("GET", f"/backups/{made['backupId']}").json()
    assert shown["status"] == "corrupted"
    assert shown["corruptedMember"] == member
    assert member in shown["error"]["message"]
    # a corrupted backup is not handed out, nor followed by an increment
    assert api.request("GET", f"/backups/{made['backupId']}/download").status_code == 409
    refused = api.request("POST", "/backups", json={
        "name": "next", "type": "incremental", "parentId": made["backupId"]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "backup_not_usable"


def test_a_selective_backup_holds_whole_sessions_of_the_selection(api: Api) -> None:
    source = Source(api.stack, api.user_id)
    project = sorted(source.projects)[0]
    in_project = {sid: s for sid, s in source.sessions.items() if s["projectId"] == project}
    counts = sorted(s["messageCount"] for s in in_project.values())
    low = counts[len(counts) // 2]
    body = {"name": "one project", "type": "selective",
            "filters": {"projectIds": [str(project)], "messageCount": {"min": low}}}
    made = backup(api, body)
    stored = Stored(download(api, made["backupId"]))
    expected = {sid for sid, s in in_project.items() if s["messageCount"] >= low}
    assert expected
    assert expected != set(source.sessions)
    assert {s["sessionId"] for s in stored.documents("sessions")} == expected
    # every message of those sessions, none filtered
    assert {m["uuid"] for m in stored.documents("messages")} == {
        uuid for uuid, m in source.messages.items() if m["sessionId"] in expected}
    assert stored.manifest["type"] == "selective"
    assert stored.manifest["filters"]["projectIds"] == [str(project)]

    # the other bound: sessions of at most `max` messages, whole
    made = backup(api, {**body, "name": "small ones", "filters": {
        "projectIds": [str(project)], "messageCount": {"max": low}}})
    stored = Stored(download(api, made["backupId"]))
    expected = {sid for sid, s in in_project.items() if s["messageCount"] <= low}
    assert expected
    assert expected != set(in_project)
    assert {s["sessionId"] for s in stored.documents("sessions")} == expected
    assert {m["uuid"] for m in stored.documents("messages")} == {
        uuid for uuid, m in source.messages.items() if m["sessionId"] in expected}

    for bad in ({"name": "x"}, {"name": "bad/name"}, {"name": "   "}, {"name": "  ab "},
                {"name": "no filters", "type": "selective"},
                {"name": "full with filters", "filters": {"projectIds": [str(project)]}},
                {"name": "orphan", "type": "incremental"},
                {"name": "ok", "description": "d" * 501},
                {"name": "ok", "compressionLevel": 23}):
        answer = api.request("POST", "/backups", json=bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"]["code"] == "invalid_request"


def _edit_and_delete(db: Any, changed: str, summary: str, deleted: str) -> None:
    """One session edited (its updatedAt moved on), one deleted with its messages; then a
    second, so that an increment's watermark comes after the edit."""
    edited = db.sessions.find_one({"sessionId": changed})
    edited.update(summary=summary, updatedAt=datetime.now(UTC) + timedelta(seconds=1))
    # replace, not $set: the embedded nx-27017 stores a $set datetime as a string
    db.sessions.replace_one({"_id": edited["_id"]}, edited)
    db.sessions.delete_one({"sessionId": deleted})
    for name in message_collections(db):
        db[name].delete_many({"sessionId": deleted})
    time.sleep(1.1)


def test_an_increment_holds_what_changed_and_what_was_deleted(api: Api) -> None:
    base = backup(api, {"name": "base"})
    db = _db(api.stack)
    try:
        source = Source(api.stack, api.user_id)
        ordered = sorted(source.sessions)
        changed, deleted = ordered[0], ordered[1]
        _edit_and_delete(db, changed, "edited", deleted)
        increment = backup(api, {"name": "nightly increment", "type": "incremental",
                                 "parentId": base["backupId"]})
    finally:
        db.client.close()
    stored = Stored(download(api, increment["backupId"]))
    assert stored.manifest["parentId"] == base["backupId"]
    assert _moment(stored.manifest["parentWatermark"]) == _moment(base["watermark"])
    assert _moment(stored.manifest["watermark"]) > _moment(base["watermark"])
    sessions = stored.documents("sessions")
    assert [s["sessionId"] for s in sessions] == [changed]
    assert sessions[0]["summary"] == "edited"
    now = Source(api.stack, api.user_id)
    assert {m["uuid"] for m in stored.documents("messages")} == {
        uuid for uuid, m in now.messages.items() if m["sessionId"] == changed}
    assert stored.documents("deletions") == [{"collection": "sessions", "sessionId": deleted}]
    assert increment["counts"]["deletions"] == 1

    # a base an unexpired increment depends on cannot be deleted
    refused = api.request("DELETE", f"/backups/{base['backupId']}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "backup_has_dependents"
    assert increment["backupId"] in refused.json()["error"]["message"]
    assert api.request("DELETE", f"/backups/{increment['backupId']}").status_code == 204
    assert api.request("DELETE", f"/backups/{base['backupId']}").status_code == 204
    assert api.request("GET", "/backups").json()["backups"] == []
    assert bucket_leftovers(api.stack, base["backupId"]) == {"objects": [], "uploads": []}
    assert_calls_allowed(api.stack)


def test_instance_backups_need_the_administrator_role(api: Api, admin: Api,
                                                      intruder: Api) -> None:
    refused = api.request("POST", "/backups", json={"name": "everything", "scope": "instance"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    assert api.request("GET", "/backups", params={"scope": "instance"}).status_code == 403

    made = backup(admin, {"name": "disaster recovery", "scope": "instance"})
    stored = Stored(download(admin, made["backupId"]))
    assert_holds_exactly(stored, Source(admin.stack, None))
    assert stored.manifest["scope"] == "instance"
    assert "ownerId" not in stored.manifest
    # never listed or reachable for users, the maker without the role included
    for user in (api, intruder):
        assert user.request("GET", "/backups").json()["backups"] == []
        assert user.request("GET", f"/backups/{made['backupId']}").status_code == 404
    listed = admin.request("GET", "/backups", params={"scope": "instance"}).json()["backups"]
    assert [b["backupId"] for b in listed] == [made["backupId"]]


def test_an_encrypted_backup_needs_its_password(api: Api) -> None:
    password = "correct horse battery"
    made = backup(api, {"name": "sealed", "password": password})
    assert made["encrypted"] is True
    data = download(api, made["backupId"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert all(info.flag_bits & 0x1 for info in archive.infolist())
    assert api.request("POST", f"/backups/{made['backupId']}/verify").status_code == 400
    wrong = api.request("POST", f"/backups/{made['backupId']}/verify",
                        json={"password": "not the password"})
    assert wrong.status_code == 400, wrong.text
    right = api.request("POST", f"/backups/{made['backupId']}/verify",
                        json={"password": password})
    assert right.status_code == 200, right.text
    assert right.json()["ok"] is True
    # an increment reads its chain with the chain's password, and is sealed with it too
    for body in ({"name": "no password"}, {"name": "wrong", "password": "not the password"}):
        refused = api.request("POST", "/backups", json={
            **body, "type": "incremental", "parentId": made["backupId"]})
        assert refused.status_code == 400, refused.text
    increment = backup(api, {"name": "sealed increment", "type": "incremental",
                             "parentId": made["backupId"], "password": password})
    assert increment["encrypted"] is True
    for headers in ({}, {"X-Backup-Password": "not the password"}):
        refused = api.request("GET", f"/backups/{increment['backupId']}/preview",
                              headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["details"]["field"] == "X-Backup-Password"
    preview = api.request("GET", f"/backups/{increment['backupId']}/preview",
                          headers={"X-Backup-Password": password})
    assert preview.status_code == 200, preview.text
    assert preview.json()["restore"]["onlyInTarget"] == 0  # the chain holds everything


def test_a_fault_mid_backup_leaves_it_failed_with_nothing_behind(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGE_SIZE", "2")
    monkeypatch.setenv("WORKER_RESERVE_MS", "60000")
    api.stack.set_function_timeout("ExportWorkerFunction", 60_000)  # hand on after each page
    get_settings.cache_clear()
    written = 0

    def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal written
        written += 1
        if written == 5:
            raise RuntimeError("disk on fire")
        return write_session(*args, **kwargs)

    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(failing))
    try:
        made = backup_ended(api, start(api, {"name": "doomed"})["backupId"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert made["status"] == "failed"
    assert made["error"]["code"] == "internal_error"
    assert made["backupId"] in made["error"]["message"]
    assert bucket_leftovers(api.stack, made["backupId"]) == {"objects": [], "uploads": []}
    assert api.request("GET", f"/backups/{made['backupId']}/download").status_code == 409
    assert_calls_allowed(api.stack)


def test_progress_reaches_the_websocket_with_kind_backup(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    slow, _ = slow_writer(0.2)  # a few seconds of backing up: progress events go out
    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(slow))
    monkeypatch.setenv("PAGE_SIZE", "2")
    get_settings.cache_clear()
    try:
        with ProgressSocket(api.stack.ws_url, api.stack.token_for(api.user_id)) as socket:
            backup_id = start(api, {"name": "watched"})["backupId"]
            socket.subscribe(backup_id)
            events = list(socket.follow(backup_id, timeout=60))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert events
    assert {event.kind.value for event in events} == {"backup"}
    assert any(isinstance(e, ProgressEvent) and e.progress.phase == "backing_up"
               and e.progress.current > 0 for e in events)
    assert isinstance(events[-1], SucceededEvent)
    assert backup_ended(api, backup_id)["status"] == "completed"


def test_backups_count_against_their_own_rate_limit(
        api: Api, admin: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKUP_RATE_LIMIT", "2")
    monkeypatch.setenv("INSTANCE_BACKUP_RATE_LIMIT", "1")
    get_settings.cache_clear()
    try:
        first = api.request("POST", "/backups", json={"name": "one"})
        assert first.headers["X-RateLimit-Limit"] == "2"
        assert first.headers["X-RateLimit-Remaining"] == "1"
        assert api.request("POST", "/backups", json={"name": "two"}).status_code == 202
        third = api.request("POST", "/backups", json={"name": "three"})
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "rate_limited"
        assert "backups per hour" in third.json()["error"]["message"]
        # instance backups count on their own
        assert admin.request("POST", "/backups", json={"name": "all", "scope": "instance"}
                             ).status_code == 202
        assert admin.request("POST", "/backups", json={"name": "all again",
                                                       "scope": "instance"}).status_code == 429
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    api.stack.wait_until_quiet()


def test_preview_says_what_is_inside_and_what_a_restore_would_do(api: Api,
                                                                 intruder: Api) -> None:
    made = backup(api, {"name": "to preview"})
    source = Source(api.stack, api.user_id)
    db = _db(api.stack)
    try:  # after the backup: one session edited, one deleted, one added
        ordered = sorted(source.sessions)
        edited = db.sessions.find_one({"sessionId": ordered[0]})
        edited["summary"] = "edited after the backup"
        db.sessions.replace_one({"_id": edited["_id"]}, edited)
        removed = ordered[1]
        db.sessions.delete_one({"sessionId": removed})
        added = dict(source.sessions[ordered[2]], _id=ObjectId(),
                     sessionId="ffffffff-0000-4000-8000-000000000000")
        db.sessions.insert_one(added)
        answer = api.request("GET", f"/backups/{made['backupId']}/preview")
    finally:
        db.sessions.delete_one({"sessionId": added["sessionId"]})
        db.sessions.insert_one(source.sessions[removed])
        db.sessions.replace_one({"_id": edited["_id"]}, source.sessions[ordered[0]])
        db.client.close()
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    by_project = {p["projectId"]: p for p in preview["projects"]}
    assert set(by_project) == {str(p) for p in source.projects}
    for project_id, project in by_project.items():
        sessions = [s for s in source.sessions.values() if str(s["projectId"]) == project_id]
        assert project["sessions"] == len(sessions)
        assert project["messages"] == sum(s["messageCount"] for s in sessions)
        assert project["name"] == source.projects[ObjectId(project_id)]["name"]
        assert _moment(project["firstActivity"]) == min(
            s["startedAt"] for s in sessions).replace(tzinfo=UTC)
    restore = preview["restore"]
    assert restore["target"] == "self"
    assert (restore["new"], restore["changed"], restore["identical"]) == (
        1, 1, len(source.sessions) - 2)
    assert restore["samples"]["new"] == [removed]
    assert restore["samples"]["changed"] == [ordered[0]]
    assert restore["onlyInTarget"] == 1
    assert restore["samples"]["onlyInTarget"] == [added["sessionId"]]
    assert intruder.request("GET", f"/backups/{made['backupId']}/preview").status_code == 404


def test_deleting_a_backup_being_made_cancels_it_and_leaves_nothing(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    slow, writing = slow_writer(0.3)
    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(slow))
    monkeypatch.setenv("PAGE_SIZE", "1")
    get_settings.cache_clear()
    try:
        backup_id = start(api, {"name": "changed my mind"})["backupId"]
        assert writing.wait(20)
        answer = api.request("DELETE", f"/backups/{backup_id}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "failed"
        assert answer.json()["error"]["code"] == "cancelled"
        api.stack.wait_until_quiet()  # a worker still running must not write after the cancel
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert bucket_leftovers(api.stack, backup_id) == {"objects": [], "uploads": []}
    assert backup_ended(api, backup_id)["status"] == "failed"
    assert api.request("GET", f"/backups/{backup_id}").json()["error"]["code"] == "cancelled"


def test_the_same_idempotency_key_returns_the_same_backup(api: Api) -> None:
    key = {"Idempotency-Key": "nightly-2026-12-05"}
    first = api.request("POST", "/backups", json={"name": "nightly"}, headers=key)
    again = api.request("POST", "/backups", json={"name": "nightly"}, headers=key)
    assert first.status_code == again.status_code == 202, again.text
    assert first.json()["backupId"] == again.json()["backupId"]
    assert "X-RateLimit-Remaining" not in again.headers  # a replay counts nothing
    other = api.request("POST", "/backups", json={"name": "another"}, headers=key)
    assert other.status_code == 422, other.text
    assert backup_ended(api, first.json()["backupId"])["status"] == "completed"
    assert len(api.request("GET", "/backups").json()["backups"]) == 1


@pytest.fixture
def three_instance_backups(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("INSTANCE_BACKUP_RATE_LIMIT", "3")  # a base and two increments
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("three_instance_backups")
def test_an_instance_increment_follows_an_instance_base(api: Api, admin: Api) -> None:
    base = backup(admin, {"name": "instance base", "scope": "instance"})
    refused = admin.request("POST", "/backups", json={
        "name": "wrong scope", "type": "incremental", "parentId": base["backupId"]})
    assert refused.status_code == 400, refused.text  # an increment keeps its chain's scope
    assert api.request("POST", "/backups", json={
        "name": "not mine", "type": "incremental", "parentId": base["backupId"],
        "scope": "instance"}).status_code == 403
    increment = backup(admin, {"name": "instance increment", "type": "incremental",
                               "scope": "instance", "parentId": base["backupId"]})
    stored = Stored(download(admin, increment["backupId"]))
    assert stored.manifest["scope"] == "instance"
    assert stored.documents("sessions") == []  # nothing changed since the base
    assert stored.documents("deletions") == []
    assert len(stored.documents("projects")) == len(Source(admin.stack, None).projects)

    # two other users' sessions: one edited, one deleted; the next increment holds both
    everyone = Source(admin.stack, None)
    owner_of = {sid: everyone.projects[s["projectId"]]["user_id"]
                for sid, s in everyone.sessions.items() if s["projectId"] in everyone.projects}
    others = sorted({str(u) for u in owner_of.values()} - {api.user_id})
    assert len(others) >= 2
    changed = min(sid for sid, u in owner_of.items() if str(u) == others[0])
    deleted = min(sid for sid, u in owner_of.items() if str(u) == others[1])
    db = _db(admin.stack)
    try:
        _edit_and_delete(db, changed, "edited by its owner", deleted)
        second = backup(admin, {"name": "instance increment 2", "type": "incremental",
                                "scope": "instance", "parentId": increment["backupId"]})
    finally:
        db.client.close()
    stored = Stored(download(admin, second["backupId"]))
    assert [s["sessionId"] for s in stored.documents("sessions")] == [changed]
    assert stored.documents("sessions")[0]["summary"] == "edited by its owner"
    assert {m["uuid"] for m in stored.documents("messages")} == {
        uuid for uuid, m in everyone.messages.items() if m["sessionId"] == changed}
    assert stored.documents("deletions") == [{"collection": "sessions", "sessionId": deleted}]


def test_selective_by_sessions_and_dates_and_an_instance_selection(api: Api,
                                                                   admin: Api) -> None:
    source = Source(api.stack, api.user_id)
    chosen = sorted(source.sessions)[:2]
    by_ids = backup(api, {"name": "two sessions", "type": "selective",
                          "filters": {"sessionIds": [*chosen, "not-a-session-of-mine"]}})
    assert {s["sessionId"] for s in Stored(download(api, by_ids["backupId"])).documents(
        "sessions")} == set(chosen)

    ordered = sorted(source.sessions.values(), key=lambda s: s["startedAt"])
    middle = ordered[len(ordered) // 2]
    start_at, end_at = middle["startedAt"], middle["endedAt"]
    by_dates = backup(api, {"name": "one week", "type": "selective", "filters": {"dateRange": {
        "start": start_at.replace(tzinfo=UTC).isoformat(),
        "end": end_at.replace(tzinfo=UTC).isoformat()}}})
    active = {s["sessionId"] for s in source.sessions.values()
              if s["startedAt"] <= end_at and s["endedAt"] >= start_at}
    assert middle["sessionId"] in active
    assert {s["sessionId"] for s in Stored(download(api, by_dates["backupId"])).documents(
        "sessions")} == active

    everyone = Source(admin.stack, None)
    projects = sorted(everyone.projects)[::2]  # every other project, across users
    selected = backup(admin, {"name": "some projects", "scope": "instance", "type": "selective",
                              "filters": {"projectIds": [str(p) for p in projects]}})
    stored = Stored(download(admin, selected["backupId"]))
    assert {p["_id"] for p in stored.documents("projects")} == set(projects)
    assert {s["sessionId"] for s in stored.documents("sessions")} == {
        sid for sid, s in everyone.sessions.items() if s["projectId"] in set(projects)}
    owners = {everyone.projects[p]["user_id"] for p in projects}
    assert len(owners) > 1  # the selection spans users
