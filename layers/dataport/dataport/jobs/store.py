"""The job store: job rows, per-user history, shard progress and staged-file records.

A job row changes only through the named changes below (start, record_execution, progress,
await_decision, decide, succeed, fail, cancel, delete, rollback), each one conditional UpdateItem
whose allowed "from" statuses are one table per kind (TRANSITIONS), so two actors racing (a
cancel and a worker, a retry and its original) can never both win, and each writing only values
it built from typed arguments and validated as they will read back. There is no free-form
update: a misspelt field is a type error (and a TypeError), never a row that no longer reads.

The row keeps a kind's state (models.jobs.ExportState, ImportState, ...) one attribute per field,
under the names rows have always had (the request as a JSON string), so rows written before the
state was typed read as they are and jobs in flight across a deploy go on. Reads gather the
state from those attributes, ignore any other, and filter expired rows because DynamoDB deletes
TTL'd items up to two days late.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, TypeAdapter

from dataport import aws
from dataport.errors import Conflict, JobCancelled, NotFound, TransientError
from dataport.jobs import keys
from dataport.jobs import metrics as job_metrics
from dataport.jobs.dynamo import (
    decode_page_token,
    encode_page_token,
    from_item,
    is_conditional_failure,
    plain,
    to_item,
)
from dataport.models.backup_views import BackupPreview
from dataport.models.backups import BackupCounts, BackupRequest
from dataport.models.documents import MessageLayout
from dataport.models.exports import ExportRequest
from dataport.models.imports import ImportCreate, ImportDecision, ImportOutcome, ValidationReport
from dataport.models.jobs import (
    ACTIVE_STATUSES,
    BackupState,
    Counts,
    ExportState,
    ImportState,
    Job,
    JobError,
    JobKind,
    JobStatus,
    PackageInfo,
    Progress,
    RestoreState,
    UploadPin,
    VerifyJobRequest,
    VerifyState,
)
from dataport.models.staged import StagedFile
from dataport.settings import get_settings

AnyState = ExportState | ImportState | BackupState | RestoreState | VerifyState

STATE_MODELS: Mapping[JobKind, type[AnyState]] = {
    JobKind.EXPORT: ExportState, JobKind.IMPORT: ImportState,
    JobKind.BACKUP: BackupState, JobKind.RESTORE: RestoreState, JobKind.VERIFY: VerifyState}


class Change(StrEnum):
    """The named changes of a job row (JobStore's methods)."""

    START = "start"
    PROGRESS = "progress"
    UPDATE = "update"  # the kind's state, the status stays
    AWAIT_DECISION = "await_decision"
    DECIDE = "decide"
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"
    REQUEST_CANCEL = "request_cancel"  # a restore stops, undoes what it wrote, then cancels
    RECORD_CANCELLED = "record_cancelled"  # a cancelled import keeps what it completed
    DELETE = "delete"
    BEGIN_ROLLBACK = "begin_rollback"
    ROLL_BACK = "roll_back"


#: the status each change moves a job to (None: the status stays)
TARGETS: Mapping[Change, JobStatus | None] = {
    Change.START: JobStatus.RUNNING, Change.PROGRESS: None, Change.UPDATE: None,
    Change.AWAIT_DECISION: JobStatus.AWAITING_DECISION, Change.DECIDE: JobStatus.RUNNING,
    Change.SUCCEED: JobStatus.SUCCEEDED, Change.FAIL: JobStatus.FAILED,
    Change.CANCEL: JobStatus.CANCELLED, Change.REQUEST_CANCEL: JobStatus.CANCELLING,
    Change.RECORD_CANCELLED: None,
    Change.DELETE: JobStatus.DELETED, Change.BEGIN_ROLLBACK: JobStatus.RUNNING,
    Change.ROLL_BACK: JobStatus.ROLLED_BACK}

_RUNNING = frozenset({JobStatus.RUNNING})
#: the kinds the import pipeline runs (their states share ImportingState's fields)
IMPORTING_KINDS = frozenset({JobKind.IMPORT, JobKind.RESTORE})
#: ended with something to show: an export's package can be deleted, an import rolled back
FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

_IMPORTING: Mapping[Change, frozenset[JobStatus]] = {
    Change.START: frozenset({JobStatus.QUEUED}),
    Change.PROGRESS: _RUNNING,
    Change.UPDATE: _RUNNING,
    Change.AWAIT_DECISION: _RUNNING,
    Change.DECIDE: frozenset({JobStatus.AWAITING_DECISION}),
    Change.SUCCEED: _RUNNING,
    Change.FAIL: ACTIVE_STATUSES,
    Change.CANCEL: ACTIVE_STATUSES,
    Change.RECORD_CANCELLED: frozenset({JobStatus.CANCELLED}),
    Change.BEGIN_ROLLBACK: FINISHED,
    Change.ROLL_BACK: _RUNNING,
}

#: a job that runs once to its end (cancellable while active): a backup, a verification, and an
#: export (which may also be deleted once finished)
_RUN_ONCE: Mapping[Change, frozenset[JobStatus]] = {
    Change.START: frozenset({JobStatus.QUEUED}),
    Change.PROGRESS: _RUNNING,
    Change.UPDATE: _RUNNING,
    Change.SUCCEED: _RUNNING,
    Change.FAIL: ACTIVE_STATUSES,
    Change.CANCEL: ACTIVE_STATUSES,
}

#: per kind, each change a job of that kind may make and the statuses it may make it from
#: (a change a kind lacks is refused whatever the status)
TRANSITIONS: Mapping[JobKind, Mapping[Change, frozenset[JobStatus]]] = {
    JobKind.EXPORT: {**_RUN_ONCE, Change.DELETE: FINISHED},
    JobKind.IMPORT: _IMPORTING,
    # a restore is an import whose source is a backup: the same lifecycle, and a cancel
    # that undoes what it wrote before it ends (cancelling -> cancelled, or failed)
    JobKind.RESTORE: {**_IMPORTING, Change.REQUEST_CANCEL: frozenset({
        JobStatus.QUEUED, JobStatus.RUNNING})},
    # a backup runs through the export pipeline; its lasting record is the catalog's
    JobKind.BACKUP: _RUN_ONCE,
    # a backup's verification run as a job; its result also goes to the backup's record
    JobKind.VERIFY: _RUN_ONCE,
}

#: the file records one item holds at most (DynamoDB's item limit is 400 KB)
FILE_RECORDS_BYTES = 300_000
#: BatchWriteItem takes at most 25 items a request
BATCH_WRITE_LIMIT = 25
#: BatchGetItem's keys a request
BATCH_GET_LIMIT = 100
#: requests for one batch before unprocessed items are given up on (a retry of the task)
BATCH_WRITE_ATTEMPTS = 8

#: the error of a job cancelled at its owner's request
CANCELLED = JobError(code="cancelled", message="Cancelled at your request.")


def _new_item(user_id: str, state: AnyState, job_id: str, now: datetime,
              sealed_password: str | None) -> dict[str, Any]:
    """A queued job's row (JobStore.create, create_many)."""
    retention = timedelta(days=get_settings().job_retention_days)
    kind = state.kind
    return {
        "pk": keys.job_pk(job_id), "sk": keys.JOB_SK,
        "gsi1pk": keys.owner_pk(user_id, kind),
        "gsi1sk": keys.owner_sk(now.isoformat(), job_id),
        "job_id": job_id, "kind": kind.value, "user_id": user_id,
        "status": JobStatus.QUEUED.value, "created_at": now.isoformat(),
        "updated_at": now.isoformat(), "expires_at": int((now + retention).timestamp()),
        "progress": _storable(Job, "progress", Progress()),
        **({"encrypted": True, "sealed_password": sealed_password}
           if sealed_password else {}),
        **_state_attributes(state),
    }


def utcnow() -> datetime:
    return datetime.now(UTC)


def require_running(job: Job) -> None:
    """Workflow tasks stop here once a job was cancelled (or ended) under them."""
    if job.status is not JobStatus.RUNNING:
        raise JobCancelled(f"Job {job.job_id} is {job.status.value}; stopping.")


def new_job_id() -> str:
    """Sortable-enough, unguessable, and a valid Step Functions execution name."""
    return uuid.uuid4().hex


class JobStore:
    def __init__(self, table: str | None = None) -> None:
        self.table = table or get_settings().jobs_table
        self.db = aws.dynamodb()

    # ------------------------------------------------------------------ job rows
    def create(self, user_id: str, state: AnyState, *, job_id: str | None = None,
               sealed_password: str | None = None) -> Job:
        """A queued job of `state`'s kind. The request is kept without a password (that travels
        sealed); the row is validated as it will read back before it is written."""
        item = _new_item(user_id, state, job_id or new_job_id(), utcnow(), sealed_password)
        job = _job_from(item)
        try:
            self.db.put_item(TableName=self.table, Item=to_item(item),
                             ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if is_conditional_failure(error):
                raise Conflict(f"Job {job.job_id} already exists.") from error
            raise
        return job

    def create_many(self, user_id: str, states: Iterable[tuple[str, AnyState]], *,
                    created_at: datetime) -> int:
        """Queued jobs at the given ids, BatchWriteItem 25 a request (unprocessed items sent
        again): a restore's shards, made by its plan. No condition (a batch takes none): the
        rows are the same bytes for the same ids, states and `created_at`, so writing them
        again (a retried plan, before any shard ran) changes nothing. How many were written."""
        requests: list[dict[str, Any]] = []
        written = 0
        for job_id, state in states:
            item = _new_item(user_id, state, job_id, created_at, None)
            _job_from(item)  # validated as it will read back
            requests.append({"PutRequest": {"Item": to_item(item)}})
            if len(requests) == BATCH_WRITE_LIMIT:
                self._batch_write(requests)
                written, requests = written + len(requests), []
        if requests:
            self._batch_write(requests)
            written += len(requests)
        return written

    def require_many(self, job_ids: list[str]) -> list[Job]:
        """Jobs by id, in that order (BatchGetItem 100 a request, consistent reads, unprocessed
        keys asked again): a restore's shards, read by its finalize. NotFound for a missing
        or expired one."""
        found = {job.job_id: job for job in self.find_many(job_ids)}
        missing = [job_id for job_id in job_ids if job_id not in found]
        if missing:
            raise NotFound(f"Job {missing[0]} does not exist or has expired.")
        return [found[job_id] for job_id in job_ids]

    def iter_many(self, job_ids: list[str], *, required: bool = True) -> Iterator[Job]:
        """`require_many` (or, not `required`, `find_many`) a BatchGetItem at a time: a walk
        over thousands of jobs (a restore's shards) holds one page of them."""
        read = self.require_many if required else self.find_many
        for start in range(0, len(job_ids), BATCH_GET_LIMIT):
            yield from read(job_ids[start:start + BATCH_GET_LIMIT])

    def find_many(self, job_ids: list[str]) -> list[Job]:
        """The jobs of these ids that exist and have not expired, in that order (as
        `require_many` reads them): a failed plan's shards, some of which it never made."""
        found: dict[str, Job] = {}
        for start in range(0, len(job_ids), BATCH_GET_LIMIT):
            pending: Mapping[str, Any] = {self.table: {"ConsistentRead": True, "Keys": [
                to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK})
                for job_id in job_ids[start:start + BATCH_GET_LIMIT]]}}
            for attempt in range(BATCH_WRITE_ATTEMPTS):
                answer = self.db.batch_get_item(RequestItems=pending)
                for item in answer.get("Responses", {}).get(self.table, []):
                    job = _job_from(from_item(item))
                    found[job.job_id] = job
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(1.0, 0.05 * 2 ** attempt))
            else:
                raise TransientError("DynamoDB left jobs unread; the invocation will be retried.")
        now = int(utcnow().timestamp())
        return [found[job_id] for job_id in job_ids
                if job_id in found and found[job_id].expires_at > now]

    def get(self, job_id: str, user_id: str) -> Job:
        """The caller's job. Another user's job and an expired one are simply not found."""
        job = self.find(job_id)
        if job is None or job.user_id != user_id:
            raise NotFound(f"No job {job_id} was found for this account.")
        return job

    def find(self, job_id: str) -> Job | None:
        """A job by id for the workflow tasks (the job row itself names its owner)."""
        answer = self.db.get_item(TableName=self.table, ConsistentRead=True,
                                  Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}))
        if "Item" not in answer:
            return None
        job = _job_from(from_item(answer["Item"]))
        return None if job.expires_at <= int(utcnow().timestamp()) else job

    def require(self, job_id: str) -> Job:
        job = self.find(job_id)
        if job is None:
            raise NotFound(f"Job {job_id} does not exist or has expired.")
        return job

    def history(self, user_id: str, kind: JobKind, limit: int = 20,
                next_token: str | None = None) -> tuple[list[Job], str | None]:
        """Newest first. The token is opaque to clients and checked to be the caller's own."""
        pk = keys.owner_pk(user_id, kind)
        query: dict[str, Any] = {
            "TableName": self.table, "IndexName": keys.OWNER_INDEX,
            "KeyConditionExpression": "gsi1pk = :pk", "ScanIndexForward": False,
            "FilterExpression": "expires_at > :now",
            "ExpressionAttributeValues": to_item({":pk": pk, ":now": int(utcnow().timestamp())}),
            "Limit": limit,
        }
        if next_token:
            query["ExclusiveStartKey"] = decode_page_token(next_token, "gsi1pk", pk)
        jobs: list[Job] = []
        # A filter applies after Limit, so keep reading until the page is full or ends.
        while True:
            answer = self.db.query(**query)
            jobs.extend(_job_from(from_item(item)) for item in answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            if not last or len(jobs) >= limit:
                break
            query["ExclusiveStartKey"] = last
            query["Limit"] = limit - len(jobs)
        return jobs, (encode_page_token(last) if last else None)

    # ------------------------------------------------------------------ named state changes
    # One method per change, each a conditional UpdateItem whose allowed "from" statuses are
    # TRANSITIONS[kind][change]; every value written is built here from typed arguments and
    # validated as the row will read it back. There is no other way to change a job row.

    def start(self, job_id: str) -> Job:
        """queued -> running: the workflow's first task took the job."""
        job = self._change(job_id, Change.START)
        job_metrics.started(job)
        return job

    def take(self, job_id: str, progress: Progress | None = None, *,
             claim_at_ms: int | None = None) -> Job:
        """The job for the workflow's first task: started (queued -> running, with `progress`
        when given) when it was queued, else as it is (a retried task finds it running
        already; the caller checks it is). One write in the usual case, instead of a read and
        then the write. With `claim_at_ms`, starting it also claims the event announcing
        `progress` (the job's `progress_sent_at` is then `claim_at_ms`; see `claim_terminal`)."""
        sets = None if progress is None else {"progress": _storable(Job, "progress", progress)}
        attributes = self._update(job_id, Change.START, kinds=None, sets=sets, removes=(),
                                  answer=True, claim_at_ms=claim_at_ms)
        if attributes is None:
            return self.require(job_id)
        job = _job_from(attributes)
        job_metrics.started(job)
        if job.expires_at <= int(utcnow().timestamp()):
            raise NotFound(f"Job {job_id} does not exist or has expired.")
        return job

    def record_execution(self, job_id: str, execution_arn: str) -> Job:
        """Remember the job's workflow execution. Unconditional on status: the workflow may
        already have moved the job on by the time its starter hears back."""
        answer = self.db.update_item(
            TableName=self.table,
            Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
            UpdateExpression="SET execution_arn = :arn",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=to_item({
                ":arn": _storable(Job, "execution_arn", execution_arn)}),
            ReturnValues="ALL_NEW",
        )
        return _job_from(from_item(answer["Attributes"]))

    def set_progress(self, job_id: str, progress: Progress) -> None:
        """Progress only moves while the job runs; a late worker never overwrites the end."""
        self._update(job_id, Change.PROGRESS, kinds=None, removes=(), answer=False,
                     sets={"progress": _storable(Job, "progress", progress)})

    def update_export(self, job_id: str, *, counts: Counts,
                      progress: Progress | None = None, claim_at_ms: int | None = None) -> Job:
        """A running export's counts (the plan's projects), and its progress when given (the
        same write). With `claim_at_ms`, the same write also claims the next event seq (the
        returned job's `progress_seq`, see `claim_progress`): the caller knows no event went
        out in the last 500 ms, so the throttle's condition is not needed."""
        sets = {"counts": _storable(ExportState, "counts", counts)}
        if progress is not None:
            sets["progress"] = _storable(Job, "progress", progress)
        return self._change(job_id, Change.UPDATE, kinds={JobKind.EXPORT}, sets=sets,
                            claim_at_ms=claim_at_ms)

    def update_backup(self, job_id: str, *, watermark: datetime | None = None,
                      parent_watermark: datetime | None = None,
                      message_layout: MessageLayout | None = None,
                      counts: BackupCounts | None = None,
                      progress: Progress | None = None, claim_at_ms: int | None = None) -> Job:
        """What a running backup's plan learns: the snapshot's watermark (and its parent's),
        the source's message layout, the counts, and its progress when given (the same write;
        `claim_at_ms` as in `update_export`)."""
        sets = _state_sets(BackupState, {"watermark": watermark,
                                         "parent_watermark": parent_watermark,
                                         "message_layout": message_layout,
                                         "counts": counts})
        if progress is not None:
            sets["progress"] = _storable(Job, "progress", progress)
        return self._change(job_id, Change.UPDATE, kinds={JobKind.BACKUP}, sets=sets,
                            claim_at_ms=claim_at_ms)

    def succeed_backup(self, job_id: str, *, object_key: str, size: int, counts: BackupCounts,
                       progress: Progress, claim_at_ms: int | None = None) -> Job:
        """running -> succeeded with the stored object (`claim_at_ms` as in `succeed_export`)."""
        job = self._change(job_id, Change.SUCCEED, kinds={JobKind.BACKUP}, sets={
            **_state_sets(BackupState, {"object_key": object_key, "bytes": size,
                                        "counts": counts}),
            "progress": _storable(Job, "progress", progress),
            "finished_at": _storable(Job, "finished_at", utcnow())}, claim_at_ms=claim_at_ms)
        job_metrics.succeeded(job)
        return job

    def update_verify(self, job_id: str, *, stored_bytes: int | None = None,
                      sha256: str | None = None, next_member: int | None = None,
                      total_members: int | None = None, members: int | None = None,
                      records: int | None = None, progress: Progress | None = None) -> Job:
        """How far a running verification got (one write per pass of its task)."""
        sets = _state_sets(VerifyState, {
            "stored_bytes": stored_bytes, "sha256": sha256, "next_member": next_member,
            "total_members": total_members, "members": members, "records": records})
        if progress is not None:
            sets["progress"] = _storable(Job, "progress", progress)
        return self._change(job_id, Change.UPDATE, kinds={JobKind.VERIFY}, sets=sets)

    def succeed_verify(self, job_id: str, *, ok: bool, member: str | None,
                       problem: str | None, progress: Progress) -> Job:
        """running -> succeeded: the verification ran to its end (`ok` says what it found)."""
        job = self._change(job_id, Change.SUCCEED, kinds={JobKind.VERIFY}, sets={
            **_state_sets(VerifyState, {"ok": ok, "member": member, "problem": problem}),
            "progress": _storable(Job, "progress", progress),
            "finished_at": _storable(Job, "finished_at", utcnow())})
        job_metrics.succeeded(job)
        return job

    def succeed_preview(self, job_id: str, *, preview: BackupPreview, progress: Progress) -> Job:
        """running -> succeeded with a preview job's answer (kept in the row, bounded)."""
        job = self._change(job_id, Change.SUCCEED, kinds={JobKind.VERIFY}, sets={
            **_state_sets(VerifyState, {"preview": preview}),
            "progress": _storable(Job, "progress", progress),
            "finished_at": _storable(Job, "finished_at", utcnow())})
        job_metrics.succeeded(job)
        return job

    def update_import(self, job_id: str, *, upload_pin: UploadPin | None = None,
                      report: ValidationReport | None = None,
                      checked_pin: UploadPin | None = None, forget_checked: bool = False,
                      dry_run: ImportOutcome | None = None,
                      outcome: ImportOutcome | None = None,
                      message_layout: MessageLayout | None = None) -> Job:
        """What a running import's tasks learn: the pinned upload, the report, the records
        validation checked (`forget_checked`: there are none, whatever an earlier validation
        kept), the dry run's or the execution's outcome, the layout a restore's backup
        records (None: unchanged)."""
        given = {"upload_pin": upload_pin, "report": report, "checked_pin": checked_pin,
                 "dry_run": dry_run, "outcome": outcome, "message_layout": message_layout}
        return self._change(job_id, Change.UPDATE, kinds=IMPORTING_KINDS,
                            sets=_state_sets(ImportState, given),
                            removes=("checked_pin",) if forget_checked else ())

    def update_restore(self, job_id: str, *, shards: int) -> Job:
        """An instance restore's plan: how many shards (one restore per user) it made."""
        return self._change(job_id, Change.UPDATE, kinds={JobKind.RESTORE},
                            sets=_state_sets(RestoreState, {"shards": shards}))

    def count_shard(self, job_id: str, phase: str, *, claim_at_ms: int | None = None,
                    min_interval_ms: int = 0) -> Job | None:
        """One more of a running instance restore's shards ended: `progress.current` + 1,
        never past `progress.total`, only while its progress is in `phase` (None: refused).
        With `claim_at_ms`, the same write claims the next event seq as `claim_progress` does
        (refused when an event went out less than `min_interval_ms` before), so the count an
        event shows is the one its seq was claimed with: counts rise with seq."""
        return self._add_to_progress(job_id, phase, 1, claim_at_ms=claim_at_ms,
                                     min_interval_ms=min_interval_ms, below_total=True)

    def _add_to_progress(self, job_id: str, phase: str, delta: int, *,
                         claim_at_ms: int | None, min_interval_ms: int,
                         below_total: bool = False) -> Job | None:
        """A running restore's `progress.current` + `delta`, only while its progress is in
        `phase` (and, `below_total`, below its total); with `claim_at_ms`, the same write
        claims the next event seq (refused when an event went out less than
        `min_interval_ms` before). The restore as written, or None: refused."""
        sets = "SET progress.#current = progress.#current + :delta, updated_at = :updated"
        values: dict[str, Any] = {":delta": delta, ":updated": utcnow().isoformat(),
                                  ":running": JobStatus.RUNNING.value,
                                  ":kind": JobKind.RESTORE.value, ":phase": phase}
        names = {"#status": "status", "#kind": "kind", "#phase": "phase", "#current": "current"}
        condition = "#status = :running AND #kind = :kind AND progress.#phase = :phase"
        if below_total:
            condition += " AND progress.#current < progress.#total"
            names["#total"] = "total"
        if claim_at_ms is not None:
            sets += ", progress_sent_at = :now ADD progress_seq :one"
            values |= {":now": claim_at_ms, ":one": 1, ":cutoff": claim_at_ms - min_interval_ms}
            condition += (" AND (attribute_not_exists(progress_sent_at)"
                          " OR progress_sent_at <= :cutoff)")
        try:
            answer = self.db.update_item(
                TableName=self.table,
                Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
                UpdateExpression=sets, ConditionExpression=condition,
                ExpressionAttributeNames=names, ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW")
        except ClientError as error:
            if is_conditional_failure(error):
                return None
            raise
        return _job_from(from_item(answer["Attributes"]))

    def fold_records(self, job_id: str, shard_id: str, done: int, phase: str, *,
                     claim_at_ms: int | None = None, min_interval_ms: int = 0
                     ) -> tuple[Job, bool] | None:
        """A shard of a running restore in shards has restored `done` records: the restore's
        `progress.current` grows by what is new since the shard's last fold, only while its
        progress is in `phase`. The shard's own row keeps its last fold (`parent_folded`), so
        the restore's row holds one counter whatever the number of shards (a map of every
        shard's fold on it reached DynamoDB's 400 KB item limit at about 10,000 shards).
        Two conditional writes, the shard's first: a fold that raced another of its shard is
        refused there and reads again, so a record is never counted twice; a fold whose
        second write fails is recorded and not counted, which the restore's Finalize, setting
        the count to the total, makes good (progress is a courtesy). With `claim_at_ms`, the
        restore's write claims the next event seq as `count_shard` does (a refused claim
        counts without it). Returns the restore as written and whether the event was claimed;
        None: nothing new, the shard has no row, or the restore is not in `phase`."""
        shard_key = to_item({"pk": keys.job_pk(shard_id), "sk": keys.JOB_SK})
        for _ in range(3):  # the shard's fold changed meanwhile (a fold racing): read it again
            row = self.db.get_item(TableName=self.table, Key=shard_key, ConsistentRead=True,
                                   ProjectionExpression="parent_folded").get("Item")
            old = int(from_item(row or {}).get("parent_folded", 0))
            if done <= old:
                return None
            try:
                self.db.update_item(
                    TableName=self.table, Key=shard_key,
                    UpdateExpression="SET parent_folded = :done",
                    ConditionExpression="attribute_exists(pk) AND " + (
                        "parent_folded = :old" if old else "attribute_not_exists(parent_folded)"),
                    ExpressionAttributeValues=to_item(
                        {":done": done} | ({":old": old} if old else {})))
            except ClientError as error:
                if not is_conditional_failure(error):
                    raise
                continue
            return self._fold(job_id, done - old, phase, claim_at_ms=claim_at_ms,
                              min_interval_ms=min_interval_ms)
        return None

    def _fold(self, job_id: str, delta: int, phase: str, *, claim_at_ms: int | None,
              min_interval_ms: int) -> tuple[Job, bool] | None:
        """`fold_records`' second write: the restore's count, claiming the event when it may
        (refused, counted without the claim)."""
        for claim in ((True, False) if claim_at_ms is not None else (False,)):
            job = self._add_to_progress(job_id, phase, delta,
                                        claim_at_ms=claim_at_ms if claim else None,
                                        min_interval_ms=min_interval_ms)
            if job is not None:
                return job, claim
        return None

    def await_decision(self, job_id: str, task_token: str) -> Job:
        """running -> awaiting_decision, keeping the task token the decision will answer."""
        return self._change(job_id, Change.AWAIT_DECISION, sets={
            "task_token": _storable(ImportState, "task_token", task_token),
            "progress": _storable(Job, "progress", Progress(phase="awaiting_decision"))})

    def decide(self, job_id: str, decision: ImportDecision, progress: Progress, *,
               dry_runs: int | None = None) -> Job:
        """awaiting_decision -> running with the user's decision (and the count of dry runs
        decided, with it); the task token, answered next, is forgotten."""
        sets = {"decision": _storable(ImportState, "decision", decision),
                "progress": _storable(Job, "progress", progress)}
        if dry_runs is not None:
            sets["dry_runs"] = _storable(ImportState, "dry_runs", dry_runs)
        return self._change(job_id, Change.DECIDE, removes=("task_token",), sets=sets)

    def succeed_export(self, job_id: str, *, package: PackageInfo, counts: Counts,
                       progress: Progress, claim_at_ms: int | None = None) -> Job:
        """running -> succeeded with the package. With `claim_at_ms`, the same write claims the
        terminal event's seq (the returned job's `progress_seq`; see `claim_terminal`)."""
        job = self._change(job_id, Change.SUCCEED, kinds={JobKind.EXPORT}, sets={
            "package": _storable(ExportState, "package", package),
            "counts": _storable(ExportState, "counts", counts),
            "progress": _storable(Job, "progress", progress),
            "finished_at": _storable(Job, "finished_at", utcnow())}, claim_at_ms=claim_at_ms)
        job_metrics.succeeded(job)
        return job

    def succeed_import(self, job_id: str, *, outcome: ImportOutcome, progress: Progress,
                       claim_at_ms: int | None = None) -> Job:
        """running -> succeeded with what the execution did (it finished when the outcome
        says). With `claim_at_ms`, the same write claims the terminal event's seq, as
        `succeed_export` does."""
        job = self._change(job_id, Change.SUCCEED, kinds=IMPORTING_KINDS, sets={
            "outcome": _storable(ImportState, "outcome", outcome),
            "progress": _storable(Job, "progress", progress),
            "finished_at": _storable(Job, "finished_at", outcome.finished_at)},
            claim_at_ms=claim_at_ms)
        job_metrics.succeeded(job)
        return job

    def fail(self, job_id: str, error: JobError, *, progress: Progress | None = None) -> Job:
        """An active job ends failed with a readable error."""
        job = self._change(job_id, Change.FAIL, sets=_failed(error, progress))
        job_metrics.failed(job)
        return job

    def fail_import(self, job_id: str, error: JobError, *, progress: Progress | None = None,
                    report: ValidationReport | None = None,
                    outcome: ImportOutcome | None = None) -> Job:
        """An active import ends failed with its error and what it found (the report of a
        refused upload) or did (the sessions a failed execution completed)."""
        job = self._change(job_id, Change.FAIL, kinds=IMPORTING_KINDS, sets={
            **_failed(error, progress),
            **_state_sets(ImportState, {"report": report, "outcome": outcome})})
        job_metrics.failed(job)
        return job

    def cancel(self, job_id: str, reason: JobError | None = None, *,
               progress: Progress | None = None) -> Job:
        """An active job ends cancelled (at the user's request unless `reason` says)."""
        sets = {"error": _storable(Job, "error", reason or CANCELLED),
                "finished_at": _storable(Job, "finished_at", utcnow())}
        if progress is not None:
            sets["progress"] = _storable(Job, "progress", progress)
        job = self._change(job_id, Change.CANCEL, sets=sets)
        job_metrics.cancelled(job)
        return job

    def request_cancel(self, job_id: str, reason: JobError, progress: Progress, *,
                       claim_at_ms: int | None = None) -> Job:
        """A queued or running restore becomes cancelling: its tasks stop at their next look
        at the row, and its clean-up undoes what it wrote, then `cancel`s it. `claim_at_ms`:
        the same write claims the event that announces it."""
        return self._change(job_id, Change.REQUEST_CANCEL, kinds={JobKind.RESTORE}, sets={
            "error": _storable(Job, "error", reason),
            "progress": _storable(Job, "progress", progress)}, claim_at_ms=claim_at_ms)

    def record_cancelled_outcome(self, job_id: str, outcome: ImportOutcome) -> Job:
        """A cancelled import stays cancelled, with what it completed before it stopped."""
        return self._change(job_id, Change.RECORD_CANCELLED, sets={
            "outcome": _storable(ImportState, "outcome", outcome)})

    def delete(self, job_id: str) -> Job:
        """A finished export becomes deleted: its package is gone (the job stays in history)."""
        return self._change(job_id, Change.DELETE, removes=("package",))

    def begin_rollback(self, job_id: str, progress: Progress) -> Job:
        """An ended import runs again to undo what it wrote."""
        return self._change(job_id, Change.BEGIN_ROLLBACK, sets={
            "progress": _storable(Job, "progress", progress)})

    def roll_back(self, job_id: str, progress: Progress) -> Job:
        """running (rolling back) -> rolled_back."""
        return self._change(job_id, Change.ROLL_BACK, sets={
            "progress": _storable(Job, "progress", progress),
            "finished_at": _storable(Job, "finished_at", utcnow())})

    # ------------------------------------------------------------------ the progress throttle
    def claim_progress(self, job_id: str, at_ms: int, min_interval_ms: int, *,
                       progress: Progress | None = None) -> int | None:
        """The next event seq if the last event went out `min_interval_ms` before `at_ms` and
        the job is running, else None (see dataport.progress.throttle). With `progress`, the
        same write records it (the PROGRESS change), so a worker's report is one write when it
        may publish; when it may not, the progress is recorded alone (a second write)."""
        sets, values = "SET progress_sent_at = :now", {
            ":now": at_ms, ":one": 1, ":cutoff": at_ms - min_interval_ms,
            ":running": JobStatus.RUNNING.value}
        if progress is not None:
            sets += ", progress = :progress, updated_at = :updated"
            values |= {":progress": _storable(Job, "progress", progress),
                       ":updated": utcnow().isoformat()}
        try:
            answer = self.db.update_item(
                TableName=self.table,
                Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
                UpdateExpression=f"{sets} ADD progress_seq :one",
                ConditionExpression="#status = :running AND (attribute_not_exists("
                                    "progress_sent_at) OR progress_sent_at <= :cutoff)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(values),
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if is_conditional_failure(error):
                if progress is not None:
                    self.set_progress(job_id, progress)
                return None
            raise
        return int(answer["Attributes"]["progress_seq"]["N"])

    def claim_terminal(self, job_id: str, at_ms: int) -> int:
        """The seq of the job's terminal event: never throttled."""
        answer = self.db.update_item(
            TableName=self.table,
            Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
            UpdateExpression="SET progress_sent_at = :now ADD progress_seq :one",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=to_item({":now": at_ms, ":one": 1}),
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["progress_seq"]["N"])

    def _change(self, job_id: str, change: Change, *, kinds: Collection[JobKind] | None = None,
                sets: Mapping[str, Any] | None = None, removes: Iterable[str] = (),
                claim_at_ms: int | None = None) -> Job:
        attributes = self._update(job_id, change, kinds=kinds, sets=sets, removes=removes,
                                  answer=True, claim_at_ms=claim_at_ms)
        if attributes is None:
            raise _refused(self.find(job_id), job_id, change)
        return _job_from(attributes)

    def _update(self, job_id: str, change: Change, *, kinds: Collection[JobKind] | None,
                sets: Mapping[str, Any] | None, removes: Iterable[str],
                answer: bool, claim_at_ms: int | None = None) -> dict[str, Any] | None:
        """The one conditional UpdateItem behind every named change (None: refused). `sets` and
        `removes` name attributes the methods above chose, and `sets` holds values `_storable`
        validated. A job that ends forgets its sealed password, whichever change ends it. With
        `claim_at_ms`, the change also takes the next event seq, as the throttle's claims do
        (`progress_sent_at`, `progress_seq`): the event and the change it announces are one
        write."""
        to = TARGETS[change]
        names = {"#status": "status", "#kind": "kind"}
        values: dict[str, Any] = {":now": utcnow().isoformat()}
        assignments = ["updated_at = :now"]
        if to is not None:
            values[":to"] = to.value
            assignments.append("#status = :to")
        removed = list(removes)
        if to is not None and not to.is_active:
            removed.append("sealed_password")
        for i, (name, value) in enumerate((sets or {}).items()):
            names[f"#s{i}"] = name
            values[f":s{i}"] = value
            assignments.append(f"#s{i} = :s{i}")
        for i, name in enumerate(removed):
            names[f"#r{i}"] = name
        added = ""
        if claim_at_ms is not None:
            values[":sent"], values[":one"] = claim_at_ms, 1
            assignments.append("progress_sent_at = :sent")
            added = " ADD progress_seq :one"
        allowed = []
        for k, (kind, table) in enumerate(TRANSITIONS.items()):
            if change not in table or (kinds is not None and kind not in kinds):
                continue
            values[f":k{k}"] = kind.value
            froms = []
            for i, status in enumerate(sorted(table[change])):
                values[f":k{k}f{i}"] = status.value
                froms.append(f":k{k}f{i}")
            allowed.append(f"#kind = :k{k} AND #status IN ({', '.join(froms)})")
        # DynamoDB refuses redundant parentheses: only alternatives get their own
        condition = allowed[0] if len(allowed) == 1 else " OR ".join(f"({a})" for a in allowed)
        try:
            result = self.db.update_item(
                TableName=self.table,
                Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
                UpdateExpression="SET " + ", ".join(assignments)
                + (" REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
                   if removed else "") + added,
                ConditionExpression=f"attribute_exists(pk) AND ({condition})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW" if answer else "NONE",
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return None
            raise
        return from_item(result.get("Attributes", {}))

    # ------------------------------------------------------------------ shards and files
    def put_shard(self, job_id: str, shard: int, state: Mapping[str, Any], *,
                  expires_at: int | None = None) -> None:
        """The shard's counts, SET (a retried invocation never double counts). `expires_at`:
        the job's, when the caller holds the job already (else one read to learn it)."""
        self._put_child(job_id, keys.shard_sk(shard), state, expires_at=expires_at)

    def shards(self, job_id: str) -> list[dict[str, Any]]:
        return list(self._children(job_id, keys.SHARD_PREFIX))

    def job_and_shards(self, job_id: str) -> tuple[Job | None, list[dict[str, Any]]]:
        """The job row and its shard rows in one strongly consistent Query (they sort next
        to each other: `JOB` < `SHARD#...`, file records before both). None for a job that is
        missing or expired."""
        paginator = self.db.get_paginator("query")
        return _job_and_shards(
            from_item(raw)
            for page in paginator.paginate(
                TableName=self.table, ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :job AND :last",
                ExpressionAttributeValues=to_item({
                    ":pk": keys.job_pk(job_id), ":job": keys.JOB_SK,
                    ":last": keys.SHARD_PREFIX + "\uffff"}))
            for raw in page.get("Items", []))

    def put_files(self, job_id: str, shard: int, first_seq: int,
                  files: Iterable[StagedFile], *, expires_at: int | None = None,
                  shard_states: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        """Record an invocation's files: their records go as a list into as few items as fit
        (FILE_RECORDS_BYTES each; 600 files are about 200 KB, one item), keyed by the shard and
        the seq of each item's first file, so a retried invocation overwrites them
        (`for_packaging` skips what it does not). `shard_states`: shard rows (as
        `put_shard` writes them) to write in the same request, such as the plan's shards. One
        PutItem, or BatchWriteItem 25 items a request with unprocessed items sent again.
        `expires_at`: the job's, when the caller holds the job already (else one read to learn
        it)."""
        if expires_at is None:
            expires_at = self.require(job_id).expires_at
        pk = keys.job_pk(job_id)
        items: list[dict[str, Any]] = [
            to_item({**state, "pk": pk, "sk": keys.shard_sk(number), "expires_at": expires_at})
            for number, state in (shard_states or {}).items()]
        chunk: list[str] = []
        size = 0
        chunk_seq = first_seq
        for seq, staged in enumerate(files, start=first_seq):
            record = staged.model_dump_json(exclude_none=True)  # absent fields read as None
            if chunk and size + len(record) > FILE_RECORDS_BYTES:
                items.append(_file_records(pk, shard, chunk_seq, chunk, expires_at))
                chunk, size, chunk_seq = [], 0, seq
            chunk.append(record)
            size += len(record) + 1
        if chunk:
            items.append(_file_records(pk, shard, chunk_seq, chunk, expires_at))
        if len(items) == 1:
            self.db.put_item(TableName=self.table, Item=items[0])
            return
        requests = [{"PutRequest": {"Item": item}} for item in items]
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._batch_write(requests[start:start + BATCH_WRITE_LIMIT])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """One BatchWriteItem, and again for what DynamoDB left unprocessed (throttling), with
        a short backoff; TransientError if items still remain."""
        pending: Mapping[str, Any] = {self.table: requests}
        for attempt in range(BATCH_WRITE_ATTEMPTS):
            answer = self.db.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(1.0, 0.05 * 2 ** attempt))
        raise TransientError(f"DynamoDB left {len(pending.get(self.table, []))} items "
                             "unwritten; the invocation will be retried.")

    def files(self, job_id: str) -> Iterator[StagedFile]:
        """Staged files in package order (shard, then sequence), streamed page by page."""
        for item in self._children(job_id, "FILE#"):
            yield from _staged_files(item)

    def for_packaging(self, job_id: str) -> tuple[Job | None, list[dict[str, Any]],
                                                  Callable[[], Iterator[StagedFile]]]:
        """What the finalizer reads: the job (None when missing or expired), its shard rows,
        and its staged files in package order, a callable it may read more than once (it names
        members in two passes). The job's items are one partition (`FILE#...` < `JOB` <
        `SHARD#...`): when they fit in one Query page (1 MB: a few thousand files' records),
        that one Query is all, and every pass reads the kept page; beyond, the job and shards
        come from the pages and each pass streams the records again.

        Records a failed attempt left behind are skipped (`_chained`): each shard's records
        must run from seq 0 without a gap to the `seq` its row ends with, which the same
        request as an invocation's records writes; so no invocation has to delete stale
        records before it writes."""
        pages = self.db.get_paginator("query").paginate(
            TableName=self.table, ConsistentRead=True, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": keys.job_pk(job_id)}))
        kept: list[dict[str, Any]] | None = []
        others: list[dict[str, Any]] = []
        for number, page in enumerate(pages):
            if page.get("LastEvaluatedKey") or number:
                kept = None  # more than one page: the records are streamed by each pass
            for raw in page.get("Items", []):
                item = from_item(raw)
                if str(item["sk"]).startswith(keys.FILE_PREFIX):
                    if kept is not None:
                        kept.append(item)
                else:
                    others.append(item)
        job, shards = _job_and_shards(others)
        ends = {int(str(s["sk"])[len(keys.SHARD_PREFIX):]): int(s["seq"])
                for s in shards if "seq" in s}
        records = kept

        def files() -> Iterator[StagedFile]:
            items = records if records is not None else self._children(job_id,
                                                                       keys.FILE_PREFIX)
            yield from _chained(items, ends)
        return job, shards, files

    def _put_child(self, job_id: str, sk: str, values: Mapping[str, Any], *,
                   expires_at: int | None = None) -> None:
        if expires_at is None:
            expires_at = self.require(job_id).expires_at
        item = {**values, "pk": keys.job_pk(job_id), "sk": sk, "expires_at": expires_at}
        self.db.put_item(TableName=self.table, Item=to_item(item))

    def _children(self, job_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.db.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table, ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=to_item({":pk": keys.job_pk(job_id), ":prefix": prefix}),
        ):
            for item in page.get("Items", []):
                yield from_item(item)

_STAGED_FILES: TypeAdapter[list[StagedFile]] = TypeAdapter(list[StagedFile])


def _job_and_shards(items: Iterable[dict[str, Any]]) -> tuple[Job | None,
                                                              list[dict[str, Any]]]:
    """The job row (None when expired) and the shard rows among a job's items."""
    job: Job | None = None
    shards: list[dict[str, Any]] = []
    for item in items:
        if item["sk"] == keys.JOB_SK:
            found = _job_from(item)
            job = None if found.expires_at <= int(utcnow().timestamp()) else found
        elif str(item["sk"]).startswith(keys.SHARD_PREFIX):
            shards.append(item)
    return job, shards


def _chained(items: Iterable[Mapping[str, Any]], ends: Mapping[int, int],
             ) -> Iterator[StagedFile]:
    """The staged files of file-record items in key order (shard, first seq), keeping each
    shard's chain: seq 0, then each item starting where the one before ended, up to the seq
    the shard's row ends with (`ends`, when known). An item starting before that point holds
    records an earlier attempt of an invocation wrote and its retry rewrote differently; one
    starting at or after the shard's end, records of an attempt whose retry wrote fewer: both
    are skipped. A gap means records are missing: RuntimeError (the package would lack
    files)."""
    reached: dict[int, int] = {}  # per shard: the seq its records have reached
    for item in items:
        _, shard_text, first_text = str(item["sk"]).split("#")
        shard, first = int(shard_text), int(first_text)
        expected = reached.setdefault(shard, 0)
        end = ends.get(shard)
        if first < expected or (end is not None and first >= end):
            continue
        if first > expected:
            raise RuntimeError(f"file records of shard {shard} are missing from seq "
                               f"{expected} to {first}")
        files = _staged_files(item)
        reached[shard] = first + len(files)
        yield from files
    for shard, end in ends.items():
        if reached.get(shard, 0) != end:
            raise RuntimeError(f"file records of shard {shard} reach seq "
                               f"{reached.get(shard, 0)}, its row says {end}")


def _staged_files(item: Mapping[str, Any]) -> list[StagedFile]:
    if "files" in item:
        return _STAGED_FILES.validate_json(item["files"])
    # one record an item, as workers before issue 10 wrote them
    return [StagedFile.model_validate_json(item["file"])]


def _file_records(pk: str, shard: int, seq: int, records: list[str],
                  expires_at: int) -> dict[str, Any]:
    """One item of file records: files `seq`, `seq + 1`, ... of the shard, as a JSON list."""
    return to_item({"pk": pk, "sk": keys.file_sk(shard, seq),
                    "files": "[" + ",".join(records) + "]", "expires_at": expires_at})


def _storable(model: type[BaseModel], name: str, value: object) -> Any:
    """`value` of `model.name` as the row keeps it (models as plain maps by field name, without
    computed fields; datetimes as ISO strings), validated as it will read back: a value that
    would not read is a ValidationError here, before anything is written."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json", exclude=set(type(value).model_computed_fields))
    elif isinstance(value, datetime):
        data = value.isoformat()
    else:
        data = value
    _adapter(model, name).validate_python(data)
    return data


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    annotation = model.model_fields[name].annotation
    assert annotation is not None  # every field of our models is annotated
    return TypeAdapter(annotation)


def _state_sets(model: type[BaseModel], given: Mapping[str, object]) -> dict[str, Any]:
    return {name: _storable(model, name, value) for name, value in given.items()
            if value is not None}


def _failed(error: JobError, progress: Progress | None) -> dict[str, Any]:
    return {"error": _storable(Job, "error", error),
            "finished_at": _storable(Job, "finished_at", utcnow()),
            **({"progress": _storable(Job, "progress", progress)} if progress else {})}


def _refused(current: Job | None, job_id: str, change: Change) -> Conflict:
    status = current.status.value if current else "missing"
    if current is not None and change not in TRANSITIONS[current.kind]:
        return Conflict(f"Job {job_id} is {current.kind.value} job; it cannot {change.value}.",
                        details={"status": status})
    to = TARGETS[change]
    becomes = f"become {to.value}" if to is not None else f"{change.value}"
    return Conflict(f"Job {job_id} is {status}; it cannot {becomes}.", details={"status": status})


def _state_attributes(state: AnyState) -> dict[str, Any]:
    """A kind's state as row attributes: one per field (the names rows have always had), the
    request as a JSON string without the password."""
    request = state.request
    stored = (request.stored() if isinstance(
        request, ExportRequest | ImportCreate | BackupRequest | VerifyJobRequest) else request)
    model = type(state)
    return {"request": json.dumps(stored), **_state_sets(model, {
        name: getattr(state, name) for name in model.model_fields
        if name not in ("kind", "request")})}


#: the row attributes of a job's common fields
_COMMON = frozenset(Job.model_fields) - {"state"}


def _job_from(item: Mapping[str, Any]) -> Job:
    """A job from its row: the common fields, and the kind's state gathered from its own
    attributes (attributes no model names are ignored, so no stray attribute makes a row
    unreadable)."""
    data = plain(item)
    kind = JobKind(data["kind"])
    model = STATE_MODELS[kind]
    state = {name: data[name] for name in model.model_fields
             if name in data and name not in ("kind", "request")}
    state["kind"] = kind.value
    state["request"] = json.loads(data.get("request") or "{}")
    common = {name: value for name, value in data.items() if name in _COMMON}
    return Job.model_validate({**common, "state": state})
