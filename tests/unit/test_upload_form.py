"""The import upload form against real AWS endpoints: the packages bucket refuses every request
without TLS (template: DenyInsecureTransport on s3:*), so the presigned POST must be https."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from dataport.api.imports import upload_form
from dataport.settings import get_settings


@pytest.mark.usefixtures("aws_credentials")
def test_the_presigned_post_goes_to_s3_over_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKAGES_BUCKET", "dataport-packages-test")
    get_settings.cache_clear()
    try:
        form = upload_form("0" * 32)  # signing is local: no request is sent
    finally:
        get_settings.cache_clear()

    url = urlsplit(form.url)
    assert url.scheme == "https"
    assert url.hostname is not None
    assert url.hostname.endswith(".amazonaws.com")
    assert form.fields["key"].startswith("imports/")
