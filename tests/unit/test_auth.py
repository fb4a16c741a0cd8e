"""dataport.auth: JWT and API-key authentication against moto's SSM, Secrets Manager and DynamoDB.

Each refusal is checked by its message, so a test fails if the wrong check (or none) fired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
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
    API_KEY_PREFIX,
    Principal,
    authenticate_credential,
    authenticate_header,
    create_api_key,
    hash_api_key,
    issue_token,
    principal_from_request_context,
)
from dataport.errors import Unauthorized
from tests.fixtures.aws import create_api_keys_table, fake_aws_environment

SECRET = "unit-test-signing-secret-" + "0123456789abcdef" * 3  # 73 bytes: enough for HS512 too
OTHER_SECRET = "a-different-signing-secret-" + "fedcba9876543210" * 3
USER = "66ad9b005f2b4a0012c0aaaa"
REGION = "eu-west-1"
PARAMETER = "/dataport-test/jwt-secret"
TABLE = "dataport-test-api-keys"


def _reset() -> None:
    dataport.settings.get_settings.cache_clear()
    dataport.aws.reset_clients()
    parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def _moto() -> Iterator[None]:
    """One moto per module (starting one per test costs ~0.2 s); `aws` resets its state."""
    with pytest.MonkeyPatch.context() as patch:
        fake_aws_environment(patch)
        with mock_aws():
            create_api_keys_table(TABLE)
            yield
    _reset()


@pytest.fixture
def aws(_moto: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The JWT secret in SSM, an empty API keys table, settings pointing at both."""
    monkeypatch.setenv("JWT_SECRET_PARAMETER", PARAMETER)
    monkeypatch.setenv("JWT_SECRET_SOURCE", "ssm")
    monkeypatch.setenv("API_KEYS_TABLE", TABLE)
    _reset()
    boto3.client("ssm").put_parameter(
        Name=PARAMETER, Value=SECRET, Type="SecureString", Overwrite=True
    )
    dynamodb = boto3.client("dynamodb")
    for item in dynamodb.scan(TableName=TABLE, ProjectionExpression="key_hash")["Items"]:
        dynamodb.delete_item(TableName=TABLE, Key=item)
    yield
    _reset()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(claims: dict[str, Any], *, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": USER, "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _refused(value: str | None, match: str) -> Unauthorized:
    with pytest.raises(Unauthorized, match=match) as info:
        authenticate_header(value)
    credential = (value or "").split()[-1:] or [""]
    if len(credential[0]) >= 8:
        assert credential[0] not in info.value.message, "a refusal must not echo the credential"
    return info.value


# --- JWT ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_issued_token_authenticates() -> None:
    token = issue_token(USER, SECRET)

    assert authenticate_header(f"Bearer {token}") == Principal(user_id=USER, method="jwt")
    assert authenticate_header(f"bearer   {token}  ").user_id == USER  # scheme case, whitespace
    assert authenticate_credential(token) == Principal(user_id=USER, method="jwt")


@pytest.mark.usefixtures("aws")
def test_upper_case_object_id_is_normalised() -> None:
    token = _token(_claims(sub=USER.upper()))

    assert authenticate_header(f"Bearer {token}").user_id == USER


@pytest.mark.usefixtures("aws")
def test_expired_token_is_refused_but_leeway_tolerates_skew() -> None:
    now = int(time.time())
    _refused(f"Bearer {_token(_claims(iat=now - 4000, exp=now - 120))}", "expired")

    just_expired = _token(_claims(iat=now - 4000, exp=now - 5))
    assert authenticate_header(f"Bearer {just_expired}").user_id == USER


@pytest.mark.usefixtures("aws")
def test_bad_signature_is_refused() -> None:
    _refused(f"Bearer {_token(_claims(), secret=OTHER_SECRET)}", "signature is invalid")
    token = _token(_claims())
    head, _payload, signature = token.split(".")
    tampered = _b64(json.dumps({"sub": "66ad9b005f2b4a0012c0bbbb", "exp": 2**31}).encode())
    _refused(f"Bearer {head}.{tampered}.{signature}", "signature is invalid")


@pytest.mark.usefixtures("aws")
def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    _refused(f"Bearer {header}.{payload}.", "algorithm is not allowed")
    capitalised = _b64(json.dumps({"alg": "None"}).encode())
    _refused(f"Bearer {capitalised}.{payload}.", "algorithm is not allowed")


@pytest.mark.usefixtures("aws")
def test_other_hmac_algorithms_are_refused() -> None:
    """Only HS256: a token signed with the right secret under HS512 is still refused."""
    _refused(f"Bearer {_token(_claims(), algorithm='HS512')}", "algorithm is not allowed")
    _refused(f"Bearer {_token(_claims(), algorithm='HS384')}", "algorithm is not allowed")


@pytest.mark.usefixtures("aws")
def test_rs256_is_refused_including_algorithm_confusion() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(f"Bearer {jwt.encode(_claims(), key, algorithm='RS256')}", "algorithm is not allowed")

    # The classic confusion attack: claim RS256 but sign with HMAC over the shared secret.
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    mac = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    _refused(f"Bearer {header}.{payload}.{_b64(mac)}", "algorithm is not allowed")


ClaimsFactory = Callable[[int], dict[str, Any]]


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("claims", "match"),
    [
        pytest.param(lambda now: _claims(sub=None), "missing the 'sub' claim", id="no-sub"),
        pytest.param(lambda now: _claims(exp=None), "missing the 'exp' claim", id="no-exp"),
        pytest.param(lambda now: _claims(sub="alice"), "subject is not a valid user id", id="name"),
        pytest.param(lambda now: _claims(sub=USER + "00"), "not a valid user id", id="sub-long"),
        pytest.param(lambda now: _claims(sub=USER[:-1] + "z"), "not a valid user id", id="not-hex"),
        pytest.param(lambda now: _claims(sub=12345), "Subject must be a string", id="sub-int"),
        pytest.param(lambda now: _claims(nbf=now + 3600), "not valid yet", id="nbf-future"),
        pytest.param(lambda now: _claims(iat=now + 3600), "not valid yet", id="iat-future"),
        pytest.param(lambda now: _claims(iat="yesterday"), "Issued At claim", id="iat-str"),
    ],
)
def test_bad_claims_are_refused(claims: ClaimsFactory, match: str) -> None:
    _refused(f"Bearer {_token(claims(int(time.time())))}", match)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, "Missing Authorization header"),
        ("", "Missing Authorization header"),
        ("   ", "Missing Authorization header"),
        ("Bearer", "must be 'Bearer <token>' or 'ApiKey <key>'"),
        ("Bearer a.b.c extra", "must be 'Bearer <token>' or 'ApiKey <key>'"),
        ("Basic dXNlcjpwYXNz", "Unsupported authorization scheme"),
        ("Token abc", "Unsupported authorization scheme"),
        ("Bearer not-a-jwt", "not a well-formed JWT"),
        ("Bearer a.b", "not a well-formed JWT"),
        ("Bearer e30.e30.sig!", "not a well-formed JWT"),
        ("Bearer %%%.e30.e30", "not a well-formed JWT"),
        ("Bearer bm90anNvbg.e30.", "not a well-formed JWT"),  # header is not JSON
        ("Bearer " + "a" * 5000 + ".b.c", "too long"),
    ],
)
def test_malformed_headers_are_refused(value: str | None, match: str) -> None:
    _refused(value, match)


