"""CSV: `sessions.csv` / `messages.csv` as dataport exports them (formats/csv_format.py), or
another tool's columns through `ImportOptions.field_mapping` ({our column: their column}).

Whether a file holds sessions or messages is read from its header (a `uuid` column means
messages), not its name. A file with exactly our columns and no mapping is a dataport export:
the `'` that csv_format.text_cell put before a text cell starting with `=`, `+`, `-`, `@`, a tab
or a carriage return is removed again (from text columns only; numbers, dates and booleans were
never changed). Other files are taken as they are.

What a row becomes:
- sessions: a PROJECT {name, path} from projectName / projectPath (yielded when it changes),
  then a SESSION {sessionId, startedAt, endedAt, messageCount, totalCost, inputTokens,
  outputTokens, totalTokens, toolsUsed, summary};
- messages: a MESSAGE {uuid, sessionId, type, timestamp, parentUuid, isSidechain, content,
  model, usage (the four token columns), costUsd and costComputedBy, Claude Code's flags isMeta,
  isCompactSummary, agentId (in claudeCode.fields, where a transcript import keeps them),
  contentHash (computed)}. CSV cannot carry messageData or the rest of Claude Code's line;
  toolName is derived from messageData and not kept.
Empty cells are absent fields; a cell that is not what its column holds (a date that does not
parse, a cost that is not a number) is passed on as text for validation to report exactly.

A zip with both files reads sessions first. Messages without a sessions file (a messages.csv
alone) get their sessions synthesised from a first pass over the messages (memory: one small
record per session), in the project `ImportOptions.project_path` names.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from dataport.formats.csv_format import (
    FORMULA_STARTS,
    MESSAGE_COLUMNS,
    MESSAGE_COLUMNS_V1,
    SESSION_COLUMNS,
)
from dataport.imports.limits import BadInput, Readable, issue, iter_lines, string_problem
from dataport.imports.readers.base import ImportSource, Reporter
from dataport.imports.readers.claude_transcript import project_name
from dataport.imports.readers.package import Checksums, ignored, read_manifest
from dataport.imports.readers.typed import SessionTotals, finish_message, parse_date, parse_decimal
from dataport.imports.zipsafe import GuardedMember, SafeZip, ZipMember
from dataport.models.documents import CLAUDE_CODE, COST_COMPUTED_BY
from dataport.models.imports import IssueCode, SourceFormat
from dataport.models.records import ImportRecord, Location, RecordKind
from dataport.packaging.manifest import MANIFEST_NAME

TEXT_COLUMNS: Final = frozenset({"sessionId", "projectName", "projectPath", "summary", "uuid",
                                 "parentUuid", "type", "model", "toolName", "content",
                                 "costComputedBy", "agentId"})
DATE_COLUMNS: Final = frozenset({"startedAt", "endedAt", "timestamp"})
INT_COLUMNS: Final = frozenset({"messageCount", "inputTokens", "outputTokens", "totalTokens",
                                "toolsUsed", "cacheCreationInputTokens", "cacheReadInputTokens"})
DECIMAL_COLUMNS: Final = frozenset({"totalCost", "costUsd"})
BOOL_COLUMNS: Final = frozenset({"isSidechain", "isMeta", "isCompactSummary"})
#: Claude Code's flags, kept where a transcript import keeps them (claudeCode.fields)
FLAG_COLUMNS: Final = ("isMeta", "isCompactSummary", "agentId")
KNOWN_COLUMNS: Final = frozenset(SESSION_COLUMNS) | frozenset(MESSAGE_COLUMNS)
REQUIRED: Final = {RecordKind.SESSION: ("sessionId",),
                   RecordKind.MESSAGE: ("uuid", "sessionId", "type", "timestamp")}
USAGE_COLUMNS: Final = (("inputTokens", "input_tokens"), ("outputTokens", "output_tokens"),
                        ("cacheCreationInputTokens", "cache_creation_input_tokens"),
                        ("cacheReadInputTokens", "cache_read_input_tokens"))
SESSION_FIELDS: Final = ("sessionId", "startedAt", "endedAt", "messageCount", "totalCost",
                         "inputTokens", "outputTokens", "totalTokens", "toolsUsed", "summary")
DEFAULT_PROJECT = "imported"
_INTEGER = re.compile(r"[+-]?\d+")
_ABSENT = object()
BOM = "\ufeff"


def unquote(text: str) -> str:
    """Undo csv_format.text_cell: one leading `'` before a formula character goes."""
    if len(text) >= 2 and text[0] == "'" and text[1] in FORMULA_STARTS:
        return text[1:]
    return text


def cell_value(column: str, text: str, *, dataport: bool) -> Any:
    """A cell as the type its column holds (see the module docstring); _ABSENT when empty."""
    if column in TEXT_COLUMNS:
        text = unquote(text) if dataport else text
        if text == "":
            return None if column == "parentUuid" else ("" if column == "content" else _ABSENT)
        return text
    if text.strip() == "":
        return _ABSENT
    if column in DATE_COLUMNS:
        return parse_date(text) or text
    if column in INT_COLUMNS:
        return int(text) if _INTEGER.fullmatch(text.strip()) else text
    if column in DECIMAL_COLUMNS:
        number = parse_decimal(text)
        return number if number is not None else text
    if column in BOOL_COLUMNS:
        lowered = text.strip().lower()
        return {"true": True, "false": False}.get(lowered, text)
    return text


@dataclass
class Table:
    """One CSV file's header, understood: what it holds and where each of our columns is."""

    name: str
    kind: RecordKind
    columns: dict[str, int]  # our column -> index in the row
    width: int
    dataport: bool
    member: ZipMember | None = None


