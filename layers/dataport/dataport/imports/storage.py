"""An import's objects in the packages bucket, all under `imports/<jobId>/` (one lifecycle rule
expires them with the job's history):

    upload                     the file, as the presigned POST put it (deleted once pinned)
    validated                  the upload pinned by the validation: a server-side copy at a key
                               no upload form can write, read only with If-Match on its ETag
    journal/<run>/<nnnnn>.jsonl.gz
                               one per write batch, written before the batch: its sessions, then
                               the pre-image of every stored document it changes or deletes
                               (canonical Extended JSON: every BSON type comes back exactly)
    conflicts.jsonl            the sessions the user already has and how they differ (validation)
    dry-run.jsonl, result.jsonl
                               per-session outcome of the dry run and of the execution

Listings are pages of a JSON-lines object: the page token is the byte offset to go on from.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

import smart_open
from botocore.exceptions import ClientError
from bson import json_util

from dataport.errors import Conflict, InvalidRequest, UploadChanged
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS, canonical_json
from dataport.models.jobs import UploadPin
from dataport.source.mongo import Document

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3 import S3Client

IMPORTS = "imports/"
MIB = 1024 * 1024


def prefix(job_id: str) -> str:
    return f"{IMPORTS}{job_id}/"


def upload_key(job_id: str) -> str:
    return f"{prefix(job_id)}upload"


def validated_key(job_id: str) -> str:
    return f"{prefix(job_id)}validated"


def journal_prefix(job_id: str) -> str:
    return f"{prefix(job_id)}journal/"


def journal_key(job_id: str, run: str, batch: int) -> str:
    return f"{journal_prefix(job_id)}{run}/{batch:05d}.jsonl.gz"


def listing_key(job_id: str, name: str) -> str:
    return f"{prefix(job_id)}{name}.jsonl"


CONFLICTS, DRY_RUN, RESULT = "conflicts", "dry-run", "result"


def _uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


# ------------------------------------------------------------------------------ the upload

#: an S3 answer that the pinned object is not the one validated any more
_CHANGED = {"PreconditionFailed", "412", "NoSuchKey", "404", "NotFound"}
#: what each read of a pinned upload asks S3 for at once (readers' own buffers are smaller)
READ_BUFFER = 256 * 1024


def pin_upload(s3: S3Client, bucket: str, job_id: str) -> UploadPin:
    """Copy the upload (server-side) to a key no presigned form can write: the form and the
    API's signing role only reach `.../upload`. Every later read names the copy's ETag. (One
    CopyObject copies up to 5 GB; uploads stop at 500 MB.)"""
    source = upload_key(job_id)
    target = validated_key(job_id)
    try:
        copied = s3.copy_object(Bucket=bucket, Key=target,
                                CopySource={"Bucket": bucket, "Key": source})
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            raise Conflict("Nothing has been uploaded for this import.",
                           details={"code": "upload_missing"}) from error
        raise
    etag = copied["CopyObjectResult"]["ETag"]
    head = s3.head_object(Bucket=bucket, Key=target, IfMatch=etag)
    return UploadPin(key=target, etag=etag, bytes=head["ContentLength"])


def open_pinned(s3: S3Client, bucket: str, pin: UploadPin,
                on_read: Callable[[int, memoryview], None] | None = None) -> IO[bytes]:
    """A seekable stream over the pinned upload; every GET it makes requires the pinned ETag
    (a different object raises UploadChanged). `on_read(position, data)` sees every byte read
    (the validation's digest)."""
    try:
        inner = smart_open.open(_uri(bucket, pin.key), "rb", compression="disable",
                                transport_params={"client": s3, "client_kwargs": {
                                    "S3.Client.get_object": {"IfMatch": pin.etag}}})
    except OSError as error:
        raise _changed(error, pin) from error
    return io.BufferedReader(_PinnedRaw(inner, pin, on_read), buffer_size=READ_BUFFER)


class _PinnedRaw(io.RawIOBase):
    """The pinned object's bytes with their positions, and its S3 failures in our terms."""

    def __init__(self, inner: IO[bytes], pin: UploadPin,
                 on_read: Callable[[int, memoryview], None] | None) -> None:
        super().__init__()
        self._inner = inner
        self._pin = pin
        self._on_read = on_read
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._inner.read(len(view))
        except OSError as error:
            raise _changed(error, self._pin) from error
        size = len(data)
        view[:size] = data
        if self._on_read is not None:
            self._on_read(self._position, view[:size])
        self._position += size
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            self._position = self._inner.seek(offset, whence)
        except OSError as error:
            raise _changed(error, self._pin) from error
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


def _changed(error: OSError, pin: UploadPin) -> Exception:
    """UploadChanged for S3's answer that the pinned object changed or went; other errors as
    they are."""
    cause = error.__cause__
    if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in _CHANGED:
        return UploadChanged("The validated upload changed or disappeared after validation "
                             f"(expected ETag {pin.etag}); nothing of it was imported.",
                             details={"key": pin.key})
    return error


def delete_upload(s3: S3Client, bucket: str, job_id: str) -> None:
    """The upload and its pinned copy (idempotent: either may be missing). A file POSTed
    through the form after the pin lands at `upload` again: never read, deleted here."""
    for key in (upload_key(job_id), validated_key(job_id)):
        s3.delete_object(Bucket=bucket, Key=key)


# ------------------------------------------------------------------------------ the journal


def write_journal(s3: S3Client, bucket: str, key: str, sessions: list[dict[str, Any]],
                  preimages: Iterable[tuple[str, Document]]) -> int:
    """One batch's entry (streamed and gzipped: a batch of large documents stays small in
    memory). Returns the number of pre-images saved."""
    saved = 0
    with smart_open.open(_uri(bucket, key), "wb", transport_params={
            "client": s3, "min_part_size": 5 * MIB}) as out:
        out.write(json.dumps({"sessions": sessions}).encode() + b"\n")
        for collection, doc in preimages:
            out.write(canonical_json({"c": collection, "d": doc}) + b"\n")
            saved += 1
    return saved


def read_journal(s3: S3Client, bucket: str, key: str
                 ) -> tuple[list[dict[str, Any]], Iterator[tuple[str, Document]]]:
    """(its sessions, its pre-images as (collection, document)), streamed."""
    stream = smart_open.open(_uri(bucket, key), "rb", transport_params={"client": s3})
    header = json.loads(stream.readline())

    def preimages() -> Iterator[tuple[str, Document]]:
        with stream:
            for line in stream:
                entry = json_util.loads(line, json_options=EXTENDED_JSON_READ_OPTIONS)
                yield entry["c"], entry["d"]

    return list(header["sessions"]), preimages()


def journal_keys(s3: S3Client, bucket: str, job_id: str, run: str | None = None) -> list[str]:
    """The job's journal entries (of one run, if given), in order."""
    start = journal_prefix(job_id) + (f"{run}/" if run else "")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


# ------------------------------------------------------------------------------ listings


@contextmanager
def listing_writer(s3: S3Client, bucket: str, job_id: str, name: str) -> Iterator[IO[bytes]]:
    with smart_open.open(_uri(bucket, listing_key(job_id, name)), "wb", transport_params={
            "client": s3, "min_part_size": 5 * MIB}) as out:
        yield out


def read_page(s3: S3Client, bucket: str, job_id: str, name: str, *, limit: int,
              token: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` entries of a listing from `token` on, and the next token (None at the end).
    An absent listing is an empty one."""
    offset = _offset(token)
    key = listing_key(job_id, name)
    # from one byte before the offset: the previous line's end proves the token
    try:
        body = (s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset - 1}-") if offset
                else s3.get_object(Bucket=bucket, Key=key))["Body"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in {"NoSuchKey", "404"}:
            return [], None
        if code == "InvalidRange":
            raise InvalidRequest("The nextToken is not valid; start again without it.",
                                 details={"field": "nextToken"}) from error
        raise
    entries: list[dict[str, Any]] = []
    position = offset
    with body:
        lines = body.iter_lines(keepends=True)
        if offset and next(lines, b"") != b"\n":
            raise InvalidRequest("The nextToken is not valid; start again without it.",
                                 details={"field": "nextToken"})
        for line in lines:
            if len(entries) == limit:
                return entries, _token(position)
            entries.append(json.loads(line))
            position += len(line)
    return entries, None


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidRequest("The nextToken is not valid; start again without it.",
                             details={"field": "nextToken"}) from error
    if offset < 0:
        raise InvalidRequest("The nextToken is not valid; start again without it.",
                             details={"field": "nextToken"})
    return offset


def delete_object(s3: S3Client, bucket: str, key: str) -> None:
    s3.delete_object(Bucket=bucket, Key=key)
