"""contentHash: the canonical form is a contract (import compares hashes written elsewhere)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from bson.decimal128 import Decimal128
from hypothesis import given
from hypothesis import strategies as st

from dataport.source.content_hash import canonical_timestamp, content_hash, hash_of

MOMENT = datetime(2025, 8, 2, 4, 52, 12, 880000, tzinfo=UTC)


def test_hash_is_sha256_of_the_documented_canonical_json() -> None:
    canonical = ('{"content":"Привет 👋 é","timestamp":"2025-08-02T04:52:12.880Z",'
                 '"type":"user","uuid":"15e15459-c55e-4c93-8a2e-d95794c41d63"}')
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    assert content_hash("15e15459-c55e-4c93-8a2e-d95794c41d63", "user", MOMENT,
                        "Привет 👋 é") == expected


@pytest.mark.parametrize("timestamp", [
    MOMENT,
    MOMENT.astimezone(timezone(timedelta(hours=9))),
    MOMENT.replace(tzinfo=None),
    MOMENT.replace(microsecond=880999),
    "2025-08-02T04:52:12.880Z",
    "2025-08-02T13:52:12.880+09:00",
])
def test_equal_instants_hash_equal_at_bson_precision(timestamp: datetime | str) -> None:
    assert canonical_timestamp(timestamp) == "2025-08-02T04:52:12.880Z"
    assert content_hash("u", "assistant", timestamp, "x") == content_hash(
        "u", "assistant", MOMENT, "x")


BASE = ("u1", "user", MOMENT, "café")


@pytest.mark.parametrize("changed", [
    ("u2", "user", MOMENT, "café"),
    ("u1", "assistant", MOMENT, "café"),
    ("u1", "user", MOMENT + timedelta(milliseconds=1), "café"),
    ("u1", "user", MOMENT, "cafe\u0301"),  # same text to a reader, other code points
])
def test_every_field_changes_the_hash(changed: tuple[str, str, datetime, str]) -> None:
    assert content_hash(*changed) != content_hash(*BASE)


# --- the fast canonical form (orjson, isoformat) is the `json`/strftime one, byte for byte ---

def _reference_timestamp(value: datetime | str) -> str:
    """canonical_timestamp as it was written first (strftime)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _reference_hash(uuid: Any, type_: Any, timestamp: Any, content: Any) -> str:
    """content_hash as it was written first (json.dumps)."""
    canonical = json.dumps(
        {"uuid": uuid, "type": type_, "timestamp": _reference_timestamp(timestamp),
         "content": content},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _outcome(compute: Callable[..., str | None], *args: Any) -> tuple[str, str | None]:
    """The result, or the error's type and message (the error is part of the contract)."""
    try:
        return "value", compute(*args)
    except Exception as error:  # compared, not swallowed
        return type(error).__name__, str(error)


class _Text(str):
    """A str subclass: left to json (orjson would write it too, but proves nothing about it)."""


#: every code point, lone surrogates and controls included, and the ones JSON escapes
any_text = st.text(st.characters(exclude_categories=())) | st.sampled_from(
    ["", "\ud800", "a\udfffb", "\x00\x1f\x7f\u2028\u2029\ufeff", "\"\\/\b\f\n\r\t", "é👋日本"])
zones = st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-23,
                                                                             minutes=-59)),
                         timezone(timedelta(minutes=1))])
moments = st.datetimes(timezones=st.none() | zones)
#: what a message's fields can hold, beyond strings: the content_hash fallback's inputs
other_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(2**63, 2**70) | st.floats()
    | st.decimals(-10**9, 10**9, places=6).map(Decimal128) | moments | any_text.map(_Text)
    | st.binary(max_size=4) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6)


@given(any_text, any_text, moments | moments.map(lambda m: m.isoformat()), any_text)
def test_any_strings_hash_as_json_dumps_hashes_them(uuid: str, type_: str,
                                                    timestamp: datetime | str,
                                                    content: str) -> None:
    assert _outcome(content_hash, uuid, type_, timestamp, content) == _outcome(
        _reference_hash, uuid, type_, timestamp, content)


@given(other_values | any_text, other_values | any_text, moments, other_values | any_text)
def test_any_values_hash_or_fail_as_json_dumps_does(uuid: Any, type_: Any, timestamp: datetime,
                                                     content: Any) -> None:
    assert _outcome(content_hash, uuid, type_, timestamp, content) == _outcome(
        _reference_hash, uuid, type_, timestamp, content)


@given(moments | moments.map(lambda m: m.isoformat()))
def test_any_moment_is_written_as_strftime_wrote_it(timestamp: datetime | str) -> None:
    assert _outcome(canonical_timestamp, timestamp) == _outcome(_reference_timestamp, timestamp)


@given(st.dictionaries(st.sampled_from(["uuid", "type", "timestamp", "content", "x"]),
                       other_values | any_text | moments))
def test_hash_of_any_message_is_the_json_hash(doc: dict[str, Any]) -> None:
    expected = None
    if (isinstance(doc.get("uuid"), str) and isinstance(doc.get("type"), str)
            and isinstance(doc.get("timestamp"), datetime) and doc["timestamp"].tzinfo
            and isinstance(doc.get("content"), str)):
        expected = _outcome(_reference_hash, doc["uuid"], doc["type"], doc["timestamp"],
                            doc["content"])
    assert (None if expected is None else _outcome(hash_of, doc)) == expected
    if expected is None:
        assert hash_of(doc) is None
