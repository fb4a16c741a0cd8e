"""DynamoDB calls per import task, counted as the local runtime records them (botocore's
`_make_api_call` on the real clients, against moto): a few per invocation, the same for an
upload of one project's sessions and of all of them, none per session or message."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import monitoring
from pymongo.database import Database

from dataport.progress.throttle import Cadence
from dataport.settings import get_settings
from dataport.source.collections import (
    PROJECTS,
    SESSIONS,
    is_message_collection,
    message_collections,
)
from dataport.source.mongo import Document
from dataport.source.staging import STAGING
from dataport.workflows import imports as import_tasks
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.benchmarks.import_bench import write_input
from tests.e2e.api_client import Api, listen_to_mongodb, seeded_db
from tests.e2e.import_client import EMPTY_USER, Importer


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_import", sessions_per_project=4) as database:
        yield database


class _Unhurried(Cadence):
    """The tasks' cadence, never due after its first try: the once-a-second looks at the job
    (a cancel) and progress reports depend on time, not on the data, and stay out of the count."""

    def __init__(self, interval_ms: int = 0) -> None:
        super().__init__(3_600_000)


def _dynamodb_calls(stack: LocalStack) -> dict[str, Counter[str]]:
    calls: dict[str, Counter[str]] = defaultdict(Counter)
    for call in stack.runtime.calls:
        if call.service == "dynamodb" and call.logical_id.startswith("Import"):
            calls[call.logical_id.removeprefix("Import").removesuffix("Function")][
                call.operation] += 1
    return calls


def _states_entered(stack: LocalStack, job_id: str) -> list[str]:
    sfn = stack.client("stepfunctions")
    (execution,) = [e for e in sfn.list_executions(
        stateMachineArn=stack.state_machines["ImportStateMachine"])["executions"]
        if e["name"] == job_id]
    return [event["stateEnteredEventDetails"]["name"]
            for event in stack.execution_history(execution["executionArn"])
            if event["type"].endswith("StateEntered")]


def test_an_import_of_new_sessions_makes_a_few_control_plane_calls_whatever_its_size(
        db: Database[Document], fresh_stack: LocalStack, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Into an account with no data (every session new: validation compares too, no Stage
    invocation), with the time-driven looks out of the way:

    validate  start + the `validating` event's seq (UpdateItem), its subscribers (Query), the
              upload's pin (UpdateItem), the report with its comparison (UpdateItem)
    await     awaiting_decision + the task token (UpdateItem)
    execute   the job (GetItem), progress + the `importing` event's claim (UpdateItem), its
              subscribers when the claim was granted (Query)
    finalize  the job (GetItem), the outcome before staging is dropped (UpdateItem), succeeded
              + the terminal event's seq (UpdateItem), its subscribers (Query)"""
    monkeypatch.setattr(import_tasks, "Cadence", _Unhurried)
    owner = Api(fresh_stack, seed.DEMO_USER_ID)
    newcomer = Importer(Api(fresh_stack, EMPTY_USER))
    owned = [str(p["_id"]) for p in db[PROJECTS].find() if str(p["user_id"]) == seed.DEMO_USER_ID]
    assert len(owned) > 2
    counted, sizes = [], []
    for filters in ({"projectIds": owned[:1]}, {}):
        package = owner.export(tmp_path, {"format": "json", "filters": filters}).read_bytes()
        fresh_stack.runtime.reset()
        job = newcomer.validated(package)
        assert job["status"] == "awaiting_decision", job
        assert job["report"]["conflicts"]["newSessions"] == job["report"]["counts"]["sessions"]
        done = newcomer.decide(job["jobId"], strategy="merge")
        assert done["status"] == "succeeded", done
        counted.append(_dynamodb_calls(fresh_stack))
        entered = _states_entered(fresh_stack, job["jobId"])
        assert "Stage" not in entered  # compared by validation
        assert "RunPass" not in entered  # the pass fit its first invocation
        assert entered.count("ExecuteInline") == 1
        sizes.append(done["outcome"]["sessions"]["inserted"])
        if not filters:
            break
        # rolled back: the next upload's sessions are new to the account again
        assert newcomer.api.request("POST", f"/imports/{job['jobId']}/rollback").status_code == 202
        assert newcomer.wait(job["jobId"], {"rolled_back", "failed"})["status"] == "rolled_back"
    # sessions the account has are compared message by message in Stage's own invocation
    again = newcomer.validated(package)
    assert again["report"]["conflicts"]["newSessions"] == 0, again
    assert again["report"]["conflicts"]["identicalSessions"] == sizes[1]
    assert "Stage" in _states_entered(fresh_stack, again["jobId"])
    small, large = counted
    assert sizes[1] > 2 * sizes[0]
    for calls in (small, large):
        assert calls["Validate"] == Counter({"UpdateItem": 3, "Query": 1})
        assert calls["Await"] == Counter({"UpdateItem": 1})
        assert calls["Execute"] in (Counter({"GetItem": 1, "UpdateItem": 1}),
                                    Counter({"GetItem": 1, "UpdateItem": 1, "Query": 1}))
        assert calls["Finalize"] == Counter({"GetItem": 1, "UpdateItem": 2, "Query": 1})
        assert sum(sum(c.values()) for c in calls.values()) <= 12


