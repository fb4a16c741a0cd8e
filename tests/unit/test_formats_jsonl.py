"""Claude-native JSONL: Claude Code's layout and line shape, derived tool documents folded back."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128

from dataport.formats import jsonl
from dataport.formats.base import Numbering
from dataport.formats.jsonl import JsonlWriter, project_dir
from tests.unit.format_sink import (
    CONTEXT,
    SESSION_ID,
    MemorySink,
    at,
    many_messages,
    messages,
    project_doc,
    session_doc,
    snapshot,
    write_session,
)

PATH = f"projects/-Users-alex-github-claudelens/{SESSION_ID}.jsonl"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CORE_KEYS = ["parentUuid", "isSidechain", "userType", "cwd", "sessionId", "version", "gitBranch",
             "type", "message"]


def export(docs: list[dict[str, Any]], split_bytes: int = 10_000_000,
           session: dict[str, Any] | None = None) -> MemorySink:
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=split_bytes)
    write_session(writer, project_doc(), session or session_doc(), docs)
    writer.close()
    return sink


def lines(sink: MemorySink) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for file in sink.files:
        assert file.text.endswith("\n")
        out.extend(json.loads(line, parse_float=Decimal) for line in file.text.splitlines())
    return out


def by_uuid(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["uuid"]: r for r in records if r["type"] != "summary"}


def test_project_dir_is_the_folder_claude_code_names_for_the_path() -> None:
    """Every character but an ASCII letter or digit becomes `-`, as Claude Code names the
    folder it resumes sessions from (a `.`, `_` or space kept would be a folder it never
    reads)."""
    assert project_dir("/Users/alex/github/claudelens") == "-Users-alex-github-claudelens"
    assert project_dir("/Users/dain/workspace/danieldemmel.me-next") == (
        "-Users-dain-workspace-danieldemmel-me-next")
    assert project_dir("/home/joe/.claude") == "-home-joe--claude"
    assert project_dir("/opt/Agent_risshq pm/été") == "-opt-Agent-risshq-pm--t-"
    assert project_dir("C:\\work\\x/../y") == "C--work-x----y"
    assert project_dir("..") == "--"
    assert project_dir("") == "-"


def test_layout_summary_first_and_claude_code_line_shape() -> None:
    sink = export(messages())
    [file] = sink.files
    assert file.path == PATH
    assert file.numbering is Numbering.WHEN_SPLIT
    assert file.closed
    records = lines(sink)
    assert records[0] == {"type": "summary", "summary": session_doc()["summary"],
                          "leafUuid": None}
    for record in records[1:]:
        assert list(record)[:9] == CORE_KEYS
        assert ISO_MS.match(record["timestamp"]), record["timestamp"]
        assert record["sessionId"] == SESSION_ID
        assert record["userType"] == "external"
        assert record["type"] in {"user", "assistant"}
    assert file.records == len(records) - 1  # the summary line is not a record
    first = records[1]
    assert first["timestamp"] == "2025-08-02T04:52:07.349Z"
    assert first["message"] == {"role": "user", "content": messages()[0]["content"]}


def test_optional_fields_and_exact_cost() -> None:
    docs = messages()
    docs[-1]["costUsd"] = Decimal128("1234567890.123456789012345678")
    records = by_uuid(lines(export(docs)))
    assert records[docs[-1]["uuid"]]["costUSD"] == Decimal("1234567890.123456789012345678")
    reply = records["99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca"]
    assert reply["requestId"] == "req_011CRh"
    assert reply["durationMs"] == 5120
    assert reply["costUSD"] == Decimal("0.056628")
    assert records["7a0d2b64-3f59-4b3e-9d2a-4c1d6e8f9a0b"]["costUSD"] == Decimal("0.0000001")
    assert list(reply).index("requestId") == list(reply).index("message") + 1
    assert reply["message"]["model"] == "claude-opus-4-1-20250805"


def test_derived_documents_are_folded_not_lines_of_their_own() -> None:
    docs = messages()
    before = snapshot(docs)
    records = lines(export(docs))
    assert docs == before, "the source documents are not changed"
    uuids = [r["uuid"] for r in records if r["type"] != "summary"]
    assert not [u for u in uuids if "_tool_" in u or "_result_" in u]
    assert len(uuids) == len(set(uuids))
    found = by_uuid(records)

    # tool_use blocks: already in the assistant message, kept once
    reply = found["99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca"]
    assert [b["type"] for b in reply["message"]["content"]] == ["thinking", "text", "tool_use"]

    # the tool-result-only user message, which ClaudeLens did not store, is rebuilt
    rebuilt = found["4e1c7f7a-5d3c-4a44-9d8e-1e2f3a4b5c6d"]
    assert rebuilt["type"] == "user"
    assert rebuilt["isSidechain"] is False
    assert rebuilt["parentUuid"] == "99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca"
    assert rebuilt["message"] == {"role": "user", "content": [docs[3]["messageData"]]}
    assert rebuilt["toolUseResult"] == {"type": "text", "file": {"numLines": 4}}
    assert rebuilt["timestamp"] == "2025-08-02T04:52:13.351Z"

    # a result already in its stored user message is not added twice
    user = found["c3d4e5f6-0000-4000-8000-000000000001"]
    assert [b["type"] for b in user["message"]["content"]] == ["tool_result", "text"]

    # the thread reads as Claude Code wrote it
    assert [r["uuid"][:8] for r in records[1:]] == [
        "15e15459", "99cc3e0e", "4e1c7f7a", "7a0d2b64", "c3d4e5f6", "5b6c7d8e"]
    assert found["5b6c7d8e-1111-4222-8333-944455556666"]["isSidechain"] is True


def test_a_derived_document_before_its_message_is_folded_too() -> None:
    docs = messages()
    docs[1], docs[2] = docs[2], docs[1]  # tool doc first, same timestamp
    records = lines(export(docs))
    uuids = [r["uuid"] for r in records[1:]]
    assert len(uuids) == len(set(uuids)) == 6
    reply = by_uuid(records)["99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca"]
    assert reply["message"]["content"][-1]["id"] == "toolu_01Ab"
    assert sum(b.get("type") == "tool_use" for b in reply["message"]["content"]) == 1
    assert reply["requestId"] == "req_011CRh", "the message's own fields win"
    assert reply["parentUuid"] == "15e15459-c55e-4c93-8a2e-d95794c41d63"


def test_a_missing_block_is_added_to_its_message() -> None:
    docs = messages()
    docs[1]["messageData"] = {**docs[1]["messageData"],
                              "content": docs[1]["messageData"]["content"][:2]}
    reply = by_uuid(lines(export(docs)))["99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca"]
    assert reply["message"]["content"][-1] == docs[2]["messageData"]


def test_a_late_derived_document_is_dropped_or_kept_on_its_own_line_never_lost() -> None:
    docs = many_messages(jsonl.LOOK_BEHIND_RECORDS + 10)
    origin = docs[0]["uuid"]
    late_known = {"uuid": f"{origin}_tool_0", "type": "tool_use", "timestamp": at(70),
                  "parentUuid": origin, "isSidechain": True, "sessionId": SESSION_ID,
                  "messageData": {"type": "tool_use", "id": "toolu_x", "name": "Grep",
                                  "input": {"pattern": "x"}}}
    docs[0]["messageData"] = {"role": "assistant", "content": [late_known["messageData"]]}
    late_new = late_known | {"uuid": f"{origin}_tool_1",
                             "messageData": {"type": "tool_use", "id": "toolu_y",
                                             "name": "Bash", "input": {}}}
    records = lines(export([*docs, late_known, late_new]))
    found = by_uuid(records)
    assert f"{origin}_tool_0" not in found
    alone = found[f"{origin}_tool_1"]
    assert alone["type"] == "assistant"
    assert alone["parentUuid"] == origin
    assert alone["message"]["content"] == [late_new["messageData"]]
    assert len(found) == len(docs) + 1


def test_the_look_behind_is_bounded_and_lines_are_written_as_the_stream_moves_on() -> None:
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    writer.begin_session(project_doc(), session_doc())
    docs = many_messages(500, repeat=1)
    for doc in docs:
        writer.write_message(doc)
        assert len(writer._pending) <= jsonl.LOOK_BEHIND_RECORDS
    assert sink.files[0].records >= 500 - jsonl.LOOK_BEHIND_RECORDS
    writer.end_session()
    assert sink.files[0].records == 500


def test_many_same_time_messages_are_bounded_by_count() -> None:
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    writer.begin_session(project_doc(), session_doc())
    for doc in many_messages(300, repeat=1):
        writer.write_message(doc | {"timestamp": at(0)})
        assert len(writer._pending) <= jsonl.LOOK_BEHIND_RECORDS
    writer.close()
    assert sink.files[0].records == 300
    assert sink.files[0].closed


def test_split_repeats_the_summary_and_keeps_every_line() -> None:
    docs = many_messages(80)
    split = 3_000
    sink = export(docs, split_bytes=split)
    assert len(sink.files) > 2
    assert {f.path for f in sink.files} == {PATH}
    assert all(f.closed and f.bytes_written <= split and not f.notes for f in sink.files)
    for file in sink.files:
        assert json.loads(file.text.splitlines()[0])["type"] == "summary"
    records = [r for r in lines(sink) if r["type"] != "summary"]
    assert [r["uuid"] for r in records] == [d["uuid"] for d in docs]


def test_an_oversized_line_is_alone_with_a_note() -> None:
    docs = many_messages(20)
    docs[5]["messageData"] = {"role": "user", "content": "x" * 20_000}
    split = 3_000
    sink = export(docs, split_bytes=split, session=session_doc(summary=None))
    big = [f for f in sink.files if f.bytes_written > split]
    assert len(big) == 1
    assert big[0].notes
    assert big[0].records == 1
    assert json.loads(big[0].text)["uuid"] == docs[5]["uuid"]


def test_an_empty_session_writes_no_file() -> None:
    assert export([]).files == []
