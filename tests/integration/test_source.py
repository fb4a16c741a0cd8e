"""dataport.source through the real pymongo driver, on nx-27017 or on MONGODB_URI's MongoDB.

Expected results are computed in Python from unfiltered full reads of the seeded collections,
never with the query code under test.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from pymongo import MongoClient, ReturnDocument, UpdateOne, monitoring
from pymongo.database import Database

from dataport.errors import InvalidRequest
from dataport.models.exports import CostRange, DateRange, ExportFilters
from dataport.source import reader
from dataport.source.collections import (
    SESSIONS,
    Layout,
    collection_name_for,
    detect_layout,
    ensure_indexes,
    layout_in_use,
    message_collection_for,
    message_collections,
)
from dataport.source.content_hash import content_hash
from dataport.source.mongo import Document, one_of
from dataport.source.scope import OwnerScope
from dataport.source.writes import Target
from infrastructure.local import mongo_server
from infrastructure.local.seed import DEMO_USER_ID, seed
from tests.fixtures.mongo import SeededDb, seeded_database

OPUS = "claude-opus-4-1-20250805"


# --- reference data ------------------------------------------------------------------------------

@dataclass
class Dataset:
    """Everything in a seeded database, read without filters."""

    projects: list[Document]
    sessions: list[Document]
    messages: dict[str, list[Document]]  # by sessionId, in (timestamp, uuid) order
    collection_of: dict[str, str]  # message uuid -> collection name

    @classmethod
    def read(cls, db: Database[Document]) -> Dataset:
        messages: dict[str, list[Document]] = defaultdict(list)
        collection_of: dict[str, str] = {}
        for name in db.list_collection_names():
            if name.startswith("messages"):
                for doc in db[name].find():
                    messages[doc["sessionId"]].append(doc)
                    collection_of[doc["uuid"]] = name
        for docs in messages.values():
            docs.sort(key=lambda doc: (doc["timestamp"], doc["uuid"]))
        return cls(list(db.projects.find(sort=[("_id", 1)])),
                   sorted(db.sessions.find(), key=_session_id),
                   messages, collection_of)

    def project_ids(self, user_id: str) -> set[ObjectId]:
        return {p["_id"] for p in self.projects if p["user_id"] == ObjectId(user_id)}

    def sessions_of(self, user_id: str) -> list[Document]:
        owned = self.project_ids(user_id)
        return [s for s in self.sessions if s["projectId"] in owned]

    def session_level(self, user_id: str, filters: ExportFilters) -> list[Document]:
        """The user's sessions that pass the session-level filters, by the ExportFilters
        contract (projectIds, sessionIds, costRange, dateRange as activity)."""
        projects = {pid for pid in self.project_ids(user_id)
                    if filters.project_ids is None or str(pid) in filters.project_ids}
        return [s for s in self.sessions
                if s["projectId"] in projects and _session_matches(s, filters)]

    def expected(self, user_id: str, filters: ExportFilters) -> list[tuple[str, list[str]]]:
        """(sessionId, message uuids) the filters should give."""
        result = []
        for session in self.session_level(user_id, filters):
            kept = [m["uuid"] for m in self.messages.get(session["sessionId"], [])
                    if _message_matches(m, filters)]
            if kept or not filters.filters_messages:
                result.append((session["sessionId"], kept))
        return result


def _session_id(doc: Document) -> str:
    return str(doc["sessionId"])


def _session_matches(session: Document, filters: ExportFilters) -> bool:
    cost = session["totalCost"].to_decimal()
    costs, dates = filters.cost_range, filters.date_range
    return ((filters.session_ids is None or session["sessionId"] in filters.session_ids)
            and (costs is None or ((costs.min is None or cost >= costs.min)
                                   and (costs.max is None or cost <= costs.max)))
            and (dates is None or ((dates.end is None or session["startedAt"] <= dates.end)
                                   and (dates.start is None
                                        or session["endedAt"] >= dates.start))))


def _message_matches(message: Document, filters: ExportFilters) -> bool:
    dates = filters.date_range
    return ((dates is None or ((dates.start is None or message["timestamp"] >= dates.start)
                               and (dates.end is None or message["timestamp"] <= dates.end)))
            and (filters.models is None or message.get("model") in filters.models)
            and (filters.message_types is None or message["type"] in filters.message_types)
            and (filters.include_sidechains or not message["isSidechain"]))


def read_all(scope: OwnerScope, filters: ExportFilters, *, page_size: int = 100,
             batch_size: int = 500, after: str | None = None,
             upto: str | None = None) -> list[tuple[Document, list[Document]]]:
    return [(session, list(messages))
            for page in reader.iter_session_pages(scope, filters, after, upto, page_size)
            for session, messages in reader.iter_messages(scope, page, filters, batch_size)]


def ids_of(read: list[tuple[Document, list[Document]]]) -> list[tuple[str, list[str]]]:
    return [(session["sessionId"], [m["uuid"] for m in messages]) for session, messages in read]


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeded_single(mongo_client: MongoClient[Document]) -> Iterator[SeededDb]:
    """The same sample data as `seeded_db`, in the single `messages` collection."""
    with seeded_database(mongo_client, layout="single") as seeded:
        yield seeded


@pytest.fixture(scope="module")
def data(seeded_db: SeededDb) -> Dataset:
    return Dataset.read(seeded_db.db)


@pytest.fixture(scope="module")
def layouts(seeded_db: SeededDb, seeded_single: SeededDb) -> dict[str, Database[Document]]:
    return {"monthly": seeded_db.db, "single": seeded_single.db}


def other_user(seeded: SeededDb) -> str:
    return seeded.summary.users[1].user_id


# --- owner scoping -------------------------------------------------------------------------------

def test_each_user_reads_exactly_their_own_data(seeded_db: SeededDb, data: Dataset) -> None:
    seen: set[str] = set()
    for user in seeded_db.summary.users:
        read = read_all(OwnerScope(seeded_db.db, user.user_id), ExportFilters())
        sessions = {session["sessionId"] for session, _ in read}

        assert sessions == {s["sessionId"] for s in data.sessions_of(user.user_id)}
        assert all(m["sessionId"] == s["sessionId"] for s, messages in read for m in messages)
        assert len(read) == user.sessions
        assert sum(len(messages) for _, messages in read) == user.messages
        assert sum(s["totalCost"].to_decimal() for s, _ in read) == user.total_cost
        assert not sessions & seen
        seen |= sessions
    assert len(seen) == len(data.sessions)


def test_another_users_project_id_matches_nothing(seeded_db: SeededDb, data: Dataset) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    own = sorted(data.project_ids(DEMO_USER_ID))[0]
    foreign = sorted(data.project_ids(other_user(seeded_db)))[0]

    only_foreign = ExportFilters(project_ids=[str(foreign)])
    assert read_all(scope, only_foreign) == []
    assert reader.count_sessions(scope, only_foreign) == 0
    assert reader.projects_in_scope(scope, only_foreign) == []

    mixed = ExportFilters(project_ids=[str(foreign), str(own)])
    assert {s["projectId"] for s, _ in read_all(scope, mixed)} == {own}
    assert [p["_id"] for p in reader.projects_in_scope(scope, mixed)] == [own]


def test_another_users_session_id_matches_nothing(seeded_db: SeededDb, data: Dataset) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    foreign = data.sessions_of(other_user(seeded_db))[0]["sessionId"]

    assert read_all(scope, ExportFilters(session_ids=[foreign])) == []
    assert list(reader.session_keys(scope, ExportFilters(session_ids=[foreign]))) == []


def test_messages_of_a_session_outside_the_scope_are_refused(seeded_db: SeededDb,
                                                             data: Dataset) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    foreign = data.sessions_of(other_user(seeded_db))[:1]

    with pytest.raises(InvalidRequest):
        scope.messages_query(foreign, ExportFilters())
    with pytest.raises(InvalidRequest):
        list(reader.iter_messages(scope, foreign, ExportFilters()))


def test_projects_in_scope_are_the_users_projects(seeded_db: SeededDb, data: Dataset) -> None:
    projects = reader.projects_in_scope(OwnerScope(seeded_db.db, DEMO_USER_ID), ExportFilters())

    assert [p["_id"] for p in projects] == sorted(data.project_ids(DEMO_USER_ID))


# --- filters, in both layouts --------------------------------------------------------------------

def _costs(data: Dataset) -> list[Decimal]:
    return sorted(s["totalCost"].to_decimal() for s in data.sessions_of(DEMO_USER_ID))


JULY_15 = datetime(2025, 7, 15, tzinfo=UTC)
SEPT_10 = datetime(2025, 9, 10, 12, tzinfo=timezone(timedelta(hours=-7)))

FILTERS: dict[str, Callable[[Dataset], ExportFilters]] = {
    "none": lambda d: ExportFilters(),
    "date range": lambda d: ExportFilters(date_range=DateRange(start=JULY_15, end=SEPT_10)),
    "date from": lambda d: ExportFilters(date_range=DateRange(start=SEPT_10)),
    "date until": lambda d: ExportFilters(date_range=DateRange(end=JULY_15)),
    "models": lambda d: ExportFilters(models=[OPUS]),
    "message types": lambda d: ExportFilters(message_types=["tool_use", "tool_result"]),
    "no sidechains": lambda d: ExportFilters(include_sidechains=False),
    # bounds equal to existing totals: both ends are inclusive, compared as exact decimals
    "cost range": lambda d: ExportFilters(cost_range=CostRange(min=_costs(d)[3],
                                                               max=_costs(d)[9])),
    "cost min": lambda d: ExportFilters(cost_range=CostRange(min=_costs(d)[-4])),
    "session ids": lambda d: ExportFilters(session_ids=[
        s["sessionId"] for s in d.sessions_of(DEMO_USER_ID)[2:5]]),
    "project ids": lambda d: ExportFilters(project_ids=[
        str(pid) for pid in sorted(d.project_ids(DEMO_USER_ID))[1:]]),
    "combined": lambda d: ExportFilters(
        date_range=DateRange(start=JULY_15), models=[OPUS], include_sidechains=False,
        message_types=["assistant", "tool_use"], cost_range=CostRange(min=_costs(d)[2])),
}


@pytest.mark.parametrize("layout", ["monthly", "single"])
@pytest.mark.parametrize("case", FILTERS)
def test_filters_select_what_the_contract_says(layouts: dict[str, Database[Document]],
                                               data: Dataset, layout: str, case: str) -> None:
    filters = FILTERS[case](data)
    scope = OwnerScope(layouts[layout], DEMO_USER_ID)

    got = ids_of(read_all(scope, filters, page_size=4, batch_size=16))

    expected = data.expected(DEMO_USER_ID, filters)
    assert got == expected
    assert expected  # every case selects something: an empty result would prove nothing
    session_level = [s["sessionId"] for s in data.session_level(DEMO_USER_ID, filters)]
    assert list(reader.session_keys(scope, filters)) == session_level
    assert reader.count_sessions(scope, filters) == len(session_level)


def test_filters_narrow(data: Dataset) -> None:
    """Each non-trivial case leaves something out, so the comparison above can tell."""
    everything = data.expected(DEMO_USER_ID, ExportFilters())
    for case, make in FILTERS.items():
        if case != "none":
            assert data.expected(DEMO_USER_ID, make(data)) != everything, case


def test_both_layouts_give_identical_documents(layouts: dict[str, Database[Document]]) -> None:
    monthly, single = (read_all(OwnerScope(layouts[name], DEMO_USER_ID), ExportFilters())
                       for name in ("monthly", "single"))

    assert monthly == single
    assert len(message_collections(layouts["monthly"])) > 1
    assert message_collections(layouts["single"]) == ["messages"]


# --- keyset paging -------------------------------------------------------------------------------

def test_pages_cover_every_session_once_in_order(seeded_db: SeededDb) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    keys = list(reader.session_keys(scope, ExportFilters()))

    pages = list(reader.iter_session_pages(scope, ExportFilters(), page_size=4))

    assert [s["sessionId"] for page in pages for s in page] == keys == sorted(set(keys))
    assert [len(page) for page in pages[:-1]] == [4] * (len(pages) - 1)
    assert 1 <= len(pages[-1]) <= 4
    assert reader.count_sessions(scope, ExportFilters()) == len(keys)


def test_shards_by_after_and_upto_partition_the_sessions(seeded_db: SeededDb) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    keys = list(reader.session_keys(scope, ExportFilters()))
    # bounds need not be existing ids: "8" falls between two of them
    ranges = list(pairwise([None, keys[2], "8", keys[-2], None]))

    shards = [[s["sessionId"] for page in
               reader.iter_session_pages(scope, ExportFilters(), after, upto, page_size=3)
               for s in page]
              for after, upto in ranges]

    assert [key for shard in shards for key in shard] == keys
    assert all(shards)
    assert shards[0][-1] == keys[2]
    assert shards[-1] == [keys[-1]]
    for (after, upto), shard in zip(ranges, shards, strict=True):
        assert reader.count_sessions(scope, ExportFilters(), after, upto) == len(shard)
        assert list(reader.session_keys(scope, ExportFilters(), after, upto)) == shard


def test_resuming_after_a_page_reads_the_rest(seeded_db: SeededDb) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    first, *rest = reader.iter_session_pages(scope, ExportFilters(), page_size=5)

    resumed = reader.iter_session_pages(scope, ExportFilters(), after=first[-1]["sessionId"],
                                        page_size=5)

    assert [s["sessionId"] for page in resumed for s in page] == [
        s["sessionId"] for page in rest for s in page]


# --- messages ------------------------------------------------------------------------------------

def test_messages_come_in_time_order_and_complete(seeded_db: SeededDb, data: Dataset) -> None:
    for session, messages in read_all(OwnerScope(seeded_db.db, DEMO_USER_ID), ExportFilters(),
                                      batch_size=7):
        order = [(m["timestamp"], m["uuid"]) for m in messages]
        assert order == sorted(order)
        assert len(messages) == session["messageCount"]
        assert messages == data.messages[session["sessionId"]]


def test_a_consumer_may_leave_a_session_unread(seeded_db: SeededDb, data: Dataset) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    firsts = []
    for page in reader.iter_session_pages(scope, ExportFilters(), page_size=10):
        for session, messages in reader.iter_messages(scope, page, ExportFilters()):
            firsts.append((session["sessionId"], next(messages)["uuid"]))

    assert firsts == [(s["sessionId"], data.messages[s["sessionId"]][0]["uuid"])
                      for s in data.sessions_of(DEMO_USER_ID)]


def test_a_session_read_after_moving_on_raises(seeded_db: SeededDb) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    page = next(reader.iter_session_pages(scope, ExportFilters(), page_size=2))
    pairs = reader.iter_messages(scope, page, ExportFilters())
    _, first_messages = next(pairs)
    next(pairs)

    with pytest.raises(RuntimeError, match="after moving on"):
        next(first_messages)


def test_types_survive_the_round_trip(seeded_db: SeededDb) -> None:
    (session, messages), *_ = read_all(OwnerScope(seeded_db.db, DEMO_USER_ID),
                                       ExportFilters(models=[OPUS]))

    assert isinstance(session["_id"], ObjectId)
    assert isinstance(session["projectId"], ObjectId)
    assert isinstance(session["totalCost"], Decimal128)
    assert session["startedAt"].utcoffset() == timedelta(0)
    assert all(isinstance(m["costUsd"], Decimal128) for m in messages)
    assert all(m["timestamp"].tzinfo is not None for m in messages)


class _Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.started_events: list[monitoring.CommandStartedEvent] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.started_events.append(event)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        return [dict(e.command) for e in self.started_events if e.command_name == name]


def _one_session(db: Database[Document], messages: int,
                 start: datetime) -> tuple[str, ObjectId, str]:
    """A user with one project and one session of `messages` messages, one a second."""
    user_id, project_id, session_id = ObjectId(), ObjectId(), "0bce4261-0add-4645-8d72-888c914"
    db.projects.insert_one({"_id": project_id, "user_id": user_id, "name": "p", "path": "/p"})
    times = [start + timedelta(seconds=i) for i in range(messages)]
    db.sessions.insert_one({"sessionId": session_id, "projectId": project_id,
                            "startedAt": times[0], "endedAt": times[-1],
                            "totalCost": Decimal128("0")})
    for i, moment in enumerate(times):
        message_collection_for(db, moment, Layout.MONTHLY).insert_one(
            {"uuid": f"m{i:03d}", "sessionId": session_id, "type": "user",
             "timestamp": moment, "isSidechain": False, "content": str(i)})
    return str(user_id), project_id, session_id


def test_a_session_larger_than_a_batch_streams(mongo_uri: str, mongo_db: Database[Document],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 messages across a month boundary: two collections, merged; read ahead (in a thread)
    # by at most PREFETCH_DEPTH hand-overs of PREFETCH_CHUNK messages
    monkeypatch.setattr(reader, "PREFETCH_CHUNK", 5)
    monkeypatch.setattr(reader, "PREFETCH_DEPTH", 1)
    user_id, _, _ = _one_session(mongo_db, 40, datetime(2025, 7, 31, 23, 59, 40, tzinfo=UTC))
    commands = _Commands()
    client: MongoClient[Document] = MongoClient(mongo_uri, tz_aware=True,
                                                event_listeners=[commands])
    try:
        scope = OwnerScope(client[mongo_db.name], user_id)
        (page,) = reader.iter_session_pages(scope, ExportFilters())
        pairs = reader.iter_messages(scope, page, ExportFilters(), batch_size=5)
        _, messages = next(pairs)

        first = next(messages)
        time.sleep(0.5)  # the read-ahead thread fills its queue and waits
        # held at most: the chunk in use, one queued, one built and waiting (15 messages), a
        # head per cursor and the run's lookahead, each cursor's batch: 28 messages, 6
        # batches of 5, so at most 4 getMores of the 6 the whole session needs
        assert len(commands.named("getMore")) <= 4
        rest = list(messages)
    finally:
        client.close()

    assert [m["uuid"] for m in [first, *rest]] == [f"m{i:03d}" for i in range(40)]
    finds = [c for c in commands.named("find") if c["find"].startswith("messages_")]
    assert sorted(c["find"] for c in finds) == ["messages_2025_07", "messages_2025_08"]
    assert all(c["batchSize"] == 5 for c in finds + commands.named("getMore"))
    assert len(commands.named("getMore")) >= 40 // 5 - 2


def test_a_date_written_by_an_update_is_stored_as_a_date(mongo_db: Database[Document]) -> None:
    """$set, $max, $push, findAndModify and bulk updates store a datetime as a date (the embedded
    server's SQL tier once stored it as text, which no date range matched)."""
    written = datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=UTC)
    sessions = mongo_db.sessions
    sessions.insert_many([{"sessionId": f"s{n}", "summary": "s", "marks": [],
                           "updatedAt": written - timedelta(days=9)} for n in range(5)])
    sessions.update_one({"sessionId": "s0"},
                        {"$set": {"summary": "renamed", "updatedAt": written}})
    sessions.update_many({"sessionId": "s1"},
                         {"$set": {"updatedAt": written, "nested.at": written}})
    sessions.bulk_write([UpdateOne({"sessionId": "s2"}, {"$max": {"updatedAt": written}})])
    sessions.find_one_and_update({"sessionId": "s3"}, {"$set": {"updatedAt": written},
                                                       "$push": {"marks": written}},
                                 return_document=ReturnDocument.AFTER)
    sessions.update_one({"sessionId": "s9"}, {"$set": {"updatedAt": written}}, upsert=True)

    stored = {doc["sessionId"]: doc for doc in sessions.find()}
    for name in ("s0", "s1", "s2", "s3", "s9"):
        value = stored[name]["updatedAt"]
        assert isinstance(value, datetime), (name, value)
        assert value.replace(tzinfo=UTC) == written
    assert stored["s0"]["summary"] == "renamed"
    assert isinstance(stored["s1"]["nested"]["at"], datetime)
    assert [mark.replace(tzinfo=UTC) for mark in stored["s3"]["marks"]] == [written]
    window = {"updatedAt": {"$gt": written - timedelta(seconds=1), "$lte": written}}
    assert sorted(doc["sessionId"] for doc in sessions.find(window)) == \
        ["s0", "s1", "s2", "s3", "s9"]
    assert stored["s4"]["updatedAt"].replace(tzinfo=UTC) == written - timedelta(days=9)


