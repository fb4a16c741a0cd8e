"""What template.yaml promises: private encrypted packages, TTL on jobs, tight IAM, real ASL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from infrastructure import asl_lint
from tests.fixtures.environment import template
from tests.infrastructure.iam import unscoped_kms_statements

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE, _ = decode(str(ROOT / "template.yaml"))
assert TEMPLATE is not None
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def _of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in resource["Properties"].get("Policies", []):
        assert isinstance(policy, dict), "policies are written out as statements"
        assert "Statement" in policy, "policies are written out as statements"
        found.extend(policy["Statement"])
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_jobs_table_expires_rows_by_epoch_seconds_ttl() -> None:
    jobs = RESOURCES["JobsTable"]["Properties"]
    assert jobs["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert {"IndexName": "by-owner"}.items() <= jobs["GlobalSecondaryIndexes"][0].items()


def test_packages_bucket_is_private_encrypted_and_aborts_stale_uploads() -> None:
    bucket = RESOURCES["PackagesBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"aws:kms", "AES256"}
    rules = bucket["LifecycleConfiguration"]["Rules"]
    aborts = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert aborts
    assert aborts[0]["Status"] == "Enabled"
    assert aborts[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] <= 2


@pytest.mark.parametrize("name", sorted(_of_type("AWS::Serverless::Function")
                                        | _of_type("AWS::Serverless::StateMachine")))
def test_no_policy_uses_a_wildcard_action(name: str) -> None:
    for statement in _statements(RESOURCES[name]):
        for action in _actions(statement):
            assert "*" not in action, f"{name} allows {action}"


@pytest.mark.parametrize("name", sorted(_of_type("AWS::Serverless::Function")))
def test_functions_that_write_to_s3_may_abort_their_multipart_uploads(name: str) -> None:
    actions = {a for s in _statements(RESOURCES[name]) for a in _actions(s)}
    if "s3:PutObject" in actions:
        assert "s3:AbortMultipartUpload" in actions, name


def test_every_kms_statement_of_a_function_names_its_encryption_context() -> None:
    """A data key's ciphertext (context restoreId, importId) or a password (jobId,
    scheduleId) opens only for the purpose it was sealed for: no function may call KMS
    under any context (the check assert_calls_allowed also makes, before the calls)."""
    assert unscoped_kms_statements(template().functions()) == []
    decrypting = [name for name, function in template().functions().items()
                  if any("kms:Decrypt" in _actions(dict(s)) for s in function.policy_statements)]
    assert {"ImportValidateFunction", "ImportExecuteFunction",
            "RestoreShardsFunction"} <= set(decrypting)  # the data keys' readers


def test_every_state_machine_definition_passes_statelint() -> None:
    machines = _of_type("AWS::Serverless::StateMachine")
    assert machines
    for machine in machines.values():
        path = ROOT / machine["Properties"]["DefinitionUri"]
        # statelint, taught the ItemReader's InputType (infrastructure.asl_lint)
        result = subprocess.run([sys.executable, "-m", "infrastructure.asl_lint", str(path)],
                                capture_output=True, text=True, check=False, cwd=ROOT)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_asl_lint_knows_the_item_readers_input_type_and_checks_it() -> None:
    machine: dict[str, Any] = {"StartAt": "Map", "States": {"Map": {
        "Type": "Map", "End": True,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                       "ReaderConfig": {"InputType": "JSON"},
                       "Parameters": {"Bucket": "b", "Key": "k"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED",
                                              "ExecutionType": "STANDARD"},
                          "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}}}}
    assert asl_lint.problems(machine) == []
    machine["States"]["Map"]["ItemReader"]["ReaderConfig"]["InputType"] = "XML"
    assert ["InputType" in problem for problem in asl_lint.problems(machine)] == [True]


def test_asl_substitutions_match_the_template() -> None:
    """Every ${Name} in the ASL is supplied, and every supplied name is used."""
    for machine in _of_type("AWS::Serverless::StateMachine").values():
        props = machine["Properties"]
        text = (ROOT / props["DefinitionUri"]).read_text()
        used = set(re.findall(r"\$\{(\w+)\}", text))
        assert used == set(props.get("DefinitionSubstitutions", {}))
        json.loads(text)  # stays valid JSON with the placeholders in strings


def test_template_passes_cfn_lint() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"),
                             str(ROOT / "template.yaml")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- hardening: TLS only, log retention, access logs ------------------------------------------


def _ref(value: Any) -> str:
    assert isinstance(value, dict), value
    assert set(value) == {"Ref"}, value
    return str(value["Ref"])


def _sub(value: Any) -> str:
    assert isinstance(value, dict), value
    assert set(value) == {"Fn::Sub"}, value
    return str(value["Fn::Sub"])


def _get_att(value: Any) -> tuple[str, str]:
    assert isinstance(value, dict), value
    assert set(value) == {"Fn::GetAtt"}, value
    target = value["Fn::GetAtt"]
    logical_id, attribute = target.split(".", 1) if isinstance(target, str) else target
    return str(logical_id), str(attribute)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def test_log_retention_is_a_parameter_of_30_days_by_default() -> None:
    parameter = TEMPLATE["Parameters"]["LogRetentionDays"]
    assert parameter["Type"] == "Number"
    assert parameter["Default"] == 30
    assert 30 in parameter["AllowedValues"]  # CloudWatch accepts only its own list of values


@pytest.mark.parametrize("name", sorted(_of_type("AWS::Serverless::Function")))
def test_every_function_logs_to_its_own_log_group_with_the_retention(name: str) -> None:
    """Lambda writes to the group LoggingConfig names, which exists (with its retention) before
    the function does; it is also the one Lambda would pick by default, /aws/lambda/<name>."""
    props = RESOURCES[name]["Properties"]
    group_id = _ref(props["LoggingConfig"]["LogGroup"])
    group = RESOURCES[group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert _ref(group["Properties"]["RetentionInDays"]) == "LogRetentionDays"
    assert _sub(group["Properties"]["LogGroupName"]) == "/aws/lambda/" + _sub(props["FunctionName"])
    owners = [n for n in _of_type("AWS::Serverless::Function")
              if RESOURCES[n]["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": group_id}]
    assert owners == [name], f"{group_id} is shared by {owners}"


def test_every_log_group_keeps_logs_for_the_retention_parameter() -> None:
    groups = _of_type("AWS::Logs::LogGroup")
    assert len(groups) >= len(_of_type("AWS::Serverless::Function")) + 2  # + two access logs
    for name, group in groups.items():
        assert _ref(group["Properties"].get("RetentionInDays")) == "LogRetentionDays", name


def test_the_packages_bucket_refuses_every_request_without_tls() -> None:
    """Deny s3:* on the bucket and on its objects unless aws:SecureTransport: plain-http
    listing, uploads (the presigned POST too) and deletes are refused, not only downloads."""
    (policy,) = [p["Properties"] for p in _of_type("AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": "PackagesBucket"}]
    denials = [s for s in policy["PolicyDocument"]["Statement"]
               if s["Effect"] == "Deny"
               and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
    assert len(denials) == 1
    (deny,) = denials
    assert deny["Principal"] == "*"
    assert _as_list(deny["Action"]) == ["s3:*"]
    resources = _as_list(deny["Resource"])
    assert {"Fn::GetAtt": ["PackagesBucket", "Arn"]} in resources or \
        {"Fn::Sub": "${PackagesBucket.Arn}"} in resources
    assert {"Fn::Sub": "${PackagesBucket.Arn}/*"} in resources


_NO_QUERY_STRING = re.compile(r"querystring|\$input|\$method|\$context\.path\b|"
                              r"\$context\.requestOverride|\$request\.|header", re.IGNORECASE)


def _access_log_format(setting: dict[str, Any], required: set[str]) -> dict[str, str]:
    group, attribute = _get_att(setting["DestinationArn"])
    assert attribute == "Arn"
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    fields = json.loads(setting["Format"])  # one JSON object per request
    assert isinstance(fields, dict)
    assert required <= set(fields), required - set(fields)
    for key, value in fields.items():
        assert isinstance(value, str), key
        assert re.fullmatch(r"\$context\.[A-Za-z.]+", value), (key, value)
        # ?token= (the WebSocket credential) lives in the query string; Authorization in a header
        assert not _NO_QUERY_STRING.search(value), (key, value)
    return fields


def test_the_rest_stage_writes_json_access_logs_without_query_strings() -> None:
    setting = RESOURCES["RestApi"]["Properties"]["AccessLogSetting"]
    fields = _access_log_format(setting, {"requestId", "ip", "httpMethod", "resourcePath",
                                          "status", "responseLatency"})
    assert fields["resourcePath"] == "$context.resourcePath"  # /exports/{jobId}, not the path
    assert fields["ip"] == "$context.identity.sourceIp"


def test_the_websocket_stage_writes_json_access_logs_without_query_strings() -> None:
    (stage,) = _of_type("AWS::ApiGatewayV2::Stage").values()
    _access_log_format(stage["Properties"]["AccessLogSettings"],
                       {"requestId", "ip", "routeKey", "connectionId", "eventType", "status"})


def test_access_logging_has_the_account_role_before_the_stages_exist() -> None:
    """API Gateway refuses a stage's access log setting until the account (per region) names a
    CloudWatch role: the stack sets it, and both APIs wait for that."""
    (account,) = _of_type("AWS::ApiGateway::Account").values()
    role_id, attribute = _get_att(account["Properties"]["CloudWatchRoleArn"])
    assert attribute == "Arn"
    role = RESOURCES[role_id]
    assert role["Type"] == "AWS::IAM::Role"
    assert role.get("DeletionPolicy") == "Retain"  # the setting outlives the stack
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    (managed,) = role["Properties"]["ManagedPolicyArns"]
    assert _sub(managed).endswith(":iam::aws:policy/service-role/"
                                  "AmazonAPIGatewayPushToCloudWatchLogs")
    account_id = next(iter(_of_type("AWS::ApiGateway::Account")))
    (ws_stage,) = _of_type("AWS::ApiGatewayV2::Stage").values()
    for resource in (RESOURCES["RestApi"], ws_stage):
        assert account_id in _as_list(resource.get("DependsOn", []))


def test_the_authorizer_refuses_credentials_that_expire_within_its_cache_time() -> None:
    """One parameter sets API Gateway's cache (ReauthorizeEvery) and the margin the authorizer
    demands of a credential's remaining life, so a cached answer never outlives its token."""
    parameter = TEMPLATE["Parameters"]["AuthorizerCacheSeconds"]
    assert 0 < parameter["Default"] <= 60
    assert parameter["MaxValue"] <= 3600
    (authorizer,) = RESOURCES["RestApi"]["Properties"]["Auth"]["Authorizers"].values()
    assert _ref(authorizer["Identity"]["ReauthorizeEvery"]) == "AuthorizerCacheSeconds"
    variables = RESOURCES["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    assert _ref(variables["AUTHORIZER_CACHE_SECONDS"]) == "AuthorizerCacheSeconds"

def test_the_state_machine_arns_every_function_gets_name_the_machines() -> None:
    """Globals spell them from the machines' names (a Ref would be a cycle): they must match."""
    local = template()
    machines = local.state_machines()
    for function in local.functions().values():
        assert function.environment["EXPORT_STATE_MACHINE_ARN"] == \
            machines["ExportStateMachine"].arn
        assert function.environment["IMPORT_STATE_MACHINE_ARN"] == \
            machines["ImportStateMachine"].arn


#: what holds users' data or credentials: deleting the stack or replacing one of these must not
#: take it along (copies' ids, job history, API keys, the signing secret, sealed passwords)
RETAINED_TYPES = ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SecretsManager::Secret",
                  "AWS::KMS::Key")


