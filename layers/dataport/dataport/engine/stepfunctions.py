"""Step Functions behind `WorkflowEngine`: task input and output are pydantic models (dumped by
alias, as the ASL reads them), failures come out as domain errors."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import ClientError
from pydantic import BaseModel

from dataport import aws
from dataport.errors import Conflict, TransientError
from dataport.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

#: answers to a task token that nothing waits on any more
_TOKEN_GONE = {"InvalidToken", "TaskTimedOut", "TaskDoesNotExist"}
#: answers to a stop of an execution that already ended, or never started
_NOTHING_TO_STOP = {"ExecutionDoesNotExist", "ValidationException"}


class Machine(StrEnum):
    """The state machine of each job kind (infrastructure/statemachines/<kind>.asl.json)."""

    EXPORT = "export"
    IMPORT = "import"
    VERIFY = "verify"
    RESTORE = "restore"  # instance restores: one import per user (restore.asl.json)


class WorkflowUnavailable(TransientError):
    """The engine refused or could not be reached; the call may be repeated."""

    code = "workflow_unavailable"


class TaskGone(Conflict):
    """A task token that no task waits on any more (answered, timed out, or its execution
    ended)."""

    code = "task_gone"


class WorkflowEngine(Protocol):
    def start(self, machine: Machine, name: str, payload: BaseModel) -> str | None:
        """Start `machine` as execution `name`; its ARN, or None when an execution of that name
        already exists (a repeated start is harmless)."""
        ...

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        """Stop an execution; one that already ended is left as it is."""
        ...

    def send_success(self, token: str, output: BaseModel) -> None:
        """Resume the task waiting on `token` with `output` (TaskGone if none waits)."""
        ...

    def send_failure(self, token: str, error: str, cause: str) -> None:
        """Fail the task waiting on `token` (TaskGone if none waits)."""
        ...


class StepFunctionsEngine:
    def __init__(self, client: SFNClient, machines: dict[Machine, str]) -> None:
        self._client = client
        self._machines = machines

    def start(self, machine: Machine, name: str, payload: BaseModel) -> str | None:
        try:
            answer = self._client.start_execution(
                stateMachineArn=self._machines[machine], name=name,
                input=payload.model_dump_json(by_alias=True, exclude_none=True))
        except ClientError as error:
            if _code(error) == "ExecutionAlreadyExists":
                return None
            raise WorkflowUnavailable(f"The {machine.value} workflow could not be started.",
                                      details={"name": name}) from error
        return answer["executionArn"]

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        try:
            self._client.stop_execution(executionArn=execution_arn, error=error, cause=cause)
        except ClientError as failure:
            if _code(failure) not in _NOTHING_TO_STOP:
                raise WorkflowUnavailable("The workflow could not be stopped.") from failure

    def send_success(self, token: str, output: BaseModel) -> None:
        try:
            self._client.send_task_success(
                taskToken=token, output=output.model_dump_json(by_alias=True, exclude_none=True))
        except ClientError as error:
            raise _answer_failed(error) from error

    def send_failure(self, token: str, error: str, cause: str) -> None:
        try:
            self._client.send_task_failure(taskToken=token, error=error, cause=cause)
        except ClientError as failure:
            raise _answer_failed(failure) from failure


def workflow_engine() -> WorkflowEngine:
    """The deployment's engine, as settings name its state machines (cheap: the client and the
    settings are cached per process, and the tests change both)."""
    settings = get_settings()
    return StepFunctionsEngine(aws.stepfunctions(), {
        Machine.EXPORT: settings.export_state_machine_arn,
        Machine.IMPORT: settings.import_state_machine_arn,
        Machine.VERIFY: settings.verify_state_machine_arn,
        Machine.RESTORE: settings.restore_state_machine_arn})


def _code(error: ClientError) -> str | None:
    return error.response.get("Error", {}).get("Code")


def _answer_failed(error: ClientError) -> Exception:
    if _code(error) in _TOKEN_GONE:
        return TaskGone("No task waits on this token any more.")
    return WorkflowUnavailable("The waiting workflow could not be answered.")
