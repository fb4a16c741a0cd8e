"""WebSocket $disconnect: forget the connection and its subscriptions (best effort on AWS's side
too: what it misses, the next post's 410 Gone or the TTL removes)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.api import websocket
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_settings

get_settings()  # at cold start: a missing variable fails here, named, not mid-request


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    websocket.disconnect(APIGatewayWebSocketEvent(event).request_context.connection_id)
    return {"statusCode": 200}
