"""Live progress end to end: a real WebSocket client (`websockets`) on the local gateway, the
real authorizer and handlers, the real export workflow, @connections over HTTP.

The export is made to take a few seconds (every message trickles in a few ms late), over several
pages and several worker invocations, so the cadence can be measured: events carry `at`, the
instant the job row granted them, so gaps are measured on the server's clock, not on delivery.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from websockets.exceptions import InvalidStatus

from dataport.auth import create_api_key
from dataport.jobs.store import JobStore
from dataport.progress.events import (
    CancelledEvent,
    ErrorEvent,
    Event,
    FailedEvent,
    ProgressEvent,
    SnapshotEvent,
    SucceededEvent,
)
from dataport.progress.throttle import MAX_INTERVAL_MS, MIN_INTERVAL_MS
from dataport.settings import get_settings
from dataport.workflows.export import SessionWriter, write_session
from infrastructure.local import seed
from infrastructure.local.progress_client import ProgressSocket, is_end
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_dataset
from tests.fixtures.faults import EXPORT_WORKER, export_worker

DB_NAME = "dataport_websocket_tests"
TERMINAL = (SucceededEvent, FailedEvent, CancelledEvent)


# the demo user: 12 sessions, 334 messages
dataset = seeded_dataset(DB_NAME, sessions_per_project=4)



@pytest.fixture
def other_user(dataset: seed.SeedSummary) -> str:
    return next(u.user_id for u in dataset.users if u.user_id != seed.DEMO_USER_ID)


@pytest.fixture
def slow_export(fresh_stack: LocalStack,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[SessionWriter]:
    """~3 s of exporting: 4 pages of 3 sessions, two pages per worker invocation. Yields the
    slow writer, for a test that adds its own fault to it."""

    def trickle(*args: Any, **kwargs: Any) -> Any:
        def late(messages: Iterator[Any]) -> Iterator[Any]:
            for message in messages:
                time.sleep(0.008)
                yield message

        writer, projects, session, messages, *rest = args
        return write_session(writer, projects, session, late(messages), *rest, **kwargs)

    monkeypatch.setitem(fresh_stack.handler_overrides, EXPORT_WORKER, export_worker(trickle))
    monkeypatch.setenv("PAGE_SIZE", "3")
    monkeypatch.setenv("WORKER_RESERVE_MS", "3000")
    fresh_stack.set_function_timeout("ExportWorkerFunction", 4000)
    get_settings.cache_clear()
    yield trickle
    monkeypatch.undo()
    get_settings.cache_clear()


def connect(stack: LocalStack, user_id: str) -> ProgressSocket:
    return ProgressSocket(stack.ws_url, stack.token_for(user_id))


def until_end(socket: ProgressSocket, timeout: float = 30) -> list[Event]:
    """Every frame, as received, up to the end of the job's stream."""
    deadline = time.monotonic() + timeout
    frames: list[Event] = []
    while not frames or not _ends(frames[-1]):
        frames.append(socket.receive(timeout=max(0.1, deadline - time.monotonic())))
    return frames


def _ends(event: Event) -> bool:
    return isinstance(event, (SnapshotEvent, *TERMINAL)) and is_end(event)


