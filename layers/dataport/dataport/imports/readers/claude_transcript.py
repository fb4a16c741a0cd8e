"""Claude Code transcripts: one `<sessionId>.jsonl`, or a zip of a `~/.claude/projects` tree.

This is also how a dataport JSONL package is read (see dataport_jsonl.py): formats/jsonl.py
writes Claude Code's own lines, and this module is its inverse, mapping lines to documents the
way ClaudeLens ingest does (DATA-MODEL.md):

- `user` / `assistant` line -> one message document: uuid, sessionId, type, timestamp (aware
  UTC), parentUuid, isSidechain, userType, cwd, version, gitBranch, requestId, durationMs,
  toolUseResult as they are; `message` -> messageData; `costUSD` -> costUsd (Decimal128, exactly
  the digits written); assistant `message.usage` / `message.model` -> usage / model;
  thinking blocks -> thinking (joined by newlines); content = the display text: an assistant's
  text blocks joined by blank lines, a user's string, or its text blocks joined by newlines, or,
  when it holds only tool results, their text joined by newlines; contentHash computed.
- each `tool_use` block i of an assistant line -> a derived document `<uuid>_tool_<i>` (type
  tool_use, parent = the assistant, isSidechain true, messageData = the block, content =
  `<name>: <input as JSON>`); each `tool_result` block i of a user line -> `<uuid>_result_<i>`
  (type tool_result, parent = the user message, content = the result's text). Derived documents
  carry the line's time and userType/cwd/version/gitBranch, and no contentHash.
- every key of the line is kept (docs/imports.md, "where every part of a line is stored"):
  `claudeCode.keys` lists the line's keys in order, `claudeCode.fields` holds verbatim those
  DATA-MODEL.md has no field for (`isMeta`, `agentId`, `slug`, ..., keys of later versions) and
  any whose stored form would not give the same value back; a line of a sub-agent file
  (`<sessionId>/subagents/agent-<id>.jsonl`) records it in `claudeCode.file`, and every stored
  line its place among the stored lines of its file in `claudeCode.order` (the parts of a
  split file counting on), for the jsonl export to write the file in that order.
- `system` line (Claude Code's status notes: compaction boundaries, hook summaries, API errors)
  -> one message of type `system`: ids, time, thread and metadata as a user line's, its
  `content` as the display text, everything else in claudeCode.fields; kept so the parentUuid
  that names it (the compaction summary's) is not left dangling. One without a uuid, sessionId
  or timestamp is counted as skipped.
- an assistant line without `costUSD` gets `costUsd` computed from its model and usage
  (dataport.pricing) and `costComputedBy`; a model without a price leaves it out, reported as a
  `price_unknown` warning.
- `summary` lines give the session its summary (the last one of a file, for the session the file
  is named after) and are kept verbatim in the session's `claudeCode.summaries`, with each
  one's place (the number of stored lines of its file before it) in `claudeCode.summaryOrders`
  when one was not at the top; the top ones a later part of a split file repeats are read once
  (a file of summary lines only has no session to keep them: they count as skipped); every other
  type (`progress`, `file-history-snapshot`, `queue-operation`, anything new) is tolerated and
  counted in `ImportSource.skipped`, not imported (docs/imports.md says why), except the lines a
  stored line's thread runs through: a line of a skipped type whose uuid a stored line names as
  its `parentUuid` (or `logicalParentUuid`), directly or through other such lines (Claude Code
  2.1 chains hook progress into the thread), is kept as a `system` message whose line keeps its
  own type (`claudeCode.fields.type`), so the jsonl export gives back an unbroken chain; it is
  counted in `ImportSource.kept`, not in `skipped`. The folder's first pass learns which (a
  bounded memory of the last `REMEMBERED_SKIPPED` skipped lines: uuid, parent, session, time).
- a streamed reply (several lines with one `message.id`) stays one document per line (each line
  has its own uuid); the session counts its usage and cost once.

Sessions are synthesised from their messages (readers/typed.SessionTotals), which needs every
line of a session before the session record: each project folder is read twice, a first pass for
the session totals (memory: one small record per session of the folder) and a second that
yields records. Lines are read one at a time, bounded by `max_line_bytes`.

The project of a folder is the path Claude Code encoded in its name: the lines' cwd (or a parent
of it) that encodes to the folder name; a folder name alone is decoded with a warning (its
dashes are ambiguous); a single file takes its project from the lines' cwd.
"""

