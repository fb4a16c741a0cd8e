"""From what a file holds to the BSON types the collections use (DATA-MODEL.md).

Readers put a document's fields through `coerce` so every source yields one form: dates aware UTC
datetimes, money Decimal128, ids ObjectId. Coercion only converts what is exactly equivalent (an
ISO string with a zone, an exact decimal, a 24-hex id); anything else is left as it is, so
validation can say precisely what is wrong with it instead of a reader guessing.

Messages get their contentHash here when the input lacks it, and sessions that a source does not
carry (transcripts, a messages-only CSV) are synthesised from their messages by `SessionTotals`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128

from dataport.formats.common import BoundedMemo
from dataport.models.documents import CLAUDE_CODE, derived_ref
from dataport.models.imports import IssueCode
from dataport.models.records import RecordKind
from dataport.source.content_hash import hash_of

DATE_FIELDS: dict[RecordKind, tuple[str, ...]] = {
    RecordKind.PROJECT: ("createdAt", "updatedAt"),
    RecordKind.SESSION: ("startedAt", "endedAt", "createdAt", "updatedAt"),
    RecordKind.MESSAGE: ("timestamp", "createdAt"),
}
DECIMAL_FIELDS: dict[RecordKind, tuple[str, ...]] = {
    RecordKind.PROJECT: (),
    RecordKind.SESSION: ("totalCost",),
    RecordKind.MESSAGE: ("costUsd",),
}
OBJECT_ID_FIELDS: dict[RecordKind, tuple[str, ...]] = {
    RecordKind.PROJECT: ("_id", "user_id"),
    RecordKind.SESSION: ("_id", "projectId"),
    RecordKind.MESSAGE: ("_id",),
}
#: every money field of any record: kept exact by the JSON parsers
MONEY_KEYS = frozenset(name for names in DECIMAL_FIELDS.values() for name in names)

_HEX_ID = re.compile(r"[0-9a-fA-F]{24}")
#: API responses remembered per session to count a streamed reply once
RECENT_RESPONSES = 8


def parse_date(text: str) -> datetime | None:
    """An aware UTC datetime from ISO 8601 with a zone (`Z` or an offset); None otherwise."""
    try:
        moment = datetime.fromisoformat(text.strip())
        # year 1 at +01:00 (or 9999 at -01:00) has no UTC datetime: OverflowError
        return None if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def date_problem(text: str) -> tuple[IssueCode, str]:
    """Why a string is not a date we accept, for the person fixing the file."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return IssueCode.INVALID_DATE, f"{text[:40]!r} is not an ISO 8601 date and time"
    if moment.tzinfo is None:
        return IssueCode.INVALID_DATE, f"{text[:40]!r} has no time zone (add Z for UTC)"
    if parse_date(text) is None:
        return IssueCode.DATE_OUT_OF_RANGE, f"{text[:40]!r} is beyond the dates UTC can hold"
    return IssueCode.INVALID_DATE, f"{text[:40]!r} is not a date"


def parse_decimal(value: object) -> Decimal128 | None:
    """Decimal128 holding exactly the given digits (never through float); None if not a finite
    number or too precise for Decimal128 (34 digits)."""
    if isinstance(value, Decimal128):
        return value
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, str) and value.strip():
            number = Decimal(value.strip())
        else:
            return None
        if not number.is_finite():
            return None
        return Decimal128(number)
    except (InvalidOperation, ValueError, ArithmeticError):
        return None


def coerce(kind: RecordKind, doc: dict[str, Any]) -> dict[str, Any]:
    """Convert the typed fields of a record in place (see the module docstring)."""
    for name in DATE_FIELDS[kind]:
        value = doc.get(name)
        if isinstance(value, str):
            moment = parse_date(value)
            if moment is not None:
                doc[name] = moment
        elif isinstance(value, datetime) and value.tzinfo is not None:
            doc[name] = value.astimezone(UTC)
    for name in DECIMAL_FIELDS[kind]:
        value = doc.get(name)
        if value is not None and not isinstance(value, Decimal128):
            number = parse_decimal(value)
            if number is not None:
                doc[name] = number
    for name in OBJECT_ID_FIELDS[kind]:
        value = doc.get(name)
        if isinstance(value, str) and _HEX_ID.fullmatch(value):
            doc[name] = ObjectId(value)
    return doc


