"""REST routes. Thin: parse, call the dataport layer, shape the answer. Domain errors become
HTTP answers here and nowhere else: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import SecretStr

from dataport.api import api_keys, backups, exports, imports, restores
from dataport.api.body import parse_json_body
from dataport.api.cors import cors_config
from dataport.auth import Principal, principal_from_request_context
from dataport.errors import DataportError, RateLimited, TransientError
from dataport.jobs.rate_limit import RateLimitState
from dataport.models.api import ExportAccepted, ExportEstimate, ExportList, ExportView
from dataport.models.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyView
from dataport.models.backup_views import (
    BackupAccepted,
    BackupLinks,
    BackupList,
    BackupPreview,
    BackupView,
    PreviewAccepted,
    VerifyAccepted,
    VerifyReport,
    VerifyRequest,
)
from dataport.models.backups import BackupRequest
from dataport.models.exports import ExportRequest
from dataport.models.imports import (
    ActionPage,
    ConflictPage,
    ImportCreate,
    ImportCreated,
    ImportDecision,
    ImportLinks,
    ImportList,
    ImportView,
)
from dataport.models.restores import (
    PartUrls,
    RestoreList,
    RestoreRequest,
    RestoreUploadComplete,
    RestoreUploadCreate,
    RestoreUploadCreated,
    RestoreUploadView,
    RestoreView,
)
from dataport.models.schedules import (
    ScheduleCreate,
    ScheduleList,
    SchedulePatch,
    ScheduleView,
)
from dataport.observability import MetricName, emit, logger, metrics, tracer
from dataport.scheduling import routes as schedules
from dataport.settings import get_mongo_settings, get_settings
from dataport.source.mongo import renews_credentials

settings = get_settings()  # at cold start: a missing variable fails here, named, not mid-request
get_mongo_settings()  # estimates and backup previews count in MongoDB (URI from its secret)

app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=parse_json_body,
                             cors=cors_config(settings.allowed_origins))
JobId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="Job id")]
UploadId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="Restore upload id")]
BackupId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="Backup id")]


def _principal() -> Principal:
    return principal_from_request_context(app.current_event.request_context.raw_event)


def _user_id() -> str:
    return _principal().user_id


@app.post("/exports", summary="Start an export", responses={202: {"description": "Accepted"}})
def create_export(
    request: Annotated[ExportRequest, Body()],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=128)] = None,
) -> Response[ExportAccepted]:
    job, rate = exports.start_export(_user_id(), request, idempotency_key, app.lambda_context)
    body = ExportAccepted.of(job)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body,
                    headers={**_rate_headers(rate), "Location": body.links.self_})


@app.post("/exports/estimate", summary="What an export of this body would hold, weigh and take, "
          "from counts only (nothing is started)")
def estimate_export(request: Annotated[ExportRequest, Body()]) -> ExportEstimate:
    return exports.estimate_export(_user_id(), request)


@app.get("/exports", summary="Your export history (30 days), newest first")
def list_exports(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> ExportList:
    jobs, token = exports.list_exports(_user_id(), limit, next_token)
    return ExportList(exports=[ExportView.of(job) for job in jobs], next_token=token)


@app.get("/exports/<jobId>", summary="Status, progress, counts, size and errors of an export")
def get_export(jobId: JobId) -> ExportView:
    return ExportView.of(exports.get_export(_user_id(), jobId))


@app.delete("/exports/<jobId>", summary="Cancel a running export, or delete a finished one")
def delete_export(jobId: JobId) -> ExportView:
    return ExportView.of(exports.cancel_or_delete(_user_id(), jobId))


@app.get("/exports/<jobId>/download", summary="302 to a short-lived presigned download URL",
         responses={302: {"description": "Redirect to the package"}})
def download_export(jobId: JobId) -> Response[None]:
    location = exports.download_location(_user_id(), jobId, _request_time())
    return Response(status_code=302, headers={"Location": location, "Cache-Control": "no-store"})


@app.post("/backups", summary="Start a backup (full, selective or incremental; user or instance)",
          responses={202: {"description": "Accepted"}})
def create_backup(
    request: Annotated[BackupRequest, Body()],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=128)] = None,
) -> Response[BackupAccepted]:
    record, rate = backups.start_backup(_principal(), request, idempotency_key,
                                        app.lambda_context)
    body = BackupAccepted(backup_id=record.backup_id, job_id=record.backup_id,
                          status=record.status, links=BackupLinks.of(record.backup_id))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body,
                    headers={**_rate_headers(rate), "Location": body.links.self_})


@app.get("/backups", summary="Your backups (or, for administrators, the instance's), newest "
                             "first")
def list_backups(
    scope: Annotated[str, Query(pattern="^(user|instance)$")] = "user",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> BackupList:
    records, token = backups.list_backups(_principal(), instance=scope == "instance",
                                          limit=limit, next_token=next_token)
    return BackupList(backups=[BackupView.of(record) for record in records], next_token=token)


@app.get("/backups/<backupId>", summary="A backup: status, progress, sizes, counts, checksum")
def get_backup(backupId: BackupId) -> BackupView:
    record, progress = backups.get_backup(_principal(), backupId)
    return BackupView.of(record, progress)


@app.delete("/backups/<backupId>",
            summary="Cancel a backup being made, or delete one (not a base increments need)",
            responses={204: {"description": "Deleted"}})
def delete_backup(backupId: BackupId) -> Response[BackupView | None]:
    cancelled = backups.delete_backup(_principal(), backupId)
    if cancelled is None:
        return Response(status_code=204)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON,
                    body=BackupView.of(cancelled))


@app.get("/backups/<backupId>/download", summary="302 to a short-lived presigned download URL",
         responses={302: {"description": "Redirect to the backup"}})
def download_backup(backupId: BackupId) -> Response[None]:
    location = backups.download_location(_principal(), backupId)
    return Response(status_code=302, headers={"Location": location, "Cache-Control": "no-store"})


@app.post("/backups/<backupId>/verify",
          summary="Re-read the stored backup: every member's checksums and the whole object's",
          responses={200: {"description": "Verified now (a backup up to VerifySyncMaxBytes)",
                           "content": {"application/json": {"schema": {
                               "$ref": "#/components/schemas/VerifyReport"}}}},
                     202: {"description": "Accepted: verified by a job (a larger backup, or "
                                          "background); follow jobId, or the backup's "
                                          "verification",
                           "content": {"application/json": {"schema": {
                               "$ref": "#/components/schemas/VerifyAccepted"}}}}})
def verify_backup(backupId: BackupId,
                  request: Annotated[VerifyRequest | None, Body()] = None,
                  ) -> Response[VerifyReport | VerifyAccepted]:
    answer = backups.verify(_principal(), backupId, request.password if request else None,
                            background=request.background if request else False)
    if isinstance(answer, VerifyAccepted):
        return Response(status_code=202, content_type=content_types.APPLICATION_JSON,
                        body=answer, headers={"Location": answer.links.self_})
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=answer)


@app.delete("/backups/<backupId>/verify",
            summary="Cancel the backup's running verification job (its status stays as it was)")
def cancel_backup_verification(backupId: BackupId) -> BackupView:
    return BackupView.of(backups.cancel_verification(_principal(), backupId))


_PREVIEW_RESPONSES: dict[int, OpenAPIResponse] = {
    200: {"description": "The preview (computed now: a backup up to VerifySyncMaxBytes)",
          "content": {"application/json": {"schema": {
              "$ref": "#/components/schemas/BackupPreview"}}}},
    202: {"description": "Accepted: a job computes it (a larger backup, or background=true); "
                         "GET links.result until it answers 200",
          "content": {"application/json": {"schema": {
              "$ref": "#/components/schemas/PreviewAccepted"}}}}}


@app.get("/backups/<backupId>/preview",
         summary="What a backup holds per project, and what a restore would do to its target",
         responses=_PREVIEW_RESPONSES)
def preview_backup(
    backupId: BackupId,
    password: Annotated[str | None, Header(alias="x-backup-password", min_length=8,
                                           max_length=256)] = None,
    background: Annotated[bool, Query(description="compute it in a job whatever the "
                                                  "size (202)")] = False,
) -> Response[BackupPreview | PreviewAccepted]:
    return _preview_answer(backups.preview(
        _principal(), backupId, SecretStr(password) if password is not None else None,
        background=background))


@app.get("/backups/<backupId>/preview/<jobId>",
         summary="A preview job's answer: 200 once it succeeded, 202 while it runs",
         responses=_PREVIEW_RESPONSES)
def preview_result(backupId: BackupId, jobId: JobId) -> Response[BackupPreview | PreviewAccepted]:
    return _preview_answer(backups.preview_result(_principal(), backupId, jobId))


@app.delete("/backups/<backupId>/preview/<jobId>", summary="Cancel a running preview job")
def cancel_preview(backupId: BackupId, jobId: JobId) -> PreviewAccepted:
    return backups.cancel_preview(_principal(), backupId, jobId)


def _preview_answer(answer: BackupPreview | PreviewAccepted
                    ) -> Response[BackupPreview | PreviewAccepted]:
    if isinstance(answer, PreviewAccepted):
        return Response(status_code=202, content_type=content_types.APPLICATION_JSON,
                        body=answer, headers={"Location": answer.links.result})
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=answer)


@app.post("/imports", summary="Start an import: a job and a presigned form to upload the file to",
          responses={201: {"description": "Created; POST the file to upload.url with "
                                          "upload.fields, then POST .../validate"}})
def create_import(
    request: Annotated[ImportCreate, Body()],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=128)] = None,
) -> Response[ImportCreated]:
    job, form, rate = imports.create_import(_user_id(), request, idempotency_key,
                                            app.lambda_context)
    body = ImportCreated(job_id=job.job_id, status=job.status, upload=form,
                         links=ImportLinks.of(job.job_id))
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=body,
                    headers={**_rate_headers(rate), "Location": body.links.self_,
                             "Cache-Control": "no-store"})


@app.get("/imports", summary="Your import history (30 days), newest first")
def list_imports(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> ImportList:
    jobs, token = imports.list_imports(_user_id(), limit, next_token)
    return ImportList(imports=[imports.view(job) for job in jobs], next_token=token)


@app.get("/imports/<jobId>", summary="Status, report, decision, dry run and outcome of an import")
def get_import(jobId: JobId) -> ImportView:
    return imports.view(imports.get_import(_user_id(), jobId))


@app.delete("/imports/<jobId>", summary="Cancel an import that has not finished")
def cancel_import(jobId: JobId) -> ImportView:
    return imports.view(imports.cancel(_user_id(), jobId))


@app.post("/imports/<jobId>/validate", summary="The file is uploaded: validate it (no writes)",
          responses={202: {"description": "Accepted: the report follows on GET"}})
def validate_import(jobId: JobId) -> Response[ImportView]:
    return _accepted(imports.view(imports.start_validation(_user_id(), jobId)))


@app.get("/imports/<jobId>/conflicts",
         summary="Sessions you already have, how each differs and what to do about it")
def import_conflicts(
    jobId: JobId,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=64)] = None,
) -> ConflictPage:
    return imports.conflicts(_user_id(), jobId, limit, next_token)


@app.post("/imports/<jobId>/execute",
          summary="Decide: skip, replace or merge (per session too), or a dry run first",
          responses={202: {"description": "Accepted: the outcome follows on GET"}})
def execute_import(jobId: JobId,
                   decision: Annotated[ImportDecision, Body()]) -> Response[ImportView]:
    return _accepted(imports.view(imports.execute(_user_id(), jobId, decision)))


@app.get("/imports/<jobId>/actions",
         summary="Per session: what the dry run would do, or what the execution did")
def import_actions(
    jobId: JobId,
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=64)] = None,
) -> ActionPage:
    return imports.actions(_user_id(), jobId, dry_run, limit, next_token)


@app.post("/imports/<jobId>/rollback",
          summary="Put your data back as it was before this import (newest imports first)",
          responses={202: {"description": "Accepted: the job ends rolled_back"}})
def rollback_import(jobId: JobId) -> Response[ImportView]:
    return _accepted(imports.view(imports.rollback(_user_id(), jobId)))


@app.post("/restores", summary="Restore a backup (yours, or an uploaded file) into your account",
          responses={202: {"description": "Accepted: the restore runs; GET it for the report "
                                          "and the outcome"}})
def create_restore(
    request: Annotated[RestoreRequest, Body()],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=128)] = None,
) -> Response[RestoreView]:
    job, rate = restores.create_restore(_principal(), request, idempotency_key,
                                        app.lambda_context)
    body = restores.view(job)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body,
                    headers={**_rate_headers(rate), "Location": body.links.self_})


@app.get("/restores", summary="Your restore history (30 days), newest first")
def list_restores(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> RestoreList:
    jobs, token = restores.list_restores(_user_id(), limit, next_token)
    return RestoreList(restores=[restores.view(job) for job in jobs], next_token=token)


@app.get("/restores/<jobId>", summary="Status, report, dry run and outcome of a restore")
def get_restore(jobId: JobId) -> RestoreView:
    return restores.view(restores.get_restore(_user_id(), jobId))


@app.get("/restores/<jobId>/actions",
         summary="Per session: what the dry run would do, or what the restore did")
def restore_actions(
    jobId: JobId,
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=64)] = None,
) -> ActionPage:
    return restores.actions(_user_id(), jobId, dry_run, limit, next_token)


@app.post("/restores/<jobId>/rollback",
          summary="Put the target back as it was before this restore (newest writes first)",
          responses={202: {"description": "Accepted: the job ends rolled_back"}})
def rollback_restore(jobId: JobId) -> Response[RestoreView]:
    view = restores.view(restores.rollback(_user_id(), jobId))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=view,
                    headers={"Location": view.links.self_})


@app.delete("/restores/<jobId>",
            summary="Cancel a restore that has not finished: it stops and what it wrote is "
                    "undone (it ends cancelled, the target as it was)",
            responses={202: {"description": "Accepted: the job is cancelling; it ends cancelled "
                                            "once what it wrote is undone"}})
def cancel_restore(jobId: JobId) -> Response[RestoreView]:
    view = restores.view(restores.cancel(_user_id(), jobId))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=view,
                    headers={"Location": view.links.self_})


@app.post("/restores/uploads",
          summary="Upload a backup file to restore: a presigned multipart upload (50 GB+)",
          responses={201: {"description": "Created: ask for part URLs, PUT the parts, then "
                                          "complete"}})
def create_restore_upload(
        request: Annotated[RestoreUploadCreate, Body()]) -> Response[RestoreUploadCreated]:
    created = restores.create_upload(_user_id(), request)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created,
                    headers={"Cache-Control": "no-store"})


@app.get("/restores/uploads/<uploadId>/parts",
         summary="Presigned PUT URLs for parts of a restore upload (at most 100 a call)")
def restore_upload_parts(
    uploadId: UploadId,
    numbers: Annotated[str, Query(pattern=r"^\d{1,5}(,\d{1,5}){0,99}$",
                                  description="comma-separated part numbers")],
) -> Response[PartUrls]:
    urls = restores.part_urls(_user_id(), uploadId, [int(n) for n in numbers.split(",")])
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=urls,
                    headers={"Cache-Control": "no-store"})


@app.post("/restores/uploads/<uploadId>/complete",
          summary="Every part is uploaded: assemble the file (then POST /restores with it)")
def complete_restore_upload(
        uploadId: UploadId,
        request: Annotated[RestoreUploadComplete, Body()]) -> RestoreUploadView:
    return restores.complete_upload(_user_id(), uploadId, request)


@app.delete("/restores/uploads/<uploadId>",
            summary="Abort a restore upload that is not completed (its parts are dropped)",
            responses={204: {"description": "Aborted and forgotten"}})
def abort_restore_upload(uploadId: UploadId) -> Response[None]:
    restores.abort_upload(_user_id(), uploadId)
    return Response(status_code=204)


@app.post("/api-keys", summary="Make an API key for scripts (shown once; needs a sign-in token)",
          responses={201: {"description": "Created: keep `key`, it is not shown again"}})
def create_api_key(request: Annotated[ApiKeyCreate, Body()]) -> Response[ApiKeyCreated]:
    created = api_keys.create(_principal(), request)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created,
                    headers={"Cache-Control": "no-store"})


@app.get("/api-keys", summary="Your API keys (never the keys themselves), newest first")
def list_api_keys() -> ApiKeyList:
    return ApiKeyList(api_keys=api_keys.list_keys(_user_id()))


@app.delete("/api-keys/<keyId>", summary="Revoke one of your API keys (needs a sign-in token)")
def revoke_api_key(
        keyId: Annotated[str, Path(pattern="^[0-9a-f]{16}$", description="Key id")],
) -> ApiKeyView:
    return api_keys.revoke(_principal(), keyId)


ScheduleId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="Schedule id")]


@app.post("/backup-schedules", summary="Schedule backups (cron in a time zone, or a rate), "
          "with a retention policy", responses={201: {"description": "Created"}})
def create_backup_schedule(request: Annotated[ScheduleCreate, Body()]) -> Response[ScheduleView]:
    view = schedules.create(_principal(), request, _request_time())
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=view,
                    headers={"Location": view.links.self_})


@app.get("/backup-schedules", summary="Your backup schedules, newest first, with their next "
         "run and last runs")
def list_backup_schedules(
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> ScheduleList:
    views, token = schedules.list_schedules(_principal(), limit, next_token, _request_time())
    return ScheduleList(schedules=views, next_token=token)


@app.get("/backup-schedules/<scheduleId>", summary="One backup schedule: next run, last runs "
         "and their outcome")
def get_backup_schedule(scheduleId: ScheduleId) -> ScheduleView:
    return schedules.get(_principal(), scheduleId, _request_time())


@app.patch("/backup-schedules/<scheduleId>", summary="Change a schedule; `paused` pauses and "
           "resumes it")
def patch_backup_schedule(scheduleId: ScheduleId,
                          change: Annotated[SchedulePatch, Body()]) -> ScheduleView:
    return schedules.patch(_principal(), scheduleId, change, _request_time())


@app.delete("/backup-schedules/<scheduleId>", summary="Delete a schedule (its backups stay, "
            "with their retention)", responses={204: {"description": "Deleted"}})
def delete_backup_schedule(scheduleId: ScheduleId) -> Response[None]:
    schedules.delete(_principal(), scheduleId)
    return Response(status_code=204)


def _request_time() -> datetime:
    """When API Gateway received the request: the time a schedule's next run counts from."""
    epoch_ms = app.current_event.request_context.request_time_epoch
    return datetime.fromtimestamp(epoch_ms / 1000, UTC) if epoch_ms else datetime.now(UTC)


