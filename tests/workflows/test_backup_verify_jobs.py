"""A backup's verification as a job, on the local stack: POST /backups/{id}/verify answers 202
for a backup larger than VerifySyncMaxBytes (or with `background`), the real verify ASL runs
the whole-object pass and the member passes (several, when the time budget is short), progress
reaches the WebSocket with kind `verify`, and the verdict lands on the backup: intact
(`verifiedAt`), or `corrupted` naming the member. A failing task ends the job failed and the
backup's verification says so, its status unchanged. Another user sees none of it. A running
verification or preview job can be cancelled (between chunks or lines): it ends `cancelled`,
records nothing, and the backup's status stays."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dataport.api import backups as api_backups
from dataport.backups import preview as backup_preview
from dataport.backups import verify as backup_verify
from dataport.engine import WorkflowUnavailable
from dataport.progress.events import (
    CancelledEvent,
    ErrorEvent,
    FailedEvent,
    JobEvent,
    ProgressEvent,
    SnapshotEvent,
    SucceededEvent,
)
from dataport.settings import get_settings
from dataport.workflows import verify as verify_workflow
from infrastructure.local.progress_client import ProgressSocket
from tests.e2e.api_client import Api, seeded_dataset
from tests.infrastructure.iam import assert_calls_allowed
from tests.workflows.test_backups import Stored, _flip_member_byte, _object_key, backup, download

DB_NAME = "dataport_verify_job_tests"
VERIFIER = "BackupVerifyFunction"

dataset = seeded_dataset(DB_NAME, sessions_per_project=3)




@pytest.fixture
def short_passes(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each member pass stops after one member (its budget is all reserve): the state machine
    loops Members until the last one."""
    monkeypatch.setenv("WORKER_RESERVE_MS", "60000")
    api.stack.set_function_timeout(VERIFIER, 60_000)
    get_settings.cache_clear()
    yield
    api.stack.set_function_timeout(VERIFIER, None)
    monkeypatch.undo()
    get_settings.cache_clear()


def verify_in_background(api: Api, backup_id: str, **body: Any) -> dict[str, Any]:
    answer = api.request("POST", f"/backups/{backup_id}/verify",
                         json={"background": True, **body})
    assert answer.status_code == 202, answer.text
    accepted: dict[str, Any] = answer.json()
    assert accepted["verification"]["status"] == "running"
    assert answer.headers["Location"] == f"/backups/{backup_id}"
    return accepted


def ended(events: list[JobEvent], kind: type[SucceededEvent | FailedEvent | CancelledEvent],
          status: str) -> bool:
    """The job's last event is its end (or, when it ended before the subscription, the
    snapshot that says so)."""
    last = events[-1]
    return isinstance(last, kind) or (isinstance(last, SnapshotEvent)
                                      and last.status.value == status)


def verification(api: Api, backup_id: str, timeout: float = 90) -> dict[str, Any]:
    """The backup once its verification job ended."""
    deadline = time.monotonic() + timeout
    while True:
        shown: dict[str, Any] = api.request("GET", f"/backups/{backup_id}").json()
        if shown["verification"]["status"] != "running":
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)


@pytest.mark.usefixtures("short_passes")
def test_a_verification_job_checks_every_member_in_passes_and_reports_over_the_websocket(
        api: Api) -> None:
    made = backup(api, {"name": "checked later"})
    stored = Stored(download(api, made["backupId"]))
    with ProgressSocket(api.stack.ws_url, api.stack.token_for(api.user_id)) as socket:
        accepted = verify_in_background(api, made["backupId"])
        socket.subscribe(accepted["jobId"])
        events = list(socket.follow(accepted["jobId"], timeout=90))
    shown = verification(api, made["backupId"])
    result = shown["verification"]
    assert (shown["status"], result["status"], result["ok"]) == ("completed", "completed", True)
    assert result["members"] == len(stored.manifest["members"]) > 2
    assert result["records"] == sum(e["records"] for e in stored.manifest["members"])
    assert result["sha256"] == made["sha256"]
    assert shown["verifiedAt"] is not None
    assert {event.kind.value for event in events} == {"verify"}
    assert ended(events, SucceededEvent, "succeeded")
    assert all(e.progress.phase in {"hashing", "verifying"} for e in events
               if isinstance(e, ProgressEvent))
    # one invocation per member (the budget), each recorded how far it got
    members_calls = [d for d in api.stack.call_details
                     if d.call.logical_id == VERIFIER and d.call.service == "s3"]
    assert len(members_calls) > len(stored.manifest["members"])
    assert_calls_allowed(api.stack)