def test_a_lookup_of_many_values_reads_only_their_index_entries(
        mongo_db: Database[Document]) -> None:
    """`one_of` (a $in and the range around it) is answered from the field's index, one point
    per value, as MongoDB answers it: not by reading every entry of the range (the embedded
    server once did, so random uuids read the whole collection)."""
    messages = mongo_db.messages_2025_07
    messages.create_index("uuid", unique=True)
    messages.insert_many([{"uuid": f"{n:04d}-u", "sessionId": f"s{n % 3}",
                           "tags": [f"{n:04d}-u"]} for n in range(300)])
    wanted = ["0007-u", "0150-u", "0299-u", "0500-u", "0000-x"]  # two held nowhere
    found = sorted(doc["uuid"] for doc in messages.find({"uuid": one_of(wanted)}))
    assert found == ["0007-u", "0150-u", "0299-u"]
    plan = mongo_db.command({"explain": {"find": "messages_2025_07",
                                         "filter": {"uuid": one_of(wanted)}}})
    assert "(<expr>=?)" in str(plan["queryPlanner"]["winningPlan"]), plan["queryPlanner"]
    # any other $in keeps MongoDB's meaning: an array field matches by any of its elements
    assert messages.count_documents({"tags": {"$in": ["0003-u", "0004-u"]}}) == 2


