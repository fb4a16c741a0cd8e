"""One user's restore in several shards, end to end on the local stack (real ASL in moto: the
restore machine's plan and Distributed Map of import executions; real pymongo over nx-27017):
forced into shards by a small `RESTORE_SHARD_MESSAGES`, a restore gives exactly what the same
restore gives as one import execution, for every mode; a project lost since the backup is
created once; a shard that fails leaves the others restored and undoable; rollbacks are
exact."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from pymongo.database import Database

from dataport.bucket import packages_bucket
from dataport.imports import storage
from dataport.jobs.store import JobStore
from dataport.progress.events import (
    ProgressEvent,
    RolledBackEvent,
    SnapshotEvent,
    SucceededEvent,
)
from dataport.progress.throttle import MIN_INTERVAL_MS
from dataport.settings import get_settings
from dataport.source.collections import PROJECTS, SESSIONS
from dataport.source.mongo import Document
from dataport.source.staging import DONE, INDEX, Staging
from dataport.source.writes import IMPORT_TAG
from dataport.workflows.restore_progress import records_done, shard_count
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_restores import (
    OWNER,
    add_session,
    content,
    diverge,
    forget,
    made_backup,
    one,
    sessions_of,
)
from tests.fixtures.faults import RESTORE_SHARDS, spaced_shard_counts
from tests.infrastructure.iam import assert_calls_allowed
from tests.restores.backups import Backup, of_user
from tests.restores.states import restore_state


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_restore_shards",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def owner(fresh_stack: LocalStack) -> Restorer:
    return Restorer(Api(fresh_stack, OWNER))


def shard_size(monkeypatch: pytest.MonkeyPatch, messages: int | None) -> None:
    """Restores of more than `messages` messages run in shards of about that many (None: the
    default, under which the seed's user restores as one import execution)."""
    if messages is None:
        monkeypatch.delenv("RESTORE_SHARD_MESSAGES", raising=False)
    else:
        monkeypatch.setenv("RESTORE_SHARD_MESSAGES", str(messages))
    get_settings.cache_clear()


def projects(db: Database[Document]) -> dict[str, Document]:
    """The user's projects by path, without what a restore sets itself."""
    found: dict[str, Document] = {}
    for doc in db[PROJECTS].find({"user_id": ObjectId(OWNER)}):
        assert doc["path"] not in found, f"two projects of path {doc['path']}"
        found[doc["path"]] = {k: v for k, v in doc.items()
                              if k not in ("_id", IMPORT_TAG, "updatedAt")}
    return found


def restored(db: Database[Document]) -> dict[str, Any]:
    """The user's sessions and messages (`content`), each session's project named by its path
    (a project the restore creates has an id of its own each time)."""
    paths = {p["_id"]: p["path"] for p in db[PROJECTS].find({"user_id": ObjectId(OWNER)})}
    return {sid: ({**session, "projectId": paths[session["projectId"]]}, messages)
            for sid, (session, messages) in content(db, OWNER).items()}


def counts(outcome: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in outcome.items() if k not in ("dryRun", "startedAt", "finishedAt")}


def prepare(db: Database[Document]) -> tuple[Backup, str]:
    """The user's backup, then their data changed: a session edited, one lost, one made after
    the backup, and a whole project lost (its sessions and itself)."""
    backup = of_user(db, ObjectId(OWNER))
    at_backup = content(db, OWNER)
    changed, lost, other = sorted(at_backup)[:3]
    backup_id = store_backup(backup, OWNER)
    diverge(db, changed)
    forget(db, [lost])
    add_session(db, other)
    gone = next(p for p in db[PROJECTS].find({"user_id": ObjectId(OWNER)})
                if db[SESSIONS].count_documents({"projectId": p["_id"]}) >= 2
                and not {changed, lost, other} & {s["sessionId"] for s in
                                                  db[SESSIONS].find({"projectId": p["_id"]})})
    forget(db, [s["sessionId"] for s in db[SESSIONS].find({"projectId": gone["_id"]})])
    db[PROJECTS].delete_one({"_id": gone["_id"]})
    return backup, backup_id


CASES = [("full", "overwrite"), ("full", "rename"), ("merge", "merge"), ("selective", "skip")]


@pytest.mark.parametrize(("mode", "conflicts"), CASES)
def test_a_restore_in_several_shards_gives_what_one_shard_gives(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        mode: str, conflicts: str) -> None:
    backup, backup_id = prepare(db)
    before = snapshot(db)
    body: dict[str, Any] = {"backupId": backup_id, "mode": mode, "conflicts": conflicts}
    if mode == "selective":
        body["selections"] = {"sessions": sorted(s["sessionId"] for s in backup.sessions)[:4]}

    shard_size(monkeypatch, None)
    single = owner.run(**body)
    assert single["status"] == "succeeded", single
    assert single.get("shards") is None  # small: one import execution, no plan, no Map
    expected, expected_projects = restored(db), projects(db)
    assert owner.rollback(single["jobId"])["status"] == "rolled_back"
    assert snapshot(db) == before

    shard_size(monkeypatch, max(1, len(backup.messages) // 4))
    dry = owner.run(**body, dryRun=True)
    assert dry["status"] == "succeeded", dry
    assert snapshot(db) == before  # a dry run in shards writes nothing either
    sharded = owner.run(**body, timeout=180)
    assert sharded["status"] == "succeeded", sharded
    assert len(sharded["shards"]) >= 3, sharded["shards"]
    assert restored(db) == expected  # the same sessions and messages, exactly
    assert projects(db) == expected_projects  # the lost project made once, the same
    assert counts(sharded["outcome"]) == counts(single["outcome"])
    assert counts(dry["dryRun"]) == counts(sharded["outcome"])  # the dry run said what it did

    store = JobStore()
    parts = [store.require(shard).restore_state for shard in sharded["shards"]]
    assert {p.target_user_id for p in parts} == {OWNER}
    parts_at = storage.shard_parts_prefix(sharded["jobId"])
    assert all(p.upload_pin is not None and p.upload_pin.key.startswith(parts_at)
               for p in parts)
    read = sum(p.report.counts.messages for p in parts if p.report is not None)
    wanted = {s["sessionId"] for s in backup.sessions} if mode != "selective" else set(
        body["selections"]["sessions"])
    assert read == sum(1 for m in backup.messages if m["sessionId"] in wanted)  # each its own

    assert owner.rollback(sharded["jobId"], timeout=180)["status"] == "rolled_back"
    assert snapshot(db) == before  # every shard and the removal undone, exactly
    assert_calls_allowed(owner.api.stack)  # every call the functions made, by their policies


def test_a_shard_that_fails_leaves_the_others_restored_and_the_rollback_exact(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = of_user(db, ObjectId(OWNER))
    at_backup = content(db, OWNER)
    broken = sorted(at_backup)[-1]
    bad = next(m for m in backup.messages if m["sessionId"] == broken)
    bad["costUsd"] = Decimal128("-1")  # refused by the import's checks: that shard only
    backup_id = store_backup(backup, OWNER)
    lost = sorted(at_backup)[:2]
    forget(db, [*lost, broken])
    added = add_session(db, sorted(at_backup)[3])
    before = snapshot(db)

    shard_size(monkeypatch, max(1, len(backup.messages) // 4))
    job = owner.run(backupId=backup_id, mode="full", timeout=180)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "shards_failed"
    shards = [owner.job(shard) for shard in job["shards"]]
    failed = [s for s in shards if s["status"] == "failed"]
    assert len(failed) == 1, failed
    assert failed[0]["error"]["code"] == "invalid_upload", failed
    assert failed[0]["jobId"] in job["error"]["message"]
    after = content(db, OWNER)
    assert broken not in after  # nothing of the refused shard written
    for session_id in lost:  # the other shards restored theirs
        assert after[session_id] == at_backup[session_id]
    assert added in sessions_of(db, OWNER)  # a failed restore in shards removes nothing

    assert owner.rollback(job["jobId"], timeout=180)["status"] == "rolled_back"
    assert snapshot(db) == before


def test_a_small_restore_stays_one_import_execution(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = of_user(db, ObjectId(OWNER))
    backup_id = store_backup(backup, OWNER)
    shard_size(monkeypatch, len(backup.messages))  # exactly at the size: not more
    job = owner.run(backupId=backup_id, mode="merge")
    assert job["status"] == "succeeded", job
    assert job.get("shards") is None
    assert one(db, PROJECTS, {"user_id": ObjectId(OWNER)})  # still the user's own


def test_a_removal_longer_than_an_invocation_goes_on_in_a_child_execution(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        fresh_stack: LocalStack) -> None:
    backup = of_user(db, ObjectId(OWNER))
    at_backup = content(db, OWNER)
    backup_id = store_backup(backup, OWNER)
    made_since = [add_session(db, like) for like in sorted(at_backup)[:3]]
    before = snapshot(db)
    shard_size(monkeypatch, max(1, len(backup.messages) // 3))
    # every invocation stops after one batch of one session: the pass needs several
    monkeypatch.setenv("IMPORT_BATCH_OPS", "1")
    monkeypatch.setenv("WORKER_RESERVE_MS", str(10**9))
    get_settings.cache_clear()

    job = owner.run(backupId=backup_id, mode="full", timeout=300)
    assert job["status"] == "succeeded", job
    assert content(db, OWNER) == at_backup  # what was made since is gone, the rest as it was
    assert job["outcome"]["sessions"]["removed"] == len(made_since)
    sfn = fresh_stack.client("stepfunctions")
    machine = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
                   if m["name"].startswith("dataport-restore-"))
    children = [e for e in sfn.list_executions(stateMachineArn=machine)["executions"]
                if e["name"].startswith(f"{job['jobId']}-remove-")]
    assert len(children) == 1, children  # the rest of the pass, after the first invocation
    assert children[0]["status"] == "SUCCEEDED"

    assert owner.rollback(job["jobId"], timeout=300)["status"] == "rolled_back"
    assert snapshot(db) == before  # the removed sessions are back, exactly
    assert_calls_allowed(fresh_stack)


def test_progress_counts_records_restored_and_a_rollback_its_shards_over_the_websocket(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = of_user(db, ObjectId(OWNER))
    at_backup = content(db, OWNER)
    backup_id = store_backup(backup, OWNER)
    forget(db, sorted(at_backup)[:4])
    stack = owner.api.stack
    shard_size(monkeypatch, max(1, len(backup.messages) // 3))
    # the shards run in parallel and may end within the throttle's 500 ms: their counts are
    # spaced apart so that each is heard (the counting itself is the template's)
    monkeypatch.setitem(stack.handler_overrides, RESTORE_SHARDS,
                        spaced_shard_counts(MIN_INTERVAL_MS / 1000 + 0.1))
    answer = owner.start(backupId=backup_id, mode="merge")
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["jobId"]
    with ProgressSocket(stack.ws_url, stack.token_for(OWNER)) as socket:
        socket.subscribe(job_id)
        events = list(socket.follow(job_id, timeout=180))
    job = owner.job(job_id)
    assert job["status"] == "succeeded", job
    shards = [JobStore().require(shard) for shard in job["shards"]]
    records = sum(s.import_state.report.counts.projects + s.import_state.report.counts.sessions
                  + s.import_state.report.counts.messages
                  for s in shards if s.import_state.report is not None)
    assert records >= len(backup.sessions) + len(backup.messages)  # a project may be in two
    restoring = [e.progress for e in events if isinstance(e, (ProgressEvent, SnapshotEvent))
                 and e.progress.phase == "restoring"]
    assert {p.total for p in restoring} == {records}, restoring  # records, not shards
    counted = [p.current for p in restoring if p.current > 0]
    assert counted == sorted(counted), restoring
    assert len(counted) >= len(shards), restoring  # each shard's end heard at least
    assert counted[-1] == records
    assert isinstance(events[-1], SucceededEvent)

    assert owner.api.request("POST", f"/restores/{job_id}/rollback").status_code == 202
    with ProgressSocket(stack.ws_url, stack.token_for(OWNER)) as socket:
        socket.subscribe(job_id)
        events = list(socket.follow(job_id, timeout=180))
    rolling = [e.progress for e in events if isinstance(e, (ProgressEvent, SnapshotEvent))
               and e.progress.phase == "rolling_back" and e.progress.total > 0]
    assert {p.total for p in rolling} == {len(shards)}, rolling  # its shards, as they end
    assert [p.current for p in rolling if p.current > 0] == list(range(1, len(shards) + 1))
    assert isinstance(events[-1], RolledBackEvent), events[-1]
    assert content(db, OWNER) == {sid: v for sid, v in at_backup.items()
                                  if sid not in sorted(at_backup)[:4]}
    assert_calls_allowed(stack)  # the folds and counts, the events' posts among them


def test_a_shards_count_is_its_finished_sessions_and_their_messages(
        mongo_db: Database[Document]) -> None:
    staging = Staging(mongo_db, "job")
    done, writing = {"st": DONE}, {"st": "writing"}
    entries = [("a", 3, done), ("b", 5, done), ("c", 7, writing), ("d", 11, {})]
    staging.collection.insert_many([{"g": staging.key(INDEX, sid), "n": 0, "s": sid, "m": m,
                                     **state} for sid, m, state in entries])
    other = Staging(mongo_db, "other")  # another job's entries are not counted
    other.collection.insert_one({"g": other.key(INDEX, "a"), "n": 0, "m": 100, **done})
    assert records_done(staging) == 2 + 3 + 5
    assert records_done(Staging(mongo_db, "nothing")) == 0


def test_a_shards_count_is_read_once_then_followed_by_what_its_execution_marks(
        local_stack: LocalStack, mongo_db: Database[Document]) -> None:
    """A shard's folds cost the database nothing: its staging is read once, before the
    invocation writes, and what the execution marks done after that is added (the fold each
    second was an aggregate over the whole staging collection)."""
    store = JobStore()
    shard = store.create(OWNER, restore_state(OWNER).model_copy(update={"parent_id": "p" * 32}))
    staging = Staging(mongo_db, shard.job_id)
    staging.collection.insert_many([{"g": staging.key(INDEX, sid), "n": 0, "s": sid, "m": m,
                                     **state} for sid, m, state in
                                    [("a", 3, {"st": DONE}), ("b", 7, {"st": "writing"})]])
    marked = [0]
    count = shard_count(shard, staging, lambda: marked[0])
    assert count is not None
    assert count() == 1 + 3
    staging.collection.insert_one({"g": staging.key(INDEX, "c"), "n": 0, "m": 100, "st": DONE})
    marked[0] = 1 + 7  # the execution marked b done
    assert count() == 1 + 3 + 1 + 7  # the staging is not read again
    restore = store.create(OWNER, restore_state(OWNER))
    assert shard_count(restore, staging, lambda: 0) is None  # not a shard: nothing to fold


def test_an_encrypted_backup_in_shards_needs_its_password_and_its_parts_none(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "Tr0ub4dor&3-backup"
    expected = content(db, OWNER)
    made = made_backup(owner.api, {"name": "sealed", "password": password})
    forget(db, list(expected))
    shard_size(monkeypatch, max(1, made["counts"]["messages"] // 3))

    refused = owner.run(backupId=made["backupId"], mode="merge")
    assert refused["status"] == "failed", refused
    assert [e["code"] for e in refused["report"]["errors"]] == ["zip_encrypted"]
    assert refused["shards"] == []  # refused by the plan: no shard made
    wrong = owner.run(backupId=made["backupId"], mode="merge", password="not-the-password")
    assert wrong["status"] == "failed", wrong
    assert wrong["report"]["errors"][0]["code"] == "wrong_password"
    assert sessions_of(db, OWNER) == {}  # nothing written by either

    job = owner.run(backupId=made["backupId"], mode="merge", password=password, timeout=180)
    assert job["status"] == "succeeded", job
    assert len(job["shards"]) >= 2, job
    assert content(db, OWNER) == expected
    # the plan read the backup with the password; the shards read their parts without one
    assert all(JobStore().require(shard).sealed_password is None for shard in job["shards"])


def test_a_split_past_the_plans_time_budget_stops_and_writes_nothing(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = of_user(db, ObjectId(OWNER))
    backup_id = store_backup(backup, OWNER)
    forget(db, [sorted(sessions_of(db, OWNER))[0]])
    before = snapshot(db)
    shard_size(monkeypatch, max(1, len(backup.messages) // 3))
    # the plan must keep more than its whole invocation: the split stops at its first record
    monkeypatch.setenv("RESTORE_PLAN_RESERVE_MS", str(10**9))
    get_settings.cache_clear()

    job = owner.run(backupId=backup_id, mode="full")
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "backup_too_large"
    assert "after reading 1 records" in job["error"]["message"]
    assert job["shards"] == []  # no shard made
    assert snapshot(db) == before  # nothing written, no project made
    assert packages_bucket().keys(f"imports/{job['jobId']}/") == []  # no part left
