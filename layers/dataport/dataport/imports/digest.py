"""The size and SHA-256 of an upload, from the bytes the validation reads.

Readers make several passes and a zip reader jumps about (central directory first, then the
members), so every stream the validation opens feeds the digest, which takes only the bytes that
extend the prefix hashed so far. What no reader read (a zip's central directory, the rest of a
file after an error that ends the reading) is read at the end from the same pinned object. Each
of these reads requires the pinned ETag (imports.storage.open_pinned): the digest is of the
bytes validated, and of the bytes staged and imported after them.

A small gap is filled at once (`fill`): a read that starts a little past the hashed prefix,
with much of the object after it, has the gap read from the pinned object and hashed first.
That is the restore's case: it walks a backup's `sessions/` members (small) and `messages/`
members (nearly all of it) side by side, so without the fill the prefix stops at the end of
the sessions and `finish` reads the messages a second time; with it, the gap (the sessions'
bytes) is read twice instead. A read near the end (a zip's central directory, read first) is
no small gap before much: it waits for `finish` as before.
"""

from __future__ import annotations

import hashlib

from dataport.imports.readers.base import Opener

CHUNK = 1024 * 1024


#: a gap is filled when what follows the read is at least this many times the gap
FILL_WHEN_AFTER = 8


class UploadDigest:
    def __init__(self, fill: Opener | None = None, size: int | None = None) -> None:
        """`fill`: the object (not feeding this digest), to read small gaps from; `size`: its
        size, which says whether a gap is small (see the module docstring)."""
        self._sha256 = hashlib.sha256()
        self.length = 0
        self._fill, self._size = fill, size

    def feed(self, position: int, data: memoryview | bytes) -> None:
        """Bytes read at `position`; only what extends the hashed prefix counts."""
        end = position + len(data)
        if self._fill is not None and self._size is not None and position > self.length \
                and (position - self.length) * FILL_WHEN_AFTER <= self._size - position:
            self._read_gap(position)
        if position <= self.length < end:
            self._sha256.update(data[self.length - position:])
            self.length = end

    def _read_gap(self, position: int) -> None:
        assert self._fill is not None
        with self._fill() as stream:
            stream.seek(self.length)
            while self.length < position and (chunk := stream.read(
                    min(CHUNK, position - self.length))):
                self._sha256.update(chunk)
                self.length += len(chunk)

    def finish(self, opener: Opener) -> tuple[int, str]:
        """Read what the readers left (`opener` must not feed this digest itself), then
        (size, hex SHA-256)."""
        with opener() as stream:
            stream.seek(self.length)
            while chunk := stream.read(CHUNK):
                self.feed(self.length, chunk)
        return self.length, self._sha256.hexdigest()