class _Commands(monitoring.CommandListener):
    """MongoDB commands the functions send, by (command, collection kind)."""

    def __init__(self) -> None:
        self.sent: Counter[tuple[str, str]] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self.sent[event.command_name, _kind(target if isinstance(target, str) else "")] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _kind(collection: str) -> str:
    if collection == STAGING:
        return "staging"
    if collection in (SESSIONS, PROJECTS):
        return collection
    return "messages" if is_message_collection(collection) else collection or "-"


def test_the_execution_of_new_sessions_sends_mongodb_a_few_commands_per_batch(
        db: Database[Document], fresh_stack: LocalStack, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What Execute and Finalize send MongoDB for an upload of sessions new to the account
    (a command listener on the functions' client; the time-driven looks out of the way), per
    batch of `import_batch_ops` messages: one insert of its messages, one of its sessions, one
    update that marks its sessions `writing` and the batch before it `done` (the last batch's
    `done` marks one more), and the held-uuid look-up
    (one find per message collection); nothing per session or per message, and no staged
    uuid read back (the identities are decided from the streamed records)."""
    monkeypatch.setattr(import_tasks, "Cadence", _Unhurried)
    listener = _Commands()
    listen_to_mongodb(monkeypatch, listener)
    upload = tmp_path / "sessions.json"
    sessions, messages = write_input(upload, 1_500_000)
    newcomer = Importer(Api(fresh_stack, EMPTY_USER))
    job = newcomer.validated(upload.read_bytes(), "sessions.json")
    assert job["status"] == "awaiting_decision", job
    listener.sent.clear()
    done = newcomer.decide(job["jobId"], strategy="merge")
    assert done["status"] == "succeeded", done
    assert done["outcome"]["messages"]["inserted"] == messages
    sent = +listener.sent
    batches = -(-messages // get_settings().import_batch_ops)
    collections = len(message_collections(db))  # the seeded months and the upload's
    assert sessions > 2 * batches
    assert batches >= 2
    assert sent["insert", "messages"] == batches  # the upload's messages are in one month
    assert sent["insert", SESSIONS] == batches
    assert sent["update", "staging"] == batches + 1
    assert sent["find", "messages"] == collections * batches
    assert sent["find", "staging"] <= 7  # index entries, projects, recover, the outcome
    # the rest is per invocation: indexes, layouts, projects, the outcome, staging dropped
    assert sum(sent.values()) - 4 * batches - collections * batches <= 31, sorted(sent.items())


