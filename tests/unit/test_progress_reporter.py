"""The export worker's one reporting collaborator (progress.reporter.ShardReporter) against
(moto) DynamoDB and a stand-in @connections client: the loop's calls are free until a flush is
due, a flush is a few job-table calls (no read before a write), at most one a second, the cancel
is seen at the next flush, and the last report is always written."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from dataport import aws
from dataport.errors import JobCancelled
from dataport.jobs.store import JobStore
from dataport.models.exports import ExportRequest
from dataport.models.jobs import ExportState, Progress
from dataport.progress.connections import ConnectionStore
from dataport.progress.reporter import FLUSH_INTERVAL_MS, ShardReporter
from tests.unit import test_progress_publisher
from tests.unit.test_progress_publisher import CONNECTED, USER, FakeConnections

connections = test_progress_publisher.connections  # the fixture: a stand-in @connections


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _calls() -> Counter[str]:
    """DynamoDB operations made on the cached client from now on."""
    seen: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    aws.dynamodb().meta.events.register("provide-client-params.dynamodb", record)
    return seen


def _reporter(store: JobStore, clock: Clock, **counts: int) -> tuple[ShardReporter, list[int]]:
    job = store.create(USER, ExportState(request=ExportRequest()))
    job = store.start(job.job_id)
    store.set_progress(job.job_id, Progress(phase="exporting", total=10))
    ConnectionStore().open("a=", USER, CONNECTED)
    ConnectionStore().subscribe("a=", job.job_id, CONNECTED)
    written = [0]
    reporter = ShardReporter(store, store.require(job.job_id), 1,
                             sessions=counts.get("sessions", 0),
                             messages=counts.get("messages", 0),
                             bytes_before=counts.get("bytes", 0),
                             bytes_written=lambda: written[0], clock=clock)
    return reporter, written


def test_the_loop_pays_nothing_until_a_flush_is_due(connections: FakeConnections) -> None:
    store, clock = JobStore(), Clock()
    reporter, written = _reporter(store, clock)
    # another shard, whose worker reads this shard's row
    store.put_shard(reporter.job.job_id, 2, {"sessions": 0, "messages": 0, "bytes": 0})
    calls = _calls()
    for done in range(1, 200):
        written[0] += 100
        reporter.heartbeat()
        reporter.session_written(sessions=done // 20, messages=done)
    assert not calls
    assert reporter.flushes == 0

    clock.now += FLUSH_INTERVAL_MS / 2000  # the first flush comes half an interval in
    reporter.heartbeat()
    assert reporter.flushes == 1
    # one query for the job and its shards, the shard row (no read first), one write for the
    # progress that is also the throttle's claim, then the subscribers
    assert calls == Counter({"PutItem": 1, "Query": 2, "UpdateItem": 1}), calls
    (frame,) = connections.frames["a="]
    assert frame["progress"].pop("etaSeconds") >= 0  # the pace since the job was created
    assert frame["progress"] == {"phase": "exporting", "current": 9, "total": 10,
                                 "percentage": 90.0, "bytes": 19_900}
    job = store.require(reporter.job.job_id)
    assert (job.progress.current, job.progress.bytes) == (9, 19_900)
    shard, _ = store.shards(job.job_id)
    assert (shard["sessions"], shard["messages"], shard["bytes"]) == (9, 199, 19_900)

    # at most once a second after that, however often the loop calls
    clock.now += FLUSH_INTERVAL_MS / 1000 - 0.01
    reporter.heartbeat()
    assert reporter.flushes == 1
    clock.now += 0.01
    reporter.heartbeat()
    assert reporter.flushes == 2


def test_a_cancel_is_seen_at_the_next_flush(connections: FakeConnections) -> None:
    store, clock = JobStore(), Clock()
    reporter, _ = _reporter(store, clock)
    store.cancel(reporter.job.job_id)
    reporter.heartbeat()  # not due: no read, the loop goes on
    clock.now += FLUSH_INTERVAL_MS / 1000
    with pytest.raises(JobCancelled):
        reporter.heartbeat()
    assert "a=" not in connections.frames


def test_the_last_report_is_always_written_with_the_shards_totals(
        connections: FakeConnections) -> None:
    store, clock = JobStore(), Clock()
    reporter, written = _reporter(store, clock, sessions=3, messages=30, bytes=1000)
    written[0] = 500
    store.put_shard(reporter.job.job_id, 2, {"sessions": 4, "messages": 40, "bytes": 4000})
    job_id = reporter.job.job_id
    stored: list[dict[str, Any]] = []

    def put(state: Any) -> None:
        stored.append(dict(state))
        store.put_shard(job_id, 1, state)

    job = reporter.close(sessions=5, messages=50, bytes_total=1500,  # not due: written anyway
                         seq=12, store=put)
    assert stored == [{"sessions": 5, "messages": 50, "bytes": 1500, "seq": 12}]
    assert reporter.flushes == 1
    shards = {int(s["sk"].split("#")[1]): s for s in store.shards(job.job_id)}
    assert (shards[1]["sessions"], shards[1]["bytes"]) == (5, 1500)
    progress = store.require(job.job_id).progress
    assert (progress.current, progress.bytes) == (5 + 4, 1500 + 4000)
    assert connections.frames["a="][-1]["progress"]["current"] == 9


def test_a_flush_right_after_an_event_records_without_trying_to_claim(
        connections: FakeConnections) -> None:
    """The job row the flush reads says an event went out less than 500 ms ago: the claim
    would be refused, so the progress is written alone (one write, no subscribers' query)."""
    store, clock = JobStore(), Clock()
    reporter, _ = _reporter(store, clock)
    reporter.flush()
    assert len(connections.frames["a="]) == 1
    calls = _calls()
    job_id, expires_at = reporter.job.job_id, reporter.job.expires_at
    reporter.close(sessions=2, messages=20, bytes_total=99, seq=3,
                   store=lambda state: store.put_shard(job_id, 1, state, expires_at=expires_at))
    assert calls == Counter({"PutItem": 1, "Query": 1, "UpdateItem": 1}), calls
    assert len(connections.frames["a="]) == 1
    assert store.require(reporter.job.job_id).progress.current == 2


def test_a_cancel_seen_by_the_last_report_stores_nothing(connections: FakeConnections) -> None:
    """close reads the job before `store` runs: a cancelled job's invocation writes no shard
    row and no file records, and sends no event."""
    store, clock = JobStore(), Clock()
    reporter, _ = _reporter(store, clock)
    store.cancel(reporter.job.job_id)
    stored: list[Any] = []
    with pytest.raises(JobCancelled):
        reporter.close(sessions=2, messages=20, bytes_total=99, seq=3, store=stored.append)
    assert stored == []
    assert store.shards(reporter.job.job_id) == []
    assert "a=" not in connections.frames


def test_a_one_shard_jobs_flush_leaves_the_shard_row_to_the_last_report(
        connections: FakeConnections) -> None:
    """No other worker sums this shard's row (the plan's shard 0 has no worker): the flush
    reads and publishes, and the row is written once, by `close`, with the file records."""
    store, clock = JobStore(), Clock()
    reporter, written = _reporter(store, clock)
    job_id = reporter.job.job_id
    store.put_shard(job_id, 0, {"sessions": 0, "messages": 0, "bytes": 0, "seq": 1})
    calls = _calls()
    written[0] = 700
    reporter.session_written(sessions=4, messages=40)
    clock.now += FLUSH_INTERVAL_MS / 1000
    reporter.heartbeat()
    assert calls == Counter({"Query": 2, "UpdateItem": 1}), calls
    assert connections.frames["a="][-1]["progress"]["current"] == 4
    assert [s["sk"] for s in store.shards(job_id)] == ["SHARD#00000"]


def test_a_slow_control_plane_spaces_the_flushes_out(connections: FakeConnections,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock = JobStore(), Clock()
    reporter, _ = _reporter(store, clock)
    original = store.job_and_shards
    flush_seconds = 0.01

    def slow(job_id: str) -> Any:
        clock.now += flush_seconds  # the flush's calls take this long
        return original(job_id)

    monkeypatch.setattr(store, "job_and_shards", slow)
    clock.now += FLUSH_INTERVAL_MS / 2000
    reporter.heartbeat()
    assert reporter.flushes == 1
    clock.now += FLUSH_INTERVAL_MS / 1000
    reporter.heartbeat()  # a fast flush: the usual cadence
    assert reporter.flushes == 2

    flush_seconds = 0.15  # a loaded endpoint: the next one 9 x 0.15 s after this one ends
    clock.now += FLUSH_INTERVAL_MS / 1000
    reporter.heartbeat()
    assert reporter.flushes == 3
    clock.now += 1.3  # 1.3 s after it ended: a fast flush would have been due
    reporter.heartbeat()
    assert reporter.flushes == 3
    clock.now += 0.1
    reporter.heartbeat()
    assert reporter.flushes == 4

    flush_seconds = 0.5  # never more than two seconds between the starts of two flushes
    clock.now += 1.4
    reporter.heartbeat()
    assert reporter.flushes == 5
    clock.now += 1.45
    reporter.heartbeat()
    assert reporter.flushes == 5
    clock.now += 0.1
    reporter.heartbeat()
    assert reporter.flushes == 6
