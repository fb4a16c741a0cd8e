"""Finalize: the staged files of every worker become one zip on S3.

Each member is its local header (generated here, with the final name and the CRC and sizes the
worker recorded) followed by its bytes in the staged object of the invocation that wrote it
(a byte range, or a few for a file written beside another), copied server-side where S3 allows
(UploadPartCopy with CopySourceRange) and otherwise read into the part being built; then
manifest.json, the central directory and the end records. Nothing is recompressed and memory
stays at about two upload parts plus the central directory and manifest entries.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pydantic import SecretStr

from dataport.formats.base import Numbering
from dataport.models.common import ApiModel
from dataport.models.staged import StagedFile
from dataport.packaging.assembler import MultipartAssembler
from dataport.packaging.manifest import MANIFEST_NAME, Manifest, ManifestFile, ManifestHeader
from dataport.packaging.staging import (
    member_entry,
    run_transforms,
    staged_entry,
    transforms,
    zip_method,
)
from dataport.packaging.zipformat import (
    ZipEntry,
    central_directory_header,
    end_of_central_directory,
    local_file_header,
)

if TYPE_CHECKING:
    from dataport.bucket import PackagesBucket

ZIP_CONTENT_TYPE = "application/zip"


class PackageResult(ApiModel):
    key: str
    bytes: int
    files: int
    manifest: Manifest


def numbered_name(path: str, number: int) -> str:
    """`dir/stem.ext` -> `dir/stem-0001.ext`: the number goes before the last extension."""
    p = PurePosixPath(path)
    return str(p.with_name(f"{p.stem}-{number:04d}{p.suffix}"))


def _check_member_path(path: str) -> None:
    """Relative, forward slashes, no `..`: what every unzip extracts where the user expects."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(
            part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a valid package path: {path!r}")


def member_names(files: Callable[[], Iterable[StagedFile]]) -> Iterator[tuple[str, StagedFile]]:
    """(final name, file) in package order. Two passes over `files()` (a paginated query, not
    materialised): the first counts each path, the second names. Files sharing a path are
    numbered from 0001, and so is a lone file whose numbering is ALWAYS."""
    totals: Counter[str] = Counter()
    always: set[str] = set()
    for staged in files():
        totals[staged.path] += 1
        if staged.numbering is Numbering.ALWAYS:
            always.add(staged.path)
    seen: Counter[str] = Counter()
    names = {MANIFEST_NAME}
    for staged in files():
        _check_member_path(staged.path)
        seen[staged.path] += 1
        if seen[staged.path] > totals[staged.path]:
            raise RuntimeError("files() returned more files on its second pass than on its first")
        name = (staged.path if totals[staged.path] == 1 and staged.path not in always
                else numbered_name(staged.path, seen[staged.path]))
        if name in names:
            raise ValueError(f"two package members would be named {name!r}")
        names.add(name)
        yield name, staged
    if seen != totals:
        raise RuntimeError("files() returned fewer files on its second pass than on its first")


#: builds manifest.json's bytes from the members assembled so far: (final name, file) each
ManifestBuilder = Callable[[list[tuple[str, StagedFile]]], bytes]


class ZipResult(ApiModel):
    key: str
    bytes: int
    files: int


def assemble_package(bucket: PackagesBucket, key: str,
                     files: Callable[[], Iterable[StagedFile]], header: ManifestHeader, *,
                     part_size: int, level: int, password: SecretStr | None = None,
                     content_disposition: str | None = None,
                     metadata: Mapping[str, str] | None = None,
                     force_zip64: bool = False) -> PackageResult:
    """Write the export package to `key` (see `assemble_zip`), with the export manifest."""
    built: list[Manifest] = []

    def manifest(members: list[tuple[str, StagedFile]]) -> bytes:
        entries = [ManifestFile(path=name, bytes=staged.size,
                                compressed_bytes=staged.compressed_size, records=staged.records,
                                sha256=staged.sha256, notes=staged.notes)
                   for name, staged in members]
        built.append(Manifest.build(header, entries, level=level))
        return built[-1].to_json()

    result = assemble_zip(bucket, key, files, manifest, modified=header.created_at,
                          part_size=part_size, level=level, password=password,
                          content_disposition=content_disposition, metadata=metadata,
                          force_zip64=force_zip64)
    return PackageResult(key=key, bytes=result.bytes, files=result.files, manifest=built[-1])


def assemble_zip(bucket: PackagesBucket, key: str, files: Callable[[], Iterable[StagedFile]],
                 manifest: ManifestBuilder, *, modified: datetime, part_size: int, level: int,
                 password: SecretStr | None = None, content_disposition: str | None = None,
                 metadata: Mapping[str, str] | None = None,
                 force_zip64: bool = False) -> ZipResult:
    """Write the zip to `key`: every staged file as a member (copied, never recompressed),
    then manifest.json built by `manifest` from the members. `level` and `password` are the
    job's: the manifest member is compressed and encrypted with them here (the data files were
    by the workers), so with a password every member is encrypted.
    On any error the upload is aborted and no object is left; the staged objects stay, for
    the caller to delete (`cleanup.discard_job_objects`) once the job is settled."""
    central = bytearray()
    members: list[tuple[str, StagedFile]] = []
    with MultipartAssembler(bucket, key, part_size=part_size, content_type=ZIP_CONTENT_TYPE,
                            content_disposition=content_disposition, metadata=metadata) as out:

        def add_member(entry: ZipEntry) -> None:
            out.add_bytes(local_file_header(entry, force_zip64=force_zip64))
            central.extend(central_directory_header(entry, force_zip64=force_zip64))

        for name, staged in member_names(files):
            if staged.encrypted != (password is not None):
                raise ValueError(f"{name}: staged {'with' if staged.encrypted else 'without'} "
                                 "encryption, unlike the package")
            add_member(staged_entry(staged, name, modified, out.position))
            for offset, length in staged.byte_ranges():
                out.add_object_range(staged.staging_key, offset, length)
            members.append((name, staged))

        data = manifest(members)
        member = run_transforms(transforms(level, password), data, final=True)
        add_member(member_entry(MANIFEST_NAME, method=zip_method(level), crc32=zlib.crc32(data),
                                size=len(data), compressed_size=len(member), modified=modified,
                                offset=out.position, aes=password is not None))
        out.add_bytes(member)

        cd_offset = out.position
        out.add_bytes(bytes(central))
        out.add_bytes(end_of_central_directory(len(members) + 1, cd_offset, len(central),
                                               force_zip64=force_zip64))
        size = out.complete()
    return ZipResult(key=key, bytes=size, files=len(members))
