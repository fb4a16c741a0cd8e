"""CORS through the local stack, as a browser page on an allowed origin uses the service:
preflights answered by the gateway without the authorizer, route answers and gateway errors
readable by that origin only, and an import uploaded straight to S3 with the presigned POST
(moto's S3 applies the bucket's CORS rules as S3 does). The stack is a second one, deployed
with AllowedOrigins set; test_cors_default.py shows the default deploy (no CORS) on the
session's stack (not here: while this module's stack runs, the process environment is its)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infrastructure.local.stack import LocalStack

ORIGIN = "https://app.example.com"
OTHER = "https://elsewhere.example.net"
USER = "66ad9b005f2b4a0012c0cccc"


@pytest.fixture(scope="module")
def cors_stack(mongo_uri: str) -> Iterator[LocalStack]:
    """The template deployed with AllowedOrigins (its own names: the session's stack may be up)."""
    with LocalStack(stack_name="dataport-cors", mongodb_uri=mongo_uri, parameters={
            "Stage": "prod", "AllowedOrigins": f"{ORIGIN},https://second.example.com",
            "MongoDbUriSecretName": "dataport-cors/mongodb-uri"}) as stack:
        yield stack


@pytest.fixture
def stack(cors_stack: LocalStack) -> LocalStack:
    cors_stack.reset()
    return cors_stack


def _refuse(_event: Any, _context: Any) -> Any:
    raise AssertionError("a preflight must not reach the authorizer")


def _preflight(url: str, method: str, headers: str = "authorization,content-type",
               origin: str = ORIGIN) -> requests.Response:
    return requests.options(url, headers={"Origin": origin,
                                          "Access-Control-Request-Method": method,
                                          "Access-Control-Request-Headers": headers}, timeout=30)


@pytest.mark.parametrize(("path", "method", "methods"), [
    ("/exports", "POST", {"GET", "POST", "OPTIONS"}),
    ("/exports/0123456789abcdef0123456789abcdef/download", "GET", {"GET", "OPTIONS"}),
    ("/api-keys/0123456789abcdef", "DELETE", {"DELETE", "OPTIONS"}),
])
def test_a_preflight_is_answered_without_the_authorizer(stack: LocalStack, path: str,
                                                         method: str, methods: set[str]) -> None:
    stack.handler_overrides["AuthorizerFunction"] = _refuse
    answer = _preflight(f"{stack.rest_url}{path}", method)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] in (ORIGIN, "*")
    assert set(answer.headers["Access-Control-Allow-Methods"].split(",")) == methods
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert int(answer.headers["Access-Control-Max-Age"]) > 0


def test_route_answers_are_readable_by_the_allowed_origins_only(stack: LocalStack) -> None:
    headers = stack.auth_headers(USER)
    mine = requests.get(f"{stack.rest_url}/exports", headers={**headers, "Origin": ORIGIN},
                        timeout=30)
    assert mine.status_code == 200, mine.text
    assert mine.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Location" in mine.headers["Access-Control-Expose-Headers"].split(",")
    second = requests.get(f"{stack.rest_url}/exports",
                          headers={**headers, "Origin": "https://second.example.com"}, timeout=30)
    assert second.headers["Access-Control-Allow-Origin"] == "https://second.example.com"
    other = requests.get(f"{stack.rest_url}/exports", headers={**headers, "Origin": OTHER},
                         timeout=30)
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other.headers


def test_gateway_errors_carry_the_header_so_a_page_can_read_them(stack: LocalStack) -> None:
    answer = requests.get(f"{stack.rest_url}/exports", headers={"Origin": ORIGIN}, timeout=30)
    assert answer.status_code == 401
    assert answer.headers["Access-Control-Allow-Origin"] in (ORIGIN, "*")
    assert answer.json()["error"]["code"] == "unauthorized"


def test_a_browser_uploads_an_import_straight_to_the_bucket(stack: LocalStack) -> None:
    created = requests.post(f"{stack.rest_url}/imports", json={"filename": "package.zip"},
                            headers={**stack.auth_headers(USER), "Origin": ORIGIN}, timeout=30)
    assert created.status_code == 201, created.text
    assert created.headers["Access-Control-Allow-Origin"] == ORIGIN
    form = created.json()["upload"]

    preflight = _preflight(form["url"], "POST", headers="content-type")
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    refused = _preflight(form["url"], "POST", headers="content-type", origin=OTHER)
    assert refused.status_code == 403  # (moto still echoes the origin in a refusal; S3 not)

    upload = requests.post(form["url"], data=form["fields"], headers={"Origin": ORIGIN},
                           files={"file": ("package.zip", b"PK\x05\x06" + bytes(18))}, timeout=30)
    assert upload.status_code in (200, 201, 204), upload.text
    assert upload.headers["Access-Control-Allow-Origin"] == ORIGIN
    key = form["fields"]["key"]
    assert stack.client("s3").head_object(Bucket=stack.bucket, Key=key)["ContentLength"] == 22
