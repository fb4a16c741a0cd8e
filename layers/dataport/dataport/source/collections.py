"""Where messages live: one `messages` collection, or monthly `messages_YYYY_MM` collections.

ClaudeLens deployments use one layout or the other (newer ones are monthly, by message timestamp
in UTC). Readers look at every message collection; writers follow the layout the database
already uses, so data imported into a monthly deployment lands where ClaudeLens looks for it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from dataport.models.documents import MessageLayout
from dataport.source.mongo import Document

PROJECTS = "projects"
SESSIONS = "sessions"
MESSAGES = "messages"

_MONTHLY = re.compile(r"messages_(\d{4})_(\d{2})")


#: the name the source's callers use (the enum lives with the models: a job and a backup's
#: manifest record it too)
Layout = MessageLayout


def is_message_collection(name: str) -> bool:
    return name == MESSAGES or _MONTHLY.fullmatch(name) is not None


def month_of(name: str) -> tuple[int, int] | None:
    """(year, month) of a monthly collection name, None for `messages` or anything else."""
    match = _MONTHLY.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None


def message_collections(db: Database[Document]) -> list[str]:
    """Every message collection of the database, `messages` first, then months in order."""
    names = [name for name in db.list_collection_names() if is_message_collection(name)]
    return sorted(names, key=lambda name: month_of(name) or (0, 0))


def layout_in_use(db: Database[Document]) -> Layout | None:
    """The layout of a database that has message collections (monthly as soon as one monthly
    collection exists: a mix is never written by us); None for one that has none yet."""
    names = message_collections(db)
    if not names:
        return None
    return Layout.MONTHLY if any(month_of(name) for name in names) else Layout.SINGLE


def detect_layout(db: Database[Document], preferred: Layout | None = None) -> Layout:
    """The layout to write in: the database's own; for a database with no message collection
    yet, `preferred` (a restore's: the layout its backup's source used), else single."""
    return layout_in_use(db) or preferred or Layout.SINGLE


def collection_name_for(layout: Layout, timestamp: datetime) -> str:
    """The collection a message with this timestamp belongs in (months are UTC months)."""
    if layout is Layout.SINGLE:
        return MESSAGES
    moment = timestamp if timestamp.tzinfo is None else timestamp.astimezone(UTC)
    return f"{MESSAGES}_{moment.year:04d}_{moment.month:02d}"


def message_collection_for(db: Database[Document], timestamp: datetime,
                           layout: Layout | None = None) -> Collection[Document]:
    """The collection to write a message into; pass `layout` (from `detect_layout`) when writing
    many messages, to list the collections once rather than per message."""
    return db[collection_name_for(layout or detect_layout(db), timestamp)]


def ensure_message_indexes(collection: Collection[Document]) -> None:
    """uuid is a message's identity; (sessionId, timestamp) serves the per-session read. Writers
    call this for each message collection they create."""
    collection.create_index([("uuid", ASCENDING)], unique=True)
    collection.create_index([("sessionId", ASCENDING), ("timestamp", ASCENDING)])


def ensure_indexes(db: Database[Document]) -> None:
    """The indexes dataport's queries rely on, on every existing message collection (creating
    none: an empty `messages` would be a second layout). Idempotent."""
    db[SESSIONS].create_index([("sessionId", ASCENDING)], unique=True)
    db[SESSIONS].create_index([("projectId", ASCENDING)])
    db[PROJECTS].create_index([("user_id", ASCENDING)])
    for name in message_collections(db):
        ensure_message_indexes(db[name])
