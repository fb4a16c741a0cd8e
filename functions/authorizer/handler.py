"""The Lambda authorizer (REQUEST type) of the REST API and of the WebSocket API's $connect.

Thin by design: find the credential, let `dataport.auth` decide, answer with an IAM policy.

- REST: the Authorization header. The policy allows the whole stage (`.../<stage>/*/*`), not
  just the called method, because API Gateway caches the answer per identity for every route.
  For as long as it caches it (AUTHORIZER_CACHE_SECONDS, the template's ReauthorizeEvery): a
  credential that expires sooner is refused, so a cached "allow" never outlives its token.
- WebSocket $connect (methodArn `.../<stage>/$connect`): the `token` query parameter, because
  browsers cannot set headers on a WebSocket. The policy allows that $connect only (WebSocket
  authorizers run once per connection; `*/*` would not even match `$connect`). API Gateway hands
  the context to every later message of the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
    HttpVerb,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.auth import Principal, authenticate_credential, authenticate_header
from dataport.errors import Unauthorized
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_settings

get_settings()  # at cold start: a missing variable fails here, named, not mid-request

AUTHORIZATION = "authorization"
WEBSOCKET_CONNECT = "/$connect"
TOKEN_PARAMETER = "token"  # noqa: S105 (a name, not a secret)


def authorization_header(event: Mapping[str, Any]) -> str | None:
    """The Authorization header, whatever its letter case, from `headers` or `multiValueHeaders`.

    Several Authorization values make the request ambiguous: it is refused rather than guessed.
    """
    values: list[str] = []
    for name, value in (event.get("multiValueHeaders") or {}).items():
        if name.lower() == AUTHORIZATION and value:
            values.extend(v for v in value if v is not None)
    if not values:
        for name, value in (event.get("headers") or {}).items():
            if name.lower() == AUTHORIZATION and value is not None:
                values.append(value)
    if len(set(values)) > 1:
        raise Unauthorized("Several Authorization headers were sent")
    return values[0] if values else None


@logger.inject_lambda_context(log_event=False)  # the event carries the credential: never log it
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Allow the caller, or raise "Unauthorized" (API Gateway answers 401)."""
    websocket = str(event.get("methodArn", "")).endswith(WEBSOCKET_CONNECT)
    try:
        if websocket:
            query = event.get("queryStringParameters") or {}
            principal = authenticate_credential(query.get(TOKEN_PARAMETER) or "")
        else:
            principal = authenticate_header(
                authorization_header(event),
                min_remaining_seconds=get_settings().authorizer_cache_seconds)
    except Unauthorized as exc:
        logger.info("Request denied", extra={"reason": exc.message})
        raise Exception("Unauthorized") from None  # the exact text API Gateway maps to 401

    logger.info("Request allowed", extra={"user_id": principal.user_id, "method": principal.method,
                                          "role": principal.role, "websocket": websocket})
    if websocket:
        return _connect_policy(principal, str(event["methodArn"]))
    arn = APIGatewayAuthorizerRequestEvent(event).parsed_arn
    policy = APIGatewayAuthorizerResponse(
        principal_id=principal.user_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        partition=arn.partition,
        context=_context(principal),
    )
    policy.allow_all_routes(HttpVerb.ALL.value)  # arn:...:<api>/<stage>/*/*
    return policy.asdict()


def _context(principal: Principal) -> dict[str, str]:
    return {"userId": principal.user_id, "authMethod": principal.method, "role": principal.role}


def _connect_policy(principal: Principal, method_arn: str) -> dict[str, Any]:
    return {
        "principalId": principal.user_id,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [method_arn]}]},
        "context": _context(principal),
    }
