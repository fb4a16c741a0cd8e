"""Reading raw ClaudeLens documents the same way in every writer.

One place for the conversions the formats share: canonical Extended JSON (lossless), plain JSON
(friendly, exact decimals), ISO timestamps, exact decimal strings, safe path segments, and the
parts of a message document that several formats show (content blocks, usage, model, tool
names, derived tool documents).
"""

from __future__ import annotations

import binascii
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Generic, TypeVar

import orjson
from bson import ObjectId, json_util
from bson.decimal128 import Decimal128
from bson.json_util import CANONICAL_JSON_OPTIONS, RELAXED_JSON_OPTIONS, JSONOptions

from dataport.formats.extjson import (
    canonical_json_bytes,
    decimal128_positional,
    finite_decimal128_text,
)
from dataport.models.documents import (
    SYSTEM_TYPE,
    RawDocument,
    as_decimal,
    is_compact_summary,
    is_meta,
    transcript_field,
)

#: how to read back what `canonical_json` wrote: dates come back aware, in UTC, as they went in
EXTENDED_JSON_READ_OPTIONS: Final[JSONOptions] = CANONICAL_JSON_OPTIONS.with_options(
    tz_aware=True, tzinfo=UTC)


def canonical_json(document: object) -> bytes:
    """Canonical Extended JSON (UTF-8, compact): every BSON type survives a round trip through
    `json_util.loads(..., json_options=EXTENDED_JSON_READ_OPTIONS)`. BSON dates hold
    milliseconds, so that is the precision written (as MongoDB stores it). Byte for byte what
    `json_util.dumps(..., ensure_ascii=False, separators=(",", ":"))` writes, through orjson
    (see formats/extjson.py)."""
    return canonical_json_bytes(document)


def _plain_default(value: object) -> object:
    if type(value) is Decimal128:
        text = finite_decimal128_text(value)  # str(value.to_decimal()), without building it
        if text is not None:
            return orjson.Fragment(text)
    if isinstance(value, Decimal128):
        value = value.to_decimal()
    if isinstance(value, Decimal):
        # a JSON number with exactly the stored digits (never through float)
        return orjson.Fragment(str(value)) if value.is_finite() else str(value)
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return json_util.default(value, json_options=RELAXED_JSON_OPTIONS)


def plain_json(value: object, *, indent: bool = False) -> bytes:
    """Plain JSON for friendly formats: ObjectId as its hex string, dates as ISO strings,
    decimals as exact JSON numbers, anything rarer in relaxed Extended JSON."""
    option = orjson.OPT_PASSTHROUGH_DATETIME | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=_plain_default, option=option)


def as_utc(value: object) -> datetime | None:
    """An aware UTC datetime (a naive one is UTC, pymongo's default), None for anything else."""
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_ms(value: object) -> str | None:
    """ISO 8601 in UTC with milliseconds and `Z` (Claude Code's own timestamp form). A naive
    datetime is UTC (pymongo's default when the client is not tz-aware)."""
    if type(value) is datetime and (value.tzinfo is UTC or value.tzinfo is None):
        # orjson writes `"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"` 8x faster than isoformat
        text = orjson.dumps(value, option=_ISO_UTC)
        return (text[1:20] + b".000Z" if len(text) == 22 else text[1:24] + b"Z").decode()
    moment = as_utc(value)
    if moment is None:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


_ISO_UTC: Final = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def decimal_text(value: object) -> str:
    """An exact decimal string in positional notation (`0.0000001`, never `1E-7`); "" if absent."""
    if type(value) is Decimal128:
        return decimal128_positional(value)
    number = as_decimal(value)
    return "" if number is None else format(number, "f")


_UNSAFE_IN_SEGMENT = re.compile(r"[/\\:\x00-\x1f\x7f]")


def safe_segment(name: str, *, fallback: str, max_chars: int | None = None) -> str:
    """One path segment for a zip member: separators, colons and control characters become
    `-` (so a segment can never climb out of its folder), `.`/`..`/empty become the fallback."""
    segment = _UNSAFE_IN_SEGMENT.sub("-", unicodedata.normalize("NFC", name)).strip()
    if max_chars is not None:
        segment = segment[:max_chars].rstrip()
    return fallback if segment in {"", ".", ".."} else segment


# --- message documents -------------------------------------------------------------------------

def message_data(message: RawDocument) -> Mapping[str, Any] | None:
    data = message.get("messageData")
    return data if type(data) is dict or isinstance(data, Mapping) else None


_TOOL_BLOCKS: Final = frozenset({"tool_use", "tool_result"})


def is_block(value: object) -> bool:
    """True for a single content block (what a derived document's messageData holds)."""
    return ((type(value) is dict or isinstance(value, Mapping))
            and value.get("type") in _TOOL_BLOCKS)


def content_blocks(message: RawDocument) -> list[Mapping[str, Any]]:
    """The Claude content blocks of a message: messageData.content, or messageData itself when
    it is one block (derived tool documents); [] when the content is a plain string."""
    data = message_data(message)
    if data is None:
        return []
    if is_block(data):
        return [data]
    content = data.get("content")
    if type(content) is list or (isinstance(content, Sequence)
                                 and not isinstance(content, str | bytes)):
        return [block for block in content
                if type(block) is dict or isinstance(block, Mapping)]
    return []


