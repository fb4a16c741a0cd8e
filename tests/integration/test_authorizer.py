"""functions/authorizer end to end: a REQUEST authorizer event in, an IAM policy (or the exact
"Unauthorized" error API Gateway turns into 401) out, against moto's SSM / Secrets Manager /
DynamoDB."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import jwt
import pytest
from aws_lambda_powertools.utilities import parameters
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import mock_aws

import dataport.aws
import dataport.settings
from dataport.auth import (
    Principal,
    create_api_key,
    hash_api_key,
    issue_token,
    principal_from_request_context,
)
from dataport.observability import logger
from tests.fixtures.aws import create_api_keys_table, fake_aws_environment
from tests.handlers import load_handler

SECRET = "integration-signing-secret-" + "0123456789abcdef" * 3
USER = "66ad9b005f2b4a0012c0aaaa"
REGION = "eu-west-1"
PARAMETER = "/dataport-it/jwt-secret"
SECRET_ID = "dataport-it/jwt-secret"
TABLE = "dataport-it-api-keys"
ACCOUNT = "123456789012"
API_ID = "a1b2c3d4e5"
METHOD_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/prod/GET/exports/01J0ABC/download"
STAGE_WILDCARD = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/prod/*/*"


@dataclass
class FakeContext:
    """The LambdaContext attributes Logger.inject_lambda_context reads."""

    function_name: str = "dataport-authorizer"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:dataport-authorizer"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def _reset() -> None:
    dataport.settings.get_settings.cache_clear()
    dataport.aws.reset_clients()
    parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture
def handler() -> ModuleType:
    """Loaded once (a warm container), after the environment its cold start checks is set."""
    return load_handler("authorizer")


@pytest.fixture(scope="module")
def _moto() -> Iterator[None]:
    """One moto per module; `aws` resets what the tests change."""
    with pytest.MonkeyPatch.context() as patch:
        fake_aws_environment(patch)
        with mock_aws():
            boto3.client("ssm").put_parameter(Name=PARAMETER, Value=SECRET, Type="SecureString")
            create_api_keys_table(TABLE)
            yield
    _reset()


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the handler logs (Powertools writes JSON lines to its stream handler)."""
    buffer = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", buffer)
    return buffer


