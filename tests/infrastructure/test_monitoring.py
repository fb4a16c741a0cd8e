"""What template.yaml promises an operator: every metric dataport emits is on the dashboard,
every alarm watches a metric that exists (its namespace, name and dimensions, on a resource of
this stack), every alarm is on the dashboard and notifies the alarm topic, and every function
is watched for errors and throttles."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from dataport.observability import MetricName

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE, _ = decode(str(ROOT / "template.yaml"))
assert TEMPLATE is not None
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
NAMESPACE = "${MetricsNamespace}"

#: the AWS metrics an alarm may watch: namespace -> metric -> (dimension -> resource type)
AWS_METRICS: dict[str, dict[str, dict[str, str | None]]] = {
    "AWS/States": {m: {"StateMachineArn": "AWS::Serverless::StateMachine"}
                   for m in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsStarted")},
    "AWS/Lambda": {m: {"FunctionName": "AWS::Serverless::Function"}
                   for m in ("Errors", "Throttles")},
    "AWS/ApiGateway": {m: {"ApiName": None, "Stage": None}
                       for m in ("5XXError", "4XXError", "Latency")},
    "AWS/DynamoDB": {m: {"TableName": "AWS::DynamoDB::Table"}
                     for m in ("ReadThrottleEvents", "WriteThrottleEvents")},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible": {"QueueName": "AWS::SQS::Queue"}},
}


def _of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def _dashboard() -> dict[str, Any]:
    """The dashboard's body with its ${...} left as names (JSON either way)."""
    (dashboard,) = _of_type("AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def _dashboard_metrics() -> set[tuple[str, str]]:
    """(namespace, name) of every metric a widget shows, SEARCH expressions included."""
    shown: set[tuple[str, str]] = set()
    for widget in _dashboard()["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if isinstance(line[0], dict):
                search = re.fullmatch(r"SEARCH\('\{([^,]+),[^}]*\} MetricName=\"(\w+)\"'.*",
                                      line[0]["expression"])
                assert search, line[0]["expression"]
                shown.add((search.group(1), search.group(2)))
            else:
                shown.add((line[0], line[1]))
    return shown


def _emitted_names() -> set[str]:
    """The MetricName members the code names (emit takes nothing else)."""
    found: set[str] = set()
    for path in [*(ROOT / "layers" / "dataport" / "dataport").rglob("*.py"),
                 *(ROOT / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "MetricName"):
                found.add(MetricName[node.attr].value)
    return found


def test_only_the_observability_module_emits_metrics() -> None:
    """Everything goes through `emit`/`emit_failure`, which take a MetricName."""
    for path in [*(ROOT / "layers" / "dataport" / "dataport").rglob("*.py"),
                 *(ROOT / "functions").rglob("*.py")]:
        if path.name == "observability.py":
            continue
        text = path.read_text()
        assert "add_metric(" not in text, path
        assert "single_metric(" not in text, path


def test_every_metric_the_code_emits_is_on_the_dashboard() -> None:
    emitted = _emitted_names()
    assert {"ExportsStarted", "ImportsFailed", "PackageSize", "RateLimitedRequests",
            "ProgressEventsSent", "ConnectionsPruned"} <= emitted
    shown = {name for namespace, name in _dashboard_metrics() if namespace == NAMESPACE}
    assert emitted <= shown, sorted(emitted - shown)
    assert {m.value for m in MetricName} <= shown, sorted({m.value for m in MetricName} - shown)


def test_failures_are_shown_by_error_code() -> None:
    by_code = {name for namespace, name in _dashboard_metrics() if namespace == NAMESPACE}
    assert {"ExportsFailed", "ImportsFailed", "BackupsFailed", "RestoresFailed"} <= by_code


def _alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    props = alarm["Properties"]
    if "Metrics" in props:
        stats = [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
        expressions = [m for m in props["Metrics"] if "Expression" in m]
        assert len(expressions) == 1
        assert expressions[0]["ReturnData"] is True
        ids = {m["Id"] for m in props["Metrics"] if "MetricStat" in m}
        assert set(re.findall(r"\w+", expressions[0]["Expression"])) == ids  # sums them all
        return stats
    return [{"Namespace": props["Namespace"], "MetricName": props["MetricName"],
             "Dimensions": props.get("Dimensions", [])}]


@pytest.mark.parametrize("name", sorted(_of_type("AWS::CloudWatch::Alarm")))
def test_every_alarm_watches_a_metric_that_exists(name: str) -> None:
    for metric in _alarm_metrics(RESOURCES[name]):
        namespace, metric_name = metric["Namespace"], metric["MetricName"]
        if namespace == {"Ref": "MetricsNamespace"}:
            assert metric_name in {m.value for m in MetricName}
            continue
        assert namespace in AWS_METRICS, namespace
        assert metric_name in AWS_METRICS[namespace], (namespace, metric_name)
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        wanted = AWS_METRICS[namespace][metric_name]
        assert set(dimensions) == set(wanted), (name, dimensions)
        for dimension, resource_type in wanted.items():
            if resource_type is None:
                continue
            value = dimensions[dimension]
            target = value.get("Ref") or value.get("Fn::GetAtt", [None])[0]
            assert RESOURCES[target]["Type"] == resource_type, (name, dimension, target)


def test_the_api_alarms_name_the_rest_api_and_its_stage() -> None:
    api = RESOURCES["RestApi"]["Properties"]
    for name in ("ApiServerErrorsAlarm", "ApiLatencyAlarm"):
        dimensions = {d["Name"]: d["Value"] for d in RESOURCES[name]["Properties"]["Dimensions"]}
        assert dimensions["ApiName"] == api["Name"]
        assert dimensions["Stage"] == api["StageName"]


@pytest.mark.parametrize("name", sorted(_of_type("AWS::CloudWatch::Alarm")))
def test_every_alarm_notifies_the_topic_and_is_on_the_dashboard(name: str) -> None:
    props = RESOURCES[name]["Properties"]
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert props["AlarmActions"] == notify
    assert props["OKActions"] == notify
    shown = [a for widget in _dashboard()["widgets"] if widget["type"] == "alarm"
             for a in widget["properties"]["alarms"]]
    assert f"${{{name}.Arn}}" in shown


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_is_watched_for_errors_and_throttles(metric: str) -> None:
    watched = {m["Dimensions"][0]["Value"]["Ref"]
               for alarm in _of_type("AWS::CloudWatch::Alarm").values()
               for m in _alarm_metrics(alarm)
               if m["Namespace"] == "AWS/Lambda" and m["MetricName"] == metric}
    assert watched == set(_of_type("AWS::Serverless::Function"))


def test_every_workflow_is_watched_for_failed_and_timed_out_executions() -> None:
    watched = {(m["MetricName"], m["Dimensions"][0]["Value"]["Ref"])
               for alarm in _of_type("AWS::CloudWatch::Alarm").values()
               for m in _alarm_metrics(alarm) if m["Namespace"] == "AWS/States"}
    for machine in ("ExportStateMachine", "ImportStateMachine", "RestoreStateMachine"):
        assert {("ExecutionsFailed", machine), ("ExecutionsTimedOut", machine)} <= watched


def test_failed_asynchronous_invocations_go_to_a_queue() -> None:
    config = TEMPLATE["Globals"]["Function"]["EventInvokeConfig"]
    destination = config["DestinationConfig"]["OnFailure"]
    assert destination["Type"] == "SQS"
    assert destination["Destination"] == {"Fn::GetAtt": ["FailedInvocationsQueue", "Arn"]}
    assert RESOURCES["FailedInvocationsQueue"]["Type"] == "AWS::SQS::Queue"


def test_every_function_traces_and_names_the_metrics_namespace() -> None:
    functions = TEMPLATE["Globals"]["Function"]
    assert functions["Tracing"] == "Active"
    assert functions["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == {
        "Ref": "MetricsNamespace"}
    for path in (ROOT / "functions").glob("*/handler.py"):
        text = path.read_text()
        assert "@tracer.capture_lambda_handler(capture_response=False)" in text, path
        assert "@metrics.log_metrics" in text, path


@pytest.mark.parametrize("name", sorted(_of_type("AWS::CloudWatch::Alarm")))
def test_metric_math_alarms_stay_within_cloudwatchs_ten_queries(name: str) -> None:
    assert len(RESOURCES[name]["Properties"].get("Metrics", [])) <= 10


def test_every_table_is_watched_for_throttles() -> None:
    watched = {m["Dimensions"][0]["Value"]["Ref"]
               for alarm in _of_type("AWS::CloudWatch::Alarm").values()
               for m in _alarm_metrics(alarm) if m["Namespace"] == "AWS/DynamoDB"}
    assert watched == set(_of_type("AWS::DynamoDB::Table"))
