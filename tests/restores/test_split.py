"""The plan's split of a backup (imports/split.py) on backups written to the format contract,
into a real (moto) bucket: every shard's object is a backup the restore reader reads back
whole and checked, holding exactly its user's sessions with their messages and the projects
they are in; a user's data cut by message count at session boundaries; users interleaved
beyond the hot writers' bound give shards of several members that still read back grouped; a
chain (its links merged in sessionId order) and a file whose messages left their sessions'
place (their stored shards reopened) split handed over at every member's end give the shards
one run gives, and a retried run writes the same objects."""

from __future__ import annotations

import collections
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
from dataport.imports.split import ShardKey, ShardPart, Splitter
from dataport.models.documents import MessageLayout
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


def backup_source(data: bytes, parents: tuple[bytes, ...] = ()) -> BackupSource:
    return BackupSource(lambda: io.BytesIO(data), "backup.zip", options=ImportOptions(),
                        limits=DEFAULT_LIMITS, in_order=True,
                        chain=[lambda p=p: io.BytesIO(p) for p in parents])  # type: ignore[misc]


def split(bucket: PackagesBucket, data: bytes, shard_messages: int, *, hot: int = 8,
          parents: tuple[bytes, ...] = (), pack_messages: int = 0, pack_users: int = 1
          ) -> list[ShardPart]:
    """The split in one run (as the plan's first invocation makes it): superseded parts
    deleted once it is done."""
    problems: list[Issue] = []
    source = backup_source(data, parents)
    splitter = Splitter(bucket, PREFIX, shard_messages, eager=True, made_at=MADE, hot=hot,
                        owner_of=lambda p: str(p["user_id"]), pack_messages=pack_messages,
                        pack_users=pack_users)
    try:
        for record in source.records(problems.append):
            splitter.add(record)
    except BaseException:
        splitter.abort()
        raise
    assert problems == []
    parts = splitter.finish()
    for key in splitter.superseded:
        bucket.delete(key)
    return parts


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


def scattered(sessions: int = 12, messages: int = 2) -> Backup:
    """Every session's first message, then every second one: away from their places."""
    backup = instance(sessions=sessions, messages=messages)
    backup.messages.sort(key=lambda m: m["uuid"][-4:])
    return backup


def test_messages_away_from_their_session_reopen_its_stored_shard(
        bucket: PackagesBucket) -> None:
    backup = scattered()
    parts = split(bucket, backup.container(), shard_messages=3)
    assert sum(p.messages for p in parts) == len(backup.messages)
    last = {p.user_id: p.number for p in parts}  # (in order) each user's last shard
    # each shard stored when its user's next opened, then reopened once; the last still open
    assert [p.generation for p in parts] == [int(p.number < last[p.user_id]) for p in parts]
    assert min(last.values()) > 0  # so every user has reopened shards
    assert bucket.keys(PREFIX) == sorted(p.pin.key for p in parts)  # the first ones gone
    for part in parts:
        records = read_back(bucket, part)
        sessions = {sid for kind, sid in records if kind is RecordKind.SESSION}
        messages = [sid for kind, sid in records if kind is RecordKind.MESSAGE]
        assert sorted(messages) == sorted(sid for sid in sessions for _ in range(2))
        assert part.records == len(records)


class _Stop(Exception):
    pass


