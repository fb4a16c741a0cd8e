"""A full restore's last pass: the target's sessions the backup lacks are removed, with their
pre-images journalled first, so a rollback puts them back (docs/backups.md, "Restores").

It runs once the executor has written every session of the backup (imports.executor), in the
same journal as the executor's batches and with the same all-or-nothing promise per session:
for each batch of sessions to remove (at most `batch` sessions), a journal entry holding every
document of theirs (the session and all its messages, from every message collection) goes to
S3, the sessions are marked `writing` in staging (one entry each, kind `r`), their messages
and then their session documents are deleted, and they are marked `done` with their result.
After a crash, `recover` puts back the pre-images of sessions still `writing` (the retried task
removes them again; the failure handler leaves them as they were). A dry run counts and lists
them, writing nothing.

Which sessions stay: every session the backup holds, under the id it has in the target (the
staged index's sessionIds, and the stored ids its results name: copies, renamed copies). The
target's sessions are read a page at a time (sessionId order, through the user's projects).
Then the target's projects the backup lacks (by path) and that hold no session any more are
removed the same way (one journal entry with their pre-images, then deleted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pymongo.database import Database

from dataport.bucket import PackagesBucket
from dataport.imports import storage
from dataport.models.imports import MessageCounts, SessionAction, SessionResult, Strategy
from dataport.source.collections import PROJECTS, SESSIONS, message_collections
from dataport.source.conflicts import UserData
from dataport.source.mongo import Document, one_of
from dataport.source.staging import DONE, PENDING, WRITING, Staging
from dataport.source.writes import restore

#: the staging kinds of a removal's entries (`<job>:r:<sessionId>`, `<job>:rp:<project id>`)
REMOVED, REMOVED_PROJECT = "r", "rp"


class Removal:
    def __init__(self, *, db: Database[Document], bucket: PackagesBucket, staging: Staging,
                 user: UserData, run_id: str, dry_run: bool, strategy: Strategy,
                 batch: int = 200, kept: set[str] | None = None,
                 kept_paths: set[str] | None = None, resume: bool = False) -> None:
        self.db, self.bucket, self.staging, self.user = db, bucket, staging, user
        self.run_id, self.dry_run, self.strategy = run_id, dry_run, strategy
        self.batch = batch
        #: what stays when the backup's sessions are not in this job's staging (a restore run
        #: in shards removes once, after its shards: workflows.restore_shards); else staging's
        self.kept, self.kept_paths = kept, kept_paths
        #: a dry run goes on after the sessions its staging lists already, instead of starting
        #: anew (a restore in shards' pass, handed over between invocations: its staging is
        #: its own, so all it lists is this pass's)
        self.resume = resume
        self.batches = 0
        self._removed: set[str] = set()  # a dry run's sessions it would remove

    def run(self, keep_going: Callable[[], bool]) -> bool:
        """Remove (or, dry, list) what the backup lacks; False when `keep_going` said stop
        (the next invocation goes on: what is removed is gone, what is left is found again; a
        dry run with `resume` goes on after the last session it listed: sessionId order)."""
        after = None
        if self.dry_run and self.resume:
            listed = [str(entry["s"]) for entry in self.staging.collection.find(
                {"g": self._keys(), "dry": {"$exists": True}}, {"s": 1})]
            self._removed.update(listed)
            after = max(listed, default=None)
        elif self.dry_run:
            self.staging.collection.delete_many({"g": self._keys()})
            self.staging.collection.delete_many({"g": _kind(self.staging, REMOVED_PROJECT)})
        kept = self._kept() if self.kept is None else self.kept
        paths = {doc["_id"]: doc.get("path") for doc in
                 self.db[PROJECTS].find({"_id": {"$in": list(self.user.scope.project_ids)}},
                                        {"path": 1})}
        page: list[Document] = []
        for session in self._target_sessions(after):
            if session["sessionId"] in kept:
                continue
            page.append(session)
            if len(page) >= self.batch:
                self._remove(page, paths)
                page = []
                if not keep_going():
                    return False
        self._remove(page, paths)
        self._remove_projects()
        return True

    def _remove_projects(self) -> None:
        """The target's projects the backup lacks (by path) and that hold no session now: the
        pre-images journalled, then deleted (a rollback puts them back)."""
        kept = set(self.staging.projects()) if self.kept_paths is None else self.kept_paths
        # a dry run removed nothing: what it would remove does not count
        left = {"sessionId": {"$nin": sorted(self._removed)}} if self.dry_run else {}
        lacking = [doc for doc in self.db[PROJECTS].find({"user_id": self.user.scope.user_id})
                   if doc.get("path") not in kept
                   and self.db[SESSIONS].count_documents({"projectId": doc["_id"], **left},
                                                         limit=1) == 0]
        if not lacking:
            return
        field = "dry" if self.dry_run else "res"
        if not self.dry_run:
            self.batches += 1
            key = storage.journal_key(self.staging.job_id, f"{self.run_id}-removal",
                                      self.batches)
            storage.write_journal(self.bucket, key, [], ((PROJECTS, doc) for doc in lacking))
            self.db[PROJECTS].delete_many({"_id": {"$in": [doc["_id"] for doc in lacking]}})
        for doc in lacking:
            self.staging.collection.update_one(
                {"g": self.staging.key(REMOVED_PROJECT, str(doc["_id"])), "n": 0},
                {"$set": {field: {"path": doc.get("path")}, "st": DONE}}, upsert=True)

    def _kept(self) -> set[str]:
        kept: set[str] = set()
        for entry in self.staging.sessions():
            kept.add(str(entry["s"]))
            for name in ("res", "dry"):
                stored = (entry.get(name) or {}).get("storedSessionId")
                if stored:
                    kept.add(str(stored))
        return kept

    def _target_sessions(self, after: str | None) -> Iterator[Document]:
        projects = list(self.user.scope.project_ids)
        if not projects:
            return
        query: Document = {"projectId": {"$in": projects}}
        if after is not None:
            query["sessionId"] = {"$gt": after}
        with self.db[SESSIONS].find(query,
                                    sort=[("sessionId", 1)], batch_size=500) as cursor:
            yield from cursor

    def _remove(self, sessions: list[Document], paths: dict[Any, Any]) -> None:
        if not sessions:
            return
        ids = [str(s["sessionId"]) for s in sessions]
        counts = self._message_counts(ids)
        results = {sid: SessionResult(
            session_id=sid, stored_session_id=sid, action=SessionAction.REMOVE,
            strategy=self.strategy, project_path=paths.get(s["projectId"]),
            messages=MessageCounts(deleted=counts.get(sid, 0)))
            for sid, s in zip(ids, sessions, strict=True)}
        if self.dry_run:
            self._record(results, "dry", DONE)
            self._removed.update(ids)
            return
        self.batches += 1
        key = storage.journal_key(self.staging.job_id, f"{self.run_id}-removal", self.batches)
        storage.write_journal(self.bucket, key, [
            {"s": sid, "i": sid, "a": SessionAction.REMOVE.value} for sid in ids],
            self._preimages(sessions, ids))
        self._record(dict.fromkeys(ids), "res", WRITING, journal=key)
        for name in message_collections(self.db):
            self.db[name].delete_many({"sessionId": one_of(ids)})
        self.db[SESSIONS].delete_many({"_id": {"$in": [s["_id"] for s in sessions]}})
        self._record(results, "res", DONE)

    def _preimages(self, sessions: list[Document], ids: list[str]
                   ) -> Iterator[tuple[str, Document]]:
        yield from ((SESSIONS, doc) for doc in sessions)
        for name in message_collections(self.db):
            for doc in self.db[name].find({"sessionId": one_of(ids)}):
                yield name, doc

    def _message_counts(self, ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in message_collections(self.db):
            for row in self.db[name].aggregate([
                    {"$match": {"sessionId": one_of(ids)}},
                    {"$group": {"_id": "$sessionId", "n": {"$sum": 1}}}]):
                counts[str(row["_id"])] = counts.get(str(row["_id"]), 0) + int(row["n"])
        return counts

    def _record(self, results: Mapping[str, SessionResult | None], field: str, state: str, *,
                journal: str | None = None) -> None:
        for sid, result in results.items():
            fields: Document = {"st": state, "s": sid}
            if journal is not None:
                fields["jk"] = journal
            if result is not None:
                fields[field] = result.wire()
            self.staging.collection.update_one(
                {"g": self.staging.key(REMOVED, sid), "n": 0}, {"$set": fields}, upsert=True)

    def _keys(self) -> dict[str, str]:
        return {"$gte": self.staging.key(REMOVED), "$lt": f"{self.staging.job_id}:{REMOVED};"}


def removed(staging: Staging, *, dry_run: bool) -> Iterator[dict[str, Any]]:
    """The results of a removal pass (for the outcome and its listing)."""
    name = "dry" if dry_run else "res"
    keys = {"$gte": staging.key(REMOVED), "$lt": f"{staging.job_id}:{REMOVED};"}
    for entry in staging.collection.find({"g": keys}, sort=[("g", 1)]):
        if entry.get(name) and entry.get("st") == DONE:
            yield entry[name]


def removed_projects(staging: Staging, *, dry_run: bool) -> int:
    """How many projects a removal pass removed (or, dry, would remove)."""
    return staging.collection.count_documents({"g": _kind(staging, REMOVED_PROJECT),
                                               "dry" if dry_run else "res": {"$exists": True}})


def _kind(staging: Staging, kind: str) -> dict[str, str]:
    return {"$gte": staging.key(kind), "$lt": f"{staging.job_id}:{kind};"}


def recover(db: Database[Document], bucket: PackagesBucket, staging: Staging) -> int:
    """Put back the sessions an interrupted removal left `writing` (their journal entry holds
    every document of theirs); the number put back."""
    keys = {"$gte": staging.key(REMOVED), "$lt": f"{staging.job_id}:{REMOVED};"}
    pending = list(staging.collection.find({"g": keys, "st": WRITING}))
    by_entry: dict[str, set[str]] = {}
    for entry in pending:
        by_entry.setdefault(str(entry["jk"]), set()).add(str(entry["s"]))
    for key, wanted in by_entry.items():
        _, preimages = storage.read_journal(bucket, key)
        restore(db, ((name, doc) for name, doc in preimages
                     if doc.get("sessionId") in wanted))
    for entry in pending:
        staging.collection.update_one({"_id": entry["_id"]}, {"$set": {"st": PENDING}})
    return len(pending)
