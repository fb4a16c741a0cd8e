"""Lines of skipped types that a stored line's thread runs through (docs/imports.md, "skipped
line types"): Claude Code 2.1 sometimes names a `progress` line as a message's `parentUuid`
(the first prompt after a SessionStart hook, a reply after a hook's progress). Claude Code's
resume walks `parentUuid` from the leaf, so a skipped one would cut the history there; the
import keeps exactly those lines, and the jsonl export gives back an unbroken chain. The real
case is the fixture `session-share-2.1.14-thinking` (test_transcripts.py); here, generated
transcripts of the same shape and its edges."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataport.formats.markdown import MarkdownWriter
from dataport.imports.readers import claude_transcript
from dataport.imports.validate import validate
from dataport.models.documents import claude_code
from dataport.models.imports import IssueCode
from dataport.models.records import RecordKind
from tests.imports.fidelity import package_lines
from tests.imports.support import kinds, read, source_of, zip_bytes
from tests.imports.test_transcripts import by_uuid, export_of, export_sessions
from tests.unit.format_sink import CONTEXT, MemorySink

SID = "7e2ead00-0000-4000-8000-000000000001"
PATH = f"projects/-w-demo/{SID}.jsonl"


def line(kind: str, uuid: str, parent: str | None, second: int, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"parentUuid": parent, "isSidechain": False,
                              "userType": "external", "cwd": "/w/demo", "sessionId": SID,
                              "version": "2.1.14", "gitBranch": "main", "type": kind}
    if kind == "user":
        record["message"] = {"role": "user", "content": f"prompt {uuid}"}
    elif kind == "assistant":
        record["message"] = {"model": "claude-opus-4-5-20251101", "id": f"msg_{uuid}",
                             "type": "message", "role": "assistant",
                             "content": [{"type": "text", "text": f"reply {uuid}"}],
                             "usage": {"input_tokens": 10, "output_tokens": 2}}
    elif kind == "progress":
        record["data"] = {"type": "hook_progress", "hookEvent": "PostToolUse",
                          "hookName": f"PostToolUse:{uuid}", "command": "check.sh"}
        record["toolUseID"] = f"tool-{uuid}"
    record.update(uuid=uuid, timestamp=f"2026-01-21T20:53:{second:02d}.000Z", **extra)
    return record


def transcript() -> list[dict[str, Any]]:
    """A top summary; a SessionStart hook's progress line the first prompt names; a reply
    whose parent is the second of two chained progress lines, with a summary line between
    them; a progress line nobody names; a reply after it naming the reply before."""
    return [
        {"type": "summary", "summary": "Top", "leafUuid": "a-2"},
        line("progress", "p-0", None, 0),
        line("user", "u-1", "p-0", 1),
        line("progress", "p-1", "u-1", 2),
        line("progress", "p-2", "p-1", 3),
        {"type": "summary", "summary": "Between", "leafUuid": "a-1"},
        line("assistant", "a-1", "p-2", 4),
        line("progress", "p-3", "a-1", 5),
        line("user", "u-2", "a-1", 6),
        line("assistant", "a-2", "u-2", 7),
    ]


def upload_of(lines: list[dict[str, Any]]) -> bytes:
    return zip_bytes([(f"claude/{PATH}", b"".join(json.dumps(r).encode() + b"\n"
                                                  for r in lines))])


def test_the_progress_lines_a_thread_runs_through_are_kept_and_come_back() -> None:
    lines = transcript()
    data = upload_of(lines)
    source = source_of(data, "claude.zip")
    records = list(source.records())
    assert source.kept == {"progress": 3}
    assert source.skipped == {"progress": 1}  # p-3: named by nothing
    messages = by_uuid(kinds(records, RecordKind.MESSAGE))
    assert [m["uuid"] for m in kinds(records, RecordKind.MESSAGE)] == [
        "p-0", "u-1", "p-1", "p-2", "a-1", "u-2", "a-2"]
    kept = messages["p-1"]
    # a system message (what validation and ClaudeLens know) keeping its line verbatim
    assert kept["type"] == "system"
    assert kept["parentUuid"] == "u-1"
    assert kept["content"] == "progress · hook_progress · PostToolUse:p-1"
    assert claude_code(kept)["fields"] == {"type": "progress", "data": lines[3]["data"],
                                           "toolUseID": "tool-p-1"}
    assert "costUsd" not in kept
    assert [claude_code(messages[u])["order"] for u in ("p-0", "u-1", "p-1", "p-2", "a-1")] \
        == [0, 1, 2, 3, 4]
    (session,) = kinds(records, RecordKind.SESSION)
    assert session["messageCount"] == 7
    assert session["startedAt"] == messages["p-0"]["timestamp"]  # the hook's line opens it
    # the summary between the two progress lines and the reply keeps its place
    assert session["claudeCode"]["summaryOrders"] == [0, 4]

    exported = package_lines(export_of(records))
    assert exported[PATH] == [r for r in lines if r.get("uuid") != "p-3"]
    uuids = {r["uuid"] for r in exported[PATH] if "uuid" in r}
    assert all(r["parentUuid"] in uuids | {None} for r in exported[PATH] if "uuid" in r)

    # imported again: the same documents (the progress lines named again, kept again)
    again, issues = read(export_of(records), "export.zip")
    assert [i for i in issues if i.severity == "error"] == []
    assert by_uuid(kinds(again, RecordKind.MESSAGE)) == messages


def test_the_report_counts_the_kept_lines_apart_from_the_skipped() -> None:
    report = validate(source_of(upload_of(transcript()), "claude.zip"))
    assert report.errors == []
    assert report.counts.messages == 7
    assert report.counts.unknown_records == 1
    (skipped,) = [w for w in report.warnings if w.code == IssueCode.SKIPPED_RECORDS]
    assert skipped.message == ("1 records of types dataport does not import were skipped "
                               "(1 progress); kept as messages because a message's thread runs "
                               "through them: 3 progress")
    # nothing dangles: no orphan warning for the prompt after the hook
    assert [w for w in report.warnings if w.code != IssueCode.SKIPPED_RECORDS] == []


def test_markdown_folds_a_kept_progress_line_as_claude_codes() -> None:
    records = list(source_of(upload_of(transcript()), "claude.zip").records())
    sink = MemorySink()
    export_sessions(MarkdownWriter(sink, context=CONTEXT, split_bytes=10**7), records)
    text = "\n".join(file.text for file in sink.files)
    assert text.count("<details><summary>Claude Code progress line (hook progress), kept "
                      "because the conversation's thread runs through it, not part of the "
                      "conversation</summary>") == 3
    assert "PostToolUse:p-3" not in text


def test_a_line_that_cannot_be_a_message_stays_skipped() -> None:
    """A progress line without a session or time cannot be stored: the link to it stays
    dangling, as before, and it is counted as skipped."""
    lines = transcript()
    del lines[1]["sessionId"]
    source = source_of(upload_of(lines), "claude.zip")
    records = list(source.records())
    assert "p-0" not in by_uuid(kinds(records, RecordKind.MESSAGE))
    assert source.skipped == {"progress": 2}
    assert source.kept == {"progress": 2}


def test_the_first_pass_remembers_a_bounded_number_of_skipped_lines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded: a skipped line further back than REMEMBERED_SKIPPED skipped lines
    before the line that names it is not kept (the link dangles, as before)."""
    lines = transcript()
    # [top, p-0, far, u-1 -> far, n-0, n-1, n-2, p-1, p-2, ...]: within 2 skipped lines of
    # the lines naming them, far and the chain p-2 -> p-1 are found; p-0 is named by nothing
    lines[3:3] = [line("progress", f"n-{i}", "u-1", 2) for i in range(3)]
    lines.insert(2, line("progress", "far", None, 0))
    lines[3]["parentUuid"] = "far"
    monkeypatch.setattr(claude_transcript, "REMEMBERED_SKIPPED", 2)
    source = source_of(upload_of(lines), "claude.zip")
    stored = by_uuid(kinds(list(source.records()), RecordKind.MESSAGE))
    assert {"far", "p-1", "p-2"} <= set(stored)
    assert "p-0" not in stored
    # remembering one: u-1 names p-0, two skipped lines back; a-1 reaches p-2, not p-1 behind it
    monkeypatch.setattr(claude_transcript, "REMEMBERED_SKIPPED", 1)
    lines[3]["parentUuid"] = "p-0"
    source = source_of(upload_of(lines), "claude.zip")
    stored = by_uuid(kinds(list(source.records()), RecordKind.MESSAGE))
    assert "p-2" in stored
    assert not {"p-0", "far", "p-1"} & set(stored)
    assert source.kept == {"progress": 1}
