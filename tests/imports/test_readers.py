"""Each reader on good input: what it maps, in which order, with which types."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
import zlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pyzipper
from bson import ObjectId
from bson.decimal128 import Decimal128

from dataport.formats.csv_format import CsvWriter
from dataport.formats.json_format import JsonWriter
from dataport.formats.jsonl import JsonlWriter
from dataport.imports.limits import BadInput, ImportLimits, iter_lines
from dataport.imports.readers.claude_transcript import project_folder, resolve_project
from dataport.imports.validate import SeenSet, validate
from dataport.imports.zipsafe import SafeZip
from dataport.models.imports import (
    MAX_LISTED_ISSUES,
    ImportOptions,
    IssueCode,
    SourceFormat,
)
from dataport.models.records import RecordKind
from dataport.packaging.zipformat import (
    STORED,
    ZipEntry,
    central_directory_header,
    end_of_central_directory,
    local_file_header,
)
from dataport.source.content_hash import content_hash
from tests.imports.support import (
    check_order,
    kinds,
    package,
    read,
    source_of,
    zip_bytes,
)
from tests.unit.format_sink import (
    CONTEXT,
    SESSION_ID,
    MemorySink,
    assert_same,
    many_messages,
    messages,
    project_doc,
    session_doc,
    write_session,
)

# --- dataport JSON ----------------------------------------------------------------------------


def json_export(split_bytes: int = 10_000_000) -> tuple[MemorySink, list[dict[str, Any]]]:
    """Two sessions of one project, the first split over several files when split_bytes is
    small, plus projects.json with a project that has no session."""
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=split_bytes)
    other = project_doc() | {"_id": ObjectId("66ad9c1e5f2b4a0012c0beef"), "name": "empty",
                             "path": "/Users/alex/empty"}
    writer.write_projects([project_doc(), other])
    first = messages()
    second = many_messages(30)
    second_id = "1b2c3d4e-0000-4000-8000-00000000beef"
    for doc in second:
        doc["sessionId"] = second_id
        doc["uuid"] = doc["uuid"].replace("00000000-", "1b2c3d4e-")
        if doc["parentUuid"]:
            doc["parentUuid"] = doc["parentUuid"].replace("00000000-", "1b2c3d4e-")
    write_session(writer, project_doc(), session_doc(), first)
    write_session(writer, project_doc(), session_doc(sessionId=second_id,
                                                     _id=ObjectId("66ad9c1e5f2b4a0012c0f00e")),
                  second)
    writer.close()
    return sink, first + second


def test_json_package_gives_back_every_document_exactly() -> None:
    sink, docs = json_export(split_bytes=3_000)
    conversation_files = [f for f in sink.files if f.path == "conversations.json"]
    assert len(conversation_files) > 3, "the sessions continue over several files"
    source = source_of(package(sink, "json"), "export.zip")
    assert source.format is SourceFormat.DATAPORT_JSON
    assert source.version == "1.0"
    issues: list[Any] = []
    records = list(source.records(on_issue=issues.append))
    assert [i for i in issues if i.severity == "error"] == []
    check_order(records)
    projects = kinds(records, RecordKind.PROJECT)
    assert projects[0] == project_doc()
    assert projects[1]["name"] == "empty"
    sessions = kinds(records, RecordKind.SESSION)
    assert {s["sessionId"] for s in sessions} == {SESSION_ID,
                                                  "1b2c3d4e-0000-4000-8000-00000000beef"}
    assert len(sessions) > 2, "a continued session is yielded again in every file"
    for session in sessions:
        if session["sessionId"] == SESSION_ID:
            assert_same(session, session_doc())
    got = kinds(records, RecordKind.MESSAGE)
    assert len(got) == len(docs)
    for actual, doc in zip(got, docs, strict=True):
        expected = dict(doc)
        if "contentHash" not in expected and "_tool_" not in expected["uuid"] and (
                "_result_" not in expected["uuid"]):
            expected["contentHash"] = content_hash(expected["uuid"], expected["type"],
                                                   expected["timestamp"], expected["content"])
        assert_same(actual, expected)


def test_a_bare_conversations_file_and_locations() -> None:
    sink, _ = json_export()
    [file] = [f for f in sink.files if f.path == "conversations.json"]
    source = source_of(bytes(file.data), "conversations-0001.json")
    assert (source.format, source.version) == (SourceFormat.DATAPORT_JSON, "1")
    records = list(source.records())
    assert records[0].kind is RecordKind.PROJECT
    assert str(records[0].location) == "conversations-0001.json $.sessions[0].project"
    assert str(records[1].location) == "conversations-0001.json $.sessions[0]"
    assert str(records[4].location) == "conversations-0001.json $.sessions[0].messages[2]"
    assert isinstance(records[2].doc["timestamp"], datetime)
    assert records[2].doc["timestamp"].tzinfo is UTC
    assert isinstance(records[3].doc["costUsd"], Decimal128)


def test_a_bad_record_is_reported_and_the_reading_goes_on() -> None:
    data = (b'{"format": "dataport.conversations", "version": 1, "sessions": [\n'
            b'{"sessionId": "s-1", "project": {"name": "p", "path": "/p"}, "messages": [\n'
            b'{"uuid": "a", "sessionId": "s-1", "type": "user",'
            b' "timestamp": {"$date": "nope"}},\n'
            b'{"uuid": "b", "sessionId": "s-1", "type": "user", "costUsd": 0.25,'
            b' "timestamp": "2025-08-02T04:52:07.349Z", "content": "x", "x_ratio": 0.5},\n'
            b'[1, 2]]}]}')
    records, issues = read(data, "conversations-0001.json")
    assert [i.code for i in issues] == ["invalid_date", "invalid_record"]
    [message] = kinds(records, RecordKind.MESSAGE)
    assert message["costUsd"] == Decimal128("0.25"), "a plain JSON number stays exact money"
    assert type(message["x_ratio"]) is float, "other plain numbers are what JSON readers give"
    assert message["timestamp"] == datetime(2025, 8, 2, 4, 52, 7, 349000, tzinfo=UTC)
    with pytest.raises(BadInput) as raised:  # the write pass is strict
        list(source_of(data, "conversations-0001.json").records())
    assert raised.value.issue.code == "invalid_date"


# --- Claude Code transcripts ------------------------------------------------------------------

SID = "5d1a7e92-4c1b-4bb1-9a59-1f4f5c1e2d3a"
AGENT_SID = "7e8f9a0b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
CWD = "/Users/alex/github/claudelens/src"
USAGE_1 = {"input_tokens": 4, "cache_creation_input_tokens": 1520,
           "cache_read_input_tokens": 13912, "output_tokens": 12, "service_tier": "standard"}
USAGE_2 = USAGE_1 | {"output_tokens": 96}


def line(kind: str, uuid: str, parent: str | None, second: float, message: Any,
         **fields: Any) -> dict[str, Any]:
    record = {"parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": CWD,
              "sessionId": SID, "version": "1.0.83", "gitBranch": "fix/ユニコード",
              "type": kind, "message": message, "uuid": uuid,
              "timestamp": f"2025-08-02T04:52:{second:06.3f}Z"}
    record.update(fields)
    return record


def assistant(message_id: str, content: list[dict[str, Any]], usage: dict[str, Any],
              ) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "role": "assistant",
            "model": "claude-opus-4-1-20250805", "content": content, "stop_reason": None,
            "usage": usage}


COST = 0.05662812345678901  # json.dumps writes repr(): the reader keeps exactly these digits
READ = {"type": "tool_use", "id": "toolu_01Ab", "name": "Read",
        "input": {"file_path": "/Users/alex/github/claudelens/docker-compose.yml", "limit": 2.5}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_01Ab",
          "content": "services:\n  api: {}\n", "is_error": False}


def session_lines() -> list[dict[str, Any]]:
    return [
        {"type": "summary", "summary": "Old summary", "leafUuid": "x"},
        {"type": "summary", "summary": "Audit docker-compose env vars 🐳", "leafUuid": "u-6"},
        {"type": "file-history-snapshot", "messageId": "u-1", "isSnapshotUpdate": False,
         "snapshot": {"messageId": "u-1", "trackedFileBackups": {}}},
        line("user", "u-1", None, 1, {"role": "user", "content": "Which env vars are unused?"},
             isMeta=False, thinkingMetadata={"level": "high"}),
        # one reply streamed over three lines: same message.id and requestId, usage repeated
        line("assistant", "a-1", "u-1", 2, assistant(
            "msg_A", [{"type": "thinking", "thinking": "grep them", "signature": "s"}],
            USAGE_1), requestId="req_1"),
        line("assistant", "a-2", "a-1", 2.5, assistant(
            "msg_A", [{"type": "text", "text": "I'll read docker-compose.yml."}], USAGE_1),
            requestId="req_1"),
        line("assistant", "a-3", "a-2", 3, assistant("msg_A", [READ], USAGE_2),
             requestId="req_1", costUSD=COST),
        line("user", "u-2", "a-3", 4, {"role": "user", "content": [RESULT]},
             toolUseResult={"type": "text", "file": {"numLines": 2}}),
        {"type": "system", "subtype": "compact_boundary", "content": "Conversation compacted",
         "uuid": "sys-1", "timestamp": "2025-08-02T04:52:05.000Z", "sessionId": SID},
        {"type": "system", "subtype": "api_error", "level": "error", "sessionId": SID},
        {"type": "queue-operation", "operation": "enqueue", "sessionId": SID},
        line("assistant", "a-4", "u-2", 6, assistant(
            "msg_B", [{"type": "text", "text": "POSTGRES_URL is unused."}],
            {"input_tokens": 10, "output_tokens": 20}), durationMs=5120),
    ]


def agent_lines() -> list[dict[str, Any]]:
    return [line("user", "g-1", None, 7, {"role": "user", "content": "Find the cause"},
                 sessionId=AGENT_SID, isSidechain=True),
            line("assistant", "g-2", "g-1", 8, assistant(
                "msg_C", [{"type": "text", "text": "CI runs in UTC."}],
                {"input_tokens": 1, "output_tokens": 2}), sessionId=AGENT_SID,
                isSidechain=True)]


def as_jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def tree_zip() -> bytes:
    root = "claude/projects"
    no_cwd = [{k: v for k, v in r.items() if k != "cwd"} | {"sessionId": "9" * 8}
              for r in agent_lines()]
    for record in no_cwd:
        record["uuid"] = "n" + record["uuid"]
        record["parentUuid"] = record["parentUuid"] and "n" + record["parentUuid"]
    return zip_bytes([
        (f"{root}/-Users-alex-github-claudelens/{SID}.jsonl", as_jsonl(session_lines())),
        (f"{root}/-Users-alex-github-claudelens/{SID}/subagents/agent-1.jsonl",
         as_jsonl(agent_lines())),
        (f"{root}/-home-mira-data-board/{'9' * 8}.jsonl", as_jsonl(no_cwd)),
        (f"{root}/.DS_Store", b"\0\0"),
        ("__MACOSX/claude/projects/._x.jsonl", b"\0\x05\x16\x07"),
        ("README.txt", b"my backup"),
    ])


def test_a_claude_projects_tree() -> None:
    source = source_of(tree_zip(), "claude-backup.zip")
    assert source.format is SourceFormat.CLAUDE_TRANSCRIPT
    issues: list[Any] = []
    records = list(source.records(on_issue=issues.append))
    assert source.version == "1.0.83"
    assert {i.code for i in issues} == {"ignored_entry", "project_path_guessed"}
    assert [i.file for i in issues if i.code == "ignored_entry"] == ["README.txt"]
    # a system line is stored (sys-1); one that names no uuid cannot be, and is counted
    assert source.skipped == {"file-history-snapshot": 1, "system": 1, "queue-operation": 1}
    check_order(records)

    projects = kinds(records, RecordKind.PROJECT)
    assert projects == [
        {"name": "claudelens", "path": "/Users/alex/github/claudelens"},  # cwd was .../src
        {"name": "board", "path": "/home/mira/data/board"},  # guessed from the folder alone
    ]
    sessions = {s["sessionId"]: s for s in kinds(records, RecordKind.SESSION)}
    main = sessions[SID]
    # msg_A is counted once (its last line's usage and reported cost), msg_B once (its cost
    # computed: 10 input and 20 output tokens of Opus 4.1 at $15 and $75 a million); derived
    # documents and the system line count
    assert main == {
        "sessionId": SID,
        "startedAt": datetime(2025, 8, 2, 4, 52, 1, tzinfo=UTC),
        "endedAt": datetime(2025, 8, 2, 4, 52, 6, tzinfo=UTC),
        "messageCount": 9,
        "totalCost": Decimal128(Decimal(repr(COST)) + Decimal("0.00015") + Decimal("0.0015")),
        "inputTokens": 4 + 1520 + 13912 + 10, "outputTokens": 96 + 20,
        "totalTokens": 4 + 1520 + 13912 + 10 + 96 + 20, "toolsUsed": 1,
        "summary": "Audit docker-compose env vars 🐳",
        # every summary line of its file, verbatim, for the jsonl export to write back
        "claudeCode": {"summaries": session_lines()[:2]},
    }
    assert sessions[AGENT_SID]["messageCount"] == 2
    assert "summary" not in sessions[AGENT_SID]

    found = {m["uuid"]: m for m in kinds(records, RecordKind.MESSAGE)}
    assert [u for u in found if not u.startswith("n")] == [
        "u-1", "a-1", "a-2", "a-3", "a-3_tool_0", "u-2", "u-2_result_0", "sys-1", "a-4", "g-1",
        "g-2"]
    user = found["u-1"]
    assert user["content"] == "Which env vars are unused?"
    assert user["timestamp"] == datetime(2025, 8, 2, 4, 52, 1, tzinfo=UTC)
    assert user["contentHash"] == content_hash("u-1", "user", user["timestamp"], user["content"])
    assert "isMeta" not in user
    assert "thinkingMetadata" not in user
    assert found["a-1"]["thinking"] == "grep them"
    assert found["a-1"]["content"] == ""
    assert found["a-2"]["content"] == "I'll read docker-compose.yml."
    streamed = found["a-3"]
    assert streamed["usage"] == USAGE_2
    assert streamed["model"] == "claude-opus-4-1-20250805"
    assert streamed["costUsd"] == Decimal128(repr(COST)), "costUSD as written"
    assert streamed["messageData"]["content"][0]["input"]["limit"] == 2.5
    assert streamed["requestId"] == "req_1"
    assert streamed["gitBranch"] == "fix/ユニコード"
    tool = found["a-3_tool_0"]
    assert tool == {
        "uuid": "a-3_tool_0", "sessionId": SID, "type": "tool_use",
        "timestamp": streamed["timestamp"], "parentUuid": "a-3", "isSidechain": True,
        "userType": "external", "cwd": CWD, "version": "1.0.83", "gitBranch": "fix/ユニコード",
        "content": 'Read: {"file_path": "/Users/alex/github/claudelens/docker-compose.yml", '
                   '"limit": 2.5}',
        "messageData": READ,
    }
    result_user = found["u-2"]
    assert result_user["content"] == RESULT["content"]
    assert result_user["toolUseResult"] == {"type": "text", "file": {"numLines": 2}}
    assert found["u-2_result_0"]["parentUuid"] == "u-2"
    assert found["u-2_result_0"]["content"] == RESULT["content"]
    assert "contentHash" not in found["u-2_result_0"]
    assert found["a-4"]["durationMs"] == 5120
    assert found["g-1"]["isSidechain"] is True
    system = found["sys-1"]
    assert (system["type"], system["content"], system["parentUuid"]) == (
        "system", "Conversation compacted", None)
    assert system["claudeCode"]["fields"] == {"subtype": "compact_boundary"}
    assert system["contentHash"] == content_hash("sys-1", "system", system["timestamp"],
                                                 "Conversation compacted")
    locations = {r.doc["uuid"]: r.location for r in records if r.kind is RecordKind.MESSAGE}
    assert str(locations["a-3_tool_0"]) == (
        f"claude/projects/-Users-alex-github-claudelens/{SID}.jsonl:7 $.message.content[0]")

    report = validate(source)
    assert report.ok, report.errors
    assert (report.counts.projects, report.counts.sessions, report.counts.messages,
            report.counts.unknown_records) == (2, 3, 13, 3)
    assert report.date_range.start == datetime(2025, 8, 2, 4, 52, 1, tzinfo=UTC)
    assert report.date_range.end == datetime(2025, 8, 2, 4, 52, 8, tzinfo=UTC)
    assert IssueCode.SKIPPED_RECORDS.value in {w.code for w in report.warnings}


def test_a_single_transcript_file() -> None:
    data = as_jsonl(session_lines())
    source = source_of(data, f"{SID}.jsonl")
    assert (source.format, source.version) == (SourceFormat.CLAUDE_TRANSCRIPT, "1.0.83")
    records = list(source.records())
    assert records[0].doc == {"name": "src", "path": CWD}, "a lone file: the project is the cwd"
    assert kinds(records, RecordKind.SESSION)[0]["summary"] == "Audit docker-compose env vars 🐳"
    without_cwd = as_jsonl([{k: v for k, v in r.items() if k != "cwd"}
                            for r in session_lines()])
    chosen = source_of(without_cwd, "s.jsonl", options=ImportOptions(project_path="/srv/app"))
    assert next(iter(chosen.records())).doc == {"name": "app", "path": "/srv/app"}


def test_a_transcript_line_that_is_broken_is_skipped_and_reported() -> None:
    lines = session_lines()
    data = (as_jsonl(lines[:4]) + b'{"type": "user", "uuid": \n' + b"\n\n"
            + b'{"type": "assistant", "uuid": "z"}\n' + as_jsonl(lines[4:]))
    records, issues = read(data, f"{SID}.jsonl")
    assert [(i.code, i.line, i.field) for i in issues] == [
        ("invalid_json", 5, None), ("missing_field", 8, "message")]
    assert len(kinds(records, RecordKind.MESSAGE)) == 9  # sys-1 included


def test_project_folders_and_paths() -> None:
    assert project_folder("projects/-a-b/x.jsonl") == "projects/-a-b"
    assert project_folder("backup/.claude/projects/-a-b/s/subagents/agent.jsonl") == (
        "backup/.claude/projects/-a-b")
    assert project_folder("-a-b/s/subagents/agent.jsonl") == "-a-b"
    assert project_folder("x.jsonl") == ""
    assert resolve_project("projects/-Users-x-my.app", ["/Users/x/my.app/lib"], None) == (
        "/Users/x/my.app", False)
    assert resolve_project("projects/-Users-x-a-b", ["/tmp"], None) == ("/Users/x/a/b", True)
    assert resolve_project("projects/-Users-x-a-b", ["/tmp"], "/a-b") == ("/a-b", False)
    assert resolve_project("", [], None) == ("unknown", True)


# --- dataport JSONL ---------------------------------------------------------------------------


def test_a_jsonl_package() -> None:
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=2_500)
    write_session(writer, project_doc(), session_doc(), messages())
    writer.close()
    assert len(sink.files) > 1, "split into parts that the sessionId ties together"
    data = package(sink, "jsonl")
    source = source_of(data, "export.zip")
    assert (source.format, source.version) == (SourceFormat.DATAPORT_JSONL, "1.0")
    records, issues = read(data, "export.zip")
    assert [i.code for i in issues] == []
    check_order(records)
    assert kinds(records, RecordKind.PROJECT) == [
        {"name": "claudelens", "path": "/Users/alex/github/claudelens"}]
    [session] = kinds(records, RecordKind.SESSION)
    assert session["summary"] == session_doc()["summary"]
    uuids = [m["uuid"] for m in kinds(records, RecordKind.MESSAGE)]
    assert len(uuids) == len(set(uuids))
    assert set(uuids) >= {m["uuid"] for m in messages()}


def test_a_jsonl_package_with_projects_json_gives_the_full_project() -> None:
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    write_session(writer, project_doc(), session_doc(), messages()[:2])
    writer.close()
    projects = MemorySink()
    JsonWriter(projects, context=CONTEXT, split_bytes=10_000_000).write_projects([project_doc()])
    data = package(sink, "jsonl", extra=[("projects.json", bytes(projects.files[0].data))])
    records, issues = read(data, "export.zip")
    assert issues == []
    project_records = kinds(records, RecordKind.PROJECT)
    assert project_records == [project_doc(), project_doc()]


def test_a_changed_package_member_fails_its_checksum() -> None:
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    write_session(writer, project_doc(), session_doc(), messages()[:2])
    writer.close()
    members = _members(package(sink, "jsonl"))
    manifest = json.loads(dict(members)["manifest.json"])
    manifest["files"][0]["sha256"] = "0" * 64
    manifest["files"].append(manifest["files"][0] | {"path": "projects/gone.jsonl"})
    tampered = zip_bytes([(name, payload) for name, payload in members
                          if name != "manifest.json"]
                         + [("manifest.json", json.dumps(manifest).encode())])
    records, issues = read(tampered, "export.zip")
    assert [(i.code, i.file) for i in issues] == [
        ("checksum_mismatch", manifest["files"][0]["path"]),
        ("checksum_mismatch", "projects/gone.jsonl")]
    assert len(kinds(records, RecordKind.MESSAGE)) == 3


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(name, archive.read(name)) for name in archive.namelist()]


# --- encrypted packages ----------------------------------------------------------------------

PASSWORD = b"correct horse battery"


def aes_encrypted(data: bytes, password: bytes = PASSWORD) -> bytes:
    """The same zip with every member WinZip AES-256 encrypted, as an export with a password."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as plain, pyzipper.AESZipFile(
            out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as sealed:
        sealed.setpassword(password)
        for info in plain.infolist():
            sealed.writestr(info.filename, plain.read(info))
    return out.getvalue()


