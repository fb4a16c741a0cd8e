"""dataport JSON packages: `conversations-NNNN.json` and `projects.json` (formats/json_format.py),
zipped with their manifest or one file on its own. The lossless source: every document comes
back field for field and type for type, `_id`s included.

The files are streamed with ijson's basic events; only one record (a message, a session's own
fields, a project) is ever built, with the nesting, string and integer limits checked as its
events arrive, then turned into BSON types by bson.json_util's own object hook (canonical
Extended JSON, as formats/common.canonical_json wrote it). Plain JSON numbers, which a person
editing a file may write, become floats, except money fields, which stay exact. Messages in the
writer's own layout are parsed by orjson instead (readers/json_layout.py: same records, same
problems); ijson then sees a placeholder for each.

A session continued in the next file (or the next part of a file) is yielded again in every
entry with its messages after it (see readers/base.py for the order every reader keeps); the
session fields are the same in every entry. A session entry must list `messages` last, as the
writer does, because its messages are yielded while they stream.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ijson

from dataport.formats.json_format import CONVERSATIONS_FORMAT, FORMAT_VERSION, PROJECTS_FORMAT
from dataport.imports.limits import (
    INT64_MAX,
    INT64_MIN,
    BadInput,
    ImportLimits,
    Readable,
    field_of,
    integer_problem,
    issue,
    key_problem,
    short_path,
    string_problem,
)
from dataport.imports.readers.base import ImportSource, Reporter
from dataport.imports.readers.json_layout import LayoutStream, extended
from dataport.imports.readers.package import Checksums, ignored, read_manifest
from dataport.imports.readers.typed import MONEY_KEYS, coerce, finish_message
from dataport.imports.zipsafe import SafeZip
from dataport.models.imports import IssueCode, SourceFormat
from dataport.models.records import ImportRecord, Location, RecordKind
from dataport.packaging.manifest import MANIFEST_NAME

CONVERSATIONS_FILE = re.compile(r"(?:.*/)?conversations(?:-\d+)?\.json")
PROJECTS_FILE = re.compile(r"(?:.*/)?projects(?:-\d+)?\.json")
LIST_KEYS = {CONVERSATIONS_FORMAT: "sessions", PROJECTS_FORMAT: "projects"}

#: parse the writer's own layout with orjson (readers/json_layout.py); off: events only
FAST_LAYOUT = True

Event = tuple[str, Any]
_CONTAINERS = frozenset({"start_map", "start_array"})
_ENDS = frozenset({"end_map", "end_array"})
Problem = tuple[IssueCode, str, str]  # code, message, path inside the record
_MISSING = object()


def _scalar(event: str, value: Any, limits: ImportLimits, *, exact: bool,
            ) -> tuple[Any, tuple[IssueCode, str] | None]:
    if event == "string":
        return value, string_problem(value, limits)
    if event in {"number", "integer", "double"}:
        if isinstance(value, int):
            return value, integer_problem(value)
        if isinstance(value, Decimal) and not exact:
            return float(value), None
    return value, None



def _string_at(value: str, limits: ImportLimits, stack: list[Any], keys: list[str | None],
               key: str | None) -> Problem | None:
    """The problem with a long or non-ASCII string (key or value), located; None if fine."""
    found = string_problem(value, limits)
    if not found:
        return None
    keys[-1] = key
    return (found[0], found[1], _path(stack, keys))


def _path(stack: list[Any], keys: list[str | None]) -> str:
    path = "$"
    for container, key in zip(stack, keys, strict=True):
        path += f".{key}" if isinstance(container, dict) else f"[{len(container)}]"
    return path


def build(first: Event, events: Iterator[Event], limits: ImportLimits, *,  # noqa: PLR0915
          money: frozenset[str] = frozenset()) -> tuple[Any, Problem | None]:
    """One complete JSON value from its events, with the limits checked as they arrive. After
    a problem the value's remaining events are consumed but not kept (memory stays bounded and
    the stream stays in step for the next record). Top-level keys in `money` keep exact
    Decimals. (On every record's path: the common case is kept to a few operations per
    event.)"""
    event, value = first
    if event not in _CONTAINERS:
        item, found = _scalar(event, value, limits, exact=False)
        return (None, (found[0], found[1], "$")) if found else (item, None)
    root: Any = {} if event == "start_map" else []
    stack: list[Any] = [root]
    keys: list[str | None] = [None]
    container: Any = root
    key: str | None = None
    quarter = limits.max_string_bytes // 4
    max_depth = limits.max_nesting_depth
    problem: Problem | None = None
    for event, raw in events:
        value = raw
        if problem is not None:  # skip to the end of the value
            if event in _CONTAINERS:
                stack.append(None)
            elif event in _ENDS:
                stack.pop()
                if not stack:
                    return None, problem
            continue
        if event == "map_key":
            key = value
            if key in container:
                keys[-1] = key
                problem = (IssueCode.DUPLICATE_KEY,
                           f"the key {key[:60]!r} appears more than once in one object",
                           _path(stack, keys))
            elif not (len(value) <= quarter and value.isascii()) or "\x00" in value:
                found = key_problem(value, limits)
                if found:
                    keys[-1] = key
                    problem = (found[0], found[1], _path(stack, keys))
            continue
        if event == "string":
            if not (len(value) <= quarter and value.isascii()):
                problem = _string_at(value, limits, stack, keys, key)
                if problem:
                    continue
        elif event == "number":
            if type(value) is int:
                if not INT64_MIN <= value <= INT64_MAX:
                    keys[-1] = key
                    found = integer_problem(value)
                    assert found is not None
                    problem = (found[0], found[1], _path(stack, keys))
                    continue
            elif not (len(stack) == 1 and key in money):
                value = float(raw)
        elif event in _ENDS:
            stack.pop()
            keys.pop()
            if not stack:
                return root, None
            container = stack[-1]
            key = keys[-1]
            continue
        elif event in _CONTAINERS:
            if len(stack) >= max_depth:
                keys[-1] = key
                problem = (IssueCode.NESTING_TOO_DEEP,
                           f"objects and arrays nest deeper than {max_depth} levels",
                           _path(stack, keys))
                stack.append(None)
                continue
            child: Any = {} if event == "start_map" else []
            if type(container) is dict:
                container[key] = child
            else:
                container.append(child)
            keys[-1] = key
            stack.append(child)
            keys.append(None)
            container, key = child, None
            continue
        elif event == "integer":
            found = integer_problem(value)
            if found:
                keys[-1] = key
                problem = (found[0], found[1], _path(stack, keys))
                continue
        if type(container) is dict:
            container[key] = value
        else:
            container.append(value)
    return (None, problem) if problem else (root, None)


def skip(first: Event, events: Iterator[Event]) -> None:
    """Consume one JSON value's events without keeping any of it."""
    if first[0] not in _CONTAINERS:
        return
    depth = 1
    for event, _ in events:
        if event in _CONTAINERS:
            depth += 1
        elif event in _ENDS:
            depth -= 1
            if depth == 0:
                return


