"""A restore in shards keeps its copies of the user's data sealed (imports.sealed), end to end
on the local stack (real ASL in moto, real KMS data keys in moto, real pymongo): an encrypted
backup restored in shards leaves nothing of its records readable on S3 while the shards run
(every object read raw, and opened every way it could be: zip, zstd, zlib, gzip), restores
exactly, and its parts are gone after; a sealed part changed behind its pin is refused by its
seal (`backup_corrupted`), nothing of it written. An encrypted import (a password-protected
zip through POST /imports) seals the records its Validate checked with a data key of its own
(context `importId`); an unencrypted one asks nothing of KMS."""

from __future__ import annotations

import contextlib
import gzip
import io
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from bson import ObjectId
from pymongo.database import Database

from dataport.bucket import packages_bucket
from dataport.imports import storage
from dataport.imports.readers.dataport_json import DataportJsonSource
from dataport.imports.sealed import MAGIC
from dataport.jobs.store import JobStore
from dataport.models.jobs import Job
from dataport.source.collections import SESSIONS
from dataport.source.mongo import Document
from dataport.source.writes import IMPORT_TAG
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import Importer, snapshot
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_restore_handover import hand_over
from tests.e2e.test_restore_shards import shard_size
from tests.e2e.test_restores import OWNER, content, forget, made_backup
from tests.fixtures.faults import before_each_call
from tests.infrastructure.iam import assert_calls_allowed
from tests.restores.backups import of_user

PASSWORD = "Tr0ub4dor&3-sealed"


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_sealed_parts",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def owner(fresh_stack: LocalStack) -> Restorer:
    return Restorer(Api(fresh_stack, OWNER))


def texts(value: Any) -> Iterator[str]:
    """The record text in a document: every string with a space in it (not an id or a date)."""
    if isinstance(value, str):
        if " " in value.strip() and len(value) >= 12:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def readable(blob: bytes) -> Iterator[bytes]:
    """The object as stored, and whatever opening it as a zip of zstd members, zlib, gzip or
    zstd gives."""
    yield blob
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            for name in archive.namelist():
                member = archive.read(name)
                yield member
                yield from readable(member)
    except (zipfile.BadZipFile, RuntimeError, ValueError):
        pass
    for inflate in (zlib.decompress, gzip.decompress,
                    lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)):
        with contextlib.suppress(zlib.error, OSError, EOFError, zstandard.ZstdError):
            yield inflate(blob)


def every_import_object(stack: LocalStack) -> dict[str, bytes]:
    s3 = stack.client("s3")
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket,
                                                             Prefix="imports/"):
        for item in page.get("Contents", []):
            found[item["Key"]] = s3.get_object(Bucket=stack.bucket,
                                               Key=item["Key"])["Body"].read()
    return found


def watched(db: Database[Document], owner: Restorer, stack: LocalStack,
            monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], dict[str, Any],
                                                      dict[str, bytes]]:
    """(the user's data, an encrypted backup of it made by POST /backups, what is under
    `imports/` each time an Execute begins: filled as the restore runs); the data then lost."""
    expected = content(db, OWNER)
    made = made_backup(owner.api, {"name": "sealed", "password": PASSWORD})
    forget(db, list(expected))
    return expected, made, seen_by_execute(stack, monkeypatch)


