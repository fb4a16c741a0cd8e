"""The logic behind the /backups routes: start, list, show, delete (or cancel), download,
verify and preview. A backup is a job of kind `backup` run by the export workflow
(workflows/backup.py) and a record in the catalog (backups/catalog.py) under the same id.

Who sees what: a user their own user-scope backups; an administrator (Principal.is_admin) also
the instance backups. Asking for an instance backup without the role is 403 when starting one
and 404 for an existing one (its existence is not disclosed); another user's backup is 404.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import SecretStr

from dataport.api.idempotency import StartCommand, Started, start_once
from dataport.auth import Principal
from dataport.backups.catalog import BackupCatalog
from dataport.backups.format import BackupContainer, FormatError, PasswordRequired
from dataport.backups.verify import Verification, verify_backup
from dataport.bucket import packages_bucket
from dataport.engine import Machine, WorkflowUnavailable, workflow_engine
from dataport.errors import (
    BackupHasDependents,
    BackupNotUsable,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PreviewFailed,
    TransientError,
)
from dataport.jobs import passwords, rate_limit
from dataport.jobs.store import JobStore, new_job_id, utcnow
from dataport.models.backup_views import (
    BackupLinks,
    BackupPreview,
    PreviewAccepted,
    PreviewLinks,
    VerifyAccepted,
    VerifyReport,
)
from dataport.models.backups import (
    BackupFilters,
    BackupRecord,
    BackupRequest,
    BackupScope,
    BackupStatus,
)
from dataport.models.jobs import (
    ACTIVE_STATUSES,
    BackupState,
    Job,
    JobError,
    JobKind,
    JobStatus,
    Progress,
    VerifyJobRequest,
    VerifyState,
)
from dataport.models.tasks import JobRef
from dataport.observability import logger
from dataport.packaging import locations
from dataport.packaging.cleanup import discard_job_objects
from dataport.progress.publisher import publish_terminal
from dataport.settings import get_settings
from dataport.workflows.backup import expires_at
from dataport.workflows.verify import compute_preview

#: the rate-limit counters: instance backups count on their own (InstanceBackupRateLimit)
USER_KIND, INSTANCE_KIND = "backup", "instance backup"

CANCELLED = JobError(code="cancelled", message="Cancelled at your request.")


def start_backup(principal: Principal, request: BackupRequest, idempotency_key: str | None,
                 lambda_context: Any = None
                 ) -> tuple[BackupRecord, rate_limit.RateLimitState | None]:
    """Check the role and the parent, count against the rate limit, record the job and the
    catalog entry and start the export workflow. The same Idempotency-Key returns the same
    backup without counting again."""
    if request.scope is BackupScope.INSTANCE and not principal.is_admin:
        raise Forbidden("Instance backups (every user's data) need an administrator; back up "
                        "your own data with scope \"user\".")
    if request.parent_id is not None:
        _usable_parent(principal, request)
    command = StartCommand[BackupRequest](user_id=principal.user_id,
                                          idempotency_key=idempotency_key, request=request)
    started = start_once(_start, command, lambda_context)
    return BackupCatalog().get(started.job_id, principal.user_id,
                               admin=principal.is_admin), started.rate


def _usable_parent(principal: Principal, request: BackupRequest) -> BackupRecord:
    assert request.parent_id is not None
    parent = BackupCatalog().get(request.parent_id, principal.user_id, admin=principal.is_admin)
    if parent.status is not BackupStatus.COMPLETED:
        raise BackupNotUsable(f"Backup {parent.backup_id} is {parent.status.value}: an increment "
                              "can only follow a completed backup.",
                              details={"parentId": parent.backup_id,
                                       "status": parent.status.value})
    if parent.scope is not request.scope:
        raise InvalidRequest(f"Backup {parent.backup_id} is a {parent.scope.value} backup: an "
                             "increment keeps its chain's scope.",
                             details={"parentId": parent.backup_id})
    if parent.encrypted != (request.password is not None):
        raise InvalidRequest("An increment of an encrypted backup needs that backup's password "
                             "(and an unencrypted chain takes none).",
                             details={"parentId": parent.backup_id})
    if request.password is not None and parent.object_key is not None:
        # the increment reads its chain with this password: refuse a wrong one now, not as a
        # failed job later (the central directory and the manifest: a few ranged reads)
        try:
            with (packages_bucket().open_read(parent.object_key) as stream,
                  BackupContainer(stream, request.password.get_secret_value()) as backup):
                _ = backup.manifest
        except PasswordRequired as error:
            raise InvalidRequest("The password does not open the backup this increment "
                                 "follows: an increment uses its chain's password.",
                                 details={"field": "password"}) from error
    return parent


def _start(*, command: StartCommand[BackupRequest]) -> Started:
    user_id, request = command.user_id, command.request
    settings = get_settings()
    instance = request.scope is BackupScope.INSTANCE
    rate = rate_limit.consume(user_id, INSTANCE_KIND if instance else USER_KIND,
                              settings.instance_backup_rate_limit if instance
                              else settings.backup_rate_limit)
    catalog = BackupCatalog()
    parent = catalog.find(request.parent_id) if request.parent_id else None
    filters = request.filters
    if parent is not None and parent.filters:  # an increment follows its chain's selection
        filters = BackupFilters.model_validate(parent.filters)
    store = JobStore()
    password = request.password
    job_id = new_job_id()
    job = store.create(user_id, BackupState(
        request=request, filters=filters,
        parent_watermark=parent.watermark if parent else None), job_id=job_id,
        sealed_password=passwords.seal(password, job_id) if password else None)
    now = utcnow()
    record = catalog.create_pending(BackupRecord(
        backup_id=job.job_id, owner_id=user_id, scope=request.scope, type=request.type,
        name=request.name, description=request.description, status=BackupStatus.PENDING,
        created_at=now, updated_at=now, expires_at=expires_at(request.retention_days, now),
        parent_id=request.parent_id,
        filters=filters.model_dump(mode="json", by_alias=True, exclude_none=True)
        if filters else None,
        encrypted=password is not None,
        compression_level=request.compression_level or settings.backup_zstd_level))
    try:
        execution_arn = workflow_engine().start(Machine.EXPORT, job.job_id,
                                                JobRef(job_id=job.job_id))
    except WorkflowUnavailable as error:
        logger.exception("could not start the backup workflow", extra={"job_id": job.job_id})
        failure = JobError(code="start_failed", message="The backup could not be started. "
                                                        "Try again.")
        store.fail(job.job_id, failure)
        catalog.mark_failed(record.backup_id, failure)
        rate_limit.refund(rate)
        raise TransientError("The backup could not be started; try again in a moment.",
                             details={"backupId": job.job_id}) from error
    if execution_arn is not None:
        store.record_execution(job.job_id, execution_arn)
    logger.info("backup started", extra={"job_id": job.job_id, "scope": request.scope.value,
                                         "type": request.type.value})
    return Started(job_id=job.job_id, rate=rate)


def get_backup(principal: Principal, backup_id: str) -> tuple[BackupRecord, Progress | None]:
    """The backup, and its job's progress while it is made."""
    record = _visible(principal, backup_id)
    return record, _progress(record)


