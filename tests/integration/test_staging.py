"""Import staging (source.staging) on the embedded MongoDB: light sessions' uuids read for a
group of sessions in one query are each session's own, in upload order; a writer whose batches
go to its own thread (validation's) stages the same, raises what a batch's write raised, and
leaves no write running once settled."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from pymongo import MongoClient, monitoring
from pymongo.database import Database

from dataport.models.records import ImportRecord, Location, RecordKind
from dataport.source.mongo import Document
from dataport.source.staging import STAGING, Staging


class _Finds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += event.command_name == "find"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("background", [False, True])
def test_light_uuids_of_many_sessions_in_one_query(mongo_db: Database[Document],
                                                   mongo_uri: str, background: bool) -> None:
    staging = Staging(mongo_db, "job-light")
    staging.ensure_indexes()
    other = Staging(mongo_db, "job-other")  # another job's uuids stay out
    sessions = {f"s:{i}": [f"u{i}-{n}" for n in range(i * 3)] for i in range(5)}
    for each in (staging, other):
        writer = each.writer(batch_size=4, classify=lambda ids: set(),  # all light
                             background=background)
        writer.add(ImportRecord(RecordKind.PROJECT, {"path": "/p", "name": "p"},
                                Location("a.json")))
        for session_id, uuids in sessions.items():
            writer.add(ImportRecord(RecordKind.SESSION, {"sessionId": session_id},
                                    Location("a.json")))
            for value in uuids:
                writer.add(ImportRecord(RecordKind.MESSAGE, {"sessionId": session_id,
                                                              "uuid": value},
                                        Location("a.json")))
        writer.close()
    assert mongo_db[STAGING].count_documents({"g": {"$regex": ":u:s:3$"}}) > 2  # chunked

    finds = _Finds()
    client: MongoClient[Document] = MongoClient(mongo_uri, event_listeners=[finds])
    listened = Staging(client[mongo_db.name], "job-light")
    wanted = ["s:4", "s:0", "s:3"]
    assert listened.light_uuids(wanted) == {sid: sessions[sid] for sid in wanted}
    assert finds.count == 1
    assert {sid: list(staging.message_uuids(sid, light=True)) for sid in wanted} == {
        sid: sessions[sid] for sid in wanted}
    assert staging.light_uuids([]) == {}
    client.close()


def test_a_write_in_the_writers_thread_that_fails_is_raised_and_settle_leaves_none_running(
        mongo_db: Database[Document]) -> None:
    staging = Staging(mongo_db, "job-background")
    staging.ensure_indexes()
    looked_up: list[Sequence[str]] = []

    def classify(session_ids: Sequence[str]) -> set[str]:
        looked_up.append(session_ids)
        if len(looked_up) > 1:
            raise RuntimeError("the look-up failed")
        return set()

    writer = staging.writer(batch_size=4, classify=classify, background=True)

    def stage_all() -> None:
        writer.add(ImportRecord(RecordKind.PROJECT, {"path": "/p"}, Location("a.json")))
        for i in range(20):
            writer.add(ImportRecord(RecordKind.SESSION, {"sessionId": f"s{i}"},
                                    Location("a.json")))
            for n in range(3):
                writer.add(ImportRecord(RecordKind.MESSAGE, {"sessionId": f"s{i}",
                                                              "uuid": f"u{i}-{n}"},
                                        Location("a.json")))
        writer.close()

    with pytest.raises(RuntimeError, match="the look-up failed"):
        stage_all()
    assert len(looked_up) == 2  # the batch after the failed one was never written
    writer.settle()
    assert not [t for t in threading.enumerate() if t.name.startswith("staging-writes")]
    staging.drop()
    assert staging.count() == 0  # nothing written after the drop