def test_sessions_without_messages(mongo_db: Database[Document]) -> None:
    user_id, project_id, session_id = _one_session(mongo_db, 2,
                                                   datetime(2025, 8, 1, tzinfo=UTC))
    mongo_db.sessions.insert_one({"sessionId": "ffff-empty", "projectId": project_id,
                                  "totalCost": Decimal128("0")})
    scope = OwnerScope(mongo_db, user_id)

    assert ids_of(read_all(scope, ExportFilters())) == [
        (session_id, ["m000", "m001"]), ("ffff-empty", [])]
    # with a message-level filter a session left without messages is left out
    assert ids_of(read_all(scope, ExportFilters(include_sidechains=False))) == [
        (session_id, ["m000", "m001"])]


# --- collections ---------------------------------------------------------------------------------

def test_layout_detection_and_routing(mongo_db: Database[Document]) -> None:
    tokyo = datetime(2025, 8, 1, 5, tzinfo=timezone(timedelta(hours=9)))  # 2025-07-31 20:00Z

    assert detect_layout(mongo_db) is Layout.SINGLE
    assert message_collection_for(mongo_db, tokyo).name == "messages"
    assert collection_name_for(Layout.MONTHLY, tokyo) == "messages_2025_07"

    mongo_db["messages_2025_07"].insert_one({"uuid": "x"})
    mongo_db["messagesX"].insert_one({"uuid": "not a message collection"})

    assert detect_layout(mongo_db) is Layout.MONTHLY
    assert message_collection_for(mongo_db, tokyo).name == "messages_2025_07"
    assert message_collections(mongo_db) == ["messages_2025_07"]


