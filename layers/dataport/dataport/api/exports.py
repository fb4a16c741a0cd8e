"""The logic behind the /exports routes: start, list, show, cancel or delete, download."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from dataport import aws
from dataport.api.idempotency import StartCommand, Started, start_once
from dataport.errors import Gone, NotFound, TransientError
from dataport.jobs import rate_limit
from dataport.jobs.cleanup import discard_job_objects
from dataport.jobs.store import JobStore, new_job_id
from dataport.models.exports import ExportRequest
from dataport.models.jobs import ACTIVE_STATUSES, ExportState, Job, JobError, JobKind, JobStatus
from dataport.models.tasks import JobRef
from dataport.observability import logger
from dataport.packaging import passwords
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
    return JobStore().get(started.job_id, user_id), started.rate


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
        execution = aws.stepfunctions().start_execution(
            stateMachineArn=settings.export_state_machine_arn, name=job.job_id,
            input=JobRef(job_id=job.job_id).model_dump_json(by_alias=True))
    except ClientError as error:
        logger.exception("could not start the export workflow", extra={"job_id": job.job_id})
        store.fail(job.job_id, JobError(code="start_failed",
                                        message="The export could not be started. Try again."))
        rate_limit.refund(rate)
        raise TransientError("The export could not be started; try again in a moment.",
                             details={"jobId": job.job_id}) from error
    store.record_execution(job.job_id, execution["executionArn"])
    logger.info("export started", extra={"job_id": job.job_id})
    return Started(job_id=job.job_id, rate=rate)


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
        discard_job_objects(job_id, include_package=True)
        return job
    if job.status is JobStatus.DELETED:
        return job
    discard_job_objects(job_id, include_package=True)
    return store.delete(job_id)


def download_location(user_id: str, job_id: str) -> str:
    """A presigned GET valid for minutes. The URL is a credential: never log it."""
    job = _export(JobStore().get(job_id, user_id))
    if job.status is JobStatus.DELETED:
        raise Gone("This export was deleted; start a new export to download your data.")
    package = job.export_state.package
    if job.status is not JobStatus.SUCCEEDED or package is None:
        raise NotFound(f"Export {job_id} has no package to download yet (status: "
                       f"{job.status.value}).", details={"status": job.status.value})
    if package.expires_at <= datetime.now(UTC):
        raise Gone("This export's package has expired; start a new export to download it.")
    return presigned_download(package).url


def _export(job: Job) -> Job:
    if job.kind is not JobKind.EXPORT:
        raise NotFound(f"No export {job.job_id} was found for this account.")
    return job


def _stop_execution(job: Job) -> None:
    if not job.execution_arn:
        return
    try:
        aws.stepfunctions().stop_execution(executionArn=job.execution_arn,
                                           error="JobCancelled",
                                           cause=json.dumps({"jobId": job.job_id}))
    except ClientError as error:
        # Already finished or never started: nothing left to stop.
        if error.response.get("Error", {}).get("Code") not in {"ExecutionDoesNotExist",
                                                                "ValidationException"}:
            raise
