"""Streaming reads of one owner's data: sessions in keyset pages, their messages in order.

Memory is bounded by a page: sessions arrive `page_size` at a time and messages stream through
driver cursors `batch_size` at a time, never a whole session. Sessions are ordered by
`sessionId` (their identity, unique), so a worker that stops after a page resumes with
`after=<last sessionId of that page>` and a shard is the keyset range (`after`, `upto`].
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime

from pymongo import ASCENDING
from pymongo.cursor import Cursor

from dataport.models.exports import ExportFilters
from dataport.source.collections import message_collections, month_of
from dataport.source.mongo import Document
from dataport.source.scope import OwnerScope

SESSION_ORDER = [("sessionId", ASCENDING)]
MESSAGE_ORDER = [("sessionId", ASCENDING), ("timestamp", ASCENDING), ("uuid", ASCENDING)]

_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _message_key(doc: Document) -> tuple[str, bool, datetime, str]:
    """MESSAGE_ORDER as a Python key (a missing timestamp sorts first, as null does in
    MongoDB); it must agree with the server's sort for heapq.merge to be correct."""
    timestamp = doc.get("timestamp")
    return (doc["sessionId"], timestamp is not None, timestamp or _NO_TIME, doc.get("uuid", ""))


def iter_session_pages(scope: OwnerScope, filters: ExportFilters, after: str | None = None,
                       upto: str | None = None, page_size: int = 100) -> Iterator[list[Document]]:
    """Sessions in scope with `after < sessionId <= upto`, in sessionId order, `page_size` at a
    time. One cursor serves all pages (getMore per page) rather than one query per page: the
    keyset bounds make every page resumable, and the server evaluates the filter once."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    query = scope.sessions_query(filters, after=after, upto=upto)
    with scope.sessions.find(query, sort=SESSION_ORDER, batch_size=page_size) as cursor:
        page: list[Document] = []
        for session in cursor:
            page.append(session)
            if len(page) == page_size:
                yield page
                page = []
        if page:
            yield page


def _month_overlaps(name: str, filters: ExportFilters) -> bool:
    """Whether a message collection can hold messages of the filter's dateRange: a monthly
    collection only holds its own UTC month."""
    month = month_of(name)
    if month is None or filters.date_range is None:
        return True
    year, number = month
    first = datetime(year, number, 1, tzinfo=UTC)
    following = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    start, end = filters.date_range.start, filters.date_range.end
    return (end is None or first <= end) and (start is None or start < following)


class _Stream:
    """The merged message stream with one document of lookahead. `active` is the session whose
    messages may be read now: reading an earlier session's iterator after moving on raises
    instead of silently returning part of it."""

    def __init__(self, docs: Iterator[Document]) -> None:
        self._docs = docs
        self.head: Document | None = next(docs, None)
        self.active: str | None = None

    def advance(self) -> None:
        self.head = next(self._docs, None)

    def at(self, session_id: str) -> bool:
        return self.head is not None and self.head["sessionId"] == session_id

    def take(self, session_id: str) -> Iterator[Document]:
        while True:
            if self.active != session_id:
                raise RuntimeError(f"messages of session {session_id} read after moving on "
                                   "to the next session")
            if self.head is None or self.head["sessionId"] != session_id:
                return
            doc = self.head
            self.advance()
            yield doc

    def skip_before(self, session_id: str) -> None:
        """Drop what a consumer left unread of earlier sessions."""
        while self.head is not None and self.head["sessionId"] < session_id:
            self.advance()


def iter_messages(scope: OwnerScope, sessions_page: Sequence[Document], filters: ExportFilters,
                  batch_size: int = 500) -> Iterator[tuple[Document, Iterator[Document]]]:
    """(session, its messages in (timestamp, uuid) order) for each session of the page, in
    sessionId order. Each message collection is queried once for the whole page and the sorted
    streams are merged; a session's iterator is only valid until the next pair is taken (as
    with itertools.groupby; reading it later raises RuntimeError). Sessions without messages
    come with an empty iterator, unless message-level filters are active: then a session left
    with no messages is left out. Memory: one batch per message collection holding messages of
    the page, whatever the size of a session."""
    if not sessions_page:
        return
    page = sorted(sessions_page, key=lambda session: str(session["sessionId"]))
    query = scope.messages_query(page, filters)
    names = [name for name in message_collections(scope.db) if _month_overlaps(name, filters)]
    with ExitStack() as cursors:
        streams: list[Cursor[Document]] = [
            cursors.enter_context(scope.db[name].find(query, sort=MESSAGE_ORDER,
                                                      batch_size=batch_size))
            for name in names]
        stream = _Stream(heapq.merge(*streams, key=_message_key))
        try:
            for session in page:
                session_id = session["sessionId"]
                stream.active = None
                stream.skip_before(session_id)
                if filters.filters_messages and not stream.at(session_id):
                    continue
                stream.active = session_id
                yield session, stream.take(session_id)
        finally:
            stream.active = None


def session_keys(scope: OwnerScope, filters: ExportFilters, after: str | None = None,
                 upto: str | None = None, batch_size: int = 5000) -> Iterator[str]:
    """Just the sessionIds in scope, in order: what shard planning needs, at a few dozen bytes
    per session."""
    query = scope.sessions_query(filters, after=after, upto=upto)
    projection = {"sessionId": 1, "_id": 0}
    with scope.sessions.find(query, projection, sort=SESSION_ORDER,
                             batch_size=batch_size) as cursor:
        for doc in cursor:
            yield doc["sessionId"]


def count_sessions(scope: OwnerScope, filters: ExportFilters, after: str | None = None,
                   upto: str | None = None) -> int:
    """Sessions matching the session-level filters (with message-level filters some of them
    may still be left out for having no matching message)."""
    return scope.sessions.count_documents(scope.sessions_query(filters, after=after, upto=upto))


def projects_in_scope(scope: OwnerScope, filters: ExportFilters) -> list[Document]:
    """The user's projects the filters keep (a user has few; sorted by id)."""
    return list(scope.projects.find(scope.projects_query(filters), sort=[("_id", ASCENDING)]))
