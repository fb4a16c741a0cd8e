"""An import's objects in the packages bucket, all under `imports/<jobId>/` (one lifecycle rule
expires them with the job's history):

    upload                     the file, as the presigned POST put it (deleted once pinned)
    validated                  the upload pinned by the validation: a server-side copy at a key
                               no upload form can write, read only with If-Match on its ETag
    checked                    the records validation checked (deflated BSON, imports.checked),
                               which the execution reads instead of parsing the upload again;
                               pinned the same way (a restore shard's: sealed, as its part)
    journal/<run>/<nnnnn>.jsonl.gz
                               one per write batch, written before the batch: its sessions, then
                               the pre-image of every stored document it changes or deletes
                               (canonical Extended JSON: every BSON type comes back exactly)
    shards/<user>-<n>.zip, parts.key, split/, kept/<user>, created.json
                               a restore in shards: each shard's part of the backup (sealed,
                               imports.sealed), the ciphertext of the data key that seals them,
                               what the plan hands over between invocations (sealed), what a
                               split user's removal keeps (sealed), the projects the plan made
    conflicts.jsonl            the sessions the user already has and how they differ (validation)
    dry-run.jsonl, result.jsonl
                               per-session outcome of the dry run and of the execution

Listings are pages of a JSON-lines object: the page token is the byte offset to go on from.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from bson import json_util

from dataport.bucket import InvalidRange, ObjectMissing, PackagesBucket
from dataport.bucket.s3 import ObjectWriter
from dataport.errors import Conflict, InvalidRequest
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS, canonical_json
from dataport.imports.digest import Tail
from dataport.models.jobs import UploadPin
from dataport.source.mongo import Document

IMPORTS = "imports/"


def prefix(job_id: str) -> str:
    return f"{IMPORTS}{job_id}/"


def upload_key(job_id: str) -> str:
    return f"{prefix(job_id)}upload"


def validated_key(job_id: str) -> str:
    return f"{prefix(job_id)}validated"


def checked_key(job_id: str) -> str:
    return f"{prefix(job_id)}checked"


def shard_parts_prefix(job_id: str) -> str:
    """Where a restore in shards' plan puts each shard's part of the backup (its shards'
    import functions read there)."""
    return f"{prefix(job_id)}shards/"


def parts_data_key(job_id: str) -> str:
    """Where a restore in shards keeps the KMS ciphertext of the data key that seals its
    shards' parts (imports.sealed), beside them (a retried plan seals with the same key)."""
    return f"{prefix(job_id)}parts.key"


def split_prefix(job_id: str) -> str:
    """A restore in shards' plan's hand-overs: the state after each invocation
    (`state-<n>.json`), the sessionIds each invocation read (`ids-<n>.json`) and the open
    shards' members (`members/`); kept to Finalize (a retried last invocation reads its state
    again), deleted by it, by a refusal or by MarkFailed."""
    return f"{prefix(job_id)}split/"


def kept_prefix(job_id: str) -> str:
    """A split user's kept list in a restore in shards: the sessions and project paths the
    backup holds for them."""
    return f"{prefix(job_id)}kept/"


def journal_prefix(job_id: str) -> str:
    return f"{prefix(job_id)}journal/"


def journal_key(job_id: str, run: str, batch: int) -> str:
    return f"{journal_prefix(job_id)}{run}/{batch:05d}.jsonl.gz"


def listing_key(job_id: str, name: str) -> str:
    return f"{prefix(job_id)}{name}.jsonl"


CONFLICTS, DRY_RUN, RESULT = "conflicts", "dry-run", "result"


# ------------------------------------------------------------------------------ the upload


def pin_upload(bucket: PackagesBucket, job_id: str) -> UploadPin:
    """Copy the upload (server-side) to a key no presigned form can write: the form and the
    API's signing role only reach `.../upload`. Every later read names the copy's ETag. (One
    CopyObject copies up to 5 GB; uploads stop at 500 MB.)"""
    try:
        return bucket.pin(upload_key(job_id), validated_key(job_id))
    except ObjectMissing as error:
        raise Conflict("Nothing has been uploaded for this import.",
                       details={"code": "upload_missing"}) from error


