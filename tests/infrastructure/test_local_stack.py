"""The local stack builds what template.yaml declares, runs real ASL through the in-process
Lambda runtime (Retry and Catch by error name), and records each function's AWS calls."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from dataport import aws
from infrastructure.local.lambda_runtime import Call, FunctionError
from infrastructure.local.stack import LocalStack

TEST_TEMPLATE = Path(__file__).parent / "local_template" / "template.yaml"
DEMO_USER = "66ad9b005f2b4a0012c0aaaa"


# ------------------------------------------------------------------------------ template.yaml


def test_tables_are_created_with_keys_indexes_and_ttl(local_stack: LocalStack) -> None:
    dynamodb = local_stack.client("dynamodb")
    jobs = dynamodb.describe_table(TableName=local_stack.tables["JobsTable"])["Table"]
    assert [(k["AttributeName"], k["KeyType"]) for k in jobs["KeySchema"]] == [
        ("pk", "HASH"), ("sk", "RANGE")]
    (index,) = jobs["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-owner"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["gsi1pk", "gsi1sk"]
    assert jobs["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert jobs["SSEDescription"]["Status"] == "ENABLED"
    ttl = {lid: dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
           for lid, name in local_stack.tables.items()}
    assert ttl["JobsTable"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert ttl["IdempotencyTable"]["AttributeName"] == "expiration"
    assert ttl["ApiKeysTable"]["TimeToLiveStatus"] == "DISABLED"


def test_the_bucket_is_private_encrypted_and_expires_packages(local_stack: LocalStack) -> None:
    s3 = local_stack.client("s3")
    bucket = local_stack.bucket
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert all(s3.get_public_access_block(Bucket=bucket)[
        "PublicAccessBlockConfiguration"].values())
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["expire-packages"]["Filter"] == {"Prefix": "packages/"}
    assert rules["expire-packages"]["Expiration"] == {"Days": 30}  # PackageRetentionDays
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1}


def test_the_password_key_is_created_with_its_policy(local_stack: LocalStack) -> None:
    kms = local_stack.client("kms")
    arn = os.environ["PASSWORD_KEY_ARN"]  # GetAtt Arn of the key moto created
    key = kms.describe_key(KeyId=arn)["KeyMetadata"]
    assert key["Arn"] == arn
    assert key["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"]
    policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    sids = {s["Sid"]: s for s in policy["Statement"]}
    assert sids["SealPerJobForRolesIamAllows"]["Condition"] == {
        "Null": {"kms:EncryptionContext:jobId": "false"}}


def test_functions_environment_is_the_processes(local_stack: LocalStack) -> None:
    assert os.environ["JOBS_TABLE"] == local_stack.tables["JobsTable"]
    assert os.environ["PACKAGES_BUCKET"] == local_stack.bucket
    assert "MONGODB_URI" not in os.environ  # a credential: read from its secret at run time
    assert local_stack.client("secretsmanager").get_secret_value(
        SecretId=os.environ["MONGODB_URI_SECRET"])["SecretString"] == local_stack.mongo_uri
    assert os.environ["EXPORT_STATE_MACHINE_ARN"] == local_stack.state_machines[
        "ExportStateMachine"]
    assert os.environ["AWS_ENDPOINT_URL"] == local_stack.aws_endpoint
    secret = local_stack.client("secretsmanager").get_secret_value(
        SecretId=os.environ["JWT_SECRET_PARAMETER"])["SecretString"]
    assert secret == local_stack.jwt_secret
    assert len(secret) == 64  # GenerateSecretString
    assert secret.isalnum()


def test_the_state_machine_invokes_the_template_functions(local_stack: LocalStack) -> None:
    arn = local_stack.state_machines["ExportStateMachine"]
    definition = json.loads(local_stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=arn)["definition"])
    functions = {f["FunctionArn"] for f in local_stack.client("lambda").list_functions()[
        "Functions"]}
    assert definition["States"]["Plan"]["Parameters"]["FunctionName"] in functions
    assert "${" not in json.dumps(definition)


def test_the_rest_api_runs_the_real_authorizer(fresh_stack: LocalStack) -> None:
    parameters.clear_caches()  # type: ignore[no-untyped-call]  # as in a cold container: the secret is fetched, not cached
    url = f"{fresh_stack.rest_url}/exports"
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/v1/exports")
    assert requests.get(url, timeout=30).status_code == 401
    response = requests.get(url, headers=fresh_stack.auth_headers(DEMO_USER), timeout=30)
    assert response.status_code not in (401, 403, 500), response.text
    assert Call("AuthorizerFunction", "secretsmanager", "GetSecretValue") in fresh_stack.calls


def test_presigned_urls_point_at_the_local_s3(fresh_stack: LocalStack) -> None:
    aws.s3().put_object(Bucket=fresh_stack.bucket, Key="packages/x.zip", Body=b"zip")
    url = aws.s3().generate_presigned_url(
        "get_object", Params={"Bucket": fresh_stack.bucket, "Key": "packages/x.zip"},
        ExpiresIn=60)
    assert url.startswith(f"{fresh_stack.s3_endpoint}/{fresh_stack.bucket}/packages/x.zip?")
    assert requests.get(url, timeout=30).content == b"zip"


def test_reset_empties_tables_and_bucket(local_stack: LocalStack) -> None:
    table = local_stack.tables["JobsTable"]
    dynamodb, s3 = local_stack.client("dynamodb"), local_stack.client("s3")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
    s3.put_object(Bucket=local_stack.bucket, Key="staging/x", Body=b"x")
    s3.create_multipart_upload(Bucket=local_stack.bucket, Key="staging/y")
    local_stack.reset()
    assert dynamodb.scan(TableName=table)["Count"] == 0
    assert s3.list_objects_v2(Bucket=local_stack.bucket)["KeyCount"] == 0
    assert not s3.list_multipart_uploads(Bucket=local_stack.bucket).get("Uploads")
    assert local_stack.calls == []


# ------------------------------------------------------------------------------ ASL + Lambda


@pytest.fixture(scope="module")
def flow_stack() -> Iterator[LocalStack]:
    """The small test template's stack (inside the session stack when that one is up)."""
    with LocalStack(TEST_TEMPLATE, stack_name="dataport-test", with_mongo=False) as stack:
        yield stack


