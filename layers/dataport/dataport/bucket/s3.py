"""`PackagesBucket` on S3: objects, multipart uploads (written and server-side copied), pinned
uploads read with If-Match, presigned links. Keys are the caller's; the bucket is this object's."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, cast

import smart_open
from botocore.exceptions import BotoCoreError, ClientError
from smart_open.s3 import MultipartWriter

from dataport import aws
from dataport.bucket.ranged import RANGE_BYTES, RANGES, ranged_reads
from dataport.errors import DataportError, TransientError, UploadChanged
from dataport.models.jobs import UploadPin
from dataport.settings import get_settings

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef

MIB = 1024 * 1024
#: the part size of streamed writes (journals, listings)
STREAM_PART_SIZE = 5 * MIB
#: what each read of a pinned upload asks S3 for at once (readers' own buffers are smaller)
READ_BUFFER = 256 * 1024
#: tries of one range of `read_pinned` whose body broke off (botocore retries the request,
#: not the reading of its body; smart-open's stream tries again the same way)
RANGE_ATTEMPTS = 3
#: the OSError a pinned stream (smart-open) raises for S3's error code, raised the same by
#: `read_pinned` (others: OSError)
_READ_ERRORS: dict[str, type[OSError]] = {
    "AccessDenied": PermissionError, "NoSuchBucket": FileNotFoundError,
    "NoSuchKey": FileNotFoundError, "NoSuchVersion": FileNotFoundError}
#: an S3 answer that the pinned object is not the one validated any more
_CHANGED = {"PreconditionFailed", "412", "NoSuchKey", "404", "NotFound"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


class ObjectMissing(DataportError):
    """No object at the key."""

    code = "object_missing"
    http_status = 404


class InvalidRange(DataportError):
    """A read from beyond the object's end."""

    code = "invalid_range"
    http_status = 400


