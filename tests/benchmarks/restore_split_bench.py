"""The plan's split of a restore (imports/split.py) alone: a generated one-user backup read by
the backup reader (every member checked) and cut into shards of `--shard` messages.

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.restore_split_bench \
        [--sessions N] [--messages-per-session M] [--shard S] [--member D] [--hand-over]

Reported: the seconds, MB/s of the backup's Extended JSON lines, the shards, and the peak of
the Python memory the split allocates (tracemalloc, from the first record on). The shards'
objects are counted, not kept: a moto bucket in this process would hold every part in its
memory and hide the split's own. zstd's C contexts are outside tracemalloc: about 1.7 MB a hot
shard (at most 8), docs/backups.md.

`--hand-over`: the split as a plan of many invocations runs it, handing over at every
`sessions/` member's end (members of `--member` documents): a fresh splitter and reader each
time, going on from the state (stored as the plan stores it). The objects are kept (a moto
bucket: the hand-overs read their members back), so read the seconds, not the memory (traced
as in one run, so the seconds compare):
reported are the invocations, the total and the hand-overs' own seconds (ending the open
members, storing them and the state, loading it again) and the largest state object.
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

from dataport.backups.format import decode_line, encode_line
from dataport.bucket import PackagesBucket
from dataport.imports.limits import ImportLimits
from dataport.imports.readers.backup import BackupSource, Position
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


def backup(sessions: int, per_session: int, member: int = 50_000) -> tuple[bytes, int]:
    """A backup of one user (messages of about a kilobyte, half of it random), and the bytes
    of its lines."""
    project = {"_id": ObjectId(), "user_id": USER, "name": "bench", "path": "/work/bench"}
    docs = [{"sessionId": f"00000000-0000-4000-8000-{n:012d}", "projectId": project["_id"],
             "messageCount": Int64(per_session)} for n in range(sessions)]
    messages = [{"uuid": f"{n:08d}-{m:04d}", "sessionId": f"00000000-0000-4000-8000-{n:012d}",
                 "type": "user", "content": (f"{n}-{m}-" + os.urandom(200).hex()) * 2}
                for n in range(sessions) for m in range(per_session)]
    made = Backup(projects=[project], sessions=docs, messages=messages)
    data = made.container(per_member=member)
    return data, sum(len(str(m)) for m in messages)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=5_000)
    parser.add_argument("--messages-per-session", type=int, default=20)
    parser.add_argument("--shard", type=int, default=5_000, help="messages a shard")
    parser.add_argument("--member", type=int, default=50_000, help="documents a member")
    parser.add_argument("--hand-over", action="store_true")
    args = parser.parse_args()
    data, lines = backup(args.sessions, args.messages_per_session, args.member)
    if args.hand_over:
        handed_over(args, data, lines)
        return
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


class _Stop(Exception):
    def __init__(self, position: Position) -> None:
        super().__init__()
        self.position = position


def _stop(position: Position) -> None:
    raise _Stop(position)


def handed_over(args: argparse.Namespace, data: bytes, lines: int) -> None:
    limits = ImportLimits(max_upload_bytes=10**12, max_total_uncompressed_bytes=10**12,
                          max_zip_entries=10**6)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    made_at = datetime.now(UTC)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-packages")
        bucket = PackagesBucket(s3, "bench-packages")
        state: dict[str, Any] | None = None
        position: Position | None = None
        invocations, handing, largest = 0, 0.0, 0
        tracemalloc.start()  # as the split in one run is measured (it slows Python alike)
        started = time.perf_counter()
        while True:
            invocations += 1
            splitter = Splitter(bucket, "imports/bench/shards/", args.shard,
                                owner_of=lambda _project: str(USER), eager=True,
                                made_at=made_at)
            if state is not None:
                began = time.perf_counter()
                splitter.load(state)
                handing += time.perf_counter() - began
            source = BackupSource(lambda: io.BytesIO(data), "backup.zip",
                                  options=ImportOptions(), limits=limits)
            try:
                for record in source.records(print, start=position, on_position=_stop):
                    splitter.add(record)
            except _Stop as stop:
                began = time.perf_counter()
                stored = encode_line(splitter.hand_over("imports/bench/split/members/"))
                bucket.put("imports/bench/split/state.json", stored, {})
                state, position = decode_line(stored), stop.position
                largest = max(largest, len(stored))
                handing += time.perf_counter() - began
                continue
            parts = splitter.finish()
            break
        seconds = time.perf_counter() - started
        tracemalloc.stop()
    print(f"{args.sessions * args.messages_per_session} messages, {len(data) / 1e6:.1f} MB "
          f"stored, {len(parts)} shards, {invocations} invocations: {seconds:.1f} s, "
          f"{lines / 1e6 / seconds:.1f} MB/s of lines (about); the hand-overs {handing:.2f} s "
          f"in all, the largest state {largest / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
