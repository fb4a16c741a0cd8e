"""A job's lifecycle as metrics: every status change goes through the job store, so the store
reports each one here once, as it is written (a retried task that finds the change made
already reports nothing). Added to the invocation's metrics, flushed at its end."""

from __future__ import annotations

from dataport.models.job_common import JobKind
from dataport.models.jobs import Job
from dataport.observability import LIFECYCLE, MetricName, emit, emit_failure

#: what the import pipeline wrote, per kind: (records, bytes read)
_WRITTEN = {JobKind.IMPORT: (MetricName.IMPORTED_RECORDS, MetricName.IMPORTED_BYTES),
            JobKind.RESTORE: (MetricName.RESTORED_RECORDS, MetricName.RESTORED_BYTES)}


def started(job: Job) -> None:
    emit(LIFECYCLE[job.kind][0])


def succeeded(job: Job) -> None:
    _, done, _, _, duration = LIFECYCLE[job.kind]
    emit(done)
    if job.finished_at is not None:
        emit(duration, max(0.0, (job.finished_at - job.created_at).total_seconds()))
    if job.kind is JobKind.EXPORT:
        state = job.export_state
        if state.counts is not None:
            emit(MetricName.EXPORTED_RECORDS, state.counts.sessions + state.counts.messages)
        if state.package is not None:
            emit(MetricName.PACKAGE_SIZE, state.package.bytes)
    elif job.kind in _WRITTEN:  # imports and restores: the import pipeline's outcome
        records, size = _WRITTEN[job.kind]
        imported = job.import_state
        if imported.outcome is not None:
            sessions, messages = imported.outcome.sessions, imported.outcome.messages
            emit(records, sessions.inserted + sessions.replaced + sessions.merged
                 + messages.inserted + messages.updated)
        if imported.upload_pin is not None:
            emit(size, imported.upload_pin.bytes)
    elif job.kind is JobKind.BACKUP:
        backup = job.backup_state
        if backup.counts is not None:
            emit(MetricName.BACKED_UP_RECORDS, backup.counts.sessions + backup.counts.messages)
        if backup.bytes is not None:
            emit(MetricName.BACKED_UP_BYTES, backup.bytes)


def failed(job: Job) -> None:
    emit_failure(LIFECYCLE[job.kind][2], job.error.code if job.error else "unknown")


def cancelled(job: Job) -> None:
    emit(LIFECYCLE[job.kind][3])
