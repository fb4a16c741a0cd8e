"""The adapters' contracts with tiny fakes: Step Functions' answers become domain errors, and
logic that receives the packages bucket calls nothing but its methods."""

from __future__ import annotations

from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from dataport.bucket import PackagesBucket
from dataport.engine import Machine, StepFunctionsEngine, TaskGone, WorkflowUnavailable
from dataport.models.tasks import ImportStep, JobRef
from dataport.packaging.cleanup import discard_job_objects


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Operation")


class FakeStepFunctions:
    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> dict[str, Any]:
            self.calls.append((operation, kwargs))
            if self.fail:
                raise _error(self.fail)
            return {"executionArn": f"arn:{kwargs.get('name')}"}
        return call


def engine(fake: FakeStepFunctions) -> StepFunctionsEngine:
    return StepFunctionsEngine(cast(Any, fake), {Machine.EXPORT: "arn:export",
                                                 Machine.IMPORT: "arn:import"})


def test_start_sends_the_model_by_alias_to_the_kinds_machine() -> None:
    fake = FakeStepFunctions()
    assert engine(fake).start(Machine.IMPORT, "job-1", ImportStep(job_id="job-1",
                                                                  next="validate")) == "arn:job-1"
    ((operation, call),) = fake.calls
    assert operation == "start_execution"
    assert call["stateMachineArn"] == "arn:import"
    assert '"jobId":"job-1"' in call["input"]
    assert "after" not in call["input"]  # None fields left out, as the ASL expects


def test_a_repeated_start_is_harmless_and_other_refusals_are_transient() -> None:
    assert engine(FakeStepFunctions("ExecutionAlreadyExists")).start(
        Machine.EXPORT, "job-1", JobRef(job_id="job-1")) is None
    with pytest.raises(WorkflowUnavailable):
        engine(FakeStepFunctions("ThrottlingException")).start(
            Machine.EXPORT, "job-1", JobRef(job_id="job-1"))


@pytest.mark.parametrize("code", ["InvalidToken", "TaskTimedOut", "TaskDoesNotExist"])
def test_a_token_nothing_waits_on_is_task_gone(code: str) -> None:
    with pytest.raises(TaskGone):
        engine(FakeStepFunctions(code)).send_success("token", JobRef(job_id="job-1"))
    with pytest.raises(TaskGone):
        engine(FakeStepFunctions(code)).send_failure("token", "JobCancelled", "cause")


def test_stopping_an_ended_execution_is_a_no_op() -> None:
    engine(FakeStepFunctions("ExecutionDoesNotExist")).stop("arn:x", "JobCancelled", "{}")
    with pytest.raises(WorkflowUnavailable):
        engine(FakeStepFunctions("AccessDeniedException")).stop("arn:x", "JobCancelled", "{}")


class FakeBucket:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def abort_uploads(self, prefix: str) -> int:
        self.calls.append(("abort", prefix))
        return 0

    def delete_prefix(self, prefix: str) -> int:
        self.calls.append(("delete", prefix))
        return 0


def test_discarding_a_jobs_objects_names_only_its_prefixes() -> None:
    fake = FakeBucket()
    discard_job_objects(cast(PackagesBucket, fake), "job-1", include_package=True)
    assert fake.calls == [("abort", "staging/job-1/"), ("delete", "staging/job-1/"),
                          ("abort", "packages/job-1/"), ("delete", "packages/job-1/")]
