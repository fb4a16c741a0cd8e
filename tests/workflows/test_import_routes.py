"""The import ASL's `Route` choice and models/tasks.py's `ImportStep.next` cannot drift: every
step the model allows is run through the real ASL (moto's interpreter, stand-in tasks that read
and answer with the real models) and must reach the state that handles it, and every branch of
the choice must be a step the model allows. The passes (import-pass.asl.json, child executions)
hand over to a fresh execution at their bound and bring a failure back as its own error."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from dataport.models.tasks import ImportStep, TaskError
from dataport.workflows.imports import pass_error
from infrastructure.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).parent / "import_routes" / "template.yaml"
ROUTE = json.loads((ROOT / "infrastructure/statemachines/import.asl.json").read_text())[
    "States"]["Route"]
PASS = json.loads((ROOT / "infrastructure/statemachines/import-pass.asl.json").read_text())[
    "States"]
BOUND = max(choice["And"][1]["NumericLessThan"] for choice in PASS["Next?"]["Choices"]
            if "And" in choice)
MODEL_STEPS = set(get_args(ImportStep.model_fields["next"].annotation))
CHOICE_STEPS = {choice["StringEquals"]: choice["Next"] for choice in ROUTE["Choices"]}


@pytest.fixture(scope="module")
def routes() -> Iterator[LocalStack]:
    """A stack of its own: the import machine with stand-ins, no MongoDB."""
    with LocalStack(TEMPLATE, stack_name="import-routes", with_mongo=False) as stack:
        yield stack


def _run(stack: LocalStack, state: dict[str, Any]) -> tuple[list[str], str]:
    """The states the execution entered, in order, and how it ended."""
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=stack.state_machines["ImportStateMachine"],
                              name=uuid.uuid4().hex, input=json.dumps(state))["executionArn"]
    status = stack.wait_for_execution(arn)["status"]
    return _entered(stack, arn), status


def _entered(stack: LocalStack, arn: str) -> list[str]:
    return [event["stateEnteredEventDetails"]["name"] for event in stack.execution_history(arn)
            if event["type"].endswith("StateEntered")]


def _passes(stack: LocalStack, job_id: str) -> list[dict[str, Any]]:
    """The job's pass executions, oldest first (named after the job), once all have ended."""
    sfn = stack.client("stepfunctions")
    found = [e for e in sfn.list_executions(
        stateMachineArn=stack.state_machines["ImportPassStateMachine"])["executions"]
        if e["name"].startswith(job_id)]
    return sorted((stack.wait_for_execution(e["executionArn"]) for e in found),
                  key=lambda e: e["startDate"])


@pytest.mark.parametrize("step", sorted(MODEL_STEPS | set(CHOICE_STEPS)))
def test_every_step_is_routed_to_its_state(routes: LocalStack, step: str) -> None:
    assert step in MODEL_STEPS, f"the Route choice handles {step!r}, which no task can answer"
    state = ImportStep.model_validate({"jobId": uuid.uuid4().hex, "next": step})
    entered, status = _run(routes, state.wire())
    assert entered[0] == "Route"
    assert entered[1] != ROUTE["Default"], f"the Route choice does not handle {step!r}"
    assert entered[1] == CHOICE_STEPS[step]
    # the stand-in task read the model, answered `end`, and the choice ended the workflow
    if step == "invalid":
        assert (entered[1:], status) == (["ImportRefused"], "FAILED")
    else:
        assert (entered[-2:], status) == (["Route", "Done"], "SUCCEEDED")


def test_a_step_no_model_allows_fails_the_job_properly(routes: LocalStack) -> None:
    state = ImportStep(job_id=uuid.uuid4().hex, next="end").wire()
    entered, status = _run(routes, {**state, "next": "teleport"})
    assert entered == ["Route", ROUTE["Default"], "Cleanup", "ImportFailed"]
    assert status == "FAILED"


def test_a_pass_hands_over_to_a_fresh_execution_at_its_bound(routes: LocalStack) -> None:
    """Continue as new: a pass whose execution ran BOUND invocations starts a fresh one, which
    starts counting again; the import execution sees one pass."""
    job_id = uuid.uuid4().hex
    state = ImportStep(job_id=job_id, next="execute", invocations=BOUND).wire()
    entered, status = _run(routes, state)
    assert (entered, status) == (["Route", "RunPass", "Route", "Done"], "SUCCEEDED")
    first, fresh = _passes(routes, job_id)
    assert _entered(routes, first["executionArn"]) == ["Next?", "Fresh", "HandOver"]
    assert json.loads(fresh["input"])["invocations"] == 0
    assert _entered(routes, fresh["executionArn"]) == ["Next?", "Execute", "Next?", "PassDone"]
    assert json.loads(first["output"]) == json.loads(fresh["output"])
    assert json.loads(first["output"])["next"] == "end"


def test_a_failure_in_a_handed_over_pass_reaches_cleanup_as_its_own_error(
        routes: LocalStack) -> None:
    """However many hand-overs lie between, Cleanup gets the task's own error (not one
    States.TaskFailed wrapping another per execution)."""
    job_id = f"fails-{uuid.uuid4().hex}"
    sfn = routes.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=routes.state_machines["ImportStateMachine"], name=uuid.uuid4().hex,
        input=json.dumps(ImportStep(job_id=job_id, next="execute", invocations=BOUND).wire())
    )["executionArn"]
    assert routes.wait_for_execution(arn)["status"] == "FAILED"
    assert _entered(routes, arn) == ["Route", "RunPass", "Cleanup", "ImportFailed"]
    first, fresh = _passes(routes, job_id)
    for execution in (fresh, first):
        assert execution["status"] == "FAILED"
        assert execution["error"] == "StandInFailure"
        assert json.loads(execution["cause"])["errorMessage"] == "execute failed (stand-in)"
    cleanup = next(json.loads(event["stateEnteredEventDetails"]["input"])
                   for event in routes.execution_history(arn)
                   if event["type"] == "TaskStateEntered"
                   and event["stateEnteredEventDetails"]["name"] == "Cleanup")
    caught = TaskError.model_validate(cleanup["error"])
    assert caught.Error == "States.TaskFailed"  # what a .sync:2 task's Catch gets
    own = pass_error(caught)
    assert own.Error == "StandInFailure"
    assert own.Cause is not None
    assert json.loads(own.Cause)["errorMessage"] == "execute failed (stand-in)"
