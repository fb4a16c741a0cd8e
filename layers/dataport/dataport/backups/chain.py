"""Backup chains: a base and the increments that follow it. What a chain holds at its end is
what each backup in order adds (its sessions) and takes away (its deletions); an increment's
deletions are what its chain holds and the source no longer has.

Everything is streamed in sessionId order, never gathered: a backup's `sessions/` members hold
its sessions in sessionId order (shards are sessionId ranges in shard order, pages come in
order within a shard, members in shard-seq order), its deletions are written in that order too,
so the chain's state is a k-way merge of one stream per backup and the diff with the source's
current sessionIds (a sorted projection) is a merge walk. Memory: a line per backup in the chain
and a zstd window each. Projects are few (a user has tens): they are compared in memory.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from typing import IO, Any

import orjson
from bson import ObjectId

from dataport.backups.format import BackupContainer, FormatError

#: one chain element: a stored backup to open (the caller's bucket reader) and its id
OpenBackup = Callable[[], IO[bytes]]


def _session_ids(backup: BackupContainer, position: int) -> Iterator[tuple[str, int, bool]]:
    """(sessionId, position in the chain, present) for the backup's sessions and deletions,
    in sessionId order."""
    yield from heapq.merge(_present(backup, position), _deleted(backup, position))


def _present(backup: BackupContainer, position: int) -> Iterator[tuple[str, int, bool]]:
    last = ""
    for entry in backup.manifest.data_members("sessions"):
        reader = backup.member(entry)
        for line in reader.lines():
            session_id = str(orjson.loads(line)["sessionId"])
            if session_id < last:
                raise FormatError(f"{entry.path}: sessions are not in sessionId order")
            last = session_id
            yield session_id, position, True
        reader.check()


def _deleted(backup: BackupContainer, position: int) -> Iterator[tuple[str, int, bool]]:
    for entry in backup.manifest.data_members("deletions"):
        reader = backup.member(entry)
        for line in reader.lines():
            record = orjson.loads(line)
            if record.get("collection") == "sessions":
                yield str(record["sessionId"]), position, False
        reader.check()


def chain_sessions(chain: Iterable[OpenBackup], password: str | None = None) -> Iterator[str]:
    """The sessionIds the chain (base first) holds at its end, in order."""
    with ExitStack() as stack:
        streams = []
        for position, opener in enumerate(chain):
            backup = stack.enter_context(BackupContainer(stack.enter_context(opener()),
                                                         password))
            streams.append(_session_ids(backup, position))
        for session_id, mentions in itertools.groupby(heapq.merge(*streams),
                                                      key=lambda item: item[0]):
            *_, last = mentions  # the latest backup to mention it decides
            if last[2]:
                yield session_id


def chain_projects(chain: Iterable[OpenBackup], password: str | None = None) -> set[ObjectId]:
    """The project ids the chain holds at its end (each backup's projects replace the set:
    every backup holds every project of its scope; deletions take theirs away)."""
    held: set[ObjectId] = set()
    for opener in chain:
        with opener() as stream, BackupContainer(stream, password) as backup:
            current: set[ObjectId] = set()
            for entry in backup.manifest.data_members("projects"):
                reader = backup.member(entry)
                current.update(document["_id"] for document in reader.documents())
                reader.check()
            for entry in backup.manifest.data_members("deletions"):
                reader = backup.member(entry)
                for document in reader.documents():
                    if document.get("collection") == "projects":
                        current.discard(document["_id"])
                reader.check()
            held = current
    return held


def session_deletions(held: Iterable[str], current: Iterable[str]) -> Iterator[str]:
    """sessionIds in `held` and not in `current` (both sorted): a merge walk."""
    now = iter(current)
    head = next(now, None)
    for session_id in held:
        while head is not None and head < session_id:
            head = next(now, None)
        if head != session_id:
            yield session_id


def deletion_lines(sessions: Iterable[str], projects: Iterable[ObjectId]
                   ) -> Iterator[dict[str, Any]]:
    """The lines of `deletions.jsonl.zst`: sessions (in order), then projects."""
    for session_id in sessions:
        yield {"collection": "sessions", "sessionId": session_id}
    for project_id in sorted(projects):
        yield {"collection": "projects", "_id": project_id}
