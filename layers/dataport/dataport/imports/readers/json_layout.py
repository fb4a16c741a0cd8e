"""The fast path of the dataport JSON reader: the writer's own layout, parsed a line at a time.

formats/json_format.py writes one record per line: the envelope (`{..."sessions":[`), a session
entry's head (`{<session>,"project":{...},"messages":[`), each message (`<message>,`), then
`]},` / `]}` to close an entry and the document. Building a message from ijson's events costs
a Python step per event (the import's largest own cost, issue 10); orjson parses the same line
in C, ten times faster.

`LayoutStream` sits between the upload and ijson. It follows that layout line by line and hands
every *clean* message line to orjson; ijson gets a placeholder string in its place, and the
reader takes the parsed message from `parsed` when it meets the placeholder. Everything else
passes through to ijson unchanged, so the event path (readers/dataport_json.py) still parses
the document's structure and every line that is not clean, with its own limits, errors and
paths. Results and reported problems are the same either way (tests/imports/test_json_layout.py
proves it over generated documents).

A message line is clean when the event path could not object to it: orjson parses it to an
object, writes it back byte for byte (so no key is duplicated and nothing is written in any
other way), no string can be over the limit (the line is not longer than a string may be), no
key holds a NUL, no number is a float or outside int64, it nests no deeper than the limit and
its Extended JSON converts without an error. A placeholder is only ever put where a value is
due (the line before was the head of a session entry or a message ending with `,`, each proven
by orjson), and the placeholder holds a random nonce, so no file can forge one. From the first
line that does not fit the layout (a hand-edited file, other whitespace, a line longer than
`max_line_bytes`, which is passed through without being held) to the end of the document,
everything goes through ijson.

Memory: the reader holds one line (at most `max_line_bytes`) and the messages parsed from one
read of ijson's (64 KiB of upload) ahead of the reader.
"""

from __future__ import annotations

import secrets
from collections import deque
from enum import Enum
from typing import Any

import orjson
from bson import json_util

from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.formats.extjson_reader import FROM_TEXT, NOT_SIMPLE, date_of, simple_wrapper
from dataport.imports.limits import INT64_MAX, INT64_MIN, ImportLimits, Readable


def extended(value: Any) -> Any:
    """Canonical Extended JSON to BSON types, bottom-up, exactly as `json_util.loads` does."""
    kind = type(value)
    if kind is dict:
        if len(value) == 1:
            ((key, item),) = value.items()
            converted = simple_wrapper(key, item)
            if converted is not NOT_SIMPLE:
                return converted
        pairs = [(key, extended(item)) for key, item in value.items()]
        if any(key.startswith("$") for key, _ in pairs):
            return json_util.object_pairs_hook(pairs, EXTENDED_JSON_READ_OPTIONS)
        return dict(pairs)
    if kind is list:
        return [extended(item) for item in value]
    return value


class Unclean(Exception):
    """A value the fast path leaves to the event path (which says what is wrong with it)."""


def _simple(item: dict[str, Any], depth: int, max_depth: int) -> Any:
    """The one-key object at `depth` converted at once when it is a simple wrapper (what
    `simple_wrapper` converts; a `$date`'s {"$numberLong"} is one deeper, so at the limit the
    walk reports it); NOT_SIMPLE otherwise: the walk goes on into it."""
    ((key, child),) = item.items()
    if type(child) is str:
        make = FROM_TEXT.get(key)
        return NOT_SIMPLE if make is None else make(child)
    if key == "$date" and depth < max_depth and type(child) is dict and len(child) == 1:
        millis = child.get("$numberLong")
        if type(millis) is str:
            return date_of(int(millis))  # json_util: Int64(millis), then its int
    return NOT_SIMPLE


