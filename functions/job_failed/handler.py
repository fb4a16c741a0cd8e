"""Workflow Catch: abort uploads, delete staged objects, mark the job failed with a reason."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.models.tasks import FailedTaskInput
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_settings
from dataport.workflows.failure import mark_failed

get_settings()  # at cold start: a missing variable fails here, named, not mid-request


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return mark_failed(FailedTaskInput.model_validate(event)).wire()