def test_a_flipped_byte_is_found_by_the_job_named_and_marks_the_backup_corrupted(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    made = backup(api, {"name": "damaged later"})
    stored = Stored(download(api, made["backupId"]))
    member = next(e["path"] for e in stored.manifest["members"]
                  if e["collection"] == "sessions")
    _flip_member_byte(api.stack, _object_key(api.stack, made["backupId"]), member)
    monkeypatch.setenv("VERIFY_SYNC_MAX_BYTES", "0")  # no `background`: the size decides
    get_settings.cache_clear()
    try:
        answer = api.request("POST", f"/backups/{made['backupId']}/verify")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert answer.status_code == 202, answer.text
    shown = verification(api, made["backupId"])
    assert shown["status"] == "corrupted"
    assert shown["corruptedMember"] == member
    assert member in shown["error"]["message"]
    result = shown["verification"]
    assert (result["status"], result["ok"], result["member"]) == ("completed", False, member)
    assert member in result["problem"]
    assert api.request("GET", f"/backups/{made['backupId']}/download").status_code == 409


def test_a_failing_task_ends_the_job_failed_and_leaves_the_backup_as_it_was(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    made = backup(api, {"name": "verified by a broken task"})

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event.get("step") == "members":
            raise RuntimeError("the disk is on fire")
        from functions.backup_verify.handler import lambda_handler  # noqa: PLC0415
        result: dict[str, Any] = lambda_handler(event, context)
        return result

    monkeypatch.setitem(api.stack.handler_overrides, VERIFIER, broken)
    with ProgressSocket(api.stack.ws_url, api.stack.token_for(api.user_id)) as socket:
        accepted = verify_in_background(api, made["backupId"])
        socket.subscribe(accepted["jobId"])
        events = list(socket.follow(accepted["jobId"], timeout=90))
    shown = verification(api, made["backupId"])
    assert shown["status"] == "completed"  # not corrupted: nothing was found damaged
    assert shown.get("verifiedAt") is None
    result = shown["verification"]
    assert result["status"] == "failed"
    assert result["error"]["code"] == "internal_error"
    assert ended(events, FailedEvent, "failed")
    # a new verification can be asked for at once (the failed one is not "running")
    monkeypatch.undo()
    again = verify_in_background(api, made["backupId"])
    assert again["jobId"] != accepted["jobId"]
    assert verification(api, made["backupId"])["verification"]["ok"] is True


def test_an_encrypted_backup_is_verified_by_a_job_with_its_password(api: Api) -> None:
    password = "verify-me-Later-9"
    made = backup(api, {"name": "sealed", "password": password})
    missing = api.request("POST", f"/backups/{made['backupId']}/verify",
                          json={"background": True})
    assert missing.status_code == 400, missing.text
    wrong = api.request("POST", f"/backups/{made['backupId']}/verify",
                        json={"background": True, "password": "not-the-password"})
    assert wrong.status_code == 400, wrong.text
    assert wrong.json()["error"]["details"]["field"] == "password"
    verify_in_background(api, made["backupId"], password=password)
    result = verification(api, made["backupId"])["verification"]
    assert (result["status"], result["ok"]) == ("completed", True)


def test_another_user_can_neither_verify_nor_see_nor_follow_it(api: Api, intruder: Api) -> None:
    made = backup(api, {"name": "mine alone"})
    answer = intruder.request("POST", f"/backups/{made['backupId']}/verify",
                              json={"background": True})
    assert answer.status_code == 404, answer.text
    accepted = verify_in_background(api, made["backupId"])
    assert intruder.request("GET", f"/backups/{made['backupId']}").status_code == 404
    with ProgressSocket(api.stack.ws_url, api.stack.token_for(intruder.user_id)) as socket:
        socket.subscribe(accepted["jobId"])
        refused = socket.receive()
    assert isinstance(refused, ErrorEvent)
    assert (refused.code, refused.job_id) == ("not_found", accepted["jobId"])
    assert verification(api, made["backupId"])["verification"]["ok"] is True


def test_a_large_backups_preview_is_a_job_whose_answer_equals_the_synchronous_one(
        api: Api, intruder: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    made = backup(api, {"name": "previewed"})
    path = f"/backups/{made['backupId']}/preview"
    now = api.request("GET", path)
    assert now.status_code == 200, now.text
    monkeypatch.setenv("VERIFY_SYNC_MAX_BYTES", "0")
    get_settings.cache_clear()
    try:
        with ProgressSocket(api.stack.ws_url, api.stack.token_for(api.user_id)) as socket:
            answer = api.request("GET", path)
            assert answer.status_code == 202, answer.text
            accepted = answer.json()
            socket.subscribe(accepted["jobId"])
            events = list(socket.follow(accepted["jobId"], timeout=90))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert ended(events, SucceededEvent, "succeeded")
    assert {event.kind.value for event in events} == {"verify"}
    result = accepted["links"]["result"]
    assert result == f"{path}/{accepted['jobId']}"
    done = api.request("GET", result)
    assert done.status_code == 200, done.text
    assert done.json() == now.json()
    assert done.json()["projectsTotal"] == len(done.json()["projects"]) > 0
    # another user's view of it, and a job that is no preview of this backup: 404
    assert intruder.request("GET", result).status_code == 404
    other = backup(api, {"name": "another"})
    assert api.request("GET", f"/backups/{other['backupId']}/preview/{accepted['jobId']}"
                       ).status_code == 404
    # a preview job leaves the backup's record as it was
    assert api.request("GET", f"/backups/{made['backupId']}").json().get("verification") is None
    assert_calls_allowed(api.stack)  # the preview task reaches MongoDB through its secret


# ------------------------------------------------------------------------------ cancelling


@pytest.fixture
def every_beat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tasks' watch reads the job at every beat (not once a second), and a member pass
    beats at every line: a cancel is seen at the first line after it."""
    monkeypatch.setattr(verify_workflow, "PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(backup_verify, "LINES_PER_BEAT", 1)
    monkeypatch.setattr(backup_preview, "BATCH", 1)


class Gate:
    """Holds a running task at its first beat (`reached`) until the test `release`s it, so the
    test cancels while the task is mid-pass."""

    def __init__(self) -> None:
        self.reached, self.released = threading.Event(), threading.Event()

    def wrap(self, beat: Callable[[], None]) -> Callable[[], None]:
        def held() -> None:
            if not self.reached.is_set():
                self.reached.set()
                assert self.released.wait(60)
            beat()
        return held


def results_of(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each invocation of the verify function answered (the state machine's input)."""
    answers: list[dict[str, Any]] = []

    def recorded(event: dict[str, Any], context: Any) -> dict[str, Any]:
        from functions.backup_verify.handler import lambda_handler  # noqa: PLC0415
        result: dict[str, Any] = lambda_handler(event, context)
        answers.append({"step": event.get("step"), **result})
        return result

    monkeypatch.setitem(api.stack.handler_overrides, VERIFIER, recorded)
    return answers


def verify_execution(api: Api, job_id: str) -> dict[str, Any]:
    machine = api.stack.state_machines["VerifyStateMachine"]
    arn = machine.replace(":stateMachine:", ":execution:") + f":{job_id}"
    return dict(api.stack.client("stepfunctions").describe_execution(executionArn=arn))


@pytest.mark.usefixtures("every_beat")
def test_a_verification_cancelled_mid_member_ends_cancelled_and_leaves_the_backup_as_it_was(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    made = backup(api, {"name": "cancelled check"})
    gate, original = Gate(), backup_verify.check_members

    def gated(stream: Any, password: Any, progress: Any, keep_going: Callable[[], bool],
              reading: Callable[[], None]) -> Any:
        return original(stream, password, progress, keep_going, gate.wrap(reading))

    monkeypatch.setattr(verify_workflow, "check_members", gated)
    answers = results_of(api, monkeypatch)
    with ProgressSocket(api.stack.ws_url, api.stack.token_for(api.user_id)) as socket:
        accepted = verify_in_background(api, made["backupId"])
        socket.subscribe(accepted["jobId"])
        assert gate.reached.wait(60)  # the member pass is inside a member
        answer = api.request("DELETE", f"/backups/{made['backupId']}/verify")
        gate.released.set()
        events = list(socket.follow(accepted["jobId"], timeout=60))
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert (shown["status"], shown["verification"]["status"]) == ("completed", "cancelled")
    assert shown["verification"]["error"]["code"] == "cancelled"
    assert isinstance(events[-1], CancelledEvent) or ended(events, CancelledEvent, "cancelled")
    api.stack.wait_until_quiet()
    # the task saw the cancel at its next line and recorded nothing: no verdict, no verifiedAt
    assert answers[-1] == {"step": "members", "jobId": accepted["jobId"], "done": True,
                           "cancelled": True}
    after = api.request("GET", f"/backups/{made['backupId']}").json()
    assert (after["status"], after["verification"]["status"]) == ("completed", "cancelled")
    assert after.get("verifiedAt") is None
    assert after["verification"].get("ok") is None
    assert verify_execution(api, accepted["jobId"])["status"] == "ABORTED"
    again = api.request("DELETE", f"/backups/{made['backupId']}/verify")
    assert again.status_code == 409, again.text
    # a new verification runs at once, to the end
    monkeypatch.undo()
    verify_in_background(api, made["backupId"])
    assert verification(api, made["backupId"])["verification"]["ok"] is True
    assert_calls_allowed(api.stack)


@pytest.mark.usefixtures("every_beat")
def test_a_task_sees_the_cancel_itself_when_the_execution_could_not_be_stopped(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    made = backup(api, {"name": "cancelled while hashing"})
    gate = Gate()
    original = verify_workflow._Watch.tick

    def held(self: Any, **progress: Any) -> None:
        gate.wrap(lambda: original(self, **progress))()

    def unavailable(job: Any) -> None:
        raise WorkflowUnavailable("Step Functions did not answer")

    monkeypatch.setattr(verify_workflow._Watch, "tick", held)
    monkeypatch.setattr(api_backups, "_stop_execution", unavailable)
    accepted = verify_in_background(api, made["backupId"])
    assert gate.reached.wait(60)  # the whole-object pass, between two chunks
    answer = api.request("DELETE", f"/backups/{made['backupId']}/verify")
    gate.released.set()
    assert answer.status_code == 200, answer.text
    api.stack.wait_until_quiet()
    # the state machine's check: the task answered `cancelled`, the execution ended there
    execution = verify_execution(api, accepted["jobId"])
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"jobId": accepted["jobId"], "done": True,
                                               "cancelled": True}
    after = api.request("GET", f"/backups/{made['backupId']}").json()
    assert (after["status"], after["verification"]["status"]) == ("completed", "cancelled")
    assert after["verification"].get("sha256") is None  # the hash was never recorded


@pytest.mark.usefixtures("every_beat")
def test_a_preview_job_can_be_cancelled_by_its_owner_only(
        api: Api, intruder: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    made = backup(api, {"name": "preview cancelled"})
    gate, original = Gate(), verify_workflow.compute_preview

    def gated(record: Any, secret: Any, beat: Callable[[], None]) -> Any:
        return original(record, secret, gate.wrap(beat))

    monkeypatch.setattr(verify_workflow, "compute_preview", gated)
    monkeypatch.setenv("VERIFY_SYNC_MAX_BYTES", "0")
    get_settings.cache_clear()
    path = f"/backups/{made['backupId']}/preview"
    try:
        with ProgressSocket(api.stack.ws_url, api.stack.token_for(api.user_id)) as socket:
            accepted = api.request("GET", path).json()
            socket.subscribe(accepted["jobId"])
            assert gate.reached.wait(60)  # comparing sessions with the target
            job_path = f"{path}/{accepted['jobId']}"
            assert intruder.request("DELETE", job_path).status_code == 404
            answer = api.request("DELETE", job_path)
            gate.released.set()
            events = list(socket.follow(accepted["jobId"], timeout=60))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    assert ended(events, CancelledEvent, "cancelled")
    api.stack.wait_until_quiet()
    result = api.request("GET", job_path)
    assert result.status_code == 409, result.text
    assert result.json()["error"]["details"]["status"] == "cancelled"
    assert api.request("DELETE", job_path).status_code == 409
    assert api.request("GET", f"/backups/{made['backupId']}").json().get("verification") is None
