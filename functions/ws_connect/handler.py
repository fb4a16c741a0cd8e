"""WebSocket $connect: remember who is connected. The route's Lambda authorizer (AuthorizerFunction,
identity source: the `token` query parameter) has already refused anyone without a valid token;
its context names the user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.api import websocket
from dataport.auth import principal_from_request_context
from dataport.errors import Unauthorized
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_settings

get_settings()  # at cold start: a missing variable fails here, named, not mid-request


@logger.inject_lambda_context(log_event=False)  # the query string holds the token: never log it
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = APIGatewayWebSocketEvent(event).request_context
    try:
        principal = principal_from_request_context(event.get("requestContext") or {})
    except Unauthorized as error:  # no authorizer on the route: a template fault, refuse
        logger.error("connect without an authorizer context", extra={"reason": error.message})
        return {"statusCode": 401}
    websocket.connect(request.connection_id, principal.user_id,
                      datetime.fromtimestamp(request.connected_at / 1000, UTC))
    return {"statusCode": 200}