@pytest.mark.parametrize("preferred", [Layout.SINGLE, Layout.MONTHLY])
def test_a_database_without_message_collections_is_written_in_the_layout_preferred(
        mongo_db: Database[Document], preferred: Layout) -> None:
    """A restore into a fresh database writes its backup's layout; a database that has
    message collections keeps its own, whatever is preferred."""
    july = datetime(2025, 7, 31, 20, tzinfo=UTC)
    mongo_db[SESSIONS].insert_one({"sessionId": "s"})  # other collections are no layout
    assert layout_in_use(mongo_db) is None
    assert detect_layout(mongo_db, preferred) is preferred
    assert Target(mongo_db, preferred).collection_for(july) == collection_name_for(
        preferred, july)
    assert layout_in_use(mongo_db) is preferred  # the collection made, indexed

    other = Layout.MONTHLY if preferred is Layout.SINGLE else Layout.SINGLE
    assert detect_layout(mongo_db, other) is preferred  # the database's own now
    assert Target(mongo_db, other).collection_for(july) == collection_name_for(preferred, july)


def test_ensure_indexes(mongo_db: Database[Document]) -> None:
    mongo_db["messages_2025_07"].insert_one({"uuid": "x"})
    mongo_db["messages_2025_08"].insert_one({"uuid": "y"})

    ensure_indexes(mongo_db)
    ensure_indexes(mongo_db)  # idempotent

    def keys(collection: str) -> set[tuple[tuple[tuple[str, Any], ...], bool]]:
        info = mongo_db[collection].index_information().values()
        return {(tuple(map(tuple, index["key"])), bool(index.get("unique"))) for index in info}

    assert keys("sessions") >= {((("sessionId", 1),), True), ((("projectId", 1),), False)}
    assert keys("projects") >= {((("user_id", 1),), False)}
    for name in ("messages_2025_07", "messages_2025_08"):
        assert keys(name) >= {((("uuid", 1),), True),
                              ((("sessionId", 1), ("timestamp", 1)), False)}
    assert "messages" not in mongo_db.list_collection_names()


