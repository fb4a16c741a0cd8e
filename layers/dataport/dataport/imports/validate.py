"""Validation: one streaming pass over an upload, before anything is written.

`validate` never raises on bad input: every problem, whether a reader met it (a line that is not
JSON, a zip bomb) or a record has it (a missing uuid, a negative cost), becomes an `Issue` with
its file, line or JSON path and field. The report says what the upload is (format, version),
what it holds (counts, date range) and what is wrong; an upload with errors is not imported.
No database is read here: conflicts with what is already stored are the import flow's part.

What is checked per record is what the writes rely on (DATA-MODEL.md): a session's `sessionId`
(an id: letters, digits, `-`, `_`, `.`, `:`), a message's `uuid`, `sessionId`, `type` (one of
the four), `timestamp` (an aware date); every typed field that is present has its type (dates
from 1970 to a day ahead, Decimal128 money that is finite and not negative, ObjectIds,
non-negative counts); no top-level field name starts with `$` or holds a dot; a Claude message's
content is a string or a list of blocks. `record_problems` is that whole per-record check. A
message must belong to a session of the upload, a session to one project, no uuid may appear
twice and no parentUuid chain may loop (`ParentForest`). See docs/imports.md for why.
`recheck` applies the same checks again where records are staged (defence in depth).

Memory: duplicate uuids are found with a set of 16-byte BLAKE2b digests (about 90 bytes per
message in CPython), moved to an SQLite table in a temporary file past `SPILL_AFTER` uuids, so a
pass over ten million messages stays near 50 MB. Sessions are remembered the same way (by digest,
with the digest of their project), and every listed issue list is capped at MAX_LISTED_ISSUES.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128

from dataport.errors import RecordRefused, UploadChanged
from dataport.imports.detect import open_import
from dataport.imports.limits import BadInput, ImportLimits, issue
from dataport.imports.readers.base import ImportSource, Opener
from dataport.imports.readers.typed import date_problem
from dataport.models.documents import MESSAGE_TYPES, derived_ref
from dataport.models.imports import (
    MAX_LISTED_ISSUES,
    DateRange,
    ImportCounts,
    ImportOptions,
    Issue,
    IssueCode,
    ValidationReport,
)
from dataport.models.records import ImportRecord, RecordKind
from dataport.source.content_hash import hash_of

SPILL_AFTER = 500_000
#: a spilled SeenSet: its Bloom filter (8 MiB: one false "maybe" in ~90,000 at a million keys,
#: one in ~25 at ten million, each then one query), and how many new keys go to SQLite at once
SPILLED_FILTER_BYTES = 8 * 1024 * 1024
SPILL_BATCH = 4096
_FILTER_MASK = SPILLED_FILTER_BYTES * 8 - 1  # 26 bits: SeenSet._mark's slices
#: dates a record may carry (see the module docstring)
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)
SESSION_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:-]{0,127}")
MESSAGE_UUID = re.compile(r"[^\s/\\\x00-\x1f\x7f]{1,256}")
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
              "cache_read_input_tokens")


def digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class SeenSet:
    """Which keys were seen, in bounded memory (see the module docstring). `add` says whether a
    key is new; `get`/`put` keep a small value (a project digest) per key.

    Past `spill_after` keys they live in SQLite, reached as little as a per-key answer allows:
    a Bloom filter of every key stored (SPILLED_FILTER_BYTES, fixed: memory stays flat) says
    "never seen" without a query for nearly every new key, and new keys wait in a small
    buffer (SPILL_BATCH) that goes to SQLite in one executemany. A restore spills early (its
    backups have no size limit), so this is where its cross-record checks spend their time."""

    def __init__(self, spill_after: int = SPILL_AFTER) -> None:
        self.spill_after = spill_after
        self._memory: dict[bytes, bytes] = {}
        self._db: sqlite3.Connection | None = None
        self._pending: dict[bytes, bytes] = {}  # spilled, not yet written
        self._filter = bytearray()

    def get(self, key: str) -> bytes | None:
        return self.get_digest(digest(key))

    def get_digest(self, k: bytes) -> bytes | None:
        if self._db is None:
            return self._memory.get(k)
        value = self._pending.get(k)
        if value is not None or not self._maybe(k):
            return value
        row = self._db.execute("SELECT v FROM seen WHERE k = ?", (k,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_digest(self, k: bytes, value: bytes) -> None:
        """Set (or replace) the value of a digest key."""
        if self._db is None:
            self._memory[k] = value
            if len(self._memory) > self.spill_after:
                self._spill()
            return
        self._hold(k, value)

    def add(self, key: str, value: bytes = b"") -> bool:
        k = digest(key)
        if self._db is None:
            if k in self._memory:
                return False
            self._memory[k] = value
            if len(self._memory) > self.spill_after:
                self._spill()
            return True
        if k in self._pending or (self._maybe(k) and self._db.execute(
                "SELECT 1 FROM seen WHERE k = ?", (k,)).fetchone() is not None):
            return False
        self._hold(k, value)
        return True

    def _spill(self) -> None:
        self._db = sqlite3.connect("")  # a private temporary database file, gone on close
        # private and thrown away: no journal, no fsync (a crash loses nothing that matters)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE seen (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self._db.executemany("INSERT INTO seen VALUES (?, ?)", self._memory.items())
        self._filter = bytearray(SPILLED_FILTER_BYTES)
        for k in self._memory:
            self._mark(k)
        self._memory = {}

    def _hold(self, k: bytes, value: bytes) -> None:
        self._pending[k] = value
        self._mark(k)
        if len(self._pending) >= SPILL_BATCH:
            assert self._db is not None
            self._db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)",
                                 self._pending.items())
            self._pending = {}

    # The keys are BLAKE2b digests (uniform): four 26-bit slices of one are its four places in
    # the filter (written out: this runs for every key, and a loop costs twice as much).
    def _mark(self, k: bytes) -> None:
        bits, spots = int.from_bytes(k, "little"), self._filter
        spot = bits & _FILTER_MASK
        spots[spot >> 3] |= 1 << (spot & 7)
        spot = (bits >> 26) & _FILTER_MASK
        spots[spot >> 3] |= 1 << (spot & 7)
        spot = (bits >> 52) & _FILTER_MASK
        spots[spot >> 3] |= 1 << (spot & 7)
        spot = (bits >> 78) & _FILTER_MASK
        spots[spot >> 3] |= 1 << (spot & 7)

    def _maybe(self, k: bytes) -> bool:
        bits, spots = int.from_bytes(k, "little"), self._filter
        spot = bits & _FILTER_MASK
        if not spots[spot >> 3] & (1 << (spot & 7)):
            return False
        spot = (bits >> 26) & _FILTER_MASK
        if not spots[spot >> 3] & (1 << (spot & 7)):
            return False
        spot = (bits >> 52) & _FILTER_MASK
        if not spots[spot >> 3] & (1 << (spot & 7)):
            return False
        spot = (bits >> 78) & _FILTER_MASK
        return bool(spots[spot >> 3] & (1 << (spot & 7)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._memory = {}
        self._pending = {}
        self._filter = bytearray()


class ParentForest:
    """The parentUuid links of an upload's messages, to refuse cycles as they close.

    A union-find whose representative is always the root of its thread (the message whose own
    parent is not linked yet): linking m -> p closes a cycle exactly when p's root is m, which
    is true whatever order the messages arrive in (a CSV in any order, a session continued in
    another file). Nodes are digests of (sessionId, uuid), so a thread stays in its session;
    finds halve their path. Storage is a SeenSet: ~130 bytes per message with a parent, on disk
    past SPILL_AFTER."""

    def __init__(self, spill_after: int = SPILL_AFTER) -> None:
        self._up = SeenSet(spill_after)

    def _root(self, node: bytes) -> bytes:
        while (up := self._up.get_digest(node)) is not None:
            upper = self._up.get_digest(up)
            if upper is None:
                return up
            self._up.put_digest(node, upper)
            node = upper
        return node

    def link(self, session_id: str, uuid: str, parent: str) -> bool:
        """Record a message's parent; True (and nothing recorded) when that closes a cycle."""
        node = digest(f"{session_id}\0{uuid}")
        if self._up.get_digest(node) is not None:
            return False  # linked before: a duplicate uuid, reported as such
        root = self._root(digest(f"{session_id}\0{parent}"))
        if root == node:
            return True
        self._up.put_digest(node, root)
        return False

    def close(self) -> None:
        self._up.close()


