"""The plan's split of a restore (imports/split.py) alone: a generated one-user backup read by
the backup reader (every member checked) and cut into shards of `--shard` messages.

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.restore_split_bench \
        [--sessions N] [--messages-per-session M] [--shard S]

Reported: the seconds, MB/s of the backup's Extended JSON lines, the shards, and the peak of
the Python memory the split allocates (tracemalloc, from the first record on). The shards'
objects are counted, not kept: a moto bucket in this process would hold every part in its
memory and hide the split's own. zstd's C contexts are outside tracemalloc: about 1.7 MB a hot
shard (at most 8), docs/backups.md.
"""

from __future__ import annotations

import argparse
import io
import os
import time
import tracemalloc
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from bson import ObjectId
from bson.int64 import Int64
from moto import mock_aws

from dataport.bucket import PackagesBucket
from dataport.imports.limits import ImportLimits
from dataport.imports.readers.backup import BackupSource
from dataport.imports.split import Splitter
from dataport.models.imports import ImportOptions
from dataport.models.job_common import UploadPin
from tests.restores.backups import Backup

USER = ObjectId("66ad9b005f2b4a0012c0aaaa")


class CountingBucket(PackagesBucket):
    """Objects written are counted and dropped (their pins name their sizes)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sizes: dict[str, int] = {}

    def put(self, key: str, body: bytes | bytearray, options: Mapping[str, Any]) -> None:
        self.sizes[key] = len(body)

    def pin_written(self, key: str) -> UploadPin:
        return UploadPin(key=key, etag='"counted"', bytes=self.sizes[key])


def backup(sessions: int, per_session: int) -> tuple[bytes, int]:
    """A backup of one user (messages of about a kilobyte, half of it random), and the bytes
    of its lines."""
    project = {"_id": ObjectId(), "user_id": USER, "name": "bench", "path": "/work/bench"}
    docs = [{"sessionId": f"00000000-0000-4000-8000-{n:012d}", "projectId": project["_id"],
             "messageCount": Int64(per_session)} for n in range(sessions)]
    messages = [{"uuid": f"{n:08d}-{m:04d}", "sessionId": f"00000000-0000-4000-8000-{n:012d}",
                 "type": "user", "content": (f"{n}-{m}-" + os.urandom(200).hex()) * 2}
                for n in range(sessions) for m in range(per_session)]
    made = Backup(projects=[project], sessions=docs, messages=messages)
    data = made.container(per_member=50_000)
    return data, sum(len(str(m)) for m in messages)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=5_000)
    parser.add_argument("--messages-per-session", type=int, default=20)
    parser.add_argument("--shard", type=int, default=5_000, help="messages a shard")
    args = parser.parse_args()
    data, lines = backup(args.sessions, args.messages_per_session)
    limits = ImportLimits(max_upload_bytes=10**12, max_total_uncompressed_bytes=10**12,
                          max_zip_entries=10**6)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-packages")
        bucket = CountingBucket(s3, "bench-packages")
        source = BackupSource(lambda: io.BytesIO(data), "backup.zip", options=ImportOptions(),
                              limits=limits)
        splitter = Splitter(bucket, "imports/bench/shards/", args.shard,
                            owner_of=lambda _project: str(USER), eager=True,
                            made_at=datetime.now(UTC))
        tracemalloc.start()
        started = time.perf_counter()
        for record in source.records(print):
            splitter.add(record)
        parts = splitter.finish()
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    print(f"{args.sessions * args.messages_per_session} messages, {len(data) / 1e6:.1f} MB "
          f"stored, {len(parts)} shards: {seconds:.1f} s, {lines / 1e6 / seconds:.1f} MB/s of "
          f"lines (about), the split's Python peak {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
