"""Real Claude Code transcripts (tests/imports/transcripts) through the reader and the jsonl
writer: what is stored, every key of every kept line back in its file, and the export read back
to the same documents. tests/e2e/test_transcript_fidelity.py runs the same through the local
stack."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from bson.decimal128 import Decimal128

from dataport.formats.base import ExportWriter
from dataport.formats.csv_format import CsvWriter
from dataport.formats.jsonl import JsonlWriter
from dataport.imports.readers.claude_transcript import MAPPED_KEYS
from dataport.models.documents import (
    COST_COMPUTED_BY,
    TRANSCRIPT_UUID_KEYS,
    agent_id,
    is_compact_summary,
    is_meta,
    transcript_file,
)
from dataport.models.records import ImportRecord, RecordKind
from dataport.pricing import PRICE_SOURCE
from dataport.source.identity import SessionIds, copy_id
from tests.imports.fidelity import (
    FIXTURES,
    ROOT,
    compare,
    fixture_lines,
    kept,
    package_lines,
    upload,
)
from tests.imports.support import kinds, package, read, source_of, zip_bytes
from tests.unit.format_sink import CONTEXT, MemorySink, write_session

#: the sessions of each fixture and the cost computed for each (genai-prices 0.2.5): see the
#: README of the fixtures; the figures are checked by hand in test_pricing.py's way
SESSIONS = {
    "claude-code-log-2.0.46-sidechain": {"88a8d761-7b9a-4bf1-a8ca-c1febe6bf358"},
    "claude-code-log-2.0.5-image": {"9e953218-585f-4692-89df-9e0747a31c68"},
    "claude-code-log-2.1.0-compact": {"s1"},
    "claude-code-log-2.1.173-subagents": {"55550000-0000-4000-8000-000000000001"},
    "claude-code-viewer-1.0.98": {"fe5e1c67-53e7-4862-81ae-d0e013e3270b"},
    "claude-code-viewer-2.0.28-agent-file": {"5c0375b4-57a5-4f26-b12d-d022ee4e51b7"},
    "session-share-2.1.14-thinking": {"4b2030ed-5563-49ea-b703-6a002f2d3cc8"},
}


def export_of(records: list[ImportRecord], split: int = 10**7) -> bytes:
    """The records written as the jsonl export writes them."""
    sink = MemorySink()
    export_sessions(JsonlWriter(sink, context=CONTEXT, split_bytes=split), records)
    return package(sink, "jsonl")


def export_sessions(writer: ExportWriter, records: list[ImportRecord]) -> None:
    """Per session, messages in (timestamp, uuid) order, as the export reads them from
    MongoDB."""
    project: dict[str, Any] = {}
    sessions: list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]] = []
    for record in records:
        if record.kind is RecordKind.PROJECT:
            project = record.doc
        elif record.kind is RecordKind.SESSION:
            sessions.append((project, record.doc, []))
        else:
            sessions[-1][2].append(record.doc)
    for owner, session, docs in sessions:
        docs.sort(key=lambda d: (d["timestamp"], d["uuid"]))
        write_session(writer, owner, session, docs)
    writer.close()


def test_the_fixtures_are_what_the_readme_says() -> None:
    assert set(FIXTURES) == set(SESSIONS)
    readme = (ROOT / "README.md").read_text()
    for fixture in FIXTURES:
        assert fixture in readme, f"{fixture} has no origin and licence in the README"


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_key_of_every_kept_line_comes_back_in_its_file(fixture: str) -> None:
    records, issues = read(upload([fixture]), "claude.zip")
    assert [i for i in issues if i.severity == "error"] == []
    assert {s["sessionId"] for s in kinds(records, RecordKind.SESSION)} == SESSIONS[fixture]
    exported = package_lines(export_of(records))
    fidelity = compare(fixture_lines(fixture), exported)
    assert fidelity.problems == []
    assert fidelity.lines[fixture] == fidelity.found[fixture] > 0
    assert fidelity.share() == 1.0
    # nothing but the fixture's own files: sub-agent files where they were, no file merged
    stored = [line for line in kept(fixture_lines(fixture))
              if line.record.get("type") != "summary"]
    assert set(exported) == {line.path for line in stored}
    # each file's lines in the order Claude Code wrote them, not in time order (1.0.98 has
    # lines of one millisecond, 2.0.46 a sub-agent line written before an earlier one)
    for path, lines in exported.items():
        assert [line.get("uuid") for line in lines if line.get("type") != "summary"] == [
            line.record["uuid"] for line in stored if line.path == path]
        # the thread is unbroken: a parent missing from the exported file was missing from the
        # original too (the fixtures' authors trimmed some), never a line the import skipped
        written = {line.get("uuid") for line in lines}
        everything = {line.record.get("uuid") for line in fixture_lines(fixture)
                      if line.path == path}
        assert {line.get("parentUuid") for line in lines} - written - {None} <= \
            {line.record.get("parentUuid") for line in stored if line.path == path} - everything

    # the export, imported again, gives exactly the documents the first import stored
    again, issues = read(export_of(records), "export.zip")
    assert [i for i in issues if i.severity == "error"] == []
    assert by_uuid(kinds(again, RecordKind.MESSAGE)) == by_uuid(kinds(records, RecordKind.MESSAGE))
    assert kinds(again, RecordKind.SESSION) == kinds(records, RecordKind.SESSION)


def by_uuid(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["uuid"]: d for d in docs}


def test_what_is_stored_of_claude_codes_own_keys() -> None:
    records, _ = read(upload(FIXTURES), "claude.zip")
    messages = {m["uuid"]: m for m in kinds(records, RecordKind.MESSAGE)}
    lines = {line.record["uuid"]: line for fixture in FIXTURES
             for line in fixture_lines(fixture) if "message" in line.record}
    for uuid, line in lines.items():
        stored = messages[uuid]["claudeCode"]
        assert stored["keys"] == list(line.record)
        # every key without a field of its own is kept verbatim; mapped ones are not repeated
        assert {k for k in line.record if k not in MAPPED_KEYS} <= set(stored["fields"])
        for key, value in stored["fields"].items():
            assert line.record[key] == value
    # the flags the markdown and PDF show, read through the accessors
    assert is_meta(messages["5a3fdd4a-ac04-44ec-8323-407fdb4c7c06"])
    assert not is_meta(messages["62e0bdc0-a1e4-4d5c-8509-3b9d0d57cc67"])
    assert messages["83a7cabd-3642-45d6-ba73-9b9f843b9ab1"]["claudeCode"]["fields"]["isMeta"] \
        is None  # a null is kept as a null
    assert is_compact_summary(messages["cs"])
    assert not is_compact_summary(messages["p1u"])
    assert agent_id(messages["showcol1-a1"]) == "showcol1"
    assert agent_id(messages["4899826e-499f-4f24-ae6e-f2ac31cddfd4"]) == "e1c84ba5"
    # sub-agent files: 2.1's folder, 2.0's file beside the session; 2.0.46 kept them inline
    assert transcript_file(messages["showcol2-u1"]) == "subagents/agent-showcol2.jsonl"
    assert transcript_file(messages["agent-uuid-1"]) == "../agent-test-hash-123.jsonl"
    assert transcript_file(messages["b674eedd-0d9d-49e7-8116-1f092cd750ed"]) is None
    assert transcript_file(messages["c4f5cf99-9122-458c-a67c-e97604b9d5ca"]) == \
        "subagents/agent-a2018e5.jsonl"
    # thinking with its signature (2.1.14), kept in messageData and read into `thinking`
    thinker = messages["bf3730c2-9db2-4668-af8c-af279e1884f5"]
    (block,) = thinker["messageData"]["content"]
    assert block["signature"].startswith("EvYCCkYICxgCKkDf")
    assert len(block["signature"]) == 508
    assert thinker["thinking"] == block["thinking"]
    # the SessionStart hook's progress line the first prompt names, kept for the thread
    hook = messages["8b2ea12b-9afc-4adf-bf9c-0180ec7c18aa"]
    assert hook["type"] == "system"
    assert hook["claudeCode"]["fields"]["type"] == "progress"
    assert messages["38047312-d15b-4fac-b57c-436d8b3a0ab6"]["parentUuid"] == hook["uuid"]
    assert messages["b674eedd-0d9d-49e7-8116-1f092cd750ed"]["isSidechain"] is True
    # the summary line of the 1.0.98 session, verbatim, with its leaf
    sessions = {s["sessionId"]: s for s in kinds(records, RecordKind.SESSION)}
    assert sessions["fe5e1c67-53e7-4862-81ae-d0e013e3270b"]["claudeCode"]["summaries"] == [
        fixture_lines("claude-code-viewer-1.0.98")[0].record]


def test_costs_of_the_fixture_sessions() -> None:
    """No fixture line reports a cost: every assistant message is priced from its usage, and
    each session's total is the sum of its replies (a streamed reply once)."""
    records, issues = read(upload(FIXTURES), "claude.zip")
    assert [i for i in issues if i.code == "price_unknown"] == []
    for message in kinds(records, RecordKind.MESSAGE):
        if message["type"] == "assistant":
            assert message[COST_COMPUTED_BY] == PRICE_SOURCE
            assert isinstance(message["costUsd"], Decimal128)
        else:
            assert "costUsd" not in message
            assert COST_COMPUTED_BY not in message
    totals = {s["sessionId"]: s["totalCost"].to_decimal()
              for s in kinds(records, RecordKind.SESSION)}
    # 2.0.46, Sonnet 4.5 ($3 in, $3.75 cache write, $0.30 cache read, $15 out a million):
    # msg_01H4 3 in + 141,272 written + 365 out; msg_017z (two lines, once) 3 + 19,830 + 183;
    # msg_011b 3 in + 2,952 written + 141,272 read + 190 out
    by_hand = (Decimal(3 * 3 + 141272 * Decimal("3.75") + 365 * 15)
               + Decimal(3 * 3 + 19830 * Decimal("3.75") + 183 * 15)
               + Decimal(3 * 3 + 2952 * Decimal("3.75") + 141272 * Decimal("0.3") + 190 * 15)
               ) / 10**6
    assert totals["88a8d761-7b9a-4bf1-a8ca-c1febe6bf358"] == by_hand == Decimal("0.6686811")
    # 2.1.0 compact: five Sonnet 4 replies of 10 in + 5 out
    assert totals["s1"] == 5 * (10 * 3 + 5 * 15) / Decimal(10**6)
    # 2.1.173: eight Haiku 4.5 replies ($1 in, $5 out) of 120 in + 40 out (main and sub-agents)
    assert totals["55550000-0000-4000-8000-000000000001"] == 8 * (120 + 40 * 5) / Decimal(10**6)
    assert totals["5c0375b4-57a5-4f26-b12d-d022ee4e51b7"] == (100 * 3 + 10 * 15) / Decimal(10**6)
    # 1.0.98, Sonnet 4 ($3 in, $3.75 written, $0.30 read, $15 out): msg_0175 (three lines, its
    # last) 3 in + 1,331 written + 14,874 read + 172 out; msg_01US (two) 7 + 235 + 16,205 + 1
    assert totals["fe5e1c67-53e7-4862-81ae-d0e013e3270b"] == (
        Decimal(3 * 3 + 1331 * Decimal("3.75") + 14874 * Decimal("0.3") + 172 * 15)
        + Decimal(7 * 3 + 235 * Decimal("3.75") + 16205 * Decimal("0.3") + 1 * 15)
    ) / 10**6 == Decimal("0.0178212")
    # 2.1.14, Opus 4.5 ($5 in, $6.25 written for 5 minutes, $0.50 read, $25 out): msg_01N1
    # (thinking, then the Task call: two lines, once) 10 in + 5,694 written + 13,539 read + 3
    # out; msg_01Tb (two lines) 8 + 988 + 19,233 + 1; the sub-agent's msg_01Ew 3 + 11,560 + 0
    # + 1 and msg_012z 1 + 1,115 + 11,560 + 7; the kept progress line costs nothing
    assert totals["4b2030ed-5563-49ea-b703-6a002f2d3cc8"] == (
        Decimal(10 * 5 + 5694 * Decimal("6.25") + 13539 * Decimal("0.5") + 3 * 25)
        + Decimal(8 * 5 + 988 * Decimal("6.25") + 19233 * Decimal("0.5") + 1 * 25)
        + Decimal(3 * 5 + 11560 * Decimal("6.25") + 1 * 25)
        + Decimal(1 * 5 + 1115 * Decimal("6.25") + 11560 * Decimal("0.5") + 7 * 25)
    ) / 10**6 == Decimal("0.14355725")


