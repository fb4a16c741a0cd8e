"""An import's writes to the ClaudeLens collections, and how they are undone.

Every document an import writes is tagged `importJobId: <job id>`; documents it changes or
deletes are saved first (pre-images, see imports.journal). Writes key on `_id` (the stored one
for updates, a new ObjectId for inserts): MongoDB finds them by the primary key, and so does
nx-27017, where a filter on `uuid` makes an upsert ~50x slower.

Per-session atomicity without transactions. Multi-document transactions need a replica set (a
standalone MongoDB and nx-27017 have none), end after 60 s and grow with the session, while an
import has to save pre-images for its rollback in any case. So one mechanism does both, a
write-ahead journal (imports.executor applies it, batch by batch):
1. the batch's pre-images and the list of its sessions the user has (replace, merge) go to S3,
   before anything is written (a batch of new sessions only changes nothing stored: it has no
   journal entry, its writes are found by their tag);
2. its sessions are marked `writing` in the staging index;
3. messages go out (`bulk_write`, at most `import_batch_ops` operations each), then the
   documents of the sessions whose messages are all written: ClaudeLens lists sessions, so a
   new session only appears once its messages are there;
4. the complete sessions are marked `done` (with the next batch's step 2, in one command).
After a crash, sessions still `writing` are undone (`undo_sessions`: what the job wrote for them
is deleted, their pre-images put back) before anything else happens, by the retried task or the
failure handler: every session is then as it was before the import, or completely imported.
Another reader can see a session half-written while it is being written; nobody sees it so
afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from dataport.errors import DataportError, IdTaken, WriteRejected
from dataport.source.collections import (
    PROJECTS,
    SESSIONS,
    Layout,
    collection_name_for,
    detect_layout,
    ensure_message_indexes,
    message_collections,
)
from dataport.source.mongo import Document, one_of

IMPORT_TAG = "importJobId"

WriteOp = InsertOne[Document] | ReplaceOne[Document] | DeleteOne
#: documents per bulk_write when restoring pre-images
RESTORE_BATCH = 1000
#: MongoDB's error code for a unique index violation
DUPLICATE_KEY = 11000


class Target:
    """The user's database as an import writes it: message layout detected once (the
    database's own; for a database with no message collection yet, `layout`: a restore's
    backup's, else single), indexes made for every message collection the import creates."""

    def __init__(self, db: Database[Document], layout: Layout | None = None) -> None:
        self.db = db
        self.layout = detect_layout(db, layout)
        self._ready = set(message_collections(db))

    def ensure_indexes(self) -> None:
        """The tag is what undo and rollback look for (sparse: only imported documents)."""
        for name in [SESSIONS, PROJECTS, *self._ready]:
            self.db[name].create_index([(IMPORT_TAG, ASCENDING)], sparse=True)

    def collection_for(self, timestamp: datetime) -> str:
        name = collection_name_for(self.layout, timestamp)
        if name not in self._ready:
            ensure_message_indexes(self.db[name])
            self.db[name].create_index([(IMPORT_TAG, ASCENDING)], sparse=True)
            self._ready.add(name)
        return name

    def bulk_write(self, ops: dict[str, list[WriteOp]]) -> None:
        """One bulk_write per collection; callers keep a batch within the operation limit. A
        refused write is a domain error that says what to do (retrying cannot fix it)."""
        for name, writes in ops.items():
            if writes:
                try:
                    self.db[name].bulk_write(writes, ordered=False)
                except BulkWriteError as error:
                    raise write_failure(name, error) from error

    def fetch(self, ids: dict[str, list[ObjectId]]) -> Iterable[tuple[str, Document]]:
        """The stored documents with these ids (pre-images), by collection."""
        for name, wanted in ids.items():
            if wanted:
                for doc in self.db[name].find({"_id": {"$in": wanted}}):
                    yield name, doc

    def create_projects(self, user_id: ObjectId, uploads: dict[str, Document], job_id: str,
                        now: datetime) -> dict[str, ObjectId]:
        """A project per path in the user's account (the upload's fields, our ids), in one
        write; their ids by path."""
        projects: list[Document] = []
        for path, upload in uploads.items():
            fields = {k: v for k, v in upload.items()
                      if k not in {"_id", "user_id", "stats", IMPORT_TAG}}
            projects.append({
                **fields, "_id": ObjectId(), "user_id": user_id, "path": path,
                "name": fields.get("name") or path.rstrip("/").rsplit("/", 1)[-1] or path,
                "createdAt": fields.get("createdAt") or now, "updatedAt": now,
                "stats": {"message_count": 0, "session_count": 0}, IMPORT_TAG: job_id})
        if projects:
            self.db[PROJECTS].insert_many(projects, ordered=False)
        return {project["path"]: ObjectId(project["_id"]) for project in projects}


