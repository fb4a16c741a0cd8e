"""Streaming reads of one owner's data: sessions in keyset pages, their messages in order.

Memory is bounded by a page: sessions arrive `page_size` at a time and messages stream through
driver cursors `batch_size` at a time, never a whole session. Sessions are ordered by
`sessionId` (their identity, unique), so a worker that stops after a page resumes with
`after=<last sessionId of that page>` and a shard is the keyset range (`after`, `upto`].

A worker reads a shard's messages with `ShardMessages`: one cursor per message collection for
the whole invocation (not one per collection per page), over the shard's sessions, merged.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from pymongo import ASCENDING
from pymongo.cursor import Cursor

from dataport.models.exports import ExportFilters
from dataport.source.collections import message_collections, month_of
from dataport.source.mongo import Document
from dataport.source.read_ahead import ReadAhead
from dataport.source.scope import OwnerScope

SESSION_ORDER = [("sessionId", ASCENDING)]
#: the order messages come in: by session, by time, ties (a message and its derived tool
#: documents share a timestamp) by uuid
MESSAGE_ORDER = [("sessionId", ASCENDING), ("timestamp", ASCENDING), ("uuid", ASCENDING)]
#: the order asked of the server: the (sessionId, timestamp) index gives it without a sort stage
#: (a sort on uuid too would make MongoDB sort a shard's messages in memory before the first
#: one); ties are put in uuid order as they stream (`_in_message_order`)
TIME_ORDER = [("sessionId", ASCENDING), ("timestamp", ASCENDING)]

#: the smallest batch a shard's cursor asks for when the batch is shared among collections
MIN_CURSOR_BATCH = 64
#: the merged stream is read ahead in a thread (while the writer encodes, the next batches are
#: on their way from MongoDB): this many messages a hand-over, at most PREFETCH_DEPTH
#: hand-overs waiting
PREFETCH_CHUNK = 128
PREFETCH_DEPTH = 4

_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _time_key(doc: Document) -> tuple[str, bool, datetime]:
    """TIME_ORDER as a Python key (a missing timestamp sorts first, as null does in MongoDB);
    it must agree with the server's sort for heapq.merge to be correct."""
    timestamp = doc.get("timestamp")
    return (doc["sessionId"], timestamp is not None, timestamp or _NO_TIME)


def _uuid_key(doc: Document) -> tuple[bool, str]:
    """The tie-break of MESSAGE_ORDER (a missing uuid first, as null is in MongoDB)."""
    uuid = doc.get("uuid")
    return (True, uuid) if isinstance(uuid, str) else (False, "")


def _in_message_order(docs: Iterator[Document]) -> Iterator[Document]:
    """Documents in TIME_ORDER, in MESSAGE_ORDER: each run sharing (sessionId, timestamp) is
    held until the next key shows and sorted by uuid. Memory: one run (a message and its
    derived documents), plus one document of lookahead."""
    run: list[Document] = []
    run_key: tuple[str, bool, datetime] | None = None
    for doc in docs:
        key = _time_key(doc)
        if key != run_key:
            if len(run) > 1:
                run.sort(key=_uuid_key)
            yield from run
            run, run_key = [doc], key
        else:
            run.append(doc)
    if len(run) > 1:
        run.sort(key=_uuid_key)
    yield from run


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


