"""The logic behind each task of the export workflow (infrastructure/statemachines/export.asl.json).

Backups run through the same tasks: a backup job reads its own scope and writes with the backup
writer; workflows/backup.py holds what differs (the watermark, deletions, the backup manifest
and catalog record) and is asked where the job's kind matters.

plan      the owner's scope: projects file, shard boundaries over sessionIds, totals
run_shard one invocation of a shard's page loop: pages of sessions -> format writer -> staged
          files, until the shard ends or the time budget runs low; returns the cursor
finalize  one zip from every staged file (see packaging.package), manifest, job succeeded

Live progress: a worker invocation reports to one `ShardReporter` (progress.reporter), which
keeps counts in memory and flushes at most once a second per worker (the shard's row, one read of
the job and its shards that is also the cancel check, progress to the row and, throttled to two
events a second per job, to subscribers), so subscribers hear something at least every two
seconds while the job advances; plan and finalize publish their phases, finalize the one
terminal event. Publishing never fails a task, nor waits long on a client.

Why staged files and a final assembly, rather than one multipart upload carried across
invocations: a zip member's deflate stream, CRC and SHA-256 cannot be handed from one Lambda to
the next, and parallel shards cannot share one upload. So each invocation closes its own files
(compressed, staged on S3) and finalize stitches them into one zip with UploadPartCopy: S3 copies
the bytes, the finalizer only writes headers, the manifest and the central directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import SecretStr

from dataport.backups.writer import BackupWriter
from dataport.bucket import PackagesBucket, packages_bucket
from dataport.errors import JobCancelled, NotFound
from dataport.formats.base import ExportContext, ExportWriter
from dataport.formats.costs import priced
from dataport.formats.registry import writer_for
from dataport.jobs import passwords
from dataport.jobs.keys import PLAN_SHARD
from dataport.jobs.store import JobStore, require_running, utcnow
from dataport.models.backups import BackupCounts
from dataport.models.exports import ExportFilters, ExportFormat
from dataport.models.jobs import Counts, Job, JobKind, PackageInfo, Progress
from dataport.models.staged import StagedFile
from dataport.models.tasks import ExportPlan, JobRef, ShardCursor, ShardList, ShardRef
from dataport.observability import logger
from dataport.packaging import locations
from dataport.packaging.cleanup import discard_job_objects
from dataport.packaging.manifest import ManifestHeader, Owner
from dataport.packaging.package import assemble_package
from dataport.packaging.shardlist import read_shard, write_shard_list
from dataport.packaging.staging import StagingSink
from dataport.pricing import PRICE_SOURCE
from dataport.progress.publisher import publish_claimed, publish_progress, publish_terminal
from dataport.progress.reporter import ShardReporter
from dataport.progress.throttle import MIN_INTERVAL_MS, Cadence, now_ms
from dataport.settings import get_settings
from dataport.source.mongo import get_database
from dataport.source.reader import (
    SESSION_ORDER,
    ShardMessages,
    iter_session_pages,
    projects_in_scope,
    work_in_scope,
)
from dataport.source.scope import OwnerScope
from dataport.workflows import backup
from dataport.workflows.shards import ShardSizing, cut

MIB = 1024 * 1024


def plan(ref: JobRef) -> ExportPlan:
    store = JobStore()
    job = store.take(ref.job_id, Progress(phase="planning"))
    require_running(job)
    if job.kind is JobKind.BACKUP:
        job = backup.begin(job, store)
    scope, filters = _source(job)
    settings = get_settings()
    # Events: a plan that takes half a second or more sends `planning` events (with the count
    # done) at most twice a second; every plan ends with one `exporting` event, claimed in the
    # write that records the phase. A short plan sends only that one.
    cadence = Cadence()
    cadence.due()
    published_at: int | None = None
    total, messages = work_in_scope(scope, filters)

    projects = list(projects_in_scope(scope, filters))
    sink = _sink(packages_bucket(), job, PLAN_SHARD, 0)
    deletions = 0
    try:
        writer = _writer(job, sink, PLAN_SHARD, 0)
        writer.write_projects(projects)
        if isinstance(writer, BackupWriter):  # an increment's deletions
            deletions = backup.write_plan_members(job, writer, _password(job))
        writer.close()
    except BaseException:
        sink.discard()
        raise
    staged = sink.complete()

    sizing = ShardSizing(target=settings.shard_target_sessions,
                         limit=settings.shard_max_sessions,
                         messages_per_session=settings.shard_messages_per_session,
                         concurrency=settings.export_concurrency)
    count = sizing.count(total, messages)
    work = total * sizing.messages_per_session + messages

    def keyed() -> Iterator[tuple[str, int]]:
        nonlocal published_at
        for done, pair in enumerate(_session_weights(scope, filters), start=1):
            if cadence.due():
                _publish(job, Progress(phase="planning", current=done, total=total))
                published_at = now_ms()
            yield pair

    shards = [ShardCursor(job_id=job.job_id, shard=number, after=bounds.after, upto=bounds.upto)
              for number, bounds in enumerate(cut(keyed(), count=count, work=work,
                                                  sizing=sizing), start=1)]
    bucket = packages_bucket()
    listed = ShardList(bucket=bucket.name, prefix=locations.shard_list_prefix(job.job_id))
    write_shard_list(bucket, listed.prefix, shards)
    # the projects file's records and every shard's row: one request
    store.put_files(job.job_id, PLAN_SHARD, 0, staged, expires_at=job.expires_at,
                    shard_states={PLAN_SHARD: {"sessions": 0, "messages": 0, "bytes": 0,
                                               "seq": len(staged)}}
                    | {shard.shard: _shard_state(shard) for shard in shards})
    exporting = Progress(phase="exporting" if job.kind is JobKind.EXPORT else "backing_up",
                         total=total)
    at = now_ms()
    # the throttle's rule, kept by the one process publishing for the job at this point
    claim = published_at is None or at - published_at >= MIN_INTERVAL_MS
    if job.kind is JobKind.BACKUP:
        job = store.update_backup(job.job_id, counts=BackupCounts(projects=len(projects),
                                                                  deletions=deletions),
                                  progress=exporting, claim_at_ms=at if claim else None)
    else:
        job = store.update_export(job.job_id, counts=Counts(projects=len(projects)),
                                  progress=exporting, claim_at_ms=at if claim else None)
    if claim:
        publish_claimed(job)
    logger.info("export planned", extra={"job_id": job.job_id, "kind": job.kind.value,
                                         "shards": len(shards), "sessions": total,
                                         "messages": messages})
    return ExportPlan(job_id=job.job_id, shard_list=listed, shards=len(shards),
                      concurrency=sizing.concurrency)


def _session_weights(scope: OwnerScope, filters: ExportFilters) -> Iterator[tuple[str, int]]:
    """(sessionId, messageCount) in sessionId order: a projection of a few dozen bytes per
    session, no session or message data."""
    projection = {"sessionId": 1, "messageCount": 1, "_id": 0}
    with scope.sessions.find(scope.sessions_query(filters), projection, sort=SESSION_ORDER,
                             batch_size=5000) as cursor:
        for doc in cursor:
            count = doc.get("messageCount")
            yield doc["sessionId"], count if isinstance(count, int) else 0


def shard_cursor(event: Mapping[str, Any]) -> ShardCursor:
    """Where an invocation starts: a shard's first gets the key of the object the plan wrote
    its cursor to (the Distributed Map hands each child only that), a later one the cursor the
    previous invocation returned."""
    if "shardKey" in event:
        return read_shard(packages_bucket(), ShardRef.model_validate(event).shard_key)
    return ShardCursor.model_validate(event)


class SessionWriter(Protocol):
    """Writes one session and its messages through the format writer; returns the cursor
    past it. `heartbeat` is called while a long session is written."""

    def __call__(self, writer: ExportWriter, projects: dict[Any, Any], session: Any,
                 messages: Iterator[Any], state: ShardCursor, *,
                 heartbeat: Callable[[], None]) -> ShardCursor: ...


def write_session(writer: ExportWriter, projects: dict[Any, Any], session: Any,
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


def run_shard(cursor: ShardCursor, remaining_ms: Callable[[], int],
              write: SessionWriter = write_session) -> ShardCursor:
    """Write whole sessions page by page; stop while time remains to close the files. `write`
    is the one seam inside the loop (tests slow it down or make it fail).

    The loop is source -> writer -> sink: every file of the invocation goes to one staged
    object, and the control plane is touched per invocation, not per file, page or session:
    one job read here, the reporter's flush at most once a second (counts, cancel check,
    progress), and at the end one batch of file records."""
    store = JobStore()
    job = store.require(cursor.job_id)
    require_running(job)
    settings = get_settings()
    scope, filters = _source(job)
    projects = {p["_id"]: p for p in projects_in_scope(scope, filters)}
    # a backup keeps documents exactly as stored: costs are priced for exports only
    compute_costs = (job.kind is JobKind.EXPORT
                     and job.export_state.request.options.compute_costs)

    # A retried invocation starts from the same cursor and rewrites the same file numbers (and
    # the same staged object); records an earlier attempt left beyond them are skipped by the
    # finalizer, which keeps each shard's records up to the seq its row ends with.
    sink = _sink(packages_bucket(), job, cursor.shard, cursor.seq)
    reporter = ShardReporter(store, job, cursor.shard, sessions=cursor.sessions,
                             messages=cursor.messages, bytes_before=cursor.bytes,
                             bytes_written=lambda: sink.bytes_written)
    state = cursor.model_copy()
    try:
        writer = _writer(job, sink, cursor.shard, cursor.seq)
        finished = True
        with ShardMessages(scope, filters, after=cursor.after, upto=cursor.upto,
                           batch_size=settings.message_batch_size) as shard_messages:
            for page in iter_session_pages(scope, filters, after=cursor.after,
                                           upto=cursor.upto, page_size=settings.page_size):
                for session, messages in shard_messages.pairs(page):
                    state = write(writer, projects, session,
                                  priced(messages) if compute_costs else messages, state,
                                  heartbeat=reporter.heartbeat)
                    reporter.session_written(sessions=state.sessions, messages=state.messages)
                if remaining_ms() < settings.worker_reserve_ms:
                    finished = False
                    break
        writer.close()
        state = state.model_copy(update={
            "seq": sink.next_seq, "done": finished,
            "bytes": cursor.bytes + sink.bytes_written})

        def stored(shard_state: Mapping[str, Any]) -> None:
            """The staged object completed, its file records and the shard's row: one write."""
            store.put_files(job.job_id, cursor.shard, cursor.seq, sink.complete(),
                            expires_at=job.expires_at, shard_states={cursor.shard: shard_state})

        # the last report doubles as the last cancel check before anything is stored
        reporter.close(sessions=state.sessions, messages=state.messages,
                       bytes_total=state.bytes, seq=state.seq, store=stored)
    except BaseException:
        sink.discard()
        raise
    return state


