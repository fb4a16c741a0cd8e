"""Claude-native JSONL: the owner's history back in Claude Code's own layout.

`projects/<project dir>/<sessionId>.jsonl`, where the project dir is the project path with `/`
(and `\\` and `:`, for Windows paths, as Claude Code does) replaced by `-`:
`/Users/alex/github/claudelens` -> `-Users-alex-github-claudelens`. One line per record, in
Claude Code's shape: parentUuid, isSidechain, userType, cwd, sessionId, version, gitBranch, type,
message (the stored messageData), [requestId], uuid, timestamp (ISO, milliseconds, `Z`),
[costUSD, durationMs, toolUseResult]. Money is a JSON number with exactly the stored digits; a
cost dataport computed (`costComputedBy`) is not written, since `costUSD` is what Claude Code
reported (an import computes it again, the same way).

A message imported from a transcript line (it has `claudeCode`, docs/imports.md) is written
back as that line: its keys exactly, in their order (`claudeCode.keys`), each from its message
field or verbatim from `claudeCode.fields`; a cost dataport computed (`costComputedBy`) is not
Claude Code's and is not written. A line of a sub-agent file (`claudeCode.file`,
`subagents/agent-<id>.jsonl`) goes to `projects/<project dir>/<sessionId>/<that file>`, as
Claude Code 2.x lays them out; every other line to the session's own file. A `system` message
(Claude Code's status line) is its line again the same way; one stored without its line is
written in Claude Code's usual keys with its `content`.

Each file's lines are written in the order they had in the file they were imported from
(`claudeCode.order`), not in the time order the export reads them in: a line out of the
look-behind window waits in a heap of its file until the lines before it are written, at most
ORDER_RECORDS lines (a predecessor that never comes, deleted or filtered out, holds the others
only that long; the earliest held line is then written and the file goes on from there). Lines
without a place (ClaudeLens' own messages, stand-ins rebuilt from derived documents) are written
as they leave the window.

A session imported with its summary lines (`claudeCode.summaries`) gives them back verbatim, each
at its place in the main file: before the line whose order `claudeCode.summaryOrders` names (the
number of stored lines before it), after the file's last line when none comes, at the top when
it has no place (0, or a session imported before places were kept). They come with the session,
so holding them costs nothing more; every part of a split file starts with the top ones (an
import drops those copies). Otherwise, when the session has a summary, every file of it starts
with `{"type": "summary", "summary", "leafUuid": null}`: the leaf is the session's last
message, unknown when a streamed file starts, so it stays null; summary lines are not counted
as records. A session split at the split size (or continued by the next worker) is numbered by
the packager (`<sessionId>-0001.jsonl`); the `sessionId` inside the lines is what ties the
parts together. A session without messages writes no file.

Derived tool documents (`<uuid>_tool_<i>`, `<uuid>_result_<i>`) are ClaudeLens' own and never
become lines of their own when their block can be folded back:
- `_tool_<i>` holds one tool_use block of assistant message `<uuid>`, whose messageData already
  holds it: dropped when the block (by tool_use id) is there, appended to it when missing.
- `_result_<i>` holds one tool_result block of user message `<uuid>`. ClaudeLens stores that
  user message only when it also had text, so usually there is nothing to fold into: the result
  documents of one `<uuid>` are rebuilt into that user line (uuid `<uuid>`, parent = the
  assistant that made the calls, content = the tool_result blocks, toolUseResult kept). When the
  user message exists, a block already in it (same tool_use_id) is dropped, a missing one added.
- A message that arrives after derived documents stood in for it takes their place (its own
  fields win, blocks it lacks are added). A derived document whose message line has already been
  written and lacks its block gets a line of its own under its derived uuid: nothing is lost.

Folding needs to see a derived document next to its message, not the whole session: records wait
in a look-behind window and are written once the stream has moved on by `LOOK_BEHIND` (derived
documents carry their message's own timestamp, so in timestamp order they arrive within it) or
when more than `LOOK_BEHIND_RECORDS` wait. Memory is that window, the ORDER_RECORDS lines held
for their turn, and a bounded memo of the block ids of lines already written, whatever the size
of the session.
"""

from __future__ import annotations

import heapq
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson.decimal128 import Decimal128

