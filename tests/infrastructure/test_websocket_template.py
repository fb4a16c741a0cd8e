"""What template.yaml promises for live progress: the WebSocket API's routes and authorizer, a
deployment that waits for every route, one stage name everywhere, TTL'd connections, and
@connections rights for the functions that post (scoped to the stage, with pruning rights)."""

from __future__ import annotations

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


def test_the_deployment_waits_for_every_route() -> None:
    (deployment,) = _of_type("AWS::ApiGatewayV2::Deployment").values()
    assert set(deployment["DependsOn"]) == set(_of_type("AWS::ApiGatewayV2::Route"))
    (stage,) = _of_type("AWS::ApiGatewayV2::Stage").values()
    assert _ref(stage["Properties"]["DeploymentId"]) in _of_type("AWS::ApiGatewayV2::Deployment")


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
