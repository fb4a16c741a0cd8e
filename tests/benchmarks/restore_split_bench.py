"""The plan's split of a restore (imports/split.py) alone: a generated one-user backup read by
the backup reader (every member checked) and cut into shards of `--shard` messages.

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.restore_split_bench \
        [--sessions N] [--messages-per-session M] [--shard S] [--member D] [--hand-over]
        [--chain L] [--scattered]

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
members, storing them and the state and the page of the sessions read, loading it again) and
the largest state object.

`--chain L`: the restored backup is the last of a chain of L links (the generated backup, then
L - 1 increments, each holding a new version of every tenth session and deleting a few), read
as the plan reads a chain (its links merged in sessionId order). `--scattered`: each session's
messages after the first leave their place (every first message, then every second one...):
the split reopens its stored shards, and a hand-over also falls at each `messages/` member's
end of those.
"""

from __future__ import annotations

import argparse
import io
import json
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


def backup(sessions: int, per_session: int, member: int = 50_000, *, links: int = 1,
           scattered: bool = False) -> tuple[bytes, list[bytes], int]:
    """A backup of one user (messages of about a kilobyte, half of it random): the restored
    one, its parents (oldest first) and the bytes of every link's lines."""
    project = {"_id": ObjectId(), "user_id": USER, "name": "bench", "path": "/work/bench"}

    def made(numbers: list[int], version: int, **fields: Any) -> tuple[Backup, int]:
        docs = [{"sessionId": f"00000000-0000-4000-8000-{n:012d}", "projectId": project["_id"],
                 "messageCount": Int64(per_session), "version": version} for n in numbers]
        messages = [{"uuid": f"{n:08d}-{m:04d}-{version}", "type": "user",
                     "sessionId": f"00000000-0000-4000-8000-{n:012d}",
                     "content": (f"{n}-{m}-" + os.urandom(200).hex()) * 2}
                    for n in numbers for m in range(per_session)]
        if scattered:
            messages.sort(key=lambda doc: doc["uuid"][9:])
        return (Backup(projects=[project], sessions=docs, messages=messages, **fields),
                sum(len(str(m)) for m in messages))

    chain: list[Backup] = []
    lines = 0
    for link in range(links):
        numbers = (list(range(sessions)) if not link
                   else [n for n in range(sessions) if n % 10 == link % 10])
        deleted = [f"00000000-0000-4000-8000-{n:012d}" for n in range(sessions)
                   if link and n % 97 == link]
        one, size = made(numbers, link, deleted_sessions=deleted,
                         parent_id=chain[-1].backup_id if chain else None)
        chain.append(one)
        lines += size
    data = [one.container(per_member=member) for one in chain]
    return data[-1], data[:-1], lines


def source_of(data: bytes, parents: list[bytes], limits: ImportLimits) -> BackupSource:
    return BackupSource(lambda: io.BytesIO(data), "backup.zip", options=ImportOptions(),
                        limits=limits, in_order=True,
                        chain=[lambda p=p: io.BytesIO(p) for p in parents])  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=5_000)
    parser.add_argument("--messages-per-session", type=int, default=20)
    parser.add_argument("--shard", type=int, default=5_000, help="messages a shard")
    parser.add_argument("--member", type=int, default=50_000, help="documents a member")
    parser.add_argument("--hand-over", action="store_true")
    parser.add_argument("--chain", type=int, default=1, help="links of the chain restored")
    parser.add_argument("--scattered", action="store_true")
    args = parser.parse_args()
    data, parents, lines = backup(args.sessions, args.messages_per_session, args.member,
                                  links=args.chain, scattered=args.scattered)
    if args.hand_over:
        handed_over(args, data, parents, lines)
        return
    limits = ImportLimits(max_upload_bytes=10**12, max_total_uncompressed_bytes=10**12,
                          max_zip_entries=10**6)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-packages")
        bucket: PackagesBucket = (PackagesBucket(s3, "bench-packages") if args.scattered
                                  else CountingBucket(s3, "bench-packages"))
        source = source_of(data, parents, limits)  # (reopened parts are read back: kept)
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
    print(f"{args.chain} link(s), {lines / 1e6:.1f} MB of lines, "
          f"{(len(data) + sum(map(len, parents))) / 1e6:.1f} MB stored, {len(parts)} shards: "
          f"{seconds:.1f} s, {lines / 1e6 / seconds:.1f} MB/s of lines (about), the split's "
          f"Python peak {peak / 2**20:.1f} MiB")


class _Stop(Exception):
    def __init__(self, position: Position) -> None:
        super().__init__()
        self.position = position


def _stop(position: Position) -> None:
    raise _Stop(position)


class _Pages:
    """The sessions earlier invocations read, from their pages (as the plan's `_Earlier`,
    without the seal), loaded when first asked."""

    PREFIX = "imports/bench/split/taken-"

    def __init__(self, bucket: PackagesBucket) -> None:
        self._bucket = bucket
        self._sessions: dict[str, list[Any]] | None = None

    def link(self, session_id: str) -> int | None:
        found = self._read().get(session_id)
        return None if found is None else int(found[0])

    def shard(self, session_id: str) -> tuple[str, int] | None:
        found = self._read().get(session_id)
        return None if found is None else (str(found[1]), int(found[2]))

    def _read(self) -> dict[str, list[Any]]:
        if self._sessions is None:
            self._sessions = {}
            for key in self._bucket.keys(self.PREFIX):
                with self._bucket.lines_from(key, 0) as lines:
                    self._sessions.update(json.loads(b"".join(lines or [])))
        return self._sessions


def handed_over(args: argparse.Namespace, data: bytes, parents: list[bytes],
                lines: int) -> None:
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
            earlier = _Pages(bucket)  # read again by each invocation that needs them
            splitter.earlier = earlier.shard
            source = source_of(data, parents, limits)
            try:
                for record in source.records(print, start=position, on_position=_stop,
                                             taken=earlier.link):
                    splitter.add(record)
            except _Stop as stop:
                began = time.perf_counter()
                stored = encode_line(splitter.hand_over("imports/bench/split/members/"))
                bucket.put("imports/bench/split/state.json", stored, {})
                page = {sid: [source.chosen[sid], *shard]
                        for sid, shard in splitter.session_shards.items()}
                if page:  # (the plan writes none for an invocation that read no session)
                    bucket.put(f"{_Pages.PREFIX}{invocations:06d}.json",
                               json.dumps(page).encode(), {})
                state, position = decode_line(stored), stop.position
                largest = max(largest, len(stored))
                handing += time.perf_counter() - began
                continue
            parts = splitter.finish()
            break
        seconds = time.perf_counter() - started
        tracemalloc.stop()
    print(f"{args.chain} link(s), {lines / 1e6:.1f} MB of lines, "
          f"{(len(data) + sum(map(len, parents))) / 1e6:.1f} MB stored, {len(parts)} shards, "
          f"{invocations} invocations: {seconds:.1f} s, "
          f"{lines / 1e6 / seconds:.1f} MB/s of lines (about); the hand-overs {handing:.2f} s "
          f"in all, the largest state {largest / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
