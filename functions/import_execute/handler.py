"""Import task: one invocation of the execution (or dry run) page loop; returns its cursor."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.heap import freezes_runtime
from dataport.models.tasks import ImportStep
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_mongo_settings, get_settings
from dataport.source.mongo import renews_credentials
from dataport.workflows import imports

get_settings()  # at cold start: a missing variable fails here, named, not mid-request
get_mongo_settings()  # this function reaches MongoDB (the URI is read from its secret)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
@renews_credentials  # a rotated password: read the secret again, retry
@freezes_runtime  # the runtime's objects left out of the task's collections
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = ImportStep.model_validate(event)
    return imports.execute(step, context.get_remaining_time_in_millis).wire()