from __future__ import annotations

import json
import re
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

from bson.decimal128 import Decimal128

from dataport.formats.common import iso_ms, text_of
from dataport.formats.jsonl import project_dir
from dataport.imports.limits import (
    DuplicateKey,
    ImportLimits,
    Readable,
    field_of,
    issue,
    iter_lines,
    loads_unique,
    scan,
    short_path,
)
from dataport.imports.readers.base import ImportSource, Reporter
from dataport.imports.readers.package import Checksums, ignored, is_noise, read_manifest
from dataport.imports.readers.typed import SessionTotals, coerce, finish_message
from dataport.imports.zipsafe import GuardedMember, SafeZip, ZipMember
from dataport.models.documents import CLAUDE_CODE, COST_COMPUTED_BY, SYSTEM_TYPE, strip_derived
from dataport.models.imports import IssueCode, SourceFormat
from dataport.models.records import ImportRecord, Location, RecordKind
from dataport.packaging.manifest import MANIFEST_NAME
from dataport.pricing import PRICE_SOURCE, PriceUnknown, reply_cost

MESSAGE_LINES = ("user", "assistant")
#: what a system line needs to be stored (one without them is counted as skipped)
SYSTEM_IDS = ("uuid", "sessionId", "timestamp")
META = ("userType", "cwd", "version", "gitBranch")
#: line keys stored in a message field of their own; every other key is kept in claudeCode.fields
MAPPED_KEYS = frozenset({"uuid", "sessionId", "type", "timestamp", "parentUuid", "isSidechain",
                         *META, "requestId", "durationMs", "toolUseResult", "message", "costUSD",
                         "content"})
