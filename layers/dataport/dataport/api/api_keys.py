"""The logic behind the /api-keys routes: a user makes, lists and revokes their own API keys.

Only a sign-in token (JWT) may make or revoke a key: a leaked key cannot mint more keys or keep
itself alive by revoking the others. Only an administrator may make a key with the `admin` role
(the role the key then authenticates with, auth.py). A key is shown once, when it is made; the
table keeps its SHA-256 (auth.py), found per user through the `by-user` index (api_key_store.py).
Revoking is immediate for the authorizer's own lookups (consistent reads); API Gateway may serve a
cached answer for the same key for up to its authorizer TTL (`AuthorizerCacheSeconds` in
template.yaml, 60 s by default; docs/operations.md).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dataport.api_key_store import ApiKeyRecord, ApiKeyStore
from dataport.auth import Principal, issue_api_key
from dataport.errors import Conflict, Forbidden, NotFound
from dataport.models.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyView

#: active keys per user: enough for every script and machine, few enough to review
MAX_ACTIVE_KEYS = 20


def create(principal: Principal, request: ApiKeyCreate) -> ApiKeyCreated:
    _require_sign_in(principal, "made")
    if request.role == "admin" and not principal.is_admin:
        raise Forbidden("Only an administrator can make an admin API key; ask one, or make a "
                        "key with role \"user\".")
    active = [k for k in list_keys(principal.user_id) if _is_active(k)]
    if len(active) >= MAX_ACTIVE_KEYS:
        raise Conflict(f"You have {len(active)} active API keys, the most allowed; revoke one "
                       "you no longer use first.", details={"limit": MAX_ACTIVE_KEYS})
    expires_at = (int(time.time()) + request.expires_in_days * 86400
                  if request.expires_in_days else None)
    key, record = issue_api_key(principal.user_id, request.name.strip(), expires_at=expires_at,
                                role=request.role)
    return ApiKeyCreated(**_view(record).model_dump(), key=key)


def list_keys(user_id: str) -> list[ApiKeyView]:
    """The user's keys, newest first."""
    return [_view(record) for record in ApiKeyStore().of_user(user_id)]


def revoke(principal: Principal, key_id: str) -> ApiKeyView:
    """Revoke one of the caller's keys (revoking a revoked key again changes nothing)."""
    _require_sign_in(principal, "revoked")
    store = ApiKeyStore()
    found = store.find(principal.user_id, key_id)
    revoked = store.revoke(principal.user_id, found.key_hash) if found else None
    if revoked is None:
        raise NotFound(f"No API key {key_id} was found for this account.")
    return _view(revoked)


def _require_sign_in(principal: Principal, what: str) -> None:
    if principal.method != "jwt":
        raise Forbidden(f"API keys are {what} with a sign-in token (Authorization: Bearer), not "
                        "with an API key.")


def _is_active(key: ApiKeyView) -> bool:
    return not key.revoked and (key.expires_at is None or key.expires_at > datetime.now(UTC))


def _view(record: ApiKeyRecord) -> ApiKeyView:
    return ApiKeyView(
        key_id=record.key_id, name=record.name, created_at=record.created_at,
        expires_at=(datetime.fromtimestamp(record.expires_at, UTC)
                    if record.expires_at else None),
        revoked=record.revoked, revoked_at=record.revoked_at, role=record.role)
