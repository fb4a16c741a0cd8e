"""The backup format (docs/backups.md): the contract between backups, restores and schedules.

A backup is a zip whose data members are STORED (their bytes are already zstd):

- `projects/<part>.jsonl.zst`, `sessions/<part>.jsonl.zst`, `messages/<part>.jsonl.zst`
  (`<part>` = `<shard:05d>-<seq:05d>`): one zstd frame each, with zstd's content checksum, of
  canonical Extended JSON lines (dataport.formats.extjson, byte-identical to bson.json_util
  canonical), one document per line, exactly as stored (every field, `_id` included, in order).
  Messages of both layouts (`messages`, `messages_YYYY_MM`) go to `messages/`.
- `deletions.jsonl.zst` (incremental backups only): `{"collection": "sessions", "sessionId": ...}`
  and `{"collection": "projects", "_id": {"$oid": ...}}` for what the parent chain had and the
  source no longer has.
- `manifest.json` (plain JSON, the last member): `BackupManifest`.

With a password every member is WinZip AES-256 encrypted, as export packages are.

Here: the manifest model, member naming, the streaming member writer (documents -> lines ->
one zstd frame, SHA-256 of both forms, counts) and reader (zstd -> lines -> documents), and a
reader of a stored backup (`BackupContainer`) that opens one member at a time from any seekable
stream (a smart-open S3 reader reads by ranged GETs), decrypting AES members with the password.
Memory: one line, one zstd window and one read buffer, whatever the size of a member.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any, Final, Literal, cast

import pyzipper
import zstandard
from pydantic import AwareDatetime, ConfigDict, Field, field_validator

from dataport import GENERATOR
from dataport.formats import extjson_reader
from dataport.formats.extjson import escaped_json_bytes
from dataport.models.backups import BackupCounts
from dataport.models.common import ApiModel
from dataport.models.documents import MessageLayout

FORMAT: Final = "dataport-backup"
#: 2: user keys that start with `$` carry one more (`escaped_json_bytes`); 1: written as they are
FORMAT_VERSION: Final = 2
MANIFEST_NAME: Final = "manifest.json"
DELETIONS_MEMBER: Final = "deletions.jsonl.zst"
MEMBER_SUFFIX: Final = ".jsonl.zst"
DEFAULT_ZSTD_LEVEL: Final = 3
#: read size of the member reader (a zstd block is at most 128 KiB)
READ_CHUNK: Final = 256 * 1024
#: lines the member writer gathers before hashing and compressing them
BLOCK_SIZE: Final = 256 * 1024

Collection = Literal["projects", "sessions", "messages", "deletions"]
DATA_COLLECTIONS: Final[tuple[Collection, ...]] = ("projects", "sessions", "messages")
_DATA_COLLECTION: Final[dict[str, Collection]] = {name: name for name in DATA_COLLECTIONS}
_MEMBER = re.compile(r"(projects|sessions|messages)/(\d{5,})-(\d{5,})\.jsonl\.zst")


class FormatError(ValueError):
    """A member or manifest that does not follow the format, or fails its checksum."""


# --------------------------------------------------------------------------------------------
# Naming


def member_path(collection: Collection, shard: int, seq: int) -> str:
    """`messages/00003-00012.jsonl.zst`; `deletions.jsonl.zst` for the deletions."""
    if collection == "deletions":
        return DELETIONS_MEMBER
    if shard < 0 or seq < 0:
        raise ValueError("shard and seq must not be negative")
    return f"{collection}/{shard:05d}-{seq:05d}{MEMBER_SUFFIX}"


def collection_of(path: str) -> Collection | None:
    """The collection a member holds, from its path; None for the manifest or anything else."""
    if path == DELETIONS_MEMBER:
        return "deletions"
    match = _MEMBER.fullmatch(path)
    if match is None:
        return None
    return _DATA_COLLECTION[match[1]]


# --------------------------------------------------------------------------------------------
# The manifest


class _ManifestModel(ApiModel):
    # A newer dataport may add fields; an older one still restores what it understands.
    model_config = ConfigDict(extra="ignore")


class Compression(_ManifestModel):
    algorithm: Literal["zstd"] = "zstd"
    level: int = Field(ge=1, le=22)


class BackupBytes(_ManifestModel):
    uncompressed: int = Field(default=0, ge=0)
    compressed: int = Field(default=0, ge=0)


class MemberEntry(_ManifestModel):
    """One data member: `bytes`/`sha256` describe its uncompressed lines, `compressedBytes`/
    `compressedSha256` the zstd frame stored in the zip (before any encryption)."""

    path: str
    collection: Collection
    records: int = Field(ge=0)
    bytes: int = Field(ge=0)
    compressed_bytes: int = Field(ge=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    compressed_sha256: str = Field(pattern="^[0-9a-f]{64}$")


class BackupManifest(_ManifestModel):
    format: Literal["dataport-backup"] = FORMAT
    format_version: int = FORMAT_VERSION
    backup_id: str
    name: str
    description: str | None = None
    scope: Literal["user", "instance"]
    owner_id: str | None = Field(default=None, description="the user, for a user-scope backup")
    type: Literal["full", "selective", "incremental"]
    parent_id: str | None = None
    parent_watermark: AwareDatetime | None = None
    watermark: AwareDatetime = Field(description="UTC time the snapshot read started; an "
                                     "increment holds sessions with parentWatermark < updatedAt "
                                     "<= watermark")
    filters: dict[str, Any] = Field(default_factory=dict)
    created_at: AwareDatetime
    generator: str = GENERATOR
    compression: Compression
    encryption: Literal["aes-256"] | None = None
    message_layout: MessageLayout | None = Field(
        default=None, description="where the source database kept its messages (`single`: "
        "one `messages` collection, `monthly`: `messages_YYYY_MM`); a restore into a database "
        "with no message collection yet writes this layout. Absent: a backup made before "
        "dataport recorded it, or of a database that had no message collection")
    counts: BackupCounts = BackupCounts()
    bytes: BackupBytes = BackupBytes()
    members: list[MemberEntry] = Field(default_factory=list)

    @field_validator("created_at", "watermark", "parent_watermark")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(UTC)

    def to_json(self) -> builtins.bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: builtins.bytes) -> BackupManifest:
        manifest = cls.model_validate_json(data)
        if manifest.format_version > FORMAT_VERSION:
            raise FormatError(f"backup format version {manifest.format_version} is newer than "
                              f"this dataport reads ({FORMAT_VERSION}); upgrade dataport")
        return manifest

    def data_members(self, collection: Collection) -> list[MemberEntry]:
        return [m for m in self.members if m.collection == collection]


# --------------------------------------------------------------------------------------------
# Lines


def encode_line(document: object) -> bytes:
    """One document as its line (format version 2): canonical Extended JSON, every key of the
    data that starts with `$` written with one more `$`, and a newline."""
    return escaped_json_bytes(document) + b"\n"


def decode_line(line: bytes, version: int = FORMAT_VERSION) -> dict[str, Any]:
    """A line back into the document it was written from (BSON types, field order kept), as
    format `version` wrote it. ValueError (or TypeError, RecursionError) for a line that is not
    Extended JSON, FormatError for one that is not an object."""
    document = loads_line(line, version)
    if not isinstance(document, dict):
        raise FormatError("a backup line holds a JSON object")
    return document


def loads_line(line: bytes | str, version: int = FORMAT_VERSION) -> Any:
    """Any JSON value of a line, as format `version` wrote it (see `decode_line`).

    Version 2: every key of the data that starts with `$` was written with one more, so an
    object with a key of a single `$` is one of the type wrappers the writer wrote, and an
    object with a `$$` key is data: its keys lose their first `$` and it is not read as a type.
    A line without `"$$` holds no escaped key at all and is read as version 1 reads it.
    Either way exactly what `json_util.loads` (with that hook) gives, read by orjson and one
    walk (formats/extjson_reader.py: several times faster)."""
    escaped = version >= 2 and (b'"$$' in line if isinstance(line, bytes) else '"$$' in line)
    return extjson_reader.loads(line, unescape=escaped)


# --------------------------------------------------------------------------------------------
# The member writer


class MemberStats(ApiModel):
    records: int
    bytes: int
    compressed_bytes: int
    sha256: str
    compressed_sha256: str


class MemberWriter:
    """Documents -> canonical Extended JSON lines -> one zstd frame, handed to `out` in pieces
    (an export `OutputFile.write`, a file's write...). Counts records and hashes both forms.

    Lines are gathered into blocks of BLOCK_SIZE before they are hashed and compressed: one
    hashlib and one zstd call per block instead of two per line (about a kilobyte each), and
    calls large enough to run without the GIL."""

    def __init__(self, out: Callable[[bytes], object], *, level: int = DEFAULT_ZSTD_LEVEL) -> None:
        self._out = out
        self._compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._stream = self._compressor.compressobj()
        self._plain = hashlib.sha256()
        self._packed = hashlib.sha256()
        self._block = bytearray()
        self.records = 0
        self.bytes = 0
        self.compressed_bytes = 0
        self._stats: MemberStats | None = None

    def write(self, document: object) -> int:
        """Add one document; returns the size of its line."""
        return self.write_line(encode_line(document))

    def write_line(self, line: bytes) -> int:
        """Add one line already encoded (`encode_line`)."""
        if self._stats is not None:
            raise ValueError("the member is already closed")
        self._block += line
        self.bytes += len(line)
        self.records += 1
        if len(self._block) >= BLOCK_SIZE:
            self._flush_block()
        return len(line)

    def close(self) -> MemberStats:
        """End the frame (flushing what zstd holds); closing again returns the same stats."""
        if self._stats is None:
            self._flush_block()
            self._emit(self._stream.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
            self._stats = MemberStats(
                records=self.records, bytes=self.bytes, compressed_bytes=self.compressed_bytes,
                sha256=self._plain.hexdigest(), compressed_sha256=self._packed.hexdigest())
        return self._stats

    def _flush_block(self) -> None:
        if self._block:
            block, self._block = bytes(self._block), bytearray()
            self._plain.update(block)
            self._emit(self._stream.compress(block))

    def _emit(self, data: bytes) -> None:
        if data:
            self._packed.update(data)
            self.compressed_bytes += len(data)
            self._out(data)


# --------------------------------------------------------------------------------------------
# The member reader


class _HashingReader(io.RawIOBase):
    """Hands on a stream's bytes, counting and hashing them (the stored zstd frame)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        self.digest.update(data)
        self.size += len(data)
        buffer[:len(data)] = data
        return len(data)


class MemberReader:
    """One stored member (a stream of its zstd frame) back into lines and documents, checking
    both SHA-256s and the record count against its manifest entry once read to the end
    (`check` raises FormatError naming the member; zstd checks its own content checksum)."""

    def __init__(self, stream: IO[bytes], entry: MemberEntry | None = None, *,
                 version: int = FORMAT_VERSION) -> None:
        self.entry = entry
        self.version = version
        self._packed = _HashingReader(stream)
        self._plain = hashlib.sha256()
        self.records = 0
        self.bytes = 0

    def lines(self) -> Iterator[bytes]:
        """Every line (with its newline), streamed."""
        decompressor = zstandard.ZstdDecompressor()
        name = self.entry.path if self.entry else "member"
        try:
            with decompressor.stream_reader(cast(IO[bytes], self._packed), read_size=READ_CHUNK,
                                            read_across_frames=False) as raw:
                text = io.BufferedReader(raw, buffer_size=READ_CHUNK)
                for line in text:
                    self._plain.update(line)
                    self.bytes += len(line)
                    self.records += 1
                    yield line
        except zstandard.ZstdError as error:
            raise FormatError(f"{name}: not a valid zstd frame ({error})") from error
        # drain what follows the frame, so the stored bytes are hashed whole
        while self._packed.read(READ_CHUNK):
            pass

    def documents(self) -> Iterator[dict[str, Any]]:
        for line in self.lines():
            yield decode_line(line, self.version)

    def stats(self) -> MemberStats:
        return MemberStats(records=self.records, bytes=self.bytes,
                           compressed_bytes=self._packed.size,
                           sha256=self._plain.hexdigest(),
                           compressed_sha256=self._packed.digest.hexdigest())

    def check(self) -> MemberStats:
        """After reading to the end: the member's figures, or FormatError when they differ
        from its manifest entry."""
        stats = self.stats()
        entry = self.entry
        if entry is None:
            return stats
        if stats.compressed_sha256 != entry.compressed_sha256:
            raise FormatError(f"{entry.path}: the stored bytes do not match their SHA-256")
        if stats.sha256 != entry.sha256:
            raise FormatError(f"{entry.path}: the decompressed lines do not match their SHA-256")
        if (stats.records, stats.bytes, stats.compressed_bytes) != (
                entry.records, entry.bytes, entry.compressed_bytes):
            raise FormatError(f"{entry.path}: {stats.records} records, {stats.bytes} bytes "
                              f"({stats.compressed_bytes} stored); the manifest says "
                              f"{entry.records}, {entry.bytes} ({entry.compressed_bytes})")
        return stats


# --------------------------------------------------------------------------------------------
# A stored backup


class PasswordRequired(FormatError):
    """The backup is encrypted and no password, or a wrong one, was given."""


class BackupContainer:
    """A stored backup opened member by member from a seekable stream (`PackagesBucket.
    open_read`: ranged GETs, only the central directory and the members read are fetched).
    pyzipper checks each AES member's HMAC, or each plain member's CRC-32.

        with BackupContainer(stream, password) as backup:
            for entry in backup.manifest.members:
                reader = backup.member(entry)
                for document in reader.documents(): ...
                reader.check()
    """

    def __init__(self, stream: IO[bytes], password: str | None = None) -> None:
        try:
            self._zip = pyzipper.AESZipFile(stream)
        except pyzipper.BadZipFile as error:
            raise FormatError(f"not a backup: {error}") from error
        if password is not None:
            self._zip.setpassword(password.encode("utf-8"))
        self._password = password
        self._manifest: BackupManifest | None = None

    def __enter__(self) -> BackupContainer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def names(self) -> list[str]:
        return list(self._zip.namelist())

    @property
    def manifest(self) -> BackupManifest:
        if self._manifest is None:
            try:
                data = self._zip.read(MANIFEST_NAME)
            except KeyError:
                raise FormatError("not a backup: it has no manifest.json") from None
            except RuntimeError as error:  # pyzipper: "... requires a password" / "Bad password"
                raise PasswordRequired("the backup is encrypted: give its password"
                                       if self._password is None
                                       else "the password does not open this backup") from error
            manifest = BackupManifest.from_json(data)
            if manifest.format != FORMAT:
                raise FormatError("not a dataport backup")
            self._manifest = manifest
        return self._manifest

    def open_member(self, path: str) -> IO[bytes]:
        """A member's stored bytes (decrypted), streamed."""
        try:
            return self._zip.open(path)  # type: ignore[no-any-return]
        except KeyError:
            raise FormatError(f"{path}: listed in the manifest but not in the backup") from None
        except RuntimeError as error:
            raise PasswordRequired("the password does not open this backup") from error

    def member(self, entry: MemberEntry) -> MemberReader:
        return MemberReader(self.open_member(entry.path), entry,
                            version=self.manifest.format_version)
