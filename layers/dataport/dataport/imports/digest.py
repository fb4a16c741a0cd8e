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

`finish` reads what is left through a `Tail`: for a pinned object, several ranged GETs at once
handed out in order (`storage.pinned_tail`, bucket.ranged), so a whole object's pass (a
restore's whole-object check after a handed-over split, a chain's parents) is bound by the
hashing, not by one S3 GET stream (about 60 MB/s on Lambda); `stream_tail` reads a stream (a
sealed object, read through its seal).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

from dataport.imports.readers.base import Opener

CHUNK = 1024 * 1024

#: the object's bytes from a position to its end, in order; leaving the `with` stops whatever
#: reads them
Tail = Callable[[int], AbstractContextManager[Iterable[bytes]]]


def stream_tail(opener: Opener) -> Tail:
    """A `Tail` over one stream per call (`opener`'s), CHUNK reads from the position."""
    @contextmanager
    def tail(position: int) -> Iterator[Iterable[bytes]]:
        with opener() as stream:
            stream.seek(position)
            yield iter(lambda: stream.read(CHUNK), b"")
    return tail


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

    def finish(self, tail: Tail) -> tuple[int, str]:
        """Read what the readers left (`tail` must not feed this digest itself), then
        (size, hex SHA-256)."""
        with tail(self.length) as chunks:
            for chunk in chunks:
                self.feed(self.length, chunk)
        return self.length, self._sha256.hexdigest()
