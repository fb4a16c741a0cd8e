"""`ReadAhead`: an iterator read by a thread of its own, a bounded number of items ahead.

An export worker alternates between waiting on MongoDB (the next batch of a message cursor) and
encoding what arrived; done one after the other, every wait adds to the invocation's time. With
the driver's reads in a thread (which releases the GIL while it waits on the socket), the
writer encodes one batch while the next is on its way. Memory stays bounded: at most `depth`
hand-overs of `chunk` items wait in the queue, plus the one being read and the one being used.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

#: how often a producer blocked on a full queue looks whether it was told to stop
_STOP_POLL_S = 0.05


class _End:
    """The source is exhausted."""


class _Failed:
    """The source raised: the consumer raises it in its own thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadAhead(Generic[T]):
    """Iterate `source` in a daemon thread; iterating this yields its items in order, and any
    exception the source raised, where the consumer reaches it. `close()` (or leaving the
    `with` block) stops the thread and waits for it, so whatever the source reads (driver
    cursors) may be closed right after. Iterate it from one thread only."""

    def __init__(self, source: Iterator[T], *, chunk: int = 128, depth: int = 4) -> None:
        if chunk < 1 or depth < 1:
            raise ValueError("chunk and depth must be at least 1")
        self._source = source
        self._chunk = chunk
        self._queue: queue.Queue[list[T] | _End | _Failed] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="read-ahead", daemon=True)
        self._thread.start()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _hand_over(self, item: list[T] | _End | _Failed) -> bool:
        """Put `item` in the queue, waiting for room; False if told to stop meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_STOP_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        chunk: list[T] = []
        try:
            for item in self._source:
                chunk.append(item)
                if len(chunk) >= self._chunk:
                    if not self._hand_over(chunk):
                        return
                    chunk = []
            if chunk and not self._hand_over(chunk):
                return
            self._hand_over(_End())
        except BaseException as error:
            # what was read before the error first, as iterating the source directly gives it
            if not chunk or self._hand_over(chunk):
                self._hand_over(_Failed(error))

    def __iter__(self) -> Iterator[T]:
        while True:
            got = self._queue.get()
            if isinstance(got, _End):
                return
            if isinstance(got, _Failed):
                raise got.error
            yield from got

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:  # make room for a producer waiting to hand over
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=_STOP_POLL_S)
