"""What one shard of an instance restore costs, counted on the local stack (real ASL in moto,
real pymongo): the figures docs/backups.md ("What one shard costs") gives for a small user,
held here so that a change that makes every shard dearer is seen. Counts, never times."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from pymongo.database import Database

from dataport.source.collections import PROJECTS
from dataport.source.mongo import Document
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
    assert per_shard <= 30, calls  # AWS calls of a shard's three invocations
    # the parts' data key: made once per restore, opened once per invocation that reads
    assert calls[("RestoreShardsFunction", "kms", "GenerateDataKey")] == 1
    opened = sum(n for (function, service, operation), n in calls.items()
                 if function in IMPORT_FUNCTIONS and (service, operation) == ("kms", "Decrypt"))
    assert opened <= invocations, calls