class Collector:
    """The issues of one validation: the first MAX_LISTED_ISSUES of each kind listed, all
    counted."""

    def __init__(self) -> None:
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.errors_total = 0
        self.warnings_total = 0

    def add(self, problem: Issue) -> None:
        if problem.severity == "error":
            self.errors_total += 1
            if len(self.errors) < MAX_LISTED_ISSUES:
                self.errors.append(problem)
        else:
            self.warnings_total += 1
            if len(self.warnings) < MAX_LISTED_ISSUES:
                self.warnings.append(problem)


Check = Callable[[Any], tuple[IssueCode, str] | None]


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def check_date(value: Any) -> tuple[IssueCode, str] | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return IssueCode.INVALID_DATE, "the date has no time zone"
        if not EARLIEST_DATE <= value <= datetime.now(UTC) + FUTURE_TOLERANCE:
            return (IssueCode.DATE_OUT_OF_RANGE,
                    f"{value.isoformat()} is outside the dates dataport accepts (from "
                    f"{EARLIEST_DATE.date()} to a day from now)")
        return None
    if isinstance(value, str):
        return date_problem(value)
    return IssueCode.WRONG_TYPE, f"must be a date, not {_type_name(value)}"


#: the BID encoding's sign bit, and its special values' combination bits (11110 infinity,
#: 11111 NaN), in the high 64 bits of a Decimal128
_SIGN, _SPECIAL = 1 << 63, 0x1E


