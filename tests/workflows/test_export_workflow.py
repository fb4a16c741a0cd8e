"""The real export ASL, executed by moto with in-process Lambdas, driven over HTTP: every format's
package is downloaded and checked against the database, read independently with pymongo."""

from __future__ import annotations

import csv
import functools
import io
import json
import subprocess
import time
import zipfile
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId, json_util
from bson.decimal128 import Decimal128

from dataport.errors import DatabaseRefused
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.packaging.verify import verify_package
from dataport.progress.reporter import ShardReporter
from dataport.progress.throttle import Cadence
from dataport.settings import get_settings
from dataport.source.collections import message_collections
from dataport.source.mongo import connect
from dataport.workflows import export as export_tasks
from dataport.workflows.export import write_session
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, bucket_leftovers, seeded_dataset
from tests.fixtures.faults import EXPORT_WORKER, export_worker, slow_writer

DB_NAME = "dataport_workflow_tests"


class Owned:
    """Everything one user owns, read straight from MongoDB (not through dataport's reader)."""

    def __init__(self, stack: LocalStack, user_id: str) -> None:
        db = connect(stack.mongo_uri, DB_NAME)
        self.projects = list(db.projects.find({"user_id": ObjectId(user_id)}))
        project_ids = [p["_id"] for p in self.projects]
        self.sessions = {s["sessionId"]: s for s in db.sessions.find(
            {"projectId": {"$in": project_ids}})}
        self.messages = {m["uuid"]: m for name in message_collections(db)
                         for m in db[name].find({"sessionId": {"$in": list(self.sessions)}})}
        db.client.close()


dataset = seeded_dataset(DB_NAME, sessions_per_project=4)



@pytest.fixture
def owned(api: Api) -> Owned:
    return Owned(api.stack, api.user_id)


@pytest.fixture
def others(api: Api, dataset: seed.SeedSummary) -> Owned:
    other = next(u.user_id for u in dataset.users if u.user_id != api.user_id)
    return Owned(api.stack, other)


