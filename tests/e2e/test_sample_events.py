"""Every function of template.yaml has a sample event in events/ (the ones `sam local invoke`
and `make invoke` take), and each one still gets the answer it is meant to get, so the events
cannot rot: a renamed field, a new required one or a new function without an event fails here.

Workflow tasks get a job id nobody has: what is checked is that the event parses and the task
reaches the job store (NotFound, or what the task makes of a missing job), not a validation
error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infrastructure.local import seed
from infrastructure.local.invoke import EVENTS, event_files, invoke
from infrastructure.local.stack import LocalStack
from tests.fixtures.environment import template

Check = Callable[[dict[str, Any]], None]


def _ok(status: int) -> Check:
    def check(out: dict[str, Any]) -> None:
        assert "result" in out, out
        assert out["result"]["statusCode"] == status, out

    return check


def _allowed(out: dict[str, Any]) -> None:
    assert "result" in out, out
    assert out["result"]["principalId"] == seed.DEMO_USER_ID
    (statement,) = out["result"]["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"


def _error(error_type: str) -> Check:
    def check(out: dict[str, Any]) -> None:
        assert out.get("errorType") == error_type, out

    return check


_job_not_found = _error("NotFound")


def _failure_explained(out: dict[str, Any]) -> None:
    """The Catch's task reads the failed task's error and answers the job's readable error."""
    assert "result" in out, out
    assert out["result"]["code"] == "internal_error"
    assert "SourceUnavailable" in out["result"]["message"]


def _keys(*names: str) -> Check:
    def check(out: dict[str, Any]) -> None:
        assert "result" in out, out
        assert set(names) <= set(out["result"]), out

    return check


#: event file name -> what its function answers
EXPECTED: dict[str, Check] = {
    "api.json": _ok(200),
    "api.create-export.json": _ok(202),
    "authorizer.json": _allowed,
    "authorizer.websocket-connect.json": _allowed,
    "ws_connect.json": _ok(200),
    "ws_subscribe.json": _ok(200),
    "ws_subscribe.unsubscribe.json": _ok(200),
    "ws_default.json": _ok(200),
    "ws_disconnect.json": _ok(200),
    **{f"{task}.json": _job_not_found for task in (
        "export_plan", "export_worker", "export_finalize", "import_validate",
        "import_execute", "import_finalize", "import_rollback", "import_failed",
        "backup_verify")},
    "import_validate.stage.json": _job_not_found,
    "restore_shards.json": _job_not_found,
    "restore_shards.finalize.json": _job_not_found,
    "import_await.json": _error("JobCancelled"),  # nothing waits for a job that is not there
    "job_failed.json": _failure_explained,
    "schedule_dispatcher.json": _keys("due", "claimed", "outcomes"),  # nothing due, nothing run
    "retention_sweep.json": _keys("expired", "kept_for_chains"),
}


def _folders() -> dict[str, str]:
    """Function logical id -> its code folder (functions/<folder>/), from the template."""
    return {lid: function.code_dir.name for lid, function in template().functions().items()}


@pytest.mark.parametrize("function", sorted(_folders()))
def test_every_function_has_a_sample_event_with_an_expected_answer(function: str) -> None:
    files = event_files(_folders()[function])
    assert files, f"add events/{_folders()[function]}.json for {function}"
    for path in files:
        assert path.name in EXPECTED, f"say in EXPECTED what {path.name} should answer"


def test_no_event_belongs_to_no_function() -> None:
    named = {path.name for folder in _folders().values() for path in event_files(folder)}
    assert {path.name for path in EVENTS.glob("*.json")} == named


@pytest.mark.parametrize(("function", "event"), sorted(
    (lid, path) for lid, folder in _folders().items() for path in event_files(folder)))
def test_the_sample_event_gets_its_answer(fresh_stack: LocalStack, function: str,
                                          event: Path) -> None:
    EXPECTED[event.name](invoke(fresh_stack, function, event, seed.DEMO_USER_ID))
