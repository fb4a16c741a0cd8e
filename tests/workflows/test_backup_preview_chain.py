"""The preview of an increment says what restoring it restores: its whole chain (base and
increment), compared with the target as the restore compares it; then the restore is run and
its result compared with what the preview said. Through the local stack, real pymongo, on a
database of its own (the test changes it)."""

from __future__ import annotations

import io
import time
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from dataport.source.collections import message_collections
from dataport.source.mongo import connect
from tests.e2e.api_client import Api, seeded_dataset
from tests.e2e.restore_client import Restorer
from tests.workflows.test_backups import _flip_member_byte, _object_key

DB_NAME = "dataport_preview_chain_tests"

dataset = seeded_dataset(DB_NAME, sessions_per_project=3)


class Source:
    """The user's sessions and their messages, read straight from MongoDB with pymongo."""

    def __init__(self, db: Any, user_id: str) -> None:
        projects = [p["_id"] for p in db.projects.find({"user_id": ObjectId(user_id)})]
        self.sessions = {s["sessionId"]: s
                         for s in db.sessions.find({"projectId": {"$in": projects}})}
        self.messages = _messages(db, list(self.sessions))


def backup(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.request("POST", "/backups", json=body)
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 90
    while True:
        made: dict[str, Any] = api.request("GET", f"/backups/{answer.json()['backupId']}").json()
        if made["status"] not in {"pending", "running"}:
            assert made["status"] == "completed", made
            return made
        assert time.monotonic() < deadline, made
        time.sleep(0.2)


def _messages(db: Any, session_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, m) for name in message_collections(db)
            for m in db[name].find({"sessionId": {"$in": session_ids}})]


def _forget(db: Any, session_id: str) -> None:
    db.sessions.delete_one({"sessionId": session_id})
    for name in message_collections(db):
        db[name].delete_many({"sessionId": session_id})


def test_the_preview_of_an_increment_is_its_chains_against_the_target(api: Api) -> None:
    db = connect(api.stack.mongo_uri, DB_NAME)
    try:
        source = Source(db, api.user_id)
        assert len(source.sessions) >= 6
        lost, edited, in_increment, deleted = sorted(source.sessions)[:4]
        base = backup(api, {"name": "base"})
        # before the increment: one session changes, one is deleted
        later = dict(source.sessions[in_increment], summary="changed for the increment",
                     updatedAt=datetime.now(UTC) + timedelta(seconds=1))
        db.sessions.replace_one({"_id": later["_id"]}, later)
        kept = _messages(db, [deleted])
        _forget(db, deleted)
        time.sleep(1.1)  # the increment's watermark is after the changes
        increment = backup(api, {"name": "increment", "type": "incremental",
                                 "parentId": base["backupId"]})
        # after the increment, the target: (a) lost a base-only session, (b) changed another,
        # (c) has the increment's changed session in its old version, (d) still has the
        # session the increment deleted, (e) gained a session
        _forget(db, lost)
        db.sessions.replace_one({"sessionId": edited},
                                dict(source.sessions[edited], summary="edited in the target"))
        db.sessions.replace_one({"sessionId": in_increment}, source.sessions[in_increment])
        db.sessions.insert_one(source.sessions[deleted])
        for name, message in kept:
            db[name].insert_one(message)
        gained = dict(source.sessions[lost], _id=ObjectId(),
                      sessionId="ffffffff-0000-4000-8000-000000000000")
        db.sessions.insert_one(gained)

        answer = api.request("GET", f"/backups/{increment['backupId']}/preview")
        assert answer.status_code == 200, answer.text
        preview = answer.json()
        restore = preview["restore"]
        restored = len(source.sessions) - 1  # the chain: every session but the deleted one
        assert (restore["new"], restore["changed"], restore["identical"]) == (
            1, 2, restored - 3)
        assert restore["samples"]["new"] == [lost]
        assert restore["samples"]["changed"] == sorted([edited, in_increment])
        assert restore["onlyInTarget"] == 2
        assert restore["samples"]["onlyInTarget"] == sorted([deleted, gained["sessionId"]])
        assert preview["projectsTotal"] == len(preview["projects"])
        said = {p["projectId"]: (p["sessions"], p["messages"]) for p in preview["projects"]}
        chain = [s for s in source.sessions.values() if s["sessionId"] != deleted]
        assert sum(sessions for sessions, _ in said.values()) == len(chain)

        # the restore of the chain writes what the preview said, and removes what it named
        job = Restorer(api).run(backupId=increment["backupId"], mode="full",
                                conflicts="overwrite")
        assert job["status"] == "succeeded", job
        now = Source(db, api.user_id)
        assert deleted not in now.sessions
        assert gained["sessionId"] not in now.sessions
        sessions = Counter(str(s["projectId"]) for s in now.sessions.values())
        project_of = {s["sessionId"]: str(s["projectId"]) for s in now.sessions.values()}
        messages = Counter(project_of[m["sessionId"]] for _, m in now.messages)
        assert said == {project: (sessions[project], messages[project])
                        for project in sessions}
        assert now.sessions[in_increment]["summary"] == "changed for the increment"
        assert now.sessions[edited]["summary"] == source.sessions[edited]["summary"]
    finally:
        db.client.close()


def test_the_preview_of_an_increment_whose_base_is_damaged_is_refused(api: Api) -> None:
    base = backup(api, {"name": "to be damaged"})
    increment = backup(api, {"name": "after it", "type": "incremental",
                             "parentId": base["backupId"]})
    key = _object_key(api.stack, base["backupId"])
    with zipfile.ZipFile(io.BytesIO(api.stack.client("s3").get_object(
            Bucket=api.stack.bucket, Key=key)["Body"].read())) as archive:
        member = next(name for name in archive.namelist() if name.startswith("sessions/"))
    _flip_member_byte(api.stack, key, member)
    answer = api.request("GET", f"/backups/{increment['backupId']}/preview")
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "backup_not_usable"
    assert member in answer.json()["error"]["message"]


def test_a_preview_right_after_a_restore_of_the_backup_finds_it_all_identical(api: Api) -> None:
    """The preview decides as the restore does: after a full restore of a backup over changed
    data (which rewrites sessions, their updatedAt among them), its preview says there is
    nothing left to do; before it, it said what the restore then did."""
    made = backup(api, {"name": "restored then previewed"})
    db = connect(api.stack.mongo_uri, DB_NAME)
    try:
        ordered = sorted(Source(db, api.user_id).sessions)
        edited = db.sessions.find_one({"sessionId": ordered[0]})
        assert edited is not None
        edited["summary"] = "edited after the backup"
        db.sessions.replace_one({"_id": edited["_id"]}, edited)
        _forget(db, ordered[1])
        path = f"/backups/{made['backupId']}/preview"
        before = api.request("GET", path).json()["restore"]
        job = Restorer(api).run(backupId=made["backupId"], mode="full", conflicts="overwrite")
        assert job["status"] == "succeeded", job
        after = api.request("GET", path).json()["restore"]
    finally:
        db.client.close()
    assert (before["new"], before["changed"]) == (1, 1)
    assert (job["outcome"]["sessions"]["inserted"], job["outcome"]["sessions"]["replaced"]) == (
        1, 1)
    assert (after["new"], after["changed"], after["onlyInTarget"]) == (0, 0, 0)
    assert after["identical"] == len(ordered)
