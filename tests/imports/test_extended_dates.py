"""The reader's fast path for dates gives exactly what json_util gives (value and tzinfo), and
leaves every other form to json_util."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bson import json_util
from hypothesis import given
from hypothesis import strategies as st

from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.imports.readers.json_layout import extended


def _both(wrapper: Any) -> tuple[Any, Any]:
    ours = extended({"d": wrapper})["d"]
    theirs = json_util.loads(json.dumps({"d": wrapper}),
                             json_options=EXTENDED_JSON_READ_OPTIONS)["d"]
    return ours, theirs


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_any_date_in_datetimes_range_reads_as_json_util_reads_it(millis: int) -> None:
    ours, theirs = _both({"$date": {"$numberLong": str(millis)}})
    assert ours == theirs
    assert type(ours) is type(theirs)
    assert ours.utcoffset() == theirs.utcoffset()
    assert ours.tzinfo == theirs.tzinfo


@pytest.mark.parametrize("wrapper", [
    {"$date": {"$numberLong": "-62135596800001"}},  # before year 1
    {"$date": {"$numberLong": "253402300800000"}},  # after year 9999
    {"$date": "2025-08-02T04:52:07.349Z"},  # relaxed form
    {"$date": {"$numberLong": "12", "x": 1}},
])
def test_other_forms_are_json_utils_to_read(wrapper: Any) -> None:
    try:
        theirs = json_util.loads(json.dumps({"d": wrapper}),
                                 json_options=EXTENDED_JSON_READ_OPTIONS)["d"]
    except Exception as error:  # json_util refuses it: so does the reader, the same way
        with pytest.raises(type(error)):
            extended({"d": wrapper})
        return
    assert extended({"d": wrapper})["d"] == theirs