def test_the_csv_export_keeps_the_flags_and_where_a_cost_came_from() -> None:
    records, _ = read(upload(FIXTURES), "claude.zip")
    sink = MemorySink()
    writer = CsvWriter(sink, context=CONTEXT, split_bytes=10**7)
    export_sessions(writer, records)
    again = by_uuid(kinds(read(package(sink, "csv"), "export.zip")[0], RecordKind.MESSAGE))
    assert is_meta(again["5a3fdd4a-ac04-44ec-8323-407fdb4c7c06"])
    assert is_compact_summary(again["cs"])
    assert agent_id(again["showcol2-a2"]) == "showcol2"
    assert again["showcol2-a2"][COST_COMPUTED_BY] == PRICE_SOURCE
    assert again["showcol2-u1"].get(COST_COMPUTED_BY) is None


def test_a_reported_cost_keeps_its_place_and_its_digits() -> None:
    """Claude Code 1.0's lines carry `costUSD` among their keys; it comes back where it was,
    with exactly its digits, and no cost is computed for it."""
    line = ('{"parentUuid":null,"isSidechain":false,"userType":"external","cwd":"/w",'
            '"sessionId":"5e55b000-0000-4000-8000-000000000001","version":"1.0.43",'
            '"message":{"id":"msg_1","type":"message","role":"assistant",'
            '"model":"claude-opus-4-20250514","content":[{"type":"text","text":"ok"}],'
            '"usage":{"input_tokens":4,"output_tokens":7}},"costUSD":0.00062925,'
            '"durationMs":2111,"type":"assistant","uuid":"c-1",'
            '"timestamp":"2025-07-01T10:00:00.000Z"}\n')
    records, _ = read(line.encode(), "5e55b000-0000-4000-8000-000000000001.jsonl")
    (message,) = kinds(records, RecordKind.MESSAGE)
    assert COST_COMPUTED_BY not in message
    assert message["claudeCode"]["keys"].index("costUSD") == 7  # after message, as written
    (back,) = next(iter(package_lines(export_of(records)).values()))
    assert list(back) == message["claudeCode"]["keys"]
    text = export_of(records)
    assert b'"costUSD":0.00062925,' in zipfile_text(text)


