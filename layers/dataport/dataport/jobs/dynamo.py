"""Plain-Python <-> DynamoDB attribute values, through boto3's own (de)serializers."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from dataport.errors import InvalidRequest

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def to_value(value: Any) -> Any:
    return _serializer.serialize(value)


def is_conditional_failure(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return code in {"ConditionalCheckFailedException", "TransactionCanceledException"}


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; our counters are integers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    return value


def encode_page_token(last_key: Mapping[str, Any]) -> str:
    """A query's LastEvaluatedKey as an opaque nextToken."""
    return base64.urlsafe_b64encode(json.dumps(last_key, sort_keys=True).encode()).decode()


def decode_page_token(token: str, field: str, expected: str) -> dict[str, Any]:
    """A nextToken back into the ExclusiveStartKey, refused unless its `field` is `expected`
    (the caller's own listing: a token cannot page someone else's)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(key, dict) or key.get(field) != to_value(expected):
            raise ValueError("not this caller's listing")
    except (ValueError, binascii.Error) as error:
        raise InvalidRequest("The nextToken is not valid; start again without it.",
                             details={"field": "nextToken"}) from error
    return key
