"""Presigned links name the bucket the way the settings say: virtual-hosted on AWS (S3 is
retiring path-style URLs), path-style on the local stack's 127.0.0.1, where a bucket cannot be a
host name. Presigning is local arithmetic: no request is sent."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from dataport import aws
from dataport.bucket import PackagesBucket
from dataport.settings import get_settings
from tests.fixtures.aws import fake_aws_environment

BUCKET = "dataport-packages-addressing"
KEY = "packages/0123/export.zip"


@pytest.fixture
def style(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    fake_aws_environment(monkeypatch)
    monkeypatch.delenv("S3_ADDRESSING_STYLE", raising=False)
    get_settings.cache_clear()
    aws.reset_clients()
    yield monkeypatch
    get_settings.cache_clear()
    aws.reset_clients()


def _links() -> tuple[str, str]:
    bucket = PackagesBucket(aws.s3(), BUCKET)
    get = bucket.presigned_get(KEY, ttl_seconds=60, filename="export.zip",
                               content_type="application/zip")
    post_url, fields = bucket.presigned_post("imports/j/upload", max_bytes=10, ttl_seconds=60)
    assert fields["key"] == "imports/j/upload"
    return get, post_url


def test_on_aws_links_are_virtual_hosted_by_default(style: pytest.MonkeyPatch) -> None:
    assert get_settings().s3_addressing_style == "virtual"
    get, post = _links()
    for url in (get, post):
        parts = urlsplit(url)
        assert parts.scheme == "https"
        assert parts.hostname is not None
        assert parts.hostname.startswith(f"{BUCKET}.s3."), url
        assert not parts.path.startswith(f"/{BUCKET}"), url
    assert urlsplit(get).path == f"/{KEY}"


def test_a_local_endpoint_on_an_ip_address_gets_path_style(style: pytest.MonkeyPatch) -> None:
    style.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4599")
    style.setenv("S3_ADDRESSING_STYLE", "path")
    get_settings.cache_clear()
    get, post = _links()
    assert get.startswith(f"http://127.0.0.1:4599/{BUCKET}/{KEY}?"), get
    assert post == f"http://127.0.0.1:4599/{BUCKET}"


def test_an_unknown_style_is_refused_at_start(style: pytest.MonkeyPatch) -> None:
    style.setenv("S3_ADDRESSING_STYLE", "sideways")
    get_settings.cache_clear()
    with pytest.raises(Exception, match="S3_ADDRESSING_STYLE"):
        get_settings()
