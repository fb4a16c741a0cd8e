"""The whole-object read by concurrent ranged GETs (bucket.ranged.ranged_reads,
PackagesBucket.read_pinned, storage.pinned_tail): exactly the object's bytes, in order, for
sizes around the range boundaries and from any position; at most `ranges` ranges held; a
changed object and a failing GET surfacing as they do from the pinned stream (UploadChanged, or
the stream's OSError with S3's error as its cause); a body that breaks off asked again; and no
thread left running after success, failure or a consumer that stops.

S3 is moto in the process (If-Match answered as S3 does: 412). Faults are S3 answers given
through botocore's own `before-send` hook on a client of the test's own."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import MockRawResponse

from dataport.bucket import PackagesBucket
from dataport.bucket.ranged import THREAD_PREFIX, ranged_reads
from dataport.bucket.s3 import RANGE_ATTEMPTS
from dataport.errors import UploadChanged
from dataport.imports import storage
from dataport.imports.digest import UploadDigest
from dataport.models.jobs import UploadPin

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RANGE = 1000
KEY = "imports/job-ranged/validated"


def _data(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _pinned(s3: S3Client, name: str, data: bytes) -> UploadPin:
    s3.put_object(Bucket=name, Key=KEY, Body=data)
    return PackagesBucket(s3, name).pin_written(KEY)


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture
def own_client(moto_aws: None, packages_bucket: str) -> S3Client:
    """A client of this test's own, so a fault hook registered on it reaches no other test."""
    client: S3Client = boto3.client("s3")
    return client


@pytest.mark.parametrize("size", [0, 1, RANGE - 1, RANGE, RANGE + 1, 2 * RANGE,
                                  13 * RANGE + 7])
