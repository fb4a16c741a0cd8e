"""UploadDigest fills a small gap before a read at once (imports/digest.py): a restore walks a
backup's sessions and messages members side by side, and the messages (nearly the whole object)
are hashed as the validation reads them instead of being read again at the end. The digest is
of every byte either way."""

from __future__ import annotations

import hashlib
import io
from typing import IO

from dataport.imports.digest import UploadDigest, stream_tail
from dataport.imports.limits import DEFAULT_LIMITS
from dataport.imports.readers.backup import BackupSource
from dataport.imports.validate import validate
from dataport.models.imports import ImportOptions
from tests.restores.backups import Backup
from tests.restores.test_backup_reader import PROJECT, message, session


class Counted(io.BytesIO):
    """A stream over `data` that feeds a digest (as a pinned S3 stream does) and counts what it
    gives."""

    def __init__(self, data: bytes, digest: UploadDigest | None, read: list[int]) -> None:
        super().__init__(data)
        self.digest, self.counted = digest, read

    def read(self, size: int | None = -1, /) -> bytes:
        position = self.tell()
        data = super().read(size)
        self.counted.append(len(data))
        if self.digest is not None:
            self.digest.feed(position, data)
        return data


def test_a_small_gap_is_filled_and_a_read_near_the_end_waits() -> None:
    data = bytes(range(256)) * 400  # 102,400 bytes
    filled: list[int] = []
    digest = UploadDigest(fill=lambda: Counted(data, None, filled), size=len(data))
    digest.feed(100_000, data[100_000:])  # near the end (a central directory): not yet
    assert digest.length == 0
    digest.feed(0, data[:1_000])
    digest.feed(3_000, data[3_000:4_000])  # 2,000 bytes past the prefix, 98 KB after: filled
    assert sum(filled) == 2_000
    assert digest.length == 4_000
    assert digest.finish(stream_tail(lambda: io.BytesIO(data))) == (
        len(data), hashlib.sha256(data).hexdigest())


def test_a_restores_side_by_side_walk_hashes_the_messages_as_it_reads_them() -> None:
    backup = Backup(projects=[PROJECT], sessions=[session(n) for n in range(1, 40)],
                    messages=[message(n, m, "words " * 400) for n in range(1, 40)
                              for m in range(1, 30)])
    data = backup.container(per_member=400)
    read: list[int] = []
    digest = UploadDigest(fill=lambda: Counted(data, None, read), size=len(data))

    def opened() -> IO[bytes]:
        return Counted(data, digest, read)

    source = BackupSource(opened, "backup.zip", options=ImportOptions(), limits=DEFAULT_LIMITS)
    assert validate(source).ok
    hashed_while_validating, read_while_validating = digest.length, sum(read)
    assert digest.finish(stream_tail(lambda: Counted(data, None, read))) == (
        len(data), hashlib.sha256(data).hexdigest())
    # only the manifest and the zip's directory are left for the end, not the messages
    assert len(data) - hashed_while_validating < 4_096
    assert sum(read) - read_while_validating < 4_096