@pytest.mark.parametrize("name", sorted(n for n, r in RESOURCES.items()
                                        if r["Type"] in RETAINED_TYPES))
def test_data_and_credentials_survive_stack_deletion_and_replacement(name: str) -> None:
    resource = RESOURCES[name]
    assert resource.get("DeletionPolicy") == "Retain", name
    assert resource.get("UpdateReplacePolicy") == "Retain", name


def test_the_retained_resources_include_every_table_the_secret_and_the_key() -> None:
    retained = {n for n, r in RESOURCES.items() if r["Type"] in RETAINED_TYPES}
    assert {"JobsTable", "ApiKeysTable", "IdempotencyTable", "ConnectionsTable", "BackupsTable",
            "SchedulesTable",
            "PackagesBucket", "JwtSecret", "CopyIdSecret", "PasswordKey"} <= retained


def _cors_origin_header(value: Any) -> None:
    """The origin header of an answer API Gateway makes itself: any origin when some are allowed
    (bearer tokens, no cookies: it grants nothing), none otherwise."""
    assert value == {"Fn::If": ["HasAllowedOrigins", "'*'", "''"]}


def test_cors_is_off_unless_origins_are_given() -> None:
    parameter = TEMPLATE["Parameters"]["AllowedOrigins"]
    assert parameter["Type"] == "CommaDelimitedList"
    assert parameter["Default"] == ""
    assert TEMPLATE["Conditions"]["HasAllowedOrigins"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "AllowedOrigins"}]}, ""]}]}


