"""Verify a stored backup: the whole object's SHA-256 against the catalog's, then every member
read back from the object (ranged reads), its stored bytes and its decompressed lines checked
against their SHA-256s and counts in the manifest (zstd checks its frame's own checksum, and
pyzipper each AES member's HMAC or plain member's CRC-32). The first damage found is named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from dataport.backups.format import (
    MANIFEST_NAME,
    BackupContainer,
    BackupManifest,
    FormatError,
    PasswordRequired,
)

CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Verification:
    ok: bool
    sha256: str
    members: int = 0
    records: int = 0
    #: the damaged member (None: the object as a whole, or nothing damaged)
    member: str | None = None
    problem: str | None = None


def object_sha256(stream: IO[bytes]) -> tuple[str, int]:
    """SHA-256 and size of a whole stream, read a chunk at a time."""
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def verify_backup(open_object: Callable[[], IO[bytes]], expected_sha256: str | None,
                  password: str | None = None) -> Verification:
    """Check everything (see the module's docstring). A wrong or missing password raises
    PasswordRequired: that is the caller's mistake, not damage."""
    with open_object() as stream:
        sha256, _ = object_sha256(stream)
    whole_ok = expected_sha256 is None or sha256 == expected_sha256
    members = records = 0
    try:
        with open_object() as stream, BackupContainer(stream, password) as backup:
            manifest = backup.manifest
            _check_listing(manifest, backup.names())
            for entry in manifest.members:
                reader = backup.member(entry)
                try:
                    for _ in reader.lines():
                        pass
                    reader.check()
                except FormatError as error:
                    return Verification(ok=False, sha256=sha256, members=members,
                                        records=records, member=entry.path, problem=str(error))
                except Exception as error:  # pyzipper: a bad HMAC or CRC-32, a short read
                    return Verification(ok=False, sha256=sha256, members=members,
                                        records=records, member=entry.path,
                                        problem=f"{entry.path}: {error}")
                members += 1
                records += entry.records
    except PasswordRequired:
        raise
    except FormatError as error:
        return Verification(ok=False, sha256=sha256, problem=str(error))
    except Exception as error:  # the zip's structure itself is damaged
        return Verification(ok=False, sha256=sha256, problem=f"the backup cannot be read: "
                                                           f"{error}")
    if not whole_ok:
        return Verification(ok=False, sha256=sha256, members=members, records=records,
                            problem="the stored object's SHA-256 differs from the one recorded "
                                    "when the backup completed")
    return Verification(ok=True, sha256=sha256, members=members, records=records)


def _check_listing(manifest: BackupManifest, names: list[str]) -> None:
    listed = {entry.path for entry in manifest.members}
    present = set(names) - {MANIFEST_NAME}
    if present - listed:
        raise FormatError(f"{sorted(present - listed)[0]}: in the backup but not in its "
                          "manifest")
    if listed - present:
        raise FormatError(f"{sorted(listed - present)[0]}: in the manifest but not in the "
                          "backup")