@pytest.mark.parametrize("start", [0, 1, RANGE - 1, RANGE, RANGE + 1])
def test_the_bytes_are_the_objects_from_any_position(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket, size: int,
        start: int) -> None:
    data = _data(size)
    pin = _pinned(s3_client, packages_bucket, data)
    with bucket.read_pinned(pin, start, ranges=3, range_bytes=RANGE) as chunks:
        read = list(chunks)
    assert b"".join(read) == data[start:]
    assert all(0 < len(chunk) <= RANGE for chunk in read)
    assert len(read) == max(0, -(-(size - start) // RANGE))
    assert _threads() == []


def test_a_digest_finishes_the_same_over_ranges_as_over_the_stream(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    data = _data(3 * 8 * 2**20 + 12_345)  # more than three default ranges, none whole at the end
    pin = _pinned(s3_client, packages_bucket, data)
    digest = UploadDigest()
    digest.feed(0, data[:5_000])  # a prefix the readers hashed: not fetched again
    assert digest.finish(storage.pinned_tail(bucket, pin)) == (
        len(data), hashlib.sha256(data).hexdigest())


def test_ranges_come_in_order_and_at_most_ranges_are_held() -> None:
    asked: list[int] = []
    lock = threading.Lock()
    data = _data(50 * 7 + 3)

    def fetch(start: int, stop: int) -> bytes:
        with lock:
            asked.append(start)
        time.sleep(random.Random(start).random() / 200)  # answers arrive out of order
        return data[start:stop]

    with ranged_reads(fetch, 0, len(data), ranges=4, range_bytes=7) as chunks:
        taken = []
        for number, chunk in enumerate(chunks):
            with lock:
                held = len(asked) - number  # asked and not yet handed on, this one included
            assert held <= 4
            taken.append(chunk)
    assert b"".join(taken) == data
    assert sorted(asked) == list(range(0, len(data), 7))


def test_a_changed_object_mid_pass_is_refused_as_by_the_stream(
        s3_client: S3Client, packages_bucket: str, bucket: PackagesBucket) -> None:
    data = _data(20 * RANGE)
    pin = _pinned(s3_client, packages_bucket, data)
    read: list[bytes] = []

    def read_changing() -> None:
        with bucket.read_pinned(pin, ranges=2, range_bytes=RANGE) as chunks:
            for chunk in chunks:
                read.append(chunk)
                if len(read) == 1:  # the ranges asked for from now on name a gone ETag
                    s3_client.put_object(Bucket=packages_bucket, Key=KEY, Body=data[::-1])

    with pytest.raises(UploadChanged):
        read_changing()
    assert b"".join(read) == data[:len(read) * RANGE]  # the pinned object's bytes only
    assert _threads() == []
    s3_client.delete_object(Bucket=packages_bucket, Key=KEY)
    with pytest.raises(UploadChanged), bucket.read_pinned(pin) as chunks:
        list(chunks)
    with pytest.raises(UploadChanged):  # the stream says the same
        storage.open_pinned(bucket, pin).read()


def _answer(status: int, body: bytes, headers: dict[str, str]) -> AWSResponse:
    return AWSResponse("https://s3.amazonaws.com", status, HTTPHeaders.from_dict(headers),
                       MockRawResponse(body))


def _fault(client: S3Client, answer: Callable[[Any], AWSResponse | None]) -> None:
    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        return answer(request)
    # (an answer of a `before-send` handler is the HTTP response; the stubs say None)
    client.meta.events.register_first("before-send.s3.GetObject",
                                      cast(Callable[..., None], before_send))


_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
           b"<Message>Access Denied</Message></Error>")


def _denied_from(offset: int) -> Callable[[Any], AWSResponse | None]:
    """S3's 403 for every GET of a range that starts at `offset` or later."""
    def answer(request: Any) -> AWSResponse | None:
        span = request.headers.get("Range")
        first = int(span.decode().split("=")[1].split("-")[0]) if span else 0
        if first < offset:
            return None
        return _answer(403, _DENIED, {"Content-Type": "application/xml"})
    return answer


def _denied(raised: pytest.ExceptionInfo[BaseException]) -> None:
    assert type(raised.value) is PermissionError  # (an OSError: smart-open's for AccessDenied)
    assert isinstance(raised.value.__cause__, ClientError)
    assert raised.value.__cause__.response["Error"]["Code"] == "AccessDenied"


def test_a_failing_range_get_surfaces_as_the_streams_error(
        own_client: S3Client, packages_bucket: str) -> None:
    data = _data(10 * RANGE)
    pin = _pinned(own_client, packages_bucket, data)
    bucket = PackagesBucket(own_client, packages_bucket)
    _fault(own_client, _denied_from(3 * RANGE))
    read: list[bytes] = []

    def read_all() -> None:
        with bucket.read_pinned(pin, ranges=2, range_bytes=RANGE) as chunks:
            read.extend(chunks)

    with pytest.raises(PermissionError, match="AccessDenied") as ranged:
        read_all()
    _denied(ranged)
    assert b"".join(read) == data[:3 * RANGE]  # in order up to the failing range, then its error
    assert _threads() == []
    _fault(own_client, _denied_from(0))  # the stream's first GET is of the whole object
    with pytest.raises(PermissionError, match="AccessDenied") as streamed:  # as today's path
        storage.open_pinned(bucket, pin).read()
    _denied(streamed)


def test_a_body_that_breaks_off_is_asked_again(own_client: S3Client,
                                               packages_bucket: str) -> None:
    data = _data(6 * RANGE)
    pin = _pinned(own_client, packages_bucket, data)
    broken: list[str] = []

    def answer(request: Any) -> AWSResponse | None:
        span = request.headers.get("Range")
        if span != b"bytes=2000-2999" or broken:
            return None
        broken.append(span.decode())  # once: half the body of what its length announces
        return _answer(206, data[2000:2500], {"Content-Length": str(RANGE), "ETag": pin.etag,
                                              "Content-Range": f"bytes 2000-2999/{len(data)}"})

    _fault(own_client, answer)
    with PackagesBucket(own_client, packages_bucket).read_pinned(
            pin, ranges=3, range_bytes=RANGE) as chunks:
        assert b"".join(chunks) == data
    assert broken == ["bytes=2000-2999"]


def test_a_body_that_keeps_breaking_off_fails_the_pass(own_client: S3Client,
                                                        packages_bucket: str) -> None:
    data = _data(4 * RANGE)
    pin = _pinned(own_client, packages_bucket, data)
    broken: list[bytes] = []

    def answer(request: Any) -> AWSResponse | None:
        if request.headers.get("Range") != b"bytes=1000-1999":
            return None
        broken.append(data[1000:1100])  # every time: a tenth of what its length announces
        return _answer(206, broken[-1], {"Content-Length": str(RANGE), "ETag": pin.etag})

    _fault(own_client, answer)
    read: list[bytes] = []

    def read_all() -> None:
        with PackagesBucket(own_client, packages_bucket).read_pinned(
                pin, ranges=2, range_bytes=RANGE) as chunks:
            read.extend(chunks)

    with pytest.raises(OSError, match="broke off 3 times"):
        read_all()
    assert len(broken) == RANGE_ATTEMPTS
    assert read == [data[:RANGE]]
    assert _threads() == []


class _Stop(Exception):
    """What a consumer raises when it stops (a cancel it noticed)."""


def test_no_thread_outlives_a_consumer_that_stops() -> None:
    started = threading.Event()

    def slow(start: int, stop: int) -> bytes:
        started.set()
        time.sleep(0.01)
        return bytes(stop - start)

    def consume() -> Iterator[bytes]:
        with ranged_reads(slow, 0, 10**6, ranges=4, range_bytes=100) as chunks:
            for number, chunk in enumerate(chunks):
                yield chunk
                if number == 2:
                    raise _Stop

    with pytest.raises(_Stop):
        list(consume())
    assert started.is_set()
    assert _threads() == []