def zipcrypto_encrypted(data: bytes, folder: Path, password: bytes = PASSWORD) -> bytes:
    """The same zip encrypted the legacy way (ZipCrypto), by 7-Zip, as a person might."""
    tree = folder / "tree"
    with zipfile.ZipFile(io.BytesIO(data)) as plain:
        plain.extractall(tree)
    target = folder / "legacy.zip"
    subprocess.run(["7z", "a", "-tzip", "-mem=ZipCrypto", f"-p{password.decode()}",
                    str(target), "."], cwd=tree, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=60)
    return target.read_bytes()


@pytest.mark.parametrize("scheme", ["aes", "zipcrypto"])
def test_an_encrypted_package_reads_like_the_plain_one_with_its_password(
        scheme: str, tmp_path: Path) -> None:
    sink, _ = json_export(split_bytes=3_000)
    plain = package(sink, "json")
    sealed = aes_encrypted(plain) if scheme == "aes" else zipcrypto_encrypted(plain, tmp_path)
    with zipfile.ZipFile(io.BytesIO(sealed)) as archive:
        assert all(info.flag_bits & 0x1 for info in archive.infolist())

    expected, _ = read(plain, "export.zip")
    records, issues = read(sealed, "export.zip", password=PASSWORD)

    assert issues == []
    assert [(r.kind, r.doc) for r in records] == [(r.kind, r.doc) for r in expected]
    assert validate(lambda: io.BytesIO(sealed), "export.zip", password=PASSWORD) == validate(
        lambda: io.BytesIO(plain), "export.zip")


