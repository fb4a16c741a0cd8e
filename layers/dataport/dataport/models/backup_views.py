"""REST bodies of the /backups routes (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, Field, SecretStr

from dataport.models.backups import (
    BackupCounts,
    BackupRecord,
    BackupScope,
    BackupSizes,
    BackupStatus,
    BackupType,
    Verification,
)
from dataport.models.common import ApiModel, SecretLength
from dataport.models.job_common import JobError, JobStatus, Progress


class BackupLinks(ApiModel):
    """Paths relative to the API's base URL."""

    self_: str = Field(alias="self")
    download: str
    verify: str
    preview: str

    @classmethod
    def of(cls, backup_id: str) -> BackupLinks:
        base = f"/backups/{backup_id}"
        return cls(self_=base, download=f"{base}/download", verify=f"{base}/verify",
                   preview=f"{base}/preview")


class BackupView(ApiModel):
    backup_id: str
    name: str
    description: str | None = None
    scope: BackupScope
    type: BackupType
    status: BackupStatus
    created_at: AwareDatetime
    completed_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    parent_id: str | None = None
    schedule_id: str | None = None
    filters: dict[str, Any] | None = None
    encrypted: bool = False
    compression_level: int
    watermark: AwareDatetime | None = None
    sizes: BackupSizes | None = None
    counts: BackupCounts | None = None
    sha256: str | None = Field(default=None, description="SHA-256 of the whole stored object")
    verified_at: AwareDatetime | None = None
    corrupted_member: str | None = None
    verification: Verification | None = Field(
        default=None, description="the latest verification run as a job, and its result")
    error: JobError | None = None
    progress: Progress | None = Field(default=None, description="while pending or running")
    links: BackupLinks

    @classmethod
    def of(cls, record: BackupRecord, progress: Progress | None = None) -> BackupView:
        fields = record.model_dump(exclude={"object_key", "filename", "owner_id", "updated_at",
                                            "parent_watermark"})
        return cls(**fields, progress=progress, links=BackupLinks.of(record.backup_id))


class BackupAccepted(ApiModel):
    backup_id: str
    job_id: str = Field(description="the same id: subscribe to it on the WebSocket")
    status: BackupStatus
    links: BackupLinks


class BackupList(ApiModel):
    backups: list[BackupView]
    next_token: str | None = None


class VerifyReport(ApiModel):
    backup_id: str
    status: BackupStatus
    ok: bool
    sha256: str = Field(description="of the whole stored object, as read now")
    members: int = Field(description="members read and checked")
    records: int
    member: str | None = Field(default=None, description="the damaged member")
    problem: str | None = None
    verified_at: AwareDatetime | None = None


class VerifyRequest(ApiModel):
    password: Annotated[SecretStr, SecretLength(8, 256)] | None = Field(
        default=None, description="of an encrypted backup (its members cannot be read without)")
    background: bool = Field(default=False, description="run it as a job whatever the size "
                             "(202); a backup larger than VerifySyncMaxBytes always is")


class VerifyAccepted(ApiModel):
    """202: the verification runs as a job. Follow it on the WebSocket (`jobId`, kind
    `verify`) or poll the backup (`verification`); its end marks the backup as a synchronous
    verify does (verifiedAt, or corrupted naming the member)."""

    backup_id: str
    job_id: str
    verification: Verification
    links: BackupLinks


#: projects a preview lists (the counts are complete): keeps a preview job's answer in its row
MAX_PREVIEW_PROJECTS = 1000


class PreviewLinks(ApiModel):
    result: str = Field(description="GET it: the preview once the job succeeded (202 before)")


class PreviewAccepted(ApiModel):
    """202: the preview is computed by a job (a backup larger than VerifySyncMaxBytes, or
    `background`). GET `links.result` until it answers 200 with the preview."""

    backup_id: str
    job_id: str = Field(description="subscribe to it on the WebSocket (kind `verify`)")
    status: JobStatus
    progress: Progress | None = None
    links: PreviewLinks


class ProjectPreview(ApiModel):
    project_id: str
    name: str | None = None
    path: str | None = None
    sessions: int
    messages: int = Field(description="the sessions' messageCount")
    first_activity: AwareDatetime | None = None
    last_activity: AwareDatetime | None = None


class RestorePreview(ApiModel):
    """What restoring the backup would do to its target as it is now (an increment's: what
    restoring its chain would do, each session decided as the restore decides it)."""

    target: str = Field(description="`self` (the owner's data) or `instance` (the database)")
    new: int = Field(description="sessions of the backup (its chain, for an increment) the "
                                 "target lacks")
    changed: int = Field(description="sessions the target holds in another version")
    identical: int
    only_in_target: int = Field(description="sessions the target has that the backup (its "
                                            "chain, for an increment) lacks: a full restore "
                                            "removes them")
    samples: dict[str, list[str]] = Field(description="up to 20 sessionIds of each kind")


class BackupPreview(ApiModel):
    backup_id: str
    type: BackupType
    scope: BackupScope
    counts: BackupCounts | None = None
    projects: list[ProjectPreview] = Field(description="by name; the first 1,000")
    projects_total: int = Field(default=0, description="projects in the backup")
    restore: RestorePreview
