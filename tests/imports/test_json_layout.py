"""The fast path of the dataport JSON reader (readers/json_layout.py) changes nothing but speed.

Documents are written by the real JsonWriter from generated sessions and messages (every BSON
type the data model uses, odd keys and text), then some of their lines are spoiled the ways a
hand-edited or hostile file can be (duplicate keys, nesting past the limit, integers past
int64, floats next to money, over-long strings and lines, NUL and `$` keys, bad Extended JSON,
lone surrogates, broken JSON, other whitespace, truncation). Read with the fast path and with
ijson's events alone, every record (type for type, via repr), every issue (code, message, file,
path, field) and the validation report must be the same.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from bson import ObjectId, json_util
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS, canonical_json
from dataport.formats.extjson_reader import NOT_SIMPLE, simple_wrapper
from dataport.formats.json_format import JsonWriter
from dataport.imports.limits import INT64_MAX, INT64_MIN, ImportLimits
from dataport.imports.readers import dataport_json
from dataport.imports.readers.dataport_json import DataportJsonSource
from dataport.imports.readers.json_layout import LayoutStream, Unclean, clean_record, extended
from dataport.imports.validate import validate
from dataport.models.imports import ImportOptions, Issue, ValidationReport
from tests.unit.format_sink import CONTEXT, MemorySink, project_doc, session_doc
from tests.unit.test_formats_extjson import binaries, decimals, int64s, object_ids, texts

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIMITS = ImportLimits(max_nesting_depth=8, max_string_bytes=3_000, max_line_bytes=6_000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

def _fixed(value: dict[str, Any]) -> bool:
    """Not `{"$oid": null}`, which json_util reads as a new ObjectId, different every time."""
    return value != {"$oid": None}


moments = st.integers(0, 60 * 365 * 86_400_000).map(lambda ms: EPOCH + timedelta(milliseconds=ms))
#: the values a message field holds: everything the data model stores (and json_util reads)
scalars = (st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1) | int64s | texts
           | st.floats(allow_nan=False) | object_ids | decimals | moments | binaries)
keys = st.text(max_size=6) | st.sampled_from(["$oid", "$date", "$numberLong", "a.b", "$ref",
                                                "$id", "é", "costUsd"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(keys, inner, max_size=4).filter(_fixed), max_leaves=12)
RESERVED = {"uuid", "sessionId", "project", "messages"}


@st.composite
def message(draw: st.DrawFn, session_id: str, number: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": draw(object_ids), "uuid": f"{session_id}-{number}",
                           "sessionId": session_id,
                           "type": draw(st.sampled_from(["user", "assistant", "tool_use"])),
                           "timestamp": draw(moments)}
    extra = draw(st.dictionaries(keys.filter(lambda key: key not in RESERVED), values,
                                 max_size=4))
    if draw(st.booleans()):
        doc["costUsd"] = draw(decimals)
        doc["messageData"] = {"content": draw(st.lists(st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "thinking", "tool_use"]), "text": values}),
            max_size=3))}
    return doc | {key: value for key, value in extra.items() if key not in doc}


@st.composite
def document(draw: st.DrawFn) -> bytes:
    """One conversations file as the writer writes it."""
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=10**9)
    for number in range(draw(st.integers(1, 3))):  # no session: the writer writes no file
        session_id = f"s{number}"
        session = session_doc(sessionId=session_id) | {"totalCost": draw(decimals),
                                                        "messageCount": Int64(2)}
        writer.begin_session(project_doc(), session)
        for index in range(draw(st.integers(0, 4))):
            writer.write_message(draw(message(session_id, index)))
        writer.end_session()
    writer.close()
    [file] = sink.files
    return bytes(file.data)


def _prefix(text: bytes) -> Callable[[bytes], bytes]:
    """Insert fields at the start of an object line (anything else: broken JSON)."""
    return lambda line: line[:1] + text + line[1:]


SPOILERS: dict[str, Callable[[bytes], bytes]] = {
    "duplicate key": lambda line: line[:1] + line[1:].split(b",", 1)[0] + b"," + line[1:],
    "deep": _prefix(b'"deep":' + b"[" * 9 + b"1" + b"]" * 9 + b","),
    "deep objects": _prefix(b'"d":' + b'{"a":' * 7 + b"1" + b"}" * 7 + b","),
    "big int": _prefix(b'"n":18446744073709551615,'),
    "huge int": _prefix(b'"n":1844674407370955161500,'),
    "negative int": _prefix(b'"n":-9223372036854775809,'),
    "float": _prefix(b'"x":1.5e3,'),
    "float money": _prefix(b'"costUsd":0.1,'),
    "int money": _prefix(b'"costUsd":3,'),
    "long string": _prefix(b'"s":"' + b"a" * 3_100 + b'",'),
    "long unicode": _prefix(b'"s":"' + "é".encode() * 1_600 + b'",'),
    "long line": _prefix(b'"s":"' + b"b" * 2_000 + b'","t":"' + b"c" * 2_000 + b'","u":"'
                         + b"d" * 2_500 + b'",'),
    "nul key": _prefix(b'"a\\u0000b":1,'),
    "nul value": _prefix(b'"a":"x\\u0000y",'),
    "dollar key": _prefix(b'"$where":1,'),
    "bad oid": _prefix(b'"ref":{"$oid":"zz"},'),
    "bad date": _prefix(b'"when":{"$date":"nope"},'),
    "bad decimal": _prefix(b'"price":{"$numberDecimal":"x"},'),
    "surrogate": _prefix(b'"s":"\\ud800",'),
    "escapes": _prefix(b'"s":"\\u00e9\\/",'),
    "invalid utf-8": _prefix(b'"s":"\xff",'),
    "syntax": lambda line: line[: len(line) // 2],
    "not an object": lambda line: b'"text"' + (b"," if line.endswith(b",") else b""),
    "array": lambda line: b"[1,2]" + (b"," if line.endswith(b",") else b""),
    "crlf": lambda line: line + b"\r",
    "space": lambda line: line[:1] + b" " + line[1:],
    "blank line": lambda line: b"\n" + line,
    "joined": lambda line: line + b" ",
    "comma dropped": lambda line: line.removesuffix(b","),
    "extra comma": lambda line: line + b",",
    "fake placeholder": lambda line: b'"dataport-parsed-0",' if line.endswith(b",") else line,
}


def spoil(data: bytes, changes: list[tuple[int, str]], cut: int | None) -> bytes:
    lines = data.split(b"\n")
    for index, name in changes:
        where = index % len(lines)
        lines[where] = SPOILERS[name](lines[where])
    spoiled = b"\n".join(lines)
    return spoiled[:cut % (len(spoiled) + 1)] if cut is not None else spoiled


def read(data: bytes, *, fast: bool) -> tuple[str, list[Issue], ValidationReport]:
    previous = dataport_json.FAST_LAYOUT
    dataport_json.FAST_LAYOUT = fast
    try:
        source = DataportJsonSource(lambda: io.BytesIO(data), "conversations-0001.json",
                                    options=ImportOptions(), limits=LIMITS, zipped=False)
        issues: list[Issue] = []
        records = [(record.kind, record.doc, record.location)
                   for record in source.records(on_issue=issues.append)]
        report = validate(source)
    finally:
        dataport_json.FAST_LAYOUT = previous
    return repr(records), issues, report


def assert_same_reading(data: bytes) -> None:
    fast, events = read(data, fast=True), read(data, fast=False)
    assert fast[0] == events[0]
    assert fast[1] == events[1]
    assert fast[2].model_dump(exclude={"sha256"}) == events[2].model_dump(exclude={"sha256"})


@SETTINGS
@given(document(), st.lists(st.tuples(st.integers(0, 40), st.sampled_from(sorted(SPOILERS))),
                            max_size=3), st.none() | st.integers(0))
def test_the_fast_path_reads_exactly_what_the_event_path_reads(
        data: bytes, changes: list[tuple[int, str]], cut: int | None) -> None:
    assert_same_reading(spoil(data, changes, cut))


@pytest.mark.parametrize("name", sorted(SPOILERS))
def test_every_spoiled_message_line_reads_the_same(name: str) -> None:
    data = _sample()
    lines = data.split(b"\n")
    message_lines = [i for i, line in enumerate(lines) if line.startswith(b'{"_id"')
                     and b'"uuid"' in line and b'"messages"' not in line]
    for index in (message_lines[0], message_lines[-1]):  # in the middle and at a list's end
        assert_same_reading(spoil(data, [(index, name)], None))


def _sample() -> bytes:
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=10**9)
    for number in range(2):
        session_id = f"s{number}"
        writer.begin_session(project_doc(), session_doc(sessionId=session_id))
        for index in range(3):
            writer.write_message({
                "_id": ObjectId(), "uuid": f"{session_id}-{index}", "sessionId": session_id,
                "type": "assistant", "timestamp": EPOCH + timedelta(days=20_000, seconds=index),
                "costUsd": Decimal128("0.125"), "durationMs": Int64(2**40),
                "blob": Binary(b"\x00\x01", 4), "usage": {"input_tokens": 3},
                "messageData": {"content": [{"type": "text", "text": "héllo ✓ \n\"q\""}]}})
        writer.end_session()
    writer.close()
    return bytes(sink.files[0].data)


def test_the_writers_messages_take_the_fast_path() -> None:
    """Every message of a writer's file is parsed by orjson: ijson sees placeholders only."""
    data = _sample()
    stream = LayoutStream(io.BytesIO(data), LIMITS)
    seen = b""
    while chunk := stream.read(7):  # tiny reads: lines cut anywhere
        seen += chunk
    assert seen.count(orjson.dumps(stream.placeholder)) == 6 == len(stream.parsed)
    assert b'"uuid"' not in seen
    assert_same_reading(data)


