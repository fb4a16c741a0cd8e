"""The plan's split of a backup (imports/split.py) on backups written to the format contract,
into a real (moto) bucket: every shard's object is a backup the restore reader reads back
whole and checked, holding exactly its user's sessions with their messages and the projects
they are in; a user's data cut by message count at session boundaries; users interleaved
beyond the hot writers' bound give shards of several members that still read back grouped."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from bson.int64 import Int64

from dataport.backups.format import MANIFEST_NAME, BackupManifest, decode_line, encode_line
from dataport.bucket import PackagesBucket
from dataport.imports.limits import DEFAULT_LIMITS
from dataport.imports.readers.backup import BackupSource, Position
from dataport.imports.split import OutOfPlace, ShardPart, Splitter
from dataport.models.imports import ImportOptions, Issue
from dataport.models.records import RecordKind
from tests.restores.backups import Backup

USERS = [ObjectId(f"66ad9b005f2b4a0012c0{n:04d}") for n in range(3)]
MADE = datetime(2026, 12, 5, tzinfo=UTC)
PREFIX = "imports/job/shards/"


def project(user: int) -> dict[str, Any]:
    return {"_id": ObjectId(f"66ad9c1e5f2b4a0012c0{user:04d}"), "user_id": USERS[user],
            "name": f"p{user}", "path": f"/work/p{user}"}


def session(n: int, user: int, messages: int) -> dict[str, Any]:
    return {"sessionId": f"00000000-0000-4000-8000-{n:012d}",
            "projectId": project(user)["_id"], "messageCount": Int64(messages)}


def message(n: int, m: int) -> dict[str, Any]:
    return {"uuid": f"{n:08d}-{m:04d}", "sessionId": f"00000000-0000-4000-8000-{n:012d}",
            "type": "user", "content": f"message {m} of {n}"}


def instance(sessions: int, messages: int) -> Backup:
    """Users interleaved in sessionId order, as an instance backup holds them."""
    docs = [session(n, n % len(USERS), messages) for n in range(sessions)]
    return Backup(projects=[project(u) for u in range(len(USERS))], sessions=docs,
                  messages=[message(n, m) for n in range(sessions) for m in range(messages)],
                  scope="instance")


def split(bucket: PackagesBucket, data: bytes, shard_messages: int, *, hot: int = 8,
          eager: bool = True, pack_messages: int = 0, pack_users: int = 1
          ) -> list[ShardPart]:
    problems: list[Issue] = []
    source = BackupSource(lambda: io.BytesIO(data), "backup.zip", options=ImportOptions(),
                          limits=DEFAULT_LIMITS)
    splitter = Splitter(bucket, PREFIX, shard_messages, eager=eager, made_at=MADE, hot=hot,
                        owner_of=lambda p: str(p["user_id"]), pack_messages=pack_messages,
                        pack_users=pack_users)
    try:
        for record in source.records(problems.append):
            splitter.add(record)
    except BaseException:
        splitter.abort()
        raise
    assert problems == []
    return splitter.finish()


def members(bucket: PackagesBucket, part: ShardPart, collection: str) -> int:
    data = bucket.read_range(part.pin.key, 0, part.pin.bytes)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = BackupManifest.from_json(archive.read(MANIFEST_NAME))
    return len(manifest.data_members(collection))  # type: ignore[arg-type]


def read_back(bucket: PackagesBucket, part: ShardPart) -> list[tuple[RecordKind, Any]]:
    """A shard's object through the restore reader, every member checked (strict: any
    problem raises); a shared part (a pack) read as its shard reads it: its user's only."""
    data = bucket.read_range(part.pin.key, 0, part.pin.bytes)
    problems: list[Issue] = []
    source = BackupSource(lambda: io.BytesIO(data), "backup.zip", options=ImportOptions(),
                          limits=DEFAULT_LIMITS,
                          owner=ObjectId(part.user_id) if part.shared else None)
    assert source.session_grouped
    records = [(r.kind, r.doc.get("sessionId") or r.doc.get("path"))
               for r in source.records(problems.append)]
    assert problems == []
    return records