def list_backups(principal: Principal, *, instance: bool, limit: int,
                 next_token: str | None) -> tuple[list[BackupRecord], str | None]:
    """The caller's backups, newest first; `instance`: the instance backups (administrators)."""
    if instance and not principal.is_admin:
        raise Forbidden("Instance backups are listed for administrators only.")
    return BackupCatalog().listing(principal.user_id, instance=instance, limit=limit,
                                   next_token=next_token)


def delete_backup(principal: Principal, backup_id: str) -> BackupRecord | None:
    """A backup being made is cancelled (its record ends failed, nothing is left behind); a
    finished one is deleted, object and record, unless an unexpired increment depends on it
    (409 backup_has_dependents). Returns the cancelled record, None when deleted."""
    catalog = BackupCatalog()
    record = _visible(principal, backup_id)
    if record.status in (BackupStatus.PENDING, BackupStatus.RUNNING):
        return _cancel(record)
    dependents = catalog.dependents(backup_id)
    if dependents:
        names = ", ".join(f"{d.name!r} ({d.backup_id})" for d in dependents[:5])
        raise BackupHasDependents(
            f"Backup {record.name!r} is the base of {len(dependents)} increment(s) that still "
            f"need it: {names}. Delete those increments first, or let them expire.",
            details={"dependents": [d.backup_id for d in dependents]})
    bucket = packages_bucket()
    prefix = locations.backup_prefix(backup_id)
    bucket.abort_uploads(prefix)
    bucket.delete_prefix(prefix)
    catalog.delete(backup_id)
    logger.info("backup deleted", extra={"job_id": backup_id})
    return None


