"""The per-session planner: what insert, skip, merge and replace do to a session, message by
message, and the session document they write (stats recomputed from the messages it will have)."""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128

from dataport.imports.plan import SessionPlan
from dataport.models.imports import SessionAction, Strategy
from dataport.source.conflicts import StoredMessage
from dataport.source.content_hash import content_hash
from dataport.source.identity import SessionIds, copy_id
from dataport.source.writes import IMPORT_TAG

T0 = datetime(2025, 8, 2, 4, 52, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PROJECT = ObjectId("66ad9c1e5f2b4a0012c0ffee")
OTHER_PROJECT = ObjectId("66ad9c1e5f2b4a0012c0f00d")


def message(uuid: str, content: str = "hello", *, minute: int = 0, kind: str = "assistant",
            cost: str | None = None, tokens: tuple[int, int] | None = None,
            hashed: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"uuid": uuid, "sessionId": "s1", "type": kind,
                           "timestamp": T0 + timedelta(minutes=minute), "content": content}
    if cost is not None:
        doc["costUsd"] = Decimal128(cost)
    if tokens is not None:
        doc["usage"] = {"input_tokens": tokens[0], "output_tokens": tokens[1]}
    if hashed:
        doc["contentHash"] = content_hash(uuid, kind, doc["timestamp"], content)
    return doc


def stored(*docs: dict[str, Any]) -> dict[str, StoredMessage]:
    return {doc["uuid"]: StoredMessage.of({**doc, "_id": ObjectId()}, "messages") for doc in docs}


STORED_SESSION = {"_id": ObjectId(), "sessionId": "s1", "projectId": PROJECT, "summary": "old",
                  "messageCount": 99, "totalCost": Decimal128("9"), "createdAt": T0,
                  "updatedAt": T0, IMPORT_TAG: "an-earlier-import"}


def plan_of(strategy: Strategy, incoming: list[dict[str, Any]], existing: dict[str, StoredMessage],
            *, session: dict[str, Any] | None = None, stored_session: dict[str, Any] | None = None,
            project_changed: bool = False) -> tuple[SessionPlan, list[Any]]:
    plan = SessionPlan(session_id="s1", stored_id="s1", strategy=strategy,
                       incoming=session or {"sessionId": "s1", "summary": "old"},
                       stored=stored_session, stored_messages=existing,
                       incoming_count=len(incoming), project_changed=project_changed)
    ops: list[Any] = []
    if plan.reads_messages:
        for doc in incoming:
            ops.extend(plan.feed(doc))
        ops.extend(plan.finish())
    return plan, ops


# the stored session: a (same), b (changed upstream), c (only stored); the upload: a, b', d (new)
A = message("a", "same", minute=1, kind="user")
B = message("b", "before", minute=2, cost="0.25", tokens=(10, 5))
B2 = message("b", "after", minute=2, cost="0.5", tokens=(20, 6))
C = message("c", "only stored", minute=3, cost="0.125", tokens=(1, 1))
D = message("d", "new", minute=4, cost="0.0000001", tokens=(3, 4))


def test_a_new_session_is_inserted_with_stats_from_its_messages() -> None:
    plan, ops = plan_of(Strategy.SKIP, [A, B2, D], {})
    assert [op.kind for op in ops] == ["insert"] * 3
    assert plan.action is SessionAction.INSERT
    assert plan.writes
    assert plan.counts().inserted == 3
    doc = plan.session_document(project_id=PROJECT, job_id="job", now=NOW)
    assert doc["projectId"] == PROJECT
    assert doc[IMPORT_TAG] == "job"
    assert doc["messageCount"] == 3
    assert doc["totalCost"] == Decimal128("0.5000001")  # exact: Decimal, never float
    assert (doc["inputTokens"], doc["outputTokens"], doc["totalTokens"]) == (23, 10, 33)
    assert (doc["startedAt"], doc["endedAt"]) == (A["timestamp"], D["timestamp"])
    assert doc["createdAt"] == NOW
    assert doc["updatedAt"] == NOW


def test_skip_leaves_a_session_the_user_has_without_reading_it() -> None:
    plan, ops = plan_of(Strategy.SKIP, [A, B2, D], stored(A, B, C),
                        stored_session=STORED_SESSION)
    assert not plan.reads_messages
    assert ops == []
    assert plan.action is SessionAction.SKIP
    assert not plan.writes
    assert plan.counts().skipped == 3


def test_merge_is_the_union_by_uuid_and_takes_the_incoming_version() -> None:
    existing = stored(A, B, C)
    stored_b = existing["b"].id
    plan, ops = plan_of(Strategy.MERGE, [A, B2, D], existing,
                        session={"sessionId": "s1", "summary": "new"},
                        stored_session=STORED_SESSION)
    assert [(op.kind, op.doc["uuid"] if op.doc else None) for op in ops] == [
        ("update", "b"), ("insert", "d")]
    assert ops[0].stored.id == stored_b  # written over the stored document's _id
    assert plan.action is SessionAction.MERGE
    counts = plan.counts()
    assert (counts.inserted, counts.updated, counts.unchanged, counts.deleted) == (1, 1, 1, 0)
    doc = plan.session_document(project_id=OTHER_PROJECT, job_id="job", now=NOW)
    assert doc["_id"] == STORED_SESSION["_id"]
    assert doc["projectId"] == PROJECT  # merge keeps the stored session where it is
    assert doc["summary"] == "new"
    assert doc["createdAt"] == T0
    assert doc["messageCount"] == 4  # a, b', c, d
    assert doc["totalCost"] == Decimal128("0.6250001")  # b' + c + d
    assert doc[IMPORT_TAG] == "job"


def test_replace_makes_the_stored_session_the_incoming_one() -> None:
    existing = stored(A, B, C)
    plan, ops = plan_of(Strategy.REPLACE, [A, B2, D], existing, stored_session=STORED_SESSION)
    assert sorted(op.kind for op in ops) == ["delete", "insert", "update"]
    deleted = next(op for op in ops if op.kind == "delete")
    assert deleted.stored.id == existing["c"].id
    assert plan.action is SessionAction.REPLACE
    counts = plan.counts()
    assert (counts.inserted, counts.updated, counts.deleted, counts.unchanged) == (1, 1, 1, 1)
    doc = plan.session_document(project_id=OTHER_PROJECT, job_id="job", now=NOW)
    assert doc["_id"] == STORED_SESSION["_id"]
    assert doc["projectId"] == OTHER_PROJECT
    assert doc["messageCount"] == 3
    assert doc["totalCost"] == Decimal128("0.5000001")


@pytest.mark.parametrize("strategy", [Strategy.MERGE, Strategy.REPLACE])
def test_an_identical_session_is_left_unchanged(strategy: Strategy) -> None:
    plan, ops = plan_of(strategy, [A, B], stored(A, B), stored_session=STORED_SESSION)
    assert ops == []
    assert plan.action is SessionAction.UNCHANGED
    assert not plan.writes
    assert plan.counts().unchanged == 2


def test_merge_keeps_what_only_the_stored_side_has_and_changes_nothing_then() -> None:
    plan, ops = plan_of(Strategy.MERGE, [A], stored(A, C), stored_session=STORED_SESSION)
    assert ops == []
    assert plan.action is SessionAction.UNCHANGED


def test_session_fields_alone_make_a_change() -> None:
    plan, ops = plan_of(Strategy.MERGE, [A], stored(A), stored_session=STORED_SESSION,
                        session={"sessionId": "s1", "summary": "renamed"})
    assert ops == []
    assert plan.action is SessionAction.MERGE
    assert plan.session_document(project_id=PROJECT, job_id="j", now=NOW)["summary"] == "renamed"
    moved, _ = plan_of(Strategy.REPLACE, [A], stored(A), stored_session=STORED_SESSION,
                       project_changed=True)
    assert moved.action is SessionAction.REPLACE


def test_derived_tool_documents_are_compared_by_the_hash_computed_for_them() -> None:
    tool = message("a_tool_0", "Read: {}", kind="tool_use", hashed=False)
    same, _ = plan_of(Strategy.MERGE, [tool], stored(tool), stored_session=STORED_SESSION)
    assert same.action is SessionAction.UNCHANGED
    edited = {**tool, "content": "Read: {\"file\": 1}"}
    _, ops = plan_of(Strategy.MERGE, [edited], stored(tool), stored_session=STORED_SESSION)
    assert [op.kind for op in ops] == ["update"]


def test_the_conflict_says_what_differs_and_what_to_do() -> None:
    plan, _ = plan_of(Strategy.MERGE, [A, B2, D], stored(A, B, C), stored_session=STORED_SESSION)
    conflict = plan.conflict()
    assert conflict is not None
    assert conflict.status == "changed"
    assert conflict.messages.model_dump() == {"new": 1, "changed": 1, "identical": 1, "copied": 0,
                                              "only_existing": 1}
    assert conflict.suggested_action is Strategy.MERGE  # both sides hold something unique
    assert conflict.incoming.cost == Decimal("0.5000001")
    assert conflict.existing.cost == Decimal("0.375")
    assert (conflict.existing.started_at, conflict.existing.ended_at) == (A["timestamp"],
                                                                          C["timestamp"])

    def suggestion(incoming: list[dict[str, Any]], existing: list[dict[str, Any]]) -> Strategy:
        plan, _ = plan_of(Strategy.MERGE, incoming, stored(*existing),
                          stored_session=STORED_SESSION)
        conflict = plan.conflict()
        assert conflict is not None
        return conflict.suggested_action

    assert suggestion([A, B], [A, B]) is Strategy.SKIP  # identical
    assert suggestion([A, B, D], [A, B]) is Strategy.MERGE  # the upload continues it
    assert suggestion([A, B2], [A, B]) is Strategy.REPLACE  # all of it, changed
    assert suggestion([A], [A, B]) is Strategy.SKIP  # yours has more
    new, _ = plan_of(Strategy.MERGE, [A], {})
    assert new.conflict() is None  # nothing to conflict with


KEY = b"a deployment's copy-id secret, 64 characters long, never rotated"
OWNER, OTHER = "66ad9b005f2b4a0012c0bbbb", "66ad9b005f2b4a0012c0cccc"


def test_copies_get_ids_derived_from_the_owner_and_keep_their_shape() -> None:
    assert copy_id(KEY, OWNER, "s1") == copy_id(KEY, OWNER, "s1") != copy_id(KEY, OTHER, "s1")
    # keyed: who lacks the deployment's secret derives other ids (nothing to squat)
    assert copy_id(KEY, OWNER, "s1") != copy_id(KEY[::-1], OWNER, "s1")
    assert uuidlib.UUID(copy_id(KEY, OWNER, "s1")).version == 8
    assert copy_id(KEY, OWNER, "a_tool_2") == f"{copy_id(KEY, OWNER, 'a')}_tool_2"
    original = {**message("a", "hi"), "parentUuid": "p"}
    copied = SessionIds(KEY, OWNER, "stored-session", True, frozenset()).message(original)
    assert copied["sessionId"] == "stored-session"
    assert copied["uuid"] == copy_id(KEY, OWNER, "a")
    assert copied["parentUuid"] == copy_id(KEY, OWNER, "p")
    assert copied["contentHash"] == content_hash(copied["uuid"], "assistant",
                                                 copied["timestamp"], "hi")
    assert original["uuid"] == "a"  # the upload's record is not changed
    derived = SessionIds(KEY, OWNER, "stored-session", True, frozenset()).message(
        message("a_result_0", hashed=False))
    assert "contentHash" not in derived  # derived documents carry none, copies neither


def test_a_foreign_uuid_is_renamed_with_its_tool_documents_and_references_to_it() -> None:
    ids = SessionIds(KEY, OWNER, "s1", False, frozenset({"a"}))
    a, b = message("a", "hi"), {**message("b"), "parentUuid": "a"}
    tool = {**message("a_tool_0", hashed=False), "parentUuid": "a"}
    untouched = {**message("c"), "parentUuid": "b"}
    renamed = copy_id(KEY, OWNER, "a")
    assert ids.message(a)["uuid"] == renamed
    assert ids.message(a)["contentHash"] == content_hash(renamed, "assistant", a["timestamp"],
                                                         "hi")
    assert (ids.message(tool)["uuid"], ids.message(tool)["parentUuid"]) == (
        f"{renamed}_tool_0", renamed)
    assert ids.message(b) == {**b, "parentUuid": renamed}  # its own uuid and hash kept
    assert ids.message(untouched) is untouched
    # in a copy, the foreign step applies to the copy's ids: derived once more
    copy = SessionIds(KEY, OWNER, "s2", True, frozenset({copy_id(KEY, OWNER, "a")}))
    assert copy.uuid("a") == copy_id(KEY, OWNER, copy_id(KEY, OWNER, "a"))
    assert copy.uuid("b") == copy_id(KEY, OWNER, "b")


def test_ids_claude_codes_line_names_follow_a_copy() -> None:
    """What the line kept in claudeCode names (the message a tool result answers, the parent
    across a compaction, a summary's leaf) is the copy's, as uuid and parentUuid are."""
    line = {"keys": ["uuid", "sourceToolAssistantUUID", "logicalParentUuid", "agentId"],
            "fields": {"sourceToolAssistantUUID": "a", "logicalParentUuid": "p",
                       "agentId": "e1c84ba5", "slug": "a"},
            "order": 3}
    original = {**message("b", "hi"), "parentUuid": "a", "claudeCode": line}
    ids = SessionIds(KEY, OWNER, "stored-session", True, frozenset())
    copied = ids.message(original)
    assert copied["claudeCode"] == {**line, "fields": {
        "sourceToolAssistantUUID": copy_id(KEY, OWNER, "a"),
        "logicalParentUuid": copy_id(KEY, OWNER, "p"),
        "agentId": "e1c84ba5", "slug": "a"}}  # not ids of messages: as they were
    assert original["claudeCode"]["fields"]["sourceToolAssistantUUID"] == "a"
    # a sessionId kept verbatim (one the stored field could not give back) is the copy's too
    odd = {**original, "claudeCode": {**line, "fields": {"sessionId": "s1"}}}
    assert ids.message(odd)["claudeCode"]["fields"] == {"sessionId": "stored-session"}
    # a foreign message named only by a kept key: the key follows its rename, nothing else
    foreign = SessionIds(KEY, OWNER, "s1", False, frozenset({"a"}))
    plain = {**message("c"), "claudeCode": {**line, "fields": {"sourceToolAssistantUUID": "a"}}}
    renamed = foreign.message(plain)
    assert renamed["uuid"] == "c"
    assert renamed["claudeCode"]["fields"] == {"sourceToolAssistantUUID": copy_id(KEY, OWNER,
                                                                                  "a")}
    untouched = {**message("c"), "claudeCode": {**line, "fields": {"agentId": "a"}}}
    assert foreign.message(untouched) is untouched
    # the session's kept summary lines name their leaf
    session = {"sessionId": "s1", "summary": "x", "claudeCode": {"summaries": [
        {"type": "summary", "summary": "x", "leafUuid": "a"}]}}
    assert ids.session(session)["claudeCode"]["summaries"] == [
        {"type": "summary", "summary": "x", "leafUuid": copy_id(KEY, OWNER, "a")}]
    assert SessionIds(KEY, OWNER, "s1", False, frozenset()).session(session) is session


def test_merge_brings_claude_codes_line_to_a_message_imported_before_it_was_kept() -> None:
    """The same transcript imported again: the messages are the same (contentHash), but the
    ones stored by an earlier dataport lack claudeCode and the computed cost; merge takes the
    upload's version of those, once, and adds no message."""
    line = {"keys": ["type", "uuid", "isMeta"], "fields": {"isMeta": True}, "order": 0}
    old_a, old_b = A, {k: v for k, v in B.items() if k != "costUsd"}
    new_a = {**A, "claudeCode": line}
    new_b = {**B, "claudeCode": {**line, "order": 1}, "costComputedBy": "genai-prices 0.2.5"}
    plan, ops = plan_of(Strategy.MERGE, [new_a, new_b], stored(old_a, old_b),
                        stored_session=STORED_SESSION)
    assert [(op.kind, op.doc["uuid"]) for op in ops] == [("update", "a"), ("update", "b")]
    assert plan.counts().inserted == 0
    assert plan.action is SessionAction.MERGE
    assert plan.session_document(project_id=PROJECT, job_id="j", now=NOW)["totalCost"] == \
        Decimal128("0.25")  # the computed cost counts now
    # the same upload again: nothing left to bring
    again, ops = plan_of(Strategy.MERGE, [new_a, new_b], stored(new_a, new_b),
                         stored_session=STORED_SESSION)
    assert ops == []
    assert again.action is SessionAction.UNCHANGED
    # an upload without the line (a JSON package of ClaudeLens' own data) takes nothing away
    bare, ops = plan_of(Strategy.MERGE, [old_a], stored(new_a), stored_session=STORED_SESSION)
    assert ops == []
    assert bare.action is SessionAction.UNCHANGED
    # a line that differs (its place in the file, a newer price source) is the upload's too
    moved = {**new_a, "claudeCode": {**line, "order": 5}}
    _, ops = plan_of(Strategy.MERGE, [moved], stored(new_a), stored_session=STORED_SESSION)
    assert [op.kind for op in ops] == ["update"]
