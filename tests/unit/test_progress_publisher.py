"""Fan-out against (moto) DynamoDB and a stand-in @connections client: every subscriber gets the
frame, a 410 Gone prunes that connection, other failures are logged, and nothing ever raises into
the job (nor logs a frame, which may hold a presigned URL)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from dataport import aws
from dataport.jobs.store import JobStore
from dataport.models.exports import ExportRequest
from dataport.models.jobs import Counts, ExportState, JobError, PackageInfo, Progress
from dataport.observability import logger
from dataport.progress import publisher
from dataport.progress.connections import ConnectionStore
from dataport.settings import get_settings

USER = "66ad9b005f2b4a0012c0aaaa"
CONNECTED = datetime.now(UTC)


class FakeConnections:
    """post_to_connection as API Gateway answers it, per connection id."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.gone: set[str] = set()
        self.broken: set[str] = set()
        self.slow: set[str] = set()
        self._lock = threading.Lock()

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        if ConnectionId in self.gone:
            raise _error("GoneException", 410)
        if ConnectionId in self.broken:
            raise _error("InternalServerError", 500)
        if ConnectionId in self.slow:
            raise ReadTimeoutError(endpoint_url="https://example")
        with self._lock:
            self.frames.setdefault(ConnectionId, []).append(json.loads(Data))


def _error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": ""},
                     "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PostToConnection")


@pytest.fixture
def connections(job_store: JobStore,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConnections]:
    monkeypatch.setenv("CONNECTIONS_TABLE", "publisher-connections")
    monkeypatch.setenv("PACKAGES_BUCKET", "publisher-packages")
    get_settings.cache_clear()
    keys: dict[str, Any] = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}],
            "BillingMode": "PAY_PER_REQUEST"}
    attributes: list[Any] = [{"AttributeName": name, "AttributeType": "S"}
                             for name in ("pk", "sk", "gsi1pk", "gsi1sk")]
    aws.dynamodb().create_table(
        TableName="publisher-connections", AttributeDefinitions=attributes,
        GlobalSecondaryIndexes=[{"IndexName": "by-connection", "KeySchema": [
            {"AttributeName": "gsi1pk", "KeyType": "HASH"},
            {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        **keys)
    fake = FakeConnections()
    monkeypatch.setattr(aws, "connections_api", lambda: fake)
    yield fake
    get_settings.cache_clear()


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", buffer)
    return buffer


def _running_job(*subscribers: str) -> str:
    store = JobStore()
    job = store.create(USER, ExportState(request=ExportRequest()))
    store.start(job.job_id)
    for connection_id in subscribers:
        ConnectionStore().open(connection_id, USER, CONNECTED)
        ConnectionStore().subscribe(connection_id, job.job_id, CONNECTED)
    return job.job_id


def test_every_subscriber_gets_the_event_and_a_gone_one_is_pruned(
        connections: FakeConnections) -> None:
    job_id = _running_job("a=", "b+/=", "gone=", "broken=")
    connections.gone.add("gone=")
    connections.broken.add("broken=")
    job = JobStore().require(job_id)

    assert publisher.publish_progress(job, Progress(phase="exporting", current=1, total=4))

    assert sorted(connections.frames) == ["a=", "b+/="]
    (frame,) = connections.frames["a="]
    assert (frame["type"], frame["seq"], frame["progress"]["percentage"]) == (
        "job.progress", 1, 25.0)
    assert connections.frames["b+/="] == [frame]
    assert sorted(ConnectionStore().subscribers(job_id)) == ["a=", "b+/=", "broken="]
    items = aws.dynamodb().scan(TableName="publisher-connections")["Items"]
    assert not [i for i in items if "gone=" in i["pk"]["S"] + i["sk"]["S"]]  # META too


def test_a_throttled_call_posts_nothing(connections: FakeConnections) -> None:
    job = JobStore().require(_running_job("a="))
    assert publisher.publish_progress(job, Progress())
    assert not publisher.publish_progress(job, Progress())  # within 500 ms
    assert len(connections.frames["a="]) == 1


def test_the_terminal_event_carries_a_fresh_link_that_is_never_logged(
        connections: FakeConnections, log: io.StringIO) -> None:
    job_id = _running_job("a=", "slow=")
    connections.slow.add("slow=")
    store = JobStore()
    package = PackageInfo(key=f"packages/{job_id}/x.zip", filename="x.zip", bytes=10, files=1,
                          expires_at=datetime.now(UTC) + timedelta(days=7))
    done = store.succeed_export(job_id, package=package, counts=Counts(),
                                progress=Progress(phase="done", current=4, total=4))

    publisher.publish_terminal(done)

    (frame,) = connections.frames["a="]
    assert frame["type"] == "job.succeeded"
    assert frame["progress"]["percentage"] == 100.0
    assert "X-Amz-Signature=" in frame["download"]["url"]
    assert frame["download"]["filename"] == "x.zip"
    assert frame["download"]["url"] not in log.getvalue()
    assert "slow=" in log.getvalue()  # the failed post is reported, by connection id only


def test_publishing_never_raises_into_the_job(connections: FakeConnections,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    job = JobStore().require(_running_job("a="))
    monkeypatch.setenv("CONNECTIONS_TABLE", "no-such-table")
    get_settings.cache_clear()
    assert not publisher.publish_progress(job, Progress())
    ended = JobStore().fail(job.job_id, JobError(code="internal_error", message="Failed."))
    publisher.publish_terminal(ended)  # logged, not raised
    publisher.publish_terminal(job)  # not ended: refused, not raised
    assert connections.frames == {}