@pytest.fixture
def aws(_moto: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", PARAMETER)
    monkeypatch.setenv("JWT_SECRET_SOURCE", "ssm")
    monkeypatch.setenv("API_KEYS_TABLE", TABLE)
    _reset()
    yield
    _reset()


def _event(
    headers: dict[str, str] | None = None,
    multi: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A REST API REQUEST authorizer event, as API Gateway sends it."""
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/exports/{jobId}/download",
        "path": "/exports/01J0ABC/download",
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"jobId": "01J0ABC"},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "stage": "prod",
            "httpMethod": "GET",
            "resourcePath": "/exports/{jobId}/download",
            "requestId": "req-1",
        },
    }


def _invoke(handler: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = handler.lambda_handler(event, FakeContext())
    return result


def _denied(handler: ModuleType, event: dict[str, Any]) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 (the contract is this exact message)
        _invoke(handler, event)
    assert type(info.value) is Exception
    assert str(info.value) == "Unauthorized"


def _assert_allowed(result: dict[str, Any], method: str, role: str = "user") -> None:
    assert result == {
        "principalId": USER,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [STAGE_WILDCARD]}
            ],
        },
        "context": {"userId": USER, "authMethod": method, "role": role},
    }


def _bearer(**claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": USER, "iat": now, "exp": now + 600, **claims}
    return "Bearer " + jwt.encode(payload, SECRET, algorithm="HS256")


# --- JWT ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_valid_jwt_is_allowed_on_the_whole_stage(handler: ModuleType, log: io.StringIO) -> None:
    token = issue_token(USER, SECRET)

    result = _invoke(handler, _event({"Authorization": f"Bearer {token}"}))

    _assert_allowed(result, "jwt")
    assert token not in log.getvalue()
    assert "Request allowed" in log.getvalue()


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    "name", ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"]
)
def test_header_name_is_case_insensitive(handler: ModuleType, name: str) -> None:
    _assert_allowed(_invoke(handler, _event({name: _bearer()})), "jwt")


@pytest.mark.usefixtures("aws")
def test_multi_value_headers_are_read(handler: ModuleType) -> None:
    _assert_allowed(_invoke(handler, _event(None, {"authorization": [_bearer()]})), "jwt")
    value = _bearer()
    both = _event({"Authorization": value}, {"Authorization": [value]})
    _assert_allowed(_invoke(handler, both), "jwt")


@pytest.mark.usefixtures("aws")
def test_conflicting_authorization_headers_are_refused(handler: ModuleType) -> None:
    other = "Bearer " + issue_token("66ad9b005f2b4a0012c0bbbb", SECRET)
    _denied(handler, _event(None, {"Authorization": [_bearer(), other]}))


@pytest.mark.usefixtures("aws")
def test_policy_resource_is_the_stage_wildcard_for_any_route(handler: ModuleType) -> None:
    """Cached per token, the policy must also cover routes other than the one first called."""
    event = _event({"Authorization": _bearer()})
    event["methodArn"] = f"arn:aws-cn:execute-api:cn-north-1:{ACCOUNT}:{API_ID}/dev/POST/exports"

    result = _invoke(handler, event)

    statement = result["policyDocument"]["Statement"]
    assert statement == [
        {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": [f"arn:aws-cn:execute-api:cn-north-1:{ACCOUNT}:{API_ID}/dev/*/*"],
        }
    ]


def _none_token() -> str:
    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"sub": USER, "exp": int(time.time()) + 600}
    return f"Bearer {b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.usefixtures("aws")
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": _bearer(exp=1, iat=0)}, id="expired"),
        pytest.param(
            {"Authorization": "Bearer " + issue_token(USER, "x" * 32 + SECRET)}, id="bad-signature"
        ),
        pytest.param({"Authorization": _none_token()}, id="alg-none"),
        pytest.param(
            {"Authorization": "Bearer " + jwt.encode({"sub": USER, "exp": 2**31}, SECRET, "HS512")},
            id="hs512",
        ),
        pytest.param({"Authorization": _bearer(sub=None)}, id="sub-null"),
        pytest.param({"Authorization": _bearer(sub="alice")}, id="sub-not-object-id"),
        pytest.param({"Authorization": _bearer(sub=USER + "\n")}, id="sub-trailing-newline"),
        pytest.param({}, id="missing-header"),
        pytest.param({"Authorization": ""}, id="empty-header"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}, id="basic"),
        pytest.param({"Authorization": "Bearer"}, id="no-token"),
        pytest.param({"X-Authorization": _bearer()}, id="other-header"),
    ],
)
def test_bad_jwt_requests_are_unauthorized(
    handler: ModuleType, headers: dict[str, str], log: io.StringIO
) -> None:
    _denied(handler, _event(headers))

    logged = log.getvalue()
    assert "Request denied" in logged
    for value in headers.values():
        if len(value) > 8:
            assert value.split()[-1] not in logged


@pytest.mark.usefixtures("aws")
def test_rs256_token_is_unauthorized(handler: ModuleType) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": USER, "exp": int(time.time()) + 600}, key, algorithm="RS256")
    _denied(handler, _event({"Authorization": f"Bearer {token}"}))


@pytest.mark.usefixtures("aws")
def test_missing_headers_object_is_unauthorized(handler: ModuleType) -> None:
    event = _event()
    del event["headers"], event["multiValueHeaders"]
    _denied(handler, event)


@pytest.mark.usefixtures("aws")
def test_secrets_manager_source(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    other = "secrets-manager-signing-secret-" + "9" * 40
    client = boto3.client("secretsmanager")
    client.create_secret(Name=SECRET_ID, SecretString=other)
    try:
        monkeypatch.setenv("JWT_SECRET_SOURCE", "secretsmanager")
        monkeypatch.setenv("JWT_SECRET_PARAMETER", SECRET_ID)
        _reset()

        token = issue_token(USER, other)
        _assert_allowed(_invoke(handler, _event({"Authorization": f"Bearer {token}"})), "jwt")
        _denied(handler, _event({"Authorization": _bearer()}))  # signed with the SSM secret
    finally:
        client.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)


@pytest.mark.usefixtures("aws")
def test_missing_secret_is_an_error_not_a_401(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configuration fault must surface (500, alarm), not pass for the caller's fault."""
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/dataport-it/absent")
    _reset()
    with pytest.raises(Exception) as info:  # noqa: PT011
        _invoke(handler, _event({"Authorization": _bearer()}))
    assert str(info.value) != "Unauthorized"


# --- API keys ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_valid_api_key_is_allowed(handler: ModuleType, log: io.StringIO) -> None:
    key = create_api_key(USER, "ci")

    _assert_allowed(_invoke(handler, _event({"authorization": f"ApiKey {key}"})), "api_key")
    assert key not in log.getvalue()
    assert hash_api_key(key) not in log.getvalue()


@pytest.mark.usefixtures("aws")
def test_unknown_api_key_is_unauthorized(handler: ModuleType) -> None:
    _denied(handler, _event({"Authorization": "ApiKey dpk_" + "u" * 43}))


@pytest.mark.usefixtures("aws")
def test_revoked_api_key_is_unauthorized(handler: ModuleType) -> None:
    key = create_api_key(USER, "revoked")
    boto3.client("dynamodb").update_item(
        TableName=TABLE,
        Key={"key_hash": {"S": hash_api_key(key)}},
        UpdateExpression="SET revoked = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    _denied(handler, _event({"Authorization": f"ApiKey {key}"}))


@pytest.mark.usefixtures("aws")
def test_expired_api_key_is_unauthorized(handler: ModuleType) -> None:
    key = create_api_key(USER, "expired", expires_at=int(time.time()) - 60)
    _denied(handler, _event({"Authorization": f"ApiKey {key}"}))


# --- the REST cache: no cached answer outlives its credential -----------------------------------


@pytest.fixture
def cached(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """As deployed: the template passes ReauthorizeEvery (AuthorizerCacheSeconds) to the
    authorizer as AUTHORIZER_CACHE_SECONDS."""
    monkeypatch.setenv("AUTHORIZER_CACHE_SECONDS", "60")
    _reset()


@pytest.mark.usefixtures("cached")
def test_rest_refuses_a_jwt_that_expires_within_the_cache_time(handler: ModuleType) -> None:
    now = int(time.time())
    _denied(handler, _event({"Authorization": _bearer(exp=now + 59)}))
    _assert_allowed(_invoke(handler, _event({"Authorization": _bearer(exp=now + 120)})), "jwt")


@pytest.mark.usefixtures("cached")
def test_rest_refuses_an_api_key_that_expires_within_the_cache_time(handler: ModuleType) -> None:
    now = int(time.time())
    expiring = create_api_key(USER, "expiring", expires_at=now + 59)
    lasting = create_api_key(USER, "lasting", expires_at=now + 120)
    _denied(handler, _event({"Authorization": f"ApiKey {expiring}"}))
    _assert_allowed(_invoke(handler, _event({"Authorization": f"ApiKey {lasting}"})), "api_key")


@pytest.mark.usefixtures("cached")
def test_websocket_connect_accepts_a_jwt_to_its_last_second(handler: ModuleType) -> None:
    """WebSocket authorizers cache nothing: $connect checks the token as it is."""
    now = int(time.time())
    token = jwt.encode({"sub": USER, "iat": now, "exp": now + 5}, SECRET, algorithm="HS256")
    connect_arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/v1/$connect"
    event = {"type": "REQUEST", "methodArn": connect_arn,
             "queryStringParameters": {"token": token}, "headers": {}}

    result = _invoke(handler, event)

    assert result["principalId"] == USER
    assert result["policyDocument"]["Statement"][0]["Resource"] == [connect_arn]


# --- what the API function reads back ----------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_context_round_trips_through_api_gateway(handler: ModuleType) -> None:
    """API Gateway hands the context to the integration with string values, plus principalId."""
    result = _invoke(handler, _event({"Authorization": _bearer()}))
    authorizer = {k: str(v) for k, v in result["context"].items()}
    authorizer["principalId"] = result["principalId"]
    authorizer["integrationLatency"] = "12"

    principal = principal_from_request_context({"authorizer": authorizer})

    assert principal == Principal(user_id=USER, method="jwt")


@pytest.mark.usefixtures("aws")
def test_the_role_travels_from_credential_to_the_api_function(handler: ModuleType) -> None:
    """An admin JWT and an admin API key reach the API function as administrators."""
    admin_jwt = _invoke(handler, _event({"Authorization": _bearer(scope="dataport:admin")}))
    _assert_allowed(admin_jwt, "jwt", "admin")
    admin_key = create_api_key(USER, "ops", role="admin")
    _assert_allowed(_invoke(handler, _event({"Authorization": f"ApiKey {admin_key}"})),
                    "api_key", "admin")
    _assert_allowed(_invoke(handler, _event({"Authorization": _bearer(scope="openid")})), "jwt")

    authorizer = {k: str(v) for k, v in admin_jwt["context"].items()}
    assert principal_from_request_context({"authorizer": authorizer}).is_admin