class PackagesBucket:
    def __init__(self, client: S3Client, name: str) -> None:
        self._s3 = client
        self.name = name

    # ------------------------------------------------------------------ objects

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.name, Key=key)
        except ClientError as error:
            if _code(error) in _MISSING:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Idempotent: a missing object is deleted already."""
        self._s3.delete_object(Bucket=self.name, Key=key)

    def put(self, key: str, body: bytes | bytearray, options: Mapping[str, Any]) -> None:
        # botocore takes a bytearray Body as it is (its blob type is any bytes-like); the stubs
        # only name bytes, and a copy to please them would double a large body in memory
        self._s3.put_object(Bucket=self.name, Key=key, Body=cast(bytes, body), **options)

    def read_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of the object."""
        body = self._s3.get_object(Bucket=self.name, Key=key, Range=f"bytes={start}-{stop - 1}")
        return body["Body"].read()

    @contextmanager
    def lines_from(self, key: str, offset: int) -> Iterator[Iterator[bytes] | None]:
        """The object's lines (ends kept) from byte `offset` on; None when there is no object.
        InvalidRange when `offset` is beyond its end."""
        try:
            answer = (self._s3.get_object(Bucket=self.name, Key=key, Range=f"bytes={offset}-")
                      if offset else self._s3.get_object(Bucket=self.name, Key=key))
        except ClientError as error:
            if _code(error) == "InvalidRange":
                raise InvalidRange(f"{key} has no byte {offset}.") from error
            if _code(error) not in _MISSING:
                raise
            answer = None
        if answer is None:
            yield None
            return
        body = answer["Body"]
        with body:  # (StreamingBody's __enter__ hands out the raw stream, without iter_lines)
            yield body.iter_lines(keepends=True)

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.name,
                                                                       Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    # ------------------------------------------------------------------ streams

    def open_read(self, key: str) -> IO[bytes]:
        """A seekable stream (smart_open: ranged GETs as it is read)."""
        stream: IO[bytes] = smart_open.open(self._uri(key), "rb",
                                            transport_params={"client": self._s3})
        return stream

    def open_write(self, key: str, part_size: int = STREAM_PART_SIZE) -> ObjectWriter:
        """A streamed write: one PutObject when it fits in one part, else a multipart upload
        (memory stays at one part)."""
        return ObjectWriter(self, key, part_size)

    def multipart_writer(self, key: str, part_size: int) -> MultipartWriter:
        """What smart_open.open(..., "wb") builds, with its type (and so `terminate()`, which
        aborts the upload) visible."""
        return MultipartWriter(self.name, key, part_size=part_size, client=self._s3)

    # ------------------------------------------------------------------ multipart uploads

    def create_upload(self, key: str, options: Mapping[str, Any]) -> str:
        return self._s3.create_multipart_upload(Bucket=self.name, Key=key, **options)["UploadId"]

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        return self._s3.upload_part(Bucket=self.name, Key=key, UploadId=upload_id,
                                    PartNumber=number, Body=body)["ETag"]

    def copy_part(self, key: str, upload_id: str, number: int, source: str, *, first: int,
                  last: int) -> str:
        """Part `number` is bytes first..last (inclusive) of object `source`, copied by S3."""
        result = self._s3.upload_part_copy(
            Bucket=self.name, Key=key, UploadId=upload_id, PartNumber=number,
            CopySource={"Bucket": self.name, "Key": source},
            CopySourceRange=f"bytes={first}-{last}")
        return result["CopyPartResult"]["ETag"]

    def complete_upload(self, key: str, upload_id: str,
                        parts: list[CompletedPartTypeDef]) -> None:
        self._s3.complete_multipart_upload(Bucket=self.name, Key=key, UploadId=upload_id,
                                           MultipartUpload={"Parts": parts})

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._s3.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload_id)

    # ------------------------------------------------------------------ prefixes

    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects (at most 1,000) in one DeleteObjects; idempotent: a missing
        object is deleted already."""
        if not keys:
            return
        result = self._s3.delete_objects(Bucket=self.name, Delete={
            "Objects": [{"Key": key} for key in keys], "Quiet": True})
        if errors := result.get("Errors"):
            raise TransientError(f"could not delete {len(errors)} objects",
                                 details={"first": errors[0].get("Message", "")})

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (one DeleteObjects per listed page of <= 1000
        keys); returns how many were deleted."""
        if not prefix:
            raise ValueError("refusing to delete a whole bucket: prefix is empty")
        deleted = 0
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix, PaginationConfig={"PageSize": 1000})
        for page in pages:
            keys: list[ObjectIdentifierTypeDef] = [{"Key": obj["Key"]}
                                                   for obj in page.get("Contents", [])]
            if not keys:
                continue
            result = self._s3.delete_objects(Bucket=self.name,
                                             Delete={"Objects": keys, "Quiet": True})
            if errors := result.get("Errors"):
                raise TransientError(f"could not delete {len(errors)} objects under {prefix}",
                                     details={"first": errors[0].get("Message", "")})
            deleted += len(keys)
        return deleted

    def abort_uploads(self, prefix: str) -> int:
        """Abort every multipart upload in progress under `prefix`; returns how many."""
        if not prefix:
            raise ValueError("refusing to abort every upload in the bucket: prefix is empty")
        aborted = 0
        for page in self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.name,
                                                                              Prefix=prefix):
            for upload in page.get("Uploads", []):
                try:
                    self.abort_upload(upload["Key"], upload["UploadId"])
                except ClientError as error:
                    # Completed or aborted meanwhile: nothing left to clean.
                    if _code(error) != "NoSuchUpload":
                        raise
                aborted += 1
        return aborted

    # ------------------------------------------------------------------ pinned uploads

    def pin(self, source: str, target: str) -> UploadPin:
        """Copy `source` (server-side) to `target` and pin the copy: its ETag and size. (One
        CopyObject copies up to 5 GB.) ObjectMissing when there is no `source`."""
        try:
            copied = self._s3.copy_object(Bucket=self.name, Key=target,
                                          CopySource={"Bucket": self.name, "Key": source})
        except ClientError as error:
            if _code(error) in {"NoSuchKey", "404"}:
                raise ObjectMissing(f"Nothing at {source}.") from error
            raise
        etag = copied["CopyObjectResult"]["ETag"]
        head = self._s3.head_object(Bucket=self.name, Key=target, IfMatch=etag)
        return UploadPin(key=target, etag=etag, bytes=head["ContentLength"])

    def pin_in_place(self, key: str) -> UploadPin:
        """Pin an object where it is (a backup, a restore's completed upload: written by
        dataport or assembled by S3 from parts, never by a form); ObjectMissing when there is
        none."""
        try:
            return self.pin_written(key)
        except ClientError as error:
            if _code(error) in {"NoSuchKey", "404"}:
                raise ObjectMissing(f"Nothing at {key}.") from error
            raise

    def pin_written(self, key: str) -> UploadPin:
        """Pin an object this deployment just wrote (at a key no upload form can write): its
        ETag and size, for reads with If-Match."""
        head = self._s3.head_object(Bucket=self.name, Key=key)
        return UploadPin(key=key, etag=head["ETag"], bytes=head["ContentLength"])

    def open_pinned(self, pin: UploadPin,
                    on_read: Callable[[int, memoryview], None] | None = None) -> IO[bytes]:
        """A seekable stream over a pinned object; every GET it makes requires the pinned ETag
        (a different object raises UploadChanged). `on_read(position, data)` sees every byte
        read."""
        try:
            inner = smart_open.open(self._uri(pin.key), "rb", compression="disable",
                                    transport_params={"client": self._s3, "client_kwargs": {
                                        "S3.Client.get_object": {"IfMatch": pin.etag}}})
        except OSError as error:
            raise _changed(error, pin) from error.__cause__
        return io.BufferedReader(_PinnedRaw(inner, pin, on_read), buffer_size=READ_BUFFER)

    @contextmanager
    def read_pinned(self, pin: UploadPin, start: int = 0, *, ranges: int = RANGES,
                    range_bytes: int = RANGE_BYTES) -> Iterator[Iterator[bytes]]:
        """The pinned object's bytes from `start` to its pinned size, in order, fetched by
        `ranges` ranged GETs at once (bucket.ranged: memory `ranges` x `range_bytes`), each
        requiring the pinned ETag: a changed or missing object raises UploadChanged, any other
        failure of a GET the OSError a pinned stream raises. For a whole pass over a large
        object, where one GET stream would bound it (a whole-object SHA-256)."""
        def fetch(at: int, stop: int) -> bytes:
            return self._pinned_range(pin, at, stop)

        with ranged_reads(fetch, start, pin.bytes, ranges=ranges,
                          range_bytes=range_bytes) as chunks:
            yield chunks

    def _pinned_range(self, pin: UploadPin, start: int, stop: int) -> bytes:
        span = f"bytes={start}-{stop - 1}"
        for attempt in range(1, RANGE_ATTEMPTS + 1):
            try:
                answer = self._s3.get_object(Bucket=self.name, Key=pin.key, Range=span,
                                             IfMatch=pin.etag)
            except ClientError as error:  # (botocore retried what it retries)
                failed = _READ_ERRORS.get(_code(error) or "", OSError)(
                    f"unable to read {pin.key} {span}: {error}")
                failed.__cause__ = error  # what _changed reads, as of a pinned stream's error
                raise _changed(failed, pin) from error
            try:
                data = answer["Body"].read()
            except (BotoCoreError, ConnectionError) as error:
                answer["Body"].close()  # its connection is not reused half read
                if attempt == RANGE_ATTEMPTS:
                    raise OSError(f"{pin.key} {span}: the read broke off {attempt} times "
                                  f"({error})") from error
                continue
            if len(data) != stop - start:  # If-Match makes this impossible; never rely on it
                raise UploadChanged(f"{pin.key} {span} answered {len(data)} bytes "
                                    f"(expected ETag {pin.etag}).", details={"key": pin.key})
            return data
        raise AssertionError("the last attempt returns or raises")

    # ------------------------------------------------------------------ links

    def presigned_post(self, key: str, *, max_bytes: int,
                       ttl_seconds: int) -> tuple[str, dict[str, str]]:
        """(url, form fields) for one POST of at most `max_bytes` to exactly `key`."""
        post = self._s3.generate_presigned_post(
            Bucket=self.name, Key=key, Conditions=[["content-length-range", 1, max_bytes]],
            ExpiresIn=ttl_seconds)
        return post["url"], post["fields"]

    def presigned_part(self, key: str, upload_id: str, number: int, *,
                       ttl_seconds: int) -> str:
        """A PUT of part `number` of a multipart upload of `key`."""
        url: str = self._s3.generate_presigned_url(
            "upload_part", Params={"Bucket": self.name, "Key": key, "UploadId": upload_id,
                                   "PartNumber": number}, ExpiresIn=ttl_seconds)
        return url

    def presigned_get(self, key: str, *, ttl_seconds: int, filename: str,
                      content_type: str) -> str:
        """A GET of `key` served as an attachment named `filename`."""
        url: str = self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.name, "Key": key,
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                    "ResponseContentType": content_type},
            ExpiresIn=ttl_seconds)
        return url

    def _uri(self, key: str) -> str:
        return f"s3://{self.name}/{key}"


