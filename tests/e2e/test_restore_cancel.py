"""Cancelling a running restore (DELETE /restores/{id}) and aborting a restore upload, end to
end on the local stack (real ASL in moto, real pymongo, real S3 multipart uploads): a cancel
at any stage (one import execution while it writes; a restore in shards during its plan,
while its shards write, during its removal pass) stops the restore, undoes what it wrote
(the target equal to its snapshot before the restore), leaves nothing under `imports/`, no
open multipart upload and no staging, and ends `cancelled`, which the WebSocket says."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from bson import ObjectId
from pymongo.database import Database

from dataport.bucket import packages_bucket
from dataport.imports.removal import Removal
from dataport.imports.split import Splitter
from dataport.jobs.store import JobStore
from dataport.models.jobs import Job, JobStatus
from dataport.source.mongo import Document
from dataport.source.staging import STAGING
from dataport.source.writes import Target
from dataport.workflows.imports import PULSE_MS
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import EMPTY_USER, snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_restore_shards import prepare, shard_size
from tests.e2e.test_restores import OWNER, content, diverge
from tests.infrastructure.iam import assert_calls_allowed
from tests.restores.backups import of_user

#: what a cancelled restore may end as (failed: its undo did not finish, which fails a test)
ENDED = {"cancelled", "failed", "succeeded", "rolled_back"}


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_restore_cancel",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def owner(fresh_stack: LocalStack) -> Restorer:
    return Restorer(Api(fresh_stack, OWNER))


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 5 operations: a session spans several journalled batches."""
    monkeypatch.setenv("IMPORT_BATCH_OPS", "5")


