"""The one MongoClient factory.

A MongoClient owns a connection pool and monitor threads, so a Lambda process makes one and
reuses it across invocations (`get_database`); tools and tests that talk to a database of their
own choosing use `connect`. Dates come back timezone-aware in UTC, the house rule for times.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from dataport.settings import get_settings

Document = dict[str, Any]


def one_of(values: Iterable[str]) -> dict[str, Any]:
    """A filter for any of `values` (at least one) that an index answers on nx-27017 too: an
    $in alone scans there, the range around it lets it use the index; MongoDB ignores it."""
    ordered = sorted(set(values))
    return {"$in": ordered, "$gte": ordered[0], "$lte": ordered[-1]}

_lock = threading.Lock()
_client: MongoClient[Document] | None = None


def client_for(uri: str) -> MongoClient[Document]:
    """A new client with the house options (aware UTC datetimes, standard UUIDs)."""
    return MongoClient(uri, tz_aware=True, tzinfo=UTC, uuidRepresentation="standard",
                       appname="dataport")


def connect(uri: str, database: str) -> Database[Document]:
    """A database on a client of its own: the caller closes it with `db.client.close()`."""
    return client_for(uri)[database]


def get_client() -> MongoClient[Document]:
    """The process-wide client for `settings.mongodb_uri`, created on first use."""
    global _client  # noqa: PLW0603 (the per-process cache is the point)
    with _lock:
        if _client is None:
            _client = client_for(get_settings().mongodb_uri)
        return _client


def get_database() -> Database[Document]:
    """The ClaudeLens database named by `settings.mongodb_database`."""
    return get_client()[get_settings().mongodb_database]


def reset() -> None:
    """Close and forget the cached client (tests that change MONGODB_URI call this; settings
    are cached separately by `get_settings`)."""
    global _client  # noqa: PLW0603
    with _lock:
        if _client is not None:
            _client.close()
        _client = None