def _members(package: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _check_package(package: Path, others: Owned) -> dict[str, bytes]:
    assert subprocess.run(["unzip", "-tq", str(package)], capture_output=True,
                          check=False).returncode == 0
    verification = verify_package(package)
    assert verification.ok, verification.problems
    members = _members(package)
    everything = b"".join(members.values())
    leaked = [sid for sid in others.sessions if sid.encode() in everything]
    assert not leaked, "another user's sessions are in the package"
    return members


def test_json_package_holds_every_document_exactly(api: Api, owned: Owned, others: Owned,
                                                   tmp_path: Path) -> None:
    members = _check_package(api.export(tmp_path, {"format": "json"}), others)
    sessions: dict[str, dict[str, Any]] = {}
    messages: dict[str, dict[str, Any]] = {}
    for name, data in members.items():
        if name.startswith("conversations-"):
            document = json_util.loads(data, json_options=EXTENDED_JSON_READ_OPTIONS)
            assert document["format"] == "dataport.conversations"
            for entry in document["sessions"]:
                entry.pop("project")
                for message in entry.pop("messages"):
                    messages[message["uuid"]] = message
                sessions[entry["sessionId"]] = entry
    projects = json_util.loads(members["projects.json"], json_options=EXTENDED_JSON_READ_OPTIONS)
    assert {p["_id"] for p in projects["projects"]} == {p["_id"] for p in owned.projects}
    assert sessions == owned.sessions  # field for field, type for type (Decimal128, dates, ids)
    assert messages == owned.messages
    assert any(isinstance(s["totalCost"], Decimal128) for s in sessions.values())
    manifest = json.loads(members["manifest.json"])
    assert manifest["counts"]["messages"] == len(owned.messages)
    assert manifest["counts"]["sessions"] == len(owned.sessions)


def test_jsonl_package_is_claude_code_transcripts(api: Api, owned: Owned, others: Owned,
                                                  tmp_path: Path) -> None:
    members = _check_package(api.export(tmp_path, {"format": "jsonl"}), others)
    transcripts = {n: d for n, d in members.items() if n.endswith(".jsonl")}
    assert {Path(n).stem for n in transcripts} == set(owned.sessions)
    seen: set[str] = set()
    for name, data in transcripts.items():
        session = owned.sessions[Path(name).stem]
        project = next(p for p in owned.projects if p["_id"] == session["projectId"])
        assert name.startswith(f"projects/{project['path'].replace('/', '-')}/")
        for line in filter(None, data.split(b"\n")):  # not splitlines(): U+2028 is data
            record = json.loads(line)
            if record["type"] in {"user", "assistant"}:
                assert record["sessionId"] == session["sessionId"]
                seen.add(record["uuid"])
    originals = {u for u, m in owned.messages.items() if "_tool_" not in u and "_result_" not in u}
    assert originals <= seen | {u.split("_result_")[0] for u in owned.messages}


def test_csv_package_has_one_row_per_session_and_message(api: Api, owned: Owned, others: Owned,
                                                         tmp_path: Path) -> None:
    members = _check_package(api.export(tmp_path, {"format": "csv"}), others)
    for name in ("sessions.csv", "messages.csv"):
        assert members[name].startswith("\ufeff".encode())
    sessions = list(csv.DictReader(io.StringIO(members["sessions.csv"].decode("utf-8-sig"))))
    messages = list(csv.DictReader(io.StringIO(members["messages.csv"].decode("utf-8-sig"))))
    assert {row["sessionId"] for row in sessions} == set(owned.sessions)
    assert {row["uuid"] for row in messages} == set(owned.messages)
    total = sum((Decimal(r["totalCost"]) for r in sessions if r["totalCost"]), Decimal())
    assert total == sum((s["totalCost"].to_decimal() for s in owned.sessions.values()), Decimal())


def test_markdown_package_has_a_readable_page_per_session(api: Api, owned: Owned, others: Owned,
                                                          tmp_path: Path) -> None:
    members = _check_package(api.export(tmp_path, {"format": "markdown"}), others)
    pages = {n: d.decode() for n, d in members.items() if n.endswith(".md")}
    assert len(pages) == len(owned.sessions)
    for session in owned.sessions.values():
        page = next(text for name, text in pages.items() if session["sessionId"][:8] in name)
        assert page.startswith(f"# {session['summary']}")


def test_a_job_larger_than_one_invocation_still_makes_one_complete_zip(
        api: Api, owned: Owned, others: Owned, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sessions a page, a worker that hands its cursor on after every page, shards of three
    sessions: many invocations and parallel shards, one zip with every message exactly once."""
    for name, value in {"PAGE_SIZE": "2", "SHARD_TARGET_SESSIONS": "3",
                        "WORKER_RESERVE_MS": "60000"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    api.stack.set_function_timeout("ExportWorkerFunction", 60_000)  # hand on after each page
    try:
        package = api.export(tmp_path, {"format": "json"})
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    members = _check_package(package, others)
    parts = sorted(n for n in members if n.startswith("conversations-"))
    assert len(parts) >= len(owned.sessions) // 2
    uuids: list[str] = []
    for name in parts:
        document = json.loads(members[name])
        uuids += [m["uuid"] for s in document["sessions"] for m in s["messages"]]
    assert sorted(uuids) == sorted(owned.messages)


@pytest.mark.parametrize(("fault", "code", "said"), [
    (RuntimeError("disk on fire"), "internal_error", None),  # unforeseen: the job id to quote
    (DatabaseRefused("MongoDB refused the read: not authorized."), "database_refused",
     "not authorized"),  # the shard's own reason reaches the user, not the Map Run's
])
def test_a_worker_failing_mid_export_leaves_nothing_behind(
        api: Api, monkeypatch: pytest.MonkeyPatch, fault: Exception, code: str,
        said: str | None) -> None:
    """The failure comes in the third invocation: earlier ones have staged files by then."""
    monkeypatch.setenv("PAGE_SIZE", "2")
    monkeypatch.setenv("WORKER_RESERVE_MS", "60000")
    api.stack.set_function_timeout("ExportWorkerFunction", 60_000)  # hand on after each page
    get_settings.cache_clear()
    written = 0

    def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal written
        written += 1
        if written == 5:
            raise fault
        return write_session(*args, **kwargs)

    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(failing))
    try:
        job = api.wait(api.start_export({"format": "json", "options": {"splitSizeMb": 1}}))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert job["status"] == "failed"
    assert job["error"]["code"] == code
    assert (said or job["jobId"]) in job["error"]["message"]
    assert bucket_leftovers(api.stack, job["jobId"]) == {"objects": [], "uploads": []}
    assert api.request("GET", f"/exports/{job['jobId']}/download").status_code == 404


def test_cancelling_mid_export_stops_it_and_leaves_nothing_behind(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    slow, writing = slow_writer(0.15)

    monkeypatch.setenv("PAGE_SIZE", "1")
    get_settings.cache_clear()
    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(slow))
    try:
        job_id = api.start_export({"format": "csv"})
        assert writing.wait(20)
        cancelled = api.request("DELETE", f"/exports/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        deadline = time.monotonic() + 20
        while bucket_leftovers(api.stack, job_id) != {"objects": [], "uploads": []}:
            assert time.monotonic() < deadline, bucket_leftovers(api.stack, job_id)
            time.sleep(0.1)
        api.stack.wait_until_quiet()  # a worker still running must not write after the cancel
        assert bucket_leftovers(api.stack, job_id) == {"objects": [], "uploads": []}
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert api.job(job_id)["status"] == "cancelled"
    execution = api.stack.client("stepfunctions").describe_execution(
        executionArn=_execution_arn(api.stack, job_id))
    assert execution["status"] in {"ABORTED", "FAILED"}


def _execution_arn(stack: LocalStack, job_id: str) -> str:
    machine = stack.state_machines["ExportStateMachine"]
    return machine.replace(":stateMachine:", ":execution:") + f":{job_id}"


def test_pdf_package_is_a_readable_document_with_every_session(
        api: Api, owned: Owned, others: Owned, tmp_path: Path) -> None:
    members = _check_package(api.export(tmp_path, {"format": "pdf"}), others)
    volumes = sorted(n for n in members if n.endswith(".pdf"))
    assert volumes
    assert volumes[0] == "conversations-0001.pdf"
    text = ""
    for name in volumes:
        path = tmp_path / name
        path.write_bytes(members[name])
        assert subprocess.run(["pdfinfo", str(path)], capture_output=True,
                              check=False).returncode == 0
        text += subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                               check=True).stdout
    flat = " ".join(text.split())
    for session in owned.sessions.values():
        assert session["sessionId"] in flat
        summary = " ".join(session["summary"].split())[:30]
        if not any("\u0590" <= c <= "\u08ff" for c in summary):  # RTL is drawn unshaped
            assert summary in flat


def _json_content(members: dict[str, bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    sessions: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, data in members.items():
        if name.startswith("conversations-"):
            document = json_util.loads(data, json_options=EXTENDED_JSON_READ_OPTIONS)
            for entry in document["sessions"]:
                for message in entry.pop("messages"):
                    messages[message["uuid"]] = message
                sessions[entry["sessionId"]] = entry
    return sessions, messages


def _export_with(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 env: dict[str, str]) -> tuple[dict[str, bytes], str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        job_id = api.start_export({"format": "json"})
        job = api.wait(job_id)
        assert job["status"] == "succeeded", job
        package = api.download(job_id, tmp_path / f"{job_id}.zip")
    finally:
        for name in env:
            monkeypatch.delenv(name, raising=False)
        get_settings.cache_clear()
    return _members(package), job_id


def _map_run(stack: LocalStack, job_id: str) -> dict[str, Any]:
    sfn = stack.client("stepfunctions")
    (run,) = sfn.list_map_runs(executionArn=_execution_arn(stack, job_id))["mapRuns"]
    described: dict[str, Any] = sfn.describe_map_run(mapRunArn=run["mapRunArn"])
    return described


def test_several_shards_make_the_same_package_as_one(
        api: Api, owned: Owned, others: Owned, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same data through one shard and through a Distributed Map of several (each a child
    of its own): the same sessions and messages, field for field; the parent's history is the
    same 18 events whatever the number of shards (tests/workflows/test_limits.py)."""
    one, one_id = _export_with(api, tmp_path, monkeypatch, {"EXPORT_CONCURRENCY": "1"})
    many, many_id = _export_with(api, tmp_path, monkeypatch, {"SHARD_TARGET_SESSIONS": "2"})
    assert _map_run(api.stack, one_id)["itemCounts"]["total"] == 1
    shards = _map_run(api.stack, many_id)["itemCounts"]
    assert shards["total"] >= 4
    assert shards["succeeded"] == shards["total"]
    for members in (one, many):
        _check_package_members(members, others)
    assert _json_content(one) == _json_content(many)
    sessions, messages = _json_content(many)
    assert set(sessions) == set(owned.sessions)
    assert set(messages) == set(owned.messages)
    projects = [json_util.loads(m["projects.json"], json_options=EXTENDED_JSON_READ_OPTIONS)
                ["projects"] for m in (one, many)]  # the header names each job
    assert projects[0] == projects[1]
    for job_id in (one_id, many_id):
        history = list(api.stack.execution_history(_execution_arn(api.stack, job_id)))
        assert len(history) == 18, [e["type"] for e in history]
        assert bucket_leftovers(api.stack, job_id)["uploads"] == []


def _check_package_members(members: dict[str, bytes], others: Owned) -> None:
    everything = b"".join(members.values())
    assert not [sid for sid in others.sessions if sid.encode() in everything]


def test_cancelling_a_sharded_export_stops_every_shard(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several shards running at once when the export is cancelled: StopExecution of the parent
    ends the Map Run (its children: aborted, none running), nothing is left in the bucket."""
    slow, writing = slow_writer(0.1)

    monkeypatch.setenv("PAGE_SIZE", "1")
    monkeypatch.setenv("SHARD_TARGET_SESSIONS", "2")
    get_settings.cache_clear()
    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(slow))
    try:
        job_id = api.start_export({"format": "csv"})
        assert writing.wait(20)
        cancelled = api.request("DELETE", f"/exports/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        api.stack.wait_until_quiet()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert api.job(job_id)["status"] == "cancelled"
    execution = api.stack.client("stepfunctions").describe_execution(
        executionArn=_execution_arn(api.stack, job_id))
    assert execution["status"] in {"ABORTED", "FAILED"}  # as the one-shard test (moto)
    # no child left running: wait_until_quiet saw every interpreter thread and invocation end;
    # moto's executionCounts never count a stopped child down, its itemCounts do
    items = _map_run(api.stack, job_id)["itemCounts"]
    assert items["running"] == 0
    assert items["total"] >= 2
    assert items["succeeded"] < items["total"]
    assert bucket_leftovers(api.stack, job_id) == {"objects": [], "uploads": []}


class _Unhurried(Cadence):
    """The plan's and finalizer's cadence, never due after its first try: the events that only
    a slow plan or assembly sends stay out of the count below."""

    def __init__(self, interval_ms: int = 3_600_000) -> None:
        super().__init__(interval_ms)


def _dynamodb_calls(stack: LocalStack) -> dict[str, Counter[str]]:
    """DynamoDB operations per export task, as the local runtime recorded them (botocore's
    `_make_api_call` on the real clients, against moto)."""
    calls: dict[str, Counter[str]] = defaultdict(Counter)
    for call in stack.runtime.calls:
        if call.service == "dynamodb" and call.logical_id.startswith("Export"):
            calls[call.logical_id][call.operation] += 1
    return calls


def test_the_control_plane_is_a_few_calls_per_invocation_whatever_the_size(
        api: Api, owned: Owned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB calls per task of a one-shard export, for one project's sessions and for all
    of them: the same few calls each time, none per session, message or file (jsonl: a file
    per session). With the once-a-second flushes and the slow-phase events out of the way
    (they depend on time, not on data):

    plan      take the job (UpdateItem), the projects file's records and the shard rows
              (BatchWriteItem), counts + `exporting` + the event's seq (UpdateItem), its
              subscribers (Query)
    worker    the job (GetItem), job + shards = the cancel check (Query), file records +
              shard row (BatchWriteItem), progress + claim (UpdateItem), subscribers when the
              claim was granted (Query)
    finalize  job, shards and file records (Query), succeeded + the terminal seq
              (UpdateItem), subscribers (Query)"""
    monkeypatch.setattr(export_tasks, "ShardReporter",
                        functools.partial(ShardReporter, interval_ms=3_600_000))
    monkeypatch.setattr(export_tasks, "Cadence", _Unhurried)
    project = str(owned.projects[0]["_id"])
    counted: list[dict[str, Counter[str]]] = []
    for filters in ({"projectIds": [project]}, {}):
        api.stack.runtime.reset()
        api.export(tmp_path, {"format": "jsonl", "filters": filters})
        counted.append(_dynamodb_calls(api.stack))
    small, large = counted
    worker = "ExportWorkerFunction"
    assert small["ExportPlanFunction"] == large["ExportPlanFunction"] == Counter(
        {"UpdateItem": 2, "BatchWriteItem": 1, "Query": 1})
    assert small["ExportFinalizeFunction"] == large["ExportFinalizeFunction"] == Counter(
        {"Query": 2, "UpdateItem": 1})
    base = Counter({"GetItem": 1, "Query": 1, "BatchWriteItem": 1, "UpdateItem": 1})
    for calls in (small[worker], large[worker]):
        # the subscribers' Query only when the worker's event was not throttled
        assert calls in (base, base + Counter({"Query": 1})), calls
    assert len(owned.sessions) > 2 * len({s["sessionId"] for s in owned.sessions.values()
                                          if str(s["projectId"]) == project})