def test_an_encrypted_package_without_its_password_says_what_to_do() -> None:
    sink, _ = json_export()
    report = validate(lambda: io.BytesIO(aes_encrypted(package(sink, "json"))), "export.zip")
    assert [e.code for e in report.errors] == [IssueCode.ZIP_ENCRYPTED]
    assert "password" in report.errors[0].message


def test_a_wrong_password_is_said_so_and_nothing_is_read() -> None:
    sink, _ = json_export()
    sealed = aes_encrypted(package(sink, "json"))
    report = validate(lambda: io.BytesIO(sealed), "export.zip", password=b"not it at all")
    assert [e.code for e in report.errors] == [IssueCode.WRONG_PASSWORD]
    assert report.counts.messages == 0
    assert b"not it at all".decode() not in report.model_dump_json()


def test_a_tampered_encrypted_member_fails_its_authentication() -> None:
    sink, _ = json_export()
    sealed = bytearray(aes_encrypted(package(sink, "json")))
    with zipfile.ZipFile(io.BytesIO(bytes(sealed))) as archive:
        first = archive.infolist()[0]
    data_start = first.header_offset + 30 + len(first.filename.encode()) + len(first.extra)
    sealed[data_start + 40] ^= 0xFF  # inside the ciphertext, after salt and verifier
    report = validate(lambda: io.BytesIO(bytes(sealed)), "export.zip", password=PASSWORD)
    assert IssueCode.INVALID_ZIP in {e.code for e in report.errors}, report.errors


