"""Fan-out of job events to subscribed WebSocket connections (API Gateway @connections).

Workers call `publish_progress` as often as they like (throttled by the job row, see throttle),
whatever ends a job calls `publish_terminal` once, right after the transition that ended it. A
post that answers 410 Gone prunes that connection; any other failure is logged. Nothing here
raises into a job, and nothing waits long for a client: posts run in a small pool with short
timeouts (connections.post), and API Gateway buffers for slow readers.

Frames may hold a presigned URL (a credential): they are never logged.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from dataport.bucket import packages_bucket
from dataport.jobs.store import JobStore
from dataport.models.jobs import ExportState, Job, JobStatus, Progress
from dataport.observability import logger
from dataport.packaging.download import Download, presigned_download
from dataport.progress import throttle
from dataport.progress.connections import ConnectionStore, Delivery, post
from dataport.progress.events import (
    TERMINAL_EVENTS,
    encode,
    progress_event,
    snapshot_event,
    terminal_event,
)

#: posts in flight at once for one event (a user has a few tabs open, not hundreds)
MAX_PARALLEL_POSTS = 8


def publish_progress(job: Job, progress: Progress, *, record: bool = False) -> bool:
    """Send `progress` to the job's subscribers unless an event went out in the last 500 ms.
    True when this call published. Cheap when throttled: one conditional write. With `record`,
    `progress` also goes to the job row (in the claim's write when it is granted, else in one
    more), so a caller that does both pays one write, not two."""
    try:
        at = throttle.now_ms()
        if throttle.refused(job, at):
            # `job` (as its caller read it) already says an event went out less than 500 ms
            # before `at`; the row's own value can only be later, so the claim would be refused
            if record:
                JobStore().set_progress(job.job_id, progress)
            return False
        seq = throttle.claim_progress(job.job_id, at, progress if record else None)
        if seq is None:
            return False
        _fan_out(job.job_id, encode(progress_event(job, progress, seq, _datetime(at))))
    except Exception:  # progress is a courtesy: it never fails the job
        logger.warning("progress event not published", exc_info=True,
                       extra={"job_id": job.job_id})
        return False
    return True


def publish_claimed(job: Job) -> None:
    """Send `job.progress` as the event whose seq the write that returned `job` claimed
    (`JobStore.update_export(claim_at_ms=...)`): no claim of its own."""
    try:
        at = job.progress_sent_at or throttle.now_ms()
        _fan_out(job.job_id, encode(progress_event(job, job.progress, job.progress_seq,
                                                   _datetime(at))))
    except Exception:  # progress is a courtesy: it never fails the job
        logger.warning("progress event not published", exc_info=True,
                       extra={"job_id": job.job_id})


def publish_terminal(job: Job, *, claimed: bool = False) -> None:
    """Send the one event that ends `job` (succeeded, failed, cancelled, rolled back) to every
    subscriber. `claimed`: the write that ended the job also took the event's seq
    (`JobStore.succeed_export(claim_at_ms=...)`), so `job` holds it and no claim is made."""
    if job.status not in TERMINAL_EVENTS:
        logger.error("no terminal event for a job that has not ended",
                     extra={"job_id": job.job_id, "status": job.status.value})
        return
    try:
        if claimed and job.progress_sent_at is not None:
            seq, at = job.progress_seq, job.progress_sent_at
        else:
            at = throttle.now_ms()
            seq = throttle.claim_terminal(job.job_id, at)
        event = terminal_event(job, seq, _datetime(at), _download(job))
        _fan_out(job.job_id, encode(event))
    except Exception:  # the job has ended either way; a reconnecting client gets a snapshot
        logger.exception("terminal event not published", extra={"job_id": job.job_id})


def send_snapshot(connection_id: str, job: Job) -> None:
    """The answer to subscribe: `job` now, with a fresh link when it is a finished export."""
    send(connection_id, encode(snapshot_event(job, datetime.now(UTC), _download(job))))


def send(connection_id: str, frame: bytes) -> bool:
    """Post one frame; False when the connection is gone (and now pruned) or the post failed."""
    delivery = post(connection_id, frame)
    if delivery is Delivery.GONE:
        logger.info("connection gone: pruned", extra={"connection_id": connection_id})
        _prune(connection_id)
    return delivery is Delivery.SENT


def _fan_out(job_id: str, frame: bytes) -> None:
    subscribers = ConnectionStore().subscribers(job_id)
    if len(subscribers) <= 1:
        for connection_id in subscribers:
            send(connection_id, frame)
        return
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_POSTS, len(subscribers)),
                            thread_name_prefix="fan-out") as pool:
        list(pool.map(lambda connection_id: send(connection_id, frame), subscribers))


def _prune(connection_id: str) -> None:
    try:
        ConnectionStore().close(connection_id)
    except (ClientError, BotoCoreError):  # TTL removes it anyway
        logger.warning("could not prune a gone connection", exc_info=True,
                       extra={"connection_id": connection_id})


def _download(job: Job) -> Download | None:
    package = job.state.package if isinstance(job.state, ExportState) else None
    if job.status is JobStatus.SUCCEEDED and package and package.expires_at > datetime.now(UTC):
        return presigned_download(packages_bucket(), package)
    return None


def _datetime(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)
