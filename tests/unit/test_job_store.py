"""The job store's writes against (moto) DynamoDB: every named change of every kind, allowed
and refused, typed state round trips, and no way to write a row that no longer reads."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from pydantic import SecretStr, ValidationError

from dataport import aws
from dataport.errors import Conflict, NotFound
from dataport.jobs import keys
from dataport.jobs import store as store_module
from dataport.jobs.dynamo import from_item, to_item
from dataport.jobs.store import TARGETS, TRANSITIONS, Change, JobStore, utcnow
from dataport.models.backups import BackupCounts, BackupRequest
from dataport.models.exports import (
    CostRange,
    EncryptionOptions,
    ExportFilters,
    ExportOptions,
    ExportRequest,
)
from dataport.models.imports import (
    ConflictSummary,
    ImportCounts,
    ImportCreate,
    ImportDecision,
    ImportOptions,
    ImportOutcome,
    Issue,
    MessageCounts,
    SessionCounts,
    SourceFormat,
    Strategy,
    ValidationReport,
)
from dataport.models.jobs import (
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
from tests.restores.states import restore_state

USER = "66ad9b005f2b4a0012c0aaaa"
TABLE = "test-jobs"  # tests.fixtures.aws.job_store
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
OUTCOME = ImportOutcome(dry_run=False, strategy=Strategy.MERGE,
                        sessions=SessionCounts(inserted=2, merged=1),
                        messages=MessageCounts(inserted=40, updated=3), projects_created=1,
                        started_at=NOW, finished_at=NOW + timedelta(minutes=1))
BACKUP_REQUEST = BackupRequest(name="nightly")
BACKUP_COUNTS = BackupCounts(projects=1, sessions=2, messages=3)
PACKAGE = PackageInfo(key="packages/x/x.zip", filename="x.zip", bytes=10, files=1,
                      expires_at=NOW + timedelta(days=7))


def _state(kind: JobKind
           ) -> ExportState | ImportState | BackupState | RestoreState | VerifyState:
    if kind is JobKind.VERIFY:
        return VerifyState(request=VerifyJobRequest(backup_id="b" * 32))
    if kind is JobKind.EXPORT:
        return ExportState(request=ExportRequest())
    if kind is JobKind.IMPORT:
        return ImportState(request=ImportCreate(filename="a.jsonl"))
    return BackupState(request=BACKUP_REQUEST) if kind is JobKind.BACKUP else restore_state()


def _job(store: JobStore, kind: JobKind, status: JobStatus = JobStatus.QUEUED) -> Job:
    """A job of `kind` holding a sealed password, put in `status` directly (test set-up: the
    store has no way to jump to a status, and should not)."""
    job = store.create(USER, _state(kind), sealed_password="sealed")
    if status is not JobStatus.QUEUED:
        aws.dynamodb().update_item(
            TableName=TABLE, Key=to_item({"pk": keys.job_pk(job.job_id), "sk": keys.JOB_SK}),
            UpdateExpression="SET #status = :status", ExpressionAttributeNames={
                "#status": "status"}, ExpressionAttributeValues=to_item({
                ":status": status.value}))
    return store.require(job.job_id)


def _row(job_id: str) -> dict[str, Any]:
    answer = aws.dynamodb().get_item(TableName=TABLE, Key=to_item({
        "pk": keys.job_pk(job_id), "sk": keys.JOB_SK}))
    return from_item(answer["Item"])


#: each change as its callers make it (kind-specific ones in the kind's own form)
CALLS: dict[Change, Callable[[JobStore, Job], Job | None]] = {
    Change.START: lambda s, j: s.start(j.job_id),
    Change.PROGRESS: lambda s, j: s.set_progress(j.job_id, Progress(phase="moving", total=9)),
    Change.UPDATE: lambda s, j: s.update_export(j.job_id, counts=Counts(projects=3))
    if j.kind is JobKind.EXPORT else s.update_verify(j.job_id, next_member=4, members=4,
                                                     records=40, sha256="ab")
    if j.kind is JobKind.VERIFY else s.update_backup(j.job_id, watermark=NOW,
                                                     counts=BACKUP_COUNTS)
    if j.kind is JobKind.BACKUP else s.update_import(j.job_id, report=ValidationReport()),
    Change.AWAIT_DECISION: lambda s, j: s.await_decision(j.job_id, "token-1"),
    Change.DECIDE: lambda s, j: s.decide(j.job_id, ImportDecision(strategy=Strategy.MERGE),
                                         Progress(phase="importing")),
    Change.SUCCEED: lambda s, j: s.succeed_export(
        j.job_id, package=PACKAGE, counts=Counts(files=1), progress=Progress(phase="done"))
    if j.kind is JobKind.EXPORT else s.succeed_verify(
        j.job_id, ok=False, member="messages/00000-00001.jsonl.zst", problem="flipped",
        progress=Progress(phase="done"))
    if j.kind is JobKind.VERIFY else s.succeed_backup(
        j.job_id, object_key="backups/x/x.zip", size=10, counts=BACKUP_COUNTS,
        progress=Progress(phase="done"))
    if j.kind is JobKind.BACKUP else s.succeed_import(j.job_id, outcome=OUTCOME,
                                                      progress=Progress(phase="done")),
    Change.FAIL: lambda s, j: s.fail(j.job_id, JobError(code="timeout", message="Too long.")),
    Change.CANCEL: lambda s, j: s.cancel(j.job_id),
    Change.REQUEST_CANCEL: lambda s, j: s.request_cancel(
        j.job_id, JobError(code="cancelled", message="Undoing."), Progress(phase="cancelling")),
    Change.RECORD_CANCELLED: lambda s, j: s.record_cancelled_outcome(j.job_id, OUTCOME),
    Change.DELETE: lambda s, j: s.delete(j.job_id),
    Change.BEGIN_ROLLBACK: lambda s, j: s.begin_rollback(j.job_id,
                                                         Progress(phase="rolling_back")),
    Change.ROLL_BACK: lambda s, j: s.roll_back(j.job_id, Progress(phase="done")),
}

def test_every_change_has_a_call_and_a_target() -> None:
    assert set(CALLS) == set(Change) == set(TARGETS)


@pytest.mark.parametrize(("kind", "change"), [
    pytest.param(kind, change, id=f"{kind.value}-{change.value}")
    for kind, table in TRANSITIONS.items() for change in table])
def test_each_change_of_each_kind_is_allowed_exactly_from_its_table(
        job_store: JobStore, kind: JobKind, change: Change) -> None:
    """From every status: allowed from those TRANSITIONS[kind][change] names, refused (409,
    saying the status, nothing written) from every other."""
    for status in JobStatus:
        allowed = status in TRANSITIONS[kind][change]
        try:
            _one_change(job_store, kind, change, status, allowed)
        except AssertionError as error:
            raise AssertionError(f"{change.value} from {status.value} "
                                 f"({'allowed' if allowed else 'refused'}): {error}") from error


def _one_change(store: JobStore, kind: JobKind, change: Change, status: JobStatus,
                allowed: bool) -> None:
    job = _job(store, kind, status)
    call = CALLS[change]
    if change is Change.PROGRESS:  # a late worker is ignored, not an error
        call(store, job)
        after = store.require(job.job_id)
        assert (after.progress.phase == "moving") is allowed
        return
    if not allowed:
        with pytest.raises(Conflict) as refused:
            call(store, job)
        assert refused.value.details == {"status": status.value}
        assert store.require(job.job_id) == job  # nothing written
        return

    changed = call(store, job)

    assert isinstance(changed, Job)
    assert changed == store.require(job.job_id)
    to = TARGETS[change] or status
    assert changed.status is to
    assert changed.updated_at > job.updated_at
    # a job that ends forgets its sealed password, whichever change ends it
    if TARGETS[change] is not None:
        assert (changed.sealed_password is None) is (not to.is_active)
    else:
        assert changed.sealed_password == job.sealed_password
    _check_written(change, kind, job, changed)


def _check_written(change: Change, kind: JobKind, before: Job, job: Job) -> None:
    state = job.state
    if change is Change.UPDATE:
        if kind is JobKind.EXPORT:
            assert job.export_state.counts == Counts(projects=3)
        elif kind is JobKind.BACKUP:
            assert job.backup_state.watermark == NOW
            assert job.backup_state.counts == BACKUP_COUNTS
        elif kind is JobKind.VERIFY:
            verify = job.verify_state
            assert (verify.next_member, verify.members, verify.records, verify.sha256) == (
                4, 4, 40, "ab")
        else:
            assert job.import_state.report == ValidationReport()
    elif change is Change.AWAIT_DECISION:
        assert job.import_state.task_token == "token-1"
        assert job.progress.phase == "awaiting_decision"
    elif change is Change.DECIDE:
        assert job.import_state.decision == ImportDecision(strategy=Strategy.MERGE)
        assert job.import_state.task_token is None
        assert job.progress.phase == "importing"
    elif change is Change.SUCCEED:
        assert job.finished_at is not None
        if kind is JobKind.EXPORT:
            assert (job.export_state.package, job.export_state.counts) == (PACKAGE,
                                                                           Counts(files=1))
        elif kind is JobKind.BACKUP:
            state = job.backup_state
            assert (state.object_key, state.bytes, state.counts) == (
                "backups/x/x.zip", 10, BACKUP_COUNTS)
        elif kind is JobKind.VERIFY:
            verify = job.verify_state
            assert (verify.ok, verify.member, verify.problem) == (
                False, "messages/00000-00001.jsonl.zst", "flipped")
        else:
            assert job.import_state.outcome == OUTCOME
            assert job.finished_at == OUTCOME.finished_at
    elif change is Change.FAIL:
        assert job.error == JobError(code="timeout", message="Too long.")
        assert job.finished_at is not None
    elif change is Change.CANCEL:
        assert job.error is not None
        assert job.error.code == "cancelled"
        assert job.finished_at is not None
    elif change is Change.REQUEST_CANCEL:  # still active: its undo ends it
        assert job.error == JobError(code="cancelled", message="Undoing.")
        assert job.progress.phase == "cancelling"
        assert job.finished_at is None
    elif change is Change.RECORD_CANCELLED:
        assert job.import_state.outcome == OUTCOME
    elif change is Change.DELETE:
        assert job.export_state.package is None
    elif change is Change.BEGIN_ROLLBACK:
        assert job.progress.phase == "rolling_back"
        assert job.finished_at == before.finished_at
    elif change is Change.ROLL_BACK:
        assert job.progress.phase == "done"
        assert job.finished_at is not None
    else:
        assert change is Change.START
        assert state == before.state


LACKING = [pytest.param(kind, change, id=f"{kind.value}-{change.value}")
           for kind, table in TRANSITIONS.items() for change in Change
           if change not in table and change is not Change.PROGRESS]


@pytest.mark.parametrize(("kind", "change"), LACKING)
def test_a_change_a_kind_does_not_have_is_refused_from_any_status(
        job_store: JobStore, kind: JobKind, change: Change) -> None:
    """E.g. an export never awaits a decision, a backup has no import outcome: refused even
    from a status another kind makes that change from."""
    for status in sorted({s for table in TRANSITIONS.values() for s in table.get(change, ())}):
        job = _job(job_store, kind, status)
        with pytest.raises(Conflict) as refused:
            CALLS[change](job_store, job)
        assert refused.value.details == {"status": status.value}
        assert job_store.require(job.job_id) == job


def test_a_change_to_a_missing_job_is_refused(job_store: JobStore) -> None:
    with pytest.raises(Conflict) as refused:
        job_store.start("f" * 32)
    assert refused.value.details == {"status": "missing"}
    assert job_store.find("f" * 32) is None  # and no row was created


def test_the_execution_is_recorded_even_after_the_workflow_moved_the_job_on(
        job_store: JobStore) -> None:
    """The workflow can mark the job running before its starter hears back from StartExecution;
    recording the execution must neither fail nor undo that."""
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    job_store.start(job.job_id)

    recorded = job_store.record_execution(job.job_id, "arn:aws:states:::execution:sm:x")

    assert recorded.status is JobStatus.RUNNING
    assert job_store.require(job.job_id).execution_arn == "arn:aws:states:::execution:sm:x"


def test_a_transition_from_the_wrong_status_is_refused_and_says_why(job_store: JobStore) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    job_store.start(job.job_id)
    job_store.succeed_export(job.job_id, package=PACKAGE, counts=Counts(),
                             progress=Progress(phase="done"))

    with pytest.raises(Conflict, match="succeeded; it cannot become running"):
        job_store.start(job.job_id)
    assert job_store.require(job.job_id).status is JobStatus.SUCCEEDED


# ---------------------------------------------------------------------------- no stray fields


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_a_misspelt_field_is_an_error_before_any_write_and_the_job_still_reads(
        job_store: JobStore) -> None:
    """The reproduction of issue 9: `transition(..., finshed_at=...)` used to write a field no
    model knows, and from then on every read of the job (its page, the workflow's tasks, the
    owner's whole list) failed validation. Now the name is a type error (mypy: the ignore
    below would be reported unused otherwise) and a TypeError; a value of the wrong shape is a
    ValidationError; neither writes anything."""
    job = job_store.create(USER, ImportState(request=ImportCreate(filename="a.jsonl")))
    job = job_store.start(job.job_id)
    row = _row(job.job_id)

    with pytest.raises(TypeError, match="finshed_at"):
        job_store.update_import(job.job_id, finshed_at=utcnow())  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="erors"):
        job_store.update_import(job.job_id, report=cast(Any, {"erors": []}))
    with pytest.raises(ValidationError, match="message"):
        job_store.fail(job.job_id, JobError.model_construct(code="timeout",
                                                            message=cast(Any, None)))
    with pytest.raises(ValidationError):
        job_store.succeed_import(job.job_id, progress=Progress(phase="done"),
                                 outcome=OUTCOME.model_copy(update={"strategy": "mrege"}))

    assert _row(job.job_id) == row  # not a byte written
    assert job_store.require(job.job_id) == job
    assert [j.job_id for j in job_store.history(USER, JobKind.IMPORT)[0]] == [job.job_id]


def test_a_row_with_an_attribute_no_model_names_still_reads(job_store: JobStore) -> None:
    """Rows written by earlier code may hold such an attribute (the typo above): it is
    ignored, not a job that can no longer be shown."""
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    aws.dynamodb().update_item(
        TableName=TABLE, Key=to_item({"pk": keys.job_pk(job.job_id), "sk": keys.JOB_SK}),
        UpdateExpression="SET finshed_at = :t",
        ExpressionAttributeValues=to_item({":t": NOW.isoformat()}))
    assert job_store.require(job.job_id) == job


def test_a_job_holds_only_the_state_of_its_kind() -> None:
    with pytest.raises(ValidationError, match="cannot hold"):
        Job(job_id="x", kind=JobKind.EXPORT, user_id=USER, status=JobStatus.QUEUED,
            created_at=NOW, updated_at=NOW, expires_at=1,
            state=ImportState(request=ImportCreate(filename="a.csv")))
    job = Job(job_id="x", kind=JobKind.BACKUP, user_id=USER, status=JobStatus.QUEUED,
              created_at=NOW, updated_at=NOW, expires_at=1,
              state=BackupState(request=BACKUP_REQUEST))
    with pytest.raises(TypeError, match="not an export"):
        _ = job.export_state
    with pytest.raises(TypeError, match="not an import"):
        _ = job.import_state


# ---------------------------------------------------------------------------- round trips


def test_an_export_state_round_trips_without_its_password(job_store: JobStore) -> None:
    request = ExportRequest(
        format="csv", filters=ExportFilters(session_ids=["s1"], cost_range=CostRange(
            min=Decimal("0.5"))),
        options=ExportOptions(split_size_mb=7, encryption=EncryptionOptions(
            password=SecretStr("correct horse")))).model_copy()
    job = job_store.create(USER, ExportState(request=request), sealed_password="sealed")
    job_store.start(job.job_id)
    job_store.update_export(job.job_id, counts=Counts(projects=2))
    done = job_store.succeed_export(job.job_id, package=PACKAGE,
                                    counts=Counts(projects=2, sessions=3, messages=4, files=1),
                                    progress=Progress(phase="done", current=3, total=3))

    read = job_store.require(job.job_id)
    assert read == done
    assert read.export_state == ExportState(
        request=request.model_copy(update={"options": request.options.model_copy(
            update={"encryption": None})}),
        counts=Counts(projects=2, sessions=3, messages=4, files=1), package=PACKAGE)
    assert read.encrypted
    assert "correct horse" not in json.dumps(_row(job.job_id), default=str)
    assert json.loads(_row(job.job_id)["request"]) == request.stored()  # as rows always had


def test_an_import_state_round_trips_every_field(job_store: JobStore) -> None:
    request = ImportCreate(filename="other.csv", size=123, options=ImportOptions(
        format=SourceFormat.CSV, field_mapping={"sessionId": "id"}),
                           password=SecretStr("pw"))
    report = ValidationReport(
        format=SourceFormat.CSV, version="1", counts=ImportCounts(sessions=2, messages=5),
        errors=[], warnings=[Issue(severity="warning", code="project_path_guessed",
                                   message="Guessed.", file="a.csv", line=3)],
        warnings_total=1, size=123, sha256="0" * 64)
    pin = UploadPin(key="imports/x/validated", etag='"abc"', bytes=123)
    decision = ImportDecision(strategy=Strategy.REPLACE, per_session={"s1": Strategy.SKIP},
                              dry_run=True)
    dry_run = OUTCOME.model_copy(update={"dry_run": True})
    job = job_store.create(USER, ImportState(request=request), sealed_password="sealed")
    store = job_store
    store.start(job.job_id)
    store.update_import(job.job_id, upload_pin=pin, report=report)
    store.update_import(job.job_id, report=report.model_copy(update={
        "conflicts": ConflictSummary(new_sessions=1, changed_sessions=1)}))
    store.await_decision(job.job_id, "token-1")
    store.decide(job.job_id, decision, Progress(phase="dry_run"), dry_runs=1)
    store.update_import(job.job_id, dry_run=dry_run)
    store.await_decision(job.job_id, "token-2")
    store.decide(job.job_id, decision.model_copy(update={"dry_run": False}),
                 Progress(phase="importing"))
    store.update_import(job.job_id, outcome=OUTCOME)
    done = store.succeed_import(job.job_id, outcome=OUTCOME, progress=Progress(phase="done"))

    assert store.require(job.job_id) == done
    assert done.import_state == ImportState(
        request=request.model_copy(update={"password": None}), upload_pin=pin,
        report=report.model_copy(update={"conflicts": ConflictSummary(
            new_sessions=1, changed_sessions=1)}),
        decision=decision.model_copy(update={"dry_run": False}), dry_run=dry_run,
        outcome=OUTCOME, task_token=None, dry_runs=1)  # the execution is not counted
    assert (done.status, done.finished_at, done.sealed_password) == (
        JobStatus.SUCCEEDED, OUTCOME.finished_at, None)


def test_a_row_written_before_the_state_was_typed_reads_as_its_state(
        job_store: JobStore) -> None:
    """The 30-day history holds rows of the earlier layout: the same attributes (the request
    a JSON string, the rest maps), a cleared task token as "". They read, and change, as
    they are."""
    created = NOW.isoformat()
    job_id = "a" * 32
    item = {
        "pk": keys.job_pk(job_id), "sk": keys.JOB_SK,
        "gsi1pk": keys.owner_pk(USER, JobKind.IMPORT), "gsi1sk": keys.owner_sk(created, job_id),
        "job_id": job_id, "kind": "import", "user_id": USER, "status": "running",
        "created_at": created, "updated_at": created,
        "expires_at": int((utcnow() + timedelta(days=30)).timestamp()),
        "request": json.dumps({"filename": "a.jsonl", "options": {}}),
        "progress": {"phase": "importing", "current": 1, "total": 2, "bytes": 0},
        "report": ValidationReport(counts=ImportCounts(sessions=2)).model_dump(mode="json"),
        "decision": ImportDecision().model_dump(mode="json"),
        "upload_pin": {"key": "k", "etag": "e", "bytes": 1},
        "task_token": "", "progress_seq": 4, "progress_sent_at": 1,
    }
    aws.dynamodb().put_item(TableName=TABLE, Item=to_item(item))

    job = job_store.require(job_id)
    assert job.import_state.report == ValidationReport(counts=ImportCounts(sessions=2))
    assert job.import_state.decision == ImportDecision()
    assert job.import_state.request == ImportCreate(filename="a.jsonl")
    assert (job.progress.current, job.progress_seq) == (1, 4)
    done = job_store.succeed_import(job_id, outcome=OUTCOME, progress=Progress(phase="done"))
    assert done.import_state.outcome == OUTCOME


def test_progress_claims_go_through_the_store(job_store: JobStore) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    assert job_store.claim_progress(job.job_id, 1000, 500) is None  # queued
    job_store.start(job.job_id)
    assert job_store.claim_progress(job.job_id, 1000, 500) == 1
    assert job_store.claim_progress(job.job_id, 1499, 500) is None
    job_store.cancel(job.job_id)
    assert job_store.claim_terminal(job.job_id, 1500) == 2
    assert job_store.require(job.job_id).progress_seq == 2


# --------------------------------------------------------------------------- file records
def _staged(n: int) -> StagedFile:
    return StagedFile(path=f"p/{n:04d}.jsonl", staging_key="staging/j/00001/000000.bin",
                      method=8, crc32=n, size=n * 10, compressed_size=n, offset=n * 100,
                      sha256=f"{n:064x}", records=n)


def _operations(store: JobStore) -> list[str]:
    seen: list[str] = []
    store.db.meta.events.register("provide-client-params.dynamodb",
                                  lambda model, **_: seen.append(model.name))
    return seen


def test_an_invocations_file_records_are_one_write_without_a_read(job_store: JobStore) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    files = [_staged(n) for n in range(600)]
    seen = _operations(job_store)
    job_store.put_files(job.job_id, 1, 7, files, expires_at=job.expires_at)
    assert seen == ["PutItem"]  # 600 records, one item, no GetItem first
    assert list(job_store.files(job.job_id)) == files


def test_many_file_records_go_in_batches_and_unprocessed_items_are_sent_again(
        job_store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    monkeypatch.setattr(store_module, "FILE_RECORDS_BYTES", 1000)  # ~3 records an item
    monkeypatch.setattr("dataport.jobs.store.time.sleep", lambda _: None)
    real = job_store.db.batch_write_item
    sizes: list[int] = []

    def flaky(**kwargs: Any) -> Any:  # DynamoDB leaves the last item of the first call
        (requests,) = kwargs["RequestItems"].values()
        sizes.append(len(requests))
        if len(sizes) > 1:
            return real(**kwargs)
        real(RequestItems={TABLE: requests[:-1]})
        return {"UnprocessedItems": {TABLE: requests[-1:]}}

    monkeypatch.setattr(job_store.db, "batch_write_item", flaky)
    files = [_staged(n) for n in range(100)]
    job_store.put_files(job.job_id, 2, 0, files, expires_at=job.expires_at)
    assert sizes[0] == 25
    assert sizes[1] == 1  # the unprocessed one, again
    assert list(job_store.files(job.job_id)) == files



def _packaged(job_store: JobStore, job_id: str) -> list[StagedFile]:
    _, _, files = job_store.for_packaging(job_id)
    return list(files())


def test_records_a_failed_attempt_left_are_not_packaged(
        job_store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retried invocation rewrites its records from the same seq without deleting what the
    failed attempt wrote: the finalizer keeps each shard's chain up to the seq its row ends
    with, whatever the failed attempt's items were."""
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    monkeypatch.setattr(store_module, "FILE_RECORDS_BYTES", 1000)  # ~3 records an item
    files = [_staged(n) for n in range(100)]
    retried = [_staged(1000 + n) for n in range(14)]

    def invocation(first: int, staged: list[StagedFile]) -> None:
        job_store.put_files(job.job_id, 2, first, staged, expires_at=job.expires_at,
                            shard_states={2: {"sessions": 1, "messages": 1, "bytes": 1,
                                              "seq": first + len(staged)}})

    invocation(0, files[:30])  # the first invocation: seq 0-29
    # an attempt of the second wrote 70 files (items of 3: 30, 33, ... 96), then failed; its
    # retry writes 14 different ones, in items of 3 as well (30, 33, ..., 42)
    job_store.put_files(job.job_id, 2, 30, files[30:], expires_at=job.expires_at)
    invocation(30, retried)
    assert len(list(job_store.files(job.job_id))) > 44  # the failed attempt's are still there
    assert _packaged(job_store, job.job_id) == files[:30] + retried

    # records with the ends of their chain missing are refused, not packaged short
    job_store.put_shard(job.job_id, 2, {"sessions": 1, "messages": 1, "bytes": 1, "seq": 200},
                        expires_at=job.expires_at)
    with pytest.raises(RuntimeError, match="file records of shard 2"):
        _packaged(job_store, job.job_id)


