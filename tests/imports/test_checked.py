"""The records validation checked, kept for the execution (imports.checked): what goes in comes
back, kind, location and document, type for type (as a write and a read of MongoDB give: an int
may come back as Int64); a large object streams as a multipart upload that an abort leaves
nothing of; every read requires the pinned ETag, and a cut object is refused.

S3 is moto in-process (If-Match answered as S3 does)."""

from __future__ import annotations

import os
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import bson
import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.raw_bson import RawBSONDocument
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataport.bucket import PackagesBucket
from dataport.errors import UploadChanged
from dataport.imports import storage
from dataport.imports.checked import (
    CODEC,
    CheckedWriter,
    Encoded,
    decoded,
    read_checked,
    tagged,
)
from dataport.imports.validate import recheck
from dataport.models.records import ImportRecord, Location, RecordKind
from dataport.source.writes import IMPORT_TAG
from tests.benchmarks.import_bench import write_input
from tests.imports.support import read
from tests.imports.test_roundtrip import bson_values, keys
from tests.unit.format_sink import assert_same

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

JOB = "job-checked"
MIB = 2**20

locations = st.builds(Location, st.text(max_size=20), st.none() | st.integers(1, 10**9),
                      st.none() | st.text(max_size=40))
records = st.builds(ImportRecord, st.sampled_from(list(RecordKind)),
                    st.dictionaries(keys, bson_values, max_size=6), locations)


def written(bucket: PackagesBucket, items: list[ImportRecord], part_size: int = 5 * MIB
            ) -> list[ImportRecord]:
    writer = CheckedWriter(bucket, JOB, part_size=part_size)
    for record in items:
        writer.add(record)
    pin = writer.complete()
    assert pin.key == storage.checked_key(JOB) == f"imports/{JOB}/checked"
    return list(read_checked(storage.open_pinned(bucket, pin)))


def assert_same_records(actual: list[ImportRecord], expected: list[ImportRecord]) -> None:
    """Messages come back encoded, their headers what their documents hold; whole, the same
    fields in the same order (but for `_id` and the import tag, which every write sets)."""
    assert len(actual) == len(expected)
    for got, record in zip(actual, expected, strict=True):
        assert (got.kind, got.location) == (record.kind, record.location)
        assert isinstance(got.doc, Encoded) is (record.kind is RecordKind.MESSAGE)
        whole = decoded(got.doc)
        assert_same(whole, record.doc, ordered=False)
        assert _in_order(whole) == _in_order(record.doc)
        if isinstance(got.doc, Encoded):
            header = {key: value for key, value in got.doc.items() if key != "messageData"}
            assert_same(header, {key: whole[key] for key in header})
            if "messageData" in got.doc:
                assert got.doc["messageData"] == {"id": whole["messageData"]["id"]}


def _in_order(doc: dict[str, Any]) -> list[str]:
    return [key for key in doc if key not in ("_id", IMPORT_TAG)]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=st.lists(records, max_size=12))
def test_what_goes_in_comes_back_type_for_type(bucket: PackagesBucket,
                                               items: list[ImportRecord]) -> None:
    assert_same_records(written(bucket, items), items)


def test_the_readers_records_come_back_and_pass_the_checks_again(
        bucket: PackagesBucket, tmp_path: Path) -> None:
    upload = tmp_path / "conversations-0001.json"
    write_input(upload, 300_000)
    items, issues = read(upload.read_bytes(), upload.name)
    assert issues == []
    assert len(items) > 100
    back = written(bucket, items)
    assert_same_records(back, items)
    whole = [ImportRecord(r.kind, decoded(r.doc), r.location) for r in back]
    assert list(recheck(whole)) == whole


def test_a_message_whose_ids_are_kept_is_inserted_as_its_bytes_behind_a_new_id_and_tag(
        bucket: PackagesBucket) -> None:
    doc = {"_id": ObjectId(), "uuid": "u1", "sessionId": "s1", "type": "assistant",
           "timestamp": datetime(2025, 6, 2, 8, tzinfo=UTC), IMPORT_TAG: "an-earlier-job",
           "messageData": {"id": "msg_1", "content": [{"type": "text", "text": "hi"}]},
           "costUsd": Decimal128("0.5"), "usage": {"input_tokens": bson.Int64(3)}}
    [back] = written(bucket, [ImportRecord(RecordKind.MESSAGE, doc, Location("a.json"))])
    assert isinstance(back.doc, Encoded)
    new_id = ObjectId()
    stored = back.doc.stored(new_id, tagged("this-job"))
    assert isinstance(stored, RawBSONDocument)
    body = {key: value for key, value in doc.items() if key not in ("_id", IMPORT_TAG)}
    assert bytes(stored.raw).endswith(bson.encode(body, codec_options=CODEC)[4:])  # as written
    assert_same(bson.decode(stored.raw, CODEC), {"_id": new_id, IMPORT_TAG: "this-job", **body})


