"""A backup's verification as a job (the verify state machine,
infrastructure/statemachines/verify.asl.json): the same checks as a synchronous verify
(backups/verify.py), split so that no invocation needs to hold more than a read chunk, a line and
a zstd window, and no invocation needs the whole backup's time.

- `whole_object`: takes the job, reads the stored object once and records its SHA-256 (phase
  `hashing`: `bytes` read of `total`). One pass in one invocation (a hash's state cannot be
  handed to the next one), read by several ranged GETs at once (PackagesBucket.read_pinned),
  so it is bound by the hashing, not by one S3 stream: docs/backups.md, "Not done yet".
- `members`: checks members from `next_member` on until the time budget runs low, records how
  far it got and returns `done: false`; the state machine calls it again (phase `verifying`:
  `current` members of `total`). So the member pass has no size bound.
- a cancel (DELETE /backups/{id}/verify, DELETE /backups/{id}/preview/{jobId}: the job row
  `cancelled`, the execution stopped) is seen by a running task at its next beat (`_Watch`: the
  job row read once a second, with the progress), between two read chunks or a few thousand
  lines: the task returns `cancelled: true` (the state machine ends at `Cancelled`), records
  nothing, and the backup's status stays as it was.
- at the end (damage found or the last member checked) the verdict is recorded where a
  synchronous verify records it (the catalog: `verifiedAt`, or `corrupted` naming the member),
  on the backup's `verification`, and the job succeeds. Any failure goes to the workflows'
  Catch (workflows/failure.py): the job fails, the backup's `verification` says so, and the
  backup's status is left as it was.

Progress goes out at most once a second (control-plane writes per second, not per chunk).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from dataport.backups.catalog import BackupCatalog
from dataport.backups.format import FormatError, PasswordRequired
from dataport.backups.verify import MemberPass, Verification, check_members, verdict
from dataport.bucket import packages_bucket
from dataport.errors import BackupNotUsable, InvalidRequest, JobCancelled
from dataport.imports.limits import BadInput, backup_limits
from dataport.imports.readers.backup import BackupSource, NotInOrder
from dataport.imports.restore_preview import preview_chain
from dataport.jobs import passwords
from dataport.jobs.store import JobStore, require_running
from dataport.models.backup_views import (
    MAX_PREVIEW_PROJECTS,
    BackupPreview,
    ProjectPreview,
    RestorePreview,
)
from dataport.models.backups import BackupRecord, BackupScope, BackupStatus
from dataport.models.imports import ImportOptions, IssueCode
from dataport.models.jobs import Job, JobError, JobStatus, Progress
from dataport.models.restores import BACKUP_FILENAME
from dataport.models.tasks import JobRef
from dataport.observability import logger
from dataport.progress.publisher import publish_progress, publish_terminal
from dataport.settings import get_settings
from dataport.source.mongo import get_database
from dataport.source.scope import BackupSelection, InstanceScope, OwnerScope
from dataport.workflows.backup import chain_of, opener_of

#: seconds between two progress events of one invocation
PROGRESS_EVERY = 1.0


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def first(ref: JobRef) -> dict[str, Any]:
    """The state machine's first task: a preview job's one task, or a verification's
    whole-object pass (`done` says whether the member passes follow; `cancelled` that the job
    was cancelled under it)."""
    job = JobStore().require(ref.job_id)
    try:
        if job.verify_state.request.check == "preview":
            return preview(ref)
        return whole_object(ref)
    except JobCancelled:
        return _stopped(ref)


def whole_object(ref: JobRef) -> dict[str, Any]:
    """Take the job and record the stored object's SHA-256 (one pass, ranged GETs at once)."""
    store = JobStore()
    job = store.take(ref.job_id, Progress(phase="hashing"))
    require_running(job)
    record = _record(job)
    total = record.sizes.stored if record.sizes else 0
    digest_of = _Watch(job, "hashing", total)
    key = record.object_key
    assert key is not None  # the API checked the backup is usable
    bucket = packages_bucket()
    digest, size = hashlib.sha256(), 0
    # several ranged GETs at once, each requiring the ETag seen first (a backup is written
    # once: a changed one fails the job, upload_changed, instead of hashing two versions)
    with bucket.read_pinned(bucket.pin_in_place(key)) as chunks:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            digest_of.tick(bytes_read=size)
    store.update_verify(ref.job_id, sha256=digest.hexdigest(), stored_bytes=size,
                        progress=Progress(phase="verifying", bytes=size))
    return {"jobId": ref.job_id, "done": False}


