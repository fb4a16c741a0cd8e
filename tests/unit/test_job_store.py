"""The job store's writes against (moto) DynamoDB."""

from __future__ import annotations

import pytest

from dataport.errors import Conflict
from dataport.jobs.store import JobStore
from dataport.models.jobs import JobKind, JobStatus

USER = "66ad9b005f2b4a0012c0aaaa"


def test_the_execution_is_recorded_even_after_the_workflow_moved_the_job_on(
        job_store: JobStore) -> None:
    """The workflow can mark the job running before its starter hears back from StartExecution;
    recording the execution must neither fail nor undo that."""
    job = job_store.create(JobKind.EXPORT, USER, {"format": "json"})
    job_store.transition(job.job_id, JobStatus.RUNNING, allowed_from=[JobStatus.QUEUED])

    recorded = job_store.record_execution(job.job_id, "arn:aws:states:::execution:sm:x")

    assert recorded.status is JobStatus.RUNNING
    assert job_store.require(job.job_id).execution_arn == "arn:aws:states:::execution:sm:x"


def test_a_transition_from_the_wrong_status_is_refused_and_says_why(job_store: JobStore) -> None:
    job = job_store.create(JobKind.EXPORT, USER, {"format": "json"})
    job_store.transition(job.job_id, JobStatus.SUCCEEDED, allowed_from=[JobStatus.QUEUED])

    with pytest.raises(Conflict, match="succeeded; it cannot become running"):
        job_store.transition(job.job_id, JobStatus.RUNNING, allowed_from=[JobStatus.QUEUED])
    assert job_store.require(job.job_id).status is JobStatus.SUCCEEDED
