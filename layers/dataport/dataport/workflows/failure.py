"""The workflows' Catch: leave nothing behind and tell the user what happened in plain words."""

from __future__ import annotations

import json

from dataport.backups.catalog import BackupCatalog
from dataport.bucket import PackagesBucket, packages_bucket
from dataport.errors import (
    Conflict,
    DatabaseRefused,
    DataportError,
    IdTaken,
    InvalidRequest,
    NotFound,
    NotSupported,
    RecordRefused,
    UploadChanged,
    WriteRejected,
)
from dataport.jobs.store import JobStore
from dataport.models.backups import BackupStatus
from dataport.models.jobs import JobError, JobKind
from dataport.models.tasks import FailedTaskInput
from dataport.observability import logger
from dataport.packaging import locations
from dataport.packaging.cleanup import discard_job_objects
from dataport.progress.publisher import publish_terminal
from dataport.workflows.verify import fail_verification

#: errors whose own message is written for the user (dataport.errors classes), by name: code
_READABLE = {error.__name__: error.code for error in (
    InvalidRequest, NotSupported, NotFound, Conflict, IdTaken, WriteRejected, DatabaseRefused,
    UploadChanged, RecordRefused, DataportError)}


def mark_failed(task: FailedTaskInput) -> JobError:
    """Abort uploads, delete staged objects and any package, record a readable reason and tell
    the subscribers (job.failed). A job that was cancelled meanwhile stays cancelled."""
    bucket = packages_bucket()
    discard_job_objects(bucket, task.job_id, include_package=True)
    store = JobStore()
    job = store.find(task.job_id)
    backup = job is not None and job.kind is JobKind.BACKUP
    verification = job is not None and job.kind is JobKind.VERIFY
    error = describe(task.error.Error, task.error.Cause, task.job_id,
                     what="backup" if backup else "verification" if verification else "export",
                     hint="Try again later." if verification
                     else "Try a smaller selection (filters) or try again later.")
    if backup:
        _fail_backup(bucket, task.job_id, error)
    if verification and job is not None:
        fail_verification(job, error)
    try:
        failed = store.fail(task.job_id, error)
    except Conflict:  # whoever ended it told the subscribers
        logger.info("job already ended; left as it is", extra={"job_id": task.job_id})
    else:
        publish_terminal(failed)
    logger.warning("job failed", extra={"job_id": task.job_id, "error_code": error.code})
    return error


def _fail_backup(bucket: PackagesBucket, backup_id: str, error: JobError) -> None:
    """The catalog record failed and the backup's object (a finalize that failed after
    assembling it) deleted, unless the backup completed before the failure: then it stays."""
    catalog = BackupCatalog()
    try:
        catalog.mark_failed(backup_id, error)
    except Conflict:
        record = catalog.find(backup_id)
        if record is not None and record.status is BackupStatus.COMPLETED:
            logger.info("backup completed before the failure; kept", extra={"job_id": backup_id})
            return
    prefix = locations.backup_prefix(backup_id)
    bucket.abort_uploads(prefix)
    bucket.delete_prefix(prefix)


def describe(name: str, cause: str | None, job_id: str, what: str = "export",
             hint: str = "Try a smaller selection (filters) or try again later.") -> JobError:
    """A readable reason for a task's error (`what` names the job for the person reading)."""
    message = None
    if cause:
        try:
            payload = json.loads(cause)
            message = payload.get("errorMessage") if isinstance(payload, dict) else None
            name = payload.get("errorType", name) if isinstance(payload, dict) else name
        except ValueError:
            message = None
    if name in _READABLE and message:
        return JobError(code=_READABLE[name], message=message)
    if name in {"States.Timeout", "States.TaskFailed", "Lambda.Unknown"}:
        return JobError(code="timeout", message=f"The {what} took too long and was stopped. "
                        f"{hint}")
    if name == "TransientError":  # still failing after the workflow's retries
        return JobError(code="unavailable", message=f"A service the {what} needs (the "
                        "database or storage) stayed unreachable through several retries; "
                        "nothing is left half-written. Try again in a few minutes.")
    return JobError(code="internal_error",
                    message=f"The {what} failed unexpectedly ({name}). Try again; if it keeps "
                    f"failing, contact support with job id {job_id}.")