@pytest.mark.parametrize("hot", [1, 8])
def test_every_user_is_cut_into_shards_of_whole_sessions_that_read_back_checked(
        bucket: PackagesBucket, hot: int) -> None:
    backup = instance(sessions=30, messages=4)
    parts = split(bucket, backup.container(per_member=7), shard_messages=12, hot=hot)
    # 10 sessions a user, 4 messages (5 with the session) each: a shard closes past 12
    assert [(p.user_id, p.number, p.sessions) for p in parts] == [
        (str(user), n, count) for user in USERS for n, count in enumerate([3, 3, 3, 1])]
    assert bucket.keys(PREFIX) == sorted(p.pin.key for p in parts)
    seen: list[str] = []
    for part in parts:
        records = read_back(bucket, part)
        user = USERS.index(ObjectId(part.user_id))
        sessions = [sid for kind, sid in records if kind is RecordKind.SESSION]
        assert sessions == sorted(sessions)
        for sid in sessions:
            assert int(sid[-12:]) % len(USERS) == user  # only this user's
            at = records.index((RecordKind.SESSION, sid))
            assert records[at + 1:at + 5] == [(RecordKind.MESSAGE, sid)] * 4  # grouped
        assert records[0] == (RecordKind.PROJECT, f"/work/p{user}")
        assert part.records == len(records)
        assert part.messages == 4 * len(sessions)
        seen.extend(sessions)
        # one hot shard at a time: users interleave, so a shard's members end and begin again
        assert (members(bucket, part, "sessions") > 1) == (hot == 1 and part.sessions > 1)
    assert sorted(seen) == sorted(s["sessionId"] for s in backup.sessions)  # each once


def test_small_users_share_packed_parts_each_shard_reading_only_its_user(
        bucket: PackagesBucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.restores.test_split.USERS", [
        ObjectId(f"66ad9b005f2b4a0012c0{n:04d}") for n in range(7)])
    backup = instance(sessions=7 * 3, messages=2)  # 3 sessions, 6 messages a user
    parts = split(bucket, backup.container(per_member=4), shard_messages=100, hot=2,
                  pack_messages=15, pack_users=3)
    # a pack closes at 15 messages (two users of 6 each) or 3 users: packs of 2, 2, 2, 1
    keys = [p.pin.key for p in parts]
    assert [keys.count(key) for key in keys] == [2, 2, 2, 2, 2, 2, 1]
    assert [p.shared for p in parts] == [True] * 6 + [False]
    assert bucket.keys(PREFIX) == sorted(set(keys))  # 4 objects for 7 users
    for part in parts:
        records = read_back(bucket, part)
        user = ObjectId(part.user_id)
        sessions = [sid for kind, sid in records if kind is RecordKind.SESSION]
        assert len(sessions) == 3
        assert all(int(sid[-12:]) % 7 == USERS_OF[user] for sid in sessions)
        assert records.count((RecordKind.MESSAGE, sessions[0])) == 2
        assert [r for r in records if r[0] is RecordKind.PROJECT] == [
            (RecordKind.PROJECT, f"/work/p{USERS_OF[user]}")]
        assert part.records == len(records)  # what its shard restores (progress)
        if part.shared:  # one member a collection (its users' shards had several: hot=2)
            assert members(bucket, part, "sessions") == members(bucket, part, "messages") == 1
    again = split(bucket, backup.container(per_member=4), shard_messages=100, hot=2,
                  pack_messages=15, pack_users=3)
    assert [(p.pin.etag, p.sha256) for p in again] == [(p.pin.etag, p.sha256) for p in parts]


USERS_OF = {ObjectId(f"66ad9b005f2b4a0012c0{n:04d}"): n for n in range(7)}


def test_a_shard_is_the_same_bytes_when_split_again(bucket: PackagesBucket) -> None:
    data = instance(sessions=9, messages=2).container()
    first = split(bucket, data, shard_messages=6)
    again = split(bucket, data, shard_messages=6)
    assert [(p.pin.key, p.pin.etag, p.sha256) for p in first] == [
        (p.pin.key, p.pin.etag, p.sha256) for p in again]  # a retried plan's shards match


