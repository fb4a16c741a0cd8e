"""EventBridge rule, hourly: expire the backups retention lets go (never a chain's base that a
kept increment needs), deleting their objects and marking them expired in the catalog."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.observability import logger, metrics, tracer
from dataport.scheduling.dispatcher import event_time
from dataport.scheduling.retention import sweep
from dataport.settings import get_settings

get_settings()  # at cold start: a missing variable fails here, named, not mid-request


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asdict(sweep(event_time(event)))