# --- sample data ---------------------------------------------------------------------------------

def test_seeded_sessions_agree_with_their_messages(data: Dataset) -> None:
    for session in data.sessions:
        messages = data.messages[session["sessionId"]]
        assistants = [m for m in messages if "costUsd" in m]
        assert session["messageCount"] == len(messages)
        assert session["totalCost"].to_decimal() == sum(
            (m["costUsd"].to_decimal() for m in assistants), Decimal(0))
        assert session["startedAt"] == messages[0]["timestamp"]
        assert session["endedAt"] == max(m["timestamp"] for m in messages)
        assert session["outputTokens"] == sum(m["usage"]["output_tokens"] for m in assistants)
        assert session["totalTokens"] == session["inputTokens"] + session["outputTokens"]
        assert session["toolsUsed"] == sum(m["type"] == "tool_use" for m in messages)


def test_seeded_messages_have_claude_code_shape(data: Dataset) -> None:
    for messages in data.messages.values():
        uuids = {m["uuid"] for m in messages}
        for m in messages:
            assert m["parentUuid"] is None or m["parentUuid"] in uuids
            assert m["userType"] == "external"
            if "_tool_" in m["uuid"] or "_result_" in m["uuid"]:
                assert m["uuid"].startswith(m["parentUuid"])
                assert m["type"] in ("tool_use", "tool_result")
                assert m["isSidechain"] is True
                assert "contentHash" not in m
            else:
                assert m["type"] in ("user", "assistant")
                assert m["contentHash"] == content_hash(m["uuid"], m["type"], m["timestamp"],
                                                        m["content"])