# --- CSV --------------------------------------------------------------------------------------


def csv_export() -> MemorySink:
    sink = MemorySink()
    writer = CsvWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    write_session(writer, project_doc(), session_doc(), messages())
    writer.close()
    return sink


def test_dataport_csv_export_in_a_zip() -> None:
    data = package(csv_export(), "csv")
    records, issues = read(data, "export.zip")
    assert issues == []
    check_order(records)
    assert kinds(records, RecordKind.PROJECT) == [
        {"name": "claudelens", "path": "/Users/alex/github/claudelens"}]
    [session] = kinds(records, RecordKind.SESSION)
    expected = {k: v for k, v in session_doc().items()
                if k not in {"_id", "projectId", "createdAt", "updatedAt"}}
    assert_same(session, expected, ordered=False)
    found = {m["uuid"]: m for m in kinds(records, RecordKind.MESSAGE)}
    source_docs = {m["uuid"]: m for m in messages()}
    for uuid, doc in found.items():
        original = source_docs[uuid]
        assert doc["content"] == original["content"], "the formula quote is undone exactly"
        assert doc["timestamp"] == original["timestamp"]
        assert doc["type"] == original["type"]
        assert doc["isSidechain"] == original["isSidechain"]
        assert doc["parentUuid"] == original["parentUuid"]
        if "costUsd" in original:
            assert doc["costUsd"] == original["costUsd"]
    assert found[messages()[0]["uuid"]]["content"].startswith("=HYPERLINK")
    assert found["99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca"]["usage"] == {
        "input_tokens": 4, "output_tokens": 96, "cache_creation_input_tokens": 1520,
        "cache_read_input_tokens": 13912}
    assert found["7a0d2b64-3f59-4b3e-9d2a-4c1d6e8f9a0b"]["costUsd"] == Decimal128("0.0000001")


