"""The plan of an instance restore of many small users, alone, on the local stack (moto S3,
DynamoDB and KMS over HTTP on this machine): its AWS calls and seconds.

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.restore_plan_bench \
        [--users 1000,3000,10000] [--sessions 1] [--messages 2] [--pack-users 100]

For each number of users: an instance backup of that many users (each `--sessions` sessions of
`--messages` messages, interleaved in sessionId order), stored and catalogued; a restore job
for it; the plan's invocations run in this process until it has made every shard's job and
the Map's items. Reported: the plan's calls by operation, its seconds (the split, and the
whole plan, the split with the parts' uploads, the jobs with the items), and the same calls
priced at latencies typical from Lambda (a DynamoDB batch
write 25 ms, an S3 PUT 40 ms, a HEAD or GET 15 ms: an estimate, not a measurement), to set
against `restore_plan_reserve_ms` (120 s). `--pack-users 1` gives a part per user (the packs
off) for comparison; the jobs are batched either way.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import time
from typing import Any

from dataport.bucket import packages_bucket
from dataport.jobs.store import JobStore
from dataport.models.restores import BackupLink
from dataport.settings import get_settings
from dataport.workflows import restore_shards
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.restore_client import store_backup
from tests.restores.plan_cost import counted, restore_job, run_plan, small_users

#: what a call takes from Lambda, roughly (ms): an estimate to price the counted calls
LATENCY_MS = {("dynamodb", "BatchWriteItem"): 25, ("s3", "PutObject"): 40,
              ("s3", "UploadPart"): 40, ("s3", "CreateMultipartUpload"): 30,
              ("s3", "CompleteMultipartUpload"): 40}
DEFAULT_MS = 15


def plan_once(users: int, sessions: int, messages: int) -> None:
    backup = small_users(users, sessions=sessions, messages=messages)
    data = backup.container(per_member=50_000)
    sha256 = hashlib.sha256(data).hexdigest()
    owner = seed.DEMO_USER_ID
    backup_id = store_backup(backup, owner, data=data, sha256=sha256)
    pin = packages_bucket().pin_in_place(f"backups/{owner}/{backup_id}.zip")
    job_id = restore_job(owner, backup_id, BackupLink(backup_id=backup_id, pin=pin,
                                                      sha256=sha256))
    jobs_from: list[float] = []
    make_shards = restore_shards._make_shards

    def timed(*args: Any, **kwargs: Any) -> Any:  # where the split ends and the jobs begin
        jobs_from.append(time.perf_counter())
        return make_shards(*args, **kwargs)

    restore_shards._make_shards = timed
    started = time.perf_counter()
    try:
        with counted() as calls:
            task = run_plan(job_id)
    finally:
        restore_shards._make_shards = make_shards
    ended = time.perf_counter()
    seconds = ended - started
    assert task.shard_list is not None, JobStore().require(job_id).error
    shards = restore_shards.shard_ids(job_id)
    parts = len(packages_bucket().keys(f"imports/{job_id}/shards/"))
    total = sum(calls.values())
    priced = sum(n * LATENCY_MS.get(call, DEFAULT_MS) for call, n in calls.items()) / 1000
    print(f"\n{users} users ({users * sessions} sessions, {users * sessions * messages} "
          f"messages, {len(data) / 1e6:.1f} MB stored): {len(shards)} shards in {parts} parts, "
          f"{task.split_at} invocation(s)")
    print(f"  plan: {total} AWS calls, {seconds:.1f} s here (the split and parts "
          f"{jobs_from[0] - started:.1f} s, the jobs and items {ended - jobs_from[0]:.1f} s); "
          f"its calls priced from Lambda ~{priced:.1f} s")
    for (service, operation), n in sorted(calls.items(), key=lambda item: -item[1]):
        print(f"    {service}:{operation} {n}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", default="1000,3000,10000")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--messages", type=int, default=2)
    parser.add_argument("--pack-users", type=int, default=None)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with LocalStack() as stack:
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        if args.pack_users is not None:
            os.environ["RESTORE_PACK_USERS"] = str(args.pack_users)
        get_settings.cache_clear()
        print(f"packs of at most {get_settings().restore_pack_users} users and "
              f"{get_settings().restore_pack_messages} messages")
        for users in (int(n) for n in args.users.split(",")):
            stack.reset()
            plan_once(users, args.sessions, args.messages)


if __name__ == "__main__":
    main()