class Gate:
    """A point in a task that, the first time any thread reaches it, waits until the test
    has cancelled the restore, then past the workflow's once-a-second look at the rows (so
    the task that goes on sees the cancel at its next look); later passes go straight on."""

    def __init__(self) -> None:
        self.reached, self.released = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._passed = False

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def held(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                first, self._passed = not self._passed, True
            if first:
                self.reached.set()
                assert self.released.wait(120), "the test never cancelled"
                time.sleep(PULSE_MS / 1000 + 0.2)
            return function(*args, **kwargs)

        return held

    def cancel(self, owner: Restorer, job_id: str) -> dict[str, Any]:
        """The DELETE, once the task is held there; its answer."""
        assert self.reached.wait(180), "the restore never reached the gate"
        try:
            answer = owner.api.request("DELETE", f"/restores/{job_id}")
        finally:
            self.released.set()
        assert answer.status_code == 202, answer.text
        body: dict[str, Any] = answer.json()
        return body


def assert_nothing_left(stack: LocalStack, db: Database[Document]) -> None:
    """No object under imports/ (parts, split/, data key, checked records, journal,
    listings), no multipart upload left open there, no staging."""
    bucket = packages_bucket()
    assert list(bucket.keys("imports/")) == []
    uploads = stack.client("s3").list_multipart_uploads(Bucket=bucket.name, Prefix="imports/")
    assert uploads.get("Uploads", []) == []
    assert db[STAGING].count_documents({}) == 0


def assert_no_execution_runs(stack: LocalStack) -> None:
    """Every execution the restore started (its own, child, Map item and shard executions)
    has ended by itself, told by the rows: none is left running."""
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + 30
    while True:
        running = [e["name"] for m in sfn.list_state_machines()["stateMachines"]
                   for e in sfn.list_executions(stateMachineArn=m["stateMachineArn"],
                                                statusFilter="RUNNING")["executions"]]
        if not running or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert running == []


def assert_cancelled(job: dict[str, Any], answer: dict[str, Any]) -> None:
    assert answer["status"] == "cancelling", answer
    assert "undone" in answer["error"]["message"]  # the answer says what the cancel does
    assert job["status"] == "cancelled", job
    assert job["error"]["code"] == "cancelled", job
    assert "as it was before" in job["error"]["message"], job


# ---------------------------------------------------------------------------- one execution


def test_a_restore_cancelled_while_it_writes_ends_cancelled_with_the_target_as_it_was(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch, small_batches: None) -> None:
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
    for session_id in sorted(content(db, OWNER)):
        diverge(db, session_id)  # every session replaced, in journalled batches
    before = snapshot(db)
    gate = Gate()
    monkeypatch.setattr(Target, "bulk_write", gate.wrap(Target.bulk_write))
    with ProgressSocket(fresh_stack.ws_url, fresh_stack.token_for(OWNER)) as socket:
        started = owner.start(backupId=backup_id, mode="full", conflicts="overwrite")
        assert started.status_code == 202, started.text
        job_id = started.json()["jobId"]
        socket.subscribe(job_id)
        answer = gate.cancel(owner, job_id)
        events = list(socket.follow(job_id, timeout=120))
    job = owner.wait(job_id, ENDED, timeout=120)
    assert_cancelled(job, answer)
    # the batch it wrote, and every session it finished, undone
    assert_as_before(fresh_stack, db, before)
    # over the WebSocket: the cancel announced (cancelling), then one end, cancelled
    assert any(e.type == "job.progress" and e.status is JobStatus.CANCELLING for e in events)
    assert [e.type for e in events].count("job.cancelled") == 1
    assert events[-1].type == "job.cancelled"

    again = owner.api.request("DELETE", f"/restores/{job_id}")
    assert again.status_code == 409, again.text
    assert again.json()["error"]["details"]["code"] == "restore_finished"
    rollback = owner.api.request("POST", f"/restores/{job_id}/rollback")
    assert rollback.status_code == 409  # nothing it wrote is left to roll back
    assert_calls_allowed(fresh_stack)


def test_a_finished_restore_is_not_cancelled_and_anothers_is_not_found(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack) -> None:
    backup_id = store_backup(of_user(db, ObjectId(OWNER)), OWNER)
    diverge(db, sorted(content(db, OWNER))[0])
    job = owner.run(backupId=backup_id, mode="merge")
    assert job["status"] == "succeeded", job
    stranger = Api(fresh_stack, EMPTY_USER)
    assert stranger.request("DELETE", f"/restores/{job['jobId']}").status_code == 404
    answer = owner.api.request("DELETE", f"/restores/{job['jobId']}")
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["details"] == {"code": "restore_finished", "status": "succeeded"}
    assert f"/restores/{job['jobId']}/rollback" in error["message"]  # what to do instead
    assert owner.job(job["jobId"])["status"] == "succeeded"


# ---------------------------------------------------------------------------- in shards


def sharded(db: Database[Document], monkeypatch: pytest.MonkeyPatch
            ) -> tuple[str, dict[str, list[Document]]]:
    """A full backup of the user, their data changed since (test_restore_shards.prepare),
    restores of it forced into several shards; the backup's id and the snapshot."""
    backup, backup_id = prepare(db)
    shard_size(monkeypatch, max(1, len(backup.messages) // 4))
    return backup_id, snapshot(db)


def assert_each_undone(shards: list[Job]) -> None:
    """Each shard stopped and undid itself (cancelled), or had finished and was rolled back,
    or had finished writing nothing (every session of it unchanged: nothing to undo)."""
    for shard in shards:
        outcome = shard.import_state.outcome
        assert shard.status in (JobStatus.CANCELLED, JobStatus.ROLLED_BACK) or (
            shard.status is JobStatus.SUCCEEDED and outcome is not None
            and not outcome.wrote), shard


def cancelled_at(gate: Gate, owner: Restorer, backup_id: str,
                 timeout: float = 300) -> dict[str, Any]:
    """A full restore of the backup, cancelled where `gate` holds it: the job, ended
    cancelled (the DELETE's answer checked too)."""
    started = owner.start(backupId=backup_id, mode="full", conflicts="overwrite")
    assert started.status_code == 202, started.text
    job_id = started.json()["jobId"]
    answer = gate.cancel(owner, job_id)
    job = owner.wait(job_id, ENDED, timeout=timeout)
    assert_cancelled(job, answer)
    return job


def assert_as_before(stack: LocalStack, db: Database[Document],
                     before: dict[str, list[Document]]) -> None:
    assert snapshot(db) == before
    assert_nothing_left(stack, db)
    assert_no_execution_runs(stack)


def test_a_restore_in_shards_cancelled_during_its_plan_makes_no_shard(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    backup_id, before = sharded(db, monkeypatch)
    gate = Gate()
    monkeypatch.setattr(Splitter, "add", gate.wrap(Splitter.add))
    job = cancelled_at(gate, owner, backup_id)
    assert not job.get("shards")  # stopped in its split: no shard was made
    assert_as_before(fresh_stack, db, before)


def test_a_restore_in_shards_cancelled_while_its_shards_write_is_undone_whole(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    backup_id, before = sharded(db, monkeypatch)
    gate = Gate()  # the first write of any shard waits for the cancel; the others go on
    monkeypatch.setattr(Target, "bulk_write", gate.wrap(Target.bulk_write))
    job = cancelled_at(gate, owner, backup_id)
    shards = [JobStore().require(shard) for shard in job["shards"]]
    assert len(shards) >= 3
    assert_each_undone(shards)
    assert JobStatus.CANCELLED in {s.status for s in shards}  # some stopped part-way
    assert_as_before(fresh_stack, db, before)
    shard = owner.api.request("DELETE", f"/restores/{shards[0].job_id}")
    assert shard.status_code == 409  # a shard is cancelled with its restore
    assert shard.json()["error"]["details"]["code"] == "restore_shard"
    stranger = Api(fresh_stack, EMPTY_USER)
    assert stranger.request("DELETE", f"/restores/{job['jobId']}").status_code == 404
    assert_calls_allowed(fresh_stack)


def test_a_restore_in_shards_cancelled_during_its_removal_puts_back_what_it_removed(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    backup_id, before = sharded(db, monkeypatch)
    monkeypatch.setenv("IMPORT_BATCH_OPS", "1")  # the removal: a session a batch
    gate = Gate()
    monkeypatch.setattr(Removal, "_remove", gate.wrap(Removal._remove))
    job = cancelled_at(gate, owner, backup_id)
    shards = [JobStore().require(shard) for shard in job["shards"]]
    assert_each_undone(shards)
    assert JobStatus.CANCELLED not in {s.status for s in shards}  # all had finished
    assert JobStatus.ROLLED_BACK in {s.status for s in shards}
    assert_as_before(fresh_stack, db, before)  # the removed batch put back from its journal


# ---------------------------------------------------------------------------- uploads


def test_a_restore_upload_is_aborted_before_it_completes(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack) -> None:
    data = of_user(db, ObjectId(OWNER)).container()
    answer = owner.api.request("POST", "/restores/uploads", json={"size": len(data)})
    assert answer.status_code == 201, answer.text
    upload_id = answer.json()["uploadId"]
    urls = owner.api.request("GET", f"/restores/uploads/{upload_id}/parts",
                             params={"numbers": "1"})
    put = requests.put(urls.json()["parts"][0]["url"], data=data, timeout=30)
    assert put.status_code == 200, put.text
    s3 = fresh_stack.client("s3")
    bucket = packages_bucket().name
    prefix = f"restores/uploads/{upload_id}/"

    def open_uploads() -> list[Any]:
        listed = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
        return list(listed)

    assert len(open_uploads()) == 1
    stranger = Api(fresh_stack, EMPTY_USER)
    assert stranger.request("DELETE", f"/restores/uploads/{upload_id}").status_code == 404
    assert len(open_uploads()) == 1  # another user's DELETE touched nothing

    aborted = owner.api.request("DELETE", f"/restores/uploads/{upload_id}")
    assert aborted.status_code == 204, aborted.text
    assert open_uploads() == []  # S3 dropped the part sent
    assert list(packages_bucket().keys(prefix)) == []
    for method, path in (("GET", f"/restores/uploads/{upload_id}/parts?numbers=1"),
                         ("POST", f"/restores/uploads/{upload_id}/complete"),
                         ("DELETE", f"/restores/uploads/{upload_id}")):
        body = {"parts": [{"number": 1, "etag": put.headers["ETag"]}]}
        gone = owner.api.request(method, path, json=body if method == "POST" else None)
        assert gone.status_code == 404, (method, gone.text)  # forgotten
    refused = owner.start(uploadId=upload_id, mode="merge")
    assert refused.status_code == 404


def test_a_completed_restore_upload_is_not_aborted(
        db: Database[Document], owner: Restorer) -> None:
    data = of_user(db, ObjectId(OWNER)).container()
    upload_id = owner.api.request("POST", "/restores/uploads",
                                  json={"size": len(data)}).json()["uploadId"]
    urls = owner.api.request("GET", f"/restores/uploads/{upload_id}/parts",
                             params={"numbers": "1"})
    put = requests.put(urls.json()["parts"][0]["url"], data=data, timeout=30)
    done = owner.api.request("POST", f"/restores/uploads/{upload_id}/complete",
                             json={"parts": [{"number": 1, "etag": put.headers["ETag"]}]})
    assert done.status_code == 200, done.text
    answer = owner.api.request("DELETE", f"/restores/uploads/{upload_id}")
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["details"]["code"] == "upload_completed"
    job = owner.run(uploadId=upload_id, mode="merge", dryRun=True)
    assert job["status"] == "succeeded", job  # still there, still restorable