def test_rest_preflights_skip_the_authorizer_and_errors_carry_the_origin_header() -> None:
    api = RESOURCES["RestApi"]["Properties"]
    _cors_origin_header(api["Cors"]["AllowOrigin"])
    assert {"Authorization", "Content-Type", "Idempotency-Key"} <= set(
        api["Cors"]["AllowHeaders"].strip("'").split(","))
    assert api["Auth"]["AddDefaultAuthorizerToCorsPreflight"] is False
    responses = api["GatewayResponses"]
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "UNAUTHORIZED", "ACCESS_DENIED"} <= set(responses)
    for response in responses.values():  # each named response replaces DEFAULT_4XX's headers
        _cors_origin_header(response["ResponseParameters"]["Headers"][
            "Access-Control-Allow-Origin"])
    api_function = RESOURCES["ApiFunction"]["Properties"]
    assert api_function["Environment"]["Variables"]["ALLOWED_ORIGINS"] == {
        "Fn::Join": [",", {"Ref": "AllowedOrigins"}]}


def test_the_bucket_lets_the_allowed_origins_upload_and_download() -> None:
    cors = RESOURCES["PackagesBucket"]["Properties"]["CorsConfiguration"]["Fn::If"]
    assert cors[0] == "HasAllowedOrigins"
    assert cors[2] == {"Ref": "AWS::NoValue"}
    (rule,) = cors[1]["CorsRules"]
    assert rule["AllowedOrigins"] == {"Ref": "AllowedOrigins"}
    assert {"GET", "POST", "PUT"} <= set(rule["AllowedMethods"])
