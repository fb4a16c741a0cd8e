"""The records validation checked, kept for the execution: parse the upload once.

Validation parses the upload (the readers' JSON/CSV parsing and building is the import's
largest own cost) and, while it stages, writes every record that passed its checks to one
object, `imports/<jobId>/checked`: the records as BSON documents (`{"k": kind, "d": document,
"f": file, "l": line, "p": path}`, encoded with the MongoDB client's own codec options, so
what comes back is what a write and a read of MongoDB give), deflated (zlib level 1: ~5x
smaller, ~180 MB/s). Only dataport's tasks write that key (no upload form names it); its ETag,
taken once it is complete, is kept in the job row (`ImportState.checked_pin`) and every GET of
it requires that ETag (If-Match), as the pinned upload's do. The execution streams the new
sessions' messages from it instead of parsing the upload again, and does not check them again
(`imports.validate.recheck`): the pin proves they are the bytes validation wrote after its
checks (docs/imports.md).

Memory: one part (`STREAM_PART_SIZE`) and two chunks of encoded records (one gathering, one
deflated and written in the writer's thread) while writing (the object stays in memory while it
fits in one part: one PutObject; past that a multipart upload, aborted by `abort`), one read buffer
of compressed bytes and the documents it holds while reading.

A message is kept in two parts, `{"k": "message", "h": header, "b": body}`: the header holds
the few fields the execution reads before it writes a message (HEADER_FIELDS: its ids, type,
time and what the session's totals count, plus `_id` and the import tag when the upload has
them) and the body is the BSON of the rest, as bytes. Reading decodes the header alone (an
`Encoded` message); a message whose ids the execution keeps is inserted as its body with a new
`_id` and the job's tag put in front (`Encoded.stored`), never decoded or encoded again; one
whose ids it derives (a copy, a uuid held elsewhere) is decoded whole (`Encoded.full`).

A record BSON cannot encode (it could not be written to MongoDB either) leaves the object
unwritten: the execution then reads the pinned upload again, as before this object existed. So
does an upload that reads again cheaply (`ImportSource.read_again_cheaply`: dataport's own
JSON), for which validation keeps no object at all (docs/imports.md).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC
from typing import IO, TYPE_CHECKING, Any

import bson
from bson import ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from dataport.bucket.s3 import STREAM_PART_SIZE
from dataport.errors import UploadChanged
from dataport.imports.sealed import Sealer, SealingWriter, Sink
from dataport.imports.storage import checked_key
from dataport.models.jobs import UploadPin
from dataport.models.records import ImportRecord, Location, RecordKind
from dataport.source.writes import IMPORT_TAG

if TYPE_CHECKING:
    from dataport.bucket import PackagesBucket

#: the codec of the MongoDB client (source.mongo.client_for): aware UTC dates, standard UUIDs
CODEC: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True, tzinfo=UTC, uuid_representation=UuidRepresentation.STANDARD)
#: compressed bytes read per GET-buffer refill
READ_SIZE = 256 * 1024
_RAW = CODEC.with_options(document_class=RawBSONDocument)
#: record kinds by value (a dict look-up: the Enum call costs more than decoding a header)
_KINDS = {kind.value: kind for kind in RecordKind}
#: encoded bytes gathered before they go to the compressing thread
_CHUNK = 256 * 1024
#: a message's fields in its header: what the execution reads of a message it inserts (the
#: identity look-up, imports.plan and readers.typed.SessionTotals), messageData by its id alone
HEADER_FIELDS = ("uuid", "sessionId", "type", "timestamp", "parentUuid", "costUsd", "usage")
#: fields every write sets itself, kept in the header so that the body never holds them
_SET_BY_WRITES = ("_id", IMPORT_TAG)


class Encoded(dict[str, Any]):
    """A message as the checked records hold it: its header's fields (what the planner reads)
    and `body`, the BSON of the rest, left encoded."""

    body: bytes

    @classmethod
    def of(cls, header: dict[str, Any], body: bytes) -> Encoded:
        message = cls(header)
        message.body = body
        return message

    def full(self) -> dict[str, Any]:
        """The whole message, decoded (as it was added; `_id` and the tag moved to its ends)."""
        doc = {key: self[key] for key in ("_id",) if key in self}
        doc.update(bson.decode(self.body, CODEC))
        if IMPORT_TAG in self:
            doc[IMPORT_TAG] = self[IMPORT_TAG]
        return doc

    def stored(self, document_id: ObjectId, tag: bytes) -> RawBSONDocument:
        """The message as an import inserts it, unchanged but for its `_id` and tag (`tagged`):
        the body's bytes behind those two fields (nothing decoded or encoded again)."""
        size = len(_ID) + 12 + len(tag) + len(self.body)
        return RawBSONDocument(b"".join((size.to_bytes(4, "little"), _ID, document_id.binary,
                                         tag, self.body[4:])), _RAW)


def tagged(job_id: str) -> bytes:
    """The BSON element of the import tag, for `Encoded.stored` (encoded once per job)."""
    return bson.encode({IMPORT_TAG: job_id})[4:-1]


#: the head of an ObjectId element named _id (type 0x07, the name, its 12 bytes follow)
_ID = b"\x07_id\x00"


def decoded(doc: dict[str, Any]) -> dict[str, Any]:
    """A message whole, whether the checked records left it encoded or not."""
    return doc.full() if isinstance(doc, Encoded) else doc