def zipfile_text(package_bytes: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(package_bytes)) as archive:
        return b"".join(archive.read(n) for n in archive.namelist() if n.endswith(".jsonl"))


def test_a_file_of_summary_lines_only_is_counted_as_skipped() -> None:
    only = b'{"type":"summary","summary":"Old work","leafUuid":"x-1"}\n' * 2
    data = zip_bytes([("claude/projects/-path-to-Demo/0badc0de-0000-4000-8000-000000000000.jsonl",
                       only),
                      *[(f"claude/projects/{line.path.removeprefix('projects/')}",
                         (ROOT / "claude-code-viewer-1.0.98" / line.path.removeprefix(
                             "projects/")).read_bytes())
                        for line in fixture_lines("claude-code-viewer-1.0.98")[:1]]])
    source = source_of(data, "claude.zip")
    records = list(source.records())
    assert source.skipped == {"summary": 2}
    assert len(kinds(records, RecordKind.SESSION)) == 1


def test_an_exported_copy_is_a_consistent_transcript() -> None:
    """Every fixture stored as another account's copy (derived session id and uuids, as a
    rename or a second account's import stores it) and exported: every id a line names is
    the copy's (sessionId, parentUuid, logicalParentUuid, a summary's leafUuid), none of the
    original's is left."""
    key, owner = b"a deployment's copy-id secret, 64 characters long, never rotated", "0" * 24
    records, _ = read(upload(FIXTURES), "claude.zip")
    originals: set[str] = set()
    copied_records = []
    ids: SessionIds | None = None
    for record in records:
        doc = record.doc
        if record.kind is RecordKind.SESSION:
            ids = SessionIds(key, owner, copy_id(key, owner, doc["sessionId"]), True,
                             frozenset())
            originals.add(doc["sessionId"])
            doc = {**ids.session(doc), "sessionId": ids.stored_session_id}
        elif record.kind is RecordKind.MESSAGE:
            assert ids is not None
            originals.add(doc["uuid"])
            doc = ids.message(doc)
        copied_records.append(ImportRecord(record.kind, doc, record.location))
    exported = package_lines(export_of(copied_records))
    written = {line["uuid"] for lines in exported.values() for line in lines if "uuid" in line}
    # lines the fixtures' authors trimmed away are named by none of the fixture's lines' copies
    trimmed = {copy_id(key, owner, line.record[name]) for fixture in FIXTURES
               for line in kept(fixture_lines(fixture)) for name in TRANSCRIPT_UUID_KEYS[1:]
               if isinstance(line.record.get(name), str) and line.record[name] not in originals}
    assert len(trimmed) == 4  # three parents and the image line's (a single line, 2.0.5)
    named = 0
    for lines in exported.values():
        for line in lines:
            assert line.get("sessionId", "") not in originals
            for key_name in TRANSCRIPT_UUID_KEYS:
                value = line.get(key_name)
                if isinstance(value, str):
                    assert value not in originals, (key_name, value)
                    if key_name != "uuid":
                        named += 1
                        assert value in written or value in trimmed, (key_name, value)
    assert named >= 40  # parents, the compaction's logical parent, the summary's leaf


