"""The logic behind each task of the import workflow (infrastructure/statemachines/import.asl.json).

validate  the upload is pinned (a copy no upload form can write, read only with If-Match on
          its ETag), then streamed through the readers into a report (format, version, counts,
          dates, size and SHA-256, errors, warnings) and, in the same pass, each checked record
          into staging (source.staging: sessions the user lacks only by their uuids, where the
          reader keeps sessions together), and the checked records into one object for the
          execution (imports.checked: the upload is parsed once; not for an upload that reads
          again cheaply, dataport's own JSON). One with errors ends the job
          here (failed, report kept, staging dropped, nothing kept), nothing written.
stage     the staged upload compared with what the user has: the conflict summary joins the
          report, the conflicts go to a listing (its own invocation; when every session was
          staged light, new to the user, validate compares in its own invocation instead and
          answers `decide` or `execute` itself). An upload validation
          could not stage (not grouped by session) is read again here (the pinned copy, each
          record checked again as validation checked it) and staged in full.
await     keeps the task token the decision will answer (POST /execute sends it with
          SendTaskSuccess, DELETE with SendTaskFailure) and shows awaiting_decision.
execute   one invocation of the execution, a dry run or the real run (imports.executor): new
          sessions straight from the records validation checked (else the pinned upload), then
          the staged ones, until done or the
          time budget runs low. A pass's first invocation runs in the import execution
          (ExecuteInline, RollbackInline); the rest, if any, loops in child executions of the
          import pass machine (import-pass.asl.json), which count `invocations` to hand over.
finalize  the outcome and its per-session listing. A dry run goes back to awaiting the decision;
          the execution ends the job succeeded.
rollback  one invocation: what the import wrote is deleted, the journal's pre-images restored,
          projects it created and left empty removed; the job ends rolled_back.
cleanup   the Catch: half-written sessions undone, staging dropped, the upload deleted; the job
          ends failed (or stays cancelled). Sessions already complete stay, listed in the
          outcome, and a rollback can remove them.

Why a task token rather than a decision given with POST /imports: the decision depends on the
report and the conflicts, which exist only after validation; moto's interpreter runs
`lambda:invoke.waitForTaskToken` with SendTaskSuccess/SendTaskFailure (checked on the local
stack), so the same ASL runs locally and on AWS, and a waiting import costs nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from itertools import islice
from typing import IO, TypeVar

from bson import ObjectId
from bson.errors import InvalidDocument, InvalidStringData
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure

from dataport.bucket import PackagesBucket, packages_bucket
from dataport.errors import (
    Conflict,
    DatabaseRefused,
    InvalidRequest,
    JobCancelled,
    TransientError,
    UploadChanged,
)
from dataport.imports import storage
from dataport.imports.checked import CheckedWriter, read_checked
from dataport.imports.detect import open_import
from dataport.imports.digest import Tail, UploadDigest
from dataport.imports.executor import Executor, arriving, recover, summarise
from dataport.imports.limits import BadInput, ImportLimits, backup_limits
from dataport.imports.plan import SessionPlan
from dataport.imports.readers.backup import BackupSource, Selection
from dataport.imports.readers.base import ImportSource
from dataport.imports.removal import Removal, removed, removed_projects
from dataport.imports.removal import recover as recover_removals
from dataport.imports.sealed import Sealer
from dataport.imports.validate import SPILL_AFTER, RecordSink, recheck
from dataport.imports.validate import validate as validate_upload
from dataport.jobs import passwords
from dataport.jobs.store import JobStore, require_running, utcnow
from dataport.models.imports import (
    CLEANUP_FAILED,
    ConflictSummary,
    ImportDecision,
    ImportOptions,
    ImportOutcome,
    MessageCounts,
    SessionAction,
    SessionCounts,
    Strategy,
    ValidationReport,
)
from dataport.models.jobs import Job, JobError, JobKind, JobStatus, Progress, UploadPin
from dataport.models.records import ImportRecord
from dataport.models.restores import BACKUP_FILENAME, RestoreMode
from dataport.models.tasks import DecisionWait, ImportFailedInput, ImportStep, TaskError
from dataport.observability import logger
from dataport.progress.publisher import publish_claimed, publish_progress, publish_terminal
from dataport.progress.throttle import Cadence, now_ms
from dataport.settings import get_settings
from dataport.source.conflicts import StoredSession, UserData
from dataport.source.mongo import Document, get_database
from dataport.source.staging import LIGHT, NotGrouped, Staging, StagingWriter
from dataport.source.writes import (
    created_projects,
    delete_empty_projects,
    delete_written,
    refresh_project_stats,
    restore,
)
from dataport.workflows import restore_checks, restore_progress, sealing
from dataport.workflows.failure import describe

T = TypeVar("T")

#: how often (ms) long loops look at the job row (a cancel) and report progress: once a
#: second (the export's reporter's cadence) keeps a long task at ~3 DynamoDB calls a second,
#: and the protocol's event at least every 2 s (progress.throttle.MAX_INTERVAL_MS)
PULSE_MS = 1_000


def limits(job: Job | None = None) -> ImportLimits:
    settings = get_settings()
    if job is not None and job.kind is JobKind.RESTORE:
        return backup_limits(settings.max_restore_upload_bytes)
    return ImportLimits(max_upload_bytes=settings.max_upload_bytes)


def _source(job: Job, digest: UploadDigest | None = None, *,
            pin: UploadPin | None = None, sealer: Sealer | None = None) -> ImportSource:
    """The job's upload as import records: an import's through detection (open_import), a
    restore's as its backup chain (each parent object pinned as the restored one is; every
    member checked as it streams by). `pin`: the upload as just pinned (the job read before
    has none yet)."""
    pin = pin or _pinned(job)
    if job.kind is not JobKind.RESTORE:
        return open_import(opener(pin, digest), job.import_state.request.filename,
                           _options(job), limits(job), password=_password(job))
    state = job.restore_state
    selections = state.restore.selections
    return BackupSource(opener(pin, digest, sealer), BACKUP_FILENAME, options=ImportOptions(),
                        limits=limits(job), password=_password(job),
                        chain=[opener(link.pin) for link in state.source.links[:-1]],
                        selection=Selection(frozenset(selections.projects),
                                            frozenset(selections.sessions)),
                        owner=ObjectId(state.target_user_id) if state.shared_part else None)


def opener(pin: UploadPin, digest: UploadDigest | None = None,
           sealer: Sealer | None = None) -> Callable[[], IO[bytes]]:
    """A fresh seekable stream over the pinned upload per call (readers make several passes);
    every read requires the pinned ETag. A digest sees every byte read. A sealed upload (a
    restore shard's part) is read through its seal: `sealer`, or the key asked of KMS here."""
    bucket = packages_bucket()
    on_read = digest.feed if digest is not None else None
    sealer = sealer or sealing.sealer_of(pin)

    def open_upload() -> IO[bytes]:
        return sealing.open_pinned(bucket, pin, on_read, sealer)

    return open_upload


def tail(pin: UploadPin, sealer: Sealer | None = None) -> Tail:
    """The pinned upload from a position on, for a digest's `finish` (sealing.tail: ranged
    GETs at once, each requiring the pinned ETag)."""
    return sealing.tail(packages_bucket(), pin, sealer)


def _pin(store: JobStore, job: Job) -> UploadPin:
    """The upload, pinned before the first byte is validated: copied where no form can write,
    its ETag kept in the job row; the form's key is then emptied, so a file POSTed through the
    form later is never read (and is deleted with the job's objects)."""
    if job.import_state.upload_pin is not None:  # a retry, or validated again (field mapping)
        pin = job.import_state.upload_pin
    else:
        pin = storage.pin_upload(packages_bucket(), job.job_id)
        store.update_import(job.job_id, upload_pin=pin)
        logger.info("upload pinned", extra={"job_id": job.job_id, "bytes": pin.bytes})
    packages_bucket().delete(storage.upload_key(job.job_id))
    return pin


def _pinned(job: Job) -> UploadPin:
    if job.import_state.upload_pin is None:
        raise Conflict(f"Import {job.job_id} has no validated upload to read.")
    return job.import_state.upload_pin


# ---------------------------------------------------------------------------- validate


def validate(step: ImportStep) -> ImportStep:
    """The report, and the upload staged in the same pass (see _Stager)."""
    store = JobStore()
    validating, at = Progress(phase="validating"), now_ms()
    # started with its first event in one write (a retry, or validated again with another
    # field mapping, finds it running: then the event is claimed as any other)
    job = store.take(step.job_id, validating, claim_at_ms=at)
    job = live(store, job)
    require_running(job)
    if job.progress_sent_at == at and job.progress == validating:
        publish_claimed(job)
    else:
        _report(job, validating)
    pin = _pin(store, job)
    sealer = sealing.sealer_of(pin)  # a shard's part: its key, once per invocation
    digest = UploadDigest(fill=opener(pin, sealer=sealer), size=sealing.plain_bytes(pin))
    staging = Staging(get_database(), job.job_id)
    stager = _Stager(staging, UserData(staging.db, job.owner_of_data),
                     lambda: require_running(live(store, store.require(job.job_id))),
                     packages_bucket(),
                     sealer=sealing.checked_sealer(job, sealer))
    try:
        with database_errors():
            staging.drop()  # a retry, or validated again with another field mapping: anew
            staging.ensure_indexes()
            # an upload is detected inside the validation (what it cannot be is in the report)
            upload = (_source(job, digest, pin=pin, sealer=sealer)
                      if job.kind is JobKind.RESTORE else opener(pin, digest))
            report = validate_upload(upload, job.import_state.request.filename,
                                     _options(job), limits(job), password=_password(job),
                                     sink=stager.open, spill_after=_spill_after(job))
        report = _digested(report, digest, tail(pin, sealer), pin)
        if job.kind is JobKind.RESTORE:
            report = restore_checks.whole_objects(job, report, report.sha256 or "")
        checked = stager.complete_checked() if report.ok else None
    finally:
        stager.settle()  # no staging write still running, whatever happened
        stager.abort_checked()  # no multipart upload left open, whatever happened
    if not report.ok:
        # nothing of it left once the job shows failed
        with database_errors():
            staging.drop()  # what the pass staged before the first error
        _delete_upload(job.job_id)
        failed = store.fail_import(
            job.job_id, report=report, progress=Progress(phase="done"),
            error=restore_checks.refusal(job, report) or JobError(
                code="invalid_upload", message=(
                    f"The upload has {report.errors_total} error(s) and was not imported; the "
                    "report lists them.")))
        publish_terminal(failed)
        logger.info("import refused", extra={"job_id": job.job_id, "errors": report.errors_total})
        return step.model_copy(update={"next": "invalid"})
    # a restore's backup says where its source kept messages: the execution writes there
    # when the target has no message collection yet (source.writes.Target)
    layout = upload.message_layout if isinstance(upload, BackupSource) else None
    if stager.writer is None or stager.refused is not None:  # Stage stages it in full
        store.update_import(job.job_id, report=report, checked_pin=checked,
                            forget_checked=checked is None, message_layout=layout)
        with database_errors():
            stager.finish()  # raises a record staging refused, once the report is kept
        return step.model_copy(update={"next": "stage"})
    with database_errors():
        sessions = stager.finish()
        summary = _compare_new(store, job, staging, sessions, stager.writer)
    if summary is not None:  # compared here: no Stage invocation, the report written once
        report = report.model_copy(update={"conflicts": summary})
    store.update_import(job.job_id, report=report, checked_pin=checked,
                        forget_checked=checked is None, message_layout=layout)
    if summary is None:
        return step.model_copy(update={"next": "stage"})
    logger.info("import validated", extra={"job_id": job.job_id, "sessions": sessions})
    return _compared(job, step)


def _digested(report: ValidationReport, digest: UploadDigest, upload: Tail,
              pin: UploadPin) -> ValidationReport:
    """The report with the upload's size and SHA-256, its digest finished (what no reader
    read, read now). A sealed chunk only this reads that fails authentication is an error."""
    try:
        size, sha256 = digest.finish(upload)
    except BadInput as damaged:
        return report.model_copy(update={
            "size": sealing.plain_bytes(pin), "sha256": "",
            "errors": [*report.errors, damaged.issue], "errors_total": report.errors_total + 1})
    expected = sealing.plain_bytes(pin)
    if size != expected:  # If-Match makes this impossible; an import must not rely on it
        raise UploadChanged(f"The validated upload has {size} bytes, its pin {expected}.")
    return report.model_copy(update={"size": size, "sha256": sha256})


def _compare_new(store: JobStore, job: Job, staging: Staging, sessions: int,
                 writer: StagingWriter) -> ConflictSummary | None:
    """The comparison, in validation's invocation, when every session was staged light (new to
    the user: the common first import), where it only counts uuids held elsewhere; None
    otherwise (sessions the user has are compared message by message in Stage's own
    invocation), or when one of them is the user's by now (Stage stages it again in full)."""
    if not writer.all_light:
        return None
    try:
        return _compare(store, job, staging, sessions)
    except NotGrouped:
        return None


class _Stager:
    """Stages a clean upload as validation streams it (the sink of imports.validate): the
    validator's checks have passed on every record it gets, and the staging writer is the one
    Stage uses (light where the reader keeps sessions together, see source.staging). When the
    upload turns out not to be grouped by session, staging stops and Stage stages it in full (a
    pass of its own, as before); a record staging refuses is raised once the report is kept.
    `still_running` raises when the job was cancelled (looked at as often as Stage looked).

    Where sessions may be staged light, the same records go to the checked-records object
    (imports.checked), from which the execution inserts the light sessions' messages instead
    of parsing the upload again, unless the upload reads again cheaply (dataport's own JSON
    layout: `ImportSource.read_again_cheaply`); it is given up (the execution then reads the
    upload) when staging stops or a record cannot be encoded."""

    def __init__(self, staging: Staging, user: UserData,
                 still_running: Callable[[], None], bucket: PackagesBucket, *,
                 sealer: Sealer | None = None) -> None:
        self.staging = staging
        self.sealer = sealer  # the upload is sealed: so are its checked records
        self.user = user
        self.still_running = still_running
        self.bucket = bucket
        self.pulse = Cadence(PULSE_MS)
        self.pulse.due()  # the first look after an interval: the task has just read the job
        self.writer: StagingWriter | None = None
        self.checked: CheckedWriter | None = None
        self.refused: InvalidRequest | None = None
        self.ungrouped: str | None = None

    def open(self, source: ImportSource) -> RecordSink:
        def held(session_ids: Sequence[str]) -> set[str]:
            return {sid for sid, stored in self.user.sessions(session_ids).items()
                    if stored.document is not None}

        # staging's writes in a thread while the parse goes on (settled before anything drops)
        self.writer = self.staging.writer(classify=held if source.session_grouped else None,
                                          background=True)
        if source.session_grouped and not source.read_again_cheaply:
            self.checked = CheckedWriter(self.bucket, self.staging.job_id, sealer=self.sealer)
        return self.add

    def add(self, record: ImportRecord) -> None:
        if self.writer is None:
            return
        if self.pulse.due():
            self.still_running()
        try:
            self.writer.add(record)
        except NotGrouped as where:  # a session comes back later: Stage stages every record
            self.ungrouped = str(where)
            self._give_up()
        except InvalidRequest as refused:
            self.refused = refused
            self._give_up()
        if self.writer is None:
            self.abort_checked()
        elif self.checked is not None:
            try:
                self.checked.add(record)
            except (InvalidDocument, InvalidStringData, OverflowError, ValueError,
                    TypeError) as error:  # not for BSON: the execution reads the upload
                logger.info("records kept in the upload only", extra={
                    "job_id": self.staging.job_id, "reason": type(error).__name__})
                self.abort_checked()

    def _give_up(self) -> None:
        """Staging stops here (finish drops what it wrote, once its writes have ended)."""
        if self.writer is not None:
            self.writer.settle()
            self.writer = None

    def settle(self) -> None:
        """No staging write left running (what one raised stays for `finish`)."""
        if self.writer is not None:
            self.writer.settle()

    def complete_checked(self) -> UploadPin | None:
        """The checked-records object stored and pinned, if the pass kept one."""
        if self.checked is None or self.writer is None:
            return None
        pin = self.checked.complete()
        self.checked = None
        return pin

    def abort_checked(self) -> None:
        if self.checked is not None:
            self.checked.abort()
            self.checked = None

    def finish(self) -> int:
        """After a clean report: the index and the mark that staging is complete (the number
        of sessions staged), or what is left for Stage to do (0)."""
        if self.refused is not None:
            self.staging.drop()
            raise self.refused
        if self.writer is None:
            self.staging.drop()
            self.staging.mark_staged(None)
            logger.info("upload not grouped by session: staged in full by Stage",
                        extra={"job_id": self.staging.job_id, "session": self.ungrouped})
            return 0
        sessions = self.writer.close()
        self.staging.mark_staged(sessions)
        return sessions


def stage(step: ImportStep) -> ImportStep:
    """The staged upload compared with what the user has: the conflict summary joins the
    report, the conflicts go to a listing. Validation staged it; where it could not (an upload
    not grouped by session), or where the comparison finds a light session the user has by
    now, the upload is read again into staging, every record in full."""
    store = JobStore()
    job = live(store, store.require(step.job_id))
    require_running(job)
    report = job.import_state.report
    if report is None:
        raise Conflict(f"Import {job.job_id} has no validation report to stage.")
    staging = Staging(get_database(), job.job_id)
    with database_errors():
        try:
            mark = staging.staged() or {}
            if mark.get("ungrouped"):
                raise NotGrouped("found by validation")
            if "sessions" in mark:
                sessions = int(mark["sessions"])
                summary = _compare(store, job, staging, sessions)
            else:  # no mark: validated by a version that did not stage
                sessions, summary = _stage(store, job, staging, report, light=True)
        except NotGrouped as where:  # a session comes back later: stage every record
            logger.info("upload not grouped by session: staged in full",
                        extra={"job_id": job.job_id, "session": str(where)})
            sessions, summary = _stage(store, job, staging, report, light=False)
    store.update_import(job.job_id, report=report.model_copy(update={"conflicts": summary}))
    logger.info("import validated", extra={"job_id": job.job_id, "sessions": sessions})
    return _compared(job, step)


def _compared(job: Job, step: ImportStep) -> ImportStep:
    """After the comparison: the decision, or the execution when the job has one already (a
    restore's, or POST /execute's that asked for another field mapping)."""
    decision = _decision(job)
    if decision is not None:
        return step.model_copy(update={"next": "execute", "dry_run": decision.dry_run,
                                       "after": None, "done": 0})
    return step.model_copy(update={"next": "decide"})


def _stage(store: JobStore, job: Job, staging: Staging, report: ValidationReport, *,
           light: bool) -> tuple[int, ConflictSummary]:
    """The upload into staging (sessions the user lacks light, where the reader keeps each
    session's records together: see source.staging), then compared."""
    staging.drop()  # a retry, or validated again with another field mapping: from nothing
    _report(job, Progress(phase="staging", total=report.counts.messages))
    staging.ensure_indexes()
    source = _source(job)
    user = UserData(staging.db, job.owner_of_data)

    def held(session_ids: Sequence[str]) -> set[str]:
        return {sid for sid, stored in user.sessions(session_ids).items()
                if stored.document is not None}

    grouped = light and source.session_grouped
    writer = staging.writer(classify=held if grouped else None)
    pulse = Cadence(PULSE_MS)
    # the validator's checks again: nothing reaches staging unchecked
    for record in recheck(source.records(), spill_after=_spill_after(job)):
        writer.add(record)
        if pulse.due():
            _check(store, job.job_id, Progress(phase="staging", current=writer.messages,
                                               total=report.counts.messages))
    sessions = writer.close()
    return sessions, _compare(store, job, staging, sessions)


def _options(job: Job) -> ImportOptions:
    """The readers' options: the ones given with POST /imports, with the field mapping of a
    decision that brought its own."""
    options = job.import_state.request.options
    decision = _decision(job)
    if decision is not None and decision.field_mapping is not None:
        options = options.model_copy(update={"field_mapping": decision.field_mapping})
    return options


#: a restore's validation keeps this many keys (uuids, parent links, sessions) in memory
#: before it moves them to disk: a backup has no size limit, so its memory must stay flat
RESTORE_SPILL_AFTER = 20_000


def _spill_after(job: Job) -> int:
    return RESTORE_SPILL_AFTER if job.kind is JobKind.RESTORE else SPILL_AFTER


def _removes(job: Job) -> bool:
    """A full restore removes what the backup lacks (imports.removal)."""
    return job.kind is JobKind.RESTORE and job.restore_state.restore.mode is RestoreMode.FULL


def decided(job: Job) -> ImportDecision:
    """The job's decision (a restore's is made with the request)."""
    return _decided(job)


def password_of(job: Job) -> bytes | None:
    """The job's upload's password, unsealed for this invocation only (see _password)."""
    return _password(job)


def _decided(job: Job) -> ImportDecision:
    decision = job.import_state.decision
    if decision is None:
        raise Conflict(f"Import {job.job_id} has no decision to execute.")
    return decision


def _decision(job: Job) -> ImportDecision | None:
    return job.import_state.decision


def _password(job: Job) -> bytes | None:
    """An encrypted upload's password, unsealed for this invocation only (never in the task's
    input, the job row or a log). UTF-8, as 7-Zip and pyzipper encode AES passwords."""
    if job.sealed_password is None:
        return None
    return passwords.unseal(job.sealed_password, job.job_id).get_secret_value().encode()


def _compare(store: JobStore, job: Job, staging: Staging, total: int) -> ConflictSummary:
    """Every staged session against the user's: the summary, and a listing of the ones the
    user has (how they differ, what to do)."""
    user = UserData(staging.db, job.owner_of_data)
    new = changed = identical = copies = copied_messages = 0
    pulse = Cadence(PULSE_MS)
    pulse.due()  # the first report after an interval: a short comparison needs none (the
    # execution's first report, right after a quick decision, is not throttled by it)
    with storage.listing_writer(packages_bucket(), job.job_id, storage.CONFLICTS) as out:
        sessions = arriving(staging, user, _still_new(_with_stored(user, staging.sessions())))
        for done, (entry, stored, incoming) in enumerate(sessions, 1):
            assert incoming is not None
            copies += stored.copy
            copied_messages += incoming.copied
            if stored.document is None:
                new += 1
            else:
                plan = SessionPlan(session_id=stored.session_id, stored_id=stored.stored_id,
                                   strategy=Strategy.MERGE,
                                   incoming=incoming.ids.session(
                                       staging.session_document(stored.session_id)),
                                   stored=stored.document,
                                   stored_messages=user.messages(stored.stored_id),
                                   incoming_count=int(entry.get("m", 0)))
                plan.copied = incoming.copied
                for doc in incoming.messages():
                    for _ in plan.feed(doc):
                        pass
                for _ in plan.finish():
                    pass
                conflict = plan.conflict()
                assert conflict is not None
                if conflict.status == "identical":
                    identical += 1
                else:
                    changed += 1
                out.write(json.dumps(conflict.wire(), ensure_ascii=False).encode() + b"\n")
            if pulse.due():
                _check(store, job.job_id, Progress(phase="comparing", current=done, total=total))
    return ConflictSummary(new_sessions=new, changed_sessions=changed,
                           identical_sessions=identical, copied_sessions=copies,
                           copied_messages=copied_messages)


def _still_new(sessions: Iterator[tuple[Document, StoredSession]]
               ) -> Iterator[tuple[Document, StoredSession]]:
    """A light session must still be new to the user, or be staged again in full."""
    for entry, stored in sessions:
        if entry.get(LIGHT) and stored.document is not None:  # created since it was staged
            raise NotGrouped(stored.session_id)  # stage it again, in full
        yield entry, stored


def _with_stored(user: UserData, entries: Iterator[Document], chunk: int = 1000
                 ) -> Iterator[tuple[Document, StoredSession]]:
    """Index entries with where each goes in the user's account, read in bulk."""
    while batch := list(islice(entries, chunk)):
        stored = user.sessions([entry["s"] for entry in batch])
        for entry in batch:
            yield entry, stored[entry["s"]]


# ---------------------------------------------------------------------------- await


def await_decision(wait: DecisionWait) -> None:
    """Show the report and wait: the token is what POST /execute and DELETE answer."""
    store = JobStore()
    try:
        store.await_decision(wait.job_id, wait.task_token)
    except Conflict as error:
        raise JobCancelled(f"Job {wait.job_id} ended while it was being validated.") from error


# ---------------------------------------------------------------------------- execute


def execute(step: ImportStep, remaining_ms: Callable[[], int]) -> ImportStep:
    store = JobStore()
    job = live(store, store.require(step.job_id))
    require_running(job)
    decision = _decided(job)
    settings = get_settings()
    db, bucket = get_database(), packages_bucket()
    staging = Staging(db, job.job_id)
    phase = "dry_run" if decision.dry_run else "importing"
    started = step.started_at or utcnow()
    report = job.import_state.report
    total = report.counts.sessions if report else 0
    if step.after is None and decision.dry_run:
        staging.reset_results("dry")
    _report(job, Progress(phase=phase, current=step.done, total=total))
    if not decision.dry_run:
        undone = _mongo(lambda: recover(db, bucket, staging)
                        + recover_removals(db, bucket, staging))
        if undone:
            logger.warning("undid half-written sessions", extra={"job_id": job.job_id,
                                                                "sessions": undone})
    executor = Executor(db=db, bucket=bucket, job_id=job.job_id,
                        user_id=job.owner_of_data, decision=decision, staging=staging,
                        run_id=f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
                        batch_ops=settings.import_batch_ops, now=started,
                        writes_in_flight=settings.import_writes_in_flight,
                        layout=job.import_state.message_layout)
    processed = 0
    pulse = Cadence(PULSE_MS)
    pulse.due()  # the first look after an interval: the job was just read and reported
    # a shard's count for its restore's progress: read once here, then the executor's marks
    count = restore_progress.shard_count(job, staging, lambda: executor.records_marked)

    def keep_going() -> bool:
        nonlocal processed
        processed += 1
        if remaining_ms() < settings.worker_reserve_ms:
            return False
        if pulse.due():
            current = live(store, store.require(job.job_id))
            if current.status is not JobStatus.RUNNING:
                return False  # cancelled: stop at a session boundary; the next task ends it
            _report(current, Progress(phase=phase, current=step.done + processed,
                                      total=total))
            if count is not None:  # a shard's: into its restore's
                restore_progress.fold(store, current, count)
        return True

    def upload() -> Iterator[ImportRecord]:
        """The records validation checked (imports.checked), or, where it kept none, the
        pinned upload again (an encrypted one's password unsealed only when it is read). The
        checked records are the bytes validation wrote after its checks, pinned by their ETag
        (If-Match on every GET): they are not checked again. Records parsed again from the
        upload pass the checks again, as staging's do."""
        checked = job.import_state.checked_pin
        if checked is not None:
            return read_checked(sealing.open_pinned(bucket, checked))
        return recheck(_source(job).records(), spill_after=_spill_after(job))

    last, finished = _mongo(lambda: executor.run(keep_going, step.after, upload))
    if finished and _removes(job):
        removal = Removal(db=db, bucket=bucket, staging=staging,
                          user=UserData(db, job.owner_of_data), run_id=executor.run_id,
                          dry_run=decision.dry_run, strategy=decision.strategy,
                          batch=min(settings.import_batch_ops, 200))
        finished = _mongo(lambda: removal.run(keep_going))
    if not finished:  # a finished pass's progress is Finalize's to write
        _report(job, Progress(phase=phase, current=step.done + processed, total=total))
    return step.model_copy(update={"next": "finalize" if finished else "execute", "after": last,
                                   "done": step.done + processed, "started_at": started,
                                   "dry_run": decision.dry_run,
                                   "invocations": step.invocations + 1})


def finalize(step: ImportStep) -> ImportStep:
    store = JobStore()
    job = live(store, store.require(step.job_id))
    require_running(job)
    decision = _decided(job)
    db = get_database()
    staging = Staging(db, job.job_id)
    recorded = job.import_state.outcome
    if recorded is not None and not decision.dry_run:  # a retry after staging was dropped
        outcome = recorded
    else:
        outcome = _outcome(job, staging, decision, step.started_at or utcnow())
    if decision.dry_run and job.kind is JobKind.RESTORE:
        # a restore's dry run is the whole job: it ends with what the restore would do
        store.update_import(job.job_id, dry_run=outcome)
        staging.drop()
        finished = store.succeed_import(job.job_id, outcome=outcome, progress=Progress(
            phase="done", current=step.done, total=step.done), claim_at_ms=now_ms())
        publish_terminal(finished, claimed=True)
        logger.info("restore dry run done", extra={"job_id": job.job_id})
        return ImportStep(job_id=job.job_id, next="end")
    if decision.dry_run:
        store.update_import(job.job_id, dry_run=outcome)
        logger.info("dry run done", extra={"job_id": job.job_id})
        return ImportStep(job_id=job.job_id, next="decide")
    store.update_import(job.job_id, outcome=outcome)
    user_id = UserData(db, job.owner_of_data).scope.user_id
    refresh_project_stats(db, job.job_id, user_id)
    staging.drop()
    _delete_upload(job.job_id)
    finished = store.succeed_import(
        job.job_id, outcome=outcome,
        progress=Progress(phase="done", current=step.done, total=step.done),
        claim_at_ms=now_ms())
    publish_terminal(finished, claimed=True)
    logger.info("import succeeded", extra={"job_id": job.job_id,
                                           "messages": outcome.messages.inserted})
    return ImportStep(job_id=job.job_id, next="end")


def _outcome(job: Job, staging: Staging, decision: ImportDecision,
             started: datetime) -> ImportOutcome:
    """Counts over the staged sessions' results, and their listing (the same for the dry run
    and the execution: the listing is what the dry run promises)."""
    sessions: dict[str, int] = dict.fromkeys(SessionCounts.model_fields, 0)
    messages = MessageCounts()
    listing = storage.DRY_RUN if decision.dry_run else storage.RESULT
    with storage.listing_writer(packages_bucket(), job.job_id, listing) as out:
        for _, result in summarise(staging, dry_run=decision.dry_run):
            action = SessionAction(result["action"])
            sessions[_COUNTED[action]] += 1
            if result.get("copy") and action is not SessionAction.SKIP:
                sessions["copies"] += 1
            messages = messages.plus(MessageCounts.model_validate(result.get("messages", {})))
            out.write(json.dumps(result, ensure_ascii=False).encode() + b"\n")
        for result in removed(staging, dry_run=decision.dry_run):  # a full restore's
            sessions["removed"] += 1
            messages = messages.plus(MessageCounts.model_validate(result.get("messages", {})))
            out.write(json.dumps(result, ensure_ascii=False).encode() + b"\n")
    if decision.dry_run:
        existing = set(UserData(staging.db, job.owner_of_data).projects_by_path())
        planned = {entry["p"] for entry, result in summarise(staging, dry_run=True)
                   if result["action"] in ("insert", "replace")}
        created = len(planned - existing)
    else:
        created = len(created_projects(staging.db, job.job_id,
                                       UserData(staging.db, job.owner_of_data).scope.user_id))
    return ImportOutcome(dry_run=decision.dry_run, strategy=decision.strategy,
                         sessions=SessionCounts(**sessions), messages=messages,
                         projects_created=created,
                         projects_removed=removed_projects(staging, dry_run=decision.dry_run),
                         started_at=started, finished_at=utcnow())


_COUNTED = {SessionAction.INSERT: "inserted", SessionAction.REPLACE: "replaced",
            SessionAction.MERGE: "merged", SessionAction.SKIP: "skipped",
            SessionAction.UNCHANGED: "unchanged", SessionAction.REMOVE: "removed"}


# ---------------------------------------------------------------------------- rollback


def rollback(step: ImportStep, remaining_ms: Callable[[], int]) -> ImportStep:
    """Delete what the import wrote, then restore its journal's pre-images entry by entry
    (resumable: `after` is the last entry restored); both steps are idempotent."""
    store = JobStore()
    job = store.require(step.job_id)
    require_running(job)
    settings = get_settings()
    db, bucket = get_database(), packages_bucket()
    if step.after is None:
        _mongo(lambda: delete_written(db, job.job_id))
    keys = storage.journal_keys(bucket, job.job_id)
    pending = [key for key in keys if step.after is None or key > step.after]
    after = step.after or ""
    for key in pending:
        _, preimages = storage.read_journal(bucket, key)
        _mongo(partial(restore, db, preimages))
        after = key
        if remaining_ms() < settings.worker_reserve_ms and key != pending[-1]:
            _report(job, Progress(phase="rolling_back", current=keys.index(key) + 1,
                                  total=len(keys)))
            return step.model_copy(update={"after": after,
                                           "invocations": step.invocations + 1})
    delete_empty_projects(db, job.job_id, UserData(db, job.owner_of_data).scope.user_id)
    Staging(db, job.job_id).drop()  # left behind when a clean-up could not finish
    _delete_upload(job.job_id)
    rolled_back = store.roll_back(
        job.job_id, Progress(phase="done", current=len(keys), total=len(keys)))
    publish_terminal(rolled_back)
    logger.info("import rolled back", extra={"job_id": job.job_id, "entries": len(keys)})
    return step.model_copy(update={"next": "end", "after": after})


# ---------------------------------------------------------------------------- cleanup


def cleanup(task: ImportFailedInput) -> JobError:
    """Leave every session whole and nothing of the job's behind but what it completed."""
    store = JobStore()
    job = store.require(task.job_id)
    task = task.model_copy(update={"error": pass_error(task.error)})
    if task.cleanup_failed:
        _fail(store, job, JobError(code=CLEANUP_FAILED, message=(
            "The import failed and its clean-up could not finish, so some sessions may be "
            "half-written. POST /rollback puts your data back as it was before the import.")))
        return JobError(code=CLEANUP_FAILED, message="clean-up failed")
    if task.mode == "rollback":
        reason = describe(task.error.Error, task.error.Cause, task.job_id, what="rollback",
                          hint="Start the rollback again: it is safe to repeat.")
        error = JobError(code="rollback_failed", message=f"{reason.message} Your data may be "
                         "partly restored; POST the rollback again (it is safe to repeat).")
        _fail(store, job, error)
        return error
    db = get_database()
    staging = Staging(db, job.job_id)
    recover(db, packages_bucket(), staging)
    recover_removals(db, packages_bucket(), staging)
    if job.status is JobStatus.CANCELLING:  # a restore's cancel: undo it all, then end
        return undo_cancelled(store, job, staging)
    decision = _decision(job)
    outcome = None
    if decision is not None and not decision.dry_run and staging.has_results():
        outcome = _outcome(job, staging, decision, job.updated_at)  # what it did complete
    staging.drop()
    _delete_upload(job.job_id)
    delete_empty_projects(db, job.job_id, UserData(db, job.owner_of_data).scope.user_id)
    if task.error.Error == "States.Timeout" and job.status is JobStatus.AWAITING_DECISION:
        error = JobError(code="decision_timeout", message="No decision came within the time "
                         "the import waits for one; upload the file again to import it.")
    else:
        error = describe(task.error.Error, task.error.Cause, task.job_id, what="import",
                         hint="Try again later.")
    _fail(store, job, error, outcome=outcome)
    return error


def undo_cancelled(store: JobStore, job: Job, staging: Staging) -> JobError:
    """A cancelled restore (or shard) put back as it was, half-written sessions undone
    first (`cleanup`): what it wrote deleted by its tag, its journal's pre-images restored,
    projects it created left empty removed; then every object of it (`imports/<id>/`: the
    pinned upload, checked records, journal, listings) and any upload still open under it
    dropped, and the job ends cancelled saying so. Idempotent: a retry does it again."""
    db, bucket = get_database(), packages_bucket()
    _mongo(lambda: delete_written(db, job.job_id))
    restored = 0
    for key in storage.journal_keys(bucket, job.job_id):
        _, preimages = storage.read_journal(bucket, key)
        restored += _mongo(partial(restore, db, preimages))
    delete_empty_projects(db, job.job_id, UserData(db, job.owner_of_data).scope.user_id)
    staging.drop()
    bucket.abort_uploads(storage.prefix(job.job_id))
    bucket.delete_prefix(storage.prefix(job.job_id))
    error = JobError(code="cancelled", message=(
        "Cancelled at your request. What the restore had written was undone (documents it "
        f"changed or removed put back: {restored}); the target is as it was before it."))
    try:
        cancelled = store.cancel(job.job_id, error, progress=Progress(phase="done"))
    except Conflict:  # a retry whose first attempt ended it
        return error
    publish_terminal(cancelled)
    logger.info("restore cancelled and undone", extra={"job_id": job.job_id,
                                                       "restored": restored})
    return error


def live(store: JobStore, job: Job) -> Job:
    """The job as its tasks must see it: a shard of a restore that is being cancelled is
    asked to cancel too (one more read, of its restore's row, per look), so every check of
    `status` stops it as it stops any cancelled restore, and its clean-up undoes it."""
    if job.kind is not JobKind.RESTORE or job.status not in (JobStatus.QUEUED,
                                                             JobStatus.RUNNING):
        return job
    parent_id = job.restore_state.parent_id
    if parent_id is None or store.require(parent_id).status is not JobStatus.CANCELLING:
        return job
    try:
        return store.request_cancel(job.job_id, JobError(
            code="cancelled", message=f"Restore {parent_id} was cancelled."),
            Progress(phase="cancelling"))
    except Conflict:  # ended (or asked) meanwhile
        return store.require(job.job_id)


def pass_error(error: TaskError) -> TaskError:
    """The error of a failed import pass (import-pass.asl.json), not the task's wrapping: RunPass
    fails with States.TaskFailed whose cause is the pass execution's DescribeExecution answer,
    holding the error and cause its task failed with (a hand-over re-raises its fresh
    execution's, so one level is all there is). Any other error is returned as it is."""
    if error.Error != "States.TaskFailed" or not error.Cause:
        return error
    try:
        execution = json.loads(error.Cause)
    except ValueError:
        return error
    if not isinstance(execution, dict) or "ExecutionArn" not in execution:
        return error  # a task's own States.TaskFailed
    if execution.get("Status") == "TIMED_OUT":
        return TaskError(Error="States.Timeout", Cause=execution.get("Cause"))
    return TaskError(Error=str(execution.get("Error") or error.Error),
                     Cause=execution.get("Cause"))


def _fail(store: JobStore, job: Job, error: JobError,
          outcome: ImportOutcome | None = None) -> None:
    try:
        failed = store.fail_import(job.job_id, error, outcome=outcome)
    except Conflict:  # cancelled meanwhile: it stays cancelled, with what it did
        if outcome is not None:
            store.record_cancelled_outcome(job.job_id, outcome)
        logger.info("job already ended; left as it is", extra={"job_id": job.job_id})
        return
    publish_terminal(failed)
    logger.warning("import failed", extra={"job_id": job.job_id, "error_code": error.code})


# ---------------------------------------------------------------------------- helpers



def _check(store: JobStore, job_id: str, progress: Progress) -> None:
    """Stop a long phase when the job was cancelled; report progress otherwise."""
    job = live(store, store.require(job_id))
    require_running(job)
    _report(job, progress)


def _report(job: Job, progress: Progress) -> None:
    """Progress into the job row, and out to subscribers (throttled by the row): one write
    when the event may go out (the throttle's claim records it), as the export's reporter."""
    publish_progress(job, progress, record=True)


def _delete_upload(job_id: str) -> None:
    storage.delete_upload(packages_bucket(), job_id)


def _mongo(action: Callable[[], T]) -> T:
    with database_errors():
        return action()


@contextmanager
def database_errors() -> Iterator[None]:
    """Database failures as domain errors with a code and what to do: a dropped connection is
    worth a retry (the ASL retries TransientError), a refusal is not (refused writes are mapped
    where they happen: source.writes)."""
    try:
        yield
    except (AutoReconnect, NetworkTimeout) as error:
        logger.warning("database unreachable", extra={"error": str(error)})
        raise TransientError("The database could not be reached; try again in a few "
                             "minutes.") from error
    except OperationFailure as error:
        logger.warning("database refused", extra={"error": str(error), "code": error.code})
        raise DatabaseRefused(
            f"The database refused an operation of the import (MongoDB error {error.code}). "
            "Retrying will not help: an administrator has to check the database's permissions "
            "and limits; then import the file again.", details={"mongoCode": error.code}
        ) from error