from dataport.formats.base import ExportContext, ExportWriter, FileSink
from dataport.formats.common import (
    BoundedMemo,
    as_utc,
    block_key,
    content_blocks,
    is_block,
    iso_ms,
    message_data,
    model_of,
    plain_json,
    safe_segment,
)
from dataport.formats.rolling import RollingFile
from dataport.models.documents import (
    COST_COMPUTED_BY,
    SYSTEM_TYPE,
    DerivedRef,
    RawDocument,
    as_decimal,
    claude_code,
    derived_ref,
    strip_derived,
    transcript_file,
)

LOOK_BEHIND = timedelta(seconds=5)
LOOK_BEHIND_RECORDS = 64
#: lines held for their turn in their file's source order, at most (beyond the window's)
ORDER_RECORDS = 64
#: lines already written whose block ids are remembered (to drop late duplicates)
WRITTEN_MEMORY = 1024

_CLAUDE_TYPE = {"tool_use": "assistant", "tool_result": "user"}
#: message types written back as the very line they were imported from (claudeCode.keys)
_LINE_TYPES = ("user", "assistant", SYSTEM_TYPE)
#: a sub-agent file beside its session's file rather than in the session's folder
_UP = ".."


#: what Claude Code writes as `-` in a project's folder name
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")


def project_dir(path: str) -> str:
    """Claude Code's folder name for a project path: every character but an ASCII letter or
    digit becomes `-` (`/Users/me/my.app` -> `-Users-me-my-app`), the folder `claude --resume`
    looks in (the import compares folder names the same way: readers.claude_transcript)."""
    return _NOT_ALNUM.sub("-", path) or "-"


@dataclass
class _Pending:
    """A line waiting in the look-behind window; `record` is ours to change until written."""

    record: dict[str, Any]
    timestamp: datetime | None
    keys: set[str] = field(default_factory=set)
    #: rebuilt from derived documents; the message itself has not been seen
    stand_in: bool = False
    #: the sub-agent file of the line, relative to the session's folder ("" for the main file)
    file: str = ""
    #: the line's place among the stored lines of its source file (claudeCode.order)
    order: int | None = None


@dataclass
class _FileOrder:
    """Lines of one file held until the lines before them (by claudeCode.order) are written."""

    #: the order of the next line to write
    expected: int = 0
    held: list[tuple[int, int, _Pending]] = field(default_factory=list)  # a heap


@dataclass(frozen=True)
class _Written:
    keys: frozenset[str]
    sidechain: bool