def open_pinned(bucket: PackagesBucket, pin: UploadPin,
                on_read: Callable[[int, memoryview], None] | None = None) -> IO[bytes]:
    """A seekable stream over the pinned upload; every GET it makes requires the pinned ETag
    (a different object raises UploadChanged). `on_read(position, data)` sees every byte read
    (the validation's digest)."""
    return bucket.open_pinned(pin, on_read)


def pinned_tail(bucket: PackagesBucket, pin: UploadPin) -> Tail:
    """The pinned upload from a position to its end, for a digest's `finish`: several ranged
    GETs at once, each requiring the pinned ETag (PackagesBucket.read_pinned)."""
    return lambda position: bucket.read_pinned(pin, position)


def delete_upload(bucket: PackagesBucket, job_id: str) -> None:
    """The upload, its pinned copy and the records validation checked (idempotent: any may be
    missing). A file POSTed through the form after the pin lands at `upload` again: never
    read, deleted here."""
    bucket.delete_keys([upload_key(job_id), validated_key(job_id), checked_key(job_id)])


# ------------------------------------------------------------------------------ the journal


def write_journal(bucket: PackagesBucket, key: str, sessions: list[dict[str, Any]],
                  preimages: Iterable[tuple[str, Document]]) -> int:
    """One batch's entry (streamed and gzipped: a batch of large documents stays small in
    memory). Returns the number of pre-images saved."""
    saved = 0
    with bucket.open_write(key) as raw, gzip.GzipFile(fileobj=raw, mode="wb",
                                                      compresslevel=6) as out:
        out.write(json.dumps({"sessions": sessions}).encode() + b"\n")
        for collection, doc in preimages:
            out.write(canonical_json({"c": collection, "d": doc}) + b"\n")
            saved += 1
    return saved


def read_journal(bucket: PackagesBucket, key: str
                 ) -> tuple[list[dict[str, Any]], Iterator[tuple[str, Document]]]:
    """(its sessions, its pre-images as (collection, document)), streamed."""
    stream = bucket.open_read(key)
    header = json.loads(stream.readline())

    def preimages() -> Iterator[tuple[str, Document]]:
        with stream:
            for line in stream:
                entry = json_util.loads(line, json_options=EXTENDED_JSON_READ_OPTIONS)
                yield entry["c"], entry["d"]

    return list(header["sessions"]), preimages()


def journal_keys(bucket: PackagesBucket, job_id: str, run: str | None = None) -> list[str]:
    """The job's journal entries (of one run, if given), in order."""
    return bucket.keys(journal_prefix(job_id) + (f"{run}/" if run else ""))


# ------------------------------------------------------------------------------ listings


@contextmanager
def listing_writer(bucket: PackagesBucket, job_id: str, name: str) -> Iterator[ObjectWriter]:
    with bucket.open_write(listing_key(job_id, name)) as out:
        yield out


def read_page(bucket: PackagesBucket, job_id: str, name: str, *, limit: int,
              token: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` entries of a listing from `token` on, and the next token (None at the end).
    An absent listing is an empty one."""
    offset = _offset(token)
    entries: list[dict[str, Any]] = []
    position = offset
    # from one byte before the offset: the previous line's end proves the token
    with _lines(bucket, listing_key(job_id, name), max(offset - 1, 0)) as lines:
        if lines is None:
            return [], None
        if offset and next(lines, b"") != b"\n":
            raise InvalidRequest("The nextToken is not valid; start again without it.",
                                 details={"field": "nextToken"})
        for line in lines:
            if len(entries) == limit:
                return entries, _token(position)
            entries.append(json.loads(line))
            position += len(line)
    return entries, None


@contextmanager
def _lines(bucket: PackagesBucket, key: str, offset: int) -> Iterator[Iterator[bytes] | None]:
    try:
        with bucket.lines_from(key, offset) as lines:
            yield lines
    except InvalidRange as error:
        raise InvalidRequest("The nextToken is not valid; start again without it.",
                             details={"field": "nextToken"}) from error


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