SCRIPTS: dict[str, Callable[[str], bool]] = {
    "CJK": lambda c: "\u4e00" <= c <= "\u9fff",
    "Hangul": lambda c: "\uac00" <= c <= "\ud7a3",
    "Greek": lambda c: "\u0370" <= c <= "\u03ff",
    "Cyrillic": lambda c: "\u0400" <= c <= "\u04ff",
    "Hebrew (RTL)": lambda c: "\u0590" <= c <= "\u05ff",
    "Arabic (RTL)": lambda c: "\u0600" <= c <= "\u06ff",
    "combining mark": lambda c: "\u0300" <= c <= "\u036f",
    "emoji": lambda c: c >= "\U0001f300",
    "line separator": lambda c: c == "\u2028",
}


def test_seeded_data_has_the_awkward_parts(seeded_db: SeededDb, data: Dataset) -> None:
    messages = [m for docs in data.messages.values() for m in docs]
    characters = set("".join(m["content"] for m in messages))
    user_children: dict[str, int] = defaultdict(int)
    for m in messages:
        if m["type"] == "user" and m["parentUuid"]:
            user_children[m["parentUuid"]] += 1

    assert seeded_db.summary.users[0].user_id == DEMO_USER_ID
    assert len({user.user_id for user in seeded_db.summary.users}) == 3
    for script, is_in in SCRIPTS.items():
        assert any(map(is_in, characters)), script
    assert any("```python" in m["content"] for m in messages)
    assert any(m["isSidechain"] and m["type"] == "assistant" for m in messages)
    assert any("thinking" in m for m in messages)
    assert len({m["model"] for m in messages if "model" in m}) > 1
    assert any(count > 1 for count in user_children.values())  # an edited prompt: a branch
    for m in messages:
        assert data.collection_of[m["uuid"]] == collection_name_for(Layout.MONTHLY,
                                                                    m["timestamp"])


def test_seeding_is_deterministic(mongo_client: MongoClient[Document], seeded_db: SeededDb,
                                  data: Dataset) -> None:
    with seeded_database(mongo_client) as again:
        assert again.summary.users == seeded_db.summary.users
        assert Dataset.read(again.db) == data
    with seeded_database(mongo_client, users=2, projects_per_user=1, sessions_per_project=1,
                         seed=8) as other:
        assert other.summary.users[0].user_id == DEMO_USER_ID
        assert other.summary.users[1].user_id != seeded_db.summary.users[1].user_id