class JsonlWriter(ExportWriter):
    """Writes `projects/<project dir>/<sessionId>.jsonl` (see the module docstring)."""

    extension = "jsonl"

    def __init__(self, sink: FileSink, *, context: ExportContext, split_bytes: int) -> None:
        super().__init__(sink, context=context, split_bytes=split_bytes)
        #: the session's open files: "" its main file, else a sub-agent file's relative path
        self._files: dict[str, RollingFile] = {}
        self._folder = ""
        self._name = ""
        self._header = b""
        self._project: RawDocument = {}
        self._session: RawDocument = {}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._written: BoundedMemo[str, _Written] = BoundedMemo(WRITTEN_MEMORY)
        #: lines out of the window waiting for their turn in their file, by file and by uuid
        self._orders: dict[str, _FileOrder] = {}
        self._held: dict[str, _Pending] = {}
        self._arrivals = 0
        #: the session's summary lines below the top of its main file: (place, line), in order
        self._summaries: list[tuple[int, bytes]] = []

    def begin_session(self, project: RawDocument, session: RawDocument) -> None:
        self._project, self._session = project, session
        self._pending.clear()
        self._orders, self._held = {}, {}
        self._written = BoundedMemo(WRITTEN_MEMORY)
        folder = project_dir(str(project.get("path") or project.get("name") or "unknown"))
        name = safe_segment(str(session.get("sessionId") or session.get("_id")),
                            fallback="session")
        self._folder, self._name = folder, name
        self._header, self._summaries = _summary_lines(session)
        self._files = {}

    def write_message(self, message: RawDocument) -> None:
        ref = derived_ref(message.get("uuid"))
        if ref is None:
            self._add(message)
        else:
            self._fold(message, ref)
        self._flush(until=as_utc(message.get("timestamp")))

    def end_session(self) -> None:
        self._flush(until=None, everything=True)
        if self._files:  # summary lines after the main file's last line
            self._summaries_before(None)
        for file in self._files.values():
            file.close()
        self._files = {}

    def close(self) -> None:
        self.end_session()

    # --- the look-behind window -----------------------------------------------------------------

    def _add(self, message: RawDocument) -> None:
        kind = str(message.get("type") or "user")
        body = self._message_body(message, kind)
        line = claude_code(message)
        keys = line.get("keys")
        if isinstance(keys, list) and kind in _LINE_TYPES:
            record = line_of(message, keys, line.get("fields"), body)
        elif kind == SYSTEM_TYPE:
            record = self._system_record(message)
        else:
            record = self._record(message, uuid=str(message.get("uuid")),
                                  kind=_CLAUDE_TYPE.get(kind, kind), body=body,
                                  parent=strip_derived(message.get("parentUuid")),
                                  sidechain=bool(message.get("isSidechain", False)))
        order = line.get("order")
        entry = _Pending(record, as_utc(message.get("timestamp")),
                         file=_safe_file(transcript_file(message)),
                         order=order if isinstance(order, int) and not isinstance(order, bool)
                         and isinstance(keys, list) else None)
        for block in content_blocks(message):
            key = block_key(block)
            if key:
                entry.keys.add(key)
        uuid = str(entry.record.get("uuid", message.get("uuid")))
        earlier = self._pending.get(uuid)
        if earlier is not None and earlier.stand_in:
            for block in _blocks(earlier.record):
                if block_key(block) not in entry.keys:
                    _add_block(entry, block)
            if "toolUseResult" in earlier.record:
                entry.record.setdefault("toolUseResult", earlier.record["toolUseResult"])
            self._pending[uuid] = entry  # keeps the stand-in's place in the window
            return
        if earlier is not None:
            self._emit(self._pending.pop(uuid))  # a repeated uuid: both lines, in order
        self._pending[uuid] = entry

    def _fold(self, message: RawDocument, ref: DerivedRef) -> None:
        block = self._block(message)
        key = block_key(block)
        target = self._pending.get(ref.origin) or self._held.get(ref.origin)
        if target is not None:
            if key is None or key not in target.keys:
                _add_block(target, block)
                if "toolUseResult" not in target.record and "toolUseResult" in message:
                    target.record["toolUseResult"] = message["toolUseResult"]
            return
        written = self._written.get(ref.origin)
        if written is not None and key is not None and key in written.keys:
            return  # already in the line of its message
        # no line yet: stand in for the message; already written without it: a line of its own
        uuid = ref.origin if written is None else str(message.get("uuid"))
        kind = "assistant" if ref.kind == "tool" else "user"
        body: dict[str, Any] = {"role": kind, "content": []}
        model = model_of(message)
        if kind == "assistant" and model:
            body["model"] = model
        parent = strip_derived(message.get("parentUuid"))
        entry = _Pending(
            self._record(message, uuid=uuid, kind=kind, body=body,
                         parent=None if parent == uuid else parent,
                         sidechain=self._sidechain_of(parent)),
            as_utc(message.get("timestamp")), stand_in=written is None)
        if "toolUseResult" in message:
            entry.record["toolUseResult"] = message["toolUseResult"]
        _add_block(entry, block)
        self._pending[uuid] = entry

    def _sidechain_of(self, uuid: str | None) -> bool:
        """A derived document's own isSidechain only marks it as derived; its thread's flag is
        its parent's, when that is still known."""
        if uuid is None:
            return False
        waiting = self._pending.get(uuid) or self._held.get(uuid)
        if waiting is not None:
            return bool(waiting.record.get("isSidechain"))
        written = self._written.get(uuid)
        return written.sidechain if written is not None else False

    def _flush(self, *, until: datetime | None, everything: bool = False) -> None:
        while self._pending:
            oldest = next(iter(self._pending.values()))
            stale = (until is not None and oldest.timestamp is not None
                     and oldest.timestamp < until - LOOK_BEHIND)
            if not (everything or stale or len(self._pending) > LOOK_BEHIND_RECORDS):
                break
            self._pending.popitem(last=False)
            self._in_turn(oldest)
        if self._held:
            self._release(everything=everything)

    # --- each file's lines in their source order ------------------------------------------------

    def _in_turn(self, entry: _Pending) -> None:
        """A line out of the window: written now, or (a line that knows its place in its
        source file) held until the lines before it are written."""
        if entry.order is None:
            self._emit(entry)
            return
        order = self._orders.setdefault(entry.file, _FileOrder())
        self._arrivals += 1
        heapq.heappush(order.held, (entry.order, self._arrivals, entry))
        self._held[str(entry.record.get("uuid"))] = entry
        self._drain(order)  # its turn may have come: written before any later line

    def _release(self, *, everything: bool) -> None:
        """Past ORDER_RECORDS held (a line that never comes: a message deleted, filtered out,
        or stored by another session), the earliest held line of the fullest file is written
        anyway, and the lines after it whose turn has come. At the session's end, all of them.
        (A line whose turn has come is written as it arrives: `_in_turn`.)"""
        while self._held and (everything or len(self._held) > ORDER_RECORDS):
            fullest = max(self._orders.values(), key=lambda order: len(order.held))
            self._write_held(fullest)
            self._drain(fullest)

    def _drain(self, order: _FileOrder) -> None:
        while order.held and order.held[0][0] <= order.expected:
            self._write_held(order)

    def _write_held(self, order: _FileOrder) -> None:
        position, _, entry = heapq.heappop(order.held)
        self._held.pop(str(entry.record.get("uuid")), None)
        order.expected = max(order.expected, position + 1)
        self._emit(entry)

    def _emit(self, entry: _Pending) -> None:
        assert self._name, "write_message outside a session"
        if entry.order is not None and not entry.file:
            self._summaries_before(entry.order)
        line = plain_json(entry.record) + b"\n"
        uuid = str(entry.record.get("uuid"))
        self._file_for(entry.file).write(lambda: line, label=f"line {uuid}")
        self._written.put(uuid, _Written(frozenset(entry.keys),
                                         bool(entry.record.get("isSidechain"))))

    def _summaries_before(self, order: int | None) -> None:
        """Write the summary lines whose place is at or before main-file line `order` (all of
        them with None)."""
        while self._summaries and (order is None or self._summaries[0][0] <= order):
            self._write_summary(self._summaries.pop(0)[1])

    def _write_summary(self, line: bytes) -> None:
        self._file_for("").write(lambda: line, records=0, label="a summary line")

    def _file_for(self, relative: str) -> RollingFile:
        """The session's main file (""), or one of its sub-agent files, opened on first use."""
        file = self._files.get(relative)
        if file is None:
            if relative.startswith(f"{_UP}/"):
                path = f"projects/{self._folder}/{relative.removeprefix(f'{_UP}/')}"
                file = RollingFile(self.sink, path, split_bytes=self.split_bytes)
            elif relative:
                path = f"projects/{self._folder}/{self._name}/{relative}"
                file = RollingFile(self.sink, path, split_bytes=self.split_bytes)
            else:
                header = self._header
                file = RollingFile(self.sink, f"projects/{self._folder}/{self._name}.jsonl",
                                   split_bytes=self.split_bytes, header=lambda: header)
            self._files[relative] = file
        return file

    # --- building lines -----------------------------------------------------------------------

    def _envelope(self, message: RawDocument, *, kind: str, parent: str | None,
                  sidechain: bool) -> dict[str, Any]:
        """The keys every line of Claude Code's starts with, in its order."""
        return {
            "parentUuid": parent,
            "isSidechain": sidechain,
            "userType": message.get("userType") or "external",
            "cwd": message.get("cwd") or self._project.get("path"),
            "sessionId": message.get("sessionId") or self._session.get("sessionId"),
            "version": message.get("version"),
            "gitBranch": message.get("gitBranch"),
            "type": kind,
        }

    def _record(self, message: RawDocument, *, uuid: str, kind: str, body: Mapping[str, Any],
                parent: str | None, sidechain: bool) -> dict[str, Any]:
        record = self._envelope(message, kind=kind, parent=parent, sidechain=sidechain)
        record["message"] = dict(body)
        if message.get("requestId") is not None:
            record["requestId"] = message["requestId"]
        record["uuid"] = uuid
        record["timestamp"] = iso_ms(message.get("timestamp"))
        if message.get("costUsd") is not None and COST_COMPUTED_BY not in message:
            # a computed cost is not Claude Code's `costUSD` (a reported one): an import
            # computes it again, with its marker
            cost = message["costUsd"]
            # plain_json writes a Decimal128 as its exact digits (without a decimal.Decimal)
            record["costUSD"] = cost if type(cost) is Decimal128 else as_decimal(cost)
        for name in ("durationMs", "toolUseResult"):
            if message.get(name) is not None:
                record[name] = message[name]
        return record

    def _system_record(self, message: RawDocument) -> dict[str, Any]:
        """A system message stored without its line (ClaudeLens' own, a CSV's): a status line
        in Claude Code's usual keys."""
        record = self._envelope(message, kind=SYSTEM_TYPE,
                                parent=strip_derived(message.get("parentUuid")),
                                sidechain=bool(message.get("isSidechain", False)))
        record["content"] = str(message.get("content") or "")
        record["uuid"] = str(message.get("uuid"))
        record["timestamp"] = iso_ms(message.get("timestamp"))
        return record

    @staticmethod
    def _message_body(message: RawDocument, kind: str) -> Mapping[str, Any]:
        """messageData as stored; rebuilt from the flattened content when it is missing."""
        data = message_data(message)
        if data is not None and not is_block(data):
            return data
        role = _CLAUDE_TYPE.get(kind, kind)
        if data is not None:  # a lone block where a message was expected
            return {"role": role, "content": [dict(data)]}
        text = str(message.get("content") or "")
        if role == "assistant":
            return {"role": role, "content": [{"type": "text", "text": text}]}
        return {"role": role, "content": text}

    @staticmethod
    def _block(message: RawDocument) -> Mapping[str, Any]:
        """The block a derived document carries; its flattened content if it has none."""
        data = message_data(message)
        if data is not None and is_block(data):
            return data
        return {"type": "text", "text": str(message.get("content") or "")}