def test_a_line_longer_than_the_limit_is_passed_on_not_held() -> None:
    data = _sample()
    lines = data.split(b"\n")
    lines[3] = _prefix(b'"s":"' + b"x" * 20_000 + b'",')(lines[3])  # the second message
    data = b"\n".join(lines)
    stream = LayoutStream(io.BytesIO(data), LIMITS)
    sizes = []
    while chunk := stream.read(1_000):
        sizes.append(len(chunk))
    assert max(sizes) <= LIMITS.max_line_bytes + 1_000  # never the whole line at once
    assert len(stream.parsed) == 1  # the message before it; from there on the event path
    assert_same_reading(data)


@SETTINGS
@given(values)
def test_clean_records_convert_as_extended_does(value: Any) -> None:
    line = canonical_json({"v": value})
    doc = clean_record(line, LIMITS)
    if doc is not None:
        assert repr(doc) == repr({"v": extended(orjson.loads(line)["v"])})



def _reference_bson(item: Any, depth: int, max_depth: int) -> Any:
    """The walk as it was first written (one call per container and per wrapper, a `$` test
    per key): the faster walk must accept and convert exactly what it did."""
    if depth > max_depth:
        raise Unclean
    if type(item) is list:
        for index, child in enumerate(item):
            kind = type(child)
            if kind is dict or kind is list:
                item[index] = _reference_bson(child, depth + 1, max_depth)
            elif kind is float or (kind is int and not INT64_MIN <= child <= INT64_MAX):
                raise Unclean
        return item
    if len(item) == 1:
        ((key, child),) = item.items()
        if type(child) is str or (key == "$date" and depth < max_depth):
            converted = simple_wrapper(key, child)
            if converted is not NOT_SIMPLE:
                return converted
    if _reference_fields(item, depth, max_depth):
        return json_util.object_pairs_hook(list(item.items()), EXTENDED_JSON_READ_OPTIONS)
    return item


