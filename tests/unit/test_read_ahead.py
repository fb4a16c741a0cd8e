"""source.read_ahead.ReadAhead: the items of its source in order, read by a thread at most a
bounded number ahead, the source's error raised where the consumer reaches it, and a close that
stops (and waits for) the thread even while it is blocked on a full queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from dataport.source.read_ahead import ReadAhead


def _counting(limit: int | None, read: list[int]) -> Iterator[int]:
    number = 0
    while limit is None or number < limit:
        read.append(number)
        yield number
        number += 1


def test_items_come_in_order_in_chunks_that_do_not_divide_them() -> None:
    with ReadAhead(_counting(1001, []), chunk=7, depth=2) as ahead:
        assert list(ahead) == list(range(1001))


def test_an_empty_source_ends_at_once() -> None:
    with ReadAhead(iter(()), chunk=3, depth=1) as ahead:
        assert list(ahead) == []


def test_the_thread_reads_at_most_depth_chunks_ahead() -> None:
    read: list[int] = []
    ahead = ReadAhead(_counting(None, read), chunk=10, depth=3)
    try:
        items = iter(ahead)
        assert next(items) == 0
        time.sleep(0.3)  # room for the thread to read as far as it may
        # the chunk in use, three queued, one built and waiting for room
        assert len(read) <= 10 * (1 + 3 + 1)
        assert len(read) >= 10 * 2  # and it did read ahead
    finally:
        ahead.close()
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())


def test_the_sources_error_is_raised_where_the_consumer_reaches_it() -> None:
    def failing() -> Iterator[int]:
        yield from range(25)
        raise LookupError("cursor lost")

    got: list[int] = []
    with ReadAhead(failing(), chunk=10, depth=2) as ahead, pytest.raises(
            LookupError, match="cursor lost"):
        got.extend(ahead)
    assert got == list(range(25))  # everything read before the error, as without a thread


def test_close_stops_a_thread_blocked_on_a_full_queue() -> None:
    read: list[int] = []
    ahead = ReadAhead(_counting(None, read), chunk=1, depth=1)
    time.sleep(0.1)
    ahead.close()  # returns only once the producer thread has ended (it would hang otherwise)
    assert not ahead._thread.is_alive()
    count = len(read)
    time.sleep(0.1)
    assert len(read) == count  # nothing read after close


def test_chunk_and_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReadAhead(iter(()), chunk=0)
    with pytest.raises(ValueError, match="at least 1"):
        ReadAhead(iter(()), depth=0)
