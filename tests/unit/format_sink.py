"""Test support for the format writers: an in-memory FileSink and hand-built source documents.

The sink records every file a writer opens (path, numbering, bytes, records, notes, closed) and
refuses writes to closed files, so tests see exactly what the packager would receive. The
documents use the real BSON types a pymongo cursor yields (ObjectId, Decimal128, Int64, aware
UTC datetimes with millisecond precision) and the awkward parts of the data model: derived tool
documents, a tool-result-only user message that ClaudeLens does not store, sidechains, Unicode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64

from dataport.formats.base import ExportContext, Numbering


@dataclass
class MemoryFile:
    path: str
    numbering: Numbering
    data: bytearray = field(default_factory=bytearray)
    records: int = 0
    notes: list[str] = field(default_factory=list)
    closed: bool = False
    content: tuple[int, str] | None = None

    @property
    def bytes_written(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        assert not self.closed, f"write to closed file {self.path}"
        assert isinstance(data, bytes)
        self.data.extend(data)

    def add_records(self, count: int = 1) -> None:
        assert not self.closed
        self.records += count

    def add_note(self, note: str) -> None:
        self.notes.append(note)

    def set_content(self, size: int, sha256: str) -> None:
        self.content = (size, sha256)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass
class MemorySink:
    files: list[MemoryFile] = field(default_factory=list)

    def open(self, path: str, numbering: Numbering = Numbering.WHEN_SPLIT) -> MemoryFile:
        file = MemoryFile(path, numbering)
        self.files.append(file)
        return file

    def close(self, file: Any) -> None:
        assert file in self.files, "closing a file the sink did not open"
        assert not file.closed, "closing a file twice"
        file.closed = True

    def at(self, path: str) -> list[MemoryFile]:
        return [f for f in self.files if f.path == path]

    def open_files(self) -> list[MemoryFile]:
        return [f for f in self.files if not f.closed]


CONTEXT = ExportContext(job_id="job-123", owner_id="66ad9b005f2b4a0012c0aaaa",
                        created_at=datetime(2025, 8, 3, 9, 0, 0, 123000, tzinfo=UTC),
                        format="json")

SESSION_ID = "0bce4261-0add-4645-8d72-888c91496f82"
T0 = datetime(2025, 8, 2, 4, 52, 7, 349000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(milliseconds=int(seconds * 1000))


def project_doc() -> dict[str, Any]:
    return {
        "_id": ObjectId("66ad9c1e5f2b4a0012c0ffee"),
        "user_id": ObjectId("66ad9b005f2b4a0012c0aaaa"),
        "name": "claudelens", "path": "/Users/alex/github/claudelens",
        "description": "Ledger of 日本語 and עברית",
        "createdAt": datetime(2025, 8, 2, 4, 52, 9, 101000, tzinfo=UTC),
        "updatedAt": datetime(2025, 8, 2, 4, 52, 9, 101000, tzinfo=UTC),
        "stats": {"message_count": 0, "session_count": 0},
    }


def session_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": ObjectId("66ad9c1e5f2b4a0012c0f00d"), "sessionId": SESSION_ID,
        "projectId": ObjectId("66ad9c1e5f2b4a0012c0ffee"),
        "startedAt": T0, "endedAt": at(2884.654),
        "messageCount": 9, "totalCost": Decimal128("2.4187355"),
        "inputTokens": 1821004, "outputTokens": 22206, "totalTokens": 1843210, "toolsUsed": 2,
        "summary": "Audit unused docker-compose env vars — 環境変数 🐳",
        "createdAt": at(1.806), "updatedAt": at(2933.521),
    }
    doc.update(changes)
    return doc


def _meta() -> dict[str, Any]:
    return {"userType": "external", "cwd": "/Users/alex/github/claudelens", "version": "1.0.67",
            "gitBranch": "main"}


def messages() -> list[dict[str, Any]]:
    """A session in timestamp order, as the source yields it."""
    read_call = {"type": "tool_use", "id": "toolu_01Ab", "name": "Read",
                 "input": {"file_path": "/Users/alex/github/claudelens/docker-compose.yml"}}
    bash_call = {"type": "tool_use", "id": "toolu_02Cd", "name": "Bash",
                 "input": {"command": "grep -n '```' README.md"}}
    read_result = {"type": "tool_result", "tool_use_id": "toolu_01Ab",
                   "content": "services:\n  api:\n    image: x\n```\nnot a fence end\n````"}
    bash_result = {"type": "tool_result", "tool_use_id": "toolu_02Cd", "content": "12:```"}
    reply = "I'll read docker-compose.yml first.\n\n```yaml\nkey: value\n```"
    usage = {"input_tokens": 4, "cache_creation_input_tokens": 1520,
             "cache_read_input_tokens": 13912, "output_tokens": 96}
    return [
        {"_id": ObjectId(), "uuid": "15e15459-c55e-4c93-8a2e-d95794c41d63", "sessionId": SESSION_ID,
         "type": "user", "timestamp": at(0), "parentUuid": None, "isSidechain": False,
         "content": "=HYPERLINK(\"http://evil\") audit the env — 请检查 🙏 שלום",
         "messageData": {"role": "user",
                         "content": "=HYPERLINK(\"http://evil\") audit the env — 请检查 🙏 שלום"},
         "contentHash": "9f" * 32, "createdAt": at(1.8), **_meta()},
        {"_id": ObjectId(), "uuid": "99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca", "sessionId": SESSION_ID,
         "type": "assistant", "timestamp": at(5.531),
         "parentUuid": "15e15459-c55e-4c93-8a2e-d95794c41d63", "isSidechain": False,
         "content": reply,
         "thinking": "The user wants an audit. Check </details> handling.",
         "messageData": {"id": "msg_01HxQ", "type": "message", "role": "assistant",
                         "model": "claude-opus-4-1-20250805",
                         "content": [
                             {"type": "thinking", "thinking": "The user wants an audit. "
                                                              "Check </details> handling.",
                              "signature": "sig"},
                             {"type": "text", "text": reply},
                             read_call],
                         "stop_reason": "tool_use", "usage": usage},
         "usage": usage, "model": "claude-opus-4-1-20250805",
         "costUsd": Decimal128("0.056628"), "requestId": "req_011CRh", "durationMs": 5120,
         "contentHash": "ab" * 32, "createdAt": at(7.0),
         "metadata": {"big": Int64(2**40), "ratio": 0.25, "tags": ["a", None, True]},
         **_meta()},
        {"_id": ObjectId(), "uuid": "99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca_tool_0",
         "sessionId": SESSION_ID, "type": "tool_use", "timestamp": at(5.531),
         "parentUuid": "99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca", "isSidechain": True,
         "content": '{"type": "tool_use", "id": "toolu_01Ab", "name": "Read"}',
         "messageData": read_call, "createdAt": at(7.0), "model": "claude-opus-4-1-20250805",
         **_meta()},
        # the user message holding only this result is not stored by ClaudeLens
        {"_id": ObjectId(), "uuid": "4e1c7f7a-5d3c-4a44-9d8e-1e2f3a4b5c6d_result_0",
         "sessionId": SESSION_ID, "type": "tool_result", "timestamp": at(6.002),
         "parentUuid": "99cc3e0e-59e5-4d6b-b0ba-6f2a3f874bca_tool_0", "isSidechain": True,
         "content": read_result["content"], "messageData": read_result,
         "toolUseResult": {"type": "text", "file": {"numLines": 4}}, "createdAt": at(7.1),
         **_meta()},
        {"_id": ObjectId(), "uuid": "7a0d2b64-3f59-4b3e-9d2a-4c1d6e8f9a0b", "sessionId": SESSION_ID,
         "type": "assistant", "timestamp": at(9.25),
         "parentUuid": "4e1c7f7a-5d3c-4a44-9d8e-1e2f3a4b5c6d", "isSidechain": False,
         "content": "Two variables are unused. Let me grep.",
         "messageData": {"id": "msg_02", "type": "message", "role": "assistant",
                         "model": "claude-sonnet-4-20250514",
                         "content": [{"type": "text",
                                      "text": "Two variables are unused. Let me grep."},
                                     bash_call]},
         "model": "claude-sonnet-4-20250514", "costUsd": Decimal128("0.0000001"),
         "usage": {"input_tokens": 10, "output_tokens": 20}, "createdAt": at(9.9), **_meta()},
        {"_id": ObjectId(), "uuid": "7a0d2b64-3f59-4b3e-9d2a-4c1d6e8f9a0b_tool_0",
         "sessionId": SESSION_ID, "type": "tool_use", "timestamp": at(9.25),
         "parentUuid": "7a0d2b64-3f59-4b3e-9d2a-4c1d6e8f9a0b", "isSidechain": True,
         "content": "{}", "messageData": bash_call, "createdAt": at(9.9), **_meta()},
        # a user message with text and a result: stored, and its result derived as well
        {"_id": ObjectId(), "uuid": "c3d4e5f6-0000-4000-8000-000000000001", "sessionId": SESSION_ID,
         "type": "user", "timestamp": at(11.0),
         "parentUuid": "7a0d2b64-3f59-4b3e-9d2a-4c1d6e8f9a0b", "isSidechain": False,
         "content": "@mention\tand a result",
         "messageData": {"role": "user", "content": [
             bash_result, {"type": "text", "text": "@mention\tand a result"}]},
         "contentHash": "cd" * 32, "createdAt": at(11.5), **_meta()},
        {"_id": ObjectId(), "uuid": "c3d4e5f6-0000-4000-8000-000000000001_result_0",
         "sessionId": SESSION_ID, "type": "tool_result", "timestamp": at(11.0),
         "parentUuid": "7a0d2b64-3f59-4b3e-9d2a-4c1d6e8f9a0b_tool_0", "isSidechain": True,
         "content": "12:```", "messageData": bash_result, "createdAt": at(11.5), **_meta()},
        {"_id": ObjectId(), "uuid": "5b6c7d8e-1111-4222-8333-944455556666", "sessionId": SESSION_ID,
         "type": "assistant", "timestamp": at(14.75),
         "parentUuid": "c3d4e5f6-0000-4000-8000-000000000001", "isSidechain": True,
         "content": "-2+3 is what the sub-agent says",
         "messageData": {"id": "msg_03", "type": "message", "role": "assistant",
                         "model": "claude-sonnet-4-20250514",
                         "content": [{"type": "text", "text": "-2+3 is what the sub-agent says"}]},
         "model": "claude-sonnet-4-20250514", "costUsd": Decimal128("-0.5"),
         "createdAt": at(15.0), **_meta()},
    ]


def write_session(writer: Any, project: dict[str, Any], session: dict[str, Any],
                  docs: list[dict[str, Any]]) -> None:
    writer.begin_session(project, session)
    for doc in docs:
        writer.write_message(doc)
    writer.end_session()


def many_messages(count: int, *, text: str = "message body ✓ ", repeat: int = 10,
                  ) -> list[dict[str, Any]]:
    """`count` plain user/assistant messages a second apart."""
    docs = []
    for i in range(count):
        kind = "user" if i % 2 == 0 else "assistant"
        body = f"{i}: {text * repeat}"
        docs.append({"_id": ObjectId(), "uuid": f"00000000-0000-4000-8000-{i:012d}",
                     "sessionId": SESSION_ID, "type": kind, "timestamp": at(i),
                     "parentUuid": f"00000000-0000-4000-8000-{i - 1:012d}" if i else None,
                     "isSidechain": False, "content": body,
                     "messageData": {"role": kind, "content": body},
                     "costUsd": Decimal128("0.001"), **_meta()})
    return docs


def snapshot(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return copy.deepcopy(docs)


def assert_same(actual: Any, expected: Any, where: str = "$", *, ordered: bool = True) -> None:
    """Equal values of the same types all the way down; an int may come back as Int64 (the
    same BSON int64 once written)."""
    if isinstance(expected, int) and not isinstance(expected, bool) and type(actual) is Int64:
        assert actual == expected, where
        return
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    if isinstance(expected, dict):
        if ordered:
            assert list(actual) == list(expected), f"{where}: keys {list(actual)} != " \
                                                   f"{list(expected)}"
        else:
            assert set(actual) == set(expected), (f"{where}: keys differ: "
                                                  f"{set(actual) ^ set(expected)}")
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}", ordered=ordered)
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]", ordered=ordered)
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