def split_handed_over(bucket: PackagesBucket, data: bytes, shard_messages: int, *,
                      hot: int = 8, retried: bool = False, parents: tuple[bytes, ...] = ()
                      ) -> tuple[list[ShardPart], int]:
    """The split as the plan runs it when it hands over at every member's end the reader
    offers: each run a fresh splitter going on from the last one's state (through Extended
    JSON, as stored), the reader from its position, both told what earlier runs took (the
    plan's pages); `retried`: every run done twice (an answer lost). The parts (superseded
    ones deleted at the end), and how many runs."""
    state: dict[str, Any] | None = None
    position: Position | None = None
    pages: dict[str, tuple[int, ShardKey]] = {}
    runs = 0
    while True:
        runs += 1
        for _attempt in range(2 if retried else 1):
            splitter = Splitter(bucket, PREFIX, shard_messages, eager=True, made_at=MADE,
                                hot=hot, owner_of=lambda p: str(p["user_id"]))
            if state is not None:
                splitter.load(state)
            splitter.earlier = lambda sid: pages[sid][1] if sid in pages else None
            source = backup_source(data, parents)
            offered: list[Position] = []

            def stop(at: Position, offered: list[Position] = offered) -> None:
                offered.append(at)
                raise _Stop

            problems: list[Issue] = []
            try:
                for record in source.records(
                        problems.append, start=position, on_position=stop,
                        taken=lambda sid: pages[sid][0] if sid in pages else None):
                    splitter.add(record)
            except _Stop:
                assert problems == []
                next_state = decode_line(encode_line(  # as the plan stores it
                    splitter.hand_over("imports/job/split/members/")))
                page = {sid: (source.chosen[sid], shard)
                        for sid, shard in splitter.session_shards.items()}
                continue
            assert problems == []
            parts = splitter.finish()
            for key in splitter.superseded:
                bucket.delete(key)
            return parts, runs
        state, position = next_state, offered[-1]
        pages.update(page)


def shards_of(bucket: PackagesBucket, parts: list[ShardPart]) -> list[Any]:
    return [(p.user_id, p.number, p.sessions, p.messages, p.records, read_back(bucket, p))
            for p in parts]


@pytest.mark.parametrize("hot", [1, 8])
def test_a_split_handed_over_at_every_member_gives_the_same_shards(
        bucket: PackagesBucket, hot: int) -> None:
    backup = instance(sessions=30, messages=4)
    data = backup.container(per_member=7)
    whole = split(bucket, data, shard_messages=12, hot=hot)
    expected = shards_of(bucket, whole)
    whole_members = sum(members(bucket, p, "messages") for p in whole)
    bucket.delete_prefix("imports/job/")
    parts, runs = split_handed_over(bucket, data, shard_messages=12, hot=hot)
    assert runs == 5  # 30 sessions in members of 7
    assert shards_of(bucket, parts) == expected
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


def a_chain() -> tuple[bytes, tuple[bytes, ...], set[str]]:
    """An instance base and two increments (members of 5 documents): sessions edited, added
    and deleted, one deleted and brought back; the data, its parents and the sessionIds the
    chain holds at its end."""
    first = instance(sessions=30, messages=4)
    second = Backup(projects=first.projects, scope="instance", parent_id=first.backup_id,
                    sessions=[session(n, n % 3, 5) for n in (2, 9, 30, 31)],
                    messages=[message(n, m) for n in (2, 9, 30, 31) for m in range(5)],
                    deleted_sessions=[session(n, 0, 0)["sessionId"] for n in (4, 5, 17)])
    third = Backup(projects=first.projects, scope="instance", parent_id=second.backup_id,
                   sessions=[session(n, n % 3, 2) for n in (5, 9, 32)],
                   messages=[message(n, 90 + m) for n in (5, 9, 32) for m in range(2)],
                   deleted_sessions=[session(n, 0, 0)["sessionId"] for n in (30, 11)])
    held = {session(n, 0, 0)["sessionId"] for n in range(33)
            if n not in (4, 17, 30, 11)}
    return (third.container(per_member=5),
            (first.container(per_member=5), second.container(per_member=5)), held)


@pytest.mark.parametrize("hot", [1, 8])
def test_a_chain_split_handed_over_at_every_member_gives_the_same_shards(
        bucket: PackagesBucket, hot: int) -> None:
    data, parents, held = a_chain()
    whole = split(bucket, data, shard_messages=12, hot=hot, parents=parents)
    expected = shards_of(bucket, whole)
    sessions = [sid for *_, records in expected for kind, sid in records
                if kind is RecordKind.SESSION]
    assert sorted(sessions) == sorted(held)  # each session once, the deleted ones not
    newest = {r.doc["sessionId"]: r.doc for r in backup_source(data, parents).records()
              if r.kind is RecordKind.SESSION}
    # session 9's newest version is the third link's (2 messages)
    assert int(newest[session(9, 0, 0)["sessionId"]]["messageCount"]) == 2
    messages = collections.Counter(sid for *_, records in expected for kind, sid in records
                                   if kind is RecordKind.MESSAGE)
    assert messages == {sid: int(doc["messageCount"]) for sid, doc in newest.items()}
    bucket.delete_prefix("imports/job/")
    parts, runs = split_handed_over(bucket, data, shard_messages=12, hot=hot, parents=parents)
    assert runs == 8  # 6 + 1 + 1 `sessions/` members: a hand-over at each end but the last
    assert shards_of(bucket, parts) == expected
    assert bucket.keys(PREFIX) == sorted(p.pin.key for p in parts)