def block_key(block: Mapping[str, Any]) -> str | None:
    """Identity of a tool block: the tool_use id, for both the call and its result."""
    kind = block.get("type")
    ident = block.get("id") if kind == "tool_use" else block.get("tool_use_id")
    if kind in {"tool_use", "tool_result"} and isinstance(ident, str):
        return f"{kind}:{ident}"
    return None


def usage_of(message: RawDocument) -> Mapping[str, Any]:
    """Token usage: the top-level field, else the one inside messageData."""
    usage = message.get("usage")
    if type(usage) is dict:
        return usage
    if not isinstance(usage, Mapping):
        data = message_data(message)
        usage = data.get("usage") if data is not None else None
    return usage if type(usage) is dict or isinstance(usage, Mapping) else {}


def model_of(message: RawDocument) -> str | None:
    model = message.get("model")
    if type(model) is str and model:
        return model
    if not isinstance(model, str):
        data = message_data(message)
        model = data.get("model") if data is not None else None
    return model if isinstance(model, str) and model else None


def _image_word(block: Mapping[str, Any]) -> str:
    del block
    return "[image]"


def text_of(value: object, *,
            image: Callable[[Mapping[str, Any]], str] = _image_word) -> str:
    """Display text of a tool result's content (a string or a list of blocks); `image` gives
    the text that stands for an image block."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        parts = []
        for item in value:
            if isinstance(item, Mapping) and item.get("type") == "text":
                parts.append(str(item.get("text", "")))
            elif isinstance(item, Mapping) and item.get("type") == "image":
                parts.append(image(item))
            else:
                parts.append(plain_json(item).decode("utf-8"))
        return "\n".join(parts)
    return plain_json(value).decode("utf-8")


K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """A small LRU map: remembers the recent past of a stream without growing with it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)


class ToolNames:
    """tool_use id -> tool name for the recent past, so a tool result (which only carries the
    id) can say which tool it answers. Bounded: a result whose call is long gone shows no name."""

    def __init__(self, limit: int = 4096) -> None:
        self._names: BoundedMemo[str, str] = BoundedMemo(limit)
        self._paths: BoundedMemo[str, str] = BoundedMemo(limit)

    def learn(self, blocks: Sequence[Mapping[str, Any]]) -> None:
        for block in blocks:
            if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                self._names.put(block["id"], str(block.get("name") or ""))
                path = tool_path(block)
                if path:
                    self._paths.put(block["id"], path)

    def path_for(self, block: Mapping[str, Any]) -> str | None:
        """The file a tool call works on (Read, Write, Edit...), for its call or its result."""
        if block.get("type") == "tool_use":
            return tool_path(block)
        ident = block.get("tool_use_id")
        return self._paths.get(ident) if isinstance(ident, str) else None

    def name_for(self, block: Mapping[str, Any]) -> str | None:
        if block.get("type") == "tool_use":
            name = block.get("name")
            return str(name) if name else None
        if block.get("type") == "tool_result" and isinstance(block.get("tool_use_id"), str):
            return self._names.get(block["tool_use_id"]) or None
        return None

    def names_in(self, blocks: Sequence[Mapping[str, Any]]) -> list[str]:
        """Tool names of a message's blocks, in order, without repeats."""
        names: list[str] = []
        for block in blocks:
            name = self.name_for(block)
            if name and name not in names:
                names.append(name)
        return names


#: the input keys that name the file a Claude Code tool reads or writes
PATH_KEYS: Final = ("file_path", "notebook_path", "path")


def tool_path(block: Mapping[str, Any]) -> str | None:
    """The file a tool call's input names, None when it names none."""
    tool_input = block.get("input")
    if not isinstance(tool_input, Mapping):
        return None
    for key in PATH_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def message_thinking(message: RawDocument, blocks: list[Mapping[str, Any]]) -> str:
    """The message's thinking: the stored concatenation, else its thinking blocks."""
    thinking = message.get("thinking")
    if isinstance(thinking, str) and thinking.strip():
        return thinking
    return "\n\n".join(str(b.get("thinking") or "") for b in blocks
                       if b.get("type") == "thinking").strip()


def plain_content(message: RawDocument) -> str:
    """The text of a message without content blocks: messageData.content, else `content`."""
    data = message_data(message)
    content: object = data.get("content") if data is not None else None
    return content if isinstance(content, str) else str(message.get("content") or "")