def test_a_messages_csv_alone_gets_its_sessions_synthesised() -> None:
    [_, messages_file] = csv_export().files
    data = bytes(messages_file.data)
    source = source_of(data, "messages.csv", options=ImportOptions(project_path="/srv/app"))
    assert source.format is SourceFormat.CSV
    records = list(source.records())
    check_order(records)
    assert records[0].doc == {"name": "app", "path": "/srv/app"}
    [session] = kinds(records, RecordKind.SESSION)
    assert session["messageCount"] == len(messages())
    assert session["toolsUsed"] == 2
    assert session["totalCost"] == Decimal128("0.0566281"), "the negative cost is not summed"


def test_another_tools_csv_through_a_field_mapping() -> None:
    data = (b"id,conversation,created_at,role,text,cost,extra\n"
            b"m1,c1,2025-08-02T04:52:07Z,user,'=not a formula here,,x\n"
            b"m2,c1,2025-08-02T04:52:09+02:00,assistant,\"multi\nline, quoted\",0.012,y\n")
    mapping = {"uuid": "id", "sessionId": "conversation", "timestamp": "created_at",
               "type": "role", "content": "text", "costUsd": "cost"}
    records, issues = read(data, "chat.csv", options=ImportOptions(field_mapping=mapping,
                                                                   project_path="/p"))
    assert [i.code for i in issues] == []
    first, second = kinds(records, RecordKind.MESSAGE)
    assert first["content"] == "'=not a formula here", "other files are taken as they are"
    assert second["content"] == "multi\nline, quoted"
    assert second["timestamp"] == datetime(2025, 8, 2, 2, 52, 9, tzinfo=UTC)
    assert second["costUsd"] == Decimal128("0.012")
    assert "costUsd" not in first
    report = validate(lambda: io.BytesIO(data), "chat.csv",
                      ImportOptions(field_mapping=mapping, project_path="/p"))
    assert report.ok
    assert report.counts.messages == 2
    assert report.counts.sessions == 1


