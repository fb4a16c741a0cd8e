"""Export -> import gives back what was exported: the real writers, then the readers.

JSON (the lossless package): every project, session and message document comes back field for
field, in the same key order, type for type (ObjectId, Decimal128, aware datetimes, Int64,
doubles, nested documents and arrays of any of them), `_id`s included, whatever split size cut
the sessions into files. The one change: a message without contentHash gets it computed.

Claude-native JSONL carries what Claude Code's own lines carry. It cannot carry (and these tests
do not expect): `_id` and `createdAt` of messages; the session's `_id`, `projectId`,
`createdAt`, `updatedAt` (its figures are recomputed from the messages, the ClaudeLens way);
the project's `_id`, `user_id`, `description`, times and stats; fields beyond Claude Code's;
int vs Int64. Everything else comes back equal: derived tool documents are rebuilt from their
message's blocks, content / thinking / usage / model / contentHash recomputed from messageData,
costs exact. Two project paths that encode to the same folder name cannot be told apart.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataport.formats.json_format import JsonWriter
from dataport.formats.jsonl import JsonlWriter, project_dir
from dataport.imports.readers.claude_transcript import fold_name
from dataport.imports.validate import validate
from dataport.models.records import RecordKind
from dataport.source.content_hash import content_hash
from infrastructure.local.seed import _Conversation, _Rng
from tests.imports.support import check_order, kinds, package, read, source_of
from tests.unit.format_sink import CONTEXT, MemorySink, assert_same, write_session

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- values -----------------------------------------------------------------------------------

START = datetime(2024, 1, 1, tzinfo=UTC)
#: in the past, as real data is (validation refuses dates more than a day ahead)
moments = st.integers(0, 365 * 86_400_000).map(lambda ms: START + timedelta(milliseconds=ms))
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
keys = st.text("abcdefghijklmnopqrstuvwxyzABCXYZ_0123456789é数", min_size=1, max_size=8)
object_ids = st.binary(min_size=12, max_size=12).map(ObjectId)
money = st.decimals(min_value=0, max_value=10_000, places=7, allow_nan=False,
                    allow_infinity=False).map(Decimal128)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.integers(-(2**63), 2**63 - 1).map(Int64)
           | st.floats(allow_nan=False) | texts | moments | object_ids | money)
bson_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(keys, inner, max_size=3), max_leaves=10)
extras = st.dictionaries(keys.map(lambda k: "x_" + k), bson_values, max_size=3)


# --- JSON: lossless ---------------------------------------------------------------------------


@st.composite
def json_data(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any],
                                                                        dict[str, Any],
                                                                        list[dict[str, Any]]]]]:
    projects = [{"_id": draw(object_ids), "user_id": draw(object_ids), "name": f"p{i}",
                 "path": f"/work/p{i}", "createdAt": draw(moments), **draw(extras)}
                for i in range(draw(st.integers(1, 2)))]
    sessions = []
    counter = 0
    for index in range(draw(st.integers(0, 3))):
        project = draw(st.sampled_from(projects))
        session_id = f"5e55{index:04d}-0000-4000-8000-{draw(st.integers(0, 10**9)):012d}"
        session = {"_id": draw(object_ids), "sessionId": session_id,
                   "projectId": project["_id"], "startedAt": draw(moments),
                   "messageCount": draw(st.integers(0, 2**40)), "totalCost": draw(money),
                   "summary": draw(texts), **draw(extras)}
        docs = []
        for _ in range(draw(st.integers(0, 5))):
            counter += 1
            uuid = f"{counter:08d}-0000-4000-8000-000000000000"
            if draw(st.booleans()):
                uuid += draw(st.sampled_from(["_tool_0", "_result_1"]))
            doc: dict[str, Any] = {
                "_id": draw(object_ids), "uuid": uuid, "sessionId": session_id,
                "type": draw(st.sampled_from(["user", "assistant", "tool_use", "tool_result"])),
                "timestamp": draw(moments), "parentUuid": draw(st.none() | st.just("p")),
                "isSidechain": draw(st.booleans()), "content": draw(texts),
                "messageData": draw(st.dictionaries(keys, bson_values, max_size=3)),
            }
            if draw(st.booleans()):
                doc["costUsd"] = draw(money)
            doc.update(draw(extras))
            hashed = draw(st.sampled_from(["right", "wrong", "absent"]))
            if hashed == "right":
                doc["contentHash"] = content_hash(uuid, doc["type"], doc["timestamp"],
                                                  doc["content"])
            elif hashed == "wrong":
                doc["contentHash"] = "0" * 64
            docs.append(doc)
        sessions.append((project, session, docs))
    return projects, sessions


def with_hash(doc: dict[str, Any]) -> dict[str, Any]:
    """What the import gives for a message: contentHash computed when it had none."""
    if "contentHash" in doc or "_tool_" in doc["uuid"] or "_result_" in doc["uuid"]:
        return doc
    return doc | {"contentHash": content_hash(doc["uuid"], doc["type"], doc["timestamp"],
                                              doc["content"])}


@SETTINGS
@given(data=json_data(), split=st.sampled_from([200, 900, 10**7]))
def test_json_export_then_import_is_exact(data: Any, split: int) -> None:
    projects, sessions = data
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=split)
    writer.write_projects(projects)
    for project, session, docs in sessions:
        write_session(writer, project, session, docs)
    writer.close()
    upload = package(sink, "json")
    records, issues = read(upload, "export.zip")
    assert [i for i in issues if i.severity == "error"] == []
    check_order(records)

    got_projects = kinds(records, RecordKind.PROJECT)
    for actual, expected in zip(got_projects, projects, strict=False):
        assert_same(actual, expected)
    by_id = {p["_id"]: p for p in projects}
    for actual in got_projects[len(projects):]:
        assert_same(actual, by_id[actual["_id"]])

    expected_sessions = {s["sessionId"]: s for _, s, _ in sessions}
    got_messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.kind is RecordKind.SESSION:
            assert_same(record.doc, expected_sessions[record.doc["sessionId"]])
        elif record.kind is RecordKind.MESSAGE:
            got_messages[record.doc["sessionId"]].append(record.doc)
    assert {r.doc["sessionId"] for r in records if r.kind is RecordKind.SESSION} == set(
        expected_sessions)
    for _, session, docs in sessions:
        session_messages = got_messages[session["sessionId"]]
        assert len(session_messages) == len(docs)
        for got, doc in zip(session_messages, docs, strict=True):
            assert_same(got, with_hash(doc))

    report = validate(source_of(upload, "export.zip"))
    assert report.ok, report.errors
    assert report.counts.sessions == len(sessions)
    assert report.counts.messages == sum(len(docs) for _, _, docs in sessions)


# --- JSONL: what Claude-native lines carry ----------------------------------------------------

segments = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-é数", min_size=1, max_size=8).filter(
    lambda s: s not in {".", ".."} and not s.startswith("-"))
paths = st.lists(segments, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts
                | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(keys, inner, max_size=3), max_leaves=6)


class Conversation:
    """ClaudeLens documents of one session, built by DATA-MODEL.md's rules (independently of
    the reader under test)."""

    def __init__(self, draw: st.DrawFn, session_id: str, cwd: str, start: datetime) -> None:
        self.draw = draw
        self.session_id = session_id
        self.clock = start
        self.meta = {"userType": "external", "cwd": cwd,
                     "version": draw(st.sampled_from(["1.0.67", "1.0.83"])),
                     "gitBranch": draw(st.sampled_from(["main", "fix/ユニコード"]))}
        self.docs: list[dict[str, Any]] = []
        self.count = 0

    def _uuid(self) -> str:
        self.count += 1
        return f"{self.session_id[:8]}-{self.count:04d}-4000-8000-000000000000"

    def _tick(self) -> datetime:
        self.clock += timedelta(milliseconds=self.draw(st.integers(1, 90_000)))
        return self.clock

    def _doc(self, kind: str, parent: str | None, sidechain: bool, content: str,
             data: dict[str, Any], **fields: Any) -> dict[str, Any]:
        moment = self._tick()
        uuid = self._uuid()
        doc = {"_id": ObjectId(), "uuid": uuid, "sessionId": self.session_id, "type": kind,
               "timestamp": moment, "parentUuid": parent, "isSidechain": sidechain,
               **self.meta, "createdAt": moment + timedelta(seconds=1), "content": content,
               "messageData": data, **fields,
               "contentHash": content_hash(uuid, kind, moment, content)}
        self.docs.append(doc)
        return doc

    def _derived(self, origin: dict[str, Any], suffix: str, index: int, kind: str,
                 block: dict[str, Any], content: str) -> None:
        self.docs.append({"_id": ObjectId(), "uuid": f"{origin['uuid']}_{suffix}_{index}",
                          "sessionId": self.session_id, "type": kind,
                          "timestamp": origin["timestamp"], "parentUuid": origin["uuid"],
                          "isSidechain": True, **self.meta, "createdAt": origin["createdAt"],
                          "content": content, "messageData": block})

    def turn(self, parent: str | None) -> str:
        draw = self.draw
        sidechain = draw(st.booleans())
        if draw(st.booleans()):
            prompt = draw(texts)
            user = self._doc("user", parent, sidechain, prompt,
                             {"role": "user", "content": prompt})
        else:
            parts = draw(st.lists(texts, min_size=1, max_size=2))
            user = self._doc("user", parent, sidechain, "\n".join(parts),
                             {"role": "user", "content": [{"type": "text", "text": t}
                                                          for t in parts]})
        thinking = draw(st.lists(texts, max_size=1))
        replies = draw(st.lists(texts, max_size=2))
        uses = [{"type": "tool_use", "id": f"toolu_{self.count}_{i}",
                 "name": draw(st.sampled_from(["Read", "Bash", "Task"])),
                 "input": draw(st.dictionaries(keys, json_values, max_size=3))}
                for i in range(draw(st.integers(0, 2)))]
        usage = {"input_tokens": draw(st.integers(0, 5000)),
                 "cache_creation_input_tokens": draw(st.integers(0, 5000)),
                 "cache_read_input_tokens": draw(st.integers(0, 50_000)),
                 "output_tokens": draw(st.integers(0, 3000))}
        model = draw(st.sampled_from(["claude-opus-4-1-20250805", "claude-sonnet-4-20250514"]))
        data = {"id": f"msg_{self.session_id[:4]}{self.count}", "type": "message",
                "role": "assistant", "model": model,
                "content": ([{"type": "thinking", "thinking": t, "signature": "sig"}
                             for t in thinking] + [{"type": "text", "text": t} for t in replies]
                            + uses), "stop_reason": "tool_use" if uses else "end_turn",
                "usage": usage}
        extra: dict[str, Any] = {}
        if thinking:
            extra["thinking"] = "\n".join(thinking)
        reply = self._doc("assistant", user["uuid"], sidechain, "\n\n".join(replies), data,
                          usage=dict(usage), model=model,
                          costUsd=Decimal128(draw(st.decimals(0, 100, places=6))),
                          durationMs=draw(st.integers(0, 90_000)),
                          requestId=f"req_{self.count}", **extra)
        for i, use in enumerate(uses):
            self._derived(reply, "tool", i, "tool_use", use,
                          f"{use['name']}: {json.dumps(use['input'], ensure_ascii=False)}")
        if not uses:
            return str(reply["uuid"])
        outputs = [draw(texts) for _ in uses]
        results = [{"type": "tool_result", "tool_use_id": use["id"], "content": output,
                    "is_error": draw(st.booleans())} for use, output in zip(uses, outputs,
                                                                             strict=True)]
        answer = self._doc("user", reply["uuid"], sidechain,
                           "\n".join(outputs),
                           {"role": "user", "content": results},
                           toolUseResult={"stdout": draw(texts), "interrupted": False})
        for i, result in enumerate(results):
            self._derived(answer, "result", i, "tool_result", result, outputs[i])
        return str(answer["uuid"])


def session_of(session_id: str, docs: list[dict[str, Any]], summary: str | None,
               ) -> dict[str, Any]:
    """The session document ClaudeLens keeps for these messages."""
    assistants = [d for d in docs if d["type"] == "assistant"]
    tokens_in = sum(d["usage"]["input_tokens"] + d["usage"]["cache_creation_input_tokens"]
                    + d["usage"]["cache_read_input_tokens"] for d in assistants)
    tokens_out = sum(d["usage"]["output_tokens"] for d in assistants)
    session = {"sessionId": session_id, "startedAt": min(d["timestamp"] for d in docs),
               "endedAt": max(d["timestamp"] for d in docs), "messageCount": len(docs),
               "totalCost": Decimal128(sum((d["costUsd"].to_decimal() for d in assistants),
                                           Decimal(0))),
               "inputTokens": tokens_in, "outputTokens": tokens_out,
               "totalTokens": tokens_in + tokens_out,
               "toolsUsed": sum(d["type"] == "tool_use" for d in docs)}
    if summary:
        session["summary"] = summary
    return session


@st.composite
def claude_data(draw: st.DrawFn) -> list[tuple[dict[str, Any], dict[str, Any],
                                                 list[dict[str, Any]]]]:
    project_paths = draw(st.lists(paths, min_size=1, max_size=2,
                                  unique_by=lambda p: fold_name(project_dir(p))))
    out = []
    for number in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(project_paths))
        session_id = f"{number:04d}abcd-0add-4645-8d72-{draw(st.integers(0, 10**9)):012d}"
        cwd = path + draw(st.sampled_from(["", "", "/src"]))
        conversation = Conversation(draw, session_id, cwd, draw(moments))
        parent = None
        for _ in range(draw(st.integers(1, 3))):
            parent = conversation.turn(parent)
        summary = draw(st.none() | texts.filter(bool))
        project = {"_id": ObjectId(), "name": path.rsplit("/", 1)[-1], "path": path,
                   "description": "not carried"}
        session = {"_id": ObjectId(), "projectId": project["_id"],
                   **session_of(session_id, conversation.docs, summary)}
        out.append((project, session, conversation.docs))
    return out


CARRIED_NOT = {"_id", "createdAt", "projectId", "updatedAt"}


def carried(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in CARRIED_NOT}


def jsonl_round_trip(sessions: list[tuple[dict[str, Any], dict[str, Any],
                                          list[dict[str, Any]]]], split: int) -> None:
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=split)
    for project, session, docs in sessions:
        write_session(writer, project, session, docs)
    writer.close()
    upload = package(sink, "jsonl")
    records, issues = read(upload, "export.zip")
    assert [i for i in issues if i.severity == "error"] == []
    check_order(records)

    project_paths = {p["path"] for p, _, _ in sessions}
    assert {(p["name"], p["path"]) for p in kinds(records, RecordKind.PROJECT)} == {
        (p["name"], p["path"]) for p, _, _ in sessions}
    assert len(kinds(records, RecordKind.PROJECT)) == len(project_paths)
    got_sessions = {s["sessionId"]: {k: v for k, v in s.items() if k != "claudeCode"}
                    for s in kinds(records, RecordKind.SESSION)}
    assert len(got_sessions) == len(sessions)
    # every line remembers its keys (claudeCode, docs/imports.md); the rest is the document
    got_messages = {m["uuid"]: {k: v for k, v in m.items() if k != "claudeCode"}
                    for m in kinds(records, RecordKind.MESSAGE)}
    assert len(got_messages) == len(kinds(records, RecordKind.MESSAGE))
    assert all("keys" in m["claudeCode"] for m in kinds(records, RecordKind.MESSAGE)
               if "_tool_" not in m["uuid"] and "_result_" not in m["uuid"])
    expected_count = 0
    current: str | None = None
    for record in records:
        if record.kind is RecordKind.PROJECT:
            current = record.doc["path"]
        elif record.kind is RecordKind.SESSION:
            owner = next(p for p, s, _ in sessions if s["sessionId"] == record.doc["sessionId"])
            assert current == owner["path"], "the session is in its own project"
    for _, session, docs in sessions:
        assert_same(got_sessions[session["sessionId"]], carried(session), ordered=False)
        for doc in docs:
            expected_count += 1
            assert_same(got_messages[doc["uuid"]], carried(doc),
                        f"$[{doc['uuid']}]", ordered=False)
    assert len(got_messages) == expected_count

    report = validate(source_of(upload, "export.zip"))
    assert report.ok, report.errors
    assert (report.counts.sessions, report.counts.messages) == (len(sessions), expected_count)


@SETTINGS
@given(sessions=claude_data(), split=st.sampled_from([700, 10**7]))
def test_jsonl_export_then_import_gives_back_what_claude_lines_carry(
        sessions: Any, split: int) -> None:
    jsonl_round_trip(sessions, split)


def test_jsonl_round_trip_of_the_local_seed_data() -> None:
    """The seed's sample conversations (tool calls, results, sub-agent sidechains) are the
    shape DATA-MODEL.md describes: they come back equal too."""
    rng = _Rng(11)
    sessions = []
    for number in range(6):
        path = f"/Users/alex/github/project-{number % 2}"
        session_id = rng.uuid()
        cwd = path if number % 3 else f"{path}/src"
        totals = _Conversation(rng, session_id, datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
                               + timedelta(days=number), cwd).run(rng.randint(4, 30))
        project = {"_id": ObjectId(), "name": path.rsplit("/", 1)[-1], "path": path}
        summary = random.Random(number).choice([None, "Audit env vars 🐳"])
        session = {"_id": ObjectId(), **session_of(session_id, totals.documents, summary)}
        assert session["totalCost"] == Decimal128(totals.cost)
        assert session["toolsUsed"] == totals.tools
        sessions.append((project, session, totals.documents))
    jsonl_round_trip(sessions, 10**7)
