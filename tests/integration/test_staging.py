"""Import staging (source.staging) on the embedded MongoDB: light sessions' uuids read for a
group of sessions in one query are each session's own, in upload order."""

from __future__ import annotations

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


def test_light_uuids_of_many_sessions_in_one_query(mongo_db: Database[Document],
                                                   mongo_uri: str) -> None:
    staging = Staging(mongo_db, "job-light")
    staging.ensure_indexes()
    other = Staging(mongo_db, "job-other")  # another job's uuids stay out
    sessions = {f"s:{i}": [f"u{i}-{n}" for n in range(i * 3)] for i in range(5)}
    for each in (staging, other):
        writer = each.writer(batch_size=4, classify=lambda ids: set())  # all light
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
