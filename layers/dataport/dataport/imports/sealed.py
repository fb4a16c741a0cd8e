"""Objects a restore or an encrypted import keeps for itself on S3, sealed: only its own
workflow opens them.

A restore in shards writes each shard's part of the backup (`imports/<id>/shards/`), and each
shard writes the records it checked (`imports/<shard>/checked`): copies of the user's data that
live for the length of the restore. An encrypted backup's password is not kept (the shards
never see it), so they are sealed with a key of the restore's own instead: a data key from KMS
(`jobs.data_keys`, one per restore, under the encryption context `{"restoreId": <id>}`; its
ciphertext rides in the pins of the objects it seals, its plaintext only in the memory of the
invocation that uses it, never logged). An encrypted import (or a restore of an encrypted
backup in one execution) seals the records its Validate checked for its Execute the same way,
with a key of its own (context `{"importId": <id>}`, or `{"restoreId": <id>}`).

Format (`MAGIC`, then chunks): the plaintext is cut into chunks of `CHUNK` bytes, the last one
shorter (empty when the plaintext is a multiple of `CHUNK`: there is always a last chunk). Each
is sealed with AES-256-GCM-SIV under a key of the object's own (HKDF-SHA256 of the data key and
the object's S3 key: a part copied to another key does not open), its 16-byte tag after it.
The nonce is the chunk's number and whether it is the last: a chunk moved, dropped or
repeated, a cut-off object or one grown past its last chunk, all fail authentication. Readers
seek (a zip's directory is at its end), so each chunk opens alone.

Why GCM-SIV, whose nonces may repeat: a retried plan writes the same parts again with the same
key and must write the same bytes (the shards' pins name their ETags), so nonces are derived,
not random; should a part ever be written again with other bytes, GCM-SIV reveals only
whether two chunks are equal, where GCM would leak their XOR and its authentication key.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dataport.imports.limits import BadInput
from dataport.models.imports import IssueCode
from dataport.models.job_common import Sealing, UploadPin

MAGIC = b"DPSEAL1\n"
#: plaintext bytes per chunk: a zip reader's small reads (headers, the directory) open one
CHUNK = 64 * 1024
TAG = 16
_STORED = CHUNK + TAG


class Sink(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


def plain_size(sealed_size: int) -> int:
    """The plaintext's size, from the sealed object's (raises for a size no sealing gives)."""
    body = sealed_size - len(MAGIC)
    full, last = divmod(body, _STORED)
    if body < TAG or last < TAG:
        raise _damaged("its size is not one a sealed object can have", None)
    return full * CHUNK + last - TAG


def sealed_size(plain: int) -> int:
    """The sealed object's size for `plain` bytes of plaintext (`plain_size`'s inverse)."""
    full, last = divmod(plain, CHUNK)
    return len(MAGIC) + full * _STORED + last + TAG


class Sealer:
    """Seals and opens objects with one job's data key (32 bytes); `sealing` is what a pin of
    an object it sealed says (the key's ciphertext and its job)."""

    def __init__(self, data_key: bytes, sealing: Sealing) -> None:
        if len(data_key) != 32:
            raise ValueError("a data key is 32 bytes")
        self._data_key = data_key
        self.sealing = sealing

    def __repr__(self) -> str:  # never the key
        return f"Sealer({self.sealing.scope.value} {self.sealing.job_id})"

    def pinned(self, pin: UploadPin) -> UploadPin:
        """The pin of an object this sealed, saying so."""
        return pin.model_copy(update={"sealing": self.sealing})

    def _aead(self, name: str) -> AESGCMSIV:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"dataport sealed object v1\x00" + name.encode()).derive(self._data_key)
        return AESGCMSIV(key)

    def writer(self, out: Sink, name: str) -> SealingWriter:
        """Plaintext in, sealed chunks to `out`; `finish()` writes the last chunk."""
        return SealingWriter(out, self._aead(name))

    def seal(self, plain: bytes, name: str) -> bytes:
        """A small object sealed whole (a plan's state)."""
        out = io.BytesIO()
        writer = self.writer(out, name)
        writer.write(plain)
        writer.finish()
        return out.getvalue()

    def open(self, stored: bytes, name: str) -> bytes:
        """A small sealed object's plaintext (raises BadInput when it fails authentication)."""
        with self.reader(io.BytesIO(stored), name, len(stored)) as plain:
            return plain.read()

    def reader(self, stored: IO[bytes], name: str, stored_size: int,
               on_read: Callable[[int, memoryview], None] | None = None) -> IO[bytes]:
        """A seekable stream of the plaintext of the sealed object in `stored` (seekable, of
        `stored_size` bytes); `on_read(position, data)` sees every plaintext byte read. A
        chunk that fails authentication raises BadInput (`checksum_mismatch`)."""
        raw = _Unsealing(stored, self._aead(name), name, stored_size, on_read)
        return io.BufferedReader(raw, buffer_size=CHUNK)


