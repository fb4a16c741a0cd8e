"""A restore in shards whose plan hands its split over from one invocation to the next, and to
child executions, end to end on the local stack (real ASL in moto, real S3 multipart, real
pymongo): forced by a tiny time budget (every `sessions/` member's end hands over) and a bound
of two plan invocations per execution, a restore gives exactly what the same restore gives when
its plan is one invocation, for every mode; so does a chain (an increment: base + increment,
its deletions kept) and a file whose messages left their sessions' place; a fault after an
invocation either is retried (the invocation runs again: the same parts, the same result) or
leaves the restore failed with no part, no hand-over object, no open multipart upload and
nothing on /tmp."""

from __future__ import annotations

import glob
import io
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from dataport.backups.catalog import BackupCatalog
from dataport.bucket import packages_bucket
from dataport.errors import TransientError
from dataport.jobs.store import JobStore
from dataport.models.backups import BackupStatus
from dataport.settings import get_settings
from dataport.source.collections import SESSIONS, is_message_collection
from dataport.source.mongo import Document
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_instance_restores import everyone
from tests.e2e.test_restore_shards import CASES, counts, prepare, projects, restored, shard_size
from tests.e2e.test_restores import OWNER, add_session, content, diverge, forget, sessions_of
from tests.fixtures.faults import RESTORE_SHARDS, plan_fault
from tests.infrastructure.iam import assert_calls_allowed
from tests.restores.backups import Backup, flip_byte, increment_of, of_instance, of_user


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_restore_handover",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def owner(fresh_stack: LocalStack) -> Restorer:
    return Restorer(Api(fresh_stack, OWNER))


def hand_over(monkeypatch: pytest.MonkeyPatch, *, invocations: int = 2) -> None:
    """Every `sessions/` member's end hands the split over (no invocation has time for one
    more member), and an execution runs at most `invocations` plan invocations."""
    monkeypatch.setenv("RESTORE_PLAN_MEMBER_MS", str(10**9))
    monkeypatch.setenv("RESTORE_PLAN_INVOCATIONS", str(invocations))
    get_settings.cache_clear()


def one_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTORE_PLAN_MEMBER_MS", raising=False)
    monkeypatch.delenv("RESTORE_PLAN_INVOCATIONS", raising=False)
    get_settings.cache_clear()


def plan_children(stack: LocalStack, job_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The restore's plan children once none is running: the job ends in the last child's
    Finalize, a moment before that execution's own end (its `Done` state)."""
    sfn = stack.client("stepfunctions")
    machine = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
                   if m["name"].startswith("dataport-restore-"))
    deadline = time.monotonic() + timeout
    while True:
        children = [e for e in sfn.list_executions(stateMachineArn=machine)["executions"]
                    if e["name"].startswith(f"{job_id}-plan-")]
        if all(c["status"] != "RUNNING" for c in children) or time.monotonic() > deadline:
            return children
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The functions (in this process) split on a /tmp of this test's own: other processes'
    splits on the machine's /tmp are not this test's to see."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def split_directories() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "dataport-split-*")))


def nothing_left(stack: LocalStack, job_id: str) -> None:
    """No part, no hand-over object, no open multipart upload, no split directory on /tmp."""
    bucket = packages_bucket()
    assert bucket.keys(f"imports/{job_id}/shards/") == []
    assert bucket.keys(f"imports/{job_id}/split/") == []
    uploads = stack.client("s3").list_multipart_uploads(Bucket=bucket.name,
                                                         Prefix=f"imports/{job_id}/")
    assert uploads.get("Uploads", []) == []
    assert split_directories() == set()