@pytest.mark.usefixtures("aws")
def test_secret_comes_from_secrets_manager_when_configured(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    boto3.client("secretsmanager").create_secret(
        Name="dataport-test/jwt", SecretString=OTHER_SECRET
    )
    monkeypatch.setenv("JWT_SECRET_SOURCE", "secretsmanager")
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "dataport-test/jwt")
    _reset()

    assert authenticate_header(f"Bearer {_token(_claims(), secret=OTHER_SECRET)}").user_id == USER
    _refused(f"Bearer {_token(_claims(), secret=SECRET)}", "signature is invalid")


@pytest.mark.usefixtures("aws")
def test_secret_is_cached_between_calls() -> None:
    """A cold parameter fetch per request would throttle SSM; max_age keeps it warm."""
    assert authenticate_header(f"Bearer {_token(_claims())}").user_id == USER
    boto3.client("ssm").put_parameter(
        Name=PARAMETER, Value=OTHER_SECRET, Type="SecureString", Overwrite=True
    )

    assert authenticate_header(f"Bearer {_token(_claims())}").user_id == USER  # cached
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    assert authenticate_header(f"Bearer {_token(_claims(), secret=OTHER_SECRET)}").user_id == USER


@pytest.mark.usefixtures("aws")
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_short_secret_is_a_server_fault_not_a_401() -> None:
    boto3.client("ssm").put_parameter(
        Name=PARAMETER, Value="tiny-secret", Type="SecureString", Overwrite=True
    )
    token = jwt.encode(_claims(), "tiny-secret", algorithm="HS256")
    with pytest.raises(RuntimeError, match="shorter than 32 bytes") as info:
        authenticate_header(f"Bearer {token}")
    assert PARAMETER in str(info.value)
    assert "tiny-secret" not in str(info.value)  # names the parameter, never its value


