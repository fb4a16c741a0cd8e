"""What template.yaml promises for live progress: the WebSocket API's routes and authorizer, a
stage deployed again whenever a route changes, one stage name everywhere, TTL'd connections, and
@connections rights for the functions that post (scoped to the stage, with pruning rights)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE, _ = decode(str(ROOT / "template.yaml"))
assert TEMPLATE is not None
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
#: functions that post export events: plan, workers and finalize (progress, the end), the Catch
#: (failed), the REST API (cancelled), subscribe (snapshot) and $default (errors)
POSTERS = {"ApiFunction", "ExportPlanFunction", "ExportWorkerFunction", "ExportFinalizeFunction",
           "JobFailedFunction", "WsSubscribeFunction", "WsDefaultFunction"}


def _of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def _ref(value: Any) -> str:
    assert isinstance(value, dict)
    assert set(value) == {"Ref"}
    return str(value["Ref"])


def _sub(value: Any) -> str:
    assert isinstance(value, dict)
    assert set(value) == {"Fn::Sub"}
    return str(value["Fn::Sub"])


def _statements(name: str) -> list[dict[str, Any]]:
    return [s for p in RESOURCES[name]["Properties"].get("Policies", []) for s in p["Statement"]]


def _routes() -> dict[str, dict[str, Any]]:
    return {r["Properties"]["RouteKey"]: r["Properties"]
            for r in _of_type("AWS::ApiGatewayV2::Route").values()}


def _function_of(uri: Any) -> str:
    match = re.search(r"functions/\$\{(\w+)\.Arn\}/invocations$", _sub(uri))
    assert match, uri
    return match.group(1)


def _arn_matches(pattern: str, tail: str) -> bool:
    """Does the IAM-style `pattern` (`*` wildcards) end in something matching `tail`?"""
    regex = re.escape(pattern.rsplit(":", 1)[1]).replace(r"\*", ".*")
    return re.fullmatch(regex, tail) is not None


def _stage() -> str:
    (stage,) = _of_type("AWS::ApiGatewayV2::Stage").values()
    return str(stage["Properties"]["StageName"])


def test_one_websocket_api_routes_on_the_action_field() -> None:
    (api,) = _of_type("AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.action"
    assert set(_routes()) == {"$connect", "$disconnect", "subscribe", "unsubscribe", "$default"}


def test_connect_is_authorized_by_the_rest_authorizer_with_a_token_query_parameter() -> None:
    connect = _routes()["$connect"]
    assert connect["AuthorizationType"] == "CUSTOM"
    authorizer = RESOURCES[_ref(connect["AuthorizerId"])]["Properties"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    assert _function_of(authorizer["AuthorizerUri"]) == "AuthorizerFunction"
    others = [p for key, p in _routes().items() if key != "$connect"]
    assert all(p["AuthorizationType"] == "NONE" for p in others)  # only $connect can have one


def test_every_route_reaches_a_function_that_api_gateway_may_invoke() -> None:
    integrations = _of_type("AWS::ApiGatewayV2::Integration")
    permissions = _of_type("AWS::Lambda::Permission").values()
    for key, route in _routes().items():
        integration = _sub(route["Target"]).removeprefix("integrations/${").removesuffix("}")
        assert integrations[integration]["Properties"]["IntegrationType"] == "AWS_PROXY"
        function = _function_of(integrations[integration]["Properties"]["IntegrationUri"])
        allowed = [p["Properties"] for p in permissions
                   if _ref(p["Properties"]["FunctionName"]) == function]
        assert any(p["Principal"] == "apigateway.amazonaws.com"
                   and _arn_matches(_sub(p["SourceArn"]), f"${{WebSocketApi}}/{_stage()}/{key}")
                   for p in allowed), key
    assert any(_ref(p["Properties"]["FunctionName"]) == "AuthorizerFunction"
               and "/authorizers/" in _sub(p["Properties"]["SourceArn"]) for p in permissions)


def _unpublished_route_changes(resources: dict[str, Any]) -> list[str]:
    """Stages that would keep serving old routes after a route changes: neither AutoDeploy nor
    a deployment whose logical id (so whose identity) is made from the routes' definitions."""
    routes = {n: r for n, r in resources.items() if r["Type"] == "AWS::ApiGatewayV2::Route"}
    faults = []
    for name, stage in resources.items():
        if stage["Type"] != "AWS::ApiGatewayV2::Stage":
            continue
        props = stage["Properties"]
        if props.get("AutoDeploy") is True and "DeploymentId" not in props:
            if not set(routes) <= set(_as_list(stage.get("DependsOn", []))):
                faults.append(f"{name}: the first deployment may miss a route")
            continue
        deployment = _ref(props.get("DeploymentId", {"Ref": ""}))
        if deployment not in resources or _routes_digest(routes) not in deployment:
            faults.append(f"{name}: deployment {deployment or '-'} does not follow the routes")
    return faults


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _routes_digest(routes: dict[str, Any]) -> str:
    text = json.dumps({n: r["Properties"] for n, r in sorted(routes.items())}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def test_the_websocket_stage_is_deployed_again_when_a_route_changes() -> None:
    assert _of_type("AWS::ApiGatewayV2::Stage")
    assert _unpublished_route_changes(dict(RESOURCES)) == []


def test_the_check_catches_a_deployment_made_once() -> None:
    """The layout this template had before AutoDeploy (a Deployment resource of fixed identity):
    a changed route would never be published. The check must refuse it."""
    resources = copy.deepcopy(dict(RESOURCES))
    (stage,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    del stage["Properties"]["AutoDeploy"]
    stage["Properties"]["DeploymentId"] = {"Ref": "WebSocketDeployment"}
    resources["WebSocketDeployment"] = {"Type": "AWS::ApiGatewayV2::Deployment",
                                        "Properties": {"ApiId": {"Ref": "WebSocketApi"}}}
    assert _unpublished_route_changes(resources)
    # a deployment named after its routes passes, until a route changes under it
    routes = {n: r for n, r in resources.items() if r["Type"] == "AWS::ApiGatewayV2::Route"}
    named = f"WebSocketDeployment{_routes_digest(routes)}"
    resources[named] = resources.pop("WebSocketDeployment")
    stage["Properties"]["DeploymentId"] = {"Ref": named}
    assert _unpublished_route_changes(resources) == []
    resources["SubscribeRoute"]["Properties"]["RouteKey"] = "follow"
    assert _unpublished_route_changes(resources)


def test_the_stage_name_is_the_same_everywhere() -> None:
    stage = _stage()
    callback = _sub(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"][
        "WEBSOCKET_CALLBACK_URL"])
    assert callback == f"https://${{WebSocketApi}}.execute-api.${{AWS::Region}}." \
                       f"${{AWS::URLSuffix}}/{stage}"
    outputs = TEMPLATE["Outputs"]
    assert _sub(outputs["WebSocketUrl"]["Value"]) == callback.replace("https://", "wss://")
    assert _sub(outputs["WebSocketCallbackUrl"]["Value"]) == callback


def test_connections_expire_by_ttl_and_can_be_found_per_connection() -> None:
    table = RESOURCES["ConnectionsTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-connection"
    assert _ref(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"][
        "CONNECTIONS_TABLE"]) == "ConnectionsTable"


def test_functions_that_post_may_manage_connections_on_the_stage_only() -> None:
    resource = (f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:"
                f"${{WebSocketApi}}/{_stage()}/POST/@connections/*")
    posters = set()
    for name in _of_type("AWS::Serverless::Function"):
        grants = [s for s in _statements(name) if "execute-api:ManageConnections" in s["Action"]]
        if not grants:
            continue
        posters.add(name)
        (grant,) = grants
        assert grant["Action"] == ["execute-api:ManageConnections"]
        assert _sub(grant["Resource"]) == resource, name
        pruning = {a for s in _statements(name) for a in s["Action"]
                   if any("ConnectionsTable" in str(r) for r in (
                       s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]))}
        assert {"dynamodb:Query", "dynamodb:DeleteItem"} <= pruning, name  # 410 Gone -> prune
    assert posters >= POSTERS
    assert "WsConnectFunction" not in posters  # nothing can be posted during $connect
