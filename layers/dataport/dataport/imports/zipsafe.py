"""Reading an uploaded zip one member at a time, without trusting it.

The stream is any seekable binary file: a local file in tests, a smart_open S3 reader (ranged
GETs) in the import worker. Nothing is extracted to disk and no member is held in memory whole.

Before any member is read, the central directory is checked: the number of entries, every name
(absolute, drive letters, `..`, backslashes, control characters: anything an unzip could write
outside its folder), symlinks, duplicate names, and the declared sizes and ratios. Encrypted
members (WinZip AES, as a dataport export with a password, or ZipCrypto) are read with the
password the import was started with; without one they are refused, and a wrong one is said so.
Headers can lie, so the same ceilings are enforced again on the bytes actually inflated:
the total over all members (a member read twice counts once) and each member's inflated size
against the compressed bytes it can really occupy (up to the next entry: entries that overlap,
the trick of non-recursive zip bombs, are refused).
"""

from __future__ import annotations

import hashlib
import re
import stat
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import IO

import pyzipper

from dataport.imports.limits import BadInput, ImportLimits
from dataport.models.imports import IssueCode

_ENCRYPTED = 0x1
_STRONG_ENCRYPTION = 0x40
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ZipMember:
    name: str
    size: int  # as declared by the central directory; reading enforces what is real
    compressed_size: int
    info: pyzipper.ZipInfo
    #: bytes between this member's header and the next one: what its data can really occupy
    span: int


def unsafe_name_reason(name: str) -> str | None:
    """Why a member name could escape the folder it is extracted into, or None."""
    if not name:
        return "an empty name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "an absolute path"
    if "\\" in name:
        return "a backslash (a Windows path separator)"
    if _CONTROL.search(name):
        return "a control character"
    if ".." in name.split("/"):
        return "a `..` segment"
    return None


