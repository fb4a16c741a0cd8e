"""WebSocket $default: a message with no known `action` gets an error frame, not silence."""

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
    request = APIGatewayWebSocketEvent(event)
    websocket.unknown_action(request.request_context.connection_id, request.body)
    return {"statusCode": 200}