def test_a_large_object_streams_in_parts_and_an_abort_leaves_nothing(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    noise = [ImportRecord(RecordKind.MESSAGE, {"uuid": str(i), "blob": os.urandom(MIB)},
                          Location("big.json", path=f"$.m[{i}]")) for i in range(12)]
    writer = CheckedWriter(bucket, JOB, part_size=5 * MIB)
    for record in noise:
        writer.add(record)
    uploads = s3_client.list_multipart_uploads(Bucket=packages_bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [storage.checked_key(JOB)]  # past one part: streamed
    writer.abort()
    assert s3_client.list_multipart_uploads(Bucket=packages_bucket).get("Uploads", []) == []
    assert not bucket.exists(storage.checked_key(JOB))
    assert_same_records(written(bucket, noise), noise)


def test_a_changed_or_cut_object_is_not_read(s3_client: S3Client, packages_bucket: str,
                                             bucket: PackagesBucket) -> None:
    item = ImportRecord(RecordKind.SESSION, {"sessionId": "s1"}, Location("a.json"))
    writer = CheckedWriter(bucket, JOB)
    writer.add(item)
    pin = writer.complete()
    body = s3_client.get_object(Bucket=packages_bucket, Key=pin.key)["Body"].read()
    other = zlib.compress(bson.encode({"k": "session", "d": {"sessionId": "evil"}, "f": "a"},
                                      codec_options=CODEC))
    s3_client.put_object(Bucket=packages_bucket, Key=pin.key, Body=other)
    with pytest.raises(UploadChanged):
        list(read_checked(storage.open_pinned(bucket, pin)))
    s3_client.put_object(Bucket=packages_bucket, Key=pin.key, Body=body[:-3])
    with pytest.raises(UploadChanged, match="cannot be read back"):
        list(read_checked(storage.open_pinned(bucket, bucket.pin_written(pin.key))))


def test_what_the_compressing_thread_fails_to_write_is_raised_and_nothing_is_left(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    """The records are deflated and written in a thread of its own: its error reaches the
    caller (add or complete), and abort waits for that thread before it cleans up."""
    writer = CheckedWriter(bucket, JOB, part_size=5 * MIB)
    written_before = writer._out.write  # the bucket's writer, made to fail
    calls: list[int] = []

    def failing(data: bytes) -> int | None:
        calls.append(len(data))
        if len(calls) > 1:
            raise RuntimeError("S3 said no")
        return written_before(data)

    def add_and_complete() -> None:
        for number in range(2_000):  # ~8 MB: chunks go to the thread while records are added
            writer.add(ImportRecord(RecordKind.MESSAGE, {"uuid": str(number),
                                                         "blob": os.urandom(4096)},
                                    Location("big.json")))
        writer.complete()

    with mock.patch.object(writer._out, "write", failing), \
            pytest.raises(RuntimeError, match="S3 said no"):
        add_and_complete()
    assert len(calls) == 2  # the second chunk failed, and nothing was written after it
    writer.abort()
    assert not bucket.exists(storage.checked_key(JOB))
    assert s3_client.list_multipart_uploads(Bucket=packages_bucket).get("Uploads", []) == []


@pytest.mark.parametrize("value", ["\ud800", 2**70, object()])
def test_a_record_bson_cannot_hold_is_refused_when_added(bucket: PackagesBucket,
                                                          value: Any) -> None:
    """(It could not be written to MongoDB either; validation then keeps no object and the
    execution reads the upload.)"""
    writer = CheckedWriter(bucket, JOB)
    with pytest.raises((ValueError, OverflowError, bson.errors.InvalidDocument)):
        writer.add(ImportRecord(RecordKind.MESSAGE, {"x": value}, Location("a.json")))
    writer.abort()


# --- the bucket's streamed writes (listings, journal entries, the checked records) ----------

def test_a_small_write_is_one_put_and_a_large_one_streams_in_parts(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    calls: list[str] = []
    s3_client.meta.events.register("before-call.s3.*",
                                   lambda model, **_: calls.append(model.name))
    with bucket.open_write("imports/j/small.jsonl") as out:
        out.write(b'{"a": 1}\n')
        out.write(b'{"b": 2}\n')
    assert calls == ["PutObject"]
    assert bucket.read_range("imports/j/small.jsonl", 0, 18) == b'{"a": 1}\n{"b": 2}\n'
    big = os.urandom(6 * MIB)
    with bucket.open_write("imports/j/big", part_size=5 * MIB) as out:
        out.write(big[:3 * MIB])
        out.write(big[3 * MIB:])
    assert "UploadPart" in calls
    assert "CompleteMultipartUpload" in calls
    assert s3_client.get_object(Bucket=packages_bucket, Key="imports/j/big")["Body"].read() == big
    def failing() -> None:
        with bucket.open_write("imports/j/gone", 5 * MIB) as out:
            out.write(big)  # past one part: a multipart upload is open
            raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        failing()
    assert not bucket.exists("imports/j/gone")
    assert s3_client.list_multipart_uploads(Bucket=packages_bucket).get("Uploads", []) == []


def test_a_journal_entry_reads_back(bucket: PackagesBucket) -> None:
    key = storage.journal_key(JOB, "run", 1)
    docs = [("messages_2025_06", {"_id": i, "at": bson.Int64(i), "n": [i] * 3})
            for i in range(200)]
    assert storage.write_journal(bucket, key, [{"s": "s1", "i": "s1", "a": "merge"}],
                                 docs) == 200
    sessions, back = storage.read_journal(bucket, key)
    assert sessions == [{"s": "s1", "i": "s1", "a": "merge"}]
    assert list(back) == docs
    assert bucket.read_range(key, 0, 2) == b"\x1f\x8b"  # gzipped, as its name says
