"""Stand-ins for the import tasks: each validates its input with the real task's model and
answers the step that ends the workflow (`end`), as the real tasks answer theirs."""

from __future__ import annotations

from typing import Any

import boto3

from dataport.models.tasks import DecisionWait, ImportFailedInput, ImportStep


class StandInFailure(Exception):
    """What a task of a job whose id starts with FAILS raises (tests of the failure paths)."""


FAILS = "fails-"
#: a job whose id starts with this needs two invocations per pass: the first answers the same
#: step with its cursor (as a real pass that ran out of time does), the next ends it
CONTINUES = "continues-"


def step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Validate, stage, execute, finalize, rollback: an ImportStep in, the next one out.
    "continues-fails-": the pass's first invocation goes on, the next one fails."""
    current = ImportStep.model_validate(event)
    goes_on = current.job_id.startswith(CONTINUES) and current.after is None
    if FAILS in current.job_id and not goes_on:
        raise StandInFailure(f"{current.next} failed (stand-in)")
    if goes_on:
        return current.model_copy(update={"after": "first",
                                          "invocations": current.invocations + 1}).wire()
    return current.model_copy(update={"next": "end"}).wire()


def await_decision(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answers its own task token at once, with a step as POST /execute does."""
    wait = DecisionWait.model_validate(event)
    boto3.client("stepfunctions").send_task_success(
        taskToken=wait.task_token,
        output=ImportStep(job_id=wait.job_id, next="end").model_dump_json(
            by_alias=True, exclude_none=True))
    return {}


def failed(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ImportFailedInput.model_validate(event)
    return {}
