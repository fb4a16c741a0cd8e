"""Jobs: every export, import, backup and restore is one job row owned by one user."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field, computed_field

from dataport.models.common import ApiModel


class JobKind(StrEnum):
    EXPORT = "export"
    IMPORT = "import"
    BACKUP = "backup"
    RESTORE = "restore"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_DECISION = "awaiting_decision"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"
    DELETED = "deleted"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.AWAITING_DECISION})


class Progress(ApiModel):
    phase: str = "queued"
    current: int = 0
    total: int = 0
    bytes: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def percentage(self) -> float:
        if self.total <= 0:
            return 100.0 if self.phase == "done" else 0.0
        return round(min(100.0, 100.0 * self.current / self.total), 1)


class Counts(ApiModel):
    projects: int = 0
    sessions: int = 0
    messages: int = 0
    files: int = 0


class JobError(ApiModel):
    code: str
    message: str


class PackageInfo(ApiModel):
    key: str  # internal: the wire view (models.api.PackageView) leaves it out
    filename: str
    bytes: int
    files: int
    expires_at: AwareDatetime


class UploadPin(ApiModel):
    """An import's upload as validated: a copy at a key no upload form can write, and its ETag,
    which every later read requires (S3 If-Match), so what is staged is what was validated."""

    key: str
    etag: str
    bytes: int


class Job(ApiModel):
    job_id: str
    kind: JobKind
    user_id: str
    status: JobStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
    expires_at: int = Field(description="TTL, epoch seconds")
    request: dict[str, Any] = Field(default_factory=dict)
    progress: Progress = Progress()
    counts: Counts | None = None
    package: PackageInfo | None = None
    error: JobError | None = None
    execution_arn: str | None = None
    finished_at: datetime | None = None
    # Exports with a password: the package is encrypted, and until the job ends the row holds
    # the password sealed by KMS for this job id (packaging.passwords). Internal: never shown.
    encrypted: bool = False
    sealed_password: str | None = None
    # Imports (dataport.workflows.imports), as stored maps of models.imports: the validation
    # report, the decision, what the dry run and the execution did, and the Step Functions task
    # token the workflow waits on while awaiting_decision; `upload_pin` is the upload as the
    # validation pinned it (read by nothing else). Internal: views pick what to show.
    report: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    dry_run: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None
    task_token: str | None = None
    upload_pin: UploadPin | None = None
    # The live-progress throttle (dataport.progress.throttle): seq of the last event published
    # and when (epoch ms). Internal: the REST views leave them out.
    progress_seq: int = 0
    progress_sent_at: int | None = None