def finish_message(doc: dict[str, Any]) -> dict[str, Any]:
    """contentHash computed the ClaudeLens way when missing (derived tool documents carry
    none)."""
    if "contentHash" not in doc and derived_ref(doc.get("uuid")) is None:
        digest = hash_of(doc)
        if digest is not None:
            doc["contentHash"] = digest
    return doc


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class SessionTotals:
    """A session document synthesised from its messages, the way ClaudeLens aggregates them:
    first/last message time, every message document counted (derived tool documents too), cost
    and tokens of the assistant replies (input counts cache reads and writes), tool_use
    documents as tools used. Invalid figures count as nothing (validation reports them on the
    message).

    One API response streamed over several lines shares `messageData.id` and repeats its usage
    (and cost): it is counted once, with the figures of its last line. Lines of one response
    follow each other, so a memo of the last few ids is enough (and keeps a folder of thousands
    of sessions, totalled at once, small)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.started: datetime | None = None
        self.ended: datetime | None = None
        self.messages = 0
        self.cost = Decimal(0)
        self.input_tokens = 0
        self.output_tokens = 0
        self.tools = 0
        self.summary: str | None = None
        #: a transcript's summary lines, verbatim (kept in the session's claudeCode.summaries)
        self.summary_lines: list[dict[str, Any]] = []
        #: each summary line's place: the number of stored lines of its file before it
        self.summary_orders: list[int] = []
        self._responses: BoundedMemo[str, tuple[Decimal, int, int]] = BoundedMemo(RECENT_RESPONSES)

    def add(self, doc: Mapping[str, Any]) -> None:
        self.messages += 1
        moment = doc.get("timestamp")
        if isinstance(moment, datetime) and moment.tzinfo is not None:
            self.started = moment if self.started is None else min(self.started, moment)
            self.ended = moment if self.ended is None else max(self.ended, moment)
        kind = doc.get("type")
        if kind == "tool_use":
            self.tools += 1
        if kind != "assistant":
            return
        cost_value = doc.get("costUsd")
        cost = cost_value.to_decimal() if isinstance(cost_value, Decimal128) else Decimal(0)
        if not cost.is_finite() or cost < 0:
            cost = Decimal(0)  # the message is reported by validation, not its session too
        usage = doc.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}
        tokens_in = (_count(usage.get("input_tokens"))
                     + _count(usage.get("cache_creation_input_tokens"))
                     + _count(usage.get("cache_read_input_tokens")))
        tokens_out = _count(usage.get("output_tokens"))
        data = doc.get("messageData")
        response = data.get("id") if isinstance(data, Mapping) else None
        if isinstance(response, str) and response:
            earlier = self._responses.get(response)
            if earlier is not None:
                self.cost -= earlier[0]
                self.input_tokens -= earlier[1]
                self.output_tokens -= earlier[2]
            self._responses.put(response, (cost, tokens_in, tokens_out))
        self.cost += cost
        self.input_tokens += tokens_in
        self.output_tokens += tokens_out

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"sessionId": self.session_id}
        if self.started is not None:
            doc["startedAt"] = self.started
            doc["endedAt"] = self.ended
        doc.update({
            "messageCount": self.messages,
            "totalCost": Decimal128(self.cost),
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.input_tokens + self.output_tokens,
            "toolsUsed": self.tools,
        })
        if self.summary:
            doc["summary"] = self.summary
        if self.summary_lines:
            doc[CLAUDE_CODE] = {"summaries": self.summary_lines}
            if any(self.summary_orders):  # recorded only when one was not at the top
                doc[CLAUDE_CODE]["summaryOrders"] = self.summary_orders
        return doc