def understand_header(header: list[str], *, name: str,
                      mapping: dict[str, str] | None) -> Table:
    """Which of our columns a header provides, through the mapping; BadInput when the file
    cannot be a sessions or messages table."""
    if header and header[0].startswith(BOM):
        header = [header[0][len(BOM):], *header[1:]]
    mapping = mapping or {}
    unknown = sorted(set(mapping) - KNOWN_COLUMNS)
    if unknown:
        raise BadInput.of(IssueCode.INVALID_FIELD_MAPPING,
                          f"field_mapping names {', '.join(unknown)}, which are not columns "
                          f"dataport reads (sessions: {', '.join(SESSION_COLUMNS)}; messages: "
                          f"{', '.join(MESSAGE_COLUMNS)})", file=name, line=1)
    position = {column: index for index, column in enumerate(header)}
    missing = sorted(source for source in mapping.values() if source not in position)
    if missing:
        raise BadInput.of(IssueCode.MISSING_COLUMN,
                          f"{name} has no column {', '.join(map(repr, missing))} "
                          "(named in field_mapping)", file=name, line=1)
    columns: dict[str, int] = {}
    for target in KNOWN_COLUMNS:
        source = mapping.get(target, target)
        if source in position:
            columns[target] = position[source]
    kind = (RecordKind.MESSAGE if "uuid" in columns
            else RecordKind.SESSION if "sessionId" in columns else None)
    if kind is None:
        raise BadInput.of(IssueCode.CONTENT_MISMATCH,
                          f"{name} is not a sessions or messages table: its header has neither "
                          "`uuid` nor `sessionId` (map your columns with field_mapping)",
                          file=name, line=1)
    lacking = [column for column in REQUIRED[kind] if column not in columns]
    if lacking:
        raise BadInput.of(IssueCode.MISSING_COLUMN,
                          f"{name} has no {', '.join(lacking)} column, which "
                          f"{kind.value}s need", file=name, line=1, field=lacking[0])
    ours = tuple(header) in {SESSION_COLUMNS, MESSAGE_COLUMNS, MESSAGE_COLUMNS_V1}
    return Table(name, kind, columns, len(header), dataport=ours and not mapping)


