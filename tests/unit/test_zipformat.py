"""The zip records we write by hand must read back with zipfile and Info-ZIP's unzip."""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
import zlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from dataport.packaging.zipformat import (
    DEFLATED,
    FLAG_UTF8,
    LIMIT_16,
    LIMIT_32,
    STORED,
    ZipEntry,
    central_directory_header,
    dos_datetime,
    end_of_central_directory,
    local_file_header,
)

MODIFIED = datetime(2024, 5, 17, 13, 45, 31, tzinfo=UTC)

MEMBERS = {
    "conversations-0001.json": b'{"sessions": []}\n' * 500,
    "projets/données-été.csv": "naïve,日本語,emoji 🎉\n".encode() * 50,
    "empty.txt": b"",
}


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def build_zip(members: dict[str, bytes], *, methods: dict[str, int] | None = None,
              force_zip64: bool = False) -> bytes:
    """A whole archive from our records only: the way package.py lays one out."""
    out, central = bytearray(), bytearray()
    for name, data in members.items():
        method = (methods or {}).get(name, DEFLATED)
        body = _raw_deflate(data) if method == DEFLATED else data
        entry = ZipEntry(name, method, zlib.crc32(data), len(body), len(data), MODIFIED,
                         len(out))
        out += local_file_header(entry, force_zip64=force_zip64) + body
        central += central_directory_header(entry, force_zip64=force_zip64)
    cd_offset = len(out)
    out += central + end_of_central_directory(len(members), cd_offset, len(central),
                                              force_zip64=force_zip64)
    return bytes(out)


def check_local_headers(archive: bytes) -> None:
    """zipfile and unzip trust the central directory; streaming readers trust the local
    headers. Both must say the same thing."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        for info in zf.infolist():
            (signature, _, flags, method, _, _, crc, compressed, size, name_len,
             extra_len) = struct.unpack_from("<IHHHHHIIIHH", archive, info.header_offset)
            start = info.header_offset + 30
            name = archive[start:start + name_len].decode()
            extra = _extra_fields(archive[start + name_len:start + name_len + extra_len])
            if (compressed, size) == (LIMIT_32, LIMIT_32):
                size, compressed = struct.unpack("<QQ", extra[0x0001])
            assert signature == 0x04034B50
            assert (name, flags, method, crc, compressed, size) == (
                info.filename, info.flag_bits, info.compress_type, info.CRC,
                info.compress_size, info.file_size)


def _unzip_test(tmp_path: Path, archive: bytes) -> str:
    path = tmp_path / "t.zip"
    path.write_bytes(archive)
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("force_zip64", [False, True])
def test_archive_reads_back_with_zipfile(force_zip64: bool) -> None:
    archive = build_zip(MEMBERS, methods={"empty.txt": STORED}, force_zip64=force_zip64)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == list(MEMBERS)
        for info in zf.infolist():
            assert zf.read(info) == MEMBERS[info.filename]
            assert info.flag_bits & FLAG_UTF8
            assert not info.flag_bits & 0x08  # no data descriptor
            assert info.date_time == (2024, 5, 17, 13, 45, 30)
            assert zlib.crc32(MEMBERS[info.filename]) == info.CRC
            assert info.external_attr >> 16 == 0o100644
        assert zf.getinfo("empty.txt").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("empty.txt").file_size == 0
        assert zf.getinfo("projets/données-été.csv").compress_type == zipfile.ZIP_DEFLATED
    check_local_headers(archive)


@pytest.mark.parametrize("force_zip64", [False, True])
def test_archive_passes_unzip(tmp_path: Path, force_zip64: bool) -> None:
    archive = build_zip(MEMBERS, force_zip64=force_zip64)
    out = _unzip_test(tmp_path, archive)
    assert "No errors detected" in out
    assert "données-été.csv" in out


def test_forced_zip64_writes_zip64_records() -> None:
    plain = build_zip(MEMBERS)
    forced = build_zip(MEMBERS, force_zip64=True)
    assert b"PK\x06\x06" not in plain
    assert b"PK\x06\x06" in forced  # ZIP64 end of central directory record
    assert b"PK\x06\x07" in forced  # and its locator


def _extra_fields(extra: bytes) -> dict[int, bytes]:
    fields, pos = {}, 0
    while pos < len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        fields[tag] = extra[pos + 4:pos + 4 + size]
        pos += 4 + size
    return fields


def test_large_sizes_go_to_the_zip64_local_extra() -> None:
    size = 5 * 1024**3
    header = local_file_header(ZipEntry("big.bin", STORED, 7, size, size, MODIFIED))
    (_, version, _, _, _, _, crc, compressed, uncompressed, name_len,
     extra_len) = struct.unpack_from("<IHHHHHIIIHH", header)
    assert (version, crc, compressed, uncompressed) == (45, 7, LIMIT_32, LIMIT_32)
    extra = _extra_fields(header[30 + name_len:30 + name_len + extra_len])
    assert struct.unpack("<QQ", extra[0x0001]) == (size, size)


def test_central_zip64_extra_holds_only_the_overflowing_offset() -> None:
    offset = 6 * 1024**3
    header = central_directory_header(ZipEntry("a.json", DEFLATED, 1, 10, 20, MODIFIED, offset))
    fields = struct.unpack_from("<IHHHHHHIIIHHHHHII", header)
    compressed, size, name_len, extra_len, local_offset = (fields[8], fields[9], fields[10],
                                                           fields[11], fields[16])
    assert (compressed, size, local_offset) == (10, 20, LIMIT_32)
    extra = _extra_fields(header[46 + name_len:46 + name_len + extra_len])
    assert struct.unpack("<Q", extra[0x0001]) == (offset,)


def test_many_entries_need_the_zip64_end_record() -> None:
    entries = LIMIT_16 + 10
    records = end_of_central_directory(entries, 1000, 2000)
    signature, _, _, _, _, _, on_disk, total, cd_size, cd_offset = struct.unpack_from(
        "<IQHHIIQQQQ", records)
    assert signature == 0x06064B50
    assert (on_disk, total, cd_size, cd_offset) == (entries, entries, 2000, 1000)
    locator = struct.unpack_from("<IIQI", records, 56)
    assert locator == (0x07064B50, 0, 3000, 1)
    eocd = struct.unpack_from("<IHHHHIIH", records, 76)
    assert eocd[3:5] == (LIMIT_16, LIMIT_16)
    assert len(end_of_central_directory(LIMIT_16 - 1, 1000, 2000)) == 22


def test_dos_time_is_utc_and_clamped() -> None:
    paris = MODIFIED.astimezone(timezone(timedelta(hours=2)))
    assert dos_datetime(paris) == dos_datetime(MODIFIED)
    assert dos_datetime(datetime(1970, 1, 1, tzinfo=UTC)) == (0, (1 << 5) | 1)
    with pytest.raises(ValueError, match="aware"):
        dos_datetime(datetime(2024, 1, 1))


def test_extended_timestamp_carries_the_exact_instant() -> None:
    header = local_file_header(ZipEntry("a", STORED, 0, 0, 0, MODIFIED))
    extra = _extra_fields(header[31:])
    flags, seconds = struct.unpack("<Bi", extra[0x5455])
    assert flags == 1
    assert seconds == int(MODIFIED.timestamp())
