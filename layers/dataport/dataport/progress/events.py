"""What a WebSocket subscriber receives (the protocol is docs/progress.md).

Every frame is one JSON object with `v` (the shape's version) and `type`. Job events carry the
job's state, never its data, so a frame stays far below API Gateway's 32 KB: `seq` orders them
per job (a client drops any event whose seq is not above the highest it has seen), `at` is when
the server took the seq. `error` frames answer a request that could not be served.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, Field, PlainSerializer, TypeAdapter

from dataport.models.common import ApiModel
from dataport.models.jobs import ExportState, Job, JobError, JobKind, JobStatus, Progress
from dataport.packaging.download import Download

EVENT_VERSION: Final = 1


def _milliseconds(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: UTC to the millisecond, as the throttle counts ("2025-06-02T08:00:00.250Z")
Timestamp = Annotated[AwareDatetime, PlainSerializer(_milliseconds, return_type=str)]


class EventType(StrEnum):
    SNAPSHOT = "job.snapshot"
    PROGRESS = "job.progress"
    SUCCEEDED = "job.succeeded"
    FAILED = "job.failed"
    CANCELLED = "job.cancelled"
    ROLLED_BACK = "job.rolled_back"
    UNSUBSCRIBED = "unsubscribed"
    ERROR = "error"


#: the one event that ends each job's stream, by the status that ends it
TERMINAL_EVENTS = {JobStatus.SUCCEEDED: EventType.SUCCEEDED, JobStatus.FAILED: EventType.FAILED,
                   JobStatus.CANCELLED: EventType.CANCELLED,
                   JobStatus.ROLLED_BACK: EventType.ROLLED_BACK}


class EventProgress(ApiModel):
    """`Progress` as sent: percentage is a plain field here, so a client can parse it back.
    etaSeconds: the seconds left at the pace so far; absent until some work is done."""

    phase: str
    current: int
    total: int
    percentage: float
    bytes: int
    eta_seconds: int | None = Field(default=None, ge=0)

    @classmethod
    def of(cls, progress: Progress, eta: int | None = None) -> EventProgress:
        return cls(phase=progress.phase, current=progress.current, total=progress.total,
                   percentage=progress.percentage, bytes=progress.bytes, eta_seconds=eta)


#: phases whose counts say nothing of how fast the job's work goes
_NO_PACE = frozenset({"queued", "planning"})


def eta_seconds(job: Job, progress: Progress, at: datetime) -> int | None:
    """Seconds left if the job keeps the pace it has had since it was created: elapsed time x
    work left / work done. None before any work is done (no pace yet) or when nothing is
    counted, or while planning (its count is sessions looked at, not work done); 0 once
    current reaches total. From the event's own fields, so no extra reads."""
    if progress.total <= 0 or progress.current <= 0 or progress.phase in _NO_PACE:
        return None
    left = max(0, progress.total - progress.current)
    elapsed = max(0.0, (at - job.created_at).total_seconds())
    return round(elapsed * left / progress.current)


class DownloadLink(ApiModel):
    """A presigned GET of the package: a credential for its owner, valid until `expires_at`."""

    url: str
    expires_at: Timestamp
    filename: str
    bytes: int


class _Frame(ApiModel):
    v: Literal[1] = EVENT_VERSION
    type: str


class _JobEvent(_Frame):
    job_id: str
    kind: JobKind
    seq: int = Field(ge=0)
    status: JobStatus
    progress: EventProgress
    at: Timestamp


class SnapshotEvent(_JobEvent):
    """The answer to subscribe: the job as it is now, with `seq` of the last event published.
    A terminal status here is the end of the stream (with the link or the error)."""

    type: Literal["job.snapshot"] = "job.snapshot"
    download: DownloadLink | None = None
    error: JobError | None = None


class ProgressEvent(_JobEvent):
    type: Literal["job.progress"] = "job.progress"


class SucceededEvent(_JobEvent):
    type: Literal["job.succeeded"] = "job.succeeded"
    download: DownloadLink | None = None  # exports; other kinds have nothing to download


class FailedEvent(_JobEvent):
    type: Literal["job.failed"] = "job.failed"
    error: JobError


class CancelledEvent(_JobEvent):
    type: Literal["job.cancelled"] = "job.cancelled"
    error: JobError | None = None


class RolledBackEvent(_JobEvent):
    """An import's rollback ended: the user's data is as it was before the import. (A rollback
    runs an ended import again, so its stream ends a second time.)"""

    type: Literal["job.rolled_back"] = "job.rolled_back"


class UnsubscribedEvent(_Frame):
    type: Literal["unsubscribed"] = "unsubscribed"
    job_id: str


class ErrorEvent(_Frame):
    """A request that was not served: `code` for programs, `message` for people."""

    type: Literal["error"] = "error"
    code: str
    message: str
    action: str | None = None
    job_id: str | None = None


JobEvent = (SnapshotEvent | ProgressEvent | SucceededEvent | FailedEvent | CancelledEvent
            | RolledBackEvent)
Event = Annotated[JobEvent | UnsubscribedEvent | ErrorEvent, Field(discriminator="type")]
_EVENTS: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(frame: str | bytes) -> Event:
    """A received frame as its model (clients and tests)."""
    return _EVENTS.validate_json(frame)


def encode(event: _Frame) -> bytes:
    """The frame as sent: camelCase, no nulls."""
    return event.model_dump_json(by_alias=True, exclude_none=True).encode()


def download_link(job: Job, download: Download) -> DownloadLink | None:
    package = job.state.package if isinstance(job.state, ExportState) else None
    if package is None:
        return None
    return DownloadLink(url=download.url, expires_at=download.expires_at,
                        filename=package.filename, bytes=package.bytes)


def snapshot_event(job: Job, at: datetime, download: Download | None = None) -> SnapshotEvent:
    eta = eta_seconds(job, job.progress, at) if job.status is JobStatus.RUNNING else None
    return SnapshotEvent(job_id=job.job_id, kind=job.kind, seq=job.progress_seq, status=job.status,
                         progress=EventProgress.of(job.progress, eta), at=at,
                         download=download_link(job, download) if download else None,
                         error=job.error if job.status in TERMINAL_EVENTS else None)


def progress_event(job: Job, progress: Progress, seq: int, at: datetime) -> ProgressEvent:
    # a restore being cancelled reports its undo as `cancelling`; every other job runs
    status = JobStatus.CANCELLING if job.status is JobStatus.CANCELLING else JobStatus.RUNNING
    return ProgressEvent(job_id=job.job_id, kind=job.kind, seq=seq, status=status,
                         progress=EventProgress.of(progress, eta_seconds(job, progress, at)),
                         at=at)


def terminal_event(job: Job, seq: int, at: datetime, download: Download | None = None,
                   ) -> SucceededEvent | FailedEvent | CancelledEvent | RolledBackEvent:
    """The event that ends `job`'s stream; `job` must have ended."""
    common: dict[str, Any] = {"job_id": job.job_id, "kind": job.kind, "seq": seq,
                              "status": job.status, "progress": EventProgress.of(job.progress),
                              "at": at}
    if job.status is JobStatus.SUCCEEDED:
        return SucceededEvent(**common,
                              download=download_link(job, download) if download else None)
    if job.status is JobStatus.FAILED:
        return FailedEvent(**common, error=job.error or JobError(
            code="internal_error", message="The job failed; try again."))
    if job.status is JobStatus.CANCELLED:
        return CancelledEvent(**common, error=job.error)
    if job.status is JobStatus.ROLLED_BACK:
        return RolledBackEvent(**common)
    raise ValueError(f"Job {job.job_id} is {job.status.value}: it has not ended")
