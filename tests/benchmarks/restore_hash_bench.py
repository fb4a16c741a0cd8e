"""A restore's whole-object check alone: the stored object's SHA-256 as the plan (and a
verification) computes it, `UploadDigest.finish` over `PackagesBucket.open_pinned` (every GET
names the pinned ETag), against a moto bucket in this process.

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.restore_hash_bench [--mb N]

Reported: MB/s of the code path (hashlib + the pinned stream's reads, moto serving from memory)
and of hashlib alone on the same bytes. On Lambda the bound is the slower of this and one S3
GET stream's throughput, which cannot be measured here (docs/backups.md, "Not done yet").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import boto3
from moto import mock_aws

from dataport.bucket import PackagesBucket
from dataport.imports.digest import CHUNK, UploadDigest

KEY = "imports/bench/upload.zip"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=256, help="the object's size, MiB")
    args = parser.parse_args()
    data = os.urandom(args.mb * 2**20)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-packages")
        bucket = PackagesBucket(s3, "bench-packages")
        s3.put_object(Bucket="bench-packages", Key=KEY, Body=data)
        pin = bucket.pin_written(KEY)
        started = time.perf_counter()
        size, digest = UploadDigest().finish(lambda: bucket.open_pinned(pin))
        pinned = time.perf_counter() - started
    started = time.perf_counter()
    plain = hashlib.sha256()
    view = memoryview(data)
    for at in range(0, len(data), CHUNK):
        plain.update(view[at:at + CHUNK])
    alone = time.perf_counter() - started
    assert size == len(data)
    assert digest == plain.hexdigest()
    print(f"{size / 1e6:.0f} MB: the pinned stream hashed at {size / 1e6 / pinned:.0f} MB/s, "
          f"hashlib alone {size / 1e6 / alone:.0f} MB/s")


if __name__ == "__main__":
    main()