class SafeZip:
    """The members of an uploaded zip, checked; `open` gives a guarded reader for one of them."""

    def __init__(self, stream: IO[bytes], *, file: str, limits: ImportLimits,
                 password: bytes | None = None) -> None:
        self.file = file
        self.limits = limits
        self._password = password
        try:
            self._zip = pyzipper.AESZipFile(stream)
        except (pyzipper.BadZipFile, pyzipper.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise BadInput.of(IssueCode.INVALID_ZIP,
                              f"{file} is not a readable zip archive ({exc})", file=file) from None
        self._inflated: dict[str, int] = {}
        self.total_inflated = 0
        try:
            self.members = self._check(self._zip.infolist())
        except BadInput:
            self._zip.close()
            raise

    def _check(self, infos: list[pyzipper.ZipInfo]) -> list[ZipMember]:
        limits = self.limits
        if len(infos) > limits.max_zip_entries:
            raise BadInput.of(IssueCode.ZIP_TOO_MANY_ENTRIES,
                              f"{self.file} has {len(infos)} entries, more than the limit of "
                              f"{limits.max_zip_entries}", file=self.file)
        members: list[ZipMember] = []
        names: set[str] = set()
        declared = 0
        offsets = sorted(info.header_offset for info in infos)
        ends = dict(zip(offsets, [*offsets[1:], self._zip.start_dir], strict=True))
        if len(ends) < len(offsets):
            raise self._bomb(self.file, "entries overlap (two entries share their data)")
        for info in infos:
            name = info.orig_filename  # zipfile cuts the name at a NUL: judge what was stored
            reason = unsafe_name_reason(name)
            if reason:
                raise BadInput.of(IssueCode.ZIP_UNSAFE_PATH,
                                  f"the zip entry {name!r} has {reason}; entries must be "
                                  "relative paths inside the archive", file=name)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BadInput.of(IssueCode.ZIP_SYMLINK,
                                  f"the zip entry {name!r} is a symbolic link", file=name)
            if info.is_dir():
                continue
            if info.flag_bits & _STRONG_ENCRYPTION:  # PKWARE's own scheme: nothing reads it
                raise BadInput.of(IssueCode.ZIP_ENCRYPTED,
                                  f"the zip entry {name!r} uses PKWARE strong encryption, which "
                                  "dataport cannot read; zip it again with AES (7-Zip, WinZip)",
                                  file=name)
            if info.flag_bits & _ENCRYPTED and self._password is None:
                raise BadInput.of(IssueCode.ZIP_ENCRYPTED,
                                  f"the zip entry {name!r} is encrypted; start the import again "
                                  "with the package's password", file=name)
            if name in names:
                raise BadInput.of(IssueCode.ZIP_DUPLICATE_ENTRY,
                                  f"the zip has two entries named {name!r}", file=name)
            names.add(name)
            declared += info.file_size
            if declared > limits.max_total_uncompressed_bytes:
                raise self._bomb(name, f"its entries declare more than "
                                       f"{limits.max_total_uncompressed_bytes} bytes in total")
            span = ends[info.header_offset] - info.header_offset
            if info.compress_size > span:
                raise self._bomb(name, f"{name!r} declares more compressed bytes than the "
                                       "archive holds for it (overlapping entries)")
            if self._ratio_exceeded(info.file_size, info.compress_size):
                raise self._bomb(name, f"{name!r} declares a compression ratio above "
                                       f"{limits.max_compression_ratio:g}")
            members.append(ZipMember(name, info.file_size, info.compress_size, info, span))
        return members

    def _ratio_exceeded(self, inflated: int, compressed: int) -> bool:
        limits = self.limits
        return (inflated > limits.ratio_floor_bytes
                and inflated > limits.max_compression_ratio * max(compressed, 1))

    def _bomb(self, name: str, why: str) -> BadInput:
        return BadInput.of(IssueCode.ZIP_BOMB, f"{self.file} looks like a zip bomb: {why}",
                           file=name)

    def open(self, member: ZipMember) -> GuardedMember:
        try:
            raw = self._zip.open(member.info, pwd=self._password)
        except RuntimeError as exc:
            if "password" in str(exc).lower():
                raise BadInput.of(IssueCode.WRONG_PASSWORD,
                                  f"the password does not open {member.name!r}; start the "
                                  "import again with the password the package was made with",
                                  file=member.name) from None
            raise BadInput.of(IssueCode.INVALID_ZIP,
                              f"cannot read the zip entry {member.name!r} ({exc})",
                              file=member.name) from None
        except (pyzipper.BadZipFile, NotImplementedError, OSError, ValueError) as exc:
            raise BadInput.of(IssueCode.INVALID_ZIP,
                              f"cannot read the zip entry {member.name!r} ({exc})",
                              file=member.name) from None
        return GuardedMember(self, member, raw)

    def read_small(self, member: ZipMember, max_bytes: int) -> bytes:
        """A member that must be small (manifest.json), read whole."""
        if member.size > max_bytes:
            raise BadInput.of(IssueCode.MANIFEST_INVALID,
                              f"{member.name} has {member.size} bytes, more than {max_bytes}",
                              file=member.name)
        with self.open(member) as reader:
            data = reader.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise BadInput.of(IssueCode.MANIFEST_INVALID,
                              f"{member.name} is larger than {max_bytes} bytes",
                              file=member.name)
        return data

    def _account(self, member: ZipMember, inflated: int) -> None:
        """Hold a member's bytes inflated so far to the ceilings; the total counts a member once,
        however often it is read."""
        if inflated > member.size:
            raise self._bomb(member.name, f"{member.name!r} inflates to more bytes than its "
                                          "header declares")
        if self._ratio_exceeded(inflated, min(member.compressed_size, member.span)):
            raise self._bomb(member.name, f"{member.name!r} inflates more than "
                                          f"{self.limits.max_compression_ratio:g} times its "
                                          "compressed size")
        before = self._inflated.get(member.name, 0)
        if inflated > before:
            self._inflated[member.name] = inflated
            self.total_inflated += inflated - before
            if self.total_inflated > self.limits.max_total_uncompressed_bytes:
                raise self._bomb(member.name, "its entries inflate to more than "
                                              f"{self.limits.max_total_uncompressed_bytes} bytes")

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class GuardedMember:
    """A binary reader over one member: enforces the ceilings on every read and keeps the
    SHA-256 of what it returned (for the package manifest's checksums)."""

    def __init__(self, archive: SafeZip, member: ZipMember, raw: IO[bytes]) -> None:
        self.archive = archive
        self.member = member
        self.name = member.name
        self._raw = raw
        self.inflated = 0
        self.eof = False
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size)
        except (pyzipper.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            raise BadInput.of(IssueCode.INVALID_ZIP,
                              f"the zip entry {self.name!r} is corrupt ({exc})",
                              file=self.name) from None
        if not data:
            self.eof = size != 0
            return data
        self.inflated += len(data)
        self._digest.update(data)
        self.archive._account(self.member, self.inflated)
        return data

    def readable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> GuardedMember:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
