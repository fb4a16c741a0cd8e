"""What every kind of job shares: kind, status, progress, error, and the parts of a state that
the kinds' states (models.jobs) and the wire models (models.imports) both name."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AliasChoices, AwareDatetime, Field, computed_field

from dataport.models.common import ApiModel


class JobKind(StrEnum):
    EXPORT = "export"
    IMPORT = "import"
    BACKUP = "backup"
    RESTORE = "restore"
    VERIFY = "verify"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_DECISION = "awaiting_decision"
    #: a restore asked to stop: its tasks stop (every status but running stops them) and
    #: undo what it wrote; it ends cancelled once the target is as it was
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"
    DELETED = "deleted"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.AWAITING_DECISION,
                             JobStatus.CANCELLING})


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


class DataKeyScope(StrEnum):
    """The encryption context's key a job's data key is made under (jobs.data_keys): apart
    from the passwords' `jobId`, so a key policy or role that unseals passwords does not open
    data keys, and a restore's key does not open an import's objects."""

    RESTORE = "restoreId"
    IMPORT = "importId"


class Sealing(ApiModel):
    """A sealed object's key (imports.sealed): the KMS ciphertext of its job's data key
    (base64) and the job it was made for, under `scope` (the key's encryption context
    `{scope: job_id}`). A pin written before imports were sealed names `restoreId`."""

    data_key: str
    job_id: str = Field(validation_alias=AliasChoices("jobId", "job_id", "restoreId",
                                                      "restore_id"))
    scope: DataKeyScope = DataKeyScope.RESTORE


class UploadPin(ApiModel):
    """An import's upload as validated: a copy at a key no upload form can write, and its ETag,
    which every later read requires (S3 If-Match), so what is staged is what was validated.
    `sealing`: the object is sealed (a restore shard's part, and what the shard checked);
    `bytes` is then the sealed size."""

    key: str
    etag: str
    bytes: int
    sealing: Sealing | None = None
