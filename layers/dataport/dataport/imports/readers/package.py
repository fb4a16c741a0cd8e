"""A dataport package (a zip with manifest.json) as an import sees it: its manifest, which
members hold data, and whether every member is what the manifest says (bytes and SHA-256,
checked on the bytes the reader streamed, so no member is read twice for it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from pydantic import ValidationError

from dataport.imports.limits import BadInput, issue
from dataport.imports.readers.base import Reporter
from dataport.imports.zipsafe import GuardedMember, SafeZip, ZipMember
from dataport.models.imports import IssueCode
from dataport.packaging.manifest import MANIFEST_NAME, PACKAGE_FORMAT_VERSION, Manifest

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
SUPPORTED_MAJOR = PACKAGE_FORMAT_VERSION.split(".")[0]


def find(archive: SafeZip, name: str) -> ZipMember | None:
    return next((m for m in archive.members if m.name == name), None)


def read_manifest(archive: SafeZip) -> Manifest | None:
    """The package's manifest, None when the zip has none (a zip a person made)."""
    member = find(archive, MANIFEST_NAME)
    if member is None:
        return None
    data = archive.read_small(member, MAX_MANIFEST_BYTES)
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadInput.of(IssueCode.MANIFEST_INVALID,
                          f"manifest.json is not a dataport manifest: {where}: {first['msg']}",
                          file=MANIFEST_NAME, field=where or None) from None
    major = manifest.package_format_version.split(".")[0]
    if major != SUPPORTED_MAJOR:
        raise BadInput.of(IssueCode.UNSUPPORTED_VERSION,
                          f"package format {manifest.package_format_version} is not supported "
                          f"(this dataport reads {SUPPORTED_MAJOR}.x)", file=MANIFEST_NAME,
                          field="packageFormatVersion")
    return manifest


def is_noise(name: str) -> bool:
    """Files archivers add that are never data (macOS resource forks, Finder metadata)."""
    path = PurePosixPath(name)
    return (name.startswith("__MACOSX/") or path.name.startswith("._")
            or path.name in {".DS_Store", "Thumbs.db", "desktop.ini"})


class Checksums:
    """Compares each member read to EOF with its manifest entry; at the end, reports members the
    manifest lists that the zip lacks."""

    def __init__(self, manifest: Manifest | None) -> None:
        self.expected = {f.path: f for f in manifest.files} if manifest else {}
        self.checked: set[str] = set()

    def check(self, member: GuardedMember, reporter: Reporter) -> None:
        entry = self.expected.get(member.name)
        if entry is None or not member.eof:
            return
        self.checked.add(member.name)
        if member.inflated != entry.bytes:
            what = f"it has {member.inflated} bytes, manifest.json says {entry.bytes}"
        elif member.sha256 != entry.sha256:
            what = "its SHA-256 is not the one manifest.json lists"
        else:
            return
        reporter.error(issue(IssueCode.CHECKSUM_MISMATCH,
                             f"{member.name}: {what}; the package was changed or damaged after "
                             "export", file=member.name))

    def missing(self, present: Iterable[str], reporter: Reporter) -> None:
        names = set(present)
        for path in self.expected:
            if path not in names:
                reporter.error(issue(IssueCode.CHECKSUM_MISMATCH,
                                     f"{path} is listed in manifest.json but not in the zip",
                                     file=path))


def ignored(member: ZipMember, reporter: Reporter) -> None:
    if not is_noise(member.name):
        reporter.warning(issue(IssueCode.IGNORED_ENTRY,
                               f"{member.name} is not a file this import reads; it is ignored",
                               file=member.name, severity="warning"))
