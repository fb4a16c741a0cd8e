"""What IAM would have to allow for the AWS calls the local stack recorded, and whether the
template's statements do: the check behind the IAM coverage tests."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest

from infrastructure.local.lambda_runtime import CallDetail
from infrastructure.local.stack import LocalStack

REGION, ACCOUNT = "us-east-1", "123456789012"
CONTEXT = "kms:EncryptionContext:"

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
        yield f"secretsmanager:{operation}", _secret_arn(params["SecretId"])
    elif service == "kms":
        key = params["KeyId"]  # dataport always names the key, also to Decrypt
        yield f"kms:{operation}", (key if key.startswith("arn:")
                                   else f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}")
    else:
        pytest.fail(f"no IAM mapping for {service}:{operation}; add one to this test")


def _secret_arn(secret_id: str) -> str:
    """A secret named by name (the MongoDB URI's) as IAM sees it: its ARN, with the random
    suffix Secrets Manager appends (the local stack's Secrets Manager knows it)."""
    if secret_id.startswith("arn:"):
        return secret_id
    return str(boto3.client("secretsmanager").describe_secret(SecretId=secret_id)["ARN"])


def _websocket_stage(_: CallDetail) -> str:
    """`<api id>/<stage>` of the WebSocket API, from the callback URL the template gives the
    functions (locally the posts go to the gateway, but the policy names the real API)."""
    url = urlparse(os.environ["WEBSOCKET_CALLBACK_URL"])
    return f"{url.hostname.split('.')[0] if url.hostname else ''}{url.path}"


def allowed(statements: list[Mapping[str, Any]], action: str, resource: str,
            context: Mapping[str, str] | None = None) -> bool:
    """Whether a statement allows `action` on `resource` for a call with this KMS encryption
    context (its `Null` conditions on `kms:EncryptionContext:*` keys are checked; the other
    conditions are not)."""
    for statement in statements:
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if (statement["Effect"] == "Allow"
                and any(fnmatchcase(action, pattern) for pattern in actions)
                and any(fnmatchcase(resource, pattern) for pattern in resources)
                and _context_holds(statement, context or {})):
            return True
    return False


def _context_holds(statement: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """`"Null": {"kms:EncryptionContext:<key>": "false"}`: the call's context names the key
    (`"true"`: it does not)."""
    nulls = statement.get("Condition", {}).get("Null", {})
    return all((name.removeprefix(CONTEXT) in context) == (value == "false")
               for name, value in nulls.items() if name.startswith(CONTEXT))


def unscoped_kms_statements(functions: Mapping[str, Any]) -> list[str]:
    """The functions' statements that allow a KMS action under any encryption context: each
    must name the context key of the one purpose it serves (jobId, scheduleId, restoreId,
    importId), so a ciphertext of one purpose never opens as another's."""
    unscoped = []
    for name, function in functions.items():
        for statement in function.policy_statements:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            nulls = statement.get("Condition", {}).get("Null", {})
            scoped = any(key.startswith(CONTEXT) and value == "false"
                         for key, value in nulls.items())
            if any(action.startswith("kms:") for action in actions) and not scoped:
                unscoped.append(f"{name}: {sorted(actions)}")
    return sorted(unscoped)


def assert_calls_allowed(stack: LocalStack) -> None:
    """Every AWS call the functions made is allowed by their policies in template.yaml, and a
    KMS call by the key's policy too (its statements defer to IAM under a context key each);
    and every KMS statement of a function is scoped to one encryption-context key."""
    functions = stack.template.functions()
    unscoped = unscoped_kms_statements(functions)
    assert not unscoped, "KMS allowed under any encryption context:\n" + "\n".join(unscoped)
    key_policy = list(stack.template.properties("PasswordKey")["KeyPolicy"]["Statement"])
    missing = sorted({
        f"{d.call.logical_id}: {action} on {resource}{_context_text(d)}"
        for d in stack.call_details for action, resource in required(d)
        if not allowed(list(functions[d.call.logical_id].policy_statements), action, resource,
                       _context(d))
        or (d.call.service == "kms" and not allowed(key_policy, action, "*", _context(d)))})
    assert not missing, "\n".join(missing)


def _context(detail: CallDetail) -> Mapping[str, str]:
    if detail.call.service != "kms":
        return {}
    return dict(detail.params.get("EncryptionContext") or {})


def _context_text(detail: CallDetail) -> str:
    context = _context(detail)
    return f" (encryption context keys {sorted(context)})" if context else ""
