"""The export plan's shard list on S3: one small JSON object per shard (its first cursor), which
the workflow's Distributed Map lists (ItemReader listObjectsV2) and each child execution reads.
No shard list ever travels in the Step Functions state, whatever the number of shards."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

from dataport.models.tasks import ShardCursor

if TYPE_CHECKING:
    from dataport.bucket import PackagesBucket


def shard_key(prefix: str, shard: int) -> str:
    return f"{prefix}{shard:06d}.json"


def write_shard_list(bucket: PackagesBucket, prefix: str, shards: Iterable[ShardCursor]) -> int:
    """Replace the list under `prefix` with one object per shard, `<prefix><shard>.json` holding
    its first cursor; how many were written. What a previous attempt of the plan left there goes
    first (a retried plan may cut differently if the data changed meanwhile)."""
    bucket.delete_prefix(prefix)
    count = 0
    for cursor in shards:
        bucket.put(shard_key(prefix, cursor.shard), orjson.dumps(cursor.wire()),
                   {"ContentType": "application/json"})
        count += 1
    return count


def read_shard(bucket: PackagesBucket, key: str) -> ShardCursor:
    """A shard's first cursor, as write_shard_list put it."""
    with bucket.open_read(key) as stream:
        return ShardCursor.model_validate(orjson.loads(stream.read()))
