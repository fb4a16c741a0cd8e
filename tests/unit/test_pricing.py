"""Costs computed from usage (dataport.pricing) against figures worked out by hand from
Anthropic's published rates, each token kind on its own; a model the price data lacks is never
guessed, in the pricing and in an import."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from bson.decimal128 import Decimal128

from dataport.formats.costs import priced, with_cost
from dataport.models.documents import COST_COMPUTED_BY
from dataport.models.records import RecordKind
from dataport.pricing import PRICE_SOURCE, PriceUnknown, reply_cost
from tests.imports.support import kinds, read

OPUS_41 = "claude-opus-4-1-20250805"  # $15 in, $75 out, $1.50 cache read, $18.75 / $30 writes
SONNET_45 = "claude-sonnet-4-5-20250929"  # $3 / $15; above 200k input tokens $6 / $22.50
AT = datetime(2025, 9, 1, tzinfo=UTC)


def reply(model: str, **usage: Any) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [], "usage": usage}


@pytest.mark.parametrize(("usage", "dollars"), [
    ({"input_tokens": 1_000_000, "output_tokens": 0}, "15"),
    ({"input_tokens": 0, "output_tokens": 1_000}, "0.075"),
    ({"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 2_000}, "0.003"),
    ({"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 100}, "0.001875"),
    # Claude Code 2.x splits cache writes by lifetime: an hour costs $30 a million, not $18.75
    ({"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 100,
      "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 100}},
     "0.003"),
    # all four at once: 1,000 x 15 + 500 x 75 + 2,000 x 1.5 + 100 x 18.75, per million
    ({"input_tokens": 1_000, "output_tokens": 500, "cache_read_input_tokens": 2_000,
      "cache_creation_input_tokens": 100, "service_tier": "standard"}, "0.057375"),
])
def test_each_token_kind_at_its_own_rate(usage: dict[str, Any], dollars: str) -> None:
    assert reply_cost(reply(OPUS_41, **usage), AT) == Decimal(dollars)


def test_a_long_prompt_is_priced_at_the_long_context_rate() -> None:
    # 250,000 input tokens pass Sonnet 4.5's 200k tier: every token at $6, output at $22.50
    cost = reply_cost(reply(SONNET_45, input_tokens=250_000, output_tokens=1_000), AT)
    assert cost == Decimal("1.5") + Decimal("0.0225")
    assert reply_cost(reply(SONNET_45, input_tokens=1_000, output_tokens=1_000), AT) == (
        Decimal("0.003") + Decimal("0.015"))


def test_nothing_is_guessed() -> None:
    with pytest.raises(PriceUnknown) as raised:
        reply_cost(reply("claude-imaginary-9", input_tokens=10, output_tokens=5), AT)
    assert raised.value.model == "claude-imaginary-9"
    assert PRICE_SOURCE in str(raised.value)
    # Claude Code's own `<synthetic>` replies bill nothing: no cost, no warning
    assert reply_cost(reply("<synthetic>", input_tokens=0, output_tokens=0), AT) is None
    assert reply_cost({"role": "assistant", "content": []}, AT) is None  # no usage at all


def test_an_import_prices_what_it_can_and_warns_for_the_rest() -> None:
    def line(uuid: str, model: str, **extra: Any) -> bytes:
        record = {"parentUuid": None, "isSidechain": False, "userType": "external",
                  "cwd": "/w", "sessionId": "5e55a000-0000-4000-8000-000000000001",
                  "version": "2.1.0", "type": "assistant", "uuid": uuid,
                  "timestamp": "2025-09-01T10:00:00.000Z",
                  "message": reply(model, input_tokens=1_000, output_tokens=500,
                                   cache_read_input_tokens=2_000,
                                   cache_creation_input_tokens=100) | {"id": uuid}, **extra}
        return json.dumps(record).encode() + b"\n"

    data = (line("a-1", OPUS_41) + line("a-2", "claude-imaginary-9")
            + line("a-3", "claude-imaginary-9", costUSD=0.25))  # reported: kept, no warning
    records, issues = read(data, "5e55a000-0000-4000-8000-000000000001.jsonl")
    warned = [i for i in issues if i.code == "price_unknown"]
    assert [(i.line, i.severity) for i in warned] == [(2, "warning")]
    messages = {m["uuid"]: m for m in kinds(records, RecordKind.MESSAGE)}
    assert messages["a-1"]["costUsd"].to_decimal() == Decimal("0.057375")
    assert messages["a-1"][COST_COMPUTED_BY] == PRICE_SOURCE
    assert "costUsd" not in messages["a-2"]
    assert COST_COMPUTED_BY not in messages["a-2"]
    assert messages["a-3"]["costUsd"].to_decimal() == Decimal("0.25")
    assert COST_COMPUTED_BY not in messages["a-3"]
    (session,) = kinds(records, RecordKind.SESSION)
    assert session["totalCost"].to_decimal() == Decimal("0.057375") + Decimal("0.25")


def test_an_export_prices_what_was_stored_without_a_cost() -> None:
    stored = {"uuid": "m-1", "type": "assistant", "timestamp": AT, "model": OPUS_41,
              "usage": {"input_tokens": 1_000, "output_tokens": 500,
                        "cache_read_input_tokens": 2_000, "cache_creation_input_tokens": 100},
              "messageData": reply(OPUS_41)}
    (out,) = priced(iter([stored]))
    assert out["costUsd"] == Decimal128("0.057375")
    assert out[COST_COMPUTED_BY] == PRICE_SOURCE
    assert "costUsd" not in stored  # the stored document is not changed
    reported = stored | {"costUsd": Decimal128("0.5")}
    assert with_cost(reported) is reported
    unknown = stored | {"model": "claude-imaginary-9"}
    assert with_cost(unknown) is unknown
    user = {"uuid": "m-2", "type": "user", "timestamp": AT, "content": "hi"}
    assert with_cost(user) is user
