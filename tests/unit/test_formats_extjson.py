"""The orjson encoder of canonical Extended JSON writes exactly what bson.json_util wrote.

`json_util_canonical` is the reference (the old `canonical_json`); every property here compares
bytes, and, where the reference raises, the exception.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from bson import SON, ObjectId, json_util
from bson.binary import Binary
from bson.code import Code
from bson.datetime_ms import DatetimeMS
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.regex import Regex
from bson.timestamp import Timestamp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataport.formats import extjson
from dataport.formats.common import (
    EXTENDED_JSON_READ_OPTIONS,
    canonical_json,
    decimal_text,
    iso_ms,
    plain_json,
)
from dataport.formats.extjson import (
    canonical_json_bytes,
    decimal128_positional,
    decimal128_text,
    json_util_canonical,
)
from tests.unit.format_sink import messages, project_doc, session_doc

SETTINGS = settings(max_examples=600, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

INT32 = 2**31
INT64 = 2**63

# --- what the data model stores ------------------------------------------------------------------

int_edges = st.sampled_from([0, 1, -1, INT32 - 1, INT32, -INT32, -INT32 - 1, INT64 - 1, -INT64])
ints = int_edges | st.integers(-(2**31), 2**31 - 1) | st.integers(-INT64, INT64 - 1)
int64s = (int_edges | st.integers(-INT64, INT64 - 1)).map(Int64)
floats = st.floats() | st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e16, 1e-7,
                                        5e-324, 1.7976931348623157e308, 0.1, 1.0])
object_ids = st.binary(min_size=12, max_size=12).map(ObjectId)
decimals = (
    st.decimals(allow_nan=False, allow_infinity=False)
    | st.decimals(min_value=-10_000, max_value=10_000, places=7)  # money
    | st.sampled_from(["-0", "0", "0E+3", "-0E-10", "1E+3", "1.0E-7", "0.000001", "0.0000001",
                       "123456789012345678901234567890123.4",
                       "9.999999999999999999999999999999999E+6144",
                       "1E-6176", "NaN", "-NaN", "sNaN", "Infinity", "-Infinity"]).map(Decimal)
).filter(lambda d: d.is_nan() or d.is_infinite() or _fits_decimal128(d)).map(Decimal128)
raw_decimals = st.binary(min_size=16, max_size=16).map(Decimal128.from_bid)
zones = st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-7)),
                         timezone(timedelta(hours=5, minutes=30))])
moments = st.integers(-50 * 365 * 86_400_000, 200 * 365 * 86_400_000).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
datetimes = (
    moments  # what the client yields: aware, UTC, milliseconds (pre-1970 too)
    | st.datetimes(timezones=zones | st.none())  # microseconds, other zones, naive
    | st.datetimes(min_value=datetime(1969, 12, 31), max_value=datetime(1970, 1, 2),
                   timezones=st.just(UTC))
)
texts = st.text() | st.text(st.characters(codec="utf-8")) | st.sampled_from(
    ["", "\x00\x1f\x7f", "\u2028\u2029", "\"\\/\b\f\n\r\t", "日本語 עברית 🙏", "\ufeff", "é"])
binaries = (st.binary(max_size=24)
            | st.builds(Binary, st.binary(max_size=24), st.sampled_from([0, 1, 2, 3, 4, 5, 128])))
keys = st.text(max_size=8) | st.sampled_from(["_id", "$oid", "a.b", "", "é", "uuid"])

scalars = (st.none() | st.booleans() | ints | int64s | floats | texts | object_ids | decimals
           | raw_decimals | datetimes | binaries
           | st.builds(Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
           | st.sampled_from([MinKey(), MaxKey()]))
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(keys, inner, max_size=5), max_leaves=40)


def _fits_decimal128(value: Decimal) -> bool:
    try:
        Decimal128(value)
    except Exception:  # too many digits or out of range: not a Decimal128
        return False
    return True


def assert_same_as_reference(document: object) -> None:
    try:
        expected: bytes | type[BaseException] = json_util_canonical(document)
    except Exception as error:  # then the new encoder must raise the same
        expected = type(error)
    if isinstance(expected, bytes):
        assert canonical_json_bytes(document) == expected
        assert canonical_json(document) == expected
    else:
        with pytest.raises(expected):
            canonical_json_bytes(document)


# --- properties ----------------------------------------------------------------------------------

@SETTINGS
@given(documents)
def test_any_document_of_bson_values_is_byte_identical(document: object) -> None:
    assert_same_as_reference(document)


@SETTINGS
@given(st.dictionaries(keys, documents, max_size=6))
def test_any_top_level_document_is_byte_identical(document: dict[str, Any]) -> None:
    assert_same_as_reference(document)


@SETTINGS
@given(decimals | raw_decimals)
@example(Decimal128("-0"))
@example(Decimal128("1E+3"))
@example(Decimal128("-1.000E-8"))
@example(Decimal128.from_bid(b"\xff" * 16))
def test_decimal128_text_is_str(value: Decimal128) -> None:
    assert decimal128_text(value) == str(value)


@SETTINGS
@given(st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8]), min_size=1, max_size=9),
       st.booleans(), st.integers(-40, 40))
def test_decimal128_text_in_and_around_positional_notation(digits: list[int], negative: bool,
                                                           exponent: int) -> None:
    value = Decimal128(Decimal((int(negative), tuple(digits), exponent)))
    assert decimal128_text(value) == str(value)


# --- the documents dataport writes ---------------------------------------------------------------

def test_the_sample_documents_are_byte_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = [project_doc(), session_doc(), *messages()]
    expected = [json_util_canonical(document) for document in documents]

    def refused(document: object) -> bytes:
        raise AssertionError(f"fell back to json_util for {document}")

    monkeypatch.setattr(extjson, "json_util_canonical", refused)  # all on the fast path
    assert [canonical_json(document) for document in documents] == expected
    for document in documents:
        back = json_util.loads(canonical_json(document), json_options=EXTENDED_JSON_READ_OPTIONS)
        assert back == document


@pytest.mark.parametrize("value", [
    1, -INT32, INT32 - 1, INT32, -INT32 - 1, INT64 - 1, -INT64, 10**30, Int64(5), 1.0, -0.0,
    math.nan, math.inf, -math.inf, 1e16, True, False, None, "a\"\\\x00\x1f\x7f\u2028é😀",
    b"\x00ab", Binary(b"x", 5), ObjectId("66ad9c1e5f2b4a0012c0ffee"), Decimal128("-0"),
    Decimal128("NaN"), Decimal128("-Infinity"), Decimal128("1.0E-7"),
    datetime(2025, 8, 2, 4, 52, 9, 101999, tzinfo=UTC), datetime(1960, 1, 1, 0, 0, 0, 1),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=9))), Timestamp(1, 2), MinKey(),
    MaxKey(), (1, 2), [], {}, {"b": 1, "a": {}},
])
def test_every_wrapper_json_util_writes(value: object) -> None:
    assert_same_as_reference({"k": value})
    assert_same_as_reference([value])


# --- what the fast path leaves to json_util ------------------------------------------------------

RARE: list[object] = [
    Regex("a.b", "i"), re.compile("x", re.I | re.M), Code("f()"), Code("f()", {"a": 1}),
    DBRef("c", ObjectId("66ad9c1e5f2b4a0012c0ffee")), DatetimeMS(1_700_000_000_000),
    SON([("z", 1), ("a", Int64(2))]), OrderedDict(b=2, a=1),
    uuid.UUID(int=1),  # the reference refuses it (no UUID representation): so do we
    "\ud800",  # a lone surrogate: not UTF-8, the reference fails to encode it: so do we
    {1: "int key"}, {None: 1}, {True: 1}, {1.5: 1},  # json.dumps turns keys into text
]


@pytest.mark.parametrize("value", RARE, ids=lambda value: type(value).__name__)
def test_rare_values_fall_back_to_json_util(value: object) -> None:
    assert_same_as_reference({"k": value, "n": 1})
    assert_same_as_reference(value)


def test_a_fallback_is_per_document(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def reference(document: object) -> bytes:
        calls.append(document)
        return json_util_canonical(document)

    monkeypatch.setattr(extjson, "json_util_canonical", reference)
    common = {"n": 1, "when": datetime(2025, 1, 1, tzinfo=UTC)}
    assert canonical_json_bytes(common) == json_util_canonical(common)
    rare = {"n": 1, "pattern": Regex("x")}
    assert canonical_json_bytes(rare) == json_util_canonical(rare)
    assert calls == [rare]


def test_nesting_deeper_than_orjson_allows_falls_back() -> None:
    deep: Any = 1
    for _ in range(150):  # 300 levels: beyond orjson (255), within json_util
        deep = {"d": [deep]}
    assert canonical_json_bytes(deep) == json_util_canonical(deep)


# --- the fast paths of the friendly formats (CSV, JSONL, Markdown, PDF) --------------------------

def _old_iso_ms(value: datetime) -> str:
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


@SETTINGS
@given(datetimes | st.datetimes(timezones=st.just(UTC)))
@example(datetime(2025, 8, 2, 4, 52, 9, tzinfo=UTC))
@example(datetime(1, 1, 1))
@example(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
def test_iso_ms_is_isoformat_in_utc_with_milliseconds(value: datetime) -> None:
    try:
        expected = _old_iso_ms(value)
    except OverflowError:
        return  # a zone pushing the moment out of datetime's range: not a stored date
    assert iso_ms(value) == expected


@SETTINGS
@given(decimals | raw_decimals)
@example(Decimal128("0E+3"))
@example(Decimal128("-0"))
@example(Decimal128("0E-3"))
def test_decimal_text_is_positional_decimal(value: Decimal128) -> None:
    expected = format(value.to_decimal(), "f")
    assert decimal128_positional(value) == expected
    assert decimal_text(value) == expected


@SETTINGS
@given(decimals | raw_decimals)
def test_plain_json_writes_the_stored_digits_of_a_decimal128(value: Decimal128) -> None:
    number = value.to_decimal()
    expected = orjson.Fragment(str(number)) if number.is_finite() else str(number)
    assert plain_json({"cost": value}) == orjson.dumps({"cost": expected})
