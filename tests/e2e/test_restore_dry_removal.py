"""A dry run's removal pass for a user in several shards hands over as the real one does, end
to end on the local stack (real ASL in moto, real pymongo): with a budget of one batch of one
session per invocation, the pass goes on in a child execution (`RemoveOn`), resuming after
the sessions it already listed, and says exactly what the real restore then removes, writing
nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bson import ObjectId
from pymongo.database import Database

from dataport.settings import get_settings
from dataport.source.mongo import Document
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_restore_shards import shard_size
from tests.e2e.test_restores import OWNER, add_session, content
from tests.infrastructure.iam import assert_calls_allowed
from tests.restores.backups import of_user


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_dry_removal",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def owner(fresh_stack: LocalStack) -> Restorer:
    return Restorer(Api(fresh_stack, OWNER))


def removal_children(stack: LocalStack, job_id: str) -> list[dict[str, str]]:
    sfn = stack.client("stepfunctions")
    machine = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
                   if m["name"].startswith("dataport-restore-"))
    return [e for e in sfn.list_executions(stateMachineArn=machine)["executions"]
            if e["name"].startswith(f"{job_id}-remove-")]


def test_a_dry_runs_removal_longer_than_an_invocation_goes_on_and_says_what_is_removed(
        db: Database[Document], owner: Restorer, monkeypatch: pytest.MonkeyPatch,
        fresh_stack: LocalStack) -> None:
    backup = of_user(db, ObjectId(OWNER))
    at_backup = content(db, OWNER)
    backup_id = store_backup(backup, OWNER)
    made_since = sorted(add_session(db, like) for like in sorted(at_backup)[:4])
    before = snapshot(db)
    shard_size(monkeypatch, max(1, len(backup.messages) // 3))
    # every invocation stops after one batch of one session: the pass needs several
    monkeypatch.setenv("IMPORT_BATCH_OPS", "1")
    monkeypatch.setenv("WORKER_RESERVE_MS", str(10**9))
    get_settings.cache_clear()

    dry = owner.run(backupId=backup_id, mode="full", dryRun=True, timeout=300)
    assert dry["status"] == "succeeded", dry
    assert snapshot(db) == before  # nothing written
    children = removal_children(fresh_stack, dry["jobId"])
    assert len(children) == 1, children  # handed over, as the real pass is
    assert children[0]["status"] == "SUCCEEDED"
    # each session counted once, none missed across the hand-overs
    assert dry["dryRun"]["sessions"]["removed"] == len(made_since)

    job = owner.run(backupId=backup_id, mode="full", timeout=300)
    assert job["status"] == "succeeded", job
    assert content(db, OWNER) == at_backup
    assert job["outcome"]["sessions"]["removed"] == dry["dryRun"]["sessions"]["removed"]
    assert job["outcome"]["messages"] == dry["dryRun"]["messages"]  # the dry run said so
    assert_calls_allowed(fresh_stack)
