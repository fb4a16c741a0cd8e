"""An import's listings (imports.storage) through the packages bucket: paged by byte offset."""

from __future__ import annotations

import base64
import json

import pytest

from dataport.bucket import PackagesBucket
from dataport.errors import InvalidRequest
from dataport.imports import storage

JOB = "job-listing"


def test_a_listing_reads_back_page_by_page(bucket: PackagesBucket) -> None:
    entries = [{"sessionId": f"s{i}", "note": "ünïcode"} for i in range(5)]
    with storage.listing_writer(bucket, JOB, storage.RESULT) as out:
        for entry in entries:
            out.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
    seen, token = [], None
    while True:
        page, token = storage.read_page(bucket, JOB, storage.RESULT, limit=2, token=token)
        seen += page
        if token is None:
            break
    assert seen == entries


def test_a_missing_listing_is_empty_and_a_bad_token_is_refused(bucket: PackagesBucket) -> None:
    assert storage.read_page(bucket, JOB, storage.DRY_RUN, limit=2, token=None) == ([], None)
    with storage.listing_writer(bucket, JOB, storage.RESULT) as out:
        out.write(b'{"a": 1}\n{"b": 2}\n')
    for offset in (3, 10_000):  # inside a line; beyond the end
        token = base64.urlsafe_b64encode(str(offset).encode()).decode()
        with pytest.raises(InvalidRequest):
            storage.read_page(bucket, JOB, storage.RESULT, limit=2, token=token)