def check_money(value: Any) -> tuple[IssueCode, str] | None:
    if isinstance(value, Decimal128):
        high = int.from_bytes(value.bid[8:], "little")
        if not high & _SIGN and (high >> 58) & 0x1F < _SPECIAL:
            return None  # finite, not negative: read off the bits (to_decimal costs 10x more)
        number = value.to_decimal()
        if not number.is_finite():
            return IssueCode.INVALID_NUMBER, f"{number} is not a finite amount"
        if number < 0 or (number == 0 and number.is_signed()):
            return IssueCode.NEGATIVE_COST, f"a cost cannot be negative ({number})"
        return None
    if isinstance(value, str):
        return IssueCode.INVALID_NUMBER, f"{value[:40]!r} is not a number"
    return IssueCode.WRONG_TYPE, f"must be a decimal amount, not {_type_name(value)}"


def check_count(value: Any) -> tuple[IssueCode, str] | None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str):
            return IssueCode.INVALID_NUMBER, f"{value[:40]!r} is not a whole number"
        return IssueCode.WRONG_TYPE, f"must be a whole number, not {_type_name(value)}"
    return None if value >= 0 else (IssueCode.INVALID_NUMBER, f"cannot be negative ({value})")


def check_object_id(value: Any) -> tuple[IssueCode, str] | None:
    return None if isinstance(value, ObjectId) else (
        IssueCode.WRONG_TYPE, f"must be an ObjectId, not {_type_name(value)}")


class _OfType:
    """The check that a value is of one of `types` (a bool is not an int), or null."""

    def __init__(self, *types: type, nullable: bool = False) -> None:
        self.types = types
        self.nullable = nullable
        self.names = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
        #: the exact types that pass (record_problems' fast path)
        self.plain_types = frozenset(types) | ({type(None)} if nullable else set())

    def __call__(self, value: Any) -> tuple[IssueCode, str] | None:
        if (value is None and self.nullable) or (isinstance(value, self.types) and not (
                isinstance(value, bool) and bool not in self.types)):
            return None
        return IssueCode.WRONG_TYPE, f"must be {self.names}, not {_type_name(value)}"


def _of_type(*types: type, nullable: bool = False) -> Check:
    return _OfType(*types, nullable=nullable)


