"""The default deploy (no AllowedOrigins) through the session's local stack: nothing is shared
with other origins (test_cors.py has the deploy that shares)."""

from __future__ import annotations

import pytest
import requests

from infrastructure.local.stack import LocalStack
from tests.e2e.test_cors import ORIGIN, USER, _preflight


def test_without_allowed_origins_nothing_is_shared(fresh_stack: LocalStack) -> None:
    """The default deploy: the preflight names no origin, answers carry no CORS header and the
    bucket has no CORS rule."""
    preflight = _preflight(f"{fresh_stack.rest_url}/exports", "POST")
    assert preflight.headers.get("Access-Control-Allow-Origin", "") == ""
    answer = requests.get(f"{fresh_stack.rest_url}/exports",
                          headers={**fresh_stack.auth_headers(USER), "Origin": ORIGIN}, timeout=30)
    assert answer.status_code == 200
    assert "Access-Control-Allow-Origin" not in answer.headers
    s3 = fresh_stack.client("s3")
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchCORSConfiguration"):
        s3.get_bucket_cors(Bucket=fresh_stack.bucket)