def test_issue_token_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        issue_token(USER, "short")
    with pytest.raises(ValueError, match="ObjectId"):
        issue_token("alice", SECRET)
    with pytest.raises(ValueError, match="positive"):
        issue_token(USER, SECRET, ttl_seconds=0)
    claims = jwt.decode(issue_token(USER, SECRET, ttl_seconds=60), SECRET, algorithms=["HS256"])
    assert claims["sub"] == USER
    assert claims["exp"] - claims["iat"] == 60


# --- API keys ----------------------------------------------------------------------------------


def _key_item(key: str) -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(
        TableName=TABLE, Key={"key_hash": {"S": hash_api_key(key)}}
    )
    return item["Item"]


@pytest.mark.usefixtures("aws")
def test_api_key_round_trip_stores_only_the_hash() -> None:
    key = create_api_key(USER, "laptop")

    assert key.startswith(API_KEY_PREFIX)
    assert "." not in key
    assert authenticate_header(f"ApiKey {key}") == Principal(user_id=USER, method="api_key")
    assert authenticate_header(f"apikey {key}").method == "api_key"
    assert authenticate_credential(key) == Principal(user_id=USER, method="api_key")

    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert len(items) == 1
    assert key not in json.dumps(items)
    assert items[0]["key_hash"]["S"] == hashlib.sha256(key.encode()).hexdigest()
    assert items[0]["user_id"]["S"] == USER
    assert items[0]["name"]["S"] == "laptop"
    assert items[0]["created_at"]["S"].endswith("+00:00")


@pytest.mark.usefixtures("aws")
def test_keys_are_unique() -> None:
    assert create_api_key(USER, "a") != create_api_key(USER, "b")


@pytest.mark.usefixtures("aws")
def test_unknown_api_key_is_refused() -> None:
    create_api_key(USER, "real")
    _refused(f"ApiKey {API_KEY_PREFIX}{'x' * 43}", "Unknown API key")
    _refused("ApiKey short", "malformed")
    _refused("ApiKey has/slash+plus=" + "x" * 20, "malformed")


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("revoked", "match"),
    [
        ({"BOOL": True}, "revoked"),
        ({"S": "true"}, "revoked"),  # not a clean boolean false: fail closed
        ({"BOOL": False}, None),
    ],
)
def test_revoked_api_key_is_refused(revoked: dict[str, Any], match: str | None) -> None:
    key = create_api_key(USER, "old")
    item = _key_item(key)
    item["revoked"] = revoked
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=item)

    if match is None:
        assert authenticate_header(f"ApiKey {key}").user_id == USER
    else:
        _refused(f"ApiKey {key}", match)
        with pytest.raises(Unauthorized, match=match):
            authenticate_credential(key)


