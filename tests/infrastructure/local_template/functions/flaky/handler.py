"""Fails `failures` times with the named error, then writes to DynamoDB and S3 (tests only)."""

import os
import time
from collections import Counter
from typing import Any

import boto3

from dataport import aws

ATTEMPTS: Counter[str] = Counter()


class TransientError(Exception):
    pass


class PermanentError(Exception):
    pass


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ATTEMPTS[event["id"]] += 1
    attempt = ATTEMPTS[event["id"]]
    time.sleep(event.get("sleep_ms", 0) / 1000)
    if attempt <= event.get("failures", 0):
        error = {"TransientError": TransientError, "PermanentError": PermanentError}
        raise error[event.get("error", "TransientError")](f"attempt {attempt} failed")
    aws.dynamodb().put_item(TableName=os.environ["TEST_TABLE"],
                            Item={"pk": {"S": event["id"]}, "owner": {"S": "someone"}})
    # a client this code makes itself is recorded too
    boto3.client("s3").put_object(Bucket=os.environ["TEST_BUCKET"], Key=f"tmp/{event['id']}",
                                  Body=b"done")
    return {"id": event["id"], "attempts": attempt,
            "remaining_ms": context.get_remaining_time_in_millis()}