def write_failure(collection: str, error: BulkWriteError) -> DataportError:
    """What a refused bulk write means for the person importing: an id another write took
    (the unique index on uuid or sessionId), or a document the database will not take."""
    failures = error.details.get("writeErrors") or [{}]
    duplicate = next((f for f in failures if f.get("code") == DUPLICATE_KEY), None)
    if duplicate is not None:
        op = duplicate.get("op") or {}
        doc = op.get("u", op) if isinstance(op, dict) else {}
        key = {**doc, **(duplicate.get("keyValue") or {})}
        taken = key.get("uuid") or key.get("sessionId")
        return IdTaken.at_write(collection, str(taken) if taken else None)
    first = failures[0]
    return WriteRejected(
        f"The database refused a document of this import in {collection} (MongoDB error "
        f"{first.get('code')}: {str(first.get('errmsg', ''))[:200]}); the session being written "
        "was put back as it was. Retrying will not change that: correct or leave out that "
        "record and import the file again.", details={"collection": collection,
                                                      "mongoCode": first.get("code")})


def undo_sessions(db: Database[Document], job_id: str, stored_ids: Sequence[str],
                  preimages: Iterable[tuple[str, Document]]) -> None:
    """Put sessions back as they were before the job: delete what the job wrote for them, then
    restore the pre-images (idempotent: safe to run again after a crash of its own)."""
    if not stored_ids:
        return
    sessions = one_of(stored_ids)
    for name in message_collections(db):
        db[name].delete_many({IMPORT_TAG: job_id, "sessionId": sessions})
    db[SESSIONS].delete_many({IMPORT_TAG: job_id, "sessionId": sessions})
    restore(db, preimages)


def delete_written(db: Database[Document], job_id: str) -> None:
    """Delete every message and session document the job wrote (rollback, first step)."""
    for name in message_collections(db):
        db[name].delete_many({IMPORT_TAG: job_id})
    db[SESSIONS].delete_many({IMPORT_TAG: job_id})


def restore(db: Database[Document], preimages: Iterable[tuple[str, Document]]) -> int:
    """Put saved documents back by _id, into the collection they were saved from."""
    pending: dict[str, list[WriteOp]] = defaultdict(list)
    restored = 0
    for name, doc in preimages:
        pending[name].append(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
        restored += 1
        if len(pending[name]) >= RESTORE_BATCH:
            db[name].bulk_write(pending.pop(name), ordered=False)
    for name, ops in pending.items():
        db[name].bulk_write(ops, ordered=False)
    return restored


def created_projects(db: Database[Document], job_id: str, user_id: ObjectId) -> list[Document]:
    return list(db[PROJECTS].find({IMPORT_TAG: job_id, "user_id": user_id}))


def delete_empty_projects(db: Database[Document], job_id: str, user_id: ObjectId) -> int:
    """Projects the job created that hold no session (any more)."""
    deleted = 0
    for project in created_projects(db, job_id, user_id):
        if db[SESSIONS].count_documents({"projectId": project["_id"]}, limit=1) == 0:
            deleted += db[PROJECTS].delete_one({"_id": project["_id"],
                                                IMPORT_TAG: job_id}).deleted_count
    return deleted


def refresh_project_stats(db: Database[Document], job_id: str, user_id: ObjectId) -> None:
    """Stats of the projects the job created, from their sessions (ClaudeLens' own projects
    are left alone: their stats are ClaudeLens' business and are recomputed by readers): one
    read of their sessions, one write of their stats (a user has few projects)."""
    stats = {project["_id"]: [0, 0] for project in created_projects(db, job_id, user_id)}
    if not stats:
        return
    for session in db[SESSIONS].find({"projectId": {"$in": list(stats)}},
                                     {"projectId": 1, "messageCount": 1}):
        counts = stats[session["projectId"]]
        counts[0] += 1
        count = session.get("messageCount")
        counts[1] += count if isinstance(count, int) else 0
    db[PROJECTS].bulk_write([
        UpdateOne({"_id": project}, {"$set": {"stats": {"message_count": messages,
                                                        "session_count": sessions}}})
        for project, (sessions, messages) in stats.items()], ordered=False)