def _nonce(number: int, last: bool) -> bytes:
    return number.to_bytes(8, "big") + (b"\x01" if last else b"\x00") + b"\x00\x00\x00"


class SealingWriter:
    """Write-only (no tell: zipfile then streams with data descriptors, as it does to S3)."""

    def __init__(self, out: Sink, aead: AESGCMSIV) -> None:
        self._out, self._aead = out, aead
        self._pending = bytearray()
        self._number = 0
        self._finished = False
        out.write(MAGIC)

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self._pending += data
        # whole chunks out, at least one byte kept: a chunk exactly full may be the last
        whole = (len(self._pending) - 1) // CHUNK
        if whole > 0:
            with memoryview(self._pending) as view:
                for number in range(whole):
                    self._seal(view[number * CHUNK:(number + 1) * CHUNK], last=False)
            del self._pending[:whole * CHUNK]
        return len(data)

    def flush(self) -> None:
        """Nothing to flush before `finish` (a chunk is sealed whole)."""

    def finish(self) -> None:
        """The last chunk (idempotent); the sink is left open."""
        if self._finished:
            return
        if len(self._pending) == CHUNK:
            self._seal(self._pending, last=False)
            self._pending.clear()
        self._seal(self._pending, last=True)
        self._pending.clear()
        self._finished = True

    def _seal(self, chunk: bytes | bytearray | memoryview, *, last: bool) -> None:
        self._out.write(self._aead.encrypt(_nonce(self._number, last), chunk, None))
        self._number += 1


class _Unsealing(io.RawIOBase):
    def __init__(self, stored: IO[bytes], aead: AESGCMSIV, name: str, stored_size: int,
                 on_read: Callable[[int, memoryview], None] | None) -> None:
        self._stored, self._aead, self._name, self._on_read = stored, aead, name, on_read
        self._size = plain_size(stored_size)
        self._chunks = self._size // CHUNK + 1
        self._position = 0
        self._cached: tuple[int, bytes] | None = None
        self._checked_magic = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any, /) -> int:
        if self._position >= self._size:
            # the last chunk is read even when empty: a cut-off object is found here
            if self._position == self._size and self._size % CHUNK == 0:
                self._chunk(self._chunks - 1)
            return 0
        number, offset = divmod(self._position, CHUNK)
        chunk = self._chunk(number)
        taken = chunk[offset:offset + len(buffer)]
        view = memoryview(buffer)
        view[:len(taken)] = taken
        if self._on_read is not None:
            self._on_read(self._position, memoryview(taken))
        self._position += len(taken)
        return len(taken)

    def _chunk(self, number: int) -> bytes:
        if self._cached is not None and self._cached[0] == number:
            return self._cached[1]
        if not self._checked_magic:
            self._stored.seek(0)
            if self._stored.read(len(MAGIC)) != MAGIC:
                raise _damaged("it is not a sealed object", self._name)
            self._checked_magic = True
        last = number == self._chunks - 1
        self._stored.seek(len(MAGIC) + number * _STORED)
        length = (self._size - number * CHUNK + TAG) if last else _STORED
        sealed = self._stored.read(length)
        try:
            plain = self._aead.decrypt(_nonce(number, last), sealed, None)
        except InvalidTag:
            raise _damaged(f"its chunk {number} fails authentication", self._name) from None
        self._cached = (number, plain)
        return plain

    def close(self) -> None:
        if not self.closed:
            self._stored.close()
        super().close()


def _damaged(why: str, name: str | None) -> BadInput:
    where = name.rsplit("/", 1)[-1] if name else "a sealed object"
    return BadInput.of(IssueCode.CHECKSUM_MISMATCH, (
        f"{where}: {why}; the job's own copy was changed or damaged after it was "
        "written, and nothing more of it is read"), file=where)
