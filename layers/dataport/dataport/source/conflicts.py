"""What the importing user already has: the stored side of every comparison an import makes.

Identity is (owner, sessionId) for sessions and uuid for messages, never a database _id: an
incoming session is looked up by its sessionId and is the user's when it sits in one of the
user's projects. A sessionId that another account holds is imported as a copy under an id
derived from the user's, and so is a message whose uuid is held outside the session being
written (see source.identity): `identify` finds every such uuid before anything is written.
Reads of sessions and their messages are scoped to the user's projects; the one look outside
them (`held_elsewhere`) returns nothing but which uuids are taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bson import ObjectId
from pymongo.database import Database

from dataport.errors import IdTaken
from dataport.models.documents import CLAUDE_CODE, COST_COMPUTED_BY, transcript_digest
from dataport.source.collections import PROJECTS, SESSIONS, message_collections
from dataport.source.content_hash import hash_of
from dataport.source.identity import SessionIds, copy_id, copy_key, origins
from dataport.source.mongo import Document, one_of
from dataport.source.scope import OwnerScope

T = TypeVar("T")

#: uuids per look-up of taken ones (one $in on the uuid index per message collection)
LOOKUP_BATCH = 1000
#: the stored fields the planner (imports.plan) reads (stats need type, time, cost, usage, the
#: response id; a merge compares Claude Code's line: claudeCode and where a cost came from)
MESSAGE_PROJECTION = {"uuid": 1, "contentHash": 1, "type": 1, "timestamp": 1, "content": 1,
                      "costUsd": 1, "usage": 1, "messageData": 1, CLAUDE_CODE: 1,
                      COST_COMPUTED_BY: 1}


@dataclass(frozen=True)
class StoredMessage:
    id: ObjectId
    collection: str
    content_hash: str | None
    stats: Document  # type, timestamp, costUsd, usage, messageData.id: what SessionTotals reads
    #: its Claude Code line's keys and computed cost, digested (documents.transcript_digest)
    transcript: str | None = None

    @classmethod
    def of(cls, doc: Mapping[str, Any], collection: str) -> StoredMessage:
        data = doc.get("messageData")
        response = data.get("id") if isinstance(data, Mapping) else None
        stats = {key: doc[key] for key in ("type", "timestamp", "costUsd", "usage") if key in doc}
        if response is not None:
            stats["messageData"] = {"id": response}
        return cls(doc["_id"], collection, effective_hash(doc), stats, transcript_digest(doc))


def effective_hash(doc: Mapping[str, Any]) -> str | None:
    """contentHash, computed the ClaudeLens way where a document has none (derived tool
    documents never carry one)."""
    value = doc.get("contentHash")
    return value if isinstance(value, str) else hash_of(doc)


@dataclass(frozen=True)
class StoredSession:
    """Where an incoming session goes: the id it has in the user's account, whether that is a
    copy's derived id, and the stored session if the user already has it."""

    session_id: str
    stored_id: str
    copy: bool
    document: Document | None


@dataclass(frozen=True)
class Identity:
    """One session's identity decisions (UserData.identify_each): its SessionIds, how many of
    its messages get a derived uuid, and a derived uuid someone already holds (an IdTaken,
    raised when the identity is used)."""

    stored: StoredSession
    ids: SessionIds
    copied: int
    taken: str | None = None

    def resolved(self) -> tuple[SessionIds, int]:
        if self.taken is not None:
            raise IdTaken.of(self.stored.session_id, self.taken)
        return self.ids, self.copied


def _held_outside(holders: set[str | None] | None, session_id: str | None) -> bool:
    """Whether a uuid with these holders is held by a message outside session `session_id`."""
    return holders is not None and any(holder != session_id for holder in holders)