def finalize(ref: JobRef) -> JobRef:
    store = JobStore()
    found, shards, files_in_order = store.for_packaging(ref.job_id)
    if found is None:
        raise NotFound(f"Job {ref.job_id} does not exist or has expired.")
    job = found
    require_running(job)
    if job.kind is JobKind.BACKUP:
        backup.finalize(job, store, _password(job), files_in_order)
        return ref
    request = job.export_state.request
    settings = get_settings()
    planned = job.export_state.counts
    counts = Counts(projects=planned.projects if planned else 0,
                    sessions=sum(int(s["sessions"]) for s in shards),
                    messages=sum(int(s["messages"]) for s in shards))
    now = utcnow()
    filename = _filename(request.format, job.job_id, now)
    key = locations.package_key(job.job_id, filename)
    # A package assembled within half a second goes straight to the terminal event (a
    # `packaging` event would come a moment before it and tell the client nothing); a longer
    # assembly announces the phase half a second in, then at most twice a second.
    packaging = job.progress.model_copy(update={"phase": "packaging"})
    cadence = Cadence()
    cadence.due()

    def files() -> Iterator[StagedFile]:
        """The staged files, with a heartbeat while S3 copies them into the package."""
        for staged in files_in_order():
            if cadence.due():
                _publish(job, packaging)
            yield staged

    header = ManifestHeader(job_id=job.job_id, owner=Owner(user_id=job.user_id), created_at=now,
                            format=request.format.value,
                            filters=request.filters.model_dump(mode="json", by_alias=True,
                                                               exclude_none=True),
                            counts=counts,
                            encryption="winzip-aes-256" if job.encrypted else None,
                            price_source=PRICE_SOURCE if request.options.compute_costs else None)
    bucket = packages_bucket()
    result = assemble_package(bucket, key, files=files, header=header,
                              part_size=settings.upload_part_size_mb * MIB,
                              level=request.options.compression.level, password=_password(job),
                              content_disposition=f'attachment; filename="{filename}"')
    discard_job_objects(bucket, job.job_id, include_package=False)
    package = PackageInfo(key=key, filename=filename, bytes=result.bytes, files=result.files,
                          expires_at=now + timedelta(days=settings.package_retention_days))
    done = store.succeed_export(
        job.job_id, package=package, counts=counts.model_copy(update={"files": result.files}),
        progress=Progress(phase="done", current=counts.sessions, total=counts.sessions,
                          bytes=result.bytes), claim_at_ms=now_ms())
    publish_terminal(done, claimed=True)
    logger.info("export succeeded", extra={"job_id": job.job_id, "bytes": result.bytes,
                                           "files": result.files})
    return ref