@pytest.mark.parametrize(("mapping", "code"), [
    ({"uuid": "id", "nonsense": "text"}, IssueCode.INVALID_FIELD_MAPPING),
    ({"uuid": "missing"}, IssueCode.MISSING_COLUMN),
    ({"uuid": "id"}, IssueCode.MISSING_COLUMN),  # no sessionId, timestamp, type
])
def test_a_field_mapping_that_does_not_fit(mapping: dict[str, str], code: IssueCode) -> None:
    data = b"id,text\nm1,hello\n"
    report = validate(lambda: io.BytesIO(data), "chat.csv",
                      ImportOptions(field_mapping=mapping))
    assert [e.code for e in report.errors] == [code.value]


def test_a_csv_row_with_too_few_cells_is_reported_and_the_rest_read() -> None:
    [_, messages_file] = csv_export().files
    text = bytes(messages_file.data).decode()
    head, first, rest = text.split("\r\n", 2)
    data = "\r\n".join([head, first, "a,b,c", rest]).encode()
    records, issues = read(data, "messages.csv")
    assert [(i.code, i.line) for i in issues] == [("project_path_guessed", None),
                                                  ("invalid_record", 3)]
    assert len(kinds(records, RecordKind.MESSAGE)) == len(messages())


# --- detection, zips, limits, validation machinery --------------------------------------------


