"""Staged files: each output file of a worker, stored on S3 as the raw bytes of its future zip
member (deflate without zlib/zip headers, or stored), plus what the zip headers and the manifest
need to know about it (`StagedFile`). The finalize step stitches them into the package without
recompressing (see package.py).

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
    from dataport.bucket import PackagesBucket


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


class StagedFileWriter:
    """An `OutputFile` streaming to one staged object through a smart-open multipart upload,
    so memory stays at one part whatever the file's size."""

    def __init__(self, bucket: PackagesBucket, key: str, *, path: str,
                 numbering: Numbering = Numbering.WHEN_SPLIT, level: int = 6,
                 password: SecretStr | None = None,
                 part_size: int = DEFAULT_PART_SIZE) -> None:
        self.path = path
        self.numbering = numbering
        self.key = key
        self._method = zip_method(level)
        self._encrypted = password is not None
        self._transforms = transforms(level, password)
        self._crc32 = 0
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._compressed_size = 0
        self._records = 0
        self._notes: list[str] = []
        self._staged: StagedFile | None = None
        self._out = bucket.multipart_writer(key, part_size)

    @property
    def bytes_written(self) -> int:
        """Uncompressed bytes: what the split size is measured in."""
        return self._size

    def write(self, data: bytes) -> None:
        if self._out.closed:
            raise ValueError(f"write to a closed staged file: {self.path}")
        self._crc32 = zlib.crc32(data, self._crc32)
        self._sha256.update(data)
        self._size += len(data)
        self._emit(run_transforms(self._transforms, data))

    def add_records(self, count: int = 1) -> None:
        self._records += count

    def add_note(self, note: str) -> None:
        self._notes.append(note)

    def close(self) -> StagedFile:
        """Flush and complete the upload; closing again returns the same record."""
        if self._staged is None:
            if self._out.closed:
                raise ValueError(f"staged file was aborted: {self.path}")
            self._emit(run_transforms(self._transforms, b"", final=True))
            self._out.close()
            self._staged = StagedFile(
                path=self.path, numbering=self.numbering, staging_key=self.key,
                method=self._method, encrypted=self._encrypted, crc32=self._crc32,
                size=self._size,
                compressed_size=self._compressed_size, sha256=self._sha256.hexdigest(),
                records=self._records, notes=list(self._notes),
            )
        return self._staged

    def abort(self) -> None:
        """Abort the multipart upload: no object and no upload is left behind."""
        if self._staged is None:
            self._out.terminate()

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._compressed_size += len(data)


class StagingSink:
    """The `FileSink` of one worker invocation: files go to `<prefix><seq:06d>.bin` (prefix:
    `locations.shard_prefix`, so keys sort in package order), numbered from `start_seq` so the
    next invocation of the same shard continues at `next_seq`. With a `password`, every file is
    encrypted."""

    def __init__(self, bucket: PackagesBucket, prefix: str, *, start_seq: int = 0,
                 level: int = 6, password: SecretStr | None = None,
                 part_size: int = DEFAULT_PART_SIZE) -> None:
        zip_method(level)  # fail at construction, not at the first open()
        self._bucket = bucket
        self._prefix = prefix
        self._level = level
        self._password = password
        self._part_size = part_size
        self._next_seq = start_seq
        self._open: dict[int, StagedFileWriter] = {}
        self._closed: dict[int, StagedFile] = {}

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def bytes_written(self) -> int:
        """Uncompressed bytes written so far, to closed and open files."""
        return (sum(f.size for f in self._closed.values())
                + sum(w.bytes_written for w in self._open.values()))

    @property
    def files(self) -> list[StagedFile]:
        """Closed files in the order they were opened (the order they take in the package)."""
        return [self._closed[seq] for seq in sorted(self._closed)]

    def open(self, path: str, numbering: Numbering = Numbering.WHEN_SPLIT) -> StagedFileWriter:
        seq = self._next_seq
        writer = StagedFileWriter(
            self._bucket, f"{self._prefix}{seq:06d}.bin", path=path,
            numbering=numbering, level=self._level, password=self._password,
            part_size=self._part_size,
        )
        self._next_seq += 1
        self._open[seq] = writer
        return writer

    def close(self, file: OutputFile) -> None:
        seq = next((s for s, w in self._open.items() if w is file), None)
        if seq is None:
            raise ValueError("file was not opened by this sink, or is already closed")
        # Forget the writer only once it closed: if completing fails, abort_all still sees it.
        self._closed[seq] = self._open[seq].close()
        del self._open[seq]

    def abort_all(self) -> None:
        """Abort every file still open (a failed invocation leaves no upload behind)."""
        while self._open:
            _, writer = self._open.popitem()
            writer.abort()

    def discard(self) -> None:
        """Abort what is open and delete what this sink already closed: after a failure or a
        cancel, the invocation leaves neither an upload nor a staged object behind (a cleanup
        that ran before this invocation noticed cannot have seen them)."""
        self.abort_all()
        while self._closed:
            _, staged = self._closed.popitem()
            self._bucket.delete(staged.staging_key)