def members(ref: JobRef, context: LambdaContext) -> dict[str, Any]:
    """Check members from where the last invocation stopped until the budget runs low; at the
    end, record the verdict. `done` tells the state machine whether to call again, `cancelled`
    that the job was cancelled (nothing recorded)."""
    try:
        return _members(ref, context)
    except JobCancelled:
        return _stopped(ref)


def _stopped(ref: JobRef) -> dict[str, Any]:
    logger.info("verify job cancelled; stopping", extra={"job_id": ref.job_id})
    return {"jobId": ref.job_id, "done": True, "cancelled": True}


def _members(ref: JobRef, context: LambdaContext) -> dict[str, Any]:
    store = JobStore()
    job = store.require(ref.job_id)
    require_running(job)
    state = job.verify_state
    record = _record(job)
    key = record.object_key
    assert key is not None
    password = (passwords.unseal(job.sealed_password, job.job_id).get_secret_value()
                if job.sealed_password else None)
    reserve = get_settings().worker_reserve_ms
    watch = _Watch(job, "verifying", state.total_members or 0)
    progress = MemberPass(next_member=state.next_member, members=state.members,
                          records=state.records, total=state.total_members)

    def keep_going() -> bool:
        watch.tick(current=progress.members, total=progress.total or 0)
        return context.get_remaining_time_in_millis() > reserve

    def reading() -> None:  # within a member: the cancel check (and progress), once a second
        watch.tick(current=progress.members, total=progress.total or 0)

    try:
        with packages_bucket().open_read(key) as stream:
            progress = check_members(stream, password, progress, keep_going, reading)
    except PasswordRequired as error:  # the API opened the manifest with it: a changed object
        raise InvalidRequest(str(error), details={"field": "password"}) from error
    if not progress.done:
        store.update_verify(ref.job_id, next_member=progress.next_member,
                            members=progress.members, records=progress.records,
                            total_members=progress.total,
                            progress=Progress(phase="verifying", current=progress.members,
                                              total=progress.total or 0,
                                              bytes=state.stored_bytes))
        return {"jobId": ref.job_id, "done": False}
    assert state.sha256 is not None  # whole_object ran first
    result = verdict(state.sha256, record.sha256, progress)
    require_running(store.require(ref.job_id))  # cancelled during the last member: no verdict
    _record_verdict(store, job, record, result, total=progress.total or 0)
    return {"jobId": ref.job_id, "done": True}


def compute_preview(record: BackupRecord, secret: str | None,
                    beat: Callable[[], None] = lambda: None) -> BackupPreview:
    """The preview of a usable backup (the API's synchronous answer, and the preview job's;
    `beat` is called between batches of sessions: the job's cancel check). An increment's is
    its chain's, read as its restore reads it (imports/restore_preview.py)."""
    backup_id = record.backup_id
    bucket = packages_bucket()
    db = get_database()
    instance = record.scope is BackupScope.INSTANCE
    target = (InstanceScope(db, BackupSelection()) if instance
              else OwnerScope(db, record.owner_id))
    key = record.object_key
    assert key is not None  # a usable backup has its object
    try:
        chain = (chain_of(BackupCatalog(), backup_id) if record.parent_id is not None else [])
        source = BackupSource(
            opener_of(bucket, record), BACKUP_FILENAME, options=ImportOptions(),
            limits=backup_limits(get_settings().max_restore_upload_bytes),
            password=secret.encode() if secret else None,
            chain=[opener_of(bucket, r) for r in chain], in_order=True, sessions_only=True)
        projects, outcome = preview_chain(source, target, beat)
    except PasswordRequired as error:
        raise InvalidRequest(str(error), details={"field": "X-Backup-Password"}) from error
    except BadInput as error:
        if error.issue.code in (IssueCode.ZIP_ENCRYPTED, IssueCode.WRONG_PASSWORD):
            raise InvalidRequest(error.issue.message,
                                 details={"field": "X-Backup-Password"}) from error
        raise BackupNotUsable(f"Backup {backup_id} cannot be read: {error.issue.message}. "
                              "Verify it.", details={"status": record.status.value}) from error
    except (FormatError, NotInOrder) as error:
        raise BackupNotUsable(f"Backup {backup_id} cannot be read: {error}. Verify it.",
                              details={"status": record.status.value}) from error
    return BackupPreview(
        backup_id=backup_id, type=record.type, scope=record.scope, counts=record.counts,
        projects=[ProjectPreview(project_id=p.project_id, name=p.name, path=p.path,
                                 sessions=p.sessions, messages=p.messages,
                                 first_activity=p.first, last_activity=p.last)
                  for p in projects[:MAX_PREVIEW_PROJECTS]],
        projects_total=len(projects),
        restore=RestorePreview(target="instance" if instance else "self", new=outcome.new,
                               changed=outcome.changed, identical=outcome.identical,
                               only_in_target=outcome.only_in_target,
                               samples=outcome.samples))


