"""The contract between format writers and the package they write into.

A writer turns a stream of (project, session, messages) into files. It never sees S3 or the zip:
it asks a `FileSink` for files and writes bytes. Files are numbered when the package is
assembled (many workers write parts of one export), so a writer names a file by its logical
`path` and says whether that path is always numbered (`conversations-0001.json`) or only when
it had to be split (`messages.csv`, then `messages-0001.csv`, `messages-0002.csv`).

Every file a writer opens is complete on its own (a JSON document, a CSV with its header row,
a Markdown page), and the writer closes every open file in `close()`: a worker invocation ends
its files before it hands its cursor on.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from dataport.models.documents import RawDocument
from dataport.models.staged import Numbering

__all__ = ["ExportContext", "ExportWriter", "FileSink", "Numbering", "OutputFile",
           "needs_rollover"]


class OutputFile(Protocol):
    """One file of the package, written as a stream of bytes."""

    @property
    def bytes_written(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def add_records(self, count: int = 1) -> None:
        """Count records for the manifest (messages, rows, lines: whatever the format holds)."""

    def add_note(self, note: str) -> None:
        """A remark for this file's manifest entry (e.g. a record larger than the split size)."""

    def set_content(self, size: int, sha256: str) -> None:
        """For a file whose bytes encode other content (a backup member is a zstd frame of
        lines): the size and SHA-256 of that content, for the manifest."""


class FileSink(Protocol):
    def open(self, path: str, numbering: Numbering = Numbering.WHEN_SPLIT) -> OutputFile: ...

    def close(self, file: OutputFile) -> None: ...


@dataclass(frozen=True)
class ExportContext:
    """What every file of an export may state about itself."""

    job_id: str
    owner_id: str
    created_at: datetime
    format: str
    filters: dict[str, object] = field(default_factory=dict)


class ExportWriter(abc.ABC):
    """Base of every format writer. Call order per worker invocation:
    (begin_session, write_message*, end_session)*, close."""

    #: file extension of the format's data files, for the download's filename hints
    extension: str = ""

    def __init__(self, sink: FileSink, *, context: ExportContext, split_bytes: int) -> None:
        self.sink = sink
        self.context = context
        self.split_bytes = split_bytes

    @abc.abstractmethod
    def begin_session(self, project: RawDocument, session: RawDocument) -> None: ...

    @abc.abstractmethod
    def write_message(self, message: RawDocument) -> None: ...

    @abc.abstractmethod
    def end_session(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Finish and close every open file."""

    def write_projects(self, projects: Sequence[RawDocument]) -> None:  # noqa: B027
        """Called once per export (by the plan step) with the owner's projects in scope.
        Formats that carry projects as their own file override this."""

    def needs_rollover(self, file: OutputFile, next_record_bytes: int, *, header_bytes: int = 0,
                       trailer_bytes: int = 0) -> bool:
        """See `needs_rollover`: the writer's split size applied to one of its files."""
        return needs_rollover(file, next_record_bytes, self.split_bytes,
                              header_bytes=header_bytes, trailer_bytes=trailer_bytes)


def needs_rollover(file: OutputFile, next_record_bytes: int, split_bytes: int, *,
                   header_bytes: int = 0, trailer_bytes: int = 0) -> bool:
    """True when the next record would push a file that already holds a record past the split
    size. `header_bytes` (written when the file was opened: a BOM, a header row, a JSON envelope)
    do not make a file non-empty, so a record larger than the split size still goes alone into a
    file of its own; `trailer_bytes` (what closing the file will still add) count towards the size.
    """
    written = file.bytes_written
    return (written > header_bytes
            and written + next_record_bytes + trailer_bytes > split_bytes)
