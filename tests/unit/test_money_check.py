"""imports.validate.check_money reads a Decimal128's sign and special values off its BID bits
before converting it: the answer must be the conversion's for every value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from hypothesis import given
from hypothesis import strategies as st

from dataport.imports.validate import check_money
from dataport.models.imports import IssueCode


def _by_conversion(value: Decimal128) -> IssueCode | None:
    number = value.to_decimal()
    if not number.is_finite():
        return IssueCode.INVALID_NUMBER
    if number < 0 or (number == 0 and number.is_signed()):
        return IssueCode.NEGATIVE_COST
    return None


def _code(found: Any) -> IssueCode | None:
    return None if found is None else found[0]


EDGES = ["0", "-0", "0E-6176", "-0E+6111", "1", "-1", "0.000001", "-0.000001", "Infinity",
         "-Infinity", "NaN", "-NaN", "sNaN", "9999999999999999999999999999999999E+6111",
         "-9999999999999999999999999999999999E+6111", "1E-6176", "-1E-6176", "123.456789"]


def test_edge_values_answer_as_the_conversion_does() -> None:
    for text in EDGES:
        value = Decimal128(text)
        assert _code(check_money(value)) == _by_conversion(value), text


@given(st.decimals(allow_nan=True, allow_infinity=True, places=None))
def test_any_decimal_answers_as_the_conversion_does(number: Decimal) -> None:
    try:
        value = Decimal128(number)
    except Exception:  # beyond Decimal128 (too many digits or an exponent out of range)
        return
    assert _code(check_money(value)) == _by_conversion(value)


@given(st.binary(min_size=16, max_size=16))
def test_any_bit_pattern_answers_as_the_conversion_does(bid: bytes) -> None:
    value = Decimal128.from_bid(bid)
    assert _code(check_money(value)) == _by_conversion(value)
