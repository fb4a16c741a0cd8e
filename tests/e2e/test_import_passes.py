"""How often an import reads its upload: validation stages it in the same pass (a clean
upload) and keeps the records it checked for the execution (imports.checked), so a transcript is
parsed once in all; dataport's own JSON reads again cheaply, keeps none and is read again by the
execution (docs/imports.md); an upload with errors leaves nothing staged and nothing kept."""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from pymongo.database import Database

from dataport.imports import validate as validation
from dataport.imports.checked import CODEC, CheckedWriter
from dataport.source.mongo import Document
from dataport.source.staging import STAGING
from dataport.workflows import imports as import_tasks
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import EMPTY_USER, Importer, snapshot


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_import", sessions_per_project=2) as database:
        yield database


@pytest.fixture
def newcomer(fresh_stack: LocalStack) -> Importer:
    return Importer(Api(fresh_stack, EMPTY_USER))


@pytest.fixture
def package(db: Database[Document], fresh_stack: LocalStack, tmp_path: Path) -> bytes:
    return Api(fresh_stack, seed.DEMO_USER_ID).export(tmp_path, {"format": "json"}).read_bytes()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tasks that opened the upload's readers, in order."""
    calls: list[str] = []

    def counting(module: Any, name: str) -> None:
        original = module.open_import

        def open_import(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, "open_import", open_import)

    counting(validation, "validate")
    counting(import_tasks, "stage or execute")
    return calls


def _transcript(session_id: str, uuids: list[str], start: datetime) -> bytes:
    return "".join(json.dumps({
        "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/w",
        "sessionId": session_id, "version": "1.0.67", "type": "user",
        "message": {"role": "user", "content": f"line {i}"}, "uuid": uid,
        "timestamp": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")}) + "\n"
        for i, uid in enumerate(uuids)).encode()


def _session_upload() -> bytes:
    """A Claude transcript of one session (its reader keeps the records it checked)."""
    return _transcript(str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(40)],
                       datetime(2025, 8, 2, 4, 52, tzinfo=UTC))


def test_a_transcript_is_parsed_once_validation_staging_it_and_keeping_its_records(
        db: Database[Document], newcomer: Importer, fresh_stack: LocalStack,
        opened: list[str]) -> None:
    job = newcomer.validated(_session_upload(), "session.jsonl")
    assert job["status"] == "awaiting_decision", job
    assert opened == ["validate"]  # staged (and compared) without reading it again
    assert job["report"]["conflicts"]["newSessions"] == job["report"]["counts"]["sessions"]
    assert "checked" in objects(fresh_stack, job["jobId"])
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert opened == ["validate"]  # the execution read the records validation checked
    assert done["outcome"]["messages"]["inserted"] == job["report"]["counts"]["messages"] == 40
    assert {"validated", "checked"}.isdisjoint(objects(fresh_stack, job["jobId"]))  # gone


def test_a_dataport_package_keeps_no_checked_records_and_is_read_again_by_the_execution(
        db: Database[Document], package: bytes, newcomer: Importer, fresh_stack: LocalStack,
        opened: list[str]) -> None:
    """Its own layout reads again at orjson's speed, beside the execution's writes: cheaper
    than keeping its records in the validation, which the user waits for."""
    job = newcomer.validated(package)
    assert job["status"] == "awaiting_decision", job
    assert opened == ["validate"]
    assert job["report"]["conflicts"]["newSessions"] == job["report"]["counts"]["sessions"]
    assert "checked" not in objects(fresh_stack, job["jobId"])
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert opened == ["validate", "stage or execute"]
    assert done["outcome"]["messages"]["inserted"] == job["report"]["counts"]["messages"]
    assert "validated" not in objects(fresh_stack, job["jobId"])


def test_without_the_checked_records_the_execution_reads_the_upload_again(
        db: Database[Document], newcomer: Importer, fresh_stack: LocalStack,
        opened: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A record BSON cannot hold (or a job validated before the object existed): no object is
    kept and the execution parses the pinned upload again, as before."""

    def refuse(self: CheckedWriter, record: Any) -> None:
        raise bson.errors.InvalidDocument("not for BSON")

    monkeypatch.setattr(CheckedWriter, "add", refuse)
    job = newcomer.validated(_session_upload(), "session.jsonl")
    assert job["status"] == "awaiting_decision", job
    assert "checked" not in objects(fresh_stack, job["jobId"])
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert opened == ["validate", "stage or execute"]
    assert done["outcome"]["messages"]["inserted"] == job["report"]["counts"]["messages"]


def test_checked_records_changed_after_validation_are_refused_and_nothing_is_written(
        db: Database[Document], newcomer: Importer, fresh_stack: LocalStack) -> None:
    """The execution does not check the checked records again: their pin (If-Match on every
    GET) is what proves they are the bytes validation checked. Records put in their place
    (here a message that fails the checks) are never read: the job fails with upload_changed
    and writes nothing."""
    before = snapshot(db)
    job = newcomer.validated(_session_upload(), "session.jsonl")
    assert job["status"] == "awaiting_decision", job
    s3 = fresh_stack.client("s3")
    key = f"imports/{job['jobId']}/checked"
    evil = {"k": "message", "f": "x.json", "d": {"uuid": "u", "sessionId": "s", "type": "evil"}}
    s3.put_object(Bucket=fresh_stack.bucket, Key=key,
                  Body=zlib.compress(bson.encode(evil, codec_options=CODEC)))
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "upload_changed", done["error"]
    assert snapshot(db) == before


def objects(stack: LocalStack, job_id: str) -> list[str]:
    found = stack.client("s3").list_objects_v2(Bucket=stack.bucket,
                                               Prefix=f"imports/{job_id}/").get("Contents", [])
    return sorted(item["Key"].removeprefix(f"imports/{job_id}/") for item in found)


def test_an_upload_with_an_error_late_in_it_leaves_nothing_staged(
        db: Database[Document], newcomer: Importer, fresh_stack: LocalStack,
        opened: list[str]) -> None:
    start = datetime(2025, 8, 2, 4, 52, tzinfo=UTC)
    first = [str(uuid.uuid4()) for _ in range(1500)]  # more than a batch: staged before
    upload = (_transcript(str(uuid.uuid4()), first, start)
              + _transcript(str(uuid.uuid4()), [first[0]], start))  # a duplicate uuid
    job = newcomer.validated(upload, "late-error.jsonl")
    assert job["status"] == "failed", job
    assert job["report"]["errors"][0]["code"] == "duplicate_uuid"
    assert opened == ["validate"]
    assert db[STAGING].count_documents({"g": {"$regex": f"^{job['jobId']}:"}}) == 0
    assert objects(fresh_stack, job["jobId"]) == []  # no checked records kept either


def test_an_upload_not_grouped_by_session_is_staged_in_full_by_stage(
        db: Database[Document], newcomer: Importer, opened: list[str]) -> None:
    start = datetime(2025, 8, 2, 4, 52, tzinfo=UTC)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(4)]
    upload = (_transcript(first, ids[:2], start) + _transcript(second, ids[2:3], start)
              + _transcript(first, ids[3:], start + timedelta(minutes=1)))
    job = newcomer.validated(upload, "interleaved.jsonl")
    assert job["status"] == "awaiting_decision", job
    assert opened == ["validate", "stage or execute"]  # once more, every record in full
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert opened == ["validate", "stage or execute"]  # executed from staging alone
    assert done["outcome"]["sessions"]["inserted"] == 2
