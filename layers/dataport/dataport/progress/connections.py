"""WebSocket connections and their job subscriptions (the connections table).

  CONN#<connectionId> / META            a connection: its user, from the $connect authorizer
  JOB#<jobId>         / CONN#<connId>   a subscription: fan-out reads one job's partition
  GSI by-connection: gsi1pk = CONN#<connId> on both, so $disconnect (or a 410 Gone) finds and
                     deletes everything a connection left in one query

Every item expires (TTL `expires_at`, epoch seconds) two hours after its connection opened: API
Gateway closes a connection at two hours, so nothing outlives it even if $disconnect never comes.
Reads filter expired items too, because DynamoDB deletes them up to two days late.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dataport import aws
from dataport.jobs import keys
from dataport.jobs.dynamo import from_item, to_item
from dataport.observability import MetricName, emit, logger
from dataport.settings import get_settings

#: API Gateway's limit on a WebSocket connection's life
MAX_CONNECTION_AGE = timedelta(hours=2)
CONNECTION_INDEX = "by-connection"
META_SK = "META"


def connection_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def expires_at(connected_at: datetime) -> int:
    """TTL of a connection's items: connect time + 2 hours, epoch seconds."""
    return int((connected_at + MAX_CONNECTION_AGE).timestamp())


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


class Delivery(StrEnum):
    SENT = "sent"
    GONE = "gone"  # 410: the client went; the connection is to be pruned
    FAILED = "failed"  # anything else (logged): the next frame may pass


def post(connection_id: str, frame: bytes) -> Delivery:
    """One frame to one connection through the stage's @connections API (short timeouts, one
    retry: aws.connections_api). Frames may hold a credential: never logged."""
    try:
        aws.connections_api().post_to_connection(ConnectionId=connection_id, Data=frame)
    except ClientError as error:
        if (error.response.get("Error", {}).get("Code") == "GoneException"
                or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 410):
            emit(MetricName.CONNECTIONS_PRUNED)  # its caller forgets the connection
            return Delivery.GONE
        logger.warning("post to connection failed", extra={
            "connection_id": connection_id,
            "error_code": error.response.get("Error", {}).get("Code")})
        return Delivery.FAILED
    except BotoCoreError as error:  # timeouts, refused connections
        logger.warning("post to connection failed", extra={
            "connection_id": connection_id, "error": type(error).__name__})
        return Delivery.FAILED
    emit(MetricName.PROGRESS_EVENTS_SENT)
    return Delivery.SENT


class ConnectionStore:
    def __init__(self, table: str | None = None) -> None:
        self.table = table or get_settings().connections_table
        self.db = aws.dynamodb()

    def open(self, connection_id: str, user_id: str, connected_at: datetime) -> None:
        pk = connection_pk(connection_id)
        self.db.put_item(TableName=self.table, Item=to_item({
            "pk": pk, "sk": META_SK, "gsi1pk": pk, "gsi1sk": META_SK,
            "connection_id": connection_id, "user_id": user_id,
            "connected_at": connected_at.isoformat(), "expires_at": expires_at(connected_at)}))

    def subscribe(self, connection_id: str, job_id: str, connected_at: datetime) -> None:
        """Idempotent: subscribing twice leaves one subscription."""
        job_pk, conn_pk = keys.job_pk(job_id), connection_pk(connection_id)
        self.db.put_item(TableName=self.table, Item=to_item({
            "pk": job_pk, "sk": conn_pk, "gsi1pk": conn_pk, "gsi1sk": job_pk,
            "connection_id": connection_id, "job_id": job_id,
            "expires_at": expires_at(connected_at)}))

    def unsubscribe(self, connection_id: str, job_id: str) -> None:
        self.db.delete_item(TableName=self.table, Key=to_item({
            "pk": keys.job_pk(job_id), "sk": connection_pk(connection_id)}))

    def subscribers(self, job_id: str) -> list[str]:
        """Connection ids subscribed to `job_id` (strongly consistent: a subscription made a
        moment ago is seen by the next event)."""
        found: list[str] = []
        pages = self.db.get_paginator("query").paginate(
            TableName=self.table, ConsistentRead=True,
            KeyConditionExpression="pk = :pk",
            FilterExpression="expires_at > :now",
            ExpressionAttributeValues=to_item({":pk": keys.job_pk(job_id), ":now": _now()}),
            ProjectionExpression="connection_id",
        )
        for page in pages:
            found.extend(str(from_item(item)["connection_id"]) for item in page.get("Items", []))
        return found

    def close(self, connection_id: str) -> None:
        """Forget a connection and its subscriptions ($disconnect, or a 410 Gone on a post).

        The index is eventually consistent: a subscription made in the last instant may be
        missed here, and is then pruned by the next post (410) or by TTL."""
        pk = connection_pk(connection_id)
        doomed: list[dict[str, Any]] = [{"pk": {"S": pk}, "sk": {"S": META_SK}}]
        pages = self.db.get_paginator("query").paginate(
            TableName=self.table, IndexName=CONNECTION_INDEX,
            KeyConditionExpression="gsi1pk = :pk",
            ExpressionAttributeValues=to_item({":pk": pk}),
        )
        for page in pages:
            doomed.extend({"pk": item["pk"], "sk": item["sk"]} for item in page.get("Items", [])
                          if item["sk"]["S"] != META_SK)
        for key in doomed:
            self.db.delete_item(TableName=self.table, Key=key)
