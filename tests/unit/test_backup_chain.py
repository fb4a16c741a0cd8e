"""Backup chains (dataport.backups.chain) and the backup writer (dataport.backups.writer): what a
chain holds at its end, streamed, and the deletions an increment records."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

import pyzipper
from bson import ObjectId

from dataport.backups.chain import (
    chain_projects,
    chain_sessions,
    deletion_lines,
    session_deletions,
)
from dataport.backups.format import (
    DELETIONS_MEMBER,
    MANIFEST_NAME,
    BackupContainer,
    BackupManifest,
    Compression,
    MemberEntry,
    MemberWriter,
    collection_of,
    member_path,
)
from dataport.backups.writer import BackupWriter
from dataport.formats.base import ExportContext
from tests.unit.format_sink import MemorySink, messages, project_doc, session_doc

P1, P2 = ObjectId(b"p1-000000000"), ObjectId(b"p2-000000000")
NOW = datetime(2026, 1, 2, tzinfo=UTC)


def _backup(sessions: list[str], deletions: list[dict[str, Any]] | None = None,
            projects: tuple[ObjectId, ...] = (P1, P2)) -> Callable[[], IO[bytes]]:
    """A stored backup (zip bytes) holding these sessions (split over two members, in order),
    projects and deletions."""
    members: dict[str, tuple[str, list[dict[str, Any]]]] = {
        member_path("projects", 0, 0): ("projects", [{"_id": p} for p in projects]),
        member_path("sessions", 1, 1): ("sessions", [{"sessionId": s}
                                                      for s in sessions[:len(sessions) // 2]]),
        member_path("sessions", 2, 1): ("sessions", [{"sessionId": s}
                                                      for s in sessions[len(sessions) // 2:]])}
    if deletions is not None:
        members[DELETIONS_MEMBER] = ("deletions", deletions)
    out = io.BytesIO()
    entries = []
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_STORED) as archive:
        for path, (collection, docs) in members.items():
            data = io.BytesIO()
            writer = MemberWriter(data.write)
            for doc in docs:
                writer.write(doc)
            stats = writer.close()
            archive.writestr(path, data.getvalue())
            entries.append(MemberEntry(path=path, collection=collection, **stats.model_dump()))
        manifest = BackupManifest(backup_id="b", name="n", scope="user", type="full",
                                  watermark=NOW, created_at=NOW,
                                  compression=Compression(level=3), members=entries)
        archive.writestr(MANIFEST_NAME, manifest.to_json())
    stored = out.getvalue()
    return lambda: io.BytesIO(stored)


def test_a_chain_holds_what_its_backups_add_and_take_away_in_order() -> None:
    base = _backup(["a", "b", "c", "d"])
    first = _backup(["b", "e"], [{"collection": "sessions", "sessionId": "c"},
                                 {"collection": "projects", "_id": P2}], projects=(P1,))
    second = _backup(["c"], [{"collection": "sessions", "sessionId": "a"}], projects=(P1,))

    assert list(chain_sessions([base])) == ["a", "b", "c", "d"]
    assert list(chain_sessions([base, first])) == ["a", "b", "d", "e"]
    # c deleted by the first increment, back in the second; a deleted by the second
    assert list(chain_sessions([base, first, second])) == ["b", "c", "d", "e"]
    assert chain_projects([base]) == {P1, P2}
    assert chain_projects([base, first, second]) == {P1}


def test_deletions_are_what_the_chain_holds_and_the_source_lacks() -> None:
    assert list(session_deletions(iter(["a", "b", "d", "e"]), iter(["b", "c", "e", "f"]))) == [
        "a", "d"]
    assert list(session_deletions(iter(["a"]), iter([]))) == ["a"]
    assert list(session_deletions(iter([]), iter(["a"]))) == []
    assert list(deletion_lines(["a"], {P2, P1})) == [
        {"collection": "sessions", "sessionId": "a"},
        {"collection": "projects", "_id": P1}, {"collection": "projects", "_id": P2}]


def test_the_backup_writer_writes_members_that_describe_themselves() -> None:
    sink = MemorySink()
    context = ExportContext(job_id="j", owner_id="u", created_at=NOW, format="backup")
    writer = BackupWriter(sink, context=context, split_bytes=2000, level=3, shard=4,
                          first_seq=7)
    writer.write_projects([project_doc()])
    session, docs = session_doc(), messages()
    writer.begin_session(project_doc(), session)
    for message in docs:
        writer.write_message(message)
    writer.end_session()
    writer.close()

    paths = [file.path for file in sink.files]
    assert paths[:3] == ["projects/00004-00007.jsonl.zst", "sessions/00004-00008.jsonl.zst",
                         "messages/00004-00009.jsonl.zst"]
    assert len([p for p in paths if collection_of(p) == "messages"]) > 1  # split at 2000 bytes
    assert all(file.closed and file.content is not None for file in sink.files)
    assert sum(f.records for f in sink.files if f.path.startswith("messages/")) == len(docs)

    # each member is one zstd frame of the documents, as the container reader reads them
    read: list[dict[str, Any]] = []
    for file in sink.files:
        if not file.path.startswith("messages/"):
            continue
        assert file.content is not None
        size, sha256 = file.content
        entry = MemberEntry(path=file.path, collection="messages", records=file.records,
                            bytes=size, compressed_bytes=len(file.data), sha256=sha256,
                            compressed_sha256=hashlib.sha256(file.data).hexdigest())
        out = io.BytesIO()
        with pyzipper.AESZipFile(out, "w") as archive:
            archive.writestr(file.path, bytes(file.data))
            archive.writestr(MANIFEST_NAME, BackupManifest(
                backup_id="b", name="n", scope="user", type="full", watermark=NOW,
                created_at=NOW, compression=Compression(level=3), members=[entry]).to_json())
        with BackupContainer(io.BytesIO(out.getvalue())) as backup:
            reader = backup.member(backup.manifest.members[0])
            read.extend(reader.documents())
            reader.check()
    assert read == docs
