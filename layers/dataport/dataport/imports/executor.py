"""Executing an import's decision, session by session, in journalled batches.

One `Executor` is one Lambda invocation's worth of work: it takes staged sessions in sessionId
order, plans each against what the user has (imports.plan) and applies the operations in batches
of at most `import_batch_ops` (source.writes explains the journal that makes every session all
or nothing). A dry run is the same walk with the writes left out, so what it reports is what the
execution does. `recover` undoes the sessions an interrupted invocation left half-written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import DeleteOne, InsertOne, ReplaceOne
from pymongo.database import Database

from dataport.bucket import PackagesBucket
from dataport.imports import storage
from dataport.imports.plan import Op, SessionPlan
from dataport.models.imports import (
    MAX_LISTED_COPIES,
    CopiedMessage,
    ImportDecision,
    SessionAction,
    SessionResult,
    Strategy,
)
from dataport.source.collections import SESSIONS
from dataport.source.conflicts import StoredSession, UserData
from dataport.source.identity import SessionIds
from dataport.source.mongo import Document
from dataport.source.staging import DONE, PENDING, WRITING, Staging
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
class _Batch:
    ops: dict[str, list[WriteOp]] = field(default_factory=lambda: defaultdict(list))
    preimage_ids: dict[str, list[ObjectId]] = field(default_factory=lambda: defaultdict(list))
    sessions: dict[str, _Session] = field(default_factory=dict)  # by incoming id, in order
    results: list[tuple[ObjectId, SessionResult]] = field(default_factory=list)
    size: int = 0


class Executor:
    def __init__(self, *, db: Database[Document], bucket: PackagesBucket, job_id: str,
                 user_id: str, decision: ImportDecision, staging: Staging, run_id: str,
                 batch_ops: int, now: datetime) -> None:
        self.db, self.bucket = db, bucket
        self.job_id, self.user_id = job_id, user_id
        self.decision = decision
        self.dry_run = decision.dry_run
        self.staging = staging
        self.run_id = run_id
        self.batch_ops = batch_ops
        self.now = now
        self.user = UserData(db, user_id)
        self.target = Target(db)
        self.projects = {path: doc["_id"] for path, doc in self.user.projects_by_path().items()}
        self.upload_projects = staging.projects()
        self.batches = 0
        self._batch = _Batch()

    def run(self, keep_going: Callable[[], bool], after: str | None) -> tuple[str | None, bool]:
        """Sessions after `after` until all are done (True) or `keep_going` says stop between
        two sessions (False); returns the last session done and whether all are."""
        if not self.dry_run:
            self.target.ensure_indexes()
        last = after
        for entry in self.staging.sessions(after=after, pending_only=not self.dry_run):
            self.process(entry)
            last = entry["s"]
            if not keep_going():
                self.flush()
                return last, False
        self.flush()
        return last, True

    # ------------------------------------------------------------------------ one session

    def process(self, entry: Document) -> SessionResult:
        session_id, path = entry["s"], entry["p"]
        strategy = self.decision.strategy_for(session_id)
        incoming = self.staging.session_document(session_id)
        stored = self.user.session(session_id)
        plan = SessionPlan(
            session_id=session_id, stored_id=stored.stored_id, strategy=strategy,
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
            arriving = IncomingSession(self.staging, self.user, stored)
            plan.copied = arriving.copied
            for doc in arriving.messages():
                for op in plan.feed(doc):
                    self._add(session, op)
            for op in plan.finish():
                self._add(session, op)
            copied = arriving.renamed
        result = SessionResult(session_id=session_id, stored_session_id=stored.stored_id,
                               action=plan.action, strategy=strategy, project_path=path,
                               messages=plan.counts(), copy_=stored.copy,
                               copied_messages=copied)
        if plan.writes:
            session = self._batch.sessions.setdefault(session_id, session)
            session.complete = True
            self._batch.size += 1
        self._batch.results.append((entry["_id"], result))
        if self._batch.size >= self.batch_ops or len(self._batch.results) >= self.batch_ops:
            self.flush()
        return result

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
        doc = {**op.doc, "_id": stored.id if stored else ObjectId(), IMPORT_TAG: self.job_id}
        target = self.target.collection_for(doc["timestamp"])
        if stored is None:
            return [(target, InsertOne(doc))]
        if stored.collection == target:
            return [(target, ReplaceOne({"_id": stored.id}, doc))]
        # a changed timestamp moved the message to another monthly collection
        return [(stored.collection, DeleteOne({"_id": stored.id})), (target, InsertOne(doc))]

    # ------------------------------------------------------------------------ one batch

    def flush(self) -> None:
        batch, self._batch = self._batch, _Batch()
        if not self.dry_run and batch.sessions:
            self._write(batch)
        field_name = "dry" if self.dry_run else "res"
        self.staging.update_each(
            (entry, {field_name: result.wire(), **({} if self.dry_run else {"st": DONE})})
            for entry, result in batch.results)
        for session in batch.sessions.values():  # a large session continues in the next batch
            if not session.complete:
                session.journalled = True
                self._batch.sessions[session.plan.session_id] = session

    def _write(self, batch: _Batch) -> None:
        sessions = list(batch.sessions.values())
        self.batches += 1
        preimages = list(self.target.fetch(batch.preimage_ids))
        preimages.extend((SESSIONS, s.plan.stored) for s in sessions
                         if s.plan.stored is not None and not s.journalled)
        key = storage.journal_key(self.job_id, self.run_id, self.batches)
        storage.write_journal(self.bucket, key, [
            {"s": s.plan.stored_id, "i": s.plan.session_id, "a": s.plan.mode.value}
            for s in sessions], preimages)
        self.staging.update_each((s.entry, {"st": WRITING, "jr": self.run_id,
                                            "ss": s.plan.stored_id})
                                 for s in sessions if not s.journalled)
        self.target.bulk_write(batch.ops)
        documents: list[WriteOp] = []
        for session in sessions:
            if not session.complete:
                continue
            doc = session.plan.session_document(project_id=self._project_for(session),
                                                job_id=self.job_id, now=self.now)
            documents.append(InsertOne(doc) if session.plan.stored is None
                             else ReplaceOne({"_id": doc["_id"]}, doc))
        self.target.bulk_write({SESSIONS: documents})

    def _project_for(self, session: _Session) -> ObjectId:
        """Merge keeps the stored session's project; insert and replace use the upload's,
        matched by path among the user's projects and created when missing."""
        plan = session.plan
        if plan.stored is not None and plan.mode is SessionAction.MERGE:
            return ObjectId(plan.stored["projectId"])
        project = self.projects.get(session.project_path)
        if project is None:
            project = self.target.create_project(
                ObjectId(self.user_id), session.project_path,
                self.upload_projects.get(session.project_path, {}), self.job_id, self.now)
            self.projects[session.project_path] = project
        return ObjectId(project)


class IncomingSession:
    """A staged session's messages as they would be stored: a copy's ids derived, and those of
    messages whose uuid is held outside the session (decided by one look-up of every uuid of
    the session before the first message is planned, so parentUuids follow the renames)."""

    def __init__(self, staging: Staging, user: UserData, stored: StoredSession) -> None:
        self.staging = staging
        self.stored = stored
        self.ids: SessionIds
        self.ids, self.copied = user.identify(stored, staging.message_uuids(stored.session_id))
        self.renamed: list[CopiedMessage] = []  # the first of them, for the session's result

    def messages(self) -> Iterator[Document]:
        ids = self.ids
        for doc in self.staging.messages(self.stored.session_id):
            stored = ids.message(doc)
            if len(self.renamed) < MAX_LISTED_COPIES and ids.is_foreign(ids.copied(doc["uuid"])):
                self.renamed.append(CopiedMessage(uuid=doc["uuid"], stored_uuid=stored["uuid"]))
            yield stored


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