def _id(pattern: re.Pattern[str], what: str) -> Check:
    def check(value: Any) -> tuple[IssueCode, str] | None:
        if not isinstance(value, str):
            return IssueCode.WRONG_TYPE, f"must be a string, not {_type_name(value)}"
        if not pattern.fullmatch(value):
            return IssueCode.INVALID_ID, f"{value[:60]!r} is not a valid {what}"
        return None
    return check


def check_usage(value: Any) -> tuple[IssueCode, str] | None:
    if not isinstance(value, Mapping):
        return IssueCode.WRONG_TYPE, f"must be an object, not {_type_name(value)}"
    for key in TOKEN_KEYS:
        if key in value and value[key] is not None:
            found = check_count(value[key])
            if found:
                return found[0], f"{key} {found[1]}"
    return None


def check_message_type(value: Any) -> tuple[IssueCode, str] | None:
    if value in MESSAGE_TYPES:
        return None
    return (IssueCode.INVALID_MESSAGE_TYPE,
            f"{str(value)[:40]!r} is not a message type ({', '.join(MESSAGE_TYPES)})")


#: message types whose messageData is a Claude message (derived documents hold one block)
CLAUDE_MESSAGE_TYPES = ("user", "assistant")
#: string fields of content blocks, by block type
BLOCK_TEXT = {"text": "text", "thinking": "thinking"}


def check_claude_message(value: Any) -> tuple[IssueCode, str] | None:
    """A Claude message's content is a string or a list of blocks; what the display text and
    the thinking are made of must be strings."""
    if not isinstance(value, Mapping) or "content" not in value:
        return None
    content = value["content"]
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return (IssueCode.WRONG_TYPE,
                f"content must be a string or a list of blocks, not {_type_name(content)}")
    for index, block in enumerate(content):
        if not isinstance(block, Mapping):
            return (IssueCode.WRONG_TYPE,
                    f"content[{index}] must be a content block (an object), not "
                    f"{_type_name(block)}")
        name = BLOCK_TEXT.get(str(block.get("type")))
        if name is not None and name in block and not isinstance(block[name], str):
            return (IssueCode.WRONG_TYPE, f"content[{index}].{name} must be a string, not "
                                          f"{_type_name(block[name])}")
    return None


_TEXT = _of_type(str)
_BOOL = _of_type(bool)
_OBJECT = _of_type(dict)
#: (field, required, check) per record kind
FIELDS: dict[RecordKind, tuple[tuple[str, bool, Check], ...]] = {
    RecordKind.PROJECT: (
        ("_id", False, check_object_id), ("user_id", False, check_object_id),
        ("name", True, _TEXT), ("path", True, _TEXT), ("description", False, _TEXT),
        ("createdAt", False, check_date), ("updatedAt", False, check_date),
        ("stats", False, _OBJECT),
    ),
    RecordKind.SESSION: (
        ("sessionId", True, _id(SESSION_ID, "session id")),
        ("_id", False, check_object_id), ("projectId", False, check_object_id),
        ("startedAt", False, check_date), ("endedAt", False, check_date),
        ("messageCount", False, check_count), ("totalCost", False, check_money),
        ("inputTokens", False, check_count), ("outputTokens", False, check_count),
        ("totalTokens", False, check_count), ("toolsUsed", False, check_count),
        ("summary", False, _of_type(str, nullable=True)),
        ("createdAt", False, check_date), ("updatedAt", False, check_date),
    ),
    RecordKind.MESSAGE: (
        ("uuid", True, _id(MESSAGE_UUID, "message uuid")),
        ("sessionId", True, _id(SESSION_ID, "session id")),
        ("type", True, check_message_type), ("timestamp", True, check_date),
        ("_id", False, check_object_id), ("parentUuid", False, _of_type(str, nullable=True)),
        ("isSidechain", False, _BOOL), ("content", False, _TEXT),
        ("messageData", False, _OBJECT), ("thinking", False, _TEXT),
        ("usage", False, check_usage), ("model", False, _of_type(str, nullable=True)),
        ("costUsd", False, check_money), ("durationMs", False, check_count),
        ("requestId", False, _of_type(str, nullable=True)),
        ("userType", False, _of_type(str, nullable=True)),
        ("cwd", False, _of_type(str, nullable=True)),
        ("version", False, _of_type(str, nullable=True)),
        ("gitBranch", False, _of_type(str, nullable=True)),
        ("contentHash", False, _of_type(str)), ("createdAt", False, check_date),
    ),
}