def test_seeding_refuses_to_mix_layouts(seeded_db: SeededDb) -> None:
    with pytest.raises(ValueError, match="layout"):
        seed(seeded_db.db, layout="single")


# --- the embedded server -------------------------------------------------------------------------

def test_embedded_server_stops_without_leftovers() -> None:
    with mongo_server.running() as server:
        client: MongoClient[Document] = MongoClient(server.uri)
        assert client.admin.command("ping")["ok"] == 1
        client.close()

    assert server.process.poll() is not None
    assert not server.workdir.exists()


# --- a shard's messages: one cursor per message collection --------------------------------------

def read_shard(scope: OwnerScope, filters: ExportFilters, *, page_size: int = 100,
               batch_size: int = 500, after: str | None = None,
               upto: str | None = None) -> list[tuple[Document, list[Document]]]:
    with reader.ShardMessages(scope, filters, after=after, upto=upto,
                              batch_size=batch_size) as shard:
        return [(session, list(messages))
                for page in reader.iter_session_pages(scope, filters, after, upto, page_size)
                for session, messages in shard.pairs(page)]


@pytest.mark.parametrize("layout", ["monthly", "single"])
@pytest.mark.parametrize("case", FILTERS)
def test_shard_messages_give_what_the_contract_says(layouts: dict[str, Database[Document]],
                                                    data: Dataset, layout: str,
                                                    case: str) -> None:
    filters = FILTERS[case](data)
    scope = OwnerScope(layouts[layout], DEMO_USER_ID)

    got = read_shard(scope, filters, page_size=4, batch_size=16)

    assert ids_of(got) == data.expected(DEMO_USER_ID, filters)
    assert got == read_all(scope, filters, page_size=4, batch_size=16)  # documents too


def test_shard_messages_of_keyset_ranges_partition_the_data(seeded_db: SeededDb,
                                                            data: Dataset) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    keys = list(reader.session_keys(scope, ExportFilters()))
    ranges = list(pairwise([None, keys[2], "8", keys[-2], None]))

    shards = [read_shard(scope, ExportFilters(), page_size=3, batch_size=7, after=after,
                         upto=upto) for after, upto in ranges]

    assert all(shards)
    assert [pair for shard in shards for pair in ids_of(shard)] == data.expected(
        DEMO_USER_ID, ExportFilters())


def test_shard_messages_open_one_cursor_per_collection_for_all_pages(
        mongo_uri: str, seeded_db: SeededDb, data: Dataset) -> None:
    commands = _Commands()
    client: MongoClient[Document] = MongoClient(mongo_uri, tz_aware=True,
                                                event_listeners=[commands])
    try:
        scope = OwnerScope(client[seeded_db.db.name], DEMO_USER_ID)
        pages = list(reader.iter_session_pages(scope, ExportFilters(), page_size=3))
        with reader.ShardMessages(scope, ExportFilters(), batch_size=8) as shard:
            read = [(session, list(messages)) for page in pages
                    for session, messages in shard.pairs(page)]
    finally:
        client.close()

    assert len(pages) > 3
    assert ids_of(read) == data.expected(DEMO_USER_ID, ExportFilters())
    finds = [c for c in commands.named("find") if c["find"].startswith("messages")]
    assert sorted(c["find"] for c in finds) == message_collections(seeded_db.db)
    assert all(c["sort"] == {"sessionId": 1, "timestamp": 1} for c in finds)
    assert all(c["batchSize"] == 8 for c in finds)
    getmores = [c for c in commands.named("getMore") if c["collection"].startswith("messages")]
    assert len(getmores) >= sum(len(m) for _, m in read) // 8 - len(finds)
    # the keys of the shard's sessions, read once, projection only
    [keys] = [c for c in commands.named("find") if c["find"] == "sessions"
              and c.get("projection") == {"sessionId": 1, "projectId": 1, "_id": 0}]
    assert keys["filter"]["projectId"] == {"$in": sorted(data.project_ids(DEMO_USER_ID))}


def test_a_new_invocation_resumes_after_the_last_session(seeded_db: SeededDb,
                                                         data: Dataset) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    first: list[tuple[Document, list[Document]]] = []
    with reader.ShardMessages(scope, ExportFilters(), batch_size=5) as shard:
        for page in reader.iter_session_pages(scope, ExportFilters(), page_size=4):
            first += [(session, list(messages)) for session, messages in shard.pairs(page)]
            if len(first) >= 8:
                break  # the time budget ran low: cursors closed with the invocation

    rest = read_shard(scope, ExportFilters(), page_size=4, batch_size=5,
                      after=first[-1][0]["sessionId"])

    assert ids_of(first + rest) == data.expected(DEMO_USER_ID, ExportFilters())