def seen_by_execute(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """What is under `imports/` each time an Execute begins, filled as the job runs: what
    Validate left for Execute (and a shard's part)."""
    seen: dict[str, bytes] = {}
    monkeypatch.setitem(stack.handler_overrides, "ImportExecuteFunction",
                        before_each_call("import_execute",
                                         lambda _: seen.update(every_import_object(stack))))
    return seen


def kms_calls(stack: LocalStack) -> list[tuple[str, str, dict[str, str]]]:
    """(function, operation, encryption context) of every KMS call the functions made."""
    return [(d.call.logical_id, d.call.operation, dict(d.params.get("EncryptionContext", {})))
            for d in stack.call_details if d.call.service == "kms"]


def in_clear(seen: dict[str, bytes], expected: dict[str, Any]) -> list[str]:
    """The objects in which some record text of `expected` can be read."""
    markers = {text.encode() for session, messages in expected.values()
               for doc in (session, *messages.values()) for text in texts(doc)}
    assert len(markers) > 20, markers  # the seed's summaries and messages
    return sorted({key for key, blob in seen.items() for form in readable(blob)
                   for marker in markers if marker in form})


def test_an_encrypted_backup_restored_in_shards_lies_in_clear_nowhere(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected, made, seen = watched(db, owner, fresh_stack, monkeypatch)
    shard_size(monkeypatch, max(1, made["counts"]["messages"] // 3))
    job = owner.run(backupId=made["backupId"], mode="merge", password=PASSWORD, timeout=180)
    assert job["status"] == "succeeded", job
    assert len(job["shards"]) >= 2, job
    assert content(db, OWNER) == expected  # exact

    parts = [key for key in seen if key.startswith(storage.shard_parts_prefix(job["jobId"]))]
    checked = [key for key in seen if key.endswith("/checked")]
    assert len(parts) == len(job["shards"]), sorted(seen)
    assert checked, sorted(seen)  # the shards kept what they checked: sealed too
    assert in_clear(seen, expected) == []
    assert all(seen[key].startswith(MAGIC) for key in parts + checked)
    # the key that seals them is nowhere in the clear either: only KMS's ciphertext
    assert storage.parts_data_key(job["jobId"]) in seen
    # all gone once the restore ended
    left = packages_bucket().keys(storage.prefix(job["jobId"]))
    assert [key for key in left if "/shards/" in key or key.endswith("parts.key")] == []
    assert all(not key.endswith("/checked") for key in every_import_object(fresh_stack))
    assert_calls_allowed(fresh_stack)


def test_a_sealed_part_changed_behind_its_pin_is_refused_and_nothing_written(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who could write the bucket and the shard's job row (its pin's ETag) still
    cannot make a shard restore other data: the part's seal refuses it."""
    expected = content(db, OWNER)
    made = made_backup(owner.api, {"name": "sealed parts", "password": PASSWORD})
    forget(db, list(expected))
    before = snapshot(db)
    shard_size(monkeypatch, max(1, made["counts"]["messages"] // 3))
    changed: list[str] = []
    store, bucket = JobStore(), packages_bucket()

    first = threading.Lock()  # shards run in parallel: one part changed

    def tamper(event: Any) -> None:
        if not first.acquire(blocking=False):
            return
        shard: Job = store.require(event["jobId"])
        pin = shard.import_state.upload_pin
        assert pin is not None
        assert pin.sealing is not None
        blob = bytearray(bucket.read_range(pin.key, 0, pin.bytes))
        blob[len(blob) // 2] ^= 0x01
        bucket.put(pin.key, bytes(blob), {})
        store.take(shard.job_id)  # running: its tasks' updates apply
        store.update_import(shard.job_id, upload_pin=bucket.pin_written(pin.key).model_copy(
            update={"sealing": pin.sealing}))
        changed.append(shard.job_id)

    monkeypatch.setitem(fresh_stack.handler_overrides, "ImportValidateFunction",
                        before_each_call("import_validate", tamper))
    job = owner.run(backupId=made["backupId"], mode="merge", password=PASSWORD, timeout=180)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "shards_failed"
    refused = store.require(changed[0])
    assert refused.error is not None
    assert refused.error.code == "backup_corrupted", refused.error
    assert "fails authentication" in refused.error.message
    restored_by = {doc.get(IMPORT_TAG) for doc in db[SESSIONS].find({})}
    assert changed[0] not in restored_by  # nothing of the changed part written
    # the other shards restored theirs; the rollback puts everything back
    assert owner.rollback(job["jobId"], timeout=300)["status"] == "rolled_back"
    assert snapshot(db) == before
    assert packages_bucket().keys(storage.shard_parts_prefix(job["jobId"])) == []


def test_an_encrypted_backup_restored_in_one_execution_keeps_its_checked_records_sealed(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected, made, seen = watched(db, owner, fresh_stack, monkeypatch)
    job = owner.run(backupId=made["backupId"], mode="merge", password=PASSWORD)
    assert job["status"] == "succeeded", job
    assert job.get("shards") is None  # small: one import execution
    assert content(db, OWNER) == expected  # exact, its messages read from the sealed records
    checked = storage.checked_key(job["jobId"])
    assert checked in seen, sorted(seen)
    assert seen[checked].startswith(MAGIC)
    assert in_clear(seen, expected) == []
    assert checked not in every_import_object(fresh_stack)  # gone with the job's Finalize
    assert_calls_allowed(fresh_stack)


def test_a_plan_handed_over_keeps_its_state_and_open_members_sealed(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a plan hands over (its state, the sessionIds it read, the open shards' members,
    the kept lists) is the user's data too: sealed as the parts are."""
    expected = content(db, OWNER)
    backup = of_user(db, ObjectId(OWNER))  # members of 3 documents: a hand-over at each
    backup_id = store_backup(backup, OWNER)
    forget(db, list(expected))
    seen: dict[str, bytes] = {}
    monkeypatch.setitem(fresh_stack.handler_overrides, "RestoreShardsFunction",
                        before_each_call("restore_shards",
                                         lambda _: seen.update(every_import_object(fresh_stack))))
    hand_over(monkeypatch)
    shard_size(monkeypatch, max(1, len(backup.messages) // 4))
    job = owner.run(backupId=backup_id, mode="full", timeout=240)
    assert job["status"] == "succeeded", job
    assert content(db, OWNER) == expected

    handed = [key for key in seen if key.startswith(storage.split_prefix(job["jobId"]))]
    kept = [key for key in seen if key.startswith(storage.kept_prefix(job["jobId"]))]
    assert any("/members/" in key for key in handed), sorted(seen)
    assert any("/state-" in key for key in handed), sorted(seen)
    assert kept, sorted(seen)
    assert in_clear(seen, expected) == []
    assert all(seen[key].startswith(MAGIC) for key in handed + kept)
    assert packages_bucket().keys(storage.split_prefix(job["jobId"])) == []


def test_an_encrypted_import_keeps_its_checked_records_sealed_with_a_key_of_its_own(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A password-protected package through POST /imports (not a restore): what its Validate
    checked is kept for Execute sealed, under a data key made for this import alone."""
    importer = Importer(owner.api)
    expected = content(db, OWNER)
    package = owner.api.export(tmp_path, {"format": "json", "options": {
        "encryption": {"password": PASSWORD}}}).read_bytes()
    forget(db, list(expected))
    seen = seen_by_execute(fresh_stack, monkeypatch)
    job = importer.validated(package, password=PASSWORD)
    assert job["status"] == "awaiting_decision", job
    done = importer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert content(db, OWNER) == expected  # exact, read from the sealed records
    checked = storage.checked_key(job["jobId"])
    assert checked in seen, sorted(seen)
    assert seen[checked].startswith(MAGIC)
    assert in_clear(seen, expected) == []
    assert checked not in every_import_object(fresh_stack)  # gone with the job's Finalize
    made = [(function, context) for function, operation, context in kms_calls(fresh_stack)
            if operation == "GenerateDataKey"]
    assert made == [("ImportValidateFunction", {"importId": job["jobId"]})]
    opened = [function for function, operation, context in kms_calls(fresh_stack)
              if operation == "Decrypt" and context == {"importId": job["jobId"]}]
    assert "ImportExecuteFunction" in opened
    assert_calls_allowed(fresh_stack)


def test_an_unencrypted_import_keeps_its_checked_records_as_they_are_without_kms(
        db: Database[Document], owner: Restorer, fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    importer = Importer(owner.api)
    expected = content(db, OWNER)
    package = owner.api.export(tmp_path, {"format": "json"}).read_bytes()
    forget(db, list(expected))
    seen = seen_by_execute(fresh_stack, monkeypatch)
    # dataport's own JSON reads again cheaply and keeps none; kept as a transcript's would be
    monkeypatch.setattr(DataportJsonSource, "read_again_cheaply", False)
    job = importer.run(package, strategy="merge")
    assert job["status"] == "succeeded", job
    assert content(db, OWNER) == expected
    checked = storage.checked_key(job["jobId"])
    assert checked in seen, sorted(seen)
    assert not seen[checked].startswith(MAGIC)
    assert in_clear(seen, expected) != []  # not sealed: the records read as they are
    assert kms_calls(fresh_stack) == []
    assert_calls_allowed(fresh_stack)
