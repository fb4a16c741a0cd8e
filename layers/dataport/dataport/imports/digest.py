"""The size and SHA-256 of an upload, from the bytes the validation reads.

Readers make several passes and a zip reader jumps about (central directory first, then the
members), so every stream the validation opens feeds the digest, which takes only the bytes that
extend the prefix hashed so far. What no reader read (a zip's central directory, the rest of a
file after an error that ends the reading) is read at the end from the same pinned object. Each
of these reads requires the pinned ETag (imports.storage.open_pinned): the digest is of the
bytes validated, and of the bytes staged and imported after them.
"""

from __future__ import annotations

import hashlib

from dataport.imports.readers.base import Opener

CHUNK = 1024 * 1024


class UploadDigest:
    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self.length = 0

    def feed(self, position: int, data: memoryview | bytes) -> None:
        """Bytes read at `position`; only what extends the hashed prefix counts."""
        end = position + len(data)
        if position <= self.length < end:
            self._sha256.update(data[self.length - position:])
            self.length = end

    def finish(self, opener: Opener) -> tuple[int, str]:
        """Read what the readers left (`opener` must not feed this digest itself), then
        (size, hex SHA-256)."""
        with opener() as stream:
            stream.seek(self.length)
            while chunk := stream.read(CHUNK):
                self.feed(self.length, chunk)
        return self.length, self._sha256.hexdigest()
