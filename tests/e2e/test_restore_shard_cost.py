"""What one shard of an instance restore costs, counted on the local stack (real ASL in moto,
real pymongo): the figures docs/backups.md ("What one shard costs") gives for a small user,
held here so that a change that makes every shard dearer is seen: its import execution, and
what the restore machine spends on it (the plan: a 25th of a BatchWriteItem, a share of a
packed part; its Map item's Count: no read). Counts, never times. How the plan's calls grow
with the users: tests/e2e/test_restore_plan_cost.py."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import pytest
from pymongo.database import Database

from dataport.jobs.store import JobStore
from dataport.settings import get_settings
from dataport.source.collections import PROJECTS
from dataport.source.mongo import Document
from dataport.workflows import restore_shards
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_restores import forget, sessions_of
from tests.restores.backups import of_instance

ADMIN = seed.DEMO_USER_ID
IMPORT_FUNCTIONS = ("ImportValidateFunction", "ImportExecuteFunction", "ImportFinalizeFunction")


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_shard_cost",
                   sessions_per_project=2) as database:
        yield database


def test_a_small_users_shard_is_one_import_execution_of_three_invocations(
        db: Database[Document], fresh_stack: LocalStack) -> None:
    admin = Restorer(Api(fresh_stack, ADMIN, admin=True))
    backup_id = store_backup(of_instance(db), ADMIN)
    users = sorted(str(user) for user in db[PROJECTS].distinct("user_id"))
    for user in users:  # every user lost everything: each shard inserts all of theirs
        forget(db, list(sessions_of(db, user)))
    since = len(fresh_stack.calls)

    job = admin.run(backupId=backup_id, target="instance", mode="merge", timeout=180)
    assert job["status"] == "succeeded", job
    assert len(job["shards"]) == len(users)  # a shard per user

    sfn = fresh_stack.client("stepfunctions")
    machine = fresh_stack.state_machines["ImportStateMachine"]
    executions = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
    histories = [list(fresh_stack.execution_history(e["executionArn"]))
                 for page in executions for e in page["executions"]
                 if e["name"] in job["shards"]]  # named after their shard's job
    assert len(histories) == len(users)  # one import execution per shard
    for events in histories:
        kinds = Counter(event["type"] for event in events)
        assert kinds["TaskScheduled"] == 3  # Validate, Execute, Finalize
        assert len(events) == 29
    calls = Counter((c.logical_id, c.service, c.operation) for c in fresh_stack.calls[since:])
    invocations = 3 * len(users)
    per_shard = sum(n for (function, _, _), n in calls.items()
                    if function in IMPORT_FUNCTIONS) / len(users)
    # AWS calls of a shard's three invocations (about 29-33 here: its pulses vary with the
    # load; a shard of a pack reads the pack, a few more GETs than a part of its own)
    assert per_shard <= 34, calls
    # the parts' data key: made once per restore, opened once per invocation that reads
    assert calls[("RestoreShardsFunction", "kms", "GenerateDataKey")] == 1
    opened = sum(n for (function, service, operation), n in calls.items()
                 if function in IMPORT_FUNCTIONS and (service, operation) == ("kms", "Decrypt"))
    assert opened <= invocations, calls
    # the plan: the shards' jobs 25 a BatchWriteItem (no PutItem a shard), one items object
    # for the Map, the small users' parts packed (an upload and a pin a pack, not a user)
    plan = "RestoreShardsFunction"
    assert calls[(plan, "dynamodb", "BatchWriteItem")] == math.ceil(len(users) / 25), calls
    assert calls[(plan, "dynamodb", "PutItem")] == 0, calls
    shards = JobStore().require_many(job["shards"])
    parts = {shard.restore_state.source.restored.pin.key for shard in shards}
    assert len(parts) == math.ceil(len(users) / get_settings().restore_pack_users)
    assert all(shard.restore_state.shared_part for shard in shards) == (len(users) > 1)
    assert calls[(plan, "s3", "HeadObject")] <= len(parts) + 1, calls  # the parts' pins


@pytest.fixture
def two_to_an_item(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RESTORE_GROUP_SHARDS", "2")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("two_to_an_item")
def test_small_users_shards_run_together_in_one_map_item(
        db: Database[Document], fresh_stack: LocalStack) -> None:
    """Two shards to an item: the Map runs two items for the seed's three users, and the two
    shards of the first run at once (their import executions overlap); the rollback reads the
    same items."""
    admin = Restorer(Api(fresh_stack, ADMIN, admin=True))
    backup_id = store_backup(of_instance(db), ADMIN)
    users = sorted(str(user) for user in db[PROJECTS].distinct("user_id"))
    for user in users:
        forget(db, list(sessions_of(db, user)))
    before = {user: sorted(sessions_of(db, user)) for user in users}

    job = admin.run(backupId=backup_id, target="instance", mode="merge", timeout=180)
    assert job["status"] == "succeeded", job
    items = restore_shards.map_items(job["jobId"])
    assert [len(item["shards"]) for item in items] == [2, 1]
    assert restore_shards.shard_ids(job["jobId"]) == job["shards"]

    sfn = fresh_stack.client("stepfunctions")
    machine = fresh_stack.state_machines["ImportStateMachine"]
    ran = {e["name"]: e for page in sfn.get_paginator("list_executions").paginate(
        stateMachineArn=machine) for e in page["executions"]}
    first, second = (ran[shard["jobId"]] for shard in items[0]["shards"])
    assert first["startDate"] < second["stopDate"]  # they overlap: run at once
    assert second["startDate"] < first["stopDate"]
    assert all(sessions_of(db, user) for user in users)  # every user restored

    assert admin.rollback(job["jobId"], timeout=180)["status"] == "rolled_back"
    assert {user: sorted(sessions_of(db, user)) for user in users} == before
