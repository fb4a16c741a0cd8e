"""The cost of a Claude reply computed from its usage, when the source reports none.

Claude Code stopped writing `costUSD`, so ClaudeLens prices a reply from `model` and `usage`:
input, output, cache-creation (5-minute and 1-hour writes) and cache-read tokens, each at its
own rate, and server-side web searches. The rates are `genai-prices` (the pydantic team's
versioned price data, bundled, offline; pinned in layers/dataport/requirements.txt), read
through its own Anthropic usage extractor, at the time of the reply (a model's price may have
changed since). Nothing here guesses: a model the price data does not know raises
`PriceUnknown`, and the caller leaves the cost empty and says so.

`PRICE_SOURCE` ("genai-prices <version>") is what a computed cost records as its origin
(`costComputedBy` on the message, `priceSource` in an export's manifest).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import genai_prices
import orjson

PRICE_SOURCE = f"genai-prices {genai_prices.__version__}"
#: the usage keys whose tokens are billed (a reply with none of them has nothing to price)
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
              "cache_read_input_tokens")
#: (model, day, usage) prices remembered: about 5 MB at most
PRICES_REMEMBERED = 16_384


class PriceUnknown(Exception):
    """The reply cannot be priced: the price data lacks its model, or its usage is not one the
    price data can read. `model` names it for the report."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(reason)
        self.model = model


def _tokens(usage: Mapping[str, Any]) -> int:
    total = 0
    for key in TOKEN_KEYS:
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            total += value
    return total


def reply_cost(message_data: Mapping[str, Any], at: datetime | None) -> Decimal | None:
    """The cost in USD of one Claude reply (a transcript line's `message`), exact; None when it
    has no usage or no model, or billed no token (Claude Code's `<synthetic>` replies).
    Raises `PriceUnknown` when the price data cannot price it."""
    usage = message_data.get("usage")
    model = message_data.get("model")
    if not isinstance(usage, Mapping) or not isinstance(model, str) or not model:
        return None
    if _tokens(usage) == 0:
        return None
    day = None if at is None else datetime(at.year, at.month, at.day, tzinfo=UTC)
    priced = _price(model, day, orjson.dumps(usage, option=orjson.OPT_SORT_KEYS))
    if isinstance(priced, str):
        raise PriceUnknown(model, priced)
    return priced


@lru_cache(maxsize=PRICES_REMEMBERED)
def _price(model: str, day: datetime | None, usage: bytes) -> Decimal | str:
    """The price of one usage (its JSON) on a day, or why there is none. genai-prices takes
    about half a millisecond a reply; the lines of one streamed reply repeat its usage, and
    the import reads a folder twice, so the same question comes back often. Prices change by
    the day at most (their constraints are dates)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown usage keys are ignored, not billed
            extracted = genai_prices.extract_usage({"model": model, "usage": orjson.loads(usage)},
                                                   provider_id="anthropic")
            price = extracted.calc_price(genai_request_timestamp=day)
    except LookupError:
        return f"{PRICE_SOURCE} has no price for the model {model!r}"
    except (ValueError, TypeError) as exc:
        return f"the usage of this {model!r} reply cannot be priced: {exc}"
    return Decimal(price.total_price)
