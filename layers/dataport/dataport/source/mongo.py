"""The one MongoClient factory.

A MongoClient owns a connection pool and monitor threads, so a Lambda process makes one and
reuses it across invocations (`get_database`); tools and tests that talk to a database of their
own choosing use `connect`. Dates come back timezone-aware in UTC, the house rule for times.

The URI is a credential: it lives in Secrets Manager (settings name the secret), is read on first
use in a fresh container (Powertools parameters, cached) and never logged. When the database
refuses the credentials (`credentials_rejected`: the password was rotated), the task wrapped in
`renews_credentials` reads the secret again: a new URI replaces the client and the task fails
with TransientError, which the workflow's Retry turns into a fresh attempt with the new
password, without a redeploy; an unchanged URI is a configuration fault (DatabaseRefused).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import Any, ParamSpec, TypeVar

from aws_lambda_powertools.utilities import parameters
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure

from dataport.errors import DatabaseRefused, TransientError
from dataport.observability import logger
from dataport.settings import get_mongo_settings

P = ParamSpec("P")
R = TypeVar("R")

#: MongoDB's AuthenticationFailed; Atlas answers a bad password with 8000 (AtlasError, "bad auth")
_AUTH_FAILED = 18
_ATLAS_ERROR = 8000
#: How long a read URI is reused before Secrets Manager is asked again (a new client only; a
#: live client keeps its URI until the database refuses it)
URI_MAX_AGE_SECONDS = 3600

Document = dict[str, Any]


def one_of(values: Iterable[str]) -> dict[str, Any]:
    """A filter for any of `values` (at least one) that an index answers on nx-27017 too: an
    $in alone scans there, the range around it lets it use the index; MongoDB ignores it."""
    ordered = sorted(set(values))
    return {"$in": ordered, "$gte": ordered[0], "$lte": ordered[-1]}

_lock = threading.Lock()
_client: MongoClient[Document] | None = None
_client_uri: str | None = None


def client_for(uri: str) -> MongoClient[Document]:
    """A new client with the house options (aware UTC datetimes, standard UUIDs)."""
    return MongoClient(uri, tz_aware=True, tzinfo=UTC, uuidRepresentation="standard",
                       appname="dataport")


def connect(uri: str, database: str) -> Database[Document]:
    """A database on a client of its own: the caller closes it with `db.client.close()`."""
    return client_for(uri)[database]


def database_uri(*, fresh: bool = False) -> str:
    """The URI from the secret named by MONGODB_URI_SECRET (cached; `fresh` asks again)."""
    secret = get_mongo_settings().mongodb_uri_secret
    value = parameters.get_secret(secret, max_age=URI_MAX_AGE_SECONDS, force_fetch=fresh)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str) or not value.strip().startswith(("mongodb://",
                                                                    "mongodb+srv://")):
        # a configuration fault; the message names the secret, never its value
        raise RuntimeError(f"Secret {secret!r} does not hold a MongoDB URI "
                           "(mongodb:// or mongodb+srv://)")
    return value.strip()


def get_client() -> MongoClient[Document]:
    """The process-wide client for the secret's URI, created on first use."""
    global _client, _client_uri  # noqa: PLW0603 (the per-process cache is the point)
    with _lock:
        if _client is None:
            _client_uri = database_uri()
            _client = client_for(_client_uri)
        return _client


def get_database() -> Database[Document]:
    """The ClaudeLens database named by `MONGODB_DATABASE`."""
    return get_client()[get_mongo_settings().mongodb_database]


def credentials_rejected(error: BaseException) -> bool:
    """Did the database refuse the URI's credentials (as after a password rotation)? Also when
    a domain error was raised from such a refusal (workflows map database errors)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OperationFailure) and (cause.code == _AUTH_FAILED or (
                cause.code == _ATLAS_ERROR and "auth" in str(cause).lower())):
            return True
        cause = cause.__cause__
    return False


def renew_credentials() -> bool:
    """Read the secret again; a URI other than the client's replaces the client (True)."""
    global _client, _client_uri
    uri = database_uri(fresh=True)
    with _lock:
        if uri == _client_uri:
            return False
        stale, _client, _client_uri = _client, client_for(uri), uri
    if stale is not None:
        stale.close()
    return True


def renews_credentials(task: Callable[P, R]) -> Callable[P, R]:
    """For a task that reaches MongoDB: refused credentials -> read the secret again; a rotated
    URI makes the task fail with TransientError (the ASL retries it with the new client), an
    unchanged one with DatabaseRefused (retrying cannot help)."""

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        except Exception as error:
            if not credentials_rejected(error):
                raise
            if renew_credentials():
                logger.warning("database refused the credentials; the secret holds new ones")
                raise TransientError("The database credentials were rotated; the task is "
                                     "retried with the new ones.") from error
            logger.error("database refused the credentials in the secret")
            raise DatabaseRefused(
                "The database refused dataport's credentials. An administrator has to put a "
                "working URI into the secret named by MONGODB_URI_SECRET (no redeploy needed); "
                "then try again.", details={"mongoCode": getattr(error, "code", None)}
            ) from error

    return run


def reset() -> None:
    """Close and forget the cached client and MongoDB settings (tests that point the functions
    at another database or secret call this, as a cold start would)."""
    global _client, _client_uri  # noqa: PLW0603
    get_mongo_settings.cache_clear()
    with _lock:
        if _client is not None:
            _client.close()
        _client = _client_uri = None
