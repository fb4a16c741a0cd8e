"""Executing an import's decision, session by session, in batches.

One `Executor` is one Lambda invocation's worth of work, in two passes:

1. Sessions staged light (new to the user when they were staged, see source.staging) are looked
   up again (one `$in` per 1,000): those the user has by now get their messages staged in full
   for the second pass; the others are inserted straight from the records validation checked
   (imports.checked; or the upload parsed and checked again where it kept none), in the order
   they come, their identities decided from those records (`_arrivals`): each message is
   written once, as the checked bytes where its ids are kept, in unordered batches of at most
   `import_batch_ops` documents. Nothing stored
   changes, so no journal: a session is marked `writing` in staging before its first message
   is written and `done` after its session document, and `recover` deletes (by the job's tag)
   whatever an interrupted invocation left `writing`.
2. The sessions staged in full (the user has them: replace, merge), in sessionId order, planned
   against what the user has (imports.plan), their stored sessions read in bulk; operations in
   journalled batches (source.writes explains the journal that makes every session all or
   nothing).
A dry run is the same walk with the writes left out (a light session's counts come from its
staged uuids), so what it reports is what the execution does.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import chain, islice
from typing import Any, cast

from bson import ObjectId
from pymongo import DeleteOne, InsertOne, ReplaceOne
from pymongo.database import Database
from pymongo.errors import PyMongoError

from dataport.bucket import PackagesBucket
from dataport.errors import TransientError
from dataport.imports import storage
from dataport.imports.checked import Encoded, decoded, tagged
from dataport.imports.plan import Op, SessionPlan
from dataport.models.documents import MessageLayout
from dataport.models.imports import (
    MAX_LISTED_COPIES,
    CopiedMessage,
    ImportDecision,
    MessageCounts,
    SessionAction,
    SessionResult,
    Strategy,
)
from dataport.models.records import ImportRecord, RecordKind
from dataport.source.collections import SESSIONS
from dataport.source.conflicts import LOOKUP_BATCH, Identity, StoredSession, UserData
from dataport.source.identity import SessionIds
from dataport.source.mongo import Document
from dataport.source.staging import DONE, LIGHT, PENDING, WRITING, NotGrouped, Staging
from dataport.source.writes import IMPORT_TAG, Target, WriteOp, undo_sessions


@dataclass
class _Session:
    """A session with writes in the open batch."""

    plan: SessionPlan
    project_path: str
    entry: ObjectId  # its staging index entry
    journalled: bool = False  # its stored document is in an earlier batch's journal
    complete: bool = False  # all its messages are planned: its document goes out with the batch


@dataclass
class _Journal:
    """A batch's journal entry: its sessions the user has, and which pre-images to save."""

    key: str
    sessions: list[dict[str, Any]]
    preimage_ids: dict[str, list[ObjectId]]
    sessions_before: list[tuple[str, Document]]  # stored session documents, first batch only


@dataclass
class _Write:
    """A batch's writes, decided (Executor._prepared) and waiting for the writes thread."""

    journal: _Journal | None
    writing: list[tuple[ObjectId, dict[str, Any]]]
    ops: dict[str, list[WriteOp]]
    documents: list[WriteOp]


class _Writes:
    """Batches written in threads of their own, in order of submission, at most `depth` in
    flight: while they wait on MongoDB (and S3, for a journal), the next batch is read, checked
    and planned, and MongoDB always has the next batch's writes queued, so it never waits for
    this process between two batches (how the batches' marks stay in order: `Executor._apply`).
    Memory: `depth` batches written and one planned. `submit` and `wait` raise what a write
    raised (the oldest first), and `close` leaves no write running (a Lambda must not return,
    or fail, with one: the next task would undo what it still writes)."""

    def __init__(self, depth: int) -> None:
        self._depth = depth
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()

    def submit(self, write: Callable[[], None]) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._depth,
                                            thread_name_prefix="import-writes")
        self._pending.append(self._pool.submit(write))

    def wait(self) -> None:
        """Until every batch in flight is written; raises what the oldest failed one raised."""
        pending, self._pending = list(self._pending), deque()
        wait(pending)
        for future in pending:
            future.result()

    def settle(self) -> None:
        """Until every batch in flight has ended, whatever it raised (another error is being
        reported)."""
        pending, self._pending = list(self._pending), deque()
        wait(pending)

    def close(self) -> None:
        self.settle()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


