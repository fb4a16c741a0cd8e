"""The logic behind the /restores routes (docs/backups.md, "Restores").

POST /restores                    a restore job, started at once (202): the import workflow
                                  with a backup source and the decision the request makes
GET  /restores, /restores/{id}    history and the job (report, dry run, outcome: the import's)
GET  .../actions                  per session, what the dry run would do / the restore did
POST .../rollback                 puts the target back as it was (the import's rollback)
DELETE /restores/{id}             cancels a restore that has not finished: it stops, and what
                                  it wrote is undone before it ends cancelled
POST /restores/uploads            a backup file from elsewhere: a presigned multipart upload
GET  .../uploads/{id}/parts       presigned PUT URLs for parts
POST .../uploads/{id}/complete    the parts assembled, the object pinned (ETag and size)
DELETE .../uploads/{id}           an upload not completed: aborted and forgotten

A restore reads a backup of the caller's (or, for an administrator, any user's or an instance
backup), an increment with its whole chain, each object pinned by its ETag when the job is
made; or an upload of the caller's, completed. It writes to the caller's account, or for an
administrator another user's (`target`): everyone else gets 403 for that.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from dataport.api import imports
from dataport.api.idempotency import StartCommand, Started, start_once
from dataport.auth import Principal
from dataport.backups.catalog import BackupCatalog
from dataport.bucket import ObjectMissing, packages_bucket
from dataport.engine import Machine, WorkflowUnavailable, workflow_engine
from dataport.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    TransientError,
)
from dataport.jobs import passwords, rate_limit
from dataport.jobs.restore_uploads import (
    UPLOAD_DAYS,
    RestoreUpload,
    RestoreUploads,
    new_expiry,
)
from dataport.jobs.store import JobStore, new_job_id, utcnow
from dataport.models.backups import BackupRecord, BackupScope, BackupStatus
from dataport.models.imports import ActionPage, ImportCreate
from dataport.models.jobs import Job, JobError, JobKind, JobStatus, Progress, RestoreState
from dataport.models.restores import (
    BACKUP_FILENAME,
    INSTANCE_TARGET,
    MAX_PARTS,
    MIN_PART_BYTES,
    BackupLink,
    PartUrl,
    PartUrls,
    RestoreLinks,
    RestoreRequest,
    RestoreSource,
    RestoreUploadComplete,
    RestoreUploadCreate,
    RestoreUploadCreated,
    RestoreUploadView,
    RestoreView,
)
from dataport.models.tasks import ImportStep, RestoreShardsTask
from dataport.observability import logger
from dataport.progress.publisher import publish_claimed
from dataport.progress.throttle import now_ms
from dataport.settings import get_settings
from dataport.workflows import restore_shards

#: a chain longer than this is refused (the job row holds it)
MAX_CHAIN = 1000
#: part URLs one call hands out
MAX_PART_URLS = 100
#: the rate-limit counter of instance restores
INSTANCE_KIND = "instance restore"
#: the code of a cancel refused because the restore has finished (roll it back instead)
RESTORE_FINISHED = "restore_finished"
#: the progress phase of a restore while its cancel undoes what it wrote
CANCELLING_PHASE = "cancelling"
#: what a cancelled restore says until its undo ends (which says what it undid)
CANCELLING = JobError(code="cancelled", message=(
    "Cancelled at your request: the restore stops at its next session boundary and what it "
    "wrote is being undone; it ends cancelled, with the target as it was before it."))


def create_restore(principal: Principal, request: RestoreRequest,
                   idempotency_key: str | None = None, lambda_context: Any = None
                   ) -> tuple[Job, rate_limit.RateLimitState | None]:
    """Check who may read the source and write the target, then (once per Idempotency-Key)
    count against the rate limit, record the job and start it."""
    target = target_user_id(principal, request)
    if request.backup_id is not None:
        record = _readable(principal, request.backup_id)
        if record.scope is BackupScope.INSTANCE and target != INSTANCE_TARGET:
            raise InvalidRequest("An instance backup restores into the instance (every user's "
                                 "data under its owner): give target \"instance\".",
                                 details={"field": "target"})
        if record.scope is BackupScope.USER and target == INSTANCE_TARGET:
            # a user's backup into the instance goes back to the user who owns it
            request = request.model_copy(update={"target": record.owner_id})
    else:
        assert request.upload_id is not None  # the model requires one of them
        RestoreUploads().get(request.upload_id, principal.user_id)  # the caller's, or 404
    command = StartCommand[RestoreRequest](user_id=principal.user_id,
                                           idempotency_key=idempotency_key, request=request)
    started = start_once(_create, command, lambda_context)
    return get_restore(principal.user_id, started.job_id), started.rate


def _readable(principal: Principal, backup_id: str) -> BackupRecord:
    """A backup the caller may restore: their own; an administrator any (a user's backup back
    into that user's account is the administrator's disaster recovery)."""
    catalog = BackupCatalog()
    if not principal.is_admin:
        return catalog.get(backup_id, principal.user_id)
    record = catalog.find(backup_id)
    if record is None:
        raise NotFound(f"No backup {backup_id} was found.")
    return record


def target_user_id(principal: Principal, request: RestoreRequest) -> str:
    """Whose data the restore writes: the caller's, or for an administrator another user's."""
    if request.target in ("self", principal.user_id):
        return principal.user_id
    if not principal.is_admin:
        raise Forbidden("Only an administrator may restore into another account or the "
                        "instance.", details={"field": "target"})
    return request.target  # a user's id, or the instance (INSTANCE_TARGET)


def _create(*, command: StartCommand[RestoreRequest]) -> Started:
    user_id, request = command.user_id, command.request
    target = user_id if request.target == "self" else request.target
    source, messages = _source(user_id, request)
    stored = sum(link.pin.bytes for link in source.links)
    shard_messages = restore_shards.shard_size(messages, stored)
    settings = get_settings()
    if target == INSTANCE_TARGET:  # counted on their own (InstanceRestoreRateLimit)
        rate = rate_limit.consume(user_id, INSTANCE_KIND, settings.instance_restore_rate_limit)
    else:
        rate = rate_limit.consume(user_id, JobKind.RESTORE, settings.restore_rate_limit)
    job_id = new_job_id()
    password = request.password
    state = RestoreState(request=ImportCreate(filename=BACKUP_FILENAME),
                         restore=request.model_copy(update={"password": None}), source=source,
                         upload_pin=source.restored.pin, decision=request.decision(),
                         target_user_id=target, in_shards=(
                             target != INSTANCE_TARGET and messages > shard_messages),
                         shard_messages=shard_messages)
    store = JobStore()
    store.create(user_id, state, job_id=job_id,
                 sealed_password=passwords.seal(password, job_id) if password else None)
    step: BaseModel = ImportStep(job_id=job_id, next="validate", dry_run=request.dry_run)
    machine = Machine.IMPORT
    if state.sharded:  # shards: per user, and by sessions (workflows.restore_shards)
        step, machine = RestoreShardsTask(action="plan", job_id=job_id), Machine.RESTORE
    try:
        execution_arn = workflow_engine().start(machine, job_id, step)
    except WorkflowUnavailable as error:
        logger.exception("could not start the restore", extra={"job_id": job_id})
        store.fail(job_id, JobError(code="unavailable", message=(
            "The restore could not be started; start it again in a moment.")))
        raise TransientError("The restore could not be started; try again in a moment.",
                             details={"jobId": job_id}) from error
    if execution_arn is not None:
        store.record_execution(job_id, execution_arn)
    logger.info("restore started", extra={"job_id": job_id, "mode": request.mode.value,
                                           "links": len(source.links)})
    return Started(job_id=job_id, rate=rate)


def _source(user_id: str, request: RestoreRequest) -> tuple[RestoreSource, int]:
    """The objects the restore reads, each pinned now: what is restored is what was chosen;
    and about how many messages they hold (the catalog's counts; an upload's by its size),
    which decides whether one user's restore runs in shards."""
    bucket = packages_bucket()
    if request.upload_id is not None:
        upload = RestoreUploads().get(request.upload_id, user_id)
        if upload.status != "completed" or upload.pin is None:
            raise Conflict("The upload is not complete: POST .../complete with its parts "
                           "first.", details={"code": "upload_incomplete"})
        return (RestoreSource(links=[BackupLink(backup_id=upload.upload_id, pin=upload.pin)],
                              from_upload=True),
                upload.pin.bytes // restore_shards.UPLOAD_BYTES_PER_MESSAGE)
    assert request.backup_id is not None
    catalog = BackupCatalog()
    chain: list[BackupRecord] = []
    wanted: str | None = request.backup_id
    while wanted is not None:
        record = catalog.find(wanted)
        if record is None:
            raise Gone(f"Backup {wanted}, which this backup's chain needs, no longer exists.",
                       details={"backupId": wanted})
        _restorable(record)
        chain.append(record)
        wanted = record.parent_id
        if len(chain) > MAX_CHAIN:
            raise InvalidRequest(f"The chain of backup {request.backup_id} has more than "
                                 f"{MAX_CHAIN} links.", details={"field": "backupId"})
    links = []
    for record in reversed(chain):  # oldest first
        assert record.object_key is not None  # completed backups have their object
        try:
            pin = bucket.pin_in_place(record.object_key)
        except ObjectMissing as error:
            raise Gone(f"The stored object of backup {record.backup_id} is gone.",
                       details={"backupId": record.backup_id}) from error
        links.append(BackupLink(backup_id=record.backup_id, pin=pin, sha256=record.sha256))
    return RestoreSource(links=links), sum(r.counts.messages for r in chain if r.counts)


def _restorable(record: BackupRecord) -> None:
    if record.status is BackupStatus.COMPLETED:
        return
    if record.status is BackupStatus.CORRUPTED:
        raise Conflict(f"Backup {record.backup_id} is corrupted and cannot be restored.",
                       details={"code": "backup_corrupted", "backupId": record.backup_id})
    if record.status is BackupStatus.EXPIRED:
        raise Gone(f"Backup {record.backup_id} has expired.",
                   details={"backupId": record.backup_id})
    raise Conflict(f"Backup {record.backup_id} is {record.status.value}: only a completed "
                   "backup can be restored.", details={"status": record.status.value,
                                                       "backupId": record.backup_id})


def get_restore(user_id: str, job_id: str) -> Job:
    job = JobStore().get(job_id, user_id)
    if job.kind is not JobKind.RESTORE:
        raise NotFound(f"No restore {job_id} was found for this account.")
    return job


def list_restores(user_id: str, limit: int, next_token: str | None
                  ) -> tuple[list[Job], str | None]:
    return JobStore().history(user_id, JobKind.RESTORE, limit=limit, next_token=next_token)


def actions(user_id: str, job_id: str, dry_run: bool, limit: int,
            token: str | None) -> ActionPage:
    return imports.job_actions(get_restore(user_id, job_id), dry_run, limit, token)


def rollback(user_id: str, job_id: str) -> Job:
    """Put the target back as it was before the restore (newest writes first); a restore in
    shards rolls back each of its shards, then what it removed itself."""
    job = get_restore(user_id, job_id)
    if not job.restore_state.sharded:
        return imports.start_rollback(user_id, job)
    return imports.start_rollback(user_id, job, machine=Machine.RESTORE, step=RestoreShardsTask(
        action="plan_rollback", job_id=job_id, mode="rollback"))


def cancel(user_id: str, job_id: str) -> Job:
    """Stop a restore that has not finished and put its target back as it was: the job
    becomes `cancelling` (every task, and every shard of a restore in shards, stops at its
    next look at the rows, at most a second apart while it writes, at a session boundary),
    the workflow's clean-up undoes what it wrote (as a rollback does), then the job ends
    `cancelled`. Executions are told, not stopped: a StopExecution would stop the clean-up
    with them and leave a half-written session. A finished restore is rolled back instead."""
    job = get_restore(user_id, job_id)
    if not _cancellable(job):
        return job  # asked already: the undo is under way
    try:
        cancelling = JobStore().request_cancel(job_id, CANCELLING, Progress(
            phase=CANCELLING_PHASE, current=job.progress.current, total=job.progress.total),
            claim_at_ms=now_ms())
    except Conflict:  # it moved on meanwhile: cancelling already, or ended (say how)
        job = get_restore(user_id, job_id)
        _cancellable(job)
        return job
    publish_claimed(cancelling)
    logger.info("restore cancelling", extra={"job_id": job_id})
    return cancelling


def _cancellable(job: Job) -> bool:
    """Whether DELETE may move the job to cancelling (False: it is cancelling already);
    a 409 saying why not otherwise."""
    state, job_id = job.restore_state, job.job_id
    if job.status is JobStatus.CANCELLING:
        return False
    if state.parent_id is not None:
        raise Conflict(f"Restore {job_id} is a shard of restore {state.parent_id}: cancel that "
                       f"restore (DELETE /restores/{state.parent_id}), which stops every "
                       "shard.", details={"code": "restore_shard", "parentId": state.parent_id})
    if job.progress.phase == imports.ROLLING_BACK and job.status is JobStatus.RUNNING:
        raise Conflict("A rollback cannot be cancelled; it will finish shortly.",
                       details={"code": "rollback_running", "status": job.status.value})
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        wrote = state.outcome is not None and state.outcome.wrote
        hint = (f" POST /restores/{job_id}/rollback puts the target back as it was."
                if wrote and job.status is not JobStatus.ROLLED_BACK else "")
        raise Conflict(f"Restore {job_id} is {job.status.value}: it has finished, so there is "
                       f"nothing to cancel.{hint}",
                       details={"code": RESTORE_FINISHED, "status": job.status.value})
    return True


def view(job: Job) -> RestoreView:
    state = job.restore_state
    return RestoreView(
        job_id=job.job_id, status=job.status, created_at=job.created_at,
        updated_at=job.updated_at, finished_at=job.finished_at, request=state.restore.stored(),
        target_user_id=state.target_user_id, parent_id=state.parent_id,
        shards=restore_shards.shard_ids(job.job_id) if state.sharded else None,
        chain=[link.backup_id for link in state.source.links], progress=job.progress,
        report=state.report, dry_run=state.dry_run, outcome=state.outcome, error=job.error,
        links=RestoreLinks.of(job.job_id))


# ---------------------------------------------------------------------------- uploads


def create_upload(user_id: str, request: RestoreUploadCreate) -> RestoreUploadCreated:
    """A multipart upload of a backup file, sized now: parts of the configured size, larger
    when the file would need more than S3's 10,000."""
    settings = get_settings()
    if request.size > settings.max_restore_upload_bytes:
        raise InvalidRequest(f"The file has {request.size} bytes; restore uploads are limited "
                             f"to {settings.max_restore_upload_bytes}.",
                             details={"field": "size"})
    part_size = max(settings.restore_part_size_mb * 1024 * 1024, MIN_PART_BYTES,
                    math.ceil(request.size / MAX_PARTS))
    upload_id = uuid.uuid4().hex
    key = upload_key(upload_id)
    now = utcnow()
    s3_upload_id = packages_bucket().create_upload(key, {
        "ContentType": "application/zip", "ServerSideEncryption": "AES256"})
    RestoreUploads().create(RestoreUpload(
        upload_id=upload_id, user_id=user_id, key=key, s3_upload_id=s3_upload_id,
        size=request.size, part_size=part_size, parts=math.ceil(request.size / part_size),
        created_at=now, expires_at=new_expiry(now)))
    return RestoreUploadCreated(upload_id=upload_id, part_size=part_size,
                                parts=math.ceil(request.size / part_size),
                                expires_at=now + timedelta(days=UPLOAD_DAYS))


def part_urls(user_id: str, upload_id: str, numbers: list[int]) -> PartUrls:
    """Presigned PUTs for the parts asked for (at most 100 a call; credentials: never
    logged)."""
    upload = RestoreUploads().get(upload_id, user_id)
    if upload.status != "uploading":
        raise Conflict("The upload is complete; it takes no more parts.",
                       details={"status": upload.status})
    if not numbers or len(numbers) > MAX_PART_URLS:
        raise InvalidRequest(f"Ask for 1 to {MAX_PART_URLS} part numbers at a time.",
                             details={"field": "numbers"})
    wrong = [n for n in numbers if not 1 <= n <= upload.parts]
    if wrong:
        raise InvalidRequest(f"Part numbers run from 1 to {upload.parts} for this file.",
                             details={"field": "numbers", "wrong": wrong[:10]})
    ttl = get_settings().upload_url_ttl_seconds
    bucket = packages_bucket()
    return PartUrls(parts=[PartUrl(number=n, url=bucket.presigned_part(
        upload.key, upload.s3_upload_id, n, ttl_seconds=ttl)) for n in dict.fromkeys(numbers)],
                    expires_at=utcnow() + timedelta(seconds=ttl))


def complete_upload(user_id: str, upload_id: str,
                    request: RestoreUploadComplete) -> RestoreUploadView:
    """The parts assembled into the object (S3 checks each part's ETag), then pinned."""
    uploads = RestoreUploads()
    upload = uploads.get(upload_id, user_id)
    if upload.status == "completed":
        return upload_view(upload)
    numbers = [part.number for part in request.parts]
    if numbers != list(range(1, upload.parts + 1)):
        raise InvalidRequest(f"List every part, 1 to {upload.parts}, in order, with the ETag "
                             "its PUT answered.", details={"field": "parts"})
    bucket = packages_bucket()
    try:
        bucket.complete_upload(upload.key, upload.s3_upload_id, [
            {"PartNumber": part.number, "ETag": part.etag} for part in request.parts])
    except ClientError as error:  # S3 refuses a wrong ETag or a missing part
        logger.info("restore upload refused by S3", extra={"upload_id": upload_id,
                                                           "error": type(error).__name__})
        raise InvalidRequest("S3 refused the parts: one is missing, too small or its ETag is "
                             "not the one its upload answered.",
                             details={"field": "parts"}) from error
    pin = bucket.pin_in_place(upload.key)
    if pin.bytes != upload.size:
        bucket.delete(upload.key)
        raise InvalidRequest(f"The parts make {pin.bytes} bytes, not the {upload.size} "
                             "announced; upload the file again.", details={"field": "parts"})
    return upload_view(uploads.complete(upload_id, pin))


def abort_upload(user_id: str, upload_id: str) -> None:
    """An upload not completed: its multipart upload aborted (S3 drops the parts sent so
    far), then its row deleted; a completed one is kept (a restore may read it): 409."""
    uploads = RestoreUploads()
    upload = uploads.get(upload_id, user_id)
    if upload.status == "completed":
        raise Conflict("The upload is complete: it is kept for restores until it expires "
                       f"({UPLOAD_DAYS} days after it was made) and cannot be aborted.",
                       details={"code": "upload_completed", "status": upload.status})
    bucket = packages_bucket()
    try:
        bucket.abort_upload(upload.key, upload.s3_upload_id)
    except ClientError as error:  # aborted (or expired) already: nothing left to drop
        if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise
    uploads.forget(upload_id)
    logger.info("restore upload aborted", extra={"upload_id": upload_id})


def upload_view(upload: RestoreUpload) -> RestoreUploadView:
    return RestoreUploadView(upload_id=upload.upload_id, status=upload.status,
                             bytes=upload.size)


def upload_key(upload_id: str) -> str:
    return f"restores/uploads/{upload_id}/{BACKUP_FILENAME}"