def located(record: ImportRecord, code: IssueCode, message: str, *, field: str | None = None,
            severity: str = "error") -> Issue:
    where = record.location
    return issue(code, f"{where}: {message}", file=where.file, line=where.line, path=where.path,
                 field=field, severity=severity)


#: per kind: each field's check with the exact types that pass its `_of_type` check without a
#: call (none for the other checks), and the fields a record must have
_SPECS = {kind: {name: (check.plain_types if isinstance(check, _OfType) else frozenset(), check)
                 for name, _, check in fields} for kind, fields in FIELDS.items()}
_REQUIRED = {kind: frozenset(name for name, required, _ in fields if required)
             for kind, fields in FIELDS.items()}


def _clean(kind: RecordKind, doc: Mapping[str, Any]) -> bool:
    """True when `record_problems` finds nothing in the record's fields and field names: one
    pass over the fields it has (the common case; any doubt and the full check decides)."""
    specs = _SPECS[kind]
    for name, value in doc.items():
        spec = specs.get(name)
        if spec is None:
            if name[:1] == "$" or "." in name:
                return False
        elif type(value) not in spec[0] and spec[1](value) is not None:
            return False
    return doc.keys() >= _REQUIRED[kind]


def record_problems(record: ImportRecord) -> list[Issue]:
    """Every error one record has on its own, located: its fields (FIELDS), its field names, the
    shape of a message's Claude message. This is the whole per-record check: validation reports
    it, and a later pass over the upload (staging) can call it again on each record it reads.
    Checks across records (duplicates, orphans, parent cycles) are Checker's. (On every
    record's path, twice: a clean record is recognised in one pass over its fields.)"""
    doc = record.doc
    if _clean(record.kind, doc) and (
            record.kind is not RecordKind.MESSAGE or doc.get("type") not in CLAUDE_MESSAGE_TYPES
            or check_claude_message(doc.get("messageData")) is None):
        return []
    problems: list[Issue] = []
    for name, required, check in FIELDS[record.kind]:
        if name not in doc:
            if required:
                problems.append(located(record, IssueCode.MISSING_FIELD,
                                        f"the {record.kind.value} has no {name}", field=name))
            continue
        found = check(doc[name])
        if found is not None:
            problems.append(located(record, found[0], f"{name}: {found[1]}", field=name))
    for name in doc:
        if name.startswith("$") or "." in name:
            # operators and paths to MongoDB: such a field could not be read or updated by name
            problems.append(located(record, IssueCode.INVALID_FIELD_NAME,
                                    f"{name[:60]!r} cannot be the name of a {record.kind.value} "
                                    "field (it starts with $ or holds a dot)", field=name[:60]))
    if record.kind is RecordKind.MESSAGE and doc.get("type") in CLAUDE_MESSAGE_TYPES:
        found = check_claude_message(doc.get("messageData"))
        if found is not None:
            problems.append(located(record, found[0], f"messageData: {found[1]}",
                                    field="messageData"))
    return problems


