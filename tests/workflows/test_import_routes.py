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
    arn = _finished(stack, state)
    return _entered(stack, arn), stack.wait_for_execution(arn)["status"]


def _finished(stack: LocalStack, state: dict[str, Any]) -> str:
    """An import execution of `state`, once it has ended."""
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=stack.state_machines["ImportStateMachine"],
                              name=uuid.uuid4().hex, input=json.dumps(state))["executionArn"]
    stack.wait_for_execution(arn)
    return str(arn)


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


def _cleanup_input(stack: LocalStack, arn: str) -> dict[str, Any]:
    return dict(next(json.loads(event["stateEnteredEventDetails"]["input"])
                     for event in stack.execution_history(arn)
                     if event["type"] == "TaskStateEntered"
                     and event["stateEnteredEventDetails"]["name"] == "Cleanup"))


@pytest.mark.parametrize(("step", "inline"), [("execute", "ExecuteInline"),
                                              ("rollback", "RollbackInline")])
def test_a_pass_one_invocation_finishes_starts_no_child_execution(
        routes: LocalStack, step: str, inline: str) -> None:
    job_id = uuid.uuid4().hex
    mode = "rollback" if step == "rollback" else "import"
    entered, status = _run(routes, ImportStep(job_id=job_id, mode=mode, next=step).wire())
    assert (entered, status) == (["Route", inline, "PassGoesOn?", "Route", "Done"], "SUCCEEDED")
    assert _passes(routes, job_id) == []


@pytest.mark.parametrize(("step", "inline", "task"), [("execute", "ExecuteInline", "Execute"),
                                                      ("rollback", "RollbackInline", "Rollback")])
def test_a_pass_its_first_invocation_does_not_finish_goes_on_in_one_child(
        routes: LocalStack, step: str, inline: str, task: str) -> None:
    """Never a second inline invocation: the rest of the pass is the child's, with the cursor
    the first invocation handed on (the import execution's history is bounded per pass)."""
    job_id = f"continues-{uuid.uuid4().hex}"
    mode = "rollback" if step == "rollback" else "import"
    entered, status = _run(routes, ImportStep(job_id=job_id, mode=mode, next=step).wire())
    assert (entered, status) == (["Route", inline, "PassGoesOn?", "RunPass", "Route", "Done"],
                                 "SUCCEEDED")
    (child,) = _passes(routes, job_id)
    assert _entered(routes, child["executionArn"]) == ["Next?", task, "Next?", "PassDone"]
    handed = json.loads(child["input"])
    assert (handed["next"], handed["after"], handed["invocations"]) == (step, "first", 1)


def test_a_failed_inline_invocation_reaches_cleanup_as_its_own_error(routes: LocalStack) -> None:
    job_id = f"fails-{uuid.uuid4().hex}"
    arn = _finished(routes, ImportStep(job_id=job_id, next="execute").wire())
    assert routes.wait_for_execution(arn)["status"] == "FAILED"
    assert _entered(routes, arn) == ["Route", "ExecuteInline", "Cleanup", "ImportFailed"]
    assert _passes(routes, job_id) == []
    caught = TaskError.model_validate(_cleanup_input(routes, arn)["error"])
    assert caught.Error == "StandInFailure"
    assert pass_error(caught) == caught  # nothing to unwrap


def test_a_pass_hands_over_to_a_fresh_execution_at_its_bound(routes: LocalStack) -> None:
    """Continue as new: a pass whose execution ran BOUND invocations starts a fresh one, which
    starts counting again; the import execution sees one pass."""
    job_id = f"continues-{uuid.uuid4().hex}"
    state = ImportStep(job_id=job_id, next="execute", invocations=BOUND).wire()
    entered, status = _run(routes, state)
    assert (entered, status) == (["Route", "ExecuteInline", "PassGoesOn?", "RunPass", "Route",
                                  "Done"], "SUCCEEDED")
    first, fresh = _passes(routes, job_id)
    assert _entered(routes, first["executionArn"]) == ["Next?", "Fresh", "HandOver"]
    assert json.loads(first["input"])["invocations"] == BOUND + 1  # with the inline one
    assert json.loads(fresh["input"])["invocations"] == 0
    assert _entered(routes, fresh["executionArn"]) == ["Next?", "Execute", "Next?", "PassDone"]
    assert json.loads(first["output"]) == json.loads(fresh["output"])
    assert json.loads(first["output"])["next"] == "end"


def test_a_failure_in_a_handed_over_pass_reaches_cleanup_as_its_own_error(
        routes: LocalStack) -> None:
    """However many hand-overs lie between, Cleanup gets the task's own error (not one
    States.TaskFailed wrapping another per execution)."""
    job_id = f"continues-fails-{uuid.uuid4().hex}"
    arn = _finished(routes, ImportStep(job_id=job_id, next="execute", invocations=BOUND).wire())
    assert routes.wait_for_execution(arn)["status"] == "FAILED"
    assert _entered(routes, arn) == ["Route", "ExecuteInline", "PassGoesOn?", "RunPass",
                                     "Cleanup", "ImportFailed"]
    first, fresh = _passes(routes, job_id)
    for execution in (fresh, first):
        assert execution["status"] == "FAILED"
        assert execution["error"] == "StandInFailure"
        assert json.loads(execution["cause"])["errorMessage"] == "execute failed (stand-in)"
    caught = TaskError.model_validate(_cleanup_input(routes, arn)["error"])
    assert caught.Error == "States.TaskFailed"  # what a .sync:2 task's Catch gets
    own = pass_error(caught)
    assert own.Error == "StandInFailure"
    assert own.Cause is not None
    assert json.loads(own.Cause)["errorMessage"] == "execute failed (stand-in)"
