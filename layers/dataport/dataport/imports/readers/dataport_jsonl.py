"""dataport JSONL packages: Claude-native transcripts (formats/jsonl.py) with manifest.json.

The transcripts are read by claude_transcript.py (one parser for both); a package adds its
manifest (version, and every member checked against its bytes and SHA-256) and, when it has one,
`projects.json`, whose full project documents stand in for the ones a folder name and the lines'
cwd would give.

What the Claude-native format cannot carry, and an import therefore cannot give back: internal
`_id`s and `createdAt` of messages; the session document's `_id`, `projectId`, `createdAt`,
`updatedAt` (its counts, cost, tokens and times are recomputed from the messages, its summary
comes from the summary line); the project's `_id`, `user_id`, `description`, times and stats
(unless the package has projects.json); `content`, `thinking`, `usage`, `model` and
`contentHash` of messages are recomputed from messageData the ClaudeLens way; fields a message
has outside the data model and its Claude Code line (`claudeCode`); a cost dataport computed
(computed again, the same way); the distinction between int and Int64. Derived tool documents
are rebuilt from the blocks of their message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dataport.formats.jsonl import project_dir
from dataport.imports.readers.base import Reporter
from dataport.imports.readers.claude_transcript import ClaudeTranscriptSource, fold_name
from dataport.imports.readers.dataport_json import PROJECTS_FILE, read_projects
from dataport.imports.readers.package import Checksums
from dataport.imports.zipsafe import SafeZip, ZipMember
from dataport.models.imports import SourceFormat
from dataport.models.records import ImportRecord
from dataport.packaging.manifest import MANIFEST_NAME

#: projects of a package remembered by folder (projects.json lists an owner's projects: few)
MAX_KNOWN_PROJECTS = 100_000


class DataportJsonlSource(ClaudeTranscriptSource):
    format = SourceFormat.DATAPORT_JSONL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: projects.json documents by encoded folder name
        self._projects: dict[str, dict[str, Any]] = {}

    def _before_folders(self, archive: SafeZip, checksums: Checksums,
                        reporter: Reporter) -> Iterator[ImportRecord]:
        self._projects = {}
        names = sorted(m.name for m in archive.members if PROJECTS_FILE.fullmatch(m.name))
        for record in read_projects(archive, names, limits=self.limits, reporter=reporter,
                                    checksums=checksums):
            path = record.doc.get("path")
            if isinstance(path, str) and len(self._projects) < MAX_KNOWN_PROJECTS:
                self._projects.setdefault(fold_name(project_dir(path)), record.doc)
            yield record

    def _other_member(self, member: ZipMember) -> bool:
        return member.name == MANIFEST_NAME or PROJECTS_FILE.fullmatch(member.name) is not None

    def _known_project(self, folder: str) -> dict[str, Any] | None:
        name = folder.rsplit("/", 1)[-1]
        known = self._projects.get(fold_name(name))
        return dict(known) if known is not None else None
