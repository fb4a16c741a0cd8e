"""The package layer against moto's S3: staged files -> one zip, and nothing left on failure."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import subprocess
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dataport.bucket import PackagesBucket
from dataport.formats.base import Numbering
from dataport.models.jobs import Counts
from dataport.models.staged import StagedFile
from dataport.packaging import assembler as assembler_module
from dataport.packaging.assembler import (
    MIN_PART_SIZE,
    MultipartAssembler,
    PackageTooLarge,
)
from dataport.packaging.locations import package_key, shard_prefix, staging_prefix
from dataport.packaging.manifest import MANIFEST_NAME, Manifest, ManifestHeader, Owner
from dataport.packaging.package import assemble_package, member_names
from dataport.packaging.staging import StagedFileWriter, StagingSink
from dataport.packaging.zipformat import DEFLATED, STORED
from tests.unit.test_zipformat import check_local_headers

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
PART = MIN_PART_SIZE
JOB = "job-0001"
CREATED = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class S3Spy:
    """Records the client's S3 calls; at CompleteMultipartUpload it lists the parts S3 holds,
    and it can make one operation fail."""

    client: Any
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    completed_parts: list[int] = field(default_factory=list)
    fail_on: str | None = None

    def __post_init__(self) -> None:
        self.client.meta.events.register("provide-client-params.s3", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == self.fail_on:
            raise RuntimeError(f"injected failure in {model.name}")
        summary = {k: v for k, v in params.items() if k in ("Key", "Range", "CopySourceRange")}
        if isinstance(params.get("Body"), bytes):
            summary["size"] = len(params["Body"])
        self.calls.append((model.name, summary))
        if model.name == "CompleteMultipartUpload":
            observer = boto3.client("s3", region_name="us-east-1")
            parts = observer.list_parts(Bucket=params["Bucket"], Key=params["Key"],
                                        UploadId=params["UploadId"])["Parts"]
            self.completed_parts = [p["Size"] for p in sorted(parts,
                                                              key=lambda p: p["PartNumber"])]

    def names(self, key_prefix: str = "") -> list[str]:
        return [name for name, summary in self.calls
                if summary.get("Key", "").startswith(key_prefix)]


def header(**changes: Any) -> ManifestHeader:
    fields: dict[str, Any] = {"created_at": CREATED, "owner": Owner(user_id="user-1"),
                              "job_id": JOB, "format": "json",
                              "filters": {"models": ["claude-3"]},
                              "counts": Counts(projects=2, sessions=5, messages=40)}
    return ManifestHeader(**(fields | changes))


def write_file(sink: StagingSink, path: str, chunks: Iterable[bytes], *,
               numbering: Numbering = Numbering.WHEN_SPLIT, records: int = 0,
               notes: tuple[str, ...] = ()) -> bytes:
    """Write a file through the sink as a format writer would; returns its content."""
    out = sink.open(path, numbering)
    content = bytearray()
    for chunk in chunks:
        out.write(chunk)
        content += chunk
    out.add_records(records)
    for note in notes:
        out.add_note(note)
    assert out.bytes_written == len(content)
    sink.close(out)
    return bytes(content)


def download(s3: S3Client, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def assert_unzip_ok(tmp_path: Path, archive: bytes) -> None:
    path = tmp_path / "package.zip"
    path.write_bytes(archive)
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No errors detected" in result.stdout


def assert_nothing_left(s3: S3Client, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key=key)
    assert error.value.response["Error"]["Code"] == "404"
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def assert_part_sizes_valid(sizes: list[int]) -> None:
    assert len(sizes) >= 2
    assert all(size >= MIN_PART_SIZE for size in sizes[:-1]), sizes


# --------------------------------------------------------------------------- staging
def test_staged_file_describes_its_object(s3_client: S3Client, packages_bucket: str,
                                          bucket: PackagesBucket) -> None:
    sink = StagingSink(bucket, shard_prefix(JOB, 3), start_seq=7,
                       level=6, part_size=PART)
    text = "naïve ünïcode line\n".encode() * 1000
    write_file(sink, "notes/a.md", [text[:100], text[100:]], records=3, notes=("big record",))
    empty = sink.open("b.csv")
    sink.close(empty)

    first, second = sink.complete()
    assert sink.next_seq == 9
    assert first.staging_key == f"staging/{JOB}/00003/000007.bin"
    # one staged object per invocation (named by its first seq), each file a range of it
    assert second.staging_key == first.staging_key
    assert (first.offset, second.offset) == (0, first.compressed_size)
    assert first.method == DEFLATED
    assert (first.size, first.records, first.notes) == (len(text), 3, ["big record"])
    assert first.sha256 == hashlib.sha256(text).hexdigest()
    assert first.compressed_size < len(text)
    staged = download(s3_client, packages_bucket, first.staging_key)
    assert len(staged) == first.compressed_size + second.compressed_size
    # raw deflate, no zlib header: exactly what a zip member of method 8 holds
    assert zlib.decompress(staged[:first.compressed_size], -15) == text
    assert zlib.crc32(text) == first.crc32
    assert (second.size, second.sha256) == (0, hashlib.sha256(b"").hexdigest())
    # the record survives the trip through Step Functions / DynamoDB JSON
    assert StagedFile.model_validate_json(first.model_dump_json(by_alias=True)) == first


def test_level_zero_stores(s3_client: S3Client, packages_bucket: str,
                           bucket: PackagesBucket) -> None:
    sink = StagingSink(bucket, shard_prefix(JOB, 1), level=0,
                       part_size=PART)
    data = write_file(sink, "a.json", [b"{}" * 100])
    (staged,) = sink.complete()
    assert staged.method == STORED
    assert download(s3_client, packages_bucket, staged.staging_key) == data


def test_abort_leaves_no_object_and_no_upload(s3_client: S3Client, packages_bucket: str,
                                              bucket: PackagesBucket) -> None:
    sink = StagingSink(bucket, shard_prefix(JOB, 1), level=0,
                       part_size=PART)
    big = sink.open("big.bin")
    big.write(os.urandom(PART + 1))  # one part is already uploaded
    assert s3_client.list_multipart_uploads(Bucket=packages_bucket).get("Uploads")
    small = sink.open("small.bin")
    small.write(b"x")
    sink.abort_all()
    for writer in (big, small):
        assert isinstance(writer, StagedFileWriter)
        assert_nothing_left(s3_client, packages_bucket, writer.key)
    assert sink.files == []


def test_sink_refuses_a_foreign_file(s3_client: S3Client, packages_bucket: str,
                                     bucket: PackagesBucket) -> None:
    sink = StagingSink(bucket, shard_prefix(JOB, 1), part_size=PART)
    other = StagingSink(bucket, shard_prefix(JOB, 2), part_size=PART)
    foreign = other.open("a.json")
    with pytest.raises(ValueError, match="not opened by this sink"):
        sink.close(foreign)
    other.abort_all()


# --------------------------------------------------------------------------- naming
def staged(path: str, numbering: Numbering = Numbering.WHEN_SPLIT, seq: int = 0) -> StagedFile:
    return StagedFile(path=path, numbering=numbering, staging_key=f"k/{seq:06d}.bin",
                      method=DEFLATED, crc32=0, size=0, compressed_size=0,
                      sha256="0" * 64)


def counting(files: list[StagedFile]) -> tuple[Callable[[], Iterator[StagedFile]], list[int]]:
    calls = [0]

    def source() -> Iterator[StagedFile]:
        calls[0] += 1
        return iter(files)

    return source, calls


def test_numbering_rule() -> None:
    files = [
        staged("a/b/messages.csv"), staged("projects.json", Numbering.ALWAYS),
        staged("conv.tar.json"), staged("a/b/messages.csv"), staged("summary.md"),
        staged("README"), staged("conv.tar.json"), staged("README"),
        staged("a/b/messages.csv"), staged("sessions.json", Numbering.ALWAYS),
        staged("sessions.json", Numbering.ALWAYS),
    ]
    source, calls = counting(files)
    names = [name for name, _ in member_names(source)]
    assert names == [
        "a/b/messages-0001.csv", "projects-0001.json", "conv.tar-0001.json",
        "a/b/messages-0002.csv", "summary.md", "README-0001", "conv.tar-0002.json",
        "README-0002", "a/b/messages-0003.csv", "sessions-0001.json", "sessions-0002.json",
    ]
    assert calls[0] == 2  # two passes, nothing materialised


@pytest.mark.parametrize(("paths", "message"), [
    (["x.csv", "x.csv", "x-0001.csv"], "two package members"),
    (["manifest.json"], "two package members"),
    (["../etc/passwd"], "not a valid package path"),
    (["/abs.json"], "not a valid package path"),
    (["a\\b.json"], "not a valid package path"),
])
def test_bad_member_names_are_refused(paths: list[str], message: str) -> None:
    source, _ = counting([staged(p) for p in paths])
    with pytest.raises(ValueError, match=message):
        list(member_names(source))


def test_files_changing_between_passes_is_an_error() -> None:
    batches = iter([[staged("a.json")], [staged("a.json"), staged("a.json")]])
    with pytest.raises(RuntimeError, match="second pass"):
        list(member_names(lambda: next(batches)))


# --------------------------------------------------------------------------- package
def test_package_round_trip(s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket,
                            tmp_path: Path) -> None:
    expected: dict[str, tuple[bytes, int, list[str]]] = {}

    # Invocation 1 of shard 0 (the plan): small files that must share one part.
    plan = StagingSink(bucket, shard_prefix(JOB, 0), part_size=PART)
    expected["projects-0001.json"] = (write_file(plan, "projects.json", [b'[{"p": 1}]'],
                                                 numbering=Numbering.ALWAYS, records=2), 2, [])
    # Shard 1, first invocation: unicode path, empty file, small file, big incompressible file.
    shard1 = StagingSink(bucket, shard_prefix(JOB, 1), part_size=PART)
    expected["données/été 🎉.md"] = (write_file(shard1, "données/été 🎉.md",
                                                ["# Été 🎉\n".encode() * 300], records=1), 1, [])
    expected["empty.csv"] = (write_file(shard1, "empty.csv", []), 0, [])
    expected["messages-0001.csv"] = (write_file(shard1, "messages.csv", [b"a,b\n1,2\n" * 999],
                                                records=999, notes=("split",)), 999, ["split"])
    big = [os.urandom(MiB) for _ in range(12)]  # > 2 parts, incompressible
    expected["blobs/big.bin"] = (write_file(shard1, "blobs/big.bin", big, records=12), 12, [])
    # Shard 1, next invocation: continues the sequence.
    shard1b = StagingSink(bucket, shard_prefix(JOB, 1),
                          start_seq=shard1.next_seq, part_size=PART)
    medium = os.urandom(3 * MiB)  # too small to copy: read into the part buffer
    expected["medium.bin"] = (write_file(shard1b, "medium.bin", [medium]), 0, [])
    expected["messages-0002.csv"] = (write_file(shard1b, "messages.csv", [b"a,b\n3,4\n"],
                                                records=1), 1, [])
    # Shard 2, in parallel.
    shard2 = StagingSink(bucket, shard_prefix(JOB, 2), part_size=PART)
    expected["messages-0003.csv"] = (write_file(shard2, "messages.csv", [b"a,b\n5,6\n"],
                                                records=1), 1, [])
    expected["summary.txt"] = (write_file(shard2, "summary.txt", [b"ok\n"]), 0, [])

    all_files = plan.complete() + shard1.complete() + shard1b.complete() + shard2.complete()
    assert [f.staging_key for f in all_files] == sorted(f.staging_key for f in all_files)
    source, calls = counting(all_files)
    spy = S3Spy(s3_client)
    key = package_key(JOB, "export.zip")

    result = assemble_package(bucket, key, source, header(),
                              part_size=PART, level=6,
                              content_disposition='attachment; filename="export.zip"',
                              metadata={"job-id": JOB})

    assert calls[0] == 2
    archive = download(s3_client, packages_bucket, key)
    assert result.bytes == len(archive)
    assert result.key == key
    assert result.files == len(expected)
    head = s3_client.head_object(Bucket=packages_bucket, Key=key)
    assert head["ContentType"] == "application/zip"
    assert head["ContentDisposition"] == 'attachment; filename="export.zip"'
    assert head["Metadata"] == {"job-id": JOB}

    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == [*expected, MANIFEST_NAME]
        for name, (content, _, _) in expected.items():
            assert zf.read(name) == content, name
        manifest = Manifest.model_validate_json(zf.read(MANIFEST_NAME))
    check_local_headers(archive)
    assert_unzip_ok(tmp_path, archive)

    assert manifest == result.manifest
    assert [f.path for f in manifest.files] == list(expected)
    for entry in manifest.files:
        content, records, notes = expected[entry.path]
        assert entry.sha256 == hashlib.sha256(content).hexdigest()
        assert entry.bytes == len(content)
        assert entry.records == records
        assert (entry.notes or []) == notes
    assert manifest.counts == Counts(projects=2, sessions=5, messages=40, files=len(expected))
    assert manifest.owner.user_id == "user-1"
    assert manifest.created_at == CREATED
    total = sum(len(c) for c, _, _ in expected.values())
    assert manifest.compression.uncompressed_bytes == total
    assert manifest.compression.compressed_bytes == sum(f.compressed_size for f in all_files)
    assert manifest.compression.method == "deflate"
    ratio = manifest.compression.compressed_bytes / total
    assert abs(float(manifest.compression.ratio or 0) - ratio) < 0.0001

    # The parts: S3's rules held, big data was copied server-side, the rest gathered.
    names = spy.names(key)
    assert_part_sizes_valid(spy.completed_parts)
    assert sum(spy.completed_parts) == len(archive)
    assert "UploadPartCopy" in names
    assert "UploadPart" in names
    ranged = [s for n, s in spy.calls if n == "GetObject" and "Range" in s]
    assert ranged, "the buffer was never topped up from a staged object"
    assert names.count("CreateMultipartUpload") == 1


def test_stored_zip64_package_passes_unzip(s3_client: S3Client, packages_bucket: str,
                                           bucket: PackagesBucket, tmp_path: Path) -> None:
    sink = StagingSink(bucket, shard_prefix(JOB, 1), level=0,
                       part_size=PART)
    contents = {f"f{i}.json": write_file(sink, "f.json", [b"{}" * (i + 1)]) for i in range(3)}
    key = package_key(JOB, "z.zip")
    result = assemble_package(bucket, key, sink.complete,
                              header(), part_size=PART, level=0, force_zip64=True)
    archive = download(s3_client, packages_bucket, key)
    assert b"PK\x06\x06" in archive
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.testzip() is None
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert [zf.read(f"f-000{i + 1}.json") for i in range(3)] == list(contents.values())
    check_local_headers(archive)
    assert result.manifest.compression.method == "stored"
    assert_unzip_ok(tmp_path, archive)


def test_empty_package_holds_only_the_manifest(s3_client: S3Client, packages_bucket: str,
                                               bucket: PackagesBucket) -> None:
    key = package_key(JOB, "empty.zip")
    spy = S3Spy(s3_client)
    result = assemble_package(bucket, key, list, header(),
                              part_size=PART, level=6)
    assert spy.names() == ["PutObject"]  # small enough for one request
    with zipfile.ZipFile(io.BytesIO(download(s3_client, packages_bucket, key))) as zf:
        assert zf.namelist() == [MANIFEST_NAME]
        raw = zf.read(MANIFEST_NAME)
    assert b'"ratio"' not in raw
    assert result.files == 0
    assert result.manifest.counts.files == 0


def test_failure_mid_assembly_leaves_nothing(s3_client: S3Client, packages_bucket: str,
                                             bucket: PackagesBucket) -> None:
    sink = StagingSink(bucket, shard_prefix(JOB, 1), level=0,
                       part_size=PART)
    write_file(sink, "a.bin", [b"a" * MiB])
    write_file(sink, "b.bin", [os.urandom(10 * MiB)])  # ~4 MiB fill the first part
    spy = S3Spy(s3_client, fail_on="UploadPartCopy")
    key = package_key(JOB, "broken.zip")
    with pytest.raises(RuntimeError, match="injected"):
        assemble_package(bucket, key, sink.complete, header(),
                         part_size=PART, level=0)
    assert "UploadPart" in spy.names(key)  # the upload had started
    assert "AbortMultipartUpload" in spy.names(key)
    assert_nothing_left(s3_client, packages_bucket, key)


def test_short_staged_object_is_detected(s3_client: S3Client, packages_bucket: str,
                                         bucket: PackagesBucket) -> None:
    sink = StagingSink(bucket, shard_prefix(JOB, 1), part_size=PART)
    write_file(sink, "a.json", [b"x" * 1000])
    (good,) = sink.complete()
    lying = good.model_copy(update={"compressed_size": good.compressed_size + 10})
    key = package_key(JOB, "short.zip")
    with pytest.raises(ValueError, match="shorter than its record"):
        assemble_package(bucket, key, lambda: [lying], header(),
                         part_size=PART, level=6)
    assert_nothing_left(s3_client, packages_bucket, key)


# --------------------------------------------------------------------------- assembler
def test_assembler_mixes_inline_bytes_and_ranges(s3_client: S3Client, packages_bucket: str,
                                                 bucket: PackagesBucket) -> None:
    source = os.urandom(14 * MiB)
    s3_client.put_object(Bucket=packages_bucket, Key="src", Body=source)
    pieces: list[bytes | tuple[int, int]] = [
        b"head", (0, 100), (5, 6 * MiB), b"x" * (2 * MiB), (10, MiB),
        (MiB, 13 * MiB), (0, 0), b"tail",
    ]
    expected = b"".join(p if isinstance(p, bytes) else source[p[0]:p[0] + p[1]]
                        for p in pieces)
    spy = S3Spy(s3_client)
    with MultipartAssembler(bucket, "out", part_size=6 * MiB,
                            content_type="application/octet-stream") as out:
        for piece in pieces:
            if isinstance(piece, bytes):
                out.add_bytes(piece)
            else:
                out.add_object_range("src", *piece)
        assert out.position == len(expected)
        assert out.complete() == len(expected)
    assert download(s3_client, packages_bucket, "out") == expected
    assert_part_sizes_valid(spy.completed_parts)
    assert "UploadPartCopy" in spy.names("out")
    uploaded = [s["size"] for n, s in spy.calls if n == "UploadPart"]
    assert max(uploaded) <= 6 * MiB  # the buffer never grew past one part


def test_assembler_refuses_more_than_max_parts(s3_client: S3Client, packages_bucket: str,
                                               bucket: PackagesBucket,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assembler_module, "MAX_PARTS", 2)
    with MultipartAssembler(bucket, "too-big", part_size=PART) as out:
        out.add_bytes(b"z" * 2 * PART)
        with pytest.raises(PackageTooLarge, match="more than 2 parts"):
            out.add_bytes(b"z" * PART)
    assert_nothing_left(s3_client, packages_bucket, "too-big")


def test_assembler_left_without_complete_aborts(s3_client: S3Client, packages_bucket: str,
                                                bucket: PackagesBucket) -> None:
    with MultipartAssembler(bucket, "forgotten", part_size=PART) as out:
        out.add_bytes(b"z" * (PART + 1))
    assert_nothing_left(s3_client, packages_bucket, "forgotten")


def test_assembler_part_size_bounds(s3_client: S3Client, packages_bucket: str,
                                    bucket: PackagesBucket) -> None:
    for size in (PART - 1, 16 * MiB + 1):
        with pytest.raises(ValueError, match="part size"):
            MultipartAssembler(bucket, "k", part_size=size)


# --------------------------------------------------------------------------- cleanup
def test_delete_prefix_and_abort_uploads(s3_client: S3Client, packages_bucket: str,
                                         bucket: PackagesBucket) -> None:
    prefix = staging_prefix(JOB)
    for i in range(1005):
        s3_client.put_object(Bucket=packages_bucket, Key=f"{prefix}{i:05d}/x.bin", Body=b"")
    s3_client.put_object(Bucket=packages_bucket, Key=staging_prefix("job-0002") + "keep",
                         Body=b"")
    for key in (f"{prefix}a", f"{prefix}b", staging_prefix("job-0002") + "c"):
        s3_client.create_multipart_upload(Bucket=packages_bucket, Key=key)
    spy = S3Spy(s3_client)

    assert bucket.abort_uploads(prefix) == 2
    assert bucket.delete_prefix(prefix) == 1005

    assert [n for n, _ in spy.calls].count("DeleteObjects") == 2  # batches of <= 1000
    left = s3_client.list_objects_v2(Bucket=packages_bucket)["Contents"]
    assert [o["Key"] for o in left] == ["staging/job-0002/keep"]
    uploads = s3_client.list_multipart_uploads(Bucket=packages_bucket)["Uploads"]
    assert [u["Key"] for u in uploads] == ["staging/job-0002/c"]
    assert bucket.delete_prefix(prefix) == 0
    with pytest.raises(ValueError, match="prefix is empty"):
        bucket.delete_prefix("")


# ------------------------------------------------------------------ one object per invocation
def test_an_invocation_stages_one_object_and_the_finalizer_reads_it_in_one_get(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket,
        tmp_path: Path) -> None:
    """600 small files (jsonl's page per session): one PutObject, not an upload per file; the
    files are consecutive ranges; the finalizer gets them with one ranged GET, not 600."""
    spy = S3Spy(s3_client)
    sink = StagingSink(bucket, shard_prefix(JOB, 1), start_seq=4, part_size=PART)
    contents = [write_file(sink, f"p/{i:03d}.jsonl", [f'{{"n": {i}}}\n'.encode() * (i + 1)])
                for i in range(600)]
    files = sink.complete()
    assert spy.names() == ["PutObject"]
    assert {f.staging_key for f in files} == {f"staging/{JOB}/00001/000004.bin"}
    assert sink.next_seq == 604
    ends = [f.offset + f.compressed_size for f in files]
    assert [f.offset for f in files] == [0, *ends[:-1]]
    assert all(f.segments is None for f in files)

    spy.calls.clear()
    key = package_key(JOB, "many.zip")
    assemble_package(bucket, key, lambda: files, header(), part_size=PART, level=6)
    assert [s["Range"] for n, s in spy.calls if n == "GetObject"] == [f"bytes=0-{PART - 1}"]
    with zipfile.ZipFile(io.BytesIO(download(s3_client, packages_bucket, key))) as zf:
        assert [zf.read(f"p/{i:03d}.jsonl") for i in range(600)] == contents
    assert_unzip_ok(tmp_path, download(s3_client, packages_bucket, key))


def test_files_written_side_by_side_are_segments_of_the_object(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    """csv writes sessions.csv and messages.csv at once: the one at the object's end streams,
    the other appends a segment whenever it holds SEGMENT_SIZE; both read back whole."""
    sink = StagingSink(bucket, shard_prefix(JOB, 1), level=0, part_size=PART)
    sessions, messages = sink.open("sessions.csv"), sink.open("messages.csv")
    expected: dict[str, bytearray] = {"sessions.csv": bytearray(), "messages.csv": bytearray()}
    for i in range(40):
        for out, name, size in ((sessions, "sessions.csv", 40_000),
                                (messages, "messages.csv", 150_000)):
            chunk = os.urandom(size) if i % 3 else bytes([i]) * size
            out.write(chunk)
            expected[name] += chunk
    sink.close(messages)
    sink.close(sessions)
    first, second = sink.complete()
    assert (first.path, second.path) == ("sessions.csv", "messages.csv")
    assert second.segments is not None
    assert len(second.segments) > 1  # interleaved
    for staged in (first, second):
        assert sum(length for _, length in staged.byte_ranges()) == staged.compressed_size
    ranges = sorted(r for f in (first, second) for r in f.byte_ranges())
    assert all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(ranges))  # no overlap
    spy = S3Spy(s3_client)
    key = package_key(JOB, "side.zip")
    assemble_package(bucket, key, lambda: [first, second], header(), part_size=PART, level=0)
    assert_part_sizes_valid(spy.completed_parts)
    with zipfile.ZipFile(io.BytesIO(download(s3_client, packages_bucket, key))) as zf:
        assert zf.testzip() is None
        assert {name: zf.read(name) for name in expected} == {
            name: bytes(data) for name, data in expected.items()}


def test_a_large_invocation_streams_its_object_in_parts(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    spy = S3Spy(s3_client)
    sink = StagingSink(bucket, shard_prefix(JOB, 1), level=0, part_size=PART)
    data = [write_file(sink, f"{i}.bin", [os.urandom(2 * MiB)]) for i in range(4)]
    files = sink.complete()
    assert spy.names().count("CreateMultipartUpload") == 1
    assert spy.names().count("UploadPart") == 2  # 8 MiB in 5 MiB parts
    assert "PutObject" not in spy.names()
    staged = download(s3_client, packages_bucket, files[0].staging_key)
    assert [staged[f.offset:f.offset + f.compressed_size] for f in files] == data


def test_discard_removes_the_invocation_object_and_its_upload(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    done = StagingSink(bucket, shard_prefix(JOB, 1), part_size=PART)
    write_file(done, "a.json", [b"{}"])
    (staged,) = done.complete()
    done.discard()
    assert_nothing_left(s3_client, packages_bucket, staged.staging_key)

    streaming = StagingSink(bucket, shard_prefix(JOB, 2), level=0, part_size=PART)
    write_file(streaming, "b.bin", [os.urandom(PART + 1)])  # an upload is open
    streaming.open("c.bin").write(b"c")
    streaming.discard()
    assert_nothing_left(s3_client, packages_bucket, streaming.staging_key)
    with pytest.raises(ValueError, match="complete or aborted"):
        streaming.open("d.bin")
