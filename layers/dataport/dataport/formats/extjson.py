"""Canonical Extended JSON at orjson speed, byte for byte what `bson.json_util` writes.

`bson.json_util.dumps` walks a document in Python and hands the result to the standard `json`
encoder: a third of an export worker's time went there. orjson cannot be told to write
canonical Extended JSON itself (it writes ints, floats and datetimes its own way), so
`canonical_json_bytes` first walks the document once, turning every BSON value into the
wrapper json_util would write (`{"$numberInt": "4"}`, `{"$date": {"$numberLong": "..."}}`,
`{"$oid": ...}`, ...) and keeping strings, booleans and None as they are, then lets orjson
write the result. orjson and `json.dumps(ensure_ascii=False, separators=(",", ":"))` agree on
everything left: key order kept, the same escapes (`\\"`, `\\\\`, `\\b\\f\\n\\r\\t`, other
control characters as lowercase `\\u00XX`, nothing else escaped).

Exactness is proven by tests/unit/test_formats_extjson.py (hypothesis, over every BSON type
the data model uses). Values handled here: dict, list, tuple, str, bool, None, int (int32 and
int64 ranges and beyond), Int64, float (NaN, infinities, -0.0), ObjectId, Decimal128, datetime
(any tzinfo or naive), bytes, Binary, Timestamp, MinKey, MaxKey. Anything else (Regex, Code,
DBRef, uuid.UUID, DatetimeMS, subclasses of the handled types, non-string keys, nesting deeper
than orjson allows, text with lone surrogates) makes the whole document go through
`bson.json_util` as before: the same bytes, or the same exception, as the old encoder.
"""

from __future__ import annotations

import calendar
import math
from base64 import b64encode
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from bson import json_util
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

_INT32_MIN: Final = -(2**31)
_INT32_END: Final = 2**31
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
_PLAIN: Final = frozenset({str, bool, type(None)})

# Decimal128 (IEEE 754-2008 decimal128, binary integer significand): sign, 14 exponent bits,
# the top 49 bits of the coefficient in the high half, the other 64 in the low half
_HIGH_COEFFICIENT_MASK: Final = (1 << 49) - 1
_MAX_COEFFICIENT: Final = 10**34 - 1
_EXPONENT_BIAS: Final = 6176


class Inexact(Exception):
    """A value the fast path does not write: the document goes through bson.json_util."""


def json_util_canonical(document: object) -> bytes:
    """The reference encoder (and the fallback): what `canonical_json` has always written."""
    text = json_util.dumps(document, json_options=CANONICAL_JSON_OPTIONS, ensure_ascii=False,
                           separators=(",", ":"))
    return text.encode("utf-8")


def canonical_json_bytes(document: object) -> bytes:
    """Canonical Extended JSON, UTF-8, compact; identical to `json_util_canonical`."""
    try:
        value = document if type(document) in _PLAIN else _CONVERT[type(document)](document)
        return orjson.dumps(value)
    except Exception:  # the reference decides: same bytes, or the same error
        return json_util_canonical(document)


def escaped_json_bytes(document: object) -> bytes:
    """`canonical_json_bytes` of the document with every key that starts with `$` written with
    one more `$` (`{"$date": 1}` -> `{"$$date": {"$numberInt": "1"}}`): the backup format's
    version 2 escape (docs/backups.md, "Keys that start with $"), so no object of the data can
    read back as a type wrapper. The wrappers this writes keep their single `$`."""
    try:
        value = document if type(document) in _PLAIN else _ESCAPED[type(document)](document)
        return orjson.dumps(value)
    except Exception:  # the reference decides, on the escaped document
        return json_util_canonical(escape_dollar_keys(document))


