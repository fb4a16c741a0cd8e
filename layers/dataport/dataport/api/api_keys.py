"""The logic behind the /api-keys routes: a user makes, lists and revokes their own API keys.

Only a sign-in token (JWT) may make or revoke a key: a leaked key cannot mint more keys or keep
itself alive by revoking the others. A key is shown once, when it is made; the table keeps its
SHA-256 (auth.py), found per user through the `by-user` index. Revoking is immediate for the
authorizer's own lookups (consistent reads); API Gateway may serve a cached answer for the same
key for up to its authorizer TTL (`AuthorizerCacheSeconds` in template.yaml, 60 s by default;
docs/operations.md).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from dataport import aws
from dataport.auth import Principal, create_api_key, hash_api_key
from dataport.errors import Conflict, Forbidden, NotFound
from dataport.jobs.dynamo import from_item, is_conditional_failure, to_item
from dataport.models.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyView
from dataport.settings import get_settings

BY_USER_INDEX = "by-user"
#: active keys per user: enough for every script and machine, few enough to review
MAX_ACTIVE_KEYS = 20


def create(principal: Principal, request: ApiKeyCreate) -> ApiKeyCreated:
    _require_sign_in(principal, "made")
    active = [k for k in list_keys(principal.user_id) if _is_active(k)]
    if len(active) >= MAX_ACTIVE_KEYS:
        raise Conflict(f"You have {len(active)} active API keys, the most allowed; revoke one "
                       "you no longer use first.", details={"limit": MAX_ACTIVE_KEYS})
    expires_at = (int(time.time()) + request.expires_in_days * 86400
                  if request.expires_in_days else None)
    key = create_api_key(principal.user_id, request.name.strip(), expires_at=expires_at)
    item = aws.dynamodb().get_item(TableName=get_settings().api_keys_table, ConsistentRead=True,
                                   Key=to_item({"key_hash": hash_api_key(key)}))["Item"]
    return ApiKeyCreated(**_view(from_item(item)).model_dump(), key=key)


def list_keys(user_id: str) -> list[ApiKeyView]:
    """The user's keys, newest first (a user has few: no paging)."""
    table = get_settings().api_keys_table
    pages = aws.dynamodb().get_paginator("query").paginate(
        TableName=table, IndexName=BY_USER_INDEX,
        KeyConditionExpression="user_id = :me", ExpressionAttributeValues=to_item({":me": user_id}))
    keys = [_view(from_item(item)) for page in pages for item in page["Items"]]
    return sorted(keys, key=lambda k: k.created_at, reverse=True)


def revoke(principal: Principal, key_id: str) -> ApiKeyView:
    """Revoke one of the caller's keys (revoking a revoked key again changes nothing)."""
    _require_sign_in(principal, "revoked")
    settings = get_settings()
    found = aws.dynamodb().query(
        TableName=settings.api_keys_table, IndexName=BY_USER_INDEX,
        KeyConditionExpression="user_id = :me AND key_id = :id",
        ExpressionAttributeValues=to_item({":me": principal.user_id, ":id": key_id}))["Items"]
    if not found:
        raise NotFound(f"No API key {key_id} was found for this account.")
    key_hash = from_item(found[0])["key_hash"]
    try:
        answer = aws.dynamodb().update_item(
            TableName=settings.api_keys_table, Key=to_item({"key_hash": key_hash}),
            UpdateExpression="SET revoked = :yes, revoked_at = if_not_exists(revoked_at, :now)",
            ConditionExpression="user_id = :me",  # the index is eventually consistent
            ExpressionAttributeValues=to_item({
                ":yes": True, ":me": principal.user_id,
                ":now": datetime.now(UTC).isoformat(timespec="seconds")}),
            ReturnValues="ALL_NEW")
    except ClientError as error:
        if is_conditional_failure(error):
            raise NotFound(f"No API key {key_id} was found for this account.") from error
        raise
    return _view(from_item(answer["Attributes"]))


def _require_sign_in(principal: Principal, what: str) -> None:
    if principal.method != "jwt":
        raise Forbidden(f"API keys are {what} with a sign-in token (Authorization: Bearer), not "
                        "with an API key.")


def _is_active(key: ApiKeyView) -> bool:
    return not key.revoked and (key.expires_at is None or key.expires_at > datetime.now(UTC))


def _view(item: dict[str, Any]) -> ApiKeyView:
    expires_at = item.get("expires_at")
    return ApiKeyView(
        key_id=item["key_id"], name=item.get("name", ""),
        created_at=datetime.fromisoformat(item["created_at"]),
        expires_at=datetime.fromtimestamp(int(expires_at), UTC) if expires_at else None,
        revoked=item.get("revoked", False) is not False,  # as the authorizer reads it
        revoked_at=datetime.fromisoformat(item["revoked_at"]) if item.get("revoked_at") else None)
