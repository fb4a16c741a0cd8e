"""Staged files: each output file of a worker, stored on S3 as the raw bytes of its future zip
member (deflate without zlib/zip headers, or stored), plus what the zip headers and the manifest
need to know about it (`StagedFile`). One worker invocation stages one object holding every
file it wrote, one after another (`StagedObject`); each file's record says where its bytes are.
The finalize step stitches them into the package without recompressing (see package.py).

Between the format writer and S3 the bytes pass through a chain of `Transform`s: compression,
then, when the export has a password, WinZip AES-256 AE-2 encryption (encryption.py), per
member, so the finalizer can still copy the staged bytes without ever seeing them in clear.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

from dataport.formats.base import Numbering, OutputFile
from dataport.models.staged import StagedFile
from dataport.packaging.assembler import DEFAULT_PART_SIZE
from dataport.packaging.encryption import WinZipAes
from dataport.packaging.zipformat import DEFLATED, STORED, ZipEntry, encrypted

if TYPE_CHECKING:
    from dataport.bucket import ObjectWriter, PackagesBucket


def staged_entry(staged: StagedFile, name: str, modified: datetime, offset: int) -> ZipEntry:
    """The zip records of a staged file as member `name` at `offset`."""
    return member_entry(name, method=staged.method, crc32=staged.crc32, size=staged.size,
                        compressed_size=staged.compressed_size, modified=modified,
                        offset=offset, aes=staged.encrypted)


def member_entry(name: str, *, method: int, crc32: int, size: int, compressed_size: int,
                 modified: datetime, offset: int, aes: bool) -> ZipEntry:
    """The zip records of a member that went through `transforms(level, password)`."""
    entry = ZipEntry(name, method, crc32, compressed_size, size, modified, offset)
    return encrypted(entry) if aes else entry


class Transform(Protocol):
    """A streaming step between a file's bytes and its staged object."""

    def update(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Deflate:
    """Raw deflate (wbits -15): exactly the member data a zip entry with method 8 holds."""

    def __init__(self, level: int) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -15)

    def update(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def finish(self) -> bytes:
        return self._compressor.flush()


def zip_method(level: int) -> int:
    """Level 0 stores; 1-9 deflate (the export request's `compression.level`)."""
    if not 0 <= level <= 9:
        raise ValueError(f"compression level must be 0-9, got {level}")
    return STORED if level == 0 else DEFLATED


def transforms(level: int, password: SecretStr | None = None) -> list[Transform]:
    """A new chain for one member: compression, then (with a password) encryption, the order
    a zip reader undoes them in."""
    chain: list[Transform] = [Deflate(level)] if zip_method(level) == DEFLATED else []
    if password is not None:
        chain.append(WinZipAes(password))
    return chain


def run_transforms(transforms: list[Transform], data: bytes, *, final: bool = False) -> bytes:
    """Pass `data` through the chain; with `final`, flush every step in order."""
    for step in transforms:
        data = step.update(data)
        if final:
            data += step.finish()
    return data


#: what a file that is not at the staged object's end holds in memory before it appends a
#: segment of its own (csv writes sessions and messages side by side)
SEGMENT_SIZE = 1024 * 1024
#: what a staged file gathers from its writer before checksumming and compressing it
WRITE_BUFFER_SIZE = 64 * 1024


class StagedObject:
    """The one staged object of a worker invocation: every file's member bytes, appended one
    after another. It stays in memory while it fits in one part (then completing it is one
    PutObject); past that it becomes a smart-open multipart upload with parts of `part_size`,
    so memory stays at about one part whatever the invocation writes."""

    def __init__(self, bucket: PackagesBucket, key: str, part_size: int) -> None:
        self.key = key
        self._bucket = bucket
        self._part_size = part_size
        # the bucket's buffer-or-multipart writer, opened by the first byte: an invocation that
        # wrote nothing stores nothing (no file reads from it)
        self._writer: ObjectWriter | None = None
        self.size = 0
        #: the file whose bytes end the object: it appends without buffering
        self.tail: StagedFileWriter | None = None
        self.completed = False
        self.aborted = False

    def append(self, data: bytes, writer: StagedFileWriter) -> int:
        """Append `data` for `writer`; returns the offset it starts at."""
        if self.completed or self.aborted:
            raise ValueError(f"staged object {self.key} is already "
                             f"{'complete' if self.completed else 'aborted'}")
        offset = self.size
        if self._writer is None:
            self._writer = self._bucket.open_write(self.key, self._part_size)
        self._writer.write(data)
        self.size += len(data)
        self.tail = writer
        return offset

    def complete(self) -> None:
        """Store the object (nothing when no byte was written: no file reads from it)."""
        if self.completed:
            return
        if self.aborted:
            raise ValueError(f"staged object {self.key} was aborted")
        if self._writer is not None:
            self._writer.close()
        self.completed = True

    def abort(self) -> None:
        """Abort the multipart upload, if one was started: nothing is left behind."""
        if self.completed or self.aborted:
            return
        self.aborted = True
        if self._writer is not None:
            self._writer.terminate()


class StagedFileWriter:
    """An `OutputFile` whose compressed (and encrypted) bytes are appended to the invocation's
    `StagedObject`. While it is the object's tail its bytes go straight on; a file written
    while another one is open keeps up to SEGMENT_SIZE bytes before it appends a segment."""

    def __init__(self, staged_object: StagedObject, *, path: str,
                 numbering: Numbering = Numbering.WHEN_SPLIT, level: int = 6,
                 password: SecretStr | None = None) -> None:
        self.path = path
        self.numbering = numbering
        self.key = staged_object.key
        self._object = staged_object
        self._method = zip_method(level)
        self._encrypted = password is not None
        self._transforms = transforms(level, password)
        self._crc32 = 0
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._compressed_size = 0
        self._records = 0
        self._notes: list[str] = []
        self._content: tuple[int, str] | None = None
        self._segments: list[list[int]] = []  # [offset, length]
        self._pending = bytearray()
        self._unhashed = bytearray()  # written, not yet checksummed nor compressed
        self._staged: StagedFile | None = None
        self._aborted = False

    @property
    def bytes_written(self) -> int:
        """Uncompressed bytes: what the split size is measured in."""
        return self._size

    def write(self, data: bytes) -> None:
        if self._staged is not None or self._aborted:
            raise ValueError(f"write to a closed staged file: {self.path}")
        self._size += len(data)
        # Writers hand over a record at a time (a message: a few hundred bytes); checksums
        # and compression run on WRITE_BUFFER_SIZE at once, not on ten thousand small calls.
        self._unhashed += data
        if len(self._unhashed) >= WRITE_BUFFER_SIZE:
            self._process()

    def _process(self) -> None:
        if self._unhashed:
            data, self._unhashed = bytes(self._unhashed), bytearray()
            self._crc32 = zlib.crc32(data, self._crc32)
            self._sha256.update(data)
            self._emit(run_transforms(self._transforms, data))

    def add_records(self, count: int = 1) -> None:
        self._records += count

    def add_note(self, note: str) -> None:
        self._notes.append(note)

    def set_content(self, size: int, sha256: str) -> None:
        self._content = (size, sha256)

    def close(self) -> StagedFile:
        """Flush its bytes into the staged object; closing again returns the same record."""
        if self._staged is None:
            if self._aborted:
                raise ValueError(f"staged file was aborted: {self.path}")
            self._process()
            self._emit(run_transforms(self._transforms, b"", final=True))
            self._append_pending()
            if self._object.tail is self:
                self._object.tail = None
            segments = [(offset, length) for offset, length in self._segments]
            self._staged = StagedFile(
                path=self.path, numbering=self.numbering, staging_key=self.key,
                method=self._method, encrypted=self._encrypted, crc32=self._crc32,
                size=self._size, compressed_size=self._compressed_size,
                offset=segments[0][0] if segments else self._object.size,
                segments=segments if len(segments) > 1 else None,
                sha256=self._sha256.hexdigest(), records=self._records,
                notes=list(self._notes),
                content_size=self._content[0] if self._content else None,
                content_sha256=self._content[1] if self._content else None,
            )
        return self._staged

    def abort(self) -> None:
        """Forget what is not appended yet (the sink aborts the object itself)."""
        if self._staged is None:
            self._aborted = True
            self._pending = bytearray()
            self._unhashed = bytearray()
            if self._object.tail is self:
                self._object.tail = None

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self._compressed_size += len(data)
        tail = self._object.tail
        if tail is self or tail is None:
            self._append_pending()
            self._append(data)
        else:
            self._pending += data
            if len(self._pending) >= SEGMENT_SIZE:
                self._append_pending()

    def _append_pending(self) -> None:
        if self._pending:
            data, self._pending = bytes(self._pending), bytearray()
            self._append(data)

    def _append(self, data: bytes) -> None:
        offset = self._object.append(data, self)
        last = self._segments[-1] if self._segments else None
        if last is not None and last[0] + last[1] == offset:
            last[1] += len(data)
        else:
            self._segments.append([offset, len(data)])


class StagingSink:
    """The `FileSink` of one worker invocation. Every file goes to one staged object,
    `<prefix><start_seq:06d>.bin` (prefix: `locations.shard_prefix`, so keys sort in package
    order; a retried invocation starts at the same seq and overwrites it), at the offsets its
    `StagedFile` records. Files are numbered from `start_seq` so the next invocation of the
    same shard continues at `next_seq`. With a `password`, every file is encrypted."""

    def __init__(self, bucket: PackagesBucket, prefix: str, *, start_seq: int = 0,
                 level: int = 6, password: SecretStr | None = None,
                 part_size: int = DEFAULT_PART_SIZE) -> None:
        zip_method(level)  # fail at construction, not at the first open()
        self._bucket = bucket
        self._level = level
        self._password = password
        self._object = StagedObject(bucket, f"{prefix}{start_seq:06d}.bin", part_size)
        self._next_seq = start_seq
        self._open: dict[int, StagedFileWriter] = {}
        self._closed: dict[int, StagedFile] = {}
        self._closed_bytes = 0

    @property
    def staging_key(self) -> str:
        return self._object.key

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def bytes_written(self) -> int:
        """Uncompressed bytes written so far, to closed and open files."""
        return self._closed_bytes + sum(w.bytes_written for w in self._open.values())

    @property
    def files(self) -> list[StagedFile]:
        """Closed files in the order they were opened (the order they take in the package);
        they can be read once `complete` stored the staged object."""
        return [self._closed[seq] for seq in sorted(self._closed)]

    def open(self, path: str, numbering: Numbering = Numbering.WHEN_SPLIT) -> StagedFileWriter:
        if self._object.completed or self._object.aborted:
            raise ValueError("the sink's staged object is complete or aborted: no new file")
        seq = self._next_seq
        writer = StagedFileWriter(self._object, path=path, numbering=numbering,
                                  level=self._level, password=self._password)
        self._next_seq += 1
        self._open[seq] = writer
        return writer

    def close(self, file: OutputFile) -> None:
        seq = next((s for s, w in self._open.items() if w is file), None)
        if seq is None:
            raise ValueError("file was not opened by this sink, or is already closed")
        staged = self._open[seq].close()
        self._closed[seq] = staged
        self._closed_bytes += staged.size
        del self._open[seq]

    def complete(self) -> list[StagedFile]:
        """Store the staged object once every file is closed; returns the files."""
        if self._open:
            raise ValueError(f"{len(self._open)} files are still open")
        self._object.complete()
        return self.files

    def abort_all(self) -> None:
        """Abort every file still open and the staged object's upload (a failed invocation
        leaves no upload behind); closed files that were not stored yet go with it."""
        while self._open:
            _, writer = self._open.popitem()
            writer.abort()
        if not self._object.completed:
            self._closed.clear()
        self._object.abort()

    def discard(self) -> None:
        """Abort what is open and delete the staged object if it was stored: after a failure
        or a cancel, the invocation leaves neither an upload nor a staged object behind (a
        cleanup that ran before this invocation noticed cannot have seen them)."""
        completed = self._object.completed
        self.abort_all()
        self._closed.clear()
        if completed and self._object.size:
            self._bucket.delete(self._object.key)
