"""The pinned upload (imports.storage.pin_upload / open_pinned), its digest, and the validator's
checks applied again where records are staged (imports.validate.recheck).

S3 is moto in-process, which answers If-Match as S3 does (412 PreconditionFailed)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dataport.bucket import PackagesBucket
from dataport.errors import Conflict, RecordRefused, UploadChanged
from dataport.imports import storage
from dataport.imports import validate as validation
from dataport.imports.digest import UploadDigest, stream_tail
from dataport.imports.validate import recheck, validate
from dataport.models.jobs import UploadPin
from tests.imports.corpus.generate import SID, good_lines, jsonl, zip_of
from tests.imports.support import read, source_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CORPUS = Path(__file__).parent / "corpus"
JOB = "job-pinned"
LINES = jsonl(*good_lines())
TREE = zip_of([(f"projects/-Users-alex/{SID}.jsonl", LINES),
               ("projects/-Users-alex/notes.txt", b"n" * 100_000)])


def pinned(s3: S3Client, bucket: str, content: bytes) -> UploadPin:
    s3.put_object(Bucket=bucket, Key=storage.upload_key(JOB), Body=content)
    return storage.pin_upload(PackagesBucket(s3, bucket), JOB)


def test_the_pin_is_a_copy_with_its_etag_and_size(s3_client: S3Client, packages_bucket: str,
                                                  bucket: PackagesBucket) -> None:
    pin = pinned(s3_client, packages_bucket, LINES)
    assert pin.key == f"imports/{JOB}/validated"
    assert pin.bytes == len(LINES)
    head = s3_client.head_object(Bucket=packages_bucket, Key=pin.key)
    assert head["ETag"] == pin.etag
    with storage.open_pinned(bucket, pin) as stream:
        assert stream.read() == LINES
    s3_client.delete_object(Bucket=packages_bucket, Key=storage.upload_key(JOB))
    with pytest.raises(Conflict, match="Nothing has been uploaded"):
        storage.pin_upload(bucket, "job-without-upload")


def test_a_pinned_object_that_changed_or_went_is_not_read(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: more than any buffer holds
    pin = pinned(s3_client, packages_bucket, big)
    stream = storage.open_pinned(bucket, pin)
    assert stream.read(10) == big[:10]
    s3_client.put_object(Bucket=packages_bucket, Key=pin.key, Body=big[::-1])
    with pytest.raises(UploadChanged):
        stream.seek(len(big) - 100)  # a new ranged GET, with If-Match
    with pytest.raises(UploadChanged):
        storage.open_pinned(bucket, pin).read()
    s3_client.delete_object(Bucket=packages_bucket, Key=pin.key)
    with pytest.raises(UploadChanged):
        storage.open_pinned(bucket, pin).read()


def test_validation_stops_at_a_changed_pin_instead_of_reporting_it(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    """Not the upload's fault, and no report to show: the job fails with upload_changed."""
    pin = pinned(s3_client, packages_bucket, LINES)
    s3_client.put_object(Bucket=packages_bucket, Key=pin.key, Body=LINES + LINES)
    with pytest.raises(UploadChanged):
        validate(lambda: storage.open_pinned(bucket, pin), f"{SID}.jsonl")


@pytest.mark.parametrize(("content", "name"), [(LINES, f"{SID}.jsonl"), (TREE, "tree.zip")])
def test_the_digest_is_of_every_byte_however_the_readers_read(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket, content: bytes,
        name: str) -> None:
    pin = pinned(s3_client, packages_bucket, content)
    digest = UploadDigest()
    report = validate(lambda: storage.open_pinned(bucket, pin, digest.feed),
                      name)
    assert report.ok, report.errors
    read_by_validation = digest.length
    assert digest.finish(storage.pinned_tail(bucket, pin)) == (
        len(content), hashlib.sha256(content).hexdigest())
    if name.endswith(".jsonl"):  # read front to back: nothing left to read at the end
        assert read_by_validation == len(content)


def test_the_digest_takes_only_what_extends_its_prefix() -> None:
    data = bytes(range(256)) * 40
    digest = UploadDigest()
    digest.feed(5000, data[5000:6000])  # ahead of the prefix: not yet
    digest.feed(0, data[:3000])
    digest.feed(1000, data[1000:4000])  # overlaps: only the new part
    digest.feed(2000, data[2000:2500])  # inside: nothing
    assert digest.length == 4000
    assert digest.finish(stream_tail(lambda: io.BytesIO(data))) == (
        len(data), hashlib.sha256(data).hexdigest())


def test_recheck_passes_what_validation_passes() -> None:
    records, issues = read(LINES, f"{SID}.jsonl")
    assert issues == []
    assert list(recheck(records)) == records


@pytest.mark.parametrize(("name", "code"), [("unknown_message_type.json", "invalid_message_type"),
                                            ("wrong_types.json", "wrong_type"),
                                            ("evil_session_id.json", "invalid_id"),
                                            ("operator_parent_uuid.jsonl", "wrong_type")])
def test_recheck_refuses_the_first_record_validation_would_refuse(name: str, code: str) -> None:
    data = (CORPUS / name).read_bytes()
    records = list(source_of(data, name).records(on_issue=lambda issue: None))
    passed: list[object] = []
    with pytest.raises(RecordRefused) as refused:
        passed.extend(recheck(records))  # keeps what came before the refusal
    issue = refused.value.details["issue"]
    assert isinstance(issue, dict)
    assert issue["code"] == code
    assert len(passed) < len(records)  # nothing from the refused record on


def test_recheck_leaves_out_the_checks_that_can_only_warn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A contentHash that is not the message's own is a warning: recheck, which stops at
    errors only, does not compute it (validation does, and reports it)."""
    records, _ = read(LINES, f"{SID}.jsonl")
    wrong = [record if record.kind.value != "message" else type(record)(
        record.kind, {**record.doc, "contentHash": "0" * 64}, record.location)
        for record in records]
    report = validate(lambda: io.BytesIO(LINES), f"{SID}.jsonl")
    assert report.ok
    hashed: list[object] = []

    def counted(doc: object) -> str:
        hashed.append(doc)
        return ""

    monkeypatch.setattr(validation, "hash_of", counted)
    assert list(recheck(wrong)) == wrong
    assert hashed == []
    collector = validation.Collector()
    checker = validation.Checker(collector)
    for record in wrong:
        checker.check(record)
    assert collector.warnings_total == len(hashed) > 0
