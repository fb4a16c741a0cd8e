"""The WebSocket event models: the exact wire shape (camelCase, `v`, ms timestamps, no nulls),
parsing back by `type`, which event each job state gives, and frames far below 32 KB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from dataport.models.backups import BackupRequest
from dataport.models.exports import ExportRequest
from dataport.models.imports import ImportCreate
from dataport.models.jobs import (
    BackupState,
    ExportState,
    ImportState,
    Job,
    JobError,
    JobKind,
    JobStatus,
    PackageInfo,
    Progress,
)
from dataport.packaging.download import Download
from dataport.progress.events import (
    CancelledEvent,
    ErrorEvent,
    FailedEvent,
    ProgressEvent,
    RolledBackEvent,
    SnapshotEvent,
    SucceededEvent,
    UnsubscribedEvent,
    encode,
    parse_event,
    progress_event,
    snapshot_event,
    terminal_event,
)
from tests.restores.states import restore_state

JOB_ID = "0123456789abcdef0123456789abcdef"
AT = datetime(2025, 6, 2, 8, 0, 0, 250_000, tzinfo=UTC)
#: 32 KB: API Gateway's WebSocket frame limit
FRAME_LIMIT = 32 * 1024


def _job(status: JobStatus = JobStatus.RUNNING, package: PackageInfo | None = None,
         kind: JobKind = JobKind.EXPORT, **changes: Any) -> Job:
    now = datetime(2025, 6, 2, 7, 59, tzinfo=UTC)
    state = {JobKind.EXPORT: ExportState(request=ExportRequest(), package=package),
             JobKind.IMPORT: ImportState(request=ImportCreate(filename="a.json")),
             JobKind.BACKUP: BackupState(request=BackupRequest(name="nightly")),
             JobKind.RESTORE: restore_state()}[kind]
    values: dict[str, Any] = {
        "job_id": JOB_ID, "kind": kind, "user_id": "66ad9b005f2b4a0012c0aaaa",
        "status": status, "created_at": now, "updated_at": now,
        "expires_at": int((now + timedelta(days=30)).timestamp()),
        "state": state,
        "progress": Progress(phase="exporting", current=3, total=7, bytes=1234),
        "progress_seq": 5, **changes}
    return Job(**values)


def _package() -> PackageInfo:
    return PackageInfo(key=f"packages/{JOB_ID}/export.zip", filename="export.zip", bytes=4096,
                       files=3, expires_at=AT + timedelta(days=7))


def _wire(event: Any) -> dict[str, Any]:
    frame = encode(event)
    assert len(frame) < FRAME_LIMIT
    decoded: dict[str, Any] = json.loads(frame)
    return decoded


def test_a_progress_event_on_the_wire() -> None:
    event = progress_event(_job(), Progress(phase="exporting", current=3, total=7, bytes=99),
                           seq=6, at=AT + timedelta(microseconds=999))
    frame = encode(event)
    assert json.loads(frame) == {
        "v": 1, "type": "job.progress", "jobId": JOB_ID, "kind": "export", "seq": 6,
        "status": "running",
        "progress": {"phase": "exporting", "current": 3, "total": 7, "percentage": 42.9,
                     "bytes": 99},
        "at": "2025-06-02T08:00:00.250Z",  # milliseconds, UTC, as the throttle counts
    }
    assert list(json.loads(frame))[:2] == ["v", "type"]  # what a client reads first
    assert len(frame) < 512


@pytest.mark.parametrize("event", [
    progress_event(_job(), Progress(), seq=1, at=AT),
    snapshot_event(_job(), AT),
    terminal_event(_job(JobStatus.FAILED, error=JobError(code="timeout", message="Too long.")),
                   seq=9, at=AT),
    terminal_event(_job(JobStatus.CANCELLED), seq=9, at=AT),
    UnsubscribedEvent(job_id=JOB_ID),
    ErrorEvent(code="not_found", message="No job.", action="subscribe", job_id=JOB_ID),
], ids=lambda event: type(event).__name__)
def test_every_frame_parses_back_to_its_model(event: Any) -> None:
    parsed = parse_event(encode(event))
    assert type(parsed) is type(event)
    assert parsed == event


def test_a_frame_of_unknown_type_or_version_is_refused() -> None:
    frame = json.loads(encode(progress_event(_job(), Progress(), seq=1, at=AT)))
    with pytest.raises(ValidationError):
        parse_event(json.dumps({**frame, "type": "job.exploded"}))
    with pytest.raises(ValidationError):
        parse_event(json.dumps({**frame, "v": 2}))
    with pytest.raises(ValidationError):
        parse_event(json.dumps({**frame, "seq": -1}))


def test_a_snapshot_of_a_running_job_carries_its_last_seq_and_no_end() -> None:
    wire = _wire(snapshot_event(_job(), AT))
    assert wire["type"] == "job.snapshot"
    assert wire["seq"] == 5  # the last event published: the next one is 6
    assert wire["progress"]["percentage"] == 42.9
    assert "download" not in wire
    assert "error" not in wire


def test_a_snapshot_of_an_ended_job_is_complete() -> None:
    """A late client learns the end from the snapshot alone: link, or error."""
    download = Download(url="https://s3.example/packages/x.zip?X-Amz-Signature=abc",
                        expires_at=AT + timedelta(minutes=15))
    done = _job(JobStatus.SUCCEEDED, package=_package())
    wire = _wire(snapshot_event(done, AT, download))
    assert wire["status"] == "succeeded"
    assert wire["download"] == {"url": download.url, "expiresAt": "2025-06-02T08:15:00.250Z",
                                "filename": "export.zip", "bytes": 4096}
    failed = _job(JobStatus.FAILED, error=JobError(code="timeout", message="Try fewer."))
    assert _wire(snapshot_event(failed, AT))["error"] == {"code": "timeout",
                                                          "message": "Try fewer."}


def test_terminal_events_follow_the_status() -> None:
    download = Download(url="https://s3.example/x", expires_at=AT + timedelta(minutes=15))
    succeeded = terminal_event(_job(JobStatus.SUCCEEDED, package=_package()), 7, AT, download)
    assert isinstance(succeeded, SucceededEvent)
    assert succeeded.download is not None
    assert succeeded.download.url == download.url

    failed = terminal_event(_job(JobStatus.FAILED, error=JobError(
        code="internal_error", message="Try again; contact support with job id x.")), 7, AT)
    assert isinstance(failed, FailedEvent)
    assert failed.error.message.startswith("Try again")

    unexplained = terminal_event(_job(JobStatus.FAILED), 7, AT)
    assert isinstance(unexplained, FailedEvent)
    assert unexplained.error.code == "internal_error"  # a failure always says something

    cancelled = terminal_event(_job(JobStatus.CANCELLED, error=JobError(
        code="cancelled", message="Cancelled at your request.")), 7, AT)
    assert isinstance(cancelled, CancelledEvent)
    assert _wire(cancelled)["status"] == "cancelled"

    rolled_back = terminal_event(_job(JobStatus.ROLLED_BACK), 7, AT)
    assert isinstance(rolled_back, RolledBackEvent)
    assert _wire(rolled_back)["type"] == "job.rolled_back"
    assert isinstance(parse_event(encode(rolled_back)), RolledBackEvent)

    with pytest.raises(ValueError, match="has not ended"):
        terminal_event(_job(JobStatus.RUNNING), 7, AT)


def test_a_succeeded_event_with_a_long_presigned_url_stays_small() -> None:
    url = "https://bucket.s3.amazonaws.com/packages/x.zip?" + "X-Amz-Security-Token=" + "t" * 2000
    event = terminal_event(_job(JobStatus.SUCCEEDED, package=_package()), 7, AT,
                           Download(url=url, expires_at=AT))
    assert len(encode(event)) < 3 * 1024


def test_kinds_other_than_export_use_the_same_events() -> None:
    wire = _wire(progress_event(_job(kind=JobKind.RESTORE), Progress(), seq=1, at=AT))
    assert wire["kind"] == "restore"
    snapshot = SnapshotEvent.model_validate(_wire(snapshot_event(_job(kind=JobKind.IMPORT), AT)))
    assert snapshot.kind is JobKind.IMPORT
    assert isinstance(parse_event(encode(ProgressEvent.model_validate(wire))), ProgressEvent)
