"""What the plan of an instance restore costs as its users grow, counted on the local stack's
services (moto S3, DynamoDB and KMS over HTTP): the plan's invocations run in this process,
every AWS call they make counted (botocore's one way out). Small users share packed parts
(one upload and pin a pack), the shards' jobs go 25 to a BatchWriteItem and the Map's items
are one object, so the calls grow by about N/25, not 2N (a part, a pin, a job and an item
object per user). Counts, never times: the seconds are the benchmark's
(tests/benchmarks/restore_plan_bench.py)."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pytest

from dataport.bucket import packages_bucket
from dataport.jobs import keys
from dataport.jobs.store import JobStore
from dataport.models.restores import BackupLink
from dataport.models.tasks import RestoreShardsTask, TaskError
from dataport.settings import get_settings
from dataport.workflows import restore_shards
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.restore_client import store_backup
from tests.restores.backups import Backup
from tests.restores.plan_cost import Calls, counted, parts_of, restore_job, run_plan, small_users

ADMIN = seed.DEMO_USER_ID


def instance_restore(backup: Backup) -> str:
    """The backup stored (one member a collection, so its own reads do not grow with the
    users) and an instance restore of it made, not started: the restore's job id."""
    data = backup.container(per_member=1_000_000)
    sha256 = hashlib.sha256(data).hexdigest()
    backup_id = store_backup(backup, ADMIN, data=data, sha256=sha256)
    pin = packages_bucket().pin_in_place(f"backups/{ADMIN}/{backup_id}.zip")
    return restore_job(ADMIN, backup_id, BackupLink(backup_id=backup_id, pin=pin,
                                                     sha256=sha256))


def planned(users: int) -> tuple[str, Calls]:
    """An instance backup of `users` small users stored, its restore planned: the job and the
    plan's calls."""
    job_id = instance_restore(small_users(users))
    with counted() as calls:
        task = run_plan(job_id)
    assert task.shard_list is not None, JobStore().require(job_id).error
    return job_id, calls


def test_the_plans_calls_grow_by_about_a_25th_of_the_users_not_twice_them(
        fresh_stack: LocalStack) -> None:
    few, few_calls = planned(30)
    many, many_calls = planned(300)
    grown = sum(many_calls.values()) - sum(few_calls.values())
    # 270 more users: 11 more BatchWriteItems (25 jobs each), 2 more packs (100 users each:
    # an upload and its pin); a part and a job per user would be 2 x 270 more, and an item
    # object per user 270 more again
    assert grown <= 270 / 15, (few_calls, many_calls)
    writes = many_calls[("dynamodb", "BatchWriteItem")]
    assert writes == math.ceil(300 / 25), many_calls
    assert many_calls[("dynamodb", "PutItem")] == few_calls[("dynamodb", "PutItem")]
    # every user a shard of their own (a job each), in 3 shared parts of 100 users
    shards = restore_shards.shard_ids(many)
    parts = parts_of(many)
    assert len(shards) == 300
    assert len(set(shards)) == 300
    assert sorted(p.user_id for p in parts) == sorted(
        str(doc["user_id"]) for doc in small_users(300).projects)
    keys = {p.pin.key for p in parts}
    assert len(keys) == math.ceil(300 / get_settings().restore_pack_users)
    assert all(p.shared for p in parts)
    assert packages_bucket().keys(f"imports/{many}/shards/") == sorted(keys)
    assert len(restore_shards.shard_ids(few)) == 30


def row(store: JobStore, job_id: str) -> dict[str, Any]:
    """A job's row as DynamoDB holds it."""
    key = {"pk": {"S": keys.job_pk(job_id)}, "sk": {"S": keys.JOB_SK}}
    return dict(store.db.get_item(TableName=store.table, Key=key)["Item"])


def test_the_shards_jobs_are_handed_over_when_an_invocation_runs_short_and_made_once(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each invocation makes one batch of jobs, then hands the rest over (its state: the parts
    and how many are made); a retried invocation writes the same rows again."""
    job_id = instance_restore(small_users(60))
    monkeypatch.setenv("WORKER_RESERVE_MS", str(10**9))  # no invocation has time to spare
    get_settings.cache_clear()
    store = JobStore()
    tasks: list[RestoreShardsTask] = []
    task = run_plan(job_id, on_invocation=tasks.append)
    assert task.shard_list is not None
    assert task.shard_list.key is not None
    assert [t.split_at for t in tasks] == [0, 1, 2]  # 25, 25 and 10 jobs
    shards = restore_shards.shard_ids(job_id)
    assert len(shards) == 60
    rows = [row(store, shard) for shard in shards]
    # the second invocation retried (its answer lost): the same rows, byte for byte
    again = restore_shards.plan(tasks[1], lambda: 900_000)
    assert again.next == "plan"
    assert [row(store, shard) for shard in shards] == rows
    assert {s.status.value for s in store.require_many(shards)} == {"queued"}


def test_a_plan_that_fails_while_making_the_shards_jobs_leaves_none_queued(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shards' ids are stored before their jobs: a plan that fails between two batches
    of jobs (its Catch, MarkFailed) ends every job it made (failed, with why), so none waits
    in the history for a Map that will never run it."""
    job_id = instance_restore(small_users(60))
    made = JobStore.create_many
    batches = 0

    def second_batch_fails(self: JobStore, *args: Any, **kwargs: Any) -> int:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise RuntimeError("DynamoDB went away")
        return made(self, *args, **kwargs)

    monkeypatch.setattr(JobStore, "create_many", second_batch_fails)
    with pytest.raises(RuntimeError, match="went away"):
        run_plan(job_id)
    store = JobStore()
    planned = restore_shards.planned_ids(job_id)
    assert len(planned) == 60
    assert restore_shards.shard_ids(job_id) == []  # the Map's items were never written
    assert {s.status.value for s in store.find_many(planned)} == {"queued"}  # 25 made

    restore_shards.failed(RestoreShardsTask(action="plan", job_id=job_id, error=TaskError(
        Error="RuntimeError", Cause='{"errorMessage": "DynamoDB went away"}')))
    assert store.require(job_id).status.value == "failed"
    shards = store.find_many(planned)
    assert len(shards) == 25
    assert {s.status.value for s in shards} == {"failed"}
    assert {s.error.code for s in shards if s.error is not None} == {"restore_failed"}