def test_a_system_message_claudelens_stored_itself_goes_out_and_comes_back() -> None:
    """A `system` message without its line (ClaudeLens' own ingest keeps them, and a CSV may
    carry one): written in Claude Code's usual keys, read back as the same message."""
    session_id = "5e55b000-0000-4000-8000-000000000002"
    records, _ = read(('{"type":"user","uuid":"u-1","parentUuid":null,"isSidechain":false,'
                       '"userType":"external","cwd":"/w","sessionId":"' + session_id + '",'
                       '"version":"2.1.0","timestamp":"2025-07-01T10:00:00.000Z",'
                       '"message":{"role":"user","content":"hi"}}\n').encode(),
                      f"{session_id}.jsonl")
    (user,) = kinds(records, RecordKind.MESSAGE)
    native = {"uuid": "sys-9", "sessionId": session_id, "type": "system",
              "timestamp": user["timestamp"] + timedelta(seconds=1), "parentUuid": "u-1",
              "isSidechain": False, "content": "Conversation compacted", "cwd": "/w"}
    records.append(ImportRecord(RecordKind.MESSAGE, native, records[-1].location))
    (lines,) = package_lines(export_of(records)).values()
    assert lines[-1] == {"parentUuid": "u-1", "isSidechain": False, "userType": "external",
                         "cwd": "/w", "sessionId": session_id, "version": None,
                         "gitBranch": None, "type": "system",
                         "content": "Conversation compacted", "uuid": "sys-9",
                         "timestamp": "2025-07-01T10:00:01.000Z"}
    again, issues = read(export_of(records), "export.zip")
    assert [i for i in issues if i.severity == "error"] == []
    back = by_uuid(kinds(again, RecordKind.MESSAGE))["sys-9"]
    assert {k: back[k] for k in native} == native