@pytest.mark.usefixtures("aws")
def test_api_key_expiry() -> None:
    expired = create_api_key(USER, "expired", expires_at=int(time.time()) - 1)
    current = create_api_key(USER, "current", expires_at=int(time.time()) + 3600)

    _refused(f"ApiKey {expired}", "API key has expired")
    assert authenticate_header(f"ApiKey {current}").user_id == USER
    assert _key_item(current)["expires_at"]["N"].isdigit()


@pytest.mark.usefixtures("aws")
def test_a_credential_must_outlive_the_cache_the_caller_keeps_its_answer_in() -> None:
    """The REST authorizer's answer is cached AUTHORIZER_CACHE_SECONDS: a JWT or an API key that
    expires sooner is refused, so the cached allow never outlives the credential."""
    now = int(time.time())
    dying = f"Bearer {_token(_claims(exp=now + 30))}"
    with pytest.raises(Unauthorized, match="expires within 60 s: refresh it"):
        authenticate_header(dying, min_remaining_seconds=60)
    assert authenticate_header(dying).user_id == USER  # no cache, no margin
    assert authenticate_header(f"Bearer {_token(_claims(exp=now + 600))}",
                               min_remaining_seconds=60).user_id == USER
    skewed = f"Bearer {_token(_claims(iat=now - 4000, exp=now - 5))}"  # inside the leeway
    with pytest.raises(Unauthorized, match="expires within"):
        authenticate_header(skewed, min_remaining_seconds=60)

    expiring = create_api_key(USER, "expiring", expires_at=now + 30)
    lasting = create_api_key(USER, "lasting", expires_at=now + 3600)
    forever = create_api_key(USER, "forever")
    with pytest.raises(Unauthorized, match="API key expires within 60 s"):
        authenticate_header(f"ApiKey {expiring}", min_remaining_seconds=60)
    assert authenticate_header(f"ApiKey {expiring}").user_id == USER
    for key in (lasting, forever):
        assert authenticate_header(f"ApiKey {key}", min_remaining_seconds=60).user_id == USER


@pytest.mark.usefixtures("aws")
def test_api_key_with_a_bad_owner_is_refused() -> None:
    key = create_api_key(USER, "x")
    item = _key_item(key)
    item["user_id"] = {"S": "not-an-object-id"}
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=item)

    _refused(f"ApiKey {key}", "API key owner is not a valid user id")


def test_create_api_key_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="ObjectId"):
        create_api_key("alice", "x")
    with pytest.raises(ValueError, match="name"):
        create_api_key(USER, " ")


# --- bare credentials and request contexts -----------------------------------------------------


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("", "Missing credential"),
        ("   ", "Missing credential"),
        ("a" * 5000, "too long"),
        ("x.y.z", "not a well-formed JWT"),
        ("Bearer abc", "malformed"),  # a header value is not a bare credential
        (API_KEY_PREFIX + "y" * 43, "Unknown API key"),
    ],
)
def test_bare_credential_refusals(token: str, match: str) -> None:
    with pytest.raises(Unauthorized, match=match):
        authenticate_credential(token)


@pytest.mark.parametrize(
    "request_context",
    [
        {"authorizer": {"principalId": USER, "userId": USER, "authMethod": "jwt"}},
        {"authorizer": {"lambda": {"userId": USER, "authMethod": "jwt"}}},
        {"authorizer": {"principalId": USER.upper(), "authMethod": "jwt", "integrationLatency": 3}},
    ],
)
def test_principal_from_request_context(request_context: dict[str, Any]) -> None:
    assert principal_from_request_context(request_context) == Principal(user_id=USER, method="jwt")


