"""What IAM would have to allow for the AWS calls the local stack recorded, and whether the
template's statements do: the check behind the IAM coverage tests."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlparse

import pytest

from infrastructure.local.lambda_runtime import CallDetail
from infrastructure.local.stack import LocalStack

REGION, ACCOUNT = "us-east-1", "123456789012"

#: S3 operations whose IAM action has another name
S3_ACTIONS = {
    "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject", "UploadPartCopy": "PutObject",
    "CopyObject": "PutObject",
    "HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket", "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts", "DeleteObjects": "DeleteObject",
}


def required(detail: CallDetail) -> Iterator[tuple[str, str]]:
    """(IAM action, resource ARN) pairs one call needs."""
    service, operation, params = detail.call.service, detail.call.operation, detail.params
    if service == "dynamodb" and operation in ("BatchWriteItem", "BatchGetItem"):
        for name in params["RequestItems"]:
            yield f"dynamodb:{operation}", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    elif service == "dynamodb" and operation == "TransactWriteItems":
        # IAM checks each item's own action on its table (there is no TransactWriteItems action)
        actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                   "ConditionCheck": "ConditionCheckItem"}
        for item in params["TransactItems"]:
            ((kind, request),) = item.items()
            yield (f"dynamodb:{actions[kind]}",
                   f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{request['TableName']}")
    elif service == "dynamodb":
        table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}"
        if "IndexName" in params:
            table += f"/index/{params['IndexName']}"
        yield f"dynamodb:{operation}", table
    elif service == "s3":
        bucket = f"arn:aws:s3:::{params['Bucket']}"
        action = f"s3:{S3_ACTIONS.get(operation, operation)}"
        if operation == "DeleteObjects":
            for item in params["Delete"]["Objects"]:
                yield action, f"{bucket}/{item['Key']}"
        elif "Key" in params:
            yield action, f"{bucket}/{params['Key']}"
        else:
            yield action, bucket
        if operation in ("UploadPartCopy", "CopyObject"):  # and read the source
            source = params["CopySource"]
            source_key = source["Key"] if isinstance(source, Mapping) else source.split("/", 1)[1]
            yield "s3:GetObject", f"{bucket}/{source_key}"
    elif service == "stepfunctions":
        if operation.startswith("SendTask"):  # no resource-level permission: the token is it
            yield f"states:{operation}", "*"
        else:
            yield f"states:{operation}", params.get("stateMachineArn") or params["executionArn"]
    elif service == "apigatewaymanagementapi":
        yield ("execute-api:ManageConnections",
               f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{_websocket_stage(detail)}/POST/"
               f"@connections/{params['ConnectionId']}")
    elif service == "secretsmanager":
        yield f"secretsmanager:{operation}", params["SecretId"]
    elif service == "kms":
        key = params["KeyId"]  # dataport always names the key, also to Decrypt
        yield f"kms:{operation}", (key if key.startswith("arn:")
                                   else f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}")
    else:
        pytest.fail(f"no IAM mapping for {service}:{operation}; add one to this test")


def _websocket_stage(_: CallDetail) -> str:
    """`<api id>/<stage>` of the WebSocket API, from the callback URL the template gives the
    functions (locally the posts go to the gateway, but the policy names the real API)."""
    url = urlparse(os.environ["WEBSOCKET_CALLBACK_URL"])
    return f"{url.hostname.split('.')[0] if url.hostname else ''}{url.path}"


def allowed(statements: list[Mapping[str, Any]], action: str, resource: str) -> bool:
    for statement in statements:
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if statement["Effect"] == "Allow" and action in actions and any(
                fnmatchcase(resource, pattern) for pattern in resources):
            return True
    return False


def assert_calls_allowed(stack: LocalStack) -> None:
    """Every AWS call the functions made is allowed by their policies in template.yaml."""
    functions = stack.template.functions()
    missing = sorted({
        f"{d.call.logical_id}: {action} on {resource}"
        for d in stack.call_details for action, resource in required(d)
        if not allowed(list(functions[d.call.logical_id].policy_statements), action, resource)})
    assert not missing, "\n".join(missing)
