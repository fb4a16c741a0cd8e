"""Every AWS call a function really makes is allowed by that function's policy in template.yaml.

The local stack records each boto3 call per function while real flows run (an encrypted export,
download, delete, cancel, a failure, API-key auth); each call is turned into the IAM action and
resource AWS would authorize and checked against the template's statements, resources included.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from dataport.auth import create_api_key
from dataport.settings import get_settings
from dataport.workflows import export as export_tasks
from infrastructure.local import seed
from infrastructure.local.lambda_runtime import CallDetail
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_database

REGION, ACCOUNT = "us-east-1", "123456789012"

#: S3 operations whose IAM action has another name
S3_ACTIONS = {
    "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject", "UploadPartCopy": "PutObject",
    "HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket", "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts", "DeleteObjects": "DeleteObject",
}


def required(detail: CallDetail) -> Iterator[tuple[str, str]]:
    """(IAM action, resource ARN) pairs one call needs."""
    service, operation, params = detail.call.service, detail.call.operation, detail.params
    if service == "dynamodb":
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
        if operation == "UploadPartCopy":
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


def test_every_call_is_covered_by_the_functions_policy(
        fresh_stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = fresh_stack
    with seeded_database(monkeypatch, stack, "dataport_iam_tests", sessions_per_project=2):
        api = Api(stack, seed.DEMO_USER_ID)
        job_id = api.start_export({"format": "json",  # sealed password: kms calls too
                                   "options": {"encryption": {"password": "iam-test-pass"}}})
        with ProgressSocket(stack.ws_url, stack.token_for(seed.DEMO_USER_ID)) as socket:
            socket.subscribe(job_id)  # fan-out: ManageConnections calls too
            events = [event.type for event in socket.follow(job_id, timeout=60)]
        assert api.wait(job_id)["status"] == "succeeded", events
        api.download(job_id, tmp_path / "package.zip")
        api.request("GET", "/exports")
        assert api.request("DELETE", f"/exports/{job_id}").json()["status"] == "deleted"

        key = create_api_key(seed.DEMO_USER_ID, "iam test")
        assert api.request("GET", "/exports",
                           headers={"Authorization": f"ApiKey {key}"}).status_code == 200

        original = export_tasks._write_session

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.2)
            return original(*args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(export_tasks, "_write_session", slow)
            patch.setenv("PAGE_SIZE", "1")
            get_settings.cache_clear()
            cancelled = api.start_export({"format": "csv"})
            api.wait(cancelled, until={"running"})
            time.sleep(0.3)
            assert api.request("DELETE", f"/exports/{cancelled}").json()["status"] == "cancelled"
            time.sleep(0.6)  # let the running worker notice and clean up after itself

        with monkeypatch.context() as patch:
            patch.setattr(export_tasks, "_write_session", _explode)
            failed = api.start_export({"format": "jsonl"})
            assert api.wait(failed)["status"] == "failed"
        get_settings.cache_clear()

    functions = stack.template.functions()
    seen = {d.call.logical_id for d in stack.call_details}
    assert {"ApiFunction", "AuthorizerFunction", "ExportPlanFunction", "ExportWorkerFunction",
            "ExportFinalizeFunction", "JobFailedFunction", "WsSubscribeFunction"} <= seen
    assert any(d.call.service == "apigatewaymanagementapi" for d in stack.call_details)
    kms = {(d.call.logical_id, d.call.operation) for d in stack.call_details
           if d.call.service == "kms"}
    assert kms == {("ApiFunction", "Encrypt"), ("ExportPlanFunction", "Decrypt"),
                   ("ExportWorkerFunction", "Decrypt"), ("ExportFinalizeFunction", "Decrypt")}
    missing = sorted({
        f"{d.call.logical_id}: {action} on {resource}"
        for d in stack.call_details
        for action, resource in required(d)
        if not allowed(list(functions[d.call.logical_id].policy_statements), action, resource)
    })
    assert not missing, "\n".join(missing)


def _explode(*_: Any, **__: Any) -> Any:
    raise RuntimeError("boom")