@pytest.mark.parametrize(
    "request_context",
    [
        {},
        {"authorizer": None},
        {"authorizer": {}},
        {"authorizer": {"userId": USER}},
        {"authorizer": {"userId": USER, "authMethod": "password"}},
        {"authorizer": {"userId": "alice", "authMethod": "jwt"}},
    ],
)
def test_principal_from_request_context_refuses_missing_context(
    request_context: dict[str, Any],
) -> None:
    with pytest.raises(Unauthorized):
        principal_from_request_context(request_context)


def test_principal_model_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="user_id"):
        Principal(user_id="alice", method="jwt")
    with pytest.raises(ValueError, match="method"):
        Principal(user_id=USER, method="cookie")


# --- role --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(("scope", "role"), [
    (None, "user"),
    ("", "user"),
    ("openid profile", "user"),
    ("dataport:administrator", "user"),  # a word, not a prefix
    ("dataport:admin", "admin"),
    ("openid dataport:admin email", "admin"),
])
def test_a_jwt_scope_naming_dataport_admin_makes_an_administrator(scope: str | None,
                                                                  role: str) -> None:
    claims = _claims() if scope is None else _claims(scope=scope)
    principal = authenticate_header(f"Bearer {_token(claims)}")
    assert principal.role == role
    assert principal.is_admin is (role == "admin")


@pytest.mark.usefixtures("aws")
def test_a_scope_claim_that_is_not_a_string_is_refused() -> None:
    _refused(f"Bearer {_token(_claims(scope=['dataport:admin']))}", "scope")


@pytest.mark.usefixtures("aws")
def test_issue_token_can_make_an_administrators_token() -> None:
    assert authenticate_header(f"Bearer {issue_token(USER, SECRET, admin=True)}").is_admin
    assert not authenticate_header(f"Bearer {issue_token(USER, SECRET)}").is_admin
    claims = jwt.decode(issue_token(USER, SECRET, admin=True), SECRET, algorithms=["HS256"])
    assert claims["scope"] == "dataport:admin"


@pytest.mark.usefixtures("aws")
def test_an_api_key_authenticates_with_the_role_it_was_made_with() -> None:
    admin_key = create_api_key(USER, "ops", role="admin")
    user_key = create_api_key(USER, "laptop")
    assert authenticate_header(f"ApiKey {admin_key}") == Principal(
        user_id=USER, method="api_key", role="admin")
    assert authenticate_credential(user_key).role == "user"
    assert _key_item(admin_key)["role"]["S"] == "admin"


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("stored", [{"S": "Admin"}, {"S": "root"}, {"BOOL": True}, None])
def test_a_stored_role_other_than_a_clean_admin_reads_as_user(stored: dict[str, Any] | None
                                                              ) -> None:
    key = create_api_key(USER, "ops", role="admin")
    item = _key_item(key)
    if stored is None:
        del item["role"]
    else:
        item["role"] = stored
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=item)
    assert authenticate_credential(key).role == "user"


@pytest.mark.parametrize(("context_role", "role"), [(None, "user"), ("user", "user"),
                                                    ("admin", "admin")])
def test_the_role_is_read_from_the_authorizer_context(context_role: str | None,
                                                      role: str) -> None:
    context = {"userId": USER, "authMethod": "jwt"}
    if context_role is not None:
        context["role"] = context_role
    principal = principal_from_request_context({"authorizer": context})
    assert principal.role == role


@pytest.mark.parametrize("forged", ["root", "Admin", "admin ", "superuser"])
def test_a_forged_role_in_the_authorizer_context_is_refused(forged: str) -> None:
    with pytest.raises(Unauthorized):
        principal_from_request_context(
            {"authorizer": {"userId": USER, "authMethod": "jwt", "role": forged}})
