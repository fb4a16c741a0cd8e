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
from math import ceil
from pathlib import Path

import pytest

from dataport.models.tasks import ExportPlan, ImportStep, ShardCursor, ShardList
from dataport.workflows.shards import ShardSizing

ROOT = Path(__file__).resolve().parents[2]
EVENTS_LIMIT = 25_000
PAYLOAD_LIMIT = 256 * 1024
WORKER_BUDGET_S = 900 - 60
RATE = 250  # messages/s, pessimistic
PER_INVOCATION = RATE * WORKER_BUDGET_S  # 210,000 messages
TASK, RETRY, CHOICE, SUCCEED, PASS, EXECUTION, WAIT_TOKEN = 5, 3, 2, 2, 2, 2, 6
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


def test_import_executions_stay_within_the_limits() -> None:
    """The import runs its execute loop in its one execution (Route -> Execute -> Route ...):
    events grow with invocations. The largest upload (500 MB) and a 50 GB restore, at ~1 KB a
    message (docs/imports.md measured 1.05 KB), with every dry run the user asks for (each
    plans the whole execute loop once more, then awaits the decision again)."""
    asl = _asl("import.asl.json")
    states = asl["States"]
    assert isinstance(states, dict)
    execute = states["Execute"]
    route = CHOICE
    step = route + TASK  # Route then a task, no retry

    def events(upload_bytes: int, dry_runs: int) -> int:
        messages = ceil(upload_bytes / 1000)
        invocations = ceil(messages / PER_INVOCATION)
        per_pass = invocations * (route + TASK + _retries(execute) * RETRY) + step  # + Finalize
        return (EXECUTION + 2 * step  # Validate, Stage
                + (dry_runs + 1) * (route + WAIT_TOKEN + per_pass) + route + SUCCEED)

    assert events(500 * 10**6, dry_runs=0) == 92  # the largest upload: one invocation a pass
    assert events(500 * 10**6, dry_runs=10) == 812
    assert events(50 * 10**9, dry_runs=0) == 4_576  # a 50 GB restore: 239 invocations at worst
    # Not unbounded: at 50 GB and the pessimistic rate, with every invocation retried 4 times,
    # a fifth dry run would pass 25,000 events (docs/imports.md, "Step Functions limits").
    assert events(50 * 10**9, dry_runs=4) == 22_800 < EVENTS_LIMIT < events(50 * 10**9, 5)
    step_size = len(json.dumps(ImportStep(job_id=JOB_ID, next="execute", after=SESSION_ID,
                                          done=10**9).wire()))
    assert step_size < 500  # the state is one small cursor, whatever the size
