"""What the importing user already has: the stored side of every comparison an import makes.

Identity is (owner, sessionId) for sessions and uuid for messages, never a database _id: an
incoming session is looked up by its sessionId and is the user's when it sits in one of the
user's projects. A sessionId that another account holds is imported as a copy under an id
derived from the user's (see imports.identity); every read here is scoped to the user's projects.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymongo.database import Database

from dataport.errors import Conflict
from dataport.imports.identity import copy_id
from dataport.imports.plan import MESSAGE_PROJECTION, StoredMessage
from dataport.source.collections import PROJECTS, SESSIONS, message_collections
from dataport.source.mongo import Document
from dataport.source.scope import OwnerScope


@dataclass(frozen=True)
class StoredSession:
    """Where an incoming session goes: the id it has in the user's account, whether that is a
    copy's derived id, and the stored session if the user already has it."""

    session_id: str
    stored_id: str
    copy: bool
    document: Document | None


class UserData:
    """One user's sessions and projects, read through their project ids (one scope per task)."""

    def __init__(self, db: Database[Document], user_id: str) -> None:
        self.db = db
        self.scope = OwnerScope(db, user_id)
        self.user_id = user_id
        self._message_collections = message_collections(db)

    def refresh_collections(self) -> None:
        self._message_collections = message_collections(self.db)

    def session(self, session_id: str) -> StoredSession:
        owned = set(self.scope.project_ids)
        found = self.db[SESSIONS].find_one({"sessionId": session_id})
        if found is None or found["projectId"] in owned:
            return StoredSession(session_id, session_id, False, found)
        derived = copy_id(self.user_id, session_id)
        copy = self.db[SESSIONS].find_one({"sessionId": derived})
        if copy is not None and copy["projectId"] not in owned:
            raise Conflict(f"Session {session_id} cannot be imported: its copy id {derived} is "
                           "held by another account.", details={"sessionId": session_id})
        return StoredSession(session_id, derived, True, copy)

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
