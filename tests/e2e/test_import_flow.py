"""The import flow end to end over HTTP on the local stack: presigned upload, validation report,
conflicts, dry run, skip / replace / merge, per-session atomicity, rollback, cancel, limits."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from pymongo import monitoring
from pymongo.database import Database

from dataport.api import imports as import_api
from dataport.bucket import PackagesBucket
from dataport.errors import TransientError
from dataport.imports import storage
from dataport.jobs.store import JobStore
from dataport.models.imports import DRY_RUN_LIMIT, ImportCounts, ValidationReport
from dataport.models.tasks import ImportStep
from dataport.progress.events import SnapshotEvent
from dataport.progress.throttle import MIN_INTERVAL_MS, now_ms
from dataport.settings import get_settings
from dataport.source import mongo
from dataport.source.collections import PROJECTS, SESSIONS, is_message_collection
from dataport.source.conflicts import LOOKUP_BATCH
from dataport.source.content_hash import content_hash
from dataport.source.identity import copy_id, copy_key
from dataport.source.mongo import Document, connect
from dataport.source.staging import Staging
from dataport.source.writes import IMPORT_TAG, Target
from dataport.workflows import imports as import_tasks
from infrastructure.local import seed
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import (
    Api,
    job_row,
    listen_to_mongodb,
    seeded_database,
    seeded_db,
    table_text,
)
from tests.e2e.import_client import (
    EMPTY_USER,
    ENDED,
    WAITING,
    Importer,
    messages_of,
    snapshot,
)
from tests.imports.corpus.generate import conversations, message_doc
from tests.infrastructure.iam import assert_calls_allowed

#: fields an import sets on what it writes (the rest must be the upload's, exactly)
WRITTEN = {"_id", IMPORT_TAG, "updatedAt"}


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_import", sessions_per_project=2) as database:
        yield database


@pytest.fixture
def owner(fresh_stack: LocalStack) -> Importer:
    return Importer(Api(fresh_stack, seed.DEMO_USER_ID))


@pytest.fixture
def newcomer(fresh_stack: LocalStack) -> Importer:
    return Importer(Api(fresh_stack, EMPTY_USER))


@pytest.fixture
def package(owner: Importer, db: Database[Document], tmp_path: Path) -> bytes:
    """The demo user's data as a dataport JSON package."""
    return owner.api.export(tmp_path, {"format": "json"}).read_bytes()


def owned_sessions(db: Database[Document], user_id: str) -> list[Document]:
    projects = [p["_id"] for p in db[PROJECTS].find({"user_id": ObjectId(user_id)})]
    return sorted(db[SESSIONS].find({"projectId": {"$in": projects}}),
                  key=lambda s: s["sessionId"])


def one(db: Database[Document], collection: str, query: Document) -> Document:
    found = db[collection].find_one(query)
    assert found is not None, (collection, query)
    return found


def without(doc: Document, *fields: str) -> Document:
    return {k: v for k, v in doc.items() if k not in fields}


# ---------------------------------------------------------------------------- the round trip


