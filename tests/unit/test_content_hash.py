"""contentHash: the canonical form is a contract (import compares hashes written elsewhere)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dataport.source.content_hash import canonical_timestamp, content_hash

MOMENT = datetime(2025, 8, 2, 4, 52, 12, 880000, tzinfo=UTC)


def test_hash_is_sha256_of_the_documented_canonical_json() -> None:
    canonical = ('{"content":"Привет 👋 é","timestamp":"2025-08-02T04:52:12.880Z",'
                 '"type":"user","uuid":"15e15459-c55e-4c93-8a2e-d95794c41d63"}')
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    assert content_hash("15e15459-c55e-4c93-8a2e-d95794c41d63", "user", MOMENT,
                        "Привет 👋 é") == expected


@pytest.mark.parametrize("timestamp", [
    MOMENT,
    MOMENT.astimezone(timezone(timedelta(hours=9))),
    MOMENT.replace(tzinfo=None),
    MOMENT.replace(microsecond=880999),
    "2025-08-02T04:52:12.880Z",
    "2025-08-02T13:52:12.880+09:00",
])
def test_equal_instants_hash_equal_at_bson_precision(timestamp: datetime | str) -> None:
    assert canonical_timestamp(timestamp) == "2025-08-02T04:52:12.880Z"
    assert content_hash("u", "assistant", timestamp, "x") == content_hash(
        "u", "assistant", MOMENT, "x")


BASE = ("u1", "user", MOMENT, "café")


@pytest.mark.parametrize("changed", [
    ("u2", "user", MOMENT, "café"),
    ("u1", "assistant", MOMENT, "café"),
    ("u1", "user", MOMENT + timedelta(milliseconds=1), "café"),
    ("u1", "user", MOMENT, "cafe\u0301"),  # same text to a reader, other code points
])
def test_every_field_changes_the_hash(changed: tuple[str, str, datetime, str]) -> None:
    assert content_hash(*changed) != content_hash(*BASE)
