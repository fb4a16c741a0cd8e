"""Backups as the API takes and shows them, and as the catalog records them (docs/backups.md).

The request is validated at the API boundary: a name of 3-100 letters, digits, spaces, `-` and
`_`, a description of 500 characters at most, a scope (`user`, or `instance` for
administrators), a type (`full`, `selective` with filters, `incremental` with a parent), a zstd
level and an optional password (sealed in the job row as exports seal theirs, never stored).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from dataport.models.common import ApiModel, SecretLength
from dataport.models.exports import DateRange, ObjectIdStr
from dataport.models.job_common import JobError


class BackupScope(StrEnum):
    USER = "user"
    INSTANCE = "instance"


class BackupType(StrEnum):
    FULL = "full"
    SELECTIVE = "selective"
    INCREMENTAL = "incremental"


class BackupStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CORRUPTED = "corrupted"
    EXPIRED = "expired"


#: a backup that holds data a restore or an increment can use
USABLE = frozenset({BackupStatus.COMPLETED})


class MessageCountRange(ApiModel):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


class BackupFilters(ApiModel):
    """What a selective backup keeps: whole sessions (with every message) of the listed
    projects and sessions, active in the date range, with a messageCount in the range."""

    project_ids: list[ObjectIdStr] | None = Field(default=None, max_length=1000)
    session_ids: list[str] | None = Field(default=None, max_length=1000)
    date_range: DateRange | None = None
    message_count: MessageCountRange | None = None

    @property
    def empty(self) -> bool:
        return not (self.project_ids is not None or self.session_ids is not None
                    or self.date_range is not None or self.message_count is not None)


#: a backup's (and a backup schedule's) name: 3-100 letters (of any script), digits, spaces,
#: `-` and `_`, counted once the spaces around it are stripped (so "   " or "  ab" is refused,
#: not stored as a name of fewer than 3)
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=100,
                                        pattern=r"^[\w -]+$")]


class BackupRequest(ApiModel):
    name: Name = Field(description="3-100 letters, digits, spaces, - and _ (the spaces around "
                                   "it stripped first)")
    description: str | None = Field(default=None, max_length=500)
    scope: BackupScope = BackupScope.USER
    type: BackupType = BackupType.FULL
    filters: BackupFilters | None = Field(default=None, description="selective backups only")
    parent_id: str | None = Field(default=None, pattern="^[0-9a-f]{32}$",
                                  description="incremental backups: the backup this one "
                                              "follows (a base or an increment)")
    compression_level: int | None = Field(default=None, ge=1, le=22,
                                          description="zstd level; default BackupZstdLevel (3)")
    password: Annotated[SecretStr, SecretLength(8, 256)] | None = Field(
        default=None, description="every member is WinZip AES-256 encrypted with it; never "
                                  "stored (sealed for the job's tasks only)")
    retention_days: int | None = Field(default=None, ge=1, le=3650,
                                       description="default BackupRetentionDays (30)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.type is BackupType.SELECTIVE and (self.filters is None or self.filters.empty):
            raise ValueError("a selective backup needs filters (projectIds, sessionIds, "
                             "dateRange or messageCount)")
        if self.type is not BackupType.SELECTIVE and self.filters is not None:
            raise ValueError("filters are for selective backups (an increment follows its "
                             "parent's)")
        if (self.type is BackupType.INCREMENTAL) != (self.parent_id is not None):
            raise ValueError("parentId is required for an incremental backup, and only there")
        return self

    def stored(self) -> dict[str, Any]:
        """What the job row and the idempotency fingerprint keep: all but the password."""
        return self.model_dump(mode="json", by_alias=True, exclude={"password"},
                               exclude_none=True)


class BackupCounts(ApiModel):
    model_config = ConfigDict(extra="ignore")  # manifests of a newer dataport may count more

    projects: int = Field(default=0, ge=0)
    sessions: int = Field(default=0, ge=0)
    messages: int = Field(default=0, ge=0)
    deletions: int = Field(default=0, ge=0)


class BackupSizes(ApiModel):
    stored: int = Field(ge=0, description="bytes of the stored object (the download)")
    uncompressed: int = Field(ge=0, description="the members' lines before zstd")
    compressed: int = Field(ge=0, description="the members' zstd frames")


class Verification(ApiModel):
    """The latest verification run as a job (POST /backups/{id}/verify on a large backup, or
    with `background`), as the backup's record keeps it: running, then its result."""

    job_id: str = Field(description="the verify job: subscribe to it on the WebSocket")
    status: Literal["running", "completed", "failed", "cancelled"] = Field(
        description="completed: it ran to the end (ok says what it found); failed: it could not "
                    "finish (error); cancelled: stopped at the caller's request (DELETE "
                    "/backups/{id}/verify). Only a verification that completed changes the "
                    "backup's status (corrupted, when it found damage)")
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    ok: bool | None = None
    members: int = Field(default=0, description="members read and checked")
    records: int = 0
    sha256: str | None = Field(default=None, description="of the whole object, as read")
    member: str | None = Field(default=None, description="the damaged member")
    problem: str | None = None
    error: JobError | None = None


class BackupRecord(ApiModel):
    """One backup in the catalog (dataport.backups.catalog). Its id is the id of the job that
    made it; the record outlives the job row (retention is days to months)."""

    backup_id: str
    owner_id: str = Field(description="who made it (a schedule's owner for a scheduled one)")
    scope: BackupScope
    type: BackupType
    name: str
    description: str | None = None
    status: BackupStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    parent_id: str | None = None
    schedule_id: str | None = None
    filters: dict[str, Any] | None = None
    encrypted: bool = False
    compression_level: int = 3
    watermark: AwareDatetime | None = None
    parent_watermark: AwareDatetime | None = None
    object_key: str | None = Field(default=None, description="internal: never shown")
    filename: str | None = None
    sizes: BackupSizes | None = None
    counts: BackupCounts | None = None
    sha256: str | None = Field(default=None, description="of the whole stored object")
    error: JobError | None = None
    corrupted_member: str | None = None
    verified_at: AwareDatetime | None = None
    verification: Verification | None = None