#: the folder of a session's sub-agent files, next to its main file
SUBAGENTS = "subagents"
#: the keys by which a line names the line before it in its thread (Claude Code's resume walks
#: parentUuid from the leaf; logicalParentUuid bridges a compaction)
THREAD_KEYS = ("parentUuid", "logicalParentUuid")
#: skipped lines remembered per folder by the first pass (uuid, parent, session, time: about
#: 550 bytes each, 9 MB in all), for a later stored line to name; an older one stays skipped
REMEMBERED_SKIPPED = 16_384
_PART = re.compile(r"(?P<stem>.+)-\d{4}")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
#: distinct cwds remembered per folder to find the project path
_MAX_CWDS = 32
_MISSING = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_line(data: bytes, *, file: str, line: int, limits: ImportLimits,
              reporter: Reporter) -> dict[str, Any] | None:
    """One line as a JSON object, checked against the limits; None (reported) when it is not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reporter.error(issue(IssueCode.INVALID_UTF8,
                             f"line {line} is not valid UTF-8 (byte {exc.start + 1} of the line)",
                             file=file, line=line))
        return None
    if not text.strip():
        return None
    try:
        value = loads_unique(text, parse_float=Decimal, parse_constant=_reject_constant)
    except DuplicateKey as exc:
        reporter.error(issue(IssueCode.DUPLICATE_KEY,
                             f"line {line}: {exc} (at {short_path(exc.path)})", path=exc.path,
                             field=field_of(exc.path), file=file, line=line))
        return None
    except RecursionError:
        reporter.error(issue(IssueCode.NESTING_TOO_DEEP,
                             f"line {line} nests deeper than {limits.max_nesting_depth} levels",
                             file=file, line=line))
        return None
    except ValueError as exc:
        detail = (f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError)
                  else str(exc))
        reporter.error(issue(IssueCode.INVALID_JSON, f"line {line} is not JSON: {detail}",
                             file=file, line=line))
        return None
    if not isinstance(value, dict):
        reporter.error(issue(IssueCode.INVALID_RECORD,
                             f"line {line} is a JSON {type(value).__name__}, not an object",
                             file=file, line=line))
        return None
    order = list(value) if "costUSD" in value else None
    money = value.pop("costUSD", _MISSING)  # the one number that must stay exact
    problem = scan(value, limits, decimals_to_float=True)
    if problem is None and money is not _MISSING:
        problem = scan(money, limits)
        value["costUSD"] = money
        if order is not None:  # back in its place: the line's key order is kept (claudeCode)
            value = {name: value[name] for name in order}
    if problem is not None:
        code, message, path = problem
        reporter.error(issue(code, f"line {line}: {message} (at {short_path(path)})", path=path,
                             field=field_of(path), file=file, line=line))
        return None
    return value


def _blocks(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = body.get("content")
    return ([b for b in content if isinstance(b, Mapping)] if isinstance(content, list)
            else [])


def _display_text(kind: str, body: Mapping[str, Any]) -> str:
    content = body.get("content")
    if isinstance(content, str):
        return content
    blocks = _blocks(body)
    texts = [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]
    if kind == "assistant":
        return "\n\n".join(texts)
    if texts:
        return "\n".join(texts)
    return "\n".join(text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result")


def _tool_use_text(block: Mapping[str, Any]) -> str:
    arguments = json.dumps(block.get("input"), ensure_ascii=False)
    return f"{block.get('name')}: {arguments}"


def _reproduced(name: str, value: Any, doc: Mapping[str, Any]) -> bool:
    """True when the jsonl export gives back exactly `value` for the mapped line key `name`
    from the stored message `doc` (formats/jsonl.py, `line_of`)."""
    if name == "message":
        return value is doc.get("messageData")
    if name == "timestamp":
        return isinstance(value, str) and iso_ms(doc.get("timestamp")) == value
    if name == "costUSD":
        stored = doc.get("costUsd")
        return (isinstance(value, Decimal | int) and not isinstance(value, bool)
                and isinstance(stored, Decimal128) and stored.to_decimal() == value)
    if name == "parentUuid":
        return value is None or (isinstance(value, str) and strip_derived(value) == value)
    if name == "isSidechain":
        return isinstance(value, bool)
    return value is not None and doc.get(name) is value


def line_keys(record: Mapping[str, Any], doc: Mapping[str, Any],
              file: str | None = None, order: int | None = None) -> dict[str, Any]:
    """`claudeCode` of a message: the line's keys in order, verbatim every value the stored
    fields would not give back, the sub-agent file the line came from, and the line's place
    among the stored lines of its file (`order`, from 0)."""
    fields = {name: value for name, value in record.items()
              if name not in MAPPED_KEYS or not _reproduced(name, value, doc)}
    kept: dict[str, Any] = {"keys": list(record), "fields": fields}
    if file:
        kept["file"] = file
    if order is not None:
        kept["order"] = order
    return kept


def storable_system_line(record: Mapping[str, Any]) -> bool:
    """A system line can be a message: it names itself, its session and its time (strings)."""
    return all(isinstance(record.get(name), str) and record[name] for name in SYSTEM_IDS)


def system_document(record: Mapping[str, Any], *, hashed: bool = True, file: str | None = None,
                    order: int | None = None) -> dict[str, Any]:
    """The message of a `system` line: its ids, time, thread and Claude Code's metadata as a
    user line's are, its `content` (the note's text) as the display text; everything else
    (subtype, level, compactMetadata, logicalParentUuid, ...) verbatim in claudeCode.fields.
    A line of a skipped type kept for the thread (a `progress` line a message names as its
    parent) is stored the same way as a `system` message; its own `type` is then kept in
    claudeCode.fields (the stored one would not give it back) and its display text says what
    it was (`thread_line_text`)."""
    doc: dict[str, Any] = {name: record[name] for name in ("uuid", "sessionId")}
    # a system line's own value, so claudeCode need not repeat it; another type is kept there
    doc["type"] = record["type"] if record["type"] == SYSTEM_TYPE else SYSTEM_TYPE
    doc["timestamp"] = record["timestamp"]
    doc["parentUuid"] = record.get("parentUuid")
    doc["isSidechain"] = record.get("isSidechain", False)
    doc.update({name: record[name] for name in META if record.get(name) is not None})
    if isinstance(record.get("content"), str):
        doc["content"] = record["content"]
    elif record.get("type") != SYSTEM_TYPE:
        doc["content"] = thread_line_text(record)
    coerce(RecordKind.MESSAGE, doc)
    doc[CLAUDE_CODE] = line_keys(record, doc, file, order)
    if hashed:
        finish_message(doc)
    return doc


def thread_line_text(record: Mapping[str, Any]) -> str:
    """The display text of a skipped-type line kept for the thread: its type and what its
    `data` says it is (`progress · hook_progress · SessionStart:startup`)."""
    data = record.get("data")
    parts = [str(record.get("type"))]
    if isinstance(data, Mapping):
        parts += [str(data[name]) for name in ("type", "hookName")
                  if isinstance(data.get(name), str)]
    return " · ".join(parts)


def _price(doc: dict[str, Any], body: Mapping[str, Any]) -> None:
    """costUsd computed from the reply's model and usage; left out when it cannot be priced
    (`_lines` reports that)."""
    moment = doc.get("timestamp")
    try:
        cost = reply_cost(body, moment if isinstance(moment, datetime) else None)
    except PriceUnknown:
        return
    if cost is not None:
        doc["costUsd"] = Decimal128(cost)
        doc[COST_COMPUTED_BY] = PRICE_SOURCE


def unpriced(doc: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """Why an assistant line is left without a cost (None when it has one or needs none)."""
    if doc.get("type") != "assistant" or "costUsd" in doc or "costUSD" in record:
        return None
    body = record.get("message")
    if not isinstance(body, Mapping):
        return None
    try:
        reply_cost(body, None)
    except PriceUnknown as exc:
        return str(exc)
    return None


def message_documents(record: Mapping[str, Any], *, hashed: bool = True, priced: bool = True,
                      file: str | None = None, order: int | None = None,
                      ) -> list[tuple[dict[str, Any], str | None]]:
    """The documents of one user/assistant line (see the module docstring), typed, each with
    the JSON path of the content block a derived document comes from (None for the message).
    `hashed=False` leaves contentHash out (the session totals pass does not need it);
    `priced=False` computes no cost. `file`: where a sub-agent line's file lies relative to
    its session's folder; `order`: the line's place among the stored lines of its file."""
    kind = str(record.get("type"))
    body = record.get("message")
    doc: dict[str, Any] = {}
    for name in ("uuid", "sessionId"):
        if name in record:
            doc[name] = record[name]
    doc["type"] = kind
    if "timestamp" in record:
        doc["timestamp"] = record["timestamp"]
    doc["parentUuid"] = record.get("parentUuid")
    doc["isSidechain"] = record.get("isSidechain", False)
    meta = {name: record[name] for name in META if record.get(name) is not None}
    doc.update(meta)
    blocks: list[Mapping[str, Any]] = []
    if isinstance(body, Mapping):
        blocks = _blocks(body)
        doc["content"] = _display_text(kind, body)
        doc["messageData"] = body
        if kind == "assistant":
            if isinstance(body.get("usage"), Mapping):
                doc["usage"] = dict(body["usage"])
            if isinstance(body.get("model"), str):
                doc["model"] = body["model"]
    elif body is not None:
        doc["messageData"] = body  # not an object: validation says so
    if "costUSD" in record:
        doc["costUsd"] = record["costUSD"]
    for name in ("durationMs", "requestId"):
        if record.get(name) is not None:
            doc[name] = record[name]
    thinking = [str(b.get("thinking", "")) for b in blocks if b.get("type") == "thinking"]
    if thinking:
        doc["thinking"] = "\n".join(thinking)
    if record.get("toolUseResult") is not None:
        doc["toolUseResult"] = record["toolUseResult"]
    coerce(RecordKind.MESSAGE, doc)
    doc[CLAUDE_CODE] = line_keys(record, doc, file, order)
    if priced and kind == "assistant" and "costUSD" not in record and isinstance(body, Mapping):
        _price(doc, body)
    if hashed:
        finish_message(doc)
    docs: list[tuple[dict[str, Any], str | None]] = [(doc, None)]
    uuid = doc.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        return docs
    wanted, suffix, derived_type = (("tool_use", "tool", "tool_use") if kind == "assistant"
                                    else ("tool_result", "result", "tool_result"))
    content = body.get("content") if isinstance(body, Mapping) else None
    positions = [k for k, b in enumerate(content if isinstance(content, list) else [])
                 if isinstance(b, Mapping) and b.get("type") == wanted]
    for index, (position, block) in enumerate(
            zip(positions, (b for b in blocks if b.get("type") == wanted), strict=True)):
        derived: dict[str, Any] = {
            "uuid": f"{uuid}_{suffix}_{index}", "sessionId": doc.get("sessionId"),
            "type": derived_type, "timestamp": doc.get("timestamp"), "parentUuid": uuid,
            "isSidechain": True, **meta,
            "content": (_tool_use_text(block) if wanted == "tool_use"
                        else text_of(block.get("content"))),
            "messageData": block,
        }
        docs.append((derived, f"$.message.content[{position}]"))
    return docs


def subagent_file(name: str, record: Mapping[str, Any]) -> str | None:
    """Where a sub-agent line's file lies relative to its session's folder, None for a
    session's main file: `subagents/<file>` for `<project>/<sessionId>/subagents/<file>`
    (Claude Code 2.1), `../agent-<id>.jsonl` for an agent file beside the session files
    (Claude Code 2.0). A part the packager numbered (`agent-<id>-0001.jsonl`) is named after
    its file again."""
    path = PurePosixPath(name)
    if len(path.parts) >= 3 and path.parent.name == SUBAGENTS:
        where = SUBAGENTS
    elif len(path.parts) >= 2 and path.name.startswith("agent-"):
        where = ".."
    else:
        return None
    part = _PART.fullmatch(path.stem)
    agent = record.get("agentId")
    if part is not None and (not isinstance(agent, str) or part["stem"] == f"agent-{agent}"):
        return f"{where}/{part['stem']}{path.suffix}"
    return f"{where}/{path.name}"


def unnumbered(name: str) -> str:
    """A file's name without the part number the packager gives a split file
    (`<sessionId>-0001.jsonl` is the first part of `<sessionId>.jsonl`)."""
    path = PurePosixPath(name)
    part = _PART.fullmatch(path.stem)
    return str(path.with_name(f"{part['stem']}{path.suffix}")) if part else name


def project_folder(name: str) -> str:
    """The project folder a transcript file belongs to: the folder after `projects/`, else the
    file's folder (`<project>/<session>/subagents/` files belong to `<project>`)."""
    parts = PurePosixPath(name).parent.parts
    if "projects" in parts:
        index = len(parts) - 1 - parts[::-1].index("projects")
        if index + 1 < len(parts):
            return "/".join(parts[:index + 2])
    if len(parts) >= 3 and parts[-1] == "subagents":
        parts = parts[:-2]
    return "/".join(parts)