def preview(ref: JobRef) -> dict[str, Any]:
    """A preview job's one task: take the job, compute the preview (one invocation: it reads
    the projects and sessions members only, and compares sessions with the target in batches),
    keep it in the job row and end the job."""
    store = JobStore()
    job = store.take(ref.job_id, Progress(phase="previewing"))
    require_running(job)
    record = _record(job)
    if record.status is not BackupStatus.COMPLETED:
        raise InvalidRequest(f"Backup {record.backup_id} is {record.status.value} now; only a "
                             "completed backup can be previewed.")
    secret = (passwords.unseal(job.sealed_password, job.job_id).get_secret_value()
              if job.sealed_password else None)
    watch = _Watch(job, "previewing", 0)
    answer = compute_preview(record, secret, watch.tick)
    done = store.succeed_preview(ref.job_id, preview=answer, progress=Progress(phase="done"))
    publish_terminal(done)
    return {"jobId": ref.job_id, "done": True}


def _record_verdict(store: JobStore, job: Job, record: BackupRecord, result: Verification,
                    *, total: int) -> None:
    """Where a synchronous verify records it (the catalog), on the backup's `verification`,
    then the job's end and its terminal event."""
    catalog = BackupCatalog()
    if result.ok:
        if record.status is BackupStatus.COMPLETED:
            catalog.mark_verified(record.backup_id)
    else:
        where = f"member {result.member}" if result.member else "the stored object"
        catalog.mark_corrupted(record.backup_id, member=result.member, error=JobError(
            code="backup_corrupted", message=f"Verification found {where} damaged: "
                                             f"{result.problem}"))
        logger.warning("backup corrupted", extra={"job_id": record.backup_id,
                                                  "member": result.member})
    catalog.end_verification(record.backup_id, job.job_id, ok=result.ok,
                             sha256=result.sha256, members=result.members,
                             records=result.records, member=result.member,
                             problem=result.problem)
    done = store.succeed_verify(job.job_id, ok=result.ok, member=result.member,
                                problem=result.problem,
                                progress=Progress(phase="done", current=result.members,
                                                  total=total))
    publish_terminal(done)


def fail_verification(job: Job, error: JobError) -> None:
    """The Catch's part for a verification: the backup's `verification` ends failed with the
    reason; its status (completed, corrupted) stays what it was."""
    BackupCatalog().end_verification(job.verify_state.request.backup_id, job.job_id,
                                     error=error)


def _record(job: Job) -> BackupRecord:
    record = BackupCatalog().find(job.verify_state.request.backup_id)
    if record is None or record.object_key is None:
        raise InvalidRequest(f"Backup {job.verify_state.request.backup_id} no longer has its "
                             "stored object (deleted or expired meanwhile).")
    return record


class _Watch:
    """Once a second at most: the cancel check (the job row read: JobCancelled once it is no
    longer running) and a progress event (the publisher's own throttle is a write). Two
    control-plane calls a second, whatever the chunks and lines between."""

    def __init__(self, job: Job, phase: str, total: int) -> None:
        self.job, self.phase, self.total = job, phase, total
        self.last = time.monotonic()
        self._store = JobStore()

    def tick(self, *, current: int = 0, total: int | None = None, bytes_read: int = 0) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        job = self._store.find(self.job.job_id)
        if job is None or job.status is not JobStatus.RUNNING:
            raise JobCancelled(f"Job {self.job.job_id} is "
                               f"{job.status.value if job else 'gone'}; stopping.")
        self.job = job
        if self.phase == "previewing":
            return  # a preview reports its phase only
        if self.phase == "hashing":
            progress = Progress(phase=self.phase, current=bytes_read, total=self.total,
                                bytes=bytes_read)
        else:
            progress = Progress(phase=self.phase, current=current,
                                total=self.total if total is None else total)
        publish_progress(self.job, progress, record=True)
