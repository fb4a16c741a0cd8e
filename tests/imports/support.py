"""Test support for the import readers: packages built the way the packager names and lists
them, uploads read back into records, and the order every reader promises."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import Counter
from typing import Any

from dataport.formats.base import Numbering
from dataport.imports.detect import open_import
from dataport.imports.limits import ImportLimits
from dataport.imports.readers.base import ImportSource
from dataport.models.imports import ImportOptions, Issue
from dataport.models.records import ImportRecord, RecordKind
from dataport.packaging.manifest import Manifest, ManifestFile, ManifestHeader, Owner
from dataport.packaging.package import numbered_name
from tests.unit.format_sink import CONTEXT, MemorySink

ZIP_TIME = (2025, 8, 3, 9, 0, 0)


def members_of(sink: MemorySink) -> list[tuple[str, bytes, int]]:
    """(package name, bytes, records) of every file a writer produced, named as
    packaging.package.member_names names them."""
    totals = Counter(f.path for f in sink.files)
    always = {f.path for f in sink.files if f.numbering is Numbering.ALWAYS}
    seen: Counter[str] = Counter()
    out = []
    for file in sink.files:
        seen[file.path] += 1
        name = (file.path if totals[file.path] == 1 and file.path not in always
                else numbered_name(file.path, seen[file.path]))
        out.append((name, bytes(file.data), file.records))
    return out


def package(sink: MemorySink, fmt: str, *, manifest: bool = True,
            extra: list[tuple[str, bytes]] | None = None) -> bytes:
    """A dataport package (zip + manifest.json) of what a writer wrote into `sink`."""
    members = members_of(sink)
    entries = [ManifestFile(path=name, bytes=len(data), compressed_bytes=len(data),
                            records=records, sha256=hashlib.sha256(data).hexdigest())
               for name, data, records in members]
    header = ManifestHeader(created_at=CONTEXT.created_at, owner=Owner(user_id=CONTEXT.owner_id),
                            job_id=CONTEXT.job_id, format=fmt)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, _ in members:
            archive.writestr(zipfile.ZipInfo(name, ZIP_TIME), data, zipfile.ZIP_DEFLATED)
        for name, data in extra or []:
            archive.writestr(zipfile.ZipInfo(name, ZIP_TIME), data, zipfile.ZIP_DEFLATED)
        if manifest:
            archive.writestr(zipfile.ZipInfo("manifest.json", ZIP_TIME),
                             Manifest.build(header, entries, level=6).to_json())
    return buffer.getvalue()


def zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name, ZIP_TIME), data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def source_of(data: bytes, name: str, *, options: ImportOptions | None = None,
              limits: ImportLimits | None = None, password: bytes | None = None) -> ImportSource:
    return open_import(lambda: io.BytesIO(data), name, options, limits, password=password)


def read(data: bytes, name: str, **kwargs: Any) -> tuple[list[ImportRecord], list[Issue]]:
    """Every record of an upload and every issue the readers reported."""
    issues: list[Issue] = []
    records = list(source_of(data, name, **kwargs).records(on_issue=issues.append))
    return records, issues


def check_order(records: list[ImportRecord]) -> None:
    """The order readers/base.py promises: a project before its sessions (and projectId the
    last project's _id where there are ids), a session before its messages."""
    project: dict[str, Any] | None = None
    sessions: dict[str, Any] = {}
    for record in records:
        if record.kind is RecordKind.PROJECT:
            project = record.doc
        elif record.kind is RecordKind.SESSION:
            assert project is not None, "a session before any project"
            if "projectId" in record.doc and "_id" in project:
                assert record.doc["projectId"] == project["_id"]
            sessions[record.doc["sessionId"]] = project.get("_id", project.get("path"))
        else:
            assert record.doc["sessionId"] in sessions, "a message before its session"


def kinds(records: list[ImportRecord], kind: RecordKind) -> list[dict[str, Any]]:
    return [r.doc for r in records if r.kind is kind]