def _reference_fields(item: dict[str, Any], depth: int, max_depth: int) -> bool:
    dollar = False
    for key, child in item.items():
        if key[:1] == "$":
            dollar = True
        kind = type(child)
        if kind is dict or kind is list:
            item[key] = _reference_bson(child, depth + 1, max_depth)
        elif kind is float or (kind is int and not INT64_MIN <= child <= INT64_MAX):
            raise Unclean
    return dollar


def _reference_record(line: bytes, max_depth: int) -> Any:
    if b"\\u0000" in line:
        return None
    try:
        doc = orjson.loads(line)
        if type(doc) is not dict or orjson.dumps(doc) != line:
            return None
        _reference_fields(doc, 1, max_depth)
    except Exception:  # what the walk refuses (or a conversion's error): not clean
        return None
    return doc


#: keys at the edges of `_dollar`'s least-key answer (below, at and above `$`, empty)
edge_keys = st.sampled_from(["", "#", "!a", " ", "$", "$x", "%", "a", "\x00", "$date", "$oid"])
edge_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(keys | edge_keys, inner, max_size=4).filter(_fixed),
                           max_leaves=12)


@SETTINGS
@given(edge_values, st.integers(1, 7))
def test_the_walk_accepts_and_converts_what_it_did_at_any_depth_limit(value: Any,
                                                                      depth: int) -> None:
    line = canonical_json({"v": value})
    limits = ImportLimits(max_nesting_depth=depth, max_string_bytes=10**6,
                          max_line_bytes=10**6)
    assert repr(clean_record(line, limits)) == repr(_reference_record(line, depth))
