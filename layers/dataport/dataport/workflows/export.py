"""The logic behind each task of the export workflow (infrastructure/statemachines/export.asl.json).

plan      the owner's scope: projects file, shard boundaries over sessionIds, totals
run_shard one invocation of a shard's page loop: pages of sessions -> format writer -> staged
          files, until the shard ends or the time budget runs low; returns the cursor
finalize  one zip from every staged file (see packaging.package), manifest, job succeeded

Live progress: each task may publish after every message and session it writes (a clock check,
then at most twice a second per worker: counts to the job row, `publish_progress`, which the row
throttles to two events a second per job), so subscribers hear something at least every two
seconds while the job advances; finalize publishes the one terminal event. Publishing never
fails a task, nor waits long on a client.

Why staged files and a final assembly, rather than one multipart upload carried across
invocations: a zip member's deflate stream, CRC and SHA-256 cannot be handed from one Lambda to
the next, and parallel shards cannot share one upload. So each invocation closes its own files
(compressed, staged on S3) and finalize stitches them into one zip with UploadPartCopy: S3 copies
the bytes, the finalizer only writes headers, the manifest and the central directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from dataport import aws
from dataport.errors import JobCancelled
from dataport.formats.base import ExportContext, ExportWriter
from dataport.formats.registry import writer_for
from dataport.jobs.cleanup import discard_job_objects
from dataport.jobs.store import JobStore, require_running, utcnow
from dataport.models.exports import ExportFormat, ExportRequest
from dataport.models.jobs import Counts, Job, JobStatus, PackageInfo, Progress
from dataport.models.tasks import ExportPlan, JobRef, ShardCursor
from dataport.observability import logger
from dataport.packaging import locations, passwords
from dataport.packaging.manifest import ManifestHeader, Owner
from dataport.packaging.package import assemble_package
from dataport.packaging.staging import StagedFile, StagingSink
from dataport.progress.publisher import publish_progress, publish_terminal
from dataport.progress.throttle import Cadence
from dataport.settings import get_settings
from dataport.source.mongo import get_database
from dataport.source.reader import (
    ShardMessages,
    iter_session_pages,
    projects_in_scope,
    session_keys,
)
from dataport.source.scope import OwnerScope

#: shard 0 holds what the plan writes (projects), so it comes first in the package
PLAN_SHARD = 0
MIB = 1024 * 1024


def plan(ref: JobRef) -> ExportPlan:
    store = JobStore()
    job = store.require(ref.job_id)
    request = ExportRequest.model_validate(job.request)
    if job.status is JobStatus.QUEUED:
        job = store.transition(job.job_id, JobStatus.RUNNING, allowed_from=[JobStatus.QUEUED])
    require_running(job)
    scope = OwnerScope(get_database(), job.user_id)
    settings = get_settings()
    cadence = Cadence()
    _publish(store, job, Progress(phase="planning"))

    projects = list(projects_in_scope(scope, request.filters))
    store.forget_files_from(job.job_id, PLAN_SHARD, 0)
    sink = _sink(job, request, PLAN_SHARD, 0)
    try:
        writer = _writer(job, request, sink)
        writer.write_projects(projects)
        writer.close()
    except BaseException:
        sink.discard()
        raise
    store.put_files(job.job_id, PLAN_SHARD, 0, sink.files)

    shards: list[ShardCursor] = []
    total = 0
    lower: str | None = None
    for total, key in enumerate(session_keys(scope, request.filters), start=1):
        if cadence.due():
            _publish(store, job, Progress(phase="planning", total=total))
        if total % settings.sessions_per_shard == 0:
            shards.append(ShardCursor(job_id=job.job_id, shard=len(shards) + 1, after=lower,
                                      upto=key))
            lower = key
    if lower is not None or not shards:
        shards.append(ShardCursor(job_id=job.job_id, shard=len(shards) + 1, after=lower))
    for shard in shards:
        store.put_shard(job.job_id, shard.shard, _shard_state(shard))
    _publish(store, job, Progress(phase="exporting", total=total))
    store.transition(job.job_id, JobStatus.RUNNING, allowed_from=[JobStatus.RUNNING],
                     counts=Counts(projects=len(projects)))
    logger.info("export planned", extra={"job_id": job.job_id, "shards": len(shards),
                                         "sessions": total})
    return ExportPlan(job_id=job.job_id, shards=shards)


def run_shard(cursor: ShardCursor, remaining_ms: Callable[[], int]) -> ShardCursor:
    """Write whole sessions page by page; stop while time remains to close the files."""
    store = JobStore()
    job = store.require(cursor.job_id)
    require_running(job)
    request = ExportRequest.model_validate(job.request)
    settings = get_settings()
    scope = OwnerScope(get_database(), job.user_id)
    projects = {p["_id"]: p for p in projects_in_scope(scope, request.filters)}

    # A retried invocation starts from the same cursor and rewrites the same file numbers;
    # records an earlier attempt left beyond them must not survive into the package.
    store.forget_files_from(job.job_id, cursor.shard, cursor.seq)
    sink = _sink(job, request, cursor.shard, cursor.seq)
    state = cursor.model_copy()
    cadence = Cadence()

    def live() -> None:
        """Cheap unless ~500 ms passed: then the shard's counts and the bytes written so far
        go to the row and out."""
        if cadence.due():
            so_far = state.model_copy(update={"bytes": cursor.bytes + sink.bytes_written})
            publish_progress(job, _report(store, job.job_id, so_far)[1])

    try:
        writer = _writer(job, request, sink)
        finished = True
        with ShardMessages(scope, request.filters, after=cursor.after, upto=cursor.upto,
                           batch_size=settings.message_batch_size) as shard_messages:
            for page in iter_session_pages(scope, request.filters, after=cursor.after,
                                           upto=cursor.upto, page_size=settings.page_size):
                for session, messages in shard_messages.pairs(page):
                    state = _write_session(writer, projects, session, messages, state,
                                           heartbeat=live)
                    live()
                if remaining_ms() < settings.worker_reserve_ms:
                    finished = False
                    break
                latest, _ = _report(store, job.job_id, state)
                require_running(latest)
        writer.close()
    except BaseException:
        sink.discard()
        raise
    staged = sink.files
    store.put_files(job.job_id, cursor.shard, cursor.seq, staged)
    state = state.model_copy(update={
        "seq": sink.next_seq, "done": finished,
        "bytes": cursor.bytes + sink.bytes_written})
    publish_progress(job, _report(store, job.job_id, state)[1])
    return state


def _write_session(writer: ExportWriter, projects: dict[Any, Any], session: Any,
                   messages: Iterator[Any], state: ShardCursor, *,
                   heartbeat: Callable[[], None]) -> ShardCursor:
    writer.begin_session(projects[session["projectId"]], session)
    count = 0
    for message in messages:
        writer.write_message(message)
        count += 1
        heartbeat()  # a long session still reports
    writer.end_session()
    return state.model_copy(update={"after": session["sessionId"],
                                    "sessions": state.sessions + 1,
                                    "messages": state.messages + count})


def finalize(ref: JobRef) -> JobRef:
    store = JobStore()
    job = store.require(ref.job_id)
    require_running(job)
    request = ExportRequest.model_validate(job.request)
    settings = get_settings()
    shards = store.shards(job.job_id)
    counts = Counts(projects=job.counts.projects if job.counts else 0,
                    sessions=sum(int(s["sessions"]) for s in shards),
                    messages=sum(int(s["messages"]) for s in shards))
    now = utcnow()
    filename = _filename(request.format, job.job_id, now)
    key = locations.package_key(job.job_id, filename)
    packaging = job.progress.model_copy(update={"phase": "packaging"})
    _publish(store, job, packaging)
    cadence = Cadence()

    def files() -> Iterator[StagedFile]:
        """The staged files, with a heartbeat while S3 copies them into the package."""
        for staged in store.files(job.job_id):
            if cadence.due():
                publish_progress(job, packaging)
            yield staged

    header = ManifestHeader(job_id=job.job_id, owner=Owner(user_id=job.user_id), created_at=now,
                            format=request.format.value,
                            filters=request.filters.model_dump(mode="json", by_alias=True,
                                                               exclude_none=True),
                            counts=counts,
                            encryption="winzip-aes-256" if job.encrypted else None)
    result = assemble_package(aws.s3(), settings.packages_bucket, key,
                              files=files, header=header,
                              part_size=settings.upload_part_size_mb * MIB,
                              level=request.options.compression.level, password=_password(job),
                              content_disposition=f'attachment; filename="{filename}"')
    discard_job_objects(job.job_id, include_package=False)
    package = PackageInfo(key=key, filename=filename, bytes=result.bytes, files=result.files,
                          expires_at=now + timedelta(days=settings.package_retention_days))
    done = store.transition(
        job.job_id, JobStatus.SUCCEEDED, allowed_from=[JobStatus.RUNNING], finished_at=now,
        package=package.model_dump(mode="json"),
        counts=counts.model_copy(update={"files": result.files}),
        progress=Progress(phase="done", current=counts.sessions, total=counts.sessions,
                          bytes=result.bytes))
    publish_terminal(done)
    logger.info("export succeeded", extra={"job_id": job.job_id, "bytes": result.bytes,
                                           "files": result.files})
    return ref



def _sink(job: Job, request: ExportRequest, shard: int, seq: int) -> StagingSink:
    settings = get_settings()
    return StagingSink(aws.s3(), settings.packages_bucket,
                       locations.shard_prefix(job.job_id, shard), start_seq=seq,
                       level=request.options.compression.level, password=_password(job),
                       part_size=settings.upload_part_size_mb * MIB)


def _password(job: Job) -> SecretStr | None:
    """The export's password, unsealed for this invocation only (never in the task's input,
    output or logs)."""
    if not job.encrypted:
        return None
    if job.sealed_password is None:  # only a job that ended forgets it, and those stop first
        raise JobCancelled(f"Job {job.job_id} no longer holds its password; stopping.")
    return passwords.unseal(job.sealed_password, job.job_id)


def _writer(job: Job, request: ExportRequest, sink: StagingSink) -> ExportWriter:
    context = ExportContext(job_id=job.job_id, owner_id=job.user_id, created_at=job.created_at,
                            format=request.format.value,
                            filters=request.filters.model_dump(mode="json", by_alias=True,
                                                               exclude_none=True))
    return writer_for(request.format)(sink, context=context,
                                      split_bytes=request.options.split_size_mb * MIB)


def _shard_state(cursor: ShardCursor) -> dict[str, int]:
    return {"sessions": cursor.sessions, "messages": cursor.messages, "bytes": cursor.bytes}


def _report(store: JobStore, job_id: str, cursor: ShardCursor) -> tuple[Job, Progress]:
    """The shard's counts into its row, the job's progress summed from every shard; returns
    the job as just read (its status says whether to go on) and that progress. Shard rows are
    SET (not added to), so a retried invocation never double counts."""
    store.put_shard(job_id, cursor.shard, _shard_state(cursor))
    shards = store.shards(job_id)
    job = store.require(job_id)
    progress = job.progress.model_copy(update={
        "current": sum(int(s["sessions"]) for s in shards),
        "bytes": sum(int(s["bytes"]) for s in shards)})
    store.set_progress(job_id, progress)
    return job, progress


def _publish(store: JobStore, job: Job, progress: Progress) -> None:
    store.set_progress(job.job_id, progress)
    publish_progress(job, progress)


def _filename(fmt: ExportFormat, job_id: str, now: datetime) -> str:
    return f"dataport-{fmt.value}-{now.astimezone(UTC):%Y%m%d-%H%M%S}-{job_id[:8]}.zip"