def fold_name(name: str) -> str:
    """A folder name compared loosely: Claude Code versions encode `.`, `_`, ` `, `~` as `-`
    too."""
    return _NOT_ALNUM.sub("-", name)


def resolve_project(folder: str, cwds: list[str], fallback: str | None) -> tuple[str, bool]:
    """(project path, guessed) for a folder (see the module docstring)."""
    encoded = fold_name(PurePosixPath(folder).name) if folder else ""
    if encoded:
        for cwd in cwds:
            candidate = PurePosixPath(cwd)
            for path in (candidate, *candidate.parents):
                if fold_name(project_dir(str(path))) == encoded:
                    return str(path), False
        if fallback:
            return fallback, False
        name = PurePosixPath(folder).name
        return ("/" + name[1:].replace("-", "/") if name.startswith("-") else name), True
    if cwds:
        return cwds[0], False
    if fallback:
        return fallback, False
    return "unknown", True


def project_name(path: str) -> str:
    segments = [s for s in re.split(r"[/\\]", path) if s]
    return segments[-1] if segments else path


@dataclass
class FolderPlan:
    """The transcript files of one project folder, in reading order ("" for the single file)."""

    folder: str
    files: list[ZipMember | None] = field(default_factory=list)


@dataclass
class _Line:
    number: int
    record: dict[str, Any]
    #: the documents of a message line with the JSON path of the block each derived one came from
    docs: list[tuple[dict[str, Any], str | None]]
    summary: str | None = None
    #: a summary line's place: the number of stored lines of its file before it
    order: int = 0