def assert_silent(socket: ProgressSocket, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        socket.receive(timeout=seconds)


def connection_items(stack: LocalStack, connection_id: str) -> list[dict[str, Any]]:
    items = stack.client("dynamodb").scan(TableName=stack.tables["ConnectionsTable"])["Items"]
    return [i for i in items if connection_id in (i["pk"]["S"] + i["sk"]["S"])]


def new_connection_id(stack: LocalStack, before: set[str]) -> str:
    (connection_id,) = set(stack.websocket.connection_ids) - before
    return connection_id


# ------------------------------------------------------------------------------ connecting


def test_connecting_needs_a_valid_token(api: Api) -> None:
    stack = api.stack
    expired = jwt.encode({"sub": api.user_id, "exp": int(time.time()) - 3600},
                         stack.jwt_secret, algorithm="HS256")
    forged = jwt.encode({"sub": api.user_id, "exp": int(time.time()) + 3600},
                        "another-secret-of-at-least-32-bytes!!", algorithm="HS256")
    for token in (None, "", "not.a.jwt", expired, forged, f"dpk_{'x' * 43}"):
        with pytest.raises(InvalidStatus) as refused:
            ProgressSocket(stack.ws_url, token)
        assert refused.value.response.status_code == 401, token
    assert stack.websocket.connection_ids == []
    assert stack.client("dynamodb").scan(
        TableName=stack.tables["ConnectionsTable"])["Count"] == 0

    key = create_api_key(api.user_id, "websocket test")
    with ProgressSocket(stack.ws_url, key), connect(stack, api.user_id):
        assert len(stack.websocket.connection_ids) == 2
        for connection_id in stack.websocket.connection_ids:
            (meta,) = connection_items(stack, connection_id)
            assert meta["user_id"]["S"] == api.user_id
            # TTL: connect time + 2 hours, epoch seconds
            assert abs(int(meta["expires_at"]["N"]) - (time.time() + 7200)) < 60


def test_unknown_and_malformed_messages_get_an_error_frame(api: Api) -> None:
    with connect(api.stack, api.user_id) as socket:
        for message, code in (({"action": "dance"}, "unknown_action"),
                              ("not json", "invalid_request"),
                              ({"jobId": "0" * 32}, "invalid_request"),
                              ({"action": "subscribe"}, "invalid_request"),
                              ({"action": "subscribe", "jobId": "../../etc"}, "invalid_request")):
            socket.send(message)
            error = socket.receive()
            assert isinstance(error, ErrorEvent), message
            assert error.code == code, message
            assert error.message


# ------------------------------------------------------------------------------ the stream


def test_subscriber_gets_snapshot_then_throttled_progress_then_one_end(
        api: Api, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        slow_export: SessionWriter) -> None:
    stack = api.stack
    invocations: list[int] = []  # worker invocations (in the shard's child execution's history)
    worker = export_worker(slow_export)

    def counted(event: Any, context: Any) -> Any:
        invocations.append(1)
        return worker(event, context)

    monkeypatch.setitem(stack.handler_overrides, EXPORT_WORKER, counted)
    job_id = api.start_export({"format": "json"})
    with connect(stack, api.user_id) as socket:
        socket.subscribe(job_id)
        frames = until_end(socket)
        # the snapshot comes first (an event published while subscribing may overtake it:
        # seq tells the client which is newer)
        snapshots = [e for e in frames if isinstance(e, SnapshotEvent)]
        assert len(snapshots) == 1
        assert snapshots[0] in frames[:2]
        assert all(isinstance(e, (SnapshotEvent, ProgressEvent, *TERMINAL)) for e in frames)
        job_events = [e for e in frames if isinstance(e, (ProgressEvent, *TERMINAL))]
        assert snapshots[0].seq <= job_events[0].seq

        # ordered, one end, nothing after it
        seqs = [e.seq for e in job_events]
        assert seqs == sorted(set(seqs)), seqs  # strictly increasing
        ends = [e for e in job_events if isinstance(e, TERMINAL)]
        assert len(ends) == 1
        assert job_events[-1] is ends[0]
        stack.wait_for_execution(JobStore().require(job_id).execution_arn or "", timeout=30)
        assert_silent(socket, 0.6)

    # cadence, on the server's clock: never two within 500 ms, never silent for 2 s
    progress = [e for e in job_events if isinstance(e, ProgressEvent)]
    assert len(progress) >= 4, [e.progress for e in progress]
    moments = [e.at for e in progress] + [ends[0].at]
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert min(gaps[:-1]) >= timedelta(milliseconds=MIN_INTERVAL_MS), gaps
    assert max(gaps) <= timedelta(milliseconds=MAX_INTERVAL_MS), gaps
    exporting = [e.progress for e in progress if e.progress.phase == "exporting"]
    assert [p.current for p in exporting] == sorted(p.current for p in exporting)
    assert exporting[-1].total == 12
    assert len({p.current for p in exporting}) >= 3  # it really moved while we watched
    # bytes grow as they are written, not only when an invocation closes its files
    assert [p.bytes for p in exporting] == sorted(p.bytes for p in exporting)
    assert len({p.bytes for p in exporting}) >= 3

    # the end carries a fresh link to the package, valid for minutes
    (succeeded,) = ends
    assert isinstance(succeeded, SucceededEvent)
    assert succeeded.progress.percentage == 100.0
    assert succeeded.download is not None
    assert datetime.now(UTC) < succeeded.download.expires_at \
        <= datetime.now(UTC) + timedelta(minutes=15)
    package = requests.get(succeeded.download.url, timeout=30)
    assert package.status_code == 200
    assert package.content[:2] == b"PK"
    assert len(package.content) == succeeded.download.bytes

    # the worker ran in several invocations: the throttle lives in the job row
    assert len(invocations) >= 2


def test_a_late_subscriber_learns_the_end_from_the_snapshot(api: Api) -> None:
    job_id = api.start_export({"format": "csv"})
    assert api.wait(job_id)["status"] == "succeeded"
    with connect(api.stack, api.user_id) as socket:
        socket.subscribe(job_id)
        snapshot = socket.receive()
        assert isinstance(snapshot, SnapshotEvent)
        assert snapshot.status.value == "succeeded"
        assert snapshot.seq >= 1  # the seq of the terminal event it stands for
        assert snapshot.download is not None
        assert requests.get(snapshot.download.url, timeout=30).status_code == 200
        assert_silent(socket, 0.5)


@pytest.mark.usefixtures("slow_export")
def test_cancelling_ends_the_stream_with_job_cancelled(api: Api) -> None:
    job_id = api.start_export({"format": "json"})
    with connect(api.stack, api.user_id) as socket:
        socket.subscribe(job_id)
        seen = [socket.receive()]
        while not isinstance(seen[-1], ProgressEvent) or seen[-1].progress.current == 0:
            seen.append(socket.receive())
        assert api.request("DELETE", f"/exports/{job_id}").json()["status"] == "cancelled"
        rest = until_end(socket)
        end = rest[-1]
        assert isinstance(end, CancelledEvent)
        assert end.error is not None
        assert end.error.code == "cancelled"
        assert sum(isinstance(e, TERMINAL) for e in seen + rest) == 1
        assert_silent(socket, 0.8)  # the worker notices and stops: nothing after the end


@pytest.mark.usefixtures("slow_export")
def test_a_failed_job_ends_with_a_reason_a_person_can_act_on(
        api: Api, monkeypatch: pytest.MonkeyPatch, slow_export: SessionWriter) -> None:
    written = slow_export
    calls = []

    def fail_on_the_fourth_session(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("disk on fire")
        return written(*args, **kwargs)

    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER,
                        export_worker(fail_on_the_fourth_session))
    job_id = api.start_export({"format": "json"})
    with connect(api.stack, api.user_id) as socket:
        socket.subscribe(job_id)
        frames = until_end(socket)
    end = frames[-1]
    assert isinstance(end, FailedEvent)
    assert any(isinstance(e, ProgressEvent) for e in frames)  # it was moving, then failed
    assert end.error.code == "internal_error"
    assert job_id in end.error.message  # what to quote to support
    assert "disk on fire" not in end.error.message  # internals stay in the logs


# ------------------------------------------------------------------------------ isolation


def test_another_user_can_neither_subscribe_nor_hear_the_job(api: Api, other_user: str) -> None:
    stack = api.stack
    job_id = api.start_export({"format": "markdown"})
    before = set(stack.websocket.connection_ids)
    with connect(stack, other_user) as intruder:
        intruder_id = new_connection_id(stack, before)
        for target in (job_id, "f" * 32):  # someone else's job looks like no job at all
            intruder.subscribe(target)
            refused = intruder.receive()
            assert isinstance(refused, ErrorEvent)
            assert (refused.code, refused.job_id, refused.action) == ("not_found", target,
                                                                      "subscribe")
        assert [i["sk"]["S"] for i in connection_items(stack, intruder_id)] == ["META"]
        with connect(stack, api.user_id) as owner:
            owner.subscribe(job_id)
            assert isinstance(until_end(owner)[-1], (SucceededEvent, SnapshotEvent))
        assert_silent(intruder, 0.3)


# ------------------------------------------------------------------------------ gone clients


@pytest.mark.usefixtures("slow_export")
def test_a_client_gone_mid_job_is_pruned_on_the_next_post(api: Api, slow_export: None) -> None:
    """$disconnect is best effort on AWS: here it is lost, so only the 410 can clean up."""
    stack = api.stack
    stack.websocket.lose_disconnects = True
    job_id = api.start_export({"format": "jsonl"})
    with connect(stack, api.user_id) as watcher:
        before = set(stack.websocket.connection_ids)
        leaver = connect(stack, api.user_id)
        gone = new_connection_id(stack, before)
        watcher.subscribe(job_id)
        leaver.subscribe(job_id)
        # subscribe records first, then answers: a progress event may overtake the snapshot
        assert any(isinstance(leaver.receive(), SnapshotEvent) for _ in range(5))
        leaver.close()
        assert connection_items(stack, gone)  # no $disconnect: still on record

        frames = until_end(watcher)
        assert isinstance(frames[-1], SucceededEvent)  # the export did not mind

    to_gone = [c for c in stack.websocket.calls if c.connection_id == gone]
    refused = [c for c in to_gone if c.status == 410]
    assert len(refused) == 1, to_gone  # one 410, then never posted to again
    assert to_gone[-1] == refused[0]
    assert connection_items(stack, gone) == []  # META and subscription pruned