class Checker:
    """The per-record checks and what the report counts, for one pass. `warnings=False` leaves
    out the checks that can only warn (a pass that refuses errors only: recheck)."""

    def __init__(self, collector: Collector, *, warnings: bool = True,
                 spill_after: int = SPILL_AFTER) -> None:
        self.collector = collector
        self.warnings = warnings
        self.counts = dict.fromkeys(RecordKind, 0)
        self.projects: set[object] = set()
        self.sessions = SeenSet(spill_after)
        self.uuids = SeenSet(spill_after)
        self.parents = ParentForest(spill_after)
        self.project_key = b""
        #: [start, end] of message times, and of session times (used when there is no message)
        self.message_range: list[datetime] = []
        self.session_range: list[datetime] = []

    def close(self) -> None:
        self.sessions.close()
        self.uuids.close()
        self.parents.close()

    def _report(self, record: ImportRecord, code: IssueCode, message: str, *,
                field: str | None = None, severity: str = "error") -> None:
        self.collector.add(located(record, code, message, field=field, severity=severity))

    def check(self, record: ImportRecord) -> None:
        problems = record_problems(record)
        for problem in problems:
            self.collector.add(problem)
        ok = not problems
        doc = record.doc
        if record.kind is RecordKind.PROJECT:
            key = doc.get("_id") if doc.get("_id") is not None else ("path", doc.get("path"))
            self.projects.add(key)
            self.project_key = digest(repr(key))
            self.counts[RecordKind.PROJECT] = len(self.projects)
            return
        if record.kind is RecordKind.SESSION:
            self._session(record, ok)
            return
        self.counts[RecordKind.MESSAGE] += 1
        uuid, session_id = doc.get("uuid"), doc.get("sessionId")
        if isinstance(uuid, str) and not self.uuids.add(uuid):
            self._report(record, IssueCode.DUPLICATE_UUID,
                         f"the uuid {uuid} appears more than once in the upload", field="uuid")
        else:
            self._parent(record)
        if isinstance(session_id, str) and self.sessions.get(session_id) is None:
            self._report(record, IssueCode.ORPHAN_MESSAGE,
                         f"the message belongs to session {session_id}, which the upload does "
                         "not hold", field="sessionId")
        if ok:
            _widen(self.message_range, doc.get("timestamp"))
            if (self.warnings and isinstance(doc.get("contentHash"), str)
                    and derived_ref(uuid) is None
                    and doc["contentHash"] != hash_of(doc)):
                self._report(record, IssueCode.CONTENT_HASH_MISMATCH,
                             "contentHash is not the SHA-256 of {uuid, type, timestamp, "
                             "content}; it is imported as it is, but change detection will see "
                             "this message as changed", field="contentHash", severity="warning")

    def _parent(self, record: ImportRecord) -> None:
        uuid, session_id, parent = (record.doc.get(name) for name in
                                    ("uuid", "sessionId", "parentUuid"))
        if (isinstance(uuid, str) and isinstance(session_id, str) and isinstance(parent, str)
                and self.parents.link(session_id, uuid, parent)):
            self._report(record, IssueCode.PARENT_CYCLE,
                         f"parentUuid {parent[:60]} leads back to message {uuid[:60]}: a "
                         "message cannot be its own ancestor", field="parentUuid")

    def _session(self, record: ImportRecord, ok: bool) -> None:
        session_id = record.doc.get("sessionId")
        if not isinstance(session_id, str):
            return
        project = self.project_key or b"\0"
        known = self.sessions.get(session_id)
        if known is None:
            self.sessions.add(session_id, project)
            self.counts[RecordKind.SESSION] += 1
        elif known != project:
            self._report(record, IssueCode.SESSION_PROJECT_CONFLICT,
                         f"session {session_id} appears in two different projects",
                         field="sessionId")
        if ok:
            for name in ("startedAt", "endedAt"):
                _widen(self.session_range, record.doc.get(name))

    @property
    def date_range(self) -> DateRange:
        times = self.message_range or self.session_range
        return DateRange(start=times[0], end=times[1]) if times else DateRange()


def _widen(times: list[datetime], moment: object) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        return
    if not times:
        times.extend((moment, moment))
    else:
        times[0], times[1] = min(times[0], moment), max(times[1], moment)


#: what sees each record of a clean upload as validation streams it (the import stages it): made
#: for the source once it is open (`session_grouped` says how it may be staged)
RecordSink = Callable[[ImportRecord], None]