def count_text(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "—"


# --- what a message is to a reader: the person's words, or lines Claude Code added -------------

#: how the automatic compaction summary starts (Claude Code 1.0.x and 2.x); recognised only for
#: data stored before `isCompactSummary` was kept
COMPACTION_OPENING: Final = "This session is being continued from a previous conversation"
#: how Claude Code's caveat before local-command output starts (stored before `isMeta` was kept)
CAVEAT_OPENING: Final = "Caveat: The messages below were generated by the user while running"


def message_role(message: RawDocument) -> str:
    """`summary` for the automatic compaction summary (`isCompactSummary`), `context` for the
    lines Claude Code adds itself (`isMeta`: command expansions, caveats; `system`: its status
    notes), else the message's own `type`. Data stored before the flags were kept is recognised
    by Claude Code's fixed opening words. Only user and system lines are ever summaries or
    context: a reply is the model's own words."""
    kind = str(message.get("type") or "message")
    if kind == SYSTEM_TYPE:
        return "context"
    if kind != "user":
        return kind
    if is_compact_summary(message):
        return "summary"
    if is_meta(message):
        return "context"
    text = _first_text(message)
    if text.startswith(COMPACTION_OPENING):
        return "summary"
    if text.startswith(CAVEAT_OPENING):
        return "context"
    return kind


def context_note(message: RawDocument, added: str) -> str:
    """What a reader is told about a context message: `added` for a line Claude Code put in the
    user's turn, the kind of note for one of its status lines (`system`, by its subtype)."""
    if message.get("type") != SYSTEM_TYPE:
        return added
    line_type = transcript_field(message, "type")
    if isinstance(line_type, str) and line_type != SYSTEM_TYPE:
        # a line of a type the import skips, kept because the thread runs through it
        data = transcript_field(message, "data")
        what = data.get("type") if isinstance(data, Mapping) else None
        kind = f" ({what.replace('_', ' ')})" if isinstance(what, str) and what else ""
        return (f"Claude Code {line_type.replace('_', ' ')} line{kind}, kept because the "
                f"conversation's thread runs through it, not part of the conversation")
    subtype = transcript_field(message, "subtype")
    kind = f" ({subtype.replace('_', ' ')})" if isinstance(subtype, str) and subtype else ""
    return f"Claude Code status note{kind}, not part of the conversation"


def _first_text(message: RawDocument) -> str:
    blocks = content_blocks(message)
    if not blocks:
        return plain_content(message).lstrip()
    first = blocks[0]
    return str(first.get("text") or "").lstrip() if first.get("type") == "text" else ""


# --- images (base64 content blocks) -------------------------------------------------------------

@dataclass(frozen=True)
class ImageRef:
    """An image content block as a reader meets it: its media type, its decoded size, the
    decoded bytes when they were asked for (and fit the cap), and why they are absent."""

    media_type: str
    size: int | None
    data: bytes | None = None
    problem: str | None = None
    kind: str = "image"

    def label(self) -> str:
        """`image · image/png · 35,021 bytes` (plus the problem, when there is one)."""
        parts = [self.kind, self.media_type or "unknown type"]
        if self.size is not None:
            parts.append(f"{self.size:,} bytes")
        if self.problem:
            parts.append(self.problem)
        return " · ".join(parts)


_BASE64_SPACE: Final = re.compile(rb"\s+")


def image_ref(block: Mapping[str, Any], *, decode_up_to: int | None = None) -> ImageRef:
    """What an `image` block holds. The size of base64 data is counted from its length; with
    `decode_up_to`, data up to that size is decoded and checked (one image at a time, so memory
    stays one image), longer data is left alone (`data` None without a `problem`)."""
    word = "document" if block.get("type") == "document" else "image"
    source = block.get("source")
    if not isinstance(source, Mapping):
        return ImageRef("", None, problem="no data", kind=word)
    media_type = str(source.get("media_type") or "")
    if source.get("type") != "base64":
        kind = str(source.get("type") or "unknown")
        return ImageRef(media_type, None, problem=f"{kind} source, not stored in the transcript",
                        kind=word)
    data = source.get("data")
    if not isinstance(data, str):
        return ImageRef(media_type, None, problem="no data", kind=word)
    raw = data.encode("ascii", "replace")
    if any(c in raw for c in b" \n\r\t"):
        raw = _BASE64_SPACE.sub(b"", raw)
    padding = len(raw[-2:]) - len(raw[-2:].rstrip(b"="))
    size = max(0, len(raw) * 3 // 4 - padding)
    if decode_up_to is None:
        return ImageRef(media_type, size)
    if size > decode_up_to:
        return ImageRef(media_type, size, kind=word)  # not read: the caller says what it means
    try:
        decoded = binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        return ImageRef(media_type, None, problem="data is not valid base64", kind=word)
    return ImageRef(media_type, len(decoded), decoded, kind=word)


#: the largest image whose base64 data is decoded (to check it, or to draw it in the PDF);
#: Claude's own limit is 5 MB a picture
MAX_IMAGE_BYTES: Final = 10 << 20


def is_base64_document(block: Mapping[str, Any]) -> bool:
    """A `document` block carrying a file as base64 (a PDF a user attached): shown like an
    image, by a placeholder, never its data."""
    source = block.get("source")
    return (block.get("type") == "document" and isinstance(source, Mapping)
            and source.get("type") == "base64")


def image_placeholder(block: Mapping[str, Any]) -> str:
    """The text that stands for an image block: `[image · image/png · 35,021 bytes]`, or with
    what is wrong with it (`data is not valid base64`)."""
    return f"[{image_ref(block, decode_up_to=MAX_IMAGE_BYTES).label()}]"
