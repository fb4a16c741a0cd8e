"""`contentHash` of a message: the change detector shared by seeding, import and restore.

SHA-256 hex of the canonical JSON of `{uuid, type, timestamp, content}`: keys sorted, no
whitespace, UTF-8 (not \\u escapes), timestamp as ISO 8601 UTC with milliseconds and `Z`. The
timestamp is cut to milliseconds because that is all a BSON date keeps: the hash of a message read
back from MongoDB equals the hash computed before it was written.

The canonical JSON is `json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=False)` encoded as UTF-8. orjson writes exactly those bytes for four plain strings
(same escapes, non-ASCII as it is) in a tenth of the time (validation hashes every message);
anything else (a str subclass, another type, a lone surrogate, which orjson refuses and the UTF-8
encoding refuses too) goes through `json` itself, with its result or its error.
tests/unit/test_content_hash.py proves both equal to the `json` form over any values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson


def canonical_timestamp(value: datetime | str) -> str:
    """`2025-08-02T04:52:12.880Z` for any aware datetime or ISO string; naive means UTC (pymongo
    without tz_aware returns naive UTC)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if type(moment) is datetime and moment.year >= 1000:
        # the same text, faster: isoformat pads the year (strftime's %Y does not below 1000)
        # and cuts to milliseconds as `microsecond // 1000` does; "+00:00" becomes "Z"
        return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def canonical_json(uuid: str, type_: str, timestamp: str, content: str) -> bytes:
    """The canonical JSON of the four fields, as UTF-8 (see the module docstring)."""
    if type(uuid) is str and type(type_) is str and type(timestamp) is str \
            and type(content) is str:
        try:
            # keys written in sorted order: what sort_keys gives
            return orjson.dumps({"content": content, "timestamp": timestamp, "type": type_,
                                 "uuid": uuid})
        except orjson.JSONEncodeError:
            pass  # a lone surrogate: json's own error below
    return json.dumps(
        {"uuid": uuid, "type": type_, "timestamp": timestamp, "content": content},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_hash(uuid: str, type_: str, timestamp: datetime | str, content: str) -> str:
    return hashlib.sha256(
        canonical_json(uuid, type_, canonical_timestamp(timestamp), content)).hexdigest()


def hash_of(doc: Mapping[str, Any]) -> str | None:
    """The ClaudeLens contentHash of a message, None when its fields cannot make one."""
    uuid, kind, moment, content = (doc.get("uuid"), doc.get("type"), doc.get("timestamp"),
                                   doc.get("content"))
    if not (isinstance(uuid, str) and isinstance(kind, str) and isinstance(moment, datetime)
            and moment.tzinfo is not None and isinstance(content, str)):
        return None
    return content_hash(uuid, kind, moment, content)