@dataclass
class _FolderTotals:
    sessions: dict[str, SessionTotals] = field(default_factory=dict)
    cwds: list[str] = field(default_factory=list)
    version: str | None = None


@dataclass(frozen=True, slots=True)
class _Skipped:
    """What the first pass remembers of a skipped line: its thread, and enough to count it in
    its session's totals should a stored line name it."""

    parent: str | None
    session_id: object
    timestamp: object
    file: str
    number: int


@dataclass
class _Threads:
    """The skipped lines a folder's stored lines run their thread through. The first pass
    remembers the last REMEMBERED_SKIPPED skipped lines (`skipped`) and, when a stored line
    names one (THREAD_KEYS), marks it and the skipped lines it names in turn as `needed`; the
    second pass keeps the needed ones that can be messages (`storable_system_line`)."""

    recent: OrderedDict[str, _Skipped] = field(default_factory=OrderedDict)
    needed: set[str] = field(default_factory=set)
    #: needed lines found since the last `drain`, for the first pass's totals and places
    found: list[_Skipped] = field(default_factory=list)

    def skipped(self, record: Mapping[str, Any], file: str, number: int) -> None:
        uuid = record.get("uuid")
        if not isinstance(uuid, str) or not uuid or uuid in self.needed:
            return
        parent = record.get("parentUuid")
        self.recent[uuid] = _Skipped(parent if isinstance(parent, str) else None,
                                     record.get("sessionId"), record.get("timestamp"), file,
                                     number)
        self.recent.move_to_end(uuid)
        if len(self.recent) > REMEMBERED_SKIPPED:
            self.recent.popitem(last=False)

    def stored(self, record: Mapping[str, Any]) -> None:
        for name in THREAD_KEYS:
            link = record.get(name)
            while isinstance(link, str) and link not in self.needed and link in self.recent:
                self.needed.add(link)
                line = self.recent.pop(link)
                self.found.append(line)
                link = line.parent

    def drain(self) -> list[_Skipped]:
        found, self.found = self.found, []
        return found


