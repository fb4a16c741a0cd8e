"""workflows.imports.pass_error: what Cleanup reads out of a failed RunPass (.sync:2) task. The
FAILED case runs through the real ASL in tests/workflows/test_import_routes.py."""

from __future__ import annotations

import json

from dataport.models.tasks import TaskError
from dataport.workflows.imports import pass_error

ARN = "arn:aws:states:us-east-1:123456789012:execution:dataport-import-pass-dev:job-1"
LAMBDA_CAUSE = json.dumps({"errorType": "DatabaseRefused", "errorMessage": "refused"})


def _describe(status: str, **extra: str) -> str:
    return json.dumps({"ExecutionArn": ARN, "Status": status, **extra})


def test_a_failed_pass_gives_its_own_error() -> None:
    caught = TaskError(Error="States.TaskFailed",
                       Cause=_describe("FAILED", Error="DatabaseRefused", Cause=LAMBDA_CAUSE))
    assert pass_error(caught) == TaskError(Error="DatabaseRefused", Cause=LAMBDA_CAUSE)


def test_a_timed_out_pass_reads_as_a_timeout() -> None:
    caught = TaskError(Error="States.TaskFailed", Cause=_describe("TIMED_OUT"))
    assert pass_error(caught).Error == "States.Timeout"


def test_a_stopped_pass_without_an_error_stays_a_task_failure() -> None:
    caught = TaskError(Error="States.TaskFailed", Cause=_describe("ABORTED"))
    assert pass_error(caught) == TaskError(Error="States.TaskFailed", Cause=None)


def test_other_errors_are_left_as_they_are() -> None:
    for caught in (TaskError(Error="DatabaseRefused", Cause=LAMBDA_CAUSE),
                   TaskError(Error="States.TaskFailed", Cause="not json"),
                   TaskError(Error="States.TaskFailed", Cause=LAMBDA_CAUSE),
                   TaskError(Error="States.TaskFailed", Cause=None)):
        assert pass_error(caught) == caught
