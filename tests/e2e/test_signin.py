"""Sign-in that fits ClaudeLens, through the local REST gateway and the template's authorizer:
tokens signed with ClaudeLens's own HS256 secret (an existing secret, by ARN), RS256 tokens of an
OIDC issuer whose JWKS a tiny server on 127.0.0.1 publishes (rotation included), and the
operator's first credential (infrastructure/signin.py).

The authorizer's sign-in variables come from template.yaml resolved with the parameters a
deploy would pass (JwtSecretArn, OidcIssuer, ...), so the test covers what the template sets.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dataport.auth import forget_signing_keys, issue_token
from dataport.settings import get_settings
from infrastructure import signin
from infrastructure.local.stack import LocalStack
from infrastructure.local.template import Template

USER = "66ad9b005f2b4a0012c0bbbb"
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Local"
AUDIENCE = "dataport-web-client"
CLAIM = "custom:claudelens_user_id"
SIGN_IN_VARIABLES = ("JWT_SECRET_PARAMETER", "USER_ID_CLAIM", "OIDC_ISSUER", "OIDC_AUDIENCE",
                     "OIDC_JWKS_URL")


def _deployed_with(monkeypatch: pytest.MonkeyPatch, stack: LocalStack,
                   **parameters_: str) -> dict[str, str]:
    """Set the authorizer's sign-in variables as template.yaml gives them for these
    parameters; the stack's cached authorizer answers and key sets are forgotten."""
    template = Template(stack.template_path, parameters=parameters_,
                        account_id=stack.template.account_id)
    if "JwtSecretArn" not in parameters_:  # the stack's own secret, as the running stack made it
        template.bind("JwtSecret", stack.template.ref("JwtSecret"))
    environment = template.function("AuthorizerFunction").environment
    for name in SIGN_IN_VARIABLES:
        monkeypatch.setenv(name, environment[name])
    get_settings.cache_clear()
    forget_signing_keys()
    stack.forget_authorizer_answers()
    return dict(environment)


@pytest.fixture
def stack(fresh_stack: LocalStack) -> Iterator[LocalStack]:
    yield fresh_stack
    get_settings.cache_clear()  # the monkeypatched variables are undone after this
    forget_signing_keys()
    fresh_stack.forget_authorizer_answers()


def _status(stack: LocalStack, authorization: str) -> int:
    answer = requests.get(f"{stack.rest_url}/exports",
                          headers={"Authorization": authorization}, timeout=30)
    return answer.status_code


# ------------------------------------------------------------------ HS256, ClaudeLens's secret


