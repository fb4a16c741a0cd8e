"""Plain-Python <-> DynamoDB attribute values, through boto3's own (de)serializers."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
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


def page_token(last_key: Mapping[str, Any]) -> str:
    """An opaque `nextToken` for a query's LastEvaluatedKey."""
    return base64.urlsafe_b64encode(json.dumps(last_key, sort_keys=True).encode()).decode()


def page_start(token: str, attribute: str, value: str) -> dict[str, Any]:
    """The ExclusiveStartKey a `nextToken` stands for, refused (400) unless it continues this
    listing: its `attribute` must be `value` (a token of another user's listing is not)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(key, dict) or key.get(attribute) != to_value(value):
            raise ValueError("not this listing")
    except (ValueError, binascii.Error) as error:
        raise InvalidRequest("The nextToken is not valid; start again without it.",
                             details={"field": "nextToken"}) from error
    return key
