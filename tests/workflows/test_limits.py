"""Step Functions limits (issue 10, item 6): a model of the history events and the largest state
payload of the export and import workflows, computed for data sizes up to 10^10 messages.

Events per state, from the AWS history event types (API HistoryEvent; what moto's interpreter
records too, checked against a real local run in test_export_shards_workflow.py):
  execution             ExecutionStarted + ExecutionSucceeded                               2
  Task lambda:invoke    TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded,
                        TaskStateExited                                                     5
    each retry          TaskFailed + TaskScheduled + TaskStarted                           +3
  Task .waitForTaskToken  as a Task, plus TaskSubmitted                                     6
  Choice / Pass / Succeed  <Type>StateEntered + <Type>StateExited                           2
  Map INLINE            MapStateEntered, MapStateStarted, MapStateSucceeded, MapStateExited 4
    each iteration      MapIterationStarted + MapIterationSucceeded (+ its states' events)  2
  Map DISTRIBUTED       the above 4 + MapRunStarted + MapRunSucceeded, whatever the items;  6
                        each item is a child execution with a history of its own
Limits: 25,000 events per execution's history, 256 KiB per state input/output.

A worker invocation writes for WORKER_BUDGET_S (Timeout 900 s less WORKER_RESERVE_MS 60 s);
RATE is a pessimistic export rate in messages/s (the import benchmark measured ~1,900, docs/
imports.md), so invocation counts are upper bounds. The worst case retries every invocation
MaxAttempts times (from the ASL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from math import ceil
from pathlib import Path
from typing import Any

import pytest

from dataport.models.imports import MAX_DRY_RUNS
from dataport.models.tasks import (
    ExportPlan,
    ImportStep,
    RestoreShardsTask,
    ShardCursor,
    ShardList,
    TaskError,
)
from dataport.settings import Settings, get_settings
from dataport.workflows.shards import ShardSizing

ROOT = Path(__file__).resolve().parents[2]
EVENTS_LIMIT = 25_000
PAYLOAD_LIMIT = 256 * 1024
WORKER_BUDGET_S = 900 - 60
RATE = 250  # messages/s, pessimistic
PER_INVOCATION = RATE * WORKER_BUDGET_S  # 210,000 messages
TASK, RETRY, CHOICE, SUCCEED, PASS, EXECUTION, WAIT_TOKEN = 5, 3, 2, 2, 2, 2, 6
#: the most small shards a restore Map item may hold (settings' `restore_group_shards`, le)
RESTORE_GROUP_LIMIT = next(int(m.le) for m in Settings.model_fields["restore_group_shards"].metadata
                           if getattr(m, "le", None) is not None)
INLINE_MAP, ITERATION, DISTRIBUTED_MAP = 4, 2, 6

SIZES = [  # (sessions, messages)
    (2_000, 100_000),
    (200_000, 10_000_000),  # the issue's example
    (2_000_000, 100_000_000),
    (20_000_000, 1_000_000_000),
    (200_000_000, 10_000_000_000),
]
JOB_ID = "0" * 32
SESSION_ID = "00000000-0000-0000-0000-000000000000"


def _asl(name: str) -> dict[str, object]:
    return dict(json.loads((ROOT / "infrastructure" / "statemachines" / name).read_text()))


def _retries(state: dict[str, object]) -> int:
    retry = state.get("Retry") or []
    assert isinstance(retry, list)
    return max((int(r.get("MaxAttempts", 3)) for r in retry), default=0)


def _cursor(shard: int) -> ShardCursor:
    """A cursor as large as they get: every field set, numbers at their widest."""
    return ShardCursor(job_id=JOB_ID, shard=shard, after=SESSION_ID, upto=SESSION_ID,
                       seq=10**6, sessions=10**9, messages=10**12, bytes=10**15, done=False)


def _size(model: object) -> int:
    return len(json.dumps(model.wire() if hasattr(model, "wire") else model))


@dataclass(frozen=True)
class Execution:
    events: int
    payload: int

    @property
    def within_limits(self) -> bool:
        return self.events <= EVENTS_LIMIT and self.payload <= PAYLOAD_LIMIT


def loop_events(invocations: int, retries: int) -> int:
    """A page loop: each invocation a Task (retried at worst `retries` times) and a Choice."""
    return invocations * (TASK + retries * RETRY + CHOICE)


def before(sessions: int, messages: int) -> Execution:
    """The design before issue 10: shards cut every 5,000 sessions (an exact multiple added an
    empty one), an INLINE Map running every shard's page loop in the one execution, the plan's
    output carrying every shard's cursor (and the Map gathering every shard's last cursor)."""
    shards = sessions // 5000 + 1
    per_shard = ceil(messages / shards / PER_INVOCATION) or 1
    retries = 4  # ExportPages' MaxAttempts then
    events = (EXECUTION + TASK + INLINE_MAP + TASK
              + shards * (ITERATION + loop_events(per_shard, retries) + SUCCEED))
    plan = {"jobId": JOB_ID, "shards": [_cursor(n).wire() for n in range(1, shards + 1)]}
    return Execution(events=events, payload=len(json.dumps(plan)))


def after(sessions: int, messages: int) -> tuple[Execution, Execution, int]:
    """This design: the parent (Plan, a DISTRIBUTED Map listing the shard objects, Finalize)
    and the largest child (one shard's page loop); and the shard count."""
    asl = _asl("export.asl.json")
    states = asl["States"]
    assert isinstance(states, dict)
    shard_map = states["ExportShards"]
    assert shard_map["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert "ItemReader" in shard_map
    assert "ItemsPath" not in shard_map
    pages = shard_map["ItemProcessor"]["States"]["ExportPages"]
    sizing = ShardSizing()
    shards = sizing.count(sessions, messages)
    plan = ExportPlan(job_id=JOB_ID, shard_list=ShardList(bucket="b" * 63,
                                                          prefix=f"staging/{JOB_ID}/shards/"),
                      shards=shards, concurrency=sizing.concurrency)
    map_result = 2 + shards * len("{},")  # each child ends with {} (ShardExported)
    parent = Execution(events=EXECUTION + TASK + DISTRIBUTED_MAP + TASK,
                       payload=max(_size(plan), map_result))
    work = sessions * sizing.messages_per_session + messages
    largest = ceil(work / shards) + sizing.messages_per_session  # its share, plus a session
    invocations = ceil(largest / PER_INVOCATION)
    first = {"shardKey": f"{plan.shard_list.prefix}000000.json"}  # a child's input
    child = Execution(events=EXECUTION + loop_events(invocations, _retries(pages)) + PASS,
                      payload=max(_size(_cursor(shards)), len(json.dumps(first))))
    return parent, child, shards


def test_the_issue_example_before_and_after() -> None:
    """10 million messages in 200,000 sessions."""
    old = before(200_000, 10_000_000)
    # 41 shards (200,000 is a multiple of 5,000: the last one empty), 2 invocations each at
    # worst: within the limits at this size, but growing with it (next test)
    assert (old.events, old.payload) == (1_738, 10_954)
    parent, child, shards = after(200_000, 10_000_000)
    assert shards == 15  # 200,000 x 100 + 10^7 = 3 x 10^7 messages' worth, 2 x 10^6 a shard
    assert (parent.events, child.events) == (18, 194)
    assert (parent.payload, child.payload) == (231, 264)


def test_the_design_before_had_a_ceiling() -> None:
    old = before(20_000_000, 1_000_000_000)
    assert old.events > EVENTS_LIMIT
    assert old.payload > PAYLOAD_LIMIT
    assert (old.events, old.payload) == (168_058, 1_071_218)
    mid = before(2_000_000, 100_000_000)
    assert mid.within_limits
    assert mid.events > 0.6 * EVENTS_LIMIT


@pytest.mark.parametrize(("sessions", "messages"), SIZES)
def test_no_execution_reaches_a_limit_at_any_size(sessions: int, messages: int) -> None:
    parent, child, _ = after(sessions, messages)
    assert parent.within_limits, parent
    assert child.within_limits, child
    assert parent.events == 18  # the parent does not grow with the data at all


UPLOADS = {"500 MB": 500 * 10**6, "50 GB": 50 * 10**9, "5 TB": 5 * 10**12}
MESSAGE_BYTES = 1000  # docs/imports.md measured 1.05 KB a message
SYNC = 6  # Task .sync: TaskStateEntered, Scheduled, Started, Submitted, Succeeded, StateExited
FAIL = 1  # FailStateEntered (ExecutionFailed takes ExecutionSucceeded's place)


def _invocations(upload_bytes: int) -> int:
    return ceil(ceil(upload_bytes / MESSAGE_BYTES) / PER_INVOCATION)


def import_before(upload_bytes: int, dry_runs: int) -> int:
    """The design before: the execute loop in the import execution itself (Route -> Execute ->
    Route ...), every invocation retried 4 times, each dry run the whole loop once more."""
    route, step = CHOICE, CHOICE + TASK
    per_pass = _invocations(upload_bytes) * (route + TASK + 4 * RETRY) + step  # + Finalize
    return (EXECUTION + 2 * step  # Validate, Stage
            + (dry_runs + 1) * (route + WAIT_TOKEN + per_pass) + route + SUCCEED)


def _inline_pass(states: dict[str, Any]) -> int:
    """Events of a pass's first invocation, run in the import execution itself (at its worst:
    retried as often as the worst of ExecuteInline's and RollbackInline's Retry allows), and a
    proof from the ASL that a pass never runs a second invocation there: Route sends `execute`
    and `rollback` only to the inline tasks, each of them only to PassGoesOn?, and that choice
    sends a pass that goes on only to RunPass (a child execution), never back to Route's pass
    branches or an inline task."""
    inline = {c["StringEquals"]: c["Next"] for c in states["Route"]["Choices"]
              if c["StringEquals"] in ("execute", "rollback")}
    assert inline == {"execute": "ExecuteInline", "rollback": "RollbackInline"}
    for name in inline.values():
        assert states[name]["Resource"] == "arn:aws:states:::lambda:invoke"
        assert states[name]["Next"] == "PassGoesOn?"
        assert {c["Next"] for c in states[name]["Catch"]} == {"Cleanup"}
    goes_on = states["PassGoesOn?"]
    (branch,) = goes_on["Choices"]
    assert {c["StringEquals"] for c in branch["Or"]} == {"execute", "rollback"}
    assert branch["Next"] == "RunPass"
    assert goes_on["Default"] == "Route"  # which routes no `execute` or `rollback` back here
    worst = max(_retries(states[name]) for name in inline.values())
    return TASK + worst * RETRY + CHOICE  # the inline task, then PassGoesOn?


def import_parent(dry_runs: int) -> int:
    """The import execution now, at its worst: every decision a dry run with a new field
    mapping (validated and staged again), every task retried as often as its Retry allows, and
    the last decision the execution. A pass is its first invocation inline and then one
    RunPass, whatever its size."""
    states = _asl("import.asl.json")["States"]
    assert isinstance(states, dict)
    assert states["RunPass"]["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert not {"Execute", "Rollback"} & set(states)  # no page loop in here

    def task(name: str, events: int = TASK) -> int:
        return CHOICE + events + _retries(states[name]) * RETRY  # Route, then the task

    validate_and_stage = task("Validate") + task("Stage")
    run_pass = (CHOICE + _inline_pass(states)  # Route, the first invocation, PassGoesOn?
                + SYNC + _retries(states["RunPass"]) * RETRY)  # the rest in a child
    decision = (task("AwaitDecision", WAIT_TOKEN) + validate_and_stage + run_pass
                + task("Finalize"))
    failure = task("Cleanup") + TASK + _retries(states["MarkFailed"]) * RETRY + FAIL
    return EXECUTION + validate_and_stage + (dry_runs + 1) * decision + failure


def import_passes(upload_bytes: int) -> tuple[int, int, int]:
    """One pass (an execution, a dry run or a rollback) in child executions of the import pass
    machine: the largest child's events at its worst (1,000 invocations, each retried as often
    as Execute's Retry allows, then a hand-over that fails back through it), the number of
    children it takes, and the bound on invocations a child hands over at."""
    asl = _asl("import-pass.asl.json")
    states = asl["States"]
    assert isinstance(states, dict)
    bounds = {c["Next"]: c["And"][1]["NumericLessThan"] for c in states["Next?"]["Choices"]
              if "And" in c}
    assert set(bounds) == {"Execute", "Rollback"}
    bound = max(bounds.values())
    assert states["HandOver"]["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert states["HandOver"]["Parameters"]["StateMachineArn"] == "${ImportPassStateMachineArn}"
    worst_task = max(_retries(states["Execute"]), _retries(states["Rollback"]))
    invocations = _invocations(upload_bytes)
    in_largest = min(invocations, bound)
    loop = in_largest * (CHOICE + TASK + worst_task * RETRY)
    hand_over = (CHOICE + PASS + SYNC + _retries(states["HandOver"]) * RETRY  # Fresh, HandOver
                 + PASS + FAIL)  # Unwrap, HandOverFailed: the longest way out
    ends = max(hand_over, CHOICE + SUCCEED, FAIL)
    return EXECUTION + loop + ends, ceil(invocations / bound), bound


def import_payload() -> int:
    """The largest state of any import execution: a step at its widest with a caught error
    whose cause is as long as Step Functions keeps one (32,768 characters), or RunPass's
    answer (DescribeExecution: the pass's input and output, each a step)."""
    step = ImportStep(job_id=JOB_ID, mode="rollback", next="execute", dry_run=True,
                      after=SESSION_ID, done=10**12, invocations=10**6,
                      started_at=datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)).wire()
    arn = "arn:aws:states:eu-central-1:123456789012:execution:dataport-import-pass-prod:"
    answer = {"ExecutionArn": arn + JOB_ID + "-" + SESSION_ID, "Input": step, "Output": step,
              "InputDetails": {"Included": True}, "OutputDetails": {"Included": True},
              "Name": JOB_ID + "-" + SESSION_ID, "StartDate": "2026-12-31T23:59:59.999Z",
              "StopDate": "2026-12-31T23:59:59.999Z", "StateMachineArn": arn, "Status": "SUCCEEDED",
              "RedriveCount": 0, "RedriveStatus": "NOT_REDRIVABLE"}
    caught = {**step, "error": {"Error": "x" * 256, "Cause": "x" * 32_768},
              "handedOver": {"execution": {**answer, "Error": "x" * 256, "Cause": "x" * 32_768}}}
    return max(len(json.dumps(answer)), len(json.dumps(caught)))


def test_the_import_design_before_had_a_ceiling() -> None:
    """Documented: the execute loop in the import execution, at the pessimistic rate with every
    invocation retried 4 times. The largest upload (500 MB) took 92 events, 812 with ten dry
    runs; a 50 GB restore 4,576, and a fifth dry run of it passed 25,000."""
    assert import_before(UPLOADS["500 MB"], dry_runs=0) == 92
    assert import_before(UPLOADS["500 MB"], dry_runs=10) == 812
    assert import_before(UPLOADS["50 GB"], dry_runs=0) == 4_576
    assert (import_before(UPLOADS["50 GB"], dry_runs=4) == 22_800 < EVENTS_LIMIT
            < import_before(UPLOADS["50 GB"], dry_runs=5))
    assert import_before(UPLOADS["5 TB"], dry_runs=0) > 10 * EVENTS_LIMIT


@pytest.mark.parametrize("dry_runs", [0, 5, 50, MAX_DRY_RUNS])
@pytest.mark.parametrize("upload", sorted(UPLOADS))
def test_no_import_execution_reaches_a_limit(upload: str, dry_runs: int) -> None:
    parent = Execution(events=import_parent(dry_runs), payload=import_payload())
    child, children, bound = import_passes(UPLOADS[upload])
    assert parent.within_limits, parent
    assert Execution(events=child, payload=import_payload()).within_limits, child
    # the parent grows with the decisions only, and a child never beyond its bound
    assert import_parent(dry_runs) == import_parent(0) + dry_runs * (
        import_parent(1) - import_parent(0))
    assert child <= import_passes(10**18)[0]
    assert children == ceil(_invocations(UPLOADS[upload]) / bound)


def test_the_import_numbers() -> None:
    """The numbers docs/imports.md quotes."""
    assert import_parent(0) == 169  # 150 before a pass's first invocation ran inline
    assert import_parent(1) - import_parent(0) == 92  # a dry run, at its worst (was 73)
    assert import_parent(MAX_DRY_RUNS) == 9_369
    assert [import_passes(UPLOADS[u])[:2] for u in ("500 MB", "50 GB", "5 TB")] == [
        (81, 1), (4_565, 1), (19_024, 24)]
    assert import_payload() == 67_463  # two causes of 32 KiB


def test_dry_runs_are_bounded_where_the_parent_would_reach_the_limit() -> None:
    """Without MAX_DRY_RUNS, the parent would pass 25,000 events after this many dry runs."""
    per_dry_run = import_parent(1) - import_parent(0)
    reaches = (EVENTS_LIMIT - import_parent(0)) // per_dry_run + 1
    assert import_parent(reaches) > EVENTS_LIMIT >= import_parent(reaches - 1)
    assert reaches > 2 * MAX_DRY_RUNS  # a wide margin
    step_size = len(json.dumps(ImportStep(job_id=JOB_ID, next="execute", after=SESSION_ID,
                                          done=10**9).wire()))
    assert step_size < 500  # the state between tasks is one small cursor, whatever the size


# ---------------------------------------------------------------------------- restores in shards


def _restore_states() -> dict[str, Any]:
    states = _asl("restore.asl.json")["States"]
    assert isinstance(states, dict)
    return states


def plan_bound() -> int:
    """The plan invocations one execution runs before a child goes on (the plan counts)."""
    return int(Settings.model_fields["restore_plan_invocations"].default)


#: what one plan invocation splits at worst: 5 MB/s of Extended JSON lines (measured here,
#: docs/backups.md) for what the invocation leaves after its reserve and one more member
SPLIT_BYTES = 5_000_000 * (900 - 120 - 180)


def plan_invocations(messages: int) -> int:
    """A backup's plan: its split handed over until done, then the whole objects' pass."""
    return ceil(messages * MESSAGE_BYTES / SPLIT_BYTES) + 1


def restore_parent(plan: int = 1) -> int:
    """The restore's own execution, or a plan child's: Route, its plan invocations (each a
    Plan and the Planned? choice, at most `plan_bound`, then PlanOn: the rest in a child);
    after the plan the DISTRIBUTED Map (its shards are child executions), one inline
    invocation of the removal pass, RemoveOn (the rest of the pass, in a child), Finalize;
    every task retried at worst."""
    states = _restore_states()
    assert states["Shards"]["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert "ItemReader" in states["Shards"]
    loop = min(plan, plan_bound())
    planning = CHOICE + loop_events(loop, _retries(states["Plan"]))  # Route, then the loop
    if plan > loop:
        return (EXECUTION + planning + TASK + _retries(states["PlanOn"]) * RETRY + SUCCEED)
    tasks = ["Remove", "RemoveOn", "Finalize"]
    choices = ["RemovesToo?", "Removed?", "HandedOver?"]
    return (EXECUTION + planning + sum(TASK + _retries(states[t]) * RETRY for t in tasks)
            + len(choices) * CHOICE + DISTRIBUTED_MAP + SUCCEED)


def removal_bound() -> int:
    """The invocations of the removal pass a child execution runs before it hands over."""
    removed = _restore_states()["Removed?"]["Choices"]
    return int(next(c["NumericGreaterThanEquals"] for c in removed
                    if "NumericGreaterThanEquals" in c))


def removal_child(invocations: int) -> int:
    """A child execution of the removal pass (RemoveOn): Route, its invocations (at most the
    bound, then a hand-over to a fresh one)."""
    states = _restore_states()
    loop = min(invocations, removal_bound())
    handed_over = TASK + _retries(states["RemoveOn"]) * RETRY + CHOICE
    return (EXECUTION + CHOICE + loop_events(loop, _retries(states["Remove"]))
            + (handed_over if invocations > loop else 0) + SUCCEED)


def restore_item(shards: int = 1) -> int:
    """One item of the Map (its own child execution): an inline Map over its group of
    `shards` shards (one, or up to `restore_group_shards` small ones), each the restore, or
    the rollback, of the shard (an import execution of its own, analysed above), then its
    count."""
    group = _restore_states()["Shards"]["ItemProcessor"]["States"]["EachShard"]
    assert group["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"
    items = group["ItemProcessor"]["States"]
    restore = TASK + _retries(items["Restore"]) * RETRY
    rollback = (2 * TASK + (_retries(items["BeginRollback"]) + _retries(items["RollbackShard"]))
                * RETRY + CHOICE)
    shard = (ITERATION + CHOICE + max(restore, rollback)
             + TASK + _retries(items["Count"]) * RETRY + PASS)
    return EXECUTION + INLINE_MAP + shards * shard + SUCCEED


def restore_payload() -> int:
    """The largest state between the restore machine's tasks: the task with every field at
    its widest and a caught error (a cause as long as Step Functions keeps)."""
    task = RestoreShardsTask(
        action="remove", job_id=JOB_ID, mode="rollback", concurrency=10**6,
        shard_list=ShardList(bucket="b" * 63, prefix=f"restores/{JOB_ID}/shards/"),
        error=TaskError(Error="x" * 256, Cause="x" * 32_768), shard_id=JOB_ID,
        next="plan_on", after=10**9, invocations=10**6, child=True, split_at=10**9,
        planned=10**6)
    return _size(task)


@pytest.mark.parametrize(("sessions", "messages"), SIZES)
def test_no_restore_in_shards_reaches_a_limit(sessions: int, messages: int) -> None:
    """A restore of any size, in shards of the default size, with a removal pass as long as
    the whole backup (the target holding as much again that the backup lacks)."""
    removal = ceil(messages / PER_INVOCATION)
    plan = plan_invocations(messages)
    # the plan's executions: its first, each child in the chain (PlanOn), and the last one,
    # which goes on to the Map
    for events in (restore_parent(plan), restore_parent(plan % plan_bound() or plan_bound())):
        assert Execution(events=events, payload=restore_payload()).within_limits
    assert Execution(events=removal_child(removal), payload=restore_payload()).within_limits
    # however many shards (the Map lists its items from S3: no list in the state), each is
    # an item of its own; each shard's import execution is the import's (analysed above)
    largest = RESTORE_GROUP_LIMIT  # the most small shards an item may hold
    assert Execution(events=restore_item(largest), payload=restore_payload()).within_limits


def test_the_restore_in_shards_numbers() -> None:
    """The numbers docs/backups.md quotes."""
    assert restore_parent() == 76
    assert plan_bound() == 1_000
    assert restore_parent(plan_bound()) == 16_060  # the last execution of a plan's chain
    assert restore_parent(10**9) == 16_020  # one that hands over to a child
    assert plan_invocations(10_000_000) == 5  # the issue's example: about 10 GB
    assert plan_invocations(50_000_000) == 18  # about 50 GB of lines (6 GB stored)
    assert removal_bound() == 1_000
    assert removal_child(10**9) == 16_022
    assert restore_item() == 58
    assert restore_item(get_settings().restore_group_shards) == 258  # 5 small shards
    assert restore_item(RESTORE_GROUP_LIMIT) == 2_008
    assert restore_payload() < 34_000
