"""A restore's whole-object check alone: the stored object's SHA-256 as the plan (and a
verification, and a backup's finalize) computes it, read two ways: one pinned stream
(`UploadDigest.finish` over `stream_tail(open_pinned)`, the path before session 6) and several
ranged GETs at once (`storage.pinned_tail`: `PackagesBucket.read_pinned`, every GET naming the
pinned ETag).

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.restore_hash_bench \
        [--mb 256 --mb 512] [--ranges 8] [--range-mib 8] [--stream-mbps 60] \
        [--first-byte-ms 0] [--moto]

Where the GETs are answered: by default a bucket served in this process through botocore's
`before-send` hook (If-Match checked, 412 otherwise; ranges answered in their own time and
memory), each GET's body given at most `--stream-mbps` (one S3 GET stream on Lambda: about 60
MB/s; 0: as fast as Python copies), after `--first-byte-ms`; `--moto` asks moto itself, which
copies the whole object for every GET (a range included), so its ranged pass measures moto,
not the read.

Reported per size and path: MB/s, the process's CPU time (what a Lambda's share of a vCPU
would bound: MB per CPU second; the bench's own serving of the bytes included) and the peak
memory the pass added (tracemalloc, in another pass: Python's allocations, response bodies
included, the object itself not), and hashlib alone on the same bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import os
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto import mock_aws

from dataport.bucket import PackagesBucket
from dataport.bucket.ranged import RANGE_BYTES, RANGES
from dataport.imports import storage
from dataport.imports.digest import CHUNK, Tail, UploadDigest, stream_tail
from dataport.models.jobs import UploadPin

KEY = "imports/bench/upload.zip"
MIB = 2**20


def measured(tail: Tail) -> tuple[int, str, float, float, int]:
    """(size, SHA-256, seconds, CPU seconds of the process, peak bytes added) of a digest's
    finish over `tail`: timed in one pass, its memory traced in another (tracemalloc slows
    Python's allocations)."""
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    size, digest = UploadDigest().finish(tail)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    assert UploadDigest().finish(tail) == (size, digest)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return size, digest, seconds, cpu, peak


def hashlib_alone(data: bytes) -> tuple[str, float]:
    started = time.perf_counter()
    plain = hashlib.sha256()
    view = memoryview(data)
    for at in range(0, len(data), CHUNK):
        plain.update(view[at:at + CHUNK])
    return plain.hexdigest(), time.perf_counter() - started


def paths(bucket: PackagesBucket, pin: UploadPin, ranges: int,
          range_bytes: int) -> dict[str, Tail]:
    return {
        "one stream": stream_tail(lambda: storage.open_pinned(bucket, pin)),
        f"{ranges} ranges x {range_bytes // MIB} MiB":
            lambda position: bucket.read_pinned(pin, position, ranges=ranges,
                                                range_bytes=range_bytes),
    }


class _Body(io.RawIOBase):
    """A GET's body over a slice of the object, given at most `rate` bytes a second (0: at
    once): a network stream's pace, sleeping as a socket waits (the GIL free)."""

    def __init__(self, view: memoryview, rate: float) -> None:
        super().__init__()
        self._view, self._rate, self._at = view, rate, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), len(self._view) - self._at)
        buffer[:size] = self._view[self._at:self._at + size]
        self._at += size
        if self._rate:
            time.sleep(size / self._rate)
        return size

    def read(self, size: int | None = -1, /) -> bytes:
        """At most `size` bytes; all that is left at once (as http.client reads a body of a
        known length) when `size` is None or negative."""
        left = len(self._view) - self._at
        size = left if size is None or size < 0 else min(size, left)
        data = self._view[self._at:self._at + size].tobytes()
        self._at += size
        if self._rate:
            time.sleep(size / self._rate)
        return data

    def stream(self, **_: Any) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


