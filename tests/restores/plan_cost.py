"""The plan of an instance restore run alone, its AWS calls counted: an instance backup of many
small users, a restore job for it, and the plan's invocations run in this process until it
has made the shards' jobs and the Map's items (tests/e2e/test_restore_plan_cost.py, and
tests/benchmarks/restore_plan_bench.py with thousands of users)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import botocore.client
from bson import ObjectId
from bson.int64 import Int64

from dataport.imports.split import ShardPart
from dataport.jobs.store import JobStore, new_job_id
from dataport.models.imports import ImportCreate
from dataport.models.jobs import RestoreState
from dataport.models.restores import (
    BACKUP_FILENAME,
    INSTANCE_TARGET,
    BackupLink,
    RestoreRequest,
    RestoreSource,
)
from dataport.models.tasks import RestoreShardsTask
from dataport.source.mongo import Document
from dataport.workflows import restore_shards
from tests.restores.backups import Backup

#: every call of the plan: (service, operation) -> count
Calls = Counter[tuple[str, str]]


def user_id(n: int) -> ObjectId:
    return ObjectId(f"66ad9b005f2b4a{n:010x}")


def small_users(users: int, *, sessions: int = 1, messages: int = 2) -> Backup:
    """An instance backup of `users` users of `sessions` sessions of `messages` messages each,
    their sessions interleaved in sessionId order (as an instance backup holds them)."""
    projects: list[Document] = [
        {"_id": ObjectId(f"66ad9c1e5f2b4a{n:010x}"), "user_id": user_id(n), "name": f"p{n}",
         "path": f"/work/p{n}"} for n in range(users)]
    docs: list[Document] = []
    lines: list[Document] = []
    for number in range(users * sessions):
        session = f"00000000-0000-4000-8000-{number:012d}"
        docs.append({"sessionId": session, "projectId": projects[number % users]["_id"],
                     "messageCount": Int64(messages), "summary": f"session {number}"})
        lines.extend({"uuid": f"{number:012d}-{m:04d}", "sessionId": session, "type": "user",
                      "content": f"message {m} of session {number}"} for m in range(messages))
    return Backup(projects=projects, sessions=docs, messages=lines, scope="instance")


def restore_job(owner: str, backup_id: str, link: BackupLink) -> str:
    """A queued instance restore of the backup (as POST /restores makes one, unstarted)."""
    request = RestoreRequest(backup_id=backup_id, target="instance", mode="merge")
    state = RestoreState(request=ImportCreate(filename=BACKUP_FILENAME), restore=request,
                         source=RestoreSource(links=[link]), upload_pin=link.pin,
                         decision=request.decision(), target_user_id=INSTANCE_TARGET)
    job_id = new_job_id()
    JobStore().create(owner, state, job_id=job_id)
    return job_id


@contextmanager
def counted() -> Iterator[Calls]:
    """Every AWS call this thread makes (botocore's one way out), by service and operation."""
    calls: Calls = Counter()
    thread = threading.get_ident()
    original = vars(botocore.client.BaseClient)["_make_api_call"]

    def counting(client: Any, operation: str, params: Any) -> Any:
        if threading.get_ident() == thread:
            calls[(client.meta.service_model.service_name, operation)] += 1
        return original(client, operation, params)

    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", counting):
        yield calls


def run_plan(job_id: str, remaining_ms: Callable[[], int] = lambda: 900_000,
             *, on_invocation: Callable[[RestoreShardsTask], None] | None = None
             ) -> RestoreShardsTask:
    """The plan's invocations as the restore machine runs them (`next: plan` again), until
    it answers the Map's shard list (or refuses)."""
    task = RestoreShardsTask(action="plan", job_id=job_id)
    while True:
        if on_invocation is not None:
            on_invocation(task)
        task = restore_shards.plan(task, remaining_ms)
        if task.next not in ("plan", "plan_on"):
            return task
        task = task.model_copy(update={"next": None})


def parts_of(job_id: str) -> list[ShardPart]:
    """What the shards' jobs read: each shard's user and part (pin, shared or not)."""
    shards = JobStore().require_many(restore_shards.shard_ids(job_id))
    return [ShardPart(user_id=s.restore_state.target_user_id, number=0,
                      pin=s.restore_state.source.restored.pin,
                      sha256=s.restore_state.source.restored.sha256 or "", sessions=0,
                      messages=0, records=0, shared=s.restore_state.shared_part)
            for s in shards]
