"""Restores: an import whose source is a backup (docs/backups.md, "Restores").

What POST /restores takes (`RestoreRequest`), what the job keeps of the backup it reads
(`RestoreSource`: the chain of stored objects, each pinned by its ETag) and what the routes
answer. The report, the outcome and the per-session actions are the import's own models: a
restore runs through the import pipeline.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, SecretStr, model_validator

from dataport.models.common import ApiModel, SecretLength
from dataport.models.imports import ImportDecision, ImportOutcome, Strategy, ValidationReport
from dataport.models.job_common import JobError, JobStatus, Progress, UploadPin

#: the name a restore's source has where the import pipeline wants a filename
BACKUP_FILENAME = "backup.zip"
#: an id of a backup or an upload: 32 hex digits, as job ids
ID_PATTERN = r"^[0-9a-f]{32}$"
#: a ClaudeLens user id (ObjectId)
USER_ID_PATTERN = r"^[0-9a-f]{24}$"
#: the target of an instance restore (every user's data, each under its owner)
INSTANCE_TARGET = "instance"


class RestoreMode(StrEnum):
    """full: the target becomes equal to the backup (what the backup lacks is removed, its
    pre-images journalled); selective: only the selections; merge: adds and updates, removes
    nothing."""

    FULL = "full"
    SELECTIVE = "selective"
    MERGE = "merge"


class ConflictChoice(StrEnum):
    """What happens to a session the target already has (one the backup also holds)."""

    SKIP = "skip"
    OVERWRITE = "overwrite"  # the import's replace
    RENAME = "rename"  # keep both: the restored one under a new, stable id
    MERGE = "merge"

    @property
    def strategy(self) -> Strategy:
        return {ConflictChoice.SKIP: Strategy.SKIP, ConflictChoice.OVERWRITE: Strategy.REPLACE,
                ConflictChoice.RENAME: Strategy.RENAME, ConflictChoice.MERGE: Strategy.MERGE}[self]


class RestoreSelections(ApiModel):
    """What a selective restore takes: sessions of these projects (by path or project id) and
    these sessions (by sessionId)."""

    projects: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=1000)
    sessions: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=2000)

    @property
    def empty(self) -> bool:
        return not self.projects and not self.sessions


class RestoreRequest(ApiModel):
    """POST /restores."""

    backup_id: str | None = Field(default=None, pattern=ID_PATTERN,
                                  description="a backup of yours (an increment restores its "
                                              "chain: base, then each increment in order)")
    upload_id: str | None = Field(default=None, pattern=ID_PATTERN,
                                  description="a backup file uploaded with POST "
                                              "/restores/uploads (completed)")
    mode: RestoreMode = RestoreMode.MERGE
    conflicts: ConflictChoice = Field(
        default=ConflictChoice.OVERWRITE,
        description="for sessions the target has: skip, overwrite, rename (keep both) or merge")
    selections: RestoreSelections = RestoreSelections()
    target: Literal["self", "instance"] | Annotated[str, Field(pattern=USER_ID_PATTERN)] = Field(
        default="self", description="self; administrators: another user's id, or `instance` "
                                    "(an instance backup: every user's data under its owner, "
                                    "in shards of one user each; a user backup: into its owner)")
    dry_run: bool = Field(default=False, description="report what the restore would do, "
                                                     "writing nothing")
    password: Annotated[SecretStr, SecretLength(1, 256)] | None = Field(
        default=None, description="the password of an encrypted backup; never stored (sealed "
                                   "with KMS for the job, as imports seal theirs)")

    @model_validator(mode="after")
    def _one_source(self) -> RestoreRequest:
        if (self.backup_id is None) == (self.upload_id is None):
            raise ValueError("give exactly one of backupId and uploadId")
        if self.mode is RestoreMode.SELECTIVE and self.selections.empty:
            raise ValueError("a selective restore needs selections (projects or sessions)")
        if self.mode is not RestoreMode.SELECTIVE and not self.selections.empty:
            raise ValueError("selections apply to mode selective only")
        return self

    def stored(self) -> dict[str, Any]:
        """What the job row keeps and the API shows: the request without the password."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True,
                               exclude={"password"})

    def decision(self) -> ImportDecision:
        """The import decision a restore makes up front (no awaiting: the request says it)."""
        return ImportDecision(strategy=self.conflicts.strategy, dry_run=self.dry_run)


class BackupLink(ApiModel):
    """One stored object of the chain a restore reads, pinned: every read requires its ETag,
    and when its whole-object SHA-256 is known (a catalogued backup) the restore checks it
    before anything is written."""

    backup_id: str
    pin: UploadPin
    sha256: str | None = None


class RestoreSource(ApiModel):
    """The backup a restore reads: its chain oldest first (a full backup is a chain of one);
    the last link is the one restored (the import pipeline's pinned upload)."""

    links: list[BackupLink] = Field(min_length=1, max_length=1000)
    from_upload: bool = False

    @property
    def restored(self) -> BackupLink:
        return self.links[-1]


class RestoreLinks(ApiModel):
    self_: str = Field(alias="self")
    actions: str
    rollback: str

    @classmethod
    def of(cls, job_id: str) -> RestoreLinks:
        base = f"/restores/{job_id}"
        return cls(self_=base, actions=f"{base}/actions", rollback=f"{base}/rollback")


class RestoreView(ApiModel):
    job_id: str
    status: JobStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    request: dict[str, Any] = Field(description="as sent, without the password")
    target_user_id: str = Field(description="whose data it writes; `instance` for an "
                                            "instance restore")
    parent_id: str | None = Field(default=None, description=(
        "a shard of a restore in shards: the restore it is part of"))
    shards: list[str] | None = Field(default=None, description=(
        "a restore in shards (an instance restore, or a large one of one user): its shards, "
        "each a restore of one user's part (GET /restores/{id} each)"))
    chain: list[str] = Field(description="the backups read, oldest first")
    progress: Progress
    report: ValidationReport | None = None
    dry_run: ImportOutcome | None = None
    outcome: ImportOutcome | None = None
    error: JobError | None = None
    links: RestoreLinks


class RestoreList(ApiModel):
    restores: list[RestoreView]
    next_token: str | None = None


# ---------------------------------------------------------------------------- uploads

#: S3's limits for one multipart upload: 10,000 parts of at most 5 GiB
MAX_PARTS = 10_000
MIN_PART_BYTES = 5 * 1024 * 1024


class RestoreUploadCreate(ApiModel):
    """POST /restores/uploads: a backup file about to be uploaded in parts."""

    size: int = Field(gt=0, description="the file's bytes (at most the configured limit, "
                                        "100 GB by default)")


class RestoreUploadCreated(ApiModel):
    upload_id: str
    part_size: int = Field(description="bytes of every part but the last")
    parts: int = Field(description="how many parts to upload")
    expires_at: AwareDatetime = Field(description="when the upload is forgotten: complete "
                                                  "and restore it before")


class PartUrl(ApiModel):
    number: int
    url: str


class PartUrls(ApiModel):
    parts: list[PartUrl]
    expires_at: AwareDatetime


class CompletedPart(ApiModel):
    number: int = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(min_length=1, max_length=128)


class RestoreUploadComplete(ApiModel):
    parts: list[CompletedPart] = Field(min_length=1, max_length=MAX_PARTS)


class RestoreUploadView(ApiModel):
    upload_id: str
    status: Literal["uploading", "completed"]
    bytes: int
