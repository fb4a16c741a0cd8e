"""Source documents as they come from MongoDB.

Exports must be lossless, so the raw BSON document (ObjectId, Decimal128, aware datetimes and any
field ClaudeLens adds later) is what flows from the source to the format writers. `RawDocument`
names that shape; the friendly formats read the fields they show through the accessors below.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from bson.decimal128 import Decimal128

RawDocument = Mapping[str, Any]


class MessageLayout(StrEnum):
    """Where a ClaudeLens database keeps its messages: one `messages` collection, or monthly
    `messages_YYYY_MM` collections (newer deployments; dataport.source.collections)."""

    SINGLE = "single"
    MONTHLY = "monthly"


#: a Claude Code status line (compaction boundary, hook summary, API error) kept from a
#: transcript, as ClaudeLens' own ingest keeps it (docs/imports.md)
SYSTEM_TYPE = "system"
MESSAGE_TYPES = ("user", "assistant", "tool_use", "tool_result", SYSTEM_TYPE)


def as_decimal(value: object) -> Decimal | None:
    """Decimal128 / Decimal / int / str to an exact Decimal (never through float)."""
    if value is None:
        return None
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    raise TypeError(f"not a decimal: {type(value).__name__}")


_DERIVED = re.compile(r"(?P<origin>.+)_(?P<kind>tool|result)_(?P<index>\d+)")


@dataclass(frozen=True)
class DerivedRef:
    """Where a derived tool document came from: `<origin>_tool_<i>` / `<origin>_result_<i>`."""

    origin: str
    kind: str  # "tool" (a tool_use block of an assistant message) or "result" (a tool_result)
    index: int


def derived_ref(uuid: object) -> DerivedRef | None:
    """The origin of a derived tool document, None for a message Claude Code wrote itself."""
    if not isinstance(uuid, str):
        return None
    match = _DERIVED.fullmatch(uuid)
    if match is None:
        return None
    return DerivedRef(match["origin"], match["kind"], int(match["index"]))


def strip_derived(uuid: object) -> str | None:
    """A uuid with any derived suffix removed: the message Claude Code knows."""
    if not isinstance(uuid, str):
        return None
    ref = derived_ref(uuid)
    return ref.origin if ref else uuid


# --- Claude Code's own line keys (docs/imports.md, "where every part of a line is stored") -----

#: message field holding what a Claude Code transcript line had beyond the data model
CLAUDE_CODE = "claudeCode"
#: message field naming the price source of a cost dataport computed (absent: reported)
COST_COMPUTED_BY = "costComputedBy"


#: keys of a Claude Code line (kept in claudeCode.fields, or a summary line's) that name a message
#: of the session: a copy's derived ids replace them as they replace uuid and parentUuid
TRANSCRIPT_UUID_KEYS = ("uuid", "parentUuid", "logicalParentUuid", "sourceToolAssistantUUID",
                        "leafUuid")
#: keys of a Claude Code line that name the session
TRANSCRIPT_SESSION_KEYS = ("sessionId",)


def claude_code(message: RawDocument) -> Mapping[str, Any]:
    """The `claudeCode` object of a message ({} when it came from elsewhere)."""
    value = message.get(CLAUDE_CODE)
    return value if isinstance(value, Mapping) else {}


def transcript_field(message: RawDocument, name: str) -> Any:
    """A key of the message's Claude Code line that the data model has no field for (None when
    the line had none)."""
    fields = claude_code(message).get("fields")
    return fields.get(name) if isinstance(fields, Mapping) else None


def is_meta(message: RawDocument) -> bool:
    """Text Claude Code put in the user's turn itself (a command's expansion, a reminder)."""
    return transcript_field(message, "isMeta") is True


def is_compact_summary(message: RawDocument) -> bool:
    """The summary Claude Code wrote when it compacted the conversation."""
    return transcript_field(message, "isCompactSummary") is True


def agent_id(message: RawDocument) -> str | None:
    """The sub-agent a line belongs to (Claude Code 2.x), None for the main conversation."""
    value = transcript_field(message, "agentId")
    return value if isinstance(value, str) and value else None


def transcript_file(message: RawDocument) -> str | None:
    """Where a sub-agent line's file lies relative to its session's folder
    (`subagents/agent-<id>.jsonl`); None for the session's main file."""
    value = claude_code(message).get("file")
    return value if isinstance(value, str) and value else None


def transcript_digest(message: RawDocument) -> str | None:
    """What a message keeps of its Claude Code line beyond the content hash (claudeCode, and a
    cost computed from its usage with the price source's name), as a digest: how a merge
    tells that the upload brings a line's keys (or its computed cost) a stored message lacks.
    None for a message with no claudeCode."""
    kept = message.get(CLAUDE_CODE)
    if not isinstance(kept, Mapping):
        return None
    cost = message.get("costUsd")
    shown = {"claudeCode": kept, "costUsd": None if cost is None else str(cost),
             COST_COMPUTED_BY: message.get(COST_COMPUTED_BY)}
    text = json.dumps(shown, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