def test_a_declared_format_must_be_what_the_file_is() -> None:
    data = as_jsonl(session_lines())
    for declared, ok in ((SourceFormat.CLAUDE_TRANSCRIPT, True),
                         (SourceFormat.DATAPORT_JSONL, True), (SourceFormat.CSV, False),
                         (SourceFormat.DATAPORT_JSON, False)):
        report = validate(lambda: io.BytesIO(data), "s.jsonl", ImportOptions(format=declared))
        assert report.ok is ok, (declared, report.errors)
        if not ok:
            assert report.errors[0].code == "content_mismatch"


def test_the_zip_guard_enforces_the_limits_while_reading() -> None:
    """Headers that passed (here: under generous limits) do not protect a reader: the bytes
    actually inflated are counted."""
    member = b"x" * 300_000
    data = zip_bytes([("a/1.jsonl", member), ("a/2.jsonl", member), ("a/", b"")])
    archive = SafeZip(io.BytesIO(data), file="t.zip", limits=ImportLimits())
    assert [m.name for m in archive.members] == ["a/1.jsonl", "a/2.jsonl"]
    archive.limits = ImportLimits(max_total_uncompressed_bytes=450_000,
                                  max_compression_ratio=10_000, ratio_floor_bytes=0)
    with archive.open(archive.members[0]) as reader:
        assert reader.read() == member
    with archive.open(archive.members[0]) as reader:  # a member read again counts once
        reader.read()
    with archive.open(archive.members[1]) as reader:
        reader.read(65536)
        with pytest.raises(BadInput) as raised:
            reader.read()
    assert raised.value.issue.code == "zip_bomb"
    archive.limits = ImportLimits(max_compression_ratio=20, ratio_floor_bytes=1000)
    with archive.open(archive.members[0]) as reader, pytest.raises(BadInput) as raised:
        reader.read()
    assert "inflates more than 20 times" in raised.value.issue.message