def _source(job: Job) -> tuple[OwnerScope, ExportFilters]:
    """Where the job reads, and the reader's filters: an export's owner and filters; a
    backup's own scope (its selection inside, messages never filtered)."""
    if job.kind is JobKind.BACKUP:
        return backup.scope_of(job), backup.NO_FILTERS
    return OwnerScope(get_database(), job.user_id), job.export_state.request.filters


def _sink(bucket: PackagesBucket, job: Job, shard: int, seq: int) -> StagingSink:
    settings = get_settings()
    level = (backup.STORED if job.kind is JobKind.BACKUP
             else job.export_state.request.options.compression.level)
    return StagingSink(bucket, locations.shard_prefix(job.job_id, shard), start_seq=seq,
                       level=level, password=_password(job),
                       part_size=settings.upload_part_size_mb * MIB)


def _password(job: Job) -> SecretStr | None:
    """The export's password, unsealed for this invocation only (never in the task's input,
    output or logs)."""
    if not job.encrypted:
        return None
    if job.sealed_password is None:  # only a job that ended forgets it, and those stop first
        raise JobCancelled(f"Job {job.job_id} no longer holds its password; stopping.")
    return passwords.unseal(job.sealed_password, job.job_id)


def _writer(job: Job, sink: StagingSink, shard: int, seq: int) -> ExportWriter:
    """The export's format writer, or for a backup the backup writer."""
    if job.kind is JobKind.BACKUP:
        return backup.writer_for(job, sink, shard=shard, seq=seq)
    request = job.export_state.request
    context = ExportContext(job_id=job.job_id, owner_id=job.user_id, created_at=job.created_at,
                            format=request.format.value,
                            filters=request.filters.model_dump(mode="json", by_alias=True,
                                                               exclude_none=True))
    return writer_for(request.format)(sink, context=context,
                                      split_bytes=request.options.split_size_mb * MIB)


def _shard_state(cursor: ShardCursor) -> dict[str, int]:
    return {"sessions": cursor.sessions, "messages": cursor.messages, "bytes": cursor.bytes}


def _publish(job: Job, progress: Progress) -> None:
    """`progress` to the job row and, unless throttled, to subscribers: one write either way
    when the event may go out (`record`), two when it may not."""
    publish_progress(job, progress, record=True)


def _filename(fmt: ExportFormat, job_id: str, now: datetime) -> str:
    return f"dataport-{fmt.value}-{now.astimezone(UTC):%Y%m%d-%H%M%S}-{job_id[:8]}.zip"
