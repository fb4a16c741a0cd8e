"""The logic behind the /imports routes.

POST /imports       a job and a presigned S3 POST for its upload (never through API Gateway)
POST .../validate   starts the workflow once the file is there (see below)
GET  .../conflicts  the sessions the user already has and how they differ
POST .../execute    the decision (or a dry run), sent to the waiting workflow
GET  .../actions    per session, what the dry run would do / the execution did
POST .../rollback   puts back what the import changed
DELETE              cancels an import that has not finished

Why an explicit POST /validate rather than an S3 event: the client knows when its upload ended,
and calling validate tells it at once whether the file is there (409 otherwise); starting the
execution under the job's id makes a repeated call harmless. An S3 notification would need a
function wired to the bucket (a bucket <-> function dependency cycle in one template), give no
answer to the client, and fire for every object, also on the local stack, which emulates none.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from dataport.api.idempotency import StartCommand, Started, start_once
from dataport.bucket import packages_bucket
from dataport.engine import Machine, TaskGone, WorkflowUnavailable, workflow_engine
from dataport.errors import Conflict, InvalidRequest, NotFound, TransientError
from dataport.imports import storage
from dataport.jobs import passwords, rate_limit
from dataport.jobs.store import JobStore, new_job_id, utcnow
from dataport.models.imports import (
    CLEANUP_FAILED,
    DRY_RUN_LIMIT,
    MAX_DRY_RUNS,
    ActionPage,
    ConflictPage,
    ImportCreate,
    ImportDecision,
    ImportLinks,
    ImportView,
    SessionConflict,
    SessionResult,
    SourceFormat,
    UploadForm,
    ValidationReport,
)
from dataport.models.jobs import (
    ACTIVE_STATUSES,
    ImportState,
    Job,
    JobError,
    JobKind,
    JobStatus,
    Progress,
)
from dataport.models.tasks import ImportStep
from dataport.observability import logger
from dataport.progress.publisher import publish_terminal
from dataport.settings import get_settings

#: a failed or cancelled import may still have written sessions (each one whole)
ENDED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
ROLLING_BACK = "rolling_back"


def create_import(user_id: str, request: ImportCreate, idempotency_key: str | None = None,
                  lambda_context: Any = None) -> tuple[Job, UploadForm,
                                                       rate_limit.RateLimitState | None]:
    """Count against the rate limit and record the job; the upload form is made for each
    answer, a replayed Idempotency-Key's too (it is a credential: never stored). A replay of
    an import whose upload was already validated gets no new form: 409."""
    settings = get_settings()
    if request.size is not None and request.size > settings.max_upload_bytes:
        raise InvalidRequest(f"The file has {request.size} bytes; uploads are limited to "
                             f"{settings.max_upload_bytes} bytes.", details={"field": "size"})
    command = StartCommand[ImportCreate](user_id=user_id, idempotency_key=idempotency_key,
                                         request=request)
    started = start_once(_create, command, lambda_context)
    job = get_import(user_id, started.job_id)
    if job.status is not JobStatus.QUEUED or job.execution_arn:
        raise Conflict(f"Import {job.job_id}, made with this Idempotency-Key, is "
                       f"{job.status.value}: its upload is closed. Use a new key for a new "
                       "import.", details={"jobId": job.job_id, "status": job.status.value})
    return job, upload_form(job.job_id), started.rate


def _create(*, command: StartCommand[ImportCreate]) -> Started:
    user_id, request = command.user_id, command.request
    rate = rate_limit.consume(user_id, JobKind.IMPORT, get_settings().import_rate_limit)
    job_id = new_job_id()
    password = request.password
    JobStore().create(user_id, ImportState(request=request), job_id=job_id,
                      sealed_password=passwords.seal(password, job_id) if password else None)
    return Started(job_id=job_id, rate=rate)


def upload_form(job_id: str) -> UploadForm:
    """A presigned POST for exactly this job's key, capped in size, valid for minutes. The
    form is a credential: never logged."""
    settings = get_settings()
    issued = utcnow()
    url, fields = packages_bucket().presigned_post(
        storage.upload_key(job_id), max_bytes=settings.max_upload_bytes,
        ttl_seconds=settings.upload_url_ttl_seconds)
    return UploadForm(url=url, fields=fields, max_bytes=settings.max_upload_bytes,
                      expires_at=issued + timedelta(seconds=settings.upload_url_ttl_seconds))


def get_import(user_id: str, job_id: str) -> Job:
    job = JobStore().get(job_id, user_id)
    if job.kind is not JobKind.IMPORT:
        raise NotFound(f"No import {job_id} was found for this account.")
    return job


def list_imports(user_id: str, limit: int, next_token: str | None) -> tuple[list[Job], str | None]:
    return JobStore().history(user_id, JobKind.IMPORT, limit=limit, next_token=next_token)


def start_validation(user_id: str, job_id: str) -> Job:
    job = get_import(user_id, job_id)
    if job.status not in ACTIVE_STATUSES:
        raise Conflict(f"Import {job_id} is {job.status.value}; start a new import to validate "
                       "a file again.", details={"status": job.status.value})
    if job.status is not JobStatus.QUEUED or job.execution_arn:
        return job  # already started: asking again is harmless, and says where it is
    if not packages_bucket().exists(storage.upload_key(job_id)):
        raise Conflict("Nothing has been uploaded for this import yet: POST the file with "
                       "the upload form first.", details={"code": "upload_missing"})
    step = ImportStep(job_id=job_id, next="validate")
    try:
        execution_arn = workflow_engine().start(Machine.IMPORT, job_id, step)
    except WorkflowUnavailable as error:
        logger.exception("could not start the import workflow", extra={"job_id": job_id})
        raise TransientError("The validation could not be started; call validate again in a "
                             "moment (the upload is kept).", details={"jobId": job_id}) from error
    if execution_arn is None:  # started already: asking again is harmless
        return get_import(user_id, job_id)
    logger.info("import validation started", extra={"job_id": job_id})
    return JobStore().record_execution(job_id, execution_arn)


def conflicts(user_id: str, job_id: str, limit: int, token: str | None) -> ConflictPage:
    job = get_import(user_id, job_id)
    report = job.import_state.report
    if report is None or not report.conflicts:
        raise Conflict("This import has not been compared with your data yet (status: "
                       f"{job.status.value}).", details={"status": job.status.value})
    entries, next_token = storage.read_page(packages_bucket(), job_id, storage.CONFLICTS,
                                            limit=limit, token=token)
    return ConflictPage(conflicts=[SessionConflict.model_validate(e) for e in entries],
                        next_token=next_token)


def actions(user_id: str, job_id: str, dry_run: bool, limit: int,
            token: str | None) -> ActionPage:
    return job_actions(get_import(user_id, job_id), dry_run, limit, token)


def job_actions(job: Job, dry_run: bool, limit: int, token: str | None) -> ActionPage:
    """Per session, what the dry run would do or the execution did (an import's or a
    restore's listing)."""
    job_id = job.job_id
    state = job.import_state
    if (state.dry_run if dry_run else state.outcome) is None:
        what = "dry run" if dry_run else "execution"
        raise Conflict(f"This import has no {what} outcome yet (status: {job.status.value}).",
                       details={"status": job.status.value})
    entries, next_token = storage.read_page(
        packages_bucket(), job_id, storage.DRY_RUN if dry_run else storage.RESULT, limit=limit,
        token=token)
    return ActionPage(dry_run=dry_run, actions=[SessionResult.model_validate(e) for e in entries],
                      next_token=next_token)


def execute(user_id: str, job_id: str, decision: ImportDecision) -> Job:
    """Hand the decision to the waiting workflow. With a field mapping, the upload is first
    validated again with it (and compared again) before anything is written."""
    job = get_import(user_id, job_id)
    state = job.import_state
    if job.status is not JobStatus.AWAITING_DECISION or not state.task_token:
        raise Conflict(f"Import {job_id} is {job.status.value}; a decision is taken only while "
                       "it awaits one.", details={"status": job.status.value})
    report = state.report or ValidationReport()
    if decision.field_mapping is not None and report.format is not SourceFormat.CSV:
        raise InvalidRequest("fieldMapping applies to CSV uploads only.",
                             details={"field": "fieldMapping"})
    if decision.dry_run and state.dry_runs >= MAX_DRY_RUNS:
        raise Conflict(f"This import has run its {MAX_DRY_RUNS} dry runs; execute it (dryRun "
                       "false) or start a new import to try more.",
                       details={"code": DRY_RUN_LIMIT, "limit": MAX_DRY_RUNS})
    revalidate = decision.field_mapping is not None
    phase = "validating" if revalidate else "dry_run" if decision.dry_run else "importing"
    store = JobStore()
    token = state.task_token  # the transition below is conditional: this is still the live one
    store.decide(job_id, decision, Progress(phase=phase),
                 dry_runs=state.dry_runs + 1 if decision.dry_run else None)
    step = ImportStep(job_id=job_id, next="validate" if revalidate else "execute",
                      dry_run=decision.dry_run)
    try:
        workflow_engine().send_success(token, step)
    except (TaskGone, WorkflowUnavailable) as error:
        if isinstance(error, TaskGone):  # the wait ended (timed out, or the execution did)
            store.fail(job_id, JobError(code="decision_timeout",
                                        message="The import stopped waiting for a decision; "
                                                "upload the file again to import it."))
            raise Conflict("This import no longer waits for a decision.") from error
        raise
    logger.info("import decision sent", extra={"job_id": job_id, "dry_run": decision.dry_run})
    return store.require(job_id)


def cancel(user_id: str, job_id: str) -> Job:
    """Stop an import that has not finished. While it waits for the decision, the workflow is
    told at once (SendTaskFailure); while a task runs, it stops at the next session boundary
    and its clean-up undoes any half-written session. Finished imports are rolled back."""
    store = JobStore()
    job = get_import(user_id, job_id)
    if job.status not in ACTIVE_STATUSES:
        hint = " Roll it back to undo what it wrote." if job.status is JobStatus.SUCCEEDED else ""
        raise Conflict(f"Import {job_id} is {job.status.value}; there is nothing to cancel.{hint}",
                       details={"status": job.status.value})
    if job.progress.phase == ROLLING_BACK:
        raise Conflict("A rollback cannot be cancelled; it will finish shortly.",
                       details={"status": job.status.value})
    cancelled = store.cancel(job_id)
    publish_terminal(cancelled)
    task_token = job.import_state.task_token
    if job.status is JobStatus.AWAITING_DECISION and task_token:
        try:
            workflow_engine().send_failure(task_token, "JobCancelled",
                                           "Cancelled at the user's request.")
        except (TaskGone, WorkflowUnavailable) as error:  # ended meanwhile: nothing waits
            logger.info("no task to cancel", extra={"job_id": job_id,
                                                    "error": str(error)})
    if job.status is JobStatus.QUEUED and not job.execution_arn:
        packages_bucket().delete(storage.upload_key(job_id))
    return cancelled


def rollback(user_id: str, job_id: str) -> Job:
    """Undo an import that wrote something, newest first: a newer import of yours that also
    wrote must be rolled back before (its pre-images were taken after this one's writes)."""
    return start_rollback(user_id, get_import(user_id, job_id))


def start_rollback(user_id: str, job: Job, *, machine: Machine = Machine.IMPORT,
                   step: BaseModel | None = None) -> Job:
    """Roll back an import or a restore (the caller's, found already); `machine` and `step`:
    an instance restore's rollback (each of its shards, by the restore machine)."""
    store = JobStore()
    job_id = job.job_id
    outcome = job.import_state.outcome
    repair = job.error is not None and job.error.code == CLEANUP_FAILED
    if job.status not in ENDED or not (repair or (outcome is not None and outcome.wrote)):
        raise Conflict(f"{job.kind.value.capitalize()} {job_id} ({job.status.value}) wrote "
                       "nothing that could be rolled back.", details={"status": job.status.value})
    newer = _newer_writes(user_id, job)
    if newer:
        raise Conflict(f"Roll back your newer {newer.kind.value} {newer.job_id} first: it "
                       "changed your data after this one.", details={"jobId": newer.job_id})
    # a failed rollback ends the job failed (rollback_failed) with its outcome: it may be
    # started again, rolling back is idempotent
    job = store.begin_rollback(job_id, Progress(phase=ROLLING_BACK))
    step = step or ImportStep(job_id=job_id, mode="rollback", next="rollback")
    try:
        workflow_engine().start(machine, f"{job_id}-rollback-{int(utcnow().timestamp())}",
                                step)
    except WorkflowUnavailable as error:
        logger.exception("could not start the rollback", extra={"job_id": job_id})
        publish_terminal(store.fail(job_id, JobError(
            code="rollback_failed", message="The rollback could not be started; try again.")))
        raise TransientError("The rollback could not be started; try again in a moment.",
                             details={"jobId": job_id}) from error
    logger.info("import rollback started", extra={"job_id": job_id})
    return job


def _newer_writes(user_id: str, job: Job) -> Job | None:
    """A newer import or restore of the user's whose writes are still in place."""
    for kind in (JobKind.IMPORT, JobKind.RESTORE):
        newer = _newer_of(user_id, job, kind)
        if newer is not None:
            return newer
    return None


def _newer_of(user_id: str, job: Job, kind: JobKind) -> Job | None:
    token: str | None = None
    while True:
        jobs, token = JobStore().history(user_id, kind, limit=50, next_token=token)
        for other in jobs:
            if other.job_id == job.job_id:
                continue
            if other.created_at <= job.created_at:
                return None
            if other.status is JobStatus.ROLLED_BACK or _same_restore(job, other):
                continue
            written = other.import_state.outcome
            if (written is not None and written.wrote) or other.progress.phase == "importing":
                return other
        if token is None:
            return None


def _same_restore(job: Job, other: Job) -> bool:
    """Shards of one instance restore (each another user's) or the restore and its shards:
    their writes never touch each other's, and they are rolled back together."""
    if job.kind is not JobKind.RESTORE or other.kind is not JobKind.RESTORE:
        return False
    mine, theirs = job.restore_state.parent_id, other.restore_state.parent_id
    return theirs == job.job_id or (mine is not None and mine in (theirs, other.job_id))


def view(job: Job) -> ImportView:
    state = job.import_state
    return ImportView(
        job_id=job.job_id, status=job.status, filename=state.request.filename,
        created_at=job.created_at, updated_at=job.updated_at, finished_at=job.finished_at,
        options=state.request.options.model_dump(mode="json", by_alias=True, exclude_none=True),
        progress=job.progress, error=job.error, links=ImportLinks.of(job.job_id),
        report=state.report, decision=state.decision, dry_run=state.dry_run,
        outcome=state.outcome)
