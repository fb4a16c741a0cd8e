"""Stand-ins for the import tasks: each validates its input with the real task's model and
answers the step that ends the workflow (`end`), as the real tasks answer theirs."""

from __future__ import annotations

from typing import Any

import boto3

from dataport.models.tasks import DecisionWait, ImportFailedInput, ImportStep


class StandInFailure(Exception):
    """What a task of a job whose id starts with FAILS raises (tests of the failure paths)."""


FAILS = "fails-"


def step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Validate, stage, execute, finalize, rollback: an ImportStep in, the next one out."""
    current = ImportStep.model_validate(event)
    if current.job_id.startswith(FAILS):
        raise StandInFailure(f"{current.next} failed (stand-in)")
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