def line_of(message: RawDocument, keys: list[Any], fields: object,
            body: Mapping[str, Any]) -> dict[str, Any]:
    """The transcript line a message was imported from: exactly its keys, in order, each
    verbatim from `claudeCode.fields` or from the message's own field (the inverse of
    readers/claude_transcript.py, `line_keys`)."""
    verbatim = fields if isinstance(fields, Mapping) else {}
    record: dict[str, Any] = {}
    for key in keys:
        if not isinstance(key, str):
            continue
        if key in verbatim:
            record[key] = verbatim[key]
        elif key == "message":
            record[key] = dict(body)
        elif key == "timestamp":
            record[key] = iso_ms(message.get("timestamp"))
        elif key == "parentUuid":
            record[key] = strip_derived(message.get("parentUuid"))
        elif key == "isSidechain":
            record[key] = bool(message.get("isSidechain", False))
        elif key == "costUSD":
            if message.get("costUsd") is not None and COST_COMPUTED_BY not in message:
                cost = message["costUsd"]
                record[key] = cost if type(cost) is Decimal128 else as_decimal(cost)
        elif key in message:
            record[key] = message[key]
    return record


def _safe_file(relative: str | None) -> str:
    """A sub-agent file's path kept inside the session's folder (or, `../<name>`, beside the
    session's file in the project folder): each segment made safe, a `.jsonl` name; "" (the
    main file) when nothing usable is left."""
    if not relative:
        return ""
    up = relative.startswith(f"{_UP}/")
    segments = [safe_segment(part, fallback="_")
                for part in relative.removeprefix(f"{_UP}/").split("/")
                if part not in ("", ".", _UP)]
    if not segments or not segments[-1].endswith(".jsonl") or (up and len(segments) != 1):
        return ""
    return (f"{_UP}/" if up else "") + "/".join(segments)


