"""Import validation reports and conflict summaries (what GET /imports/{jobId} shows)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from dataport.models.common import ApiModel

#: how many errors / warnings a report lists (the totals count all of them)
MAX_LISTED_ISSUES = 100


class SourceFormat(StrEnum):
    DATAPORT_JSON = "dataport-json"  # a dataport json package (zip or a conversations-*.json)
    DATAPORT_JSONL = "dataport-jsonl"  # a dataport jsonl package (Claude-native transcripts)
    CLAUDE_TRANSCRIPT = "claude-transcript"  # one ~/.claude/projects/.../<id>.jsonl or a zip tree
    CSV = "csv"  # sessions.csv / messages.csv, ours or another tool's with a field mapping


class Issue(ApiModel):
    severity: Literal["error", "warning"]
    code: str = Field(description="machine-readable, e.g. invalid_json, duplicate_uuid")
    message: str = Field(description="what is wrong and what to do about it")
    file: str | None = None
    line: int | None = None
    path: str | None = None
    field: str | None = None


class DateRange(ApiModel):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


class ImportCounts(ApiModel):
    projects: int = 0
    sessions: int = 0
    messages: int = 0
    unknown_records: int = Field(default=0, description="tolerated, not imported")


class ConflictSummary(ApiModel):
    new_sessions: int = 0
    changed_sessions: int = 0
    identical_sessions: int = 0


class ValidationReport(ApiModel):
    format: SourceFormat | None = None
    version: str | None = None
    counts: ImportCounts = ImportCounts()
    date_range: DateRange = DateRange()
    errors: list[Issue] = Field(default_factory=list)
    warnings: list[Issue] = Field(default_factory=list)
    errors_total: int = 0
    warnings_total: int = 0
    conflicts: ConflictSummary | None = None

    @property
    def ok(self) -> bool:
        return self.errors_total == 0