def serve(client: Any, data: bytes, etag: str, stream_mbps: float, first_byte_ms: float) -> None:
    """GetObject of `client` answered from `data` (Range and If-Match as S3 answers them),
    each answer after `first_byte_ms`."""
    view, rate = memoryview(data), stream_mbps * 1e6

    def answer(request: Any, **_: Any) -> AWSResponse:
        time.sleep(first_byte_ms / 1000)
        match = request.headers.get("If-Match")
        if match is not None and match.decode() != etag:
            return AWSResponse(request.url, 412, HTTPHeaders(), _Body(memoryview(
                b"<Error><Code>PreconditionFailed</Code></Error>"), 0))
        span = request.headers.get("Range")
        start, stop, status = 0, len(data), 200
        if span is not None:
            first, _, last = span.decode().removeprefix("bytes=").partition("-")
            start, stop, status = int(first), min(len(data), int(last or len(data) - 1) + 1), 206
        headers = {"Content-Length": str(stop - start), "ETag": etag,
                   "Content-Range": f"bytes {start}-{stop - 1}/{len(data)}"}
        return AWSResponse(request.url, status, HTTPHeaders.from_dict(headers),
                           _Body(view[start:stop], rate))

    client.meta.events.register_first("before-send.s3.GetObject", answer)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, action="append", help="the object's size, MiB "
                        "(repeat; default 256 and 512)")
    parser.add_argument("--ranges", type=int, default=RANGES)
    parser.add_argument("--range-mib", type=int, default=RANGE_BYTES // MIB)
    parser.add_argument("--stream-mbps", type=float, default=60.0,
                        help="the most one GET's body gives, MB/s (0: no bound)")
    parser.add_argument("--first-byte-ms", type=float, default=0.0,
                        help="the wait before each GET is answered (S3's first byte)")
    parser.add_argument("--moto", action="store_true", help="moto answers the GETs")
    args = parser.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    for mb in args.mb or [256, 512]:
        data = os.urandom(mb * MIB)
        expected, alone = hashlib_alone(data)
        with (mock_aws() if args.moto else contextlib.nullcontext()):
            bucket, pin = bucket_of(data, moto=args.moto, stream_mbps=args.stream_mbps,
                                    first_byte_ms=args.first_byte_ms)
            where = "moto" if args.moto else (
                f"one GET at most {args.stream_mbps:.0f} MB/s" if args.stream_mbps else
                "GETs unbounded") + (f", first byte {args.first_byte_ms:.0f} ms"
                                     if args.first_byte_ms else "")
            print(f"{len(data) / 1e6:.0f} MB ({where}): hashlib alone "
                  f"{len(data) / 1e6 / alone:.0f} MB/s")
            for name, tail in paths(bucket, pin, args.ranges, args.range_mib * MIB).items():
                size, digest, seconds, cpu, peak = measured(tail)
                assert (size, digest) == (len(data), expected), name
                print(f"  {name}: {size / 1e6 / seconds:.0f} MB/s, {seconds:.2f} s "
                      f"(CPU {cpu:.2f} s: {size / 1e6 / cpu:.0f} MB a CPU second), "
                      f"peak +{peak / MIB:.1f} MiB")
        del data


def bucket_of(data: bytes, *, moto: bool, stream_mbps: float,
              first_byte_ms: float) -> tuple[PackagesBucket, UploadPin]:
    """The bucket and the object's pin: moto's, or a client whose GETs `serve` answers (no
    request leaves the process: moto's own hook would answer each GET as well, copying the
    whole object every time)."""
    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9")
    bucket = PackagesBucket(s3, "bench-packages")
    if moto:
        s3 = boto3.client("s3")
        bucket = PackagesBucket(s3, "bench-packages")
        s3.create_bucket(Bucket="bench-packages")
        s3.put_object(Bucket="bench-packages", Key=KEY, Body=data)
        return bucket, bucket.pin_written(KEY)
    pin = UploadPin(key=KEY, etag=f'"{hashlib.md5(data).hexdigest()}"', bytes=len(data))
    serve(s3, data, pin.etag, stream_mbps, first_byte_ms)
    return bucket, pin

if __name__ == "__main__":
    main()