class _SinkFailed(Exception):
    """What the sink raised, carried past the reader's error handling (not the upload's
    fault: it propagates as it was raised)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def validate(source: ImportSource | Opener, filename: str | None = None,
             options: ImportOptions | None = None, limits: ImportLimits | None = None, *,
             password: bytes | None = None,
             sink: Callable[[ImportSource], RecordSink] | None = None,
             spill_after: int = SPILL_AFTER) -> ValidationReport:
    """One streaming pass over an upload (an ImportSource, or an opener and its filename; the
    password opens an encrypted zip) into a report. Never raises on bad input. `sink` gets
    each record once it has passed the checks, as long as no error has been found (a report
    with errors means the records sunk so far must be forgotten); what it raises propagates.
    `spill_after`: keys the cross-record checks hold in memory before they move to disk (a
    restore, whose backups have no size limit, holds few: its memory stays flat)."""
    collector = Collector()
    if not isinstance(source, ImportSource):
        try:
            source = open_import(source, filename or "upload", options, limits,
                                 password=password)
        except BadInput as exc:
            collector.add(exc.issue)
            return _report(collector, None)
        except UploadChanged:
            raise  # not the upload's fault, nor a report's matter: the job stops
        except Exception as exc:
            collector.add(_internal(exc, filename))
            return _report(collector, None)
    checker = Checker(collector, spill_after=spill_after)
    into = sink(source) if sink is not None else None
    try:
        for record in source.records(on_issue=collector.add):
            checker.check(record)
            if into is not None and not collector.errors_total:
                try:
                    into(record)
                except Exception as exc:
                    raise _SinkFailed(exc) from exc
    except _SinkFailed as failed:
        raise failed.error from None
    except UploadChanged:
        raise
    except Exception as exc:  # a reader bug must not turn into an unanswered upload
        collector.add(_internal(exc, source.filename))
    finally:
        checker.close()
    skipped = sum(source.skipped.values())
    if skipped:
        kinds = ", ".join(f"{count} {kind}" for kind, count in source.skipped.most_common())
        kept = ", ".join(f"{count} {kind}" for kind, count in source.kept.most_common())
        collector.add(issue(IssueCode.SKIPPED_RECORDS,
                            f"{skipped} records of types dataport does not import were skipped "
                            f"({kinds})" + (f"; kept as messages because a message's thread "
                                            f"runs through them: {kept}" if kept else ""),
                            file=source.filename, severity="warning"))
    if not any(checker.counts.values()) and collector.errors_total == 0:
        collector.add(issue(IssueCode.NO_RECORDS,
                            f"{source.filename} holds no project, session or message to import",
                            file=source.filename))
    return _report(collector, source, checker, skipped)


def recheck(records: Iterable[ImportRecord], *,
            spill_after: int = SPILL_AFTER) -> Iterator[ImportRecord]:
    """The records again through validation's checks, where they are about to be written
    (staging): defence in depth behind the pinned upload, and cheap. The first error raises
    RecordRefused and nothing after it is yielded. `spill_after` as for `validate`."""
    collector = Collector()
    # a warning does not stop a record
    checker = Checker(collector, warnings=False, spill_after=spill_after)
    try:
        for record in records:
            checker.check(record)
            if collector.errors_total:
                problem = collector.errors[0]
                raise RecordRefused(f"A record fails the checks validation made, so nothing was "
                                    f"imported: {problem.message}",
                                    details={"issue": problem.wire()})
            yield record
    finally:
        checker.close()


def _internal(exc: Exception, filename: str | None) -> Issue:
    return issue(IssueCode.INTERNAL_ERROR,
                 f"the upload could not be read ({type(exc).__name__}: {str(exc)[:200]})",
                 file=filename)


def _report(collector: Collector, source: ImportSource | None, checker: Checker | None = None,
            skipped: int = 0) -> ValidationReport:
    counts = ImportCounts()
    date_range = DateRange()
    if checker is not None:
        counts = ImportCounts(projects=checker.counts[RecordKind.PROJECT],
                              sessions=checker.counts[RecordKind.SESSION],
                              messages=checker.counts[RecordKind.MESSAGE],
                              unknown_records=skipped)
        date_range = checker.date_range
    return ValidationReport(
        format=source.format if source else None, version=source.version if source else None,
        counts=counts, date_range=date_range, errors=collector.errors,
        warnings=collector.warnings, errors_total=collector.errors_total,
        warnings_total=collector.warnings_total)