def _open_messages(scope: OwnerScope, sessions: Iterable[Mapping[str, Any]],
                   filters: ExportFilters, batch_size: int, cursors: ExitStack, *,
                   shared_batch: bool = False) -> _Stream:
    """One cursor per message collection (those the dateRange can touch) over the messages of
    `sessions` (checked to be the owner's by the scope), merged into one stream in
    MESSAGE_ORDER. The cursors close with `cursors`. With `shared_batch`, `batch_size` is what
    all the cursors together hold (each at least MIN_CURSOR_BATCH, or batch_size if smaller):
    a deployment with years of monthly collections must not hold a full batch of each."""
    query = scope.messages_query(sessions, filters)
    names = [name for name in message_collections(scope.db) if _month_overlaps(name, filters)]
    if shared_batch and names:
        batch_size = max(min(batch_size, MIN_CURSOR_BATCH), -(-batch_size // len(names)))
    streams: list[Cursor[Document]] = [
        cursors.enter_context(scope.db[name].find(query, sort=TIME_ORDER, batch_size=batch_size))
        for name in names]
    merged = _in_message_order(heapq.merge(*streams, key=_time_key))
    if not streams:
        return _Stream(merged)
    # stopped (and its thread joined) before the cursors it reads are closed: LIFO
    ahead = cursors.enter_context(ReadAhead(merged, chunk=PREFETCH_CHUNK, depth=PREFETCH_DEPTH))
    return _Stream(iter(ahead))


def _pairs(stream: _Stream, sessions: Iterable[Document],
           filters: ExportFilters) -> Iterator[tuple[Document, Iterator[Document]]]:
    """(session, its messages) from the merged stream, for sessions in sessionId order."""
    try:
        for session in sessions:
            session_id = session["sessionId"]
            stream.active = None
            stream.skip_before(session_id)
            if filters.filters_messages and not stream.at(session_id):
                continue
            stream.active = session_id
            yield session, stream.take(session_id)
    finally:
        stream.active = None


def iter_messages(scope: OwnerScope, sessions_page: Sequence[Document], filters: ExportFilters,
                  batch_size: int = 500) -> Iterator[tuple[Document, Iterator[Document]]]:
    """(session, its messages in (timestamp, uuid) order) for each session of the page, in
    sessionId order. Each message collection is queried once for the whole page and the sorted
    streams are merged; a session's iterator is only valid until the next pair is taken (as
    with itertools.groupby; reading it later raises RuntimeError). Sessions without messages
    come with an empty iterator, unless message-level filters are active: then a session left
    with no messages is left out. Memory: one batch per message collection holding messages of
    the page, whatever the size of a session. A worker reading a whole shard uses
    `ShardMessages`, which queries each collection once for all its pages."""
    if not sessions_page:
        return
    page = sorted(sessions_page, key=lambda session: str(session["sessionId"]))
    with ExitStack() as cursors:
        stream = _open_messages(scope, page, filters, batch_size, cursors)
        yield from _pairs(stream, page, filters)


class ShardMessages:
    """The messages of one shard's sessions for one worker invocation: one cursor per message
    collection over the shard's keyset range (`after`, `upto`], opened at the first page and
    kept across pages, merged in MESSAGE_ORDER; each page takes its sessions' messages from the
    merged stream.

        with ShardMessages(scope, filters, after=..., upto=...) as shard:
            for page in iter_session_pages(scope, filters, after=..., upto=...):
                for session, messages in shard.pairs(page):
                    ...

    The cursors' query is the scope's messages query for the shard's sessions in scope (read
    once, keys only: `sessionId $in` those ids, bounded by the first and last of them, so
    MongoDB walks the (sessionId, timestamp) index and nx-27017 a range, never another user's
    messages), with the same message-level filters as `iter_messages`. Pages must come in
    sessionId order, each after the last; a session of a page that was not in scope when the
    shard's keys were read (created since) gets a query of its own. An invocation that stops
    early closes the cursors; the next one resumes with `after` = the last session written.
    Memory: `batch_size` messages shared by the cursors (each holds at least
    MIN_CURSOR_BATCH), one run of equal timestamps, and the shard's sessionIds (at most
    SHARD_MAX_SESSIONS short strings), whatever the size of the shard."""

    def __init__(self, scope: OwnerScope, filters: ExportFilters, *, after: str | None = None,
                 upto: str | None = None, batch_size: int = 500) -> None:
        self.scope = scope
        self.filters = filters
        self.after = after
        self.upto = upto
        self.batch_size = batch_size
        self._cursors = ExitStack()
        self._stream: _Stream | None = None
        self._keys: frozenset[str] = frozenset()
        self._last: str | None = None

    def __enter__(self) -> ShardMessages:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._cursors.close()
        self._stream = None

    def _open(self) -> _Stream:
        projection = {"sessionId": 1, "projectId": 1, "_id": 0}
        query = self.scope.sessions_query(self.filters, after=self.after, upto=self.upto)
        with self.scope.sessions.find(query, projection, sort=SESSION_ORDER,
                                      batch_size=5000) as cursor:
            sessions = list(cursor)
        self._keys = frozenset(session["sessionId"] for session in sessions)
        if sessions:
            stream = _open_messages(self.scope, sessions, self.filters, self.batch_size,
                                    self._cursors, shared_batch=True)
        else:
            stream = _Stream(iter(()))
        self._stream = stream
        return stream

    def pairs(self, page: Sequence[Document]) -> Iterator[tuple[Document, Iterator[Document]]]:
        """(session, its messages in (timestamp, uuid) order) for each session of the page, in
        sessionId order, exactly as `iter_messages` gives them."""
        stream = self._stream or self._open()
        ordered = sorted(page, key=lambda session: str(session["sessionId"]))
        if ordered and self._last is not None and ordered[0]["sessionId"] <= self._last:
            raise ValueError("pages of a shard must come in sessionId order")
        for session in ordered:
            self._last = session["sessionId"]
            if session["sessionId"] in self._keys:
                yield from _pairs(stream, [session], self.filters)
            else:
                yield from iter_messages(self.scope, [session], self.filters, self.batch_size)


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


def count_projects(scope: OwnerScope, filters: ExportFilters) -> int:
    """The user's projects the filters keep, counted by the server."""
    return scope.projects.count_documents(scope.projects_query(filters))


def work_in_scope(scope: OwnerScope, filters: ExportFilters) -> tuple[int, int]:
    """Sessions in scope and the sum of their messageCount: counts only, summed by the server
    (with message-level filters this overestimates the messages: an estimate is all shard
    sizing and `POST /exports/estimate` need)."""
    rows = list(scope.sessions.aggregate([
        {"$match": scope.sessions_query(filters)},
        {"$group": {"_id": None, "sessions": {"$sum": 1},
                    "messages": {"$sum": "$messageCount"}}}]))
    if not rows:
        return 0, 0
    return int(rows[0].get("sessions") or 0), int(rows[0].get("messages") or 0)
