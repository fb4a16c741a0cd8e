"""What an upload is: its extension and its content must agree, then one reader takes it.

- `.zip`: zip magic; a `manifest.json` says which dataport package it is (json, jsonl, csv;
  markdown and pdf cannot be imported); a zip without one is judged by its members
  (`conversations-*.json`, `*.jsonl` transcripts, `*.csv`).
- `.json`: a dataport JSON document (`{"format": "dataport.conversations"` or
  `"dataport.projects"`, the envelope formats/json_format.py writes first).
- `.jsonl`: Claude Code transcript lines (JSON objects, one per line).
- `.csv`: a header row with `uuid` or `sessionId` (directly or through the field mapping).

A zip named `.json`, JSON lines named `.json`, a dataport document named `.jsonl`, or a
declared format that is not what the file holds: a content mismatch, reported before any record
is read. Only the first 64 KiB (and the zip's central directory) are looked at here.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import PurePosixPath

from dataport.formats.json_format import CONVERSATIONS_FORMAT, PROJECTS_FORMAT
from dataport.imports.limits import (
    DEFAULT_LIMITS,
    BadInput,
    ImportLimits,
    check_upload_size,
    stream_size,
)
from dataport.imports.readers.backup import BackupSource, is_backup
from dataport.imports.readers.base import ImportSource, IssueCallback, Opener, Reporter
from dataport.imports.readers.claude_transcript import ClaudeTranscriptSource
from dataport.imports.readers.csv_reader import CsvSource, understand_header
from dataport.imports.readers.dataport_json import CONVERSATIONS_FILE, DataportJsonSource
from dataport.imports.readers.dataport_jsonl import DataportJsonlSource
from dataport.imports.readers.package import is_noise, read_manifest
from dataport.imports.zipsafe import SafeZip
from dataport.models.imports import ImportOptions, IssueCode, SourceFormat

__all__ = ["ImportSource", "IssueCallback", "Opener", "Reporter", "open_import"]

HEAD_BYTES = 64 * 1024
EXTENSIONS = (".zip", ".json", ".jsonl", ".csv")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_ENVELOPE = re.compile(rb'^\{\s*"format"\s*:\s*"(?P<format>[^"\\]{0,100})"')
_VERSION = re.compile(rb'"version"\s*:\s*(?P<version>\d{1,9})')
_COMPATIBLE = {SourceFormat.DATAPORT_JSONL: SourceFormat.CLAUDE_TRANSCRIPT}
_PACKAGE_FORMATS: dict[str, type[ImportSource]] = {
    "json": DataportJsonSource, "jsonl": DataportJsonlSource, "csv": CsvSource}


def open_import(opener: Opener, filename: str, options: ImportOptions | None = None,
                limits: ImportLimits | None = None, *,
                password: bytes | None = None) -> ImportSource:
    """The source for an upload; BadInput (with its Issue) when the upload cannot be one.
    `password` opens an encrypted zip (other uploads do not need it)."""
    options = options or ImportOptions()
    limits = limits or DEFAULT_LIMITS
    extension = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if extension not in EXTENSIONS:
        what = f"`{extension}`" if extension else "no extension"
        raise BadInput.of(IssueCode.UNSUPPORTED_EXTENSION,
                          f"{filename} has {what}; dataport imports .zip (a dataport package or "
                          "a ~/.claude/projects tree), .json (a dataport JSON file), .jsonl (a "
                          "Claude Code transcript) and .csv", file=filename)
    stream = opener()
    try:
        check_upload_size(stream_size(stream), limits, filename)
        head = stream.read(HEAD_BYTES)
    finally:
        stream.close()
    body = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not body and len(head) < HEAD_BYTES:
        raise BadInput.of(IssueCode.EMPTY_FILE,
                          f"{filename} holds only white space: there is nothing to import",
                          file=filename)
    kind = _content(head, body)
    args = (opener, filename)
    source: ImportSource
    if extension == ".zip":
        _expect(kind, "zip", filename, extension)
        source = _zip_source(opener, filename, options, limits, password)
    elif extension == ".json":
        _expect(kind, "json", filename, extension)
        version = _VERSION.search(body)
        source = DataportJsonSource(*args, options=options, limits=limits, zipped=False,
                                    version=version["version"].decode() if version else None)
    elif extension == ".jsonl":
        _expect(kind, "jsonl", filename, extension)
        source = ClaudeTranscriptSource(*args, options=options, limits=limits, zipped=False,
                                        version=_transcript_version(body))
    else:
        _expect(kind, "csv", filename, extension)
        _check_csv_header(body, filename, options)
        source = CsvSource(*args, options=options, limits=limits, zipped=False)
    _check_declared(source, options, filename)
    return source


def _content(head: bytes, body: bytes) -> str:
    """What the first bytes hold: zip | json (a dataport envelope) | jsonl | broken-json (starts
    like JSON, the first line does not parse) | other-json | csv | text."""
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    envelope = _ENVELOPE.match(body)
    if envelope is not None:
        fmt = envelope["format"].decode("utf-8", "replace")
        return "json" if fmt in {CONVERSATIONS_FORMAT, PROJECTS_FORMAT} else "other-json"
    first = body.split(b"\n", 1)[0].strip()
    if body.startswith(b"{"):
        try:
            record = json.loads(first)
        except (ValueError, RecursionError):  # too deep: the reader says so, with its line
            return "broken-json"
        return "jsonl" if isinstance(record, dict) and "type" in record else "other-json"
    if body.startswith(b"["):
        return "other-json"
    try:
        header = next(csv.reader([first.decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error):
        return "text"
    header = [cell.strip() for cell in header]
    return "csv" if len(header) > 1 and {"sessionId", "uuid"} & set(header) else "text"


_DESCRIPTIONS = {"zip": "a zip archive", "json": "a dataport JSON document",
                 "jsonl": "Claude Code JSON lines", "other-json": "JSON dataport does not know",
                 "broken-json": "broken JSON", "text": "text that is not JSON", "csv": "CSV"}
#: content a reader judges better than detection can: it says which line is wrong
_LEFT_TO_READER = {"jsonl": {"text", "broken-json"}, "csv": {"text"}}


def _expect(kind: str, wanted: str, filename: str, extension: str) -> None:
    if kind == wanted or kind in _LEFT_TO_READER.get(wanted, set()):
        return
    if wanted in {"json", "jsonl"} and kind in {"other-json", "broken-json"}:
        raise BadInput.of(IssueCode.UNSUPPORTED_FORMAT,
                          f"{filename} is JSON, but not a dataport export or Claude Code "
                          "transcript", file=filename)
    raise BadInput.of(IssueCode.CONTENT_MISMATCH,
                      f"{filename} is named {extension} but holds {_DESCRIPTIONS[kind]}",
                      file=filename)


def _transcript_version(body: bytes) -> str | None:
    for line in body.split(b"\n")[:20]:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("version"), str):
            return str(record["version"])
    return None


def _check_csv_header(body: bytes, filename: str, options: ImportOptions) -> None:
    first = body.split(b"\n", 1)[0]
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput.of(IssueCode.INVALID_UTF8, f"{filename}: the header row is not valid "
                                                  "UTF-8", file=filename, line=1) from None
    header = next(csv.reader([text]), [])
    understand_header(header, name=filename, mapping=options.field_mapping)


def _zip_source(opener: Opener, filename: str, options: ImportOptions,
                limits: ImportLimits, password: bytes | None) -> ImportSource:
    stream = opener()
    try:
        with SafeZip(stream, file=filename, limits=limits, password=password) as archive:
            if is_backup(archive):  # a backup restores as any other upload imports
                return BackupSource(opener, filename, options=options, limits=limits,
                                    password=password)
            manifest = read_manifest(archive)
            names = [m.name for m in archive.members if not is_noise(m.name)]
    finally:
        stream.close()

    def zipped(kind: type[ImportSource], version: str | None = None) -> ImportSource:
        return kind(opener, filename, options=options, limits=limits, zipped=True,
                    version=version, password=password)

    if manifest is not None:
        kind = _PACKAGE_FORMATS.get(manifest.format)
        if kind is None:
            raise BadInput.of(IssueCode.UNSUPPORTED_FORMAT,
                              f"{filename} is a dataport {manifest.format} package, which cannot "
                              "be imported (it does not carry the data losslessly); import the "
                              "json or jsonl export instead", file=filename, field="format")
        return zipped(kind, manifest.package_format_version)
    if any(CONVERSATIONS_FILE.fullmatch(name) for name in names):
        return zipped(DataportJsonSource)
    if any(name.lower().endswith(".jsonl") for name in names):
        return zipped(ClaudeTranscriptSource)
    if any(name.lower().endswith(".csv") for name in names):
        return zipped(CsvSource)
    if not names:
        raise BadInput.of(IssueCode.EMPTY_FILE, f"{filename} is an empty zip archive",
                          file=filename)
    raise BadInput.of(IssueCode.UNSUPPORTED_FORMAT,
                      f"{filename} holds no file dataport imports (conversations-*.json, "
                      "*.jsonl transcripts, *.csv)", file=filename)


def _check_declared(source: ImportSource, options: ImportOptions, filename: str) -> None:
    declared = options.format
    if declared is None:
        return
    actual = source.format
    if declared == actual or _COMPATIBLE.get(actual) == declared or _COMPATIBLE.get(
            declared) == actual:
        return
    raise BadInput.of(IssueCode.CONTENT_MISMATCH,
                      f"{filename} was declared {declared.value} but holds {actual.value}",
                      file=filename, field="format")