def _rate_headers(rate: RateLimitState | None) -> dict[str, str]:
    """X-RateLimit-* of a request that counted (a replayed Idempotency-Key did not)."""
    return rate.headers() if rate else {}


def _accepted(view: ImportView) -> Response[ImportView]:
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=view,
                    headers={"Location": view.links.self_})


def _error(status: int, code: str, message: str, details: Any = None,
           headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body={"error": error}, headers=headers or {})


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[dict[str, Any]]:
    fields = [{"field": ".".join(str(part) for part in e["loc"][1:]) or e["loc"][0],
               "location": e["loc"][0], "message": e["msg"], "type": e["type"]}
              for e in error.errors()]
    return _error(400, "invalid_request", "The request is not valid; see details.", fields)


@app.exception_handler(RateLimited)
def rate_limited(error: RateLimited) -> Response[dict[str, Any]]:
    emit(MetricName.RATE_LIMITED_REQUESTS)
    headers = {"Retry-After": str(error.retry_after), "X-RateLimit-Limit": str(error.limit),
               "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(error.reset_at)}
    return _error(429, error.code, error.message, error.details, headers)


@app.exception_handler(DataportError)
def domain_error(error: DataportError) -> Response[dict[str, Any]]:
    headers = {"Retry-After": "5"} if isinstance(error, TransientError) else None
    return _error(error.http_status, error.code, error.message, error.details, headers)


@app.exception_handler(IdempotencyValidationError)
def idempotency_key_reused(_: IdempotencyValidationError) -> Response[dict[str, Any]]:
    return _error(422, "idempotency_key_reused",
                  "This Idempotency-Key was used with a different request; use a new key.")


@app.exception_handler(IdempotencyAlreadyInProgressError)
def idempotency_in_progress(_: IdempotencyAlreadyInProgressError) -> Response[dict[str, Any]]:
    return _error(409, "request_in_progress",
                  "A request with this Idempotency-Key is still being processed; retry shortly.")


@app.exception_handler(Exception)
def unexpected(_: Exception) -> Response[dict[str, Any]]:
    """Anything else is our fault: logged with its trace, answered in the same shape, with the
    request id a person can quote to support (never the exception's text)."""
    logger.exception("unhandled error")
    request_id = app.lambda_context.aws_request_id if app.lambda_context else None
    return _error(500, "internal_error", "Something went wrong on our side; try again. If it "
                  "keeps failing, contact support with the request id.",
                  {"requestId": request_id} if request_id else None)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
@tracer.capture_lambda_handler
@renews_credentials  # a rotated password: read the secret again
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
