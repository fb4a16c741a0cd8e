"""`ranged_reads`: a span of one object as several concurrent ranged reads, handed out in order.

One S3 GET stream gives about 60 MB/s on Lambda, and SHA-256 runs at about 2,000 MB/s, so a
whole object's hash over one stream is bound by the stream. Here `ranges` ranges of
`range_bytes` each are fetched by a thread pool at once and given to the consumer strictly in
order; the next range is asked for once the consumer has taken one, so memory stays at
`ranges` ranges whatever the object's size. The consumer runs on the caller's thread: what it
raises (a cancel it noticed, say) leaves the `with`, which cancels the ranges not started and
waits for the running ones (each at most one range), so no thread outlives the `with`.

Why not a library's: boto3's transfer manager (s3transfer) writes ranged GETs in order to a
non-seekable file object, but from byte 0 only (no `Range` among its download arguments, so a
digest that already holds a prefix would fetch it again), on its own I/O thread (the consumer's
exceptions and a cancel's checks would run there), with a HeadObject first; smart-open reads one
stream at a time (its thread pool is `iter_bucket`'s, one object per thread).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

MIB = 1024 * 1024
#: ranges fetched at once (within botocore's 10 pooled connections a client)
RANGES = 8
#: the bytes of one range: S3's advice for parallel GETs is 8-16 MB
RANGE_BYTES = 8 * MIB
#: the pool's threads are named so (a test finds any left running)
THREAD_PREFIX = "dataport-ranged-read"

#: bytes [start, stop) of the object, exactly (a short answer raises)
Fetch = Callable[[int, int], bytes]


@contextmanager
def ranged_reads(fetch: Fetch, start: int, end: int, *, ranges: int = RANGES,
                 range_bytes: int = RANGE_BYTES) -> Iterator[Iterator[bytes]]:
    """Bytes [start, end) as consecutive ranges, in order; a range's error is raised where the
    consumer reaches it. Leave the `with` to stop: nothing keeps running after it."""
    if ranges < 1 or range_bytes < 1:
        raise ValueError("ranged_reads needs at least one range of at least one byte")
    spans = ((at, min(at + range_bytes, end)) for at in range(start, end, range_bytes))
    pool = ThreadPoolExecutor(max_workers=ranges, thread_name_prefix=THREAD_PREFIX)
    try:
        yield _in_order(pool, fetch, spans, ranges)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_order(pool: ThreadPoolExecutor, fetch: Fetch, spans: Iterator[tuple[int, int]],
              ranges: int) -> Iterator[bytes]:
    pending: deque[Future[bytes]] = deque()

    def ask() -> None:
        span = next(spans, None)
        if span is not None:
            pending.append(pool.submit(fetch, *span))

    for _ in range(ranges):
        ask()
    while pending:
        yield pending.popleft().result()
        ask()  # once the consumer is done with the range it took: `ranges` held at most
