"""Owner scoping at the query layer: every query dataport makes about a user's data is built here.

Only `projects.user_id` says who owns data, so a scope starts from the user's project ids and
every sessions query carries `projectId $in <those ids>`, every messages query `sessionId $in
<ids of sessions read through this scope>`. A filter can only narrow that: another user's
project id or session id in a filter simply matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from pymongo.collection import Collection
from pymongo.database import Database

from dataport.errors import InvalidRequest
from dataport.models.exports import ExportFilters
from dataport.source.collections import PROJECTS, SESSIONS
from dataport.source.mongo import Document

Query = dict[str, Any]


def _range(low: object | None, high: object | None, *, low_op: str = "$gte",
            high_op: str = "$lte") -> dict[str, object]:
    bounds: dict[str, object] = {}
    if low is not None:
        bounds[low_op] = low
    if high is not None:
        bounds[high_op] = high
    return bounds


class OwnerScope:
    """One user's data in one database. The project ids are read once per scope (one job
    step), so the queries of a step agree with each other."""

    def __init__(self, db: Database[Document], user_id: str) -> None:
        if not ObjectId.is_valid(user_id):
            raise InvalidRequest("user id must be a 24-character hex ObjectId")
        self.db = db
        self.user_id = ObjectId(user_id)

    @property
    def projects(self) -> Collection[Document]:
        return self.db[PROJECTS]

    @property
    def sessions(self) -> Collection[Document]:
        return self.db[SESSIONS]

    @cached_property
    def project_ids(self) -> list[ObjectId]:
        """The user's own project ids, in order."""
        cursor = self.projects.find({"user_id": self.user_id}, {"_id": 1})
        return sorted(doc["_id"] for doc in cursor)

    def scoped_project_ids(self, filters: ExportFilters) -> list[ObjectId]:
        """The user's projects narrowed by `filters.project_ids` (ids of other users drop out)."""
        if filters.project_ids is None:
            return self.project_ids
        wanted = {ObjectId(value) for value in filters.project_ids}
        return [pid for pid in self.project_ids if pid in wanted]

    def projects_query(self, filters: ExportFilters) -> Query:
        return {"user_id": self.user_id, "_id": {"$in": self.scoped_project_ids(filters)}}

    def sessions_query(self, filters: ExportFilters, *, after: str | None = None,
                       upto: str | None = None) -> Query:
        """Sessions of the user's (filtered) projects, optionally within the sessionId keyset
        range (`after`, `upto`]. dateRange keeps sessions active in the range."""
        query: Query = {"projectId": {"$in": self.scoped_project_ids(filters)}}
        session_id: dict[str, object] = _range(after, upto, low_op="$gt")
        if filters.session_ids is not None:
            session_id["$in"] = sorted(set(filters.session_ids))
        if session_id:
            query["sessionId"] = session_id
        if filters.cost_range is not None:
            low, high = filters.cost_range.min, filters.cost_range.max
            cost = _range(None if low is None else Decimal128(low),
                          None if high is None else Decimal128(high))
            if cost:
                query["totalCost"] = cost
        if filters.date_range is not None:
            if filters.date_range.end is not None:
                query["startedAt"] = {"$lte": filters.date_range.end}
            if filters.date_range.start is not None:
                query["endedAt"] = {"$gte": filters.date_range.start}
        return query

    def messages_query(self, sessions: Iterable[Mapping[str, Any]],
                       filters: ExportFilters) -> Query:
        """Messages of sessions read through this scope (checked: a session of another user's
        project is refused), narrowed by the message-level filters."""
        owned = set(self.project_ids)
        session_ids: list[str] = []
        for session in sessions:
            if session.get("projectId") not in owned:
                raise InvalidRequest("session is outside the owner's scope",
                                     details={"sessionId": session.get("sessionId")})
            session_ids.append(session["sessionId"])
        # The bounds add nothing on MongoDB (its planner intersects them with the $in); on
        # nx-27017 an $in never uses an index (its array-match clause forces a scan of the
        # collection) while a range does: measured 14x faster on 60k messages per collection.
        query: Query = {"sessionId": {"$in": session_ids}}
        if session_ids:
            query["sessionId"].update({"$gte": min(session_ids), "$lte": max(session_ids)})
        if filters.date_range is not None:
            moment = _range(filters.date_range.start, filters.date_range.end)
            if moment:
                query["timestamp"] = moment
        if filters.models is not None:
            query["model"] = {"$in": list(filters.models)}
        if filters.message_types is not None:
            query["type"] = {"$in": list(filters.message_types)}
        if not filters.include_sidechains:
            query["isSidechain"] = {"$ne": True}
        return query