def parts_read(job: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Each shard's user and what its part held (sessions, messages), in the plan's order."""
    store = JobStore()
    shards = [store.require(shard) for shard in job["shards"]]
    return sorted((s.restore_state.target_user_id, s.import_state.report.counts.sessions,
                   s.import_state.report.counts.messages)
                  for s in shards if s.import_state.report is not None)


@pytest.mark.parametrize(("mode", "conflicts"), CASES)
def test_a_plan_handed_over_gives_what_a_plan_of_one_invocation_gives(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        fresh_stack: LocalStack, mode: str, conflicts: str) -> None:
    backup, backup_id = prepare(db)
    before = snapshot(db)
    body: dict[str, Any] = {"backupId": backup_id, "mode": mode, "conflicts": conflicts}
    if mode == "selective":
        body["selections"] = {"sessions": sorted(s["sessionId"] for s in backup.sessions)[:4]}
    shard_size(monkeypatch, max(1, len(backup.messages) // 4))

    one_invocation(monkeypatch)
    single = owner.run(**body, timeout=180)
    assert single["status"] == "succeeded", single
    assert plan_children(fresh_stack, single["jobId"]) == []  # one invocation: no child
    expected, expected_projects = restored(db), projects(db)
    expected_parts = parts_read(single)
    assert owner.rollback(single["jobId"], timeout=180)["status"] == "rolled_back"
    assert snapshot(db) == before

    # the test backup's members hold 3 documents: a hand-over every 3 sessions, two plan
    # invocations an execution, so the plan runs in a chain of child executions
    hand_over(monkeypatch)
    counted, runs = plan_fault(-1, RuntimeError)  # no fault: the invocations counted
    monkeypatch.setitem(fresh_stack.handler_overrides, RESTORE_SHARDS, counted)
    job = owner.run(**body, timeout=300)
    assert job["status"] == "succeeded", job
    assert runs == list(range(len(runs))), runs  # each once, in order
    assert len(runs) >= 3, runs  # the test backup's members hold 3 documents
    children = plan_children(fresh_stack, job["jobId"])
    assert len(children) == (len(runs) - 1) // 2, children  # two invocations an execution
    assert {c["status"] for c in children} == {"SUCCEEDED"}
    assert restored(db) == expected  # the same sessions and messages, exactly
    assert projects(db) == expected_projects
    assert counts(job["outcome"]) == counts(single["outcome"])
    assert parts_read(job) == expected_parts  # the same shards, each holding the same
    nothing_left(fresh_stack, job["jobId"])

    assert owner.rollback(job["jobId"], timeout=300)["status"] == "rolled_back"
    assert snapshot(db) == before
    assert_calls_allowed(fresh_stack)  # PlanOn's and the hand-overs' calls, by the policies


def reference(db: Database[Document], owner: Restorer, before: Any, **body: Any
              ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Document]]:
    """A restore to compare with (succeeded): its job, the user's sessions and projects it
    gave; then rolled back to `before`."""
    job = owner.run(**body, timeout=180)
    assert job["status"] == "succeeded", job
    found, found_projects = restored(db), projects(db)
    assert owner.rollback(job["jobId"], timeout=180)["status"] == "rolled_back"
    assert snapshot(db) == before
    return job, found, found_projects


def handed_over(owner: Restorer, monkeypatch: pytest.MonkeyPatch, stack: LocalStack, *,
                invocations: int = 2, **body: Any) -> tuple[dict[str, Any], list[int]]:
    """The restore with its plan handed over at every member's end (`invocations` an
    execution), succeeded: its job and the plan invocations run (each once, in order)."""
    hand_over(monkeypatch, invocations=invocations)
    counted, runs = plan_fault(-1, RuntimeError)  # no fault: the invocations counted
    monkeypatch.setitem(stack.handler_overrides, RESTORE_SHARDS, counted)
    job = owner.run(**body, timeout=300)
    assert job["status"] == "succeeded", job
    assert runs == list(range(len(runs))), runs
    return job, runs


def left_nothing_and_rolls_back(db: Database[Document], owner: Restorer, stack: LocalStack,
                                job: dict[str, Any], before: Any) -> None:
    nothing_left(stack, job["jobId"])
    assert owner.rollback(job["jobId"], timeout=300)["status"] == "rolled_back"
    assert snapshot(db) == before


def prepare_chain(db: Database[Document], *, disorder: str | None = None
                  ) -> tuple[Backup, str, str, str]:
    """A base; then the source changes (a session edited, one deleted, one added) and an
    increment holds that; then the target moves on from the increment (another session
    changed, one lost, and the session the increment deleted put back: a full restore of the
    chain removes it again). The increment, its id, the deleted and the lost sessionIds.
    `disorder`: the base's sessions (each with its messages) not in sessionId order, `all`
    (from the start) or `last` (its last two swapped: in its last member)."""
    base = of_user(db, ObjectId(OWNER))
    if disorder == "all":
        base.sessions.reverse()
    elif disorder == "last":
        base.sessions[-2:] = base.sessions[:-3:-1]
    order = {s["sessionId"]: n for n, s in enumerate(base.sessions)}
    base.messages.sort(key=lambda m: order[m["sessionId"]])  # each with its session
    store_backup(base, OWNER)
    edited, deleted, other, changed, lost = sorted(content(db, OWNER))[:5]
    db[SESSIONS].update_one({"sessionId": edited}, {"$set": {"summary": "edited later"}})
    diverge(db, edited)
    kept = [(name, doc) for name in [SESSIONS, *filter(is_message_collection,
                                                       db.list_collection_names())]
            for doc in db[name].find({"sessionId": deleted})]
    forget(db, [deleted])
    added = add_session(db, other)
    increment = increment_of(db, ObjectId(OWNER), base, [edited, added], [deleted])
    increment_id = store_backup(increment, OWNER)
    diverge(db, changed)
    forget(db, [lost])
    for name, doc in kept:
        db[name].insert_one(doc)
    return increment, increment_id, deleted, lost


@pytest.mark.parametrize(("mode", "conflicts"), CASES)
def test_a_chain_handed_over_gives_what_one_execution_and_one_plan_invocation_give(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        fresh_stack: LocalStack, mode: str, conflicts: str) -> None:
    increment, increment_id, deleted, lost = prepare_chain(db)
    before = snapshot(db)
    body: dict[str, Any] = {"backupId": increment_id, "mode": mode, "conflicts": conflicts}
    if mode == "selective":  # the deleted session named too: the chain does not hold it
        body["selections"] = {"sessions": [*sorted(sessions_of(db, OWNER))[5:8], deleted,
                                           lost]}

    shard_size(monkeypatch, None)  # the chain as one import execution
    one_invocation(monkeypatch)
    execution, expected, expected_projects = reference(db, owner, before, **body)
    assert not execution.get("shards"), execution
    assert (deleted in expected) == (mode != "full")  # full removes what the chain deleted

    # (a selection holds a few sessions: smaller shards)
    shard_size(monkeypatch, max(1, len(increment.messages) // (8 if mode == "selective" else 2)))
    single = owner.run(**body, timeout=180)  # in shards, the plan one invocation
    assert single["status"] == "succeeded", single
    assert len(single["shards"]) >= 2, single
    assert plan_children(fresh_stack, single["jobId"]) == []
    assert restored(db) == expected
    assert projects(db) == expected_projects
    expected_parts = parts_read(single)
    assert owner.rollback(single["jobId"], timeout=180)["status"] == "rolled_back"
    assert snapshot(db) == before

    # every `sessions/` member's end of either link hands over, two invocations an execution
    job, runs = handed_over(owner, monkeypatch, fresh_stack, **body)
    assert len(runs) >= 4, runs  # the base's members hold 3 sessions each
    assert plan_children(fresh_stack, job["jobId"])
    assert restored(db) == expected
    assert projects(db) == expected_projects
    assert counts(job["outcome"]) == counts(single["outcome"])
    assert parts_read(job) == expected_parts
    left_nothing_and_rolls_back(db, owner, fresh_stack, job, before)


@pytest.mark.parametrize("disorder", ["all", "last"])
def test_a_chain_not_in_session_order_is_split_again_newest_link_first(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        fresh_stack: LocalStack, disorder: str) -> None:
    """Not a chain dataport makes: once found (after hand-overs, for a disorder in the base's
    last member), the plan splits it again from the start, newest link first, in an
    invocation of its own: the result is the one execution's."""
    increment, increment_id, *_ = prepare_chain(db, disorder=disorder)
    before = snapshot(db)
    body: dict[str, Any] = {"backupId": increment_id, "mode": "full", "conflicts": "overwrite"}
    shard_size(monkeypatch, None)
    one_invocation(monkeypatch)
    _, expected, _ = reference(db, owner, before, **body)

    shard_size(monkeypatch, max(1, len(increment.messages) // 2))
    job, runs = handed_over(owner, monkeypatch, fresh_stack, invocations=1000, **body)
    if disorder == "last":
        assert len(runs) >= 3, runs  # handed over, found out of order, split again
    assert len(job["shards"]) >= 2, job
    assert restored(db) == expected
    left_nothing_and_rolls_back(db, owner, fresh_stack, job, before)


@pytest.mark.parametrize("kind", ["backup", "chain"])
def test_a_retried_plan_invocation_writes_the_same_and_a_failed_one_leaves_nothing(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        fresh_stack: LocalStack, kind: str) -> None:
    if kind == "chain":
        increment, backup_id, *_ = prepare_chain(db)
        messages = len(increment.messages) // 2
    else:
        backup, backup_id = prepare(db)
        messages = len(backup.messages) // 4
    before = snapshot(db)
    shard_size(monkeypatch, max(1, messages))
    one_invocation(monkeypatch)
    single, expected, _ = reference(db, owner, before, backupId=backup_id, mode="full")
    expected_parts = parts_read(single)

    # the answer of the second invocation is lost: Step Functions runs it again, which finds
    # its own objects from the first run and writes them again, byte for byte
    hand_over(monkeypatch, invocations=1000)
    faulty, runs = plan_fault(1, TransientError)
    monkeypatch.setitem(fresh_stack.handler_overrides, RESTORE_SHARDS, faulty)
    job = owner.run(backupId=backup_id, mode="full", timeout=300)
    assert job["status"] == "succeeded", job
    assert runs[:3] == [0, 1, 1], runs
    assert len(runs) >= 4, runs
    assert restored(db) == expected
    assert parts_read(job) == expected_parts
    store = JobStore()
    pins = {s.restore_state.upload_pin for s in map(store.require, job["shards"])}
    assert None not in pins
    assert len(pins) == len(job["shards"])  # each shard's own part, its pin read fine
    assert owner.rollback(job["jobId"], timeout=300)["status"] == "rolled_back"
    assert snapshot(db) == before

    # the same fault, not retried, between the second invocation and the next: the restore
    # ends failed, nothing written, nothing left behind
    faulty, runs = plan_fault(1, RuntimeError)
    monkeypatch.setitem(fresh_stack.handler_overrides, RESTORE_SHARDS, faulty)
    failed = owner.run(backupId=backup_id, mode="full", timeout=300)
    assert failed["status"] == "failed", failed
    assert runs == [0, 1], runs
    assert failed["shards"] == []  # no shard made: they are made once the plan is done
    assert snapshot(db) == before
    nothing_left(fresh_stack, failed["jobId"])


def test_a_file_whose_messages_leave_their_sessions_is_handed_over_like_any_other(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        fresh_stack: LocalStack) -> None:
    backup = of_user(db, ObjectId(OWNER), grouped=False)  # messages by uuid: out of place
    backup_id = store_backup(backup, OWNER)
    forget(db, sorted(sessions_of(db, OWNER))[:3])
    before = snapshot(db)
    shard_size(monkeypatch, max(1, len(backup.messages) // 4))
    one_invocation(monkeypatch)
    single, expected, _ = reference(db, owner, before, backupId=backup_id, mode="full")
    expected_parts = parts_read(single)

    # a hand-over at every `sessions/` member's end, then at every `messages/` member's end
    # of the messages that left their place (each may belong to a session read before)
    job, runs = handed_over(owner, monkeypatch, fresh_stack, invocations=1000,
                            backupId=backup_id, mode="full")
    assert len(runs) > len(backup.sessions) // 3 + 1, runs  # more than the sessions' ends
    assert restored(db) == expected
    assert counts(job["outcome"]) == counts(single["outcome"])
    assert parts_read(job) == expected_parts
    left_nothing_and_rolls_back(db, owner, fresh_stack, job, before)


def test_an_instance_restore_handed_over_gives_every_user_what_one_invocation_gives(
        db: Database[Document], monkeypatch: pytest.MonkeyPatch, fresh_stack: LocalStack) -> None:
    admin = Restorer(Api(fresh_stack, seed.DEMO_USER_ID, admin=True))
    at_backup = everyone(db)
    backup_id = store_backup(of_instance(db), seed.DEMO_USER_ID)
    for sessions in at_backup.values():  # each user loses a session, one changes one
        forget(db, [sorted(sessions)[0]])
    diverge(db, sorted(at_backup[seed.DEMO_USER_ID])[1])
    before = snapshot(db)
    body: dict[str, Any] = {"backupId": backup_id, "target": "instance", "mode": "full",
                            "conflicts": "overwrite"}

    one_invocation(monkeypatch)
    single = admin.run(**body, timeout=180)
    assert single["status"] == "succeeded", single
    assert everyone(db) == at_backup
    assert admin.rollback(single["jobId"], timeout=180)["status"] == "rolled_back"
    assert snapshot(db) == before

    hand_over(monkeypatch)  # users interleave: every hand-over ends each open shard's members
    counted, runs = plan_fault(-1, RuntimeError)
    monkeypatch.setitem(fresh_stack.handler_overrides, RESTORE_SHARDS, counted)
    job = admin.run(**body, timeout=300)
    assert job["status"] == "succeeded", job
    assert len(runs) >= 3, runs
    assert everyone(db) == at_backup  # every user equal to the backup, under their account
    assert counts(job["outcome"]) == counts(single["outcome"])
    assert parts_read(job) == parts_read(single)
    nothing_left(fresh_stack, job["jobId"])


@pytest.mark.parametrize("damage", ["member", "object"])
def test_a_damaged_backup_is_refused_by_a_plan_handed_over_before_any_shard_starts(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        fresh_stack: LocalStack, damage: str) -> None:
    backup = of_user(db, ObjectId(OWNER))
    container = backup.container()
    if damage == "member":  # in the last messages member: found by the plan's last split
        last = sorted(n for n in zipfile.ZipFile(io.BytesIO(container)).namelist()
                      if n.startswith("messages/"))[-1]
        backup_id = store_backup(backup, OWNER, data=flip_byte(container, last))
    else:  # the stored object is not the one recorded: found by the whole objects' pass
        backup_id = store_backup(backup, OWNER, sha256="0" * 64)
    forget(db, sorted(sessions_of(db, OWNER))[:2])
    before = snapshot(db)
    shard_size(monkeypatch, max(1, len(backup.messages) // 4))
    hand_over(monkeypatch, invocations=1000)
    counted, runs = plan_fault(-1, RuntimeError)
    monkeypatch.setitem(fresh_stack.handler_overrides, RESTORE_SHARDS, counted)

    job = owner.run(backupId=backup_id, mode="full", timeout=300)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "backup_corrupted"
    assert len(runs) >= 2, runs  # handed over before the damage was found
    if damage == "member":
        assert last in job["error"]["message"]
    assert job["shards"] == []  # no shard was made, none started
    assert snapshot(db) == before
    nothing_left(fresh_stack, job["jobId"])
    record = BackupCatalog().find(backup_id)
    assert record is not None
    assert record.status is BackupStatus.CORRUPTED
