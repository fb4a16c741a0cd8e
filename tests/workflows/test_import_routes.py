"""The import ASL's `Route` choice and models/tasks.py's `ImportStep.next` cannot drift: every
step the model allows is run through the real ASL (moto's interpreter, stand-in tasks that read
and answer with the real models) and must reach the state that handles it, and every branch of
the choice must be a step the model allows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from dataport.models.tasks import ImportStep
from infrastructure.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).parent / "import_routes" / "template.yaml"
ROUTE = json.loads((ROOT / "infrastructure/statemachines/import.asl.json").read_text())[
    "States"]["Route"]
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
    entered = [event["stateEnteredEventDetails"]["name"]
               for event in stack.execution_history(arn) if event["type"].endswith("StateEntered")]
    return entered, status


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