def escape_dollar_keys(value: Any) -> Any:
    """The value with `$` prepended to every mapping key that starts with `$`, at any depth
    (mappings become dicts in the same order; other values are kept as they are)."""
    if isinstance(value, dict):
        return {_escaped_key(key): escape_dollar_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [escape_dollar_keys(item) for item in value]
    return value


def _escaped_key(key: Any) -> Any:
    return "$" + key if type(key) is str and key[:1] == "$" else key


def decimal128_parts(value: Decimal128) -> tuple[bool, str, int] | None:
    """(negative, coefficient digits, exponent) of a finite Decimal128 read straight from its 16
    bytes (no decimal.Decimal built: 8x faster than `to_decimal()`); None for the specials
    (NaN, infinities) and non-canonical encodings, which the caller leaves to bson."""
    high, low = value.__getstate__()  # the two 64-bit halves (what pickle stores)
    if (high >> 61) & 3 == 3:  # infinity, NaN, or the "11" form (a coefficient over 2**113)
        return None
    coefficient = ((high & _HIGH_COEFFICIENT_MASK) << 64) | low
    if coefficient > _MAX_COEFFICIENT:  # more than 34 digits: read as zero by the spec
        return None
    exponent = ((high >> 49) & 0x3FFF) - _EXPONENT_BIAS
    return bool(high >> 63), str(coefficient), exponent


def finite_decimal128_text(value: Decimal128) -> str | None:
    """`str(value)` of a finite Decimal128: the General Decimal Arithmetic
    to-scientific-string of the stored coefficient and exponent (`0.056628`, `1E+3`, `1.0E-7`,
    `-0`); None for the specials."""
    parts = decimal128_parts(value)
    if parts is None:
        return None
    negative, digits, exponent = parts
    left = exponent + len(digits)  # digits before the decimal point, in positional notation
    if exponent <= 0 and left > -6:
        if exponent == 0:
            text = digits
        elif left > 0:
            text = f"{digits[:left]}.{digits[left:]}"
        else:
            text = "0." + "0" * -left + digits
    else:
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"E{left - 1:+d}"
    return "-" + text if negative else text


def decimal128_text(value: Decimal128) -> str:
    """`str(value)`, specials included."""
    text = finite_decimal128_text(value)
    return str(value) if text is None else text


def decimal128_positional(value: Decimal128) -> str:
    """`format(value.to_decimal(), "f")`: positional notation, never an exponent (`1000`,
    `0.0000001`, `0.000`, `-0`); specials as the decimal module writes them."""
    parts = decimal128_parts(value)
    if parts is None:
        return format(value.to_decimal(), "f")
    negative, digits, exponent = parts
    if exponent >= 0:
        text = digits if digits == "0" else digits + "0" * exponent
    else:
        point = len(digits) + exponent
        text = (f"{digits[:point]}.{digits[point:]}" if point > 0
                else "0." + "0" * -point + digits)
    return "-" + text if negative else text


def _int(value: int) -> dict[str, str]:
    if _INT32_MIN <= value < _INT32_END:
        return {"$numberInt": str(value)}
    return {"$numberLong": str(value)}


def _int64(value: Int64) -> dict[str, str]:
    return {"$numberLong": str(value)}


def _float(value: float) -> dict[str, str]:
    if math.isnan(value):
        return {"$numberDouble": "NaN"}
    if value in (float("inf"), float("-inf")):
        return {"$numberDouble": "Infinity" if value > 0 else "-Infinity"}
    return {"$numberDouble": repr(value)}


def _datetime(value: datetime) -> dict[str, dict[str, str]]:
    if value.tzinfo is UTC:  # what the client yields: exact integer arithmetic
        millis = (value - _EPOCH) // _ONE_MS
    else:  # bson's own steps, so that out-of-range values fail the same way
        offset = value.utcoffset()
        if offset is not None:
            value = value - offset
        millis = calendar.timegm(value.timetuple()) * 1000 + value.microsecond // 1000
    return {"$date": {"$numberLong": str(millis)}}


def _objectid(value: ObjectId) -> dict[str, str]:
    return {"$oid": value.binary.hex()}


def _decimal128(value: Decimal128) -> dict[str, str]:
    return {"$numberDecimal": decimal128_text(value)}


def _binary(data: bytes, subtype: int) -> dict[str, dict[str, str]]:
    return {"$binary": {"base64": b64encode(data).decode(), "subType": f"{subtype:02x}"}}


def _bytes(value: bytes) -> dict[str, dict[str, str]]:
    return _binary(value, 0)


def _binary_object(value: Binary) -> dict[str, dict[str, str]]:
    return _binary(value, value.subtype)


def _timestamp(value: Timestamp) -> dict[str, dict[str, int]]:
    return {"$timestamp": {"t": value.time, "i": value.inc}}


def _min_key(_: MinKey) -> dict[str, int]:
    return {"$minKey": 1}


def _max_key(_: MaxKey) -> dict[str, int]:
    return {"$maxKey": 1}


def _other(value: object) -> object:
    """A type without an exact entry: dict subclasses (SON...) are walked like json_util walks
    them (through items()); anything else is the reference's to write."""
    if isinstance(value, dict):
        return _dict(value)
    raise Inexact(type(value).__name__)


def _dict(document: dict[Any, Any]) -> dict[Any, Any]:
    plain, convert, other = _PLAIN, _CONVERT, _other
    return {key: value if type(value) in plain else convert.get(type(value), other)(value)
            for key, value in document.items()}


def _list(values: list[Any] | tuple[Any, ...]) -> list[Any]:
    plain, convert, other = _PLAIN, _CONVERT, _other
    return [value if type(value) in plain else convert.get(type(value), other)(value)
            for value in values]


def _other_escaped(value: object) -> object:
    if isinstance(value, dict):
        return _dict_escaped(value)
    raise Inexact(type(value).__name__)


def _dict_escaped(document: dict[Any, Any]) -> dict[Any, Any]:
    plain, convert, other = _PLAIN, _ESCAPED, _other_escaped
    return {(key if key[:1] != "$" else "$" + key):
            value if type(value) in plain else convert.get(type(value), other)(value)
            for key, value in document.items()}


def _list_escaped(values: list[Any] | tuple[Any, ...]) -> list[Any]:
    plain, convert, other = _PLAIN, _ESCAPED, _other_escaped
    return [value if type(value) in plain else convert.get(type(value), other)(value)
            for value in values]


_CONVERT: Final[dict[type, Callable[[Any], Any]]] = {
    dict: _dict,
    list: _list,
    tuple: _list,
    int: _int,
    Int64: _int64,
    float: _float,
    datetime: _datetime,
    ObjectId: _objectid,
    Decimal128: _decimal128,
    bytes: _bytes,
    Binary: _binary_object,
    Timestamp: _timestamp,
    MinKey: _min_key,
    MaxKey: _max_key,
}

#: the same conversions, escaping `$` keys on the way (`escaped_json_bytes`)
_ESCAPED: Final[dict[type, Callable[[Any], Any]]] = {
    **_CONVERT, dict: _dict_escaped, list: _list_escaped, tuple: _list_escaped}