# The walk of `clean_record`: `extended` of the containers orjson parsed, converted in place (at
# `depth`, the record being 1), raising Unclean for what the event path would report (see the
# module docstring): a float (the event path keeps money exact), an integer BSON cannot hold,
# nesting past the limit. Every field of every message passes here, so the loops do the least
# per field: strings (most fields) pass first, a one-key object (mostly a wrapper) is tried as a
# simple wrapper before the walk goes into it, a child is checked against the limit by its
# parent, and whether an object has a key starting with `$` is asked once per object
# (`_dollar`), not per key.

def _clean_items(item: list[Any], depth: int, max_depth: int) -> None:
    """The elements of a list at `depth` converted in place."""
    for index, child in enumerate(item):
        kind = type(child)
        if kind is str:
            continue
        if kind is dict:
            if depth >= max_depth:
                raise Unclean  # the child is past the limit
            if len(child) == 1:
                converted = _simple(child, depth + 1, max_depth)
                if converted is not NOT_SIMPLE:
                    item[index] = converted
                    continue
            _clean_fields(child, depth + 1, max_depth)
            if _dollar(child):
                item[index] = json_util.object_pairs_hook(list(child.items()),
                                                          EXTENDED_JSON_READ_OPTIONS)
        elif kind is list:
            if depth >= max_depth:
                raise Unclean
            _clean_items(child, depth + 1, max_depth)
        elif kind is float or (kind is int and not INT64_MIN <= child <= INT64_MAX):
            raise Unclean


def _clean_fields(item: dict[str, Any], depth: int, max_depth: int) -> None:
    """The fields of an object at `depth` converted in place (the steps of `_clean_items`,
    written out again: a shared helper would cost a call per container on the import's
    hottest loop)."""
    for key, child in item.items():
        kind = type(child)
        if kind is str:
            continue
        if kind is dict:  # same keys: safe while iterating
            if depth >= max_depth:
                raise Unclean
            if len(child) == 1:
                converted = _simple(child, depth + 1, max_depth)
                if converted is not NOT_SIMPLE:
                    item[key] = converted
                    continue
            _clean_fields(child, depth + 1, max_depth)
            if _dollar(child):
                item[key] = json_util.object_pairs_hook(list(child.items()),
                                                        EXTENDED_JSON_READ_OPTIONS)
        elif kind is list:
            if depth >= max_depth:
                raise Unclean
            _clean_items(child, depth + 1, max_depth)
        elif kind is float or (kind is int and not INT64_MIN <= child <= INT64_MAX):
            raise Unclean


def _dollar(item: dict[str, Any]) -> bool:
    """Whether a key of the object starts with `$` (then json_util reads the object): its least
    key answers, found in C, unless that key starts below `$` (or is empty)."""
    lead = min(item, default="%")[:1]
    if lead > "$":
        return False  # every key is at least the least, so above every "$..."
    return lead == "$" or any(key[:1] == "$" for key in item)


def clean_record(line: bytes, limits: ImportLimits) -> dict[str, Any] | None:
    """The record a clean line holds, each top-level field converted as `extended` converts it
    (the record itself is not a wrapper); None when the line is not clean."""
    if len(line) > limits.max_string_bytes or b"\\u0000" in line:
        return None
    try:
        doc = orjson.loads(line)
        if type(doc) is not dict or orjson.dumps(doc) != line:
            return None
        _clean_fields(doc, 1, limits.max_nesting_depth)
    except Exception:  # anything orjson or a conversion refuses: the event path reports it
        return None
    return doc


class _State(Enum):
    START = "start"  # the envelope comes first
    LIST_OPEN = "list_open"  # after `"sessions":[`: an entry or the list's end
    LIST_NEXT = "list_next"  # after `,`: an entry
    LIST_AFTER = "list_after"  # after an entry: the list's end
    MESSAGES_OPEN = "messages_open"  # after `"messages":[`: a message or the entry's end
    MESSAGES_NEXT = "messages_next"  # after `,`: a message
    MESSAGES_AFTER = "messages_after"  # after a message: the entry's end
    OFF = "off"  # not (or no longer) the layout: everything passes through