@pytest.fixture
def flow(flow_stack: LocalStack) -> LocalStack:
    flow_stack.reset()
    return flow_stack


def run_flow(stack: LocalStack, **payload: Any) -> tuple[dict[str, Any], str]:
    run_id = str(uuid.uuid4())
    execution = stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.state_machines["Flow"], name=run_id,
        input=json.dumps({"id": run_id, **payload}))
    return stack.wait_for_execution(execution["executionArn"], timeout=20), run_id


def rescue_output(stack: LocalStack, execution_arn: str) -> dict[str, Any]:
    for event in stack.execution_history(execution_arn):
        if event["type"] == "TaskStateExited" and \
                event["stateExitedEventDetails"]["name"] == "Rescue":
            return json.loads(event["stateExitedEventDetails"]["output"])  # type: ignore[no-any-return]
    raise AssertionError("Rescue never ran")


def test_retry_by_error_name_then_success(flow: LocalStack) -> None:
    result, run_id = run_flow(flow, failures=2, error="TransientError")
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["attempts"] == 3
    # The Retry's 5 s + 10 s waits are skipped (fast_retries), checked without a clock.
    assert retrier_decl.time.sleep is not time.sleep  # type: ignore[attr-defined]
    assert flow.client("dynamodb").get_item(TableName=flow.tables["ItemsTable"],
                                            Key={"pk": {"S": run_id}})["Item"]


def test_other_errors_are_caught_by_name(flow: LocalStack) -> None:
    result, _ = run_flow(flow, failures=1, error="PermanentError")
    assert result["status"] == "FAILED"
    assert result["error"] == "Rescued"
    assert rescue_output(flow, result["executionArn"])["caught"] == "PermanentError"


def test_retries_run_out_then_catch(flow: LocalStack) -> None:
    result, run_id = run_flow(flow, failures=99, error="TransientError")
    assert rescue_output(flow, result["executionArn"]) == {"rescued": run_id,
                                                           "caught": "TransientError"}
    assert flow.calls == []  # a failing attempt makes no AWS call


def test_calls_are_recorded_per_function(flow: LocalStack) -> None:
    run_flow(flow)
    assert flow.calls == [Call("FlakyFunction", "dynamodb", "PutItem"),
                          Call("FlakyFunction", "s3", "PutObject")]
    (put_item, _) = flow.call_details
    assert put_item.iam_prefix == "dynamodb"
    assert put_item.params["TableName"] == flow.tables["ItemsTable"]


def test_timeouts_can_be_shortened_per_function(flow: LocalStack) -> None:
    flow.set_function_timeout("FlakyFunction", 2000)
    result = flow.invoke("FlakyFunction", {"id": str(uuid.uuid4())})
    assert 1000 < result["remaining_ms"] <= 2000

    flow.set_function_timeout("FlakyFunction", 50)
    with pytest.raises(FunctionError, match="Task timed out"):
        flow.invoke("FlakyFunction", {"id": str(uuid.uuid4()), "sleep_ms": 100})
    result, _ = run_flow(flow, sleep_ms=100)
    assert rescue_output(flow, result["executionArn"])["caught"] == "Sandbox.Timedout"

    flow.set_function_timeout("FlakyFunction", None)
    assert flow.invoke("FlakyFunction", {"id": str(uuid.uuid4())})["remaining_ms"] > 50_000


def test_handler_exceptions_are_raised_by_invoke(flow: LocalStack) -> None:
    run_id = str(uuid.uuid4())
    with pytest.raises(Exception, match="attempt 1 failed") as caught:
        flow.invoke("FlakyFunction", {"id": run_id, "failures": 1, "error": "PermanentError"})
    assert type(caught.value).__name__ == "PermanentError"


def test_stopping_leaves_no_thread_behind(flow_stack: LocalStack) -> None:
    before = set(threading.enumerate())
    with LocalStack(TEST_TEMPLATE, stack_name="dataport-leak", parameters={"Stage": "leak"},
                    with_mongo=False) as stack:
        result, _ = run_flow(stack)
        assert result["status"] == "SUCCEEDED"
        assert requests.get(f"{stack.rest_url}/public", timeout=10).ok
    # the outer stack's servers still run: a request one of them is serving now (a thread of
    # its own, not in `before`) ends within moments; a thread the stopped stack left runs on
    deadline = time.monotonic() + 5
    left = {t for t in threading.enumerate() if t.is_alive()} - before
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {t for t in threading.enumerate() if t.is_alive()} - before
    assert left == set()
    # the outer stack still has its resources and still runs
    assert run_flow(flow_stack)[0]["status"] == "SUCCEEDED"
