"""The sealing of a restore's own objects (imports.sealed): what goes in comes out, through
any seeks; nothing of the plaintext shows; any change, cut, move or other key is refused."""

from __future__ import annotations

import io
import os

import pytest

from dataport.imports.limits import BadInput
from dataport.imports.sealed import CHUNK, MAGIC, TAG, Sealer, plain_size
from dataport.models.imports import IssueCode
from dataport.models.job_common import Sealing

SEALING = Sealing(data_key="c2VhbGVk", job_id="job")
NAME = "imports/job/shards/user-00000.zip"
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5]


def sealed(sealer: Sealer, data: bytes, name: str = NAME, step: int = 7_777) -> bytes:
    out = io.BytesIO()
    writer = sealer.writer(out, name)
    for start in range(0, len(data), step):
        writer.write(data[start:start + step])
    writer.finish()
    writer.finish()  # idempotent
    return out.getvalue()


def opened(sealer: Sealer, blob: bytes, name: str = NAME) -> bytes:
    return sealer.reader(io.BytesIO(blob), name, len(blob)).read()


@pytest.mark.parametrize("size", SIZES)
def test_what_is_sealed_opens_whole_and_from_any_position(size: int) -> None:
    sealer = Sealer(os.urandom(32), SEALING)
    data = os.urandom(size)
    blob = sealed(sealer, data)
    assert blob.startswith(MAGIC)
    assert plain_size(len(blob)) == size
    assert opened(sealer, blob) == data
    seen: list[tuple[int, int]] = []
    stream = sealer.reader(io.BytesIO(blob), NAME, len(blob),
                           lambda at, chunk: seen.append((at, len(chunk))))
    for position in (size // 2, 0, max(0, size - 3), CHUNK - 1):
        stream.seek(position)
        assert stream.read(CHUNK + 10) == data[position:position + CHUNK + 10]
    stream.seek(0, io.SEEK_END)
    assert stream.tell() == size
    assert all(at + length <= size for at, length in seen)  # plaintext positions


def test_the_same_bytes_seal_the_same_and_show_nothing_of_the_plaintext() -> None:
    sealer = Sealer(os.urandom(32), SEALING)
    data = b'{"summary": "the secret plan for the launch"}\n' * 5_000
    blob = sealed(sealer, data)
    assert sealed(sealer, data, step=CHUNK * 2) == blob  # a retried plan: the same ETag
    assert b"secret plan" not in blob
    assert sealed(Sealer(os.urandom(32), SEALING), data) != blob
    assert sealed(sealer, data, name="imports/job/shards/other-00000.zip") != blob


def refused(sealer: Sealer, blob: bytes, name: str = NAME) -> BadInput:
    with pytest.raises(BadInput) as caught:
        opened(sealer, blob, name)
    assert caught.value.code == IssueCode.CHECKSUM_MISMATCH
    return caught.value


def test_a_changed_cut_moved_or_foreign_object_is_refused() -> None:
    sealer = Sealer(os.urandom(32), SEALING)
    data = os.urandom(3 * CHUNK + 100)
    blob = sealed(sealer, data)
    stored = CHUNK + TAG
    flipped = bytearray(blob)
    flipped[len(MAGIC) + stored + 10] ^= 1
    refused(sealer, bytes(flipped))
    refused(sealer, blob[:-1])  # cut anywhere
    refused(sealer, blob[:len(MAGIC) + 2 * stored + TAG + 5])
    refused(sealer, blob[:len(MAGIC) + 3 * stored])  # cut at a chunk's end
    first, second = (blob[len(MAGIC) + i * stored:len(MAGIC) + (i + 1) * stored]
                     for i in range(2))
    refused(sealer, MAGIC + second + first + blob[len(MAGIC) + 2 * stored:])  # moved
    refused(sealer, blob + blob[-TAG:])  # grown
    refused(Sealer(os.urandom(32), SEALING), blob)  # another restore's key
    refused(sealer, blob, name="imports/job/shards/other-00000.zip")  # another object's
    refused(sealer, b"PK\x03\x04" + blob[4:])  # no sealed object
    exact = sealed(sealer, os.urandom(CHUNK))  # its last chunk is empty
    refused(sealer, exact[:-TAG])


def test_the_key_never_shows() -> None:
    key = os.urandom(32)
    assert key.hex() not in repr(Sealer(key, SEALING))
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer(b"short", SEALING)