def _summary_lines(session: RawDocument) -> tuple[bytes, list[tuple[int, bytes]]]:
    """What every part of a session's main file starts with (its summary lines as imported that
    were at the top of their file, else one line of its summary, else nothing), and its summary
    lines further down, by place (`claudeCode.summaryOrders`), in their order."""
    kept = claude_code(session)
    lines = kept.get("summaries")
    if isinstance(lines, list) and lines:
        places = kept.get("summaryOrders")
        places = places if isinstance(places, list) and len(places) == len(lines) else []
        top, later = b"", []
        for index, line in enumerate(lines):
            if not isinstance(line, Mapping):
                continue
            place = places[index] if places else 0
            data = plain_json(line) + b"\n"
            if isinstance(place, int) and not isinstance(place, bool) and place > 0:
                later.append((place, data))
            else:
                top += data
        later.sort(key=lambda item: item[0])  # stable: lines of one place keep their order
        return top, later
    summary = session.get("summary")
    if isinstance(summary, str) and summary:
        return plain_json({"type": "summary", "summary": summary, "leafUuid": None}) + b"\n", []
    return b"", []


def _blocks(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = record["message"].get("content")
    return [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []


def _add_block(entry: _Pending, block: Mapping[str, Any]) -> None:
    """Append a block to a waiting line's content (copying, never changing the source)."""
    body = entry.record["message"]
    content = body.get("content")
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}] if content else []
    elif isinstance(content, list | tuple):
        blocks = list(content)
    else:
        blocks = []
    blocks.append(dict(block))
    body["content"] = blocks
    key = block_key(block)
    if key:
        entry.keys.add(key)
