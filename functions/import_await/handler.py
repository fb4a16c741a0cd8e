"""Import task (waitForTaskToken): keep the token the user's decision will answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.models.tasks import DecisionWait
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_settings
from dataport.workflows import imports

get_settings()  # at cold start: a missing variable fails here, named, not mid-request


@logger.inject_lambda_context(log_event=False)  # the event carries the task token
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    imports.await_decision(DecisionWait.model_validate(event))
    return {}
