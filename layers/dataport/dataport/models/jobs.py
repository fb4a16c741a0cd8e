"""Jobs: every export, import, backup and restore is one job row owned by one user.

A `Job` holds what every kind shares (status, times, progress, error, the workflow execution,
the live-progress throttle) and a typed `state` per kind: a discriminated union of pydantic
models, validated on every read and before every write (dataport.jobs.store changes it only
through named transitions, so a misspelt field is a type error, never a row that no longer
reads).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from dataport.models.backup_views import BackupPreview
from dataport.models.backups import BackupCounts, BackupFilters, BackupRequest
from dataport.models.common import ApiModel
from dataport.models.documents import MessageLayout
from dataport.models.exports import ExportRequest
from dataport.models.imports import ImportCreate, ImportDecision, ImportOutcome, ValidationReport
from dataport.models.job_common import (
    ACTIVE_STATUSES,
    Counts,
    JobError,
    JobKind,
    JobStatus,
    PackageInfo,
    Progress,
    UploadPin,
)
from dataport.models.restores import INSTANCE_TARGET, RestoreRequest, RestoreSource

__all__ = ["ACTIVE_STATUSES", "BackupState", "Counts", "ExportState", "ImportState",
           "ImportingState", "Job", "JobError", "JobKind", "JobState", "JobStatus",
           "PackageInfo", "Progress", "RestoreState", "UploadPin", "VerifyJobRequest",
           "VerifyState"]


class ExportState(ApiModel):
    """An export: the request as stored (without the password, which travels sealed), the
    counts the plan and finalize record, and the package once it succeeded."""

    kind: Literal[JobKind.EXPORT] = JobKind.EXPORT
    request: ExportRequest
    counts: Counts | None = None
    package: PackageInfo | None = None


class ImportingState(ApiModel):
    """What a job run by the import pipeline keeps (an import, and a restore: an import whose
    source is a backup): the request (without the password), the upload as the validation
    pinned it (and the records it checked), the validation report, the decision, what the dry
    run and the execution did, and the Step Functions task token the workflow waits on while
    awaiting_decision. Internal: views pick what to show."""

    request: ImportCreate
    upload_pin: UploadPin | None = None
    #: the records validation checked, kept for the execution (imports.checked)
    checked_pin: UploadPin | None = None
    report: ValidationReport | None = None
    decision: ImportDecision | None = None
    dry_run: ImportOutcome | None = None
    outcome: ImportOutcome | None = None
    task_token: str | None = None
    dry_runs: int = Field(default=0, ge=0, description=(
        "dry runs decided so far (bounded: MAX_DRY_RUNS, so that the workflow's history, which "
        "grows by one decision's events per dry run, stays within Step Functions' limit)"))
    message_layout: MessageLayout | None = Field(default=None, description=(
        "the layout the execution writes messages in when the target has no message "
        "collection yet: a restore's, its backup's source's (the manifest's `messageLayout`, "
        "read by validation); None (an import, an older backup): the single one"))


class ImportState(ImportingState):
    """An import (dataport.workflows.imports)."""

    kind: Literal[JobKind.IMPORT] = JobKind.IMPORT


class BackupState(ApiModel):
    """A backup (dataport.workflows.backup), produced by the export pipeline: the request as
    stored (without the password, which travels sealed as an export's does), the snapshot's
    watermark and its parent's (increments), the counts the plan and finalize record, and the
    stored object once it completed. The backup's lasting record is its catalog entry
    (dataport.backups.catalog), under the same id."""

    kind: Literal[JobKind.BACKUP] = JobKind.BACKUP
    request: BackupRequest
    filters: BackupFilters | None = Field(default=None, description="the selection in force: "
                                          "the request's, or for an increment its chain's")
    watermark: AwareDatetime | None = None
    parent_watermark: AwareDatetime | None = None
    #: the source database's message layout, read with the watermark (the manifest records
    #: it; None: the database had no message collection)
    message_layout: MessageLayout | None = None
    counts: BackupCounts | None = None
    object_key: str | None = None
    bytes: int | None = None


class RestoreState(ImportingState):
    """A restore: an import whose source is a backup (dataport.workflows.imports runs it).
    `request` is the import's view of it (a backup zip), `restore` the restore's request as
    sent (without the password), `source` the backup chain it reads, each object pinned by its
    ETag, `target_user_id` whose data it writes (the caller's, or for an administrator another
    user's). The decision is made up front, from the request."""

    kind: Literal[JobKind.RESTORE] = JobKind.RESTORE
    restore: RestoreRequest
    source: RestoreSource
    target_user_id: str = Field(description=(
        "a user id, or `instance`: an instance restore, which runs one restore per user of "
        "the backup (its shards, workflows.restore_shards) and writes nothing itself"))
    #: an instance restore's shard: the instance restore it belongs to (it restores the part
    #: of the backup its target user owns)
    parent_id: str | None = None
    #: a restore run in shards: how many its plan made
    shards: int | None = None
    #: a restore of one user large enough to run in shards (sessions cut by message count,
    #: workflows.restore_shards); an instance restore always runs in shards
    in_shards: bool = False
    #: the messages a shard holds (`restore_shards.shard_size`: fewer than the setting for a
    #: backup of large messages); None: `restore_shard_messages`
    shard_messages: int | None = None
    #: a shard whose part other users' shards share (a pack of small users, imports.split):
    #: its reader takes only what its target user owns (the backup reader's `owner`)
    shared_part: bool = False

    @property
    def sharded(self) -> bool:
        """A restore run in shards (an instance restore, or a large one of one user): the
        shards write the sessions; it plans, sums them up (and in mode full, where a user's
        sessions are in several shards, removes once what the backup lacks)."""
        return self.target_user_id == INSTANCE_TARGET or self.in_shards


class VerifyJobRequest(ApiModel):
    """What a verification job was asked for (the password travels sealed in the row)."""

    backup_id: str
    #: verify: the checks of backups/verify.py; preview: imports/restore_preview.py's answer
    check: Literal["verify", "preview"] = "verify"

    def stored(self) -> dict[str, str]:
        return self.model_dump(mode="json", by_alias=True)


class VerifyState(ApiModel):
    """A backup's verification run as a job (dataport.workflows.verify): the backup, how far the
    member pass got (`next_member`, an index into the manifest's members), what was checked,
    and the result. An encrypted backup's password travels sealed in the row, as an export's."""

    kind: Literal[JobKind.VERIFY] = JobKind.VERIFY
    request: VerifyJobRequest
    stored_bytes: int = 0
    next_member: int = Field(default=0, ge=0)
    total_members: int | None = None
    members: int = 0
    records: int = 0
    sha256: str | None = Field(default=None, description="of the whole object, once read")
    ok: bool | None = None
    member: str | None = None
    problem: str | None = None
    #: a preview job's answer (bounded: MAX_PREVIEW_PROJECTS projects listed)
    preview: BackupPreview | None = None


JobState = Annotated[ExportState | ImportState | BackupState | RestoreState | VerifyState,
                     Field(discriminator="kind")]


class Job(ApiModel):
    job_id: str
    kind: JobKind
    user_id: str
    status: JobStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
    expires_at: int = Field(description="TTL, epoch seconds")
    state: JobState
    progress: Progress = Progress()
    error: JobError | None = None
    execution_arn: str | None = None
    finished_at: datetime | None = None
    # Exports with a password: the package is encrypted, and until the job ends the row holds
    # the password sealed by KMS for this job id (jobs.passwords). Internal: never shown.
    encrypted: bool = False
    sealed_password: str | None = None
    # The live-progress throttle (dataport.progress.throttle): seq of the last event published
    # and when (epoch ms). Internal: the REST views leave them out.
    progress_seq: int = 0
    progress_sent_at: int | None = None

    @model_validator(mode="after")
    def _state_of_its_kind(self) -> Self:
        if self.state.kind is not self.kind:
            raise ValueError(f"a {self.kind.value} job cannot hold a {self.state.kind} state")
        return self

    @property
    def export_state(self) -> ExportState:
        """The export's state; an error for a job of another kind (a caller's mistake)."""
        if not isinstance(self.state, ExportState):
            raise TypeError(f"Job {self.job_id} is a {self.kind.value} job, not an export.")
        return self.state

    @property
    def backup_state(self) -> BackupState:
        """The backup's state; an error for a job of another kind (a caller's mistake)."""
        if not isinstance(self.state, BackupState):
            raise TypeError(f"Job {self.job_id} is a {self.kind.value} job, not a backup.")
        return self.state

    @property
    def verify_state(self) -> VerifyState:
        """The verification's state; an error for a job of another kind (a caller's mistake)."""
        if not isinstance(self.state, VerifyState):
            raise TypeError(f"Job {self.job_id} is a {self.kind.value} job, not a verification.")
        return self.state

    @property
    def import_state(self) -> ImportingState:
        """The state of a job the import pipeline runs (an import or a restore); an error for a
        job of another kind (a caller's mistake)."""
        if not isinstance(self.state, ImportingState):
            raise TypeError(f"Job {self.job_id} is a {self.kind.value} job, not an import.")
        return self.state

    @property
    def restore_state(self) -> RestoreState:
        """The restore's state; an error for a job of another kind (a caller's mistake)."""
        if not isinstance(self.state, RestoreState):
            raise TypeError(f"Job {self.job_id} is a {self.kind.value} job, not a restore.")
        return self.state

    @property
    def owner_of_data(self) -> str:
        """Whose ClaudeLens data the job reads and writes: a restore's target, else the job's
        owner."""
        return self.state.target_user_id if isinstance(self.state, RestoreState) else self.user_id