def download_location(principal: Principal, backup_id: str) -> str:
    """A presigned GET valid for minutes. The URL is a credential: never log it."""
    record = _usable(_visible(principal, backup_id))
    key, filename = record.object_key, record.filename or f"backup-{backup_id}.zip"
    assert key is not None  # a completed backup has its object
    return packages_bucket().presigned_get(
        key, ttl_seconds=get_settings().download_url_ttl_seconds, filename=filename,
        content_type="application/zip")


def verify(principal: Principal, backup_id: str, password: SecretStr | None, *,
           background: bool = False) -> VerifyReport | VerifyAccepted:
    """Re-read the stored object: its SHA-256, every member's checksums and lines. Damage marks
    the backup corrupted and names the member; an intact one records when it was verified.

    A backup up to `verify_sync_max_bytes` is checked here and now (the report); a larger one,
    or any with `background`, is checked by a verification job (VerifyAccepted: 202), which
    records the same result when it ends. A verification already running is answered again."""
    catalog = BackupCatalog()
    record = _visible(principal, backup_id)
    if record.status not in (BackupStatus.COMPLETED, BackupStatus.CORRUPTED):
        raise BackupNotUsable(f"Backup {backup_id} is {record.status.value}: only a completed "
                              "backup can be verified.", details={"status": record.status.value})
    if record.encrypted and password is None:
        raise InvalidRequest("This backup is encrypted: send its password to verify its "
                             "members.", details={"field": "password"})
    key = record.object_key
    assert key is not None
    bucket = packages_bucket()
    secret = password.get_secret_value() if password else None
    stored = record.sizes.stored if record.sizes else 0
    if background or stored > get_settings().verify_sync_max_bytes:
        return _verify_in_background(principal, record, password)
    try:
        result = verify_backup(lambda: bucket.open_read(key), record.sha256, secret)
    except PasswordRequired as error:
        raise InvalidRequest(str(error), details={"field": "password"}) from error
    if result.ok:
        record = catalog.mark_verified(backup_id) if record.status is BackupStatus.COMPLETED \
            else record
    else:
        record = catalog.mark_corrupted(backup_id, member=result.member, error=JobError(
            code="backup_corrupted", message=_damage(result)))
        logger.warning("backup corrupted", extra={"job_id": backup_id, "member": result.member})
    return VerifyReport(backup_id=backup_id, status=record.status, ok=result.ok,
                        sha256=result.sha256, members=result.members, records=result.records,
                        member=result.member, problem=result.problem,
                        verified_at=record.verified_at)


def cancel_verification(principal: Principal, backup_id: str) -> BackupRecord:
    """Stop the backup's running verification job: the job ends `cancelled` (its subscribers
    told at once), its execution is stopped (a task already running stops at its next check,
    within about a second), the record's `verification` ends `cancelled`; the backup's status
    is left as it was. 409 when no verification job is running."""
    record = _visible(principal, backup_id)
    running = record.verification
    if running is None or running.status != "running":
        raise Conflict(f"Backup {backup_id} has no verification running; there is nothing to "
                       "cancel.", details={"verification": running.status if running else None})
    job = JobStore().find(running.job_id)
    if job is not None and job.status in ACTIVE_STATUSES:
        _cancel_check(job)
    # a job whose end never reached the record (or that ended meanwhile) is ended here too:
    # only a verification still marked running changes
    return BackupCatalog().end_verification(backup_id, running.job_id, error=CANCELLED,
                                            cancelled=True) or record


def cancel_preview(principal: Principal, backup_id: str, job_id: str) -> PreviewAccepted:
    """Stop a preview job (`cancelled`, its subscribers told at once, its execution stopped);
    409 when it already ended. Another user's job, or one of another backup, is 404."""
    job = _preview_job(principal, backup_id, job_id)
    if job.status not in ACTIVE_STATUSES:
        raise Conflict(f"The preview {job_id} is {job.status.value}; there is nothing to "
                       "cancel.", details={"status": job.status.value})
    job = _cancel_check(job)
    return PreviewAccepted(backup_id=backup_id, job_id=job_id, status=job.status,
                           progress=job.progress,
                           links=PreviewLinks(result=preview_path(backup_id, job_id)))


