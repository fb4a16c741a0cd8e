"""The fast Extended JSON line reader (formats/extjson_reader.py) gives exactly what
`bson.json_util.loads` gives (or the version 2 escape's `json` + hook): the same value with the
same types and key order, or the same error, for any line: canonical lines of arbitrary
documents, objects shaped like wrappers (valid or not), keys starting with `$` anywhere, and
what orjson refuses and `json` accepts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from bson import decimal128 as bson_decimal128
from bson import json_util
from bson.decimal128 import Decimal128
from hypothesis import assume, given
from hypothesis import strategies as st

from dataport.backups.format import encode_line
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.formats.extjson import json_util_canonical
from dataport.formats.extjson_reader import (
    DECIMAL128_CONTEXT,
    _unescaping_hook,
    decimal128,
    loads,
)
from tests.unit.format_sink import messages, project_doc, session_doc
from tests.unit.test_backup_format import SETTINGS, field_names, values


def reference(line: bytes, unescape: bool) -> Any:
    """What the backup reader used before: json_util, or json with the escape's hook."""
    if unescape:
        return json.loads(line, object_hook=_unescaping_hook)
    return json_util.loads(line, json_options=EXTENDED_JSON_READ_OPTIONS)


def generated(line: bytes) -> bytes:
    """A line of generated data: not one with `{"$oid": null}`, a new ObjectId each time it is
    read (json_util's ObjectId(None); test_a_null_object_id_is_a_new_one_either_way)."""
    assume(b'"$oid":null' not in line)
    return line


def outcome(read: Any, line: bytes, unescape: bool) -> tuple[str, str]:
    """The value's repr (types, tz, key order) or the error's type and message."""
    try:
        return "value", repr(read(line, unescape))
    except Exception as error:  # the error itself is what is compared
        return type(error).__name__, str(error)


def fast(line: bytes, unescape: bool) -> Any:
    return loads(line, unescape=unescape)


def same(line: bytes, unescape: bool = False) -> None:
    expected = outcome(reference, line, unescape)
    assert outcome(fast, line, unescape) == expected, line
    if expected[0] == "value":  # an equal value too (repr alone hides nothing, but say it)
        assert loads(line, unescape=unescape) == reference(line, unescape)


@SETTINGS
@given(st.dictionaries(field_names, values, max_size=6))
def test_a_version_1_line_of_any_document_reads_as_json_util_reads_it(
        document: dict[str, Any]) -> None:
    # written as version 1 did: objects shaped like wrappers, valid or not, stay raw in the line
    same(generated(json_util_canonical(document)))


@SETTINGS
@given(st.dictionaries(field_names, values, max_size=6))
def test_a_version_2_line_of_any_document_reads_as_the_escape_hook_reads_it(
        document: dict[str, Any]) -> None:
    line = generated(encode_line(document))
    same(line, unescape=b'"$$' in line)


@SETTINGS
@given(values)
def test_any_value_at_the_top_of_a_line_reads_the_same(value: Any) -> None:
    same(generated(json_util_canonical(value)))


def test_the_documents_of_every_collection_read_the_same() -> None:
    for document in [project_doc(), session_doc(), *messages()]:
        same(encode_line(document))


