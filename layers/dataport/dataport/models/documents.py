"""Source documents as they come from MongoDB.

Exports must be lossless, so the raw BSON document (ObjectId, Decimal128, aware datetimes and any
field ClaudeLens adds later) is what flows from the source to the format writers. `RawDocument`
names that shape; the friendly formats read the fields they show through the accessors below.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128

RawDocument = Mapping[str, Any]

MESSAGE_TYPES = ("user", "assistant", "tool_use", "tool_result")


def as_decimal(value: object) -> Decimal | None:
    """Decimal128 / Decimal / int / str to an exact Decimal (never through float)."""
    if value is None:
        return None
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    raise TypeError(f"not a decimal: {type(value).__name__}")

