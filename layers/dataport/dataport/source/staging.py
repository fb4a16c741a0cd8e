"""The import staging area: an upload's records in MongoDB, grouped by session.

Why stage at all: conflicts, plans and writes work one session at a time, but an upload may hold
a session's messages anywhere (a package continues a session in its next file, a CSV from
another tool is in any order), and holding a 500 MB upload in memory is not an option. Sorting
runs on the Lambda's /tmp would work too, but every write of the import needs MongoDB anyway and
an indexed collection gives what sorted runs give, resumable across invocations and shared by the
comparison, the dry runs and the execution: the upload is staged as it is validated (the same
pass: records that passed the checks, dropped when the report has errors), and afterwards a
session's messages are one indexed query away, in upload order.

One collection, `dataport_import_staging`, in the ClaudeLens database (dataport's own: ClaudeLens
reads no collection of that name). Every document is keyed by `g`, "<job>:<kind>:<name>", and
`n`, its record's number in upload order:

    g = <job>:p:<path>          a project record (d: the document as the upload has it)
    g = <job>:s:<sessionId>     a session record, every occurrence (later ones continue it)
    g = <job>:m:<sessionId>     a message of the session (u: its uuid, read alone)
    g = <job>:u:<sessionId>     a light session's message uuids (us: up to a batch of them, in
                                upload order), instead of its messages
    g = <job>:i:<sessionId>     the index: one entry per session (s; project path p, message
                                count m; o: its place among the upload's sessions; l: light)
                                that also holds what the import does to the
                                session: the dry run's result (dry), the execution's state (st,
                                jr, ss) and result (res)
    g = <job>:x:                what the validation pass staged: all of it (sessions: how
                                many), or nothing (ungrouped: not grouped by session)

Light sessions (the common case). When the reader promises sessions grouped in upload order
(every source but CSV, checked record by record: a session that comes back after another one
makes the whole upload staged in full), a session the user does not have (looked up with one
`$in` per batch) is staged light: its session records and its message uuids, which is all the
comparison and the copy-id decisions need. The execution inserts its messages straight from the
upload (imports.executor), so they are written once. Sessions the user has (replace, merge) are
staged in full, as the planner compares them message by message.

The one index (g, n) serves every query: a session's records are one key, a kind one key range,
a job one prefix. Queries spell an exact key as a range of one value: the same to MongoDB, and
the form nx-27017 (the local server) answers from a compound index (an equality on the first
field makes it scan: 280 ms against 5 ms per session over 40,000 staged records). Index entries
are updated by `_id` (nx-27017 updates by any other key ~25x slower). Memory while staging: one
batch of records plus one entry per session and per project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, InsertOne, UpdateOne
from pymongo.database import Database

from dataport.errors import InvalidRequest
from dataport.models.records import ImportRecord, RecordKind
from dataport.source.mongo import Document, one_of

STAGING = "dataport_import_staging"

PROJECT, SESSION, MESSAGE, UUIDS, INDEX, STAGED = "p", "s", "m", "u", "i", "x"
#: index field: the session is staged light (its uuids, not its messages)
LIGHT = "l"
_KINDS = {RecordKind.PROJECT: PROJECT, RecordKind.SESSION: SESSION, RecordKind.MESSAGE: MESSAGE}

#: execution state of a session (index field `st`): journalled and being written, or finished
WRITING, DONE, PENDING = "writing", "done", "pending"


class NotGrouped(Exception):
    """A session came back after another one: the upload cannot be streamed per session."""


#: which of a batch's new sessions must be staged in full (the user has them)
Classify = Callable[[Sequence[str]], set[str]]


def _exactly(key: str) -> dict[str, str]:
    return {"$gte": key, "$lte": key}


class Staging:
    """One job's staged upload."""

    def __init__(self, db: Database[Document], job_id: str) -> None:
        self.db = db
        self.job_id = job_id
        self.collection = db[STAGING]

    def key(self, kind: str, name: str = "") -> str:
        return f"{self.job_id}:{kind}:{name}"

    def _kind(self, kind: str) -> dict[str, str]:
        """Every key of one kind: "<job>:<kind>:" up to (not including) "<job>:<kind>;"."""
        return {"$gte": self.key(kind), "$lt": f"{self.job_id}:{kind};"}

    def ensure_indexes(self) -> None:
        self.collection.create_index([("g", ASCENDING), ("n", ASCENDING)])

    def drop(self) -> None:
        """Forget the job's staged records (idempotent)."""
        self.collection.delete_many({"g": {"$gte": f"{self.job_id}:", "$lt": f"{self.job_id};"}})

    def mark_staged(self, sessions: int | None) -> None:
        """What the pass that validated the upload staged: all of it (its number of sessions),
        or nothing, as the upload is not grouped by session (None)."""
        mark: Document = {"g": self.key(STAGED), "n": 0}
        if sessions is None:
            mark["ungrouped"] = True
        else:
            mark["sessions"] = sessions
        self.collection.insert_one(mark)

    def staged(self) -> Document | None:
        """The mark `mark_staged` left (sessions, or ungrouped), if any."""
        return self.collection.find_one({"g": _exactly(self.key(STAGED))})

    def count(self) -> int:
        return self.collection.count_documents(
            {"g": {"$gte": f"{self.job_id}:", "$lt": f"{self.job_id};"}})

    def writer(self, batch_size: int = 1000, *, classify: Classify | None = None,
               background: bool = False) -> StagingWriter:
        """Full staging, or light where `classify` allows it (see the module docstring);
        `background`: batches written in a thread of the writer's (StagingWriter)."""
        return StagingWriter(self, batch_size, classify, background=background)

    # ---------------------------------------------------------------------------- reading

    def projects(self) -> dict[str, Document]:
        """The upload's projects by path (a later record of the same path wins)."""
        found: dict[str, Document] = {}
        for doc in self.collection.find({"g": self._kind(PROJECT)}, sort=[("n", 1)]):
            found[doc["path"]] = doc["d"]
        return found

    def sessions(self, *, after: str | None = None, pending_only: bool = False,
                 light_only: bool = False, batch_size: int = 200) -> Iterator[Document]:
        """Index entries in sessionId order, after `after`; `pending_only` leaves out sessions
        an execution has finished (a retried invocation must not do them again)."""
        keys = self._kind(INDEX)
        if after is not None:
            keys = {"$gt": self.key(INDEX, after), "$lt": keys["$lt"]}
        query: dict[str, Any] = {"g": keys}
        if pending_only:
            query["st"] = {"$ne": DONE}
        if light_only:
            query[LIGHT] = True
        with self.collection.find(query, sort=[("g", 1)], batch_size=batch_size) as cursor:
            yield from cursor

    def writing(self) -> list[Document]:
        """Sessions an interrupted execution left half-written (a handful: one batch's)."""
        return list(self.collection.find({"g": self._kind(INDEX), "st": WRITING}))

    def has_results(self) -> bool:
        """Whether an execution finished any session."""
        return self.collection.count_documents({"g": self._kind(INDEX), "st": DONE},
                                               limit=1) > 0

    def session_document(self, session_id: str) -> Document:
        """The session as the upload has it: its occurrences merged in upload order."""
        merged: Document = {}
        for doc in self.collection.find({"g": _exactly(self.key(SESSION, session_id))},
                                        sort=[("n", 1)]):
            merged.update(doc["d"])
        return merged

    def messages(self, session_id: str, batch_size: int = 500) -> Iterator[Document]:
        """The session's messages in upload order, streamed."""
        with self.collection.find({"g": _exactly(self.key(MESSAGE, session_id))},
                                  sort=[("n", 1)], batch_size=batch_size) as cursor:
            for doc in cursor:
                yield doc["d"]

    def message_uuids(self, session_id: str, batch_size: int = 2000, *,
                      light: bool = False) -> Iterator[str]:
        """The session's message uuids in upload order (only they leave the server: a
        top-level copy, as nx-27017 answers a projection of `d.uuid` with a dotted key)."""
        if light:
            with self.collection.find({"g": _exactly(self.key(UUIDS, session_id))},
                                      {"_id": 0, "us": 1}, sort=[("n", 1)]) as chunks:
                for chunk in chunks:
                    yield from (str(value) for value in chunk["us"])
            return
        with self.collection.find({"g": _exactly(self.key(MESSAGE, session_id))},
                                  {"_id": 0, "u": 1}, sort=[("n", 1)],
                                  batch_size=batch_size) as cursor:
            for doc in cursor:
                yield str(doc["u"])

    def light_uuids(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        """The message uuids of light sessions, each in upload order, in one query (their
        uuid documents under one `$in` on the index, the range around it for nx-27017)."""
        if not session_ids:
            return {}
        keys = {self.key(UUIDS, session_id): session_id for session_id in session_ids}
        found: dict[str, list[str]] = {session_id: [] for session_id in session_ids}
        for chunk in self.collection.find({"g": one_of(keys)}, {"_id": 0, "g": 1, "us": 1},
                                          sort=[("g", 1), ("n", 1)]):
            found[keys[chunk["g"]]].extend(str(value) for value in chunk["us"])
        return found

    def stage_messages(self, session_id: str, docs: Iterable[tuple[int, Document]],
                       batch_size: int = 1000) -> None:
        """A light session's messages (number, document) staged in full after all (the user
        has the session by now: the execution plans it message by message); idempotent."""
        key = self.key(MESSAGE, session_id)
        self.collection.delete_many({"g": _exactly(key)})
        pending: list[InsertOne[Document]] = []
        for number, doc in docs:
            pending.append(InsertOne({"g": key, "n": number, "d": doc, "u": str(doc["uuid"])}))
            if len(pending) >= batch_size:
                self.collection.bulk_write(pending, ordered=False)
                pending = []
        if pending:
            self.collection.bulk_write(pending, ordered=False)

    # ---------------------------------------------------------------------------- the index

    def update_each(self, changes: Iterable[tuple[ObjectId, Mapping[str, Any]]]) -> None:
        """Index entries (by their _id) in one round trip."""
        ops = [UpdateOne({"_id": entry}, {"$set": dict(fields)}) for entry, fields in changes]
        if ops:
            self.collection.bulk_write(ops, ordered=False)

    def unset_light(self, session_id: str) -> None:
        """A light session whose messages are now staged in full."""
        self.collection.update_one({"g": _exactly(self.key(INDEX, session_id))},
                                   {"$unset": {LIGHT: ""}})

    def reset_results(self, *fields: str) -> None:
        """Forget a previous run's results (a new dry run after an earlier one)."""
        self.collection.update_many({"g": self._kind(INDEX)},
                                    {"$unset": dict.fromkeys(fields, "")})


class StagingWriter:
    """Stages an upload's records as they stream by (see the module docstring).

    Readers yield a project before its sessions and a session before its messages; a session
    belongs to the project most recently yielded before it. Sessions are remembered (their
    project path and message count) to write the index at `close()`. With `classify`, a batch's
    new sessions are looked up when the batch is written: those it names are staged in full,
    the others light; a session that comes back after another raises NotGrouped.

    With `background`, each batch is looked up and written in a thread of the writer's while
    the caller reads the next one (validation's parse goes on while MongoDB works): one batch
    in that thread at most (memory: two batches), in order; what its write raised is raised by
    the next batch's `add` or by `close`. Whoever gives a writer up without `close` calls
    `settle` first, so that no write outlives it (a staging dropped after an error stays
    dropped)."""

    def __init__(self, staging: Staging, batch_size: int,
                 classify: Classify | None = None, *, background: bool = False) -> None:
        self.staging = staging
        self.batch_size = batch_size
        self.classify = classify
        self._pending: list[tuple[str, str, Document]] = []  # kind, name, staged document
        self._sequence = 0
        self._project: str | None = None
        self._sessions: dict[str, list[Any]] = {}  # sessionId -> [project path, messages, place]
        self._light: dict[str, bool] = {}  # sessionId -> staged light (decided at a flush)
        self._current: str | None = None  # the session the stream is in (grouping check)
        self.messages = 0
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging-writes")
                      if background else None)
        self._writing: Future[None] | None = None

    def add(self, record: ImportRecord) -> None:
        self._sequence += 1
        staged: Document = {"n": self._sequence, "d": record.doc}
        if record.kind is RecordKind.PROJECT:
            path = record.doc.get("path")
            if not isinstance(path, str) or not path:
                raise InvalidRequest("A project without a path cannot be imported "
                                     f"({record.location}).")
            self._project = staged["path"] = path
            name = path
        else:
            name = str(record.doc["sessionId"])
            entry = self._sessions.get(name)
            if record.kind is RecordKind.SESSION:
                if self._project is None:
                    raise InvalidRequest(f"Session {name} has no project ({record.location}).")
                staged["p"] = self._project
                if entry is None:
                    self._sessions[name] = [self._project, 0, len(self._sessions)]
                elif self.classify is not None and name != self._current:
                    raise NotGrouped(name)
            elif entry is None:
                raise InvalidRequest(f"Message {record.doc.get('uuid')} names session {name}, "
                                     f"which the upload does not hold ({record.location}).")
            else:
                if self.classify is not None and name != self._current:
                    raise NotGrouped(name)
                entry[1] += 1
                self.messages += 1
                staged["u"] = str(record.doc["uuid"])
            self._current = name
        kind = _KINDS[record.kind]
        staged["g"] = self.staging.key(kind, name)
        self._pending.append((kind, name, staged))
        if len(self._pending) >= self.batch_size:
            self._flush()

    @property
    def all_light(self) -> bool:
        """Every session was staged light (new to the user when its batch was written): after
        `close()`, whether the comparison has nothing to compare but uuids."""
        return all(self._light.get(session_id, False) for session_id in self._sessions)

    def settle(self) -> None:
        """Until no batch is being written, and the writer's thread gone; what the last write
        raised is kept for `close` (a writer given up after another error leaves it unread)."""
        if self._writing is not None:
            wait([self._writing])
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def close(self) -> int:
        """Write what is pending and the session index; the number of sessions."""
        try:
            self._flush()
            self._written()
        finally:
            self.settle()
        index: list[InsertOne[Document]] = []
        for session_id in sorted(self._sessions):
            path, count, position = self._sessions[session_id]
            entry: Document = {"g": self.staging.key(INDEX, session_id), "n": 0,
                               "s": session_id, "p": path, "m": count, "o": position}
            if self._light.get(session_id):
                entry[LIGHT] = True
            index.append(InsertOne(entry))
            if len(index) >= self.batch_size:
                self.staging.collection.bulk_write(index, ordered=False)
                index = []
        if index:
            self.staging.collection.bulk_write(index, ordered=False)
        return len(self._sessions)

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._written()
        if self._pool is None:
            self._write(pending)
            return
        self._writing = self._pool.submit(self._write, pending)

    def _written(self) -> None:
        """Until the batch in the writer's thread is written; raises what its write raised."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _write(self, pending: list[tuple[str, str, Document]]) -> None:
        """One batch: its new sessions classified (light or full), then written."""
        if self.classify is not None:
            new = list(dict.fromkeys(name for kind, name, _ in pending
                                     if kind == SESSION and name not in self._light))
            if new:
                full = self.classify(new)
                self._light.update((name, name not in full) for name in new)
        ops: list[InsertOne[Document]] = []
        chunks: dict[str, Document] = {}  # light sessions' uuids of this batch
        for kind, name, staged in pending:
            if kind == MESSAGE and self._light.get(name):
                chunk = chunks.get(name)
                if chunk is None:
                    chunk = chunks[name] = {"g": self.staging.key(UUIDS, name),
                                            "n": staged["n"], "us": []}
                    ops.append(InsertOne(chunk))
                chunk["us"].append(staged["u"])
            else:
                ops.append(InsertOne(staged))
        self.staging.collection.bulk_write(ops, ordered=False)