def test_messages_away_from_their_session_ask_for_a_split_to_the_end(
        bucket: PackagesBucket) -> None:
    backup = instance(sessions=12, messages=2)
    backup.messages.sort(key=lambda m: m["uuid"][-4:])  # every session's first, then seconds
    data = backup.container()
    with pytest.raises(OutOfPlace):
        split(bucket, data, shard_messages=3)
    parts = split(bucket, data, shard_messages=3, eager=False)
    assert sum(p.messages for p in parts) == len(backup.messages)


class _Stop(Exception):
    pass


def split_handed_over(bucket: PackagesBucket, data: bytes, shard_messages: int, *,
                      hot: int = 8, retried: bool = False) -> tuple[list[ShardPart], int]:
    """The split as the plan runs it when it hands over at every `sessions/` member's end:
    each run a fresh splitter going on from the last one's state (through Extended JSON, as
    stored), the reader from its position; `retried`: every run done twice (an answer lost).
    The parts, and how many runs."""
    state: dict[str, Any] | None = None
    position: Position | None = None
    runs = 0
    while True:
        runs += 1
        for _attempt in range(2 if retried else 1):
            splitter = Splitter(bucket, PREFIX, shard_messages, eager=True, made_at=MADE,
                                hot=hot, owner_of=lambda p: str(p["user_id"]))
            if state is not None:
                splitter.load(state)
            source = BackupSource(lambda: io.BytesIO(data), "backup.zip",
                                  options=ImportOptions(), limits=DEFAULT_LIMITS)
            offered: list[Position] = []

            def stop(at: Position, offered: list[Position] = offered) -> None:
                offered.append(at)
                raise _Stop

            try:
                for record in source.records(start=position, on_position=stop):
                    splitter.add(record)
            except _Stop:
                next_state = decode_line(encode_line(  # as the plan stores it
                    splitter.hand_over("imports/job/split/members/")))
                continue
            return splitter.finish(), runs
        state, position = next_state, offered[-1]


@pytest.mark.parametrize("hot", [1, 8])
def test_a_split_handed_over_at_every_member_gives_the_same_shards(
        bucket: PackagesBucket, hot: int) -> None:
    backup = instance(sessions=30, messages=4)
    data = backup.container(per_member=7)
    whole = split(bucket, data, shard_messages=12, hot=hot)
    expected = [(p.user_id, p.number, p.sessions, p.messages, p.records,
                 read_back(bucket, p)) for p in whole]
    whole_members = sum(members(bucket, p, "messages") for p in whole)
    bucket.delete_prefix("imports/job/")
    parts, runs = split_handed_over(bucket, data, shard_messages=12, hot=hot)
    assert runs == 5  # 30 sessions in members of 7
    assert [(p.user_id, p.number, p.sessions, p.messages, p.records, read_back(bucket, p))
            for p in parts] == expected
    assert bucket.keys(PREFIX) == sorted(p.pin.key for p in parts)
    # the open shards' members were ended at each hand-over: more members, the same records
    # (one hot shard: every member ends at the next session already)
    handed = sum(members(bucket, p, "messages") for p in parts)
    assert (handed > whole_members) == (hot > 1)


def test_a_retried_hand_over_writes_the_same_objects(bucket: PackagesBucket) -> None:
    data = instance(sessions=30, messages=4).container(per_member=7)
    once, _ = split_handed_over(bucket, data, shard_messages=12)
    stored = {key: bucket.pin_written(key).etag for key in bucket.keys("imports/job/")}
    bucket.delete_prefix("imports/job/")
    twice, _ = split_handed_over(bucket, data, shard_messages=12, retried=True)
    assert [(p.pin, p.sha256) for p in twice] == [(p.pin, p.sha256) for p in once]
    assert {key: bucket.pin_written(key).etag for key in bucket.keys("imports/job/")} == stored