def _classify(exc: Exception) -> tuple[IssueCode, str]:
    # yajl says what is wrong on the first line, then shows the bytes around it (as bytes when
    # they are not UTF-8): only the first line is the message, whatever the neighbours are
    text = exc.args[0] if exc.args else ""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(exc)
    if isinstance(exc, UnicodeDecodeError) or "UTF8" in text or "UTF-8" in text:
        return IssueCode.INVALID_UTF8, "the file is not valid UTF-8"
    if "premature EOF" in text:
        return IssueCode.TRUNCATED_JSON, "the JSON ends too early: the file is truncated"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return IssueCode.INVALID_JSON, f"the file is not valid JSON ({first[:120]})"


@dataclass
class ProjectCursor:
    """Which project was yielded last, across the files of one pass (see readers/base.py)."""

    last: object = _MISSING


def _project_key(doc: dict[str, Any]) -> object:
    return doc.get("_id") if doc.get("_id") is not None else ("path", doc.get("path"))


class DocumentReader:
    """One dataport JSON document (conversations or projects), streamed into records."""

    def __init__(self, stream: Readable, *, file: str, limits: ImportLimits,
                 reporter: Reporter, cursor: ProjectCursor,
                 expect: str | None = None) -> None:
        self.stream = stream
        self.file = file
        self.limits = limits
        self.reporter = reporter
        self.cursor = cursor
        self.expect = expect
        self.path = "$"
        self.header: dict[str, Any] = {}
        #: the fast path's messages (readers/json_layout.py), met as `placeholder` strings
        self.parsed: deque[dict[str, Any]] = deque()
        self.placeholder: str | None = None

    def records(self) -> Iterator[ImportRecord]:
        stream = self.stream
        if FAST_LAYOUT:
            stream = layout = LayoutStream(self.stream, self.limits)
            self.parsed, self.placeholder = layout.parsed, layout.placeholder
        try:
            events: Iterator[Event] = iter(ijson.basic_parse(stream, use_float=False))
            yield from self._document(events)
            for _ in events:  # the rest of the file (yajl reports anything after the document)
                pass
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            code, message = _classify(exc)
            raise BadInput.of(code, f"{self.file}: {message} (near {self.path})",
                              file=self.file, path=self.path) from None
        except StopIteration:
            raise BadInput.of(IssueCode.TRUNCATED_JSON,
                              f"{self.file}: the JSON ends too early (near {self.path})",
                              file=self.file, path=self.path) from None

    def _error(self, code: IssueCode, message: str, *, path: str | None = None,
               field: str | None = None) -> None:
        self.reporter.error(issue(code, message, file=self.file, path=path or self.path,
                                  field=field))

    def _problem(self, problem: Problem, base: str) -> None:
        code, message, inner = problem
        path = base + inner[1:]
        self._error(code, f"{short_path(path)}: {message}", path=path, field=field_of(inner))

    def _document(self, events: Iterator[Event]) -> Iterator[ImportRecord]:
        event, _ = next(events)
        if event != "start_map":
            raise BadInput.of(IssueCode.CONTENT_MISMATCH,
                              f"{self.file} is not a dataport JSON document (it does not start "
                              "with an object)", file=self.file, path="$")
        listed = False
        seen: set[str] = set()
        for event, key in events:
            if event == "end_map":
                break
            value_event = next(events)
            if key in seen:
                raise BadInput.of(IssueCode.DUPLICATE_KEY,
                                  f"{self.file}: the key {key[:60]!r} appears more than once in "
                                  "the document", file=self.file, path=f"$.{key}", field=key)
            seen.add(key)
            list_key = LIST_KEYS.get(str(self.header.get("format")))
            if key in LIST_KEYS.values():
                self._check_header(key)
                if value_event[0] == "start_array" and key == list_key:
                    listed = True
                    if key == "sessions":
                        yield from self._sessions(events)
                    else:
                        yield from self._projects(events)
                    continue
            self.path = f"$.{key}"
            value, problem = build(value_event, events, self.limits)
            if problem:
                self._problem(problem, self.path)
            self.header[key] = value
        self.path = "$"
        if not listed:
            self._check_header(None)
            raise BadInput.of(IssueCode.INVALID_RECORD,
                              f"{self.file} has no `{LIST_KEYS[self.header['format']]}` list",
                              file=self.file, path="$")

    def _check_header(self, key: str | None) -> None:
        """The envelope before the list: our format, a version we read."""
        fmt = self.header.get("format")
        if fmt not in LIST_KEYS or (self.expect is not None and fmt != self.expect):
            wanted = self.expect or CONVERSATIONS_FORMAT
            raise BadInput.of(IssueCode.CONTENT_MISMATCH,
                              f"{self.file} is not a {wanted} document (format: {fmt!r})",
                              file=self.file, path="$.format", field="format")
        if key is not None and key != LIST_KEYS[fmt]:
            raise BadInput.of(IssueCode.INVALID_RECORD,
                              f"a {fmt} document lists `{LIST_KEYS[fmt]}`, not `{key}`",
                              file=self.file, path=f"$.{key}", field=key)
        version = self.header.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or not (
                1 <= version <= FORMAT_VERSION):
            raise BadInput.of(IssueCode.UNSUPPORTED_VERSION,
                              f"{self.file} is version {version!r} of {fmt}; this dataport "
                              f"reads versions 1 to {FORMAT_VERSION}",
                              file=self.file, path="$.version", field="version")

    def _typed(self, kind: RecordKind, raw: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self._error(IssueCode.INVALID_RECORD,
                        f"{path}: a {kind.value} must be a JSON object", path=path)
            return None
        doc: dict[str, Any] = {}
        ok = True
        for key, value in raw.items():
            try:
                doc[key] = extended(value)
            except Exception as exc:  # json_util raises many types for bad Extended JSON
                date = isinstance(value, dict) and "$date" in value
                self._error(IssueCode.INVALID_DATE if date else IssueCode.INVALID_EXTENDED_JSON,
                            f"{path}: {key}: {'not a date' if date else 'invalid Extended JSON'}"
                            f" ({type(exc).__name__}: {str(exc)[:120]})", path=path, field=key)
                ok = False
        return coerce(kind, doc) if ok else None

    def _project_record(self, doc: dict[str, Any], path: str) -> Iterator[ImportRecord]:
        key = _project_key(doc)
        if key != self.cursor.last:
            self.cursor.last = key
            yield ImportRecord(RecordKind.PROJECT, doc, Location(self.file, path=path))

    def _projects(self, events: Iterator[Event]) -> Iterator[ImportRecord]:
        index = -1
        for event in events:
            if event[0] == "end_array":
                return
            index += 1
            self.path = f"$.projects[{index}]"
            raw, problem = build(event, events, self.limits)
            if problem:
                self._problem(problem, self.path)
                continue
            doc = self._typed(RecordKind.PROJECT, raw, self.path)
            if doc is not None:
                self.cursor.last = _project_key(doc)
                yield ImportRecord(RecordKind.PROJECT, doc, Location(self.file, path=self.path))

    def _sessions(self, events: Iterator[Event]) -> Iterator[ImportRecord]:
        index = -1
        for event in events:
            if event[0] == "end_array":
                return
            index += 1
            base = self.path = f"$.sessions[{index}]"
            if event[0] != "start_map":
                build(event, events, self.limits)
                self._error(IssueCode.INVALID_RECORD, f"{base}: a session entry must be an "
                                                      "object")
                continue
            fields: dict[str, Any] = {}
            project: Any = _MISSING
            usable = True
            emitted = False
            seen: set[str] = set()
            for entry_event, key in events:
                if entry_event == "end_map":
                    break
                value_event = next(events)
                self.path = f"{base}.{key}"
                if key in seen:
                    self._error(IssueCode.DUPLICATE_KEY, f"{self.path}: the key {key[:60]!r} "
                                "appears more than once in the session entry", field=key)
                    usable = False
                    self._skip(value_event, events)
                    continue
                seen.add(key)
                if key == "messages" and value_event[0] == "start_array":
                    if not emitted:
                        usable = yield from self._entry(fields, project, base, usable)
                        emitted = True
                    yield from self._messages(events, base, usable)
                    continue
                value, problem = build(value_event, events, self.limits,
                                       money=frozenset() if key == "project" else MONEY_KEYS)
                if problem:
                    self._problem(problem, self.path)
                    usable = False
                elif emitted:
                    self._error(IssueCode.INVALID_RECORD,
                                f"{self.path}: session fields must come before `messages`",
                                field=key)
                elif key == "project":
                    project = value
                elif key == "messages":
                    self._error(IssueCode.WRONG_TYPE, f"{self.path}: `messages` must be a list",
                                field="messages")
                    usable = False
                else:
                    fields[key] = value
            if not emitted:
                yield from self._entry(fields, project, base, usable)

    def _skip(self, first: Event, events: Iterator[Event]) -> None:
        """`skip`, dropping the fast path's messages of what is skipped (a placeholder is only
        ever an element of a messages list: one level down)."""
        if first[0] != "start_array" or self.placeholder is None:
            skip(first, events)
            return
        depth = 1
        for event in events:
            if event[0] in _CONTAINERS:
                depth += 1
            elif event[0] in _ENDS:
                depth -= 1
                if depth == 0:
                    return
            elif depth == 1 and event[1] == self.placeholder and event[0] == "string":
                self.parsed.popleft()

    def _entry(self, fields: dict[str, Any], project: Any, base: str,
               usable: bool) -> Generator[ImportRecord, None, bool]:
        """The project (when it changes) and the session of an entry; False when the entry is
        unusable, so its messages are not yielded as orphans of a session that is not there."""
        if not usable:
            return False
        if project is _MISSING:
            self._error(IssueCode.MISSING_FIELD,
                        f"{base}: the session entry has no `project`", path=base,
                        field="project")
            return False
        project_doc = self._typed(RecordKind.PROJECT, project, f"{base}.project")
        session = self._typed(RecordKind.SESSION, fields, base)
        if project_doc is None or session is None:
            return False
        if ("projectId" in session and "_id" in project_doc
                and session["projectId"] != project_doc["_id"]):
            self._error(IssueCode.SESSION_PROJECT_CONFLICT,
                        f"{base}: projectId {session['projectId']} is not the entry's project "
                        f"{project_doc['_id']}", path=base, field="projectId")
            return False
        yield from self._project_record(project_doc, f"{base}.project")
        yield ImportRecord(RecordKind.SESSION, session, Location(self.file, path=base))
        return True

    def _messages(self, events: Iterator[Event], base: str,
                  usable: bool) -> Iterator[ImportRecord]:
        index = -1
        for event in events:
            if event[0] == "end_array":
                return
            index += 1
            self.path = f"{base}.messages[{index}]"
            if event[1] == self.placeholder and event[0] == "string":
                parsed = self.parsed.popleft()  # clean: already parsed and converted
                if usable:
                    yield ImportRecord(RecordKind.MESSAGE,
                                       finish_message(coerce(RecordKind.MESSAGE, parsed)),
                                       Location(self.file, path=self.path))
                continue
            raw, problem = build(event, events, self.limits, money=MONEY_KEYS)
            if problem:
                self._problem(problem, self.path)
                continue
            if not usable:
                continue
            doc = self._typed(RecordKind.MESSAGE, raw, self.path)
            if doc is not None:
                yield ImportRecord(RecordKind.MESSAGE, finish_message(doc),
                                   Location(self.file, path=self.path))


def read_projects(archive: SafeZip, names: list[str], *, limits: ImportLimits,
                  reporter: Reporter, checksums: Checksums,
                  cursor: ProjectCursor | None = None) -> Iterator[ImportRecord]:
    """The PROJECT records of a package's projects.json (or its parts)."""
    cursor = cursor or ProjectCursor()
    for member in archive.members:
        if member.name in names:
            with archive.open(member) as reader:
                yield from DocumentReader(reader, file=member.name, limits=limits,
                                          reporter=reporter, cursor=cursor,
                                          expect=PROJECTS_FORMAT).records()
                checksums.check(reader, reporter)


class DataportJsonSource(ImportSource):
    """A dataport JSON package (zip) or one of its files (see the module docstring)."""

    format = SourceFormat.DATAPORT_JSON

    @property
    def read_again_cheaply(self) -> bool:
        """dataport's own layout is read a line at a time by orjson (readers.json_layout), for
        little more than decoding checked records costs (a file in another layout takes the
        event path, both times); an encrypted zip is not (its members would be decrypted again,
        its password unsealed again)."""
        return self.password is None

    def _records(self, reporter: Reporter) -> Iterator[ImportRecord]:
        cursor = ProjectCursor()
        if not self.zipped:
            with self.stream() as stream:
                yield from DocumentReader(stream, file=self.filename, limits=self.limits,
                                          reporter=reporter, cursor=cursor).records()
            return
        with self.archive() as archive:
            checksums = Checksums(read_manifest(archive))
            projects = sorted(m.name for m in archive.members if PROJECTS_FILE.fullmatch(m.name))
            yield from read_projects(archive, projects, limits=self.limits, reporter=reporter,
                                     checksums=checksums, cursor=cursor)
            conversations = sorted((m for m in archive.members
                                    if CONVERSATIONS_FILE.fullmatch(m.name)), key=lambda m: m.name)
            for member in archive.members:
                if (member.name != MANIFEST_NAME and member.name not in projects
                        and not CONVERSATIONS_FILE.fullmatch(member.name)):
                    ignored(member, reporter)
            for member in conversations:
                with archive.open(member) as reader:
                    yield from DocumentReader(reader, file=member.name, limits=self.limits,
                                              reporter=reporter, cursor=cursor,
                                              expect=CONVERSATIONS_FORMAT).records()
                    checksums.check(reader, reporter)
            checksums.missing((m.name for m in archive.members), reporter)