def test_the_finalizer_reads_job_shards_and_records_in_one_query(job_store: JobStore) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    for shard in (0, 1):
        files = [_staged(shard * 10 + n) for n in range(600)]
        job_store.put_files(job.job_id, shard, 0, files, expires_at=job.expires_at,
                            shard_states={shard: {"sessions": 1, "messages": 2, "bytes": 3,
                                                  "seq": 600}})
    seen = _operations(job_store)
    read, shards, files_in_order = job_store.for_packaging(job.job_id)
    first, second = list(files_in_order()), list(files_in_order())  # two passes
    assert seen == ["Query"]
    assert read == job_store.require(job.job_id)
    assert [s["seq"] for s in shards] == [600, 600]
    assert first == second == [_staged(n) for n in range(600)] + [
        _staged(10 + n) for n in range(600)]


def test_file_records_of_one_an_item_still_read(job_store: JobStore) -> None:
    """Records written before issue 10 (one file an item) and after read alike, in order."""
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    old = _staged(1)
    job_store.db.put_item(TableName=TABLE, Item=to_item({
        "pk": keys.job_pk(job.job_id), "sk": keys.file_sk(0, 0),
        "file": old.model_dump_json(), "expires_at": job.expires_at}))
    job_store.put_files(job.job_id, 1, 0, [_staged(2), _staged(3)])
    assert list(job_store.files(job.job_id)) == [old, _staged(2), _staged(3)]