@pytest.mark.parametrize("line", [
    b'{"n": 123456789012345678901234567890}',  # beyond 64 bits: orjson refuses, json reads
    b'{"s": "\\ud800"}',  # a lone surrogate
    b'{"x": NaN, "y": -Infinity}',
    '{"t": "utf-16"}'.encode("utf-16"),
    b'{"a": {"$date": {"$numberLong": "1"}, "b": 1}}',  # a wrapper with an extra field
    b'{"a": {"b": 1, "$oid": "66ad9c1e5f2b4a0012c0ffee"}}',  # a wrapper key not first
    b'{"a": {"\\u0024oid": "66ad9c1e5f2b4a0012c0ffee"}}',  # an escaped `$`
    b'{"a": {"$oid": "not an id"}}',
    b'{"a": {"$numberInt": 5}}',
    b'{"a": {"$numberLong": 5}}',
    b'{"a": {"$date": {"$numberLong": 5}}}',
    b'{"a": {"$date": "2025-08-02T04:52:01.123Z"}}',
    b'{"a": {"$date": {"$numberLong": "99999999999999999"}}}',  # past year 9999
    b'{"a": {"$date": {"$numberLong": "-1"}}}',  # a millisecond before 1970
    b'{"a": {"$date": {"$numberLong": "-62135596800001"}}}',  # before year 1
    b'{"a": {"$numberDecimal": "1E+6145"}}',
    b'{"a": [{"$oid": "66ad9c1e5f2b4a0012c0ffee"}, [{"$numberInt": "7"}]]}',
    b'[1, {"$numberDouble": "-0.0"}]',
    b'"just a string"', b"7", b"1.5", b'{"f": 2.5e-3, "i": [1, -0]}', b"null",
    b"", b"{", b'{"a": 1,}', b"\xff\xfe",
])
def test_lines_outside_the_canonical_writer_give_the_same_value_or_error(line: bytes) -> None:
    same(line)
    same(line, unescape=True)


def test_a_null_object_id_is_a_new_one_either_way() -> None:
    line = b'{"a": {"$oid": null}}'
    assert type(loads(line)["a"]) is type(reference(line, False)["a"])


def test_an_escaped_object_is_data_and_a_wrapper_beside_it_is_a_type() -> None:
    line = b'{"q": {"$$date": {"$numberLong": "5"}}, "d": {"$date": {"$numberLong": "5"}}}'
    same(line, unescape=True)
    read = loads(line, unescape=True)
    assert set(read["q"]) == {"$date"}
    assert read["d"].year == 1970


# --- decimal128(text): Decimal128(text) without its bit loop, the same value or error ---

def test_the_decimal128_context_is_bsons() -> None:
    ours, theirs = DECIMAL128_CONTEXT, bson_decimal128._DEC128_CTX
    assert (ours.prec, ours.rounding, ours.Emin, ours.Emax, ours.capitals, ours.clamp) == (
        theirs.prec, theirs.rounding, theirs.Emin, theirs.Emax, theirs.capitals, theirs.clamp)
    assert {t for t, on in ours.traps.items() if on} == {t for t, on in theirs.traps.items()
                                                          if on}


def _decimal_outcome(make: Callable[[str], Decimal128], text: str) -> tuple[str, Any]:
    """The BID bytes, or the error's type and arguments."""
    try:
        return "bid", make(text).bid
    except Exception as error:  # the error is what is compared
        return type(error).__name__, repr(error.args)


#: texts of numbers in every form: any decimal (exponents far beyond decimal128's, 40 digits),
#: written plainly, in E notation, with a sign or spaces, and text near numbers
decimal_texts = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True, places=None).map(str),
    st.builds(lambda sign, digits, exponent, e: f"{sign}{digits}{e}{exponent}",
              st.sampled_from(["", "-", "+"]), st.integers(0, 10**40).map(str),
              st.integers(-6300, 6300), st.sampled_from(["E", "e", "E+"])),
    st.builds(lambda whole, fraction: f"{whole}.{fraction}", st.integers(-10**20, 10**20),
              st.text("0123456789", max_size=40)),
    st.text("0123456789+-.eE_ nNaIfity", max_size=12),
    st.sampled_from(["0", "-0", "0E-6176", "-0E+6111", "0E-6177", "0E+6112", "1E-6176",
                     "1E-6177", "1E+6144", "1E+6145", "9999999999999999999999999999999999",
                     "99999999999999999999999999999999999", "1.0", "1.000000000000000000000",
                     "9999999999999999999999999999999999E+6111", "-sNaN", "NaN123", "Inf",
                     "-Infinity", " 1", "1 ", "1_000", "١٢٣", "0.006899"]))


@given(decimal_texts)
def test_decimal128_of_any_text_is_bsons(text: str) -> None:
    assert _decimal_outcome(decimal128, text) == _decimal_outcome(Decimal128, text)
