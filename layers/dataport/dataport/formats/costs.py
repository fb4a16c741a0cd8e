"""Costs an export computes for messages ClaudeLens stored without one (the export option
`computeCosts`, on by default).

The import prices a transcript's replies as it reads them (readers/claude_transcript.py); data
that came into ClaudeLens another way may still lack `costUsd`. The export applies the same
computation (dataport.pricing) to each assistant message without a cost, from its `model` and
`usage` (or its messageData's), and marks it `costComputedBy` as the import does, so every
format shows the figure and says where it came from. A model without a price keeps its cost
empty. Session totals are the stored ones: a session document is written before its messages,
so an export never rewrites it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bson.decimal128 import Decimal128

from dataport.formats.common import as_utc, message_data, model_of
from dataport.models.documents import COST_COMPUTED_BY, RawDocument
from dataport.pricing import PRICE_SOURCE, PriceUnknown, reply_cost


def with_cost(message: RawDocument) -> RawDocument:
    """The message with its cost computed when it is an assistant reply stored without one;
    otherwise the message itself."""
    if message.get("type") != "assistant" or message.get("costUsd") is not None:
        return message
    data = message_data(message) or {}
    usage = message.get("usage") or data.get("usage")
    model = model_of(message)
    if not isinstance(usage, Mapping) or not model:
        return message
    try:
        cost = reply_cost({"model": model, "usage": usage}, as_utc(message.get("timestamp")))
    except PriceUnknown:
        return message
    if cost is None:
        return message
    priced: dict[str, Any] = dict(message)
    priced["costUsd"] = Decimal128(cost)
    priced[COST_COMPUTED_BY] = PRICE_SOURCE
    return priced


def priced(messages: Iterator[RawDocument]) -> Iterator[RawDocument]:
    """`with_cost` over a stream of messages."""
    for message in messages:
        yield with_cost(message)