def test_the_job_and_its_shards_are_one_query(job_store: JobStore) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    job_store.put_files(job.job_id, 1, 0, [_staged(1)], expires_at=job.expires_at)
    for shard in (1, 2):
        job_store.put_shard(job.job_id, shard, {"sessions": shard, "messages": 0, "bytes": 0},
                            expires_at=job.expires_at)
    seen = _operations(job_store)
    read, shards = job_store.job_and_shards(job.job_id)
    assert seen == ["Query"]
    assert read == job_store.require(job.job_id)
    assert [s["sessions"] for s in shards] == [1, 2]
    assert job_store.job_and_shards("f" * 32) == (None, [])


def _restoring(job_store: JobStore, shards: int) -> tuple[str, list[str]]:
    """A running restore in its `restoring` phase, and its shards' jobs."""
    job = job_store.create(USER, restore_state("instance"))
    job_store.start(job.job_id)
    job_store.set_progress(job.job_id, Progress(phase="restoring", total=100))
    return job.job_id, [job_store.create(USER, restore_state("instance")).job_id
                        for _ in range(shards)]


def test_shards_fold_their_records_into_the_restore_once_each(job_store: JobStore) -> None:
    """What a shard restored so far goes into its restore's progress as what is new since its
    last fold (the shard's row keeps it), whichever shard folds first; never past it again,
    and only while the restore is restoring. The first fold of a second claims the event."""
    restore, (a, b) = _restoring(job_store, 2)
    first = job_store.fold_records(restore, a, 10, "restoring", claim_at_ms=1000,
                                   min_interval_ms=500)
    assert first is not None
    assert (first[0].progress.current, first[1], first[0].progress_seq) == (10, True, 1)
    throttled = job_store.fold_records(restore, b, 5, "restoring", claim_at_ms=1200,
                                       min_interval_ms=500)
    assert throttled is not None
    assert (throttled[0].progress.current, throttled[1]) == (15, False)  # counted, not told
    assert job_store.fold_records(restore, a, 10, "restoring") is None  # nothing new
    again = job_store.fold_records(restore, a, 25, "restoring")
    assert again is not None
    assert again[0].progress.current == 30  # a's 15 new ones
    assert job_store.fold_records(restore, b, 9, "rolling_back") is None  # another phase
    assert job_store.require(restore).progress.current == 30
    assert job_store.fold_records(restore, "f" * 32, 9, "restoring") is None  # no such shard
    assert job_store.require(restore).progress.current == 30


