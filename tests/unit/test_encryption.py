"""WinZip AES-256 (AE-2) members written by packaging.encryption, read back by pyzipper (an
independent implementation) and 7-Zip."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pyzipper
from pydantic import SecretStr

from dataport.packaging.encryption import OVERHEAD, SALT_SIZE, WinZipAes
from dataport.packaging.staging import member_entry, run_transforms, transforms, zip_method
from dataport.packaging.zipformat import (
    FLAG_ENCRYPTED,
    WINZIP_AES,
    central_directory_header,
    end_of_central_directory,
    local_file_header,
)

PASSWORD = SecretStr("correct horse battery")
MODIFIED = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
MiB = 1024 * 1024


def member(data: Iterable[bytes], level: int, password: SecretStr = PASSWORD) -> bytes:
    chain = transforms(level, password)
    out = b"".join(run_transforms(chain, chunk) for chunk in data)
    return out + run_transforms(chain, b"", final=True)


def archive(files: dict[str, bytes], level: int, password: SecretStr = PASSWORD,
            chunk: int = 777) -> bytes:
    """A zip as the finalizer writes it, members streamed through the chain in odd chunks."""
    out, central = bytearray(), bytearray()
    for name, data in files.items():
        body = member((data[i:i + chunk] for i in range(0, len(data), chunk)), level, password)
        entry = member_entry(name, method=zip_method(level), crc32=zlib.crc32(data),
                             size=len(data), compressed_size=len(body), modified=MODIFIED,
                             offset=len(out), aes=True)
        out += local_file_header(entry) + body
        central += central_directory_header(entry)
    offset = len(out)
    return bytes(out + central + end_of_central_directory(len(files), offset, len(central)))


FILES = {
    "conversations-0001.json": b'{"sessions": []}\n' * 5000,
    "empty.csv": b"",
    "tiny.txt": b"x",
    "random.bin": os.urandom(70_000),  # > 256 blocks: the counter's second byte carries
    "données/été 🎉.md": "# Été 🎉\n".encode() * 300,
}


@pytest.mark.parametrize("level", [0, 6, 9])
def test_pyzipper_reads_back_every_member(level: int) -> None:
    with pyzipper.AESZipFile(io.BytesIO(archive(FILES, level))) as zf:
        zf.setpassword(PASSWORD.get_secret_value().encode())
        for info in zf.infolist():
            assert info.flag_bits & FLAG_ENCRYPTED
            assert info.CRC == 0  # AE-2: the HMAC authenticates, no CRC of the plaintext
        assert {name: zf.read(name) for name in zf.namelist()} == FILES


def test_a_wrong_password_is_refused() -> None:
    with pyzipper.AESZipFile(io.BytesIO(archive(FILES, 6))) as zf:
        zf.setpassword(b"correct horse battery!")
        with pytest.raises(RuntimeError, match="Bad password"):
            zf.read("tiny.txt")


def test_a_changed_byte_fails_the_hmac() -> None:
    """Stored, so nothing but the HMAC (AE-2 has no CRC) can notice."""
    data = bytearray(archive({"a.txt": b"hello " * 1000}, 0))
    body_start = data.index(b"a.txt") + len(b"a.txt") + 20  # past the name and the extras
    data[body_start + SALT_SIZE + 2 + 100] ^= 0x01
    with pyzipper.AESZipFile(io.BytesIO(bytes(data))) as zf:
        zf.setpassword(PASSWORD.get_secret_value().encode())
        with pytest.raises(pyzipper.BadZipFile, match="Bad HMAC"):
            zf.read("a.txt")


def test_a_non_ascii_password_is_utf8() -> None:
    password = SecretStr("pässwörd-ünïcödé")
    with pyzipper.AESZipFile(io.BytesIO(archive({"a": b"abc" * 100}, 6, password))) as zf:
        zf.setpassword(password.get_secret_value().encode("utf-8"))
        assert zf.read("a") == b"abc" * 100


def test_a_large_member_streams_byte_for_byte() -> None:
    """Each update gives back exactly what it was given (plus the salt and verifier first):
    nothing is held back, so memory does not grow with the member."""
    aes = WinZipAes(PASSWORD)
    chunks = [os.urandom(size) for size in (1, 15, 16, 17, 4096, 4097, MiB, 3 * MiB + 5)] * 3
    out = []
    for i, chunk in enumerate(chunks):
        piece = aes.update(chunk)
        assert len(piece) == len(chunk) + (SALT_SIZE + 2 if i == 0 else 0)
        out.append(piece)
    out.append(aes.finish())
    body = b"".join(out)
    plain = b"".join(chunks)
    assert len(body) == len(plain) + OVERHEAD
    entry = member_entry("big.bin", method=0, crc32=zlib.crc32(plain), size=len(plain),
                         compressed_size=len(body), modified=MODIFIED, offset=0, aes=True)
    header, central = local_file_header(entry), central_directory_header(entry)
    zipped = header + body + central + end_of_central_directory(1, len(header) + len(body),
                                                                len(central))
    with pyzipper.AESZipFile(io.BytesIO(zipped)) as zf:
        zf.setpassword(PASSWORD.get_secret_value().encode())
        assert zf.read("big.bin") == plain


def test_every_member_gets_its_own_salt_and_key_stream() -> None:
    first, second = member([b"same data" * 100], 0), member([b"same data" * 100], 0)
    assert first[:SALT_SIZE] != second[:SALT_SIZE]
    assert first[SALT_SIZE + 2:] != second[SALT_SIZE + 2:]


def test_the_same_salt_gives_the_same_bytes_whatever_the_chunking() -> None:
    data = os.urandom(10_000)
    salt = bytes(range(SALT_SIZE))
    whole = WinZipAes(PASSWORD, salt=salt)
    pieces = WinZipAes(PASSWORD, salt=salt)
    expected = whole.update(data) + whole.finish()
    got = b"".join(pieces.update(data[i:i + 333]) for i in range(0, len(data), 333))
    assert got + pieces.finish() == expected


def test_the_records_say_ae2_aes256_and_the_real_method() -> None:
    entry = member_entry("a.json", method=8, crc32=0x12345678, size=10, compressed_size=40,
                         modified=MODIFIED, offset=0, aes=True)
    local = local_file_header(entry)
    version, flags, method = struct.unpack_from("<HHH", local, 4)
    crc = struct.unpack_from("<I", local, 14)[0]
    assert (version, flags & FLAG_ENCRYPTED, method, crc) == (51, FLAG_ENCRYPTED, WINZIP_AES, 0)
    assert local.endswith(struct.pack("<HHH2sBH", 0x9901, 7, 2, b"AE", 3, 8))
    assert central_directory_header(entry).endswith(local[-11:])
    plain = member_entry("a.json", method=8, crc32=0x12345678, size=10, compressed_size=40,
                         modified=MODIFIED, offset=0, aes=False)
    assert b"AE" not in local_file_header(plain)


def test_7zip_opens_it_with_the_password_only(tmp_path: Path) -> None:
    path = tmp_path / "encrypted.zip"
    path.write_bytes(archive(FILES, 6))

    def seven(*args: str) -> int:
        return subprocess.run(["7z", "t", *args, str(path)], capture_output=True,
                              stdin=subprocess.DEVNULL, check=False, timeout=60).returncode

    assert seven(f"-p{PASSWORD.get_secret_value()}") == 0
    assert seven("-pwrong-password") != 0
    assert seven() != 0
