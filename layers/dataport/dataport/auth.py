"""Who is calling: JWT bearer tokens and API keys, shared by the REST authorizer and the
WebSocket `$connect` route.

Two credentials are accepted:

- **JWT** (`Authorization: Bearer <jwt>`): HS256 only, signed with a secret kept in SSM
  Parameter Store (SecureString) or Secrets Manager, whose *name* is in settings. `exp` is
  required, `iat` / `nbf` are checked when present, `sub` is the ClaudeLens user id (a 24-hex
  ObjectId string).
- **API key** (`Authorization: ApiKey <key>`): a random secret; only its SHA-256 hex digest is
  stored, as the partition key `key_hash` of the API keys table, so a leaked table reveals no
  usable key and lookups by hash do not leak timing about the key itself.

`authenticate_credential` takes a bare credential (the WebSocket `token` query parameter) and
decides by shape: three dot-separated base64url segments is a JWT (an API key, being
`secrets.token_urlsafe` output behind the `dpk_` prefix, never contains a dot); any other string
of base64url characters is looked up as an API key.

**Role.** Every principal is a `user` or an `admin` (an administrator of the ClaudeLens instance,
who may take and restore instance-wide backups). A JWT carries it in its OAuth-style `scope`
claim (space-separated; `dataport:admin` among them makes an admin); an API key carries the role
it was made with, and only an administrator may make an admin key. The authorizer passes the role
in its context; a context without one reads as `user`, one with any other value is refused.

`authenticate_header` can also demand that the credential stay valid for a while longer
(`min_remaining_seconds`): the REST authorizer asks for its cache time, because API Gateway
reuses an answer that long without asking again, and a cached "allow" must not outlive the
token (or an expiring API key) it was given for.

Nothing here logs or echoes a credential: error messages describe the problem, not the token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataport.api_key_store import ApiKeyRecord, ApiKeyStore
from dataport.errors import Unauthorized
from dataport.settings import get_settings

__all__ = [
    "ADMIN_SCOPE",
    "API_KEY_PREFIX",
    "JWT_ALGORITHM",
    "Principal",
    "Role",
    "api_key_id",
    "authenticate_credential",
    "authenticate_header",
    "create_api_key",
    "hash_api_key",
    "issue_api_key",
    "issue_token",
    "principal_from_request_context",
]

AuthMethod = Literal["jwt", "api_key"]
Role = Literal["user", "admin"]
ROLES: tuple[Role, ...] = ("user", "admin")
#: The OAuth scope (in the JWT's space-separated `scope` claim) that makes an administrator.
ADMIN_SCOPE = "dataport:admin"

JWT_ALGORITHM = "HS256"
#: Clock skew tolerated on exp / nbf / iat, between ClaudeLens, us and the client.
JWT_LEEWAY_SECONDS = 30
#: How long a fetched signing secret is reused: a rotation takes effect within this time.
SECRET_MAX_AGE_SECONDS = 300
#: RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
#: Generated API keys start with this, so secret scanners and people can recognise them.
API_KEY_PREFIX = "dpk_"
#: Far above any real credential, far below API Gateway's header limit: refuse before parsing.
MAX_CREDENTIAL_LENGTH = 4096

#: Shapes are checked with `fullmatch`: `$` in `re.match` also matches before a trailing newline,
#: which let "<24 hex>\n" through to a model that then refused it (a 500, not a 401).
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_API_KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,256}")


class Principal(BaseModel):
    """The authenticated caller: the ClaudeLens user id every query is scoped to, and a role."""

    model_config = ConfigDict(frozen=True)

    user_id: str = Field(pattern=f"^{_OBJECT_ID.pattern}$")
    method: AuthMethod
    role: Role = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _user_id(value: object, what: str) -> str:
    """Normalise an ObjectId string (lower case, as `str(ObjectId)` prints it) or refuse it."""
    if not isinstance(value, str) or not _OBJECT_ID.fullmatch(value):
        raise Unauthorized(f"{what} is not a valid user id")
    return value.lower()


# --------------------------------------------------------------------------------------------
# Entry points


def authenticate_header(value: str | None, *, min_remaining_seconds: float = 0) -> Principal:
    """Authenticate an `Authorization` header value: `Bearer <jwt>` or `ApiKey <key>`.

    The scheme is case-insensitive (RFC 9110 11.1); anything else, including `Basic`, is refused.
    A JWT whose `exp`, or an API key whose expiry, is less than `min_remaining_seconds` away is
    refused too (the caller caches the answer that long).
    """
    if value is None or not value.strip():
        raise Unauthorized("Missing Authorization header")
    parts = value.split()
    if len(parts) != 2:
        raise Unauthorized("Authorization header must be 'Bearer <token>' or 'ApiKey <key>'")
    scheme, credential = parts[0].lower(), parts[1]
    if scheme == "bearer":
        return _authenticate_jwt(credential, min_remaining_seconds)
    if scheme == "apikey":
        return _authenticate_api_key(credential, min_remaining_seconds)
    raise Unauthorized("Unsupported authorization scheme: use 'Bearer' or 'ApiKey'")


def authenticate_credential(token: str) -> Principal:
    """Authenticate a bare credential (the WebSocket `token` query parameter).

    A JWT has three dot-separated base64url segments; an API key has no dot. The shape only picks
    the check: the token must then pass that check in full.
    """
    token = (token or "").strip()
    if not token:
        raise Unauthorized("Missing credential")
    if len(token) > MAX_CREDENTIAL_LENGTH:
        raise Unauthorized("Credential is too long")
    if token.count(".") == 2:
        return _authenticate_jwt(token)
    return _authenticate_api_key(token)


def principal_from_request_context(event_request_context: Mapping[str, Any]) -> Principal:
    """Read the principal the authorizer attached to a proxied request.

    API Gateway passes the authorizer's `context` under `requestContext.authorizer` with every
    value turned into a string (HTTP APIs nest it under `authorizer.lambda`). Accepts the raw dict
    or a Powertools request-context data class (a Mapping too).
    """
    authorizer = event_request_context.get("authorizer") if event_request_context else None
    if isinstance(authorizer, Mapping) and isinstance(authorizer.get("lambda"), Mapping):
        authorizer = authorizer["lambda"]
    if not isinstance(authorizer, Mapping):
        raise Unauthorized("Request was not authorized")
    user_id = authorizer.get("userId") or authorizer.get("principalId")
    method = authorizer.get("authMethod")
    # Older cached authorizer answers carry no role: they are users. Any other value is refused
    # by the model (never read as "some role"), so a forged context cannot widen access.
    role = authorizer.get("role") or "user"
    try:
        return Principal(user_id=_user_id(user_id, "Authorizer principal"), method=method,
                         role=role)
    except ValidationError:
        raise Unauthorized("Request carries no valid authorizer context") from None


# --------------------------------------------------------------------------------------------
# JWT


def _signing_secret() -> str:
    """Fetch the HS256 secret by the name in settings, cached for SECRET_MAX_AGE_SECONDS."""
    settings = get_settings()
    value: str | bytes | dict[str, Any]
    if settings.jwt_secret_source == "secretsmanager":  # noqa: S105 (a source, not a secret)
        value = parameters.get_secret(settings.jwt_secret_parameter, max_age=SECRET_MAX_AGE_SECONDS)
    else:
        value = parameters.get_parameter(
            settings.jwt_secret_parameter, decrypt=True, max_age=SECRET_MAX_AGE_SECONDS
        )
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str) or len(value.encode("utf-8")) < MIN_SECRET_BYTES:
        # A configuration fault, not the caller's: surface it as a server error, never as 401.
        raise RuntimeError(
            f"JWT signing secret {settings.jwt_secret_parameter!r} is missing or shorter than "
            f"{MIN_SECRET_BYTES} bytes"
        )
    return value


def _authenticate_jwt(token: str, min_remaining_seconds: float = 0) -> Principal:
    """Verify signature (HS256 only), expiry and subject of a bearer token."""
    if len(token) > MAX_CREDENTIAL_LENGTH:
        raise Unauthorized("Token is too long")
    if not _JWT_SHAPE.fullmatch(token):
        raise Unauthorized("Token is not a well-formed JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise Unauthorized("Token is not a well-formed JWT") from None
    # Checked before any key is touched: refuses alg "none" and algorithm-confusion tokens.
    if header.get("alg") != JWT_ALGORITHM:
        raise Unauthorized(f"Token algorithm is not allowed (only {JWT_ALGORITHM})")

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _signing_secret(),
            algorithms=[JWT_ALGORITHM],
            leeway=JWT_LEEWAY_SECONDS,
            options={
                "require": ["exp", "sub"],
                "verify_signature": True,
                "verify_exp": True,
                "verify_iat": True,
                "verify_nbf": True,
            },
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("Token is not valid yet") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("Token signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"Token is missing the '{exc.claim}' claim") from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized(f"Token algorithm is not allowed (only {JWT_ALGORITHM})") from None
    except jwt.DecodeError:  # after InvalidSignatureError, which subclasses it
        raise Unauthorized("Token is not a well-formed JWT") from None
    except jwt.InvalidTokenError as exc:
        # Remaining cases (bad iat, non-string sub, unexpected audience...): the library's
        # message names the claim at fault and never contains the token.
        raise Unauthorized(f"Token is invalid: {exc}") from None
    if min_remaining_seconds > 0 and float(claims["exp"]) - time.time() < min_remaining_seconds:
        raise Unauthorized(f"Token expires within {min_remaining_seconds:g} s: refresh it first")
    return Principal(user_id=_user_id(claims.get("sub"), "Token subject"), method="jwt",
                     role=_role_from_scope(claims.get("scope")))


def _role_from_scope(scope: object) -> Role:
    """`admin` when the OAuth `scope` claim (a space-separated string) names ADMIN_SCOPE."""
    if scope is None:
        return "user"
    if not isinstance(scope, str):
        raise Unauthorized("Token 'scope' claim must be a space-separated string")
    return "admin" if ADMIN_SCOPE in scope.split() else "user"


def issue_token(user_id: str, secret: str, ttl_seconds: int = 3600, *,
                admin: bool = False) -> str:
    """Sign an HS256 token for `user_id` (the local stack and tests stand in for ClaudeLens);
    `admin` adds the ADMIN_SCOPE scope."""
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise ValueError(f"secret must be at least {MIN_SECRET_BYTES} bytes for HS256")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    if not _OBJECT_ID.fullmatch(user_id):
        raise ValueError("user_id must be a 24-hex ObjectId string")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id.lower(), "iat": now, "nbf": now,
                              "exp": now + ttl_seconds}
    if admin:
        claims["scope"] = ADMIN_SCOPE
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


# --------------------------------------------------------------------------------------------
# API keys


def hash_api_key(key: str) -> str:
    """SHA-256 hex of the key: what the table stores and is keyed by."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def api_key_id(key_hash: str) -> str:
    """The key's public name: the start of its hash (which reveals nothing usable)."""
    return key_hash[:16]


