"""Per-user job rate limits: a fixed window (clock hours by default) counted atomically.

One conditional UpdateItem both checks and counts (`ADD count 1 IF count < limit`), so
concurrent requests can never exceed the limit. A fixed window is simple to reason about and
to tell a user about ("resets at 14:00"); its cost is that a burst can straddle a boundary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from dataport import aws
from dataport.errors import RateLimited
from dataport.jobs import keys
from dataport.jobs.dynamo import from_item, is_conditional_failure, to_item
from dataport.settings import get_settings


@dataclass(frozen=True)
class RateLimitState:
    user_id: str
    kind: str
    limit: int
    remaining: int
    window_start: int  # epoch seconds
    reset_at: int  # epoch seconds when the window ends

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset_at)}


def consume(user_id: str, kind: str, limit: int, window_seconds: int | None = None,
            now: float | None = None) -> RateLimitState:
    """Count one job for the user or raise RateLimited with when to try again."""
    window = window_seconds or get_settings().rate_limit_window_seconds
    moment = int(now if now is not None else time.time())
    start = moment - moment % window
    reset_at = start + window
    key = to_item({"pk": keys.rate_pk(user_id, kind), "sk": keys.rate_sk(start)})
    try:
        answer = aws.dynamodb().update_item(
            TableName=get_settings().jobs_table, Key=key,
            UpdateExpression="ADD #count :one SET expires_at = :expires",
            ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues=to_item({":one": 1, ":limit": limit,
                                               ":expires": reset_at + window}),
            ReturnValues="UPDATED_NEW",
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
        retry_after = max(1, reset_at - moment)
        raise RateLimited(
            f"You can start {limit} {kind}s per hour; the limit resets in {retry_after} s.",
            limit=limit, remaining=0, reset_at=reset_at, retry_after=retry_after) from error
    used = int(from_item(answer["Attributes"])["count"])
    return RateLimitState(user_id=user_id, kind=kind, limit=limit,
                          remaining=max(0, limit - used), window_start=start, reset_at=reset_at)


def refund(state: RateLimitState) -> None:
    """Give back the job `consume` counted, when that job could not even start (never below
    zero, and only in the window it was counted in)."""
    key = to_item({"pk": keys.rate_pk(state.user_id, state.kind),
                   "sk": keys.rate_sk(state.window_start)})
    try:
        aws.dynamodb().update_item(
            TableName=get_settings().jobs_table, Key=key, UpdateExpression="ADD #count :minus",
            ConditionExpression="#count > :zero", ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues=to_item({":minus": -1, ":zero": 0}))
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
