"""Backups for the restore tests, written with the backup format's own member writer and
manifest (dataport.backups.format): STORED zip members, each one zstd frame of canonical
Extended JSON lines, and manifest.json last with every member's counts and checksums. Used where the
tests need a backup the backups pipeline does not make (a chain with chosen deletions, a
damaged one), from documents they choose."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo.database import Database

from dataport.backups.format import (
    FORMAT_VERSION,
    BackupBytes,
    BackupManifest,
    Collection,
    Compression,
    MemberEntry,
    MemberWriter,
    member_path,
)
from dataport.formats.extjson import json_util_canonical
from dataport.models.backups import BackupCounts
from dataport.models.documents import MessageLayout
from dataport.source.collections import PROJECTS, SESSIONS, is_message_collection
from dataport.source.mongo import Document

ZIP_TIME = (2026, 12, 1, 9, 0, 0)


@dataclass
class Backup:
    """A backup's documents by collection, and what it deletes (an increment)."""

    projects: list[Document] = field(default_factory=list)
    sessions: list[Document] = field(default_factory=list)
    messages: list[Document] = field(default_factory=list)
    deleted_sessions: list[str] = field(default_factory=list)
    deleted_projects: list[Any] = field(default_factory=list)
    backup_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: str | None = None
    owner_id: str | None = None
    #: the format version written: 1 writes lines as dataport 1 did (no `$` key escaped)
    format_version: int = FORMAT_VERSION
    scope: Literal["user", "instance"] = "user"
    #: the source's message layout the manifest records (None: none, as older backups)
    message_layout: MessageLayout | None = None

    def container(self, *, per_member: int = 3) -> bytes:
        """The backup as its stored object (members of at most `per_member` documents, so a
        test sees several of each)."""
        out = io.BytesIO()
        listed: list[MemberEntry] = []
        deletions = ([{"collection": "sessions", "sessionId": sid}
                      for sid in self.deleted_sessions]
                     + [{"collection": "projects", "_id": pid} for pid in self.deleted_projects])
        groups: list[tuple[Collection, list[Any], int]] = []
        data: list[tuple[Collection, list[Document]]] = [
            ("projects", self.projects), ("sessions", self.sessions),
            ("messages", self.messages)]
        for collection, docs in data:
            groups.extend((collection, docs[start:start + per_member], seq)
                          for seq, start in enumerate(range(0, len(docs), per_member)))
        if self.parent_id is not None:
            groups.append(("deletions", deletions, 0))
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
            for collection, docs, seq in groups:
                path = member_path(collection, 1, seq)
                stored = bytearray()
                writer = MemberWriter(stored.extend)
                for doc in docs:
                    if self.format_version == 1:
                        writer.write_line(json_util_canonical(doc) + b"\n")
                    else:
                        writer.write(doc)
                stats = writer.close()
                archive.writestr(zipfile.ZipInfo(path, ZIP_TIME), bytes(stored))
                listed.append(MemberEntry(path=path, collection=collection,
                                          **stats.model_dump()))
            manifest = BackupManifest(
                backup_id=self.backup_id, name="test backup", scope=self.scope,
                owner_id=self.owner_id, type="incremental" if self.parent_id else "full",
                parent_id=self.parent_id, watermark=datetime.now(UTC),
                created_at=datetime.now(UTC), compression=Compression(level=3),
                format_version=self.format_version, message_layout=self.message_layout,
                counts=BackupCounts(projects=len(self.projects), sessions=len(self.sessions),
                                    messages=len(self.messages), deletions=len(deletions)),
                bytes=BackupBytes(uncompressed=sum(m.bytes for m in listed),
                                  compressed=sum(m.compressed_bytes for m in listed)),
                members=listed)
            archive.writestr(zipfile.ZipInfo("manifest.json", ZIP_TIME), manifest.to_json())
        return out.getvalue()


def of_user(db: Database[Document], user_id: Any, *, grouped: bool = True,
            **fields: Any) -> Backup:
    """Everything a user owns, as a full backup holds it (documents exactly as stored).
    `grouped`: messages in the order of their sessions, as the export worker writes them;
    else by uuid (a backup written by other means: the import stages it in full)."""
    projects = list(db[PROJECTS].find({"user_id": user_id}, sort=[("_id", 1)]))
    sessions = list(db[SESSIONS].find({"projectId": {"$in": [p["_id"] for p in projects]}},
                                      sort=[("sessionId", 1)]))
    return Backup(projects=projects, sessions=sessions,
                  messages=_messages(db, sessions, grouped), owner_id=str(user_id), **fields)


def increment_of(db: Database[Document], user_id: Any, parent: Backup, sessions: Sequence[str],
                 deleted: Sequence[str]) -> Backup:
    """An increment on `parent`: the user's projects, these sessions with their messages as
    stored now, and the sessions it deletes."""
    now = of_user(db, user_id)
    return Backup(projects=now.projects,
                  sessions=[s for s in now.sessions if s["sessionId"] in sessions],
                  messages=[m for m in now.messages if m["sessionId"] in sessions],
                  deleted_sessions=list(deleted), parent_id=parent.backup_id,
                  owner_id=str(user_id))


def _messages(db: Database[Document], sessions: list[Document], grouped: bool
              ) -> list[Document]:
    ids = [s["sessionId"] for s in sessions]
    messages: list[Document] = []
    for name in sorted(db.list_collection_names()):
        if is_message_collection(name):
            messages.extend(db[name].find({"sessionId": {"$in": ids}}, sort=[("uuid", 1)]))
    if grouped:  # stable: by uuid within each session
        messages.sort(key=lambda doc: str(doc["sessionId"]))
    return messages


def of_instance(db: Database[Document], **fields: Any) -> Backup:
    """Every user's data, as an instance backup holds it."""
    projects = list(db[PROJECTS].find({}, sort=[("_id", 1)]))
    sessions = list(db[SESSIONS].find({}, sort=[("sessionId", 1)]))
    return Backup(projects=projects, sessions=sessions,
                  messages=_messages(db, sessions, grouped=True), scope="instance", **fields)


def flip_byte(data: bytes, inside: str) -> bytes:
    """`data` with one byte changed inside the stored bytes of member `inside` (the zip's
    structure intact: only what the member holds is damaged)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(inside)
    header = info.header_offset
    name_length = int.from_bytes(data[header + 26:header + 28], "little")
    extra_length = int.from_bytes(data[header + 28:header + 30], "little")
    at = header + 30 + name_length + extra_length + info.compress_size // 2
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def by_id(docs: Iterable[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
    return {doc["_id"]: doc for doc in docs}


def names(docs: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    return sorted(doc[key] for doc in docs)
