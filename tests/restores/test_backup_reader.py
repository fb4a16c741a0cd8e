"""The backup reader (imports/readers/backup.py) on backups written to the format contract:
types exact, a chain restored as of its newest link (deletions applied), selections, and a
damaged member refused before a single record of the backup could be written."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64

from dataport.imports.detect import open_import
from dataport.imports.limits import DEFAULT_LIMITS, BadInput, ImportLimits
from dataport.imports.readers.backup import (
    BackupSource,
    Cursor,
    NotInOrder,
    Position,
    Selection,
)
from dataport.imports.readers.base import Opener
from dataport.imports.validate import validate
from dataport.models.imports import ImportOptions, IssueCode, SourceFormat
from dataport.models.records import RecordKind
from tests.restores.backups import Backup, flip_byte

OWNER = ObjectId("66ad9b005f2b4a0012c0aaaa")
PROJECT = {"_id": ObjectId("66ad9c1e5f2b4a0012c0ffee"), "user_id": OWNER, "name": "lens",
           "path": "/work/lens", "createdAt": datetime(2025, 8, 1, tzinfo=UTC)}


def session(n: int, summary: str = "first") -> dict[str, Any]:
    return {"_id": ObjectId(f"66ad9c1e5f2b4a0012c1{n:04d}"),
            "sessionId": f"00000000-0000-4000-8000-{n:012d}", "projectId": PROJECT["_id"],
            "summary": summary, "messageCount": Int64(2),
            "totalCost": Decimal128("0.0030"), "startedAt": datetime(2025, 8, 2, tzinfo=UTC)}


def message(n: int, m: int, text: str = "hello") -> dict[str, Any]:
    return {"_id": ObjectId(f"66ad9c1f5f2b4a00{n:04d}{m:04d}"),
            "uuid": f"00000000-0000-4000-9{n:03d}-{m:012d}",
            "sessionId": f"00000000-0000-4000-8000-{n:012d}", "type": "user",
            "timestamp": datetime(2025, 8, 2, 4, 52, m, 123000, tzinfo=UTC),
            "content": text, "costUsd": Decimal128("0.0015"), "tokens": Int64(2**40)}


def opener(data: bytes) -> Opener:
    return lambda: io.BytesIO(data)


def source(data: bytes, *parents: bytes, **kwargs: Any) -> BackupSource:
    return BackupSource(opener(data), "backup.zip", options=ImportOptions(),
                        limits=open_limits(), chain=[opener(p) for p in parents], **kwargs)


def open_limits() -> ImportLimits:
    return DEFAULT_LIMITS


def base() -> Backup:
    return Backup(projects=[PROJECT], sessions=[session(1), session(2), session(3)],
                  messages=[message(n, m) for n in (1, 2, 3) for m in (1, 2)])


def test_a_full_backup_reads_back_every_document_exactly() -> None:
    backup = base()
    records = list(source(backup.container()).records())
    kinds = [r.kind for r in records]
    assert kinds[:2] == [RecordKind.PROJECT, RecordKind.SESSION]
    docs: dict[RecordKind, list[dict[str, Any]]] = {kind: [] for kind in RecordKind}
    for record in records:
        docs[record.kind].append(record.doc)
    assert docs[RecordKind.PROJECT] == [PROJECT]
    assert sorted(docs[RecordKind.SESSION], key=lambda d: d["sessionId"]) == backup.sessions
    assert sorted(docs[RecordKind.MESSAGE], key=lambda d: d["uuid"]) == sorted(
        backup.messages, key=lambda d: d["uuid"])
    first = next(d for d in docs[RecordKind.MESSAGE] if d["uuid"] == backup.messages[0]["uuid"])
    assert type(first["_id"]) is ObjectId
    assert type(first["costUsd"]) is Decimal128
    assert type(first["tokens"]) is Int64
    assert first["timestamp"].tzinfo is not None
    assert list(first) == list(backup.messages[0])  # field order kept


@pytest.mark.parametrize("version", [1, 2])
def test_objects_with_dollar_keys_restore_as_objects_from_version_2(version: int) -> None:
    """Format 2 escapes keys that start with `$`: a tool result holding a MongoDB query
    (`{"$date": 1}`) restores as that object. Format 1 backups still restore, with its limit:
    such an object read back as a type."""
    query = {"updatedAt": {"$date": 1700000000000}, "$schema": "s", "$$kept": 1}
    rows = [{"$oid": "x"}] if version == 2 else []  # version 1 refuses this line
    tool = {**message(1, 1), "toolUseResult": {"query": query, "rows": rows}}
    backup = Backup(projects=[PROJECT], sessions=[session(1)], messages=[tool],
                    format_version=version)
    records = list(source(backup.container()).records())
    [restored] = [r.doc for r in records if r.kind is RecordKind.MESSAGE]
    if version == 2:
        assert restored == tool
    else:
        assert restored["toolUseResult"]["query"]["updatedAt"] == datetime.fromtimestamp(
            1700000000, UTC)
        assert restored["toolUseResult"]["query"]["$schema"] == "s"


def test_detection_takes_a_backup_zip_as_a_backup() -> None:
    data = base().container()
    found = open_import(lambda: io.BytesIO(data), "backup.zip")
    assert isinstance(found, BackupSource)
    assert found.format is SourceFormat.DATAPORT_BACKUP


def test_a_chain_restores_the_newest_version_and_applies_deletions() -> None:
    first = base()
    increment = Backup(projects=[PROJECT], sessions=[session(1, "edited"), session(4)],
                       messages=[message(1, 1, "edited"), message(1, 2), message(1, 3),
                                 message(4, 1)],
                       deleted_sessions=[session(2)["sessionId"]], parent_id=first.backup_id)
    records = list(source(increment.container(), first.container()).records())
    sessions = {r.doc["sessionId"]: r.doc for r in records if r.kind is RecordKind.SESSION}
    assert sorted(sessions) == sorted(session(n)["sessionId"] for n in (1, 3, 4))
    assert sessions[session(1)["sessionId"]]["summary"] == "edited"
    messages = {r.doc["uuid"]: r.doc for r in records if r.kind is RecordKind.MESSAGE}
    expected = [message(1, 1, "edited"), message(1, 2), message(1, 3), message(3, 1),
                message(3, 2), message(4, 1)]
    assert messages == {m["uuid"]: m for m in expected}


def test_a_later_increment_can_bring_a_deleted_session_back() -> None:
    first = base()
    second = Backup(projects=[PROJECT], deleted_sessions=[session(3)["sessionId"]],
                    parent_id=first.backup_id)
    third = Backup(projects=[PROJECT], sessions=[session(3, "again")],
                   messages=[message(3, 9)], parent_id=second.backup_id)
    records = list(source(third.container(), first.container(), second.container()).records())
    sessions = {r.doc["sessionId"]: r.doc for r in records if r.kind is RecordKind.SESSION}
    assert sessions[session(3)["sessionId"]]["summary"] == "again"
    assert [r.doc["uuid"] for r in records if r.kind is RecordKind.MESSAGE
            and r.doc["sessionId"] == session(3)["sessionId"]] == [message(3, 9)["uuid"]]


def test_a_selection_takes_only_its_sessions() -> None:
    wanted = session(2)["sessionId"]
    records = list(source(base().container(),
                          selection=Selection(sessions=frozenset({wanted}))).records())
    assert {r.doc["sessionId"] for r in records if r.kind is not RecordKind.PROJECT} == {wanted}
    by_project = list(source(base().container(),
                             selection=Selection(projects=frozenset({"/work/lens"}))).records())
    assert len([r for r in by_project if r.kind is RecordKind.SESSION]) == 3


@pytest.mark.parametrize("member", ["sessions/00001-00000.jsonl.zst",
                                    "messages/00001-00001.jsonl.zst"])
def test_a_flipped_byte_is_refused_by_the_one_validation_pass(member: str) -> None:
    damaged = flip_byte(base().container(), member)
    with pytest.raises(BadInput) as refused:  # a strict pass stops at the damaged member
        list(source(damaged).records())
    assert refused.value.issue.code == IssueCode.CHECKSUM_MISMATCH
    assert member in refused.value.issue.message
    sunk: list[RecordKind] = []
    report = validate(source(damaged), "backup.zip",
                      sink=lambda _: lambda record: sunk.append(record.kind))
    assert not report.ok  # nothing is written after a report with errors
    assert report.errors[0].code == IssueCode.CHECKSUM_MISMATCH
    assert member in report.errors[0].message
    assert sunk.count(RecordKind.MESSAGE) < len(base().messages)  # the sink stopped


def grouped() -> Backup:
    """A backup in the order the export worker writes one: each session's messages in the
    order of the sessions (base()'s order)."""
    return base()


def test_one_backup_streams_each_session_with_its_messages() -> None:
    found = source(grouped().container())
    assert found.session_grouped
    order = [(r.kind, r.doc.get("sessionId")) for r in found.records()
             if r.kind is not RecordKind.PROJECT]
    expected = []
    for n in (1, 2, 3):
        sid = session(n)["sessionId"]
        expected += [(RecordKind.SESSION, sid), (RecordKind.MESSAGE, sid),
                     (RecordKind.MESSAGE, sid)]
    assert order == expected


def test_messages_out_of_the_sessions_order_all_come_after_their_sessions() -> None:
    backup = base()
    backup.messages = [message(n, m) for n in (3, 1, 2) for m in (1, 2)]
    records = list(source(backup.container()).records())
    seen: set[str] = set()
    for record in records:
        if record.kind is RecordKind.SESSION:
            seen.add(record.doc["sessionId"])
        elif record.kind is RecordKind.MESSAGE:
            assert record.doc["sessionId"] in seen  # never before its session
    assert sorted(r.doc["uuid"] for r in records if r.kind is RecordKind.MESSAGE) == sorted(
        m["uuid"] for m in backup.messages)


def test_a_chain_is_not_grouped() -> None:
    first = base()
    increment = Backup(projects=[PROJECT], sessions=[session(4)], messages=[message(4, 1)],
                       parent_id=first.backup_id)
    assert not source(increment.container(), first.container()).session_grouped


def test_a_shard_reads_only_what_its_owner_owns() -> None:
    other = ObjectId("66ad9b005f2b4a0012c0bbbb")
    theirs = {**PROJECT, "_id": ObjectId("66ad9c1e5f2b4a0012c0beef"), "user_id": other,
              "path": "/work/theirs"}
    backup = grouped()
    backup.projects = [PROJECT, theirs]
    backup.sessions[1] = {**backup.sessions[1], "projectId": theirs["_id"]}
    data = backup.container()
    assert source(data).owners() == {OWNER, other}
    mine = list(source(data, owner=OWNER).records())
    assert {r.doc["sessionId"] for r in mine if r.kind is not RecordKind.PROJECT} == {
        session(n)["sessionId"] for n in (1, 3)}
    assert [r.doc["path"] for r in mine if r.kind is RecordKind.PROJECT] == ["/work/lens"]
    their_records = list(source(data, owner=other).records())
    assert {r.doc["sessionId"] for r in their_records if r.kind is not RecordKind.PROJECT} == {
        session(2)["sessionId"]}


def test_a_member_the_manifest_does_not_list_is_refused() -> None:
    data = io.BytesIO(base().container())
    with zipfile.ZipFile(data, "a") as archive:
        archive.writestr("sessions/00009-00000.jsonl.zst", b"x")
    with pytest.raises(BadInput) as refused:
        list(source(data.getvalue()).records())
    assert refused.value.issue.code == IssueCode.CHECKSUM_MISMATCH


# ---------------------------------------------------------------------------- resumed reads


def two_projects() -> Backup:
    """Sessions of two projects, interleaved, each with 1 to 5 messages; members of 3
    documents, so a `messages/` member ends mid-session and the walk's project changes."""
    other = {**PROJECT, "_id": ObjectId("66ad9c1e5f2b4a0012c0beef"), "path": "/work/other"}
    sessions = [{**session(n), "projectId": (PROJECT if n % 3 else other)["_id"]}
                for n in range(1, 11)]
    messages = [message(n, m) for n in range(1, 11) for m in range(1, n % 5 + 2)]
    return Backup(projects=[PROJECT, other], sessions=sessions, messages=messages)


def offered(data: bytes, *parents: bytes, **kwargs: Any
            ) -> tuple[list[Any], list[tuple[int, Any]]]:
    """One read's records, and each position it offered with how many records came before."""
    records: list[Any] = []
    positions: list[tuple[int, Any]] = []
    read = source(data, *parents, **kwargs).records(
        on_position=lambda at: positions.append((len(records), at)))
    records.extend(read)
    return records, positions


def test_a_read_resumed_at_any_position_gives_the_rest_of_the_records_exactly() -> None:
    data = two_projects().container()
    whole, positions = offered(data)
    assert len(positions) == 3  # 10 sessions in members of 3: an offer at each end but the last
    assert [p.links[0].sessions for _, p in positions] == [1, 2, 3]
    for before, position in positions:
        problems: list[Any] = []
        rest = list(source(data).records(problems.append, start=position))
        assert problems == []  # the member read again was checked whole
        assert [(r.kind, r.doc) for r in rest] == [(r.kind, r.doc) for r in whole[before:]]
        assert before > 0
        assert rest


def test_a_resumed_read_still_checks_the_member_it_reads_again() -> None:
    backup = two_projects()
    data = backup.container()
    _, positions = offered(data)
    position = next(p for _, p in positions if p.links[0].line > 1)  # mid-member: skipped
    member = f"messages/00001-{position.links[0].messages:05d}.jsonl.zst"
    problems: list[Any] = []
    list(source(flip_byte(data, member)).records(problems.append, start=position))
    assert [p.code for p in problems] == [IssueCode.CHECKSUM_MISMATCH]
    assert member in problems[0].message


def test_messages_out_of_their_sessions_place_are_flagged() -> None:
    backup = two_projects()
    grouped = source(backup.container())
    list(grouped.records())
    assert not grouped.out_of_place
    backup.messages.sort(key=lambda doc: doc["uuid"][::-1])  # another order
    scattered = source(backup.container())
    list(scattered.records())
    assert scattered.out_of_place


def test_a_chain_read_newest_link_first_cannot_resume() -> None:
    parent = base()
    child = Backup(projects=[PROJECT], sessions=[session(4)], messages=[message(4, 1)],
                   parent_id=parent.backup_id)
    with pytest.raises(ValueError, match="chain"):
        source(child.container(), parent.container()).records(
            start=Position((Cursor(1), Cursor())))


# ---------------------------------------------------------------------------- chains in order


def chain() -> list[bytes]:
    """Three links (members of 2 documents): an increment that edits a session, adds two and
    deletes one; another that deletes one more and brings the first deleted one back."""
    first = Backup(projects=[PROJECT], sessions=[session(n) for n in range(1, 7)],
                   messages=[message(n, m) for n in range(1, 7) for m in (1, 2)])
    second = Backup(projects=[PROJECT],
                    sessions=[session(2, "edited"), session(7), session(8)],
                    messages=[message(2, 1, "edited"), message(2, 3), message(7, 1),
                              message(8, 1), message(8, 2)],
                    deleted_sessions=[session(3)["sessionId"]], parent_id=first.backup_id)
    third = Backup(projects=[PROJECT], sessions=[session(3, "back"), session(9)],
                   messages=[message(3, 5), message(9, 1)],
                   deleted_sessions=[session(5)["sessionId"], session(7)["sessionId"]],
                   parent_id=second.backup_id)
    return [third.container(per_member=2), first.container(per_member=2),
            second.container(per_member=2)]


def as_set(records: list[Any]) -> list[Any]:
    return sorted((r.kind.value, repr(sorted(r.doc.items()))) for r in records)


@pytest.mark.parametrize("selection", [Selection(), Selection(
    sessions=frozenset({session(2)["sessionId"], session(5)["sessionId"]}))])
def test_a_chain_read_in_order_gives_what_the_newest_first_read_gives_grouped(
        selection: Selection) -> None:
    links = chain()
    newest_first = list(source(*links, selection=selection).records())
    in_order = source(*links, selection=selection, in_order=True)
    merged = list(in_order.records())
    assert as_set(merged) == as_set(newest_first)
    assert not in_order.out_of_place
    current = None
    for record in merged:  # each session followed by its own messages
        if record.kind is RecordKind.SESSION:
            current = record.doc["sessionId"]
        elif record.kind is RecordKind.MESSAGE:
            assert record.doc["sessionId"] == current
    if selection.everything:
        sessions = [r.doc["sessionId"] for r in merged if r.kind is RecordKind.SESSION]
        assert sessions == sorted(session(n)["sessionId"] for n in (1, 2, 3, 4, 6, 8, 9))


def test_a_chain_read_in_order_resumed_at_any_position_gives_the_rest_exactly() -> None:
    links = chain()
    whole, positions = offered(links[0], *links[1:], in_order=True)
    assert len(positions) == 5  # each `sessions/` member's end (3 + 2 + 1) but the last
    assert {len(p.links) for _, p in positions} == {3}
    for before, position in positions:
        problems: list[Any] = []
        rest = list(source(*links, in_order=True).records(problems.append, start=position))
        assert problems == []
        assert [(r.kind, r.doc) for r in rest] == [(r.kind, r.doc) for r in whole[before:]]


def test_a_chain_whose_link_is_not_in_session_order_cannot_be_read_in_order() -> None:
    first = base()
    first.sessions.reverse()
    increment = Backup(projects=[PROJECT], sessions=[session(4)], messages=[message(4, 1)],
                       parent_id=first.backup_id)
    with pytest.raises(NotInOrder, match="chain link 0"):
        list(source(increment.container(), first.container(), in_order=True).records())
    assert len(list(source(increment.container(), first.container()).records())) == 12


def test_messages_out_of_place_offer_positions_that_resume_with_what_earlier_reads_took(
        ) -> None:
    backup = two_projects()
    backup.messages.sort(key=lambda doc: doc["uuid"][::-1])  # every session's place left
    data = backup.container()
    whole_source = source(data)
    whole: list[Any] = []
    positions: list[tuple[int, Any]] = []
    whole.extend(whole_source.records(on_position=lambda at: positions.append((len(whole), at))))
    assert whole_source.out_of_place
    late = [p for _, p in positions if p.late]
    assert len(late) >= 3  # a `messages/` member's end of the late messages each
    taken = dict(whole_source.chosen)
    for before, position in positions:
        problems: list[Any] = []
        rest = list(source(data).records(problems.append, start=position, taken=taken.get))
        assert problems == []
        assert [(r.kind, r.doc) for r in rest] == [(r.kind, r.doc) for r in whole[before:]]
    # without what the earlier reads took, a late resumed read gives none of their messages
    assert list(source(data).records(start=late[0])) == []