def _cancel_check(job: Job) -> Job:
    """A verify job (a verification or a preview) cancelled: the row first (the tasks' check
    reads it), the terminal event, then the execution stopped. A job that ended meanwhile is
    left as it ended."""
    try:
        cancelled = JobStore().cancel(job.job_id)
    except Conflict:
        return JobStore().require(job.job_id)
    publish_terminal(cancelled)
    try:
        _stop_execution(cancelled)
    except WorkflowUnavailable:  # the tasks see the cancel themselves at their next check
        logger.warning("verify execution not stopped", extra={"job_id": job.job_id})
    logger.info("check cancelled", extra={"job_id": job.job_id,
                                          "check": job.verify_state.request.check})
    return cancelled


def _verify_in_background(principal: Principal, record: BackupRecord,
                          password: SecretStr | None) -> VerifyAccepted:
    """A verification job (workflows/verify.py) for the backup, or the one already running.
    The password is checked against the manifest first (a wrong one is a 400 now, not a failed
    job later) and travels sealed in the job row."""
    running = record.verification
    if running is not None and running.status == "running" and _still_active(running.job_id):
        return VerifyAccepted(backup_id=record.backup_id, job_id=running.job_id,
                              verification=running, links=BackupLinks.of(record.backup_id))
    key = record.object_key
    assert key is not None
    secret = password.get_secret_value() if password else None
    try:
        with packages_bucket().open_read(key) as stream, \
                BackupContainer(stream, secret) as backup:
            _ = backup.manifest
    except PasswordRequired as error:
        raise InvalidRequest(str(error), details={"field": "password"}) from error
    except FormatError:
        pass  # damage: the job finds it, names it and marks the backup
    job_id = _start_check(principal, record, password, "verify")
    started = BackupCatalog().find(record.backup_id)
    assert started is not None
    assert started.verification is not None
    return VerifyAccepted(backup_id=record.backup_id, job_id=job_id,
                          verification=started.verification,
                          links=BackupLinks.of(record.backup_id))


def _still_active(job_id: str) -> bool:
    """Whether a verification the record says is running still has a live job (a job whose
    end was never written to the record must not block the next verification)."""
    job = JobStore().find(job_id)
    return job is not None and job.status in ACTIVE_STATUSES


def _start_check(principal: Principal, record: BackupRecord, password: SecretStr | None,
                 check: Literal["verify", "preview"]) -> str:
    """The job of a verification or a preview, its execution started; its id."""
    store = JobStore()
    job_id = new_job_id()
    store.create(principal.user_id, VerifyState(request=VerifyJobRequest(
        backup_id=record.backup_id, check=check),
        stored_bytes=record.sizes.stored if record.sizes else 0),
        job_id=job_id, sealed_password=passwords.seal(password, job_id) if password else None)
    catalog = BackupCatalog()
    if check == "verify":
        catalog.start_verification(record.backup_id, job_id)
    try:
        arn = workflow_engine().start(Machine.VERIFY, job_id, JobRef(job_id=job_id))
    except WorkflowUnavailable as error:
        failure = JobError(code="start_failed", message=f"The {check} could not be started. "
                                                        "Try again.")
        store.fail(job_id, failure)
        if check == "verify":
            catalog.end_verification(record.backup_id, job_id, error=failure)
        raise TransientError(f"The {check} could not be started; try again in a moment.",
                             details={"backupId": record.backup_id}) from error
    if arn is not None:
        store.record_execution(job_id, arn)
    logger.info(f"{check} started", extra={"job_id": job_id, "backup_id": record.backup_id})
    return job_id


def preview(principal: Principal, backup_id: str, password: SecretStr | None, *,
            background: bool = False) -> BackupPreview | PreviewAccepted:
    """What the backup holds per project, and what a restore would do to its target now.

    Up to `verify_sync_max_bytes` stored, computed here and now; a larger backup (or
    `background`) is previewed by a job (PreviewAccepted: 202), whose result is then read at
    `GET /backups/{id}/preview/{jobId}` (`preview_result`)."""
    record = _usable(_visible(principal, backup_id))
    if record.encrypted and password is None:
        raise InvalidRequest("This backup is encrypted: send its password (X-Backup-Password) "
                             "to preview it.", details={"field": "X-Backup-Password"})
    stored = record.sizes.stored if record.sizes else 0
    if background or stored > get_settings().verify_sync_max_bytes:
        return _preview_in_background(principal, record, password)
    return compute_preview(record, password.get_secret_value() if password else None)