class UserData:
    """One user's sessions and projects, read through their project ids (one scope per task)."""

    def __init__(self, db: Database[Document], user_id: str, key: bytes | None = None) -> None:
        self.db = db
        self.scope = OwnerScope(db, user_id)
        self.user_id = user_id
        self._message_collections = message_collections(db)
        self._key = key

    @property
    def key(self) -> bytes:
        """The copy-id secret, read when a copy is first derived (most tasks never need it)."""
        if self._key is None:
            self._key = copy_key()
        return self._key

    def session(self, session_id: str) -> StoredSession:
        return self.sessions([session_id])[session_id]

    def sessions(self, session_ids: Sequence[str]) -> dict[str, StoredSession]:
        """Where each incoming session goes (see StoredSession), read in bulk: one `$in` per
        LOOKUP_BATCH sessionIds, and one more for the copies' derived ids among them."""
        owned = set(self.scope.project_ids)
        found: dict[str, StoredSession] = {}
        unique = list(dict.fromkeys(session_ids))
        for start in range(0, len(unique), LOOKUP_BATCH):
            batch = unique[start:start + LOOKUP_BATCH]
            held = {doc["sessionId"]: doc
                    for doc in self.db[SESSIONS].find({"sessionId": one_of(batch)})}
            derived: dict[str, str] = {}  # derived id -> the upload's id
            for session_id in batch:
                doc = held.get(session_id)
                if doc is None or doc["projectId"] in owned:
                    found[session_id] = StoredSession(session_id, session_id, False, doc)
                else:
                    derived[copy_id(self.key, self.user_id, session_id)] = session_id
            if not derived:
                continue
            copies = {doc["sessionId"]: doc
                      for doc in self.db[SESSIONS].find({"sessionId": one_of(derived)})}
            for copy_of, session_id in derived.items():
                copy = copies.get(copy_of)
                if copy is not None and copy["projectId"] not in owned:
                    raise IdTaken.of(session_id, copy_of)
                found[session_id] = StoredSession(session_id, copy_of, True, copy)
        return found

    def renamed(self, stored: StoredSession) -> StoredSession:
        """Where a session the user has goes when it is kept twice (strategy rename): a copy
        under the id derived from the user's and its own (stable: a second restore finds the
        same copy), with its messages' uuids derived too."""
        copy_of = copy_id(self.key, self.user_id, stored.session_id)
        doc = self.db[SESSIONS].find_one({"sessionId": copy_of})
        if doc is not None and doc["projectId"] not in set(self.scope.project_ids):
            raise IdTaken.of(stored.session_id, copy_of)
        return StoredSession(stored.session_id, copy_of, True, doc)

    def identify(self, stored: StoredSession, uuids: Iterable[str]) -> tuple[SessionIds, int]:
        """How the session's messages (`uuids`: all of them, as the upload names them) are
        stored, and how many get a derived uuid. A uuid is foreign when a message outside the
        session being written holds it: in another account, or in another session of the
        user's (the session itself, when the user has it, holds its own)."""
        [(_, _, identity)] = self.identify_each([(None, stored, list(uuids))])
        assert identity is not None
        return identity.resolved()

    def identify_each(self, sessions: Iterable[tuple[T, StoredSession, Sequence[str] | None]]
                      ) -> Iterator[tuple[T, StoredSession, Identity | None]]:
        """`identify` for consecutive sessions (caller's payload, stored session, uuids), in
        their order, with the look-ups shared: sessions are read ahead until they hold
        LOOKUP_BATCH uuids, and those are looked up together (one `$in` per message collection
        for the whole group, not one per session). Sharing is sound because the decision of
        one session does not depend on the writes of another: no uuid appears twice in an
        upload (the validator's check, applied again before anything is written), so what an
        import writes for one session is never held by a message another session of the same
        upload names. An IdTaken is raised when its session's identity is used (`resolved`),
        as the per-session look-up raised it. A session given no uuids (None: the caller needs
        no identity for it) passes through with None, in its place."""
        group: list[tuple[T, StoredSession, Sequence[str] | None]] = []
        pending = 0
        for item in sessions:
            group.append(item)
            pending += len(item[2] or ())
            if pending >= LOOKUP_BATCH:
                yield from self._identified(group)
                group, pending = [], 0
        yield from self._identified(group)

    def _identified(self, group: Sequence[tuple[T, StoredSession, Sequence[str] | None]]
                    ) -> Iterator[tuple[T, StoredSession, Identity | None]]:
        if not group:
            return
        named: list[tuple[SessionIds, list[str], str | None]] = []
        for _, stored, uuids in group:
            if uuids is None:
                continue
            ids = SessionIds(self.key, self.user_id, stored.stored_id, stored.copy,
                             frozenset())
            own = stored.stored_id if stored.document is not None else None
            named.append((ids, [ids.copied(value) for value in uuids], own))
        holders = self._holders([name for _, names, _ in named for name in names])
        decided: list[tuple[SessionIds, list[str], list[str], str | None]] = []
        for blank, names, own in named:
            held = (name for name in names if _held_outside(holders.get(name), own))
            ids = SessionIds(blank.key, blank.owner_id, blank.stored_session_id, blank.copy,
                             frozenset(origins(held)))
            renamed = [ids.uuid_of(value) for value in names if ids.is_foreign(value)]
            decided.append((ids, names, renamed, own))
        # a derived id someone already holds: only whoever learned it can have written it
        taken_by = self._holders([value for _, _, renamed, _ in decided for value in renamed])
        decisions = iter(decided)
        for payload, stored, uuids in group:
            if uuids is None:
                yield payload, stored, None
                continue
            ids, names, renamed, own = next(decisions)
            taken = next((value for value in renamed
                          if _held_outside(taken_by.get(value), own)), None)
            copied = len(names) if stored.copy else len(renamed)
            yield payload, stored, Identity(stored, ids, copied, taken)

    def _holders(self, uuids: Sequence[str]) -> dict[str, set[str | None]]:
        """The sessionIds holding each of `uuids` (those some message of any collection
        holds): one `$in` per LOOKUP_BATCH uuids per message collection."""
        found: dict[str, set[str | None]] = {}
        for start in range(0, len(uuids), LOOKUP_BATCH):
            batch = uuids[start:start + LOOKUP_BATCH]
            for name in self._message_collections:
                for doc in self.db[name].find({"uuid": one_of(batch)},
                                              {"_id": 0, "uuid": 1, "sessionId": 1}):
                    found.setdefault(str(doc["uuid"]), set()).add(doc.get("sessionId"))
        return found

    def held_elsewhere(self, uuids: Sequence[str], session_id: str | None) -> Iterator[str]:
        """Those of `uuids` a message of any collection holds outside session `session_id`."""
        holders = self._holders(uuids)
        for value in dict.fromkeys(uuids):
            if _held_outside(holders.get(value), session_id):
                yield value

    def messages(self, stored_id: str) -> dict[str, StoredMessage]:
        """The stored session's messages by uuid, from every message collection (the caller
        has checked that the session is the user's)."""
        found: dict[str, StoredMessage] = {}
        for name in self._message_collections:
            # a range of one value: an index scan on nx-27017 too (see source.staging)
            query = {"sessionId": {"$gte": stored_id, "$lte": stored_id}}
            for doc in self.db[name].find(query, MESSAGE_PROJECTION):
                found[doc["uuid"]] = StoredMessage.of(doc, name)
        return found

    def projects_by_path(self) -> dict[str, Document]:
        """The user's projects by path (a user has few)."""
        return {doc["path"]: doc for doc in
                self.db[PROJECTS].find({"user_id": self.scope.user_id}, sort=[("_id", 1)])
                if isinstance(doc.get("path"), str)}