def test_tokens_signed_with_claudelens_secret_are_accepted(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    claudelens_secret = "claudelens-signing-secret-" + uuid.uuid4().hex
    secrets = stack.client("secretsmanager")
    arn = secrets.create_secret(Name=f"claudelens/jwt-{uuid.uuid4().hex[:8]}",
                                SecretString=claudelens_secret)["ARN"]
    try:
        environment = _deployed_with(monkeypatch, stack, JwtSecretArn=arn)
        assert environment["JWT_SECRET_PARAMETER"] == arn

        assert _status(stack, f"Bearer {issue_token(USER, claudelens_secret)}") == 200
        # the stack's own secret is not the one in use any more
        assert _status(stack, f"Bearer {issue_token(USER, stack.jwt_secret)}") == 401
    finally:
        secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


# ------------------------------------------------------------------ RS256, an OIDC issuer


@dataclass
class Issuer:
    """An OIDC issuer's JWKS on 127.0.0.1 (what Cognito serves at .well-known/jwks.json)."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    fetches: int = 0
    url: str = ""

    def add_key(self) -> str:
        kid = uuid.uuid4().hex[:12]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return kid

    def jwks(self) -> bytes:
        published = []
        for kid, key in self.keys.items():
            public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            published.append({**public, "kid": kid, "use": "sig", "alg": "RS256"})
        return json.dumps({"keys": published}).encode()

    def token(self, kid: str, *, key_of: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": str(uuid.uuid4()), CLAIM: USER,
                "iat": now, "exp": now + 600, **claims}
        return jwt.encode(body, self.keys[key_of or kid], algorithm="RS256",
                          headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    state = Issuer()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = state.jwks()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _oidc(monkeypatch: pytest.MonkeyPatch, stack: LocalStack, issuer: Issuer, *,
          refresh_seconds: int) -> None:
    environment = _deployed_with(monkeypatch, stack, OidcIssuer=ISSUER, OidcAudience=AUDIENCE,
                                 UserIdClaim=CLAIM)
    assert environment["OIDC_ISSUER"] == ISSUER
    assert environment["OIDC_JWKS_URL"] == ""  # <issuer>/.well-known/jwks.json by default
    # the test's issuer speaks http on 127.0.0.1 (a deployed one: https, from OidcJwksUrl)
    monkeypatch.setenv("OIDC_JWKS_URL", issuer.url)
    monkeypatch.setenv("OIDC_JWKS_REFRESH_SECONDS", str(refresh_seconds))
    get_settings.cache_clear()
    forget_signing_keys()


def test_oidc_tokens_are_verified_with_the_issuers_keys_through_a_rotation(
        stack: LocalStack, issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    first = issuer.add_key()
    _oidc(monkeypatch, stack, issuer, refresh_seconds=0)

    assert _status(stack, f"Bearer {issuer.token(first)}") == 200
    assert _status(stack, f"Bearer {issuer.token(first)}") == 200
    assert issuer.fetches == 1  # the key set is cached

    second = issuer.add_key()  # the issuer rotates: a token signed with the new key arrives
    assert _status(stack, f"Bearer {issuer.token(second)}") == 200
    assert issuer.fetches == 2  # the unknown kid refreshed the set once

    unknown = uuid.uuid4().hex[:12]
    assert _status(stack, f"Bearer {issuer.token(unknown, key_of=first)}") == 401
    assert issuer.fetches == 3  # one refresh for an unknown kid, never more per request


@pytest.mark.parametrize("claims", [
    {"aud": "another-client"},
    {"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"},
    {CLAIM: "not-an-object-id"},
    {"exp": int(time.time()) - 3600},
], ids=["wrong-audience", "wrong-issuer", "not-a-user-id", "expired"])
def test_oidc_tokens_for_someone_else_are_refused(
        stack: LocalStack, issuer: Issuer, monkeypatch: pytest.MonkeyPatch,
        claims: dict[str, Any]) -> None:
    kid = issuer.add_key()
    _oidc(monkeypatch, stack, issuer, refresh_seconds=0)
    assert _status(stack, f"Bearer {issuer.token(kid)}") == 200
    assert _status(stack, f"Bearer {issuer.token(kid, **claims)}") == 401


def test_invented_kids_cannot_make_the_authorizer_hammer_the_issuer(
        stack: LocalStack, issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    kid = issuer.add_key()
    _oidc(monkeypatch, stack, issuer, refresh_seconds=30)
    assert _status(stack, f"Bearer {issuer.token(kid)}") == 200
    for _ in range(3):
        invented = uuid.uuid4().hex[:12]
        assert _status(stack, f"Bearer {issuer.token(invented, key_of=kid)}") == 401
    assert issuer.fetches == 1  # within the cooldown no unknown kid refetches the set


def test_hs256_tokens_still_work_beside_an_issuer(
        stack: LocalStack, issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    issuer.add_key()
    _oidc(monkeypatch, stack, issuer, refresh_seconds=0)
    # the claim that carries the user id is the configured one, for HS256 tokens too
    token = jwt.encode({CLAIM: USER, "exp": int(time.time()) + 600}, stack.jwt_secret,
                       algorithm="HS256")
    assert _status(stack, f"Bearer {token}") == 200
    assert issuer.fetches == 0


# ------------------------------------------------------------------ the operator's first credential


def _run(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert signin.main(list(argv)) == 0
    return out.getvalue().strip()


def test_an_operator_signs_a_first_token_with_the_stacks_secret(stack: LocalStack) -> None:
    token = _run("token", "--secret-arn", stack.template.ref("JwtSecret"), "--user-id", USER,
                 "--ttl", "600")
    assert _status(stack, f"Bearer {token}") == 200
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == USER


def test_an_operator_makes_an_api_key(stack: LocalStack) -> None:
    key = _run("api-key", "--api-keys-table", stack.tables["ApiKeysTable"], "--user-id", USER,
               "--name", "operator", "--days", "1")
    assert key.startswith("dpk_")
    assert _status(stack, f"ApiKey {key}") == 200
    listed = requests.get(f"{stack.rest_url}/api-keys",
                          headers={"Authorization": f"ApiKey {key}"}, timeout=30).json()
    assert [k["name"] for k in listed["apiKeys"]] == ["operator"]


def test_the_tool_refuses_a_user_id_that_is_no_object_id(stack: LocalStack) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert signin.main(["token", "--secret-arn", stack.template.ref("JwtSecret"),
                            "--user-id", "alice"]) == 2
    assert "24-hex" in err.getvalue()


def test_an_operator_makes_the_first_administrator(stack: LocalStack) -> None:
    """Only an administrator may give a key the admin role (and keys are made with a sign-in
    token): the operator's tool signs the first administrator's token, or writes an admin key."""
    def admin_key_made_with(token: str) -> int:
        return requests.post(f"{stack.rest_url}/api-keys", json={"name": "ops", "role": "admin"},
                             headers={"Authorization": f"Bearer {token}"},
                             timeout=30).status_code

    secret = stack.template.ref("JwtSecret")
    plain = _run("token", "--secret-arn", secret, "--user-id", USER)
    admin = _run("token", "--secret-arn", secret, "--user-id", USER, "--admin")
    assert jwt.decode(admin, options={"verify_signature": False})["scope"] == "dataport:admin"
    assert admin_key_made_with(plain) == 403
    assert admin_key_made_with(admin) == 201
    key = _run("api-key", "--api-keys-table", stack.tables["ApiKeysTable"], "--user-id", USER,
               "--name", "first", "--admin")
    listed = requests.get(f"{stack.rest_url}/api-keys", headers={"Authorization": f"ApiKey {key}"},
                          timeout=30).json()
    assert {k["name"]: k["role"] for k in listed["apiKeys"]}["first"] == "admin"
