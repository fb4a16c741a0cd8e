"""WebSocket `subscribe` and `unsubscribe` routes: follow one of your jobs, or stop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.api import websocket
from dataport.auth import principal_from_request_context
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_settings

get_settings()  # at cold start: a missing variable fails here, named, not mid-request


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = APIGatewayWebSocketEvent(event)
    connection_id = request.request_context.connection_id
    if request.request_context.route_key == "unsubscribe":
        websocket.unsubscribe(connection_id, request.body)
    else:
        # API Gateway repeats the $connect authorizer's context on every message
        user_id = principal_from_request_context(event["requestContext"]).user_id
        connected_at = datetime.fromtimestamp(request.request_context.connected_at / 1000, UTC)
        websocket.subscribe(connection_id, user_id, connected_at, request.body)
    return {"statusCode": 200}