class ObjectWriter:
    """A streamed write of one object. It stays in memory while it fits in one part, so a
    small object is one PutObject when it is closed (a multipart upload would be three calls);
    past one part it becomes a smart-open multipart upload, memory staying at one part.
    Leaving its `with` by an exception, or `terminate()`, aborts it: nothing is left."""

    def __init__(self, bucket: PackagesBucket, key: str, part_size: int) -> None:
        self.key = key
        self._bucket = bucket
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload: MultipartWriter | None = None
        self.closed = False

    def write(self, data: bytes | bytearray) -> int:
        if self._upload is not None:
            self._upload.write(data)
        else:
            self._buffer += data
            if len(self._buffer) > self._part_size:
                self._upload = self._bucket.multipart_writer(self.key, self._part_size)
                self._upload.write(self._buffer)
                self._buffer = bytearray()
        return len(data)

    def flush(self) -> None:
        """(Parts go out as they fill; what is left goes with `close`.)"""

    def close(self) -> None:
        """Store the object (an empty one too)."""
        if self.closed:
            return
        self.closed = True
        if self._upload is not None:
            self._upload.close()
        else:
            # the buffer itself: a copy would double the writer's peak memory
            self._bucket.put(self.key, self._buffer, {})
        self._buffer = bytearray()

    def terminate(self) -> None:
        """Abort: the multipart upload if one was started; nothing else was written."""
        if self.closed:
            return
        self.closed = True
        self._buffer = bytearray()
        if self._upload is not None:
            self._upload.terminate()

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.terminate()