def test_a_file_whose_messages_left_their_places_split_handed_over_gives_the_same_shards(
        bucket: PackagesBucket) -> None:
    data = scattered(sessions=30, messages=3).container(per_member=7)
    whole = split(bucket, data, shard_messages=6)
    expected = shards_of(bucket, whole)
    bucket.delete_prefix("imports/job/")
    parts, runs = split_handed_over(bucket, data, shard_messages=6)
    # 5 `sessions/` members: 4 ends; each session's first message comes in its place (members
    # 0-4 of 13), the others late: the ends of members 4 to 11
    assert runs == 4 + 8 + 1
    assert shards_of(bucket, parts) == expected
    assert bucket.keys(PREFIX) == sorted(p.pin.key for p in parts)


@pytest.mark.parametrize("kind", ["chain", "scattered"])
def test_a_retried_hand_over_of_a_chain_or_of_late_messages_writes_the_same_objects(
        bucket: PackagesBucket, kind: str) -> None:
    if kind == "chain":
        data, parents, _ = a_chain()
    else:
        data, parents = scattered(sessions=30, messages=3).container(per_member=7), ()
    once, _ = split_handed_over(bucket, data, shard_messages=6, parents=parents)
    stored = {key: bucket.pin_written(key).etag for key in bucket.keys("imports/job/")}
    bucket.delete_prefix("imports/job/")
    twice, _ = split_handed_over(bucket, data, shard_messages=6, parents=parents,
                                 retried=True)
    assert [(p.pin, p.sha256) for p in twice] == [(p.pin, p.sha256) for p in once]
    assert {key: bucket.pin_written(key).etag for key in bucket.keys("imports/job/")} == stored


def layouts_of(bucket: PackagesBucket, parts: list[ShardPart]) -> set[MessageLayout | None]:
    found: set[MessageLayout | None] = set()
    for part in parts:
        data = bucket.read_range(part.pin.key, 0, part.pin.bytes)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            found.add(BackupManifest.from_json(archive.read(MANIFEST_NAME)).message_layout)
    return found


@pytest.mark.parametrize("layout", [MessageLayout.MONTHLY, MessageLayout.SINGLE, None])
def test_every_part_carries_the_backups_message_layout_through_a_hand_over(
        bucket: PackagesBucket, layout: MessageLayout | None) -> None:
    """Every shard writes the layout its part's manifest records into a target with no
    message collection yet, so all of a restore's parts carry the backup's (None: an older
    backup's parts record none): those stored before a hand-over, and those a splitter loaded
    from it stores without a reader (the plan's last, hashing invocation)."""
    backup = instance(sessions=12, messages=2)
    backup.message_layout = layout
    source = backup_source(backup.container(per_member=4))
    splitter = Splitter(bucket, PREFIX, 2, eager=True, made_at=MADE,
                        owner_of=lambda p: str(p["user_id"]))
    records = list(source.records())
    assert source.message_layout == layout  # read with the manifest
    half = len(records) // 2
    for record in records[:half]:
        splitter.message_layout = source.message_layout  # as the plan does
        splitter.add(record)
    stored_before = len(splitter.parts)
    assert stored_before  # eager: the full shards went out already
    state = decode_line(encode_line(splitter.hand_over("imports/job/split/members/")))
    loaded = Splitter(bucket, PREFIX, 2, eager=True, made_at=MADE,
                      owner_of=lambda p: str(p["user_id"]))
    loaded.load(state)
    parts = loaded.finish()
    assert len(parts) > stored_before  # the open shards stored by the loaded splitter
    assert layouts_of(bucket, parts) == {layout}

