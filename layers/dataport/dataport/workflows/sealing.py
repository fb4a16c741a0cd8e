"""The sealed objects of a restore in shards and of an encrypted import (imports.sealed), opened
and made by their tasks.

The plan seals each shard's part with the restore's data key (`parts_sealer`: made once per
restore, its ciphertext kept at `imports/<id>/parts.key` so a retried plan seals with the
same key and writes the same bytes); each part's pin says it is sealed (`UploadPin.sealing`),
so the shard's tasks open it (`open_pinned`) and seal the records they check with the same key
(`sealer_of`). An encrypted import, and a restore of an encrypted backup that runs as one
import execution, seal the records their Validate checks with a key of their own
(`checked_sealer`), which their Execute opens through the pin. A data key is asked of KMS once
per invocation that needs it (jobs.data_keys), and kept nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from dataport.bucket import PackagesBucket
from dataport.imports import storage
from dataport.imports.digest import Tail, stream_tail
from dataport.imports.sealed import Sealer, plain_size
from dataport.jobs.data_keys import new_data_key, open_data_key
from dataport.models.job_common import DataKeyScope, Sealing, UploadPin
from dataport.models.jobs import Job, JobKind


def sealer_of(pin: UploadPin) -> Sealer | None:
    """What opens a sealed pinned object (and seals what is derived from it); None for one
    stored as it is."""
    if pin.sealing is None:
        return None
    key = open_data_key(pin.sealing.data_key, pin.sealing.scope, pin.sealing.job_id)
    return Sealer(key, pin.sealing)


def checked_sealer(job: Job, upload: Sealer | None) -> Sealer | None:
    """What seals the records a Validate keeps for its Execute (imports.checked): a shard's
    part's sealer; for an encrypted import or a restore of an encrypted backup, a data key
    of its own (made in each Validate: the checked records are written again each time,
    their pin naming it); None for what is not encrypted (no KMS call)."""
    if upload is not None:
        return upload
    if job.sealed_password is None:
        return None
    scope = DataKeyScope.RESTORE if job.kind is JobKind.RESTORE else DataKeyScope.IMPORT
    plain, sealed = new_data_key(scope, job.job_id)
    return Sealer(plain, Sealing(data_key=sealed, job_id=job.job_id, scope=scope))


def open_pinned(bucket: PackagesBucket, pin: UploadPin,
                on_read: Callable[[int, memoryview], None] | None = None,
                sealer: Sealer | None = None) -> IO[bytes]:
    """storage.open_pinned, through the seal when the object is sealed: plaintext out, and
    `on_read` fed the plaintext (the digest of the bytes the plan hashed)."""
    if pin.sealing is None:
        return storage.open_pinned(bucket, pin, on_read)
    sealer = sealer or sealer_of(pin)
    assert sealer is not None
    return sealer.reader(storage.open_pinned(bucket, pin), pin.key, pin.bytes, on_read)


def tail(bucket: PackagesBucket, pin: UploadPin, sealer: Sealer | None = None) -> Tail:
    """The pinned object's plaintext from a position on, for a digest's `finish`: an object
    stored as it is by several ranged GETs at once (storage.pinned_tail); a sealed one (a
    shard's part, at most a shard's records) by one stream through its seal."""
    if pin.sealing is None:
        return storage.pinned_tail(bucket, pin)
    return stream_tail(lambda: open_pinned(bucket, pin, None, sealer))


def plain_bytes(pin: UploadPin) -> int:
    """The pinned object's size as its readers see it (a sealed one's plaintext)."""
    return pin.bytes if pin.sealing is None else plain_size(pin.bytes)


def parts_sealer(bucket: PackagesBucket, restore_id: str) -> Sealer:
    """The restore's sealer of its shards' parts: its data key made on the first plan, opened
    again by a retried one."""
    key = storage.parts_data_key(restore_id)
    with bucket.lines_from(key, 0) as lines:
        stored = None if lines is None else b"".join(lines).decode()
    if stored:
        return Sealer(open_data_key(stored, DataKeyScope.RESTORE, restore_id),
                      Sealing(data_key=stored, job_id=restore_id))
    plain, sealed = new_data_key(DataKeyScope.RESTORE, restore_id)
    bucket.put(key, sealed.encode(), {})
    return Sealer(plain, Sealing(data_key=sealed, job_id=restore_id))


def drop_parts(bucket: PackagesBucket, restore_id: str) -> None:
    """The shards' parts, what the plan handed over, and their data key's ciphertext, once
    no shard will read them (the kept lists stay, unreadable without the key: a rollback
    lists them, never opens them)."""
    bucket.delete_prefix(storage.shard_parts_prefix(restore_id))
    bucket.delete_prefix(storage.split_prefix(restore_id))
    bucket.delete(storage.parts_data_key(restore_id))
