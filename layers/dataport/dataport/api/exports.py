"""The logic behind the /exports routes: start, list, show, cancel or delete, download."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dataport.api.idempotency import StartCommand, Started, start_once
from dataport.bucket import packages_bucket
from dataport.engine import Machine, WorkflowUnavailable, workflow_engine
from dataport.errors import Gone, NotFound, TransientError
from dataport.jobs import passwords, rate_limit
from dataport.jobs.store import JobStore, new_job_id
from dataport.models.exports import ExportRequest
from dataport.models.jobs import ACTIVE_STATUSES, ExportState, Job, JobError, JobKind, JobStatus
from dataport.models.tasks import JobRef
from dataport.observability import logger
from dataport.packaging.cleanup import discard_job_objects
from dataport.packaging.download import presigned_download
from dataport.progress.publisher import publish_terminal
from dataport.settings import get_settings


def start_export(user_id: str, request: ExportRequest, idempotency_key: str | None,
                 lambda_context: Any = None) -> tuple[Job, rate_limit.RateLimitState | None]:
    """Count against the rate limit, record the job and start its workflow. The same
    Idempotency-Key returns the same job without counting again (api/idempotency.py); the
    rate is None then."""
    command = StartCommand[ExportRequest](user_id=user_id, idempotency_key=idempotency_key,
                                          request=request)
    started = start_once(_start, command, lambda_context)
    return started.job or JobStore().get(started.job_id, user_id), started.rate


def _start(*, command: StartCommand[ExportRequest]) -> Started:
    user_id, request = command.user_id, command.request
    settings = get_settings()
    rate = rate_limit.consume(user_id, JobKind.EXPORT, settings.export_rate_limit)
    store = JobStore()
    job_id = new_job_id()
    password = request.password
    job = store.create(user_id, ExportState(request=request), job_id=job_id,
                       sealed_password=passwords.seal(password, job_id) if password else None)
    try:
        execution_arn = workflow_engine().start(Machine.EXPORT, job.job_id,
                                                JobRef(job_id=job.job_id))
    except WorkflowUnavailable as error:
        logger.exception("could not start the export workflow", extra={"job_id": job.job_id})
        store.fail(job.job_id, JobError(code="start_failed",
                                        message="The export could not be started. Try again."))
        rate_limit.refund(rate)
        raise TransientError("The export could not be started; try again in a moment.",
                             details={"jobId": job.job_id}) from error
    if execution_arn is not None:  # None: started already (a new job id: never)
        store.record_execution(job.job_id, execution_arn)
    logger.info("export started", extra={"job_id": job.job_id})
    return Started(job_id=job.job_id, rate=rate, job=job)


def get_export(user_id: str, job_id: str) -> Job:
    return _export(JobStore().get(job_id, user_id))


def list_exports(user_id: str, limit: int, next_token: str | None) -> tuple[list[Job], str | None]:
    return JobStore().history(user_id, JobKind.EXPORT, limit=limit, next_token=next_token)


def cancel_or_delete(user_id: str, job_id: str) -> Job:
    """A running export is cancelled (execution stopped, uploads aborted, staged objects
    removed); a finished one is deleted (package removed, job kept in history as deleted)."""
    store = JobStore()
    job = _export(store.get(job_id, user_id))
    if job.status in ACTIVE_STATUSES:
        job = store.cancel(job_id)
        publish_terminal(job)  # before the clean-up: subscribers learn at once, and never fail it
        _stop_execution(job)
        discard_job_objects(packages_bucket(), job_id, include_package=True)
        return job
    if job.status is JobStatus.DELETED:
        return job
    discard_job_objects(packages_bucket(), job_id, include_package=True)
    return store.delete(job_id)


def download_location(user_id: str, job_id: str, now: datetime | None = None) -> str:
    """A presigned GET valid for minutes, while the package is kept (PackageRetentionDays
    after the export finished; `now`: the request's time). The URL is a credential: never log
    it."""
    job = _export(JobStore().get(job_id, user_id))
    if job.status is JobStatus.DELETED:
        raise Gone("This export was deleted; start a new export to download your data.")
    package = job.export_state.package
    if job.status is not JobStatus.SUCCEEDED or package is None:
        raise NotFound(f"Export {job_id} has no package to download yet (status: "
                       f"{job.status.value}).", details={"status": job.status.value})
    if package.expires_at <= (now or datetime.now(UTC)):
        raise Gone("This export's package has expired; start a new export to download it.")
    return presigned_download(packages_bucket(), package).url


def _export(job: Job) -> Job:
    if job.kind is not JobKind.EXPORT:
        raise NotFound(f"No export {job.job_id} was found for this account.")
    return job


def _stop_execution(job: Job) -> None:
    if job.execution_arn:  # one that already finished is left as it is
        workflow_engine().stop(job.execution_arn, "JobCancelled",
                               json.dumps({"jobId": job.job_id}))