def _authenticate_api_key(key: str, min_remaining_seconds: float = 0) -> Principal:
    """Look the key up by its hash and refuse unknown, revoked or expired keys."""
    if not _API_KEY_SHAPE.fullmatch(key):
        raise Unauthorized("API key is malformed")
    key_hash = hash_api_key(key)
    record = ApiKeyStore().get(key_hash)
    # The lookup already matched; compare again in constant time so no code path depends on
    # a short-circuiting string comparison of secret-derived data.
    if record is None or not hmac.compare_digest(record.key_hash, key_hash):
        raise Unauthorized("Unknown API key")
    if record.revoked:  # the store reads anything but a clean false as revoked
        raise Unauthorized("API key has been revoked")
    now = time.time()
    if record.expired(now):
        raise Unauthorized("API key has expired")
    if record.expires_at is not None and record.expires_at - now < min_remaining_seconds:
        raise Unauthorized(f"API key expires within {min_remaining_seconds:g} s")
    return Principal(user_id=_user_id(record.user_id, "API key owner"), method="api_key",
                     role=record.role)


def create_api_key(user_id: str, name: str, *, expires_at: int | None = None,
                   role: Role = "user") -> str:
    """Create a key for `user_id` and return it: the only time the key itself exists."""
    return issue_api_key(user_id, name, expires_at=expires_at, role=role)[0]


def issue_api_key(user_id: str, name: str, *, expires_at: int | None = None,
                  role: Role = "user") -> tuple[str, ApiKeyRecord]:
    """Create a key for `user_id`: the key (the only time it exists) and its stored record.

    `expires_at` is epoch seconds (optional). The write refuses to overwrite an existing hash.
    Who may give a key the `admin` role is the caller's decision (api/api_keys.py).
    """
    if not _OBJECT_ID.fullmatch(user_id):
        raise ValueError("user_id must be a 24-hex ObjectId string")
    if not name.strip():
        raise ValueError("name must not be empty")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key_hash = hash_api_key(key)
    record = ApiKeyRecord(
        key_hash=key_hash, key_id=api_key_id(key_hash), user_id=user_id.lower(), name=name,
        created_at=datetime.now(UTC).replace(microsecond=0), expires_at=expires_at, role=role)
    ApiKeyStore().add(record)
    return key, record