#: entry ends: `]}` or `]},`, from the messages list to where the sessions list goes on
_ENTRY_ENDS = {b"]}": _State.LIST_AFTER, b"]},": _State.LIST_NEXT}
_OPEN_STATES = {_State.LIST_OPEN, _State.LIST_NEXT}
_MESSAGE_STATES = {_State.MESSAGES_OPEN, _State.MESSAGES_NEXT}


def _opens(line: bytes, key: str) -> bool:
    """The line is an object that writes its keys once, canonically, and ends by opening the
    array of `key`, its last key (the writer's envelope and session heads)."""
    if not line.endswith(b"["):
        return False
    try:
        doc = orjson.loads(line + b"]}")
        return (type(doc) is dict and next(reversed(doc), None) == key and doc[key] == []
                and orjson.dumps(doc) == line + b"]}")
    except Exception:  # not JSON once closed: not the layout
        return False


def _is_value(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


class LayoutStream:
    """A readable stream over a conversations document for ijson (see the module docstring):
    clean message lines become `placeholder`, their records queue in `parsed`."""

    def __init__(self, stream: Readable, limits: ImportLimits) -> None:
        self._stream = stream
        self._limits = limits
        self.placeholder = f"dataport-parsed-{secrets.token_hex(16)}"
        self._quoted = orjson.dumps(self.placeholder)
        self.parsed: deque[dict[str, Any]] = deque()
        self._state = _State.START
        self._partial = bytearray()  # the line read so far

    def read(self, size: int = -1, /) -> bytes:
        if size == 0:
            return b""
        out = bytearray()
        while not out:
            chunk = self._stream.read(size if size > 0 else 64 * 1024)
            if not chunk:
                out += self._partial  # a last line without its newline: as it is
                self._partial.clear()
                return bytes(out)
            self._feed(chunk, out)
        return bytes(out)

    def _feed(self, chunk: bytes, out: bytearray) -> None:
        start = 0
        while self._state is not _State.OFF:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._partial += chunk[start:]
                if len(self._partial) > self._limits.max_line_bytes:
                    # not held: this line, and the document after it, are the event path's
                    self._state = _State.OFF
                    out += self._partial
                    self._partial.clear()
                return
            self._partial += chunk[start:end]
            out += self._line(bytes(self._partial))
            out += b"\n"
            self._partial.clear()
            start = end + 1
        out += chunk[start:]  # not the layout (any more): everything as it comes

    def _line(self, line: bytes) -> bytes:
        """What ijson gets for one line, and the state after it."""
        state = self._state
        if state in _MESSAGE_STATES or state is _State.MESSAGES_AFTER:
            end = _ENTRY_ENDS.get(line)
            if end is not None and state is not _State.MESSAGES_NEXT:
                self._state = end
                return line
            if state is not _State.MESSAGES_AFTER and line:
                comma = line.endswith(b",")
                body = line[:-1] if comma else line
                doc = clean_record(body, self._limits)
                if doc is not None or _is_value(body):
                    self._state = _State.MESSAGES_NEXT if comma else _State.MESSAGES_AFTER
                    if doc is None:
                        return line
                    self.parsed.append(doc)
                    return self._quoted + b"," if comma else self._quoted
        elif state in _OPEN_STATES:
            if line == b"]}" and state is _State.LIST_OPEN:
                self._state = _State.OFF  # the document's end: nothing after it is ours
                return line
            if _opens(line, "messages"):
                self._state = _State.MESSAGES_OPEN
                return line
            comma = line.endswith(b",")
            if line and _is_value(line[:-1] if comma else line):  # an entry on one line
                self._state = _State.LIST_NEXT if comma else _State.LIST_AFTER
                return line
        elif state is _State.LIST_AFTER:
            pass  # `]}`, the document's end, or anything else: all passed through from here
        elif state is _State.START and _opens(line, "sessions"):
            self._state = _State.LIST_OPEN
            return line
        self._state = _State.OFF
        return line
