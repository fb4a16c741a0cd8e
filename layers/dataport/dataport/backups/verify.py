"""Verify a stored backup: the whole object's SHA-256 against the catalog's, then every member
read back from the object (ranged reads), its stored bytes and its decompressed lines checked
against their SHA-256s and counts in the manifest (zstd checks its frame's own checksum, and
pyzipper each AES member's HMAC or plain member's CRC-32). The first damage found is named.

In two passes a job can split over invocations (workflows/verify.py): the whole object's
SHA-256 (`object_sha256` over one stream, `chunks_sha256` over ranged reads), then
`check_members` from any member on, stopping between members when told to (`MemberPass`).
Memory: a read chunk, a line and a zstd window, whatever the size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

from dataport.backups.format import (
    MANIFEST_NAME,
    BackupContainer,
    BackupManifest,
    FormatError,
    PasswordRequired,
)
from dataport.errors import JobCancelled

CHUNK = 8 * 1024 * 1024
#: lines of a member between two calls of check_members' `reading` (a few MB of lines)
LINES_PER_BEAT = 4096


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
    return chunks_sha256(iter(lambda: stream.read(CHUNK), b""))


def chunks_sha256(chunks: Iterable[bytes]) -> tuple[str, int]:
    """SHA-256 and size of the bytes of `chunks`, in order."""
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


@dataclass
class MemberPass:
    """How far the member pass got: `next_member` (an index into the manifest's members),
    members and records checked, the manifest's member count, and damage once found."""

    next_member: int = 0
    members: int = 0
    records: int = 0
    total: int | None = None
    member: str | None = None
    problem: str | None = None
    done: bool = False
    checked: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return self.problem is not None


def check_members(stream: IO[bytes], password: str | None, progress: MemberPass,
                  keep_going: Callable[[], bool] = lambda: True,
                  reading: Callable[[], None] = lambda: None) -> MemberPass:
    """Check the members from `progress.next_member` on, one at a time, until the last (then
    `done`), the first damage (`problem`, `member`; `done`) or `keep_going()` says stop between
    two members. `reading()` is called every LINES_PER_BEAT lines within a member; the
    JobCancelled it may raise goes through (a job cancelled mid-member stops there, nothing
    recorded). PasswordRequired for a missing or wrong password (the caller's mistake)."""
    try:
        with BackupContainer(stream, password) as backup:
            manifest = backup.manifest
            progress.total = len(manifest.members)
            if progress.next_member == 0:
                _check_listing(manifest, backup.names())
            for entry in manifest.members[progress.next_member:]:
                if progress.checked and not keep_going():
                    return progress
                reader = backup.member(entry)
                try:
                    for number, _ in enumerate(reader.lines(), 1):
                        if number % LINES_PER_BEAT == 0:
                            reading()
                    reader.check()
                except JobCancelled:
                    raise
                except FormatError as error:
                    return _damage_found(progress, entry.path, str(error))
                except Exception as error:  # pyzipper: a bad HMAC or CRC-32, a short read
                    return _damage_found(progress, entry.path, f"{entry.path}: {error}")
                progress.next_member += 1
                progress.members += 1
                progress.records += entry.records
                progress.checked.append(entry.path)
    except (PasswordRequired, JobCancelled):
        raise
    except FormatError as error:
        return _damage_found(progress, None, str(error))
    except Exception as error:  # the zip's structure itself is damaged
        return _damage_found(progress, None, f"the backup cannot be read: {error}")
    progress.done = True
    return progress


def _damage_found(progress: MemberPass, member: str | None, problem: str) -> MemberPass:
    progress.member, progress.problem, progress.done = member, problem, True
    return progress


def verdict(sha256: str, expected_sha256: str | None, members: MemberPass) -> Verification:
    """The result of both passes: the first damage a member showed, else the whole object's."""
    if members.damaged:
        return Verification(ok=False, sha256=sha256, members=members.members,
                            records=members.records, member=members.member,
                            problem=members.problem)
    if expected_sha256 is not None and sha256 != expected_sha256:
        return Verification(ok=False, sha256=sha256, members=members.members,
                            records=members.records,
                            problem="the stored object's SHA-256 differs from the one recorded "
                                    "when the backup completed")
    return Verification(ok=True, sha256=sha256, members=members.members,
                        records=members.records)


def verify_backup(open_object: Callable[[], IO[bytes]], expected_sha256: str | None,
                  password: str | None = None) -> Verification:
    """Check everything in one go (see the module's docstring). A wrong or missing password
    raises PasswordRequired: that is the caller's mistake, not damage."""
    with open_object() as stream:
        sha256, _ = object_sha256(stream)
    with open_object() as stream:
        members = check_members(stream, password, MemberPass())
    return verdict(sha256, expected_sha256, members)


def _check_listing(manifest: BackupManifest, names: list[str]) -> None:
    listed = {entry.path for entry in manifest.members}
    present = set(names) - {MANIFEST_NAME}
    if present - listed:
        raise FormatError(f"{sorted(present - listed)[0]}: in the backup but not in its "
                          "manifest")
    if listed - present:
        raise FormatError(f"{sorted(listed - present)[0]}: in the manifest but not in the "
                          "backup")
