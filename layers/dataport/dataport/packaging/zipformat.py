"""The zip records dataport writes itself (APPNOTE 6.3.x), as pure functions.

The package is assembled from parts already on S3, so `zipfile` cannot write it: we emit each
member's local header with its final name, CRC and sizes known up front (no data descriptors),
then the central directory and the end records. ZIP64 fields appear only where a value does not
fit (or everywhere when `force_zip64`, which tests use to exercise the ZIP64 path on small data).
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

STORED = 0
DEFLATED = 8
WINZIP_AES = 99  # the real method is in the 0x9901 extra field

FLAG_ENCRYPTED = 0x0001  # bit 0
FLAG_UTF8 = 0x0800  # bit 11: name is UTF-8
LIMIT_16 = 0xFFFF  # a 16-bit field holding this value means "see the ZIP64 record"
LIMIT_32 = 0xFFFFFFFF

_MADE_BY = (3 << 8) | 45  # Unix host, so unzip applies external_attr below; spec 4.5
_EXTERNAL_ATTR = 0o100644 << 16  # regular file, rw-r--r--

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<IHHHHIIH")
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_EXTRA_HEADER = struct.Struct("<HH")
_AES_EXTRA = struct.Struct("<H2sBH")  # vendor version, vendor id, strength, real method

_DOS_MIN = datetime(1980, 1, 1, tzinfo=UTC)
_DOS_MAX = datetime(2107, 12, 31, 23, 59, 58, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """What the headers of one member say. `flags` and `extra` let a layer add to the records
    without changing them here (`encrypted`: bit 0, the 0x9901 field, method 99)."""

    name: str
    method: int
    crc32: int
    compressed_size: int
    size: int
    modified: datetime
    offset: int = 0
    flags: int = 0
    extra: bytes = b""


def dos_datetime(moment: datetime) -> tuple[int, int]:
    """(time, date) in MS-DOS format. DOS time has no zone, so it is written as UTC (the
    extended-timestamp field carries the exact instant); out-of-range instants are clamped."""
    if moment.tzinfo is None:
        raise ValueError("modified time must be timezone-aware")
    t = min(max(moment.astimezone(UTC), _DOS_MIN), _DOS_MAX)
    return ((t.hour << 11) | (t.minute << 5) | (t.second // 2),
            ((t.year - 1980) << 9) | (t.month << 5) | t.day)


def _unix_time_extra(moment: datetime) -> bytes:
    """Info-ZIP extended timestamp (0x5455): mtime as a signed 32-bit Unix time, in UTC."""
    seconds = int(moment.timestamp())
    if not 0 <= seconds <= 0x7FFFFFFF:
        return b""
    return _EXTRA_HEADER.pack(0x5455, 5) + struct.pack("<Bi", 1, seconds)


def _zip64_extra(values: list[int]) -> bytes:
    if not values:
        return b""
    return _EXTRA_HEADER.pack(0x0001, 8 * len(values)) + struct.pack(f"<{len(values)}Q", *values)


def encrypted(entry: ZipEntry) -> ZipEntry:
    """The same member as WinZip AES-256 AE-2 writes it: method 99, CRC 0 (AE-2 authenticates
    with its HMAC instead), bit 0 set, and the 0x9901 field naming the real method."""
    aes = _AES_EXTRA.pack(2, b"AE", 3, entry.method)
    return dataclasses.replace(entry, method=WINZIP_AES, crc32=0,
                               flags=entry.flags | FLAG_ENCRYPTED,
                               extra=entry.extra + _EXTRA_HEADER.pack(0x9901, len(aes)) + aes)


def _version_needed(method: int, zip64: bool) -> int:
    if method == WINZIP_AES:
        return 51  # APPNOTE 4.4.3.2: AES encryption
    if zip64:
        return 45
    return 10 if method == STORED else 20


def _encoded_name(entry: ZipEntry) -> bytes:
    name = entry.name.encode("utf-8")
    if len(name) > LIMIT_16:
        raise ValueError(f"member name too long: {entry.name[:80]}...")
    return name


def local_file_header(entry: ZipEntry, *, force_zip64: bool = False) -> bytes:
    """Local file header + name + extra. Sizes are final, so general-purpose bit 3 (data
    descriptor) stays clear; a ZIP64 local extra must carry both sizes (APPNOTE 4.5.3)."""
    zip64 = force_zip64 or entry.size >= LIMIT_32 or entry.compressed_size >= LIMIT_32
    name = _encoded_name(entry)
    extra = ((_zip64_extra([entry.size, entry.compressed_size]) if zip64 else b"")
             + _unix_time_extra(entry.modified) + entry.extra)
    dos_time, dos_date = dos_datetime(entry.modified)
    header = _LOCAL.pack(
        0x04034B50, _version_needed(entry.method, zip64), FLAG_UTF8 | entry.flags, entry.method,
        dos_time, dos_date, entry.crc32,
        LIMIT_32 if zip64 else entry.compressed_size,
        LIMIT_32 if zip64 else entry.size,
        len(name), len(extra),
    )
    return header + name + extra


def central_directory_header(entry: ZipEntry, *, force_zip64: bool = False) -> bytes:
    """Central directory entry; the ZIP64 extra holds exactly the fields that overflow, in the
    order the spec fixes (size, compressed size, offset)."""
    sizes = [entry.size, entry.compressed_size, entry.offset]
    overflow = [force_zip64 or value >= LIMIT_32 for value in sizes]
    zip64 = any(overflow)
    name = _encoded_name(entry)
    extra = (_zip64_extra([v for v, big in zip(sizes, overflow, strict=True) if big])
             + _unix_time_extra(entry.modified) + entry.extra)
    size, compressed, offset = (LIMIT_32 if big else v
                                for v, big in zip(sizes, overflow, strict=True))
    dos_time, dos_date = dos_datetime(entry.modified)
    header = _CENTRAL.pack(
        0x02014B50, _MADE_BY, _version_needed(entry.method, zip64), FLAG_UTF8 | entry.flags,
        entry.method, dos_time, dos_date, entry.crc32, compressed, size,
        len(name), len(extra), 0, 0, 0, _EXTERNAL_ATTR, offset,
    )
    return header + name + extra


def end_of_central_directory(entries: int, cd_offset: int, cd_size: int, *,
                             force_zip64: bool = False) -> bytes:
    """End records, written right after the central directory. The ZIP64 end record and its
    locator come first when a count or offset does not fit the classic record."""
    zip64 = force_zip64 or entries >= LIMIT_16 or cd_offset >= LIMIT_32 or cd_size >= LIMIT_32
    records = b""
    if zip64:
        zip64_offset = cd_offset + cd_size
        records = (
            _ZIP64_EOCD.pack(0x06064B50, _ZIP64_EOCD.size - 12, _MADE_BY, 45, 0, 0,
                             entries, entries, cd_size, cd_offset)
            + _ZIP64_LOCATOR.pack(0x07064B50, 0, zip64_offset, 1)
        )
    # Classic fields keep their value where it fits, as zipfile and Info-ZIP write them.
    return records + _EOCD.pack(0x06054B50, 0, 0, min(entries, LIMIT_16), min(entries, LIMIT_16),
                                min(cd_size, LIMIT_32), min(cd_offset, LIMIT_32), 0)
