"""Real Claude Code transcripts (tests/imports/transcripts) through the local stack: imported over
the API into MongoDB, exported as Claude-native JSONL, every key of every kept line compared
with the original in its own file, and the export imported again without a change."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson.decimal128 import Decimal128
from pymongo.database import Database

from dataport.models.documents import (
    CLAUDE_CODE,
    COST_COMPUTED_BY,
    is_compact_summary,
    is_meta,
    transcript_file,
)
from dataport.pricing import PRICE_SOURCE
from dataport.source.collections import SESSIONS
from dataport.source.mongo import Document
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import EMPTY_USER, Importer, messages_of
from tests.imports.fidelity import (
    FIXTURES,
    compare,
    fixture_lines,
    kept,
    package_lines,
    upload,
)
from tests.imports.test_transcripts import SESSIONS as FIXTURE_SESSIONS


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_fidelity", sessions_per_project=1) as db_:
        yield db_


def test_real_transcripts_come_back_line_for_line_through_the_stack(
        db: Database[Document], fresh_stack: LocalStack, tmp_path: Path) -> None:
    user = Importer(Api(fresh_stack, EMPTY_USER))
    job = user.run(upload(FIXTURES), "claude-projects.zip", strategy="merge")
    assert job["status"] == "succeeded", job
    report = job["report"]
    assert report["format"] == "claude-transcript"
    assert report["errorsTotal"] == 0
    # every line of a kept type is kept (the compaction boundary, a system line, too), and the
    # progress lines a line's thread runs through (2.1.14's SessionStart hook); the other
    # progress lines and the file-history snapshot are counted as skipped
    originals = [line for fixture in FIXTURES for line in fixture_lines(fixture)]
    assert report["counts"]["unknownRecords"] == len(originals) - len(kept(originals)) == 6
    (skipped,) = [w for w in report["warnings"] if w["code"] == "skipped_records"]
    assert skipped["message"].endswith("runs through them: 1 progress")

    # what is stored: every line's keys, Claude Code's flags, the sub-agent files, the costs
    stored = {}
    for fixture in FIXTURES:
        for session_id in FIXTURE_SESSIONS[fixture]:
            stored.update(messages_of(db, session_id))
    for fixture in FIXTURES:
        for line in fixture_lines(fixture):
            if "message" in line.record:
                assert stored[line.record["uuid"]][CLAUDE_CODE]["keys"] == list(line.record)
    assert is_meta(stored["5a3fdd4a-ac04-44ec-8323-407fdb4c7c06"])
    assert is_compact_summary(stored["cs"])
    assert transcript_file(stored["showcol1-u1"]) == "subagents/agent-showcol1.jsonl"
    assert transcript_file(stored["agent-uuid-2"]) == "../agent-test-hash-123.jsonl"
    for message in stored.values():
        if message["type"] == "assistant":
            assert message[COST_COMPUTED_BY] == PRICE_SOURCE
    totals = {s["sessionId"]: s["totalCost"] for s in db[SESSIONS].find(
        {"sessionId": {"$in": sorted(set().union(*FIXTURE_SESSIONS.values()))}})}
    assert all(isinstance(total, Decimal128) for total in totals.values())
    assert totals["88a8d761-7b9a-4bf1-a8ca-c1febe6bf358"].to_decimal() == Decimal("0.6686811")
    assert totals["fe5e1c67-53e7-4862-81ae-d0e013e3270b"].to_decimal() == Decimal("0.0178212")
    assert totals["4b2030ed-5563-49ea-b703-6a002f2d3cc8"].to_decimal() == Decimal("0.14355725")

    # the jsonl export: every key of every kept line, in the file it came from
    exported = user.api.export(tmp_path, {"format": "jsonl"})
    lines = package_lines(exported.read_bytes())
    fidelity = compare(originals, lines)
    assert fidelity.problems == []
    assert fidelity.share() == 1.0
    assert {line.path for line in originals} <= set(lines)
    for path, exported_lines in lines.items():  # each file's lines in their order
        assert [line.get("uuid") for line in exported_lines if line.get("type") != "summary"] == [
            line.record["uuid"] for line in kept(originals)
            if line.path == path and line.record.get("type") != "summary"]
    with zipfile.ZipFile(exported) as archive:
        assert b'"priceSource": "' + PRICE_SOURCE.encode() in archive.read("manifest.json")

    # the export imported again: the same sessions, nothing to change
    again = user.run(exported.read_bytes(), "export.zip", strategy="merge")
    assert again["status"] == "succeeded", again
    sessions = len(set().union(*FIXTURE_SESSIONS.values()))
    assert again["report"]["conflicts"]["identicalSessions"] == sessions
    assert again["outcome"]["sessions"]["unchanged"] == sessions
    for session_id in set().union(*FIXTURE_SESSIONS.values()):
        for uuid, message in messages_of(db, session_id).items():
            if uuid in stored:
                assert message == stored[uuid]


def test_an_export_computes_the_costs_ClaudeLens_stored_without(
        db: Database[Document], fresh_stack: LocalStack, tmp_path: Path) -> None:
    user = Importer(Api(fresh_stack, EMPTY_USER))
    assert user.run(upload(["claude-code-log-2.1.0-compact"]), "claude.zip",
                    strategy="merge")["status"] == "succeeded"
    stored = messages_of(db, "s1")
    for name in db.list_collection_names():  # as ClaudeLens stores a Claude Code 2.x reply
        if name.startswith("messages"):
            db[name].update_many({"sessionId": "s1"},
                                 {"$unset": {"costUsd": "", COST_COMPUTED_BY: ""}})

    def exported(compute: bool) -> tuple[dict[str, Any], bytes]:
        package = user.api.export(tmp_path, {"format": "json",
                                             "options": {"computeCosts": compute}})
        with zipfile.ZipFile(package) as archive:
            data = b"".join(archive.read(n) for n in archive.namelist()
                            if n.startswith("conversations-"))
            return json.loads(archive.read("manifest.json")), data

    manifest, data = exported(True)
    assert manifest["priceSource"] == PRICE_SOURCE
    # every reply priced again, to the digit the import computed, and marked
    for message in stored.values():
        if message["type"] == "assistant":
            cost = json.dumps({"$numberDecimal": str(message["costUsd"])},
                              separators=(",", ":")).encode()
            assert data.count(cost) >= 1
    assert data.count(b'"costComputedBy":"' + PRICE_SOURCE.encode()) == 5
    manifest, data = exported(False)
    assert "priceSource" not in manifest
    assert b"costComputedBy" not in data
    assert b'"costUsd"' not in data


def test_merge_brings_claude_codes_lines_to_a_session_imported_before_they_were_kept(
        db: Database[Document], fresh_stack: LocalStack) -> None:
    user = Importer(Api(fresh_stack, EMPTY_USER))
    fixture = upload(["claude-code-log-2.1.0-compact"])
    assert user.run(fixture, "claude.zip", strategy="merge")["status"] == "succeeded"
    stored = messages_of(db, "s1")
    for name in db.list_collection_names():  # as an import before claudeCode stored them
        if name.startswith("messages"):
            db[name].update_many({"sessionId": "s1"}, {"$unset": {
                CLAUDE_CODE: "", "costUsd": "", COST_COMPUTED_BY: ""}})
    assert all(CLAUDE_CODE not in m for m in messages_of(db, "s1").values())

    job = user.run(fixture, "claude.zip", strategy="merge")
    assert job["status"] == "succeeded", job
    assert job["outcome"]["sessions"]["merged"] == 1
    again = messages_of(db, "s1")
    assert set(again) == set(stored)  # not one message more
    for uuid, message in again.items():
        assert {k: v for k, v in message.items() if k not in ("_id", "importJobId")} == {
            k: v for k, v in stored[uuid].items() if k not in ("_id", "importJobId")}
    (session,) = db[SESSIONS].find({"sessionId": "s1"})
    assert session["totalCost"].to_decimal() == 5 * (10 * 3 + 5 * 15) / Decimal(10**6)
    # and a third time, nothing is left to bring
    third = user.run(fixture, "claude.zip", strategy="merge")
    assert third["outcome"]["sessions"]["unchanged"] == 1