def test_the_parts_of_a_split_file_continue_one_anothers_order() -> None:
    """The export splits a large file into numbered parts; imported again, the parts' lines
    keep the places the first import gave them, so the next export orders them the same."""
    records, _ = read(upload(["claude-code-log-2.1.0-compact"]), "claude.zip")
    split = export_of(records, split=1500)
    parts = [name for name in package_lines(split) if "/s1-" in name]
    assert len(parts) > 2  # the session's file in several parts
    again, issues = read(split, "export.zip")
    assert [i for i in issues if i.severity == "error"] == []
    first = {m["uuid"]: m["claudeCode"]["order"] for m in kinds(records, RecordKind.MESSAGE)}
    assert {m["uuid"]: m["claudeCode"]["order"]
            for m in kinds(again, RecordKind.MESSAGE)} == first
    assert sorted(first.values()) == list(range(12))


#: a session whose file has summary lines at its top, between its lines and after its last
SUMMARY_SID = "5a0e0000-0000-4000-8000-00000000beef"


def summary_file() -> list[dict[str, Any]]:
    def user(n: int) -> dict[str, Any]:
        return {"parentUuid": f"su-{n - 1}" if n else None, "isSidechain": False,
                "userType": "external", "cwd": "/w/demo", "sessionId": SUMMARY_SID,
                "version": "1.0.98", "type": "user",
                "message": {"role": "user", "content": f"step {n}"}, "uuid": f"su-{n}",
                "timestamp": f"2025-08-02T04:52:{n:02d}.000Z"}

    def summary(text: str, leaf: str) -> dict[str, Any]:
        return {"type": "summary", "summary": text, "leafUuid": leaf}

    return [summary("Top", "su-0"), user(0), user(1), summary("Middle 🐳", "su-1"),
            summary("Middle again", "su-1"), user(2), user(3), summary("Last", "su-3")]