def packages_bucket() -> PackagesBucket:
    """The deployment's bucket (cheap: the client and the settings are cached per process)."""
    return PackagesBucket(aws.s3(), get_settings().packages_bucket)


class _PinnedRaw(io.RawIOBase):
    """The pinned object's bytes with their positions, and its S3 failures in our terms."""

    def __init__(self, inner: IO[bytes], pin: UploadPin,
                 on_read: Callable[[int, memoryview], None] | None) -> None:
        super().__init__()
        self._inner = inner
        self._pin = pin
        self._on_read = on_read
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._inner.read(len(view))
        except OSError as error:
            raise _changed(error, self._pin) from error.__cause__
        size = len(data)
        view[:size] = data
        if self._on_read is not None:
            self._on_read(self._position, view[:size])
        self._position += size
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            self._position = self._inner.seek(offset, whence)
        except OSError as error:
            raise _changed(error, self._pin) from error.__cause__
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


def _changed(error: OSError, pin: UploadPin) -> Exception:
    """UploadChanged for S3's answer that the pinned object changed or went; other errors as
    they are (raise it `from error.__cause__`: the error S3 gave stays its cause)."""
    cause = error.__cause__
    if isinstance(cause, ClientError) and _code(cause) in _CHANGED:
        return UploadChanged("The validated upload changed or disappeared after validation "
                             f"(expected ETag {pin.etag}); nothing of it was imported.",
                             details={"key": pin.key})
    return error


def _code(error: ClientError) -> str | None:
    return error.response.get("Error", {}).get("Code")