class CsvSource(ImportSource):
    format = SourceFormat.CSV
    session_grouped = False  # rows in any order

    def _records(self, reporter: Reporter) -> Iterator[ImportRecord]:
        csv.field_size_limit(max(csv.field_size_limit(), self.limits.max_string_bytes))
        if not self.zipped:
            table = self._table(None, None)
            tables = [table]
            yield from self._tables(None, tables, reporter, Checksums(None))
            return
        with self.archive() as archive:
            checksums = Checksums(read_manifest(archive))
            tables = []
            for member in sorted(archive.members, key=lambda m: m.name):
                if member.name.lower().endswith(".csv"):
                    tables.append(self._table(archive, member))
                elif member.name != MANIFEST_NAME:
                    ignored(member, reporter)
            yield from self._tables(archive, tables, reporter, checksums)
            checksums.missing((m.name for m in archive.members), reporter)

    def _tables(self, archive: SafeZip | None, tables: list[Table], reporter: Reporter,
                checksums: Checksums) -> Iterator[ImportRecord]:
        sessions = [t for t in tables if t.kind is RecordKind.SESSION]
        messages = [t for t in tables if t.kind is RecordKind.MESSAGE]
        last_project: object = _ABSENT
        for table in sessions:
            for number, row in self._rows(archive, table, reporter, checksums):
                project = self._project(table, row, reporter, number)
                if project["path"] != last_project:
                    last_project = project["path"]
                    yield ImportRecord(RecordKind.PROJECT, project, Location(table.name, number))
                session: dict[str, Any] = {name: row[name] for name in SESSION_FIELDS
                                           if name in row}
                yield ImportRecord(RecordKind.SESSION, session, Location(table.name, number))
        if messages and not sessions:
            yield from self._synthesised(archive, messages, reporter)
        for table in messages:
            for number, row in self._rows(archive, table, reporter, checksums):
                yield ImportRecord(RecordKind.MESSAGE, self._message(row),
                                   Location(table.name, number))

    def _synthesised(self, archive: SafeZip | None, tables: list[Table],
                     reporter: Reporter) -> Iterator[ImportRecord]:
        """A first pass over messages-only tables: their sessions, in one project."""
        quiet = Reporter.quiet()
        totals: dict[str, SessionTotals] = {}
        for table in tables:
            for _, row in self._rows(archive, table, quiet, Checksums(None)):
                session_id = row.get("sessionId")
                if isinstance(session_id, str):
                    totals.setdefault(session_id, SessionTotals(session_id)).add(
                        self._message(row))
        if not totals:
            return
        path = self.options.project_path
        if not path:
            path = DEFAULT_PROJECT
            reporter.warning(issue(
                IssueCode.PROJECT_PATH_GUESSED,
                f"{tables[0].name} does not say which project its sessions belong to; they go "
                f"to the project {DEFAULT_PROJECT!r} (set project_path to choose one)",
                file=tables[0].name, severity="warning"))
        yield ImportRecord(RecordKind.PROJECT, {"name": project_name(path), "path": path},
                           Location(tables[0].name))
        for session in totals.values():
            yield ImportRecord(RecordKind.SESSION, session.document(), Location(tables[0].name))

    def _project(self, table: Table, row: dict[str, Any], reporter: Reporter,
                 number: int) -> dict[str, Any]:
        path = row.get("projectPath") or self.options.project_path
        name = row.get("projectName")
        if not isinstance(path, str) or not path:
            path = name if isinstance(name, str) and name else DEFAULT_PROJECT
            reporter.warning(issue(
                IssueCode.PROJECT_PATH_GUESSED,
                f"row {number} has no projectPath; its session goes to the project {path!r}",
                file=table.name, line=number, field="projectPath", severity="warning"))
        if not isinstance(name, str) or not name:
            name = project_name(path)
        return {"name": name, "path": path}

    @staticmethod
    def _message(row: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name in ("uuid", "sessionId", "type", "timestamp", "parentUuid", "isSidechain",
                     "content", "model"):
            if name in row:
                doc[name] = row[name]
        usage = {key: row[column] for column, key in USAGE_COLUMNS if column in row}
        if usage:
            doc["usage"] = usage
        if "costUsd" in row:
            doc["costUsd"] = row["costUsd"]
            if "costComputedBy" in row:
                doc[COST_COMPUTED_BY] = row["costComputedBy"]
        flags = {name: row[name] for name in FLAG_COLUMNS if name in row}
        if flags:
            doc[CLAUDE_CODE] = {"fields": flags}
        return finish_message(doc)

    # --- reading a table ----------------------------------------------------------------------

    def _open(self, archive: SafeZip | None, member: ZipMember | None) -> Any:
        if archive is None or member is None:
            return self.stream()
        return archive.open(member)

    def _table(self, archive: SafeZip | None, member: ZipMember | None) -> Table:
        name = member.name if member else self.filename
        with self._open(archive, member) as stream:
            for _, row in self._raw_rows(stream, name):
                table = understand_header(row, name=name, mapping=self.options.field_mapping)
                table.member = member
                return table
        raise BadInput.of(IssueCode.EMPTY_FILE, f"{name} has no header row", file=name)

    def _text_lines(self, stream: Readable, name: str) -> Iterator[str]:
        for number, data in iter_lines(stream, self.limits.max_line_bytes, keep_ends=True):
            if data is None:
                raise BadInput.of(IssueCode.LINE_TOO_LONG,
                                  f"line {number} is longer than the limit of "
                                  f"{self.limits.max_line_bytes} bytes", file=name, line=number)
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInput.of(IssueCode.INVALID_UTF8,
                                  f"line {number} is not valid UTF-8 (byte {exc.start + 1} of "
                                  "the line)", file=name, line=number) from None

    def _raw_rows(self, stream: Readable, name: str) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(self._text_lines(stream, name), strict=True)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if "field limit" in str(exc):
                    raise BadInput.of(IssueCode.STRING_TOO_LONG,
                                      f"a cell of the row starting on line {start} is longer "
                                      f"than the limit of {self.limits.max_string_bytes} bytes",
                                      file=name, line=start) from None
                raise BadInput.of(IssueCode.INVALID_RECORD,
                                  f"the CSV row starting on line {start} is malformed ({exc})",
                                  file=name, line=start) from None
            if row:
                yield start, row

    def _rows(self, archive: SafeZip | None, table: Table, reporter: Reporter,
              checksums: Checksums) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line, {our column: typed value}) for each data row of a table."""
        with self._open(archive, table.member) as stream:
            rows = self._raw_rows(stream, table.name)
            next(rows, None)  # the header
            for number, row in rows:
                if len(row) != table.width:
                    reporter.error(issue(IssueCode.INVALID_RECORD,
                                         f"line {number} has {len(row)} cells, the header "
                                         f"{table.width}", file=table.name, line=number))
                    continue
                values: dict[str, Any] = {}
                for column, index in table.columns.items():
                    found = string_problem(row[index], self.limits)
                    if found:
                        reporter.error(issue(found[0], f"line {number}: {column}: {found[1]}",
                                             file=table.name, line=number, field=column))
                        break
                    value = cell_value(column, row[index], dataport=table.dataport)
                    if value is not _ABSENT:
                        values[column] = value
                else:
                    yield number, values
            if isinstance(stream, GuardedMember):
                checksums.check(stream, reporter)