def test_summary_lines_come_back_at_their_place_in_the_file() -> None:
    lines = summary_file()
    name = f"claude/projects/-w-demo/{SUMMARY_SID}.jsonl"
    data = zip_bytes([(name, b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n"
                                      for line in lines))])
    records, issues = read(data, "claude.zip")
    assert [i for i in issues if i.severity == "error"] == []
    (session,) = kinds(records, RecordKind.SESSION)
    # each summary's place: the number of stored lines before it (the top one at 0)
    assert session["claudeCode"] == {"summaries": [lines[i] for i in (0, 3, 4, 7)],
                                     "summaryOrders": [0, 2, 2, 4]}
    assert session["summary"] == "Last"
    path = f"projects/-w-demo/{SUMMARY_SID}.jsonl"
    assert package_lines(export_of(records))[path] == lines
    # split into parts, every part starts with the top summary; imported again, the parts
    # give back each summary once, at its place
    split = export_of(records, split=700)
    parts = sorted(n for n in package_lines(split) if SUMMARY_SID in n)
    assert len(parts) > 1
    assert all(package_lines(split)[part][0] == lines[0] for part in parts)
    again, issues = read(split, "export.zip")
    assert [i for i in issues if i.severity == "error"] == []
    (back,) = kinds(again, RecordKind.SESSION)
    assert back["claudeCode"] == session["claudeCode"]
    assert package_lines(export_of(again))[path] == lines


def test_summary_lines_at_the_top_only_record_no_places() -> None:
    """A file whose summaries all open it is stored as before places were kept (a session
    imported then compares equal), and comes back the same."""
    lines = [line for line in summary_file() if line.get("summary") != "Middle 🐳"
             and line.get("summary") != "Middle again" and line.get("summary") != "Last"]
    lines.insert(1, {**lines[0], "summary": "Top two"})
    name = f"claude/projects/-w-demo/{SUMMARY_SID}.jsonl"
    data = zip_bytes([(name, b"".join(json.dumps(line).encode() + b"\n" for line in lines))])
    records, _ = read(data, "claude.zip")
    (session,) = kinds(records, RecordKind.SESSION)
    assert session["claudeCode"] == {"summaries": lines[:2]}
    assert package_lines(export_of(records))[f"projects/-w-demo/{SUMMARY_SID}.jsonl"] == lines
