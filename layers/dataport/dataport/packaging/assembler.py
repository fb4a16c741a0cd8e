"""One S3 object written from a sequence of inline bytes and ranges of other objects.

Large ranges become UploadPartCopy parts (S3 copies server-side: the Lambda never sees the
bytes); small ranges and inline bytes are gathered in one part buffer. S3 rejects a completed
upload with a part other than the last under 5 MiB (EntityTooSmall), so a partly filled buffer is
first topped up from the next range by a ranged GET before anything is copied. A ranged GET
reads ahead up to one part of the same object (S3 stops at the object's end), so the many small
members one worker invocation staged side by side in one object cost one GET per part, not one
each. Memory: the part buffer, the copy of it handed to botocore and the read-ahead, about three
parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from dataport.errors import DataportError

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from dataport.bucket import PackagesBucket

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_TARGET_PART_SIZE = 16 * MiB  # bounds the buffer (Lambda memory)
MAX_COPY_PART_SIZE = 5 * 1024 * MiB  # S3's maximum part size
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB  # settings.upload_part_size_mb's default


class PackageTooLarge(DataportError):
    """The object would need more than S3's 10,000 parts."""

    code = "package_too_large"
    http_status = 413


class MultipartAssembler:
    """Use as a context manager: leaving it without `complete()`, or with an exception, aborts
    the upload so nothing is left behind. The upload is created lazily; an object that fits in
    one buffer is written with a single PutObject."""

    def __init__(self, bucket: PackagesBucket, key: str, *, part_size: int = DEFAULT_PART_SIZE,
                 content_type: str | None = None, content_disposition: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_TARGET_PART_SIZE:
            raise ValueError(f"part size must be {MIN_PART_SIZE}-{MAX_TARGET_PART_SIZE} bytes")
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._options: dict[str, Any] = {
            name: value for name, value in (("ContentType", content_type),
                                            ("ContentDisposition", content_disposition),
                                            ("Metadata", dict(metadata or {})))
            if value
        }
        self._buffer = bytearray()
        self._position = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._closed = False
        #: (key, offset, bytes) of the last ranged GET, read ahead past what was asked
        self._ahead: tuple[str, int, bytes] | None = None

    @property
    def position(self) -> int:
        """Bytes added so far: the offset the next byte will have in the object."""
        return self._position

    def add_bytes(self, data: bytes | memoryview) -> None:
        self._check_open()
        view = memoryview(data)
        while view:
            take = view[:self._part_size - len(self._buffer)]
            self._buffer += take
            self._position += len(take)
            view = view[len(take):]
            if len(self._buffer) >= self._part_size:
                self._upload_buffer()

    def add_object_range(self, key: str, start: int, length: int) -> None:
        """Append `length` bytes of s3://bucket/key from `start`."""
        self._check_open()
        if start < 0 or length < 0:
            raise ValueError("start and length must not be negative")
        end = start + length
        if self._buffer:
            start = self._read_into_buffer(key, start, min(end, start + self._part_size
                                                            - len(self._buffer)))
        # The buffer is empty now unless the range is used up.
        if end - start >= MIN_PART_SIZE:
            self._copy(key, start, end)
        elif end > start:
            self._read_into_buffer(key, start, end)

    def complete(self) -> int:
        """Finish the object; returns its size."""
        self._check_open()
        try:
            if self._upload_id is None:
                self._bucket.put(self._key, bytes(self._buffer), self._options)
            else:
                if self._buffer:
                    self._upload_buffer()
                self._bucket.complete_upload(self._key, self._upload_id, self._parts)
        except BaseException:
            self.abort()
            raise
        self._upload_id = None
        self._closed = True
        self._buffer = bytearray()
        self._ahead = None
        return self._position

    def abort(self) -> None:
        """Abort the multipart upload, if one was started (parts already stored are freed)."""
        upload_id, self._upload_id = self._upload_id, None
        self._closed = True
        self._buffer = bytearray()
        if upload_id is not None:
            self._bucket.abort_upload(self._key, upload_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._closed:
            self.abort()

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the object is already complete or aborted")

    def _new_part(self) -> tuple[int, str]:
        """The next part number, and the upload id (the upload is created with the first)."""
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise PackageTooLarge(
                f"s3://{self._bucket.name}/{self._key} needs more than {MAX_PARTS} parts "
                f"at {self._part_size} bytes per part",
                details={"position": self._position})
        if self._upload_id is None:
            self._upload_id = self._bucket.create_upload(self._key, self._options)
        return number, self._upload_id

    def _upload_buffer(self) -> None:
        number, upload_id = self._new_part()
        etag = self._bucket.upload_part(self._key, upload_id, number, bytes(self._buffer))
        self._parts.append({"PartNumber": number, "ETag": etag})
        self._buffer.clear()

    def _read_into_buffer(self, key: str, start: int, end: int) -> int:
        """Bytes [start, end) into the buffer, a part at a time; returns `end`."""
        while start < end:
            stop = min(end, start + self._part_size - len(self._buffer))
            self.add_bytes(self._read(key, start, stop))
            start = stop
        return end

    def _read(self, key: str, start: int, stop: int) -> bytes | memoryview:
        """Bytes [start, stop) of `key`: from the read-ahead when it holds them, else one
        ranged GET of at least a part from `start` (fewer at the object's end)."""
        if self._ahead is not None:
            ahead_key, offset, data = self._ahead
            if ahead_key == key and offset <= start and stop <= offset + len(data):
                return memoryview(data)[start - offset:stop - offset]
        self._ahead = None
        body = self._bucket.read_range(key, start, max(stop, start + self._part_size))
        if len(body) < stop - start:
            raise ValueError(f"s3://{self._bucket.name}/{key} is shorter than its record says "
                             f"(wanted bytes {start}-{stop - 1}, got {len(body)})")
        if len(body) > stop - start:
            self._ahead = (key, start, body)
        return memoryview(body)[:stop - start]

    def _copy(self, key: str, start: int, end: int) -> None:
        """UploadPartCopy in equal pieces within S3's 5 MiB-5 GiB part bounds."""
        pieces = -(-(end - start) // MAX_COPY_PART_SIZE)
        size = -(-(end - start) // pieces)
        for first in range(start, end, size):
            last = min(first + size, end) - 1
            number, upload_id = self._new_part()
            etag = self._bucket.copy_part(self._key, upload_id, number, key, first=first,
                                          last=last)
            self._parts.append({"PartNumber": number, "ETag": etag})
            self._position += last - first + 1