def _encoded_message(doc: dict[str, Any]) -> tuple[dict[str, Any], bson.Binary]:
    """A message's header and body (see the module docstring)."""
    header = {key: doc[key] for key in HEADER_FIELDS if key in doc}
    for key in _SET_BY_WRITES:
        if key in doc:
            header[key] = doc[key]
    data = doc.get("messageData")
    if isinstance(data, dict) and "id" in data:
        header["messageData"] = {"id": data["id"]}
    body = {key: value for key, value in doc.items() if key not in _SET_BY_WRITES}
    return header, bson.Binary(bson.encode(body, codec_options=CODEC))


def _entry(record: ImportRecord) -> bytes:
    """A record's entry: `{k: kind, h: header, b: body | d: document, f, l?, p?}`."""
    entry: dict[str, Any] = {"k": record.kind.value}
    if record.kind is RecordKind.MESSAGE:
        entry["h"], entry["b"] = _encoded_message(record.doc)
    else:
        entry["d"] = record.doc
    entry["f"] = record.location.file
    if record.location.line is not None:
        entry["l"] = record.location.line
    if record.location.path is not None:
        entry["p"] = record.location.path
    return bson.encode(entry, codec_options=CODEC)


class CheckedWriter:
    """Appends records to the job's checked-records object; `complete` stores it and pins it,
    `abort` leaves nothing behind.

    The encoded records are compressed and written in a thread of its own, a chunk at a time
    (zlib lets go of the GIL while it deflates): validation's parse goes on meanwhile. At most
    one chunk is in that thread (memory: two chunks); what it raised is raised by the next
    `add` or by `complete`."""

    def __init__(self, bucket: PackagesBucket, job_id: str,
                 part_size: int = STREAM_PART_SIZE, sealer: Sealer | None = None) -> None:
        """`sealer`: the object is sealed (a restore shard's records, sealed as its part)."""
        self.key = checked_key(job_id)
        self._bucket = bucket
        self._stored = bucket.open_write(self.key, part_size)
        self._sealer = sealer
        self._out: Sink = self._stored if sealer is None else sealer.writer(self._stored,
                                                                             self.key)
        self._deflate = zlib.compressobj(1)
        self._encoded = bytearray()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self.records = 0

    def add(self, record: ImportRecord) -> None:
        """Raises bson's InvalidDocument (or another encoding error) for a record BSON cannot
        hold; the caller then aborts."""
        self._encoded += _entry(record)
        self.records += 1
        if len(self._encoded) >= _CHUNK:
            self._send(final=False)

    def complete(self) -> UploadPin:
        """Store the object; its pin (ETag and size) for every later read."""
        self._send(final=True)
        self._settle(raising=True)
        if isinstance(self._out, SealingWriter):
            self._out.finish()
        self._stored.close()
        pin = self._bucket.pin_written(self.key)
        return pin if self._sealer is None else self._sealer.pinned(pin)

    def abort(self) -> None:
        """Abort the multipart upload if one was started (nothing else was written), once the
        compressing thread is idle."""
        self._encoded = bytearray()
        self._settle(raising=False)
        self._stored.terminate()

    def _send(self, *, final: bool) -> None:
        """The chunk gathered so far to the compressing thread, once the one before is
        written."""
        self._settle(raising=True, keep=True)
        chunk, self._encoded = self._encoded, bytearray()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checked-deflate")
        self._pending = self._pool.submit(self._write, chunk, final)

    def _write(self, chunk: bytearray, final: bool) -> None:
        data = self._deflate.compress(chunk)
        if final:
            data += self._deflate.flush()
        if data:
            self._out.write(data)

    def _settle(self, *, raising: bool, keep: bool = False) -> None:
        """Until the chunk in the thread is written (raising what its write raised), and the
        thread gone unless `keep`."""
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                if raising:
                    pending.result()
                else:
                    wait([pending])
        finally:
            if not keep and self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def read_checked(stream: IO[bytes]) -> Iterator[ImportRecord]:
    """The records of a checked-records object (a pinned stream: storage.open_pinned), in the
    order validation wrote them. A truncated or altered object raises UploadChanged (If-Match
    makes that impossible; the import must not rely on it)."""
    inflate = zlib.decompressobj()
    pending = bytearray()
    with stream:
        while True:
            chunk = stream.read(READ_SIZE)
            try:
                pending += inflate.decompress(chunk) if chunk else inflate.flush()
            except zlib.error as error:
                raise _damaged(str(error)) from error
            end = _whole_documents(pending)
            if end:
                for entry in bson.decode_all(bytes(pending[:end]), CODEC):
                    doc = entry["d"] if "d" in entry else Encoded.of(entry["h"], entry["b"])
                    yield ImportRecord(_KINDS[entry["k"]], doc,
                                       Location(entry["f"], entry.get("l"), entry.get("p")))
                del pending[:end]
            if not chunk:
                break
    if pending or not inflate.eof or inflate.unused_data:
        raise _damaged("it ends inside a record")


def _whole_documents(data: bytearray) -> int:
    """How many leading bytes of `data` are whole BSON documents."""
    position, size = 0, len(data)
    while position + 4 <= size:
        length = int.from_bytes(data[position:position + 4], "little")
        if length < 5 or position + length > size:
            break
        position += length
    return position


def _damaged(why: str) -> UploadChanged:
    return UploadChanged(f"The records validation checked cannot be read back ({why}); "
                         "nothing of them was imported.")
