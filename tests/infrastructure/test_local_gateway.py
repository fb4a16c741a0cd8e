"""The local REST gateway behaves like API Gateway (REST API, Lambda proxy, REQUEST authorizer).

Runs the gateway and the in-process runtime on tests/infrastructure/local_template (handlers
whose answers the tests choose); no moto is needed for this.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infrastructure.local.lambda_runtime import LambdaRuntime
from infrastructure.local.rest_gateway import RestGateway
from infrastructure.local.template import Template

TEST_TEMPLATE = Path(__file__).parent / "local_template" / "template.yaml"
ALLOW = {"Authorization": "Allow u1"}


@pytest.fixture(scope="module")
def started_gateway() -> Iterator[RestGateway]:
    template = Template(TEST_TEMPLATE, stack_name="gateway-test")
    (api,) = template.rest_apis().values()
    gateway = RestGateway(api, LambdaRuntime(template.functions()), template.region,
                          template.account_id)
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture
def gateway(started_gateway: RestGateway) -> RestGateway:
    started_gateway.clear_authorizer_cache()
    authorizer_invocations(started_gateway).clear()
    return started_gateway


def authorizer_invocations(gateway: RestGateway) -> list[str]:
    """What the test authorizer was called with (its module keeps a list)."""
    invocations: list[str] = gateway.runtime.module("GateFunction").INVOCATIONS
    return invocations


def echoed(response: requests.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()["event"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ routing


def test_the_url_carries_the_stage(gateway: RestGateway) -> None:
    assert gateway.url == f"http://127.0.0.1:{gateway.port}/v9"


def test_path_parameters_query_strings_and_request_context(gateway: RestGateway) -> None:
    response = requests.get(f"{gateway.url}/items/it%20em-1?x=1&x=2&empty=", headers=ALLOW,
                            timeout=10)
    event = echoed(response)
    assert event["resource"] == "/items/{itemId}"
    assert event["path"] == "/items/it%20em-1"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"itemId": "it%20em-1"}
    assert event["queryStringParameters"] == {"x": "2", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "empty": [""]}
    assert event["headers"]["Authorization"] == "Allow u1"
    assert event["multiValueHeaders"]["Authorization"] == ["Allow u1"]
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    context = event["requestContext"]
    assert context["resourcePath"] == "/items/{itemId}"
    assert context["path"] == "/v9/items/it%20em-1"
    assert context["stage"] == "v9"
    assert context["httpMethod"] == "GET"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"].startswith("python-requests")
    assert isinstance(context["requestTimeEpoch"], int)
    assert context["requestId"] == response.headers["x-amzn-RequestId"]
    # the authorizer's context arrives stringified, next to its principal
    authorizer = context["authorizer"]
    assert authorizer.pop("integrationLatency") >= 0
    assert authorizer == {"principalId": "u1", "userId": "u1", "level": "3", "admin": "false"}


def test_no_query_string_and_no_path_parameters_are_null(gateway: RestGateway) -> None:
    event = echoed(requests.get(f"{gateway.url}/items", headers=ALLOW, timeout=10))
    assert event["resource"] == "/items"
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None


def test_a_literal_segment_wins_over_a_path_parameter(gateway: RestGateway) -> None:
    event = echoed(requests.get(f"{gateway.url}/items/special", headers=ALLOW, timeout=10))
    assert event["resource"] == "/items/special"
    assert event["pathParameters"] is None


def test_greedy_proxy_path_with_any_method(gateway: RestGateway) -> None:
    event = echoed(requests.delete(f"{gateway.url}/files/a/b/c.txt", headers=ALLOW, timeout=10))
    assert event["resource"] == "/files/{proxy+}"
    assert event["httpMethod"] == "DELETE"
    assert event["pathParameters"] == {"proxy": "a/b/c.txt"}


@pytest.mark.parametrize("path", ["/v9/nothing-here", "/items", "/v1/items", "/v9/files"])
def test_unknown_resources_answer_missing_authentication_token(gateway: RestGateway,
                                                               path: str) -> None:
    response = requests.get(f"http://127.0.0.1:{gateway.port}{path}", headers=ALLOW, timeout=10)
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_a_method_without_a_route_is_refused_too(gateway: RestGateway) -> None:
    response = requests.put(f"{gateway.url}/items", headers=ALLOW, timeout=10)
    assert response.status_code == 403
    assert authorizer_invocations(gateway) == []


def test_text_and_binary_request_bodies(gateway: RestGateway) -> None:
    event = echoed(requests.post(f"{gateway.url}/items", headers=ALLOW, json={"a": "é"},
                                 timeout=10))
    assert json.loads(event["body"]) == {"a": "é"}
    assert event["isBase64Encoded"] is False

    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    event = echoed(requests.post(f"{gateway.url}/items", data=png, timeout=10,
                                 headers={**ALLOW, "Content-Type": "image/png"}))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == png


# ------------------------------------------------------------------------------ responses


def test_status_headers_and_multi_value_headers_pass_through(gateway: RestGateway) -> None:
    response = requests.post(f"{gateway.url}/items", headers=ALLOW, data="x", timeout=10)
    assert response.status_code == 201
    assert response.headers["X-Single"] == "one"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.json()["function"] == "gateway-test-EchoFunction"
    assert 0 < response.json()["remaining_ms"] <= 10_000  # the template's Timeout


def test_redirects_are_returned_not_followed(gateway: RestGateway) -> None:
    response = requests.get(f"{gateway.url}/redirect", headers=ALLOW, allow_redirects=False,
                            timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"] == "http://127.0.0.1:9/somewhere?x=1"


def test_binary_responses_are_decoded_when_accept_is_a_binary_media_type(
        gateway: RestGateway) -> None:
    response = requests.get(f"{gateway.url}/picture", timeout=10,
                            headers={**ALLOW, "Accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


def test_binary_responses_stay_base64_text_otherwise_as_on_aws(gateway: RestGateway) -> None:
    response = requests.get(f"{gateway.url}/picture", timeout=10,
                            headers={**ALLOW, "Accept": "application/json, image/png"})
    assert base64.b64decode(response.content).startswith(b"\x89PNG")


@pytest.mark.parametrize("path", ["/fail", "/broken"])
def test_failing_or_malformed_handlers_give_502(gateway: RestGateway, path: str) -> None:
    response = requests.get(f"{gateway.url}{path}", headers=ALLOW, timeout=10)
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


# ------------------------------------------------------------------------------ authorizer


def test_missing_identity_header_is_401_without_calling_the_authorizer(
        gateway: RestGateway) -> None:
    response = requests.get(f"{gateway.url}/items", timeout=10)
    assert response.status_code == 401
    assert response.json() == {"error": "who are you?", "detail": "Unauthorized"}
    assert response.headers["WWW-Authenticate"] == "Bearer"  # the template's gateway response
    assert response.headers["x-amzn-ErrorType"] == "UnauthorizedException"
    assert authorizer_invocations(gateway) == []


def test_authorizer_raising_unauthorized_is_401(gateway: RestGateway) -> None:
    response = requests.get(f"{gateway.url}/items", headers={"Authorization": "Bearer junk"},
                            timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == "who are you?"
    assert authorizer_invocations(gateway) == ["Bearer junk"]


def test_deny_policy_is_access_denied(gateway: RestGateway) -> None:
    response = requests.get(f"{gateway.url}/items", headers={"Authorization": "Deny u1"},
                            timeout=10)
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"


@pytest.mark.parametrize("header", ["Crash now", "Nested u1"])
def test_authorizer_failures_are_500(gateway: RestGateway, header: str) -> None:
    response = requests.get(f"{gateway.url}/items", headers={"Authorization": header},
                            timeout=10)
    assert response.status_code == 500
    assert response.headers["x-amzn-ErrorType"] == "AuthorizerConfigurationException"


def test_answers_are_cached_per_identity_and_reapplied_to_other_methods(
        gateway: RestGateway) -> None:
    for _ in range(2):
        assert requests.get(f"{gateway.url}/items", headers=ALLOW, timeout=10).ok
    assert authorizer_invocations(gateway) == ["Allow u1"]
    # A policy naming only the first method ARN is cached and then refuses other routes: the
    # AWS behaviour that makes real authorizers allow the whole stage.
    narrow = {"Authorization": "Narrow u2"}
    assert requests.get(f"{gateway.url}/items", headers=narrow, timeout=10).ok
    assert requests.get(f"{gateway.url}/items/1", headers=narrow, timeout=10).status_code == 403


def test_routes_without_authorizer_skip_it(gateway: RestGateway) -> None:
    event = echoed(requests.get(f"{gateway.url}/public", timeout=10))
    assert "authorizer" not in event["requestContext"]
    assert authorizer_invocations(gateway) == []


# ------------------------------------------------------------------------------ template.yaml


def test_the_real_api_answers_with_the_templates_gateway_responses() -> None:
    template = Template()
    api = template.rest_apis()["RestApi"]
    assert {(r.event.method, r.event.path) for r in api.routes} == {
        ("POST", "/backups"), ("GET", "/backups"), ("GET", "/backups/{backupId}"),
        ("DELETE", "/backups/{backupId}"), ("GET", "/backups/{backupId}/download"),
        ("POST", "/backups/{backupId}/verify"), ("DELETE", "/backups/{backupId}/verify"),
        ("GET", "/backups/{backupId}/preview"), ("GET", "/backups/{backupId}/preview/{jobId}"),
        ("DELETE", "/backups/{backupId}/preview/{jobId}"),
        ("POST", "/exports"), ("POST", "/exports/estimate"), ("GET", "/exports"),
        ("GET", "/exports/{jobId}"),
        ("DELETE", "/exports/{jobId}"), ("GET", "/exports/{jobId}/download"),
        ("POST", "/imports"), ("GET", "/imports"), ("GET", "/imports/{jobId}"),
        ("DELETE", "/imports/{jobId}"), ("POST", "/imports/{jobId}/validate"),
        ("GET", "/imports/{jobId}/conflicts"), ("POST", "/imports/{jobId}/execute"),
        ("GET", "/imports/{jobId}/actions"), ("POST", "/imports/{jobId}/rollback"),
        ("POST", "/api-keys"), ("GET", "/api-keys"), ("DELETE", "/api-keys/{keyId}"),
        ("POST", "/restores"), ("GET", "/restores"), ("GET", "/restores/{jobId}"),
        ("DELETE", "/restores/{jobId}"),
        ("GET", "/restores/{jobId}/actions"), ("POST", "/restores/{jobId}/rollback"),
        ("POST", "/restores/uploads"), ("GET", "/restores/uploads/{uploadId}/parts"),
        ("POST", "/restores/uploads/{uploadId}/complete"),
        ("DELETE", "/restores/uploads/{uploadId}"),
        ("POST", "/backup-schedules"), ("GET", "/backup-schedules"),
        ("GET", "/backup-schedules/{scheduleId}"), ("PATCH", "/backup-schedules/{scheduleId}"),
        ("DELETE", "/backup-schedules/{scheduleId}")}
    gateway = RestGateway(api, LambdaRuntime(template.functions()), template.region,
                          template.account_id)
    response = gateway.handle("GET", "/v1/exports/abc", [("Host", "x")], b"")
    assert response.status == 401
    assert json.loads(response.body)["error"]["code"] == "unauthorized"
    assert gateway.handle("GET", "/v1/no-such-route", [], b"").status == 403
