"""The look-up of uuids held elsewhere (source.conflicts.UserData.identify_each): shared between
consecutive sessions, and deciding for each exactly what a look-up of its own decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring
from pymongo.database import Database

from dataport.errors import IdTaken
from dataport.source.collections import is_message_collection
from dataport.source.conflicts import LOOKUP_BATCH, StoredSession, UserData
from dataport.source.identity import SessionIds
from dataport.source.mongo import Document

KEY = b"k" * 32
START = datetime(2025, 7, 31, 23, 59, 50, tzinfo=UTC)  # messages on both sides of a month


class _Finds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.collections: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.collections.append(str(event.command["find"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _message(db: Database[Document], uuid: str, session_id: str, seconds: int) -> None:
    moment = START + timedelta(seconds=seconds)
    db[f"messages_{moment:%Y_%m}"].insert_one(
        {"uuid": uuid, "sessionId": session_id, "type": "user", "timestamp": moment,
         "content": uuid})


def _user(db: Database[Document], session_id: str) -> tuple[str, StoredSession]:
    user_id, project_id = ObjectId(), ObjectId()
    db.projects.insert_one({"_id": project_id, "user_id": user_id, "name": "p", "path": "/p"})
    doc = {"sessionId": session_id, "projectId": project_id}
    db.sessions.insert_one(dict(doc))
    return str(user_id), StoredSession(session_id, session_id, False, doc)


def _decisions(ids: SessionIds, uuids: list[str]) -> list[str]:
    return [ids.uuid(value) for value in uuids]


def test_sessions_share_their_lookups_and_decide_as_alone(mongo_uri: str,
                                                          mongo_db: Database[Document]) -> None:
    user_id, mine = _user(mongo_db, "mine")
    for i in range(20):  # the user's session, across two monthly collections
        _message(mongo_db, f"own-{i}", "mine", i)
    _message(mongo_db, "theirs", "someone-elses", 3)  # another account's message
    # 30 new sessions of 10 messages; two name a uuid held elsewhere, and the user's session
    # comes back with its own uuids and one of another session
    new = [(StoredSession(f"s{n:02d}", f"s{n:02d}", False, None),
            [f"s{n:02d}-{i}" for i in range(10)]) for n in range(30)]
    new[4][1][3] = "theirs"
    new[17][1][0] = "own-5"
    sessions = [*new[:10], (mine, [f"own-{i}" for i in range(20)] + ["s29-1x"]), *new[10:]]

    alone = UserData(mongo_db, user_id, KEY)
    expected = [alone.identify(stored, uuids) for stored, uuids in sessions]

    finds = _Finds()
    client: MongoClient[Document] = MongoClient(mongo_uri, tz_aware=True,
                                                event_listeners=[finds])
    try:
        shared = UserData(client[mongo_db.name], user_id, KEY)
        got = [(payload, identity) for payload, _, identity in
               shared.identify_each((n, stored, uuids)
                                    for n, (stored, uuids) in enumerate(sessions))]
    finally:
        client.close()

    assert [payload for payload, _ in got] == list(range(len(sessions)))
    for (_, uuids), (ids, copied), (_, identity) in zip(sessions, expected, got, strict=True):
        assert identity is not None
        assert identity.resolved()[1] == copied
        assert _decisions(identity.resolved()[0], uuids) == _decisions(ids, uuids)
    renamed = {n for n, (_, copied) in enumerate(expected) if copied}
    assert renamed == {4, 18}  # "theirs", and "own-5" outside the user's session
    messages = [name for name in finds.collections if is_message_collection(name)]
    # 321 uuids: one $in per message collection, and one more for the renamed ones
    assert len(sessions) * 2 > len(messages) == 2 * 2


def test_lookups_hold_about_a_batch_of_uuids(mongo_db: Database[Document]) -> None:
    user_id, _ = _user(mongo_db, "mine")
    _message(mongo_db, "held", "mine", 0)
    calls: list[int] = []
    user = UserData(mongo_db, user_id, KEY)
    holders = user._holders

    def counted(uuids: Any) -> Any:
        calls.append(len(uuids))
        return holders(uuids)

    user._holders = counted  # type: ignore[method-assign]
    big = LOOKUP_BATCH // 4
    sessions = [(n, StoredSession(f"s{n}", f"s{n}", False, None),
                 [f"s{n}-{i}" for i in range(big)]) for n in range(10)]
    assert [n for n, _, _ in user.identify_each(iter(sessions))] == list(range(10))
    assert [n for n in calls if n] == [LOOKUP_BATCH, LOOKUP_BATCH, 2 * big]


def test_a_taken_derived_id_raises_when_its_session_is_used(
        mongo_db: Database[Document]) -> None:
    user_id, _ = _user(mongo_db, "mine")
    _message(mongo_db, "theirs", "someone-elses", 0)
    first = StoredSession("a", "a", False, None)
    second = StoredSession("b", "b", False, None)
    derived = SessionIds(KEY, user_id, "b", False, frozenset({"theirs"})).uuid("theirs")
    _message(mongo_db, derived, "someone-elses", 1)  # the derived id, already held
    out = UserData(mongo_db, user_id, KEY).identify_each(
        [(1, first, ["a-1"]), (2, second, ["theirs", "b-1"])])
    _, _, one = next(out)
    assert one is not None
    assert one.resolved()[1] == 0
    _, _, two = next(out)
    assert two is not None
    with pytest.raises(IdTaken):
        two.resolved()