def _preview_in_background(principal: Principal, record: BackupRecord,
                           password: SecretStr | None) -> PreviewAccepted:
    """A preview job (workflows/verify.py, check `preview`): the caller's own job row, its
    result kept there (bounded: MAX_PREVIEW_PROJECTS projects listed) for the job's days."""
    job_id = _start_check(principal, record, password, "preview")
    return PreviewAccepted(backup_id=record.backup_id, job_id=job_id, status=JobStatus.QUEUED,
                           links=PreviewLinks(result=preview_path(record.backup_id, job_id)))


def preview_path(backup_id: str, job_id: str) -> str:
    return f"/backups/{backup_id}/preview/{job_id}"


def preview_result(principal: Principal, backup_id: str, job_id: str
                   ) -> BackupPreview | PreviewAccepted:
    """A preview job's result once it succeeded, how it stands while it runs (202), its
    error when it failed. Another user's job, or one of another backup, is 404."""
    job = _preview_job(principal, backup_id, job_id)
    state = job.verify_state
    if job.status is JobStatus.SUCCEEDED and state.preview is not None:
        return state.preview
    if job.status in ACTIVE_STATUSES:
        return PreviewAccepted(backup_id=backup_id, job_id=job_id, status=job.status,
                               progress=job.progress,
                               links=PreviewLinks(result=preview_path(backup_id, job_id)))
    error = job.error or JobError(code="internal_error", message="The preview did not finish.")
    raise PreviewFailed(f"The preview {job_id} {job.status.value}: {error.message}",
                        details={"status": job.status.value, "code": error.code})


def _preview_job(principal: Principal, backup_id: str, job_id: str) -> Job:
    _visible(principal, backup_id)
    job = JobStore().find(job_id)
    if job is None or job.user_id != principal.user_id or job.kind is not JobKind.VERIFY \
            or job.verify_state.request.backup_id != backup_id \
            or job.verify_state.request.check != "preview":
        raise NotFound(f"No preview {job_id} of backup {backup_id} was found for this account.")
    return job


def _damage(result: Verification) -> str:
    where = f"member {result.member}" if result.member else "the stored object"
    return f"Verification found {where} damaged: {result.problem}"


def _visible(principal: Principal, backup_id: str) -> BackupRecord:
    return BackupCatalog().get(backup_id, principal.user_id, admin=principal.is_admin)


def _usable(record: BackupRecord) -> BackupRecord:
    if record.status is not BackupStatus.COMPLETED or record.object_key is None:
        raise BackupNotUsable(f"Backup {record.backup_id} is {record.status.value}; only a "
                              "completed backup can be used.",
                              details={"status": record.status.value})
    return record


def _progress(record: BackupRecord) -> Progress | None:
    if record.status not in (BackupStatus.PENDING, BackupStatus.RUNNING):
        return None
    job = JobStore().find(record.backup_id)
    return job.progress if job is not None else None


def _cancel(record: BackupRecord) -> BackupRecord:
    """Stop the job's workflow, leave nothing behind, end the record failed (cancelled)."""
    store = JobStore()
    job = store.find(record.backup_id)
    if job is not None and job.status in ACTIVE_STATUSES:
        try:
            job = store.cancel(record.backup_id)
        except Conflict:  # it ended meanwhile: whatever ended it settled the record
            return BackupCatalog().find(record.backup_id) or record
        publish_terminal(job)
        _stop_execution(job)
    bucket = packages_bucket()
    discard_job_objects(bucket, record.backup_id, include_package=False)
    prefix = locations.backup_prefix(record.backup_id)
    bucket.abort_uploads(prefix)
    bucket.delete_prefix(prefix)
    try:
        return BackupCatalog().mark_failed(record.backup_id, CANCELLED)
    except Conflict:
        return BackupCatalog().find(record.backup_id) or record


def _stop_execution(job: Job) -> None:
    if job.execution_arn:
        workflow_engine().stop(job.execution_arn, "JobCancelled",
                               json.dumps({"jobId": job.job_id}))

