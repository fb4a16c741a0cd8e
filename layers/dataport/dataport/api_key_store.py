"""The API-key store: the only module that reads or writes the API keys table, for the
authorizer (a key by its hash) and the /api-keys routes (a user's keys, make, revoke).

A row is keyed by the key's SHA-256 (`key_hash`), never the key; the `by-user` index finds a
user's keys by `key_id`. Rows read back fail closed: a `revoked` that is not a clean false
counts as revoked, an `expires_at` that is not a number as long expired, an owner that is not a
string as no owner (the authorizer then refuses the key), a `role` other than a clean "admin" as
"user".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict

from dataport import aws
from dataport.errors import Conflict
from dataport.jobs.dynamo import from_item, is_conditional_failure, to_item
from dataport.settings import get_settings

BY_USER_INDEX = "by-user"
#: BatchGetItem reads at most 100 keys a request
BATCH_GET_LIMIT = 100


class ApiKeyRecord(BaseModel):
    """One key's row."""

    model_config = ConfigDict(frozen=True)

    key_hash: str
    key_id: str
    user_id: str
    name: str
    created_at: AwareDatetime
    expires_at: int | None = None  # epoch seconds; None: until revoked
    revoked: bool = False
    revoked_at: AwareDatetime | None = None
    role: Literal["user", "admin"] = "user"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class ApiKeyStore:
    def __init__(self, table: str | None = None) -> None:
        self.table = table or get_settings().api_keys_table
        self.db = aws.dynamodb()

    def add(self, record: ApiKeyRecord) -> None:
        """Store a new key; a hash already stored is refused (never overwritten)."""
        try:
            self.db.put_item(TableName=self.table, Item=to_item(_row(record)),
                             ConditionExpression="attribute_not_exists(key_hash)")
        except ClientError as error:
            if is_conditional_failure(error):
                raise Conflict("This API key exists already.") from error
            raise

    def get(self, key_hash: str) -> ApiKeyRecord | None:
        """A key by its hash, read consistently: a revocation takes effect at once."""
        item = self.db.get_item(TableName=self.table, ConsistentRead=True,
                                Key=to_item({"key_hash": key_hash})).get("Item")
        return _record(from_item(item)) if item else None

    def of_user(self, user_id: str) -> list[ApiKeyRecord]:
        """The user's keys, newest first (a user has few: no paging for the caller)."""
        pages = self.db.get_paginator("query").paginate(
            TableName=self.table, IndexName=BY_USER_INDEX,
            KeyConditionExpression="user_id = :me",
            ExpressionAttributeValues=to_item({":me": user_id}))
        rows = [from_item(item) for page in pages for item in page["Items"]]
        roles = self._roles([row["key_hash"] for row in rows])
        keys = [_record({**row, "role": roles.get(row["key_hash"])}) for row in rows]
        return sorted(keys, key=lambda k: k.created_at, reverse=True)

    def _roles(self, key_hashes: list[str]) -> dict[str, Any]:
        """Each key's role, from the table itself: the by-user index does not project it (an
        index's projection cannot change in place once deployed)."""
        roles: dict[str, Any] = {}
        for start in range(0, len(key_hashes), BATCH_GET_LIMIT):
            pending: Any = {self.table: {
                "Keys": [to_item({"key_hash": h})
                         for h in key_hashes[start:start + BATCH_GET_LIMIT]],
                "ProjectionExpression": "key_hash, #role",
                "ExpressionAttributeNames": {"#role": "role"}}}
            while pending:
                answer = self.db.batch_get_item(RequestItems=pending)
                for item in answer.get("Responses", {}).get(self.table, []):
                    row = from_item(item)
                    roles[row["key_hash"]] = row.get("role")
                pending = answer.get("UnprocessedKeys") or None
        return roles

    def find(self, user_id: str, key_id: str) -> ApiKeyRecord | None:
        """One of the user's keys by its public id."""
        found = self.db.query(
            TableName=self.table, IndexName=BY_USER_INDEX,
            KeyConditionExpression="user_id = :me AND key_id = :id",
            ExpressionAttributeValues=to_item({":me": user_id, ":id": key_id}))["Items"]
        return _record(from_item(found[0])) if found else None

    def revoke(self, user_id: str, key_hash: str) -> ApiKeyRecord | None:
        """Revoke the user's key (again: nothing changes, the first time is kept); None when
        the key is not theirs (the index is eventually consistent: the owner is checked on the
        row itself)."""
        try:
            answer = self.db.update_item(
                TableName=self.table, Key=to_item({"key_hash": key_hash}),
                UpdateExpression="SET revoked = :yes, revoked_at = if_not_exists(revoked_at, :now)",
                ConditionExpression="user_id = :me",
                ExpressionAttributeValues=to_item({
                    ":yes": True, ":me": user_id,
                    ":now": datetime.now(UTC).isoformat(timespec="seconds")}),
                ReturnValues="ALL_NEW")
        except ClientError as error:
            if is_conditional_failure(error):
                return None
            raise
        return _record(from_item(answer["Attributes"]))


def _row(record: ApiKeyRecord) -> dict[str, Any]:
    return {"key_hash": record.key_hash, "key_id": record.key_id, "user_id": record.user_id,
            "name": record.name, "created_at": record.created_at.isoformat(timespec="seconds"),
            "expires_at": record.expires_at, "revoked": record.revoked,
            "revoked_at": (record.revoked_at.isoformat(timespec="seconds")
                           if record.revoked_at else None),
            "role": record.role}


def _record(row: Mapping[str, Any]) -> ApiKeyRecord:
    expires_at = row.get("expires_at")
    if "expires_at" in row and not isinstance(expires_at, Decimal):  # what N reads back as
        expires_at = 0
    user_id = row.get("user_id")
    # fail closed: only a clean "admin" is an administrator's key
    role: Literal["user", "admin"] = "admin" if row.get("role") == "admin" else "user"
    return ApiKeyRecord(
        key_hash=row["key_hash"], key_id=row.get("key_id", ""),
        user_id=user_id if isinstance(user_id, str) else "", name=row.get("name", ""),
        created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=int(expires_at) if expires_at is not None else None,
        revoked="revoked" in row and row["revoked"] is not False,
        revoked_at=datetime.fromisoformat(row["revoked_at"]) if row.get("revoked_at") else None,
        role=role)
