"""CSV: RFC 4180 files that open on their own, exact decimals, no formula injection."""

from __future__ import annotations

import csv
import io
from typing import Any

from dataport.formats.csv_format import MESSAGE_COLUMNS, SESSION_COLUMNS, CsvWriter, text_cell
from tests.unit.format_sink import (
    CONTEXT,
    SESSION_ID,
    MemoryFile,
    MemorySink,
    many_messages,
    messages,
    project_doc,
    session_doc,
    write_session,
)

BOM = b"\xef\xbb\xbf"


def rows(file: MemoryFile) -> list[dict[str, str]]:
    assert file.data.startswith(BOM)
    text = bytes(file.data[len(BOM):]).decode("utf-8")
    assert "\ufeff" not in text
    return list(csv.DictReader(io.StringIO(text, newline=""), strict=True))


def export(docs: list[dict[str, Any]], split_bytes: int = 10_000_000,
           session: dict[str, Any] | None = None) -> MemorySink:
    sink = MemorySink()
    writer = CsvWriter(sink, context=CONTEXT, split_bytes=split_bytes)
    write_session(writer, project_doc(), session or session_doc(), docs)
    writer.close()
    return sink


def test_sessions_and_messages_files_with_bom_header_and_crlf() -> None:
    docs = messages()
    sink = export(docs)
    [sessions] = sink.at("sessions.csv")
    [messages_file] = sink.at("messages.csv")
    assert sessions.closed
    assert messages_file.closed
    for file, columns in ((sessions, SESSION_COLUMNS), (messages_file, MESSAGE_COLUMNS)):
        header = bytes(file.data[3:]).split(b"\r\n", 1)[0].decode()
        assert header == ",".join(columns)
        assert file.data.endswith(b"\r\n")
    assert sessions.records == 1
    assert messages_file.records == len(docs)

    [session] = rows(sessions)
    assert session == {
        "sessionId": SESSION_ID, "projectName": "claudelens",
        "projectPath": "/Users/alex/github/claudelens",
        "summary": "Audit unused docker-compose env vars — 環境変数 🐳",
        "startedAt": "2025-08-02T04:52:07.349Z", "endedAt": "2025-08-02T05:40:12.003Z",
        "messageCount": "9", "inputTokens": "1821004", "outputTokens": "22206",
        "totalTokens": "1843210", "toolsUsed": "2", "totalCost": "2.4187355"}


def test_message_rows_carry_usage_exact_costs_tools_and_content() -> None:
    docs = messages()
    found = {r["uuid"]: r for r in rows(export(docs).at("messages.csv")[0])}
    reply = found["99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca"]
    assert reply | {"content": ""} == {
        "sessionId": SESSION_ID, "uuid": "99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca",
        "parentUuid": "15e15459-c55e-4c93-8a2e-d95794c41d63",
        "timestamp": "2025-08-02T04:52:12.880Z", "type": "assistant", "isSidechain": "false",
        "model": "claude-opus-4-1-20250805", "inputTokens": "4", "outputTokens": "96",
        "cacheCreationInputTokens": "1520", "cacheReadInputTokens": "13912",
        "costUsd": "0.056628", "toolName": "Read", "content": "",
        # a reported cost, and a message ClaudeLens ingested (no Claude Code line kept)
        "costComputedBy": "", "isMeta": "", "isCompactSummary": "", "agentId": ""}
    assert reply["content"] == docs[1]["content"]  # newlines and backticks survive quoting
    assert found["7a0d2b64-3f59-4b3e-9d2a-4c1d6e8f9a0b"]["costUsd"] == "0.0000001"
    assert found["99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca_tool_0"]["toolName"] == "Read"
    # a result names the tool it answers, learnt from the call
    assert found["4e1c7f7a-5d3c-4a44-9d8e-1e2f3a4b5c6d_result_0"]["toolName"] == "Read"
    assert found["c3d4e5f6-0000-4000-8000-000000000001"]["toolName"] == "Bash"
    assert found["15e15459-c55e-4c93-8a2e-d95794c41d63"]["parentUuid"] == ""


def test_formula_injection_is_neutralised_in_text_but_numbers_stay_numbers() -> None:
    found = {r["uuid"]: r for r in rows(export(messages()).at("messages.csv")[0])}
    assert found["15e15459-c55e-4c93-8a2e-d95794c41d63"]["content"].startswith(
        "'=HYPERLINK(")
    assert found["c3d4e5f6-0000-4000-8000-000000000001"]["content"] == "'@mention\tand a result"
    sidechain = found["5b6c7d8e-1111-4222-8333-944455556666"]
    assert sidechain["content"] == "'-2+3 is what the sub-agent says"
    assert sidechain["costUsd"] == "-0.5", "a number we produce is not text to neutralise"
    assert sidechain["isSidechain"] == "true"
    for start in "=+-@\t\r":
        assert text_cell(start + "x") == "'" + start + "x"
    assert text_cell("plain") == "plain"
    assert text_cell(None) == ""


def test_both_files_are_open_at_once_and_close_closes_both() -> None:
    sink = MemorySink()
    writer = CsvWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    writer.begin_session(project_doc(), session_doc())
    writer.write_message(messages()[0])
    assert {f.path for f in sink.open_files()} == {"sessions.csv", "messages.csv"}
    writer.end_session()
    writer.close()
    assert sink.open_files() == []


def test_split_parts_each_have_bom_and_header_and_stay_under_the_limit() -> None:
    docs = many_messages(100)
    split = 2_500
    sink = MemorySink()
    writer = CsvWriter(sink, context=CONTEXT, split_bytes=split)
    for i in range(30):
        write_session(writer, project_doc(), session_doc(sessionId=f"s{i}"),
                      docs[i * 3:(i + 1) * 3])
    writer.close()
    parts = sink.at("messages.csv")
    assert len(parts) > 2
    assert len(sink.at("sessions.csv")) > 1
    back: list[str] = []
    for file in sink.files:
        assert file.closed
        assert file.bytes_written <= split
        assert not file.notes
        part = rows(file)  # BOM and header row checked for every part
        assert file.records == len(part)
        if file.path == "messages.csv":
            back.extend(r["uuid"] for r in part)
    assert back == [d["uuid"] for d in docs[:90]]


def test_an_oversized_row_gets_a_file_of_its_own_with_a_note() -> None:
    docs = many_messages(10)
    docs[4]["content"] = "y" * 10_000
    split = 2_000
    sink = export(docs, split_bytes=split)
    big = [f for f in sink.at("messages.csv") if f.bytes_written > split]
    assert len(big) == 1
    assert big[0].notes
    assert big[0].records == 1
    assert rows(big[0])[0]["uuid"] == docs[4]["uuid"]


def test_claude_codes_flags_and_computed_costs_have_columns() -> None:
    flagged = {**messages()[1], "costComputedBy": "genai-prices 0.2.5",
               "claudeCode": {"keys": [], "fields": {"isMeta": True, "isCompactSummary": False,
                                                     "agentId": "a2898e3"}}}
    (row,) = rows(export([flagged]).at("messages.csv")[0])
    assert (row["costComputedBy"], row["isMeta"], row["isCompactSummary"], row["agentId"]) == (
        "genai-prices 0.2.5", "true", "false", "a2898e3")
