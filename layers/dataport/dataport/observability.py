"""One Logger, Tracer and Metrics for every function (AWS Lambda Powertools), and the catalogue
of the metrics dataport emits.

Metrics are added during an invocation and flushed once at its end (every handler is wrapped in
`metrics.log_metrics`): one EMF log line per invocation, never one per record. The namespace is
POWERTOOLS_METRICS_NAMESPACE (template: MetricsNamespace); every metric carries the `service`
dimension. docs/operations.md lists them; the template's dashboard shows every one
(tests/infrastructure/test_monitoring.py checks it).
"""

from __future__ import annotations

import os
from enum import StrEnum

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from dataport.models.job_common import JobKind

SERVICE = "dataport"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
#: the template sets POWERTOOLS_METRICS_NAMESPACE (parameter MetricsNamespace) on every function
NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"
DEFAULT_NAMESPACE = "Dataport"
metrics = Metrics(service=SERVICE, namespace=os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE)


class MetricName(StrEnum):
    """Every metric dataport emits (nothing else may be emitted: `emit` takes only these)."""

    EXPORTS_STARTED = "ExportsStarted"
    EXPORTS_SUCCEEDED = "ExportsSucceeded"
    EXPORTS_FAILED = "ExportsFailed"
    EXPORTS_CANCELLED = "ExportsCancelled"
    EXPORT_DURATION = "ExportDuration"
    EXPORTED_RECORDS = "ExportedRecords"  # sessions and messages written to packages
    PACKAGE_SIZE = "PackageSize"  # bytes of a finished package (= bytes exported)
    IMPORTS_STARTED = "ImportsStarted"
    IMPORTS_SUCCEEDED = "ImportsSucceeded"
    IMPORTS_FAILED = "ImportsFailed"
    IMPORTS_CANCELLED = "ImportsCancelled"
    IMPORT_DURATION = "ImportDuration"
    IMPORTED_RECORDS = "ImportedRecords"  # sessions and messages written to MongoDB
    IMPORTED_BYTES = "ImportedBytes"  # bytes of the upload an import executed
    BACKUPS_STARTED = "BackupsStarted"
    BACKUPS_SUCCEEDED = "BackupsSucceeded"
    BACKUPS_FAILED = "BackupsFailed"
    BACKUPS_CANCELLED = "BackupsCancelled"
    BACKUP_DURATION = "BackupDuration"
    BACKED_UP_RECORDS = "BackedUpRecords"
    BACKED_UP_BYTES = "BackedUpBytes"
    RESTORES_STARTED = "RestoresStarted"
    RESTORES_SUCCEEDED = "RestoresSucceeded"
    RESTORES_FAILED = "RestoresFailed"
    RESTORES_CANCELLED = "RestoresCancelled"
    RESTORE_DURATION = "RestoreDuration"
    RESTORED_RECORDS = "RestoredRecords"
    RESTORED_BYTES = "RestoredBytes"
    VERIFICATIONS_STARTED = "VerificationsStarted"
    VERIFICATIONS_SUCCEEDED = "VerificationsSucceeded"  # ran to the end, damage found or not
    VERIFICATIONS_FAILED = "VerificationsFailed"
    VERIFICATIONS_CANCELLED = "VerificationsCancelled"
    VERIFICATION_DURATION = "VerificationDuration"
    RATE_LIMITED_REQUESTS = "RateLimitedRequests"
    PROGRESS_EVENTS_SENT = "ProgressEventsSent"
    CONNECTIONS_PRUNED = "ConnectionsPruned"  # gone (410) when an event was posted


#: the dimension a failure's count also carries (a second EMF line: failures are rare)
ERROR_CODE_DIMENSION = "ErrorCode"

_UNITS = {MetricName.PACKAGE_SIZE: MetricUnit.Bytes, MetricName.IMPORTED_BYTES: MetricUnit.Bytes,
          MetricName.BACKED_UP_BYTES: MetricUnit.Bytes,
          MetricName.RESTORED_BYTES: MetricUnit.Bytes,
          MetricName.EXPORT_DURATION: MetricUnit.Seconds,
          MetricName.IMPORT_DURATION: MetricUnit.Seconds,
          MetricName.BACKUP_DURATION: MetricUnit.Seconds,
          MetricName.RESTORE_DURATION: MetricUnit.Seconds,
          MetricName.VERIFICATION_DURATION: MetricUnit.Seconds}

#: a job's lifecycle metrics per kind: started, succeeded, failed, cancelled, duration
LIFECYCLE: dict[JobKind, tuple[MetricName, MetricName, MetricName, MetricName, MetricName]] = {
    JobKind.EXPORT: (MetricName.EXPORTS_STARTED, MetricName.EXPORTS_SUCCEEDED,
                     MetricName.EXPORTS_FAILED, MetricName.EXPORTS_CANCELLED,
                     MetricName.EXPORT_DURATION),
    JobKind.IMPORT: (MetricName.IMPORTS_STARTED, MetricName.IMPORTS_SUCCEEDED,
                     MetricName.IMPORTS_FAILED, MetricName.IMPORTS_CANCELLED,
                     MetricName.IMPORT_DURATION),
    JobKind.BACKUP: (MetricName.BACKUPS_STARTED, MetricName.BACKUPS_SUCCEEDED,
                     MetricName.BACKUPS_FAILED, MetricName.BACKUPS_CANCELLED,
                     MetricName.BACKUP_DURATION),
    JobKind.RESTORE: (MetricName.RESTORES_STARTED, MetricName.RESTORES_SUCCEEDED,
                      MetricName.RESTORES_FAILED, MetricName.RESTORES_CANCELLED,
                      MetricName.RESTORE_DURATION),
    JobKind.VERIFY: (MetricName.VERIFICATIONS_STARTED, MetricName.VERIFICATIONS_SUCCEEDED,
                     MetricName.VERIFICATIONS_FAILED, MetricName.VERIFICATIONS_CANCELLED,
                     MetricName.VERIFICATION_DURATION),
}


def unit_of(name: MetricName) -> MetricUnit:
    return _UNITS.get(name, MetricUnit.Count)


def emit(name: MetricName, value: float = 1) -> None:
    """Add to this invocation's metrics (flushed at its end)."""
    metrics.add_metric(name=name.value, unit=unit_of(name), value=value)


def emit_failure(name: MetricName, error_code: str) -> None:
    """A failure: counted with the others, and once more by its error code."""
    emit(name)
    with single_metric(name=name.value, unit=MetricUnit.Count, value=1,
                       namespace=metrics.namespace,
                       default_dimensions={"service": SERVICE}) as by_code:
        by_code.add_dimension(name=ERROR_CODE_DIMENSION, value=error_code)
