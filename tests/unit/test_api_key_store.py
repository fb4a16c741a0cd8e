"""The API-key store over (moto) DynamoDB: the one module that reads and writes API keys, for
the authorizer and the /api-keys routes alike. Rows read back fail closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dataport import aws
from dataport.api_key_store import ApiKeyRecord, ApiKeyStore
from dataport.errors import Conflict
from dataport.settings import get_settings
from tests.fixtures.aws import create_api_keys_table

ALICE = "66ad9b005f2b4a0012c0aaaa"
BOB = "66ad9b005f2b4a0012c0bbbb"
NOW = datetime(2025, 8, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(moto_aws: None) -> ApiKeyStore:
    create_api_keys_table(get_settings().api_keys_table)
    return ApiKeyStore()


def _record(n: int, user_id: str = ALICE, **fields: Any) -> ApiKeyRecord:
    key_hash = f"{n:02x}" * 32
    return ApiKeyRecord(key_hash=key_hash, key_id=key_hash[:16], user_id=user_id,
                        name=f"key {n}", created_at=NOW + timedelta(minutes=n), **fields)


def test_a_key_reads_back_as_written_and_is_never_overwritten(store: ApiKeyStore) -> None:
    record = _record(1, expires_at=int(NOW.timestamp()) + 60)
    store.add(record)
    assert store.get(record.key_hash) == record
    assert store.get(_record(2).key_hash) is None
    with pytest.raises(Conflict):
        store.add(record.model_copy(update={"user_id": BOB}))
    assert store.get(record.key_hash) == record
    assert not record.expired(NOW.timestamp() + 59)
    assert record.expired(NOW.timestamp() + 60)


def test_a_users_keys_newest_first_and_only_theirs(store: ApiKeyStore) -> None:
    for record in (_record(1), _record(3), _record(2), _record(4, user_id=BOB)):
        store.add(record)
    assert [k.name for k in store.of_user(ALICE)] == ["key 3", "key 2", "key 1"]
    assert [k.name for k in store.of_user(BOB)] == ["key 4"]
    assert store.find(ALICE, _record(2).key_id) == _record(2)
    assert store.find(ALICE, _record(4).key_id) is None


def test_revoking_is_for_the_owner_only_and_keeps_the_first_time(store: ApiKeyStore) -> None:
    store.add(_record(1))
    assert store.revoke(BOB, _record(1).key_hash) is None
    assert store.get(_record(1).key_hash).revoked is False  # type: ignore[union-attr]
    first = store.revoke(ALICE, _record(1).key_hash)
    assert first is not None
    assert first.revoked
    assert first.revoked_at is not None
    again = store.revoke(ALICE, _record(1).key_hash)
    assert again == first
    assert store.get(_record(1).key_hash) == first


@pytest.mark.parametrize(("attribute", "value", "read"), [
    ("revoked", {"S": "false"}, {"revoked": True}),
    ("revoked", {"NULL": True}, {"revoked": True}),
    ("expires_at", {"S": "tomorrow"}, {"expires_at": 0}),
    ("user_id", {"N": "1"}, {"user_id": ""}),
])
def test_odd_rows_read_back_failing_closed(store: ApiKeyStore, attribute: str,
                                           value: dict[str, Any], read: dict[str, Any]) -> None:
    store.add(_record(1))
    table = get_settings().api_keys_table
    item = aws.dynamodb().get_item(TableName=table, Key={"key_hash": {"S": _record(1).key_hash}})
    aws.dynamodb().put_item(TableName=table, Item={**item["Item"], attribute: value})
    assert store.get(_record(1).key_hash) == _record(1).model_copy(update=read)
