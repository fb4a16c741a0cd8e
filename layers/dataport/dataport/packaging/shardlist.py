"""The export plan's shard list on S3: one small JSON object per shard (its first cursor), which
the workflow's Distributed Map lists (ItemReader listObjectsV2) and each child execution reads.
No shard list ever travels in the Step Functions state, whatever the number of shards."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

from dataport.models.tasks import ShardCursor
from dataport.packaging.package import delete_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def shard_key(prefix: str, shard: int) -> str:
    return f"{prefix}{shard:06d}.json"


def write_shard_list(s3: S3Client, bucket: str, prefix: str,
                     shards: Iterable[ShardCursor]) -> int:
    """Replace the list under `prefix` with one object per shard, `<prefix><shard>.json` holding
    its first cursor; how many were written. What a previous attempt of the plan left there goes
    first (a retried plan may cut differently if the data changed meanwhile)."""
    delete_prefix(s3, bucket, prefix)
    count = 0
    for cursor in shards:
        s3.put_object(Bucket=bucket, Key=shard_key(prefix, cursor.shard),
                      Body=orjson.dumps(cursor.wire()), ContentType="application/json")
        count += 1
    return count


def read_shard(s3: S3Client, bucket: str, key: str) -> ShardCursor:
    """A shard's first cursor, as write_shard_list put it."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return ShardCursor.model_validate(orjson.loads(body))