#: staging index entries and the fields a mark sets on each
Marks = list[tuple[ObjectId, dict[str, Any]]]


@dataclass
class _Flight:
    """A batch handed to the writes threads (numbered from 1, in order), with its results to
    mark `done` once written; `marked` tells the next batch that its marks are written
    (`ok`), or that it ended before they were."""

    number: int
    before: _Flight | None
    results: Marks = field(default_factory=list)
    records: int = 0
    marked: threading.Event = field(default_factory=threading.Event)
    ok: bool = False

    @classmethod
    def landed(cls) -> _Flight:
        """The one before the first batch."""
        flight = cls(0, None, ok=True)
        flight.marked.set()
        return flight


class _EarlierBatchFailed(RuntimeError):
    """A batch whose predecessor did not write its marks writes nothing (the predecessor's
    error is the one reported: `_Writes` raises the oldest first)."""


class DoneMarks:
    """Batches' results (staging's `done` marks), ready to be written only in batch order: a
    batch's once it and every batch before it are written, whatever order they end in (a
    session a batch completes may have messages in the batches before). Thread-safe: the
    writes threads end batches while another writes the marks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended: dict[int, tuple[Marks, int]] = {}
        self._next = 1  # the first batch whose results are not ready
        self._ready: Marks = []
        self._records = 0

    def ended(self, number: int, results: Marks, records: int) -> None:
        """Batch `number` (from 1) is written; `records`: what its results count."""
        with self._lock:
            self._ended[number] = (results, records)
            while self._next in self._ended:
                ready, counted = self._ended.pop(self._next)
                self._ready.extend(ready)
                self._records += counted
                self._next += 1

    def take(self) -> tuple[Marks, int]:
        """The results ready to be marked, and what they count (given back if not written)."""
        with self._lock:
            ready, self._ready = self._ready, []
            records, self._records = self._records, 0
            return ready, records

    def give_back(self, marks: Marks, records: int) -> None:
        with self._lock:
            self._ready[:0] = marks
            self._records += records


@dataclass
class _Batch:
    ops: dict[str, list[WriteOp]] = field(default_factory=lambda: defaultdict(list))
    preimage_ids: dict[str, list[ObjectId]] = field(default_factory=lambda: defaultdict(list))
    sessions: dict[str, _Session] = field(default_factory=dict)  # by incoming id, in order
    results: list[tuple[ObjectId, SessionResult]] = field(default_factory=list)
    records: int = 0  # the finished sessions and their staged messages (their entries' `m`)
    size: int = 0


class Executor:
    def __init__(self, *, db: Database[Document], bucket: PackagesBucket, job_id: str,
                 user_id: str, decision: ImportDecision, staging: Staging, run_id: str,
                 batch_ops: int, now: datetime, writes_in_flight: int = 2,
                 layout: MessageLayout | None = None) -> None:
        self.db, self.bucket = db, bucket
        self.job_id, self.user_id = job_id, user_id
        self.decision = decision
        self.dry_run = decision.dry_run
        self.staging = staging
        self.run_id = run_id
        self.batch_ops = batch_ops
        self.now = now
        self.user = UserData(db, user_id)
        #: `layout`: where messages go when the target has no message collection yet (a
        #: restore's: its backup's source's); a target that has some keeps its own
        self.target = Target(db, layout)
        self.projects = {path: doc["_id"] for path, doc in self.user.projects_by_path().items()}
        self.upload_projects = staging.projects()
        self.batches = 0  # batches with writes (journal keys are numbered by it)
        self._batch = _Batch()
        self._renamed: set[str] = set()  # strategy rename: sessions going to their copy
        self._writer = _Writes(writes_in_flight)
        self._last_flight = _Flight.landed()
        # results of the batches written, marked `done` with a later batch's marks (_apply)
        self._done = DoneMarks()
        #: sessions this execution has marked done, and their messages (a shard's progress)
        self.records_marked = 0
        self._tag = tagged(job_id)  # what Encoded.stored puts behind a message's new _id

    def run(self, keep_going: Callable[[], bool], after: str | None,
            upload: Callable[[], Iterator[ImportRecord]] | None = None
            ) -> tuple[str | None, bool]:
        """Sessions after `after` until all are done (True) or `keep_going` says stop between
        two sessions (False); returns the last session done and whether all are. `upload`
        reads the upload again (the light sessions' messages). Every batch is written when it
        returns or raises (no write left running: see _Writes)."""
        try:
            return self._run(keep_going, after, upload)
        except BaseException:
            self._writer.settle()  # the first error is the one to report
            self._mark_written()
            raise
        finally:
            self._writer.close()

    def _run(self, keep_going: Callable[[], bool], after: str | None,
             upload: Callable[[], Iterator[ImportRecord]] | None) -> tuple[str | None, bool]:
        if not self.dry_run:
            self.target.ensure_indexes()
        if not self._stream(keep_going, upload, after):
            return after, False
        last = after
        entries = self.staging.sessions(after=after, pending_only=not self.dry_run)
        sessions = arriving(self.staging, self.user, self._with_stored(entries), self._reads)
        for entry, stored, incoming in sessions:
            self.process(entry, stored, arrival=incoming)
            last = entry["s"]
            if not keep_going():
                self.flush()
                self._written()
                return last, False
        self.flush()
        self._written()
        return last, True

    def _with_stored(self, entries: Iterable[Document], chunk: int = 200
                     ) -> Iterator[tuple[Document, StoredSession]]:
        """Index entries with their stored sessions, read in bulk (one `$in` per chunk)."""
        pending: list[Document] = []
        for entry in entries:
            pending.append(entry)
            if len(pending) >= chunk:
                yield from self._looked_up(pending)
                pending = []
        yield from self._looked_up(pending)

    def _looked_up(self, entries: list[Document]) -> Iterator[tuple[Document, StoredSession]]:
        if not entries:
            return
        stored = self.user.sessions([entry["s"] for entry in entries])
        for entry in entries:
            yield entry, self._renaming(entry, stored[entry["s"]])

    def _renaming(self, entry: Document, stored: StoredSession) -> StoredSession:
        """Strategy rename: a session the user has that the upload changes goes to its
        renamed copy (UserData.renamed); an identical one stays where it is (unchanged)."""
        session_id = entry["s"]
        if (stored.document is None or stored.copy
                or self.decision.strategy_for(session_id) is not Strategy.RENAME):
            return stored
        plan = SessionPlan(session_id=session_id, stored_id=stored.stored_id,
                           strategy=Strategy.REPLACE,
                           incoming=self.staging.session_document(session_id),
                           stored=stored.document,
                           stored_messages=self.user.messages(stored.stored_id),
                           incoming_count=int(entry.get("m", 0)))
        arrival = IncomingSession(self.staging, self.user, stored)
        plan.incoming = arrival.ids.session(plan.incoming)
        for doc in arrival.messages():
            for _ in plan.feed(doc):
                pass
        for _ in plan.finish():
            pass
        if plan.action is SessionAction.UNCHANGED:
            return stored
        self._renamed.add(session_id)
        return self.user.renamed(stored)

    def _reads(self, entry: Document, stored: StoredSession) -> bool:
        """Whether `process` reads the session's messages (and so needs their identity)."""
        if entry.get(LIGHT):
            return stored.document is None  # otherwise process stops before it reads them
        return (stored.document is None
                or self.decision.strategy_for(entry["s"]) is not Strategy.SKIP)

    # ------------------------------------------------------------------------ light sessions

    def _stream(self, keep_going: Callable[[], bool],
                upload: Callable[[], Iterator[ImportRecord]] | None, after: str | None) -> bool:
        """The first pass (see the module docstring); whether it finished."""
        fresh: dict[str, tuple[Document, StoredSession]] = {}
        taken: set[str] = set()  # light when staged, the user's by now
        light = self.staging.sessions(after=after, pending_only=not self.dry_run,
                                      light_only=True)
        for entry, stored in self._with_stored(light, chunk=1000):
            if stored.document is None:
                if not self.dry_run:
                    fresh[entry["s"]] = (entry, stored)
            else:
                taken.add(entry["s"])
        if not fresh and not taken:
            return True
        if upload is None:
            raise RuntimeError("light sessions to import, and no upload to read them from")
        for entry, stored, fields, messages, arrival in self._arrivals(
                _SessionStream(upload()), fresh, taken):
            self.process(entry, stored, incoming=fields, messages=messages, arrival=arrival)
            if not keep_going():
                self.flush()
                self._written()
                return False
        self.flush()
        self._written()  # the second pass leaves out what this one marked done
        if fresh or taken:  # the pinned upload is the staged one: this cannot be
            raise RuntimeError(f"sessions staged but not in the upload: {sorted(fresh)[:3]}")
        return True

    def _arrivals(self, stream: _SessionStream, fresh: dict[str, tuple[Document, StoredSession]],
                  taken: set[str]) -> Iterator[tuple[Document, StoredSession, Document,
                                                     Iterable[Document], IncomingSession]]:
        """The upload's fresh sessions (popped from `fresh`) in the order it holds them, each
        with its fields, its messages and its identity, decided from its own records: whole
        sessions are read ahead until they hold LOOKUP_BATCH messages and their uuids looked
        up together (UserData.identify_each), so nothing is read back from staging; a session
        longer than that is decided alone, its uuids read from staging (one indexed query).
        Memory: LOOKUP_BATCH messages read ahead. Sessions of `taken` are staged in full as
        they go by (popped too)."""
        ahead: list[tuple[Document, StoredSession, Document, list[Document]]] = []
        count = 0
        for session_id, fields, numbered in stream.sessions():
            if session_id in taken:
                self.staging.stage_messages(session_id, ((number, decoded(doc))
                                                         for number, doc in numbered))
                self.staging.unset_light(session_id)
                taken.discard(session_id)
                continue
            if session_id not in fresh:
                continue  # done by an earlier invocation
            entry, stored = fresh.pop(session_id)
            messages = (doc for _, doc in numbered)
            first = list(islice(messages, LOOKUP_BATCH + 1))
            if count + len(first) > LOOKUP_BATCH:
                yield from self._decided(ahead)
                ahead, count = [], 0
            if len(first) > LOOKUP_BATCH:  # too long to hold: its uuids from staging
                yield (entry, stored, fields, chain(first, messages),
                       IncomingSession(self.staging, self.user, stored, light=True))
                continue
            ahead.append((entry, stored, fields, first))  # read whole: its fields complete
            count += len(first)
        yield from self._decided(ahead)

    def _decided(self, sessions: list[tuple[Document, StoredSession, Document, list[Document]]]
                 ) -> Iterator[tuple[Document, StoredSession, Document, Iterable[Document],
                                     IncomingSession]]:
        """Sessions read ahead with their identities, their uuids looked up together."""
        named = (((entry, fields, messages, uuids), stored, uuids)
                 for entry, stored, fields, messages in sessions
                 for uuids in ([str(doc["uuid"]) for doc in messages],))
        for (entry, fields, messages, uuids), stored, identity in self.user.identify_each(named):
            assert identity is not None
            yield (entry, stored, fields, messages,
                   IncomingSession(self.staging, self.user, stored, light=True,
                                   identity=(identity, uuids)))

    # ------------------------------------------------------------------------ one session

    def process(self, entry: Document, stored: StoredSession | None = None, *,
                incoming: Document | None = None,
                messages: Iterable[Document] | None = None,
                arrival: IncomingSession | None = None) -> SessionResult:
        """One session: from staging, or (a light session) with its session fields and
        messages as the upload streams them; `arrival`, its identity when already decided
        (`arriving`)."""
        session_id, path = entry["s"], entry["p"]
        strategy = self.decision.strategy_for(session_id)
        if stored is None:
            stored = self._renaming(entry, self.user.session(session_id))
        light = bool(entry.get(LIGHT))
        if light and stored.document is not None:
            # the user's by now: the next try stages its messages in full first
            raise TransientError(f"Session {session_id} was created while the import ran.")
        if light and messages is None:
            return self._counted(entry, stored, strategy, arrival)
        if incoming is None:
            incoming = self.staging.session_document(session_id)
        if session_id in self._renamed:
            incoming = restored_copy(incoming)
        plan = SessionPlan(
            session_id=session_id, stored_id=stored.stored_id,
            # a renamed copy becomes the upload's session, as replace makes it
            strategy=Strategy.REPLACE if strategy is Strategy.RENAME else strategy,
            incoming=incoming, stored=stored.document,
            stored_messages=(self.user.messages(stored.stored_id)
                             if stored.document is not None and strategy is not Strategy.SKIP
                             else {}),
            incoming_count=int(entry.get("m", 0)),
            project_changed=(stored.document is not None
                             and stored.document.get("projectId") != self.projects.get(path)))
        session = _Session(plan, path, entry["_id"])
        copied: list[CopiedMessage] = []
        if plan.reads_messages:
            if arrival is None:
                arrival = IncomingSession(self.staging, self.user, stored, light=light)
            plan.incoming = arrival.ids.session(plan.incoming)  # Claude Code's ids follow a copy
            plan.copied = arrival.copied
            for doc in arrival.messages(messages):
                for op in plan.feed(doc):
                    self._add(session, op)
            for op in plan.finish():
                self._add(session, op)
            copied = arrival.renamed
        result = SessionResult(session_id=session_id, stored_session_id=stored.stored_id,
                               action=plan.action, strategy=strategy, project_path=path,
                               messages=plan.counts(), copy_=stored.copy,
                               copied_messages=copied)
        if plan.writes:
            session = self._batch.sessions.setdefault(session_id, session)
            session.complete = True
            self._batch.size += 1
        self._finished(entry, result)
        return result

    def _counted(self, entry: Document, stored: StoredSession, strategy: Strategy,
                 arrival: IncomingSession | None = None) -> SessionResult:
        """A dry run's light session: inserted whole, as its staged uuids say (what the
        planner counts for a session the user lacks)."""
        if arrival is None:
            arrival = IncomingSession(self.staging, self.user, stored, light=True)
        result = SessionResult(session_id=entry["s"], stored_session_id=stored.stored_id,
                               action=SessionAction.INSERT, strategy=strategy,
                               project_path=entry["p"],
                               messages=MessageCounts(inserted=int(entry.get("m", 0)),
                                                      copied=arrival.copied),
                               copy_=stored.copy, copied_messages=arrival.renamed)
        self._finished(entry, result)
        return result

    def _finished(self, entry: Document, result: SessionResult) -> None:
        self._batch.results.append((entry["_id"], result))
        self._batch.records += 1 + int(entry.get("m", 0))
        if self._batch.size >= self.batch_ops or len(self._batch.results) >= self.batch_ops:
            self.flush()

    def _add(self, session: _Session, op: Op) -> None:
        if self._batch.size >= self.batch_ops:
            self.flush()
        batch = self._batch
        batch.sessions.setdefault(session.plan.session_id, session)
        batch.size += 1
        if self.dry_run:
            return
        for collection, write in self._writes(op):
            batch.ops[collection].append(write)
        if op.stored is not None:
            batch.preimage_ids[op.stored.collection].append(op.stored.id)

    def _writes(self, op: Op) -> list[tuple[str, WriteOp]]:
        """The bulk operations for one planned message operation (keyed on _id)."""
        stored = op.stored
        if op.kind == "delete":
            assert stored is not None
            return [(stored.collection, DeleteOne({"_id": stored.id}))]
        assert op.doc is not None
        if isinstance(op.doc, Encoded) and stored is None:  # inserted as the upload has it
            # pymongo sends a RawBSONDocument's bytes as they are, whatever the collection's
            # document type says
            raw = cast(Document, op.doc.stored(ObjectId(), self._tag))
            return [(self.target.collection_for(op.doc["timestamp"]), InsertOne(raw))]
        doc = {**decoded(op.doc), "_id": stored.id if stored else ObjectId(),
               IMPORT_TAG: self.job_id}
        target = self.target.collection_for(doc["timestamp"])
        if stored is None:
            return [(target, InsertOne(doc))]
        if stored.collection == target:
            return [(target, ReplaceOne({"_id": stored.id}, doc))]
        # a changed timestamp moved the message to another monthly collection
        return [(stored.collection, DeleteOne({"_id": stored.id})), (target, InsertOne(doc))]

    # ------------------------------------------------------------------------ one batch

    def flush(self) -> None:
        """The open batch to the writes thread (_Writes); a large session continues in the
        next batch."""
        batch, self._batch = self._batch, _Batch()
        write = self._prepared(batch) if not self.dry_run and batch.sessions else None
        field_name = "dry" if self.dry_run else "res"
        results = [(entry, {field_name: result.wire(), **({} if self.dry_run else {"st": DONE})})
                   for entry, result in batch.results]
        for session in batch.sessions.values():
            if not session.complete:
                session.journalled = True
                self._batch.sessions[session.plan.session_id] = session
        flight = _Flight(self._last_flight.number + 1, self._last_flight, results, batch.records)
        self._last_flight = flight
        self._writer.submit(partial(self._apply, flight, write))

    def _written(self) -> None:
        """Until every batch handed to the writes threads is written, its results marked."""
        self._writer.wait()
        self._mark_ended()

    def _mark_written(self) -> None:
        """After an error (the writes threads idle): the results of the batches whose writes,
        and those of every batch before them, all ended are true, so they are marked (a
        failure here leaves them `writing`, for recover to undo: all or nothing either way)."""
        with suppress(PyMongoError):  # the first error is the one to report
            self._mark_ended()

    def _mark_ended(self, writing: Marks | tuple[()] = ()) -> None:
        """One command: the results ready to be marked `done` (DoneMarks) and `writing`, a
        batch's own marks; what it could not mark stays for the next command."""
        marks, records = self._done.take()
        try:
            self.staging.update_each(chain(marks, writing))
        except BaseException:
            self._done.give_back(marks, records)
            raise
        if not self.dry_run:
            self.records_marked += records  # one writer at a time (the marks keep an order)

    def _prepared(self, batch: _Batch) -> _Write:
        """Everything the batch's writes need, decided here (in the thread that plans) so that
        the next batch can be planned while these are written."""
        sessions = list(batch.sessions.values())
        self.batches += 1
        # the journal holds what the writes change: sessions the user has (replace, merge);
        # new sessions' writes are undone by the job's tag alone
        stored = [s for s in sessions if s.plan.stored is not None]
        journal: _Journal | None = None
        if stored or any(batch.preimage_ids.values()):
            journal = _Journal(
                key=storage.journal_key(self.job_id, self.run_id, self.batches),
                sessions=[{"s": s.plan.stored_id, "i": s.plan.session_id,
                           "a": s.plan.mode.value} for s in stored],
                preimage_ids=batch.preimage_ids,
                sessions_before=[(SESSIONS, s.plan.stored) for s in stored
                                 if s.plan.stored is not None and not s.journalled])
        documents: list[WriteOp] = []
        complete = [session for session in sessions if session.complete]
        self._create_projects(complete)
        for session in complete:
            doc = session.plan.session_document(project_id=self._project_for(session),
                                                job_id=self.job_id, now=self.now)
            documents.append(InsertOne(doc) if session.plan.stored is None
                             else ReplaceOne({"_id": doc["_id"]}, doc))
        return _Write(journal=journal,
                      writing=[(s.entry, {"st": WRITING, "jr": self.run_id,
                                          "ss": s.plan.stored_id})
                               for s in sessions if not s.journalled],
                      ops=batch.ops, documents=documents)

    def _apply(self, flight: _Flight, write: _Write | None) -> None:
        """A batch's writes, in the order source.writes explains: journal, sessions
        marked writing, messages, the documents of the sessions complete, their results (done).

        Up to `writes_in_flight` batches run at once, so their marks keep an order of their
        own: a batch writes its `writing` marks only after the batch before it wrote its own
        (`flight.before`), and writes nothing if that one failed first (a session continued from it
        was marked there), so a session is always marked `writing` before any batch writes
        to it. A batch's results are marked `done` with a later batch's marks (or by
        `_written`) once its writes and those of every batch before it ended: a session a
        batch completes may have messages in the one before (a batch ends every session it
        marks done, so nothing is lost: a session whose mark a crash kept from being written
        is `writing` and undone, as if it were half-written). `flight.records`: the results'
        sessions and their messages, counted in `records_marked` once their marks are
        written."""
        before = flight.before
        assert before is not None
        try:
            if write is not None and write.journal is not None:
                journal = write.journal
                preimages = list(self.target.fetch(journal.preimage_ids))
                preimages.extend(journal.sessions_before)
                storage.write_journal(self.bucket, journal.key, journal.sessions, preimages)
            before.marked.wait()
            flight.before = None  # not a chain of every batch held in memory
            if not before.ok:
                raise _EarlierBatchFailed(f"batch {before.number} failed before its marks")
            self._mark_ended(write.writing if write is not None else ())
            flight.ok = True
        finally:
            flight.marked.set()
        if write is not None:
            self.target.bulk_write(write.ops)
            self.target.bulk_write({SESSIONS: write.documents})
        self._done.ended(flight.number, flight.results, flight.records)

    def _project_for(self, session: _Session) -> ObjectId:
        """Merge keeps the stored session's project; insert and replace use the upload's,
        matched by path among the user's projects (created by _create_projects)."""
        plan = session.plan
        if plan.stored is not None and plan.mode is SessionAction.MERGE:
            return ObjectId(plan.stored["projectId"])
        return ObjectId(self.projects[session.project_path])

    def _create_projects(self, sessions: list[_Session]) -> None:
        """The projects these sessions go to that the user lacks, created in one write."""
        missing = {s.project_path: self.upload_projects.get(s.project_path, {})
                   for s in sessions if s.project_path not in self.projects
                   and not (s.plan.stored is not None and s.plan.mode is SessionAction.MERGE)}
        if missing:
            self.projects.update(self.target.create_projects(
                ObjectId(self.user_id), missing, self.job_id, self.now))


def restored_copy(session: Document) -> Document:
    """The session as its renamed copy stores it: the summary says what it is."""
    summary = session.get("summary")
    marked = f"{summary} (restored copy)" if isinstance(summary, str) and summary else (
        "Restored copy")
    return {**session, "summary": marked}


class IncomingSession:
    """A staged session's messages as they would be stored: a copy's ids derived, and those of
    messages whose uuid is held outside the session (decided by a look-up of every uuid of the
    session before the first message is planned, so parentUuids follow the renames; `arriving`
    shares that look-up between consecutive sessions)."""

    def __init__(self, staging: Staging, user: UserData, stored: StoredSession, *,
                 light: bool = False, identity: tuple[Identity, list[str]] | None = None
                 ) -> None:
        self.staging = staging
        self.stored = stored
        if identity is None:
            uuids = list(staging.message_uuids(stored.session_id, light=light))
            [(_, _, found)] = user.identify_each([(None, stored, uuids)])
            assert found is not None
            decided = found
        else:
            decided, uuids = identity
        self.ids: SessionIds
        self.ids, self.copied = decided.resolved()
        ids = self.ids
        self.renamed: list[CopiedMessage] = []  # the first of them, for the session's result
        # no copy and nothing held elsewhere (the common case): no id is renamed
        for value in uuids if ids.copy or ids.foreign else ():
            if len(self.renamed) >= MAX_LISTED_COPIES:
                break
            if ids.is_foreign(ids.copied(value)):
                self.renamed.append(CopiedMessage(uuid=value, stored_uuid=ids.uuid(value)))

    def messages(self, docs: Iterable[Document] | None = None) -> Iterator[Document]:
        """`docs` (the upload's, streamed), or the staged ones, as they are stored."""
        source = self.staging.messages(self.stored.session_id) if docs is None else docs
        if not self.ids.copy and not self.ids.foreign:  # no id to derive: stored as they come
            yield from source
            return
        message = self.ids.message
        for doc in source:
            yield message(decoded(doc))


def arriving(staging: Staging, user: UserData,
             sessions: Iterable[tuple[Document, StoredSession]],
             wanted: Callable[[Document, StoredSession], bool] | None = None
             ) -> Iterator[tuple[Document, StoredSession, IncomingSession | None]]:
    """(index entry, stored session, its IncomingSession) for consecutive sessions, their
    look-ups of held uuids shared (UserData.identify_each); None for an entry `wanted` turns
    down (a session the plan decides without its messages)."""

    def uuids_of(items: Iterable[tuple[Document, StoredSession]]
                 ) -> Iterator[tuple[tuple[Document, list[str] | None], StoredSession,
                                     list[str] | None]]:
        for group in _by_messages(items, LOOKUP_BATCH):
            needed = [wanted is None or wanted(entry, stored) for entry, stored in group]
            # light sessions' uuids: one query for the group, not one per session
            light = staging.light_uuids([stored.session_id for (entry, stored), need
                                         in zip(group, needed, strict=True)
                                         if need and entry.get(LIGHT)])
            for (entry, stored), need in zip(group, needed, strict=True):
                if not need:
                    yield (entry, None), stored, None
                    continue
                uuids = (light[stored.session_id] if entry.get(LIGHT)
                         else list(staging.message_uuids(stored.session_id)))
                yield (entry, uuids), stored, uuids

    for (entry, uuids), stored, identity in user.identify_each(uuids_of(sessions)):
        if uuids is None or identity is None:
            yield entry, stored, None
            continue
        yield entry, stored, IncomingSession(staging, user, stored,
                                             light=bool(entry.get(LIGHT)),
                                             identity=(identity, uuids))


def _by_messages(items: Iterable[tuple[Document, StoredSession]], messages: int
                 ) -> Iterator[list[tuple[Document, StoredSession]]]:
    """Consecutive index entries in groups holding about `messages` messages (their counts,
    `m`): what one look-up of held uuids takes (memory: one group's uuids)."""
    group: list[tuple[Document, StoredSession]] = []
    count = 0
    for item in items:
        group.append(item)
        count += int(item[0].get("m", 0))
        if count >= messages:
            yield group
            group, count = [], 0
    if group:
        yield group


class _SessionStream:
    """The upload's records as sessions, in the order it holds them: (sessionId, the session's
    fields, its numbered messages). The session's fields grow as its records go by (a package
    repeats a session in each file it continues into): complete once its messages are read."""

    def __init__(self, records: Iterator[ImportRecord]) -> None:
        self._records = records
        self._next: ImportRecord | None = None
        self._number = 0
        self._seen: set[str] = set()

    def _peek(self) -> ImportRecord | None:
        while self._next is None:
            record = next(self._records, None)
            if record is None:
                return None
            if record.kind is not RecordKind.PROJECT:
                self._next = record
        return self._next

    def sessions(self) -> Iterator[tuple[str, Document, Iterator[tuple[int, Document]]]]:
        while (record := self._peek()) is not None:
            session_id = str(record.doc["sessionId"])
            if session_id in self._seen:  # staging checked the order: this cannot be
                raise NotGrouped(session_id)
            self._seen.add(session_id)
            fields: Document = {}
            yield session_id, fields, self._messages(session_id, fields)
            for _ in self._messages(session_id, fields):  # what the caller left unread
                pass

    def _messages(self, session_id: str, fields: Document) -> Iterator[tuple[int, Document]]:
        while (record := self._peek()) is not None and record.doc["sessionId"] == session_id:
            self._next = None
            self._number += 1
            if record.kind is RecordKind.SESSION:
                fields.update(record.doc)
            else:
                yield self._number, record.doc


def recover(db: Database[Document], bucket: PackagesBucket, staging: Staging) -> int:
    """Undo the sessions an interrupted execution left `writing` (see source.writes) and make
    them pending again; the number undone."""
    pending = staging.writing()
    by_run: dict[str, set[str]] = defaultdict(set)  # run -> stored session ids
    for entry in pending:
        by_run[str(entry.get("jr"))].add(str(entry.get("ss", entry["s"])))
    for run, sessions in by_run.items():
        def preimages(run: str = run, wanted: set[str] = sessions
                      ) -> Iterator[tuple[str, Document]]:
            for key in storage.journal_keys(bucket, staging.job_id, run):
                _, docs = storage.read_journal(bucket, key)
                yield from ((name, doc) for name, doc in docs if doc.get("sessionId") in wanted)

        undo_sessions(db, staging.job_id, sorted(sessions), preimages())
    staging.update_each((entry["_id"], {"st": PENDING}) for entry in pending)
    return len(pending)


def summarise(staging: Staging, *, dry_run: bool) -> Iterator[tuple[Document, dict[str, Any]]]:
    """(index entry, its result) for every session with one, in order."""
    name = "dry" if dry_run else "res"
    for entry in staging.sessions():
        if entry.get(name):
            yield entry, entry[name]