def test_iter_lines_keeps_memory_bounded_and_numbers_right() -> None:
    data = b"one\r\ntwo\n" + b"x" * 100 + b"\nthree\n\nlast"
    got = list(iter_lines(io.BytesIO(data), 10))
    assert got == [(1, b"one"), (2, b"two"), (3, None), (4, b"three"), (5, b""), (6, b"last")]
    ends = list(iter_lines(io.BytesIO(b"a\r\nb"), 10, keep_ends=True))
    assert ends == [(1, b"a\r\n"), (2, b"b")]
    assert list(iter_lines(io.BytesIO(b"y" * 200_000), 10)) == [(1, None)]


def test_issues_are_capped_and_counted() -> None:
    lines = b"".join(b"not json %d\n" % i for i in range(MAX_LISTED_ISSUES + 50))
    report = validate(lambda: io.BytesIO(b'{"type": "summary"}\n' + lines), "s.jsonl")
    assert report.errors_total == MAX_LISTED_ISSUES + 50
    assert len(report.errors) == MAX_LISTED_ISSUES


def test_validate_never_raises() -> None:
    def broken() -> io.BytesIO:
        raise OSError("S3 said no")

    report = validate(broken, "x.jsonl")
    assert [e.code for e in report.errors] == ["internal_error"]
    assert validate(lambda: io.BytesIO(b'{"type": "summary"}\n'), "x.jsonl").errors[0].code == (
        "no_records")


def test_seen_set_moves_to_sqlite_and_still_finds_duplicates() -> None:
    seen = SeenSet(spill_after=10)
    assert all(seen.add(f"uuid-{i}", b"p") for i in range(50))
    assert seen._db is not None
    assert not seen.add("uuid-3")
    assert not seen.add("uuid-42")
    assert seen.get("uuid-7") == b"p"
    assert seen.get("nope") is None
    seen.close()


def test_costs_keep_their_digits_through_every_parser() -> None:
    line_ = line("assistant", "a", None, 1, assistant("m", [], {}),
                 costUSD=Decimal("1234567890.123456789012345678"))
    data = json.dumps(line_, default=str).replace('"1234567890.123456789012345678"',
                                                   "1234567890.123456789012345678").encode()
    [record] = kinds(read(data + b"\n", "s.jsonl")[0], RecordKind.MESSAGE)
    assert record["costUsd"] == Decimal128("1234567890.123456789012345678")


@pytest.mark.parametrize("force_zip64", [False, True])
def test_a_package_in_the_packagers_own_zip_records(force_zip64: bool) -> None:
    """packaging/zipformat.py writes the real packages (ZIP64 where needed, no data
    descriptors): the guarded reader takes them as they are."""
    sink, docs = json_export()
    entries = [(name, data) for name, data in _members(package(sink, "json"))]
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        entry = ZipEntry(name, STORED, zlib.crc32(data), len(data), len(data),
                         CONTEXT.created_at, len(out))
        out += local_file_header(entry, force_zip64=force_zip64) + data
        central += central_directory_header(entry, force_zip64=force_zip64)
    offset = len(out)
    out += central + end_of_central_directory(len(entries), offset, len(central),
                                              force_zip64=force_zip64)
    records, issues = read(bytes(out), "export.zip")
    assert issues == []
    assert len(kinds(records, RecordKind.MESSAGE)) == len(docs)