def test_dry_runs_are_bounded_and_the_execution_is_not(
        db: Database[Document], package: bytes, newcomer: Importer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each dry run adds a decision's events to the import execution's history: past
    MAX_DRY_RUNS (2 here) the next is refused with a code and what to do, the job keeps waiting,
    and the execution itself still runs (each pass a child execution of its own)."""
    monkeypatch.setattr(import_api, "MAX_DRY_RUNS", 2)
    job = newcomer.validated(package)
    for _ in range(2):
        assert newcomer.decide(job["jobId"], strategy="merge", dryRun=True)["dryRun"]
    refused = newcomer.api.request("POST", f"/imports/{job['jobId']}/execute",
                                   json={"strategy": "merge", "dryRun": True})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["details"] == {"code": DRY_RUN_LIMIT, "limit": 2}
    assert "execute it (dryRun false)" in error["message"]
    assert newcomer.wait(job["jobId"], {"awaiting_decision"})["status"] == "awaiting_decision"
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert done["outcome"]["sessions"]["inserted"] == len(owned_sessions(db, seed.DEMO_USER_ID))


def test_export_then_import_into_a_second_users_empty_account(
        db: Database[Document], package: bytes, newcomer: Importer,
        fresh_stack: LocalStack) -> None:
    originals = owned_sessions(db, seed.DEMO_USER_ID)
    before = snapshot(db)
    job = newcomer.validated(package)
    assert job["status"] == "awaiting_decision", job
    report = job["report"]
    assert report["format"] == "dataport-json"
    assert report["errorsTotal"] == 0
    assert report["counts"]["sessions"] == len(originals)
    copied_total = sum(len(messages_of(db, s["sessionId"])) for s in originals)
    assert report["conflicts"] == {"newSessions": len(originals), "changedSessions": 0,
                                   "identicalSessions": 0, "copiedSessions": len(originals),
                                   "copiedMessages": copied_total}
    assert newcomer.pages(f"/imports/{job['jobId']}/conflicts", "conflicts") == []

    dry = newcomer.decide(job["jobId"], strategy="merge", dryRun=True)
    assert snapshot(db) == before  # a dry run writes nothing
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    outcome = done["outcome"]
    assert without(outcome, "dryRun", "startedAt", "finishedAt") == without(
        dry["dryRun"], "dryRun", "startedAt", "finishedAt")
    assert outcome["sessions"]["inserted"] == outcome["sessions"]["copies"] == len(originals)
    assert outcome["projectsCreated"] == len({s["projectId"] for s in originals})
    assert newcomer.pages(f"/imports/{job['jobId']}/actions", "actions") == newcomer.pages(
        f"/imports/{job['jobId']}/actions", "actions", dryRun="true")

    # The newcomer has the same sessions, under ids derived from theirs, in projects of theirs
    # with the same paths; every field and type as exported, stats recomputed to the same.
    paths = {p["_id"]: p["path"] for p in db[PROJECTS].find()}
    key = copy_key()
    for original in originals:
        copy = one(db, SESSIONS, {"sessionId": copy_id(key, EMPTY_USER, original["sessionId"])})
        assert one(db, PROJECTS, {"_id": copy["projectId"]})["user_id"] == ObjectId(EMPTY_USER)
        assert paths[copy["projectId"]] == paths[original["projectId"]]
        assert without(copy, *WRITTEN, "sessionId", "projectId") == without(
            original, *WRITTEN, "sessionId", "projectId")
        assert isinstance(copy["totalCost"], Decimal128)
        theirs = messages_of(db, copy["sessionId"])
        mine = messages_of(db, original["sessionId"])
        assert len(theirs) == len(mine) == copy["messageCount"]
        for message in mine.values():
            copied = theirs[copy_id(key, EMPTY_USER, message["uuid"])]
            assert without(copied, *WRITTEN, "uuid", "sessionId", "parentUuid",
                           "contentHash") == without(message, *WRITTEN, "uuid", "sessionId",
                                                     "parentUuid", "contentHash")
            if "contentHash" in message:
                assert copied["contentHash"] == content_hash(
                    copied["uuid"], copied["type"], copied["timestamp"], copied["content"])
    after = snapshot(db)
    for name, docs in before.items():  # the exporting user's data is untouched
        assert [d for d in after[name] if IMPORT_TAG not in d] == docs

    # Importing the same file again changes nothing, with merge or with skip.
    for strategy, counted in (("merge", "unchanged"), ("skip", "skipped")):
        again = newcomer.run(package, strategy=strategy)
        assert again["status"] == "succeeded", again
        assert again["report"]["conflicts"]["identicalSessions"] == len(originals)
        assert again["outcome"]["sessions"][counted] == len(originals)
        assert snapshot(db) == after
    assert_calls_allowed(fresh_stack)


def test_an_encrypted_export_comes_back_in_with_its_password_and_only_with_it(
        db: Database[Document], owner: Importer, newcomer: Importer, fresh_stack: LocalStack,
        tmp_path: Path) -> None:
    password = "Tr0ub4dor&3-import"
    sealed = owner.api.export(tmp_path, {"format": "json", "options": {
        "encryption": {"password": password}}}).read_bytes()
    originals = owned_sessions(db, seed.DEMO_USER_ID)

    without_password = newcomer.validated(sealed)
    assert without_password["status"] == "failed"
    assert [e["code"] for e in without_password["report"]["errors"]] == ["zip_encrypted"]
    wrong = newcomer.validated(sealed, password="not-the-password")
    assert [e["code"] for e in wrong["report"]["errors"]] == ["wrong_password"]
    assert "sealed_password" not in job_row(fresh_stack, wrong["jobId"])  # ended: forgotten

    job = newcomer.validated(sealed, password=password)
    assert job["status"] == "awaiting_decision", job
    assert job["report"]["counts"]["sessions"] == len(originals)
    waiting = job_row(fresh_stack, job["jobId"])
    assert waiting["sealed_password"]["S"]
    assert waiting["encrypted"] == {"BOOL": True}
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert done["outcome"]["sessions"]["inserted"] == len(originals)
    assert len(owned_sessions(db, EMPTY_USER)) == len(originals)
    assert "sealed_password" not in job_row(fresh_stack, job["jobId"])

    machine = fresh_stack.state_machines["ImportStateMachine"]
    history = fresh_stack.execution_history(
        machine.replace(":stateMachine:", ":execution:") + f":{job['jobId']}")
    places = {"GET answer": json.dumps(newcomer.job(job["jobId"])),
              "GET list": newcomer.api.request("GET", "/imports").text,
              "jobs table": table_text(fresh_stack, "JobsTable"),
              "execution history": json.dumps(list(history), default=str)}
    assert job["jobId"] in places["execution history"]
    assert [place for place, text in places.items() if password in text] == []
    assert_calls_allowed(fresh_stack)


# ---------------------------------------------------------------------------- semantics


def diverge(db: Database[Document], session_id: str) -> dict[str, str]:
    """Make the stored session differ from the package: one message edited, one deleted, one
    added. Returns their uuids."""
    stored = sorted(messages_of(db, session_id).values(), key=lambda m: m["timestamp"])
    hashed = [m for m in stored if "contentHash" in m]
    edited, deleted = hashed[0], hashed[1]
    name = next(n for n in db.list_collection_names()
                if db[n].find_one({"_id": edited["_id"]}) is not None)
    content = edited["content"] + " (edited since)"
    db[name].update_one({"_id": edited["_id"]}, {"$set": {
        "content": content, "contentHash": content_hash(edited["uuid"], edited["type"],
                                                        edited["timestamp"], content)}})
    target = next(n for n in db.list_collection_names()
                  if db[n].find_one({"_id": deleted["_id"]}) is not None)
    db[target].delete_one({"_id": deleted["_id"]})
    added = {**without(stored[-1], "_id", "messageData", "usage"), "uuid": str(uuid.uuid4()),
             "type": "assistant", "content": "written after the export",
             "messageData": {"id": f"msg_{uuid.uuid4().hex}", "role": "assistant"},
             "costUsd": Decimal128("0.5"),
             "timestamp": stored[-1]["timestamp"] + timedelta(seconds=1)}
    added["contentHash"] = content_hash(added["uuid"], added["type"], added["timestamp"],
                                        added["content"])
    db[name].insert_one(added)
    return {"edited": edited["uuid"], "deleted": deleted["uuid"], "added": added["uuid"]}


def test_skip_merge_and_replace_per_session(db: Database[Document], package: bytes,
                                            owner: Importer) -> None:
    exported = {s["sessionId"]: s for s in owned_sessions(db, seed.DEMO_USER_ID)}
    exported_messages = {sid: messages_of(db, sid) for sid in exported}
    skipped, merged, replaced = sorted(exported)[:3]
    changes = {sid: diverge(db, sid) for sid in (skipped, merged, replaced)}
    before = snapshot(db)

    job = owner.validated(package)
    assert job["report"]["conflicts"] == {"newSessions": 0, "changedSessions": 3,
                                          "identicalSessions": len(exported) - 3,
                                          "copiedSessions": 0, "copiedMessages": 0}
    conflicts = {c["sessionId"]: c for c in owner.pages(f"/imports/{job['jobId']}/conflicts",
                                                        "conflicts", limit=2)}
    assert {sid for sid, c in conflicts.items() if c["status"] == "changed"} == set(changes)
    assert conflicts[merged]["messages"] == {"new": 1, "changed": 1, "identical":
                                             len(exported_messages[merged]) - 2,
                                             "onlyExisting": 1, "copied": 0}
    assert conflicts[merged]["suggestedAction"] == "merge"

    decision = {"strategy": "merge", "perSession": {skipped: "skip", replaced: "replace"}}
    dry = owner.decide(job["jobId"], **decision, dryRun=True)["dryRun"]
    assert snapshot(db) == before
    done = owner.decide(job["jobId"], **decision)
    assert done["status"] == "succeeded", done
    outcome = done["outcome"]
    assert without(outcome, "dryRun", "startedAt", "finishedAt") == without(
        dry, "dryRun", "startedAt", "finishedAt")
    assert outcome["sessions"] == {"inserted": 0, "replaced": 1, "merged": 1, "skipped": 1,
                                   "unchanged": len(exported) - 3, "removed": 0, "copies": 0}
    actions = {a["sessionId"]: a for a in owner.pages(f"/imports/{job['jobId']}/actions",
                                                      "actions")}
    assert actions[replaced]["messages"]["deleted"] == 1
    assert actions[merged]["messages"] == {"inserted": 1, "updated": 1, "deleted": 0,
                                           "unchanged": len(exported_messages[merged]) - 2,
                                           "skipped": 0, "copied": 0}

    after = snapshot(db)
    # skip: left exactly as it was
    assert messages_of(db, skipped) == {m["uuid"]: m for c in before.values() for m in c
                                        if m.get("sessionId") == skipped and "uuid" in m}
    # merge: the upload's version of the edited message, the deleted one back, the added kept
    union = messages_of(db, merged)
    assert set(union) == set(exported_messages[merged]) | {changes[merged]["added"]}
    for key in (changes[merged]["edited"], changes[merged]["deleted"]):
        assert without(union[key], *WRITTEN) == without(exported_messages[merged][key],
                                                        *WRITTEN)
        assert union[key][IMPORT_TAG] == job["jobId"]
    session = one(db, SESSIONS, {"sessionId": merged})
    assert session["messageCount"] == len(union)
    assert session["totalCost"].to_decimal() == sum(
        (m["costUsd"].to_decimal() for m in union.values() if m["type"] == "assistant"
         and "costUsd" in m), start=Decimal(0))
    # replace: exactly the upload's session and messages again
    again = messages_of(db, replaced)
    assert set(again) == set(exported_messages[replaced])
    assert without(one(db, SESSIONS, {"sessionId": replaced}), *WRITTEN) == without(
        exported[replaced], *WRITTEN)
    # the others were identical: untouched
    untouched = set(exported) - set(changes)
    for name, docs in after.items():
        assert [d for d in docs if d.get("sessionId") in untouched] == [
            d for d in before[name] if d.get("sessionId") in untouched]

    # the same file again with merge changes nothing
    assert owner.run(package, strategy="merge")["outcome"]["sessions"]["unchanged"] == len(
        exported) - 1  # the skipped one still differs: merge it now... once
    settled = snapshot(db)
    assert owner.run(package, strategy="merge")["outcome"]["sessions"]["unchanged"] == len(
        exported)
    assert snapshot(db) == settled


# ---------------------------------------------------------------------------- rollback


def test_rollback_restores_the_database_exactly(db: Database[Document], package: bytes,
                                                owner: Importer, newcomer: Importer,
                                                fresh_stack: LocalStack) -> None:
    sessions = sorted(s["sessionId"] for s in owned_sessions(db, seed.DEMO_USER_ID))
    for session_id in sessions[:2]:
        diverge(db, session_id)
    before = snapshot(db)
    first = newcomer.run(package, strategy="merge")  # new sessions, new projects
    second = owner.run(package, strategy="replace", perSession={sessions[1]: "merge"})
    assert first["status"] == second["status"] == "succeeded"
    assert snapshot(db) != before

    answer = newcomer.api.request("POST", f"/imports/{first['jobId']}/rollback")
    assert answer.status_code == 202  # another user's newer import does not hold it back
    assert newcomer.wait(first["jobId"], ENDED)["status"] == "rolled_back"
    assert owned_sessions(db, EMPTY_USER) == []
    assert db[PROJECTS].count_documents({"user_id": ObjectId(EMPTY_USER)}) == 0

    assert owner.rollback(second["jobId"])["status"] == "rolled_back"
    assert snapshot(db) == before
    answer = owner.api.request("POST", f"/imports/{second['jobId']}/rollback")
    assert answer.status_code == 409  # nothing left to roll back
    assert_calls_allowed(fresh_stack)


def test_newer_imports_are_rolled_back_first(db: Database[Document], package: bytes,
                                             owner: Importer) -> None:
    session_id = owned_sessions(db, seed.DEMO_USER_ID)[0]["sessionId"]
    diverge(db, session_id)
    older = owner.run(package, strategy="merge")
    diverge(db, session_id)
    newer = owner.run(package, strategy="replace")
    answer = owner.api.request("POST", f"/imports/{older['jobId']}/rollback")
    assert answer.status_code == 409
    assert answer.json()["error"]["details"]["jobId"] == newer["jobId"]
    assert owner.rollback(newer["jobId"])["status"] == "rolled_back"
    assert owner.rollback(older["jobId"])["status"] == "rolled_back"


# ---------------------------------------------------------------------------- refusals


def test_an_upload_with_errors_fails_with_its_report_and_writes_nothing(
        db: Database[Document], owner: Importer, fresh_stack: LocalStack) -> None:
    before = snapshot(db)
    lines = [json.dumps({"type": "user", "uuid": f"u{i}", "sessionId": "s-1",
                         "timestamp": "not a date", "message": {"role": "user",
                                                                "content": "hi"}})
             for i in range(150)]
    job = owner.validated(("\n".join(lines) + "\n").encode(), "broken.jsonl")
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_upload"
    report = job["report"]
    assert report["errorsTotal"] > 100  # listed: capped
    assert len(report["errors"]) == 100
    assert snapshot(db) == before
    assert Staging(db, job["jobId"]).count() == 0
    leftovers = fresh_stack.client("s3").list_objects_v2(
        Bucket=fresh_stack.bucket, Prefix=f"imports/{job['jobId']}/").get("Contents", [])
    assert [o["Key"] for o in leftovers] == []  # the upload is gone too
    assert owner.api.request("POST", f"/imports/{job['jobId']}/execute",
                             json={}).status_code == 409


def test_someone_elses_import_is_not_found(db: Database[Document], package: bytes,
                                           owner: Importer, newcomer: Importer) -> None:
    job = owner.validated(package)
    job_id = job["jobId"]
    for method, path, body in [("GET", "", None), ("DELETE", "", None),
                               ("POST", "/validate", None), ("GET", "/conflicts", None),
                               ("POST", "/execute", {"strategy": "replace"}),
                               ("GET", "/actions", None), ("POST", "/rollback", None)]:
        answer = newcomer.api.request(method, f"/imports/{job_id}{path}", json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    assert newcomer.api.request("GET", "/imports").json()["imports"] == []
    assert owner.job(job_id)["status"] == "awaiting_decision"
    assert owner.api.request("DELETE", f"/imports/{job_id}").json()["status"] == "cancelled"


def test_the_sixth_import_in_an_hour_is_refused(db: Database[Document],
                                                owner: Importer) -> None:
    for _ in range(5):
        owner.create()
    answer = owner.api.request("POST", "/imports", json={"filename": "package.zip"})
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) > 0
    assert answer.json()["error"]["code"] == "rate_limited"


def test_the_same_idempotency_key_gives_the_same_import_and_counts_once(
        db: Database[Document], package: bytes, owner: Importer) -> None:
    def create(key: str, filename: str = "package.zip") -> Any:
        return owner.api.request("POST", "/imports", json={"filename": filename},
                                 headers={"Idempotency-Key": key})

    first = create("import-1")
    assert first.status_code == 201, first.text
    assert first.headers["X-RateLimit-Remaining"] == "4"
    again = create("import-1")
    assert again.status_code == 201, again.text
    assert again.json()["jobId"] == first.json()["jobId"]
    assert "X-RateLimit-Remaining" not in again.headers  # a replay is not counted
    assert again.json()["upload"]["fields"]["key"] == first.json()["upload"]["fields"]["key"]
    assert create("import-1", "other.zip").json()["error"]["code"] == "idempotency_key_reused"
    # the same key on another route is another request
    export = owner.api.request("POST", "/exports", json={}, headers={"Idempotency-Key": "import-1"})
    assert export.status_code == 202
    assert export.json()["jobId"] != first.json()["jobId"]

    # the replayed form uploads; once validation started, a replay gets no new form
    Importer.upload(again.json(), package)
    job_id = first.json()["jobId"]
    assert owner.api.request("POST", f"/imports/{job_id}/validate").status_code == 202
    closed = create("import-1")
    assert closed.status_code == 409, closed.text
    assert closed.json()["error"]["details"]["jobId"] == job_id
    assert owner.wait(job_id, {"awaiting_decision"})["report"]["errorsTotal"] == 0
    assert len(owner.api.request("GET", "/imports").json()["imports"]) == 1


def test_the_upload_form_is_for_this_job_only_small_and_short_lived(
        db: Database[Document], owner: Importer) -> None:
    settings = get_settings()
    created = owner.create("notes.csv", size=1234)
    form = created["upload"]
    assert form["fields"]["key"] == f"imports/{created['jobId']}/upload"
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    assert {"key": form["fields"]["key"]} in policy["conditions"]
    assert ["content-length-range", 1, settings.max_upload_bytes] in policy["conditions"]
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert expires <= datetime.now(UTC) + timedelta(seconds=settings.upload_url_ttl_seconds + 5)
    too_big = owner.api.request("POST", "/imports", json={
        "filename": "huge.zip", "size": settings.max_upload_bytes + 1})
    assert too_big.status_code == 400
    assert owner.api.request("POST", f"/imports/{created['jobId']}/validate").status_code == 409


# ---------------------------------------------------------------------------- cancel


def test_cancel_before_and_while_awaiting_the_decision(
        db: Database[Document], package: bytes, owner: Importer,
        fresh_stack: LocalStack) -> None:
    before = snapshot(db)
    queued = owner.create()
    owner.upload(queued, package)
    cancelled = owner.api.request("DELETE", f"/imports/{queued['jobId']}").json()
    assert cancelled["status"] == "cancelled"
    assert owner.api.request("POST", f"/imports/{queued['jobId']}/validate").status_code == 409

    waiting = owner.validated(package)
    job_id = waiting["jobId"]
    assert Staging(db, job_id).count() > 0
    assert owner.api.request("DELETE", f"/imports/{job_id}").json()["status"] == "cancelled"
    machine = fresh_stack.state_machines["ImportStateMachine"]
    execution = fresh_stack.wait_for_execution(
        f"{machine.replace(':stateMachine:', ':execution:')}:{job_id}")
    assert execution["status"] == "FAILED"  # ImportFailed, after its clean-up
    assert owner.job(job_id)["status"] == "cancelled"
    assert Staging(db, job_id).count() == 0
    assert snapshot(db) == before
    assert owner.api.request("DELETE", f"/imports/{job_id}").status_code == 409
    objects = fresh_stack.client("s3").list_objects_v2(
        Bucket=fresh_stack.bucket, Prefix="imports/").get("Contents", [])
    assert not [o["Key"] for o in objects if o["Key"].endswith("/upload")]
    assert_calls_allowed(fresh_stack)


# ---------------------------------------------------------------------------- atomicity


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Batches of 5 operations: every session spans several journalled batches."""
    monkeypatch.setenv("IMPORT_BATCH_OPS", "5")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()  # the database fixture's monkeypatch undoes the variable


def test_a_crash_mid_session_leaves_every_session_whole(
        db: Database[Document], package: bytes, owner: Importer, small_batches: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = sorted(s["sessionId"] for s in owned_sessions(db, seed.DEMO_USER_ID))
    exported = {sid: messages_of(db, sid) for sid in sessions}
    for session_id in sessions:
        diverge(db, session_id)
    before = snapshot(db)
    crash_on_the_fifth = _failing_batch(5, keep=2, error=DROPPED)

    monkeypatch.setattr(Target, "bulk_write", crash_on_the_fifth)
    job = owner.run(package, strategy="replace")
    assert job["status"] == "failed", job
    done = {a["sessionId"] for a in owner.pages(f"/imports/{job['jobId']}/actions",
                                                "actions") if a["action"] == "replace"}
    assert done  # it failed part-way
    assert done != set(sessions)
    for session_id in sessions:
        now = messages_of(db, session_id)
        if session_id in done:  # wholly imported
            assert {k: without(v, *WRITTEN) for k, v in now.items()} == {
                k: without(v, *WRITTEN) for k, v in exported[session_id].items()}
        else:  # wholly as it was
            assert now == {m["uuid"]: m for docs in before.values() for m in docs
                           if m.get("sessionId") == session_id and "uuid" in m}
    assert Staging(db, job["jobId"]).count() == 0
    assert owner.rollback(job["jobId"])["status"] == "rolled_back"  # what it did, undone
    assert snapshot(db) == before


def test_a_retried_batch_undoes_the_half_written_session_first(
        db: Database[Document], package: bytes, owner: Importer, small_batches: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = sorted(s["sessionId"] for s in owned_sessions(db, seed.DEMO_USER_ID))
    exported = {sid: messages_of(db, sid) for sid in sessions}
    for session_id in sessions:
        diverge(db, session_id)
    drop_once = _failing_batch(4, keep=1, error=TransientError("throttled"))

    monkeypatch.setattr(Target, "bulk_write", drop_once)  # the ASL retries the task
    job = owner.run(package, strategy="replace")
    assert job["status"] == "succeeded", job
    assert job["outcome"]["sessions"]["replaced"] == len(sessions)
    for session_id in sessions:
        now = messages_of(db, session_id)
        assert {k: without(v, *WRITTEN) for k, v in now.items()} == {
            k: without(v, *WRITTEN) for k, v in exported[session_id].items()}


def test_progress_and_history(db: Database[Document], package: bytes, owner: Importer) -> None:
    job = owner.run(package, strategy="skip")
    assert job["progress"]["phase"] == "done"
    assert job["finishedAt"]
    listed = owner.api.request("GET", "/imports").json()["imports"]
    assert [j["jobId"] for j in listed] == [job["jobId"]]


# ---------------------------------------------------------------------------- CSV mapping


def test_a_field_mapping_given_with_the_decision_is_validated_before_it_is_used(
        db: Database[Document], newcomer: Importer, package: bytes) -> None:
    rows = ["id,chat,role,at,text,better_text"] + [
        f"m{i},chat-1,{'user' if i % 2 else 'assistant'},2025-08-0{i + 1}T10:00:00.000Z,"
        f"draft {i},final {i}" for i in range(4)]
    mapping = {"uuid": "id", "sessionId": "chat", "type": "role", "timestamp": "at",
               "content": "text"}
    upload = ("\n".join(rows) + "\n").encode()
    job = newcomer.validated(upload, "other-tool.csv",
                             options={"fieldMapping": mapping, "projectPath": "/work/notes"})
    assert job["status"] == "awaiting_decision", job
    assert job["report"]["format"] == "csv"
    assert job["report"]["counts"]["messages"] == 4

    # the decision brings another mapping: validated (and compared) again, then executed
    done = newcomer.decide(job["jobId"], strategy="merge",
                           fieldMapping={**mapping, "content": "better_text"})
    assert done["status"] == "succeeded", done
    assert done["decision"]["fieldMapping"]["content"] == "better_text"
    stored = messages_of(db, "chat-1")
    assert sorted(m["content"] for m in stored.values()) == [f"final {i}" for i in range(4)]
    project = one(db, PROJECTS, {"_id": one(db, SESSIONS, {"sessionId": "chat-1"})["projectId"]})
    assert (project["path"], project["user_id"]) == ("/work/notes", ObjectId(EMPTY_USER))

    # a mapping means nothing to a package, and a mapping that names a missing column fails
    waiting = newcomer.validated(package)
    answer = newcomer.api.request("POST", f"/imports/{waiting['jobId']}/execute",
                                  json={"strategy": "merge", "fieldMapping": mapping})
    assert answer.status_code == 400
    again = newcomer.validated(upload, "other-tool.csv",
                               options={"fieldMapping": mapping, "projectPath": "/work/notes"})
    failed = newcomer.decide(again["jobId"], strategy="merge",
                             fieldMapping={**mapping, "content": "no_such_column"})
    assert failed["status"] == "failed"
    assert failed["report"]["errors"][0]["code"] == "missing_column"
    assert messages_of(db, "chat-1") == stored  # nothing written by the failed one


def test_a_failed_clean_up_still_ends_the_job_and_a_rollback_repairs_it(
        db: Database[Document], package: bytes, owner: Importer, small_batches: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = sorted(s["sessionId"] for s in owned_sessions(db, seed.DEMO_USER_ID))
    for session_id in sessions:
        diverge(db, session_id)
    before = snapshot(db)
    crash_on_the_fourth = _failing_batch(4, keep=1, error=DROPPED)

    def unreachable(db: Any, bucket: Any, staging: Staging) -> int:
        if staging.writing():  # the clean-up, not the execution's own first look
            raise RuntimeError("MongoDB is unreachable")
        return 0

    with monkeypatch.context() as patch:
        patch.setattr(Target, "bulk_write", crash_on_the_fourth)
        patch.setattr(import_tasks, "recover", unreachable)
        job = owner.run(package, strategy="replace")
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "cleanup_failed"
    assert snapshot(db) != before  # a session is half-written: the rollback is the repair
    assert owner.rollback(job["jobId"])["status"] == "rolled_back"
    assert snapshot(db) == before
    assert Staging(db, job["jobId"]).count() == 0


def test_an_import_is_watchable_live_over_the_websocket(
        db: Database[Document], package: bytes, newcomer: Importer, small_batches: None,
        fresh_stack: LocalStack) -> None:
    """The same protocol as exports: snapshot, ordered progress while it writes, one end."""
    job = newcomer.validated(package)
    assert job["status"] == "awaiting_decision", job
    with ProgressSocket(fresh_stack.ws_url, fresh_stack.token_for(EMPTY_USER)) as socket:
        socket.subscribe(job["jobId"])
        snapshot_event = socket.receive()
        # validation's last event may be under 500 ms old, and a short execution may end within
        # the throttle's window: start it once the window is open, so its first report goes out
        _wait_for_throttle_window(job["jobId"])
        answer = newcomer.api.request("POST", f"/imports/{job['jobId']}/execute",
                                      json={"strategy": "merge"})
        assert answer.status_code == 202, answer.text
        events = list(socket.follow(job["jobId"], timeout=60))
        # still subscribed: a rollback runs the ended import again, to an end of its own
        answer = newcomer.api.request("POST", f"/imports/{job['jobId']}/rollback")
        assert answer.status_code == 202, answer.text
        rollback = list(socket.follow(job["jobId"], timeout=60))
    assert isinstance(snapshot_event, SnapshotEvent)
    assert snapshot_event.status == "awaiting_decision"
    assert all(event.kind == "import" for event in events + rollback)
    progress = [event for event in events if event.type == "job.progress"]
    assert progress, [event.type for event in events]
    assert {event.progress.phase for event in progress} <= {"importing"}
    seqs = [event.seq for event in events + rollback]
    assert seqs == sorted(set(seqs))
    assert events[-1].type == "job.succeeded"
    assert [event.type for event in events].count("job.succeeded") == 1
    assert [event.type for event in rollback][-1:] == ["job.rolled_back"]
    assert [event.type for event in rollback].count("job.rolled_back") == 1
    assert rollback[-1].status == "rolled_back"


def _wait_for_throttle_window(job_id: str) -> None:
    """Until the job's last progress event is MIN_INTERVAL_MS old (the row's own clock)."""
    sent = JobStore().require(job_id).progress_sent_at
    if sent is not None:
        while now_ms() - sent < MIN_INTERVAL_MS:
            time.sleep(0.01)


DROPPED = RuntimeError("the connection dropped mid-batch")


def _failing_batch(n: int, *, keep: int,
                   error: Exception) -> Callable[[Target, dict[str, Any]], None]:
    """A Target.bulk_write whose n-th batch writes only its first `keep` operations per
    collection, then raises `error` (a connection dropped mid-batch)."""
    original = Target.bulk_write
    calls = 0

    def failing(self: Target, ops: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            original(self, {name: writes[:keep] for name, writes in ops.items()})
            raise error
        original(self, ops)

    return failing


def _session_of(op: Any) -> str | None:
    """The sessionId a bulk operation writes (a message or a session document), if any."""
    doc = getattr(op, "_doc", None)
    return None if doc is None else str(doc["sessionId"])


@pytest.mark.parametrize(("path", "depth"), [("insert (new sessions)", 2),
                                             ("replace (journalled)", 2),
                                             ("insert (new sessions)", 3)])
def test_batches_in_flight_mark_each_session_writing_before_and_done_after_its_writes(
        db: Database[Document], package: bytes, newcomer: Importer, owner: Importer,
        small_batches: None, monkeypatch: pytest.MonkeyPatch, path: str, depth: int) -> None:
    """Batches written at once (import_writes_in_flight) keep what a crash relies on: every
    session is `writing` in staging before any batch writes to it, and `done` only once every
    batch that wrote to it has ended (a session spans several batches of 5)."""
    monkeypatch.setenv("IMPORT_WRITES_IN_FLIGHT", str(depth))
    get_settings.cache_clear()
    events: list[tuple[str, Any]] = []
    lock = threading.Lock()
    in_flight = most = 0
    write, mark = Target.bulk_write, Staging.update_each

    def bulk_write(self: Target, ops: dict[str, Any]) -> None:
        nonlocal in_flight, most
        sessions = {sid for writes in ops.values() for op in writes
                    if (sid := _session_of(op)) is not None}
        with lock:
            in_flight += 1
            most = max(most, in_flight)
            events.append(("start", sessions))
            calls = len(events)
        try:
            # slower than planning, so the next batch is always waiting; every third call
            # slower still, so a batch often ends before the one started ahead of it
            time.sleep(0.06 if calls % 3 == 0 else 0.01)
            write(self, ops)
        finally:
            with lock:
                in_flight -= 1
                events.append(("end", sessions))

    def update_each(self: Staging, changes: Any) -> None:
        marks = list(changes)
        with lock:
            events.append(("sending", marks))
        mark(self, marks)
        with lock:
            events.append(("marked", marks))

    importer = newcomer if path.startswith("insert") else owner
    if importer is owner:
        for session in owned_sessions(db, seed.DEMO_USER_ID):
            diverge(db, session["sessionId"])
    monkeypatch.setattr(Target, "bulk_write", bulk_write)
    monkeypatch.setattr(Staging, "update_each", update_each)
    job = importer.run(package, strategy="merge" if importer is newcomer else "replace")
    assert job["status"] == "succeeded", job
    assert most == depth  # that many batches were written at once

    session_of = {entry: fields["res"]["storedSessionId"] for kind, marks in events
                  if kind == "sending" for entry, fields in marks if fields.get("st") == "done"}
    first_write: dict[str, int] = {}
    last_end: dict[str, int] = {}
    for index, (kind, payload) in enumerate(events):
        for session_id in payload if kind in ("start", "end") else ():
            first_write.setdefault(session_id, index) if kind == "start" else None
            if kind == "end":
                last_end[session_id] = index
    written = {session_of[entry]: index for index, (kind, marks) in enumerate(events)
               if kind == "marked" for entry, fields in marks if fields.get("st") == "writing"}
    done = {session_of[entry]: index for index, (kind, marks) in enumerate(events)
            if kind == "sending" for entry, fields in marks if fields.get("st") == "done"}
    assert set(first_write) == set(written) == set(done) == set(last_end)
    assert len(first_write) == len(owned_sessions(db, seed.DEMO_USER_ID))
    for session_id, first in first_write.items():
        assert written[session_id] < first, session_id  # writing, then its first write
        assert done[session_id] > last_end[session_id], session_id  # its last write, then done


# ---------------------------------------------------------------------------- the pinned upload
# What is staged and executed is the upload that was validated: a file POSTed through the same
# form afterwards (still valid for minutes) is never read.

EVIL_SESSION = "x/../../evil session"


def dataport_json(session_id: str, numbers: range, **changes: dict[str, Any]) -> bytes:
    """A dataport JSON document of one session; `changes` by message number ("m2": {...})."""
    return conversations([message_doc(n, sessionId=session_id, uuid=f"{session_id}-m{n}",
                                      **changes.get(f"m{n}", {})) for n in numbers],
                         session={"sessionId": session_id})


def attack(session_id: str = EVIL_SESSION) -> bytes:
    """What validation refuses (invalid_id, invalid_message_type, wrong_type): a path-shaped
    session id, an unknown message type and an operator where a uuid belongs."""
    return dataport_json(session_id, range(11, 14), m12={"type": "evil"},
                         m13={"parentUuid": {"$gt": ""}})


def nothing_of_the_attack(db: Database[Document], before: dict[str, list[Document]],
                          after: dict[str, list[Document]]) -> None:
    assert messages_of(db, EVIL_SESSION) == {}
    assert db[SESSIONS].count_documents({"sessionId": EVIL_SESSION}) == 0
    written = [doc for docs in after.values() for doc in docs if doc not in
               [d for ds in before.values() for d in ds]]
    assert not [doc for doc in written if doc.get("type") == "evil"
                or isinstance(doc.get("parentUuid"), dict)
                or "evil" in str(doc.get("sessionId", ""))]


def job_objects(stack: LocalStack, job_id: str) -> list[str]:
    found = stack.client("s3").list_objects_v2(Bucket=stack.bucket,
                                               Prefix=f"imports/{job_id}/").get("Contents", [])
    return sorted(item["Key"].removeprefix(f"imports/{job_id}/") for item in found)


@pytest.fixture
def stage_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Holds the Stage task (the real one) until the test opens the gate: the moment between
    the report and staging in which the second POST of the defect went in."""
    gate = threading.Event()
    stage = import_tasks.stage

    def held(step: ImportStep) -> ImportStep:
        assert gate.wait(60), "the test never opened the gate"
        return stage(step)

    monkeypatch.setattr(import_tasks, "stage", held)
    yield gate
    gate.set()


def test_a_file_posted_through_the_form_after_validation_is_never_staged_or_imported(
        db: Database[Document], newcomer: Importer, fresh_stack: LocalStack,
        stage_gate: threading.Event) -> None:
    clean = dataport_json("pinned-clean-session", range(1, 4))
    before = snapshot(db)
    created = newcomer.create("conversations-0001.json")
    job_id = created["jobId"]
    newcomer.upload(created, clean)
    assert newcomer.api.request("POST", f"/imports/{job_id}/validate").status_code == 202
    reported = newcomer.wait_for(job_id, lambda job: bool(job.get("report")))
    assert reported["report"]["errorsTotal"] == 0, reported
    newcomer.upload(created, attack())  # the same form, still valid: accepted by S3
    stage_gate.set()

    job = newcomer.wait(job_id, WAITING)
    assert job["status"] == "awaiting_decision", job
    assert job["report"]["counts"]["messages"] == 3
    assert job["report"]["conflicts"]["newSessions"] == 1
    newcomer.upload(created, attack())  # and again while the decision is awaited
    done = newcomer.decide(job_id, strategy="replace")
    assert done["status"] == "succeeded", done
    assert done["outcome"]["sessions"]["inserted"] == 1

    after = snapshot(db)
    nothing_of_the_attack(db, before, after)
    landed = messages_of(db, "pinned-clean-session")
    assert sorted(landed) == [f"pinned-clean-session-m{n}" for n in range(1, 4)]
    assert sorted(m["content"] for m in landed.values()) == [f"message {n}" for n in range(1, 4)]
    assert (done["report"]["size"], done["report"]["sha256"]) == (
        len(clean), hashlib.sha256(clean).hexdigest())
    assert {"upload", "validated", "checked"}.isdisjoint(job_objects(fresh_stack, job_id))
    assert_calls_allowed(fresh_stack)


def test_a_revalidation_reads_the_pinned_upload_not_a_later_post(
        db: Database[Document], newcomer: Importer, fresh_stack: LocalStack) -> None:
    """A field mapping given with the decision validates and stages the upload again: the
    validated one, whatever was POSTed through the form meanwhile."""
    header = "id,chat,role,at,text,better_text"
    clean = "\n".join([header] + [
        f"p{i},pinned-chat,{'user' if i % 2 else 'assistant'},2025-08-0{i + 1}T10:00:00.000Z,"
        f"draft {i},final {i}" for i in range(4)]).encode() + b"\n"
    evil = "\n".join([header] + [
        f"e{i},{EVIL_SESSION},evil,2025-08-0{i + 1}T10:00:00.000Z,pwned,pwned"
        for i in range(4)]).encode() + b"\n"
    mapping = {"uuid": "id", "sessionId": "chat", "type": "role", "timestamp": "at",
               "content": "text"}
    before = snapshot(db)
    created = newcomer.create("other-tool.csv", options={"fieldMapping": mapping,
                                                         "projectPath": "/work/pinned"})
    job_id = created["jobId"]
    newcomer.upload(created, clean, "other-tool.csv")
    assert newcomer.api.request("POST", f"/imports/{job_id}/validate").status_code == 202
    job = newcomer.wait(job_id, WAITING)
    assert job["status"] == "awaiting_decision", job
    newcomer.upload(created, evil, "other-tool.csv")

    done = newcomer.decide(job_id, strategy="merge",
                           fieldMapping={**mapping, "content": "better_text"})
    assert done["status"] == "succeeded", done
    assert done["report"]["errorsTotal"] == 0
    nothing_of_the_attack(db, before, snapshot(db))
    landed = messages_of(db, "pinned-chat")
    assert sorted(m["content"] for m in landed.values()) == [f"final {i}" for i in range(4)]
    assert (done["report"]["size"], done["report"]["sha256"]) == (
        len(clean), hashlib.sha256(clean).hexdigest())
    assert {"upload", "validated", "checked"}.isdisjoint(job_objects(fresh_stack, job_id))


def test_the_report_has_the_size_and_sha256_of_the_upload(
        db: Database[Document], package: bytes, newcomer: Importer,
        fresh_stack: LocalStack) -> None:
    """A zip is read out of order (central directory first): the digest is still of every
    byte. A refused upload's report has them too, and nothing of it is left."""
    job = newcomer.validated(package)
    assert job["status"] == "awaiting_decision", job
    assert (job["report"]["size"], job["report"]["sha256"]) == (
        len(package), hashlib.sha256(package).hexdigest())
    # pinned: the form's key is empty from validation on (and dataport's own JSON keeps no
    # checked records: it reads again cheaply)
    assert job_objects(fresh_stack, job["jobId"]) == ["conflicts.jsonl", "validated"]
    assert newcomer.api.request("DELETE", f"/imports/{job['jobId']}").status_code == 200
    refused = attack()
    failed = newcomer.validated(refused, "conversations-0001.json")
    assert failed["status"] == "failed", failed
    assert {e["code"] for e in failed["report"]["errors"]} == {
        "invalid_id", "invalid_message_type", "wrong_type"}
    assert (failed["report"]["size"], failed["report"]["sha256"]) == (
        len(refused), hashlib.sha256(refused).hexdigest())
    assert job_objects(fresh_stack, failed["jobId"]) == []
    machine = fresh_stack.state_machines["ImportStateMachine"]
    fresh_stack.wait_for_execution(
        f"{machine.replace(':stateMachine:', ':execution:')}:{job['jobId']}")
    assert {"upload", "validated", "checked"}.isdisjoint(  # cancelled
        job_objects(fresh_stack, job["jobId"]))


def test_staging_refuses_a_record_that_fails_the_validators_checks(
        db: Database[Document], newcomer: Importer, fresh_stack: LocalStack) -> None:
    """Defence in depth: were a record ever to reach staging unvalidated (here the job row
    claims a clean report for an upload that is not), staging checks it again, and the job
    fails with record_refused before anything is written."""
    before = snapshot(db)
    created = newcomer.create("conversations-0001.json")
    job_id = created["jobId"]
    evil = dataport_json("refused-session", range(1, 4), m2={"type": "evil"})
    newcomer.upload(created, evil)
    settings = get_settings()
    pin = storage.pin_upload(PackagesBucket(fresh_stack.client("s3"), settings.packages_bucket),
                             job_id)
    JobStore().start(job_id)
    JobStore().update_import(job_id, upload_pin=pin, report=ValidationReport(
        counts=ImportCounts(projects=1, sessions=1, messages=3)))
    machine = fresh_stack.state_machines["ImportStateMachine"]
    fresh_stack.client("stepfunctions").start_execution(
        stateMachineArn=machine, name=job_id,
        input=ImportStep(job_id=job_id, next="stage").model_dump_json(by_alias=True,
                                                                       exclude_none=True))
    job = newcomer.wait(job_id, ENDED)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "record_refused", job["error"]
    assert "'evil' is not a message type" in job["error"]["message"]
    assert Staging(db, job_id).count() == 0
    assert snapshot(db) == before
    assert job_objects(fresh_stack, job_id) == []

# ---------------------------------------------------------------------------- identity

#: an account that plays the attacker (nothing of its own in the seeded database)
SQUATTER = "66ad9b005f2b4a0012c0dddd"
#: the public derivation copy ids had before they were keyed (what a squatter can compute)
PUBLIC_NAMESPACE = uuid.UUID("5b0e3c1c-6f4f-4d55-9a57-6b1f0c2d7e41")


def transcript(session_id: str, lines: list[tuple[str, str | None, datetime, str]],
               cwd: str = "/work/elsewhere") -> bytes:
    """A Claude Code transcript: (uuid, parentUuid, timestamp, text) user lines."""
    return "".join(json.dumps({
        "parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": cwd,
        "sessionId": session_id, "version": "1.0.67", "gitBranch": "main", "type": "user",
        "message": {"role": "user", "content": text}, "uuid": uid,
        "timestamp": at.isoformat().replace("+00:00", "Z")}) + "\n"
        for uid, parent, at, text in lines).encode()


def holders(db: Database[Document], uuid_: str) -> list[Document]:
    """Every message document with this uuid, in every message collection."""
    return [doc for docs in snapshot(db).values() for doc in docs if doc.get("uuid") == uuid_]


@pytest.fixture(params=["monthly", "single"])
def any_layout(request: pytest.FixtureRequest, fresh_stack: LocalStack,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    name = f"dataport_identity_{uuid.uuid4().hex[:8]}"
    with seeded_database(monkeypatch, fresh_stack, name, sessions_per_project=2,
                         layout=request.param):
        database = connect(fresh_stack.mongo_uri, name)
        yield database
        database.client.close()


@pytest.mark.parametrize("month", ["same month", "another month"])
def test_a_message_uuid_another_account_holds_is_imported_under_a_copy_id(
        any_layout: Database[Document], month: str, fresh_stack: LocalStack) -> None:
    """Someone imports a session of their own that reuses a uuid of the victim's messages:
    before, it existed twice (another monthly collection) or the execution failed on the
    unique index after a clean report. Now the comparison finds it and the copy gets an id
    derived from the importer's, with the references to it inside the session."""
    db = any_layout
    attacker = Importer(Api(fresh_stack, SQUATTER))
    victim_session = owned_sessions(db, seed.DEMO_USER_ID)[0]["sessionId"]
    target = min(messages_of(db, victim_session).values(), key=lambda m: m["timestamp"])
    at = target["timestamp"] + (timedelta(seconds=1) if month == "same month"
                                else timedelta(days=62))
    own = str(uuid.uuid4())
    upload = transcript(session := str(uuid.uuid4()), [
        (target["uuid"], None, at, "not the victim's words"),
        (own, target["uuid"], at + timedelta(seconds=1), "a reply to it")])
    before = snapshot(db)

    job = attacker.validated(upload, f"{session}.jsonl")
    assert job["status"] == "awaiting_decision", job
    assert job["report"]["conflicts"]["copiedMessages"] == 1  # decided before execute
    assert job["report"]["conflicts"]["copiedSessions"] == 0
    dry = attacker.decide(job["jobId"], strategy="merge", dryRun=True)
    [planned] = attacker.pages(f"/imports/{job['jobId']}/actions", "actions", dryRun="true")
    derived = copy_id(copy_key(), SQUATTER, target["uuid"])
    assert planned["copiedMessages"] == [{"uuid": target["uuid"], "storedUuid": derived}]
    assert planned["messages"]["copied"] == 1
    assert dry["dryRun"]["messages"]["copied"] == 1
    done = attacker.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert attacker.pages(f"/imports/{job['jobId']}/actions", "actions") == [planned]

    # the victim's message is the only one with its uuid, unchanged; the copy follows its id
    assert holders(db, target["uuid"]) == [target]
    stored = messages_of(db, session)
    assert set(stored) == {derived, own}
    assert stored[own]["parentUuid"] == derived
    assert stored[derived]["contentHash"] == content_hash(derived, "user", at,
                                                          "not the victim's words")
    for name, docs in snapshot(db).items():
        assert [d for d in docs if IMPORT_TAG not in d] == before.get(name, [])

    # the same file again finds the same copy: nothing changes
    settled = snapshot(db)
    again = attacker.run(upload, f"{session}.jsonl", strategy="merge")
    assert again["outcome"]["sessions"]["unchanged"] == 1, again
    assert snapshot(db) == settled
    assert_calls_allowed(fresh_stack)


def test_a_squatter_cannot_take_the_copy_ids_of_a_victims_import(
        db: Database[Document], package: bytes, newcomer: Importer,
        fresh_stack: LocalStack) -> None:
    """The squatter knows the victim's user id and the sessionIds of a package the victim is
    about to import (a hand-over), and imports sessions under the ids the public derivation
    gave the victim's copies. The victim's import is not held up, and nobody's data mixes."""
    squatter = Importer(Api(fresh_stack, SQUATTER))
    originals = owned_sessions(db, seed.DEMO_USER_ID)

    def public(value: str) -> str:
        return str(uuid.uuid5(PUBLIC_NAMESPACE, f"{EMPTY_USER}/{value}"))

    start = datetime(2025, 8, 2, 4, 52, tzinfo=UTC)
    squatted = [public(original["sessionId"]) for original in originals]
    upload = b"".join(transcript(public(original["sessionId"]), [
        (public(first["uuid"]), None, start + timedelta(minutes=n), "squatted")])
        for n, original in enumerate(originals)
        for first in [min(messages_of(db, original["sessionId"]).values(),
                          key=lambda m: m["timestamp"])])
    job = squatter.run(upload, "squat.jsonl", strategy="merge")
    assert job["status"] == "succeeded", job
    theirs = {sid: messages_of(db, sid) for sid in squatted}
    assert all(theirs.values())
    before = snapshot(db)

    job = newcomer.validated(package)
    assert job["status"] == "awaiting_decision", job  # before: conflict, the copy id was held
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert done["outcome"]["sessions"]["copies"] == len(originals)
    mine = {s["sessionId"] for s in owned_sessions(db, EMPTY_USER)}
    key = copy_key()
    assert mine == {copy_id(key, EMPTY_USER, s["sessionId"]) for s in originals}
    assert not mine & set(squatted)
    assert {sid: messages_of(db, sid) for sid in squatted} == theirs  # the squatter's, as is
    for name, docs in snapshot(db).items():  # nothing but the victim's import changed
        assert [d for d in docs if d.get(IMPORT_TAG) != done["jobId"]] == before.get(name, [])


def test_an_id_another_write_takes_during_the_execution_fails_with_what_to_do(
        db: Database[Document], package: bytes, newcomer: Importer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that races the import to a uuid after the comparison: the unique index refuses
    the batch; the job says which id and what to do (not "internal_error, try again"), the
    session is put back, and importing the file again, as told, works."""
    before = snapshot(db)
    job = newcomer.validated(package)
    taken: list[Document] = []
    original = Target.bulk_write

    def racing(self: Target, ops: dict[str, Any]) -> None:
        if not taken:  # another writer inserts the first new message's uuid just before
            name, writes = next((n, w) for n, w in ops.items() if n != SESSIONS and w)
            doc = {**writes[0]._doc, "_id": ObjectId(), "sessionId": "a-racing-session"}
            doc.pop(IMPORT_TAG)
            self.db[name].insert_one(doc)
            taken.append(doc)
        original(self, ops)

    with monkeypatch.context() as patch:
        patch.setattr(Target, "bulk_write", racing)
        failed = newcomer.decide(job["jobId"], strategy="merge")
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "id_taken"
    assert taken[0]["uuid"] in failed["error"]["message"]
    assert "Import the file again" in failed["error"]["message"]
    assert holders(db, taken[0]["uuid"]) == [taken[0]]
    assert owned_sessions(db, EMPTY_USER) == []  # nothing half-written stays
    assert {name: [d for d in docs if d["_id"] != taken[0]["_id"]]
            for name, docs in snapshot(db).items()} == before

    again = newcomer.run(package, strategy="merge")
    assert again["status"] == "succeeded", again
    assert again["report"]["conflicts"]["copiedMessages"] >= 1
    assert holders(db, taken[0]["uuid"]) == [taken[0]]


# ---------------------------------------------------------------------------- the fast path
# Sessions the user lacks are staged light (their uuids) and inserted straight from the upload:
# each message written once, no journal; per-session atomicity through the staging marks.


def journal_of(stack: LocalStack, job_id: str) -> list[str]:
    return [key for key in job_objects(stack, job_id) if key.startswith("journal/")]


def whole_or_absent(db: Database[Document], originals: list[Document],
                    user_id: str) -> set[str]:
    """Every copy of `originals` in `user_id`'s account is complete or not there at all;
    the sessions that are there."""
    key = copy_key()
    present = set()
    for original in originals:
        copy_of = copy_id(key, user_id, original["sessionId"])
        stored = messages_of(db, copy_of)
        session = db[SESSIONS].find_one({"sessionId": copy_of})
        expected = messages_of(db, original["sessionId"])
        if session is None:
            assert stored == {}, f"messages of {copy_of} without its session"
            continue
        assert set(stored) == {copy_id(key, user_id, uuid_) for uuid_ in expected}
        assert session["messageCount"] == len(expected)
        present.add(original["sessionId"])
    return present


def test_a_crash_in_the_middle_of_the_fast_path_leaves_every_session_whole(
        db: Database[Document], package: bytes, newcomer: Importer, small_batches: None,
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    originals = owned_sessions(db, seed.DEMO_USER_ID)
    total = sum(len(messages_of(db, s["sessionId"])) for s in originals)
    before = snapshot(db)
    # batches of 5 messages, each written by two calls (messages, then completed sessions):
    # half-way, a batch of messages gets two of them written
    halfway = _failing_batch(2 * (total // 10) + 1, keep=2, error=DROPPED)

    monkeypatch.setattr(Target, "bulk_write", halfway)
    job = newcomer.run(package, strategy="merge")
    assert job["status"] == "failed", job
    done = {a["sessionId"] for a in newcomer.pages(f"/imports/{job['jobId']}/actions",
                                                   "actions") if a["action"] == "insert"}
    assert done  # it failed part-way
    assert done != {s["sessionId"] for s in originals}
    assert whole_or_absent(db, originals, EMPTY_USER) == done
    assert journal_of(fresh_stack, job["jobId"]) == []  # nothing stored changed: no journal
    assert Staging(db, job["jobId"]).count() == 0
    assert newcomer.rollback(job["jobId"])["status"] == "rolled_back"
    assert snapshot(db) == before


def test_a_retried_fast_path_undoes_the_half_written_session_first(
        db: Database[Document], package: bytes, newcomer: Importer, small_batches: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    originals = owned_sessions(db, seed.DEMO_USER_ID)
    total = sum(len(messages_of(db, s["sessionId"])) for s in originals)
    drop_once = _failing_batch(2 * (total // 10) + 1, keep=3, error=TransientError("throttled"))

    monkeypatch.setattr(Target, "bulk_write", drop_once)  # the ASL retries the task
    job = newcomer.run(package, strategy="merge")
    assert job["status"] == "succeeded", job
    assert job["outcome"]["sessions"]["inserted"] == len(originals)
    assert whole_or_absent(db, originals, EMPTY_USER) == {s["sessionId"] for s in originals}


class _Commands(monitoring.CommandListener):
    """The write commands a client sends: (command, collection, documents or statements)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, list[Document]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in ("insert", "update", "delete"):
            body = event.command.get({"insert": "documents", "update": "updates",
                                      "delete": "deletes"}[name], [])
            self.writes.append((name, str(event.command[name]), list(body)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Commands]:
    """Every command the tasks' MongoDB client sends from now on."""
    listener = _Commands()
    listen_to_mongodb(monkeypatch, listener)
    yield listener
    mongo.reset()


def test_the_fast_path_writes_each_message_once(
        db: Database[Document], package: bytes, newcomer: Importer, fresh_stack: LocalStack,
        commands: _Commands) -> None:
    originals = owned_sessions(db, seed.DEMO_USER_ID)
    total = sum(len(messages_of(db, s["sessionId"])) for s in originals)
    job = newcomer.run(package, strategy="merge")
    assert job["status"] == "succeeded", job
    assert job["outcome"]["messages"]["inserted"] == total

    messages = [(kind, docs) for kind, name, docs in commands.writes
                if is_message_collection(name)]
    inserted = [doc for kind, docs in messages if kind == "insert" for doc in docs]
    assert len(inserted) == total  # each message once
    assert len({doc["uuid"] for doc in inserted}) == total
    assert [kind for kind, _ in messages if kind != "insert"] == []  # never updated
    staged = [doc for kind, name, docs in commands.writes
              if name == "dataport_import_staging" and kind == "insert" for doc in docs]
    assert staged  # session records, uuid lists and the index
    assert not [doc for doc in staged if ":m:" in str(doc.get("g"))]  # no message staged
    assert len(staged) < total / 4
    assert journal_of(fresh_stack, job["jobId"]) == []


def test_the_fast_path_decides_held_uuids_from_the_stream_for_short_and_long_sessions(
        db: Database[Document], fresh_stack: LocalStack) -> None:
    """The execution decides a new session's identity from the records it streams (short
    sessions read ahead together) or, for a session longer than a look-up batch, from its
    staged uuids: either way a uuid another account holds gets its derived id, and the
    replies to it follow."""
    squatter = Importer(Api(fresh_stack, SQUATTER))
    victims = sorted((m for s in owned_sessions(db, seed.DEMO_USER_ID)[:2]
                      for m in messages_of(db, s["sessionId"]).values()),
                     key=lambda m: m["uuid"])[:2]
    at = datetime(2025, 8, 2, 4, 52, tzinfo=UTC)
    sessions = [str(uuid.uuid4()) for _ in range(3)]
    lines: dict[str, list[tuple[str, str | None, datetime, str]]] = {}
    for session, size, held in zip(sessions, (3, LOOKUP_BATCH + 500, 4),
                                   (victims[0]["uuid"], victims[1]["uuid"], None), strict=True):
        ids = [str(uuid.uuid4()) for _ in range(size)]
        if held is not None:
            ids[size // 2] = held
        lines[session] = [(uid, ids[i - 1] if i else None, at + timedelta(seconds=i), f"l{i}")
                          for i, uid in enumerate(ids)]
    upload = b"".join(transcript(session, lines[session]) for session in sessions)
    before = snapshot(db)

    done = squatter.run(upload, "three.jsonl", strategy="merge")
    assert done["status"] == "succeeded", done
    assert done["outcome"]["sessions"]["inserted"] == 3
    assert done["outcome"]["messages"]["inserted"] == sum(len(v) for v in lines.values())
    assert done["outcome"]["messages"]["copied"] == 2
    key = copy_key()
    for session, victim in zip(sessions, (*victims, None), strict=True):
        stored = messages_of(db, session)
        expected = {uid if victim is None or uid != victim["uuid"]
                    else copy_id(key, SQUATTER, uid): parent
                    for uid, parent, _, _ in lines[session]}
        renamed = {uid: (copy_id(key, SQUATTER, parent) if victim is not None
                         and parent is not None and parent == victim["uuid"] else parent)
                   for uid, parent in expected.items()}
        assert {uid: doc.get("parentUuid") for uid, doc in stored.items()} == renamed
    for victim in victims:
        assert holders(db, victim["uuid"]) == [victim]  # the victims' own, unchanged
    for name, docs in snapshot(db).items():
        assert [d for d in docs if IMPORT_TAG not in d] == before.get(name, [])


def test_a_mixed_upload_inserts_the_new_sessions_and_merges_the_others(
        db: Database[Document], package: bytes, owner: Importer,
        fresh_stack: LocalStack) -> None:
    exported = {s["sessionId"]: s for s in owned_sessions(db, seed.DEMO_USER_ID)}
    exported_messages = {sid: messages_of(db, sid) for sid in exported}
    gone_one, gone_two, merged, replaced = sorted(exported)[:4]
    for session_id in (gone_one, gone_two):  # the user no longer has these: inserted again
        for name in db.list_collection_names():
            if is_message_collection(name):
                db[name].delete_many({"sessionId": session_id})
        db[SESSIONS].delete_one({"sessionId": session_id})
    changes = {sid: diverge(db, sid) for sid in (merged, replaced)}
    before = snapshot(db)

    job = owner.validated(package)
    assert job["report"]["conflicts"] == {"newSessions": 2, "changedSessions": 2,
                                          "identicalSessions": len(exported) - 4,
                                          "copiedSessions": 0, "copiedMessages": 0}
    decision = {"strategy": "merge", "perSession": {replaced: "replace"}}
    dry = owner.decide(job["jobId"], **decision, dryRun=True)["dryRun"]
    planned = owner.pages(f"/imports/{job['jobId']}/actions", "actions", dryRun="true")
    assert snapshot(db) == before
    done = owner.decide(job["jobId"], **decision)
    assert done["status"] == "succeeded", done
    assert without(done["outcome"], "dryRun", "startedAt", "finishedAt") == without(
        dry, "dryRun", "startedAt", "finishedAt")
    assert owner.pages(f"/imports/{job['jobId']}/actions", "actions") == planned
    assert done["outcome"]["sessions"] == {"inserted": 2, "replaced": 1, "merged": 1,
                                           "skipped": 0, "unchanged": len(exported) - 4,
                                           "removed": 0, "copies": 0}

    for session_id in (gone_one, gone_two, replaced):  # exactly the upload's again
        now = messages_of(db, session_id)
        assert {k: without(v, *WRITTEN) for k, v in now.items()} == {
            k: without(v, *WRITTEN) for k, v in exported_messages[session_id].items()}
        assert without(one(db, SESSIONS, {"sessionId": session_id}), *WRITTEN) == without(
            exported[session_id], *WRITTEN)
    union = messages_of(db, merged)
    assert set(union) == set(exported_messages[merged]) | {changes[merged]["added"]}
    # the journal holds the sessions that replace or merge, and only them
    journalled = set()
    for key in journal_of(fresh_stack, done["jobId"]):
        bucket = PackagesBucket(fresh_stack.client("s3"), get_settings().packages_bucket)
        sessions, _ = storage.read_journal(bucket, f"imports/{done['jobId']}/{key}")
        journalled |= {entry["i"] for entry in sessions}
    assert journalled == {merged, replaced}

    assert owner.rollback(done["jobId"])["status"] == "rolled_back"
    assert snapshot(db) == before


def test_an_upload_that_comes_back_to_a_session_is_staged_in_full_and_imported_whole(
        db: Database[Document], newcomer: Importer) -> None:
    """Lines of one session, another's, then the first's again: it cannot be streamed per
    session, so staging falls back to whole records and the import is the same."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    at = datetime(2025, 8, 2, 4, 52, tzinfo=UTC)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    upload = (transcript(first, [(ids[0], None, at, "one"), (ids[1], ids[0], at, "two")])
              + transcript(second, [(ids[2], None, at, "other")])
              + transcript(first, [(ids[3], ids[1], at + timedelta(seconds=1), "three"),
                                   (ids[4], ids[3], at + timedelta(seconds=2), "four")]))
    job = newcomer.run(upload, "interleaved.jsonl", strategy="merge")
    assert job["status"] == "succeeded", job
    assert job["outcome"]["sessions"]["inserted"] == 2
    assert set(messages_of(db, first)) == {ids[0], ids[1], ids[3], ids[4]}
    assert set(messages_of(db, second)) == {ids[2]}
    assert one(db, SESSIONS, {"sessionId": first})["messageCount"] == 4
