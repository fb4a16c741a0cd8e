"""The backup "format" of the export pipeline: an `ExportWriter` whose files are backup members.

The export worker hands it sessions and their messages exactly as read (every field, as the
driver yields it); it writes each document as a canonical Extended JSON line into a zstd frame
(format.MemberWriter) straight into the staging sink's file, so the staged bytes are the
member's stored bytes (the sink stores them: level 0, and AES with a password). Per worker
invocation it opens one `sessions/<part>` and one `messages/<part>` member (a new one when a
member's lines pass the split size); the plan step writes `projects/<part>` and, for an
increment, `deletions.jsonl.zst`. Each member tells its file the size and SHA-256 of its lines
(`set_content`), and the file itself hashes the zstd bytes: the manifest needs both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dataport.backups.format import DELETIONS_MEMBER, Collection, MemberWriter, member_path
from dataport.formats.base import ExportContext, ExportWriter, FileSink, Numbering, OutputFile
from dataport.models.documents import RawDocument


@dataclass
class _OpenMember:
    file: OutputFile
    writer: MemberWriter


class BackupWriter(ExportWriter):
    """Backup members for one worker invocation of shard `shard`, numbered from `first_seq`
    (the staging sink's first file number: names then follow the sink's own order)."""

    extension = "jsonl.zst"

    def __init__(self, sink: FileSink, *, context: ExportContext, split_bytes: int,
                 level: int, shard: int, first_seq: int) -> None:
        super().__init__(sink, context=context, split_bytes=split_bytes)
        self.level = level
        self.shard = shard
        self._seq = first_seq
        self._open: dict[Collection, _OpenMember] = {}

    # --- the export pipeline's calls ----------------------------------------------------------

    def write_projects(self, projects: Sequence[RawDocument]) -> None:
        for project in projects:
            self._write("projects", project)
        self._close("projects")

    def begin_session(self, project: RawDocument, session: RawDocument) -> None:  # noqa: ARG002
        """The session as stored (its project is in the projects member already)."""
        self._write("sessions", session)

    def write_message(self, message: RawDocument) -> None:
        self._write("messages", message)

    def end_session(self) -> None:
        """Members are cut between records, never per session: nothing to do."""

    def close(self) -> None:
        for collection in list(self._open):
            self._close(collection)

    # --- increments ---------------------------------------------------------------------------

    def write_deletions(self, deletions: Iterable[RawDocument]) -> int:
        """`deletions.jsonl.zst`: one line per session or project the chain had and the source
        no longer has; returns how many."""
        member = self._member("deletions")
        for deletion in deletions:
            member.writer.write(deletion)
            member.file.add_records()
        count = member.writer.records
        self._close("deletions")
        return count

    # ------------------------------------------------------------------------------------------

    def _write(self, collection: Collection, document: RawDocument) -> None:
        member = self._open.get(collection) or self._member(collection)
        if member.writer.records and member.writer.bytes >= self.split_bytes:
            self._close(collection)
            member = self._member(collection)
        member.writer.write(document)
        member.file.add_records()

    def _member(self, collection: Collection) -> _OpenMember:
        if collection == "deletions":
            path = DELETIONS_MEMBER
        else:
            path = member_path(collection, self.shard, self._seq)
        self._seq += 1  # the sink numbers every file it opens
        file = self.sink.open(path, Numbering.WHEN_SPLIT)
        member = _OpenMember(file, MemberWriter(file.write, level=self.level))
        self._open[collection] = member
        return member

    def _close(self, collection: Collection) -> None:
        member = self._open.pop(collection, None)
        if member is None:
            return
        stats = member.writer.close()
        member.file.set_content(stats.bytes, stats.sha256)
        self.sink.close(member.file)