def test_shard_messages_are_scoped_to_the_owner(seeded_db: SeededDb, data: Dataset) -> None:
    for user in seeded_db.summary.users:
        scope = OwnerScope(seeded_db.db, user.user_id)
        read = read_shard(scope, ExportFilters(), page_size=5)
        assert ids_of(read) == data.expected(user.user_id, ExportFilters())
        assert sum(len(messages) for _, messages in read) == user.messages


def test_shard_pages_must_advance(seeded_db: SeededDb) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    first, second, *_ = reader.iter_session_pages(scope, ExportFilters(), page_size=2)
    with reader.ShardMessages(scope, ExportFilters()) as shard:
        list(shard.pairs(second))
        with pytest.raises(ValueError, match="sessionId order"):
            list(shard.pairs(first))


def test_shard_messages_a_session_read_after_moving_on_raises(seeded_db: SeededDb) -> None:
    scope = OwnerScope(seeded_db.db, DEMO_USER_ID)
    page = next(reader.iter_session_pages(scope, ExportFilters(), page_size=2))
    with reader.ShardMessages(scope, ExportFilters()) as shard:
        pairs = shard.pairs(page)
        _, first_messages = next(pairs)
        next(pairs)
        with pytest.raises(RuntimeError, match="after moving on"):
            next(first_messages)


def test_a_session_created_after_the_shard_opened_is_read_too(
        mongo_db: Database[Document]) -> None:
    user_id, project_id, session_id = _one_session(mongo_db, 3,
                                                   datetime(2025, 8, 1, tzinfo=UTC))
    scope = OwnerScope(mongo_db, user_id)
    with reader.ShardMessages(scope, ExportFilters()) as shard:
        (page,) = reader.iter_session_pages(scope, ExportFilters())
        assert ids_of([(s, list(m)) for s, m in shard.pairs(page)]) == [
            (session_id, ["m000", "m001", "m002"])]
        late = {"sessionId": "ffff-late", "projectId": project_id, "totalCost": Decimal128("0")}
        mongo_db.sessions.insert_one(late)
        mongo_db["messages_2025_08"].insert_one(
            {"uuid": "late-1", "sessionId": "ffff-late", "type": "user", "isSidechain": False,
             "timestamp": datetime(2025, 8, 2, tzinfo=UTC), "content": "late"})
        (page,) = reader.iter_session_pages(scope, ExportFilters(), after=session_id)
        assert ids_of([(s, list(m)) for s, m in shard.pairs(page)]) == [("ffff-late", ["late-1"])]


def test_messages_sharing_a_timestamp_come_in_uuid_order(mongo_db: Database[Document]) -> None:
    """A message and its derived tool documents share a timestamp: the server sorts by
    (sessionId, timestamp) only (index order, no sort stage), ties are ordered by uuid as they
    stream, across collections too; a missing timestamp first, as MongoDB sorts null."""
    user_id, _, session_id = _one_session(mongo_db, 2,
                                                   datetime(2025, 7, 31, 23, 59, 59, tzinfo=UTC))
    tie = datetime(2025, 7, 31, 23, 59, 59, 500000, tzinfo=UTC)
    for uuid in ["t_result_0", "t", "t_tool_1", "t_tool_0"]:  # not in uuid order
        mongo_db["messages_2025_07"].insert_one(
            {"uuid": uuid, "sessionId": session_id, "type": "user", "isSidechain": False,
             "timestamp": tie, "content": uuid})
    for uuid in ["z-no-time", "a-no-time"]:
        mongo_db["messages_2025_08"].insert_one(
            {"uuid": uuid, "sessionId": session_id, "type": "user", "isSidechain": False,
             "timestamp": None, "content": uuid})
    scope = OwnerScope(mongo_db, user_id)

    expected = [(session_id, ["a-no-time", "z-no-time", "m000", "t", "t_result_0", "t_tool_0",
                              "t_tool_1", "m001"])]
    assert ids_of(read_shard(scope, ExportFilters(), batch_size=2)) == expected
    assert ids_of(read_all(scope, ExportFilters(), batch_size=2)) == expected


def test_shard_cursors_share_the_batch(mongo_uri: str, seeded_db: SeededDb) -> None:
    """Years of monthly collections must not each hold a full batch at the same time."""
    collections = len(message_collections(seeded_db.db))
    commands = _Commands()
    client: MongoClient[Document] = MongoClient(mongo_uri, tz_aware=True,
                                                event_listeners=[commands])
    try:
        scope = OwnerScope(client[seeded_db.db.name], DEMO_USER_ID)
        page = next(reader.iter_session_pages(scope, ExportFilters(), page_size=3))
        with reader.ShardMessages(scope, ExportFilters(), batch_size=100 * collections) as shard:
            for _, messages in shard.pairs(page):
                list(messages)
    finally:
        client.close()

    finds = [c for c in commands.named("find") if c["find"].startswith("messages")]
    assert len(finds) == collections > 1
    assert {c["batchSize"] for c in finds} == {100}
    assert reader.MIN_CURSOR_BATCH <= 100
