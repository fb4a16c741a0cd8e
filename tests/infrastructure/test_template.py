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

from tests.fixtures.environment import template

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


def test_every_state_machine_definition_passes_statelint() -> None:
    machines = _of_type("AWS::Serverless::StateMachine")
    assert machines
    for machine in machines.values():
        path = ROOT / machine["Properties"]["DefinitionUri"]
        result = subprocess.run([str(Path(sys.executable).parent / "statelint"), str(path)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


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


def test_the_state_machine_arns_every_function_gets_name_the_machines() -> None:
    """Globals spell them from the machines' names (a Ref would be a cycle): they must match."""
    local = template()
    machines = local.state_machines()
    for function in local.functions().values():
        assert function.environment["EXPORT_STATE_MACHINE_ARN"] == \
            machines["ExportStateMachine"].arn
        assert function.environment["IMPORT_STATE_MACHINE_ARN"] == \
            machines["ImportStateMachine"].arn