class ClaudeTranscriptSource(ImportSource):
    """A Claude Code transcript file or a zipped tree of them (see the module docstring)."""

    format = SourceFormat.CLAUDE_TRANSCRIPT

    def _records(self, reporter: Reporter) -> Iterator[ImportRecord]:
        if not self.zipped:
            plan = FolderPlan("", [None])
            yield from self._folder(None, plan, reporter)
            return
        with self.archive() as archive:
            checksums = Checksums(read_manifest(archive))
            yield from self._before_folders(archive, checksums, reporter)
            for plan in self._plan(archive, reporter):
                yield from self._folder(archive, plan, reporter, checksums)
            checksums.missing((m.name for m in archive.members), reporter)

    # --- hooks for dataport packages ----------------------------------------------------------

    def _before_folders(self, archive: SafeZip, checksums: Checksums,  # noqa: ARG002
                        reporter: Reporter) -> Iterator[ImportRecord]:  # noqa: ARG002
        """Records a package holds besides its transcripts (dataport_jsonl: projects.json)."""
        return iter(())

    def _other_member(self, member: ZipMember) -> bool:
        """True when a non-transcript member is read elsewhere (not reported as ignored)."""
        return member.name == MANIFEST_NAME

    def _known_project(self, folder: str) -> dict[str, Any] | None:  # noqa: ARG002
        """A full project document for a folder, when the package carries one."""
        return None

    # --- reading ------------------------------------------------------------------------------

    def _plan(self, archive: SafeZip, reporter: Reporter) -> list[FolderPlan]:
        folders: dict[str, FolderPlan] = {}
        for member in archive.members:
            if member.name.lower().endswith(".jsonl") and not is_noise(member.name):
                key = project_folder(member.name)
                folders.setdefault(key, FolderPlan(key)).files.append(member)
            elif not self._other_member(member):
                ignored(member, reporter)
        plans = sorted(folders.values(), key=lambda plan: plan.folder)
        for plan in plans:
            plan.files.sort(key=lambda m: m.name if m else "")
        return plans

    @contextmanager
    def _open(self, archive: SafeZip | None, member: ZipMember | None) -> Iterator[Readable]:
        if archive is None or member is None:
            with self.stream() as stream:
                yield stream
        else:
            with archive.open(member) as reader:
                yield reader

    def _lines(self, archive: SafeZip | None, member: ZipMember | None, reporter: Reporter,
               checksums: Checksums | None = None, *, hashed: bool = True,
               orders: Counter[str] | None = None, threads: _Threads | None = None,
               learn: bool = False) -> Iterator[_Line]:
        """The summary and message lines of a file, mapped; everything else reported or
        counted as skipped. `orders` numbers the stored lines of each file (its parts, when the
        packager numbered them, continue one another). `threads`: with `learn` (the first
        pass), the skipped lines are remembered and the ones stored lines name are marked;
        without, the marked ones are kept as messages."""
        name = member.name if member else self.filename
        numbered = orders if orders is not None else Counter[str]()
        logical = unnumbered(name)
        with self._open(archive, member) as stream:
            for number, data in iter_lines(stream, self.limits.max_line_bytes):
                if data is None:
                    reporter.error(issue(IssueCode.LINE_TOO_LONG,
                                         f"line {number} is longer than the limit of "
                                         f"{self.limits.max_line_bytes} bytes",
                                         file=name, line=number))
                    continue
                record = read_line(data, file=name, line=number, limits=self.limits,
                                   reporter=reporter)
                if record is None:
                    continue
                kind = record.get("type")
                if kind == "summary":
                    summary = record.get("summary")
                    yield _Line(number, record, [], summary if isinstance(summary, str) else None,
                                order=numbered[logical])
                elif kind in MESSAGE_LINES:
                    if isinstance(record.get("message"), Mapping):
                        docs = message_documents(record, hashed=hashed,
                                                 file=subagent_file(name, record),
                                                 order=numbered[logical])
                        numbered[logical] += 1
                        if learn and threads is not None:
                            threads.stored(record)
                        why = unpriced(docs[0][0], record)
                        if why is not None:
                            reporter.warning(issue(
                                IssueCode.PRICE_UNKNOWN,
                                f"line {number}: {why}; its cost is left empty",
                                file=name, line=number, field="message.model",
                                severity="warning"))
                        yield _Line(number, record, docs)
                    else:
                        reporter.error(issue(
                            IssueCode.MISSING_FIELD if record.get("message") is None
                            else IssueCode.WRONG_TYPE,
                            f"line {number}: a {kind} line needs its Claude message object",
                            file=name, line=number, field="message"))
                elif ((kind == SYSTEM_TYPE or self._needed(threads, learn, record))
                      and storable_system_line(record)):
                    doc = system_document(record, hashed=hashed,
                                          file=subagent_file(name, record),
                                          order=numbered[logical])
                    numbered[logical] += 1
                    if learn and threads is not None:
                        threads.stored(record)
                    if kind != SYSTEM_TYPE:
                        reporter.kept[str(kind)] += 1
                    yield _Line(number, record, [(doc, None)])
                elif isinstance(kind, str):
                    if learn and threads is not None:
                        threads.skipped(record, name, number)
                    reporter.skipped[kind] += 1
                else:
                    reporter.error(issue(IssueCode.MISSING_FIELD,
                                         f"line {number} has no record type",
                                         file=name, line=number, field="type"))
            if checksums is not None and isinstance(stream, GuardedMember):
                checksums.check(stream, reporter)

    @staticmethod
    def _needed(threads: _Threads | None, learn: bool, record: Mapping[str, Any]) -> bool:
        """A skipped-type line the second pass keeps: the first marked it as needed."""
        uuid = record.get("uuid")
        return (not learn and threads is not None and record.get("type") != "summary"
                and isinstance(uuid, str) and uuid in threads.needed)

    def _totals(self, archive: SafeZip | None, plan: FolderPlan,
                threads: _Threads) -> _FolderTotals:
        """First pass over a folder: every session's totals, the cwds, the Claude version."""
        totals = _FolderTotals()
        quiet = Reporter.quiet()
        orders: Counter[str] = Counter()  # numbered as the second pass numbers them
        #: a file's summary lines at its top, which every part of a split file repeats
        heads: dict[str, list[dict[str, Any]]] = {}
        for member in plan.files:
            name = member.name if member else self.filename
            logical = unnumbered(name)
            continued = logical in heads
            repeated = list(heads.get(logical, []))
            file_sessions: list[str] = []
            summary: str | None = None
            summary_lines: list[dict[str, Any]] = []
            summary_orders: list[int] = []
            summary_numbers: list[int] = []
            for line in self._lines(archive, member, quiet, hashed=False, orders=orders,
                                    threads=threads, learn=True):
                for needed in threads.drain():
                    self._count_needed(needed, totals, orders, name=name,
                                       summary_orders=summary_orders,
                                       summary_numbers=summary_numbers)
                if not line.docs:
                    if not file_sessions and repeated and line.record == repeated[0]:
                        repeated.pop(0)  # a later part's copy of the file's top lines
                        continue
                    summary = line.summary or summary
                    summary_lines.append(line.record)
                    summary_orders.append(line.order)
                    summary_numbers.append(line.number)
                    continue
                cwd = line.record.get("cwd")
                if (isinstance(cwd, str) and cwd and cwd not in totals.cwds
                        and len(totals.cwds) < _MAX_CWDS):
                    totals.cwds.append(cwd)
                if totals.version is None and isinstance(line.record.get("version"), str):
                    totals.version = line.record["version"]
                for doc, _ in line.docs:
                    session_id = doc.get("sessionId")
                    if not isinstance(session_id, str):
                        continue
                    if session_id not in totals.sessions:
                        totals.sessions[session_id] = SessionTotals(session_id)
                    if session_id not in file_sessions:
                        file_sessions.append(session_id)
                    totals.sessions[session_id].add(doc)
            if not continued:
                heads[logical] = [record for record, order in zip(summary_lines, summary_orders,
                                                                  strict=True) if order == 0]
            if summary_lines and file_sessions and subagent_file(name, {}) is None:
                stem = PurePosixPath(name).stem
                part = _PART.fullmatch(stem)
                named = next((s for s in (stem, part["stem"] if part else None)
                              if s in file_sessions), None)
                session = totals.sessions[named or file_sessions[0]]
                session.summary = summary or session.summary
                if not continued:  # a later part of a split file adds to the first one's
                    session.summary_lines, session.summary_orders = [], []
                session.summary_lines += summary_lines
                session.summary_orders += summary_orders
        return totals

    @staticmethod
    def _count_needed(needed: _Skipped, totals: _FolderTotals, orders: Counter[str], *,
                      name: str, summary_orders: list[int], summary_numbers: list[int]) -> None:
        """A skipped line the first pass found a stored line naming, once it has gone by: the
        second pass stores it, so it counts in its session's totals and takes a place in its
        file (the places of the summary lines read since it move one on)."""
        doc = {"sessionId": needed.session_id, "type": SYSTEM_TYPE,
               "timestamp": needed.timestamp, "uuid": "-"}
        if not storable_system_line(doc):
            return
        coerce(RecordKind.MESSAGE, doc)
        session_id = str(doc["sessionId"])
        totals.sessions.setdefault(session_id, SessionTotals(session_id)).add(doc)
        orders[unnumbered(needed.file)] += 1
        if needed.file == name:
            for index, number in enumerate(summary_numbers):
                if number > needed.number:
                    summary_orders[index] += 1

    def _folder(self, archive: SafeZip | None, plan: FolderPlan, reporter: Reporter,
                checksums: Checksums | None = None) -> Iterator[ImportRecord]:
        threads = _Threads()
        totals = self._totals(archive, plan, threads)
        if (self.version is None and totals.version is not None
                and self.format is SourceFormat.CLAUDE_TRANSCRIPT):
            self.version = totals.version
        where = plan.folder or self.filename
        if totals.sessions:
            yield ImportRecord(RecordKind.PROJECT, self._project(plan.folder, totals, reporter),
                               Location(where))
        started: set[str] = set()
        orders: Counter[str] = Counter()
        for member in plan.files:
            name = member.name if member else self.filename
            summaries, messages = 0, 0
            for line in self._lines(archive, member, reporter, checksums, orders=orders,
                                    threads=threads):
                if not line.docs:
                    summaries += 1
                    continue
                messages += 1
                session_id = line.docs[0][0].get("sessionId")
                if isinstance(session_id, str) and session_id not in started:
                    started.add(session_id)
                    session = totals.sessions.get(session_id)
                    if session is not None:
                        yield ImportRecord(RecordKind.SESSION, session.document(),
                                           Location(name, line.number))
                for doc, path in line.docs:
                    yield ImportRecord(RecordKind.MESSAGE, doc, Location(name, line.number, path))
            if summaries and not messages:
                # a file of summary lines only (Claude Code 1.0 left many): no session to keep
                # them on, so they are counted as skipped, like the types never imported
                reporter.skipped["summary"] += summaries

    def _project(self, folder: str, totals: _FolderTotals, reporter: Reporter,
                 ) -> dict[str, Any]:
        known = self._known_project(folder)
        if known is not None:
            return known
        path, guessed = resolve_project(folder, totals.cwds, self.options.project_path)
        if guessed:
            reporter.warning(issue(
                IssueCode.PROJECT_PATH_GUESSED,
                f"no line says where the project of {folder or self.filename} is; its path is "
                f"taken to be {path!r} (set project_path to choose it)",
                file=folder or self.filename, field="cwd", severity="warning"))
        return {"name": project_name(path), "path": path}
