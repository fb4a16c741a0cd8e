"""`contentHash` of a message: the change detector shared by seeding, import and restore.

SHA-256 hex of the canonical JSON of `{uuid, type, timestamp, content}`: keys sorted, no
whitespace, UTF-8 (not \\u escapes), timestamp as ISO 8601 UTC with milliseconds and `Z`. The
timestamp is cut to milliseconds because that is all a BSON date keeps: the hash of a message read
back from MongoDB equals the hash computed before it was written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def canonical_timestamp(value: datetime | str) -> str:
    """`2025-08-02T04:52:12.880Z` for any aware datetime or ISO string; naive means UTC (pymongo
    without tz_aware returns naive UTC)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def content_hash(uuid: str, type_: str, timestamp: datetime | str, content: str) -> str:
    canonical = json.dumps(
        {"uuid": uuid, "type": type_, "timestamp": canonical_timestamp(timestamp),
         "content": content},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def hash_of(doc: Mapping[str, Any]) -> str | None:
    """The ClaudeLens contentHash of a message, None when its fields cannot make one."""
    uuid, kind, moment, content = (doc.get("uuid"), doc.get("type"), doc.get("timestamp"),
                                   doc.get("content"))
    if not (isinstance(uuid, str) and isinstance(kind, str) and isinstance(moment, datetime)
            and moment.tzinfo is not None and isinstance(content, str)):
        return None
    return content_hash(uuid, kind, moment, content)
