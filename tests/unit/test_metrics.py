"""The metrics a job's life emits, as CloudWatch receives them (EMF lines on stdout, flushed
once per invocation): the job store reports each change it writes, once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from dataport.jobs.store import JobStore, utcnow
from dataport.models.exports import ExportRequest
from dataport.models.job_common import Counts, JobError, PackageInfo, Progress
from dataport.models.jobs import ExportState
from dataport.observability import DEFAULT_NAMESPACE, metrics

USER = "66ad9b005f2b4a0012c0aaaa"


@pytest.fixture
def flushed(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """A function returning the EMF documents printed since the last call, after a flush (as
    `log_metrics` does when an invocation ends)."""
    metrics.clear_metrics()
    capsys.readouterr()

    def read() -> list[dict[str, Any]]:
        metrics.flush_metrics(raise_on_empty_metrics=False)
        lines = capsys.readouterr().out.splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"_aws"')]

    yield read
    metrics.clear_metrics()


def _values(documents: list[dict[str, Any]]) -> dict[tuple[str, tuple[str, ...]], Any]:
    """(metric name, its dimension names) -> the sum of the values sent."""
    found: dict[tuple[str, tuple[str, ...]], Any] = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == DEFAULT_NAMESPACE
            dimensions = tuple(sorted(directive["Dimensions"][0]))
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                found[(metric["Name"], dimensions)] = sum(value) if isinstance(value, list) \
                    else value
    return found


def test_a_failed_export_counts_once_and_once_by_its_error_code(job_store: JobStore,
                                                                flushed: Any) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    job_store.take(job.job_id)
    job_store.take(job.job_id)  # a retried first task: the job runs already, nothing to count
    job_store.fail(job.job_id, JobError(code="source_unavailable", message="Down."))
    sent = _values(flushed())
    assert sent[("ExportsStarted", ("service",))] == 1.0
    assert sent[("ExportsFailed", ("service",))] == 1.0
    assert sent[("ExportsFailed", ("ErrorCode", "service"))] == 1.0
    assert not any(name == "ExportsSucceeded" for name, _ in sent)


def test_a_finished_export_reports_duration_records_and_package_size(job_store: JobStore,
                                                                     flushed: Any) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    job_store.take(job.job_id)
    package = PackageInfo(key="packages/x.zip", filename="x.zip", bytes=12_345, files=3,
                          expires_at=utcnow() + timedelta(days=7))
    job_store.succeed_export(job.job_id, package=package,
                             counts=Counts(projects=1, sessions=4, messages=40, files=3),
                             progress=Progress(phase="done"))
    sent = _values(flushed())
    assert sent[("ExportsSucceeded", ("service",))] == 1.0
    assert sent[("ExportedRecords", ("service",))] == 44.0
    assert sent[("PackageSize", ("service",))] == 12_345.0
    assert 0 <= sent[("ExportDuration", ("service",))] < 60


def test_a_cancelled_export_counts_as_cancelled(job_store: JobStore, flushed: Any) -> None:
    job = job_store.create(USER, ExportState(request=ExportRequest()))
    job_store.cancel(job.job_id)
    sent = _values(flushed())
    assert sent == {("ExportsCancelled", ("service",)): 1.0}
