"""The lossless JSON format: round trips field for field and type for type, streams, splits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bson import json_util

import dataport
from dataport.formats.base import Numbering
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.formats.json_format import JsonWriter
from tests.unit.format_sink import (
    CONTEXT,
    MemorySink,
    assert_same,
    many_messages,
    messages,
    project_doc,
    session_doc,
    write_session,
)


def load(data: bytes | bytearray) -> Any:
    return json_util.loads(bytes(data).decode("utf-8"), json_options=EXTENDED_JSON_READ_OPTIONS)


def export(docs: list[dict[str, Any]], split_bytes: int = 10_000_000) -> MemorySink:
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=split_bytes)
    write_session(writer, project_doc(), session_doc(), docs)
    writer.close()
    return sink


def test_round_trip_is_exact_field_for_field_and_type_for_type() -> None:
    docs = messages()
    sink = export(docs)

    [file] = sink.files
    assert file.path == "conversations.json"
    assert file.numbering is Numbering.ALWAYS
    assert file.closed
    assert file.records == len(docs)
    document = load(file.data)
    [entry] = document["sessions"]
    project, written = entry.pop("project"), entry.pop("messages")
    assert_same(entry, session_doc())
    assert_same(project, project_doc())
    assert_same(written, docs)


def test_file_is_plain_json_with_canonical_types_and_an_envelope() -> None:
    sink = export(messages())
    text = sink.files[0].text
    document = json.loads(text)
    assert {k: document[k] for k in ("format", "version", "generator", "jobId", "owner")} == {
        "format": "dataport.conversations", "version": 1, "generator": dataport.GENERATOR,
        "jobId": "job-123", "owner": "66ad9b005f2b4a0012c0aaaa"}
    assert document["exportedAt"] == "2025-08-03T09:00:00.123Z"
    entry = document["sessions"][0]
    assert entry["totalCost"] == {"$numberDecimal": "2.4187355"}
    assert entry["_id"] == {"$oid": "66ad9c1e5f2b4a0012c0f00d"}
    assert entry["startedAt"] == {"$date": {"$numberLong": "1754110327349"}}
    assert entry["messages"][1]["costUsd"] == {"$numberDecimal": "0.056628"}
    assert entry["messages"][1]["metadata"]["big"] == {"$numberLong": str(2**40)}
    # Unicode is written as UTF-8, not escaped
    assert "请检查 🙏 שלום" in text
    assert "環境変数 🐳" in text


def test_messages_are_streamed_as_they_arrive() -> None:
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    writer.begin_session(project_doc(), session_doc())
    sizes = []
    for doc in many_messages(5):
        writer.write_message(doc)
        sizes.append(sink.files[0].bytes_written)
    assert sizes == sorted(set(sizes)), "each message is written when it arrives"
    writer.end_session()
    writer.close()


def test_split_files_are_each_complete_and_together_hold_every_message() -> None:
    docs = many_messages(120)
    split = 4_000
    sink = export(docs, split_bytes=split)

    assert len(sink.files) > 3
    assert all(f.path == "conversations.json" and f.closed for f in sink.files)
    assert all(f.bytes_written <= split and not f.notes for f in sink.files)
    back: list[Any] = []
    for file in sink.files:
        [entry] = load(file.data)["sessions"]  # the session is re-opened in every part
        assert entry["sessionId"] == session_doc()["sessionId"]
        assert file.records == len(entry["messages"])
        back.extend(entry["messages"])
    assert_same(back, docs)


def test_a_message_larger_than_the_split_size_gets_a_file_of_its_own_with_a_note() -> None:
    docs = many_messages(30)
    docs[10]["content"] = "huge " * 5_000
    split = 6_000
    sink = export(docs, split_bytes=split)

    big = [f for f in sink.files if f.bytes_written > split]
    assert len(big) == 1
    [entry] = load(big[0].data)["sessions"]
    assert [m["uuid"] for m in entry["messages"]] == [docs[10]["uuid"]]
    assert big[0].notes
    assert docs[10]["uuid"] in big[0].notes[0]
    assert all(not f.notes for f in sink.files if f is not big[0])
    back = [m for f in sink.files for e in load(f.data)["sessions"] for m in e["messages"]]
    assert_same(back, docs)


def test_several_sessions_and_an_empty_one_share_a_file() -> None:
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    write_session(writer, project_doc(), session_doc(), messages()[:2])
    write_session(writer, project_doc(), session_doc(sessionId="empty", messageCount=0), [])
    write_session(writer, project_doc(), session_doc(sessionId="third"), many_messages(2))
    writer.close()
    [file] = sink.files
    sessions = load(file.data)["sessions"]
    assert [(s["sessionId"], len(s["messages"])) for s in sessions] == [
        ("0bce4261-0add-4645-8d72-888c91496f82", 2), ("empty", 0), ("third", 2)]


def test_empty_sessions_honour_every_split_size_to_the_byte() -> None:
    for split_bytes in range(3_900, 4_400, 2):
        sink = MemorySink()
        writer = JsonWriter(sink, context=CONTEXT, split_bytes=split_bytes)
        for i in range(12):
            write_session(writer, project_doc(), session_doc(summary="s" * (i * 37 % 101)), [])
        writer.close()
        assert max(f.bytes_written for f in sink.files) <= split_bytes
        assert sum(len(load(f.data)["sessions"]) for f in sink.files) == 12


def test_no_file_when_nothing_was_written_and_close_is_idempotent() -> None:
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=1000)
    writer.close()
    writer.close()
    assert sink.files == []


def test_a_session_field_named_like_an_entry_key_is_refused() -> None:
    writer = JsonWriter(MemorySink(), context=CONTEXT, split_bytes=1000)
    with pytest.raises(ValueError, match="messages"):
        writer.begin_session(project_doc(), session_doc(messages=[]))


def test_projects_file_round_trips_and_splits() -> None:
    projects = [project_doc() | {"name": f"p{i}", "path": f"/work/p{i}"} for i in range(40)]
    sink = MemorySink()
    JsonWriter(sink, context=CONTEXT, split_bytes=2_000).write_projects(projects)

    assert len(sink.files) > 1
    assert all(f.path == "projects.json" and f.numbering is Numbering.WHEN_SPLIT
               for f in sink.files)
    assert all(f.closed and f.bytes_written <= 2_000 for f in sink.files)
    back = []
    for file in sink.files:
        document = load(file.data)
        assert document["format"] == "dataport.projects"
        assert file.records == len(document["projects"])
        back.extend(document["projects"])
    assert_same(back, projects)


def test_projects_file_honours_every_split_size_to_the_byte() -> None:
    projects = [project_doc() | {"name": "p" * (i * 37 % 101)} for i in range(30)]
    for split_bytes in range(1_500, 1_600):
        sink = MemorySink()
        JsonWriter(sink, context=CONTEXT, split_bytes=split_bytes).write_projects(projects)
        assert max(f.bytes_written for f in sink.files) <= split_bytes


def test_no_projects_still_gives_a_valid_projects_file() -> None:
    sink = MemorySink()
    JsonWriter(sink, context=CONTEXT, split_bytes=2_000).write_projects([])
    [file] = sink.files
    assert json.loads(file.text)["projects"] == []