def test_the_restores_row_does_not_grow_with_its_shards(job_store: JobStore) -> None:
    """Each shard's last fold is on its own row: the restore's row is as large after 40
    shards' folds as after 10 (a map of them on it would reach DynamoDB's 400 KB item limit
    at about 10,000 shards)."""
    restore, shards = _restoring(job_store, 40)
    key = to_item({"pk": keys.job_pk(restore), "sk": keys.JOB_SK})

    def size() -> int:
        return len(json.dumps(job_store.db.get_item(TableName=job_store.table,
                                                    Key=key)["Item"]))

    for shard in shards[:10]:
        job_store.fold_records(restore, shard, 1, "restoring")
    after_ten = size()  # (its count two digits long, as after 40)
    for shard in shards[10:]:
        job_store.fold_records(restore, shard, 1, "restoring")
    assert size() == after_ten
    assert job_store.require(restore).progress.current == 40
    row = job_store.db.get_item(TableName=job_store.table,
                                Key=to_item({"pk": keys.job_pk(shards[7]), "sk": keys.JOB_SK}))
    assert from_item(row["Item"])["parent_folded"] == 1


def test_a_fold_that_raced_another_of_its_shard_counts_only_what_is_new(
        job_store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two folds of one shard at once (a pulse and the shard's end): the one that read the
    shard's fold before the other wrote it is refused by the transaction, reads again and adds
    only the difference, so the restore counts each record once."""
    restore, (shard,) = _restoring(job_store, 1)
    job_store.fold_records(restore, shard, 10, "restoring")
    read = job_store.db.get_item
    stale = [True]

    def racing(**kwargs: Any) -> Any:
        answer = read(**kwargs)
        if stale and kwargs.get("ProjectionExpression") == "parent_folded":
            stale.clear()
            monkeypatch.setattr(job_store.db, "get_item", read)
            job_store.fold_records(restore, shard, 20, "restoring")  # the other one, first
        return answer

    monkeypatch.setattr(job_store.db, "get_item", racing)
    folded = job_store.fold_records(restore, shard, 25, "restoring")
    assert folded is not None
    assert folded[0].progress.current == 25  # 10, then 10 more, then 5: never 10 + 10 + 15


def test_a_walk_over_many_jobs_reads_them_a_batch_at_a_time(job_store: JobStore) -> None:
    """A restore's shards walked (finalize, a cancel's undo): 100 a BatchGetItem, in order,
    read as they are walked; a missing one is NotFound only when required."""
    restore = job_store.create(USER, restore_state("instance"))
    ids = [f"{n:032x}" for n in range(230)]
    for start in range(0, len(ids), 25):
        job_store.create_many(USER, [(job_id, restore_state("instance"))
                                     for job_id in ids[start:start + 25]],
                              created_at=restore.created_at)
    seen = _operations(job_store)
    walk = job_store.iter_many(ids)
    assert [job.job_id for job in itertools.islice(walk, 150)] == ids[:150]
    assert seen == ["BatchGetItem", "BatchGetItem"]  # the third page not read yet
    assert [job.job_id for job in walk] == ids[150:]
    assert seen.count("BatchGetItem") == 3
    absent = [*ids[:5], "f" * 32]
    assert [job.job_id for job in job_store.iter_many(absent, required=False)] == ids[:5]
    with pytest.raises(NotFound):
        list(job_store.iter_many(absent))
