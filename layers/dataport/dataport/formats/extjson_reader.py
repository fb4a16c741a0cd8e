"""Canonical Extended JSON lines read back fast: orjson parses the line (C), then one walk over
the parsed value turns the type wrappers into their BSON types, bottom-up, exactly as
`bson.json_util.loads(line, json_options=EXTENDED_JSON_READ_OPTIONS)` does.

Why: `json_util.loads` is `json.loads` with a Python object hook called for every object of the
line (a message holds tens: content blocks, usage, tool input), and the hook loops over every
key of each. Here orjson builds the objects, and the walk looks only at objects that hold a key
starting with `$` (what the hook would convert: every wrapper key starts with `$`); a
one-key wrapper goes straight to `json_util`'s own parser for that key, so what comes out, and
every error, is `json_util`'s.

The same result, by construction:
- the walk converts children before their parent, as `json.loads` calls its hook (a `$date`
  holding `{"$numberLong": ...}` sees an Int64, as in json_util);
- an object with no key starting with `$` is returned unchanged by `json_util.object_hook` too
  (no parser key matches), so skipping it changes nothing;
- anything orjson refuses and `json` accepts (lone surrogates in `\\u` escapes, UTF-16 or
  UTF-32 text, `NaN` literals), and any bare number orjson reads as a float (integers beyond
  64 bits become floats there, ints in `json`), is read by the old path itself, which also
  raises exactly its errors for a line that is no JSON at all.

Proven equal on every BSON type and on arbitrary documents by hypothesis
(tests/unit/test_extjson_reader.py).
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from bson import ObjectId, json_util
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import _millis_to_datetime
from bson.decimal128 import Decimal128, create_decimal128_context
from bson.int64 import Int64

from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS

_OPTIONS = EXTENDED_JSON_READ_OPTIONS
#: json_util's parser for each wrapper key (`$oid`, `$date`, `$numberLong`...)
_PARSERS: dict[str, Callable[[Any, Any], Any]] = dict(json_util._PARSERS)
_CODEC: CodecOptions[Any] = _OPTIONS  # JSONOptions are CodecOptions (json_util passes them so)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the read options make aware datetimes in UTC (what `date_of` computes directly)
_PLAIN_UTC = (_OPTIONS.datetime_conversion == DatetimeConversion.DATETIME
              and _OPTIONS.tz_aware and _OPTIONS.tzinfo is UTC)


def loads(line: bytes | str, *, unescape: bool = False) -> Any:
    """The typed value of one canonical Extended JSON line. `unescape`: the backup format's
    version 2 escape (an object with a key starting with `$$` is data: its keys lose their
    first `$` and it is never read as a type; backups/format.py)."""
    try:
        value = orjson.loads(line)
        if type(value) is dict:
            return _wrapped(value, unescape) if len(value) == 1 else _typed(value, unescape)
        if type(value) is list:
            return _typed(value, unescape)
        if type(value) is float:
            raise _BareNumber
        return value
    except (orjson.JSONDecodeError, _BareNumber):
        return _slow(line, unescape)


class _BareNumber(Exception):
    """A bare JSON number with a fraction or an exponent, or an integer beyond 64 bits, which
    orjson reads as a float where `json` reads an int: the line is read by `json` again. A
    canonical writer writes none (every number is a `$numberInt`... wrapper)."""


def _slow(line: bytes | str, unescape: bool) -> Any:
    """The old path, for what orjson refuses: `json` with json_util's hook (or the escape's)."""
    if unescape:
        return json.loads(line, object_hook=_unescaping_hook)
    return json_util.loads(line, json_options=_OPTIONS)


def _unescaping_hook(obj: dict[str, Any]) -> Any:
    if any(key[:2] == "$$" for key in obj):
        return {key[1:] if key[:1] == "$" else key: value for key, value in obj.items()}
    return json_util.object_hook(obj, _OPTIONS)


def date_of(millis: int) -> Any:
    """What `_millis_to_datetime(millis, options)` gives for the read options (aware, in UTC,
    plain datetimes), without its per-call option checks; an out-of-range date through it for
    its own error."""
    if not _PLAIN_UTC:
        return _millis_to_datetime(millis, _CODEC)
    try:
        return _EPOCH + timedelta(milliseconds=millis)
    except ArithmeticError:
        return _millis_to_datetime(millis, _CODEC)


def _typed(value: Any, unescape: bool) -> Any:
    if type(value) is list:
        for index, item in enumerate(value):
            kind = type(item)
            if kind is dict:
                value[index] = (_wrapped(item, unescape) if len(item) == 1
                                else _typed(item, unescape))
            elif kind is list:
                value[index] = _typed(item, unescape)
            elif kind is float:
                raise _BareNumber
        return value
    wrapper = False
    for key, item in value.items():
        kind = type(item)
        if kind is dict:  # same keys: safe while iterating
            value[key] = (_wrapped(item, unescape) if len(item) == 1
                          else _typed(item, unescape))
        elif kind is list:
            value[key] = _typed(item, unescape)
        elif kind is float:
            raise _BareNumber
        if key[:1] == "$":
            wrapper = True
    if not wrapper:
        return value
    if len(value) == 1 and not unescape:
        (key,) = value
        parser = _PARSERS.get(key)
        return parser(value, _OPTIONS) if parser is not None else value
    return _unescaping_hook(value) if unescape else json_util.object_hook(value, _OPTIONS)


#: the context `Decimal128(text)` reads its text in (IEEE 754 decimal128: 34 digits, clamped
#: exponents, and Inexact, Overflow and InvalidOperation raised; tests/unit/test_extjson_reader.py
#: holds it equal to bson's own)
DECIMAL128_CONTEXT = create_decimal128_context()
for _trap in (decimal.InvalidOperation, decimal.Overflow, decimal.Inexact):
    DECIMAL128_CONTEXT.traps[_trap] = True
#: where a coefficient of up to 34 digits is scaled to an integer (never rounded)
_WIDE = decimal.Context(prec=40)
_LOW_64 = (1 << 64) - 1


def decimal128(text: str) -> Decimal128:
    """`Decimal128(text)`: the same value, or the same error, in a third of the time (a money
    field in every assistant message). bson reads the text in DECIMAL128_CONTEXT, then builds
    the BID bits one at a time in Python; a finite number read in that context has at most 34
    digits (below 2**113) and an exponent from -6176 to 6111, so its BID is simply the sign,
    the biased exponent and the coefficient side by side (the form bson writes for it), handed
    to Decimal128 as its (high, low) words. Infinities, NaNs and what the context refuses go
    to Decimal128 itself."""
    try:
        number = DECIMAL128_CONTEXT.create_decimal(text)
    except Exception:
        return Decimal128(text)  # its own error
    if not number.is_finite():
        return Decimal128(text)
    sign, _, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    coefficient = int(number.copy_abs().scaleb(-exponent, _WIDE))
    words = ((sign << 63) | ((exponent + 6176) << 49) | (coefficient >> 64),
             coefficient & _LOW_64)
    # (high, low) is a documented form of Decimal128's argument its annotation leaves out
    return Decimal128(words)  # type: ignore[arg-type]


#: what `simple_wrapper` answers for an object it does not convert itself
NOT_SIMPLE: Any = object()


#: the wrappers of a string `simple_wrapper` converts, each by json_util's own conversion of
#: that string (its parsers: `_parse_canonical_oid`... once they checked the object's shape)
FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "$oid": ObjectId, "$numberLong": Int64, "$numberInt": int, "$numberDouble": float,
    "$numberDecimal": decimal128,
}


def simple_wrapper(key: str, inner: Any) -> Any:
    """The value of the one-key object `{key: inner}` for the wrappers a canonical writer
    writes most (an ObjectId, a date, the numbers), converted at once with the same checks and
    errors as their json_util parsers (one key, a string inside); NOT_SIMPLE for any other
    object. Shared with the JSON import's fast path (imports/readers/json_layout.py)."""
    if type(inner) is str:
        make = FROM_TEXT.get(key)
        return NOT_SIMPLE if make is None else make(inner)
    if key == "$date" and type(inner) is dict and len(inner) == 1:
        millis = inner.get("$numberLong")
        if type(millis) is str:
            # json_util: the inner Int64(millis), then _millis_to_datetime(int(it))
            return date_of(int(millis))
    return NOT_SIMPLE


def _wrapped(value: dict[str, Any], unescape: bool) -> Any:
    """An object of one key: a simple wrapper converted at once, anything else through the
    general walk."""
    ((key, inner),) = value.items()
    converted = simple_wrapper(key, inner)
    return _typed(value, unescape) if converted is NOT_SIMPLE else converted
