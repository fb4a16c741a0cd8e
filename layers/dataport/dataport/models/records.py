"""What every import reader yields: typed ClaudeLens documents with where they came from.

Readers turn any accepted input into the shapes of DATA-MODEL.md (ObjectId, Decimal128, aware
UTC datetimes), so validation, conflict detection and the writes see one form whatever the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RecordKind(StrEnum):
    PROJECT = "project"
    SESSION = "session"
    MESSAGE = "message"


@dataclass(frozen=True)
class Location:
    """Where a record (or a problem) is in the upload: a person must be able to find it."""

    file: str
    line: int | None = None  # 1-based, for line formats (JSONL, CSV)
    path: str | None = None  # JSON path, e.g. $.sessions[3].messages[12]

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f" {self.path}"
        return where


@dataclass(frozen=True)
class ImportRecord:
    kind: RecordKind
    doc: dict[str, Any]
    location: Location
